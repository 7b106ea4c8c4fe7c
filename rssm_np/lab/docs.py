"""Every number in the docs comes from a results file a command wrote; this keeps the two in step.

    python -m rssm_np.lab.docs record plan runs/plan/plan.json   # keep a command's results in docs/results/
    python -m rssm_np.lab.docs                                    # regenerate every table in README.md, docs/*.md
    python -m rssm_np.lab.docs --check                            # exit 1, naming the table, if one disagrees
    python -m rssm_np.lab.docs --figures runs/demo runs/compare   # the tables, and the figures the docs show

A results file, docs/results/<name>.json, is {"provenance": {...}, "results": {...}}: the JSON a
measuring command wrote, and where it was measured (results.provenance). A table lives in
README.md or a page of docs/ between two marker lines,

    <!-- table: NAME -->
    (generated: the table, a blank line, and one line saying where its numbers were measured)
    <!-- /table -->

and NAME is a key of TABLES: the function that writes the table and the results file(s) it reads.
A table edited by hand, a marker naming no table, or a missing results file fails --check, and
tests/test_docs.py runs the check on the committed docs.
"""

import argparse
import json
import os
import re
import shutil
import sys
from collections import namedtuple

from . import compare, frames, seeds
from .planning import LAST_STEPS
from .results import ROOT, provenance
from ..utils.files import replace_atomically, write_text

RESULTS = os.path.join("docs", "results")
START = re.compile(r"<!-- table: (\S*) -->")
END = "<!-- /table -->"
NAME = re.compile(r"[a-z0-9_]+")
REGENERATE = "python -m rssm_np.lab.docs"


# --- the tables: results (the JSON a command wrote) -> Markdown --------------------------------

def demo_seeds_table(summary):
    """The demo's headline metrics over seeds: the seeds.json of `python demo.py --seeds N`, drawn by
    the same seeds.table that prints it (metric | mean ± std | one column per seed)."""
    names = [os.path.basename(os.path.normpath(folder)) for folder in summary["folders"]]
    return seeds.table(summary["rows"], names)


OPEN_LOOP = (("RSSM, imagined", ""), ("copy the last frame", "baseline_copy_last_"),
             ("constant velocity, no walls", "baseline_const_velocity_"),
             ("constant velocity, reflecting walls (an oracle of this world)", "baseline_reflect_"))


def demo_table(metrics):
    """Open-loop error of one demo run (its metrics.json) and of the three baselines, per horizon."""
    horizons = sorted(metrics["open_loop_px_error_at"], key=int)
    lines = ["| open-loop error (px) | " + " | ".join(f"h={h}" for h in horizons) + f" | mean over h=1..{horizons[-1]} |",
             "| --- |" + " --- |" * (len(horizons) + 1)]
    for label, prefix in OPEN_LOOP:
        at = metrics[prefix + "open_loop_px_error_at"]
        lines.append(f"| {label} | " + " | ".join(f"{at[h]:.2f}" for h in horizons)
                     + f" | {metrics[prefix + 'open_loop_px_error']:.2f} |")
    return "\n".join(lines)


# (label, path into metrics.json, format); a row the run did not measure is left out.
BELIEF_ROWS = (
    ("filtered reconstruction: error of the decoded dot (px)", ("recon_px_error",), ".2f"),
    ("dot hidden: error of the decoded belief (px)", ("occluded_px_error",), ".2f"),
    ("dot hidden: last seen position + velocity, bouncing (baseline, px)",
     ("baseline_occluded_const_velocity_px_error",), ".2f"),
    ("posterior std, hidden frames / visible frames", ("occluded_std_ratio",), ".2f"),
    ("coverage of the 90% region of 32 sampled futures", ("coverage90",), ".3f"),
    ("imagination follows actions: correlation of imagined and true differences", ("action_response",), ".3f"),
    ("open loop with the data's random pushes given to the model (px, mean over the horizon)",
     ("controlled_open_loop_px_error",), ".2f"),
    ("linear probe R^2 of (x, y, vx, vy) from [h, z]", ("probe_r2",), ".3f"),
    ("linear probe R^2 from h alone", ("probe_r2_deter_only",), ".3f"),
    ("linear probe R^2 from z alone", ("probe_r2_stoch_only",), ".3f"),
    ("active latent dimensions (mean KL > 0.1 nats)", ("active_dims",), ".0f"),
    ("planning after training: success of CEM in the model", ("planning", "CEM in the model", "success_rate"), ".0%"),
    ("planning after training: final distance to the goal (px)", ("planning", "CEM in the model", "final_px"), ".2f"),
    ("training steps", ("steps",), ".0f"),
    ("training time (s)", ("train_seconds",), ".0f"),
    ("training: median ms per step", ("ms_per_step",), ".1f"),
)


