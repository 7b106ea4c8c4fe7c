"""Train an RSSM on the moving-dot world, evaluate it, and draw what it learned.

    python demo.py                     # defaults: a few minutes on a laptop CPU
    python demo.py --steps 500         # shorter
    python demo.py --minutes 10        # train for a wall-clock budget instead of a step count
    python demo.py --resume runs/demo/model.npz --steps 6000   # continue a run to 6000 steps

Writes model.npz, metrics.json and figures into --out (default runs/demo/).
"""

import argparse
import json
import os
import signal
import sys
import time

import numpy as np

from rssm_np import Config, make_dataset
from rssm_np.checkpoint import load_train_state, save
from rssm_np.evaluate import CONTEXT, centroid, eval_dataset, evaluate, filtered_frames, pixel_error
from rssm_np.model import predict
from rssm_np.train import init_train_state, train

DEFAULT_STEPS = 3000


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train and evaluate an RSSM on the moving-dot world.")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help=f"total training steps (default {DEFAULT_STEPS}; with --resume, counts the steps already done)")
    parser.add_argument("--minutes", type=positive_float, default=None,
                        help="train for this many minutes of wall clock instead (stops at --steps if both are given)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed for weights, data and noise (default 0)")
    parser.add_argument("--out", default=os.path.join("runs", "demo"), help="output folder (default runs/demo)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=500,
                        help="write out/checkpoint.npz every N steps (default 500)")
    parser.add_argument("--resume", default=None, metavar="PATH",
                        help="continue from a model.npz or checkpoint.npz this demo wrote")
    parser.add_argument("--print-every", type=positive_int, default=100, help="progress line every N steps")
    args = parser.parse_args(argv)
    if args.steps is None and args.minutes is None:
        args.steps = DEFAULT_STEPS
    return args


class Progress:
    """One fixed-width line every N steps: step | loss | recon | kl | ms/step | eta."""

    def __init__(self, total_steps, seconds, every, start_step):
        self.total_steps, self.seconds, self.every = total_steps, seconds, every
        self.start_step = start_step
        print(f"{'step':>7} | {'loss':>8} | {'recon':>8} | {'kl':>6} | {'ms/step':>7} | {'eta':>6}")

    def __call__(self, state, stats, elapsed):
        step = state["step"]
        if step % self.every and step != self.total_steps:
            return False
        done = step - self.start_step
        recent = [h["ms"] for h in state["history"][-self.every:]]
        ms = float(np.median(recent))
        remaining = []
        if self.total_steps is not None:
            remaining.append((self.total_steps - step) * ms / 1000)
        if self.seconds is not None:
            remaining.append(self.seconds - elapsed)
        eta = max(0.0, min(remaining)) if done else float("nan")
        print(f"{step:7d} | {stats['loss']:8.3f} | {stats['recon']:8.3f} | {stats['kl']:6.3f} | "
              f"{ms:7.1f} | {eta // 60:3.0f}m{eta % 60:02.0f}s", flush=True)
        return False


def write_figures(out, params, config, history):
    from rssm_np import plots
    paths = []
    world = make_dataset(4, 20, size=config.image_size, seed=1, boundary=config.boundary)
    paths.append(plots.world_samples(os.path.join(out, "world.png"), world["obs"]))
    paths.append(plots.training_curves(os.path.join(out, "training.png"), history))
    data = eval_dataset(config)
    recon, _ = filtered_frames(params, config, data["obs"][:3], data["actions"][:3])
    paths.append(plots.reconstructions(os.path.join(out, "reconstructions.png"), data["obs"][:3], recon))
    horizon = data["obs"].shape[1] - CONTEXT
    imagined = predict(params, config, data["obs"][:, :CONTEXT], data["actions"][:, :-1], horizon=horizon)
    paths.append(plots.open_loop(os.path.join(out, "open_loop.png"), data["obs"][:3], imagined[:3], CONTEXT))
    from rssm_np.evaluate import baseline_paths
    truth = data["states"][:, CONTEXT:, :2]
    curves = {"RSSM": pixel_error(centroid(imagined), truth).mean(axis=0)}
    for name, path in baseline_paths(data["obs"][:, :CONTEXT], horizon).items():
        curves[name] = pixel_error(path, truth).mean(axis=0)
    paths.append(plots.error_by_horizon(os.path.join(out, "error_by_horizon.png"), curves))
    return paths


