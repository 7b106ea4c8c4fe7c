"""The Recurrent State Space Model: encoder, transition, prior, posterior, decoder, and the loss.

    embed_t = enc(x_t)                                   encoder
    h_t     = GRU(h_{t-1}, z_{t-1}, a_{t-1})             transition (deterministic memory)
    z_t     ~ p(z_t | h_t)                               prior: dreams without seeing
    z_t     ~ q(z_t | h_t, x_t)                          posterior: corrects with the image
    x_t     ~ p(x_t | h_t, z_t)                          decoder
    loss    = mean_t [ -log p(x_t | h_t, z_t) + KL(q(z_t | h_t, x_t) || p(z_t | h_t)) ]

Shapes: B batch, T time, C context frames, K imagined steps, H deter, Z stoch, E embed,
A action, S image side, D = S*S pixels, N = B*T rows when time is folded into the batch.
Only the recurrence (GRU + posterior) loops over T in Python; everything that does not feed the
next step (encoder, prior, KL, decoder) runs over all N rows at once, which is what keeps an
autograd RSSM fast.
"""

import math

import autograd.numpy as np
import numpy as onp
from autograd.builtins import DictBox, SequenceBox

from . import fused
from .distributions import bernoulli_nll, gaussian_head, kl_gaussian, sample_gaussian
from .layers import dense, elu, gru_gates, init_dense, init_gru, init_mlp, mean_of, mlp, sigmoid
from .validate import check_batch, check_params, check_predict_args, check_seed
from .world import DOT_SIGMA


def init_params(config, seed=0):
    """Fresh weights for every part of the model, as a nested dict of arrays."""
    rng = onp.random.default_rng(seed)
    c, dtype = config, config.dtype
    pixels = c.image_size ** 2
    decoder = init_mlp(rng, [c.deter_size + c.stoch_size, c.hidden_size, c.hidden_size, pixels], dtype)
    # Start the decoder at the logit of the average pixel (a dot's 2 pi sigma^2 of mass over S^2
    # pixels), so step 0 already predicts a dim empty frame instead of a grey one.
    mean_pixel = 2 * math.pi * DOT_SIGMA ** 2 / pixels
    decoder[-1]["b"] = onp.full(pixels, math.log(mean_pixel / (1 - mean_pixel)), dtype=dtype)
    posterior_in = init_dense(rng, c.deter_size + c.embed_size, c.hidden_size, dtype)
    return {
        "encoder": init_mlp(rng, [pixels, c.hidden_size, c.embed_size], dtype),
        "gru": init_gru(rng, c.stoch_size + c.action_size, c.deter_size, dtype),
        "prior": init_mlp(rng, [c.deter_size, c.hidden_size, 2 * c.stoch_size], dtype),
        # The posterior's first layer is kept as two blocks, W [h; e] = W_h h + W_e e (see posterior).
        "posterior": {
            "w_deter": posterior_in["w"][:c.deter_size],
            "w_embed": posterior_in["w"][c.deter_size:],
            "b": posterior_in["b"],
            "out": init_dense(rng, c.hidden_size, 2 * c.stoch_size, dtype),
        },
        "decoder": decoder,
    }


def param_shapes(config):
    """The shape of every array init_params(config) builds, in the same nested dict, built
    without allocating any (so a checkpoint's sizes are checked before memory is spent)."""
    c, pixels = config, config.image_size ** 2

    def mlp_shapes(sizes):
        return [{"w": (i, o), "b": (o,)} for i, o in zip(sizes[:-1], sizes[1:])]

    three_h = 3 * c.deter_size
    return {
        "encoder": mlp_shapes([pixels, c.hidden_size, c.embed_size]),
        "gru": {"w": (c.deter_size + c.stoch_size + c.action_size, three_h), "b": (three_h,),
                "ln_scale": (three_h,), "ln_bias": (three_h,)},
        "prior": mlp_shapes([c.deter_size, c.hidden_size, 2 * c.stoch_size]),
        "posterior": {"w_deter": (c.deter_size, c.hidden_size), "w_embed": (c.embed_size, c.hidden_size),
                      "b": (c.hidden_size,), "out": mlp_shapes([c.hidden_size, 2 * c.stoch_size])[0]},
        "decoder": mlp_shapes([c.deter_size + c.stoch_size, c.hidden_size, c.hidden_size, pixels]),
    }


