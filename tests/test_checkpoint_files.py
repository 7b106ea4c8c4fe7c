"""What save writes, load reads; what load reads is checked; files from strangers get a sentence."""

import dataclasses
import json
import os
import stat
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from rssm_np import Config, init_params, load, predict, save, train
from rssm_np.checkpoint import load_train_state
from rssm_np.utils.files import write_atomically
from rssm_np.config import param_shapes
from rssm_np.training import init_train_state, training_batch
from rssm_np.utils.trees import tree_items
from rssm_np.world import make_dataset

SMALL = dict(image_size=16, deter_size=8, stoch_size=3, hidden_size=8, embed_size=4, batch_size=2, seq_len=4)


@pytest.fixture(scope="module")
def model():
    config = Config(**SMALL)
    return init_params(config), config


def rewrite(source, target, **changes):
    """A copy of the checkpoint `source` with some members replaced (None: removed)."""
    with np.load(source) as archive:
        arrays = dict(archive)
    arrays.update(changes)
    np.savez(target, **{key: value for key, value in arrays.items() if value is not None})
    return str(target)


def test_param_shapes_are_the_shapes_init_params_builds_in_its_order():
    for sizes in (SMALL, dict(image_size=8, action_size=3, deter_size=5, stoch_size=2, hidden_size=7, embed_size=6),
                  dict(SMALL, model="rnn"), dict(SMALL, model="ssm")):
        config = Config(**sizes)
        built = [(name, leaf.shape) for name, leaf in tree_items(init_params(config))]
        assert built == tree_items(param_shapes(config))


def test_numpy_scalars_in_a_config_are_stored_as_plain_values(model, tmp_path):
    config = Config(**{**SMALL, "deter_size": np.int64(8)}, learning_rate=np.float32(3e-3), occlusion=np.bool_(True))
    assert type(config.deter_size) is int and type(config.learning_rate) is float and config.occlusion is True
    path = save(str(tmp_path / "m.npz"), init_params(config), config)
    assert load(path)[1] == config


def test_save_refuses_what_load_would_refuse(model, tmp_path):
    params, config = model
    other = init_params(Config(**{**SMALL, "hidden_size": 6}))
    mutated = Config(**SMALL)
    with pytest.raises(dataclasses.FrozenInstanceError):      # a Config cannot be changed after it is made
        mutated.dtype = "float16"
    object.__setattr__(mutated, "dtype", "float16")             # forced past the freeze: save checks it again
    target = str(tmp_path / "good.npz")
    save(target, params, config)
    before = open(target, "rb").read()
    cases = [
        (lambda: save(target, other, config), "shape"),
        (lambda: save(target, {"a": np.zeros(3)}, config), "does not build"),
        (lambda: save(target, params, mutated), "config.dtype"),
        (lambda: save(target, params, config, {"step": -1, "adam": {"step": 0, "m": [], "v": []}, "history": []}),
         ">= 0"),
    ]
    for call, words in cases:
        with pytest.raises(ValueError, match=words):
            call()
    assert open(target, "rb").read() == before           # the good file is untouched
    assert sorted(os.listdir(tmp_path)) == ["good.npz"]


def test_load_checks_values_after_the_cast_to_the_model_dtype(model, tmp_path):
    params, config = model
    good = save(str(tmp_path / "good.npz"), params, config)
    huge = np.full(param_shapes(config)["gru"]["w"], 1e39)          # finite in float64, inf in float32
    with pytest.raises(ValueError, match=r"params/gru/w.*NaN or inf \(in float32\)"):
        load(rewrite(good, tmp_path / "huge.npz", **{"params/gru/w": huge}))


def test_files_from_strangers_get_a_clear_error(model, tmp_path):
    params, config = model
    good = save(str(tmp_path / "good.npz"), params, config)
    renamed = str(tmp_path / "array.npz")
    with open(renamed, "wb") as file:
        np.save(file, np.zeros(3))
    shape = param_shapes(config)["gru"]["w"]
    big_config = json.dumps({**config.to_dict(), "hidden_size": 10 ** 7})
    cases = [
        (renamed, "not an .npz archive"),
        (rewrite(good, tmp_path / "v.npz", format_version=np.array("one")), "format_version' must be one integer"),
        (rewrite(good, tmp_path / "s.npz", **{"params/gru/w": np.full(shape, "x")}), "must hold floats"),
        (rewrite(good, tmp_path / "c.npz", **{"params/gru/w": np.zeros(shape, complex)}), "must hold floats"),
        (rewrite(good, tmp_path / "b.npz", **{"params/gru/w": np.zeros(shape, bool)}), "must hold floats"),
        (rewrite(good, tmp_path / "cfg.npz", config=np.array("[1, 2]")), "not a dict"),
        (rewrite(good, tmp_path / "big.npz", config=np.array(big_config)), "config.hidden_size=10000000 is too large"),
    ]
    for path, words in cases:
        with pytest.raises(ValueError, match=words):
            load(path)


