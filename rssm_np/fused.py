"""The filtering loop of model.observe as one autograd primitive, with its backward written by hand.

Why: autograd records every NumPy call and replays its backward in Python, ~10-40 us apiece.
The plain loop (model.obs_step, T times) makes ~25 such calls per time step, so at T = 32 the
loop, not the arithmetic, is most of a training step. Here the same math runs in plain NumPy,
and we give autograd its vector-Jacobian product (VJP) ourselves: one traced call per sequence.

The readable version stays the reference: model.observe(..., fused_core=False) runs obs_step as
ordinary autograd calls, and tests/test_gradients.py proves the two equal in value and gradient
and checks this backward against finite differences. `python demo.py --plain` trains on it.

One filtering step is model.obs_step without its prior (the prior feeds nothing forward, so
model.observe runs it once over all frames after the loop). The parts of the two matrix products
that do not depend on the recurrence are computed for all frames before the loop (see observe):
    action_term_t = a_{t-1} W_a + b             the GRU's [h, z, a] W + b, split as [h, z] W_hz + a W_a + b
    embed_term_t  = embed_t W_e + b_post        the posterior's W [h; e] + b, split as h W_h + e W_e + b
Forward, for t = 0 .. T-1 (step_forward):
    gru_in     = [h_{t-1}, z_{t-1}]
    gate_pre   = gru_in W_hz + action_term_t
    h_t        = gru_gates(gate_pre, h_{t-1})                    (layers.gru_gates)
    hidden_pre = h_t W_h + embed_term_t
    hidden     = elu(hidden_pre)
    head       = hidden W_out + b_out = [mean_t, std_pre]
    std_t      = softplus(std_pre) + min_std
    z_t        = mean_t + std_t * eps_t
Backward, for t = T-1 .. 0 (step_backward), the same lines read bottom-up. d_x is dL/dx; the
loss reaches z_t and h_t both directly (d_*_out, from the decoder, prior and KL) and through the
next step (carry_*):
    d_stoch      = d_stoch_out_t + carry_stoch                              z_t = mean_t + std_t * eps_t
    d_std        = d_std_out_t + d_stoch * eps_t                            (same line)
    d_mean       = d_mean_out_t + d_stoch                                   (same line)
    d_std_pre    = d_std * sigmoid(std_pre)                                 std_t = softplus(std_pre) + min_std
    d_head       = [d_mean, d_std_pre]                                      head = [mean_t, std_pre]
    d_hidden_pre = d_head W_out^T * elu'(hidden_pre)                        head = elu(hidden_pre) W_out + b_out
    d_deter      = d_deter_out_t + carry_deter + d_hidden_pre W_h^T         hidden_pre = h_t W_h + embed_term_t
    d_gate_pre, d_deter_prev = gru_gates_backward(d_deter)                  h_t = gru_gates(gate_pre, h_{t-1})
    d_gru_in     = d_gate_pre W_hz^T                                        gate_pre = gru_in W_hz + action_term_t
    carry_deter, carry_stoch = d_gru_in split as [h, z], + d_deter_prev     gru_in = [h_{t-1}, z_{t-1}]
Each weight's gradient is a sum over steps, done after the loop as one product over B*T rows:
    d_W_hz = sum_t gru_in^T d_gate_pre    d_W_h = sum_t h_t^T d_hidden_pre    d_W_out = sum_t hidden^T d_head
    d_b_out = sum_t d_head    d_action_term_t = d_gate_pre    d_embed_term_t = d_hidden_pre
    d_ln_scale, d_ln_bias from the gates' d_gates (see gru_gates_backward).
The "rnn" model's head is a point (point=True): head = mean_t, std_t = 1, z_t = mean_t, so its
backward is d_head = d_mean_out_t + d_stoch and the std lines drop out. The "ssm" has no GRU and
no memory (ln_scale = ln_bias = None): gru_in = z_{t-1}, h_t = elu(gate_pre) with W_hz = W_z, so
d_gate_pre = d_deter * elu'(gate_pre), carry_stoch = d_gate_pre W_z^T and carry_deter = 0.
The initial state gets its gradient, the carries out of the first step (dream below starts from
filtered states, which training differentiates); eps and min_std get none: training never
differentiates its noise or its constants (asking for one raises a clear error).

Also here, the bound's other fast piece: decode_nll, model.decode and the Bernoulli likelihood
with the decoder's last layer and the likelihood as one primitive (utils.speed.dense_bernoulli_nll),
which model.negative_elbo calls when config.fused; its numbers are the readable lines' exactly.

Shapes (the glossary is in model.py): B batch, T time, H deter, Z stoch, U posterior hidden width,
D pixels.
"""

