"""Numbers that hold across seeds: mean and standard deviation of several demo runs' metrics.

    python demo.py --seeds 3                       # trains seeds 0, 1, 2 into runs/demo/seed<k>/, then this table
    python -m rssm_np.lab.seeds runs/a runs/b runs/c   # the table for runs already made (each holds metrics.json)

One seed's number can be luck: a difference between two settings means something only when it
is larger than the spread between seeds of one setting. The standard deviation is the sample
one (n - 1), of the per-seed values; with 3 seeds it is itself rough, so read it as a scale.

demo.py --seeds N calls run_seeds: one demo process per seed, J at a time, each with the same
flags (seed_command), its own --seed and its own folder, then this table.
"""

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time

from ..utils.cli import dest, positive_int, typed
from ..utils.files import (FolderError, claim_folder, signal_exit_code, stopped_by, tell, write_text,
                           write_text_or_keep)

# What each seed's demo is handed besides the config flags (demo.CONFIG_FLAGS), its own --seed and
# its own --out: these, as the --seeds run was given them (--resume, --no-eval, --jobs stay behind).
RUN_FLAGS = ("--steps", "--minutes", "--print-every", "--checkpoint-every")
RUN_SWITCHES = ("--plain", "--overwrite")        # on/off flags with no --no- form: handed on when on

# (label, path into metrics.json, digits): the demo's headline numbers.
ROWS = (
    ("open loop h=1 (px)", ("open_loop_px_error_at", "1"), 2),
    ("open loop h=10 (px)", ("open_loop_px_error_at", "10"), 2),
    ("open loop h=20 (px)", ("open_loop_px_error_at", "20"), 2),
    ("open loop h=40 (px)", ("open_loop_px_error_at", "40"), 2),
    ("open loop mean over 40 (px)", ("open_loop_px_error",), 2),
    ("filtered reconstruction (px)", ("recon_px_error",), 2),
    ("dot hidden: belief error (px)", ("occluded_px_error",), 2),
    ("90% region of 32 futures: coverage", ("coverage90",), 3),
    ("imagination follows actions (corr.)", ("action_response",), 3),
    ("linear probe R^2 of (x, y, vx, vy)", ("probe_r2",), 3),
    ("active latent dimensions", ("active_dims",), 1),
    ("planning success (CEM, 16 episodes)", ("planning", "CEM in the model", "success_rate"), 2),
    ("training steps", ("steps",), 0),
    ("training time (s)", ("train_seconds",), 0),
    ("ms per step", ("ms_per_step",), 1),
)


def lookup(metrics, path):
    """The value at path in a metrics dict, or None if this run did not measure it."""
    for key in path:
        if not isinstance(metrics, dict) or key not in metrics:
            return None
        metrics = metrics[key]
    return float(metrics) if isinstance(metrics, (int, float)) else None


def mean_std(values):
    """(mean, sample standard deviation); the std of one value is 0."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def read_runs(folders):
    """metrics.json of each folder; a clear error for a folder without one."""
    runs = []
    for folder in folders:
        path = os.path.join(folder, "metrics.json")
        try:
            with open(path) as file:
                runs.append(json.load(file))
        except FileNotFoundError:
            raise ValueError(f"{folder!r} holds no metrics.json: is it a finished demo run (not --no-eval)?") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{path!r} is not valid JSON ({error})") from None
    return runs


def summarize(folders):
    """{label: {"mean", "std", "values", "digits"}} over the runs in folders, for every row all measured."""
    runs = read_runs(folders)
    summary = {}
    for label, path, digits in ROWS:
        values = [lookup(run, path) for run in runs]
        if all(v is not None for v in values):
            mean, std = mean_std(values)
            summary[label] = {"mean": mean, "std": std, "values": values, "digits": digits}
    return summary


def table(summary, names):
    """A Markdown table: metric | mean ± std | one column per run."""
    lines = ["| metric | mean ± std | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for label, row in summary.items():
        d = row["digits"]
        lines.append(f"| {label} | {row['mean']:.{d}f} ± {row['std']:.{d}f} | "
                     + " | ".join(f"{v:.{d}f}" for v in row["values"]) + " |")
    return "\n".join(lines)


def declare(parser):
    """The demo's --seeds and --jobs flags."""
    parser.add_argument("--seeds", type=positive_int, metavar="N", help="run seeds --seed .. --seed+N-1, each into "
                        "OUT/seed<k>/, then write the mean ± std of their metrics to OUT/seeds.md and OUT/seeds.json")
    parser.add_argument("--jobs", type=positive_int, default=1, metavar="J",
                        help="with --seeds: run J seeds at a time, one BLAS thread each (default 1; 2 fills 2 cores)")


