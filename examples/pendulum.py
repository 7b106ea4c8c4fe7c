"""Your own world: a pendulum, trained through rssm_np's public door and measured as frames.

    python examples/pendulum.py                    # train, evaluate, draw: runs/pendulum/
    python examples/pendulum.py --minutes 4        # a wall-clock budget instead of a step count
    python examples/pendulum.py --steps 300 --out runs/pendulum-short

All rssm_np asks of a world is one function, batches(step) -> {"obs": (B, T, S, S) float32 in
[0, 1], "actions": (B, T, A) float32}, where actions[:, t] is what was done after frame t. This
file writes one for a pendulum (the world: plain NumPy, nothing of rssm_np), hands it to
rssm_np.train with a Config whose image_size and action_size match it, and measures the model
with rssm_np.lab.frames, which compares imagined frames with true ones and so needs to know
nothing of pendulums. Writes model.npz, pendulum.json and figures into --out.
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np

# Run from a clone without installing the package: the repository's folder holds rssm_np.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rssm_np import Config, save, train  # noqa: E402  (after the path above)
from rssm_np.checkpoint import load_train_state  # noqa: E402
from rssm_np.lab import frames, plots  # noqa: E402
from rssm_np.lab.beliefs import ACTIVE_NATS  # noqa: E402
from rssm_np.lab.evaluate import filtered_frames  # noqa: E402
from rssm_np.lab.results import provenance  # noqa: E402
from rssm_np.utils.files import FolderError, claim_folder, ending, stop_signals, tell, write_text  # noqa: E402

# --- the world: a pendulum under gravity, lightly damped, with a motor at the pivot ----------
#
#   theta'' = -omega0^2 sin(theta) - damping * theta' + torque_gain * u_t
#
# theta is the angle from hanging straight down, in radians; u_t in [-1, 1] is the torque applied
# after frame t (the action). Time is counted in frames.

SIZE = 32               # S: frames are S x S pixels
ROD_SHARE = 10 / 32     # the rod, from the pivot (the frame's centre) to the bob: 10 px of a 32 px side
BOB_SIGMA = 1.5         # px: the bob is a blurred disc, like the dot of the package's own world
ROD_SIGMA = 0.6         # px: the rod's half-thickness, as the std of its blur
ROD_BRIGHTNESS = 0.4    # the rod is dimmer than the bob, so the bob marks the end that moves most
OMEGA0 = 2 * math.pi / 30   # rad/frame: a small swing takes 30 frames
DAMPING = 0.01          # per frame: light, so a swing fades over a few hundred frames, not within a sequence
TORQUE_GAIN = 0.03      # rad/frame^2 of angular acceleration per unit of torque
PUSH_SHARE = 0.3        # the chance that the random policy applies a torque at a frame (else u_t = 0)
START_ANGLE = 2.0       # rad: a sequence starts anywhere from hanging straight down to well above level
SUBSTEPS = 4            # integration steps per frame (semi-implicit Euler)
PIXEL_FLOOR = 1e-6      # intensities below this are 0: invisible, and no float32 subnormals to slow the BLAS
HELD_OUT_SEED = (2026, 11, 24)  # three numbers: never one of the (seed, step) pairs that training draws from


def step_pendulum(angle, velocity, torque, substeps=SUBSTEPS):
    """One frame of the pendulum: (theta, theta') -> (theta, theta') after torque u, by semi-implicit
    Euler (the velocity first, then the angle with the new velocity), which keeps the swing's energy
    from drifting.   angle, velocity, torque: (B,) -> (B,), (B,)."""
    dt = 1.0 / substeps
    for _ in range(substeps):
        acceleration = -OMEGA0 ** 2 * np.sin(angle) - DAMPING * velocity + TORQUE_GAIN * torque
        velocity = velocity + dt * acceleration
        angle = angle + dt * velocity
    return angle, velocity


def bob_position(angle, size=SIZE):
    """The bob's [x, y] in pixels (x the column, y the row, rows growing down): (...,) -> (..., 2)."""
    pivot, rod = (size - 1) / 2, ROD_SHARE * size
    return np.stack([pivot + rod * np.sin(angle), pivot + rod * np.cos(angle)], axis=-1)


