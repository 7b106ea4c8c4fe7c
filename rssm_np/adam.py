"""Adam, written by hand, with global-norm gradient clipping.

Parameters and gradients are lists of arrays (the leaves of the params dict, see
trees.tree_leaves); every update below is a few whole-array NumPy operations per leaf.
"""

import numpy as np          # plain NumPy (the model's traced NumPy is autograd.numpy, in model.py)


def init_adam(params):
    """Adam's state for a list of parameter arrays: step count and two zero moment estimates."""
    return {"step": 0, "m": [np.zeros_like(p) for p in params], "v": [np.zeros_like(p) for p in params]}


def global_norm(grads):
    """||g|| over all arrays at once, accumulated in float64."""
    return float(np.sqrt(sum(np.sum(np.square(g, dtype=np.float64)) for g in grads)))


def clip_by_global_norm(grads, max_norm):
    """g <- g * min(1, max_norm / ||g||): one rare huge gradient cannot throw the weights far.

    grads: list of arrays -> (clipped list, norm before clipping).
    """
    norm = global_norm(grads)
    if norm <= max_norm:
        return grads, norm
    scale = max_norm / norm
    return [g * np.asarray(scale, dtype=g.dtype) for g in grads], norm


def adam_step(params, grads, state, learning_rate, beta1=0.9, beta2=0.999, eps=1e-8):
    """One Adam update (Kingma & Ba, 2015), for every array theta with gradient g:

        m_t = beta1 m_{t-1} + (1 - beta1) g            first moment (mean of gradients)
        v_t = beta2 v_{t-1} + (1 - beta2) g^2          second moment (mean of squares)
        m^ = m_t / (1 - beta1^t),  v^ = v_t / (1 - beta2^t)     bias correction (m, v start at 0)
        theta_t = theta_{t-1} - lr * m^ / (sqrt(v^) + eps)

    params, grads: lists of arrays; state from init_adam. Returns (new params, new state);
    nothing passed in is mutated.
    """
    step = state["step"] + 1
    # Fold both bias corrections into the step size: lr * sqrt(1 - beta2^t) / (1 - beta1^t).
    step_size = learning_rate * (1 - beta2 ** step) ** 0.5 / (1 - beta1 ** step)
    eps_hat = eps * (1 - beta2 ** step) ** 0.5       # eps on the corrected scale: sqrt(v^) + eps
    new_params, new_m, new_v = [], [], []
    for theta, g, m, v in zip(params, grads, state["m"], state["v"]):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * (g * g)
        new_params.append(theta - step_size * m / (np.sqrt(v) + eps_hat))
        new_m.append(m)
        new_v.append(v)
    return new_params, {"step": step, "m": new_m, "v": new_v}
