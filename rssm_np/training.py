"""Training: fresh dot-world batches, autograd gradients of the loss, hand-written Adam.

The training state is a plain dict: params (the nested dict), Adam state, step, history.
Every random draw at step k (the batch and the sampling noise) is seeded by (config.seed, k),
so a run stopped at step k and resumed from its checkpoint continues exactly as if never stopped.
"""

import time

import numpy as np          # plain NumPy (the model's traced NumPy is autograd.numpy, in model.py)
from autograd import value_and_grad
from autograd.tracer import getval

from .adam import init_adam
from .config import check_fits_memory, check_params
from .model import init_params, negative_elbo
from .utils.speed import adam_update, flat_of, global_norm_flat, keep_freed_memory, unpack
from .utils.trees import tree_leaves, tree_rebuild
from .utils.validate import check_batch, check_int, check_number, check_seed, check_user_batch, is_config
from .world import actions_into_frames, make_dataset


def training_batch(config, step):
    """The batch for step k: B fresh sequences of T frames, seeded by (seed, k)."""
    return make_dataset(config.batch_size, config.seq_len, size=config.image_size,
                        seed=(config.seed, step), occlusion=config.occlusion,
                        control=config.control, boundary=config.boundary, push_prob=config.push_share)


def elbo_inputs(batch, config, seed):
    """The data side of the bound: frames as pixel vectors, a_{t-1}, noise, likelihood weight,
    and the overshooting noise (None unless config.overshooting > 1).

    batch: obs (B, T, S, S), actions (B, T, A) and optionally mask (B, T, S, S), as make_dataset
    returns them; seed (int or tuple) fixes the noise eps (B, T, Z). All plain NumPy.
    """
    obs = np.asarray(batch["obs"], dtype=config.dtype)
    batch_size, steps, size = obs.shape[:3]
    pixels = obs.reshape(batch_size, steps, size * size)                          # (B, T, D)
    prev_actions = actions_into_frames(np.asarray(batch["actions"], dtype=config.dtype))
    rng = np.random.default_rng(seed)
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
    mask = np.asarray(mask)
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


def init_train_state(config, pixel_mass=None):
    """Step 0: fresh weights (seeded by config.seed), zero Adam moments, empty history.

    pixel_mass: the summed intensity of an average frame, 0 < pixel_mass < D, from which the
    decoder's output bias starts (model.init_params); None: the dot world's (model.DOT_PIXEL_MASS).
    """
    if pixel_mass is None:
        params = init_params(config, seed=config.seed)
    else:
        pixels = config.image_size ** 2
        check_number("pixel_mass", pixel_mass, minimum=0.0, strict_minimum=True)
        if pixel_mass >= pixels:
            raise ValueError(f"pixel_mass must be < {pixels} (every pixel of a {config.image_size}x"
                             f"{config.image_size} frame at 1), got {pixel_mass}")
        params = init_params(config, seed=config.seed, pixel_mass=float(pixel_mass))
    return {"params": params, "adam": init_adam(tree_leaves(params)), "step": 0, "history": []}


def learning_rate_at(config, step):
    """The step size at step k: big steps early to learn fast, small ones late to settle the weights.

    Planned (config.lr_decay_steps = K > 0, the run's planned length):
        lr_k = lr * (min_lr / lr)^(min(k, K) / K)      from lr at step 0 to min_lr at step K, then flat
    Half-life (K = 0):
        lr_k = max(lr * 0.5^(k / half_life), min_lr)

    Both are geometric; the planned one spends the whole run coming down, so a long run keeps
    learning where the half-life's would sit at its floor from step ~4,900 whatever the budget.
    The demo plans its schedule over its steps (lr_decay_steps = the planned total). The step size
    depends on the step and the config alone, so a resumed run follows the same schedule.
    """
    if config.lr_decay_steps:
        progress = min(step / config.lr_decay_steps, 1.0)
        return config.learning_rate * (config.min_learning_rate / config.learning_rate) ** progress
    if config.lr_half_life == 0:
        return config.learning_rate
    return max(config.learning_rate * 0.5 ** (step / config.lr_half_life), config.min_learning_rate)


def make_train_step(config, batches=None):
    """Build train_step(state) -> (state, stats) for this config.

    One step: batch_k -> (L, dL/dtheta) by autograd -> clip -> Adam (clip_by_global_norm, then
    adam_step, run as utils.speed.adam_update). batches(step) gives batch_k (None: training_batch, the dot
    world); a batch from the user is checked before it is used.
    """
    keep_freed_memory()

    def objective(leaves, template, inputs, stats):
        # autograd differentiates with respect to a flat list of arrays: every lookup in a traced
        # nested dict costs a traced call whose backward rebuilds zero-filled copies of the dict.
        total, recon, kl = negative_elbo(tree_rebuild(template, leaves), config, *inputs)
        stats.update(loss=float(getval(total)), recon=float(getval(recon)), kl=float(getval(kl)))
        return total

    loss_and_grad = value_and_grad(objective)

    def train_step(state):
        step = state["step"]
        if batches is None:
            batch = training_batch(config, step)
        else:
            batch = batches(step)
            check_batch(batch, config)
        stats = {}
        leaves = tree_leaves(state["params"])
        inputs = elbo_inputs(batch, config, seed=(config.seed, step, 1))
        _, grads = loss_and_grad(leaves, state["params"], inputs, stats)
        # clip_by_global_norm, then adam_step: the same numbers, run over one flat buffer of all
        # the leaves (utils.speed.adam_update; tests/test_adam.py checks it against those two).
        grad = flat_of(grads)
        stats["grad_norm"] = global_norm_flat(grad)
        stats["finite"] = bool(np.isfinite(stats["loss"]) and np.isfinite(stats["grad_norm"]))
        if not stats["finite"]:
            return state, stats
        leaves, adam = adam_update(leaves, grad, stats["grad_norm"], state["adam"],
                                   learning_rate_at(config, step), config.grad_clip)
        params = tree_rebuild(state["params"], leaves)
        return {"params": params, "adam": adam, "step": step + 1, "history": state["history"]}, stats

    return train_step


