"""Bad input gets a clear error of the right type that names the argument; nothing else escapes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rssm_np import Config, init_params, load, loss, make_dataset, predict, save

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(image_size=16, deter_size=8, stoch_size=3, hidden_size=8, embed_size=4)


@pytest.fixture(scope="module")
def model():
    config = Config(**SMALL)
    return init_params(config), config


def good_batch():
    return make_dataset(2, 3, size=16, seed=0)


def with_obs(transform):
    batch = good_batch()
    batch["obs"] = transform(batch["obs"])
    return batch


def with_actions(transform):
    batch = good_batch()
    batch["actions"] = transform(batch["actions"])
    return batch


def nan_frame(obs):
    obs = obs.copy()
    obs[0, 1, 2, 3] = np.nan
    return obs


def inf_frame(obs):
    obs = obs.copy()
    obs[0, 0, 0, 0] = np.inf
    return obs


# (description, call, expected type, words the message must contain)
DATASET_CASES = [
    ("n zero", lambda: make_dataset(0, 5), ValueError, "n"),
    ("n float", lambda: make_dataset(2.5, 5), TypeError, "n"),
    ("n bool", lambda: make_dataset(True, 5), TypeError, "n"),
    ("T negative", lambda: make_dataset(2, -1), ValueError, "T"),
    ("size too small", lambda: make_dataset(2, 5, size=4), ValueError, "size"),
    ("seed negative", lambda: make_dataset(2, 5, seed=-1), ValueError, "seed"),
    ("seed string", lambda: make_dataset(2, 5, seed="a"), TypeError, "seed"),
    ("unknown boundary", lambda: make_dataset(2, 5, boundary="wrap"), ValueError, "boundary"),
]

CONFIG_CASES = [
    ("zero deter", lambda: Config(deter_size=0), ValueError, "deter_size"),
    ("float image size", lambda: Config(image_size=32.0), TypeError, "image_size"),
    ("unknown dtype", lambda: Config(dtype="float16"), ValueError, "dtype"),
    ("zero min_std", lambda: Config(min_std=0.0), ValueError, "min_std"),
    ("negative learning rate", lambda: Config(learning_rate=-1e-3), ValueError, "learning_rate"),
    ("occlusion not bool", lambda: Config(occlusion="yes"), TypeError, "occlusion"),
    ("unknown boundary", lambda: Config(boundary="torus"), ValueError, "boundary"),
    ("nan free nats", lambda: Config(free_nats=float("nan")), ValueError, "free_nats"),
    ("unknown field", lambda: Config.from_dict({"deter": 3}), ValueError, "unknown"),
]


def loss_cases(params, config):
    def call(batch, **kwargs):
        return lambda: loss(params, batch, config, **kwargs)
    return [
        ("batch not a dict", call([1, 2]), TypeError, "batch"),
        ("batch without actions", call({"obs": good_batch()["obs"]}), ValueError, "actions"),
        ("obs of rank 3", call(with_obs(lambda o: o[0])), ValueError, "obs"),
        ("obs 28x28", call(with_obs(lambda o: np.zeros((2, 3, 28, 28)))), ValueError, "(..., 16, 16)"),
        ("obs with NaN", call(with_obs(nan_frame)), ValueError, "NaN"),
        ("obs above 1", call(with_obs(lambda o: o * 255)), ValueError, "[0, 1]"),
        ("obs of strings", call(with_obs(lambda o: np.full((2, 3, 16, 16), "x"))), TypeError, "obs"),
        ("actions 3 wide", call(with_actions(lambda a: np.zeros((2, 3, 3)))), ValueError, "actions"),
        ("actions too short", call(with_actions(lambda a: a[:, :2])), ValueError, "actions"),
        ("actions for other batch", call(with_actions(lambda a: np.zeros((5, 3, 2)))), ValueError, "actions"),
        ("mask of other shape", call({**good_batch(), "mask": np.zeros((2, 3, 8, 8), bool)}), ValueError, "mask"),
        ("seed negative", call(good_batch(), seed=-2), ValueError, "seed"),
        ("params from another config", lambda: loss(init_params(Config(**{**SMALL, "deter_size": 9})), good_batch(), config),
         ValueError, "different Config"),
        ("params not a dict", lambda: loss([1, 2], good_batch(), config), TypeError, "params"),
        ("config not a Config", lambda: loss(params, good_batch(), {"deter_size": 8}), TypeError, "config"),
    ]


def predict_cases(params, config):
    obs = good_batch()["obs"]
    return [
        ("obs of rank 3", lambda: predict(params, config, obs[0]), ValueError, "obs"),
        ("obs with inf", lambda: predict(params, config, inf_frame(obs)), ValueError, "obs"),
        ("obs a string", lambda: predict(params, config, "frames"), TypeError, "obs"),
        ("horizon zero", lambda: predict(params, config, obs, horizon=0), ValueError, "horizon"),
        ("horizon float", lambda: predict(params, config, obs, horizon=2.5), TypeError, "horizon"),
        ("actions too short", lambda: predict(params, config, obs, np.zeros((2, 3, 2)), horizon=4), ValueError,
         "C + horizon - 1"),
        ("samples zero", lambda: predict(params, config, obs, samples=0), ValueError, "samples"),
        ("obs of another size", lambda: predict(params, config, np.zeros((1, 2, 32, 32))), ValueError, "obs"),
    ]


def checkpoint_cases(params, config, tmp_path):
    good = str(tmp_path / "good.npz")
    save(good, params, config)
    truncated = str(tmp_path / "truncated.npz")
    with open(good, "rb") as source, open(truncated, "wb") as target:
        target.write(source.read()[:200])
    garbage = str(tmp_path / "garbage.npz")
    with open(garbage, "wb") as file:
        file.write(os.urandom(1000))
    foreign = str(tmp_path / "foreign.npz")
    np.savez(foreign, weights=np.zeros(3))
    future = str(tmp_path / "future.npz")
    with np.load(good) as archive:
        arrays = dict(archive)
    np.savez(future, **{**arrays, "format_version": np.array(99)})
    other_sizes = str(tmp_path / "other.npz")
    save(other_sizes, init_params(Config(**{**SMALL, "hidden_size": 6})), Config(**{**SMALL, "hidden_size": 6}))
    with np.load(other_sizes) as archive:
        arrays = dict(archive)
    mismatched = str(tmp_path / "mismatched.npz")
    np.savez(mismatched, **{**arrays, "config": np.array(json.dumps(Config(**SMALL).to_dict()))})
    nan_params = init_params(config)
    nan_params["gru"]["w"] = nan_params["gru"]["w"].copy()
    nan_params["gru"]["w"][0, 0] = np.nan
    return [
        ("load a missing file", lambda: load(str(tmp_path / "nothing.npz")), FileNotFoundError, "no checkpoint"),
        ("load a truncated file", lambda: load(truncated), ValueError, "truncated or corrupt"),
        ("load random bytes", lambda: load(garbage), ValueError, "truncated or corrupt"),
        ("load a foreign npz", lambda: load(foreign), ValueError, "not an rssm_np checkpoint"),
        ("load a future format", lambda: load(future), ValueError, "format version"),
        ("load sizes that disagree with its config", lambda: load(mismatched), ValueError, "shape"),
        ("load a path of the wrong type", lambda: load(3), TypeError, "path"),
        ("save without .npz", lambda: save(str(tmp_path / "model.pt"), params, config), ValueError, ".npz"),
        ("save NaN params", lambda: save(str(tmp_path / "nan.npz"), nan_params, config), ValueError, "NaN"),
        ("save with a dict config", lambda: save(str(tmp_path / "x.npz"), params, {"a": 1}), TypeError, "config"),
    ]


def run_all(cases):
    for description, call, expected, words in cases:
        with pytest.raises(Exception) as caught:
            call()
        assert type(caught.value) is expected, f"{description}: got {type(caught.value).__name__}: {caught.value}"
        assert words in str(caught.value), f"{description}: message {str(caught.value)!r} lacks {words!r}"
    return len(cases)


def test_bad_inputs_across_the_api(model, tmp_path):
    params, config = model
    count = run_all(DATASET_CASES)
    count += run_all(CONFIG_CASES)
    count += run_all(loss_cases(params, config))
    count += run_all(predict_cases(params, config))
    count += run_all(checkpoint_cases(params, config, tmp_path))
    assert count >= 30


CLI_CASES = [
    (["--steps", "0"], "--steps"),
    (["--steps", "abc"], "--steps"),
    (["--minutes", "-1"], "--minutes"),
    (["--seed", "-3"], "--seed"),
    (["--checkpoint-every", "0"], "--checkpoint-every"),
    (["--resume", "no/such/file.npz"], "--resume"),
    (["--colour"], "unrecognized arguments"),
]


@pytest.mark.parametrize("argv,words", CLI_CASES)
def test_bad_command_lines(argv, words):
    result = subprocess.run([sys.executable, "demo.py"] + argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert words in result.stderr
    assert "Traceback" not in result.stderr


def test_resume_past_the_requested_steps_is_refused(model, tmp_path):
    from rssm_np.training import init_train_state
    params, config = model
    state = init_train_state(config)
    state["step"] = 50
    path = save(str(tmp_path / "at50.npz"), params, config, state)
    result = subprocess.run([sys.executable, "demo.py", "--resume", path, "--steps", "40"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "already at step 50" in result.stderr