def render(angle, size=SIZE):
    """The frame: a blurred bob at the rod's end, and the dimmer rod from the pivot to it.

    bob(p) = exp(-|p - b|^2 / 2 sigma_bob^2),   rod(p) = brightness exp(-d(p)^2 / 2 sigma_rod^2),
    pixel = max(bob, rod), with d(p) the distance from pixel p to the segment pivot -> bob.
    angle (...,) -> (..., S, S) float32 in [0, 1].
    """
    grid = np.arange(size, dtype=np.float32) - np.float32((size - 1) / 2)   # pixel coordinates, pivot at 0
    column, row = grid[None, :], grid[:, None]                              # x (1, S), y (S, 1)
    bob = (bob_position(angle, size) - (size - 1) / 2).astype(np.float32)   # (..., 2) from the pivot
    bob_x, bob_y = bob[..., 0, None, None], bob[..., 1, None, None]         # (..., 1, 1)
    # The Gaussian is separable, exp(-(dx^2 + dy^2)/2s^2) = exp(-dx^2/2s^2) exp(-dy^2/2s^2), as in world.render.
    glow = np.exp(-(column - bob_x) ** 2 / np.float32(2 * BOB_SIGMA ** 2)) * \
        np.exp(-(row - bob_y) ** 2 / np.float32(2 * BOB_SIGMA ** 2))        # (..., S, S)
    # The segment's closest point to pixel p is t * bob, with t = <p, bob> / |bob|^2 clipped to [0, 1].
    t = np.clip((column * bob_x + row * bob_y) / np.float32((ROD_SHARE * size) ** 2), 0, 1)   # (..., S, S)
    distance2 = (column - t * bob_x) ** 2 + (row - t * bob_y) ** 2
    rod = np.float32(ROD_BRIGHTNESS) * np.exp(-distance2 / np.float32(2 * ROD_SIGMA ** 2))
    image = np.maximum(glow, rod)
    return np.where(image < PIXEL_FLOOR, np.float32(0.0), image)


def random_start(rng, n):
    """theta_0 uniform in [-START_ANGLE, START_ANGLE] and theta'_0 a gentle spin either way: (n,), (n,)."""
    return rng.uniform(-START_ANGLE, START_ANGLE, size=n), rng.uniform(-0.1, 0.1, size=n)


def pendulum(n, steps, seed, size=SIZE):
    """n sequences of `steps` frames under a random policy: a torque in [-1, 1] on PUSH_SHARE of the
    frames, none on the rest. The same seed gives the same data.

    Returns obs (n, T, S, S) float32 in [0, 1], actions (n, T, 1) float32 (actions[:, t] acts after
    frame t), and the true angle (n, T), which the model never sees.
    """
    rng = np.random.default_rng(seed)
    angle, velocity = random_start(rng, n)
    pushed = rng.random((n, steps, 1)) < PUSH_SHARE
    actions = np.where(pushed, rng.uniform(-1.0, 1.0, size=(n, steps, 1)), 0.0).astype(np.float32)
    angles = [angle]
    for t in range(steps - 1):
        angle, velocity = step_pendulum(angle, velocity, actions[:, t, 0])
        angles.append(angle)
    angles = np.stack(angles, axis=1)                                               # (n, T)
    return {"obs": render(angles, size), "actions": actions, "angle": angles.astype(np.float32)}


def make_batches(config):
    """The one function rssm_np needs: batch k of training, seeded by (seed, k)."""
    def batches(step):
        return pendulum(config.batch_size, config.seq_len, seed=(config.seed, step), size=config.image_size)
    return batches


# --- training, through the public door ------------------------------------------------------

DEFAULT_STEPS = 2500    # at the default sizes, a few minutes on two cores (the progress line's ETA says)
CONTEXT, HORIZON = 10, 40   # held out: the model sees 10 frames, then imagines 40 with none
RESULTS = ("model.npz", "pendulum.json", "training.png", "open_loop.png", "error_by_horizon.png",
           "sampled_futures.png", "kl_per_dim.png")          # every file it writes, claimed before training


def make_config(steps, seed):
    """The model for this world: Config's sizes, with image_size and action_size set to the world's.

    config.DEMO_RECIPE is the demo's starting point, but its fields (occluders, pushes, their share)
    describe the dot world's data, which batches= replaces; what this run takes from the demo is its
    planned schedule, lr_decay_steps = the run's steps (the step size falls to its floor over them).
    The demo's observation overshooting (obs_overshooting=5, obs_overshooting_every=4) would go
    here too; it is left off, so that the step stays the plain one.
    """
    return Config(image_size=SIZE, action_size=1, lr_decay_steps=steps, seed=seed)