def demo_beliefs_table(metrics):
    """What one demo run (its metrics.json) measured beyond the open loop: beliefs, probe, planning, time."""
    lines = ["| measurement | value |", "| --- | --- |"]
    for label, path, style in BELIEF_ROWS:
        value = seeds.lookup(metrics, path)
        if value is not None:
            lines.append(f"| {label} | {value:{style}} |")
    return "\n".join(lines)


def bench_row_label(result):
    label = "fused recurrent core" if result["fused"] else "plain autograd loop (`--plain`)"
    label += f", {result['dtype']}"
    if result.get("kl_balance"):
        label += f", KL balancing {result['kl_balance']:g}"
    if result.get("overshooting", 1) > 1:
        label += f", overshooting {result['overshooting']}"
    if result.get("obs_overshooting", 1) > 1:
        label += (f", observation overshooting {result['obs_overshooting']}, dreams every "
                  f"{result.get('obs_overshooting_every', 1)}")
    return label


def bench_table(bench):
    """The train step's time: the JSON line(s) `python -m rssm_np.lab.bench` prints (one, or a list of
    several, one per setting), or the `--scaling` line (ms/step over sequence length and batch)."""
    if isinstance(bench, dict) and "scaling" in bench:
        rows = bench["scaling"]
        batches = sorted({r["batch"] for r in rows})
        lines = ["| ms/step (peak MB) | " + " | ".join(f"B={b}" for b in batches) + " |",
                 "| --- |" + " --- |" * len(batches)]
        for seq_len in sorted({r["seq_len"] for r in rows}):
            cells = {r["batch"]: f"{r['ms_per_step']:.1f} ({r['peak_rss_mb']:.0f})" for r in rows if r["seq_len"] == seq_len}
            lines.append(f"| T={seq_len} | " + " | ".join(cells.get(b, "") for b in batches) + " |")
        return "\n".join(lines)
    lines = ["| train step (forward + backward + clip + Adam) | batch x sequence | median ms | min ms | "
             "traced primitives per forward | GFLOP per step | GFLOP/s | peak MB | BLAS threads |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in bench if isinstance(bench, list) else [bench]:
        lines.append(f"| {bench_row_label(r)} | {r['batch']} x {r['seq_len']} | {r['ms_per_step']:.1f} | "
                     f"{r['ms_min']:.1f} | {r['traced_primitives']} | {r['gflop_per_step']:.2f} | "
                     f"{r['achieved_gflops']:.1f} | {r['peak_rss_mb']:.0f} | {r['blas_threads']} |")
    return "\n".join(lines)


PLANNERS = ("CEM in the model", "CEM + true physics", "random actions", "zero actions")


def profile_table(profiles):
    """Where each millisecond of the step goes, per recipe: the JSON lines of `bench --profile`."""
    profiles = profiles if isinstance(profiles, list) else [profiles]
    head = " | ".join(f"{p['recipe']}, ms per step" for p in profiles)
    lines = [f"| part of the train step (batch x sequence {profiles[0]['batch']} x {profiles[0]['seq_len']}) | {head} |",
             "| --- |" + " --- |" * len(profiles)]
    for i, part in enumerate(profiles[0]["parts"]):
        lines.append(f"| {part['part']} | " + " | ".join(f"{p['parts'][i]['ms']:.1f}" for p in profiles) + " |")
    lines.append("| all, under the profiler | " + " | ".join(f"{p['ms_per_step_profiled']:.1f}" for p in profiles) + " |")
    return "\n".join(lines)


def products_table(lines):
    """The step against its matrix products timed alone, per recipe: the JSON lines of `bench --products`."""
    lines = lines if isinstance(lines, list) else [lines]
    parts = list(dict.fromkeys(part["part"] for line in lines for part in line["parts"]))
    head = " | ".join(f"{line['recipe']}: products, GFLOP, ms alone" for line in lines)
    rows = [f"| matrix products of the train step (batch x sequence {lines[0]['batch']} x {lines[0]['seq_len']}) "
            f"| {head} |", "| --- |" + " --- |" * len(lines)]
    for name in parts:
        cells = []
        for line in lines:
            part = next((p for p in line["parts"] if p["part"] == name), None)
            cells.append("-" if part is None else f"{part['products']}, {part['gflop']:.2f}, {part['ms']:.1f}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    rows.append("| all products, each timed alone (GFLOP/s) | " + " | ".join(
        f"{line['products_gflop']:.2f} GFLOP, **{line['products_ms']:.1f} ms** ({line['products_gflops']:.0f})"
        for line in lines) + " |")
    rows.append("| the whole train step, timed in the same run (x the products) | " + " | ".join(
        f"**{line['step_ms']:.1f} ms** ({line['step_over_products']:.1f}x)" for line in lines) + " |")
    return "\n".join(rows)


