"""Why both paths: train the RNN, the SSM and the RSSM on two worlds, same budget, and compare.

    python -m rssm_np.lab.compare --out runs/compare            # 3 models x 2 worlds (the ETA line says how long)
    python -m rssm_np.lab.compare --steps 300 --out runs/quick  # a quick look

Worlds: "bounce" (deterministic walls: a memory is all a model needs) and "random" (each wall hit
redraws the velocity: the future forks exactly there). Models (variants.py): "rnn" deterministic
only, "ssm" stochastic only, "rssm" both. Same encoder, decoder, sizes, data, steps and seed.
Writes OUT/<world>/<model>/model.npz, OUT/compare.json, OUT/compare.md and three figures.
Rerunning the same command reuses the models already trained (same config, same steps) and
continues an interrupted one from its furthest-along checkpoint. Models of another run (another
--seed, --recipe, --free-nats or --steps) and the results of a finished comparison are refused before any
training, unless --overwrite.
"""

import argparse
import json
import math
import os
import time

import numpy as np          # plain NumPy (the model's traced NumPy is autograd.numpy, in model.py)

from . import plots
from ..checkpoint import furthest_along, load_train_state, peek, save
from ..config import Config
from .evaluate import CONTEXT
from .futures import SAMPLES, event_metrics, events_dataset, futures_dataset, future_metrics
from .results import provenance
from ..model import predict
from ..utils.files import (FolderError, check_folder, claim_folder, run_command, signal_exit_code, stop_signals,
                           stopped_by, tell, write_text_or_keep)
from ..training import init_train_state, train

MODELS = ("rnn", "ssm", "rssm")
WORLDS = ("bounce", "random")
DEFAULT_STEPS = 1500
RESULTS = ("compare.json", "compare.md")
FIGURES = ("compare_lesson.png", "compare_when_necessary.png", "compare_error_by_horizon.png")   # write_figures's
MODEL_FILES = ("model.npz", "checkpoint.npz")                                # in OUT/<world>/<model>/


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m rssm_np.lab.compare",
        description="Train the RNN, SSM and RSSM on the bouncing and the random-wall world with the same "
                    "budget, then measure their imagined futures (held-out seeds).")
    parser.add_argument("--out", default=os.path.join("runs", "compare"), help="output folder (default runs/compare)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                        help=f"training steps for each model on each world (default {DEFAULT_STEPS})")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights, data and noise (default 0)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--worlds", default=",".join(WORLDS), help=f"comma-separated subset of {','.join(WORLDS)}")
    parser.add_argument("--recipe", choices=tuple(RECIPES), default="fair",
                        help=f"fair (default): every model learns from its dreams decoded up to {OVERSHOOTING} "
                             "steps ahead, the rnn without free nats; old: Config's defaults for all")
    parser.add_argument("--free-nats", type=float, default=None,
                        help="free nats of every model (default: Config's 1.0); e.g. 0 to train the RNN's "
                             "prior regression without a free budget")
    parser.add_argument("--sequences", type=int, default=64,
                        help="held-out sequences to measure on (default 64; fewer for a quick look)")
    parser.add_argument("--overwrite", action="store_true", help="replace the results and models of another "
                        "comparison found in --out (a model of the same config continues from its furthest state)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be a positive integer, got {args.steps}")
    if args.free_nats is not None and not (args.free_nats >= 0 and math.isfinite(args.free_nats)):
        parser.error(f"--free-nats must be a non-negative number, got {args.free_nats}")
    if args.sequences < 1:
        parser.error(f"--sequences must be a positive integer, got {args.sequences}")
    if args.seed < 0:
        parser.error(f"--seed must be a non-negative integer, got {args.seed}")
    for flag, allowed in (("models", MODELS), ("worlds", WORLDS)):
        names = [name for name in getattr(args, flag).split(",") if name]
        unknown = [name for name in names if name not in allowed]
        if unknown or not names:
            parser.error(f"--{flag} takes a comma-separated subset of {','.join(allowed)}, got {getattr(args, flag)!r}")
        setattr(args, flag, [name for name in allowed if name in names])
    claim(parser, args)
    return args


