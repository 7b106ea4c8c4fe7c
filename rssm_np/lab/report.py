"""What the demo draws and prints: the progress line, the figures, a short planning check, the table.

demo.py trains and measures; everything it shows a person is here, so a change to a figure never
touches the training loop. Plain NumPy on the model's outputs; matplotlib loads (lab/plots.py)
only when a figure is drawn. Shapes: B sequences, T frames, M samples, K imagined steps,
H deter, Z stoch, S image side.
"""

import os

import numpy as np          # plain NumPy: drawing and printing the model's untraced outputs

from . import beliefs
from .evaluate import CONTEXT, baseline_paths, centroid, dot_position, eval_dataset, filtered_frames, pixel_error
from .plan import table as planning_table
from .planning import Planner, evaluate_planners
from ..model import predict
from ..world import make_dataset, render, step_state

# Every figure write_figures and write_belief_figures draw into the run's folder (demo.py claims them).
FIGURES = ("world.png", "training.png", "reconstructions.png", "open_loop.png", "error_by_horizon.png",
           "belief_occlusion.png", "future_fan.png", "two_actions.png", "kl_per_dim.png", "imagination.gif")


class Progress:
    """One fixed-width line every N steps: step | loss | recon | kl | ms/step | eta."""

    def __init__(self, total_steps, seconds, every):
        self.total_steps, self.seconds, self.every = total_steps, seconds, every
        print(f"{'step':>7} | {'loss':>8} | {'recon':>8} | {'kl':>6} | {'ms/step':>7} | {'eta':>6}", flush=True)

    def __call__(self, state, stats, elapsed):
        step = state["step"]
        if step % self.every and step != self.total_steps:
            return
        ms = float(np.median([h["ms"] for h in state["history"][-self.every:]]))
        remaining = []
        if self.total_steps is not None:
            remaining.append((self.total_steps - step) * ms / 1000)
        if self.seconds is not None:
            remaining.append(self.seconds - elapsed)
        eta = int(round(max(0.0, min(remaining))))
        print(f"{step:7d} | {stats['loss']:8.3f} | {stats['recon']:8.3f} | {stats['kl']:6.3f} | "
              f"{ms:7.1f} | {eta // 60:3d}m{eta % 60:02d}s", flush=True)


def describe(config):
    """The line that says what is being trained."""
    world = [name for name, on in (("occluders", config.occlusion),
                                   (f"pushes on {config.push_share:.0%} of the frames", config.control)) if on]
    levers = [text for text, on in (("planned step-size schedule", config.lr_decay_steps),
                                    (f"KL balancing {config.kl_balance:g}", config.kl_balance),
                                    (f"overshooting {config.overshooting}", config.overshooting > 1),
                                    (f"observation overshooting {config.obs_overshooting}"
                                     + (f", dreams every {config.obs_overshooting_every} frames"
                                        if config.obs_overshooting_every > 1 else ""),
                                     config.obs_overshooting > 1)) if on]
    return (f"training on the {config.image_size}x{config.image_size} dot world"
            f"{' with ' + ' and '.join(world) if world else ''} (batch {config.batch_size}, "
            f"sequences of {config.seq_len}{'; ' + ', '.join(levers) if levers else ''}); Ctrl-C saves and stops")


def resuming(path, step, config, steps):
    """The lines that say where a resumed run starts, and what its step size does past its plan."""
    lines = [f"resuming from {path} at step {step}"]
    planned = config.lr_decay_steps
    if planned and steps is not None and steps > planned:
        lines.append(f"note: that run planned {planned} steps; its step size has reached its floor "
                     f"({config.min_learning_rate:g}) there and stays at it for the {steps - planned} steps beyond")
    return "\n".join(lines)


