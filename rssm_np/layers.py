"""The layers: dense, MLP, layer norm and a GRU written out by hand.

Every forward is a pure function (params, inputs) -> outputs over `autograd.numpy`, so autograd
differentiates it; each `init_<layer>(rng, ...)` builds the plain dict of arrays it reads.
Shapes (the glossary is in model.py): B rows (a batch, or B*T when time is folded in),
I input features, O output features, H deter size.
"""

import autograd.numpy as np     # traced NumPy: these layers are differentiated
import numpy as onp             # plain NumPy: initial weights and the primitives' own arithmetic
from autograd.extend import defvjp, primitive

from .utils.speed import dense_elu     # elu(dense(layer, x)) as one primitive: the same numbers, faster


def sigmoid(x):
    """sigma(x) = 1 / (1 + e^-x), written with tanh so large |x| never overflows."""
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


@primitive
def softplus(x):
    """softplus(x) = log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), its derivative sigma(x).

    Used for standard deviations (smooth and positive) and in the Bernoulli likelihood, where it
    runs on every pixel of every frame. It is a primitive with its derivative written here because
    NumPy's logaddexp and log1p are ~5x slower than this form (log1p is not vectorised), and
    autograd would trace five calls for it. log(1 + e) loses e below ~1e-7 in float32: an
    absolute error that small is invisible in a loss summed over pixels.
    """
    return onp.maximum(x, 0.0) + onp.log(1.0 + onp.exp(-onp.abs(x)))


defvjp(softplus, lambda ans, x: lambda g: g * onp.exp(x - ans))   # e^(x - softplus(x)) = sigma(x)


def mean_of(x, axis=None, keepdims=False):
    """np.mean as sum / count with a Python int count.

    autograd's own backward of np.mean divides by a NumPy integer, which NumPy 2 promotes to
    float64: every gradient behind it would silently run at double precision and half speed.
    """
    count = x.size if axis is None else x.shape[axis]
    return np.sum(x, axis=axis, keepdims=keepdims) / int(count)


@primitive
def elu(x):
    """elu(x) = x if x > 0 else e^x - 1: like ReLU, but smooth and never stuck at zero gradient.

    Its derivative is 1 for x > 0 and e^x = elu(x) + 1 otherwise. A primitive with that derivative
    written here, because autograd's backward of np.maximum builds float64 masks, which would
    turn every float32 gradient behind an ELU into float64.

    Written as max(x, 0) + (e^min(x, 0) - 1): one of the two terms is always an exact 0, so this is
    onp.where(x > 0, x, e^x - 1) to the bit (tests/test_fast_path.py compares them on float32
    values spread over the whole range), but NumPy's where picks per element with a branch that
    random signs mispredict, several times slower (`python -m rssm_np.lab.bench --pieces`).
    """
    return onp.maximum(x, 0.0) + (onp.exp(onp.minimum(x, 0.0)) - 1.0)


defvjp(elu, lambda ans, x: lambda g: g * onp.minimum(ans + 1.0, 1.0))   # 1 if x > 0, else e^x = ans + 1


def init_dense(rng, in_size, out_size, dtype="float32"):
    """Glorot-uniform weights keep the activations' scale the same from layer to layer."""
    limit = (6.0 / (in_size + out_size)) ** 0.5
    return {
        "w": rng.uniform(-limit, limit, size=(in_size, out_size)).astype(dtype),
        "b": np.zeros(out_size, dtype=dtype),
    }


def dense(layer, x):
    """y = x W + b.     x (B, I), W (I, O) -> y (B, O)

    Inputs must be 2-D: a 3-D (B, T, I) @ (I, O) product makes NumPy skip BLAS, so callers fold
    time into the batch first.
    """
    return x @ layer["w"] + layer["b"]                      # (B, O)


def init_mlp(rng, sizes, dtype="float32"):
    """An MLP with layer sizes e.g. [I, 256, 256, O]; a list of dense layers."""
    return [init_dense(rng, i, o, dtype) for i, o in zip(sizes[:-1], sizes[1:])]


def mlp(layers, x):
    """y = W_n elu(... elu(W_1 x + b_1) ...) + b_n: ELU between layers, none after the last.

    x (..., I) -> y (..., O). Inputs with time, (B, T, I), are folded into B*T rows first (see dense).
    """
    if x.ndim > 2:
        return mlp(layers, x.reshape(-1, x.shape[-1])).reshape(x.shape[:-1] + (-1,))
    for layer in layers[:-1]:
        x = dense_elu(x, layer["w"], layer["b"])            # elu(dense(layer, x)), as one traced call (B, hidden)
    return dense(layers[-1], x)                             # (B, O)


LAYER_NORM_EPS = 1e-3


def layer_norm(x, scale, bias):
    """LN(x) = (x - mean(x)) / sqrt(var(x) + eps) * scale + bias, over the last axis.

    Normalising the GRU's gate pre-activations keeps them in the range where sigmoid and tanh
    still pass gradient, which lets a larger learning rate train stably (as in DreamerV2).
    """
    centred = x - mean_of(x, axis=-1, keepdims=True)
    var = mean_of(centred ** 2, axis=-1, keepdims=True)
    return centred / np.sqrt(var + LAYER_NORM_EPS) * scale + bias


def init_gru(rng, input_size, deter_size, dtype="float32"):
    """One weight matrix maps [h, input] to all three gates' pre-activations at once (3H wide)."""
    layer = init_dense(rng, deter_size + input_size, 3 * deter_size, dtype)
    layer["ln_scale"] = np.ones(3 * deter_size, dtype=dtype)
    layer["ln_bias"] = np.zeros(3 * deter_size, dtype=dtype)
    return layer


def gru_gates(pre, deter, ln_scale, ln_bias):
    """The GRU's nonlinear part, from gate pre-activations to the new memory.

        [r~, c~, u~] = LN(pre)
        r = sigma(r~)                        reset gate: how much of c~ to let through
        c = tanh(r * c~)                     candidate memory
        u = sigma(u~ - 1)                    update gate; the -1 starts it mostly closed (keep h)
        h_t = u * c + (1 - u) * h_{t-1}

    pre (B, 3H), deter h_{t-1} (B, H) -> h_t (B, H).
    As in DreamerV2's layer-norm GRU, the reset gate acts on the candidate's pre-activation (not on
    h before the matmul), so all three gates come from one matrix product.
    """
    normed = layer_norm(pre, ln_scale, ln_bias)             # (B, 3H)
    reset_pre, cand_pre, update_pre = np.split(normed, 3, axis=-1)   # (B, H) each; one traced call
    reset = sigmoid(reset_pre)                              # (B, H)
    cand = np.tanh(reset * cand_pre)                        # (B, H)
    update = sigmoid(update_pre - 1.0)                      # (B, H)
    return update * cand + (1.0 - update) * deter          # (B, H)
