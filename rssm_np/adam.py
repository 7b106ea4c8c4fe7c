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


# --- the same update over one flat buffer: the train step's fast path --------------------------
#
# clip_by_global_norm and adam_step above are what to read. The train step runs the same lines
# over one flat buffer that holds every leaf back to back (leaf_views gives the leaves back as
# views into it, so no copy is made from one step to the next), a cache-sized chunk at a time:
# a pass over all ~900k numbers at once streams each temporary through memory, twelve times a
# step; a chunk's temporaries stay in the core's cache. The numbers are the same:
# tests/test_adam.py checks them against the readable functions.

CHUNK = 16384       # numbers per pass: the nine chunk-sized arrays a pass touches fit in a core's L2 cache


def flat_of(arrays):
    """One flat vector holding `arrays` back to back: the buffer they already are views of (as
    leaf_views makes them; no copy), or else their concatenation (a copy, the first step)."""
    base = arrays[0].base
    if isinstance(base, np.ndarray) and base.ndim == 1 and base.size == sum(a.size for a in arrays):
        start, itemsize, offset = base.__array_interface__["data"][0], base.itemsize, 0
        for a in arrays:
            if (a.base is not base or a.dtype != base.dtype or not a.flags.c_contiguous
                    or a.__array_interface__["data"][0] != start + offset * itemsize):
                break
            offset += a.size
        else:
            return base
    dtypes = {a.dtype for a in arrays}
    if len(dtypes) != 1:       # concatenate would promote every leaf to the widest type, silently
        raise TypeError(f"the leaves must share one dtype, got {sorted(map(str, dtypes))}")
    return np.concatenate([a.ravel() for a in arrays])


def leaf_views(flat, shapes):
    """The inverse of flat_of: arrays of `shapes`, views into consecutive pieces of `flat`."""
    views, offset = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        views.append(flat[offset:offset + size].reshape(shape))
        offset += size
    return views


def global_norm_flat(flat):
    """global_norm of the leaves held by `flat`: ||g|| accumulated in float64, a chunk at a time
    (no float64 copy of the whole gradient). Equal to global_norm to float64 rounding."""
    scratch, total = np.empty(min(CHUNK, flat.size), dtype=np.float64), 0.0
    for start in range(0, flat.size, CHUNK):
        part = scratch[:min(CHUNK, flat.size - start)]
        part[...] = flat[start:start + CHUNK]                   # g in float64
        total += float(part @ part)                             # sum of g^2 over the chunk
    return float(np.sqrt(total))


def adam_step_flat(theta, grad, m, v, step, learning_rate, grad_scale=None, beta1=0.9, beta2=0.999, eps=1e-8):
    """clip_by_global_norm's scaling and adam_step's update, fused into one pass over flat buffers.

    theta, grad, m, v: flat vectors (flat_of); step: the Adam step count t of this update
    (state["step"] + 1); grad_scale: clip_by_global_norm's min(1, max_norm / ||g||) as a Python
    float, or None (no clipping). Returns the new (theta, m, v) as fresh vectors; nothing passed in
    is mutated. Each line below is the line of adam_step (or clip) named beside it, written with
    out= so that it fills a chunk-sized scratch array instead of allocating a new one.
    """
    step_size = learning_rate * (1 - beta2 ** step) ** 0.5 / (1 - beta1 ** step)   # as in adam_step
    eps_hat = eps * (1 - beta2 ** step) ** 0.5
    scale = None if grad_scale is None else np.asarray(grad_scale, dtype=grad.dtype)   # as in clip_by_global_norm
    new_theta, new_m, new_v = np.empty_like(theta), np.empty_like(m), np.empty_like(v)
    g_scratch, scratch = np.empty(min(CHUNK, theta.size), theta.dtype), np.empty(min(CHUNK, theta.size), theta.dtype)
    for start in range(0, theta.size, CHUNK):
        stop = min(start + CHUNK, theta.size)
        g, a, m_t, v_t = grad[start:stop], scratch[:stop - start], new_m[start:stop], new_v[start:stop]
        if scale is not None:
            g = np.multiply(g, scale, out=g_scratch[:stop - start])           # g * scale          (clip)
        np.multiply(g, 1 - beta1, out=a)                                        # (1 - beta1) g
        np.multiply(m[start:stop], beta1, out=m_t)                              # beta1 m
        m_t += a                                                                # m_t = beta1 m + (1 - beta1) g
        np.multiply(g, g, out=a)                                                # g^2
        a *= 1 - beta2                                                          # (1 - beta2) g^2
        np.multiply(v[start:stop], beta2, out=v_t)                              # beta2 v
        v_t += a                                                                # v_t = beta2 v + (1 - beta2) g^2
        update = np.multiply(m_t, step_size, out=g_scratch[:stop - start])     # step_size m_t
        np.sqrt(v_t, out=a)
        a += eps_hat                                                            # sqrt(v_t) + eps_hat
        update /= a
        np.subtract(theta[start:stop], update, out=new_theta[start:stop])      # theta_t = theta - ...
    return new_theta, new_m, new_v


def adam_update(leaves, grad, norm, state, learning_rate, max_norm):
    """clip_by_global_norm then adam_step, on flat buffers: the train step's whole update.

    leaves: the parameter arrays; grad: their gradients as one flat vector (flat_of);
    norm: global_norm_flat(grad); state: adam_step's. Returns (new leaves, new state), the leaves
    and moments as views into one flat buffer each (leaf_views), so that the next step's flat_of
    copies nothing. The same numbers as clip_by_global_norm + adam_step (tests/test_adam.py).
    """
    theta = flat_of(leaves)
    if grad.dtype != theta.dtype:     # out= would cast silently: float64 gradients of float32 weights
        raise TypeError(f"the gradient is {grad.dtype} but the parameters are {theta.dtype}")
    grad_scale = None if norm <= max_norm else max_norm / norm
    step = state["step"] + 1
    theta, m, v = adam_step_flat(theta, grad, flat_of(state["m"]), flat_of(state["v"]), step,
                                 learning_rate, grad_scale)
    shapes = [leaf.shape for leaf in leaves]
    return leaf_views(theta, shapes), {"step": step, "m": leaf_views(m, shapes), "v": leaf_views(v, shapes)}