def timed_steps(config, batches, steps=6):
    """Milliseconds per train step on this machine, from a few steps of a scratch run."""
    history = train(config, steps=steps, batches=batches)["history"]
    return float(np.median([h["ms"] for h in history[2:]]))


def progress(total_steps, seconds, every, latest):
    """on_step for train: one fixed-width line every `every` steps, with the time left."""
    print(f"{'step':>7} | {'loss':>8} | {'recon':>8} | {'kl':>6} | {'ms/step':>7} | {'eta':>6}", flush=True)

    def on_step(state, stats, elapsed):
        latest["state"] = state                     # what a Ctrl-C saves
        step = state["step"]
        if step % every and step != total_steps:
            return False
        ms = float(np.median([h["ms"] for h in state["history"][-every:]]))
        left = (total_steps - step) * ms / 1000
        if seconds is not None:
            left = min(left, seconds - elapsed)
        eta = int(round(max(0.0, left)))
        print(f"{step:7d} | {stats['loss']:8.3f} | {stats['recon']:8.3f} | {stats['kl']:6.3f} | {ms:7.1f} | "
              f"{eta // 60:3d}m{eta % 60:02d}s", flush=True)
        return False
    return on_step


# --- the command --------------------------------------------------------------------------------

def number(kind, minimum, what):
    """An argparse type: a number of this kind >= minimum (> 0 for floats), else a sentence."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (value >= minimum if kind is int else math.isfinite(value) and value > minimum):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return parse


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Train an RSSM on a pendulum through rssm_np's public API, then measure its imagined "
                    "frames against held-out ones and against copying the last frame.")
    parser.add_argument("--steps", type=number(int, 1, "a positive integer"),
                        help=f"total training steps (default {DEFAULT_STEPS}; with --minutes, at most this many; "
                             f"with --resume, counting the steps already done)")
    parser.add_argument("--minutes", type=number(float, 0, "a positive number"),
                        help="train for this many minutes of wall clock instead: the steps that fit are timed "
                             "first, and the step size falls over them")
    parser.add_argument("--seed", type=number(int, 0, "a non-negative integer"),
                        help="seed for the weights, the training batches and the sampling noise (default 0)")
    parser.add_argument("--out", default=os.path.join("runs", "pendulum"), help="output folder (default runs/pendulum)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of another run found in --out (default: refuse)")
    parser.add_argument("--resume", metavar="PATH",
                        help="continue from a model.npz this example wrote (its config and seed are used)")
    parser.add_argument("--held-out", type=number(int, 1, "a positive integer"), default=64, metavar="N",
                        help="held-out sequences to measure on (default 64)")
    parser.add_argument("--print-every", type=number(int, 1, "a positive integer"), default=100, metavar="N",
                        help="progress line every N steps (default 100)")
    args = parser.parse_args(argv)
    args.config, args.state = None, None
    if args.resume is not None:
        if args.seed is not None or args.minutes is not None:
            parser.error(f"{'--seed' if args.seed is not None else '--minutes'} and --resume: a resumed run keeps "
                         f"the seed and the schedule it was saved with")
        try:
            _, args.config, args.state = load_train_state(args.resume)
        except (OSError, ValueError, TypeError) as error:
            parser.error(f"--resume {args.resume!r}: {error}")
        if args.state is None:
            parser.error(f"--resume {args.resume!r} holds a model but no training state to resume from")
    args.seed = 0 if args.seed is None else args.seed
    try:
        args.lock = claim_folder(args.out, RESULTS, args.overwrite, args.resume)
    except FolderError as error:
        parser.error(f"--out {args.out!r} {error}")
    return args


def planned_steps(args):
    """--steps, or for --minutes the steps that fit, timed on this machine; resumed: the saved plan."""
    if args.state is not None:
        return args.steps or args.config.lr_decay_steps or DEFAULT_STEPS
    if args.minutes is None:
        return args.steps or DEFAULT_STEPS
    probe = make_config(1, args.seed)
    print("timing a few steps to plan the schedule for --minutes ...", flush=True)
    fitting = max(1, int(60_000 * args.minutes / timed_steps(probe, make_batches(probe))))
    return fitting if args.steps is None else min(args.steps, fitting)


def draw(out, params, config, history, held_out, metrics):
    """The figures: training curves, open-loop frames, error by horizon, sampled futures, KL per dimension."""
    obs, actions = held_out["obs"], held_out["actions"]
    first = {"obs": obs[:3], "actions": actions[:3]}
    dreamed = frames.imagined(params, config, first, CONTEXT)                         # (3, K, S, S)
    seen, _ = filtered_frames(params, config, obs[:3, :CONTEXT], actions[:3, :CONTEXT])
    sampled = frames.imagined(params, config, {"obs": obs[:1], "actions": actions[:1]}, CONTEXT, samples=4)
    curves = {frames.LABELS[name].format(M=metrics["samples"]): metrics["curves"][name]
              for name in frames.PREDICTORS + ("best_of",)}
    return [
        plots.training_curves(os.path.join(out, "training.png"), history),
        plots.open_loop(os.path.join(out, "open_loop.png"), obs[:3], dreamed, seen),
        plots.frame_error_by_horizon(os.path.join(out, "error_by_horizon.png"), curves, metrics["floor"]),
        plots.sampled_frame_futures(os.path.join(out, "sampled_futures.png"), obs[0, CONTEXT - 1], obs[0, CONTEXT:],
                                    dreamed[0], sampled[0]),
        plots.kl_per_dimension(os.path.join(out, "kl_per_dim.png"), np.asarray(metrics["kl_per_dim"]), ACTIVE_NATS),
    ]


def run(args, argv, received):
    steps = planned_steps(args)
    config = args.config or make_config(steps, args.seed)
    seconds = None if args.minutes is None else 60 * args.minutes
    model_path = os.path.join(args.out, "model.npz")
    again = f"python examples/pendulum.py --resume {model_path} --out {args.out} --steps {steps}"
    if args.state is not None:
        print(f"resuming from {args.resume} at step {args.state['step']}", flush=True)
    print(f"training on the pendulum: {config.image_size}x{config.image_size} frames, a torque as the action; "
          f"batch {config.batch_size} x {config.seq_len} frames; {steps} steps planned, the step size falling from "
          f"{config.learning_rate:g} to {config.min_learning_rate:g}; Ctrl-C saves and stops", flush=True)
    latest, start = {}, time.perf_counter()
    try:
        state = train(config, steps=steps, seconds=seconds, state=args.state, batches=make_batches(config),
                      on_step=progress(steps, seconds, args.print_every, latest))
        train_seconds = time.perf_counter() - start
        save(model_path, state["params"], config, state)
    except (KeyboardInterrupt, BrokenPipeError) as error:     # Ctrl-C, SIGTERM, SIGHUP, or stdout closed
        reason, code = ending(error, received)
        if "state" not in latest:
            tell(f"\n{reason} before the first step ended; nothing new was written")
            return code
        save(model_path, latest["state"]["params"], config, latest["state"])
        tell(f"\n{reason}: saved step {latest['state']['step']} to {model_path}; continue with: {again}")
        return code
    try:
        print(f"measuring on {args.held_out} held-out sequences ...", flush=True)
        params, history = state["params"], state["history"]
        held_out = pendulum(args.held_out, CONTEXT + HORIZON, seed=HELD_OUT_SEED, size=config.image_size)
        metrics = frames.frame_metrics(params, config, held_out, CONTEXT, seed=config.seed)
        results = {"provenance": provenance(argv, program="python examples/pendulum.py"),
                   "world": "pendulum", "held_out_seed": list(HELD_OUT_SEED), "steps": state["step"],
                   "train_seconds": round(train_seconds, 1),
                   "ms_per_step": round(float(np.median([h["ms"] for h in history[-200:]])), 1),
                   "config": config.to_dict(), **metrics}
        results_path = write_text(os.path.join(args.out, "pendulum.json"), json.dumps(results, indent=1) + "\n")
        figures = draw(args.out, params, config, history, held_out, metrics)
        print("\n" + frames.table(metrics))
        print("\n" + frames.verdict(metrics))
        print("\nwrote:")
        for path in [model_path, results_path] + figures:
            print(f"  {path}")
        return 0
    except (KeyboardInterrupt, BrokenPipeError) as error:
        reason, code = ending(error, received)
        tell(f"\n{reason} while measuring; the trained model is saved at {model_path}; measure it again with: "
             f"{again}")
        return code


def main(argv=None):
    args = parse_args(argv)
    try:
        with stop_signals() as received:
            return run(args, argv, received)
    finally:
        if args.lock is not None:
            args.lock.close()


if __name__ == "__main__":
    sys.exit(main())
