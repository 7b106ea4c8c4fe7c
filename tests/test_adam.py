"""Adam, step by step, and clipping."""

import numpy as np
import pytest

from rssm_np.utils import speed
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


# --- the flat update (speed.adam_update), the train step's fast path, against the readable one ---

def _leaves(rng, dtype, scale=1.0):
    """Leaves of mixed shapes, together longer than two chunks, so pieces straddle chunk edges."""
    shapes = [(3, 7), (speed.CHUNK + 5,), (1,), (130, 129), (4,)]
    return [(scale * rng.standard_normal(shape)).astype(dtype) for shape in shapes]


def _readable(leaves, state, grads, learning_rate, max_norm):
    grads, norm = clip_by_global_norm(grads, max_norm)
    return adam_step(leaves, grads, state, learning_rate) + (norm,)


def _flat(leaves, state, grads, learning_rate, max_norm):
    grad = speed.flat_of(grads)
    norm = speed.global_norm_flat(grad)
    return speed.adam_update(leaves, grad, norm, state, learning_rate, max_norm) + (norm,)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("clip", [False, True])
def test_flat_adam_gives_the_readable_numbers(dtype, clip):
    """Five steps of adam_update against clip_by_global_norm + adam_step, leaf by leaf. Without
    clipping the two are the same operations on the same numbers: equal to the bit. With it,
    the norms are sums of the same squares in another order (equal to float64 rounding), so the
    clip's scale, rounded to the dtype, may differ in its last place, and so may everything it
    scales: allow a few units of the dtype's rounding, relative to each array's largest entry
    (theta - update cancels in places, so a relative-per-entry bound would be meaningless)."""
    rng = np.random.default_rng(0)
    params = _leaves(rng, dtype)
    readable = flat = (params, init_adam(params))
    max_norm = 1.0 if clip else 1e6
    for step in range(5):
        grads = _leaves(rng, dtype, scale=10.0 ** (step - 2))        # tiny to large: both sides of the clip
        r_params, r_state, r_norm = _readable(*readable, grads, 0.01, max_norm)
        f_params, f_state, f_norm = _flat(*flat, grads, 0.01, max_norm)
        assert f_norm == pytest.approx(r_norm, rel=1e-13)
        assert f_state["step"] == r_state["step"] == step + 1
        for got, want in zip(f_params + f_state["m"] + f_state["v"], r_params + r_state["m"] + r_state["v"]):
            assert got.dtype == want.dtype == np.dtype(dtype) and got.shape == want.shape
            if clip:
                eps = np.finfo(dtype).eps
                np.testing.assert_allclose(got, want, rtol=4 * eps, atol=4 * eps * np.max(np.abs(want)))
            else:
                np.testing.assert_array_equal(got, want)
        readable, flat = (r_params, r_state), (f_params, f_state)


def test_flat_adam_reuses_its_buffer_and_mutates_nothing():
    """The leaves adam_update returns are views into one buffer, which the next flat_of hands back
    without a copy; the arrays passed in keep their values."""
    rng = np.random.default_rng(1)
    params, grads = _leaves(rng, "float32"), _leaves(rng, "float32")
    state = init_adam(params)
    before = [p.copy() for p in params]
    grad = speed.flat_of(grads)
    new_params, new_state = speed.adam_update(params, grad, speed.global_norm_flat(grad), state, 0.1, 100.0)
    assert all(np.array_equal(p, b) for p, b in zip(params, before))
    assert state["step"] == 0 and all(np.all(m == 0) for m in state["m"] + state["v"])
    flat = speed.flat_of(new_params)
    assert all(p.base is flat for p in new_params)
    np.testing.assert_array_equal(flat, np.concatenate([p.ravel() for p in new_params]))
    assert speed.flat_of(new_state["m"]) is new_state["m"][0].base
    reordered = [new_params[1], new_params[0]] + new_params[2:]          # the same views, another order
    assert speed.flat_of(reordered) is not flat
    np.testing.assert_array_equal(speed.flat_of(reordered), np.concatenate([p.ravel() for p in reordered]))


def test_flat_adam_refuses_to_mix_precisions():
    """A float64 gradient of float32 weights (or leaves of two dtypes) is an error, not a silent cast."""
    params = [np.ones(3, np.float32), np.ones(2, np.float32)]
    with pytest.raises(TypeError, match="dtype"):
        speed.flat_of([np.ones(3, np.float32), np.ones(2, np.float64)])
    grad = np.ones(5, np.float64)
    with pytest.raises(TypeError, match="float64"):
        speed.adam_update(params, grad, 1.0, init_adam(params), 0.1, 10.0)


def test_global_norm_flat():
    grads = [np.array([3.0], np.float32), np.array([[4.0]], np.float32)]
    assert speed.global_norm_flat(speed.flat_of(grads)) == pytest.approx(5.0, rel=1e-15)
