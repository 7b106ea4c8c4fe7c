"""Config: every size and knob of the model and its training, one commented field each; the
demo's recipe (DEMO_RECIPE); and what a config costs (param_shapes, check_fits_memory).

Config() alone is the plain model on the plain world: no occluders, no pushes, the step size
halving every 1,000 steps. `python demo.py` trains Config(**DEMO_RECIPE, lr_decay_steps=steps),
and a user who wants what the demo measured starts from the same recipe.
"""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np          # plain NumPy (the model's traced NumPy is autograd.numpy, in model.py)
from autograd.builtins import DictBox  # params under autograd's trace

from . import variants
from .utils import files, validate
from .utils.trees import tree_items, tree_leaves
from .world import PUSH_PROB

# The demo's recipe, on top of Config's defaults (with lr_decay_steps = the planned steps):
# occluders and pushes on, and pushes on one training frame in five. With the world's own rate
# (PUSH_PROB, 0.5, which every held-out evaluation set uses) the dreams drifted: with so few free
# flights to learn from, the model's velocity was off. And the model learns from its own dreams
# (observation overshooting, 5 steps ahead, dreams starting every 4th frame): a step costs more
# (`python -m rssm_np.lab.bench --demo-recipe` times it), and 3,000 such steps dream further than
# 4,500 without, in the same 5 minutes (the README's table against docs/levers.md's).
DEMO_RECIPE = {"occlusion": True, "control": True, "push_share": 0.2, "obs_overshooting": 5,
               "obs_overshooting_every": 4}
DEMO_STEPS = 3000


@dataclass(frozen=True)        # made once, checked once: a change is a new Config (dataclasses.replace)
class Config:
    # --- the world ---
    image_size: int = 32          # S: frames are S x S pixels (any S >= 8; the source post uses 32 or 64)
    action_size: int = 2          # A: actions push the dot in x and y
    occlusion: bool = False       # train on frames with occluders (DEMO_RECIPE: on)
    control: bool = False         # train on random actions that push the dot (DEMO_RECIPE: on)
    boundary: str = "bounce"      # walls: "bounce", "clip" or "random" (reflect, then redraw the velocity)
    push_share: float = PUSH_PROB  # with control: the chance that a training frame gets a random push (DEMO_RECIPE: 0.2)
                                   # (evaluation always uses the world's PUSH_PROB)
    # --- the model ---
    model: str = "rssm"           # "rssm": h and z; "rnn": deterministic only; "ssm": stochastic only (variants.py)
    deter_size: int = 128         # H: size of the deterministic memory h_t (the GRU state)
    stoch_size: int = 16          # Z: size of the stochastic state z_t
    hidden_size: int = 256        # width of every MLP layer (encoder, prior, posterior, decoder)
    embed_size: int = 256         # E: size of the encoder's embedding of one frame
    min_std: float = 0.1          # std = softplus(.) + min_std keeps p and q from collapsing to a delta
    free_nats: float = 1.0        # KL below this many nats (mean over batch and time) is not penalised
    kl_scale: float = 1.0         # weight of KL(q || p) in the loss; 1.0 is the true ELBO
    kl_balance: float = 0.0       # 0: off; a in (0, 1]: KL balancing (DreamerV2), the prior's share a of the KL's
                                  # gradient, the posterior's 1 - a (levers.balanced_kl)
    overshooting: int = 1         # D: latent overshooting distance (PlaNet); 1: off, the plain ELBO (levers.overshooting_kl);
                                  # for the rnn, its prior's mean regressed onto the posterior's 2 .. D steps ahead
    obs_overshooting: int = 1     # D: observation overshooting (PlaNet); also decode the prior's dreams 2 .. D steps
                                  # ahead and score them against the frames (levers.observation_overshooting); 1: off
                                  # (DEMO_RECIPE: 5)
    obs_overshooting_every: int = 1  # k: start those dreams at every k-th frame only (1: every frame; D - 1: each
                                  # frame dreamed once, one more decoder pass instead of D - 1; DEMO_RECIPE: 4)
    masked_likelihood: bool = True  # with occlusion, count reconstruction only on unhidden pixels
    # --- training ---
    batch_size: int = 16          # B: sequences per step
    seq_len: int = 32             # T: frames per training sequence
    learning_rate: float = 3e-3   # Adam step size at step 0
    lr_half_life: int = 1000      # steps over which the step size halves (0: constant); see training.learning_rate_at
    lr_decay_steps: int = 0       # K > 0: decay from learning_rate to min_learning_rate over the run's planned
                                  # K steps instead of by the half-life (the demo: its --steps); 0: use the half-life
    min_learning_rate: float = 1e-4  # the step size never decays below this
    grad_clip: float = 100.0      # clip the global gradient norm to this
    dtype: str = "float32"        # training precision; gradient checks use float64
    fused: bool = True            # filter with fused.filter_sequence (hand-written backward) and score frames with
                                  # fused.decode_nll; False: the plain loop over obs_step and decode, then the likelihood
    seed: int = 0                 # one seed fixes the initial weights, the data and the noise

    def __post_init__(self):
        check_config(self)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"config has unknown fields {unknown}; expected only {sorted(known)}")
        return cls(**values)