def unpack(params):
    """The same nested params, rebuilt as plain Python dicts and lists of (traced) arrays.

    Under autograd a differentiated dict is itself traced, and every lookup in it
    (params["posterior"]["w_deter"]) is recorded and replayed, at every step of the loop.
    Unpacking once at the top of the loss pays for each lookup once.
    """
    if isinstance(params, (dict, DictBox)):
        return {key: unpack(params[key]) for key in params}
    if isinstance(params, (list, tuple, SequenceBox)):
        return [unpack(params[i]) for i in range(len(params))]
    return params


def encode(params, obs):
    """embed_t = enc(x_t): an MLP from pixels to a feature vector.   obs (N, D) -> (N, E)"""
    return elu(mlp(params["encoder"], obs))


def transition(params, deter, stoch, action_term, w_hz):
    """h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1}): the deterministic memory carries the past forward.

    The GRU's one matmul [h, z, a] W + b is split as [h, z] W_hz + (a W_a + b); the bracket,
    `action_term`, is known in advance and computed for all steps by _gru_input_terms.
    The gates are layers.gru_gates; fused.py holds the same math with its backward by hand.
    deter (B, H), stoch (B, Z), action_term (B, 3H), w_hz (H+Z, 3H) -> (B, H).
    """
    gru = params["gru"]
    pre = np.concatenate([deter, stoch], axis=-1) @ w_hz + action_term      # (B, 3H)
    return gru_gates(pre, deter, gru["ln_scale"], gru["ln_bias"])             # (B, H)


def prior(params, deter, min_std):
    """p(z_t | h_t) = N(mean, std): the guess of z_t from memory alone, before seeing x_t.

    deter (N, H) -> mean, std (N, Z).
    """
    return gaussian_head(mlp(params["prior"], deter), min_std)


def posterior(params, deter, embed_term, min_std):
    """q(z_t | h_t, x_t) = N(mean, std): memory corrected by the image (the "Kalman update").

    [mean, std] = MLP([h_t, embed_t]). The first layer's W [h; e] + b is written as
    W_h h + (W_e e + b); the bracket, `embed_term` = posterior_embed_term(params, embed), does not
    depend on h, so observe() computes it for every frame before the loop.
    deter (B, H), embed_term (B, hidden) -> mean, std (B, Z).
    """
    post = params["posterior"]
    hidden = elu(deter @ post["w_deter"] + embed_term)          # (B, hidden)
    return gaussian_head(dense(post["out"], hidden), min_std)


def posterior_embed_term(params, embed):
    """W_e embed_t + b: the part of the posterior's first layer that only sees the image."""
    return embed @ params["posterior"]["w_embed"] + params["posterior"]["b"]   # (N, hidden)


def decode(params, deter, stoch):
    """p(x_t | h_t, z_t) = Bernoulli(sigmoid(logits)), logits = MLP([h_t, z_t]).

    deter (N, H), stoch (N, Z) -> logits (N, D). The frame is sigmoid(logits).
    """
    return mlp(params["decoder"], np.concatenate([deter, stoch], axis=-1))


def unstack_time(x):
    """(B, T, F) -> a list of T arrays (B, F), as one traced call.

    Indexing x[:, t] in a loop would cost a traced call per step, and autograd's backward of each
    index scatters into a full-size zero array; one split's backward is one concatenate.
    """
    batch, steps, features = x.shape
    return np.split(x.reshape(batch, steps * features), steps, axis=1)


