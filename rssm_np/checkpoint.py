"""Checkpoints: a model (params, config) and optionally its training state in one .npz file.

What save writes, load reads: save lays out the arrays of the file, checks them with the very
reader load uses, and only then writes. That reader takes only the members it expects (by shapes
the config computes, before allocating anything), checks each one's dtype and shape, and checks
finiteness after the cast to the model's dtype; it never hands back a half-built model.

Writes are atomic (utils.files.write_atomically: a temporary file in the same folder, then os.replace), so a
crash or Ctrl-C mid-write leaves the previous file intact.
"""

import dataclasses
import json
import math
import os
import zipfile

import numpy as np          # plain NumPy (the model's traced NumPy is autograd.numpy, in model.py)

from .config import Config, check_config, check_fits_memory, param_shapes
from .utils.files import write_atomically
from .utils.trees import tree_items, tree_leaves, tree_rebuild
from .utils.validate import is_config

FORMAT_VERSION = 1
_PARAM_PREFIX = "params/"
_TRAIN_PREFIX = "train/"
_SMALL_MEMBER = 1 << 20        # bytes: the most a version, a step count or a config may take
_NPY_HEADER = 4096             # bytes: room for an .npy member's header on top of its data


def _check_path(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return os.fspath(path)


def save(path, params, config, train_state=None):
    """Write params, config (and a training state, if given) to `path` (.npz), atomically.

    Refuses anything load() would refuse: params that are not the ones `config` builds, values
    that are not finite in the config's dtype (a diverged model never replaces a good file), a
    training state with a missing or impossible entry.
    """
    if not is_config(config):
        raise TypeError(f"config must be a rssm_np.Config, got {type(config).__name__}")
    check_config(config)                     # a Config mutated after it was made is checked again
    path = _check_path(path)
    if not path.endswith(".npz"):
        raise ValueError(f"path must end with '.npz', got {path!r}")
    if not isinstance(params, dict):
        raise TypeError(f"params must be the dict from init_params(config), got {type(params).__name__}")
    arrays = {_PARAM_PREFIX + name: np.asarray(leaf) for name, leaf in tree_items(params)}
    extra = sorted(set(arrays) - {_PARAM_PREFIX + name for name, _ in tree_items(param_shapes(config))})
    if extra:
        raise ValueError(f"params has entries {extra} that init_params(config) does not build")
    arrays["format_version"] = np.array(FORMAT_VERSION)
    arrays["config"] = np.array(json.dumps(config.to_dict()))
    if train_state is not None:
        arrays.update(_train_arrays(train_state))
    reader = _Members(arrays, "the checkpoint to save")
    params, _ = _model_from(reader)
    if train_state is not None:
        _train_state_from(reader, params)
    for key in arrays:
        if key.startswith((_PARAM_PREFIX, _TRAIN_PREFIX + "adam_m/", _TRAIN_PREFIX + "adam_v/")):
            arrays[key] = arrays[key].astype(config.dtype)
    return write_atomically(path, lambda file: np.savez(file, **arrays))


def _train_arrays(train_state):
    """The file's layout of a training state: step, Adam's step and moments, the history as JSON."""
    try:
        arrays = {_TRAIN_PREFIX + "step": np.array(train_state["step"]),
                  _TRAIN_PREFIX + "adam_step": np.array(train_state["adam"]["step"])}
        for name in ("m", "v"):
            for i, moment in enumerate(train_state["adam"][name]):
                arrays[f"{_TRAIN_PREFIX}adam_{name}/{i}"] = np.asarray(moment)
        history = train_state["history"]
    except (KeyError, TypeError) as error:
        raise ValueError(f"train_state must be the dict train() returns (step, adam, history), "
                         f"got one without {error}") from None
    try:
        arrays[_TRAIN_PREFIX + "history"] = np.array(json.dumps(history))
    except (TypeError, ValueError) as error:
        raise ValueError(f"train_state['history'] must be plain numbers and strings (JSON): {error}") from None
    return arrays


class _Members:
    """The arrays of a checkpoint, read one member at a time and only when asked for.

    From a file: a member is read only if its size fits what the caller expects, so an unknown
    or inflated member costs nothing. From a dict: the arrays save() is about to write.
    """

    def __init__(self, source, where):
        self.where, self.archive, self.sizes = where, None, None
        if isinstance(source, dict):
            self.arrays = source
            return
        self.arrays = None
        try:
            with zipfile.ZipFile(source) as archive:
                self.sizes = {info.filename[:-4]: info.file_size for info in archive.infolist()
                              if info.filename.endswith(".npy")}
            self.archive = np.load(source, allow_pickle=False)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
            raise ValueError(f"{where} is truncated or corrupt, or not an .npz archive "
                             f"({type(error).__name__}: {error})") from None

    def __contains__(self, key):
        return key in (self.arrays if self.arrays is not None else self.sizes)

    def get(self, key, max_bytes):
        if key not in self:
            raise ValueError(f"{self.where} has no '{key}'")
        if self.arrays is not None:
            return self.arrays[key]
        if self.sizes[key] > max_bytes:
            raise ValueError(f"{self.where}: '{key}' takes {self.sizes[key]} bytes, more than the "
                             f"{max_bytes} its config allows; refusing to read it")
        try:
            value = self.archive[key]
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as error:
            raise ValueError(f"{self.where} is truncated or corrupt ({type(error).__name__}: {error})") from None
        # np.load hands back a member without an .npy header as raw bytes: not an array at all.
        if not isinstance(value, np.ndarray):
            raise ValueError(f"{self.where}: '{key}' is not an array (it holds {type(value).__name__}); the file is "
                             f"damaged, or not an rssm_np checkpoint")
        return value

    def close(self):
        if self.archive is not None:
            self.archive.close()

    def integer(self, key, minimum=0):
        value = self.get(key, _SMALL_MEMBER)
        if value.shape != () or value.dtype.kind not in "iu":
            raise ValueError(f"{self.where}: '{key}' must be one integer, got {value.dtype} of shape {value.shape}")
        if int(value) < minimum:
            raise ValueError(f"{self.where}: '{key}' must be >= {minimum}, got {int(value)}")
        return int(value)

    def json(self, key, max_bytes=_SMALL_MEMBER):
        value = self.get(key, max_bytes)
        if value.shape != () or value.dtype.kind != "U":
            raise ValueError(f"{self.where}: '{key}' must be one JSON string, got {value.dtype} of shape {value.shape}")
        try:
            return json.loads(str(value))
        except json.JSONDecodeError as error:
            raise ValueError(f"{self.where}: '{key}' is not readable JSON ({error})") from None

    def floats(self, key, shape, dtype):
        """A float array of exactly this shape, cast to `dtype` and finite after the cast."""
        value = self.get(key, 8 * math.prod(shape) + _NPY_HEADER)
        if value.dtype.kind != "f":
            raise ValueError(f"{self.where}: '{key}' must hold floats, got dtype {value.dtype}")
        if value.shape != tuple(shape):
            raise ValueError(f"{self.where}: '{key}' has shape {value.shape}, but its config builds {tuple(shape)}")
        with np.errstate(over="ignore"):          # an overflow is what the next line reports
            value = value.astype(dtype)
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{self.where}: '{key}' holds NaN or inf (in {dtype})")
        return value


def _config_from(members):
    """The Config of a checkpoint, from its format version and config members alone."""
    if "format_version" not in members or "config" not in members:
        raise ValueError(f"{members.where} is not an rssm_np checkpoint (no format_version or config)")
    version = members.integer("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{members.where} has format version {version}; this rssm_np reads version {FORMAT_VERSION}")
    values = members.json("config")
    if not isinstance(values, dict):
        raise ValueError(f"{members.where} has a config that is not a dict of fields: {values!r}"[:300])
    try:
        config = Config.from_dict(values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{members.where} has an invalid config: {error}") from None
    return config


def _model_from(members):
    """(params, config) from a checkpoint's members, every array checked against the config."""
    config = _config_from(members)
    try:
        check_fits_memory(config, training=False)
    except ValueError as error:
        raise ValueError(f"{members.where}: {error}") from None
    shapes = param_shapes(config)
    leaves = [members.floats(_PARAM_PREFIX + name, shape, config.dtype) for name, shape in tree_items(shapes)]
    return tree_rebuild(shapes, leaves), config


def _train_state_from(members, params):
    """The training state for `params`, checked key by key (None if the file holds none)."""
    if _TRAIN_PREFIX + "step" not in members:
        return None
    step = members.integer(_TRAIN_PREFIX + "step")
    adam_step = members.integer(_TRAIN_PREFIX + "adam_step")
    leaves = tree_leaves(params)
    moments = {name: [members.floats(f"{_TRAIN_PREFIX}adam_{name}/{i}", leaf.shape, leaf.dtype)
                      for i, leaf in enumerate(leaves)] for name in ("m", "v")}
    if any(np.any(v < 0) for v in moments["v"]):
        raise ValueError(f"{members.where}: Adam's second moments 'train/adam_v/*' must be >= 0")
    # A history entry takes ~500 bytes as NumPy text; allow ample room, but not a gigabyte.
    history = members.json(_TRAIN_PREFIX + "history", _SMALL_MEMBER + 4096 * (step + 1))
    if not isinstance(history, list):
        raise ValueError(f"{members.where}: 'train/history' must be a list, got {type(history).__name__}")
    return {"params": params, "adam": {"step": adam_step, "m": moments["m"], "v": moments["v"]},
            "step": step, "history": history}


def _open(path):
    path = _check_path(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    return _Members(path, f"checkpoint {path!r}")


def peek(path):
    """(config, step) of a checkpoint, reading only those two members (no parameters): step is
    None for a model without a training state. Raises ValueError for a file load would refuse
    at those members; its parameters are checked only by load."""
    members = _open(path)
    try:
        config = _config_from(members)
        step = members.integer(_TRAIN_PREFIX + "step") if _TRAIN_PREFIX + "step" in members else None
        return config, step
    finally:
        members.close()


def same_run(config, other):
    """True if two configs train the same model the same way (`fused` only picks how the same
    numbers are computed, so it may differ)."""
    return dataclasses.replace(config, fused=True) == dataclasses.replace(other, fused=True)


def furthest_along(paths, config, steps=None):
    """Of the checkpoints at `paths` that continue a run of `config` (a training state, at most
    `steps` steps along), the furthest along: (path, step), or None. Missing or unreadable
    files are skipped: they hold no state this run owns."""
    best = None
    for path in paths:
        try:
            saved, step = peek(path)
        except (OSError, ValueError):
            continue
        if step is not None and same_run(saved, config) and (steps is None or step <= steps) and \
                (best is None or step > best[1]):
            best = (path, step)
    return best


def load(path):
    """Read (params, config) written by save(); predict(*load(path), obs) works in a new process."""
    members = _open(path)
    try:
        return _model_from(members)
    finally:
        members.close()


def load_train_state(path):
    """Read (params, config, train_state) for resuming; train_state is None if none was saved."""
    members = _open(path)
    try:
        params, config = _model_from(members)
        return params, config, _train_state_from(members, params)
    finally:
        members.close()
