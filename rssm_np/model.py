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

The state, everywhere: a dict {"deter": h_t, "stoch": z_t, "mean", "std"} (the last two: the
distribution z_t was drawn from). The ablations "rnn" and "ssm" (Config.model) swap one piece each;
variants.py says which, and is asked at those places only. The levers (KL balancing, latent and
observation overshooting) train the prior harder, in levers.py.

Shapes, the same letters in every file of rssm_np:
    B sequences in a batch      T time steps (frames)      K imagined steps (horizon)
    M sampled futures           H deter size (h)           Z stoch size (z)
    E embed size                U hidden width of an MLP   A action size
    S image side                D = S*S pixels             B*T rows when time is folded into the batch
"""

import math

import autograd.numpy as np                 # traced NumPy: everything autograd differentiates
import numpy as onp                         # plain NumPy: data, noise, and untraced outputs

from . import fused, levers, variants
from .distributions import bernoulli_nll, free_nats, kl_gaussian
from .layers import dense, elu, gru_gates, init_dense, init_mlp, mean_of, mlp, sigmoid
from .utils.speed import stack_time, unstack_time
from .config import check_fits_memory, check_fits_rollout, check_params
from .utils.validate import check_predict_args, check_seed
from .world import actions_into_frames

# A dot of std 1.5 px holds 2 pi 1.5^2 of pixel mass; the decoder's output bias starts at the
# logit of that mass spread over the screen (see init_params). Another world passes its own.
DOT_PIXEL_MASS = 2 * math.pi * 1.5 ** 2


def init_params(config, seed=0, pixel_mass=DOT_PIXEL_MASS):
    """Fresh weights for every part of the model, as a nested dict of arrays.

    pixel_mass: the summed intensity of an average frame, so that the decoder starts at the logit
    of the average pixel (pixel_mass / D) and step 0 already predicts a dim empty frame instead of
    a grey one. The default is the dot world's: one Gaussian dot of std 1.5 px.
    """
    check_fits_memory(config, training=False)   # a size field too large is named, before any array
    rng = onp.random.default_rng(seed)
    c, dtype, pixels = config, config.dtype, config.image_size ** 2
    decoder = init_mlp(rng, [variants.feature_size(c), c.hidden_size, c.hidden_size, pixels], dtype)
    mean_pixel = pixel_mass / pixels
    decoder[-1]["b"] = onp.full(pixels, math.log(mean_pixel / (1 - mean_pixel)), dtype=dtype)
    posterior_in = init_dense(rng, c.deter_size + c.embed_size, c.hidden_size, dtype)
    # The draws below come in the order they always had, so a seed gives the same weights as ever.
    encoder = init_mlp(rng, [pixels, c.hidden_size, c.embed_size], dtype)
    transition_params = variants.init_transition(rng, c)                     # {"gru": ...} or {"ssm": ...}
    return {
        "encoder": encoder,
        **transition_params,
        "prior": init_mlp(rng, [c.deter_size, c.hidden_size, variants.head_size(c)], dtype),
        # The posterior's first layer is kept as two blocks, W [h; e] = W_h h + W_e e (see posterior).
        "posterior": {
            "w_deter": posterior_in["w"][:c.deter_size],
            "w_embed": posterior_in["w"][c.deter_size:],
            "b": posterior_in["b"],
            "out": init_dense(rng, c.hidden_size, variants.head_size(c), dtype),
        },
        "decoder": decoder,
    }


# --- the five equations ---------------------------------------------------------------------

def encode(params, pixels):
    """embed_t = enc(x_t): an MLP from pixels to a feature vector.   (..., D) -> (..., E)"""
    return elu(mlp(params["encoder"], pixels))


def transition(params, config, state, action):
    """h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1}): the deterministic memory carries the past forward.

    One matrix product feeds all three gates, pre = [h_{t-1}, z_{t-1}, a_{t-1}] W + b, and
    layers.gru_gates turns it into the new memory. The product is written in two blocks,
    [h, z] W_hz + (a W_a + b), the order in which the fused path adds them (it computes a W_a + b
    for every step before its loop), so that both paths round alike. (The "ssm" has no memory:
    variants.ssm_transition.)
    state {"deter": h_{t-1} (B, H), "stoch": z_{t-1} (B, Z)}, action a_{t-1} (B, A) -> h_t (B, H).
    """
    if not variants.has_memory(config):
        return variants.ssm_transition(params, state, action)
    gru, deter = params["gru"], state["deter"]
    w_hz, w_a = np.split(gru["w"], [gru["w"].shape[0] - action.shape[-1]])          # W = [W_hz; W_a]
    pre = np.concatenate([deter, state["stoch"]], axis=-1) @ w_hz + (action @ w_a + gru["b"])   # (B, 3H)
    return gru_gates(pre, deter, gru["ln_scale"], gru["ln_bias"])                   # (B, H)


def prior(params, config, deter):
    """p(z_t | h_t) = N(mean, std): the guess of z_t from memory alone, before seeing x_t.

    [mean, std] = head(MLP(h_t)), head = softplus std + min_std (variants.state_head).
    deter (..., H) -> mean, std (..., Z).
    """
    return variants.state_head(config, mlp(params["prior"], deter))


def posterior(params, config, deter, embed):
    """q(z_t | h_t, x_t) = N(mean, std): memory corrected by the image (the "Kalman update").

    [mean, std] = head(W_out elu(W [h_t; embed_t] + b) + b_out), with the first layer kept as two
    blocks, W [h; e] = W_h h + W_e e, so that the fused path can compute W_e e for all frames
    before its loop.   deter (B, H), embed (B, E) -> mean, std (B, Z).
    """
    post = params["posterior"]
    hidden = elu(deter @ post["w_deter"] + embed @ post["w_embed"] + post["b"])   # (B, U)
    return variants.state_head(config, dense(post["out"], hidden))


def decode(params, config, state):
    """p(x_t | h_t, z_t) = Bernoulli(sigmoid(logits)), logits = MLP([h_t, z_t]).

    state {"deter" (..., H), "stoch" (..., Z)} -> logits (..., D). (The "ssm" decodes z_t alone:
    variants.features.)
    """
    return mlp(params["decoder"], variants.features(config, state["deter"], state["stoch"]))


def frame_nll(params, config, state, pixels, weight=None):
    """-log p(x_t | h_t, z_t) per frame: decode, then the Bernoulli likelihood (with config.fused,
    as one primitive: fused.decode_nll, the same numbers to the bit). state {"deter", "stoch"}
    (B, T, .); pixels (B, T, D) in [0, 1]; weight (B, T, D) of 0/1, or None -> (B, T)."""
    if config.fused:
        return fused.decode_nll(params, config, state, pixels, weight)            # (B, T)
    return bernoulli_nll(decode(params, config, state), pixels, weight)           # (B, T)


def mean_frame(params, config, state):
    """E[x_t | h_t, z_t] = sigmoid(logits): the frame the model believes in, as (..., S, S) pixels.
    Plain NumPy out: for looking at and measuring, not for training."""
    frames = onp.asarray(sigmoid(decode(params, config, state)))                  # (..., D)
    return frames.reshape(frames.shape[:-1] + (config.image_size, config.image_size))


# --- one step, two ways -----------------------------------------------------------------------

def img_step(params, config, state, action, eps=None):
    """Dream one step, with no image:

        h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1})          transition
        z_t ~ p(z_t | h_t)                            prior

    state {"deter": h_{t-1} (B, H), "stoch": z_{t-1} (B, Z)}; action a_{t-1} (B, A);
    eps (B, Z) standard normal noise, or None for the prior's mean.
    Returns the new state {"deter", "stoch", "mean", "std"}, each (B, .).
    """
    deter = transition(params, config, state, action)                            # (B, H)
    mean, std = prior(params, config, deter)                                     # (B, Z)
    stoch = variants.sample(config, mean, std, eps)                              # z = mean + std * eps
    return {"deter": deter, "stoch": stoch, "mean": mean, "std": std}


def obs_step(params, config, state, action, embed, eps=None):
    """See one step: the prior step, then correct it with the image.

        h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1})          transition (the prior step's)
        z_t ~ q(z_t | h_t, x_t)                       posterior

    embed (B, E) = encode(x_t); eps (B, Z) noise for z_t, or None for the posterior's mean.
    Returns (post, prior): two states that share h_t; the prior's is what the model would have
    guessed, the posterior's what it believes after seeing.
    """
    prior_state = img_step(params, config, state, action)                         # (B, .)
    mean, std = posterior(params, config, prior_state["deter"], embed)           # (B, Z)
    stoch = variants.sample(config, mean, std, eps)                              # (B, Z)
    post_state = {"deter": prior_state["deter"], "stoch": stoch, "mean": mean, "std": std}
    return post_state, prior_state


# --- the loops --------------------------------------------------------------------------------

def initial_state(config, batch):
    """(h_{-1}, z_{-1}) = 0: the memory before the first frame is empty.

    The first step is then h_0 = GRU(0, 0, a_{-1} = 0): a learned starting memory.
    """
    return {"deter": np.zeros((batch, config.deter_size), dtype=config.dtype),
            "stoch": np.zeros((batch, config.stoch_size), dtype=config.dtype)}


def observe(params, config, embed, prev_actions, eps=None, state=None, fused_core=None):
    """Filter a sequence: obs_step for t = 0 .. T-1.

    embed (B, T, E) from encode(); prev_actions (B, T, A), prev_actions[:, t] = a_{t-1}, the
    action that led into frame t (see world.actions_into_frames); eps (B, T, Z) noise for the
    samples, or None for the posterior mean; state: the state to continue from, or None for the
    empty memory. fused_core: run the loop as fused.observe (one primitive with a hand-written
    backward, the default for speed); None takes config.fused. Both compute the same numbers
    (to float rounding: tests/test_gradients.py).
    Returns (post, prior): two states of (B, T, .) arrays.
    """
    batch, steps = embed.shape[:2]
    state = initial_state(config, batch) if state is None else state
    if config.fused if fused_core is None else fused_core:
        post = fused.observe(params, config, state, prev_actions, embed, eps)
        # The prior feeds nothing forward in filtering, so it runs once over all B*T rows.
        mean, std = prior(params, config, post["deter"])                          # (B, T, Z)
        return post, {"deter": post["deter"], "stoch": mean, "mean": mean, "std": std}
    noise = [None] * steps if eps is None else unstack_time(eps)                 # T x (B, Z)
    posts, priors = [], []
    for action, embed_t, eps_t in zip(unstack_time(prev_actions), unstack_time(embed), noise):
        post_state, prior_state = obs_step(params, config, state, action, embed_t, eps_t)
        posts.append(post_state)
        priors.append(prior_state)
        state = post_state
    post = stack_states(posts)                                                    # (B, T, .)
    return post, {**stack_states(priors, ("stoch", "mean", "std")), "deter": post["deter"]}   # h_t is shared


def imagine(params, config, state, actions, eps=None):
    """Dream forward with no images: img_step for k = 1 .. K.

    state: the last filtered state {"deter" (B, H), "stoch" (B, Z)}; actions (B, K, A),
    actions[:, k] leading into imagined step k; eps (B, K, Z) noise to sample z, or None for the
    prior mean path. Returns a state of (B, K, .) arrays.
    """
    noise = [None] * actions.shape[1] if eps is None else unstack_time(eps)      # K x (B, Z)
    states = []
    for action, eps_k in zip(unstack_time(actions), noise):
        state = img_step(params, config, state, action, eps_k)
        states.append(state)
    return stack_states(states)                                                   # (B, K, .)


def stack_states(states, keys=("deter", "stoch", "mean", "std")):
    """A list of T states of (B, F) arrays -> one state of (B, T, F) arrays (of these keys)."""
    return {key: stack_time([state[key] for state in states]) for key in keys}


# --- the bound --------------------------------------------------------------------------------

def negative_elbo(params, config, pixels, prev_actions, eps, weight=None, overshoot_eps=None):
    """The negative ELBO per frame, averaged over batch and time:

        -ELBO = mean_{b,t} [ -log p(x_t | h_t, z_t) ] + kl_scale * max(mean_{b,t} KL(q || p), free_nats)

    with z_t ~ q(z_t | h_t, x_t) sampled by eps. pixels (B, T, D) in [0, 1]; prev_actions
    (B, T, A) = a_{t-1}; eps (B, T, Z); weight (B, T, D) of 0/1 for the masked likelihood, or None.
    The levers (config.kl_balance, config.overshooting > 1 with noise overshoot_eps (D - 1, B, T, Z),
    config.obs_overshooting > 1) train the prior harder, not the bound's meaning: levers.py.
    Returns (loss, reconstruction term, mean KL), all traced; training.loss is the checked version.
    """
    embed = encode(params, pixels)                                                # (B, T, E)
    post, prior_state = observe(params, config, embed, prev_actions, eps)              # (B, T, .)
    recon = mean_of(frame_nll(params, config, post, pixels, weight))             # -log p(x_t | h_t, z_t)
    kl = kl_gaussian(post["mean"], post["std"], prior_state["mean"], prior_state["std"])   # KL(q || p), (B, T)
    if config.kl_balance or config.overshooting > 1:
        kl_loss = levers.kl_term(params, config, post, prior_state, kl, prev_actions, overshoot_eps, img_step)
    else:
        kl_loss = free_nats(kl, config.free_nats)                                 # max(mean KL, free nats)
    loss = recon + config.kl_scale * kl_loss
    if config.obs_overshooting > 1:                # also score the prior's own dreams against the frames
        loss = loss + levers.observation_overshooting(params, config, post, prior_state, pixels, weight,
                                                      prev_actions, img_step, frame_nll)
    return loss, recon, mean_of(kl)


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
    batch, context, size = obs.shape[:3]
    check_fits_rollout(config, batch * (samples or 1), context + horizon, f"horizon={horizon}")
    if actions is None:
        actions = onp.zeros((batch, context + horizon - 1, config.action_size), dtype=config.dtype)
    obs, actions = onp.asarray(obs, dtype=config.dtype), onp.asarray(actions, dtype=config.dtype)
    embed = encode(params, obs.reshape(batch, context, size * size))                         # (B, C, E)
    post, _ = observe(params, config, embed, actions_into_frames(actions[:, :context]))
    last = {"deter": post["deter"][:, -1], "stoch": post["stoch"][:, -1]}                  # (B, H), (B, Z)
    future_actions = actions[:, context - 1:]                                               # (B, K, A)
    if samples is None:
        return mean_frame(params, config, imagine(params, config, last, future_actions))   # (B, K, S, S)
    # M samples per sequence: repeat every filtered state M times and draw independent noise.
    eps = onp.random.default_rng(seed).standard_normal((batch * samples, horizon, config.stoch_size))
    repeated = {key: onp.repeat(value, samples, axis=0) for key, value in last.items()}
    dream = imagine(params, config, repeated, onp.repeat(future_actions, samples, axis=0), eps.astype(config.dtype))
    return mean_frame(params, config, dream).reshape(batch, samples, horizon, size, size)