def stack_time(xs):
    """A list of T arrays (B, F) -> (B, T, F), the inverse of unstack_time.

    np.stack would index every array with [:, None] first, and each such index costs a scatter
    in autograd's backward; one concatenate's backward is T plain slices.
    """
    batch, features = xs[0].shape
    return np.concatenate(xs, axis=1).reshape(batch, len(xs), features)


def _gru_input_terms(params, actions):
    """Split the transition's matmul: [h, z, a] W + b = [h, z] W_hz + (a W_a + b).

    The action term is known for all steps in advance, so it is computed once here.
    actions (B, T, A) -> W_hz (H+Z, 3H), action terms (B, T, 3H).
    """
    gru = params["gru"]
    batch, steps, action_size = actions.shape
    w_hz = gru["w"][:-action_size]
    action_terms = (actions.reshape(batch * steps, action_size) @ gru["w"][-action_size:]
                    + gru["b"]).reshape(batch, steps, -1)
    return w_hz, action_terms


def initial_state(config, batch, dtype):
    """(h_{-1}, z_{-1}) = 0: the memory before the first frame is empty.

    The first step is then h_0 = GRU(0, 0, a_{-1} = 0): a learned starting memory.
    """
    return (np.zeros((batch, config.deter_size), dtype=dtype),
            np.zeros((batch, config.stoch_size), dtype=dtype))


def actions_into_frames(actions):
    """a_{t-1} for every frame t: shift actions right by one, with zeros before the first frame.

    actions[:, t] acts after frame t (as make_dataset stores them), so the action that led into
    frame t is actions[:, t-1].   (B, T, A) -> (B, T, A), plain NumPy (actions are data).
    """
    return onp.concatenate([onp.zeros_like(actions[:, :1]), actions[:, :-1]], axis=1)


def observe(params, config, embed, prev_actions, eps=None, state=None, fused_core=None):
    """Filter a sequence: h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1}), then z_t ~ q(z_t | h_t, x_t).

    embed (B, T, E) from encode(); prev_actions (B, T, A), prev_actions[:, t] = a_{t-1}, the
    action that led into frame t (see actions_into_frames); eps (B, T, Z) standard normal noise
    for the samples, or None for the posterior mean. state: (h, z) to continue from, or None
    for the empty memory. fused_core: run the loop as fused.filter_sequence (one primitive with
    a hand-written backward); None takes config.fused. Both compute the same numbers.
    Returns a dict of (B, T, .) arrays: deter, stoch, post_mean, post_std.
    """
    batch, steps = embed.shape[:2]
    dtype = config.dtype
    embed_terms = posterior_embed_term(params, embed.reshape(batch * steps, -1)).reshape(batch, steps, -1)
    w_hz, action_terms = _gru_input_terms(params, prev_actions)
    deter, stoch = initial_state(config, batch, dtype) if state is None else state
    if eps is None:
        eps = onp.zeros((batch, steps, config.stoch_size), dtype=dtype)   # z = mean + std * 0
    if config.fused if fused_core is None else fused_core:
        post = params["posterior"]
        out = fused.filter_sequence(deter, stoch, action_terms, embed_terms, w_hz,
                                    params["gru"]["ln_scale"], params["gru"]["ln_bias"], post["w_deter"],
                                    post["out"]["w"], post["out"]["b"], eps, config.min_std)
        sizes = [config.deter_size, config.deter_size + config.stoch_size, config.deter_size + 2 * config.stoch_size]
        deters, stochs, means, stds = np.split(out, sizes, axis=-1)                 # (B, T, .)
        return {"deter": deters, "stoch": stochs, "post_mean": means, "post_std": stds}
    embed_terms, action_terms = unstack_time(embed_terms), unstack_time(action_terms)   # T x (B, .)
    deters, stochs, means, stds = [], [], [], []
    for t in range(steps):
        deter = transition(params, deter, stoch, action_terms[t], w_hz)              # (B, H)
        mean, std = posterior(params, deter, embed_terms[t], config.min_std)          # (B, Z)
        stoch = sample_gaussian(mean, std, eps[:, t])                                 # (B, Z)
        deters.append(deter)
        stochs.append(stoch)
        means.append(mean)
        stds.append(std)
    return {"deter": stack_time(deters), "stoch": stack_time(stochs),                # (B, T, .)
            "post_mean": stack_time(means), "post_std": stack_time(stds)}