def write_figures(out, params, config, history):
    """The world, the training curves, reconstructions, open-loop dreams and the error by horizon."""
    from . import plots
    paths = []
    world = make_dataset(4, 20, size=config.image_size, seed=1, occlusion=config.occlusion,
                         control=config.control, boundary=config.boundary)
    paths.append(plots.world_samples(os.path.join(out, "world.png"), world["obs"],
                                     world["mask"] if config.occlusion else None))
    paths.append(plots.training_curves(os.path.join(out, "training.png"), history))
    data = eval_dataset(config)
    recon, _ = filtered_frames(params, config, data["obs"][:3], data["actions"][:3])
    paths.append(plots.reconstructions(os.path.join(out, "reconstructions.png"), data["obs"][:3], recon))
    horizon = data["obs"].shape[1] - CONTEXT
    imagined = predict(params, config, data["obs"][:, :CONTEXT], data["actions"][:, :-1], horizon=horizon)
    context_recon, _ = filtered_frames(params, config, data["obs"][:3, :CONTEXT], data["actions"][:3, :CONTEXT])
    paths.append(plots.open_loop(os.path.join(out, "open_loop.png"), data["obs"][:3], imagined[:3], context_recon))
    truth = data["states"][:, CONTEXT:, :2]
    curves = {"RSSM": pixel_error(centroid(imagined), truth).mean(axis=0)}
    for name, path in baseline_paths(data["obs"][:, :CONTEXT], horizon).items():
        curves[name] = pixel_error(path, truth).mean(axis=0)
    paths.append(plots.error_by_horizon(os.path.join(out, "error_by_horizon.png"), curves))
    return paths


def pick_occluded_sequence(data, length=30):
    """The held-out sequence (and window) where the dot stays hidden longest, for the belief figure."""
    best = (-1, 0, 0)
    for b in range(data["visible"].shape[0]):
        run = 0
        for t in range(data["visible"].shape[1]):
            run = run + 1 if not data["visible"][b, t] else 0
            if run > best[0] and t >= 5:
                best = (run, b, t)
    _, b, end = best
    start = int(np.clip(end - length + 8, 0, data["visible"].shape[1] - length))
    return b, start, start + length


def write_belief_figures(out, params, config, metrics):
    """Figures of the belief: occlusion, sampled futures, two action sequences, KL per dim, a GIF."""
    from . import plots
    paths = []
    data = make_dataset(16, 50, size=config.image_size, seed=beliefs.BELIEF_SEED, occlusion=True,
                        control=config.control, boundary=config.boundary)
    b, start, end = pick_occluded_sequence(data)
    frames, post = filtered_frames(params, config, data["obs"][b:b + 1, :end], data["actions"][b:b + 1, :end])
    # Sample z ~ q(z_t | h_t, x_t) 32 times per frame and read out each: the spread is the belief.
    rng = np.random.default_rng(0)
    deter = np.asarray(post["deter"])[0]                                              # (T, H)
    mean, std = np.asarray(post["mean"])[0], np.asarray(post["std"])[0]               # (T, Z)
    stoch = mean[:, None] + std[:, None] * rng.standard_normal((end, 32, config.stoch_size)).astype(std.dtype)
    samples = {"deter": np.repeat(deter, 32, axis=0), "stoch": stoch.reshape(end * 32, -1)}  # (T * 32, .)
    sample_xy = dot_position(params, config, samples).reshape(end, 32, 2)             # (T, 32, 2)
    window = slice(start, end)
    paths.append(plots.belief_through_occlusion(
        os.path.join(out, "belief_occlusion.png"), render_truth(data, b)[window], data["obs"][b, window],
        frames[0, window], data["states"][b, window, :2], sample_xy[window], ~data["visible"][b, window]))

    fan_data = make_dataset(6, CONTEXT + 20, size=config.image_size, seed=beliefs.BELIEF_SEED + 5,
                            control=config.control, boundary=config.boundary)
    futures = beliefs.sampled_futures(params, config, fan_data, samples=32, horizon=20)  # (B, M, K, 2)
    paths.append(plots.future_fan(os.path.join(out, "future_fan.png"), fan_data["obs"][:, CONTEXT - 1],
                                  futures, fan_data["states"][:, CONTEXT:, :2]))

    if config.control:
        two = make_dataset(1, CONTEXT, size=config.image_size, seed=beliefs.BELIEF_SEED + 6, control=True,
                           boundary=config.boundary)
        rollouts = []
        for push in (np.array([1.0, 0.0]), np.array([-0.5, 1.0])):
            future = np.tile(push, (1, 16, 1)).astype(np.float32)
            actions = np.concatenate([two["actions"][:, :CONTEXT - 1], future], axis=1)
            imagined = predict(params, config, two["obs"], actions, horizon=16)[0]
            state, path = two["states"][:, -1].astype(np.float64), []
            walls = np.random.default_rng(0)        # random walls: both rollouts draw the same numbers
            for k in range(16):
                state = step_state(state, future[:, k], config.image_size, config.boundary, walls)
                path.append(state[0, :2])
            rollouts.append((imagined, np.array(path)))
        paths.append(plots.two_action_sequences(os.path.join(out, "two_actions.png"), rollouts[0][0],
                                                rollouts[1][0], rollouts[0][1], rollouts[1][1]))

    paths.append(plots.kl_per_dimension(os.path.join(out, "kl_per_dim.png"), np.array(metrics["kl_per_dim"]),
                                        beliefs.ACTIVE_NATS))
    held_out = eval_dataset(config)
    imagined = predict(params, config, held_out["obs"][:1, :CONTEXT], held_out["actions"][:1, :-1],
                       horizon=held_out["obs"].shape[1] - CONTEXT)
    seen, _ = filtered_frames(params, config, held_out["obs"][:1, :CONTEXT], held_out["actions"][:1, :CONTEXT])
    paths.append(plots.imagination_gif(os.path.join(out, "imagination.gif"), held_out["obs"][0],
                                       np.concatenate([seen[0], imagined[0]], axis=0), CONTEXT))
    return paths


