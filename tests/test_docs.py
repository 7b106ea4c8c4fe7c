"""Every number in the docs comes from docs/results, through a generated table that a hand edit breaks.

The committed README.md and docs/*.md must agree with docs/results/*.json (the same check as
`python -m rssm_np.lab.docs --check`); record -> regenerate -> check must round-trip; a table
edited by hand must fail the check; and prose outside the generated tables quotes no measurement.
"""

import io
import json
import math
import os
import re
import shutil

import pytest

from rssm_np.lab import docs
from rssm_np.lab.results import provenance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROVENANCE = {"command": "python demo.py", "commit": "0123456789abcdef0123456789abcdef01234567", "dirty": False,
              "cores": 2, "numpy": "2.0.0", "python": "3.11.0", "date": "2025-01-01"}


def planners(**overrides):
    return {name: dict({"success_rate": 1.0, "final_px": 0.5, "last10_px": 0.6, "ms_per_step": 10.0}, **overrides)
            for name in docs.PLANNERS}


def fake_metrics():
    """A demo metrics.json with every key the tables read (values made up)."""
    at = {"1": 0.25, "10": 1.25, "20": 2.5, "40": 5.5}
    metrics = {"open_loop_px_error_at": at, "open_loop_px_error": 2.75}
    for prefix in ("baseline_copy_last_", "baseline_const_velocity_", "baseline_reflect_"):
        metrics[prefix + "open_loop_px_error_at"] = {h: 2 * v for h, v in at.items()}
        metrics[prefix + "open_loop_px_error"] = 5.5
    metrics.update(recon_px_error=0.3, occluded_px_error=1.2, baseline_occluded_const_velocity_px_error=2.5,
                   occluded_std_ratio=1.25, coverage90=0.9, action_response=0.94, controlled_open_loop_px_error=4.1,
                   probe_r2=0.9, probe_r2_deter_only=0.89, probe_r2_stoch_only=0.6, active_dims=5,
                   planning=planners(), steps=4500, train_seconds=400.0, ms_per_step=80.0)
    return metrics


def bench_line(**overrides):
    return dict({"ms_per_step": 75.0, "ms_min": 70.0, "ms_max": 90.0, "steps_timed": 20, "peak_rss_mb": 80.0,
                 "gflop_per_step": 2.5, "achieved_gflops": 33.0, "traced_primitives": 114, "kl_balance": 0.0,
                 "overshooting": 1, "batch": 16, "seq_len": 32, "dtype": "float32", "fused": True,
                 "blas_threads": "default"}, **overrides)


def future(h10, over, ratio):
    average = {"lags": [-1, 0, 1], "mean": [1.0, 3.0, 2.0], "std": [0.5, 1.0, 0.5], "events": 40,
               "free_flight": 1.0, "ratio_at_0": 3.0}
    return {"mean_h10": h10, over: 2 * h10, "best_of_32_h11_20": h10 / 2, "coverage90": 0.85,
            "sharpness_h20_mean_path": 0.8, "sharpness_h20_samples": 0.7, "event_spread_ratio": ratio,
            "free_error": h10, "fork_error": 2 * h10, "free_sharpness": 0.8, "fork_sharpness": 0.5,
            "surprise_at_events": average, "spread_at_events": average}


# One made-up results file for every name a table reads: the JSON each command writes.
FAKE = {
    "demo_seeds": {"folders": ["runs/demo/seed0", "runs/demo/seed1"],
                   "rows": {"open loop h=10 (px)": {"mean": 1.25, "std": 0.25, "values": [1.0, 1.5], "digits": 2}}},
    "demo": fake_metrics(),
    "bench": [bench_line(), bench_line(fused=False, ms_per_step=300.0, traced_primitives=2000)],
    "bench_scaling": {"scaling": [bench_line(seq_len=t, batch=b, ms_per_step=t * b / 10) for t in (16, 32)
                                  for b in (8, 16)], "plot": "runs/bench/scaling.png"},
    "plan": {"model": "runs/demo/model.npz", "episodes": 8, "seed": 0, "readout": "centroid",
             "settings": {"horizon": 4, "candidates": 40, "iterations": 3, "top_k": 5}, "steps": 30,
             "success_px": 2.0, "results": planners()},
    "pendulum": {"sequences": 64, "context": 10, "horizon": 40, "samples": 16,
                 "curves": {n: {"mse": [s * 0.01] * 40, "nll": [s * 100.0] * 40}
                            for n, s in (("model", .5), ("copy_last", 1.), ("average_of_context", .75),
                                         ("blank", .8), ("best_of", .25))},
                 "floor": [30.0] * 40, "spread": [0.01] * 40},
    "compare": {"steps": 300, "seed": 0, "free_nats": None, "samples": 32, "context": 10, "sequences": 8,
                "wall_seconds": 600.0, "timing": {},
                "results": {"bounce": {"rnn": future(9.0, "mean_over_40", math.nan),
                                       "rssm": future(1.5, "mean_over_40", math.nan)},
                            "random": {"rssm": future(3.5, "mean_over_20", 1.5)}}},
}
FAKE["demo_seeds_without_overshooting"] = FAKE["demo_seeds"]
FAKE["bench_profile"] = [{"ms_per_step_profiled": 50.0, "recipe": recipe, "batch": 16, "seq_len": 32,
                          "parts": [{"part": "Adam", "ms": 5.0}, {"part": "the rest", "ms": 45.0}]}
                         for recipe in ("Config()", "the demo's recipe")]