import autograd.numpy as np          # traced NumPy: only in observe(), the wrapper around the primitive
import numpy as onp                  # plain NumPy: autograd never sees inside the primitive
from autograd.extend import defvjp_argnums, primitive

from . import variants
from .layers import LAYER_NORM_EPS, softplus
from .utils.speed import dense_bernoulli_nll, dense_elu


def row_mean(x):
    """x.mean(axis=-1, keepdims=True), the same numbers without ndarray.mean's Python wrapper.

    NumPy's mean is a Python function (sum, then divide by the count) that costs more than the
    arithmetic on a (B, 3H) array, and the loop calls it four times a step. Dividing the float32
    sum by the count in float32, as here, or in float64 and rounding, as NumPy does, gives the
    same float32 (a double-precision quotient rounds to the correctly rounded single one).
    """
    return x.sum(axis=-1, keepdims=True) / x.shape[-1]


def gru_gates_forward(gate_pre, deter, ln_scale, ln_bias):
    """layers.gru_gates in plain NumPy, also returning the values its backward needs (a dict).

        n = (gate_pre - mean) / sigma,  sigma = sqrt(var + eps);   [r~, c~, u~] = n * g + beta
        r = sigmoid(r~),  c = tanh(r * c~),  u = sigmoid(u~ - 1),  h_t = u c + (1 - u) h_{t-1}
    """
    size = deter.shape[-1]
    centred = gate_pre - row_mean(gate_pre)
    inv_sigma = 1.0 / onp.sqrt(row_mean(centred ** 2) + LAYER_NORM_EPS)
    normed = centred * inv_sigma                            # n (B, 3H)
    gates = normed * ln_scale + ln_bias                     # [r~, c~, u~] (B, 3H)
    reset = _sigmoid(gates[:, :size])                      # r (B, H)
    cand_pre = gates[:, size:2 * size]                      # c~ (B, H)
    cand = onp.tanh(reset * cand_pre)                       # c (B, H)
    update = _sigmoid(gates[:, 2 * size:] - 1.0)           # u (B, H)
    new_deter = update * cand + (1.0 - update) * deter      # h_t (B, H)
    saved = {"deter_prev": deter, "normed": normed, "inv_sigma": inv_sigma, "reset": reset,
             "cand_pre": cand_pre, "cand": cand, "update": update}
    return new_deter, saved


