"""The Recurrent State Space Model: one step of the prior, one step of the posterior, and the loss.

    embed_t = enc(x_t)                                   encode
    h_t     = GRU(h_{t-1}, z_{t-1}, a_{t-1})             transition (deterministic memory)
    z_t     ~ p(z_t | h_t)                               prior: dreams without seeing
    z_t     ~ q(z_t | h_t, x_t)                          posterior: corrects with the image
    x_t     ~ p(x_t | h_t, z_t)                          decode
    -ELBO   = mean_t [ -log p(x_t | h_t, z_t) + KL(q(z_t | h_t, x_t) || p(z_t | h_t)) ]

Read it in this order: the five equations (encode ... decode), then the two steps built from
them, img_step (dream one step) and obs_step (the same step, then correct with the image), then
the two loops over them, imagine and observe, then the bound, negative_elbo.

Three models share this file, chosen by Config.model, and differ in a few lines each:
    "rssm"  the above: deterministic memory h and stochastic state z
    "rnn"   deterministic only: z_t is the mean of its head, with no noise anywhere (state_head)
    "ssm"   stochastic only, no memory: z_t ~ p(z_t | z_{t-1}, a_{t-1}) (ssm_transition), and the
            decoder reads z_t alone (decode)

Shapes, the same letters in every file of rssm_np:
    B sequences in a batch      T time steps (frames)      K imagined steps (horizon)
    M sampled futures           H deter size (h)           Z stoch size (z)
    E embed size                U hidden width of an MLP   A action size
    S image side                D = S*S pixels             B*T rows when time is folded into the batch
"""

import math

import autograd.numpy as np                 # traced NumPy: everything autograd differentiates
import numpy as onp                         # plain NumPy: data, noise, and untraced outputs
from autograd.tracer import getval as stop_gradient   # sg(x): x's value, with no gradient through it

from . import fused
from .distributions import bernoulli_nll, gaussian_head, kl_gaussian, sample_gaussian
from .layers import dense, elu, gru_gates, init_dense, init_gru, init_mlp, mean_of, mlp, sigmoid
from .utils.speed import stack_time, unpack, unstack_time
from .utils.validate import check_batch, check_params, check_predict_args, check_seed

# A dot of std 1.5 px holds 2 pi 1.5^2 of pixel mass; the decoder's output bias starts at the
# logit of that mass spread over the screen (see init_params). Another world passes its own.
DOT_PIXEL_MASS = 2 * math.pi * 1.5 ** 2


def init_params(config, seed=0, pixel_mass=DOT_PIXEL_MASS):
    """Fresh weights for every part of the model, as a nested dict of arrays.

    pixel_mass: the summed intensity of an average frame, so that the decoder starts at the logit
    of the average pixel (pixel_mass / D) and step 0 already predicts a dim empty frame instead of
    a grey one. The default is the dot world's: one Gaussian dot of std 1.5 px.
    """
    rng = onp.random.default_rng(seed)
    c, dtype = config, config.dtype
    pixels = c.image_size ** 2
    head = c.stoch_size if c.model == "rnn" else 2 * c.stoch_size           # rnn: a mean, no std
    features = c.stoch_size if c.model == "ssm" else c.deter_size + c.stoch_size
    decoder = init_mlp(rng, [features, c.hidden_size, c.hidden_size, pixels], dtype)
    mean_pixel = pixel_mass / pixels
    decoder[-1]["b"] = onp.full(pixels, math.log(mean_pixel / (1 - mean_pixel)), dtype=dtype)
    posterior_in = init_dense(rng, c.deter_size + c.embed_size, c.hidden_size, dtype)
    # The draws below come in the order they always had, so a seed gives the same weights as ever.
    encoder = init_mlp(rng, [pixels, c.hidden_size, c.embed_size], dtype)
    if c.model == "ssm":
        transition_params = {"ssm": init_dense(rng, c.stoch_size + c.action_size, c.deter_size, dtype)}
    else:
        transition_params = {"gru": init_gru(rng, c.stoch_size + c.action_size, c.deter_size, dtype)}
    return {
        "encoder": encoder,
        **transition_params,
        "prior": init_mlp(rng, [c.deter_size, c.hidden_size, head], dtype),
        # The posterior's first layer is kept as two blocks, W [h; e] = W_h h + W_e e (see posterior).
        "posterior": {
            "w_deter": posterior_in["w"][:c.deter_size],
            "w_embed": posterior_in["w"][c.deter_size:],
            "b": posterior_in["b"],
            "out": init_dense(rng, c.hidden_size, head, dtype),
        },
        "decoder": decoder,
    }