FAKE["bench_products"] = [{"step_ms": 45.0, "products_ms": 15.0, "step_over_products": 3.0, "products_gflop": 2.48,
                           "products_gflops": 165.0, "recipe": recipe, "batch": 16, "seq_len": 32,
                           "parts": [{"part": "encoder", "ms": 5.0, "gflop": 0.74, "products": 5},
                                     {"part": "decoder", "ms": 10.0, "gflop": 1.74, "products": 9}]}
                          for recipe in ("Config()", "the demo's recipe")]
FAKE["torch_compare"] = {"rssm_np_ms": 45.0, "torch_ms": 60.0, "ratio_rssm_np_over_torch": 0.75, "batch": 16,
                         "round_ratios": [0.7, 0.75, 0.8], "rounds": 3,
                         "seq_len": 32, "dtype": "float32", "threads": 2, "torch": "2.13.0", "steps_timed_per_side": 90}
FAKE.update({name: FAKE["compare"] for name in ("compare_seed1", "compare_old", "compare_old_free0", "compare_every1",
                                                "compare_every1_seed1", "compare_every4", "compare_ssm_every4_seed1")})
FAKE["compare_seed1"] = dict(FAKE["compare"], seed=1, settings={"rnn": {"free_nats": 0.0, "obs_overshooting_every": 4}})


def write_results(root, names=FAKE):
    os.makedirs(os.path.join(root, docs.RESULTS), exist_ok=True)
    for name in names:
        with open(docs.results_path(root, name), "w") as file:
            json.dump({"provenance": PROVENANCE, "results": FAKE[name]}, file)


def write_page(root, page, text):
    os.makedirs(os.path.dirname(os.path.join(root, page)) or root, exist_ok=True)
    with open(os.path.join(root, page), "w", encoding="utf-8") as file:
        file.write(text)


def read_page(root, page):
    with open(os.path.join(root, page), encoding="utf-8") as file:
        return file.read()


def test_the_committed_docs_agree_with_docs_results():
    problems = docs.check(ROOT)
    assert not problems, "the docs disagree with docs/results:\n" + "\n".join(problems)


def test_every_table_is_made_from_its_results_and_a_hand_edit_of_any_is_caught(tmp_path):
    """The committed pages, copied, with made-up results: regenerated they pass the check, and a
    digit changed by hand in any table fails it, naming that page and table."""
    root = str(tmp_path)
    for page in docs.pages(ROOT):
        os.makedirs(os.path.join(root, os.path.dirname(page)), exist_ok=True)
        shutil.copyfile(os.path.join(ROOT, page), os.path.join(root, page))
    write_results(root)
    write_page(root, os.path.join("docs", "all.md"), "".join(f"<!-- table: {name} -->\n<!-- /table -->\n\n"
                                                             for name in docs.TABLES))
    rewritten, problems = docs.regenerate(root)
    assert problems == [] and len(rewritten) >= len(docs.TABLES)
    assert docs.check(root) == []
    assert "| open loop h=10 (px) | 1.25 ± 0.25 | 1.00 | 1.50 |" in read_page(root, "README.md")
    assert "*Measured with `python demo.py` at commit `0123456`, 2 cores, NumPy 2.0.0" in read_page(root, "README.md")
    edited = 0
    for page in docs.pages(root):
        original = read_page(root, page)
        lines = original.split("\n")
        tables, _ = docs.marked_tables(lines)
        for name, start, end in tables:
            row = next(i for i in range(start + 1, end) if re.search(r"\d", lines[i]) and lines[i].startswith("|"))
            changed = list(lines)
            changed[row] = re.sub(r"\d", lambda m: str((int(m.group()) + 1) % 10), lines[row], count=1)
            write_page(root, page, "\n".join(changed))
            problems = docs.check(root)
            assert problems and all(f"{page}: table {name!r} differs" in p for p in problems), problems
            edited += 1
        write_page(root, page, original)
    assert edited > len(docs.TABLES) and docs.check(root) == []