# What each model trains with, on top of Config's defaults: each at its best within the same steps
# (docs/why-both-paths.md has the experiments). All three learn from their own dreams, decoded
# OVERSHOOTING steps ahead (observation overshooting, levers.py): without it the rnn's dream
# compounds its errors, and the RSSM's dream is better with it too. The rnn's prior is a
# regression, not a distribution, so it has no free nats: its "KL", 0.5 ||mean_q - mean_p||^2,
# stays under 1 nat on most steps, and below the threshold the term has no gradient at all.
# The dreams start at every DREAMS_EVERY-th frame, so each frame is dreamed once (a quarter of the
# decoder passes of dreams from every frame); the ssm dreamed worse so, and starts its dreams at
# every 2nd frame, where it dreams as with every frame (docs/why-both-paths.md, the schedule table).
# "old" trains every model on Config's defaults, as the comparison first did.
OVERSHOOTING = 5
DREAMS_EVERY = 4
_DREAMS = {"obs_overshooting": OVERSHOOTING, "obs_overshooting_every": DREAMS_EVERY}
RECIPES = {"fair": {"rssm": _DREAMS, "ssm": {**_DREAMS, "obs_overshooting_every": 2},
                    "rnn": {**_DREAMS, "free_nats": 0.0}},
           "old": {}}
RECIPE_FIELDS = ("free_nats", "obs_overshooting", "obs_overshooting_every")   # recorded in compare.json


def model_config(model, world, seed, free_nats=None, recipe="fair"):
    """The one config each run gets: the model, the walls, and the model's own recipe (RECIPES)."""
    extra = dict(RECIPES[recipe].get(model, {}))
    if free_nats is not None:
        extra["free_nats"] = free_nats
    return Config(model=model, boundary=world, occlusion=False, control=False, seed=seed, **extra)


def trained_state(folder, config, steps):
    """The furthest-along training state of this run in `folder` (same config, at most `steps`
    steps): (path, state), or (None, None) if there is none to continue."""
    found = furthest_along([os.path.join(folder, name) for name in MODEL_FILES], config, steps)
    if found is None:
        return None, None
    return found[0], load_train_state(found[0])[2]


def claim(parser, args):
    """The folder and every file the comparison writes, checked before any training: the results and
    figures of a finished comparison, and models of another run (utils.files.claim_folder)."""
    try:
        args.lock = claim_folder(args.out, RESULTS + FIGURES, args.overwrite)
        for world in args.worlds:
            for model in args.models:
                check_folder(os.path.join(args.out, world, model))
    except FolderError as error:
        if getattr(args, "lock", None) is not None:
            args.lock.close()
        parser.error(f"--out {args.out!r} {error}")
    foreign = [] if args.overwrite else another_runs_models(args)
    if foreign:
        if args.lock is not None:
            args.lock.close()
        shown = "; ".join(foreign[:2]) + (f"; and {len(foreign) - 2} more" if len(foreign) > 2 else "")
        parser.error(f"--out {args.out!r} holds models of another run: {shown}. Rerun with that run's flags to "
                     f"continue it, pass --overwrite to replace them (a model of this run's config continues from "
                     f"its furthest-along state), or choose another folder")


def another_runs_models(args):
    """The model files in OUT/<world>/<model>/ this run does not own, each with the reason: another
    config (--seed, --free-nats), another length (a finished model.npz of other --steps, a
    checkpoint past --steps), or a file that is not a checkpoint."""
    foreign = []
    for world in args.worlds:
        for model in args.models:
            config = model_config(model, world, args.seed, args.free_nats, args.recipe)
            for name in MODEL_FILES:
                path = os.path.join(args.out, world, model, name)
                if not os.path.lexists(path):
                    continue
                try:
                    saved, step = peek(path)
                except (OSError, ValueError) as error:
                    foreign.append(f"{path}: {error}")
                    continue
                differ = [f"{field}={getattr(saved, field)!r}" for field in config.to_dict()
                          if field != "fused" and getattr(saved, field) != getattr(config, field)]
                if differ:
                    foreign.append(f"{path} was trained with {', '.join(differ)}")
                elif step is None or step > args.steps or (name == "model.npz" and step != args.steps):
                    foreign.append(f"{path} is a run of {step} steps, and --steps is {args.steps}")
    return foreign