def param_shapes(config):
    """The shape of every array init_params(config) builds, in the same nested dict, built
    without allocating any (so a checkpoint's sizes are checked before memory is spent)."""
    c, pixels = config, config.image_size ** 2
    head = c.stoch_size if c.model == "rnn" else 2 * c.stoch_size
    features = c.stoch_size if c.model == "ssm" else c.deter_size + c.stoch_size

    def mlp_shapes(sizes):
        return [{"w": (i, o), "b": (o,)} for i, o in zip(sizes[:-1], sizes[1:])]

    three_h = 3 * c.deter_size
    if c.model == "ssm":
        transition_shapes = {"ssm": mlp_shapes([c.stoch_size + c.action_size, c.deter_size])[0]}
    else:
        transition_shapes = {"gru": {"w": (c.deter_size + c.stoch_size + c.action_size, three_h), "b": (three_h,),
                                     "ln_scale": (three_h,), "ln_bias": (three_h,)}}
    return {
        "encoder": mlp_shapes([pixels, c.hidden_size, c.embed_size]),
        **transition_shapes,
        "prior": mlp_shapes([c.deter_size, c.hidden_size, head]),
        "posterior": {"w_deter": (c.deter_size, c.hidden_size), "w_embed": (c.embed_size, c.hidden_size),
                      "b": (c.hidden_size,), "out": mlp_shapes([c.hidden_size, head])[0]},
        "decoder": mlp_shapes([features, c.hidden_size, c.hidden_size, pixels]),
    }


# --- the five equations ---------------------------------------------------------------------

def encode(params, pixels):
    """embed_t = enc(x_t): an MLP from pixels to a feature vector.   (..., D) -> (..., E)"""
    return elu(mlp(params["encoder"], pixels))


def transition(params, deter, stoch, action):
    """h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1}): the deterministic memory carries the past forward.

    One matrix product feeds all three gates, pre = [h_{t-1}, z_{t-1}, a_{t-1}] W + b, and
    layers.gru_gates turns it into the new memory. The product is written in two blocks,
    [h, z] W_hz + (a W_a + b), the order in which the fused path adds them (it computes a W_a + b
    for every step before its loop), so that both paths round alike.
    deter h_{t-1} (B, H), stoch z_{t-1} (B, Z), action a_{t-1} (B, A) -> h_t (B, H).
    """
    gru = params["gru"]
    w_hz, w_a = gru["w"][:-action.shape[-1]], gru["w"][-action.shape[-1]:]         # W = [W_hz; W_a]
    pre = np.concatenate([deter, stoch], axis=-1) @ w_hz + (action @ w_a + gru["b"])   # (B, 3H)
    return gru_gates(pre, deter, gru["ln_scale"], gru["ln_bias"])                   # (B, H)


def ssm_transition(params, stoch, action):
    """The "ssm" model's transition: h_t = elu([z_{t-1}, a_{t-1}] W + b), no memory.

    Here h_t is only the first hidden layer of p(z_t | z_{t-1}, a_{t-1}): it sees the last z and
    action and nothing older, and the decoder never reads it, so z_t alone is the state.
    stoch z_{t-1} (B, Z), action a_{t-1} (B, A) -> (B, H).
    """
    return elu(dense(params["ssm"], np.concatenate([stoch, action], axis=-1)))      # (B, H)