def results_table(metrics):
    rows = [("RSSM (imagined)", ""), ("copy last frame", "baseline_copy_last_"),
            ("constant velocity", "baseline_const_velocity_"), ("reflecting physics oracle", "baseline_reflect_")]
    lines = [f"{'open-loop error (px)':<27} | {'h=1':>6} | {'h=10':>6} | {'h=20':>6} | {'h=40':>6} | {'mean':>6}"]
    for label, prefix in rows:
        at = metrics[f"{prefix}open_loop_px_error_at"]
        lines.append(f"{label:<27} | {at['1']:6.2f} | {at['10']:6.2f} | {at['20']:6.2f} | {at['40']:6.2f} | "
                     f"{metrics[f'{prefix}open_loop_px_error']:6.2f}")
    lines.append(f"filtered reconstruction error: {metrics['recon_px_error']:.2f} px")
    lines.append(f"trained {metrics['steps']} steps in {metrics['train_seconds']:.0f} s")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.resume is not None:
        _, config, state = load_train_state(args.resume)
        if state is None:
            sys.exit(f"error: --resume {args.resume!r} holds a model but no training state to resume from")
        print(f"resuming from {args.resume} at step {state['step']}")
    else:
        config = Config(seed=args.seed)
        state = init_train_state(config)
    checkpoint_path = os.path.join(args.out, "checkpoint.npz")
    progress = Progress(args.steps, None if args.minutes is None else 60 * args.minutes, args.print_every, state["step"])
    last_saved = {"step": None}

    def on_step(current, stats, elapsed):
        if current["step"] % args.checkpoint_every == 0:
            save(checkpoint_path, current["params"], config, current)
            last_saved["step"] = current["step"]
        return progress(current, stats, elapsed)

    print(f"training on the {config.image_size}x{config.image_size} dot world "
          f"(batch {config.batch_size}, sequences of {config.seq_len}); Ctrl-C saves and stops")
    start = time.perf_counter()
    holder = {"state": state}

    def remember(current, stats, elapsed):
        holder["state"] = current
        return on_step(current, stats, elapsed)

    try:
        state = train(config, steps=args.steps, seconds=None if args.minutes is None else 60 * args.minutes,
                      state=state, on_step=remember)
    except KeyboardInterrupt:
        state = holder["state"]
        save(checkpoint_path, state["params"], config, state)
        print(f"\ninterrupted: saved step {state['step']} to {checkpoint_path}; "
              f"continue with: python demo.py --resume {checkpoint_path}")
        return 130
    except FloatingPointError as error:
        where = f"last good checkpoint: {checkpoint_path} (step {last_saved['step']})" if last_saved["step"] else \
            "no checkpoint was written yet"
        print(f"error: {error}; {where}", file=sys.stderr)
        return 1
    train_seconds = time.perf_counter() - start
    params = state["params"]
    model_path = save(os.path.join(args.out, "model.npz"), params, config, state)

    print("evaluating on 64 held-out sequences ...", flush=True)
    metrics = evaluate(params, config)
    metrics["steps"] = state["step"]
    metrics["train_seconds"] = round(train_seconds, 1)
    metrics["ms_per_step"] = round(float(np.median([h["ms"] for h in state["history"][-200:]])), 1)
    metrics["config"] = config.to_dict()
    metrics_path = os.path.join(args.out, "metrics.json")
    with open(metrics_path + ".tmp", "w") as file:
        json.dump(metrics, file, indent=2)
    os.replace(metrics_path + ".tmp", metrics_path)
    figures = write_figures(args.out, params, config, state["history"])

    print()
    print(results_table(metrics))
    print("\nwrote:")
    for path in [model_path, metrics_path] + figures:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