def check_config(config):
    """Raise a clear error for a field with the wrong type, an impossible value, or two fields that
    disagree; store every field as a plain Python value (a NumPy scalar becomes an int, float, bool
    or str), so the config always writes to JSON. (The Config is frozen: only this check, while
    it is being made, stores values, through object.__setattr__.)"""
    def store(name, value):
        object.__setattr__(config, name, value)

    def check(name, checker, *args, **kwargs):
        store(name, checker(f"config.{name}", getattr(config, name), *args, **kwargs))

    for name in ("action_size", "deter_size", "stoch_size", "hidden_size", "embed_size",
                 "batch_size", "seq_len"):
        check(name, validate.check_int)
    check("image_size", validate.check_int, minimum=8)
    check("seed", validate.check_int, minimum=0)
    check("lr_half_life", validate.check_int, minimum=0)
    check("lr_decay_steps", validate.check_int, minimum=0)
    for name in ("occlusion", "control", "masked_likelihood", "fused"):
        if not isinstance(getattr(config, name), (bool, np.bool_)):
            raise TypeError(f"config.{name} must be True or False, got {getattr(config, name)!r}")
        store(name, bool(getattr(config, name)))
    check("boundary", validate.check_choice, ("bounce", "clip", "random"))
    check("model", validate.check_choice, variants.MODELS)
    check("dtype", validate.check_choice, ("float32", "float64"))
    for name in ("boundary", "dtype", "model"):
        store(name, str(getattr(config, name)))
    # Every number must survive the cast to the training precision: 1e39 is inf in float32.
    largest = float(np.finfo(config.dtype).max)
    check("min_std", validate.check_number, minimum=0.0, maximum=largest, strict_minimum=True)
    check("free_nats", validate.check_number, minimum=0.0, maximum=largest)
    check("kl_scale", validate.check_number, minimum=0.0, maximum=largest)
    check("kl_balance", validate.check_number, minimum=0.0, maximum=1.0)
    check("push_share", validate.check_number, minimum=0.0, maximum=1.0)
    check("overshooting", validate.check_int, minimum=1)
    check("obs_overshooting", validate.check_int, minimum=1)
    check("obs_overshooting_every", validate.check_int, minimum=1)
    if config.obs_overshooting > config.seq_len:
        raise ValueError(f"config.obs_overshooting ({config.obs_overshooting}) must be <= config.seq_len "
                         f"({config.seq_len}): a dream d steps ahead needs d frames")
    if config.overshooting > config.seq_len:
        raise ValueError(f"config.overshooting ({config.overshooting}) must be <= config.seq_len ({config.seq_len}): "
                         f"a prior d steps ahead needs d frames")
    check("learning_rate", validate.check_number, minimum=0.0, maximum=largest, strict_minimum=True)
    check("min_learning_rate", validate.check_number, minimum=0.0, maximum=largest)
    if config.min_learning_rate > config.learning_rate:
        raise ValueError(f"config.min_learning_rate ({config.min_learning_rate}) must be <= config.learning_rate "
                         f"({config.learning_rate}): the step size decays from one down to the other")
    if config.lr_decay_steps and config.min_learning_rate == 0:
        raise ValueError("config.lr_decay_steps > 0 decays the step size geometrically down to config.min_learning_rate, "
                         "which must then be > 0, got 0")
    check("grad_clip", validate.check_number, minimum=0.0, maximum=largest, strict_minimum=True)