def torch_table(result):
    """rssm_np's train step beside PyTorch's on the same model: the JSON line tools/torch_compare.py prints."""
    ratios = result.get("round_ratios")
    spread = f" ({min(ratios):.2f} - {max(ratios):.2f})" if ratios else ""
    return ("| train step, same model | batch x sequence | dtype | threads | rssm_np median ms | PyTorch median ms "
            "| rssm_np / PyTorch, median of rounds (their range) | rounds | steps per side |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
            f"| rssm_np (fused) vs PyTorch {result['torch']} | {result['batch']} x {result['seq_len']} | "
            f"{result['dtype']} | {result['threads']} | {result['rssm_np_ms']:.1f} | {result['torch_ms']:.1f} | "
            f"{result['ratio_rssm_np_over_torch']:.2f}{spread} | {result.get('rounds', '-')} | "
            f"{result['steps_timed_per_side']} |")


def plan_table(plan):
    """The four planners on the same episodes: the plan.json `python -m rssm_np.lab.plan` writes."""
    s = plan["settings"]
    head = (f"planner ({plan['episodes']} episodes of {plan['steps']} steps, seed {plan['seed']}; CEM: horizon "
            f"{s['horizon']}, {s['candidates']} candidates, {s['iterations']} rounds, top {s['top_k']}; "
            f"read-out: {plan['readout']})")
    lines = [f"| {head} | success (final <= {plan['success_px']:g} px) | mean final distance (px) | "
             f"mean distance, last {LAST_STEPS} steps (px) | ms per planned step |",
             "| --- | --- | --- | --- | --- |"]
    for name in PLANNERS:
        r = plan["results"][name]
        lines.append(f"| {name} | {r['success_rate']:.0%} | {r['final_px']:.2f} | {r['last10_px']:.2f} | "
                     f"{r['ms_per_step']:.2f} |")
    return "\n".join(lines)