def imagine(params, config, deter, stoch, actions, eps=None):
    """Dream forward with no images: h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1}), z_t ~ p(z_t | h_t).

    deter (B, H), stoch (B, Z): the last filtered state; actions (B, K, A), actions[:, k] leading
    into imagined step k; eps (B, K, Z) noise to sample z, or None for the prior mean path.
    Returns a dict of (B, K, .) arrays: deter, stoch, prior_mean, prior_std.
    """
    w_hz, action_terms = _gru_input_terms(params, actions)
    action_terms = unstack_time(action_terms)                                         # K x (B, 3H)
    deters, stochs, means, stds = [], [], [], []
    for k in range(actions.shape[1]):
        deter = transition(params, deter, stoch, action_terms[k], w_hz)              # (B, H)
        mean, std = prior(params, deter, config.min_std)                              # (B, Z)
        stoch = mean if eps is None else sample_gaussian(mean, std, eps[:, k])        # (B, Z)
        deters.append(deter)
        stochs.append(stoch)
        means.append(mean)
        stds.append(std)
    return {"deter": stack_time(deters), "stoch": stack_time(stochs),                # (B, K, .)
            "prior_mean": stack_time(means), "prior_std": stack_time(stds)}


def free_nats_kl(kl, free_nats):
    """KL term = max(mean KL, free_nats): below `free_nats` the KL costs nothing.

    Applied to the mean over batch and time (as in PlaNet and Dreamer), so the posterior may
    keep up to `free_nats` nats per step of information about the image without penalty.
    Written as an if on the value (autograd follows Python control flow): below the threshold
    the term is a constant, so its gradient is exactly zero.
    """
    from autograd.tracer import getval
    mean_kl = mean_of(kl)
    return mean_kl if getval(mean_kl) > free_nats else free_nats


def loss(params, batch, config, seed=0, stats=None):
    """The training loss: negative_elbo, after checking the arguments.

    batch: dict with obs (B, T, S, S) in [0, 1] and actions (B, T, A), as from make_dataset, and
    optionally mask (B, T, S, S) for the masked likelihood; seed (int or tuple of ints) fixes the
    sampling noise. Differentiable by autograd with respect to params.
    """
    check_params(params, config)
    check_batch(batch, config)
    check_seed("seed", seed)
    return negative_elbo(params, batch, config, seed, stats)


def negative_elbo(params, batch, config, seed=0, stats=None):
    """The negative ELBO per time step, averaged over batch and time:

        L = mean_{b,t} [ -log p(x_t | h_t, z_t) ] + kl_scale * max(mean_{b,t} KL(q || p), free_nats)

    Unchecked (the training loop feeds it batches it made itself); see loss(). If `stats` is a
    dict, the plain values of the terms are written into it for logging (nothing is traced).
    """
    from autograd.tracer import getval
    dtype = config.dtype
    obs = onp.asarray(batch["obs"], dtype=dtype)
    actions = onp.asarray(batch["actions"], dtype=dtype)
    n_batch, steps, size = obs.shape[:3]
    rows = n_batch * steps
    pixels = obs.reshape(rows, size * size)                                         # (N, D)
    eps = onp.random.default_rng(seed).standard_normal(
        (n_batch, steps, config.stoch_size)).astype(dtype)                         # (B, T, Z)

    params = unpack(params)
    embed = encode(params, pixels).reshape(n_batch, steps, -1)                      # (B, T, E)
    post = observe(params, config, embed, actions_into_frames(actions), eps)
    deter = post["deter"].reshape(rows, -1)                                         # (N, H)
    stoch = post["stoch"].reshape(rows, -1)                                         # (N, Z)
    prior_mean, prior_std = prior(params, deter, config.min_std)                    # (N, Z)
    kl = kl_gaussian(post["post_mean"].reshape(rows, -1), post["post_std"].reshape(rows, -1),
                     prior_mean, prior_std)                                         # (N,)
    logits = decode(params, deter, stoch)                                           # (N, D)
    weight = likelihood_weight(batch, config, rows)
    recon = mean_of(bernoulli_nll(logits, pixels, weight))
    total = recon + config.kl_scale * free_nats_kl(kl, config.free_nats)
    if stats is not None:
        stats["recon"] = float(getval(recon))
        stats["kl"] = float(onp.mean(getval(kl)))
        stats["loss"] = float(getval(total))
    return total


