"""What makes an autograd RSSM fast without changing a number: kept here, off the reading path.

autograd records every NumPy call on a traced value and replays its backward in Python, at tens
of microseconds a call. The model's equations (model.py) are written for the reader; the helpers
below let them run with few traced calls. None of them changes a value.

Uses plain NumPy only through autograd's own wrappers (`autograd.numpy as np`, traced).
Shapes: B batch, T time, F features.
"""

import ctypes
import ctypes.util
import sys

import autograd.numpy as np                 # traced NumPy: these helpers run inside the loss
from autograd.builtins import DictBox, SequenceBox


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
