"""The GRU's gates as one autograd primitive, with its backward pass written by hand.

`layers.gru_gates` is the readable version: about thirty NumPy calls, each of which autograd
records and replays in Python at ~10-40 us apiece. Here the same math runs as a single primitive
whose vector-Jacobian product (VJP) we derive ourselves, so the recurrent loop traces one call
instead of thirty. tests/test_gradients.py proves it equal to `layers.gru_gates` in value and
gradient, and checks the gradient against finite differences.

Forward (see layers.gru_gates):
    n = (pre - mean) / sigma,  sigma = sqrt(var + eps)        (layer norm, before scale/bias)
    y = n * g + beta = [r~, c~, u~]
    r = sigmoid(r~),  c = tanh(r * c~),  u = sigmoid(u~ - 1)
    h_t = u * c + (1 - u) * h_{t-1}

Backward, given dL/dh_t = gh (the chain rule, one line per forward line, read bottom-up):
    dL/du      = gh * (c - h_{t-1})          dL/dh_{t-1} = gh * (1 - u)
    dL/dc      = gh * u
    dL/du~     = dL/du * u (1 - u)
    dL/d(r c~) = dL/dc * (1 - c^2)
    dL/dr~     = dL/d(r c~) * c~ * r (1 - r)     dL/dc~ = dL/d(r c~) * r
    dL/dy      = [dL/dr~, dL/dc~, dL/du~]
    dL/dg      = sum_B dL/dy * n                 dL/dbeta = sum_B dL/dy
    dL/dpre    = (dn - mean(dn) - n * mean(dn * n)) / sigma,   dn = dL/dy * g

Shapes: B batch, H deter size; pre (B, 3H), deter (B, H), ln_scale and ln_bias (3H,).
"""

import numpy as onp
from autograd.extend import defvjp_argnums, primitive

from .layers import LAYER_NORM_EPS


def _sigmoid(x):
    return 0.5 * (onp.tanh(0.5 * x) + 1.0)


def _forward(pre, deter, ln_scale, ln_bias):
    """Plain-NumPy forward that also returns what the backward pass needs."""
    size = deter.shape[-1]
    centred = pre - pre.mean(axis=-1, keepdims=True)
    inv_sigma = 1.0 / onp.sqrt((centred ** 2).mean(axis=-1, keepdims=True) + LAYER_NORM_EPS)
    normed = centred * inv_sigma                            # (B, 3H)
    gates = normed * ln_scale + ln_bias                     # (B, 3H)
    reset = _sigmoid(gates[:, :size])                       # (B, H)
    cand_pre = gates[:, size:2 * size]                      # (B, H)
    cand = onp.tanh(reset * cand_pre)                       # (B, H)
    update = _sigmoid(gates[:, 2 * size:] - 1.0)            # (B, H)
    new_deter = update * cand + (1.0 - update) * deter      # (B, H)
    saved = (normed, inv_sigma, reset, cand_pre, cand, update)
    return new_deter, saved


@primitive
def gru_gates(pre, deter, ln_scale, ln_bias):
    """h_t = u * c + (1 - u) * h_{t-1} from the gate pre-activations; see layers.gru_gates."""
    return _forward(pre, deter, ln_scale, ln_bias)[0]


def _gru_gates_vjp(argnums, ans, args, kwargs):
    pre, deter, ln_scale, ln_bias = args
    _, (normed, inv_sigma, reset, cand_pre, cand, update) = _forward(pre, deter, ln_scale, ln_bias)

    def vjp(grad_new):                                      # grad_new = dL/dh_t (B, H)
        grad_update = grad_new * (cand - deter)
        grad_deter = grad_new * (1.0 - update)
        grad_cand = grad_new * update
        grad_update_pre = grad_update * update * (1.0 - update)
        grad_cand_in = grad_cand * (1.0 - cand ** 2)
        grad_reset_pre = grad_cand_in * cand_pre * reset * (1.0 - reset)
        grad_cand_pre = grad_cand_in * reset
        grad_gates = onp.concatenate([grad_reset_pre, grad_cand_pre, grad_update_pre], axis=-1)  # (B, 3H)
        grad_normed = grad_gates * ln_scale
        grad_pre = inv_sigma * (grad_normed
                                - grad_normed.mean(axis=-1, keepdims=True)
                                - normed * (grad_normed * normed).mean(axis=-1, keepdims=True))
        grads = {0: grad_pre, 1: grad_deter,
                 2: (grad_gates * normed).sum(axis=0), 3: grad_gates.sum(axis=0)}
        return tuple(grads[i] for i in argnums)

    return vjp


defvjp_argnums(gru_gates, _gru_gates_vjp)
