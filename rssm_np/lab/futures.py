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
from .evaluate import CONTEXT, EVAL_SEED, centroid, dot_position, filtered_states, pixel_error
from ..distributions import kl_gaussian
from ..model import encode, img_step, observe, predict
from ..utils.speed import unpack
from ..world import actions_into_frames, make_dataset, render

HORIZON = {"bounce": 40, "random": 20, "clip": 40}   # imagined steps scored per world
SAMPLES = 32
FREE_FLIGHT_MARGIN = 4        # a frame is in free flight if no velocity was redrawn within 4 frames of it
EVENT_LAGS = range(-3, 9)     # frames around a redraw that the event average shows (0: the first frame
                              # that moves with the new velocity)
CHUNK = 16                    # sequences per predict call: M samples of K frames are large


def futures_dataset(boundary, sequences=64, seed=EVAL_SEED, size=32):
    """Held-out sequences (a seed training never uses): CONTEXT seen frames, then HORIZON more."""
    return make_dataset(sequences, CONTEXT + HORIZON[boundary], size=size, seed=seed, boundary=boundary)


def events_dataset(sequences=64, length=60, size=32):
    """Long held-out random-wall sequences (their own seed) for the event-triggered averages:
    about one velocity redraw every dozen frames, so several per sequence."""
    return make_dataset(sequences, length, size=size, seed=EVAL_SEED + 7, boundary="random")


def imagined_futures(params, config, data, samples=SAMPLES, seed=0):
    """The mean path and M sampled futures after CONTEXT frames: centroids and frames.

    Returns mean_frames (B, K, S, S), sample_xy (B, M, K, 2), sample_frames_h20 (B, M, S, S).
    """
    obs, actions = data["obs"], data["actions"]
    horizon = obs.shape[1] - CONTEXT
    at = min(20, horizon) - 1
    means, sample_xy, sample_h20 = [], [], []
    for start in range(0, len(obs), CHUNK):
        chunk = slice(start, start + CHUNK)
        context, future_actions = obs[chunk, :CONTEXT], actions[chunk, :-1]
        mean_frames = predict(params, config, context, future_actions, horizon=horizon)      # (b, K, S, S)
        sampled = predict(params, config, context, future_actions, horizon=horizon,
                          seed=(seed, start), samples=samples)                                # (b, M, K, S, S)
        means.append(mean_frames)
        sample_xy.append(centroid(sampled))
        sample_h20.append(sampled[:, :, at])
    return np.concatenate(means), np.concatenate(sample_xy), np.concatenate(sample_h20)


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
    mean_frames, sample_xy, sample_h20 = imagined_futures(params, config, data, samples, seed)
    mean_error = pixel_error(centroid(mean_frames), truth)                                   # (B, K)
    best_error = best_of(sample_xy, truth)                                                   # (B, K)
    horizon = truth.shape[1]
    at = min(20, horizon) - 1
    late = slice(10, 20)                                                                     # h = 11 .. 20
    spread = one_step_spread(params, config, data, samples, seed)
    events = data["events"]
    return {
        "mean_h10": float(mean_error[:, 9].mean()),
        f"mean_over_{horizon}": float(mean_error.mean()),
        "mean_h11_20": float(mean_error[:, late].mean()),
        "best_of_32_h10": float(best_error[:, 9].mean()),
        "best_of_32_h11_20": float(best_error[:, late].mean()),
        "coverage90": coverage(sample_xy.transpose(0, 2, 1, 3), truth),
        "sharpness_h20_mean_path": sharpness(mean_frames[:, at], truth[:, at], size),
        "sharpness_h20_samples": sharpness(sample_h20, truth[:, at, None], size),
        "event_spread_ratio": event_spread_ratio(spread, events),
        **fork_metrics(mean_frames, truth, events[:, CONTEXT:], size),
        "curve_mean_path": mean_error.mean(axis=0).tolist(),
        "curve_best_of_32": best_error.mean(axis=0).tolist(),
    }


