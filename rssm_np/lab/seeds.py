"""Numbers that hold across seeds: mean and standard deviation of several demo runs' metrics.

    python demo.py --seeds 3                       # trains seeds 0, 1, 2 into runs/demo/seed<k>/, then this table
    python -m rssm_np.lab.seeds runs/a runs/b runs/c   # the table for runs already made (each holds metrics.json)

One seed's number can be luck: a difference between two settings means something only when it
is larger than the spread between seeds of one setting. The standard deviation is the sample
one (n - 1), of the per-seed values; with 3 seeds it is itself rough, so read it as a scale.
"""

import argparse
import json
import math
import os
import sys

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
        from ..utils.files import write_text
        write_text(args.json, json.dumps({"folders": args.folders, "rows": summary}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
