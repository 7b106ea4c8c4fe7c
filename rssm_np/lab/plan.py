"""Steer the real dot to a goal by planning inside the learned model, and compare with references.

    python -m rssm_np.lab.plan runs/demo/model.npz                 # 64 episodes, default CEM settings
    python -m rssm_np.lab.plan runs/demo/model.npz --episodes 16 --candidates 200

Runs the same random episodes (start, goal, 30 real steps) with four planners: zero actions,
random actions, CEM with the true physics, and CEM inside the model (planning.Planner). Writes
plan.json, plan_episodes.png and plan.gif next to the model (or into --out) and prints a table.

Like every command that writes (utils/files.py): the folder is checked and claimed before the
first episode (a plan already there is replaced only with --overwrite), sizes that cannot fit in
memory are refused by name, and Ctrl-C or SIGTERM keeps the model planner's episodes so far in
plan_so_far.json and plan.gif (exit code 130 / 143).
"""

import argparse
import json
import os

import numpy as np

from ..checkpoint import load
from ..config import check_fits_rollout
from .planning import (EPISODE_STEPS, SEARCH, SUCCESS_PX, Planner, episode_metrics, evaluate_planners, run_episodes,
                       sample_episodes)
from .results import provenance
from ..utils.files import (FolderError, run_command, claim_folder, replace_atomically, signal_exit_code, stop_signals, stopped_by,
                           tell, write_or_keep, write_text_or_keep)
from ..utils.validate import check_int

FIGURE_EPISODES = 6
RESULTS = ("plan.json", "plan_episodes.png", "plan.gif", "plan_so_far.json")   # every file plan writes


def parse_args(argv=None):
    def positive(text):
        try:
            return check_int("value", int(text))
        except (ValueError, TypeError):
            raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None

    parser = argparse.ArgumentParser(prog="python -m rssm_np.lab.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a model.npz written by demo.py (trained with --control)")
    parser.add_argument("--episodes", type=positive, default=64, help="episodes per planner (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episodes (default 0)")
    parser.add_argument("--horizon", type=positive, default=SEARCH["horizon"],
                        help=f"K: imagined steps per plan (default {SEARCH['horizon']})")
    parser.add_argument("--candidates", type=positive, default=SEARCH["candidates"],
                        help=f"N: action sequences per CEM round (default {SEARCH['candidates']})")
    parser.add_argument("--iterations", type=positive, default=SEARCH["iterations"],
                        help=f"CEM rounds per real step (default {SEARCH['iterations']})")
    parser.add_argument("--top-k", type=positive, default=SEARCH["top_k"],
                        help=f"candidates kept to refit each round (default {SEARCH['top_k']})")
    parser.add_argument("--readout", choices=("linear", "centroid"), default="centroid",
                        help="how the cost reads the dot from an imagined state (default centroid)")
    parser.add_argument("--out", default=None, help="output folder (default: the model's folder)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the plan files found in the output folder (default: refuse)")
    args = parser.parse_args(argv)
    if args.top_k > args.candidates:
        parser.error(f"--top-k {args.top_k} must be at most --candidates {args.candidates}")
    if args.seed < 0:
        parser.error(f"--seed must be a non-negative integer, got {args.seed}")
    try:
        args.params, args.config = load(args.model)
    except (OSError, ValueError, TypeError, KeyError) as error:
        parser.error(f"model {args.model!r}: {error}")
    if not args.config.control:
        parser.error(f"model {args.model!r} was trained without actions (--no-control): it never saw a push, "
                     "so it cannot plan one. Train with control (the demo's default) to plan.")
    try:                                     # every candidate of every episode is imagined at once
        check_fits_rollout(args.config, args.episodes * args.candidates, args.horizon,
                           f"--episodes {args.episodes} x --candidates {args.candidates}")
    except ValueError as error:
        parser.error(str(error))
    where = "--out {!r}" if args.out else "the output folder {!r} (the model's; --out chooses another)"
    args.out = args.out or os.path.dirname(os.path.abspath(args.model))
    try:
        args.lock = claim_folder(args.out, RESULTS, args.overwrite)
    except FolderError as error:
        parser.error(f"{where.format(args.out)} {error}")
    return args