def compare_table(summary):
    """The RNN, SSM and RSSM on two worlds: the compare.json `python -m rssm_np.lab.compare` writes,
    drawn by the same compare.table that writes its compare.md, and what the run cost."""
    text = compare.table(summary["results"]).rstrip("\n")
    idle = [f"{run} {timing['kl_below_free_nats']:.0%}" for run, timing in summary.get("timing", {}).items()
            if timing.get("kl_below_free_nats")]                      # said where the KL term idled
    return (text + f"\n\nEach model trained {summary['steps']} steps with seed {summary['seed']} "
            f"(recipe: {summary.get('recipe', 'old')}{recipe_settings(summary)}); measured on {summary['sequences']} held-out sequences with "
            f"{summary['samples']} sampled futures each. The whole command took "
            f"{summary['wall_seconds'] / 60:.0f} minutes."
            + (f" Steps whose mean KL sat below the free nats (no gradient into the KL term): {', '.join(idle)}."
               if idle else ""))


def schedule_table(*summaries):
    """The bouncing world's dreams by the schedule of observation overshooting: each model's mean path
    at h=10 and over 40 steps, per seed, for each k (dreams start every k-th frame) its run trained
    with. compare.json records k under settings; the files from before that trained with k = 1."""
    rows = {}
    for summary in summaries:
        for model, result in summary["results"].get("bounce", {}).items():
            every = summary.get("settings", {}).get(model, {}).get("obs_overshooting_every", 1)
            timing = summary.get("timing", {}).get(f"bounce/{model}", {})
            rows.setdefault((model, every), {}).setdefault(
                summary["seed"], (result["mean_h10"], result["mean_over_40"], timing.get("ms_per_step")))
    seeds = sorted({seed for by_seed in rows.values() for seed in by_seed})

    def cells(by_seed, i, form):
        return " / ".join(form.format(by_seed[seed][i]) if seed in by_seed and by_seed[seed][i] is not None
                          else "-" for seed in seeds)

    shown = "/".join(str(seed) for seed in seeds)
    lines = [f"| bouncing world: model | dreams start every | mean path h=10 (px), seed {shown} | "
             f"mean path over 40 (px), seed {shown} | ms per step, seed {shown} |", "| --- | --- | --- | --- | --- |"]
    for model, every in sorted(rows, key=lambda key: (compare.MODELS.index(key[0]), key[1])):
        by_seed = rows[(model, every)]
        lines.append(f"| {model} | {every} | {cells(by_seed, 0, '{:.2f}')} | {cells(by_seed, 1, '{:.2f}')} | "
                     f"{cells(by_seed, 2, '{:.0f}')} |")
    return "\n".join(lines)


def recipe_settings(summary):
    """', that is: rnn free_nats 0.0, ...' from compare.json's settings (files before it have none)."""
    settings = summary.get("settings")
    if not settings:
        return ""
    return ", that is: " + "; ".join(f"{model} " + ", ".join(f"{key} {value}" for key, value in fields.items())
                                     for model, fields in settings.items())


Table = namedtuple("Table", "make files")   # make(results of each file, in order) -> Markdown
TABLES = {
    "demo_seeds": Table(demo_seeds_table, ("demo_seeds",)),
    "demo_seeds_without_overshooting": Table(demo_seeds_table, ("demo_seeds_without_overshooting",)),
    "demo": Table(demo_table, ("demo",)),
    "demo_beliefs": Table(demo_beliefs_table, ("demo",)),
    "bench": Table(bench_table, ("bench",)),
    "bench_scaling": Table(bench_table, ("bench_scaling",)),
    "torch_compare": Table(torch_table, ("torch_compare",)),
    "bench_profile": Table(profile_table, ("bench_profile",)),
    "bench_products": Table(products_table, ("bench_products",)),
    "plan": Table(plan_table, ("plan",)),
    "compare": Table(compare_table, ("compare",)),
    "compare_seed1": Table(compare_table, ("compare_seed1",)),
    "compare_every1": Table(compare_table, ("compare_every1",)),
    "compare_schedule": Table(schedule_table, ("compare", "compare_seed1", "compare_every4", "compare_ssm_every4_seed1",
                                               "compare_every1", "compare_every1_seed1")),
    "compare_old": Table(compare_table, ("compare_old",)),
    "compare_old_free0": Table(compare_table, ("compare_old_free0",)),
    "pendulum": Table(frames.table, ("pendulum",)),
}