def gru_gates_backward(d_new_deter, ln_scale, saved):
    """The VJP of the GRU gates, given dL/dh_t (B, H), line by line against gru_gates_forward:

        d_update   = d_h (c - h_{t-1})                h_t = u c + (1 - u) h_{t-1}
        d_deter    = d_h (1 - u)                      (same line)
        d_cand_in  = d_h u (1 - c^2)                  c = tanh(r c~), d(r c~)
        d_r~ = d_cand_in c~ r (1 - r),  d_c~ = d_cand_in r,  d_u~ = d_update u (1 - u)
        d_normed   = [d_r~, d_c~, d_u~] * g           [r~, c~, u~] = n g + beta
        d_gate_pre = (d_n - mean(d_n) - n mean(d_n n)) / sigma          layer norm

    Returns d_gate_pre (B, 3H), d_deter_prev (B, H) and d_gates = [d_r~, d_c~, d_u~] (B, 3H), from
    which the caller sums d_ln_scale = sum d_gates n and d_ln_bias = sum d_gates over the rows.
    """
    deter, normed, inv_sigma = saved["deter_prev"], saved["normed"], saved["inv_sigma"]
    reset, cand_pre, cand, update = saved["reset"], saved["cand_pre"], saved["cand"], saved["update"]
    d_update = d_new_deter * (cand - deter)
    d_deter_prev = d_new_deter * (1.0 - update)
    d_cand_in = d_new_deter * update * (1.0 - cand ** 2)
    d_gates = onp.concatenate([d_cand_in * cand_pre * reset * (1.0 - reset),      # r~
                               d_cand_in * reset,                                 # c~
                               d_update * update * (1.0 - update)], axis=-1)      # u~  (B, 3H)
    d_normed = d_gates * ln_scale
    d_gate_pre = inv_sigma * (d_normed
                              - row_mean(d_normed)
                              - normed * row_mean(d_normed * normed))
    return d_gate_pre, d_deter_prev, d_gates


@primitive
def gru_gates(gate_pre, deter, ln_scale, ln_bias):
    """h_t = u * c + (1 - u) * h_{t-1}, one primitive; the same math as layers.gru_gates.

    The recurrent loop calls gru_gates_forward/backward directly; this primitive exposes the gates
    alone so that the tests can check their hand-written backward in isolation.
    """
    return gru_gates_forward(gate_pre, deter, ln_scale, ln_bias)[0]


def _gru_gates_vjp(argnums, ans, args, kwargs):
    gate_pre, deter, ln_scale, ln_bias = args
    saved = gru_gates_forward(gate_pre, deter, ln_scale, ln_bias)[1]

    def vjp(d_new_deter):
        d_gate_pre, d_deter_prev, d_gates = gru_gates_backward(d_new_deter, ln_scale, saved)
        grads = (d_gate_pre, d_deter_prev, (d_gates * saved["normed"]).sum(axis=0), d_gates.sum(axis=0))
        return tuple(grads[i] for i in argnums)

    return vjp


defvjp_argnums(gru_gates, _gru_gates_vjp)


def _sigmoid(x):
    """layers.sigmoid in plain NumPy, 0.5 (tanh(x / 2) + 1): the same numbers, without the traced
    NumPy's dispatch on every call (the loop calls it three times a step)."""
    return 0.5 * (onp.tanh(0.5 * x) + 1.0)


_softplus = softplus.fun     # layers.softplus's own function, called without its primitive's wrapper


def _elu(x):
    """elu, as max(x, 0) + expm1(min(x, 0)): where(x > 0, x, expm1(x)) to the bit, without where's
    per-element branch (see layers.elu); expm1 keeps the digits that exp(x) - 1 loses for small |x|."""
    return onp.maximum(x, 0.0) + onp.expm1(onp.minimum(x, 0.0))


def step_forward(deter, stoch, action_term, embed_term, weights, eps, min_std, point=False):
    """One filtering step (the module docstring's forward lines). Returns h_t, z_t, mean_t, std_t
    and the step's tape entry: the values step_backward reads, by name.

    point: the "rnn" model's head, head = mean_t, std_t = 1 and z_t = mean_t (no noise).
    """
    w_hz, ln_scale, ln_bias, w_post, w_out, b_out = weights
    size = stoch.shape[-1]
    if ln_scale is None:            # the "ssm": h_t = elu(z_{t-1} W_z + (a_{t-1} W_a + b)), no h_{t-1}
        gru_in = stoch                                                       # (B, Z)
        new_deter, gates = _elu(stoch @ w_hz + action_term), None             # (B, H)
    else:
        gru_in = onp.concatenate([deter, stoch], axis=-1)                    # (B, H+Z)
        gate_pre = gru_in @ w_hz + action_term                               # (B, 3H)
        new_deter, gates = gru_gates_forward(gate_pre, deter, ln_scale, ln_bias)  # (B, H)
    hidden_pre = new_deter @ w_post + embed_term                             # (B, U)
    hidden = _elu(hidden_pre)                                                # (B, U)
    head = hidden @ w_out + b_out                                            # (B, 2Z), or (B, Z) if point
    if point:
        mean, std_pre, std = head, None, onp.ones_like(head)                 # z_t = mean_t
        new_stoch = mean
    else:
        mean, std_pre = head[:, :size], head[:, size:]                       # (B, Z) each
        std = _softplus(std_pre) + min_std                                   # (B, Z)
        new_stoch = mean + std * eps                                         # (B, Z)
    entry = {"gates": gates, "deter": new_deter, "hidden": hidden, "std_pre": std_pre}
    return new_deter, new_stoch, mean, std, entry