class Recorder:
    """Progress line while the model plans, and its dreams for the figure and the GIF."""

    def __init__(self, planner, episodes, every=5):
        self.planner, self.episodes, self.every = planner, episodes, every
        self.dreams, self.frames = [], []             # per step: (B, K, 2) positions, (K, S, S) episode 0
        self.actions, self.seconds = [], 0.0          # per step: (B, A) the model planner executed; its time
        self.at = ("", 0)                             # (planner, steps done): where a stop signal finds us
        print(f"{'planner':<20} | {'step':>5} | {'ms/step':>7} | {'eta':>6}")

    def __call__(self, name, t, seconds):
        step = t + 1
        planning = name == "CEM in the model"
        self.at = (name, step)
        if planning:
            self.actions.append(self.planner.last_action.copy())
            self.seconds = seconds
            dream = self.planner.dream(self.planner.plan)
            self.dreams.append(dream["positions"])
            self.frames.append(dream["frames"][0])
        if step != EPISODE_STEPS and (step % self.every or not planning):
            return
        eta = int(round(seconds / step * (EPISODE_STEPS - step)))
        ms = 1000 * seconds / step / self.episodes
        print(f"{name:<20} | {step:2d}/{EPISODE_STEPS} | {ms:7.1f} | {eta // 60:3d}m{eta % 60:02d}s", flush=True)


def table(results):
    lines = [f"{'planner':<20} | {'success':>7} | {'final px':>8} | {'last-10 px':>10} | {'ms/step':>7}"]
    for name in ("CEM in the model", "CEM + true physics", "random actions", "zero actions"):
        r = results[name]
        lines.append(f"{name:<20} | {r['success_rate']:7.0%} | {r['final_px']:8.2f} | {r['last10_px']:10.2f} | "
                     f"{r['ms_per_step']:7.2f}")
    return "\n".join(lines)


