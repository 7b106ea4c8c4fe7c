"""Measuring imagined futures, for comparing models: the mean path, the best of M samples,
coverage, sharpness, and how much the one-step-ahead samples spread at the walls.

A model that knows "uncertainty when necessary" should (1) keep one sample close to the truth
when the future forks (best of M), (2) put the truth inside its 90% region about 90% of the
time (coverage), (3) draw a sharp dot, not the blurred average of all futures (sharpness), and
(4) spread its one-step-ahead guesses right after a wall redraws the velocity, and not in free
flight (the event spread ratio). Plain NumPy on top of model.predict / model.observe.
Shapes (the glossary is in model.py): B sequences, T frames, K imagined steps, M samples.
"""

import numpy as np          # plain NumPy (the model's traced NumPy is autograd.numpy, in model.py)

from .beliefs import coverage
from .evaluate import CONTEXT, EVAL_SEED, centroid, dot_position, pixel_error
from ..model import encode, img_step, observe, predict
from ..utils.speed import unpack
from ..world import actions_into_frames, make_dataset, render

HORIZON = {"bounce": 40, "random": 20, "clip": 40}   # imagined steps scored per world
SAMPLES = 32
FREE_FLIGHT_MARGIN = 4        # a frame is in free flight if no velocity was redrawn within 4 frames of it
CHUNK = 16                    # sequences per predict call: M samples of K frames are large


def futures_dataset(boundary, sequences=64, seed=EVAL_SEED, size=32):
    """Held-out sequences (a seed training never uses): CONTEXT seen frames, then HORIZON more."""
    return make_dataset(sequences, CONTEXT + HORIZON[boundary], size=size, seed=seed, boundary=boundary)


def imagined_futures(params, config, data, samples=SAMPLES, seed=0):
    """The mean path and M sampled futures after CONTEXT frames: centroids and the frames at h=20.

    Returns mean_xy (B, K, 2), sample_xy (B, M, K, 2), mean_frames_h20 (B, S, S),
    sample_frames_h20 (B, M, S, S).
    """
    obs, actions = data["obs"], data["actions"]
    horizon = obs.shape[1] - CONTEXT
    at = min(20, horizon) - 1
    mean_xy, sample_xy, mean_h20, sample_h20 = [], [], [], []
    for start in range(0, len(obs), CHUNK):
        chunk = slice(start, start + CHUNK)
        context, future_actions = obs[chunk, :CONTEXT], actions[chunk, :-1]
        mean_frames = predict(params, config, context, future_actions, horizon=horizon)      # (b, K, S, S)
        sampled = predict(params, config, context, future_actions, horizon=horizon,
                          seed=(seed, start), samples=samples)                                # (b, M, K, S, S)
        mean_xy.append(centroid(mean_frames))
        sample_xy.append(centroid(sampled))
        mean_h20.append(mean_frames[:, at])
        sample_h20.append(sampled[:, :, at])
    return (np.concatenate(mean_xy), np.concatenate(sample_xy), np.concatenate(mean_h20),
            np.concatenate(sample_h20))


def best_of(sample_xy, truth):
    """Per sequence and step, the distance of the sampled future closest to the truth.

    sample_xy (B, M, K, 2), truth (B, K, 2) -> (B, K). With one future (an RNN) it is the
    ordinary error; with many, a model that keeps the right fork among them scores low.
    """
    return pixel_error(sample_xy, truth[:, None]).min(axis=1)


def sharpness(frames, true_xy, size):
    """Peak pixel of the imagined frame over the peak of the true frame, averaged over frames.

    frames (..., S, S), true_xy (..., 2). A model that can only draw the average of many futures
    draws a dim smear (sharpness well below 1); a confident, right or wrong, dot is near 1.
    """
    true_peak = render(true_xy, size).max(axis=(-2, -1))
    return float(np.mean(frames.max(axis=(-2, -1)) / true_peak))