def likelihood_weight(batch, config, rows):
    """1 for pixels the reconstruction counts, 0 for occluded ones (or None: count them all).

    With occluders the image is black where the dot may be. A plain likelihood would teach the
    decoder to paint the occluder, i.e. to erase its belief of the dot behind it. The masked
    likelihood, log p(x_t | h_t, z_t) summed over unhidden pixels only, leaves the hidden pixels
    free, so the decoder draws where the model believes the dot is.
    """
    mask = batch.get("mask")
    if not (config.masked_likelihood and config.occlusion) or mask is None:
        return None
    return (~onp.asarray(mask).reshape(rows, -1)).astype(config.dtype)             # (N, D)


def predict(params, config, obs, actions=None, horizon=10, *, seed=0, samples=None):
    """Filter the context frames, then imagine `horizon` frames with no observations.

    obs (B, C, S, S) in [0, 1]; actions (B, C + horizon - 1, A) or None (zeros): actions[:, t]
    acts after frame t, so the imagined steps use actions[:, C-1:]. Returns the decoded frames
    sigmoid(logits) in [0, 1]: (B, horizon, S, S) along the prior *mean* path when samples is
    None, or (B, samples, horizon, S, S) with z sampled from the prior at every imagined step.
    """
    check_params(params, config)
    check_seed("seed", seed)
    obs, actions, horizon = check_predict_args(config, obs, actions, horizon, samples)
    dtype = params["gru"]["w"].dtype
    n_batch, context, size = obs.shape[:3]
    if actions is None:
        actions = onp.zeros((n_batch, context + horizon - 1, config.action_size), dtype=dtype)
    obs = onp.asarray(obs, dtype=dtype)
    actions = onp.asarray(actions, dtype=dtype)
    embed = encode(params, obs.reshape(n_batch * context, -1)).reshape(n_batch, context, -1)
    post = observe(params, config, embed, actions_into_frames(actions[:, :context]))
    deter, stoch = post["deter"][:, -1], post["stoch"][:, -1]                      # (B, H), (B, Z)
    future_actions = actions[:, context - 1:]                                       # (B, K, A)
    if samples is None:
        dream = imagine(params, config, deter, stoch, future_actions)
        logits = decode(params, dream["deter"].reshape(n_batch * horizon, -1),
                        dream["stoch"].reshape(n_batch * horizon, -1))
        return onp.asarray(sigmoid(logits)).reshape(n_batch, horizon, size, size)
    # K samples per sequence: repeat every filtered state K times and draw independent noise.
    rows = n_batch * samples
    eps = onp.random.default_rng(seed).standard_normal((rows, horizon, config.stoch_size)).astype(dtype)
    dream = imagine(params, config, onp.repeat(deter, samples, axis=0), onp.repeat(stoch, samples, axis=0),
                    onp.repeat(future_actions, samples, axis=0), eps)
    logits = decode(params, dream["deter"].reshape(rows * horizon, -1), dream["stoch"].reshape(rows * horizon, -1))
    return onp.asarray(sigmoid(logits)).reshape(n_batch, samples, horizon, size, size)