def check_flags(parser, args):
    """--seeds starts new runs and summarizes their evaluations; --jobs needs --seeds."""
    if args.seeds is not None:
        if args.resume is not None:
            parser.error("--seeds starts new runs; it cannot --resume one (resume each seed<k>/ folder on its own)")
        if args.no_eval:
            parser.error("--seeds summarizes each run's evaluation; drop --no-eval")
    elif args.jobs != 1:
        parser.error("--jobs runs several seeds at a time: it needs --seeds N")


def seed_command(demo, args, seed, config_flags):
    """The command line of one seed of a --seeds run: `python demo.py` with the same flags, its own
    seed and its own folder. config_flags: the flags that set the config, their values in args."""
    words = [sys.executable, os.path.abspath(demo), "--seed", str(seed), "--out", os.path.join(args.out, f"seed{seed}")]
    for flag in [flag for flag in config_flags if flag != "--seed"] + list(RUN_FLAGS):
        if getattr(args, dest(flag)) is not None:
            words += typed(flag, getattr(args, dest(flag)))
    return words + [flag for flag in RUN_SWITCHES if getattr(args, dest(flag))]


def claim_folders(args, results, seeds_results):
    """Claim --out for this run (utils.files.claim_folder: its lock, returned), and with --seeds check
    every seed's folder too, before any seed starts. Raises FolderError naming the folder."""
    saved = [os.path.join(args.out, name) for name in ("checkpoint.npz", "model.npz")
             if os.path.exists(os.path.join(args.out, name))]
    how_to_continue = f"--resume {saved[0]} to continue that run" if saved and not args.seeds else None
    try:
        lock = claim_folder(args.out, seeds_results if args.seeds else results, args.overwrite, args.resume,
                            how_to_continue)
    except FolderError as error:
        raise FolderError(f"--out {args.out!r} {error}") from None
    if args.seeds:
        try:
            check_folders(args, results)
        except FolderError:
            if lock is not None:
                lock.close()
            raise
    return lock


def check_folders(args, results):
    """Claim and release each seed's folder (utils.files.claim_folder), so a seed folder that is a
    file, read-only, in use, or holds another run's results stops the --seeds run before any seed
    starts. Raises FolderError naming the folder."""
    for seed in range(args.seed, args.seed + args.seeds):
        folder = os.path.join(args.out, f"seed{seed}")
        try:
            lock = claim_folder(folder, results, args.overwrite)
        except FolderError as error:
            raise FolderError(f"--out {args.out!r}: the folder of seed {seed}, {folder!r}, {error}") from None
        if lock is not None:
            lock.close()


