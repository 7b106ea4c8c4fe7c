"""Train an RSSM on the moving-dot world, evaluate it, and draw what it learned.

    python demo.py                     # defaults: occluders and actions on, a few minutes on a laptop CPU
    python demo.py --no-occlusion --no-control   # the plain bouncing dot
    python demo.py --steps 500         # shorter
    python demo.py --minutes 10        # train for a wall-clock budget instead of a step count
    python demo.py --resume runs/demo/model.npz --steps 6000   # continue a run to 6000 steps

Writes model.npz, metrics.json and figures into --out (default runs/demo/). It never replaces
another run's results there unless asked (--overwrite), and however it ends (Ctrl-C, SIGTERM,
SIGHUP, a closed stdout, a full disk) it saves what it can and says where.
"""

import argparse
import dataclasses
import json
import os
import shlex
import signal
import sys
import time

import numpy as np

from rssm_np import Config, make_dataset
from rssm_np.lab import beliefs
from rssm_np.checkpoint import load_train_state, save
from rssm_np.utils.files import FolderError, claim_folder, silence_stdout, stop_signals, write_text
from rssm_np.lab.evaluate import (CONTEXT, baseline_paths, centroid, eval_dataset, evaluate, filtered_frames,
                              pixel_error)
from rssm_np.model import predict
from rssm_np.lab.plan import table as planning_table
from rssm_np.lab.planning import Planner, evaluate_planners
from rssm_np.training import init_train_state, step_seconds, train
from rssm_np.world import render, step_state

DEFAULT_STEPS = 4500
# One frame in five gets a random push. The world's own rate (world.PUSH_PROB, 0.5, which the
# evaluation uses) made the dreams drift: with so few free flights to learn from, the model's
# velocity was off by ~0.1 px a frame. Measured over 3 seeds in the README's lever table.
DEFAULT_PUSH_SHARE = 0.2
RESULTS = ("model.npz", "checkpoint.npz", "metrics.json")
SEEDS_RESULTS = ("seeds.md", "seeds.json")


def int_at_least(minimum, words):
    """An argparse type: an integer >= minimum, or a message saying what was expected."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {words} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {words} integer, got {value}")
        return value
    return parse


positive_int = int_at_least(1, "positive")
non_negative_int = int_at_least(0, "non-negative")


def number_where(accepts, words):
    """An argparse type: a finite number that accepts(value), or a message saying what was expected."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {words}, got {text!r}") from None
        if not (np.isfinite(value) and accepts(value)):
            raise argparse.ArgumentTypeError(f"expected {words}, got {text!r}")
        return value
    return parse


