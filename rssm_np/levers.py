"""Levers on the bound: they train the prior harder, not the bound's meaning.

    KL balancing (DreamerV2)               config.kl_balance = a in (0, 1]        balanced_kl
    latent overshooting (PlaNet)           config.overshooting = D > 1            overshooting_kl
    observation overshooting (PlaNet)      config.obs_overshooting = D > 1        observation_overshooting

model.negative_elbo calls kl_term when either of the first two is on (with both off the KL term is
the plain max(mean KL, free nats)), and adds observation_overshooting to the reconstruction when it
is on. `python demo.py --kl-balance 0.8` or `--overshooting 3` trains with one; docs/levers.md says
how to measure what each buys. The deterministic "rnn" of `python -m rssm_np.lab.compare` dreams
only with observation overshooting (docs/why-both-paths.md).

Shapes (the glossary is in model.py): B batch, T time, Z stoch, D overshooting distance.
"""

import autograd.numpy as np                 # traced NumPy
import numpy as onp                         # plain NumPy: constants
from autograd.tracer import getval as stop_gradient   # sg(x): x's value, with no gradient through it

from . import fused, variants
from .distributions import free_nats, kl_gaussian
from .layers import mean_of


def kl_term(params, config, post, prior, kl, prev_actions, overshoot_eps, img_step):
    """The KL term of the bound with the levers the config turns on.

        term = balanced_kl (if kl_balance) or max(mean KL, free nats),  + overshooting_kl (if D > 1)

    post, prior: observe()'s two states of (B, T, .) arrays; kl (B, T) = KL(q || p);
    img_step: model.img_step, passed in (this file sits below the model), for overshooting's dream.
    """
    if config.kl_balance:
        term = balanced_kl(post, prior, config.kl_balance, config.free_nats)
    else:
        term = free_nats(kl, config.free_nats)
    if config.overshooting > 1:
        term = term + overshooting_kl(params, config, post, prior, prev_actions, overshoot_eps, img_step)
    return term


def balanced_kl(post, prior, balance, nats):
    """KL balancing (DreamerV2): the same KL value, its gradient shared unequally.

        KL_bal = a * max(mean KL(sg(q) || p), free) + (1 - a) * max(mean KL(q || sg(p)), free)

    sg() stops the gradient (autograd's getval: the value without its trace). Both terms have the
    value of KL(q || p), so the loss is unchanged; but the first moves only the prior (toward the
    posterior) and the second only the posterior (toward the prior). With a = 0.8 the prior learns
    to predict what the image will say 4x faster than the posterior is pulled toward a poor prior.
    The plain KL is not a = 0.5 (that halves both pulls) but both weights 1: balance 0 (Config).
    post, prior: states of (B, T, Z) mean and std -> a scalar.
    """
    to_prior = kl_gaussian(stop_gradient(post["mean"]), stop_gradient(post["std"]), prior["mean"], prior["std"])
    to_post = kl_gaussian(post["mean"], post["std"], stop_gradient(prior["mean"]), stop_gradient(prior["std"]))
    return balance * free_nats(to_prior, nats) + (1 - balance) * free_nats(to_post, nats)


def overshooting_kl(params, config, post, prior, prev_actions, overshoot_eps, img_step):
    """Latent overshooting (PlaNet, section 4): train the prior to dream d steps, not only one.

        KL_d = mean_{b,t} KL(sg(q(z_t | h_t, x_t)) || p_d(z_t | z_{t-d})),   d = 2 .. D
        term = mean_{d=2..D} max(KL_d, free nats)

    p_d is the prior reached by dreaming d steps (img_step) from the posterior state at t - d,
    with no image in between; the posterior is the target (its gradient is stopped), so only the
    dream is pulled toward what the images said. The one-step prior p_1 is the bound's own KL;
    from it, one more img_step per distance: the state after d - 1 steps (h_t, z_t ~ p_{d-1}) is
    dreamed on with a_t into p_d at t + 1. Rows are the B x (T - d + 1) start times, all at once.
    post, prior: observe()'s states; prev_actions (B, T, A); overshoot_eps (D - 1, B, T, Z).
    Returns a scalar.
    """
    terms = []
    for d, dream in dreams_ahead(params, config, post, prior, prev_actions, config.overshooting, img_step,
                                 overshoot_eps):
        target_mean = stop_gradient(post["mean"][:, d - 1:])                       # (B, T - d + 1, Z)
        target_std = stop_gradient(post["std"][:, d - 1:])
        terms.append(free_nats(kl_gaussian(target_mean, target_std, dream["mean"], dream["std"]), config.free_nats))
    return sum(terms) / len(terms)


