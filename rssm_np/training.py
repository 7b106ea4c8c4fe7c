"""Training: fresh dot-world batches, autograd gradients of the loss, hand-written Adam.

The training state is a plain dict: params (the nested dict), Adam state, step, history.
Every random draw at step k (the batch and the sampling noise) is seeded by (config.seed, k),
so a run stopped at step k and resumed from its checkpoint continues exactly as if never stopped.
"""

import dataclasses
import math
import os
import time

import numpy as np          # plain NumPy (the model's traced NumPy is autograd.numpy, in model.py)
from autograd import value_and_grad
from autograd.tracer import getval

from .adam import adam_step, clip_by_global_norm, init_adam
from .model import elbo_inputs, init_params, negative_elbo, param_shapes
from .utils.speed import keep_freed_memory
from .utils.trees import tree_leaves, tree_rebuild
from .utils.validate import check_batch, check_int, check_number, is_config
from .world import make_dataset

SIZE_FIELDS = ("image_size", "action_size", "deter_size", "stoch_size", "hidden_size", "embed_size",
               "batch_size", "seq_len")


def bytes_needed(config, training=True):
    """A lower bound on the memory the model needs: its parameters, and for training also their
    gradients and two Adam moments, plus one batch of frames with their logits and gradients."""
    itemsize = np.dtype(config.dtype).itemsize
    count = sum(math.prod(shape) for shape in tree_leaves(param_shapes(config)))
    if not training:
        return count * itemsize
    frames = config.batch_size * config.seq_len * config.image_size ** 2
    return (4 * count + 3 * frames) * itemsize


def machine_memory():
    """Bytes of physical memory, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits_memory(config, training=True):
    """Refuse, naming the field, a config whose arrays cannot fit in this machine's memory, before
    any is allocated (instead of a MemoryError naming an array shape, or a machine that swaps)."""
    need, have = bytes_needed(config, training), machine_memory()
    if have is None or need <= have:
        return
    defaults = {field.name: field.default for field in dataclasses.fields(config)}
    # The culprit: the size field whose default value would shrink the need the most.
    name = min(SIZE_FIELDS, key=lambda field: bytes_needed(dataclasses.replace(config, **{field: defaults[field]}),
                                                         training))
    what = "parameters, gradients, Adam moments and a batch" if training else "parameters"
    raise ValueError(f"config.{name}={getattr(config, name)} is too large: the model's {what} need at least "
                     f"{need / 2 ** 30:.1f} GiB, and this machine has {have / 2 ** 30:.1f} GiB")


def training_batch(config, step):
    """The batch for step k: B fresh sequences of T frames, seeded by (seed, k)."""
    return make_dataset(config.batch_size, config.seq_len, size=config.image_size,
                        seed=(config.seed, step), occlusion=config.occlusion,
                        control=config.control, boundary=config.boundary, push_prob=config.push_share)


def init_train_state(config):
    """Step 0: fresh weights (seeded by config.seed), zero Adam moments, empty history."""
    params = init_params(config, seed=config.seed)
    return {"params": params, "adam": init_adam(tree_leaves(params)), "step": 0, "history": []}


def learning_rate_at(config, step):
    """The step size at step k: big steps early to learn fast, small ones late to settle the weights.

    Planned (config.lr_decay_steps = K > 0, the run's planned length):
        lr_k = lr * (min_lr / lr)^(min(k, K) / K)      from lr at step 0 to min_lr at step K, then flat
    Half-life (K = 0):
        lr_k = max(lr * 0.5^(k / half_life), min_lr)

    Both are geometric; the planned one spends the whole run coming down, so a long run keeps
    learning where the half-life's would sit at its floor from step ~4,900 whatever the budget.
    For the demo's 4,500 steps they nearly agree (its half-life is 917 steps). The step size
    depends on the step and the config alone, so a resumed run follows the same schedule.
    (Measured here earlier: 2,500 steps, open-loop error at horizon 10 of 1.43 px with a constant
    3e-3, 1.08 px with a half-life of 1,000 steps.)
    """
    if config.lr_decay_steps:
        progress = min(step / config.lr_decay_steps, 1.0)
        return config.learning_rate * (config.min_learning_rate / config.learning_rate) ** progress
    if config.lr_half_life == 0:
        return config.learning_rate
    return max(config.learning_rate * 0.5 ** (step / config.lr_half_life), config.min_learning_rate)


def step_seconds(config, steps=8, warmup=2):
    """Wall seconds of each of `steps` train steps of this config, after `warmup` untimed ones, on a
    scratch state that is then dropped: how a wall-clock budget becomes a planned number of steps
    (the demo's --minutes, from the median), and what `python -m rssm_np.lab.bench` reports."""
    check_int("steps", steps, minimum=1)
    state = init_train_state(config)
    train_step = make_train_step(config)
    times = []
    for index in range(warmup + steps):
        start = time.perf_counter()
        state, _ = train_step(state)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return times


def make_train_step(config, batches=None):
    """Build train_step(state) -> (state, stats) for this config.

    One step: batch_k -> (L, dL/dtheta) by autograd -> clip -> Adam. batches(step) gives batch_k
    (None: training_batch, the dot world); a batch from the user is checked before it is used.
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
        grads, stats["grad_norm"] = clip_by_global_norm(grads, config.grad_clip)
        stats["finite"] = bool(np.isfinite(stats["loss"]) and np.isfinite(stats["grad_norm"]))
        if not stats["finite"]:
            return state, stats
        leaves, adam = adam_step(leaves, grads, state["adam"], learning_rate_at(config, step))
        params = tree_rebuild(state["params"], leaves)
        return {"params": params, "adam": adam, "step": step + 1, "history": state["history"]}, stats

    return train_step


def train(config, steps=None, seconds=None, state=None, on_step=None, batches=None):
    """Train until `steps` total steps or `seconds` of wall clock, whichever comes first.

    state: a training state to continue from (None: start fresh). on_step(state, stats, elapsed)
    is called after every step and may return True to stop early. batches: a function
    step -> {"obs": (B, T, S, S) in [0, 1], "actions": (B, T, A)} that feeds another world
    (None: the dot world of the config). Returns the final state;
    state["history"] gets one dict of stats per step. Raises FloatingPointError, keeping the last
    finite state in the exception's `.state`, if the loss or gradient stops being finite.
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
    state = init_train_state(config) if state is None else state
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
