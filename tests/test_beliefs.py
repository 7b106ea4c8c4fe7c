"""The belief measurements on constructed cases with known answers, the masked likelihood, and
sampled futures."""

import numpy as np
import pytest

from rssm_np import Config, init_params, make_dataset, predict
from rssm_np.lab.beliefs import coverage, last_seen_baseline, linear_probe_r2
from rssm_np.distributions import bernoulli_nll
from rssm_np.training import likelihood_weight

SMALL = dict(image_size=16, deter_size=12, stoch_size=4, hidden_size=16, embed_size=8)


@pytest.mark.parametrize("level", [0.5, 0.9])
def test_coverage_of_a_calibrated_sampler_is_its_level(level):
    """Truth and samples from the same 2-D Gaussian: the truth lands in the region at rate `level`."""
    rng = np.random.default_rng(0)
    samples = rng.standard_normal((4000, 400, 2)) * [1.0, 3.0] + [5.0, -2.0]
    truth = rng.standard_normal((4000, 2)) * [1.0, 3.0] + [5.0, -2.0]
    assert coverage(samples, truth, level) == pytest.approx(level, abs=0.03)


def test_coverage_of_overconfident_and_wrong_samplers():
    rng = np.random.default_rng(1)
    truth = rng.standard_normal((2000, 2))
    too_narrow = 0.1 * rng.standard_normal((2000, 200, 2))
    shifted = rng.standard_normal((2000, 200, 2)) + 10.0
    assert coverage(too_narrow, truth) < 0.05
    assert coverage(shifted, truth) == 0.0


def test_linear_probe_recovers_a_linear_map_and_rejects_noise():
    rng = np.random.default_rng(2)
    features = rng.standard_normal((600, 10))
    weights = rng.standard_normal((10, 4))
    targets = features @ weights + 3.0
    r2, per_target = linear_probe_r2(features[:300], targets[:300], features[300:], targets[300:])
    assert r2 == pytest.approx(1.0, abs=1e-9) and len(per_target) == 4
    unrelated = rng.standard_normal((600, 4))
    r2_noise, _ = linear_probe_r2(features[:300], unrelated[:300], features[300:], unrelated[300:])
    assert r2_noise < 0.1


def test_last_seen_baseline_carries_velocity_and_bounces():
    seen = np.zeros((1, 6, 2))
    seen[0, :3] = [[10, 5], [12, 5], [14, 5]]                 # moving +2 px/frame in x
    visible = np.array([[True, True, True, False, False, False]])
    predicted, usable = last_seen_baseline(seen, visible, size=20)
    np.testing.assert_allclose(predicted[0, 3:], [[16, 5], [18, 5], [18, 5]])   # 20 reflects to 18 at the wall (19)
    assert usable.tolist() == [[False, False, False, True, True, True]]


def test_masked_likelihood_ignores_occluded_pixels():
    """The reconstruction term: change every hidden pixel and it does not move; change a visible
    one and it does. (The encoder still sees the whole frame, hidden pixels included.)"""
    config = Config(**SMALL, occlusion=True)
    batch = make_dataset(6, 20, size=16, seed=4, occlusion=True)
    rows = 6 * 20
    mask = batch["mask"].reshape(rows, -1)
    assert mask.any() and not mask.all()
    weight = likelihood_weight(batch, config).reshape(rows, -1)             # (B, T, D) -> (B*T, D)
    np.testing.assert_array_equal(weight == 0, mask)
    logits = np.random.default_rng(0).standard_normal((rows, 256))
    pixels = batch["obs"].reshape(rows, -1).astype(np.float64)
    base = bernoulli_nll(logits, pixels, weight)
    np.testing.assert_array_equal(bernoulli_nll(logits, np.where(mask, 0.7, pixels), weight), base)
    assert not np.array_equal(bernoulli_nll(logits, np.where(mask, pixels, 0.7), weight), base)
    assert likelihood_weight(batch, Config(**SMALL, occlusion=True, masked_likelihood=False)) is None


def test_sampled_futures_shapes_seeds_and_spread():
    config = Config(**SMALL)
    params = init_params(config)
    obs = make_dataset(2, 4, size=16, seed=5)["obs"]
    a = predict(params, config, obs, horizon=6, samples=5, seed=1)
    b = predict(params, config, obs, horizon=6, samples=5, seed=1)
    c = predict(params, config, obs, horizon=6, samples=5, seed=2)
    assert a.shape == (2, 5, 6, 16, 16)
    assert a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.allclose(a[:, 0], a[:, 1])                   # samples differ from each other