def stop_seeds(running, patience=60.0):
    """Stop the seeds still running, as Ctrl-C would: SIGINT, so each saves its checkpoint and says how
    to resume in its log; one that has not ended after `patience` seconds is killed. They run in
    their own session (a Ctrl-C in the terminal reaches only this process), so they are ours to stop."""
    for process, log, _ in running.values():
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.perf_counter() + patience
    for process, log, _ in running.values():
        try:
            process.wait(timeout=max(0.0, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def write_summary(args, folders, stopped=False):
    """seeds.md and seeds.json for the seeds in `folders` (those that finished); returns the table."""
    summary = summarize(folders)
    text = table(summary, [os.path.basename(f) for f in folders])
    write_text_or_keep(os.path.join(args.out, "seeds.md"), text + "\n")
    record = {"folders": folders, "rows": summary, **({"stopped_early": True} if stopped else {}),
              "provenance": args.provenance}
    write_text_or_keep(os.path.join(args.out, "seeds.json"), json.dumps(record, indent=1))
    return text


def run_seeds(demo, args, received, config_flags):
    """Run the demo once per seed (J at a time), then the mean ± std table of their metrics.
    received: the stop signals seen so far (utils.files.stop_signals). Returns the exit code.

    However this process ends short of the table (Ctrl-C, SIGTERM, any error here), it stops the
    seeds still running, writes the table of the seeds that finished, and says so."""
    order = list(range(args.seed, args.seed + args.seeds))
    folders = {seed: os.path.join(args.out, f"seed{seed}") for seed in order}
    env = dict(os.environ)
    if args.jobs > 1:
        env["OPENBLAS_NUM_THREADS"] = "1"      # J processes with 2 BLAS threads each thrash 2 cores
    print(f"{args.seeds} seeds ({', '.join(map(str, order))}), {args.jobs} at a time; each run's output goes "
          f"to its folder's log.txt", flush=True)
    start, running, finished, failed, waiting = time.perf_counter(), {}, [], [], list(order)
    last_print = start
    try:
        while waiting or running:
            while waiting and len(running) < args.jobs:
                seed = waiting.pop(0)
                os.makedirs(folders[seed], exist_ok=True)
                log = open(os.path.join(folders[seed], "log.txt"), "w")
                running[seed] = (subprocess.Popen(seed_command(demo, args, seed, config_flags), stdout=log,
                                                  stderr=subprocess.STDOUT, env=env, start_new_session=True),
                                 log, folders[seed])
            time.sleep(1.0)
            for seed, (process, log, folder) in list(running.items()):
                if process.poll() is not None:
                    log.close()
                    del running[seed]
                    (failed if process.returncode else finished).append(seed)
                    done = args.seeds - len(waiting) - len(running)
                    print(f"seed {seed}: {'finished' if not process.returncode else f'failed (exit {process.returncode})'}"
                          f" after {time.perf_counter() - start:.0f} s; {done}/{args.seeds} done; "
                          f"see {os.path.join(folder, 'log.txt')}", flush=True)
            if running and time.perf_counter() - last_print >= 30:
                last_print = time.perf_counter()
                print(" | ".join(f"seed {seed}: {last_progress(folder)}" for seed, (_, _, folder) in running.items()),
                      flush=True)
        if not finished:
            tell("error: every seed failed; see the log.txt in each seed folder")
            return 1
        text = write_summary(args, [folders[seed] for seed in order if seed in finished])
    except Exception as error:                # KeyboardInterrupt (every stop signal) is handled below
        return stopped_early(args, running, finished, folders, f"error: {error}", 1)
    except KeyboardInterrupt:
        return stopped_early(args, running, finished, folders, stopped_by(received), signal_exit_code(received))
    print(text)
    print(f"wrote {os.path.join(args.out, 'seeds.md')} and seeds.json" + (f"; failed seeds: {failed}" if failed else ""))
    return 1 if failed else 0


def stopped_early(args, running, finished, folders, reason, code):
    """The end of a --seeds run cut short: stop the running seeds, keep the table of the finished ones, say so."""
    stopping = sorted(running)
    stop_seeds(running)
    said = f"\n{reason}: "
    if stopping:
        said += f"stopped seeds {stopping}, each as Ctrl-C does: it saved what it had (see its folder's log.txt); "
    done = [folders[seed] for seed in sorted(finished)]
    try:
        if not done:
            raise ValueError("no seed had finished")
        write_summary(args, done, stopped=True)
        said += f"wrote the table of the {len(done)} finished seed(s) to {os.path.join(args.out, 'seeds.md')}"
    except (OSError, ValueError) as error:
        said += f"no table written ({error})"
    tell(said)
    return code


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


def main(argv=None):
    parser = argparse.ArgumentParser(description="Mean ± std of the metrics of several demo runs (one folder per seed).")
    parser.add_argument("folders", nargs="+", help="run folders, each holding the metrics.json a demo wrote")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the summary as JSON here")
    args = parser.parse_args(argv)
    try:
        summary = summarize(args.folders)
    except ValueError as error:
        parser.error(str(error))
    print(table(summary, [os.path.basename(os.path.normpath(f)) for f in args.folders]))
    if args.json:
        write_text(args.json, json.dumps({"folders": args.folders, "rows": summary}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