def surprise(params, config, data):
    """Per-frame surprise KL(q(z_t | h_t, x_t) || p(z_t | h_t)) along the filtered posterior-mean path:
    how much the image changed the model's guess. (B, T) nats. For the "rnn", whose z is a point
    with both stds 1, it is its regression error 0.5 ||mean_q - mean_p||^2."""
    post, prior = filtered_states(params, config, data["obs"], data["actions"])
    return np.asarray(kl_gaussian(np.asarray(post["mean"]), np.asarray(post["std"]),
                                  np.asarray(prior["mean"]), np.asarray(prior["std"])))        # (B, T)


def event_average(values, events, lags=EVENT_LAGS):
    """An event-triggered average: values (B, T) aligned on every velocity redraw.

    Lag 0 is the first frame that moves with the new velocity (frame t + 1 when events[:, t]);
    lag -1 is the frame of the hit. Events whose window leaves the sequence, or starts within
    FREE_FLIGHT_MARGIN frames of its start, are left out. Returns a dict: lags, mean (L,), std (L,)
    over events, events (count), free_flight (the mean over free-flight frames, event_frames), and
    ratio_at_0 (mean at lag 0 / free flight; NaN if free flight is 0).
    """
    lags = list(lags)
    batch, steps = events.shape
    rows = []
    for b, t in zip(*np.nonzero(events)):
        frames = [t + 1 + lag for lag in lags]
        if frames[0] >= FREE_FLIGHT_MARGIN and frames[-1] < steps:
            rows.append(values[b, frames])
    _, free = event_frames(events)
    flight = float(np.nanmean(values[free])) if free.any() else float("nan")
    rows = np.array(rows, dtype=np.float64).reshape(-1, len(lags))                             # (N, L)
    mean = np.nanmean(rows, axis=0) if len(rows) else np.full(len(lags), np.nan)
    at_0 = mean[lags.index(0)]
    return {"lags": lags, "mean": mean.tolist(), "std": (np.nanstd(rows, axis=0) if len(rows) else mean).tolist(),
            "events": len(rows), "free_flight": flight,
            "ratio_at_0": float(at_0 / flight) if flight > 1e-6 else float("nan")}


def fork_metrics(frames, truth, events, size):
    """The mean path's error and sharpness after a fork against free flight, at matched horizons.

    frames (B, K, S, S) imagined along the mean path, truth (B, K, 2), events (B, K) redraws in the
    imagined stretch. At each horizon k the sequences split in two: those whose dot was redrawn at
    or before k - 1 (the frame at k moves with a velocity the model could not know: after a fork),
    and those with no redraw up to k (free flight). Each measure is averaged over the horizons where
    both groups hold at least 4 sequences, so a longer horizon does not pass for a fork.
    Returns {fork_error, free_error, fork_sharpness, free_sharpness}.
    """
    error = pixel_error(centroid(frames), truth)                                                # (B, K)
    true_peak = render(truth, size).max(axis=(-2, -1))
    sharp = frames.max(axis=(-2, -1)) / true_peak                                               # (B, K)
    redrawn = np.cumsum(events, axis=1) > 0                                                     # at or before k
    after = np.zeros_like(redrawn)
    after[:, 1:] = redrawn[:, :-1]                                                              # a redraw before k
    free = ~redrawn
    out = {key: [] for key in ("fork_error", "free_error", "fork_sharpness", "free_sharpness")}
    for k in range(frames.shape[1]):
        if after[:, k].sum() >= 4 and free[:, k].sum() >= 4:
            out["fork_error"].append(error[after[:, k], k].mean())
            out["free_error"].append(error[free[:, k], k].mean())
            out["fork_sharpness"].append(sharp[after[:, k], k].mean())
            out["free_sharpness"].append(sharp[free[:, k], k].mean())
    return {key: float(np.mean(values)) if values else float("nan") for key, values in out.items()}


def event_metrics(params, config, data, samples=SAMPLES, seed=0):
    """"When necessary", measured: the surprise KL(q_t || p_t) and the one-step spread, each averaged
    over every velocity redraw of `data` (events_dataset) by event_average."""
    return {"surprise_at_events": event_average(surprise(params, config, data), data["events"]),
            "spread_at_events": event_average(one_step_spread(params, config, data, samples, seed), data["events"])}