positive_float = number_where(lambda value: value > 0, "a positive number")
unit_float = number_where(lambda value: 0 <= value <= 1, "a number from 0 to 1")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train and evaluate an RSSM on the moving-dot world.")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help=f"total training steps (default {DEFAULT_STEPS}; with --resume, counts the steps already done)")
    parser.add_argument("--minutes", type=positive_float, default=None,
                        help="train for this many minutes of wall clock instead (stops at --steps if both are given)")
    parser.add_argument("--seed", type=non_negative_int, default=None, help="seed for weights, data and noise (default 0)")
    parser.add_argument("--occlusion", action=argparse.BooleanOptionalAction, default=None,
                        help="train with occluders hiding the dot (default on)")
    parser.add_argument("--control", action=argparse.BooleanOptionalAction, default=None,
                        help="train with random actions pushing the dot (default on)")
    parser.add_argument("--model", choices=("rssm", "rnn", "ssm"), default=None,
                        help="rssm (default): memory h and state z; rnn: deterministic only; ssm: stochastic only")
    parser.add_argument("--boundary", choices=("bounce", "clip", "random"), default=None,
                        help="walls: bounce (default), clip, or random (reflect, then a random new velocity)")
    parser.add_argument("--kl-balance", type=unit_float, default=None, metavar="A",
                        help="KL balancing (DreamerV2): the prior's share A of the KL's gradient (default 0: off)")
    parser.add_argument("--overshooting", type=positive_int, default=None, metavar="D",
                        help="latent overshooting (PlaNet): also train the prior to dream D steps (default 1: off)")
    parser.add_argument("--lr-schedule", choices=("planned", "half-life"), default=None,
                        help="planned (default): the step size falls to its floor over the planned steps; "
                             "half-life: it halves every 1,000 steps down to its floor, whatever the length")
    parser.add_argument("--push-share", type=unit_float, default=None, metavar="P",
                        help=f"with actions: the chance that a training frame gets a random push (default "
                             f"{DEFAULT_PUSH_SHARE}; the evaluation's held-out worlds use the world's own 0.5)")
    parser.add_argument("--batch", type=positive_int, default=None, metavar="B", help="sequences per step (default 16)")
    parser.add_argument("--seq-len", type=positive_int, default=None, metavar="T", help="frames per sequence (default 32)")
    parser.add_argument("--plain", action="store_true",
                        help="train on the plain autograd loop over model.obs_step instead of the fused core "
                             "(slower; the code to set a breakpoint in)")
    parser.add_argument("--out", default=os.path.join("runs", "demo"), help="output folder (default runs/demo)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of another run found in --out (default: refuse)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=500,
                        help="write OUT/checkpoint.npz every N steps (default 500)")
    parser.add_argument("--resume", default=None, metavar="PATH",
                        help="continue from a model.npz or checkpoint.npz this demo wrote (its config and seed are used)")
    parser.add_argument("--print-every", type=positive_int, default=100, help="progress line every N steps (default 100)")
    parser.add_argument("--no-eval", action="store_true", help="train and save only: skip evaluation and figures")
    parser.add_argument("--seeds", type=positive_int, default=None, metavar="N",
                        help="run seeds --seed .. --seed+N-1, each into OUT/seed<k>/, then write the mean ± std "
                             "of their metrics to OUT/seeds.md and OUT/seeds.json")
    parser.add_argument("--jobs", type=positive_int, default=1, metavar="J",
                        help="with --seeds: run J seeds at a time, one BLAS thread each (default 1; 2 fills 2 cores)")
    args = parser.parse_args(argv)
    if args.seeds is not None:
        if args.resume is not None:
            parser.error("--seeds starts new runs; it cannot --resume one (resume each seed<k>/ folder on its own)")
        if args.no_eval:
            parser.error("--seeds summarizes each run's evaluation; drop --no-eval")
    elif args.jobs != 1:
        parser.error("--jobs runs several seeds at a time: it needs --seeds N")
    typed_steps = args.steps is not None
    if args.steps is None and args.minutes is None:
        args.steps = DEFAULT_STEPS
    if args.resume is not None:
        check_resume(parser, args, typed_steps)
    else:
        args.seed = 0 if args.seed is None else args.seed
        args.occlusion = True if args.occlusion is None else args.occlusion
        args.control = True if args.control is None else args.control
        args.model = "rssm" if args.model is None else args.model
        args.boundary = "bounce" if args.boundary is None else args.boundary
        args.kl_balance = 0.0 if args.kl_balance is None else args.kl_balance
        args.overshooting = 1 if args.overshooting is None else args.overshooting
        args.lr_schedule = "planned" if args.lr_schedule is None else args.lr_schedule
        args.batch = Config.batch_size if args.batch is None else args.batch
        args.push_share = DEFAULT_PUSH_SHARE if args.push_share is None else args.push_share
        args.seq_len = Config.seq_len if args.seq_len is None else args.seq_len
        try:                                    # flags that only clash with each other or the config's sizes
            Config(seed=args.seed, model=args.model, kl_balance=args.kl_balance, overshooting=args.overshooting,
                   batch_size=args.batch, seq_len=args.seq_len)
        except (ValueError, TypeError) as error:
            parser.error(str(error).replace("config.overshooting", "--overshooting").replace("model 'rnn'", "--model rnn")
                         .replace("config.seq_len", "--seq-len"))
    try:
        args.lock = claim_folder(args.out, SEEDS_RESULTS if args.seeds else RESULTS, args.overwrite, args.resume)
    except FolderError as error:
        parser.error(f"--out {args.out!r} {error}")
    return args