# --- results files ---------------------------------------------------------------------------

def results_path(root, name):
    return os.path.join(root, RESULTS, name + ".json")


def read_results(root, name):
    """(provenance, results) of docs/results/<name>.json; ValueError naming what is wrong."""
    path = results_path(root, name)
    shown = os.path.join(RESULTS, name + ".json")
    if not os.path.exists(path):
        raise ValueError(f"{shown} is missing: record it with `{REGENERATE} record {name} PATH`")
    try:
        with open(path, encoding="utf-8") as file:
            record = json.load(file)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{shown} cannot be read ({error})") from None
    if not isinstance(record, dict) or set(record) != {"provenance", "results"}:
        raise ValueError(f"{shown} is not a results file: expected {{\"provenance\": ..., \"results\": ...}}")
    return record["provenance"], record["results"]


def where_measured(page, root, named):
    """One line under a table: the command, commit, cores and versions that measured it, and its file."""
    parts = []
    for name, p in named:
        commit = p.get("commit")
        code = f"commit `{commit[:7]}`" if commit else "an unknown commit"
        if commit and p.get("dirty"):
            code += " with uncommitted changes"
        cores = p.get("cores")
        link = os.path.relpath(results_path(root, name), os.path.dirname(os.path.join(root, page))).replace(os.sep, "/")
        text = (f"`{p.get('command', '?')}` at {code}, {cores} core{'' if cores == 1 else 's'}, "
                f"NumPy {p.get('numpy', '?')}, Python {p.get('python', '?')}, {p.get('date', '?')}")
        if p.get("read_at_record"):
            text += " (commit and machine read when the file was recorded)"
        parts.append(f"{text} ([{name}.json]({link}))")
    return "*Measured with " + "; ".join(parts) + ".*"


def generate(root, page, name):
    """The lines between the markers of table `name` on `page`; ValueError if they cannot be made."""
    if name not in TABLES:
        raise ValueError(f"no table is called {name!r} (TABLES in rssm_np/lab/docs.py has {', '.join(TABLES)})")
    table = TABLES[name]
    loaded = [read_results(root, file) for file in table.files]
    try:
        text = table.make(*[results for _, results in loaded])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"cannot be made from {', '.join(table.files)}.json "
                         f"({type(error).__name__}: {error}): is it the right command's output?") from None
    named = [(file, p) for file, (p, _) in zip(table.files, loaded)]
    return text.split("\n") + ["", where_measured(page, root, named)]


# --- pages -----------------------------------------------------------------------------------

def pages(root):
    """README.md and every docs/*.md, as paths relative to root."""
    found = ["README.md"] if os.path.exists(os.path.join(root, "README.md")) else []
    folder = os.path.join(root, "docs")
    if os.path.isdir(folder):
        found += [os.path.join("docs", name) for name in sorted(os.listdir(folder)) if name.endswith(".md")]
    return found


def marked_tables(lines):
    """[(name, start line, end line)] of the marker pairs in lines, and the problems of broken ones.
    Markers inside a fenced code block are text about markers, not markers."""
    tables, problems, open_at, fenced = [], [], None, False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if fenced:
            continue
        start = START.fullmatch(line.strip())
        if start:
            if open_at is not None:
                problems.append(f"line {i + 1}: a table starts inside table {open_at[0]!r} (line {open_at[1] + 1})")
            open_at = (start.group(1), i)
        elif line.strip() == END:
            if open_at is None:
                problems.append(f"line {i + 1}: {END} closes no table")
            else:
                tables.append((open_at[0], open_at[1], i))
                open_at = None
    if open_at is not None:
        problems.append(f"line {open_at[1] + 1}: table {open_at[0]!r} is never closed with {END}")
    return tables, problems


