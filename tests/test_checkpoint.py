"""Checkpoints never lose work: atomic writes, exact resume, Ctrl-C, the NaN guard, determinism."""

import os
import subprocess
import sys

import numpy as np
import pytest

import rssm_np.checkpoint as checkpoint
import rssm_np.training as train_module
from rssm_np import DEMO_RECIPE, Config, load, save
from rssm_np.checkpoint import load_train_state
from rssm_np.lab.evaluate import evaluate
from rssm_np.training import train, tree_leaves
from rssm_np.world import make_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(image_size=16, deter_size=12, stoch_size=4, hidden_size=16, embed_size=8, batch_size=4, seq_len=8)


def assert_same_leaves(a, b):
    for x, y in zip(tree_leaves(a), tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_resume_from_a_checkpoint_is_bit_exact(tmp_path):
    config = Config(**SMALL)
    straight = train(config, steps=12)
    first = train(config, steps=6)
    save(tmp_path / "at6.npz", first["params"], config, first)
    _, loaded_config, state = load_train_state(tmp_path / "at6.npz")
    assert loaded_config == config and state["step"] == 6
    resumed = train(loaded_config, steps=12, state=state)
    assert_same_leaves(resumed["params"], straight["params"])
    assert_same_leaves(resumed["adam"]["m"], straight["adam"]["m"])
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in straight["history"]]


def test_demo_resume_matches_one_run_to_the_last_bit(tmp_path):
    """A run of 6 planned steps stopped at step 3 (its checkpoint, made here by the library with the
    config the demo plans) and resumed by the demo ends on the bits of a straight 6-step demo run.
    Resumed past its plan, a run says that its step size stays at the floor."""
    def demo(*argv):
        return subprocess.run([sys.executable, "demo.py", "--no-eval", "--print-every", "2", *argv], cwd=ROOT,
                              check=True, capture_output=True, text=True, timeout=300).stdout
    sys.path.insert(0, ROOT)
    config = Config(**DEMO_RECIPE, lr_decay_steps=6)
    stopped = train(config, steps=3)
    save(tmp_path / "at3.npz", stopped["params"], config, stopped)
    out = demo("--steps", "6", "--resume", str(tmp_path / "at3.npz"), "--out", str(tmp_path / "b"))
    assert "stays at it" not in out
    demo("--steps", "6", "--out", str(tmp_path / "c"))
    resumed, _ = load(tmp_path / "b" / "model.npz")
    straight, straight_config = load(tmp_path / "c" / "model.npz")
    assert straight_config == config
    assert_same_leaves(resumed, straight)
    out = demo("--steps", "8", "--resume", str(tmp_path / "c" / "model.npz"), "--out", str(tmp_path / "d"))
    assert "planned 6 steps" in out and "stays at it for the 2 steps beyond" in out


def test_an_interrupted_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    config = Config(**SMALL)
    state = train(config, steps=2)
    path = str(tmp_path / "model.npz")
    save(path, state["params"], config, state)
    newer = train(config, steps=4, state=load_train_state(path)[2])

    def savez_then_die(file, **arrays):
        file.write(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.np, "savez", savez_then_die)
    with pytest.raises(KeyboardInterrupt):
        save(path, newer["params"], config, newer)
    monkeypatch.undo()
    params, _, kept = load_train_state(path)
    assert kept["step"] == 2
    assert_same_leaves(params, state["params"])
    assert os.listdir(tmp_path) == ["model.npz"]        # no temporary file left behind


def test_nan_guard_stops_and_keeps_the_last_finite_state(monkeypatch):
    config = Config(**SMALL)
    real_batch = train_module.training_batch

    def poisoned(config, step):
        batch = real_batch(config, step)
        if step == 3:
            batch["obs"] = np.full_like(batch["obs"], np.nan)
        return batch

    monkeypatch.setattr(train_module, "training_batch", poisoned)
    with pytest.raises(FloatingPointError, match="step 4") as caught:
        train(config, steps=6)
    assert caught.value.state["step"] == 3
    assert all(np.all(np.isfinite(leaf)) for leaf in tree_leaves(caught.value.state["params"]))


def test_demo_on_nan_exits_without_overwriting_a_good_model(tmp_path, monkeypatch):
    sys.path.insert(0, ROOT)
    import demo
    out = str(tmp_path / "run")
    assert demo.main(["--steps", "2", "--no-eval", "--out", out]) == 0
    good, _ = load(os.path.join(out, "model.npz"))
    real_batch = train_module.training_batch

    def poisoned(config, step):
        batch = real_batch(config, step)
        batch["obs"] = np.full_like(batch["obs"], np.nan)
        return batch

    monkeypatch.setattr(train_module, "training_batch", poisoned)
    assert demo.main(["--steps", "4", "--no-eval", "--out", out, "--resume", os.path.join(out, "model.npz")]) == 1
    still, _ = load(os.path.join(out, "model.npz"))
    assert_same_leaves(still, good)


def test_ctrl_c_saves_a_checkpoint_to_resume_from(tmp_path, monkeypatch):
    sys.path.insert(0, ROOT)
    import demo
    real_batch = train_module.training_batch

    def interrupt_at_3(config, step):
        if step == 3:
            raise KeyboardInterrupt
        return real_batch(config, step)

    monkeypatch.setattr(train_module, "training_batch", interrupt_at_3)
    out = str(tmp_path / "run")
    assert demo.main(["--steps", "10", "--no-eval", "--out", out, "--checkpoint-every", "100"]) == 130
    _, _, state = load_train_state(os.path.join(out, "checkpoint.npz"))
    assert state["step"] == 3


def test_same_seed_same_metrics_other_seed_other_model():
    data = make_dataset(8, 20, size=16, seed=123)
    runs = [train(Config(**SMALL, seed=seed), steps=5) for seed in (7, 7, 8)]
    metrics = [evaluate(run["params"], Config(**SMALL, seed=seed), data) for run, seed in zip(runs, (7, 7, 8))]
    assert metrics[0] == metrics[1]
    assert_same_leaves(runs[0]["params"], runs[1]["params"])
    assert metrics[0] != metrics[2]
