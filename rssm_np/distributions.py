"""The distributions: a diagonal Gaussian head, reparameterized sampling, the analytic KL (and its
free-nats clamp), and the Bernoulli likelihood of a frame.

Shapes (the glossary is in model.py): B batch (any leading axes, e.g. (B, T)), Z stoch size,
D pixels per frame (S*S).
"""

import autograd.numpy as np     # traced NumPy: these functions are differentiated
import numpy as onp             # plain NumPy: the Bernoulli primitive's own arithmetic
from autograd.extend import defvjp, primitive

from autograd.tracer import getval as stop_gradient   # sg(x): x's value, with no gradient through it

from .layers import mean_of, softplus


def gaussian_head(out, min_std):
    """(mean, std) = (o_1, softplus(o_2) + min_std) for an MLP output o = [o_1, o_2].

    out (B, 2Z) -> mean (B, Z), std (B, Z).
    softplus keeps std positive with a gradient everywhere (exp would explode, abs would kink);
    + min_std keeps the distribution from collapsing to a delta whose log-density and KL blow up.
    """
    mean, raw_std = np.split(out, 2, axis=-1)               # (B, Z) each; one traced call
    return mean, softplus(raw_std) + min_std


def sample_gaussian(mean, std, eps):
    """z = mean + std * eps, eps ~ N(0, I): the reparameterization trick.

    The noise is an input, so z is a smooth function of (mean, std) and gradients flow through it.
    mean, std, eps (B, Z) -> z (B, Z).
    """
    return mean + std * eps


def kl_gaussian_per_dim(mean_q, std_q, mean_p, std_p):
    """KL(q_i || p_i) = log(s_p/s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2, per dimension i.

    all (B, Z) -> (B, Z), in nats. The per-dimension view shows which latent dimensions carry
    information (posterior collapse: a dimension whose KL is ~0 everywhere is unused).
    """
    std_ratio = std_q / std_p
    mean_diff = (mean_q - mean_p) / std_p
    var_ratio = std_ratio * std_ratio                        # x * x, not x ** 2: autograd's
    mean_term = mean_diff * mean_diff                        # power backward promotes to float64
    return 0.5 * (var_ratio + mean_term - 1.0 - np.log(var_ratio))


def kl_gaussian(mean_q, std_q, mean_p, std_p):
    """KL(q || p) = sum_i log(s_p/s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2.

    The closed form for two diagonal Gaussians, summed over the Z dimensions.
    all (B, Z) -> (B,), in nats; zero exactly when q = p and positive otherwise.
    """
    return np.sum(kl_gaussian_per_dim(mean_q, std_q, mean_p, std_p), axis=-1)


def free_nats(kl, nats):
    """KL term = max(mean_{b,t} KL_{b,t}, free_nats): below `nats` the KL costs nothing.

    The clamp acts on the mean over batch and time, as in Dreamer; PlaNet clamps each step's KL
    before averaging, mean_{b,t} max(KL_{b,t}, free_nats), which frees every step separately.
    So the posterior may keep up to `nats` nats per step, on average, about the image without
    penalty. Written as an if on the value (autograd follows Python control flow): below the
    threshold the term is a constant, so its gradient is exactly zero.   kl (B, T) -> a scalar.
    """
    mean_kl = mean_of(kl)
    return mean_kl if stop_gradient(mean_kl) > nats else nats


@primitive
def bernoulli_nll(logits, target, weight=None):
    """-log p(x | logits) = sum_d w_d [softplus(l_d) - x_d * l_d], summed over pixels.

    logits, target (B, D) -> (B,). Pixel intensities x in [0, 1] are treated as Bernoulli
    probabilities. Summing (not averaging) over the D pixels sets the likelihood's scale against
    the KL: a frame is worth D pixels' nats, so an empty-frame guess that misses the dot costs tens
    of nats while the KL costs a few; averaging would divide the reconstruction by D and let the
    KL win, and the model would learn to predict empty frames (docs/faq.md). The dot's
    weight against the background is the same either way. `weight` (B, D) of 0/1 drops pixels
    from the sum (the masked likelihood for occluded pixels); None counts them all.

    It runs on every pixel of every frame, so it is one primitive with its derivative written
    out: dL/dl_d = w_d (sigmoid(l_d) - x_d), dL/dx_d = -w_d l_d.
    """
    per_pixel = onp.maximum(logits, 0.0) + onp.log(1.0 + onp.exp(-onp.abs(logits))) - target * logits
    if weight is not None:
        per_pixel = per_pixel * weight
    return per_pixel.sum(axis=-1)                           # (B,)


def _bernoulli_nll_vjp_logits(ans, logits, target, weight=None):
    def vjp(g):                                             # g (B,)
        grad = 0.5 * (onp.tanh(0.5 * logits) + 1.0) - target    # sigmoid(l) - x
        if weight is not None:
            grad = grad * weight
        return grad * g[..., None]
    return vjp


def _bernoulli_nll_vjp_target(ans, logits, target, weight=None):
    return lambda g: -logits * (g[..., None] if weight is None else g[..., None] * weight)


defvjp(bernoulli_nll, _bernoulli_nll_vjp_logits, _bernoulli_nll_vjp_target)