def state_head(config, out):
    """(mean, std) of z_t from a head's output: a Gaussian, or for "rnn" a point.

    rssm, ssm: gaussian_head, std = softplus(o_2) + min_std.
    rnn:       mean = o, std = 1, and z_t = mean always (img_step, obs_step never sample), so no
               random variable is left; with both stds at 1 the KL of the loss becomes
               0.5 ||mean_q - mean_p||^2: the prior's mean regressed onto the posterior's.
    out (..., 2Z), or (..., Z) for rnn -> mean, std (..., Z).
    """
    if config.model == "rnn":
        return out, np.ones(out.shape, dtype=config.dtype)
    return gaussian_head(out, config.min_std)


def prior(params, config, deter):
    """p(z_t | h_t) = N(mean, std): the guess of z_t from memory alone, before seeing x_t.

    [mean, std] = state_head(MLP(h_t)).   deter (..., H) -> mean, std (..., Z).
    """
    return state_head(config, mlp(params["prior"], deter))


def posterior(params, config, deter, embed):
    """q(z_t | h_t, x_t) = N(mean, std): memory corrected by the image (the "Kalman update").

    [mean, std] = state_head(W_out elu(W [h_t; embed_t] + b) + b_out), with the first layer
    kept as two blocks, W [h; e] = W_h h + W_e e, so that the fused path can compute W_e e for all
    frames before its loop.   deter (B, H), embed (B, E) -> mean, std (B, Z).
    """
    post = params["posterior"]
    hidden = elu(deter @ post["w_deter"] + embed @ post["w_embed"] + post["b"])   # (B, U)
    return state_head(config, dense(post["out"], hidden))


def decode(params, deter, stoch):
    """p(x_t | h_t, z_t) = Bernoulli(sigmoid(logits)), logits = MLP([h_t, z_t]).

    deter (..., H), stoch (..., Z) -> logits (..., D). The frame is sigmoid(logits).
    The "ssm" model's decoder reads z_t alone (its h_t is a hidden layer of the prior, not a
    state); its first layer, Z wide, says so.
    """
    if params["decoder"][0]["w"].shape[0] == stoch.shape[-1]:
        return mlp(params["decoder"], stoch)
    return mlp(params["decoder"], np.concatenate([deter, stoch], axis=-1))


# --- one step, two ways -----------------------------------------------------------------------

def sample(config, mean, std, eps):
    """z_t = mean + std * eps (sample_gaussian), or z_t = mean when eps is None or the model is
    "rnn", which has no random variable: given eps, it still returns its one future."""
    if eps is None or config.model == "rnn":
        return mean
    return sample_gaussian(mean, std, eps)


def img_step(params, config, state, action, eps=None):
    """Dream one step, with no image:

        h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1})          transition
        z_t ~ p(z_t | h_t)                            prior

    ("ssm": h_t = ssm_transition(z_{t-1}, a_{t-1}), with no h_{t-1}.)
    state {"deter": h_{t-1} (B, H), "stoch": z_{t-1} (B, Z)}; action a_{t-1} (B, A);
    eps (B, Z) standard normal noise, or None for the prior's mean.
    Returns the new state {"deter", "stoch", "mean", "std"}, each (B, .).
    """
    if config.model == "ssm":
        deter = ssm_transition(params, state["stoch"], action)                   # (B, H)
    else:
        deter = transition(params, state["deter"], state["stoch"], action)       # (B, H)
    mean, std = prior(params, config, deter)                                     # (B, Z)
    stoch = sample(config, mean, std, eps)                                       # (B, Z)
    return {"deter": deter, "stoch": stoch, "mean": mean, "std": std}


