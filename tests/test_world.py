"""The dot world: physics, rendering, occlusion and seeds."""

import numpy as np
import pytest

from rssm_np.lab.evaluate import centroid
from rssm_np.world import ACTION_GAIN, MAX_SPEED, make_dataset, render, step_state


def test_shapes_and_types():
    data = make_dataset(3, 7, size=32, seed=0, occlusion=True, control=True)
    assert data["obs"].shape == (3, 7, 32, 32) and data["obs"].dtype == np.float32
    assert data["actions"].shape == (3, 7, 2)
    assert data["states"].shape == (3, 7, 4)
    assert data["mask"].shape == (3, 7, 32, 32) and data["mask"].dtype == bool
    assert data["visible"].shape == (3, 7) and data["visible"].dtype == bool
    assert data["obs"].min() >= 0 and data["obs"].max() <= 1


def test_64_pixel_frames():
    data = make_dataset(2, 5, size=64, seed=0)
    assert data["obs"].shape == (2, 5, 64, 64)
    assert np.all(data["states"][..., :2] <= 63)


def test_bounce_keeps_speed_and_stays_inside():
    data = make_dataset(64, 200, size=32, seed=1, boundary="bounce")
    speed = np.linalg.norm(data["states"][..., 2:], axis=-1)
    np.testing.assert_allclose(speed, np.repeat(speed[:, :1], speed.shape[1], axis=1), rtol=1e-5)
    assert np.all(data["states"][..., :2] >= 0) and np.all(data["states"][..., :2] <= 31)
    # and it really bounced: some velocity component changed sign
    assert np.any(np.sign(data["states"][:, 1:, 2]) != np.sign(data["states"][:, :-1, 2]))


def test_clip_stays_inside_and_stops_at_walls():
    data = make_dataset(64, 200, size=32, seed=1, boundary="clip")
    pos = data["states"][..., :2]
    assert np.all(pos >= 0) and np.all(pos <= 31)
    at_wall = (pos[..., 0] == 0) | (pos[..., 0] == 31)
    assert at_wall.any()
    assert np.all(data["states"][..., 2][at_wall] == 0)


def test_position_follows_velocity():
    data = make_dataset(8, 10, seed=3)
    s = data["states"]
    inside = np.all((s[:, 1:, :2] > 2) & (s[:, 1:, :2] < 29) & (s[:, :-1, :2] > 2) & (s[:, :-1, :2] < 29), axis=-1)
    moved = s[:, 1:, :2] - s[:, :-1, :2]
    np.testing.assert_allclose(moved[inside], s[:, :-1, 2:][inside], atol=1e-5)


def test_dot_is_drawn_at_the_state():
    data = make_dataset(16, 5, seed=4)
    inner = np.all((data["states"][..., :2] > 5) & (data["states"][..., :2] < 26), axis=-1)
    error = np.linalg.norm(centroid(data["obs"]) - data["states"][..., :2], axis=-1)
    assert error[inner].max() < 0.05


def test_occlusion_never_changes_the_state():
    plain = make_dataset(16, 40, seed=5, control=True)
    occluded = make_dataset(16, 40, seed=5, occlusion=True, control=True)
    np.testing.assert_array_equal(plain["states"], occluded["states"])
    np.testing.assert_array_equal(plain["actions"], occluded["actions"])
    assert occluded["mask"].any() and not plain["mask"].any()
    assert not occluded["visible"].all() and plain["visible"].all()
    # hidden pixels are black; unhidden pixels are the plain frames
    assert np.all(occluded["obs"][occluded["mask"]] == 0)
    np.testing.assert_array_equal(occluded["obs"][~occluded["mask"]], plain["obs"][~occluded["mask"]])


def test_occluders_persist_for_several_frames():
    data = make_dataset(32, 60, seed=6, occlusion=True)
    covered = data["mask"].any(axis=(2, 3))           # (n, T)
    runs = []
    for row in covered:
        length = 0
        for c in list(row) + [False]:
            if c:
                length += 1
            elif length:
                runs.append(length)
                length = 0
    assert min(runs) >= 3 or all(r >= 3 for r in runs[:-1])
    assert max(runs) >= 3


def test_same_seed_same_data_and_other_seed_other_data():
    a = make_dataset(4, 10, seed=7, occlusion=True, control=True)
    b = make_dataset(4, 10, seed=7, occlusion=True, control=True)
    c = make_dataset(4, 10, seed=8, occlusion=True, control=True)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["states"], c["states"])


