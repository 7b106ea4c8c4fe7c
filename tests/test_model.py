"""The public API: shapes, determinism, predict, save and load."""

import os
import subprocess
import sys

import numpy as np
import pytest

from rssm_np import Config, imagine, init_params, loss, make_dataset, observe, predict
from rssm_np.checkpoint import load, save
from rssm_np.model import encode
from rssm_np.utils.speed import unpack
from rssm_np.world import actions_into_frames

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
    post, _ = observe(params, config, embed, actions_into_frames(batch["actions"]), eps)
    assert post["deter"].shape == (3, 6, 12) and post["stoch"].shape == (3, 6, 4)
    assert np.all(post["std"] >= config.min_std)
    last = {key: post[key][:, -1] for key in post}                                 # (B, .)
    dream = imagine(params, config, last, np.zeros((3, 5, 2), np.float32))
    assert dream["deter"].shape == (3, 5, 12) and dream["mean"].shape == (3, 5, 4)


def test_observe_continues_from_a_state(small):
    """Filtering 6 frames at once equals filtering 3, then 3 more from the state reached."""
    config, params, batch = small
    params = unpack(params)
    embed = encode(params, batch["obs"].reshape(18, -1)).reshape(3, 6, -1)
    prev_actions = actions_into_frames(batch["actions"])
    for fused_core in (True, False):
        whole, _ = observe(params, config, embed, prev_actions, fused_core=fused_core)
        first, _ = observe(params, config, embed[:, :3], prev_actions[:, :3], fused_core=fused_core)
        state = {key: first[key][:, -1] for key in first}                          # the state reached, (B, .)
        rest, _ = observe(params, config, embed[:, 3:], prev_actions[:, 3:], state=state, fused_core=fused_core)
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
            "out = predict(*load(sys.argv[1]), np.load(sys.argv[2]), horizon=4); np.save(sys.argv[3], out)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "model.npz"), str(tmp_path / "obs.npy"),
                    str(tmp_path / "out.npy")], check=True, cwd=root)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)


@pytest.mark.parametrize("model", ["rssm", "rnn", "ssm"])
def test_obs_step_is_the_prior_step_then_the_posterior(model):
    """obs_step = img_step, then correct z with the image: both share h_t, only z differs."""
    from rssm_np.model import img_step, initial_state, obs_step
    config = Config(**SMALL, model=model)
    params = init_params(config, seed=1)
    rng = np.random.default_rng(0)
    state = {"deter": rng.standard_normal((3, 12)).astype(np.float32), "stoch": rng.standard_normal((3, 4)).astype(np.float32)}
    action, embed = rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal((3, 8)).astype(np.float32)
    post, prior = obs_step(params, config, state, action, embed)
    dream = img_step(params, config, state, action)
    for key in ("deter", "mean", "std", "stoch"):
        np.testing.assert_array_equal(prior[key], dream[key])
    np.testing.assert_array_equal(post["deter"], prior["deter"])
    assert not np.allclose(post["mean"], prior["mean"])
    empty = initial_state(config, 3)
    assert empty["deter"].shape == (3, 12) and empty["deter"].dtype == np.float32     # config.dtype