def obs_step(params, config, state, action, embed, eps=None):
    """See one step: the prior step, then correct it with the image.

        h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1})          transition (the prior step's)
        z_t ~ q(z_t | h_t, x_t)                       posterior

    embed (B, E) = encode(x_t); eps (B, Z) noise for z_t, or None for the posterior's mean.
    Returns (post, prior): two states {"deter", "stoch", "mean", "std"} that share h_t; the
    prior's is what the model would have guessed, the posterior's what it believes after seeing.
    """
    prior_state = img_step(params, config, state, action)                         # (B, .)
    mean, std = posterior(params, config, prior_state["deter"], embed)           # (B, Z)
    stoch = sample(config, mean, std, eps)                                       # (B, Z)
    post_state = {"deter": prior_state["deter"], "stoch": stoch, "mean": mean, "std": std}
    return post_state, prior_state


# --- the loops --------------------------------------------------------------------------------

def initial_state(config, batch, dtype):
    """(h_{-1}, z_{-1}) = 0: the memory before the first frame is empty.

    The first step is then h_0 = GRU(0, 0, a_{-1} = 0): a learned starting memory.
    """
    return {"deter": np.zeros((batch, config.deter_size), dtype=dtype),
            "stoch": np.zeros((batch, config.stoch_size), dtype=dtype)}


def actions_into_frames(actions):
    """a_{t-1} for every frame t: shift actions right by one, with zeros before the first frame.

    actions[:, t] acts after frame t (as make_dataset stores them), so the action that led into
    frame t is actions[:, t-1].   (B, T, A) -> (B, T, A), plain NumPy (actions are data).
    """
    return onp.concatenate([onp.zeros_like(actions[:, :1]), actions[:, :-1]], axis=1)


def observe(params, config, embed, prev_actions, eps=None, state=None, fused_core=None):
    """Filter a sequence: obs_step for t = 0 .. T-1.

    embed (B, T, E) from encode(); prev_actions (B, T, A), prev_actions[:, t] = a_{t-1}, the
    action that led into frame t (see actions_into_frames); eps (B, T, Z) standard normal noise
    for the samples, or None for the posterior mean. state: (h, z) to continue from, or None for
    the empty memory. fused_core: run the loop as fused.observe (one primitive with a hand-written
    backward, the default for speed; not for "ssm", which has no GRU); None takes config.fused.
    Both compute the same numbers.
    Returns a dict of (B, T, .) arrays: deter, stoch, post_mean, post_std, prior_mean, prior_std.
    """
    batch, steps = embed.shape[:2]
    state = initial_state(config, batch, config.dtype) if state is None else \
        {"deter": state[0], "stoch": state[1]}
    if (config.fused if fused_core is None else fused_core) and config.model != "ssm":
        post = fused.observe(params, config, state, prev_actions, embed, eps)
        # The prior feeds nothing forward in filtering, so it runs once over all B*T rows.
        prior_mean, prior_std = prior(params, config, post["deter"])                        # (B, T, Z)
        return {"deter": post["deter"], "stoch": post["stoch"], "post_mean": post["mean"],
                "post_std": post["std"], "prior_mean": prior_mean, "prior_std": prior_std}
    noise = [None] * steps if eps is None else unstack_time(eps)                         # T x (B, Z)
    posts, priors = [], []
    for action, embed_t, eps_t in zip(unstack_time(prev_actions), unstack_time(embed), noise):
        post_state, prior_state = obs_step(params, config, state, action, embed_t, eps_t)
        posts.append(post_state)
        priors.append(prior_state)
        state = post_state
    return {"deter": stack_states(posts, "deter"), "stoch": stack_states(posts, "stoch"),
            "post_mean": stack_states(posts, "mean"), "post_std": stack_states(posts, "std"),
            "prior_mean": stack_states(priors, "mean"), "prior_std": stack_states(priors, "std")}   # (B, T, .)