def test_actions_push_the_velocity():
    state = np.array([[10.0, 10.0, 0.5, 0.0]])
    pushed = step_state(state, np.array([[1.0, -1.0]]), 32, "bounce")
    np.testing.assert_allclose(pushed[0, 2:], [0.5 + ACTION_GAIN, -ACTION_GAIN])
    fast = step_state(np.array([[10.0, 10.0, MAX_SPEED, 0.0]]), np.array([[1.0, 0.0]]), 32, "bounce")
    assert np.linalg.norm(fast[0, 2:]) == pytest.approx(MAX_SPEED)


def test_without_control_actions_are_zero():
    assert not make_dataset(2, 5, seed=0)["actions"].any()
    assert make_dataset(2, 5, seed=0, control=True)["actions"].any()


@pytest.mark.parametrize("size", [8, 10, 16])
def test_occluders_fit_small_screens(size):
    data = make_dataset(16, 30, size=size, seed=2, occlusion=True)
    assert data["mask"].any()


def test_random_walls_redraw_the_velocity_only_at_wall_hits_pointing_away():
    data = make_dataset(64, 120, size=32, seed=2, boundary="random")
    states, events = data["states"].astype(np.float64), data["events"]
    assert events.shape == (64, 120) and events.dtype == bool and events.any() and not events[:, 0].any()
    vel = states[..., 2:]
    speed = np.linalg.norm(vel, axis=-1)
    assert np.all(speed >= 0.5 - 1e-5) and np.all(speed <= MAX_SPEED + 1e-5)
    changed = np.any(np.abs(vel[:, 1:] - vel[:, :-1]) > 1e-6, axis=-1)     # velocity changed into frame t+1
    np.testing.assert_array_equal(changed, events[:, 1:])                  # only where a wall redrew it
    # away from the wall hit: where the old velocity led out of the screen, the new one points back in
    before = states[:, :-1]
    moved = before[..., :2] + before[..., 2:]                               # where the old velocity led
    for axis in (0, 1):
        low, high = moved[..., axis] < 0, moved[..., axis] > 31
        new_vel = vel[:, 1:, axis]
        assert np.all(new_vel[low & events[:, 1:]] > 0)                     # left the low wall inward
        assert np.all(new_vel[high & events[:, 1:]] < 0)                    # left the high wall inward
    # free flight stays deterministic: position advances by exactly the velocity between events
    free, pos = ~events[:, 1:], states[..., :2]
    np.testing.assert_allclose(pos[:, 1:][free], (pos[:, :-1] + vel[:, :-1])[free], atol=1e-4)


@pytest.mark.parametrize("boundary, occlusion, fingerprint", [
    ("bounce", False, "9ce869fc298742ee"), ("bounce", True, "64b383ba50e0bede"),
    ("clip", False, "f5676c37265ac85f"), ("clip", True, "f440d391ac54d9e6")])
def test_bounce_and_clip_data_are_bit_identical_to_before_random_walls(boundary, occlusion, fingerprint):
    """Fingerprints of the world before the random walls were added: same seeds, same bits.

    Re-taken once, when render began cutting the dot's tail at PIXEL_FLOOR: the new fingerprints
    are those of the old world's data with pixels below 1e-12 set to 0 (checked when they changed),
    so nothing but those invisible pixels moved.
    """
    import hashlib
    data = make_dataset(4, 12, size=16, seed=7, occlusion=occlusion, control=occlusion, boundary=boundary)
    digest = hashlib.sha256()
    for key in ("obs", "actions", "states", "mask", "visible"):
        digest.update(data[key].tobytes())
    assert digest.hexdigest()[:16] == fingerprint
    assert not data["events"].any()


def test_random_walls_need_a_generator():
    with pytest.raises(ValueError, match="rng"):
        step_state(np.array([[0.5, 5.0, -1.0, 0.0]]), np.zeros((1, 2)), 32, "random")


def test_render_cuts_the_tail_below_the_floor_and_nothing_else():
    """Above PIXEL_FLOOR the frame is the Gaussian exp(-d^2 / 2 sigma^2) to float32 rounding; below
    it, 0. No pixel is a float32 subnormal (they made the matrix products 20x slower)."""
    from rssm_np.world import DOT_SIGMA, PIXEL_FLOOR
    positions = np.array([[3.3, 28.1], [15.5, 15.5], [-4.0, 40.0]])
    image = render(positions, 32)
    grid = np.arange(32)
    exact = np.exp(-((grid[None, :, None] - positions[:, 1, None, None]) ** 2
                     + (grid[None, None, :] - positions[:, 0, None, None]) ** 2) / (2 * DOT_SIGMA ** 2))
    above = exact >= PIXEL_FLOOR * 1.001
    np.testing.assert_allclose(image[above], exact[above], rtol=1e-5)
    assert np.all(image[exact < PIXEL_FLOOR * 0.999] == 0)
    assert not np.any((image > 0) & (image < np.finfo(np.float32).tiny))
    assert image.dtype == np.float32
