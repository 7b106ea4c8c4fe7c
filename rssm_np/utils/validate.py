"""Checks at the public edges, so a user's mistake gets a sentence, not a deep traceback.

Every check raises ValueError (or TypeError for a wrong type) whose message names the argument,
what it got and what it expected. Plain NumPy; nothing here is traced by autograd.
"""

import dataclasses
import numbers

import numpy as np          # plain NumPy (the model's traced NumPy is autograd.numpy, in model.py)


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}"


def check_int(name, value, minimum=1):
    """An integer (not a bool) >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {_describe(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_number(name, value, minimum=None, maximum=None, strict_minimum=False):
    """A finite real number within the given bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {_describe(value)}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    value = float(value)         # a plain float, whatever NumPy scalar came in (JSON can store it)
    if minimum is not None:
        if strict_minimum and value <= minimum:
            raise ValueError(f"{name} must be > {minimum}, got {value}")
        if not strict_minimum and value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_seed(name, seed):
    """A seed is a non-negative int or a tuple/list of them (NumPy's SeedSequence entropy)."""
    items = seed if isinstance(seed, (tuple, list)) else [seed]
    if len(items) == 0:
        raise ValueError(f"{name} must be a non-negative integer or a tuple of them, got an empty {type(seed).__name__}")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            raise TypeError(f"{name} must be a non-negative integer or a tuple of them, got {_describe(seed)}")
        if item < 0:
            raise ValueError(f"{name} must be non-negative, got {seed!r}")
    return seed


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_array(name, value, ndim, last_dims=(), unit_interval=False, dtype=None):
    """A finite float array of rank `ndim` whose trailing dims equal `last_dims`, and still
    finite once cast to `dtype` (the model's precision: 1e39 is finite in float64, inf in float32)."""
    if not isinstance(value, np.ndarray):
        if isinstance(value, (list, tuple)):
            value = np.asarray(value)
        else:
            raise TypeError(f"{name} must be a NumPy array, got {_describe(value)}")
    if value.dtype == bool or not np.issubdtype(value.dtype, np.number):
        raise TypeError(f"{name} must hold real numbers, got dtype {value.dtype}")
    if np.iscomplexobj(value):
        raise TypeError(f"{name} must hold real numbers, got dtype {value.dtype}")
    if value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {value.shape}")
    if last_dims and tuple(value.shape[ndim - len(last_dims):]) != tuple(last_dims):
        expected = "(" + ", ".join(["..."] + [str(d) for d in last_dims]) + ")"
        raise ValueError(f"{name} must have shape {expected}, got {value.shape}")
    if value.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {value.shape}")
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{name} must be finite, but it holds NaN or inf")
    with np.errstate(over="ignore"):              # an overflow is what this check reports
        overflows = dtype is not None and not np.all(np.isfinite(value.astype(dtype)))
    if overflows:
        largest = np.finfo(dtype).max
        raise ValueError(f"{name} must fit in {np.dtype(dtype).name} (|x| <= {largest:.3g}), "
                         f"got values up to {np.abs(value).max():.3g}")
    if unit_interval and (value.min() < 0 or value.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1] (frames), got values in [{value.min():.3g}, {value.max():.3g}]")
    return value


def check_dataset_args(n, T, size, seed, boundary):
    check_int("n", n)
    check_int("T", T)
    check_int("size", size, minimum=8)
    check_seed("seed", seed)
    check_choice("boundary", boundary, ("bounce", "clip", "random"))


def check_batch(batch, config):
    """`batch` for loss(): a dict with obs (B, T, S, S) and actions (B, T, 2)."""
    if not isinstance(batch, dict):
        raise TypeError(f"batch must be a dict with 'obs' and 'actions', got {_describe(batch)}")
    for key in ("obs", "actions"):
        if key not in batch:
            raise ValueError(f"batch must have key '{key}', got keys {sorted(batch)}")
    size = config.image_size
    obs = check_array("batch['obs']", batch["obs"], 4, (size, size), unit_interval=True)
    actions = check_array("batch['actions']", batch["actions"], 3, (config.action_size,), dtype=config.dtype)
    if actions.shape[:2] != obs.shape[:2]:
        raise ValueError(f"batch['actions'] must have shape {obs.shape[:2] + (config.action_size,)} to match "
                         f"batch['obs'] {obs.shape}, got {actions.shape}")
    if "mask" in batch and batch["mask"] is not None:
        mask = np.asarray(batch["mask"])
        if mask.shape != obs.shape:
            raise ValueError(f"batch['mask'] must have the shape of batch['obs'] {obs.shape}, got {mask.shape}")
        if mask.dtype != bool:
            raise TypeError(f"batch['mask'] must be a bool array, got dtype {mask.dtype}")


def check_predict_args(config, obs, actions, horizon, samples):
    size = config.image_size
    obs = check_array("obs", obs, 4, (size, size), unit_interval=True)
    horizon = check_int("horizon", horizon)
    if samples is not None:
        check_int("samples", samples)
    if actions is not None:
        batch, context = obs.shape[:2]
        expected = (batch, context + horizon - 1, config.action_size)
        actions = check_array("actions", actions, 3, (config.action_size,), dtype=config.dtype)
        if actions.shape != expected:
            raise ValueError(f"actions must have shape (B, C + horizon - 1, {config.action_size}) = {expected} "
                             f"for obs {obs.shape} and horizon {horizon}, got {actions.shape}")
    return obs, actions, horizon


def is_config(config):
    """True for a rssm_np.Config (known by its fields: this module sits below config.py)."""
    return dataclasses.is_dataclass(config) and not isinstance(config, type) and type(config).__name__ == "Config"
