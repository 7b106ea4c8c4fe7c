"""Numbers across seeds: the mean ± std table, and demo.py --seeds running one demo per seed."""

import json
import os
import sys

import pytest

from rssm_np.lab import seeds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import demo  # noqa: E402


def write_metrics(folder, h10, coverage, extra=None):
    os.makedirs(folder, exist_ok=True)
    metrics = {"open_loop_px_error_at": {"1": 0.2, "10": h10, "20": 3.0, "40": 7.0}, "open_loop_px_error": 3.0,
               "coverage90": coverage, "steps": 4500, **(extra or {})}
    with open(os.path.join(folder, "metrics.json"), "w") as file:
        json.dump(metrics, file)


def test_summary_is_the_mean_and_sample_std_of_the_runs(tmp_path):
    for name, h10, coverage in (("a", 1.0, 0.90), ("b", 2.0, 0.92), ("c", 3.0, 0.94)):
        write_metrics(tmp_path / name, h10, coverage)
    summary = seeds.summarize([tmp_path / "a", tmp_path / "b", tmp_path / "c"])
    row = summary["open loop h=10 (px)"]
    assert row["values"] == [1.0, 2.0, 3.0]
    assert row["mean"] == pytest.approx(2.0) and row["std"] == pytest.approx(1.0)       # sample std, n - 1
    assert summary["90% region of 32 futures: coverage"]["std"] == pytest.approx(0.02)
    assert "linear probe R^2 of (x, y, vx, vy)" not in summary                          # not measured: no row
    text = seeds.table(summary, ["a", "b", "c"])
    assert "| open loop h=10 (px) | 2.00 ± 1.00 | 1.00 | 2.00 | 3.00 |" in text


def test_a_folder_without_metrics_is_named(tmp_path):
    with pytest.raises(ValueError, match="holds no metrics.json"):
        seeds.summarize([tmp_path])
    assert seeds.mean_std([5.0]) == (5.0, 0.0)


def test_the_seeds_command_line_prints_the_table(tmp_path, capsys):
    write_metrics(tmp_path / "x", 1.5, 0.9)
    assert seeds.main([str(tmp_path / "x"), "--json", str(tmp_path / "s.json")]) == 0
    assert "| open loop h=10 (px) | 1.50 ± 0.00 | 1.50 |" in capsys.readouterr().out
    assert json.load(open(tmp_path / "s.json"))["rows"]["open loop h=10 (px)"]["mean"] == 1.5


def test_each_seed_runs_the_same_demo_with_its_own_seed_and_folder(tmp_path):
    args = demo.parse_args(["--seeds", "3", "--seed", "4", "--steps", "700", "--kl-balance", "0.8", "--no-control", "--seq-len", "64", "--push-share", "0.2",
                            "--out", str(tmp_path)])
    args.lock.close()
    words = seeds.seed_command(demo.__file__, args, 5, [flag for flag, *_ in demo.CONFIG_FLAGS])
    assert words[:2] == [sys.executable, os.path.join(ROOT, "demo.py")]
    child = demo.parse_args(words[2:])
    child.lock.close()
    assert child.seed == 5 and child.out == os.path.join(str(tmp_path), "seed5") and child.seeds is None
    for field in ("steps", "minutes", "occlusion", "control", "model", "boundary", "kl_balance", "overshooting",
                  "lr_schedule", "plain", "batch", "seq_len", "push_share"):
        assert getattr(child, field) == getattr(args, field), field


def test_seeds_run_j_at_a_time_and_write_the_table(tmp_path, monkeypatch, capsys):
    """The orchestration, with each seed's demo replaced by a stand-in that writes its metrics."""
    def stand_in(script, args, seed, config_flags):
        folder = os.path.join(args.out, f"seed{seed}")
        code = (f"import json, os, sys; sys.path.insert(0, {ROOT!r}); from tests.test_seeds import write_metrics; "
                f"write_metrics({folder!r}, {float(seed)}, 0.9, {{'threads': os.environ.get('OPENBLAS_NUM_THREADS')}});"
                f"sys.exit({1 if seed == 2 else 0})")
        return [sys.executable, "-c", code]

    monkeypatch.setattr(seeds, "seed_command", stand_in)
    out = str(tmp_path / "many")
    assert demo.main(["--seeds", "3", "--jobs", "2", "--out", out]) == 1          # seed 2 failed: exit 1
    printed = capsys.readouterr().out
    assert "seed 2: failed (exit 1)" in printed and "failed seeds: [2]" in printed
    table = open(os.path.join(out, "seeds.md")).read()
    assert "| open loop h=10 (px) | 0.50 ± 0.71 | 0.00 | 1.00 |" in table
    assert json.load(open(os.path.join(out, "seed0", "metrics.json")))["threads"] == "1"
    assert json.load(open(os.path.join(out, "seeds.json")))["folders"] == [os.path.join(out, "seed0"),
                                                                            os.path.join(out, "seed1")]


@pytest.mark.parametrize("argv, words", [
    (["--jobs", "2"], "--jobs runs several seeds at a time"),
    (["--seeds", "2", "--no-eval"], "drop --no-eval"),
    (["--seeds", "0"], "expected a positive integer"),
    (["--kl-balance", "2"], "expected a number from 0 to 1"),
    (["--overshooting", "0"], "expected a positive integer"),
    (["--overshooting", "40"], "--overshooting (40) must be <= --seq-len (32)")])
def test_bad_seed_and_lever_flags_are_refused(argv, words, tmp_path, capsys):
    with pytest.raises(SystemExit):
        demo.parse_args(argv + ["--out", str(tmp_path)])
    assert words in capsys.readouterr().err