def imagine(params, config, deter, stoch, actions, eps=None):
    """Dream forward with no images: img_step for k = 1 .. K.

    deter (B, H), stoch (B, Z): the last filtered state; actions (B, K, A), actions[:, k] leading
    into imagined step k; eps (B, K, Z) noise to sample z, or None for the prior mean path.
    Returns a dict of (B, K, .) arrays: deter, stoch, prior_mean, prior_std.
    """
    state = {"deter": deter, "stoch": stoch}
    noise = [None] * actions.shape[1] if eps is None else unstack_time(eps)            # K x (B, Z)
    states = []
    for action, eps_k in zip(unstack_time(actions), noise):
        state = img_step(params, config, state, action, eps_k)
        states.append(state)
    return {"deter": stack_states(states, "deter"), "stoch": stack_states(states, "stoch"),
            "prior_mean": stack_states(states, "mean"), "prior_std": stack_states(states, "std")}   # (B, K, .)


def stack_states(states, key):
    """One field of a list of step states, stacked over time: T x (B, F) -> (B, T, F)."""
    return stack_time([state[key] for state in states])


# --- the bound --------------------------------------------------------------------------------

def free_nats_kl(kl, free_nats):
    """KL term = max(mean_{b,t} KL_{b,t}, free_nats): below `free_nats` the KL costs nothing.

    The clamp acts on the mean over batch and time, as in Dreamer; PlaNet clamps each step's KL
    before averaging, mean_{b,t} max(KL_{b,t}, free_nats), which frees every step separately.
    So the posterior may keep up to `free_nats` nats per step, on average, about the image without
    penalty. Written as an if on the value (autograd follows Python control flow): below the
    threshold the term is a constant, so its gradient is exactly zero.
    """
    mean_kl = mean_of(kl)
    return mean_kl if stop_gradient(mean_kl) > free_nats else free_nats


def balanced_kl(post_mean, post_std, prior_mean, prior_std, balance, free_nats):
    """KL balancing (DreamerV2): the same KL value, its gradient shared unequally.

        KL_bal = a * max(mean KL(sg(q) || p), free) + (1 - a) * max(mean KL(q || sg(p)), free)

    sg() stops the gradient (autograd's getval: the value without its trace). Both terms have the
    value of KL(q || p), so the loss is unchanged; but the first moves only the prior (toward the
    posterior) and the second only the posterior (toward the prior). With a = 0.8 the prior learns
    to predict what the image will say 4x faster than the posterior is pulled toward a poor prior.
    The plain KL is not a = 0.5 (that halves both pulls) but both weights 1: balance 0 (Config).
    all (B, T, Z) -> a scalar.
    """
    to_prior = kl_gaussian(stop_gradient(post_mean), stop_gradient(post_std), prior_mean, prior_std)   # (B, T)
    to_post = kl_gaussian(post_mean, post_std, stop_gradient(prior_mean), stop_gradient(prior_std))    # (B, T)
    return balance * free_nats_kl(to_prior, free_nats) + (1 - balance) * free_nats_kl(to_post, free_nats)


def overshooting_kl(params, config, seen, prev_actions, overshoot_eps):
    """Latent overshooting (PlaNet, section 4): train the prior to dream d steps, not only one.

        KL_d = mean_{b,t} KL(sg(q(z_t | h_t, x_t)) || p_d(z_t | z_{t-d})),   d = 2 .. D
        term = mean_{d=2..D} max(KL_d, free nats)

    p_d is the prior reached by dreaming d steps (img_step) from the posterior state at t - d,
    with no image in between; the posterior is the target (its gradient is stopped), so only the
    dream is pulled toward what the images said. The one-step prior p_1 is the bound's own KL;
    from it, one more img_step per distance: the state after d - 1 steps (h_t, z_t ~ p_{d-1}) is
    dreamed on with a_t into p_d at t + 1. Rows are the B x (T - d + 1) start times, all at once.
    seen: observe()'s (B, T, .) dict; prev_actions (B, T, A); overshoot_eps (D - 1, B, T, Z).
    Returns a scalar (0 when D = 1).
    """
    distance = config.overshooting
    if distance == 1:
        return 0.0
    batch, steps = prev_actions.shape[:2]
    deter, mean, std = seen["deter"], seen["prior_mean"], seen["prior_std"]      # p_1 at every t, (B, T, .)
    terms = []
    for d in range(2, distance + 1):
        rows = batch * (steps - d + 1)
        # p_{d-1} is known at frames d-2 .. T-1; dreaming on from frames d-2 .. T-2 gives p_d at d-1 .. T-1.
        state = {"deter": deter[:, :-1].reshape(rows, -1),                       # h_t of p_{d-1}, (rows, H)
                 "stoch": sample(config, mean[:, :-1], std[:, :-1],
                                 overshoot_eps[d - 2][:, d - 2:-1]).reshape(rows, -1)}  # z_t ~ p_{d-1}
        dream = img_step(params, config, state, prev_actions[:, d - 1:].reshape(rows, -1))   # -> p_d at t + 1
        deter, mean, std = (dream[key].reshape(batch, steps - d + 1, -1) for key in ("deter", "mean", "std"))
        target_mean = stop_gradient(seen["post_mean"][:, d - 1:])                 # (B, T - d + 1, Z)
        target_std = stop_gradient(seen["post_std"][:, d - 1:])
        terms.append(free_nats_kl(kl_gaussian(target_mean, target_std, mean, std), config.free_nats))
    return sum(terms) / len(terms)


