"""Train an RSSM on the moving-dot world, evaluate it, and draw what it learned.

    python demo.py                     # the recipe: 3,000 steps, occluders and actions on, own dreams
    python demo.py --no-occlusion --no-control --steps 500   # the bouncing dot alone, shorter
    python demo.py --minutes 10        # train for a wall-clock budget instead of a step count
    python demo.py --seeds 3 --jobs 2  # seeds 0, 1, 2 into runs/demo/seed<k>/, then their mean ± std
    python demo.py --resume runs/demo/checkpoint.npz   # finish a stopped run of the default length

Writes model.npz, metrics.json and figures into --out (default runs/demo/), never over another run's
results unless asked (--overwrite); however it ends (Ctrl-C, SIGTERM, SIGHUP, closed stdout, full disk)
it saves what it can and says where. Resumed to its planned length, a run ends on the bits of one never
stopped (tests/test_checkpoint.py); resumed beyond it, it goes on at the step size's floor."""

import argparse
import dataclasses
import json
import os
import shlex
import time

import numpy as np

from rssm_np import DEMO_RECIPE, Config
from rssm_np.checkpoint import furthest_along, load_train_state, save
from rssm_np.config import DEMO_STEPS, check_fits_memory
from rssm_np.lab import beliefs, seeds
from rssm_np.lab.bench import planned_steps
from rssm_np.lab.evaluate import evaluate
from rssm_np.lab.results import provenance
from rssm_np.lab.report import (FIGURES, Progress, describe, planning_metrics, results_table, resuming,
                                write_belief_figures, write_figures)
from rssm_np.training import init_train_state, make_train_step
from rssm_np.utils import cli
from rssm_np.utils.cli import non_negative_int, positive_float, positive_int, switch, unit_float
from rssm_np.utils.files import FolderError, ending, keep_work, run_command, stop_signals, tell, write_text

DEFAULT_STEPS, DEFAULT_PUSH_SHARE = DEMO_STEPS, DEMO_RECIPE["push_share"]
# Every file a run writes into --out (report.FIGURES: the figures it draws): all claimed before training.
RESULTS, SEEDS_RESULTS = ("model.npz", "checkpoint.npz", "metrics.json") + FIGURES, ("seeds.md", "seeds.json")

# Each flag that sets the config, declared once: flag, Config field, default, argparse options, help.
# From this table come the declaration, the defaults, the --resume check, the Config and the command
# line of each --seeds child. The defaults are the demo's recipe (config.DEMO_RECIPE says why); the
# --lr-schedule flag names the schedule, and run() plans its length, lr_decay_steps.
CONFIG_FLAGS = (
    ("--seed", "seed", 0, dict(type=non_negative_int), "seed for weights, data and noise"),
    ("--occlusion", "occlusion", DEMO_RECIPE["occlusion"], dict(action=switch), "train with occluders hiding the dot"),
    ("--control", "control", DEMO_RECIPE["control"], dict(action=switch), "train with random actions pushing the dot"),
    ("--model", "model", "rssm", dict(choices=("rssm", "rnn", "ssm")),
     "rssm: memory h and state z; rnn: deterministic only; ssm: stochastic only"),
    ("--boundary", "boundary", "bounce", dict(choices=("bounce", "clip", "random")),
     "walls: bounce, clip, or random (reflect, then a random new velocity)"),
    ("--kl-balance", "kl_balance", 0.0, dict(type=unit_float, metavar="A"),
     "KL balancing (DreamerV2): the prior's share A of the KL's gradient; 0 is off"),
    ("--overshooting", "overshooting", 1, dict(type=positive_int, metavar="D"),
     "latent overshooting (PlaNet): also train the prior to dream D steps; 1 is off"),
    ("--obs-overshooting", "obs_overshooting", DEMO_RECIPE["obs_overshooting"], dict(type=positive_int, metavar="D"),
     "observation overshooting (PlaNet): also decode the prior's dreams 2..D steps ahead; 1 is off"),
    ("--obs-overshooting-every", "obs_overshooting_every", DEMO_RECIPE["obs_overshooting_every"],
     dict(type=positive_int, metavar="K"),
     "start those dreams at every K-th frame only; K = D-1 dreams each frame once (one more decoder pass)"),
    ("--lr-schedule", "lr_decay_steps", "planned", dict(choices=("planned", "half-life")),
     "planned: the step size falls to its floor over the planned steps; half-life: it halves every 1,000 steps "
     "down to its floor, whatever the length"),
    ("--push-share", "push_share", DEFAULT_PUSH_SHARE, dict(type=unit_float, metavar="P"), "with actions: the chance "
     "that a training frame gets a random push (the evaluation's held-out worlds use the world's own 0.5)"),
    ("--batch", "batch_size", Config.batch_size, dict(type=positive_int, metavar="B"), "sequences per step"),
    ("--seq-len", "seq_len", Config.seq_len, dict(type=positive_int, metavar="T"), "frames per sequence"),
)