def param_shapes(config):
    """The shape of every array model.init_params(config) builds, in the same nested dict, built
    without allocating any (so a checkpoint's sizes are checked before memory is spent)."""
    c, pixels, head = config, config.image_size ** 2, variants.head_size(config)

    def mlp_shapes(sizes):
        return [{"w": (i, o), "b": (o,)} for i, o in zip(sizes[:-1], sizes[1:])]

    three_h, inputs = 3 * c.deter_size, c.stoch_size + c.action_size
    if variants.has_memory(c):
        transition = {"gru": {"w": (c.deter_size + inputs, three_h), "b": (three_h,),
                              "ln_scale": (three_h,), "ln_bias": (three_h,)}}
    else:
        transition = {"ssm": mlp_shapes([inputs, c.deter_size])[0]}
    return {
        "encoder": mlp_shapes([pixels, c.hidden_size, c.embed_size]),
        **transition,
        "prior": mlp_shapes([c.deter_size, c.hidden_size, head]),
        "posterior": {"w_deter": (c.deter_size, c.hidden_size), "w_embed": (c.embed_size, c.hidden_size),
                      "b": (c.hidden_size,), "out": mlp_shapes([c.hidden_size, head])[0]},
        "decoder": mlp_shapes([variants.feature_size(c), c.hidden_size, c.hidden_size, pixels]),
    }


def check_params(params, config):
    """params must be the nested dict init_params(config) builds: every array there, each of the
    shape param_shapes(config) gives (a model made for another Config fails here, naming the array)."""
    if not validate.is_config(config):
        raise TypeError(f"config must be a rssm_np.Config, got {type(config).__name__}")
    if not isinstance(params, (dict, DictBox)):
        raise TypeError(f"params must be the dict from init_params(config), got {type(params).__name__}")
    missing = [key for key in param_shapes(config) if key not in params]
    if missing:
        raise ValueError(f"params is missing {missing}; expected the dict from init_params(config) "
                         f"for model {config.model!r}")
    for name, shape in tree_items(param_shapes(config)):
        path = "params" + "".join(f"[{int(k)}]" if k.isdigit() else f"[{k!r}]" for k in name.split("/"))
        try:
            value = params
            for key in name.split("/"):
                value = value[int(key)] if key.isdigit() else value[key]
            got = tuple(value.shape)
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ValueError(f"{path} is missing; expected the dict from init_params(config)") from None
        if got != tuple(shape):
            raise ValueError(f"{path} has shape {got}, but the config builds {tuple(shape)}: "
                             f"these params were made for a different Config")


SIZE_FIELDS = ("image_size", "action_size", "deter_size", "stoch_size", "hidden_size", "embed_size",
               "batch_size", "seq_len")


def bytes_needed(config, training=True):
    """A lower bound on the memory the model needs: its parameters, and for training also their
    gradients and two Adam moments, plus one batch of frames with their logits and gradients."""
    itemsize = np.dtype(config.dtype).itemsize
    count = sum(math.prod(shape) for shape in tree_leaves(param_shapes(config)))
    if not training:
        return count * itemsize
    frames = config.batch_size * config.seq_len * config.image_size ** 2
    return (4 * count + 3 * frames) * itemsize


def check_fits_memory(config, training=True):
    """Refuse, naming the field, a config whose arrays cannot fit in this machine's memory, before
    any is allocated (instead of a MemoryError naming an array shape, or a machine that swaps)."""
    need, have = bytes_needed(config, training), files.machine_memory()
    if have is None or need <= have:
        return
    defaults = {field.name: field.default for field in dataclasses.fields(config)}
    # The culprit: the size field whose default value would shrink the need the most.
    name = min(SIZE_FIELDS, key=lambda field: bytes_needed(dataclasses.replace(config, **{field: defaults[field]}),
                                                         training))
    what = "parameters, gradients, Adam moments and a batch" if training else "parameters"
    raise ValueError(f"config.{name}={getattr(config, name)} is too large: the model's {what} need at least "
                     f"{need / 2 ** 30:.1f} GiB, and this machine has {have / 2 ** 30:.1f} GiB")


def bytes_for_rollout(config, rows, steps):
    """A lower bound on the memory of imagining `steps` steps for `rows` states at once and decoding
    every one (predict, the planner's candidates, play's particles): per row and step, h, z and
    z's distribution (mean, std), the decoder's two hidden layers and the frame; plus the parameters."""
    c = config
    per_step = c.deter_size + 3 * c.stoch_size + 2 * c.hidden_size + c.image_size ** 2
    return rows * steps * per_step * np.dtype(c.dtype).itemsize + bytes_needed(c, training=False)


def check_fits_rollout(config, rows, steps, what):
    """Refuse, naming `what` (the argument that asked for it), a rollout whose arrays cannot fit in
    this machine's memory, before any is allocated (check_fits_memory's sibling for using a model)."""
    need, have = bytes_for_rollout(config, rows, steps), files.machine_memory()
    if have is None or need <= have:
        return
    raise ValueError(f"{what} is too large: imagining {rows} rollout(s) of {steps} steps needs at least "
                     f"{need / 2 ** 30:.1f} GiB, and this machine has {have / 2 ** 30:.1f} GiB")