class Progress:
    """One line every 100 steps: run | step | loss | ms/step | eta of the whole comparison."""

    def __init__(self, runs, steps):
        self.runs, self.steps = runs, steps
        self.done_steps, self.label = 0, ""
        print(f"{'run':<14} | {'step':>6} | {'loss':>8} | {'ms/step':>7} | {'eta (all runs)':>14}")

    def start(self, label):
        self.label = label

    def __call__(self, state, stats, elapsed):
        step = state["step"]
        if step % 100 and step != self.steps:
            return False
        ms = float(np.median([h["ms"] for h in state["history"][-100:]]))
        remaining = (self.steps - step) + (self.runs - self.done_steps // self.steps - 1) * self.steps
        eta = int(round(remaining * ms / 1000))
        print(f"{self.label:<14} | {step:6d} | {stats['loss']:8.3f} | {ms:7.1f} | {eta // 60:11d}m{eta % 60:02d}s",
              flush=True)
        return False


def run_one(args, world, model, progress):
    """Train (or reuse, or continue) one model; return its params, config, seconds of training and median ms/step."""
    folder = os.path.join(args.out, world, model)
    config = model_config(model, world, args.seed, args.free_nats, args.recipe)
    path, state = trained_state(folder, config, args.steps)
    label = f"{world}/{model}"
    progress.start(label)
    if state is None:
        state = init_train_state(config)
    elif state["step"] < args.steps:
        print(f"{label:<14} | continuing from {path} (step {state['step']}, the furthest along)", flush=True)
    first_step = state["step"]
    if state["step"] < args.steps:
        holder = {"state": state}

        def remember(current, stats, elapsed):
            holder["state"] = current
            if current["step"] % 500 == 0:
                save(os.path.join(folder, "checkpoint.npz"), current["params"], config, current)
            return progress(current, stats, elapsed)

        try:
            state = train(config, steps=args.steps, state=state, on_step=remember)
        except KeyboardInterrupt:
            current = holder["state"]
            if current["step"] > first_step:          # steps of this run to keep (else the files hold them)
                save(os.path.join(folder, "checkpoint.npz"), current["params"], config, current)
            raise
    else:
        print(f"{label:<14} | reusing {path} ({state['step']} steps)")
    if path is None or os.path.basename(path) != "model.npz" or state["step"] != first_step:
        save(os.path.join(folder, "model.npz"), state["params"], config, state)
    progress.done_steps += args.steps
    ms = [h["ms"] for h in state["history"]]
    # From the model's own history, so a reused model reports its real cost: seconds of training,
    # and the share of steps whose mean KL sat below the free nats, where the KL term (the rnn's
    # only training of its prior) has no gradient at all (distributions.free_nats).
    idle = float(np.mean([h["kl"] < config.free_nats for h in state["history"]])) if ms else float("nan")
    return state["params"], config, sum(ms) / 1000, float(np.median(ms)) if ms else float("nan"), idle


def table(results):
    """compare.md: one row per world and model for the dreams (stable rollouts?), then one per model
    on the random world for the forks (uncertainty when necessary?)."""
    lines = ["| world | model | mean path h=10 (px) | mean path, mean over K (px) | best of 32, h=11-20 (px) | "
             "coverage90 | sharpness h=20 (mean path / samples) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for world, by_model in results.items():
        for model, m in by_model.items():
            over = next(key for key in m if key.startswith("mean_over_"))
            lines.append(f"| {world} | {model} | {m['mean_h10']:.2f} | {m[over]:.2f} (K={over.split('_')[-1]}) | "
                         f"{m['best_of_32_h11_20']:.2f} | {m['coverage90']:.3f} | "
                         f"{m['sharpness_h20_mean_path']:.2f} / {m['sharpness_h20_samples']:.2f} |")
    if "random" in results:
        lines += ["", "| random walls: model | mean path error, free flight / after a fork (px) | "
                      "sharpness, free flight / after a fork | surprise KL at the fork / free flight | "
                      "one-step spread at the fork / free flight |",
                  "| --- | --- | --- | --- | --- |"]
        for model, m in results["random"].items():
            surprise, spread = m.get("surprise_at_events"), m.get("spread_at_events")
            lines.append(f"| {model} | {m['free_error']:.2f} / {m['fork_error']:.2f} | "
                         f"{m['free_sharpness']:.2f} / {m['fork_sharpness']:.2f} | "
                         f"{event_text(surprise, 'nats')} | {event_text(spread, 'px', model)} |")
    return "\n".join(lines) + "\n"


def event_text(average, unit, model=None):
    """'2.27 / 0.76 nats (3.0x, 180 events)' from an event average, or why there is none."""
    if average is None:
        return "n/a"
    if model == "rnn":
        return "n/a (one future)"
    at_0 = average["mean"][average["lags"].index(0)]
    ratio = average["ratio_at_0"]
    return (f"{at_0:.2f} / {average['free_flight']:.2f} {unit} "
            f"({'n/a' if math.isnan(ratio) else f'{ratio:.1f}x'}, {average['events']} events)")


def lesson_sequence(data):
    """A held-out random-wall sequence whose dot hits a wall a few steps after the context."""
    events = data["events"][:, CONTEXT:]
    for b in range(len(events)):
        hits = np.flatnonzero(events[b])
        if len(hits) and 2 <= hits[0] <= 6:
            return b
    return int(np.argmax(events.any(axis=1)))


def write_figures(out, models, results, seed):
    """The three figures; returns their paths."""
    paths = []
    if "random" in models:
        data = futures_dataset("random")
        b = lesson_sequence(data)
        horizon = data["obs"].shape[1] - CONTEXT
        rows = {"truth": data["obs"][b, CONTEXT:]}
        for name, (params, config) in models["random"].items():
            futures = predict(params, config, data["obs"][b:b + 1, :CONTEXT], data["actions"][b:b + 1, :-1],
                              horizon=horizon, samples=3, seed=seed)[0]                     # (3, K, S, S)
            for i in range(1 if name == "rnn" else 3):
                rows[f"{name} {'future' if name == 'rnn' else f'sample {i + 1}'}"] = futures[i]
        hits = np.flatnonzero(data["events"][b, CONTEXT:]) + 1
        paths.append(plots.futures_side_by_side(os.path.join(out, "compare_lesson.png"), data["obs"][b, CONTEXT - 1],
                                                rows, hits))
        averages = {model: {key: results["random"][model][key] for key in ("surprise_at_events", "spread_at_events")}
                    for model in models["random"] if "surprise_at_events" in results["random"][model]}
        if averages:
            paths.append(plots.event_averages(os.path.join(out, "compare_when_necessary.png"), averages))
    paths.append(plots.futures_by_horizon(os.path.join(out, "compare_error_by_horizon.png"), results))
    return paths


def main(argv=None):
    try:
        args = parse_args(argv)
    except KeyboardInterrupt:
        tell("\ninterrupted before training started; nothing was written")
        return 130
    args.provenance = provenance(argv, program="python -m rssm_np.lab.compare")
    try:
        with stop_signals() as received:
            try:
                return run(args)
            except KeyboardInterrupt:
                tell(f"\n{stopped_by(received)}: what was trained so far is kept in {args.out} (the model in training "
                     f"as its checkpoint.npz); rerun the same command to continue")
                return signal_exit_code(received)
            except (OSError, ValueError) as error:
                tell(f"error: {error}; the models trained so far are in {args.out}")
                return 1
    finally:
        if args.lock is not None:
            args.lock.close()


def run(args):
    start = time.perf_counter()
    runs = [(world, model) for world in args.worlds for model in args.models]
    print(f"comparing {', '.join(args.models)} on the {' and '.join(args.worlds)} world(s): "
          f"{args.steps} steps each, {len(runs)} runs; Ctrl-C keeps what is trained")
    progress = Progress(len(runs), args.steps)
    trained, timing = {}, {}
    for world, model in runs:
        params, config, seconds, ms, idle = run_one(args, world, model, progress)
        trained.setdefault(world, {})[model] = (params, config)
        timing[f"{world}/{model}"] = {"train_seconds": round(seconds, 1), "ms_per_step": round(ms, 1),
                                      "kl_below_free_nats": round(idle, 3)}
    print("measuring imagined futures on held-out sequences ...", flush=True)
    results = {}
    for world, by_model in trained.items():
        data = futures_dataset(world, sequences=args.sequences)
        for model, (params, config) in by_model.items():
            results.setdefault(world, {})[model] = future_metrics(params, config, data, SAMPLES, args.seed)
            if world == "random":
                results[world][model].update(event_metrics(params, config, events_dataset(args.sequences),
                                                           SAMPLES, args.seed))
            print(f"  {world}/{model}: mean path h=10 {results[world][model]['mean_h10']:.2f} px, "
                  f"best of 32 h=11-20 {results[world][model]['best_of_32_h11_20']:.2f} px", flush=True)
    figures = write_figures(args.out, trained, results, args.seed)
    wall = time.perf_counter() - start
    settings = {model: {key: value for key, value in vars(model_config(model, args.worlds[0], args.seed,
                                                                       args.free_nats, args.recipe)).items()
                        if key in RECIPE_FIELDS} for model in args.models}     # what each model trained with
    summary = {"steps": args.steps, "seed": args.seed, "recipe": args.recipe, "free_nats": args.free_nats,
               "settings": settings, "samples": SAMPLES, "context": CONTEXT, "sequences": args.sequences,
               "wall_seconds": round(wall, 1), "timing": timing, "results": results, "provenance": args.provenance}
    # The measurements cost minutes: a write that fails now keeps them beside (files.write_or_keep).
    json_path = write_text_or_keep(os.path.join(args.out, "compare.json"), json.dumps(summary, indent=2))
    markdown = table(results)
    md_path = write_text_or_keep(os.path.join(args.out, "compare.md"), markdown)
    print()
    print(markdown)
    print(f"wall time {wall / 60:.1f} min; wrote:")
    for path in [json_path, md_path] + figures:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    run_command(main)
