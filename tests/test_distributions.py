"""Closed-form facts about the Gaussian KL and the frame likelihood."""

import numpy as np
import pytest

from rssm_np.distributions import bernoulli_nll, gaussian_head, kl_gaussian


def random_gaussian(rng, shape):
    return rng.standard_normal(shape), rng.uniform(0.1, 3.0, shape)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kl_of_a_distribution_with_itself_is_zero(seed):
    mean, std = random_gaussian(np.random.default_rng(seed), (50, 8))
    np.testing.assert_allclose(kl_gaussian(mean, std, mean, std), 0.0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kl_is_non_negative(seed):
    rng = np.random.default_rng(seed)
    kl = kl_gaussian(*random_gaussian(rng, (1000, 4)), *random_gaussian(rng, (1000, 4)))
    assert kl.shape == (1000,)
    assert np.all(kl >= 0)
    assert np.all(kl > 0)   # distinct random Gaussians are never equal


def test_kl_matches_a_monte_carlo_estimate():
    """KL(q || p) = E_q[log q(z) - log p(z)], estimated from 400,000 samples of q."""
    rng = np.random.default_rng(0)
    mean_q, std_q = np.array([0.3, -1.0, 2.0]), np.array([0.5, 1.5, 0.8])
    mean_p, std_p = np.array([0.0, 0.5, 1.0]), np.array([1.0, 1.0, 2.0])
    z = mean_q + std_q * rng.standard_normal((400_000, 3))

    def log_density(z, mean, std):
        return np.sum(-0.5 * ((z - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi), axis=-1)

    samples = log_density(z, mean_q, std_q) - log_density(z, mean_p, std_p)
    estimate, standard_error = samples.mean(), samples.std() / np.sqrt(len(samples))
    exact = kl_gaussian(mean_q[None], std_q[None], mean_p[None], std_p[None])[0]
    assert abs(estimate - exact) < 4 * standard_error, (estimate, exact, standard_error)


def test_kl_of_a_shifted_unit_gaussian():
    """KL(N(m, 1) || N(0, 1)) = m^2 / 2 per dimension."""
    mean = np.array([[1.0, 2.0, -3.0]])
    assert kl_gaussian(mean, np.ones((1, 3)), np.zeros((1, 3)), np.ones((1, 3)))[0] == pytest.approx(7.0)


def test_gaussian_head_std_is_at_least_min_std():
    out = np.concatenate([np.zeros((3, 2)), np.array([[-1e4, -1e4], [0.0, 0.0], [50.0, 1e4]])], axis=1)
    mean, std = gaussian_head(out, 0.1)
    assert np.all(std >= 0.1)
    assert std[0, 0] == pytest.approx(0.1)
    assert std[1, 0] == pytest.approx(np.log(2) + 0.1)
    assert np.all(np.isfinite(std))


def test_bernoulli_nll_is_the_cross_entropy():
    logits = np.array([[0.0, 2.0, -3.0]])
    target = np.array([[1.0, 0.25, 0.0]])
    prob = 1 / (1 + np.exp(-logits))
    expected = -np.sum(target * np.log(prob) + (1 - target) * np.log(1 - prob))
    assert bernoulli_nll(logits, target)[0] == pytest.approx(expected)


def test_bernoulli_nll_weight_drops_pixels():
    logits, target = np.array([[1.0, -2.0, 0.5]]), np.array([[0.0, 1.0, 0.5]])
    weight = np.array([[1.0, 0.0, 1.0]])
    kept = bernoulli_nll(logits[:, [0, 2]], target[:, [0, 2]])
    assert bernoulli_nll(logits, target, weight)[0] == pytest.approx(kept[0])
