"""The two ablations of the RSSM, each the same model with one piece swapped (Config.model).

    "rssm"  h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1});  z_t ~ N(mean_t, std_t);  x_t decoded from [h_t, z_t]
    "rnn"   deterministic only: z_t = mean_t, a point with no noise anywhere           state_head, sample
    "ssm"   stochastic only: h_t = elu([z_{t-1}, a_{t-1}] W + b) sees nothing older,
            and x_t is decoded from z_t alone                                           ssm_transition, features

`python -m rssm_np.lab.compare` trains all three on the same worlds. The RSSM's own pieces live in
model.py; each function here answers, for one piece, what the config's model uses, and model.py
asks at exactly those places (transition, the state head, sampling, the decoder's input).

Shapes (the glossary is in model.py): B batch, H deter, Z stoch, A action.
"""

import autograd.numpy as np                 # traced NumPy: these pieces are differentiated

from .distributions import gaussian_head, sample_gaussian
from .layers import dense, elu, init_dense, init_gru

MODELS = ("rssm", "rnn", "ssm")


def head_size(config):
    """Outputs of the prior's and posterior's last layer: [mean, std] (2Z), or the rnn's mean (Z)."""
    return config.stoch_size if is_point(config) else 2 * config.stoch_size


def feature_size(config):
    """Inputs of the decoder: [h_t, z_t] (H + Z), or the ssm's z_t alone (Z)."""
    return config.stoch_size if config.model == "ssm" else config.deter_size + config.stoch_size


def init_transition(rng, config):
    """The transition's weights: the GRU's {"gru": ...}, or the ssm's one dense layer {"ssm": ...}."""
    inputs = config.stoch_size + config.action_size
    if config.model == "ssm":
        return {"ssm": init_dense(rng, inputs, config.deter_size, config.dtype)}
    return {"gru": init_gru(rng, inputs, config.deter_size, config.dtype)}


def ssm_transition(params, state, action):
    """The "ssm" model's transition: h_t = elu([z_{t-1}, a_{t-1}] W + b), no memory.

    Here h_t is only the first hidden layer of p(z_t | z_{t-1}, a_{t-1}): it sees the last z and
    action and nothing older, and the decoder never reads it, so z_t alone is the state.
    state {"stoch": z_{t-1} (B, Z)}, action a_{t-1} (B, A) -> (B, H).
    """
    return elu(dense(params["ssm"], np.concatenate([state["stoch"], action], axis=-1)))   # (B, H)


def state_head(config, out):
    """(mean, std) of z_t from a head's output: a Gaussian, or for "rnn" a point.

    rssm, ssm: distributions.gaussian_head, std = softplus(o_2) + min_std.
    rnn:       mean = o, std = 1, and z_t = mean always (see sample), so no random variable is
               left; with both stds at 1 the KL of the loss becomes 0.5 ||mean_q - mean_p||^2:
               the prior's mean regressed onto the posterior's.
    out (..., 2Z), or (..., Z) for rnn -> mean, std (..., Z).
    """
    if is_point(config):
        return out, np.ones(out.shape, dtype=config.dtype)
    return gaussian_head(out, config.min_std)


def is_point(config):
    """Whether z_t is a point (the "rnn"), not a Gaussian: the fused filter (fused.py) asks too."""
    return config.model == "rnn"


def sample(config, mean, std, eps):
    """z_t = mean + std * eps (distributions.sample_gaussian), or z_t = mean when eps is None or the
    model is "rnn", which has no random variable: given eps, it still returns its one future."""
    if eps is None or is_point(config):
        return mean
    return sample_gaussian(mean, std, eps)


def features(config, deter, stoch):
    """What the decoder reads: [h_t, z_t], or the ssm's z_t alone (its h_t is a hidden layer of the
    prior, not a state).   deter (..., H), stoch (..., Z) -> (..., feature_size)."""
    if config.model == "ssm":
        return stoch
    return np.concatenate([deter, stoch], axis=-1)


def has_memory(config):
    """Whether h_t carries h_{t-1} forward (the GRU), or is the ssm's elu([z_{t-1}, a_{t-1}] W + b)."""
    return config.model != "ssm"
