"""Config: every size and knob of the model and its training, one commented field each."""

import dataclasses
from dataclasses import dataclass

import numpy as np          # plain NumPy (the model's traced NumPy is autograd.numpy, in model.py)

from .utils import validate
from .world import PUSH_PROB


@dataclass
class Config:
    # --- the world ---
    image_size: int = 32          # S: frames are S x S pixels (any S >= 8; the source post uses 32 or 64)
    action_size: int = 2          # A: actions push the dot in x and y
    occlusion: bool = False       # train on frames with occluders
    control: bool = False         # train on random actions that push the dot
    boundary: str = "bounce"      # walls: "bounce", "clip" or "random" (reflect, then redraw the velocity)
    push_share: float = PUSH_PROB  # with control: the chance that a training frame gets a random push
                                   # (evaluation always uses the world's PUSH_PROB)
    # --- the model ---
    model: str = "rssm"           # "rssm": h and z; "rnn": deterministic only; "ssm": stochastic only (model.py)
    deter_size: int = 128         # H: size of the deterministic memory h_t (the GRU state)
    stoch_size: int = 16          # Z: size of the stochastic state z_t
    hidden_size: int = 256        # width of every MLP layer (encoder, prior, posterior, decoder)
    embed_size: int = 256         # E: size of the encoder's embedding of one frame
    min_std: float = 0.1          # std = softplus(.) + min_std keeps p and q from collapsing to a delta
    free_nats: float = 1.0        # KL below this many nats (mean over batch and time) is not penalised
    kl_scale: float = 1.0         # weight of KL(q || p) in the loss; 1.0 is the true ELBO
    kl_balance: float = 0.0       # 0: off; a in (0, 1]: KL balancing (DreamerV2), the prior's share a of the KL's
                                  # gradient, the posterior's 1 - a (model.balanced_kl)
    overshooting: int = 1         # D: latent overshooting distance (PlaNet); 1: off, the plain ELBO (model.overshooting_kl)
    masked_likelihood: bool = True  # with occlusion, count reconstruction only on unhidden pixels
    # --- training ---
    batch_size: int = 16          # B: sequences per step
    seq_len: int = 32             # T: frames per training sequence
    learning_rate: float = 3e-3   # Adam step size at step 0
    lr_half_life: int = 1000      # steps over which the step size halves (0: constant); see training.learning_rate_at
    lr_decay_steps: int = 0       # K > 0: decay from learning_rate to min_learning_rate over the run's planned
                                  # K steps instead of by the half-life (the demo sets it); 0: use the half-life
    min_learning_rate: float = 1e-4  # the step size never decays below this
    grad_clip: float = 100.0      # clip the global gradient norm to this
    dtype: str = "float32"        # training precision; gradient checks use float64
    fused: bool = True            # filter with fused.filter_sequence (hand-written backward); False, or
                                  # model "ssm": the plain autograd loop over model.obs_step
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
    or str), so the config always writes to JSON."""
    def check(name, checker, *args, **kwargs):
        setattr(config, name, checker(f"config.{name}", getattr(config, name), *args, **kwargs))

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
        setattr(config, name, bool(getattr(config, name)))
    check("boundary", validate.check_choice, ("bounce", "clip", "random"))
    check("model", validate.check_choice, ("rssm", "rnn", "ssm"))
    check("dtype", validate.check_choice, ("float32", "float64"))
    config.boundary, config.dtype, config.model = str(config.boundary), str(config.dtype), str(config.model)
    # Every number must survive the cast to the training precision: 1e39 is inf in float32.
    largest = float(np.finfo(config.dtype).max)
    check("min_std", validate.check_number, minimum=0.0, maximum=largest, strict_minimum=True)
    check("free_nats", validate.check_number, minimum=0.0, maximum=largest)
    check("kl_scale", validate.check_number, minimum=0.0, maximum=largest)
    check("kl_balance", validate.check_number, minimum=0.0, maximum=1.0)
    check("push_share", validate.check_number, minimum=0.0, maximum=1.0)
    check("overshooting", validate.check_int, minimum=1)
    if config.overshooting > config.seq_len:
        raise ValueError(f"config.overshooting ({config.overshooting}) must be <= config.seq_len ({config.seq_len}): "
                         f"a prior d steps ahead needs d frames")
    if config.overshooting > 1 and config.model == "rnn":
        raise ValueError("config.overshooting > 1 needs a stochastic prior to sample from; model 'rnn' has none "
                         "(use model 'rssm' or 'ssm', or overshooting 1)")
    check("learning_rate", validate.check_number, minimum=0.0, maximum=largest, strict_minimum=True)
    check("min_learning_rate", validate.check_number, minimum=0.0, maximum=largest)
    if config.min_learning_rate > config.learning_rate:
        raise ValueError(f"config.min_learning_rate ({config.min_learning_rate}) must be <= config.learning_rate "
                         f"({config.learning_rate}): the step size decays from one down to the other")
    if config.lr_decay_steps and config.min_learning_rate == 0:
        raise ValueError("config.lr_decay_steps > 0 decays the step size geometrically down to config.min_learning_rate, "
                         "which must then be > 0, got 0")
    check("grad_clip", validate.check_number, minimum=0.0, maximum=largest, strict_minimum=True)