# --- the settings
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train and evaluate an RSSM on the moving-dot world.")
    parser.add_argument("--steps", type=positive_int, help=f"total training steps (default {DEFAULT_STEPS}; "
                        "with --resume, counts the steps already done)")
    parser.add_argument("--minutes", type=positive_float, help="train for this many minutes of wall clock instead "
                        "(stops at --steps if both are given)")
    cli.declare(parser, CONFIG_FLAGS)
    parser.add_argument("--plain", action="store_true", help="train on the plain autograd loop over model.obs_step "
                        "instead of the fused core (slower; the code to set a breakpoint in)")
    parser.add_argument("--out", default=os.path.join("runs", "demo"), help="output folder (default runs/demo)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of another run found in --out (default: refuse)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=500,
                        help="write OUT/checkpoint.npz every N steps (default 500)")
    parser.add_argument("--resume", metavar="PATH", help="continue from a model.npz or checkpoint.npz this demo "
                        "wrote (its config and seed are used)")
    parser.add_argument("--print-every", type=positive_int, default=100,
                        help="progress line every N steps (default 100)")
    parser.add_argument("--no-eval", action="store_true", help="train and save only: skip evaluation and figures")
    seeds.declare(parser)                       # --seeds N, --jobs J
    args = parser.parse_args(argv)
    seeds.check_flags(parser, args)
    typed_steps = args.steps is not None
    if args.steps is None and args.minutes is None:
        args.steps = DEFAULT_STEPS
    args.config, args.state = build_config(parser, args, typed_steps)
    try:                                        # --out, and with --seeds every seed's folder, before any work
        args.lock = seeds.claim_folders(args, RESULTS, SEEDS_RESULTS)
    except FolderError as error:
        parser.error(str(error))
    return args


# --- the Config
def build_config(parser, args, typed_steps):
    """(config, training state) to start from: the flags' Config and no state yet, or the resumed run's
    (which keeps its config: a flag that disagrees is refused, and --steps must be ahead of it)."""
    if args.resume is None:
        cli.fill_defaults(args, CONFIG_FLAGS)
        fields = {field: getattr(args, cli.dest(flag)) for flag, field, *_ in CONFIG_FLAGS if field != "lr_decay_steps"}
        try:                                    # run() plans lr_decay_steps for --lr-schedule planned
            return Config(**fields, fused=not args.plain), None
        except (ValueError, TypeError) as error:   # flags that clash with each other or the config's sizes
            parser.error(cli.flag_names(str(error).replace("model 'rnn'", "--model rnn"), CONFIG_FLAGS))
    try:
        _, config, state = load_train_state(args.resume)
    except (OSError, ValueError, TypeError) as error:
        parser.error(f"--resume {args.resume!r}: {error}")
    if state is None:
        parser.error(f"--resume {args.resume!r} holds a model but no training state to resume from")
    # The run's other file may be further along (a model.npz from a short run, then a checkpoint of
    # the longer run that continued it): continue from the furthest, and say so.
    further = furthest_along([os.path.join(os.path.dirname(os.path.abspath(args.resume)), name)
                              for name in ("model.npz", "checkpoint.npz")], config, args.steps if typed_steps else None)
    if further is not None and further[1] > state["step"]:
        print(f"note: {further[0]} (step {further[1]}) is further along this run than {args.resume} "
              f"(step {state['step']}): continuing from it", flush=True)
        args.resume = further[0]
        return build_config(parser, args, typed_steps)
    schedule = "planned" if config.lr_decay_steps else "half-life"    # what --lr-schedule says of this config
    words, field = cli.disagreement(args, CONFIG_FLAGS, {**config.to_dict(), "lr_decay_steps": schedule})
    if words:
        parser.error(f"{' '.join(words)} disagrees with {args.resume!r} ({field} = {getattr(config, field)}): "
                     f"a resumed run keeps the config it was saved with; drop {words[0]}, or start a new run")
    done = state["step"]
    if args.steps is not None and not typed_steps and done >= args.steps:
        parser.error(f"--resume {args.resume!r} is already at step {done}, the default total of {DEFAULT_STEPS}; "
                     f"pass --steps N with N > {done} to train on, or --steps {done} to evaluate it again")
    if args.steps is not None and done > args.steps:
        parser.error(f"--steps {args.steps} counts total steps, but {args.resume!r} is already at step {done}; "
                     f"ask for more, or --steps {done} to evaluate it again")
    return dataclasses.replace(config, fused=config.fused and not args.plain), state


def resume_command(path, out, steps):
    return shlex.join(["python", "demo.py", "--resume", path, "--out", out] + (["--steps", str(steps)] if steps else []))