def check_resume(parser, args, typed_steps):
    """A resumed run continues the saved one: same config, and a total step count ahead of it."""
    try:
        args.resumed = load_train_state(args.resume)
    except (OSError, ValueError, TypeError) as error:
        parser.error(f"--resume {args.resume!r}: {error}")
    _, config, state = args.resumed
    if state is None:
        parser.error(f"--resume {args.resume!r} holds a model but no training state to resume from")
    if args.lr_schedule is not None and args.lr_schedule != ("planned" if config.lr_decay_steps else "half-life"):
        parser.error(f"--lr-schedule {args.lr_schedule} disagrees with {args.resume!r}: a resumed run keeps the "
                     f"schedule it was saved with; drop --lr-schedule, or start a new run")
    for flag, field in (("--seed", "seed"), ("--occlusion", "occlusion"), ("--control", "control"),
                        ("--model", "model"), ("--boundary", "boundary"), ("--kl-balance", "kl_balance"),
                        ("--overshooting", "overshooting"), ("--batch", "batch_size"), ("--seq-len", "seq_len"),
                        ("--push-share", "push_share")):
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None and value != getattr(config, field):
            typed = f"{flag} {value}" if field not in ("occlusion", "control") else \
                (flag if value else flag.replace("--", "--no-"))
            parser.error(f"{typed} disagrees with {args.resume!r} ({field} = {getattr(config, field)}): a resumed "
                         f"run keeps the config it was saved with; drop {typed.split()[0]}, or start a new run")
    done = state["step"]
    if args.steps is not None and not typed_steps and done >= args.steps:
        parser.error(f"--resume {args.resume!r} is already at step {done}, the default total of {DEFAULT_STEPS}; "
                     f"pass --steps N with N > {done} to train on, or --steps {done} to evaluate it again")
    if args.steps is not None and done > args.steps:
        parser.error(f"--steps {args.steps} counts total steps, but {args.resume!r} is already at step {done}; "
                     f"ask for more, or --steps {done} to evaluate it again")


class Progress:
    """One fixed-width line every N steps: step | loss | recon | kl | ms/step | eta."""

    def __init__(self, total_steps, seconds, every):
        self.total_steps, self.seconds, self.every = total_steps, seconds, every
        print(f"{'step':>7} | {'loss':>8} | {'recon':>8} | {'kl':>6} | {'ms/step':>7} | {'eta':>6}", flush=True)

    def __call__(self, state, stats, elapsed):
        step = state["step"]
        if step % self.every and step != self.total_steps:
            return False
        recent = [h["ms"] for h in state["history"][-self.every:]]
        ms = float(np.median(recent))
        remaining = []
        if self.total_steps is not None:
            remaining.append((self.total_steps - step) * ms / 1000)
        if self.seconds is not None:
            remaining.append(self.seconds - elapsed)
        eta = int(round(max(0.0, min(remaining))))
        print(f"{step:7d} | {stats['loss']:8.3f} | {stats['recon']:8.3f} | {stats['kl']:6.3f} | "
              f"{ms:7.1f} | {eta // 60:3d}m{eta % 60:02d}s", flush=True)
        return False


def write_figures(out, params, config, history):
    from rssm_np.lab import plots
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
    from rssm_np.lab import beliefs, plots
    from rssm_np.model import decode, unpack
    from rssm_np.layers import sigmoid
    paths = []
    data = make_dataset(16, 50, size=config.image_size, seed=beliefs.BELIEF_SEED, occlusion=True,
                        control=config.control, boundary=config.boundary)
    b, start, end = pick_occluded_sequence(data)
    frames, post = filtered_frames(params, config, data["obs"][b:b + 1, :end], data["actions"][b:b + 1, :end])
    # Sample z ~ q(z_t | h_t, x_t) 32 times per frame and decode each: the spread is the belief.
    rng = np.random.default_rng(0)
    deter = np.asarray(post["deter"])[0]                                       # (T, H)
    mean, std = np.asarray(post["post_mean"])[0], np.asarray(post["post_std"])[0]
    stoch = mean[:, None] + std[:, None] * rng.standard_normal((end, 32, config.stoch_size)).astype(std.dtype)
    logits = decode(unpack(params), np.repeat(deter, 32, axis=0), stoch.reshape(end * 32, -1))
    sample_xy = centroid(np.asarray(sigmoid(logits)).reshape(end, 32, config.image_size, config.image_size))
    window = slice(start, end)
    paths.append(plots.belief_through_occlusion(
        os.path.join(out, "belief_occlusion.png"), render_truth(data, b)[window], data["obs"][b, window],
        frames[0, window], data["states"][b, window, :2], sample_xy[window], ~data["visible"][b, window]))

    fan_data = make_dataset(6, CONTEXT + 20, size=config.image_size, seed=beliefs.BELIEF_SEED + 5,
                            control=config.control, boundary=config.boundary)
    samples = beliefs.sampled_futures(params, config, fan_data, samples=32, horizon=20)
    paths.append(plots.future_fan(os.path.join(out, "future_fan.png"), fan_data["obs"][:, CONTEXT - 1],
                                  samples, fan_data["states"][:, CONTEXT:, :2]))

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


