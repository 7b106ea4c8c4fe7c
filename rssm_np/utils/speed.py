"""What makes an autograd RSSM fast without changing a number: kept here, off the reading path.

autograd records every NumPy call on a traced value and replays its backward in Python, at tens
of microseconds a call. The model's equations (model.py) are written for the reader; the helpers
below let them run with few traced calls. None of them changes a value:
- unpack, unstack_time, stack_time: traced bookkeeping done once instead of per step;
- dense_elu, dense_bernoulli_nll: a hidden layer, and the decoder's output layer with the frame's
  likelihood, each one primitive with its backward beside it (tests/test_fast_path.py);
- flat_of ... adam_update: adam.py's clip and Adam step over one flat buffer (tests/test_adam.py).
Shapes: B batch, T time, F features.
"""

import ctypes
import ctypes.util
import sys

import autograd.numpy as np                 # traced NumPy: these helpers run inside the loss
import numpy as onp                         # plain NumPy: the primitives' own arithmetic, and Adam's
from autograd.builtins import DictBox, SequenceBox
from autograd.extend import defvjp_argnums, primitive


def unpack(params):
    """The same nested params, rebuilt as plain Python dicts and lists of (traced) arrays.

    Under autograd a differentiated dict is itself traced, and every lookup in it
    (params["posterior"]["w_deter"]) is recorded and replayed, at every step of the loop.
    Unpacking once at the top of the loss pays for each lookup once.
    """
    if isinstance(params, (dict, DictBox)):
        return {key: unpack(params[key]) for key in params}
    if isinstance(params, (list, tuple, SequenceBox)):
        return [unpack(params[i]) for i in range(len(params))]
    return params


def unstack_time(x):
    """(B, T, F) -> a list of T arrays (B, F), as one traced call.

    Indexing x[:, t] in a loop would cost a traced call per step, and autograd's backward of each
    index scatters into a full-size zero array; one split's backward is one concatenate.
    """
    batch, steps, features = x.shape
    return np.split(x.reshape(batch, steps * features), steps, axis=1)


def stack_time(xs):
    """A list of T arrays (B, F) -> (B, T, F), the inverse of unstack_time.

    np.stack would index every array with [:, None] first, and each such index costs a scatter
    in autograd's backward; one concatenate's backward is T plain slices.
    """
    batch, features = xs[0].shape
    return np.concatenate(xs, axis=1).reshape(batch, len(xs), features)


def keep_freed_memory():
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the system.

    A train step allocates and frees dozens of arrays of a few MB. By default glibc hands each
    one back to the kernel, and the next allocation page-faults fresh zeroed pages in, a visible
    share of the step time (count them: `perf stat -e page-faults python -m rssm_np.lab.bench`).
    Only this process's allocator is affected; elsewhere than Linux/glibc it does nothing.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mmap_threshold, trim_threshold, top_pad = -3, -1, -2      # mallopt parameter numbers
        return bool(libc.mallopt(mmap_threshold, 256 << 20) and libc.mallopt(trim_threshold, 1 << 30)
                    and libc.mallopt(top_pad, 64 << 20))
    except (OSError, AttributeError):
        return False


# --- primitives of the hot path: readable functions fused, the same numbers to the bit ---------

@primitive
def dense_elu(x, w, b):
    """elu(dense(layer, x)) = elu(x W + b): an MLP's hidden layer as one traced call instead of
    three (matmul, add, elu), the same numbers to the bit, forward and backward.

    x (B, I), w (I, O), b (O,) -> (B, O). The backward, beside the forward lines it undoes:
        d_pre = g * elu'(pre) = g * min(elu(pre) + 1, 1)     h = elu(pre)          (elu's own)
        d_x = d_pre W^T,  d_W = x^T d_pre,  d_b = sum over rows of d_pre     pre = x W + b
    """
    pre = x @ w + b                                         # (B, O)
    return onp.maximum(pre, 0.0) + (onp.exp(onp.minimum(pre, 0.0)) - 1.0)   # elu(pre), as elu


def _dense_elu_vjp(argnums, ans, args, kwargs):
    x, w, b = args

    def vjp(g):
        d_pre = g * onp.minimum(ans + 1.0, 1.0)             # elu's backward, as in elu
        d_inputs = {0: lambda: d_pre @ w.T, 1: lambda: x.T @ d_pre, 2: lambda: d_pre.sum(axis=0)}
        return tuple(d_inputs[i]() for i in argnums)

    return vjp