def examine(root):
    """For every page: (page, its text, its text with every table that can be made regenerated,
    problems, names of the tables whose text differs from what their results make)."""
    reports = []
    for page in pages(root):
        with open(os.path.join(root, page), encoding="utf-8") as file:
            text = file.read()
        lines = text.split("\n")
        tables, broken = marked_tables(lines)
        problems = [f"{page}: {problem}" for problem in broken]
        new, stale, offset = list(lines), [], 0
        for name, start, end in tables:
            try:
                body = generate(root, page, name)
            except ValueError as error:
                problems.append(f"{page}: table {name!r}: {error}")
                continue
            if lines[start + 1:end] != body:
                stale.append(name)
                new[start + 1 + offset:end + offset] = body
                offset += len(body) - (end - start - 1)
        reports.append((page, text, "\n".join(new), problems, stale))
    return reports


def check(root=ROOT):
    """Every way the docs disagree with docs/results, one sentence each ([] when they agree)."""
    problems = []
    for page, _, _, page_problems, stale in examine(root):
        problems += page_problems
        problems += [f"{page}: table {name!r} differs from what {', '.join(TABLES[name].files)}.json makes "
                     f"(edited by hand, or the results changed): run `{REGENERATE}`" for name in stale]
    return problems


def regenerate(root=ROOT):
    """Rewrite every table that can be made; returns (tables rewritten as "page: name", problems)."""
    rewritten, problems = [], []
    for page, text, new, page_problems, stale in examine(root):
        problems += page_problems
        if new != text:
            write_text(os.path.join(root, page), new)
            rewritten += [f"{page}: {name}" for name in stale]
    return rewritten, problems


# --- record: a command's results into docs/results/ ------------------------------------------

def read_command_output(text, where):
    """The JSON a command wrote: one JSON document, or the JSON lines among its printed output
    (one line: that object; several: their list, e.g. one bench line per setting)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    found = []
    for line in text.splitlines():
        if line.strip().startswith("{"):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    if not found:
        raise ValueError(f"{where} holds no JSON")
    return found[0] if len(found) == 1 else found


def record(root, name, path, command=None):
    """Copy the results at `path` ('-': stdin) to docs/results/<name>.json with their provenance:
    the file's own "provenance" key, else `command` and this machine. Returns (target, notes)."""
    if not NAME.fullmatch(name):
        raise ValueError(f"NAME must be lower-case letters, digits and _, got {name!r}")
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as file:
                text = file.read()
    except OSError as error:
        raise ValueError(f"cannot read {path!r} ({error.strerror or error})") from None
    results = read_command_output(text, "stdin" if path == "-" else repr(path))
    items = results if isinstance(results, list) else [results]
    own = [item.pop("provenance") for item in items if isinstance(item, dict) and "provenance" in item]
    notes = []
    if own:
        measured = dict(own[0])
        if len(own) > 1:
            measured["command"] = "; ".join(dict.fromkeys(p.get("command", "?") for p in own))
        if command is not None and command != measured.get("command"):
            notes.append(f"kept the file's own provenance (command {measured.get('command')!r}), not --command")
    elif command is None:
        raise ValueError(f"{path!r} says nothing of where it was measured (no \"provenance\" key): pass "
                         f"--command \"the command that wrote it\" to take the commit and machine from here")
    else:
        measured = dict(provenance([]), command=command, read_at_record=True)
        notes.append(f"{path!r} has no provenance: took the commit, cores and versions of this machine now, "
                     f"with the command {command!r}; record on the machine that measured it")
    users = [table for table, spec in TABLES.items() if name in spec.files]
    if not users:
        notes.append(f"no table reads {name}.json yet (TABLES in rssm_np/lab/docs.py)")
    target = results_path(root, name)
    write_text(target, json.dumps({"provenance": measured, "results": results}, indent=1) + "\n")
    return target, notes


# --- figures: the pictures the docs show, copied small from the runs that drew them ----------