def step_backward(d_out, carry_deter, carry_stoch, entry, weights, eps, first_step):
    """One step of backpropagation through time (the module docstring's backward lines).

    d_out: this step's d_deter_out, d_stoch_out, d_mean_out, d_std_out (B, .) each;
    carry_deter, carry_stoch (B, H), (B, Z) from step t+1. Returns the carries into step t-1
    (None at the first step: the initial state gets no gradient) and the step's gradients that
    the weight sums need, by name.
    """
    w_hz, ln_scale, ln_bias, w_post, w_out, b_out = weights
    d_deter_out, d_stoch_out, d_mean_out, d_std_out = d_out
    d_stoch = d_stoch_out + carry_stoch                                      # z_t = mean_t + std_t * eps_t
    if entry["std_pre"] is None:                                             # point head: z_t = mean_t = head
        d_head = d_mean_out + d_stoch                                        # (B, Z); std_t = 1 is a constant
    else:
        d_std = d_std_out + d_stoch * eps                                    # (same line)
        d_head = onp.concatenate([d_mean_out + d_stoch,                      # d_mean: (same line)
                                  d_std * _sigmoid(entry["std_pre"])],       # std_t = softplus(std_pre) + min_std
                                 axis=-1)                                    # head = [mean_t, std_pre]  (B, 2Z)
    d_hidden_pre = (d_head @ w_out.T) * onp.minimum(entry["hidden"] + 1.0, 1.0)  # head = elu(hidden_pre) W_out + b_out
    d_deter = d_deter_out + carry_deter + d_hidden_pre @ w_post.T            # hidden_pre = h_t W_h + embed_term_t
    if entry["gates"] is None:      # the "ssm": h_t = elu(gate_pre), and h_{t-1} was not an input
        d_gate_pre = d_deter * onp.minimum(entry["deter"] + 1.0, 1.0)        # elu's backward
        grads = {"head": d_head, "hidden_pre": d_hidden_pre, "gate_pre": d_gate_pre}
        if first_step:
            return None, None, grads
        return onp.zeros_like(carry_deter), d_gate_pre @ w_hz.T, grads        # gate_pre = z_{t-1} W_z + ...
    d_gate_pre, d_deter_prev, d_gates = gru_gates_backward(d_deter, ln_scale, entry["gates"])  # h_t = gru_gates(...)
    grads = {"head": d_head, "hidden_pre": d_hidden_pre, "gate_pre": d_gate_pre, "gates": d_gates}
    if first_step:
        return None, None, grads
    d_gru_in = d_gate_pre @ w_hz.T                                           # gate_pre = gru_in W_hz + action_term_t
    size = carry_deter.shape[-1]
    return d_gru_in[:, :size] + d_deter_prev, d_gru_in[:, size:], grads      # gru_in = [h_{t-1}, z_{t-1}]


class Tape:
    """What the forward pass keeps for the backward: one dict of named arrays per step.

    An explicit object the caller creates and passes in (no global state): the primitive's
    forward fills it and its VJP, which autograd builds right after the forward, reads it, so the
    loop runs once. Untraced callers pass none and nothing is kept.
    """

    def __init__(self):
        self.steps = []