def render_truth(data, b):
    """The frames of sequence b without occluders: what the camera would show with nothing in the way."""
    return render(data["states"][b, :, :2], data["obs"].shape[-1])


def planning_metrics(params, config, episodes=16):
    """A short planning evaluation: CEM inside the model and the three references on 16 episodes."""
    if not config.control:
        print("planning skipped: this model was trained without actions (--no-control), so it never saw "
              "a push and cannot plan one")
        return {}
    print(f"planning {episodes} episodes in the dream (python -m rssm_np.lab.plan runs the full 64) ...", flush=True)
    _, results = evaluate_planners(Planner(params, config), episodes=episodes)
    return {"planning": {name: {key: round(value, 3) for key, value in r.items() if key != "positions"}
                         for name, r in results.items()}}


def results_table(metrics):
    """The final table: open-loop error against the baselines, the belief, planning, the run's length."""
    rows = [("RSSM (imagined)", ""), ("copy last frame", "baseline_copy_last_"),
            ("constant velocity", "baseline_const_velocity_"), ("reflecting physics oracle", "baseline_reflect_")]
    lines = [f"{'open-loop error (px)':<27} | {'h=1':>6} | {'h=10':>6} | {'h=20':>6} | {'h=40':>6} | {'mean':>6}"]
    for label, prefix in rows:
        at = metrics[f"{prefix}open_loop_px_error_at"]
        lines.append(f"{label:<27} | {at['1']:6.2f} | {at['10']:6.2f} | {at['20']:6.2f} | {at['40']:6.2f} | "
                     f"{metrics[f'{prefix}open_loop_px_error']:6.2f}")
    lines.append(f"filtered reconstruction error: {metrics['recon_px_error']:.2f} px")
    if "coverage90" in metrics:
        lines.append("")
        lines.append(f"{'belief':<47} | {'value':>7}")
        for label, key in (("dot hidden: belief error (px)", "occluded_px_error"),
                           ("dot hidden: last-seen + velocity baseline (px)", "baseline_occluded_const_velocity_px_error"),
                           ("posterior std hidden / visible", "occluded_std_ratio"),
                           ("90% region of 32 sampled futures: coverage", "coverage90"),
                           ("imagination follows actions (correlation)", "action_response"),
                           ("open loop with random actions (px)", "controlled_open_loop_px_error"),
                           ("linear probe R^2 of (x, y, vx, vy)", "probe_r2")):
            lines.append(f"{label:<47} | {metrics[key]:7.3f}")
        lines.append(f"{'active latent dimensions (KL > 0.1 nats)':<47} | {metrics['active_dims']:7d}")
    if "planning" in metrics:
        lines += ["", "planning to a goal in 30 real steps (16 episodes; python -m rssm_np.lab.plan runs 64):",
                  planning_table(metrics["planning"])]
    if metrics.get("steps_this_run", 1):
        lines.append(f"trained {metrics['steps']} steps in {metrics['train_seconds']:.0f} s")
    else:
        lines.append(f"evaluated the model of step {metrics['steps']} (no training in this run)")
    return "\n".join(lines)
