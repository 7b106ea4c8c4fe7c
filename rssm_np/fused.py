"""The recurrent core as autograd primitives, with backpropagation through time written by hand.

Why: autograd records every NumPy call and replays its backward in Python, ~10-40 us apiece.
The filtering loop of model.observe makes ~25 such calls per time step, so at T = 32 the loop,
not the arithmetic, is most of a training step. Here the same math runs in plain NumPy, and we
give autograd its vector-Jacobian product (VJP) ourselves: one traced call per sequence.

The readable version stays the reference: model.observe(..., fused=False) runs the identical
equations as ordinary autograd calls, and tests/test_gradients.py proves the two equal in value
and gradient, and checks these VJPs against finite differences.

One filtering step (model.transition, model.posterior), forward:
    pre   = [h_{t-1}, z_{t-1}] W_hz + a_term_t            a_term_t = a_{t-1} W_a + b
    h_t   = GRU gates(pre, h_{t-1})                      layers.gru_gates
    u_t   = h_t W_post + e_term_t                        e_term_t = embed_t W_e + b_post
    o_t   = elu(u_t) W_out + b_out = [mean_t, s_t]
    std_t = softplus(s_t) + min_std
    z_t   = mean_t + std_t * eps_t

Backward (the chain rule read bottom-up, for t = T-1 down to 0), carrying dL/dh_t and dL/dz_t
from step t+1 back into step t:
    dz    = dL/dz_t (from outputs) + carry_z
    dmean = dL/dmean_t + dz                 dstd = dL/dstd_t + dz * eps_t
    ds    = dstd * sigmoid(s_t)             (softplus' = sigmoid)
    do    = [dmean, ds]
    du    = do W_out^T * elu'(u_t)          (elu'(u) = 1 if u > 0 else e^u = elu(u) + 1)
    de_term_t = du
    dh    = dL/dh_t (from outputs) + carry_h + du W_post^T
    dpre, dh_prev = GRU gates backward(dh)                     gru_gates_backward
    da_term_t = dpre
    [carry_h, carry_z] = dpre W_hz^T  (+ dh_prev into carry_h)
and, after the loop, every weight's gradient summed over steps as one product over B*T rows:
    dW_out = sum_t elu(u_t)^T do_t,  db_out = sum_t do_t,  dW_post = sum_t h_t^T du_t,
    dW_hz = sum_t [h_{t-1}, z_{t-1}]^T dpre_t,  dg, dbeta from the gates' dL/dy.

Shapes: B batch, T time, H deter, Z stoch, U hidden size of the posterior, 3H gate width.
"""

import numpy as onp
from autograd.extend import defvjp_argnums, primitive

from .layers import LAYER_NORM_EPS, sigmoid, softplus


def gru_gates_forward(pre, deter, ln_scale, ln_bias):
    """layers.gru_gates in plain NumPy, also returning what the backward pass needs.

        n = (pre - mean) / sigma,  sigma = sqrt(var + eps);   [r~, c~, u~] = n * g + beta
        r = sigmoid(r~),  c = tanh(r * c~),  u = sigmoid(u~ - 1),  h_t = u c + (1 - u) h_{t-1}
    """
    size = deter.shape[-1]
    centred = pre - pre.mean(axis=-1, keepdims=True)
    inv_sigma = 1.0 / onp.sqrt((centred ** 2).mean(axis=-1, keepdims=True) + LAYER_NORM_EPS)
    normed = centred * inv_sigma                            # (B, 3H)
    gates = normed * ln_scale + ln_bias                     # (B, 3H)
    reset = sigmoid(gates[:, :size])                       # (B, H)
    cand_pre = gates[:, size:2 * size]                      # (B, H)
    cand = onp.tanh(reset * cand_pre)                       # (B, H)
    update = sigmoid(gates[:, 2 * size:] - 1.0)            # (B, H)
    new_deter = update * cand + (1.0 - update) * deter      # (B, H)
    return new_deter, (deter, normed, inv_sigma, reset, cand_pre, cand, update)