@primitive
def filter_sequence(deter, stoch, action_terms, embed_terms, w_hz, ln_scale, ln_bias,
                    w_post, w_out, b_out, eps, min_std, tape=None, point=False):
    """The filtering loop, step_forward for t = 0 .. T-1, as one primitive.

    deter h_{-1} (B, H), stoch z_{-1} (B, Z): the state before the first frame; action_terms
    (B, T, 3H); embed_terms (B, T, U); w_hz (H+Z, 3H); ln_scale, ln_bias (3H,); w_post (H, U);
    w_out (U, 2Z); b_out (2Z,); eps (B, T, Z); tape: a Tape to fill for the backward, or None;
    point: the "rnn" model's point head (w_out (U, Z): z_t = mean_t, std_t = 1, eps unused).
    ln_scale = ln_bias = None: the "ssm" model's step, h_t = elu(z_{t-1} w_hz + action_term_t) with
    w_hz (Z, H) and action_terms (B, T, H), which reads no h_{t-1}.
    Returns (B, T, H + 3Z): [h_t, z_t, mean_t, std_t] per step.
    """
    weights = (w_hz, ln_scale, ln_bias, w_post, w_out, b_out)
    outputs = []
    for t in range(action_terms.shape[1]):
        deter, stoch, mean, std, entry = step_forward(deter, stoch, action_terms[:, t], embed_terms[:, t],
                                                      weights, eps[:, t], min_std, point)
        outputs.append(onp.concatenate([deter, stoch, mean, std], axis=-1))
        if tape is not None:
            tape.steps.append(entry)
    return onp.stack(outputs, axis=1)                                         # (B, T, H+3Z)


# filter_sequence's arguments, by position, and which of them have a gradient
_ARGUMENTS = ("deter", "stoch", "action_terms", "embed_terms", "w_hz", "ln_scale", "ln_bias",
              "w_post", "w_out", "b_out", "eps", "min_std")
_NOT_DIFFERENTIATED = ("eps", "min_std")