def negative_elbo(params, config, pixels, prev_actions, eps, weight=None, overshoot_eps=None):
    """The negative ELBO per frame, averaged over batch and time:

        -ELBO = mean_{b,t} [ -log p(x_t | h_t, z_t) ] + kl_scale * max(mean_{b,t} KL(q || p), free_nats)

    with z_t ~ q(z_t | h_t, x_t) sampled by eps. pixels (B, T, D) in [0, 1]; prev_actions
    (B, T, A) = a_{t-1}; eps (B, T, Z); weight (B, T, D) of 0/1 for the masked likelihood, or None.
    Two optional levers change the KL term's gradient, not the bound's meaning: KL balancing
    (config.kl_balance, balanced_kl) and latent overshooting (config.overshooting = D > 1, which
    adds kl_scale * overshooting_kl, noise overshoot_eps (D - 1, B, T, Z)).
    Returns (loss, reconstruction term, mean KL), all traced; see loss() for the checked version.
    """
    embed = encode(params, pixels)                                                # (B, T, E)
    seen = observe(params, config, embed, prev_actions, eps)                      # (B, T, .)
    logits = decode(params, seen["deter"], seen["stoch"])                         # (B, T, D)
    recon = mean_of(bernoulli_nll(logits, pixels, weight))                        # -log p(x_t | h_t, z_t)
    stats = (seen["post_mean"], seen["post_std"], seen["prior_mean"], seen["prior_std"])   # (B, T, Z) each
    kl = kl_gaussian(*stats)                                                      # KL(q || p), (B, T)
    if config.kl_balance:
        kl_loss = balanced_kl(*stats, config.kl_balance, config.free_nats)       # same value, shared gradient
    else:
        kl_loss = free_nats_kl(kl, config.free_nats)
    if config.overshooting > 1:
        kl_loss = kl_loss + overshooting_kl(params, config, seen, prev_actions, overshoot_eps)
    return recon + config.kl_scale * kl_loss, recon, mean_of(kl)


def elbo_inputs(batch, config, seed):
    """The data side of the bound: frames as pixel vectors, a_{t-1}, noise, likelihood weight,
    and the overshooting noise (None unless config.overshooting > 1).

    batch: obs (B, T, S, S), actions (B, T, A) and optionally mask (B, T, S, S), as make_dataset
    returns them; seed (int or tuple) fixes the noise eps (B, T, Z). All plain NumPy.
    """
    obs = onp.asarray(batch["obs"], dtype=config.dtype)
    batch_size, steps, size = obs.shape[:3]
    pixels = obs.reshape(batch_size, steps, size * size)                          # (B, T, D)
    prev_actions = actions_into_frames(onp.asarray(batch["actions"], dtype=config.dtype))
    rng = onp.random.default_rng(seed)
    eps = rng.standard_normal((batch_size, steps, config.stoch_size)).astype(config.dtype)      # (B, T, Z)
    overshoot_eps = None if config.overshooting == 1 else rng.standard_normal(
        (config.overshooting - 1, batch_size, steps, config.stoch_size)).astype(config.dtype)   # (D-1, B, T, Z)
    return pixels, prev_actions, eps, likelihood_weight(batch, config), overshoot_eps