def observation_overshooting(params, config, post, prior, pixels, weight, prev_actions, img_step, frame_nll):
    """Observation overshooting (PlaNet, section 4): decode the prior's own dreams, d = 2 .. D steps
    past the last image, and score them against the frames that came.

        term = mean_{d=2..D} mean_{b,t} -log p(x_t | h_t, z_t ~ p_d(z_t | z_{t-d}))

    The dream runs on the prior's mean (no noise): from the one-step prior p_1 (h_t and its mean),
    one more img_step per distance, as in overshooting_kl. Unlike latent overshooting, which pulls
    the dreamed z toward the posterior's, this trains the transition on its own open-loop guesses
    in the frame's terms: what an imagined rollout is judged by. Dreams start at every
    k = config.obs_overshooting_every-th frame (k = 1: at every frame, as PlaNet; each frame then
    costs D - 1 more decoder rows, k = D - 1 costs one: each frame is dreamed once, from 1 to D - 1
    steps back). The dreams of all distances are decoded as one batch of rows; frame_nll is
    model.frame_nll (decode, then the Bernoulli likelihood per frame). With config.fused the dreams
    run as one fused rollout (_observation_overshooting_fused, fused.dream): the same value.
    pixels (B, T, D); weight (B, T, D) or None.
    """
    if config.fused:
        return _observation_overshooting_fused(params, config, post, prior, pixels, weight, prev_actions, frame_nll)
    every = config.obs_overshooting_every
    dreams = list(dreams_ahead(params, config, post, prior, prev_actions, config.obs_overshooting, img_step,
                               every=every))
    state = {key: np.concatenate([dream[key] for _, dream in dreams], axis=1)    # (B, R, .), R dreamed frames
             for key in ("deter", "stoch")}
    targets = np.concatenate([pixels[:, d - 1::every] for d, _ in dreams], axis=1)   # (B, R, D): the frames
    mask = None if weight is None else np.concatenate([weight[:, d - 1::every] for d, _ in dreams], axis=1)
    nll = frame_nll(params, config, state, targets, mask)                        # (B, R)
    # mean over d of the mean over its frames: each frame weighs 1 / (its distance's count * (D - 1))
    per_frame = onp.concatenate([onp.full(dream["deter"].shape[1], 1.0 / (dream["deter"].shape[1] * len(dreams)))
                                 for _, dream in dreams]).astype(nll.dtype)     # (R,)
    return np.sum(mean_of(nll, axis=0) * per_frame)


def _observation_overshooting_fused(params, config, post, prior, pixels, weight, prev_actions, frame_nll):
    """observation_overshooting's term, its dreams run as one fused rollout (fused.dream): every
    start's dream goes all D - 1 steps, and a step past the last frame (no action, no frame to
    score) weighs 0. The same value as the loop of dreams_ahead (tests/test_levers.py)."""
    batch, steps = prev_actions.shape[:2]
    every, ahead = config.obs_overshooting_every, config.obs_overshooting - 1
    starts = onp.arange(0, steps - 1, every)                                     # p_1 at frames 0, k, .., (N,)
    frames = starts[:, None] + onp.arange(1, ahead + 1)                          # (N, D-1): s + d - 1, d = 2 .. D
    inside = frames <= steps - 1                                                 # a frame to score
    frames = onp.minimum(frames, steps - 1)
    actions = prev_actions[:, frames] * inside[..., None]                        # (B, N, D-1, A): a_{s+d-1}, or 0
    rows = batch * len(starts)
    start = {"deter": post["deter"][:, 0:steps - 1:every].reshape(rows, -1),     # h_s of p_1
             "stoch": prior["mean"][:, 0:steps - 1:every].reshape(rows, -1)}     # its mean z_s
    dream = fused.dream(params, config, start, actions.reshape(rows, ahead, -1))   # (B*N, D-1, .)
    state = {key: dream[key].reshape(batch, len(starts) * ahead, -1) for key in ("deter", "stoch")}
    targets = pixels[:, frames].reshape(batch, len(starts) * ahead, -1)          # (B, N*(D-1), D)
    mask = None if weight is None else weight[:, frames].reshape(targets.shape)
    nll = frame_nll(params, config, state, targets, mask)                        # (B, N*(D-1))
    # mean over d of the mean over its frames: weight 1 / (N_d (D - 1)) inside, 0 past the last frame
    per_frame = (inside / (inside.sum(axis=0) * ahead)).astype(nll.dtype).reshape(-1)   # (N*(D-1),)
    return np.sum(mean_of(nll, axis=0) * per_frame)


def dreams_ahead(params, config, post, prior, prev_actions, distance, img_step, eps=None, every=1):
    """The dreams both overshootings train: for d = 2 .. distance, the state p_d reached by dreaming d
    steps past the posterior, from every `every`-th start frame, as (d, state of (B, N_d, .) arrays).

    From the one-step prior p_1 at frames 0, k, 2k, .. (h_t shared with the posterior; k = every),
    one more img_step per distance: z_t of p_{d-1} (sampled with eps (D - 1, B, T, Z), or its mean
    when eps is None) and a_t lead into p_d at t + 1. So p_d is known at frames d-1, d-1+k, ..
    up to T-1: N_d = ceil((T - d + 1) / k) of them (with k = 1, frames d-1 .. T-1), the first N_d
    of the N_{d-1} dreams one step on; the B x N_d dreams run as one batch of rows.
    """
    batch, steps = prev_actions.shape[:2]
    starts = slice(0, steps - 1, every)                                          # p_1 at frames 0, k, .., <= T-2
    deter, mean, std = post["deter"][:, starts], prior["mean"][:, starts], prior["std"][:, starts]
    for d in range(2, distance + 1):
        count = len(range(d - 1, steps, every))                                  # N_d: p_d at frames d-1, d-1+k, ..
        rows = batch * count
        noise = None if eps is None else eps[d - 2][:, d - 2::every][:, :count]
        if count < deter.shape[1]:                 # the last start has no frame d - 1 steps on: drop it
            deter, mean, std = deter[:, :count], mean[:, :count], std[:, :count]
        state = {"deter": deter.reshape(rows, -1),                               # h_t of p_{d-1}, (rows, H)
                 "stoch": variants.sample(config, mean, std, noise).reshape(rows, -1)}   # z_t
        dream = img_step(params, config, state, prev_actions[:, d - 1::every].reshape(rows, -1))  # -> p_d at t + 1
        dream = {key: value.reshape(batch, count, -1) for key, value in dream.items()}
        deter, mean, std = dream["deter"], dream["mean"], dream["std"]
        yield d, dream
