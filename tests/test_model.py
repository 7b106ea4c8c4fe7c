"""The public API: shapes, determinism, predict, save and load."""

import os
import subprocess
import sys

import numpy as np
import pytest

from rssm_np import Config, imagine, init_params, loss, make_dataset, observe, predict
from rssm_np.checkpoint import load, save
from rssm_np.model import actions_into_frames, encode, unpack

SMALL = dict(image_size=16, deter_size=12, stoch_size=4, hidden_size=16, embed_size=8, batch_size=3, seq_len=6)


@pytest.fixture
def small():
    config = Config(**SMALL)
    return config, init_params(config, seed=0), make_dataset(3, 6, size=16, seed=0)


def test_loss_is_a_finite_scalar_and_the_same_seed_gives_the_same_value(small):
    config, params, batch = small
    a, b, c = loss(params, batch, config, seed=1), loss(params, batch, config, seed=1), loss(params, batch, config, seed=2)
    assert np.ndim(a) == 0 and np.isfinite(a)
    assert a == b
    assert a != c


def test_loss_stays_float32_in_float32():
    """autograd promotes to float64 on any float64 constant: the float32 path must stay float32."""
    from autograd import grad
    config = Config(**SMALL)
    params = init_params(config)
    batch = make_dataset(3, 6, size=16, seed=0)
    assert loss(params, batch, config).dtype == np.float32
    gradient = grad(loss)(params, batch, config)
    assert gradient["gru"]["w"].dtype == np.float32
    assert gradient["decoder"][0]["w"].dtype == np.float32


def test_observe_and_imagine_shapes(small):
    config, params, batch = small
    params = unpack(params)
    embed = encode(params, batch["obs"].reshape(18, -1)).reshape(3, 6, -1)
    eps = np.random.default_rng(0).standard_normal((3, 6, 4)).astype(np.float32)
    post = observe(params, config, embed, actions_into_frames(batch["actions"]), eps)
    assert post["deter"].shape == (3, 6, 12) and post["stoch"].shape == (3, 6, 4)
    assert np.all(post["post_std"] >= config.min_std)
    dream = imagine(params, config, post["deter"][:, -1], post["stoch"][:, -1], np.zeros((3, 5, 2), np.float32))
    assert dream["deter"].shape == (3, 5, 12) and dream["prior_mean"].shape == (3, 5, 4)


def test_observe_continues_from_a_state(small):
    """Filtering 6 frames at once equals filtering 3, then 3 more from the state reached."""
    config, params, batch = small
    params = unpack(params)
    embed = encode(params, batch["obs"].reshape(18, -1)).reshape(3, 6, -1)
    prev_actions = actions_into_frames(batch["actions"])
    for fused_core in (True, False):
        whole = observe(params, config, embed, prev_actions, fused_core=fused_core)
        first = observe(params, config, embed[:, :3], prev_actions[:, :3], fused_core=fused_core)
        state = (first["deter"][:, -1], first["stoch"][:, -1])
        rest = observe(params, config, embed[:, 3:], prev_actions[:, 3:], state=state, fused_core=fused_core)
        np.testing.assert_allclose(rest["deter"], whole["deter"][:, 3:], rtol=1e-5, atol=1e-6)


def test_predict_mean_path(small):
    config, params, batch = small
    frames = predict(params, config, batch["obs"][:, :4], horizon=5)
    assert frames.shape == (3, 5, 16, 16)
    assert frames.min() >= 0 and frames.max() <= 1
    again = predict(params, config, batch["obs"][:, :4], np.zeros((3, 8, 2)), horizon=5)
    np.testing.assert_array_equal(frames, again)


def test_predict_depends_on_actions():
    config = Config(**SMALL, control=True)
    params = init_params(config, seed=0)
    obs = make_dataset(2, 4, size=16, seed=0)["obs"]
    a = predict(params, config, obs, np.zeros((2, 6, 2)), horizon=3)
    b = predict(params, config, obs, np.ones((2, 6, 2)), horizon=3)
    assert not np.allclose(a, b)


def test_save_and_load_round_trip(small, tmp_path):
    config, params, batch = small
    path = save(tmp_path / "model.npz", params, config)
    loaded, loaded_config = load(path)
    assert loaded_config == config
    np.testing.assert_array_equal(loaded["gru"]["w"], params["gru"]["w"])
    np.testing.assert_array_equal(predict(loaded, loaded_config, batch["obs"][:, :3], horizon=4),
                                  predict(params, config, batch["obs"][:, :3], horizon=4))
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def test_predict_from_a_loaded_model_in_a_fresh_process(small, tmp_path):
    config, params, batch = small
    save(tmp_path / "model.npz", params, config)
    np.save(tmp_path / "obs.npy", batch["obs"][:, :3])
    expected = predict(params, config, batch["obs"][:, :3], horizon=4)
    code = ("import numpy as np, sys; from rssm_np import predict; from rssm_np.checkpoint import load; "
            f"out = predict(*load(sys.argv[1]), np.load(sys.argv[2]), horizon=4); np.save(sys.argv[3], out)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "model.npz"), str(tmp_path / "obs.npy"),
                    str(tmp_path / "out.npy")], check=True, cwd=root)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)