def gru_gates_backward(grad_new, ln_scale, saved):
    """The VJP of the GRU gates, given dL/dh_t (B, H):

        dL/du = gh (c - h_{t-1})    dL/dh_{t-1} = gh (1 - u)    dL/dc = gh u
        dL/du~ = dL/du u (1 - u)    dL/d(r c~) = dL/dc (1 - c^2)
        dL/dr~ = dL/d(r c~) c~ r (1 - r)     dL/dc~ = dL/d(r c~) r
        dL/dg = sum_B dL/dy n       dL/dbeta = sum_B dL/dy       (dL/dy = [dL/dr~, dL/dc~, dL/du~])
        dL/dpre = (dn - mean(dn) - n mean(dn n)) / sigma,   dn = dL/dy * g    (layer norm)

    Returns dL/dpre (B, 3H), dL/dh_{t-1} (B, H) and dL/dy (B, 3H), from which the caller sums
    dL/dg and dL/dbeta (over the batch here, over batch and time in filter_sequence).
    """
    deter, normed, inv_sigma, reset, cand_pre, cand, update = saved
    grad_update = grad_new * (cand - deter)
    grad_deter = grad_new * (1.0 - update)
    grad_cand_in = grad_new * update * (1.0 - cand ** 2)
    grad_gates = onp.concatenate([grad_cand_in * cand_pre * reset * (1.0 - reset),      # r~
                                  grad_cand_in * reset,                                 # c~
                                  grad_update * update * (1.0 - update)], axis=-1)      # u~  (B, 3H)
    grad_normed = grad_gates * ln_scale
    grad_pre = inv_sigma * (grad_normed
                            - grad_normed.mean(axis=-1, keepdims=True)
                            - normed * (grad_normed * normed).mean(axis=-1, keepdims=True))
    return grad_pre, grad_deter, grad_gates


@primitive
def gru_gates(pre, deter, ln_scale, ln_bias):
    """h_t = u * c + (1 - u) * h_{t-1}, one primitive; the same math as layers.gru_gates.

    The recurrent loop uses gru_gates_forward/backward inside filter_sequence; this primitive
    exposes the gates alone so the tests can check their hand-written backward in isolation.
    """
    return gru_gates_forward(pre, deter, ln_scale, ln_bias)[0]


def _gru_gates_vjp(argnums, ans, args, kwargs):
    pre, deter, ln_scale, ln_bias = args
    saved = gru_gates_forward(pre, deter, ln_scale, ln_bias)[1]
    normed = saved[1]

    def vjp(grad_new):
        grad_pre, grad_deter, grad_gates = gru_gates_backward(grad_new, ln_scale, saved)
        grads = (grad_pre, grad_deter, (grad_gates * normed).sum(axis=0), grad_gates.sum(axis=0))
        return tuple(grads[i] for i in argnums)

    return vjp


defvjp_argnums(gru_gates, _gru_gates_vjp)


def _filter_forward(deter, stoch, action_terms, embed_terms, w_hz, ln_scale, ln_bias,
                    w_post, w_out, b_out, eps, min_std):
    """Run the filtering loop in plain NumPy; return the outputs and every step's saved values."""
    steps = action_terms.shape[1]
    size = stoch.shape[-1]
    outputs, tape = [], []
    for t in range(steps):
        gru_in = onp.concatenate([deter, stoch], axis=-1)                 # (B, H+Z)
        deter, gate_saved = gru_gates_forward(gru_in @ w_hz + action_terms[:, t], deter, ln_scale, ln_bias)
        hidden_pre = deter @ w_post + embed_terms[:, t]                   # (B, U)
        # elu; expm1 keeps the digits that exp(x) - 1 loses for small |x|
        hidden = onp.where(hidden_pre > 0, hidden_pre, onp.expm1(onp.minimum(hidden_pre, 0.0)))  # (B, U)
        out = hidden @ w_out + b_out                                      # (B, 2Z)
        mean, raw_std = out[:, :size], out[:, size:]
        std = softplus(raw_std) + min_std                                 # (B, Z)
        stoch = mean + std * eps[:, t]                                    # (B, Z)
        outputs.append(onp.concatenate([deter, stoch, mean, std], axis=-1))
        tape.append((gru_in, gate_saved, deter, hidden_pre, hidden, raw_std))
    return onp.stack(outputs, axis=1), tape                               # (B, T, H+3Z)


# autograd calls a primitive's forward and then, at once, its VJP maker with the same inputs and
# the output. The forward leaves its tape here so the VJP maker need not run the loop again; the
# `is` check on the output makes sure the tape belongs to this very call.
_last_tape = {"out": None, "tape": None}


@primitive
def filter_sequence(deter, stoch, action_terms, embed_terms, w_hz, ln_scale, ln_bias,
                    w_post, w_out, b_out, eps, min_std):
    """The whole filtering loop of model.observe as one primitive.

    deter (B, H), stoch (B, Z): the state before the first frame; action_terms (B, T, 3H);
    embed_terms (B, T, U); w_hz (H+Z, 3H); ln_scale, ln_bias (3H,); w_post (H, U);
    w_out (U, 2Z); b_out (2Z,); eps (B, T, Z).
    Returns (B, T, H + 3Z): [deter h_t, stoch z_t, posterior mean, posterior std] per step.
    """
    out, tape = _filter_forward(deter, stoch, action_terms, embed_terms, w_hz, ln_scale, ln_bias,
                                w_post, w_out, b_out, eps, min_std)
    _last_tape["out"], _last_tape["tape"] = out, tape
    return out


