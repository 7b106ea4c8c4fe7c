"""Adam, written by hand, over one flat parameter vector, with global-norm gradient clipping.

The model's nested dict of parameters is flattened into one vector (autograd.misc.flatten), so
every update below is a handful of whole-vector NumPy operations.
Shapes: P = total number of parameters.
"""

import numpy as np


def init_adam(num_params, dtype="float32"):
    """Adam's state: step count and the two moment estimates, both zero."""
    return {"step": 0, "m": np.zeros(num_params, dtype=dtype), "v": np.zeros(num_params, dtype=dtype)}


def clip_by_global_norm(grad, max_norm):
    """g <- g * min(1, max_norm / ||g||): one rare huge gradient cannot throw the weights far.

    grad (P,) -> (clipped grad (P,), norm before clipping).
    """
    norm = float(np.sqrt(np.sum(grad.astype(np.float64) ** 2)))
    scale = min(1.0, max_norm / (norm + 1e-12))
    return grad * np.asarray(scale, dtype=grad.dtype), norm


def adam_step(params, grad, state, learning_rate, beta1=0.9, beta2=0.999, eps=1e-8):
    """One Adam update (Kingma & Ba, 2015):

        m_t = beta1 m_{t-1} + (1 - beta1) g            first moment (mean of gradients)
        v_t = beta2 v_{t-1} + (1 - beta2) g^2          second moment (mean of squares)
        m^ = m_t / (1 - beta1^t),  v^ = v_t / (1 - beta2^t)     bias correction (m, v start at 0)
        theta_t = theta_{t-1} - lr * m^ / (sqrt(v^) + eps)

    params, grad (P,); state from init_adam. Returns (new params, new state); nothing is mutated.
    """
    step = state["step"] + 1
    m = beta1 * state["m"] + (1 - beta1) * grad
    v = beta2 * state["v"] + (1 - beta2) * grad ** 2
    m_hat = m / (1 - beta1 ** step)
    v_hat = v / (1 - beta2 ** step)
    new_params = params - learning_rate * m_hat / (np.sqrt(v_hat) + eps)
    return new_params.astype(params.dtype), {"step": step, "m": m.astype(params.dtype), "v": v.astype(params.dtype)}
