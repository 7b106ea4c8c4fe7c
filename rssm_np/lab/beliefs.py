"""Measuring the belief: occlusion, sampled futures, actions, and what the latent learned.

Each measurement runs the model on held-out sequences from fixed seeds and returns plain floats.
The small functions at the top (coverage, linear probe, the occlusion baseline) are pure NumPy
on arrays, so tests can check them on constructed cases with a known answer.
Shapes (the glossary is in model.py): B sequences, T frames, M samples, K imagined steps,
H deter, Z stoch.
"""

import numpy as np          # plain NumPy: measurements on the model's untraced outputs

from ..distributions import kl_gaussian_per_dim
from .evaluate import CONTEXT, EVAL_SEED, centroid, filtered_states, pixel_error, reflect
from ..model import mean_frame, predict
from ..world import make_dataset, step_state

BELIEF_SEED = EVAL_SEED + 1      # held-out occluded / controlled sequences
ACTIVE_NATS = 0.1                # a latent dimension is "active" if its mean KL exceeds this


def coverage(samples, truth, level=0.9):
    """Fraction of true positions inside the central `level` region of the sampled positions.

    The region is the disk around the samples' mean whose radius is the `level`-quantile of the
    samples' own distances to that mean: it holds `level` of the samples by construction, so a
    calibrated model's truth falls inside it with probability `level`.
    samples (..., M, 2), truth (..., 2) -> float.
    """
    centre = samples.mean(axis=-2)                                        # (..., 2)
    radius = np.quantile(np.linalg.norm(samples - centre[..., None, :], axis=-1), level, axis=-1)
    return float(np.mean(np.linalg.norm(truth - centre, axis=-1) <= radius))


def linear_probe_r2(train_features, train_targets, test_features, test_targets):
    """R^2 of a least-squares linear read-out (with bias), fit on train, scored on test.

    features (rows, F), targets (rows, P) -> (mean R^2 over the P targets, per-target R^2 list).
    R^2 = 1 - sum (y - y^)^2 / sum (y - mean y)^2: 1 is perfect, 0 is no better than the mean.
    """
    def with_bias(x):
        return np.concatenate([x, np.ones((len(x), 1))], axis=1)

    weights, *_ = np.linalg.lstsq(with_bias(train_features), train_targets, rcond=None)
    residual = test_targets - with_bias(test_features) @ weights
    spread = test_targets - test_targets.mean(axis=0)
    per_target = 1.0 - (residual ** 2).sum(axis=0) / (spread ** 2).sum(axis=0)
    return float(per_target.mean()), [float(r) for r in per_target]


def last_seen_baseline(seen_positions, visible, size):
    """Carry the last seen position at the last seen velocity, bouncing off the walls.

    seen_positions (B, T, 2) centroids of the frames the model saw; visible (B, T) bool.
    Returns (B, T, 2) predictions for every frame and a (B, T) bool mask of the hidden frames
    that have two visible frames before them (the only ones the baseline can predict).
    """
    batch, steps = visible.shape
    predicted = np.zeros((batch, steps, 2))
    usable = np.zeros((batch, steps), dtype=bool)
    for b in range(batch):
        last, before, hidden_for = None, None, 0
        for t in range(steps):
            if visible[b, t]:
                before, last, hidden_for = last, seen_positions[b, t], 0
                predicted[b, t] = last
                continue
            hidden_for += 1
            if last is not None and before is not None:
                predicted[b, t] = reflect(last + hidden_for * (last - before), size)
                usable[b, t] = True
    return predicted, usable


def occlusion_metrics(params, config, n=64, length=50):
    """How the filtered belief behaves while the dot is hidden behind an occluder.

    occluded_px_error: the decoded belief's centroid against the truth on hidden frames, with
    baseline_occluded_const_velocity_px_error on the same frames; occluded_std_ratio: mean
    posterior std on hidden frames / on visible frames, over the active latent dimensions.
    """
    data = make_dataset(n, length, size=config.image_size, seed=BELIEF_SEED, occlusion=True,
                        control=config.control, boundary=config.boundary)
    post, prior = filtered_states(params, config, data["obs"], data["actions"])
    frames = mean_frame(params, config, post)                              # (B, T, S, S)
    truth = data["states"][..., :2]
    baseline, usable = last_seen_baseline(centroid(data["obs"]), data["visible"], config.image_size)
    model_error = pixel_error(centroid(frames), truth)
    std = np.asarray(post["std"])                                         # (B, T, Z)
    active = kl_per_dim(post, prior) > ACTIVE_NATS
    active = active if active.any() else np.ones_like(active)
    hidden, visible = ~data["visible"], data["visible"]
    return {
        "occluded_px_error": float(model_error[usable].mean()),
        "baseline_occluded_const_velocity_px_error": float(pixel_error(baseline, truth)[usable].mean()),
        "occluded_frames": int(usable.sum()),
        "occluded_std_ratio": float(std[hidden][:, active].mean() / std[visible][:, active].mean()),
    }


