"""The ablation's measurements, on constructed cases with known answers, and the compare command."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rssm_np.lab.futures import best_of, event_frames, event_spread_ratio, sharpness
from rssm_np.world import render

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_best_of_takes_the_closest_sample_per_step():
    truth = np.zeros((1, 2, 2))
    samples = np.array([[[[3.0, 4.0], [1.0, 0.0]], [[0.0, 1.0], [6.0, 8.0]]]])        # (B=1, M=2, K=2, 2)
    np.testing.assert_allclose(best_of(samples, truth), [[1.0, 1.0]])


def test_event_frames_mark_the_frame_after_a_redraw_and_keep_free_flight_away_from_walls():
    events = np.zeros((1, 20), dtype=bool)
    events[0, 10] = True
    after, free = event_frames(events, margin=4)
    assert np.flatnonzero(after[0]).tolist() == [11]
    assert np.flatnonzero(free[0]).tolist() == [4, 5, 15, 16, 17, 18, 19]


def test_event_spread_ratio():
    events = np.zeros((1, 20), dtype=bool)
    events[0, 10] = True
    spread = np.full((1, 20), 0.5)
    spread[0, 11] = 1.5
    assert event_spread_ratio(spread, events) == pytest.approx(3.0)
    assert np.isnan(event_spread_ratio(np.zeros((1, 20)), events))            # one future: no ratio
    assert np.isnan(event_spread_ratio(spread, np.zeros((1, 20), dtype=bool)))  # no wall hit: no ratio


def test_sharpness_is_one_for_the_true_frame_and_low_for_a_smear():
    xy = np.array([[10.3, 12.7], [20.0, 5.5]])
    frames = render(xy, 32)
    assert sharpness(frames, xy, 32) == pytest.approx(1.0)
    smear = render(xy[:, None] + np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0], [6.0, 6.0]]), 32).mean(axis=1)
    assert sharpness(smear, xy, 32) < 0.5


def test_compare_runs_end_to_end_and_refuses_bad_arguments(tmp_path):
    out = tmp_path / "compare"
    done = subprocess.run([sys.executable, "-m", "rssm_np.lab.compare", "--steps", "2", "--models", "rnn,rssm",
                           "--worlds", "random", "--sequences", "4", "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "compare.json").read_text())
    assert set(summary["results"]["random"]) == {"rnn", "rssm"}
    assert np.isnan(summary["results"]["random"]["rnn"]["event_spread_ratio"])
    assert (out / "random" / "rssm" / "model.npz").exists() and (out / "compare_lesson.png").exists()
    again = subprocess.run([sys.executable, "-m", "rssm_np.lab.compare", "--steps", "2", "--out", str(out)],
                           cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    bad = subprocess.run([sys.executable, "-m", "rssm_np.lab.compare", "--models", "lstm", "--out", str(tmp_path / "x")],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "--models" in bad.stderr and "Traceback" not in bad.stderr