defvjp_argnums(dense_elu, _dense_elu_vjp)


ROWS_PER_PASS = 64      # dense_bernoulli_nll's chunk: its two (64, D) scratch arrays stay in a core's cache


@primitive
def dense_bernoulli_nll(hidden, w, b, target, weight=None, saved=None):
    """bernoulli_nll(hidden W + b, target, weight): a decoder's output layer and the likelihood of
    its logits as one primitive, the same numbers to the bit, forward and backward.

        l = hidden W + b                                       the output layer (layers.dense)
        -log p(x | l) = sum_d w_d [softplus(l_d) - x_d l_d]    bernoulli_nll's forward line
        d_l = g w_d (sigmoid(l_d) - x_d)                       bernoulli_nll's backward line
        d_hidden = d_l W^T,  d_W = hidden^T d_l,  d_b = sum over rows of d_l     (dense's backward)

    hidden (N, U), w (U, D), b (D,), target and weight (N, D) -> (N,). The logits are the biggest
    array of the step, one number per pixel of every frame. Traced by autograd, the lines above
    make a dozen temporaries of that size each way, which stream through memory; here each line
    runs on ROWS_PER_PASS rows at a time, written with out= into two scratch arrays that stay in
    cache, and the whole takes one traced call instead of three. saved: a dict the forward fills
    with the logits for the backward (model code passes {}), or None to recompute them there.
    """
    logits = hidden @ w + b                                 # l = hidden W + b   (N, D)
    for name, data in (("target", target), ("weight", weight)):
        if data is not None and data.dtype != logits.dtype:    # out= below would round it silently
            raise TypeError(f"dense_bernoulli_nll: {name} is {data.dtype} but the logits are {logits.dtype}")
    nll = onp.empty(len(logits), dtype=logits.dtype)        # (N,)
    per_pixel = onp.empty((min(ROWS_PER_PASS, len(logits)), logits.shape[1]), dtype=logits.dtype)
    scratch = onp.empty_like(per_pixel)
    for start in range(0, len(logits), ROWS_PER_PASS):
        rows = slice(start, start + ROWS_PER_PASS)
        l, p, s = logits[rows], per_pixel[:len(logits[rows])], scratch[:len(logits[rows])]
        onp.maximum(l, 0.0, out=p)                          # max(l, 0)
        onp.abs(l, out=s)
        onp.negative(s, out=s)
        onp.exp(s, out=s)
        s += 1.0
        onp.log(s, out=s)                                   # log(1 + e^-|l|)
        p += s                                              # softplus(l)
        onp.multiply(target[rows], l, out=s)
        p -= s                                              # softplus(l) - x l
        if weight is not None:
            p *= weight[rows]                               # w (softplus(l) - x l)
        p.sum(axis=-1, out=nll[rows])                       # summed over the D pixels
    if saved is not None:
        saved["logits"] = logits
    return nll


def _dense_bernoulli_nll_vjp(argnums, ans, args, kwargs):
    hidden, w, b, target = args[:4]
    weight = args[4] if len(args) > 4 else kwargs.get("weight")
    if any(i > 2 for i in argnums):
        raise NotImplementedError("dense_bernoulli_nll has no gradient for its target or weight (data, "
                                  "never differentiated in training); use bernoulli_nll to differentiate them")
    saved = kwargs.get("saved")
    logits = saved["logits"] if saved else hidden @ w + b   # called without the forward's dict: recompute

    def vjp(g):                                             # g (N,)
        same_dtype = g.dtype == logits.dtype                # else g promotes d_l below, as in bernoulli_nll
        d_logits = onp.empty_like(logits)                   # (N, D)
        for start in range(0, len(logits), ROWS_PER_PASS):
            rows = slice(start, start + ROWS_PER_PASS)
            d = d_logits[rows]
            onp.multiply(logits[rows], 0.5, out=d)
            onp.tanh(d, out=d)
            d += 1.0
            d *= 0.5                                        # sigmoid(l) = (tanh(l / 2) + 1) / 2, as layers.sigmoid
            d -= target[rows]                               # sigmoid(l) - x
            if weight is not None:
                d *= weight[rows]                           # w (sigmoid(l) - x)
            if same_dtype:
                d *= g[rows, None]                          # g w (sigmoid(l) - x)
        if not same_dtype:
            d_logits = d_logits * g[:, None]
        d_inputs = {0: lambda: d_logits @ w.T, 1: lambda: hidden.T @ d_logits, 2: lambda: d_logits.sum(axis=0)}
        return tuple(d_inputs[i]() for i in argnums)

    return vjp


