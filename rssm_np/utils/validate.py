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
        low, high = float(value.min()), float(value.max())
        if -ROUNDING <= low and high <= 1 + ROUNDING:    # three digits would print [0, 1]: show the step, name it
            raise ValueError(f"{name} must lie in [0, 1] (frames), got values in [{low:.9g}, {high:.9g}], a rounding "
                             f"step outside [0, 1]: clip them, np.clip({name}, 0, 1)")
        raise ValueError(f"{name} must lie in [0, 1] (frames), got values in [{low:.3g}, {high:.3g}]")
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


# --- another world's batches, checked at train's door --------------------------------------------
# train(config, batches=fn) feeds the model any world. What can go wrong is then the user's data:
# each check below names the field, what it holds and what to change, before any training.

BATCH_FORM = "{'obs': (B, T, S, S) floats in [0, 1], 'actions': (B, T, A) floats}"
ROUNDING = 1e-3         # frames this far outside [0, 1] were meant to be inside: say "rounding", not "scale"


def check_user_batch(batch, config, step=0):
    """The batch batches(step) returned, against the config: one ValueError or TypeError that names
    the field (its type, dtype, shape, values), and what to pass instead. Then utils.validate's
    check_batch, which every later batch gets as well, checks what is left (a mask)."""
    where = f"batches({step})"
    if not isinstance(batch, dict):
        raise TypeError(f"{where} must return a dict {BATCH_FORM}, got {type(batch).__name__}")
    for key in ("obs", "actions"):
        if key not in batch:
            raise ValueError(f"{where} returned no {key!r}: it must return {BATCH_FORM}, got keys "
                             f"{sorted(map(str, batch))}")
    obs, actions = (user_array(batch, key, where) for key in ("obs", "actions"))
    name_obs, name_actions = f"batch['obs'] from {where}", f"batch['actions'] from {where}"
    if obs.ndim != 4 or obs.shape[2] != obs.shape[3]:
        hint = {3: " (one sequence? add the batch axis: obs[None])",
                5: " (colour? average the channels: obs.mean(axis=-1))"}.get(obs.ndim, "")
        raise ValueError(f"{name_obs} has shape {obs.shape}, but it must be (B, T, S, S): B sequences of T "
                         f"square grayscale frames{hint}")
    if obs.shape[2] != config.image_size:
        raise ValueError(f"{name_obs} holds {obs.shape[2]}x{obs.shape[3]} frames, but config.image_size is "
                         f"{config.image_size}: pass Config(image_size={obs.shape[2]})")
    if actions.ndim != 3:
        hint = " (one number per frame? add an axis: actions[..., None])" if actions.ndim == 2 else ""
        raise ValueError(f"{name_actions} has shape {actions.shape}, but it must be (B, T, A): one vector of A "
                         f"numbers per frame{hint}")
    if actions.shape[2] != config.action_size:
        plural = "" if actions.shape[2] == 1 else "s"
        raise ValueError(f"{name_actions} has {actions.shape[2]} action dimension{plural}, but config.action_size "
                         f"is {config.action_size}: pass Config(action_size={actions.shape[2]})")
    if actions.shape[:2] != obs.shape[:2]:
        raise ValueError(f"{name_actions} has shape {actions.shape}, but batch['obs'] {obs.shape} holds "
                         f"{obs.shape[0]} sequences of {obs.shape[1]} frames: one action per frame, "
                         f"actions[:, t] taken after frame t (the last is never used: zeros will do)")
    for name, value in ((name_obs, obs), (name_actions, actions)):
        bad = ~np.isfinite(value)
        if bad.any():
            raise ValueError(f"{name} holds {int(bad.sum())} NaN or infinite values, the first at index "
                             f"{tuple(int(i) for i in np.argwhere(bad)[0])}")
    low, high = float(obs.min()), float(obs.max())
    if low < 0 or high > 1:
        if -ROUNDING <= low and high <= 1 + ROUNDING:
            raise ValueError(f"{name_obs} has values in [{low:.9g}, {high:.9g}], a rounding step outside [0, 1], "
                             f"where frames must lie: clip them, np.clip(obs, 0, 1)")
        hint = " (8-bit images? divide by 255)" if low >= 0 and high <= 255 else ""
        raise ValueError(f"{name_obs} has values in [{low:.4g}, {high:.4g}], but frames must lie in [0, 1] "
                         f"(the decoder's Bernoulli likelihood): scale them{hint}")
    for field in ("overshooting", "obs_overshooting"):
        if getattr(config, field) > obs.shape[1]:
            raise ValueError(f"config.{field} is {getattr(config, field)}, but {name_obs} holds sequences of "
                             f"{obs.shape[1]} frames: a dream d steps ahead needs d frames; make sequences of at "
                             f"least {getattr(config, field)} frames, or pass Config({field}={obs.shape[1]})")
    check_batch(batch, config)


def user_array(batch, key, where):
    """batch[key] as a float array (a list of floats is taken too); a TypeError naming it otherwise."""
    value = batch[key]
    name = f"batch[{key!r}] from {where}"
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array of floats, got {type(value).__name__}")
    if not np.issubdtype(value.dtype, np.floating):
        fix = ("frames are floats in [0, 1]: obs.astype(np.float32) / 255 for 8-bit images" if key == "obs" else
               "actions are vectors of floats: a discrete action is a one-hot vector, "
               "np.eye(A, dtype=np.float32)[actions]")
        raise TypeError(f"{name} has dtype {value.dtype}, but {fix}")
    return value