def episodes_figure(path, goals, results, dreams, size, episodes=FIGURE_EPISODES, every=6):
    """Paths of a few episodes: the model's planner, the true-physics planner, and the model's dreams.

    dreams (T, B, K, 2): at every `every`-th step, where the model expected its plan to take the dot.
    """
    from .plots import _save, plt
    cols = min(3, episodes)
    rows = -(-episodes // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.3 * rows), squeeze=False)
    model, physics = results["CEM in the model"]["positions"], results["CEM + true physics"]["positions"]
    for ax in axes.ravel()[episodes:]:
        ax.axis("off")
    for b, ax in enumerate(axes.ravel()[:episodes]):
        for t in range(0, len(dreams), every):
            start = model[b, t:t + 1]
            dream = np.concatenate([start, dreams[t][b]], axis=0)
            ax.plot(dream[:, 0], dream[:, 1], color="C1", linestyle="--", linewidth=0.9,
                    label="model's dream of its plan" if t == 0 else None)
        ax.plot(physics[b, :, 0], physics[b, :, 1], color="0.6", linewidth=1, label="CEM + true physics")
        ax.plot(model[b, :, 0], model[b, :, 1], ".-", color="C0", markersize=3, linewidth=1.2,
                label="CEM in the model (real path)")
        ax.plot(*model[b, 0], "o", color="C0", markersize=5)
        ax.add_patch(plt.Circle(goals[b], SUCCESS_PX, color="C2", alpha=0.3))
        ax.plot(*goals[b], "*", color="C2", markersize=10, label=f"goal ({SUCCESS_PX:g} px disk)")
        ax.set_xlim(-0.5, size - 0.5)
        ax.set_ylim(size - 0.5, -0.5)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        final = np.linalg.norm(model[b, -1] - goals[b])
        ax.set_title(f"episode {b}: ends {final:.1f} px away", fontsize=8)
    axes[0, 0].legend(fontsize=6, loc="lower left")
    return _save(fig, path, "Planning in the dream: real paths (blue), the model's dreamed plans (orange)")


def episode_gif(path, positions, goal, dream_frames, size, scale=6, fps=5):
    """One episode as a GIF: the real frame beside the model's imagined plan at that step.

    positions (T + 1, 2) real path; goal (2,); dream_frames (T, K, S, S), shown as the brightest
    pixel over the K imagined frames: a trail of where the plan should take the dot. Drawn with
    Pillow directly (it comes with matplotlib): thirty small frames do not need a figure each.
    """
    from PIL import Image, ImageDraw
    from ..world import render
    real = render(positions[:-1], size)                                              # (T, S, S)
    trail = dream_frames.max(axis=1)                                                 # (T, S, S)
    gap, caption = 2, 14
    goal_px = [(offset + goal[0] * scale + scale / 2, goal[1] * scale + scale / 2)
               for offset in (0, (size + gap) * scale)]
    images = []
    for t in range(len(real)):
        pair = np.concatenate([real[t], np.full((size, gap), 0.35), trail[t]], axis=1)   # (S, 2S + gap)
        image = Image.fromarray((255 * pair).astype(np.uint8)).resize(
            (pair.shape[1] * scale, size * scale), Image.NEAREST).convert("RGB")
        canvas = Image.new("RGB", (image.width, image.height + 2 * caption), "white")
        canvas.paste(image, (0, caption))
        draw = ImageDraw.Draw(canvas)
        for x, y in goal_px:
            draw.line([(x - 6, y + caption), (x + 6, y + caption)], fill=(60, 220, 60), width=2)
            draw.line([(x, y + caption - 6), (x, y + caption + 6)], fill=(60, 220, 60), width=2)
        draw.text((4, 1), "real world", fill="black")
        draw.text(((size + gap) * scale + 4, 1), "imagined plan", fill="black")
        distance = np.linalg.norm(positions[t] - goal)
        draw.text((4, image.height + caption + 1), f"step {t}: {distance:.1f} px from the goal (+)", fill="black")
        images.append(canvas)
    return replace_atomically(path, lambda temporary: images[0].save(temporary, save_all=True, append_images=images[1:],
                                                                     duration=int(1000 / fps), loop=0))


def main(argv=None):
    try:
        args = parse_args(argv)
    except KeyboardInterrupt:
        tell("\ninterrupted before planning started; nothing was written")
        return 130
    try:
        with stop_signals() as received:
            try:
                return run(args, received, provenance(argv, program="python -m rssm_np.lab.plan"))
            except KeyboardInterrupt:         # before the first episode (run keeps what the episodes give)
                tell(f"\n{stopped_by(received)} before planning started; nothing was written")
                return signal_exit_code(received)
    finally:
        if args.lock is not None:
            args.lock.close()


def run(args, received, measured):
    settings = {"horizon": args.horizon, "candidates": args.candidates, "iterations": args.iterations,
                "top_k": args.top_k}
    print(f"planning {args.episodes} episodes of {EPISODE_STEPS} steps with {args.model} "
          f"(CEM: {settings}, read-out: {args.readout})")
    header = {"model": args.model, "episodes": args.episodes, "seed": args.seed, "readout": args.readout,
              "settings": settings, "steps": EPISODE_STEPS, "success_px": SUCCESS_PX}
    planner = Planner(args.params, args.config, readout=args.readout, **settings)
    recorder, finished = Recorder(planner, args.episodes), {}
    try:
        goals, results = evaluate_planners(planner, episodes=args.episodes, seed=args.seed, on_step=recorder,
                                           results=finished)
    except KeyboardInterrupt:                 # Ctrl-C, SIGTERM, SIGHUP (stop_signals): keep the episodes so far
        return keep_so_far(args, recorder, header, measured, received, finished)
    print()
    print(table(results))                     # on the screen first: if every write fails, the numbers remain
    print(f"(success: final distance <= {SUCCESS_PX:g} px; ms/step: wall time of one planned step per episode, "
          f"{args.episodes} episodes planned as one batch)")
    record = {**header, "results": {name: {k: v for k, v in r.items() if k != "positions"}
                                    for name, r in results.items()}, "provenance": measured}
    size, shown = args.config.image_size, min(FIGURE_EPISODES, args.episodes)

    def write_all():                          # each file where it belongs, or under a fallback name beside it
        return [write_text_or_keep(os.path.join(args.out, "plan.json"), json.dumps(record, indent=2)),
                write_or_keep(os.path.join(args.out, "plan_episodes.png"), lambda target: episodes_figure(
                    target, goals, results, recorder.dreams, size, episodes=shown)),
                write_or_keep(os.path.join(args.out, "plan.gif"), lambda target: episode_gif(
                    target, results["CEM in the model"]["positions"][0], goals[0], np.stack(recorder.frames), size))]

    code = 0
    try:
        paths = write_all()
    except KeyboardInterrupt:                 # a stop signal cut a write short; later ones are ignored: write again
        paths, code = write_all(), signal_exit_code(received)
        tell(f"\n{stopped_by(received)} while writing the results: wrote them all the same")
    except OSError as error:
        tell(f"error: could not write the results to {args.out!r} or a fallback ({error}); the table above has them")
        return 1
    print("\nwrote:")
    for path in paths:
        print(f"  {path}")
    return code


def episodes_so_far(args, steps, actions):
    """The model planner's episodes up to `steps`: the actions it executed, replayed in the real world
    (run_episodes is deterministic given the actions). Returns positions (B, steps + 1, 2), goals (B, 2)."""
    size, boundary = args.config.image_size, args.config.boundary
    starts, goals = sample_episodes(args.episodes, size, args.seed, boundary)
    executed = iter(actions[:steps])
    positions, _ = run_episodes(lambda frames, states, goals: next(executed), starts, goals, size, boundary,
                                steps=steps)
    return positions, goals


def keep_so_far(args, recorder, header, measured, received, finished):
    """What a stopped plan keeps: the reference planners that finished (they run first) and the model
    planner's episodes up to its last finished step, in plan_so_far.json (their metrics) and plan.gif
    (episode 0 of the model's)."""
    reason, code = stopped_by(received), signal_exit_code(received)
    name, step = recorder.at
    steps = min(len(recorder.actions), len(recorder.frames))
    if steps == 0:
        tell(f"\n{reason} at step {step}/{EPISODE_STEPS} of {name or 'the first planner'}, before the model's planner "
             f"made a step: nothing to keep, nothing written")
        return code
    positions, goals = episodes_so_far(args, steps, recorder.actions)
    references = {name: {k: v for k, v in r.items() if k != "positions"} for name, r in finished.items()}
    record = {**header, "stopped_after_step": steps,
              "results": {**references, "CEM in the model": episode_metrics(positions, goals, recorder.seconds)},
              "provenance": measured}
    try:
        paths = [write_text_or_keep(os.path.join(args.out, "plan_so_far.json"), json.dumps(record, indent=2)),
                 write_or_keep(os.path.join(args.out, "plan.gif"), lambda target: episode_gif(
                     target, positions[0], goals[0], np.stack(recorder.frames[:steps]), args.config.image_size))]
    except OSError as error:
        tell(f"\n{reason} at step {steps}/{EPISODE_STEPS} of the model's planner; could not keep its episodes "
             f"({error})")
        return code
    tell(f"\n{reason}: kept the model planner's {args.episodes} episodes up to step {steps}/{EPISODE_STEPS} in "
         f"{' and '.join(paths)}")
    return code


if __name__ == "__main__":
    run_command(main)
