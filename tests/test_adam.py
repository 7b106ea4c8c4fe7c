"""Adam, step by step, and clipping."""

import numpy as np
import pytest

from rssm_np.adam import adam_step, clip_by_global_norm, init_adam


def test_one_adam_step_worked_by_hand():
    """Step 1: m = 0.1 g, v = 0.001 g^2; bias correction gives m^ = g, v^ = g^2, so the step is
    lr * g / (|g| + eps) = lr * sign(g) (up to eps)."""
    params = np.array([1.0, -2.0, 0.5])
    grad = np.array([0.5, -4.0, 0.0])
    new, state = adam_step([params], [grad], init_adam([params]), learning_rate=0.1, eps=1e-8)
    new, state["m"], state["v"] = new[0], state["m"][0], state["v"][0]
    np.testing.assert_allclose(state["m"], 0.1 * grad)
    np.testing.assert_allclose(state["v"], 0.001 * grad ** 2)
    expected = params - 0.1 * grad / (np.abs(grad) + 1e-8)
    np.testing.assert_allclose(new, expected, rtol=1e-12)
    np.testing.assert_allclose(new, [0.9, -1.9, 0.5], rtol=1e-6)
    assert state["step"] == 1


def test_second_adam_step_worked_by_hand():
    params = np.array([0.0])
    g1, g2 = np.array([1.0]), np.array([3.0])
    p1, s1 = adam_step([params], [g1], init_adam([params]), learning_rate=0.01)
    p2, s2 = adam_step(p1, [g2], s1, learning_rate=0.01)
    p1, p2 = p1[0], p2[0]
    m = 0.9 * 0.1 * 1.0 + 0.1 * 3.0
    v = 0.999 * 0.001 * 1.0 + 0.001 * 9.0
    m_hat, v_hat = m / (1 - 0.9 ** 2), v / (1 - 0.999 ** 2)
    np.testing.assert_allclose(p2, p1 - 0.01 * m_hat / (np.sqrt(v_hat) + 1e-8), rtol=1e-12)


def test_adam_does_not_mutate_its_inputs():
    params, grad = [np.ones(2)], [np.ones(2)]
    state = init_adam(params)
    adam_step(params, grad, state, 0.1)
    assert state["step"] == 0 and np.all(state["m"][0] == 0) and np.all(params[0] == 1)


def test_adam_minimizes_a_quadratic():
    """f(x) = sum a_i (x_i - c_i)^2 with badly scaled a: Adam reaches the minimum c."""
    a, c = np.array([100.0, 1.0, 0.01]), np.array([1.0, -2.0, 3.0])
    x = [np.zeros(3)]
    state = init_adam(x)
    for _ in range(3000):
        x, state = adam_step(x, [2 * a * (x[0] - c)], state, learning_rate=0.05)
    np.testing.assert_allclose(x[0], c, atol=1e-2)


def test_clip_by_global_norm():
    grads = [np.array([3.0]), np.array([[4.0]])]        # the norm runs over all arrays at once
    clipped, norm = clip_by_global_norm(grads, 1.0)
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose(clipped[0], [0.6])
    np.testing.assert_allclose(clipped[1], [[0.8]])
    unclipped, _ = clip_by_global_norm(grads, 10.0)
    np.testing.assert_allclose(unclipped[0], grads[0])
