"""rssm_np: a Recurrent State Space Model (PlaNet, Dreamer) in NumPy + autograd, written to be read.

Public API: the world (make_dataset), the model (Config, init_params, loss, observe, imagine,
predict), checkpoints (save, load), training (train) and evaluation (evaluate).
"""

from .checkpoint import load, save
from .config import Config
from .lab.evaluate import evaluate
from .model import decode, encode, imagine, init_params, loss, observe, predict
from .training import train
from .world import make_dataset

__all__ = ["Config", "init_params", "loss", "observe", "imagine", "predict", "encode", "decode",
           "make_dataset", "save", "load", "train", "evaluate"]