def test_record_then_regenerate_round_trips(tmp_path, capsys, monkeypatch):
    root, runs = str(tmp_path / "repo"), tmp_path / "runs"
    write_page(root, "README.md", "# x\n\n<!-- table: demo -->\n<!-- /table -->\n\nprose\n")
    os.makedirs(runs)
    metrics = dict(fake_metrics(), provenance=PROVENANCE)
    (runs / "metrics.json").write_text(json.dumps(metrics))
    assert docs.main(["--root", root, "--check"]) == 1
    assert "demo.json is missing" in capsys.readouterr().err
    assert docs.main(["--root", root, "record", "demo", str(runs / "metrics.json")]) == 0
    with open(docs.results_path(root, "demo")) as file:
        recorded = json.load(file)
    assert recorded == {"provenance": PROVENANCE, "results": fake_metrics()}
    assert docs.main(["--root", root]) == 0
    text = read_page(root, "README.md")
    assert "| RSSM, imagined | 0.25 | 1.25 | 2.50 | 5.50 | 2.75 |" in text and text.endswith("<!-- /table -->\n\nprose\n")
    assert "([demo.json](docs/results/demo.json))" in text
    assert docs.main(["--root", root, "--check"]) == 0
    assert docs.main(["--root", root]) == 0 and read_page(root, "README.md") == text      # nothing left to change

    # Without its own provenance, a file needs --command, and its line says where the rest came from.
    (runs / "plain.json").write_text(json.dumps(fake_metrics()))
    assert docs.main(["--root", root, "record", "demo", str(runs / "plain.json")]) == 1
    assert "--command" in capsys.readouterr().err
    assert docs.main(["--root", root, "record", "demo", str(runs / "plain.json"), "--command", "python demo.py --seed 1"]) == 0
    assert "no provenance" in capsys.readouterr().out
    with open(docs.results_path(root, "demo")) as file:
        kept = json.load(file)["provenance"]
    assert kept["command"] == "python demo.py --seed 1" and kept["read_at_record"] and kept["cores"] == os.cpu_count()
    assert docs.main(["--root", root, "--check"]) == 1                  # the results changed: the table is stale
    assert docs.main(["--root", root]) == 0 and "read when the file was recorded" in read_page(root, "README.md")

    # A command's printed output: the JSON lines among it, one per setting (bench's one line each).
    printed = "T=16 B=8 | progress\n" + json.dumps(bench_line()) + "\n" + json.dumps(bench_line(fused=False)) + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(printed))
    assert docs.main(["--root", root, "record", "bench", "-", "--command", "python -m rssm_np.lab.bench"]) == 0
    with open(docs.results_path(root, "bench")) as file:
        assert [r["fused"] for r in json.load(file)["results"]] == [True, False]


def test_the_check_names_broken_markers_missing_tables_and_missing_results(tmp_path):
    root = str(tmp_path)
    write_results(root, ["plan"])
    write_page(root, "README.md", "<!-- table: plan -->\n<!-- /table -->\n```\n<!-- table: in_a_code_block -->\n```\n")
    write_page(root, os.path.join("docs", "a.md"), "<!-- table: nope -->\n<!-- /table -->\n<!-- table: compare -->\n"
                                                   "<!-- /table -->\n<!-- /table -->\n<!-- table: plan -->\n")
    problems = docs.check(root)
    assert any("README.md: table 'plan' differs" in p for p in problems)
    assert any("docs/a.md: table 'nope': no table is called 'nope'" in p for p in problems)
    assert any("docs/a.md: table 'compare': docs/results/compare.json is missing" in p for p in problems)
    assert any("line 5: <!-- /table --> closes no table" in p for p in problems)
    assert any("line 6: table 'plan' is never closed" in p for p in problems)
    assert not any("in_a_code_block" in p for p in problems)
    _, remaining = docs.regenerate(root)
    assert not any("README.md" in p for p in remaining) and len(remaining) == len(problems) - 1


