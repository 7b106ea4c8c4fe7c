"""The distributions: a diagonal Gaussian head, reparameterized sampling, the analytic KL (and its
free-nats clamp), and the Bernoulli likelihood of a frame.

Shapes (the glossary is in model.py): B batch (any leading axes, e.g. (B, T)), Z stoch size,
D pixels per frame (S*S).
"""

import autograd.numpy as np     # traced NumPy: these functions are differentiated
import numpy as onp             # plain NumPy: the Bernoulli primitive's own arithmetic
from autograd.extend import defvjp, defvjp_argnums, primitive

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


ROWS_PER_PASS = 64      # dense_bernoulli_nll's chunk: its two (64, D) scratch arrays stay in a core's cache


@primitive
def dense_bernoulli_nll(hidden, w, b, target, weight=None, saved=None):
    """bernoulli_nll(hidden W + b, target, weight): a decoder's output layer and the likelihood of
    its logits as one primitive, the same numbers to the bit, forward and backward.

        l = hidden W + b                                       the output layer (layers.dense)
        -log p(x | l) = sum_d w_d [softplus(l_d) - x_d l_d]    bernoulli_nll's forward line
        d_l = g w_d (sigmoid(l_d) - x_d)                       bernoulli_nll's backward line
        d_hidden = d_l W^T,  d_W = hidden^T d_l,  d_b = sum over rows of d_l     (dense's backward)

    hidden (N, U), w (U, D), b (D,), target and weight (N, D) -> (N,). The logits are the biggest
    array of the step, one number per pixel of every frame. Traced by autograd, the lines above
    make a dozen temporaries of that size each way, which stream through memory; here each line
    runs on ROWS_PER_PASS rows at a time, written with out= into two scratch arrays that stay in
    cache, and the whole takes one traced call instead of three. saved: a dict the forward fills
    with the logits for the backward (model code passes {}), or None to recompute them there.
    """
    logits = hidden @ w + b                                 # l = hidden W + b   (N, D)
    for name, data in (("target", target), ("weight", weight)):
        if data is not None and data.dtype != logits.dtype:    # out= below would round it silently
            raise TypeError(f"dense_bernoulli_nll: {name} is {data.dtype} but the logits are {logits.dtype}")
    nll = onp.empty(len(logits), dtype=logits.dtype)        # (N,)
    per_pixel = onp.empty((min(ROWS_PER_PASS, len(logits)), logits.shape[1]), dtype=logits.dtype)
    scratch = onp.empty_like(per_pixel)
    for start in range(0, len(logits), ROWS_PER_PASS):
        rows = slice(start, start + ROWS_PER_PASS)
        l, p, s = logits[rows], per_pixel[:len(logits[rows])], scratch[:len(logits[rows])]
        onp.maximum(l, 0.0, out=p)                          # max(l, 0)
        onp.abs(l, out=s)
        onp.negative(s, out=s)
        onp.exp(s, out=s)
        s += 1.0
        onp.log(s, out=s)                                   # log(1 + e^-|l|)
        p += s                                              # softplus(l)
        onp.multiply(target[rows], l, out=s)
        p -= s                                              # softplus(l) - x l
        if weight is not None:
            p *= weight[rows]                               # w (softplus(l) - x l)
        p.sum(axis=-1, out=nll[rows])                       # summed over the D pixels
    if saved is not None:
        saved["logits"] = logits
    return nll


def _dense_bernoulli_nll_vjp(argnums, ans, args, kwargs):
    hidden, w, b, target = args[:4]
    weight = args[4] if len(args) > 4 else kwargs.get("weight")
    if any(i > 2 for i in argnums):
        raise NotImplementedError("dense_bernoulli_nll has no gradient for its target or weight (data, "
                                  "never differentiated in training); use bernoulli_nll to differentiate them")
    saved = kwargs.get("saved")
    logits = saved["logits"] if saved else hidden @ w + b   # called without the forward's dict: recompute

    def vjp(g):                                             # g (N,)
        same_dtype = g.dtype == logits.dtype                # else g promotes d_l below, as in bernoulli_nll
        d_logits = onp.empty_like(logits)                   # (N, D)
        for start in range(0, len(logits), ROWS_PER_PASS):
            rows = slice(start, start + ROWS_PER_PASS)
            d = d_logits[rows]
            onp.multiply(logits[rows], 0.5, out=d)
            onp.tanh(d, out=d)
            d += 1.0
            d *= 0.5                                        # sigmoid(l) = (tanh(l / 2) + 1) / 2, as layers.sigmoid
            d -= target[rows]                               # sigmoid(l) - x
            if weight is not None:
                d *= weight[rows]                           # w (sigmoid(l) - x)
            if same_dtype:
                d *= g[rows, None]                          # g w (sigmoid(l) - x)
        if not same_dtype:
            d_logits = d_logits * g[:, None]
        d_inputs = {0: lambda: d_logits @ w.T, 1: lambda: hidden.T @ d_logits, 2: lambda: d_logits.sum(axis=0)}
        return tuple(d_inputs[i]() for i in argnums)

    return vjp


defvjp_argnums(dense_bernoulli_nll, _dense_bernoulli_nll_vjp)