defvjp_argnums(dense_bernoulli_nll, _dense_bernoulli_nll_vjp)


# --- Adam over one flat buffer (adam.py's functions, fused) ---------------------------------------

# --- the same update over one flat buffer: the train step's fast path --------------------------
#
# clip_by_global_norm and adam_step above are what to read. The train step runs the same lines
# over one flat buffer that holds every leaf back to back (leaf_views gives the leaves back as
# views into it, so no copy is made from one step to the next), a cache-sized chunk at a time:
# a pass over all ~900k numbers at once streams each temporary through memory, twelve times a
# step; a chunk's temporaries stay in the core's cache. The numbers are the same:
# tests/test_adam.py checks them against the readable functions.

CHUNK = 32768       # numbers per pass: the nine chunk-sized arrays a pass touches fit in a core's L2 cache (2 MB here)


def flat_of(arrays):
    """One flat vector holding `arrays` back to back: the buffer they already are views of (as
    leaf_views makes them; no copy), or else their concatenation (a copy, the first step)."""
    base = arrays[0].base
    if isinstance(base, onp.ndarray) and base.ndim == 1 and base.size == sum(a.size for a in arrays):
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
    return onp.concatenate([a.ravel() for a in arrays])


def leaf_views(flat, shapes):
    """The inverse of flat_of: arrays of `shapes`, views into consecutive pieces of `flat`."""
    views, offset = [], 0
    for shape in shapes:
        size = int(onp.prod(shape))
        views.append(flat[offset:offset + size].reshape(shape))
        offset += size
    return views


def global_norm_flat(flat):
    """global_norm of the leaves held by `flat`: ||g|| accumulated in float64, a chunk at a time
    (no float64 copy of the whole gradient). Equal to global_norm to float64 rounding."""
    scratch, total = onp.empty(min(CHUNK, flat.size), dtype=onp.float64), 0.0
    for start in range(0, flat.size, CHUNK):
        part = scratch[:min(CHUNK, flat.size - start)]
        part[...] = flat[start:start + CHUNK]                   # g in float64
        total += float(part @ part)                             # sum of g^2 over the chunk
    return float(onp.sqrt(total))


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
    scale = None if grad_scale is None else onp.asarray(grad_scale, dtype=grad.dtype)   # as in clip_by_global_norm
    new_theta, new_m, new_v = onp.empty_like(theta), onp.empty_like(m), onp.empty_like(v)
    g_scratch, scratch = onp.empty(min(CHUNK, theta.size), theta.dtype), onp.empty(min(CHUNK, theta.size), theta.dtype)
    for start in range(0, theta.size, CHUNK):
        stop = min(start + CHUNK, theta.size)
        g, a, m_t, v_t = grad[start:stop], scratch[:stop - start], new_m[start:stop], new_v[start:stop]
        if scale is not None:
            g = onp.multiply(g, scale, out=g_scratch[:stop - start])           # g * scale          (clip)
        onp.multiply(g, 1 - beta1, out=a)                                        # (1 - beta1) g
        onp.multiply(m[start:stop], beta1, out=m_t)                              # beta1 m
        m_t += a                                                                # m_t = beta1 m + (1 - beta1) g
        onp.multiply(g, g, out=a)                                                # g^2
        a *= 1 - beta2                                                          # (1 - beta2) g^2
        onp.multiply(v[start:stop], beta2, out=v_t)                              # beta2 v
        v_t += a                                                                # v_t = beta2 v + (1 - beta2) g^2
        update = onp.multiply(m_t, step_size, out=g_scratch[:stop - start])     # step_size m_t
        onp.sqrt(v_t, out=a)
        a += eps_hat                                                            # sqrt(v_t) + eps_hat
        update /= a
        onp.subtract(theta[start:stop], update, out=new_theta[start:stop])      # theta_t = theta - ...
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