def _filter_sequence_vjp(argnums, ans, args, kwargs):
    (deter0, stoch0, action_terms, embed_terms, w_hz, ln_scale, ln_bias,
     w_post, w_out, b_out, eps, min_std) = args
    if _last_tape["out"] is ans:
        tape = _last_tape["tape"]
    else:
        tape = _filter_forward(*args)[1]
    _last_tape["out"], _last_tape["tape"] = None, None
    deter_size, size = deter0.shape[-1], stoch0.shape[-1]

    def vjp(grad_out):                                                    # (B, T, H+3Z)
        grad_deter_out = grad_out[..., :deter_size]
        grad_stoch_out = grad_out[..., deter_size:deter_size + size]
        grad_mean_out = grad_out[..., deter_size + size:deter_size + 2 * size]
        grad_std_out = grad_out[..., deter_size + 2 * size:]
        carry_deter = onp.zeros_like(deter0)
        carry_stoch = onp.zeros_like(stoch0)
        # Only what flows back through time is computed in the loop; the weight gradients are sums
        # over steps of (input^T grad), done after the loop as one matmul over all B*T rows.
        per_step = {"stoch": [], "std": [], "out_layer": [], "hidden_pre": [], "gates": [], "pre": []}
        for t in reversed(range(action_terms.shape[1])):
            gru_in, gate_saved, deter, hidden_pre, hidden, raw_std = tape[t]
            # z_t = mean + std * eps_t
            grad_stoch = grad_stoch_out[:, t] + carry_stoch
            grad_std = grad_std_out[:, t] + grad_stoch * eps[:, t]
            # std = softplus(s) + min_std;  [mean, s] = elu(u) W_out + b_out
            grad_out_layer = onp.concatenate([grad_mean_out[:, t] + grad_stoch, grad_std * sigmoid(raw_std)],
                                             axis=-1)                     # (B, 2Z)
            grad_hidden_pre = (grad_out_layer @ w_out.T) * onp.minimum(hidden + 1.0, 1.0)   # elu' (B, U)
            # u = h_t W_post + e_term_t
            grad_deter = grad_deter_out[:, t] + carry_deter + grad_hidden_pre @ w_post.T
            # h_t = GRU gates([h_{t-1}, z_{t-1}] W_hz + a_term_t, h_{t-1})
            grad_pre, grad_deter_prev, grad_gates = gru_gates_backward(grad_deter, ln_scale, gate_saved)
            grad_gru_in = grad_pre @ w_hz.T                                # (B, H+Z)
            carry_deter = grad_gru_in[:, :deter_size] + grad_deter_prev
            carry_stoch = grad_gru_in[:, deter_size:]
            for name, value in (("stoch", grad_stoch), ("std", grad_std), ("out_layer", grad_out_layer),
                                ("hidden_pre", grad_hidden_pre), ("gates", grad_gates), ("pre", grad_pre)):
                per_step[name].append(value)

        def rows(name):      # the per-step gradients as (B*T, F), in time order
            return onp.stack(per_step[name][::-1], axis=1).reshape(-1, per_step[name][0].shape[-1])

        def inputs(index):   # a saved forward input, every step, as (B*T, F)
            return onp.stack([step[index] for step in tape], axis=1).reshape(-1, tape[0][index].shape[-1])

        batch, steps = action_terms.shape[:2]
        normed = onp.stack([step[1][1] for step in tape], axis=1).reshape(batch * steps, -1)
        grad_gates, grad_out_layer = rows("gates"), rows("out_layer")
        all_grads = {
            0: lambda: carry_deter,
            1: lambda: carry_stoch,
            2: lambda: rows("pre").reshape(action_terms.shape),
            3: lambda: rows("hidden_pre").reshape(embed_terms.shape),
            4: lambda: inputs(0).T @ rows("pre"),                               # w_hz
            5: lambda: (grad_gates * normed).sum(axis=0),                       # ln_scale
            6: lambda: grad_gates.sum(axis=0),                                  # ln_bias
            7: lambda: inputs(2).T @ rows("hidden_pre"),                        # w_post
            8: lambda: inputs(4).T @ grad_out_layer,                            # w_out
            9: lambda: grad_out_layer.sum(axis=0),                              # b_out
            10: lambda: rows("stoch").reshape(eps.shape) * ans[..., deter_size + 2 * size:],   # eps
            11: lambda: onp.asarray(rows("std").sum(), dtype=grad_out.dtype),  # min_std
        }
        return tuple(all_grads[i]() for i in argnums)

    return vjp


defvjp_argnums(filter_sequence, _filter_sequence_vjp)