def likelihood_weight(batch, config):
    """1 for pixels the reconstruction counts, 0 for occluded ones (or None: count them all).

    With occluders the image is black where the dot may be. A plain likelihood would teach the
    decoder to paint the occluder, i.e. to erase its belief of the dot behind it. The masked
    likelihood, log p(x_t | h_t, z_t) summed over unhidden pixels only, leaves the hidden pixels
    free, so the decoder draws where the model believes the dot is.   -> (B, T, D) or None
    """
    mask = batch.get("mask")
    if not (config.masked_likelihood and config.occlusion) or mask is None:
        return None
    mask = onp.asarray(mask)
    return (~mask.reshape(mask.shape[0], mask.shape[1], -1)).astype(config.dtype)


def loss(params, batch, config, seed=0):
    """The training loss, -ELBO (negative_elbo), after checking the arguments.

    batch: dict with obs (B, T, S, S) in [0, 1] and actions (B, T, A), as from make_dataset, and
    optionally mask (B, T, S, S) for the masked likelihood; seed (int or tuple of ints) fixes the
    sampling noise. Differentiable by autograd with respect to params.
    """
    check_params(params, config)
    check_batch(batch, config)
    check_seed("seed", seed)
    return negative_elbo(unpack(params), config, *elbo_inputs(batch, config, seed))[0]


# --- using the model --------------------------------------------------------------------------

def predict(params, config, obs, actions=None, horizon=10, *, seed=0, samples=None):
    """Filter the context frames, then imagine `horizon` frames with no observations.

    obs (B, C, S, S) in [0, 1]; actions (B, C + horizon - 1, A) or None (zeros): actions[:, t]
    acts after frame t, so the imagined steps use actions[:, C-1:]. Returns the decoded frames
    sigmoid(logits) in [0, 1]: (B, K, S, S) along the prior *mean* path when samples is None, or
    (B, M, K, S, S) with M = samples and z sampled from the prior at every imagined step (for
    "rnn", M identical futures: it has no random variable).
    """
    check_params(params, config)
    check_seed("seed", seed)
    obs, actions, horizon = check_predict_args(config, obs, actions, horizon, samples)
    dtype = config.dtype
    batch, context, size = obs.shape[:3]
    if actions is None:
        actions = onp.zeros((batch, context + horizon - 1, config.action_size), dtype=dtype)
    obs = onp.asarray(obs, dtype=dtype)
    actions = onp.asarray(actions, dtype=dtype)
    embed = encode(params, obs.reshape(batch, context, size * size))                         # (B, C, E)
    seen = observe(params, config, embed, actions_into_frames(actions[:, :context]))
    deter, stoch = seen["deter"][:, -1], seen["stoch"][:, -1]                              # (B, H), (B, Z)
    future_actions = actions[:, context - 1:]                                               # (B, K, A)
    if samples is None:
        dream = imagine(params, config, deter, stoch, future_actions)
        frames = sigmoid(decode(params, dream["deter"], dream["stoch"]))                   # (B, K, D)
        return onp.asarray(frames).reshape(batch, horizon, size, size)
    # M samples per sequence: repeat every filtered state M times and draw independent noise.
    rows = batch * samples
    eps = onp.random.default_rng(seed).standard_normal((rows, horizon, config.stoch_size)).astype(dtype)
    dream = imagine(params, config, onp.repeat(deter, samples, axis=0), onp.repeat(stoch, samples, axis=0),
                    onp.repeat(future_actions, samples, axis=0), eps)
    frames = sigmoid(decode(params, dream["deter"], dream["stoch"]))                       # (B*M, K, D)
    return onp.asarray(frames).reshape(batch, samples, horizon, size, size)
