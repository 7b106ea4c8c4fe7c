"""Evaluation: how far, in pixels, the model's imagined dot is from the true dot.

Protocol (the same for every model and baseline): 64 held-out sequences of 50 frames from a
fixed seed that training never uses; filter the first 10 frames, imagine the next 40 with no
observations; find the dot in each frame by its intensity-weighted centroid; report the
distance to the true position. Plain NumPy on top of model.predict.
Shapes: B sequences, T frames, K imagined steps, S image side.
"""

import numpy as np          # plain NumPy (the model's traced NumPy is autograd.numpy, in model.py)

from ..model import encode, mean_frame, observe, predict
from ..utils.speed import unpack
from ..world import actions_into_frames, make_dataset

EVAL_SEED = 20_261_124       # the held-out set; training batches are seeded by (seed, step) pairs
EVAL_SEQUENCES = 64
EVAL_LENGTH = 50
CONTEXT = 10
HORIZONS = (1, 10, 20, 40)


def centroid(frames):
    """The dot's position as the intensity-weighted mean pixel: (..., S, S) -> (..., 2) [x, y]."""
    size = frames.shape[-1]
    grid = np.arange(size, dtype=np.float64)
    mass = frames.sum(axis=(-2, -1)) + 1e-8
    x = (frames.sum(axis=-2) * grid).sum(axis=-1) / mass       # columns
    y = (frames.sum(axis=-1) * grid).sum(axis=-1) / mass       # rows
    return np.stack([x, y], axis=-1)


def dot_position(params, config, state):
    """The read-out used everywhere in the lab: the dot's [x, y] that a state believes in, as the
    centroid of its mean frame (model.mean_frame).   state of (..., H), (..., Z) -> (..., 2)."""
    return centroid(mean_frame(params, config, state))


def pixel_error(predicted, true):
    """Euclidean distance in pixels: (..., 2), (..., 2) -> (...)."""
    return np.linalg.norm(predicted - true, axis=-1)


def reflect(positions, size):
    """Fold positions back into [0, S-1] as a bouncing wall would: (..., 2) -> (..., 2)."""
    high = size - 1.0
    period = 2 * high
    folded = np.mod(positions, period)
    return np.where(folded > high, period - folded, folded)


def baseline_paths(obs, horizon):
    """The three baselines' predicted dot positions for the K frames after the context.

    obs (B, C, S, S) -> dict name -> (B, K, 2):
      copy_last       the last observed frame, repeated
      const_velocity  the last centroid moved at the velocity of the last two, no walls
      reflect         the same, reflected off the walls: a physics oracle for this world
    """
    size = obs.shape[-1]
    last, before = centroid(obs[:, -1]), centroid(obs[:, -2])            # (B, 2)
    velocity = last - before
    steps = np.arange(1, horizon + 1, dtype=np.float64)[None, :, None]  # (1, K, 1)
    straight = last[:, None] + steps * velocity[:, None]                # (B, K, 2)
    return {
        "copy_last": np.repeat(last[:, None], horizon, axis=1),
        "const_velocity": straight,
        "reflect": reflect(straight, size),
    }


def error_summary(errors, prefix=""):
    """(B, K) errors -> {prefix + 'open_loop_px_error': mean, ... '_at': {horizon: mean}}."""
    return {
        f"{prefix}open_loop_px_error": float(errors.mean()),
        f"{prefix}open_loop_px_error_at": {str(h): float(errors[:, h - 1].mean())
                                           for h in HORIZONS if h <= errors.shape[1]},
    }


def eval_dataset(config):
    """The held-out sequences: the training world's size and walls, no occluders, no actions."""
    return make_dataset(EVAL_SEQUENCES, EVAL_LENGTH, size=config.image_size, seed=EVAL_SEED,
                        boundary=config.boundary)


def filtered_states(params, config, obs, actions):
    """The posterior-mean path over a sequence: observe() the frames, z_t = the posterior's mean.

    obs (B, T, S, S), actions (B, T, A) -> (post, prior), two states of (B, T, .) arrays.
    """
    params = unpack(params)
    batch, steps, size = obs.shape[:3]
    embed = encode(params, obs.reshape(batch, steps, size * size).astype(config.dtype))        # (B, T, E)
    return observe(params, config, embed, actions_into_frames(actions.astype(config.dtype)))


def filtered_frames(params, config, obs, actions):
    """What the model sees in each frame it is shown: the mean frame of the posterior-mean path.

    obs (B, T, S, S), actions (B, T, A) -> frames (B, T, S, S) in [0, 1], and the posterior state.
    """
    post, _ = filtered_states(params, config, obs, actions)
    return mean_frame(params, config, post), post


def evaluate(params, config, data=None):
    """The open-loop metrics of the model and the baselines on the held-out set (a flat dict)."""
    data = eval_dataset(config) if data is None else data
    obs, states, actions = data["obs"], data["states"], data["actions"]
    horizon = obs.shape[1] - CONTEXT
    true_future = states[:, CONTEXT:, :2]                                 # (B, K, 2)
    imagined = predict(params, config, obs[:, :CONTEXT], actions[:, :-1], horizon=horizon)
    metrics = error_summary(pixel_error(centroid(imagined), true_future))
    for name, path in baseline_paths(obs[:, :CONTEXT], horizon).items():
        metrics.update(error_summary(pixel_error(path, true_future), prefix=f"baseline_{name}_"))
    recon, _ = filtered_frames(params, config, obs, actions)
    metrics["recon_px_error"] = float(pixel_error(centroid(recon), states[..., :2]).mean())
    return metrics
