"""Learning: a short training run measurably beats trivial baselines on held-out sequences."""

import numpy as np
import pytest

from rssm_np import Config, make_dataset
from rssm_np.lab.evaluate import EVAL_SEED, evaluate
from rssm_np.training import train

SMALL_WORLD = dict(image_size=16, deter_size=32, stoch_size=8, hidden_size=64, embed_size=32,
                   batch_size=16, seq_len=20, seed=0)


@pytest.fixture(scope="module")
def trained():
    config = Config(**SMALL_WORLD)
    state = train(config, steps=400)
    held_out = make_dataset(48, 30, size=16, seed=EVAL_SEED)
    return config, state, evaluate(state["params"], config, held_out)


def test_loss_goes_down(trained):
    _, state, _ = trained
    losses = np.array([h["loss"] for h in state["history"]])
    assert losses[-50:].mean() < 0.8 * losses[:20].mean()


def test_open_loop_beats_copy_last_frame(trained):
    _, _, metrics = trained
    assert metrics["open_loop_px_error"] < 0.7 * metrics["baseline_copy_last_open_loop_px_error"], metrics


def test_filtering_finds_the_dot(trained):
    """Decoded posterior frames put the dot within a pixel of the truth on average."""
    _, _, metrics = trained
    assert metrics["recon_px_error"] < 1.0, metrics


def test_one_step_prediction_is_close(trained):
    _, _, metrics = trained
    assert metrics["open_loop_px_error_at"]["1"] < metrics["baseline_copy_last_open_loop_px_error_at"]["1"], metrics