def kl_per_dim(post, prior):
    """Mean KL(q || p) per latent dimension over filtered states (B, T, .): (Z,) nats."""
    kl = kl_gaussian_per_dim(np.asarray(post["mean"]), np.asarray(post["std"]),
                             np.asarray(prior["mean"]), np.asarray(prior["std"]))               # (B, T, Z)
    kl = kl.reshape(-1, kl.shape[-1])
    return np.asarray(kl).mean(axis=0)


def sampled_futures(params, config, data, samples=32, horizon=20, seed=0):
    """Centroids of M sampled imagined futures: (B, M, K, 2), from predict(..., samples=M)."""
    frames = predict(params, config, data["obs"][:, :CONTEXT], data["actions"][:, :CONTEXT + horizon - 1],
                     horizon=horizon, samples=samples, seed=seed)
    return centroid(frames)


def action_response(params, config, n=64, horizon=10, seed=BELIEF_SEED + 1):
    """Do imagined futures follow the actions? Correlation of imagined and true differences.

    From the same filtered context, imagine under two random action sequences A and A'; the world
    itself rolls forward from the true state under both. The statistic is the correlation, over
    sequences, steps and both axes, between (imagined position under A - under A') and
    (true position under A - under A').
    """
    rng = np.random.default_rng(seed)
    data = make_dataset(n, CONTEXT, size=config.image_size, seed=seed, control=True, boundary=config.boundary)
    context_actions = data["actions"][:, :CONTEXT - 1]
    imagined, true = [], []
    for _ in range(2):
        future = rng.uniform(-1, 1, size=(n, horizon, config.action_size)).astype(np.float32)
        actions = np.concatenate([context_actions, future], axis=1)       # (B, C + K - 1, A)
        imagined.append(centroid(predict(params, config, data["obs"], actions, horizon=horizon)))
        state, path = data["states"][:, -1].astype(np.float64), []
        walls = np.random.default_rng(seed + 1)     # random walls: both rollouts draw the same numbers
        for k in range(horizon):
            state = step_state(state, future[:, k], config.image_size, config.boundary, walls)
            path.append(state[:, :2])
        true.append(np.stack(path, axis=1))
    model_diff, true_diff = (imagined[0] - imagined[1]).ravel(), (true[0] - true[1]).ravel()
    return float(np.corrcoef(model_diff, true_diff)[0, 1])


def controlled_open_loop(params, config, n=64, length=50):
    """The open-loop protocol (10 frames seen, 40 imagined) with random actions given to the model."""
    data = make_dataset(n, length, size=config.image_size, seed=BELIEF_SEED + 2, control=True,
                        boundary=config.boundary)
    frames = predict(params, config, data["obs"][:, :CONTEXT], data["actions"][:, :-1], horizon=length - CONTEXT)
    return float(pixel_error(centroid(frames), data["states"][:, CONTEXT:, :2]).mean())


def probe(params, config, n=64, length=50, parts=("deter", "stoch")):
    """R^2 of a linear read-out of the true (x, y, vx, vy) from the filtered state, fit on half the
    held-out sequences and scored on the other half. parts: which of h_t ("deter") and z_t
    ("stoch") the read-out sees: both, or one alone to ask where the model keeps the state."""
    data = make_dataset(n, length, size=config.image_size, seed=BELIEF_SEED + 3, control=config.control,
                        boundary=config.boundary)
    post, _ = filtered_states(params, config, data["obs"], data["actions"])
    features = np.concatenate([np.asarray(post[part]) for part in parts], axis=-1)
    # Skip the first frames: velocity is not observable from a single frame.
    features, targets = features[:, 2:].reshape(n, -1, features.shape[-1]), data["states"][:, 2:]
    half = n // 2
    flat = lambda x: x.reshape(-1, x.shape[-1])
    return linear_probe_r2(flat(features[:half]), flat(targets[:half]), flat(features[half:]), flat(targets[half:]))


def belief_metrics(params, config):
    """Every measurement of this module, as one flat dict for metrics.json."""
    metrics = occlusion_metrics(params, config)
    data = make_dataset(64, CONTEXT + 20, size=config.image_size, seed=BELIEF_SEED + 4,
                        control=config.control, boundary=config.boundary)
    samples = sampled_futures(params, config, data, samples=32, horizon=20)          # (B, M, K, 2)
    metrics["coverage90"] = coverage(samples.swapaxes(1, 2), data["states"][:, CONTEXT:, :2])
    metrics["action_response"] = action_response(params, config)
    metrics["controlled_open_loop_px_error"] = controlled_open_loop(params, config)
    per_dim = kl_per_dim(*filtered_states(params, config, data["obs"], data["actions"]))
    metrics["kl_per_dim"] = [round(float(v), 4) for v in per_dim]
    metrics["active_dims"] = int((per_dim > ACTIVE_NATS).sum())
    metrics["probe_r2"], per_target = probe(params, config)
    metrics["probe_r2_per_target"] = dict(zip(["x", "y", "vx", "vy"], per_target))
    metrics["probe_r2_deter_only"] = probe(params, config, parts=("deter",))[0]
    metrics["probe_r2_stoch_only"] = probe(params, config, parts=("stoch",))[0]
    return metrics
