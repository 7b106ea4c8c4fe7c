"""Checkpoints: a model (params, config) and optionally its training state in one .npz file.

Writes are atomic (a temporary file in the same folder, then os.replace), so a crash or Ctrl-C
mid-write leaves the previous file intact. load() checks everything before it returns: it never
hands back a half-built model.
"""

import json
import os
import tempfile
import zipfile

import numpy as np

from .config import Config

FORMAT_VERSION = 1
_PARAM_PREFIX = "params/"
_TRAIN_PREFIX = "train/"


def _flatten_tree(tree, prefix=""):
    """{'gru': {'w': A}, 'encoder': [{'w': B}]} -> {'gru/w': A, 'encoder/0/w': B}."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return {prefix.rstrip("/"): np.asarray(tree)}
    flat = {}
    for key, value in items:
        flat.update(_flatten_tree(value, f"{prefix}{key}/"))
    return flat


def _fill_tree(template, flat, prefix=""):
    """Rebuild a tree shaped like `template` from the flat dict, checking every shape and dtype."""
    if isinstance(template, dict):
        return {key: _fill_tree(value, flat, f"{prefix}{key}/") for key, value in template.items()}
    if isinstance(template, (list, tuple)):
        return [_fill_tree(value, flat, f"{prefix}{i}/") for i, value in enumerate(template)]
    key = prefix.rstrip("/")
    if key not in flat:
        raise ValueError(f"checkpoint is missing parameter '{key}'")
    value = flat[key]
    if value.shape != template.shape:
        raise ValueError(f"checkpoint parameter '{key}' has shape {value.shape}, "
                         f"but its config builds {template.shape}")
    if not np.all(np.isfinite(value)):
        raise ValueError(f"checkpoint parameter '{key}' holds NaN or inf")
    return value.astype(template.dtype)


def save(path, params, config, train_state=None):
    """Write params, config (and a training state, if given) to `path` (.npz), atomically.

    Refuses to write non-finite parameters, so a diverged model never replaces a good file.
    """
    if not isinstance(config, Config):
        raise TypeError(f"config must be a rssm_np.Config, got {type(config).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise ValueError(f"path must end with '.npz', got {path!r}")
    arrays = {_PARAM_PREFIX + k: v for k, v in _flatten_tree(params).items()}
    for key, value in arrays.items():
        if not np.all(np.isfinite(value)):
            raise ValueError(f"params['{key[len(_PARAM_PREFIX):]}'] holds NaN or inf; refusing to save it")
    arrays["format_version"] = np.array(FORMAT_VERSION)
    arrays["config"] = np.array(json.dumps(config.to_dict()))
    if train_state is not None:
        arrays[_TRAIN_PREFIX + "step"] = np.array(train_state["step"])
        arrays[_TRAIN_PREFIX + "adam_step"] = np.array(train_state["adam"]["step"])
        for i, (m, v) in enumerate(zip(train_state["adam"]["m"], train_state["adam"]["v"])):
            arrays[f"{_TRAIN_PREFIX}adam_m/{i}"] = m
            arrays[f"{_TRAIN_PREFIX}adam_v/{i}"] = v
        arrays[_TRAIN_PREFIX + "history"] = np.array(json.dumps(train_state["history"]))
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path


def _read(path):
    """All arrays of a checkpoint, or a clear error for a missing, corrupt or foreign file."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as error:
        raise ValueError(f"checkpoint {path!r} is truncated or corrupt ({type(error).__name__}: {error})") from None
    if "format_version" not in arrays or "config" not in arrays:
        raise ValueError(f"{path!r} is not an rssm_np checkpoint (no format_version or config)")
    version = int(arrays["format_version"])
    if version != FORMAT_VERSION:
        raise ValueError(f"checkpoint {path!r} has format version {version}; this rssm_np reads version {FORMAT_VERSION}")
    return arrays


def load(path):
    """Read (params, config) written by save(); predict(*load(path), obs) works in a new process."""
    params, config, _ = _load_with_arrays(path)
    return params, config


def _load_with_arrays(path):
    """(params, config, every array in the file), reading the file once."""
    from .model import init_params
    arrays = _read(path)
    try:
        config = Config.from_dict(json.loads(str(arrays["config"])))
    except (json.JSONDecodeError, TypeError) as error:
        raise ValueError(f"checkpoint {os.fspath(path)!r} has an unreadable config: {error}") from None
    flat = {k[len(_PARAM_PREFIX):]: v for k, v in arrays.items() if k.startswith(_PARAM_PREFIX)}
    params = _fill_tree(init_params(config), flat)
    return params, config, arrays


def load_train_state(path):
    """Read (params, config, train_state) for resuming; train_state is None if none was saved."""
    from .training import tree_leaves
    params, config, arrays = _load_with_arrays(path)
    if _TRAIN_PREFIX + "step" not in arrays:
        return params, config, None
    moments = {"m": [], "v": []}
    for i, leaf in enumerate(tree_leaves(params)):
        for name in moments:
            key = f"{_TRAIN_PREFIX}adam_{name}/{i}"
            if key not in arrays or arrays[key].shape != leaf.shape:
                raise ValueError(f"checkpoint {os.fspath(path)!r} has no optimizer state '{key}' of shape {leaf.shape}")
            moments[name].append(arrays[key].astype(leaf.dtype))
    state = {
        "params": params,
        "adam": {"step": int(arrays[_TRAIN_PREFIX + "adam_step"]), "m": moments["m"], "v": moments["v"]},
        "step": int(arrays[_TRAIN_PREFIX + "step"]),
        "history": json.loads(str(arrays[_TRAIN_PREFIX + "history"])),
    }
    return params, config, state
