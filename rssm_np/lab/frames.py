"""Measuring a world model on any world: imagined frames against true frames.

The dot world's evaluation (evaluate.py) reads the dot's position out of each frame; a world of
your own has no dot. Every world has frames, so this module scores what the model imagines in the
frame's own terms, on held-out sequences: filter the first C frames, imagine K more with no
observations (model.predict), and compare imagined frame k with true frame k:

    squared error    mse_k = mean_pixels (p_k - x_k)^2                            per-pixel, in [0, 1]
    Bernoulli NLL    nll_k = -sum_pixels [x_k log p_k + (1 - x_k) log(1 - p_k)]    nats per frame

with p_k clipped to [PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR]. The NLL is the decoder's own
likelihood (distributions.bernoulli_nll, there from logits); even a perfect p_k = x_k pays the
frames' own entropy (and the clip's small price on black pixels), which the results report as the
floor.

Three predictors that know no physics, on the same terms: copy the last seen frame; the average
of the seen frames; a blank frame. The squared error rewards a blur: where something moved, a
copied frame is wrong twice (where it was, and where it now is) and a blank frame once, so a blank
frame can beat copying. A model has learned the world when it beats all three.

Sampled futures: M imagined futures per sequence, z drawn from the prior at every step; their
spread per horizon (the root mean square over pixels of the per-pixel std across the M frames) and
the error of the future closest to the truth (best of M). And which latent dimensions carry
information: the KL(q || p) per dimension over filtered frames (beliefs.kl_per_dim).

data: {"obs": (B, C + K, S, S) in [0, 1], "actions": (B, C + K, A)}, actions[:, t] taken after frame
t, as a batch function returns them. Plain NumPy on top of model.predict and evaluate.filtered_states.
Shapes (the glossary is in model.py): B sequences, K imagined steps, M samples, S image side, Z stoch.
"""

import numpy as np          # plain NumPy (the model's traced NumPy is autograd.numpy, in model.py)

from .beliefs import ACTIVE_NATS, kl_per_dim
from .evaluate import CONTEXT, HORIZONS, filtered_states
from ..model import predict

SAMPLES = 16                  # M sampled futures per sequence
CHUNK = 16                    # sequences per predict call along the mean path
SAMPLED_CHUNK = 4             # sequences per predict call with M samples: M futures of K frames are large
PROBABILITY_FLOOR = 1e-3      # a copied frame says "certainly black" where the truth moved to: this caps
                              # what one such pixel costs at -log(1e-3) nats
PREDICTORS = ("model", "copy_last", "average_of_context", "blank")
BASELINES = PREDICTORS[1:]
LABELS = {"model": "RSSM, imagined (mean path)", "copy_last": "copy the last seen frame",
          "average_of_context": "average of the seen frames", "blank": "a blank frame",
          "best_of": "RSSM, best of {M} sampled futures"}


# --- scoring a frame ------------------------------------------------------------------------

def squared_error(predicted, truth):
    """mean_pixels (p - x)^2: (..., S, S), (..., S, S) -> (...)."""
    return ((np.asarray(predicted, np.float64) - truth) ** 2).mean(axis=(-2, -1))


def bernoulli_nll(predicted, truth, floor=PROBABILITY_FLOOR):
    """-sum_pixels [x log p + (1 - x) log(1 - p)], p clipped to [floor, 1 - floor]:
    (..., S, S), (..., S, S) -> (...) nats per frame."""
    p = np.clip(np.asarray(predicted, np.float64), floor, 1 - floor)
    x = np.asarray(truth, np.float64)
    return -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(axis=(-2, -1))


# --- predictors -----------------------------------------------------------------------------

def copy_last(seen, horizon):
    """The last seen frame, repeated: (B, C, S, S) -> (B, K, S, S)."""
    return np.repeat(seen[:, -1:], horizon, axis=1)


def average_of_context(seen, horizon):
    """The mean of the seen frames, repeated: a smear over where things were. (B, C, S, S) -> (B, K, S, S)."""
    return np.repeat(seen.mean(axis=1, keepdims=True), horizon, axis=1)


def blank(seen, horizon):
    """An all-black frame: (B, C, S, S) -> (B, K, S, S) of zeros."""
    return np.zeros((seen.shape[0], horizon) + seen.shape[2:], dtype=seen.dtype)


def imagined(params, config, data, context=CONTEXT, samples=None, seed=0):
    """The model's frames after `context` seen ones, K = T - context of them: along the prior's mean
    path (B, K, S, S), or with samples=M, M futures with z sampled (B, M, K, S, S). seed: an int, for
    the samples' noise."""
    obs, actions = data["obs"], data["actions"]
    horizon = obs.shape[1] - context
    chunks = []
    for start in range(0, len(obs), CHUNK):
        chunk = slice(start, start + CHUNK)
        chunks.append(predict(params, config, obs[chunk, :context], actions[chunk, :-1], horizon=horizon,
                              seed=(seed, start), samples=samples))
    return np.concatenate(chunks)


def spread(sampled):
    """How much M sampled futures differ: sqrt(mean_pixels var_M(frame)). (B, M, K, S, S) -> (B, K)."""
    return np.sqrt(np.asarray(sampled, np.float64).var(axis=1).mean(axis=(-2, -1)))


def best_of(sampled, truth, score=squared_error):
    """Per sequence and step, the score of the sampled future closest to the truth.
    (B, M, K, S, S), (B, K, S, S) -> (B, K)."""
    return score(sampled, truth[:, None]).min(axis=1)