def test_load_reads_only_the_members_it_expects(model, tmp_path):
    params, config = model
    path = save(str(tmp_path / "m.npz"), params, config)
    # A member whose header claims 1 GiB, with no data: reading it would fail (or allocate 1 GiB).
    header = b"\x93NUMPY\x01\x00" + b"{'descr': '<f4', 'fortran_order': False, 'shape': (268435456,), }".ljust(118) + b"\n"
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("unknown.npy", header)
    loaded, _ = load(path)
    np.testing.assert_array_equal(loaded["gru"]["w"], params["gru"]["w"])


def test_a_training_state_is_validated_key_by_key(tmp_path):
    config = Config(**SMALL)
    state = train(config, steps=1)
    good = save(str(tmp_path / "good.npz"), state["params"], config, state)
    with np.load(good) as archive:
        moment = archive["train/adam_m/0"]
    cases = [
        (rewrite(good, tmp_path / "a.npz", **{"train/adam_step": None}), "no 'train/adam_step'"),
        (rewrite(good, tmp_path / "b.npz", **{"train/step": np.array(-5)}), "'train/step' must be >= 0"),
        (rewrite(good, tmp_path / "c.npz", **{"train/adam_m/0": np.full_like(moment, np.nan)}), "NaN or inf"),
        (rewrite(good, tmp_path / "d.npz", **{"train/history": np.array("{}")}), "must be a list"),
    ]
    for path, words in cases:
        with pytest.raises(ValueError, match=words):
            load_train_state(path)


def test_saved_files_keep_their_mode_follow_symlinks_and_clean_stale_temporaries(model, tmp_path):
    params, config = model
    real = str(tmp_path / "real.npz")
    save(real, params, config)
    os.chmod(real, 0o644)
    save(real, params, config)
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o644
    link = str(tmp_path / "link.npz")
    os.symlink(real, link)
    save(link, params, config)
    assert os.path.islink(link) and os.path.samefile(link, real)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".tmp-{dead}-abc.npz"
    stale.write_bytes(b"half a checkpoint")
    save(real, params, config)
    assert sorted(os.listdir(tmp_path)) == ["link.npz", "real.npz"]


def test_write_atomically_never_leaves_a_shared_temporary_name(tmp_path):
    names = []

    def write(file):
        names.extend(name for name in os.listdir(tmp_path) if name.startswith(".tmp-"))
        file.write(b"{}")

    write_atomically(str(tmp_path / "metrics.json"), write)
    write_atomically(str(tmp_path / "metrics.json"), write)
    assert names[0] != names[1] and str(os.getpid()) in names[0]
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_train_arguments_and_sizes_are_checked_before_anything_runs():
    config = Config(**SMALL)
    with pytest.raises(TypeError, match="steps"):
        train(config, steps=float("nan"))
    with pytest.raises(ValueError, match="seconds"):
        train(config, seconds=float("nan"))
    with pytest.raises(ValueError, match="config.batch_size=1000000000 is too large"):
        train(Config(**{**SMALL, "batch_size": 10 ** 9}), steps=1)


def test_values_that_overflow_float32_are_refused(model):
    params, config = model
    obs = make_dataset(1, 3, size=16)["obs"]
    with pytest.raises(ValueError, match="actions must fit in float32"):
        predict(params, config, obs, np.full((1, 4, 2), 1e39), horizon=2)
    with pytest.raises(ValueError, match="config.learning_rate must be <="):
        Config(learning_rate=1e39)
    with pytest.raises(ValueError, match="config.min_learning_rate .* must be <= config.learning_rate"):
        Config(learning_rate=1e-3, min_learning_rate=1e-2)


def test_train_takes_batches_from_a_user_function():
    config = Config(**SMALL)
    asked = []

    def my_world(step):
        asked.append(step)
        return make_dataset(2, 4, size=16, seed=(7, step), control=True)

    state = train(config, steps=2, batches=my_world)
    assert asked == [0, 1] and state["step"] == 2
    default = train(config, steps=2)
    assert not np.array_equal(state["params"]["gru"]["w"], default["params"]["gru"]["w"])
    assert training_batch(config, 0)["obs"].shape == (2, 4, 16, 16)
    with pytest.raises(ValueError, match=r"batch\['obs'\]"):
        train(config, steps=1, batches=lambda step: {**my_world(step), "obs": my_world(step)["obs"] * 255})
    state = init_train_state(config)
    assert train(config, steps=0, state=state) is state