def tell(message):
    """A message about how the run ended: to stderr, which stays open when stdout was closed."""
    try:
        print(message, file=sys.stderr, flush=True)
    except OSError:
        pass                      # the terminal is gone too (SIGHUP): the files on disk say it all


def planned_steps(args, config):
    """The run's planned length, which the step-size schedule spans (training.learning_rate_at):
    --steps, or for --minutes the steps that fit, from a few steps timed on this machine first."""
    if args.minutes is None:
        return args.steps
    print("timing a few steps to plan the schedule for --minutes ...", flush=True)
    fitting = max(1, int(60 * args.minutes / float(np.median(step_seconds(config)))))
    steps = fitting if args.steps is None else min(args.steps, fitting)
    print(f"planned {steps} steps in {args.minutes:g} minutes; the step size falls from {config.learning_rate:g} "
          f"to {config.min_learning_rate:g} over them", flush=True)
    return steps


def resume_command(path, out, steps):
    words = ["python", "demo.py", "--resume", path, "--out", out] + ([] if steps is None else ["--steps", str(steps)])
    return " ".join(shlex.quote(word) for word in words)


def stopped_by(received):
    return "interrupted" if not received or received[0] == signal.SIGINT else \
        f"stopped by {signal.Signals(received[0]).name}"


def signal_exit_code(received):
    """128 + the signal's number, as a shell reports a process that a signal ended."""
    return 128 + (received[0] if received else signal.SIGINT)


def main(argv=None):
    try:
        args = parse_args(argv)
    except KeyboardInterrupt:
        tell("\ninterrupted before training started; nothing was written")
        return 130
    try:
        with stop_signals() as received:
            return run_seeds(args, received) if args.seeds else run(args, received)
    finally:
        if args.lock is not None:
            args.lock.close()


def seed_command(args, seed):
    """The demo command line of one seed of a --seeds run: the same flags, its own seed and folder."""
    words = [sys.executable, os.path.abspath(__file__), "--seed", str(seed), "--out", os.path.join(args.out, f"seed{seed}"),
             "--print-every", str(args.print_every), "--checkpoint-every", str(args.checkpoint_every),
             "--model", args.model, "--boundary", args.boundary, "--kl-balance", str(args.kl_balance),
             "--overshooting", str(args.overshooting), "--lr-schedule", args.lr_schedule,
             "--batch", str(args.batch), "--seq-len", str(args.seq_len), "--push-share", str(args.push_share),
             "--occlusion" if args.occlusion else "--no-occlusion", "--control" if args.control else "--no-control"]
    words += ["--steps", str(args.steps)] if args.steps is not None else []
    words += ["--minutes", str(args.minutes)] if args.minutes is not None else []
    words += ["--plain"] if args.plain else []
    words += ["--overwrite"] if args.overwrite else []
    return words


