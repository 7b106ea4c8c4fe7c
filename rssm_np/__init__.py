"""rssm_np: a Recurrent State Space Model (PlaNet, Dreamer) in NumPy + autograd, written to be read.

The core, in reading order: world.py (the moving dot), layers.py (dense, MLP, ELU, GRU),
distributions.py (Gaussian head, sampling, KL, Bernoulli likelihood), model.py (the RSSM: five
equations, two steps, two loops, the bound), adam.py, training.py. Beside it: config.py, variants.py
(the rnn and ssm ablations), levers.py (KL balancing, overshooting), fused.py (the fast filter,
mirroring model.obs_step), checkpoint.py (save, load) and utils/ (checks, safe files). The lab
(rssm_np.lab: evaluation, comparison, planning, play, benchmarks, figures) imports the core; the
core never imports the lab.

Public API: the world (make_dataset), the model (Config, init_params, observe, imagine, predict,
encode, decode), training (loss, train) and checkpoints (save, load).
"""

from .checkpoint import load, save
from .config import DEMO_RECIPE, Config
from .model import decode, encode, imagine, init_params, observe, predict
from .training import loss, train
from .world import make_dataset

__all__ = ["Config", "DEMO_RECIPE", "init_params", "loss", "observe", "imagine", "predict", "encode", "decode",
           "make_dataset", "save", "load", "train"]