def _filter_sequence_vjp(argnums, ans, args, kwargs):
    for i in argnums:
        if _ARGUMENTS[i] in _NOT_DIFFERENTIATED:
            raise NotImplementedError(
                f"fused.filter_sequence has no gradient for its argument '{_ARGUMENTS[i]}': training never "
                f"differentiates its noise or min_std; use model.observe(..., fused_core=False) to "
                f"differentiate it")
    deter0, stoch0, action_terms, embed_terms, w_hz, ln_scale, ln_bias, w_post, w_out, b_out, eps, min_std = args
    tape = kwargs.get("tape")
    if tape is None or len(tape.steps) != action_terms.shape[1]:
        tape = Tape()                           # called without a filled tape: run the forward again
        filter_sequence(*args, tape=tape, point=kwargs.get("point", False))
    weights = (w_hz, ln_scale, ln_bias, w_post, w_out, b_out)
    deter_size, size = deter0.shape[-1], stoch0.shape[-1]
    ends = [deter_size, deter_size + size, deter_size + 2 * size]
    memory = ln_scale is not None                                             # the ssm's step reads no h_{t-1}
    initial = any(_ARGUMENTS[i] in ("deter", "stoch") for i in argnums)      # carry out of the first step too

    def vjp(d_outputs):                                                       # (B, T, H+3Z)
        d_deter_out, d_stoch_out, d_mean_out, d_std_out = onp.split(d_outputs, ends, axis=-1)
        carry_deter, carry_stoch = onp.zeros_like(deter0), onp.zeros_like(stoch0)
        per_step = []
        for t in reversed(range(action_terms.shape[1])):
            d_out = (d_deter_out[:, t], d_stoch_out[:, t], d_mean_out[:, t], d_std_out[:, t])
            carry_deter, carry_stoch, grads = step_backward(d_out, carry_deter, carry_stoch, tape.steps[t],
                                                            weights, eps[:, t], first_step=t == 0 and not initial)
            per_step.append(grads)
        per_step.reverse()

        stacked = {}

        def rows(name):              # one named gradient of every step as (B*T, F), rows in (b, t) order, stacked once
            if name not in stacked:
                values = [step[name] for step in per_step]
                stacked[name] = onp.stack(values, axis=1).reshape(-1, values[0].shape[-1])
            return stacked[name]

        def taped(value_of):         # a value the forward kept at every step, as (B*T, F)
            values = [value_of(step) for step in tape.steps]
            return onp.stack(values, axis=1).reshape(-1, values[0].shape[-1])

        def gru_in_rows():           # every step's gru_in = [h_{t-1}, z_{t-1}] (the ssm: z_{t-1}) as (B*T, F),
            columns = slice(0 if memory else deter_size, deter_size + size)   # read from the outputs: no stack
            first = onp.concatenate([deter0, stoch0] if memory else [stoch0], axis=-1)[:, None]   # (B, 1, F)
            return onp.concatenate([first, ans[:, :-1, columns]], axis=1).reshape(-1, first.shape[-1])

        def d_ln(scale):             # the layer norm's d_ln_scale (scale) or d_ln_bias, summed over rows
            d_gates = rows("gates")
            if not scale:
                return d_gates.sum(axis=0)
            return (d_gates * taped(lambda step: step["gates"]["normed"])).sum(axis=0)

        d_inputs = {
            "deter": lambda: carry_deter,                                     # d h_{-1}, out of step 0
            "stoch": lambda: carry_stoch,                                     # d z_{-1}
            "action_terms": lambda: rows("gate_pre").reshape(action_terms.shape),
            "embed_terms": lambda: rows("hidden_pre").reshape(embed_terms.shape),
            "w_hz": lambda: gru_in_rows().T @ rows("gate_pre"),
            "ln_scale": lambda: d_ln(True),
            "ln_bias": lambda: d_ln(False),
            "w_post": lambda: ans[..., :deter_size].reshape(-1, deter_size).T @ rows("hidden_pre"),   # h_t: outputs
            "w_out": lambda: taped(lambda step: step["hidden"]).T @ rows("head"),
            "b_out": lambda: rows("head").sum(axis=0),
        }
        return tuple(d_inputs[_ARGUMENTS[i]]() for i in argnums)

    return vjp


defvjp_argnums(filter_sequence, _filter_sequence_vjp)


def observe(params, config, state, prev_actions, embed, eps=None):
    """model.observe's loop, fused: the same (B, T, .) deter, stoch, mean, std of the posterior,
    for the "rssm", the "rnn" (whose head is a point) and the "ssm" (no memory): see filter_sequence.

    Computes the two terms that do not depend on the recurrence for all frames at once (see the
    module docstring), then runs filter_sequence. state {"deter" (B, H), "stoch" (B, Z)};
    prev_actions (B, T, A); embed (B, T, E); eps (B, T, Z) or None for the posterior mean.
    """
    batch, steps = embed.shape[:2]
    post = params["posterior"]
    embed_terms = (embed.reshape(batch * steps, -1) @ post["w_embed"]
                   + post["b"]).reshape(batch, steps, -1)                              # (B, T, U)
    if eps is None:
        eps = onp.zeros((batch, steps, config.stoch_size), dtype=config.dtype)       # z = mean + std * 0
    return _loop(params, config, state, prev_actions, post["w_deter"], embed_terms, post["out"], eps)


def dream(params, config, state, actions):
    """img_step for k = 0 .. K-1 on the prior's mean (no noise), fused: the filtering loop with the
    prior's MLP where the posterior's stands. filter_sequence's step, fed the prior's layers,

        h_k = GRU(h_{k-1}, z_{k-1}, a_{k-1})            gate_pre = [h, z] W_hz + (a W_a + b)
        hidden = elu(h_k W_1 + b_1)                     hidden_pre = h_k W_post + embed_term_k
        [mean_k, std_k] = head(hidden W_2 + b_2)        head = hidden W_out + b_out
        z_k = mean_k + std_k * 0                        eps = 0

    is model.img_step line for line (model.prior is MLP(h) = elu(h W_1 + b_1) W_2 + b_2, then the
    head), for every model (variants). observation overshooting's dreams run on it (levers.py).
    state {"deter" (N, H), "stoch" (N, Z)}; actions (N, K, A) -> a state of (N, K, .) arrays.
    """
    rows, steps = actions.shape[:2]
    hidden, out = params["prior"]                                                   # the prior's two layers
    bias_terms = onp.ones((rows, steps, 1), dtype=config.dtype) * hidden["b"]         # b_1 at every step (N, K, U)
    eps = onp.zeros((rows, steps, config.stoch_size), dtype=config.dtype)            # z = mean + std * 0
    return _loop(params, config, state, actions, hidden["w"], bias_terms, out, eps)