def sampled_futures(params, config, data, context=CONTEXT, samples=SAMPLES, seed=0):
    """M futures per sequence after `context` seen frames, scored a few sequences at a time (M
    futures of K frames, for every sequence at once, would not fit in memory).
    Returns spread (B, K), best-of-M squared error (B, K), best-of-M NLL (B, K)."""
    obs, actions = data["obs"], data["actions"]
    parts = []
    for start in range(0, len(obs), SAMPLED_CHUNK):
        chunk = slice(start, start + SAMPLED_CHUNK)
        sampled = predict(params, config, obs[chunk, :context], actions[chunk, :-1], horizon=obs.shape[1] - context,
                          seed=(seed, start), samples=samples)                          # (b, M, K, S, S)
        truth = obs[chunk, context:]                                                     # (b, K, S, S)
        parts.append((spread(sampled), best_of(sampled, truth), best_of(sampled, truth, bernoulli_nll)))
    return [np.concatenate(part) for part in zip(*parts)]


def kl_per_dimension(params, config, data):
    """Mean KL(q || p) per latent dimension over the filtered held-out frames: (Z,) nats."""
    post, prior = filtered_states(params, config, data["obs"], data["actions"])
    return kl_per_dim(post, prior)


# --- everything, as JSON ----------------------------------------------------------------------

def frame_metrics(params, config, data, context=CONTEXT, samples=SAMPLES, seed=0):
    """Every measurement above on one held-out set, as a dict of lists and numbers (JSON as is).

    curves[name] = {"mse": [K], "nll": [K]} for the model, the three baselines and the best of M;
    "floor": the NLL of the true frames against themselves, per horizon; "spread": [K];
    "kl_per_dim": [Z] and "active_dims", the dimensions above beliefs.ACTIVE_NATS.
    """
    obs = data["obs"]
    seen, truth = obs[:, :context], obs[:, context:]                                   # (B, C, S, S), (B, K, S, S)
    horizon = truth.shape[1]
    predicted = {"model": imagined(params, config, data, context),
                 "copy_last": copy_last(seen, horizon),
                 "average_of_context": average_of_context(seen, horizon),
                 "blank": blank(seen, horizon)}
    curves = {name: {"mse": squared_error(frames, truth).mean(axis=0).tolist(),
                     "nll": bernoulli_nll(frames, truth).mean(axis=0).tolist()}
              for name, frames in predicted.items()}
    spreads, best_mse, best_nll = sampled_futures(params, config, data, context, samples, seed)   # (B, K) each
    curves["best_of"] = {"mse": best_mse.mean(axis=0).tolist(), "nll": best_nll.mean(axis=0).tolist()}
    kl = kl_per_dimension(params, config, data)
    return {"sequences": int(obs.shape[0]), "context": int(context), "horizon": int(horizon),
            "samples": int(samples), "curves": curves,
            "floor": bernoulli_nll(truth, truth).mean(axis=0).tolist(),
            "spread": spreads.mean(axis=0).tolist(),
            "kl_per_dim": kl.tolist(), "active_dims": int((kl > ACTIVE_NATS).sum())}


def over(curve, horizon):
    """The mean of a per-horizon curve over h = 1 .. horizon."""
    return float(np.mean(curve[:horizon]))


def table(metrics, horizon=20):
    """The Markdown table of frame_metrics: each predictor's error at a few horizons and its mean
    over h = 1 .. horizon, against copying the last frame; the sampled futures' spread below."""
    curves, steps = metrics["curves"], metrics["horizon"]
    horizon = min(horizon, steps)
    shown = [h for h in HORIZONS if h <= steps]
    copied = over(curves["copy_last"]["mse"], horizon)
    lines = [f"| held-out, {metrics['sequences']} sequences, {metrics['context']} frames seen | "
             + " | ".join(f"MSE h={h}" for h in shown)
             + f" | MSE mean h=1..{horizon} | / copy last | NLL mean h=1..{horizon} (nats) |",
             "| --- |" + " --- |" * (len(shown) + 3)]
    for name in PREDICTORS + ("best_of",):
        mse, nll = curves[name]["mse"], curves[name]["nll"]
        label = LABELS[name].format(M=metrics["samples"])
        lines.append(f"| {label} | " + " | ".join(f"{mse[h - 1]:.4f}" for h in shown)
                     + f" | {over(mse, horizon):.4f} | {over(mse, horizon) / copied:.2f} | {over(nll, horizon):.1f} |")
    lines.append("| true frames (the NLL's floor) | " + " | ".join("0" for _ in shown)
                 + f" | 0 | 0 | {over(metrics['floor'], horizon):.1f} |")
    spread_at = " | ".join(f"{metrics['spread'][h - 1]:.4f}" for h in shown)
    lines.append(f"| spread of the {metrics['samples']} sampled futures (RMS per-pixel std) | {spread_at} "
                 f"| {over(metrics['spread'], horizon):.4f} | | |")
    return "\n".join(lines)


def verdict(metrics, horizon=20):
    """One sentence: the model's squared error over h = 1 .. horizon against copying the last frame,
    and against the best of the three baselines (a model that has learned the world beats them all)."""
    horizon = min(horizon, metrics["horizon"])
    mse = {name: over(metrics["curves"][name]["mse"], horizon) for name in PREDICTORS}
    best = min(BASELINES, key=mse.get)
    return (f"over h=1..{horizon} the imagined frames' squared error is {mse['model'] / mse['copy_last']:.2f} of "
            f"copying the last frame's, and {mse['model'] / mse[best]:.2f} of the best baseline's ({LABELS[best]})")