MAX_WIDTH = 900                      # px: a PNG wider than this is shrunk
FIGURES_LIMIT = 2 * 1024 * 1024      # bytes: all of docs/'s pictures together
KINDS = {"demo": "metrics.json", "compare": "compare.json", "plan": "plan.json", "pendulum": "pendulum.json"}   # a run folder, by its results
# (kind of run, file in its folder, name under docs/)
FIGURES = (
    ("demo", "imagination.gif", "imagination.gif"),
    ("demo", "open_loop.png", "open_loop.png"),
    ("demo", "error_by_horizon.png", "error_by_horizon.png"),
    ("demo", "belief_occlusion.png", "belief_occlusion.png"),
    ("demo", "future_fan.png", "future_fan.png"),
    ("demo", "two_actions.png", "two_actions.png"),
    ("demo", "kl_per_dim.png", "kl_per_dim.png"),
    ("compare", "compare_lesson.png", "compare_lesson.png"),
    ("compare", "compare_when_necessary.png", "compare_when_necessary.png"),
    ("compare", "compare_error_by_horizon.png", "compare_error_by_horizon.png"),
    ("pendulum", "open_loop.png", "pendulum_open_loop.png"),
    ("plan", "plan_episodes.png", "plan_episodes.png"),
    ("plan", "plan.gif", "plan.gif"),
)


def shrink_png(source, target):
    """At most MAX_WIDTH wide, 128 colours: a figure of a few hundred kB becomes a few tens."""
    from PIL import Image            # Pillow comes with matplotlib
    with Image.open(source) as image:
        if image.width > MAX_WIDTH:
            image = image.resize((MAX_WIDTH, round(image.height * MAX_WIDTH / image.width)), Image.LANCZOS)
        image.convert("P", palette=Image.ADAPTIVE, colors=128).save(target, format="PNG", optimize=True)


def figures_size(root):
    folder = os.path.join(root, "docs")
    return sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder)
               if name.lower().endswith((".png", ".gif")))


def copy_figures(root, folders):
    """Copy the docs' figures from run folders (each known by the results it holds: metrics.json,
    compare.json, plan.json) into docs/. Returns (written paths, kinds not given); ValueError
    before anything is written if a folder or a figure is missing."""
    kinds = {}
    for folder in folders:
        if not os.path.isdir(folder):
            raise ValueError(f"{folder!r} is not a folder")
        found = [kind for kind, marker in KINDS.items() if os.path.exists(os.path.join(folder, marker))]
        if not found:
            raise ValueError(f"{folder!r} holds none of {', '.join(KINDS.values())}: pass the folder of one "
                             f"finished run (for `python demo.py --seeds N`, one seed's folder, e.g. runs/demo/seed0)")
        for kind in found:
            if kind in kinds:
                raise ValueError(f"both {kinds[kind]!r} and {folder!r} hold a {kind} run ({KINDS[kind]}): pass one")
            kinds[kind] = folder
    chosen = [(os.path.join(kinds[kind], name), os.path.join(root, "docs", target))
              for kind, name, target in FIGURES if kind in kinds]
    missing = [source for source, _ in chosen if not os.path.exists(source)]
    if missing:
        raise ValueError(f"{', '.join(missing)} missing: rerun the command that draws it")
    for source, target in chosen:
        if source.endswith(".png"):
            replace_atomically(target, lambda temporary, source=source: shrink_png(source, temporary))
        else:
            replace_atomically(target, lambda temporary, source=source: shutil.copyfile(source, temporary))
    return [target for _, target in chosen], [kind for kind in KINDS if kind not in kinds]