def one_step_spread(params, config, data, samples=SAMPLES, seed=0):
    """How much the model's guesses of the next frame spread, at every frame of a sequence.

    For each t: filter frames 0 .. t (posterior mean), dream one step with M samples of
    z_{t+1} ~ p(z_{t+1} | h_{t+1}), decode, and take the samples' centroids. The spread is the
    root mean square distance of the M centroids to their mean, in pixels.
    Returns (B, T) with spread[:, t+1] for the guess of frame t+1, and NaN at t = 0.
    """
    params = unpack(params)
    obs, actions = data["obs"].astype(config.dtype), data["actions"].astype(config.dtype)
    batch, steps, size = obs.shape[:3]
    embed = encode(params, obs.reshape(batch, steps, size * size))                            # (B, T, E)
    post, _ = observe(params, config, embed, actions_into_frames(actions))
    deter, stoch = np.asarray(post["deter"]), np.asarray(post["stoch"])                      # (B, T, .)
    rng = np.random.default_rng(seed)
    spread = np.full((batch, steps), np.nan)
    for t in range(steps - 1):
        state = {"deter": np.repeat(deter[:, t], samples, axis=0), "stoch": np.repeat(stoch[:, t], samples, axis=0)}
        action = np.repeat(actions[:, t], samples, axis=0)                                   # a_t leads into t+1
        eps = rng.standard_normal((batch * samples, config.stoch_size)).astype(config.dtype)
        guess = img_step(params, config, state, action, eps)
        xy = dot_position(params, config, guess).reshape(batch, samples, 2)                  # (B, M, 2)
        spread[:, t + 1] = np.sqrt(((xy - xy.mean(axis=1, keepdims=True)) ** 2).sum(-1).mean(axis=1))
    return spread


def event_frames(events, margin=FREE_FLIGHT_MARGIN):
    """Which frames follow a redrawn velocity, and which are in free flight: two (B, T) bool masks.

    events[:, t] says the step into frame t redrew the velocity; frame t itself is the reflected,
    still predictable position, and frame t+1 is the first that moves with the new velocity.
    Free flight: no redraw within `margin` frames either side, and at least `margin` frames in.
    """
    batch, steps = events.shape
    after_event = np.zeros_like(events)
    after_event[:, 1:] = events[:, :-1]
    near = np.zeros_like(events)
    for shift in range(-margin, margin + 1):
        lo, hi = max(0, shift), steps + min(0, shift)
        near[:, lo:hi] |= events[:, lo - shift:hi - shift]
    free = ~near
    free[:, :margin] = False
    return after_event, free


def event_spread_ratio(spread, events):
    """Mean one-step spread on the first frame after a redraw, over the mean in free flight.

    (B, T), (B, T) -> float; NaN when the model never spreads (an RNN: its M futures are one,
    so its spread is zero up to rounding, under 1e-6 px) or there is no event.
    """
    after_event, free = event_frames(events)
    if not after_event.any() or not free.any():
        return float("nan")
    flight = np.nanmean(spread[free])
    return float(np.nanmean(spread[after_event]) / flight) if flight > 1e-6 else float("nan")


def future_metrics(params, config, data, samples=SAMPLES, seed=0):
    """Every measurement of the comparison on one held-out set, as a flat dict of floats, plus the
    per-step curves (lists) for the figures."""
    truth = data["states"][:, CONTEXT:, :2].astype(np.float64)                               # (B, K, 2)
    size = data["obs"].shape[-1]
    mean_xy, sample_xy, mean_h20, sample_h20 = imagined_futures(params, config, data, samples, seed)
    mean_error = pixel_error(mean_xy, truth)                                                 # (B, K)
    best_error = best_of(sample_xy, truth)                                                   # (B, K)
    horizon = truth.shape[1]
    at = min(20, horizon) - 1
    late = slice(10, 20)                                                                     # h = 11 .. 20
    spread = one_step_spread(params, config, data, samples, seed)
    return {
        "mean_h10": float(mean_error[:, 9].mean()),
        f"mean_over_{horizon}": float(mean_error.mean()),
        "mean_h11_20": float(mean_error[:, late].mean()),
        "best_of_32_h10": float(best_error[:, 9].mean()),
        "best_of_32_h11_20": float(best_error[:, late].mean()),
        "coverage90": coverage(sample_xy.transpose(0, 2, 1, 3), truth),
        "sharpness_h20_mean_path": sharpness(mean_h20, truth[:, at], size),
        "sharpness_h20_samples": sharpness(sample_h20, truth[:, at, None], size),
        "event_spread_ratio": event_spread_ratio(spread, data["events"]),
        "curve_mean_path": mean_error.mean(axis=0).tolist(),
        "curve_best_of_32": best_error.mean(axis=0).tolist(),
    }