def train(config, steps=None, seconds=None, state=None, on_step=None, batches=None, pixel_mass=None):
    """Train until `steps` total steps or `seconds` of wall clock, whichever comes first.

    state: a training state to continue from (None: start fresh); it must be one made for this
    config (check_train_state). on_step(state, stats, elapsed) is called after every step and may
    return True to stop early. batches: a function step -> {"obs": (B, T, S, S) in [0, 1],
    "actions": (B, T, A)} that feeds another world (None: the dot world of the config); its first
    batch is checked against the config before any training (check_user_batch), then trained on,
    so the function is still asked once per step. pixel_mass: the summed intensity of an average
    frame, where the decoder's bias starts (init_train_state); None: for the dot world, the dot's;
    for batches of your own, the mean over the first batch's frames. A state has its weights
    already, so it takes none. Returns the final state; state["history"] gets one dict of stats
    per step. Raises FloatingPointError, keeping the last finite state in the exception's
    `.state`, if the loss or gradient stops being finite.
    """
    if not is_config(config):
        raise TypeError(f"config must be a rssm_np.Config, got {type(config).__name__}")
    if steps is None and seconds is None:
        raise ValueError("train needs steps or seconds, got neither")
    if steps is not None:
        check_int("steps", steps, minimum=0)
    if seconds is not None:
        check_number("seconds", seconds, minimum=0.0)
    if batches is not None and not callable(batches):
        raise TypeError(f"batches must be a function step -> batch, got {type(batches).__name__}")
    check_fits_memory(config)
    if state is not None:
        check_train_state(state, config)
        if pixel_mass is not None:
            raise ValueError("pixel_mass sets the starting weights, and a state has its weights already: "
                             "pass pixel_mass to start fresh, or state to continue, not both")
    if batches is not None:
        first_step = 0 if state is None else state["step"]
        first = batches(first_step)
        check_user_batch(first, config, first_step)
        if state is None and pixel_mass is None:
            pixel_mass = mean_pixel_mass(first["obs"], config)
        batches = handing_out_first(batches, first_step, first)
    state = init_train_state(config, pixel_mass) if state is None else state
    train_step = make_train_step(config, batches)
    start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        if steps is not None and state["step"] >= steps:
            break
        if seconds is not None and elapsed >= seconds:
            break
        step_start = time.perf_counter()
        state, stats = train_step(state)
        if not stats["finite"]:
            error = FloatingPointError(
                f"training stopped at step {state['step'] + 1}: loss {stats['loss']} or gradient norm "
                f"{stats['grad_norm']} is not finite; the parameters of step {state['step']} are kept")
            error.state = state
            raise error
        stats["step"] = state["step"]
        stats["ms"] = 1000 * (time.perf_counter() - step_start)
        state["history"].append({k: stats[k] for k in ("step", "loss", "recon", "kl", "grad_norm", "ms")})
        if on_step is not None and on_step(state, stats, time.perf_counter() - start):
            break
    return state


# --- another world, checked at the door (utils.validate.check_user_batch) -----------------------

def mean_pixel_mass(obs, config):
    """The summed intensity of an average frame of `obs` (B, T, S, S), for the decoder's starting
    bias (model.init_params), kept half a pixel inside (0, D): an all-black or all-white first
    batch would put the bias at minus or plus infinity."""
    pixels = config.image_size ** 2
    mass = float(np.asarray(obs, dtype=np.float64).sum(axis=(-2, -1)).mean())
    return min(max(mass, 0.5), pixels - 0.5)


def handing_out_first(batches, step, batch):
    """batches, except that the batch already made for `step` (to check it) is the one trained on:
    the user's function is asked once per step, as without the check."""
    kept = {step: batch}

    def batches_once(k):
        return kept.pop(k) if k in kept else batches(k)
    return batches_once


def check_train_state(state, config):
    """A state to continue from: the dict train or init_train_state returns, with params of the
    shapes this config builds (config.check_params names the first array that differs)."""
    expected = ("params", "adam", "step", "history")
    if not isinstance(state, dict) or any(key not in state for key in expected):
        found = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
        raise TypeError(f"state must be the dict train or init_train_state returns, with keys "
                        f"{list(expected)}; got {found}")
    check_int("state['step']", state["step"], minimum=0)
    try:
        check_params(state["params"], config)
    except (ValueError, TypeError) as error:
        message = str(error)
        message = "state['params']" + message[len("params"):] if message.startswith("params") else message
        raise type(error)(f"state does not fit this config: {message}; continue a state with the Config it was "
                          f"trained with (checkpoint.load_train_state returns both)") from None