@pytest.mark.parametrize("model, fused_core", [("rssm", True), ("rssm", False), ("rnn", True), ("ssm", False)])
def test_observe_and_imagine_return_the_state_the_steps_return(model, fused_core):
    """One state type: observe's post and prior and imagine's dream have exactly the four keys of
    obs_step's and img_step's states, and their first step is those steps' own state."""
    from rssm_np.model import img_step, initial_state, obs_step
    config = Config(**SMALL, model=model, control=True)
    params = init_params(config, seed=2)
    batch = make_dataset(3, 6, size=16, seed=2, control=True)
    embed = encode(params, batch["obs"].reshape(18, -1)).reshape(3, 6, -1)                 # (B, T, E)
    prev_actions = actions_into_frames(batch["actions"])
    empty = initial_state(config, 3)
    post, prior = observe(params, config, embed, prev_actions, fused_core=fused_core)
    dream = imagine(params, config, empty, prev_actions)
    step_post, step_prior = obs_step(params, config, empty, prev_actions[:, 0], embed[:, 0])
    step_dream = img_step(params, config, empty, prev_actions[:, 0])
    keys = {"deter", "stoch", "mean", "std"}
    assert set(step_post) == set(step_prior) == set(step_dream) == keys
    assert set(post) == set(prior) == set(dream) == keys
    for key in keys:
        np.testing.assert_allclose(post[key][:, 0], step_post[key], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(prior[key][:, 0], step_prior[key], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(dream[key][:, 0], step_dream[key])


def test_only_variants_names_the_models_in_the_core_code():
    """model.py, training.py and levers.py ask variants.py what a model does and never test a model
    name themselves: no string constant "rnn" or "ssm" in their code (docstrings and comments may
    name them; a docstring is never exactly one of those words). variants.py, where the names
    belong, shows the search finds them."""
    import ast
    import pathlib
    import rssm_np

    def model_names(name):
        tree = ast.parse((pathlib.Path(rssm_np.__file__).parent / name).read_text())
        return [(name, node.lineno, node.value) for node in ast.walk(tree)
                if isinstance(node, ast.Constant) and node.value in ("rnn", "ssm")]

    for name in ("model.py", "training.py", "levers.py"):
        assert model_names(name) == []
    assert {value for _, _, value in model_names("variants.py")} == {"rnn", "ssm"}


def test_rnn_samples_are_one_future():
    """The deterministic variant has no random variable: M samples are M identical futures."""
    config = Config(**SMALL, model="rnn")
    params = init_params(config, seed=0)
    obs = make_dataset(2, 4, size=16, seed=5)["obs"]
    futures = predict(params, config, obs, horizon=5, samples=4, seed=3)
    for m in range(1, 4):
        np.testing.assert_array_equal(futures[:, m], futures[:, 0])
    np.testing.assert_array_equal(futures[:, 0], predict(params, config, obs, horizon=5))


def test_ssm_has_no_deterministic_state():
    """z_t ~ p(z_t | z_{t-1}, a_{t-1}): the step ignores h_{t-1}, and the decoder reads z alone."""
    from rssm_np.model import img_step, obs_step
    config = Config(**SMALL, model="ssm")
    params = init_params(config, seed=0)
    assert "gru" not in params and params["decoder"][0]["w"].shape[0] == config.stoch_size
    rng = np.random.default_rng(1)
    stoch, action = rng.standard_normal((3, 4)), rng.standard_normal((3, 2))
    embed, eps = rng.standard_normal((3, 8)), rng.standard_normal((3, 4))
    a = {"deter": np.zeros((3, 12)), "stoch": stoch}
    b = {"deter": rng.standard_normal((3, 12)), "stoch": stoch}
    for key in ("deter", "stoch", "mean", "std"):
        np.testing.assert_array_equal(img_step(params, config, a, action, eps)[key], img_step(params, config, b, action, eps)[key])
        np.testing.assert_array_equal(obs_step(params, config, a, action, embed, eps)[0][key],
                                      obs_step(params, config, b, action, embed, eps)[0][key])
    from rssm_np.model import decode
    np.testing.assert_array_equal(decode(params, config, {"deter": np.zeros((3, 12)), "stoch": stoch}),
                                  decode(params, config, {"deter": np.ones((3, 12)), "stoch": stoch}))


@pytest.mark.parametrize("model", ["rnn", "ssm"])
def test_each_variant_trains_saves_loads_and_predicts(model, tmp_path):
    from rssm_np.training import train
    config = Config(**SMALL, model=model, boundary="random")
    state = train(config, steps=2)
    path = save(tmp_path / "model.npz", state["params"], config, state)
    loaded, loaded_config = load(path)
    assert loaded_config.model == model and loaded_config.boundary == "random"
    obs = make_dataset(2, 3, size=16, seed=1, boundary="random")["obs"]
    np.testing.assert_array_equal(predict(loaded, loaded_config, obs, horizon=3, samples=2),
                                  predict(state["params"], config, obs, horizon=3, samples=2))


def test_a_checkpoint_without_a_model_field_loads_as_the_rssm(small, tmp_path):
    """Checkpoints written before Config.model existed hold no "model" field: they are RSSMs."""
    import json
    config, params, _ = small
    path = save(tmp_path / "model.npz", params, config)
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    old = json.loads(str(arrays["config"]))
    del old["model"]
    arrays["config"] = np.array(json.dumps(old))
    np.savez(tmp_path / "old.npz", **arrays)
    assert load(tmp_path / "old.npz")[1].model == "rssm"


def test_the_rssm_starts_from_the_same_weights_as_before_the_variants():
    """A fingerprint of init_params taken before Config.model existed: a seed still gives the same
    weights, so every measured result stays valid."""
    import hashlib
    from rssm_np.utils.trees import tree_leaves
    digest = hashlib.sha256()
    for leaf in tree_leaves(init_params(Config(**SMALL), seed=3)):
        digest.update(leaf.tobytes())
    assert digest.hexdigest()[:16] == "e8ccdfc5fdd688a9"