def run_seeds(args, received):
    """Run the demo once per seed (J at a time), then the mean ± std table of their metrics."""
    import subprocess
    from rssm_np.lab import seeds as seed_tables
    order = list(range(args.seed, args.seed + args.seeds))
    folders = [os.path.join(args.out, f"seed{seed}") for seed in order]
    env = dict(os.environ)
    if args.jobs > 1:
        env["OPENBLAS_NUM_THREADS"] = "1"      # J processes with 2 BLAS threads each thrash 2 cores
    print(f"{args.seeds} seeds ({', '.join(map(str, order))}), {args.jobs} at a time; each run's output goes "
          f"to its folder's log.txt", flush=True)
    start, running, failed, waiting = time.perf_counter(), {}, [], list(zip(order, folders))
    last_print = start
    try:
        while waiting or running:
            while waiting and len(running) < args.jobs:
                seed, folder = waiting.pop(0)
                os.makedirs(folder, exist_ok=True)
                log = open(os.path.join(folder, "log.txt"), "w")
                running[seed] = (subprocess.Popen(seed_command(args, seed), stdout=log, stderr=subprocess.STDOUT,
                                                  env=env, start_new_session=True), log, folder)
            time.sleep(1.0)
            for seed, (process, log, folder) in list(running.items()):
                if process.poll() is not None:
                    log.close()
                    del running[seed]
                    if process.returncode:
                        failed.append(seed)
                    done = args.seeds - len(waiting) - len(running)
                    print(f"seed {seed}: {'finished' if not process.returncode else f'failed (exit {process.returncode})'}"
                          f" after {time.perf_counter() - start:.0f} s; {done}/{args.seeds} done; "
                          f"see {os.path.join(folder, 'log.txt')}", flush=True)
            if running and time.perf_counter() - last_print >= 30:
                last_print = time.perf_counter()
                print(" | ".join(f"seed {seed}: {last_progress(folder)}" for seed, (_, _, folder) in running.items()),
                      flush=True)
    except KeyboardInterrupt:
        for process, log, _ in running.values():
            process.send_signal(signal.SIGINT)        # each run saves its checkpoint and says how to resume
        for process, log, _ in running.values():
            process.wait()
            log.close()
        tell(f"\n{stopped_by(received)}: each unfinished seed saved its checkpoint in its folder (see its log.txt)")
        return signal_exit_code(received)
    finished = [f for seed, f in zip(order, folders) if seed not in failed]
    if not finished:
        tell("error: every seed failed; see the log.txt in each seed folder")
        return 1
    summary = seed_tables.summarize(finished)
    text = seed_tables.table(summary, [os.path.basename(f) for f in finished])
    write_text(os.path.join(args.out, "seeds.md"), text + "\n")
    write_text(os.path.join(args.out, "seeds.json"), json.dumps({"folders": finished, "rows": summary}, indent=1))
    print(text)
    print(f"wrote {os.path.join(args.out, 'seeds.md')} and seeds.json" + (f"; failed seeds: {failed}" if failed else ""))
    return 1 if failed else 0


def last_progress(folder):
    """The step and eta of a running seed, from the last progress line in its log."""
    try:
        with open(os.path.join(folder, "log.txt")) as file:
            lines = [line for line in file.read().splitlines() if line.strip()[:1].isdigit() and "|" in line]
    except OSError:
        return "starting"
    if not lines:
        return "starting"
    cells = [cell.strip() for cell in lines[-1].split("|")]
    return f"step {cells[0]}, eta {cells[-1]}"