# --- the run: train, save, evaluate, draw; every way it can end keeps the work and says where
def run(args, received):
    config, state = args.config, args.state
    if state is None:                           # a new run: plan the step-size schedule, start from step 0
        if args.lr_schedule == "planned":
            config = dataclasses.replace(config, lr_decay_steps=planned_steps(config, args.steps, args.minutes))
        state = init_train_state(config)
    checkpoint, saved_step, first_step = os.path.join(args.out, "checkpoint.npz"), None, state["step"]
    seconds = None if args.minutes is None else 60 * args.minutes

    def kept():                                 # the last checkpoint this run wrote, for the error messages
        return f"{checkpoint} (step {saved_step})" if saved_step else "none: no checkpoint was written in this run"

    try:
        if args.resume is not None:
            print(resuming(args.resume, state["step"], config, args.steps))
        print(describe(config))
        progress = Progress(args.steps, seconds, args.print_every)
        # The training loop: what rssm_np.training.train does, written out.
        check_fits_memory(config)
        train_step = make_train_step(config)
        start = time.perf_counter()
        while (args.steps is None or state["step"] < args.steps) and \
                (seconds is None or time.perf_counter() - start < seconds):
            step_start = time.perf_counter()
            state, stats = train_step(state)
            if not stats["finite"]:             # never saved: the files on disk are the last good ones
                tell(f"error: training stopped at step {state['step'] + 1}: loss {stats['loss']} or gradient norm "
                     f"{stats['grad_norm']} is not finite; the parameters of step {state['step']} are kept; "
                     f"last good checkpoint: {kept()}")
                return 1
            stats["step"], stats["ms"] = state["step"], 1000 * (time.perf_counter() - step_start)
            state["history"].append({k: stats[k] for k in ("step", "loss", "recon", "kl", "grad_norm", "ms")})
            if state["step"] % args.checkpoint_every == 0:
                save(checkpoint, state["params"], config, state)
                saved_step = state["step"]
            progress(state, stats, time.perf_counter() - start)
        train_seconds = time.perf_counter() - start
        if state["step"] == 0:
            tell(f"error: --minutes {args.minutes} ended before the first training step; nothing was written")
            return 1
        model_path = save(os.path.join(args.out, "model.npz"), state["params"], config, state)
    except (KeyboardInterrupt, BrokenPipeError) as error:      # a stop signal, or stdout closed: keep the work
        reason, code = ending(error, received)
        if state["step"] == first_step:
            tell(f"\n{reason} before the first training step of this run ended; nothing new to save")
        else:
            keep_work(reason, lambda: save(checkpoint, state["params"], config, state), state["step"], checkpoint,
                      resume_command(checkpoint, args.out, args.steps), kept())
        return code
    except OSError as error:
        tell(f"error: could not write to {args.out!r} ({error}); last checkpoint: {kept()}")
        return 1
    if args.no_eval:
        print(f"trained to step {state['step']}; wrote {model_path}")
        return 0
    try:
        print("evaluating on held-out sequences ...", flush=True)
        params, history = state["params"], state["history"]
        ms_per_step = round(float(np.median([h["ms"] for h in history[-200:]])), 1)
        metrics = {**evaluate(params, config), **beliefs.belief_metrics(params, config),
                   **planning_metrics(params, config), "steps": state["step"], "train_seconds": round(train_seconds, 1),
                   "steps_this_run": state["step"] - first_step, "ms_per_step": ms_per_step, "config": config.to_dict(),
                   "provenance": args.provenance}
        metrics_path = write_text(os.path.join(args.out, "metrics.json"), json.dumps(metrics, indent=2))
        figures = write_figures(args.out, params, config, history)
        figures += write_belief_figures(args.out, params, config, metrics)
        print("\n" + results_table(metrics))
        print("\nwrote:")
        for path in [model_path, metrics_path] + figures:
            print(f"  {path}")
        return 0
    except (KeyboardInterrupt, OSError) as error:
        reason, code = ending(error, received)
        tell(f"\n{reason} during the evaluation; the trained model is saved at {model_path}; evaluate it again "
             f"with: {resume_command(model_path, args.out, state['step'])}")
        return code


def main(argv=None):
    try:
        args = parse_args(argv)
    except KeyboardInterrupt:
        tell("\ninterrupted before training started; nothing was written")
        return 130
    args.provenance = provenance(argv, program="python demo.py")
    try:
        with stop_signals() as received:
            if args.seeds:
                return seeds.run_seeds(__file__, args, received, [flag for flag, *_ in CONFIG_FLAGS])
            return run(args, received)
    finally:
        if args.lock is not None:
            args.lock.close()


if __name__ == "__main__":
    run_command(main)