def test_provenance_says_what_ran_where():
    found = provenance(["--seeds", "3", "--out", "runs/my demo"], program="python demo.py")
    assert found["command"] == "python demo.py --seeds 3 --out 'runs/my demo'"
    assert set(found) == {"command", "commit", "dirty", "cores", "numpy", "python", "date"}
    assert found["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", found["commit"])
    assert found["dirty"] in (None, True, False) and found["cores"] == os.cpu_count()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", found["date"])
    assert provenance([])["command"].startswith("python ")


def make_run(folder, kind, width=1200):
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, docs.KINDS[kind]), "w") as file:
        file.write("{}")
    for figure_kind, name, _ in docs.FIGURES:
        if figure_kind == kind:
            Image.new("RGB", (width, 20), "white").save(os.path.join(folder, name))


def test_figures_are_copied_small_from_the_runs_that_drew_them(tmp_path, capsys, monkeypatch):
    from PIL import Image
    root = str(tmp_path / "repo")
    write_page(root, "README.md", "# x\n")
    demo, compare = str(tmp_path / "demo"), str(tmp_path / "compare")
    make_run(demo, "demo")
    make_run(compare, "compare")
    written, absent = docs.copy_figures(root, [demo, compare])
    assert absent == ["plan", "pendulum"] and \
        len(written) == len([f for f in docs.FIGURES if f[0] not in ("plan", "pendulum")])
    with Image.open(os.path.join(root, "docs", "open_loop.png")) as image:
        assert image.width == docs.MAX_WIDTH
    assert os.path.exists(os.path.join(root, "docs", "compare_lesson.png"))
    with pytest.raises(ValueError, match="holds none of"):
        docs.copy_figures(root, [str(tmp_path)])
    with pytest.raises(ValueError, match="both"):
        docs.copy_figures(root, [demo, demo])
    os.remove(os.path.join(compare, "compare_lesson.png"))
    with pytest.raises(ValueError, match="compare_lesson.png missing"):
        docs.copy_figures(root, [compare])
    monkeypatch.setattr(docs, "FIGURES_LIMIT", 10)
    assert docs.main(["--root", root, "--figures", demo]) == 1
    assert "over the" in capsys.readouterr().err


# --- prose: numbers only through generated tables ------------------------------------------

BANNED = ("earlier machine", "previous default", "this session", "measured here", "imports point only down",
          "207 tests", "bit for bit")


def prose(text):
    """The text a reader takes as claims: without code, generated tables, links' targets and inline code."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"<!-- table: \S+ -->.*?<!-- /table -->", "", text, flags=re.S)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return re.sub(r"`[^`\n]*`", "", text)


# A measurement: a decimal number, or a number with a unit of time, size, distance or information.
MEASURED = re.compile(r"\d+\.\d+|\b\d[\d,]*\s?(?:px|ms|s|sec|seconds?|min|minutes?|hours?|MB|kB|GB|GFLOP/s|nats?"
                      r"|x faster|x slower)\b|\b\d+(?:\.\d+)?x\b|\d+\s?%")
CONSTANTS = ("90%",)     # the coverage level: a definition, not a measurement


def test_prose_quotes_no_measurement():
    for page in docs.pages(ROOT):
        text = prose(read_page(ROOT, page))
        for phrase in BANNED:
            assert phrase not in text.lower(), f"{page} says {phrase!r}"
        for found in MEASURED.finditer(text):
            if found.group() not in CONSTANTS:
                line = text[:found.start()].count("\n") + 1
                raise AssertionError(f"{page} quotes {found.group()!r} in prose (near line {line}): numbers come "
                                     f"from generated tables; a constant goes in backticks")


def test_the_tests_the_docs_name_exist():
    defined = set()
    for name in os.listdir(os.path.join(ROOT, "tests")):
        if name.endswith(".py"):
            defined |= set(re.findall(r"^def (test_\w+)", read_page(ROOT, os.path.join("tests", name)), re.M))
    for page in docs.pages(ROOT):
        for test in set(re.findall(r"\b(test_\w+)\b(?!\.py)", read_page(ROOT, page))):
            assert test in defined, f"{page} names {test}, which no file in tests/ defines"


def test_the_readme_is_a_front_page():
    text = read_page(ROOT, "README.md")
    assert len(text.splitlines()) <= 250, "the README is a front page: deeper topics go to docs/*.md"
    assert len(re.findall(r"<!-- table: \S+ -->", text)) == 1, "the README shows one results table"