def run(args, received):
    """Train, save, evaluate. Every way this can end keeps the work and says where it is."""
    if args.resume is not None:
        _, config, state = args.resumed
        config = dataclasses.replace(config, fused=config.fused and not args.plain)
    else:
        config = Config(seed=args.seed, occlusion=args.occlusion, control=args.control, model=args.model,
                        boundary=args.boundary, kl_balance=args.kl_balance, overshooting=args.overshooting,
                        batch_size=args.batch, seq_len=args.seq_len, push_share=args.push_share, fused=not args.plain)
        if args.lr_schedule == "planned":
            config = dataclasses.replace(config, lr_decay_steps=planned_steps(args, config))
        state = init_train_state(config)
    checkpoint_path = os.path.join(args.out, "checkpoint.npz")
    last_saved = {"step": None}
    holder = {"state": state}

    def kept():
        return f"{checkpoint_path} (step {last_saved['step']})" if last_saved["step"] is not None else \
            "none: no checkpoint was written in this run"

    def keep_work(reason, code):
        """Save the last finished step to the checkpoint, say where, return the exit code."""
        current = holder["state"]
        if current["step"] == state["step"]:
            tell(f"\n{reason} before the first training step of this run ended; nothing new to save")
            return code
        try:
            save(checkpoint_path, current["params"], config, current)
        except (OSError, ValueError) as error:
            tell(f"\n{reason}: could not save step {current['step']} ({error}); last checkpoint: {kept()}")
            return code
        tell(f"\n{reason}: saved step {current['step']} to {checkpoint_path}; "
             f"continue with: {resume_command(checkpoint_path, args.out, args.steps)}")
        return code

    try:
        if args.resume is not None:
            print(f"resuming from {args.resume} at step {state['step']}")
            planned = config.lr_decay_steps
            if planned and args.steps is not None and args.steps > planned:
                print(f"note: that run planned {planned} steps; its step size has reached its floor "
                      f"({config.min_learning_rate:g}) there and stays at it for the {args.steps - planned} steps beyond")
        world = [name for name, on in (("occluders", config.occlusion),
                                       (f"pushes on {config.push_share:.0%} of the frames", config.control)) if on]
        levers = [text for text, on in (("planned step-size schedule", config.lr_decay_steps),
                                        (f"KL balancing {config.kl_balance:g}", config.kl_balance),
                                        (f"overshooting {config.overshooting}", config.overshooting > 1)) if on]
        print(f"training on the {config.image_size}x{config.image_size} dot world"
              f"{' with ' + ' and '.join(world) if world else ''} (batch {config.batch_size}, "
              f"sequences of {config.seq_len}{'; ' + ', '.join(levers) if levers else ''}); Ctrl-C saves and stops")
        progress = Progress(args.steps, None if args.minutes is None else 60 * args.minutes, args.print_every)

        def on_step(current, stats, elapsed):
            holder["state"] = current
            if current["step"] % args.checkpoint_every == 0:
                save(checkpoint_path, current["params"], config, current)
                last_saved["step"] = current["step"]
            return progress(current, stats, elapsed)

        start, first_step = time.perf_counter(), state["step"]
        state = train(config, steps=args.steps, seconds=None if args.minutes is None else 60 * args.minutes,
                      state=state, on_step=on_step)
        train_seconds = time.perf_counter() - start
        if state["step"] == 0:
            tell(f"error: --minutes {args.minutes} ended before the first training step; nothing was written")
            return 1
        model_path = save(os.path.join(args.out, "model.npz"), state["params"], config, state)
    except KeyboardInterrupt:
        return keep_work(stopped_by(received), signal_exit_code(received))
    except BrokenPipeError:
        silence_stdout()
        return keep_work("stdout was closed", 141)
    except FloatingPointError as error:
        # A non-finite model is never saved: the files on disk are the last good ones.
        tell(f"error: {error}; last good checkpoint: {kept()}")
        return 1
    except OSError as error:
        tell(f"error: could not write to {args.out!r} ({error}); last checkpoint: {kept()}")
        return 1
    if args.no_eval:
        print(f"trained to step {state['step']}; wrote {model_path}")
        return 0
    try:
        return evaluate_and_draw(args, config, state, model_path, train_seconds, state["step"] - first_step)
    except (KeyboardInterrupt, OSError) as error:
        if isinstance(error, KeyboardInterrupt):
            reason, code = stopped_by(received), signal_exit_code(received)
        elif isinstance(error, BrokenPipeError):
            silence_stdout()
            reason, code = "stdout was closed", 141
        else:
            reason, code = f"error: {error}", 1
        tell(f"\n{reason} during the evaluation; the trained model is saved at {model_path}; evaluate it again "
             f"with: {resume_command(model_path, args.out, state['step'])}")
        return code


def evaluate_and_draw(args, config, state, model_path, train_seconds, steps_this_run):
    params = state["params"]
    print("evaluating on held-out sequences ...", flush=True)
    metrics = evaluate(params, config)
    metrics.update(beliefs.belief_metrics(params, config))
    metrics.update(planning_metrics(params, config))
    metrics["steps"] = state["step"]
    metrics["train_seconds"] = round(train_seconds, 1)
    metrics["steps_this_run"] = steps_this_run
    metrics["ms_per_step"] = round(float(np.median([h["ms"] for h in state["history"][-200:]])), 1)
    metrics["config"] = config.to_dict()
    metrics_path = write_text(os.path.join(args.out, "metrics.json"), json.dumps(metrics, indent=2))
    figures = write_figures(args.out, params, config, state["history"])
    figures += write_belief_figures(args.out, params, config, metrics)

    print()
    print(results_table(metrics))
    print("\nwrote:")
    for path in [model_path, metrics_path] + figures:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:        # a late Ctrl-C, after the work was saved and the run had ended
        sys.exit(130)
