"""Training: fresh dot-world batches, autograd gradients of the loss, hand-written Adam.

The training state is a plain dict: flat parameter vector, Adam state, step, history. Every
random draw at step k (the batch and the sampling noise) is seeded by (config.seed, k), so a
run stopped at step k and resumed from its checkpoint continues exactly as if never stopped.
"""

import time

import numpy as np
from autograd import value_and_grad
from autograd.misc import flatten

from .adam import adam_step, clip_by_global_norm, init_adam
from .model import init_params, loss
from .world import make_dataset


def training_batch(config, step):
    """The batch for step k: B fresh sequences of T frames, seeded by (seed, k)."""
    return make_dataset(config.batch_size, config.seq_len, size=config.image_size,
                        seed=(config.seed, step), occlusion=config.occlusion,
                        control=config.control, boundary=config.boundary)


def init_train_state(config):
    """Step 0: fresh weights (seeded by config.seed), zero Adam moments, empty history."""
    flat, _ = flatten(init_params(config, seed=config.seed))
    return {"flat": flat, "adam": init_adam(flat.size, config.dtype), "step": 0, "history": []}


def unflattener(config):
    """The function that turns the flat vector back into the nested params dict."""
    return flatten(init_params(config, seed=0))[1]


def make_train_step(config):
    """Build train_step(state) -> (state, stats) for this config.

    One step: batch_k -> (L, dL/dtheta) by autograd -> clip -> Adam.
    """
    unflatten = unflattener(config)
    # Differentiate with respect to the params dict and flatten the gradient afterwards: slicing
    # the flat vector inside the traced function would cost a full-size scatter per array.
    loss_and_grad = value_and_grad(loss)

    def train_step(state):
        step = state["step"]
        batch = training_batch(config, step)
        stats = {}
        _, grad = loss_and_grad(unflatten(state["flat"]), batch, config, (config.seed, step, 1), stats)
        grad = flatten(grad)[0]
        grad, stats["grad_norm"] = clip_by_global_norm(grad, config.grad_clip)
        stats["finite"] = bool(np.isfinite(stats["loss"]) and np.isfinite(stats["grad_norm"]))
        if not stats["finite"]:
            return state, stats
        flat, adam = adam_step(state["flat"], grad, state["adam"], config.learning_rate)
        return {"flat": flat, "adam": adam, "step": step + 1, "history": state["history"]}, stats

    return train_step


def train(config, steps=None, seconds=None, state=None, on_step=None):
    """Train until `steps` total steps or `seconds` of wall clock, whichever comes first.

    state: a training state to continue from (None: start fresh). on_step(state, stats, elapsed)
    is called after every step and may return True to stop early. Returns the final state;
    state["history"] gets one dict of stats per step.
    """
    if steps is None and seconds is None:
        raise ValueError("train needs steps or seconds, got neither")
    state = init_train_state(config) if state is None else state
    train_step = make_train_step(config)
    start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        if steps is not None and state["step"] >= steps:
            break
        if seconds is not None and elapsed >= seconds:
            break
        step_start = time.perf_counter()
        state, stats = train_step(state)
        stats["step"] = state["step"]
        stats["ms"] = 1000 * (time.perf_counter() - step_start)
        if not stats["finite"]:
            raise FloatingPointError(
                f"training stopped at step {state['step']}: loss {stats['loss']} or gradient norm "
                f"{stats['grad_norm']} is not finite; the parameters of step {state['step']} are kept")
        state["history"].append({k: stats[k] for k in ("step", "loss", "recon", "kl", "grad_norm", "ms")})
        if on_step is not None and on_step(state, stats, time.perf_counter() - start):
            break
    return state


def params_of(state, config):
    """The nested params dict of a training state."""
    return unflattener(config)(state["flat"])