# --- the command -----------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=REGENERATE, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage=f"{REGENERATE} [--check] [--figures RUNS_DIR ...] [--root ROOT]\n"
              f"       {REGENERATE} record NAME PATH [--command \"the command that wrote PATH\"]",
        description="Regenerate every table in README.md and docs/*.md from docs/results/*.json (the default),\n"
                    "check that they agree (--check), or record a command's results (record).",
        epilog="tables (name: the results files it reads):\n" +
               "".join(f"  {name}: docs/results/{'.json, '.join(t.files)}.json\n" for name, t in TABLES.items()) +
               "\nexamples:\n"
               f"  {REGENERATE} record demo_seeds runs/demo/seeds.json --command \"python demo.py --seeds 3\"\n"
               f"  python -m rssm_np.lab.bench | {REGENERATE} record bench -\n"
               f"  {REGENERATE} --figures runs/demo/seed0 runs/compare runs/plan")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 and name the table if any differs from its results, or if a "
                             "marker names a missing table or results file")
    parser.add_argument("--figures", nargs="+", metavar="RUNS_DIR",
                        help="also copy the figures the docs show, shrunk, from these run folders into docs/ "
                             f"(a demo run, a compare run, a plan run; at most {FIGURES_LIMIT // 2 ** 20} MB in all)")
    parser.add_argument("--root", default=ROOT,
                        help="the repository whose README.md, docs/ and docs/results/ to use (default: the one "
                             "holding this package)")
    actions = parser.add_subparsers(dest="action", title="subcommand", metavar="record")
    keep = actions.add_parser(
        "record", help="copy a command's results JSON into docs/results/NAME.json",
        description="Copy the JSON a measuring command wrote into docs/results/NAME.json, atomically, with where "
                    "it was measured: the file's own \"provenance\" key, else --command and this machine.")
    keep.add_argument("name", help=f"the results file's name, e.g. {', '.join(dict.fromkeys(f for t in TABLES.values() for f in t.files))}")
    keep.add_argument("path", help="the JSON the command wrote (e.g. runs/demo/metrics.json), or - for stdin "
                                   "(the JSON lines among a command's printed output are found)")
    keep.add_argument("--command", default=None,
                      help="the command that wrote PATH, as typed (needed when PATH holds no provenance)")
    args = parser.parse_args(argv)
    if args.check and args.figures:
        parser.error("--check writes nothing: it cannot copy --figures; run them one after the other")
    if args.action == "record" and (args.check or args.figures):
        parser.error("record copies one results file; run --check or --figures on their own")
    if not os.path.isdir(args.root):
        parser.error(f"--root {args.root!r} is not a folder")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.action == "record":
        try:
            target, notes = record(args.root, args.name, args.path, args.command)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        for note in notes:
            print(f"note: {note}")
        print(f"wrote {target}; now regenerate the tables: {REGENERATE}")
        return 0
    if args.check:
        problems = check(args.root)
        total = figures_size(args.root) if os.path.isdir(os.path.join(args.root, "docs")) else 0
        if total > FIGURES_LIMIT:
            problems.append(f"docs/'s figures take {total / 1024:.0f} kB, over the {FIGURES_LIMIT // 1024} kB limit")
        for problem in problems:
            print(problem, file=sys.stderr)
        if not problems:
            print("the docs agree with docs/results")
        return 1 if problems else 0
    problems = []
    if args.figures:
        try:
            written, absent = copy_figures(args.root, args.figures)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        for path in written:
            print(f"{os.path.relpath(path, args.root):<40} | {os.path.getsize(path) / 1024:6.0f} kB")
        for kind in absent:
            print(f"note: no {kind} run given ({KINDS[kind]}): its figures in docs/ are left as they are")
        total = figures_size(args.root)
        print(f"{'all figures in docs/':<40} | {total / 1024:6.0f} kB")
        if total > FIGURES_LIMIT:
            problems.append(f"docs/'s figures take {total / 1024:.0f} kB, over the {FIGURES_LIMIT // 1024} kB limit")
    rewritten, table_problems = regenerate(args.root)
    for line in rewritten:
        print(f"regenerated {line}")
    if not rewritten:
        print("every table that can be made is up to date")
    for problem in problems + table_problems:
        print(problem, file=sys.stderr)
    return 1 if problems or table_problems else 0


if __name__ == "__main__":
    sys.exit(main())