def _loop(params, config, state, actions, hidden_w, hidden_terms, head, eps):
    """filter_sequence from state over actions (N, K, A), with the hidden layer hidden_w (H, U), its
    per-step terms hidden_terms (N, K, U) and the head layer {"w", "b"}; the transition's action
    terms a W_a + b are computed for all steps first. Returns the state of (N, K, .) arrays."""
    rows, steps, action_size = actions.shape
    memory = variants.has_memory(config)
    transition = params["gru" if memory else "ssm"]
    # W = [W_hz; W_a], as one traced split: its backward is one concatenate, where two slices
    # W[:-A], W[-A:] would each scatter their gradient into a zero-filled copy of W (ufunc.at).
    # (The ssm's W = [W_z; W_a]: its h_t = elu([z_{t-1}, a_{t-1}] W + b) has no h_{t-1}.)
    w_hz, w_a = np.split(transition["w"], [transition["w"].shape[0] - action_size])   # (H+Z, 3H), (A, 3H)
    action_terms = (actions.reshape(rows * steps, action_size) @ w_a
                    + transition["b"]).reshape(rows, steps, -1)                      # (N, K, 3H)
    deter0 = state["deter"] if memory else onp.zeros((rows, config.deter_size), dtype=config.dtype)
    out = filter_sequence(deter0, state["stoch"], action_terms, hidden_terms, w_hz,
                          transition.get("ln_scale"), transition.get("ln_bias"), hidden_w, head["w"], head["b"],
                          eps, config.min_std, tape=Tape(), point=variants.is_point(config))
    deter_size, size = config.deter_size, config.stoch_size
    deter, stoch, mean, std = np.split(out, [deter_size, deter_size + size, deter_size + 2 * size], axis=-1)
    return {"deter": deter, "stoch": stoch, "mean": mean, "std": std}                # (N, K, .)


def decode_nll(params, config, state, pixels, weight=None):
    """-log p(x_t | h_t, z_t) per frame: model.decode, then distributions.bernoulli_nll, with the
    decoder's last layer and the likelihood as one primitive (utils.speed.dense_bernoulli_nll).

    It fuses these two lines of model.negative_elbo (the readable path, config.fused=False):
        logits = decode(params, config, post)                 # the decoder: layers.mlp, whose last
        nll = bernoulli_nll(logits, pixels, weight)           #   line, logits = hidden W + b, moves here
    The same value and the same gradient, to the bit (tests/test_fast_path.py).
    state {"deter", "stoch"} (B, T, .); pixels (B, T, D); weight (B, T, D) or None -> (B, T).
    """
    layers = params["decoder"]
    features = variants.features(config, state["deter"], state["stoch"])        # (B, T, F)
    batch, steps = features.shape[:2]
    hidden = features.reshape(batch * steps, -1)                                # (B*T, F), as layers.mlp
    for layer in layers[:-1]:
        hidden = dense_elu(hidden, layer["w"], layer["b"])                      # (B*T, U), as layers.mlp
    rows = batch * steps
    nll = dense_bernoulli_nll(hidden, layers[-1]["w"], layers[-1]["b"], pixels.reshape(rows, -1),
                              None if weight is None else weight.reshape(rows, -1), saved={})  # (B*T,)
    return nll.reshape(batch, steps)                                            # (B, T)
