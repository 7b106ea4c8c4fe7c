"""Benchmark the full train step: forward over the sequence, backward, clipping and Adam.

    python -m rssm_np.lab.bench                      # one JSON line at batch 16, sequence 32
    python -m rssm_np.lab.bench --plain              # the same with the plain-autograd recurrent core
    python -m rssm_np.lab.bench --scaling            # ms/step and peak memory over T and B, plus a plot
    python -m rssm_np.lab.bench --pieces             # each fast piece against the readable lines it mirrors
    python -m rssm_np.lab.bench --demo-recipe        # the demo's config (occluders, pushes, its dreams)
    python -m rssm_np.lab.bench --profile            # where each millisecond goes, by part of the step
    python -m rssm_np.lab.bench --products           # the step against its matrix products timed alone

Speed targets live here, not in timed tests: shared machines are noisy, so quote the median of
one run and ratios measured side by side.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np          # plain NumPy (the model's traced NumPy is autograd.numpy, in model.py)

from .results import provenance

from ..training import init_train_state, make_train_step
from ..utils.validate import check_int


def matmul_flops(config, batch, steps):
    """Multiply-adds x 2 of every matrix product in one train step (forward + backward).

    Backward costs two products per forward product (dL/dW and dL/dx), except the encoder's
    first layer, whose input is data (no dL/dx): so about 3x the forward count. Latent
    overshooting's dreams are not counted; observation overshooting's are.
    """
    c = config
    rows = batch * steps
    pixels = c.image_size ** 2
    first_layer = rows * pixels * c.hidden_size
    forward = (rows * c.hidden_size * c.embed_size                          # encoder 2nd layer
               + rows * c.embed_size * c.hidden_size                        # posterior embed term
               + rows * c.action_size * 3 * c.deter_size                    # GRU action term
               + rows * ((c.deter_size + c.stoch_size) * 3 * c.deter_size   # GRU, in the loop
                         + c.deter_size * c.hidden_size + c.hidden_size * 2 * c.stoch_size)  # posterior
               + rows * (c.deter_size * c.hidden_size + c.hidden_size * 2 * c.stoch_size)    # prior
               + rows * ((c.deter_size + c.stoch_size) * c.hidden_size + c.hidden_size ** 2
                         + c.hidden_size * pixels))                         # decoder
    if c.obs_overshooting > 1:      # the dreams: one img_step (GRU + prior) and one decoded frame per row
        every = c.obs_overshooting_every
        dreamed = batch * sum(len(range(d - 1, steps, every)) for d in range(2, c.obs_overshooting + 1))
        forward += dreamed * ((c.deter_size + c.stoch_size + c.action_size) * 3 * c.deter_size
                              + c.deter_size * c.hidden_size + c.hidden_size * 2 * c.stoch_size
                              + (c.deter_size + c.stoch_size) * c.hidden_size + c.hidden_size ** 2
                              + c.hidden_size * pixels)
    return 2 * (2 * first_layer + 3 * forward)


# --- the step's matrix products alone: how far the step is from this machine's matrix speed ----

def step_products(config, batch, steps):
    """Every matrix product of one fused train step of the rssm, forward and backward, as tuples
    (part, m, k, n, layout, calls): an (m, k) x (k, n) product made `calls` times, its operands laid
    out as the step holds them ("nn"; "tn": the left one transposed, as in a weight's gradient
    x^T d; "nt": the right one, as in d W^T).

    A dense layer over `rows` makes three: y = x W (forward), dW = x^T dy, dx = dy W^T (none when
    x is data: the frames, the actions). The filtering loop makes its forward and dx products once
    per time step on B rows (the first step's GRU passes no gradient back: its state is the fixed
    start), and each weight's gradient once over all B*T rows (fused.py). Observation
    overshooting's dreams (fused.dream) run every start's dream all D - 1 steps, and decode them.
    Latent overshooting's dreams are not listed. The flops agree with matmul_flops to within 2%
    (tests/test_levers.py): it counts a backward for the data inputs, and only the dreamed frames
    inside the sequence.
    """
    if config.model != "rssm" or config.overshooting > 1 or not config.fused:
        raise ValueError("step_products lists the fused rssm's products (model='rssm', fused, no latent "
                         f"overshooting), got model={config.model!r}, fused={config.fused}, "
                         f"overshooting={config.overshooting}")
    c, rows = config, batch * steps
    pixels, features, gates, head = c.image_size ** 2, c.deter_size + c.stoch_size, 3 * c.deter_size, 2 * c.stoch_size
    products = []

    def dense(part, rows, fan_in, fan_out, data=False):
        products.extend([(part, rows, fan_in, fan_out, "nn", 1), (part, fan_in, rows, fan_out, "tn", 1)]
                        + ([] if data else [(part, rows, fan_out, fan_in, "nt", 1)]))

    def loop(part, rows, steps, fan_in, fan_out, first_dx=True):
        products.extend([(part, rows, fan_in, fan_out, "nn", steps),
                         (part, rows, fan_out, fan_in, "nt", steps if first_dx else steps - 1),
                         (part, fan_in, rows * steps, fan_out, "tn", 1)])

    def decoder(part, rows):
        dense(part, rows, features, c.hidden_size)
        dense(part, rows, c.hidden_size, c.hidden_size)
        dense(part, rows, c.hidden_size, pixels)

    dense("encoder", rows, pixels, c.hidden_size, data=True)
    dense("encoder", rows, c.hidden_size, c.embed_size)
    dense("filter: terms for all frames", rows, c.embed_size, c.hidden_size)             # embed W_e
    dense("filter: terms for all frames", rows, c.action_size, gates, data=True)        # a W_a
    loop("filter: the loop over time", batch, steps, features, gates, first_dx=False)   # [h, z] W_hz
    loop("filter: the loop over time", batch, steps, c.deter_size, c.hidden_size)       # h W_h
    loop("filter: the loop over time", batch, steps, c.hidden_size, head)               # the head
    dense("prior", rows, c.deter_size, c.hidden_size)
    dense("prior", rows, c.hidden_size, head)
    decoder("decoder", rows)
    if c.obs_overshooting > 1:
        dreams, ahead = batch * len(range(0, steps - 1, c.obs_overshooting_every)), c.obs_overshooting - 1
        dense("observation overshooting's dreams", dreams * ahead, c.action_size, gates, data=True)
        loop("observation overshooting's dreams", dreams, ahead, features, gates)
        loop("observation overshooting's dreams", dreams, ahead, c.deter_size, c.hidden_size)
        loop("observation overshooting's dreams", dreams, ahead, c.hidden_size, head)
        decoder("observation overshooting's dreams", dreams * ahead)
    return products


def time_products(products, dtype, rounds=15, seed=0):
    """Each distinct product of `products` (step_products) timed alone, `rounds` times after two
    untimed calls, on random operands of its shape, dtype and layout; its median times its calls,
    summed by part -> ({part: ms}, ms of all). What the step would cost if it were its products only."""
    rng, seconds = np.random.default_rng(seed), {}
    for _, m, k, n, layout, _ in products:
        if (m, k, n, layout) in seconds:
            continue
        left = rng.standard_normal((k, m) if layout == "tn" else (m, k)).astype(dtype)
        right = rng.standard_normal((n, k) if layout == "nt" else (k, n)).astype(dtype)
        left, right = (left.T if layout == "tn" else left), (right.T if layout == "nt" else right)
        times = []
        for index in range(rounds + 2):
            start = time.perf_counter()
            left @ right
            if index >= 2:
                times.append(time.perf_counter() - start)
        seconds[(m, k, n, layout)] = float(np.median(times))
    parts = {}
    for part, m, k, n, layout, calls in products:
        parts[part] = parts.get(part, 0.0) + 1000 * calls * seconds[(m, k, n, layout)]
    return parts, sum(parts.values())


def products_result(config, steps=20):
    """bench --products: the step timed, then its matrix products alone, in one process."""
    products = step_products(config, config.batch_size, config.seq_len)
    step_ms = 1000 * float(np.median(step_seconds(config, steps)))
    parts, total = time_products(products, config.dtype)
    flops = {}
    for part, m, k, n, _, calls in products:
        flops[part] = flops.get(part, 0) + 2 * m * k * n * calls
    return {"step_ms": round(step_ms, 2), "products_ms": round(total, 2), "step_over_products": round(step_ms / total, 2),
            "products_gflop": round(sum(flops.values()) / 1e9, 3),
            "products_gflops": round(sum(flops.values()) / 1e9 / (total / 1000), 1),
            "parts": [{"part": part, "ms": round(ms, 2), "gflop": round(flops[part] / 1e9, 3),
                       "products": sum(calls for p, *_, calls in products if p == part)} for part, ms in parts.items()],
            "steps_timed": steps}

def traced_primitives(config):
    """How many operations autograd records in the forward pass of one train step (the loss, as
    make_train_step differentiates it: without the argument checks of training.loss)."""
    import autograd.core as core
    counter = {"n": 0}
    original = core.VJPNode.__init__

    def counting_init(self, *args, **kwargs):
        counter["n"] += 1
        original(self, *args, **kwargs)

    train_step, state = make_train_step(config), init_train_state(config)
    core.VJPNode.__init__ = counting_init
    try:
        train_step(state)
    finally:
        core.VJPNode.__init__ = original
    return counter["n"]


def peak_rss_mb():
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 ** 2 if sys.platform == "darwin" else peak / 1024


def step_seconds(config, steps=8, warmup=2):
    """Wall seconds of each of `steps` train steps of this config, after `warmup` untimed ones, on a
    scratch state that is then dropped: how a wall-clock budget becomes a planned number of steps
    (the demo's --minutes, from the median), and what this benchmark reports."""
    check_int("steps", steps, minimum=1)
    state = init_train_state(config)
    train_step = make_train_step(config)
    times = []
    for index in range(warmup + steps):
        start = time.perf_counter()
        state, _ = train_step(state)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return times


def planned_steps(config, steps=None, minutes=None):
    """A run's planned length, which the step-size schedule spans (training.learning_rate_at):
    `steps`, or for a budget of `minutes` the steps that fit (at most `steps`), from a few steps of
    this config timed on this machine first (the demo's --minutes)."""
    if minutes is None:
        return steps
    print("timing a few steps to plan the schedule for --minutes ...", flush=True)
    fitting = max(1, int(60 * minutes / float(np.median(step_seconds(config)))))
    planned = fitting if steps is None else min(steps, fitting)
    print(f"planned {planned} steps in {minutes:g} minutes; the step size falls from {config.learning_rate:g} "
          f"to {config.min_learning_rate:g} over them", flush=True)
    return planned


def time_train_step(batch, seq_len, steps, dtype, fused=True, warmup=3, **levers):
    """Median, min and max ms of the full train step, after `warmup` untimed steps.
    levers: other Config fields, e.g. kl_balance=0.8 or overshooting=3, to time their cost."""
    from ..config import Config
    config = Config(batch_size=batch, seq_len=seq_len, dtype=dtype, fused=fused, **levers)
    times = [1000 * seconds for seconds in step_seconds(config, steps, warmup)]
    flops = matmul_flops(config, batch, seq_len)
    median = float(np.median(times))
    result = {
        "ms_per_step": round(median, 2), "ms_min": round(min(times), 2), "ms_max": round(max(times), 2),
        "steps_timed": steps, "peak_rss_mb": round(peak_rss_mb(), 1),
        "gflop_per_step": round(flops / 1e9, 3), "achieved_gflops": round(flops / 1e9 / (median / 1000), 2),
        "traced_primitives": traced_primitives(config), "kl_balance": config.kl_balance,
        "overshooting": config.overshooting, "obs_overshooting": config.obs_overshooting,
        "obs_overshooting_every": config.obs_overshooting_every,
        "batch": batch, "seq_len": seq_len, "dtype": dtype, "fused": fused,
        "image_size": config.image_size, "deter_size": config.deter_size, "stoch_size": config.stoch_size,
        "hidden_size": config.hidden_size, "embed_size": config.embed_size,
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
    }
    return result


def alternate(pairs, rounds):
    """Time each (readable, fast) pair of calls alternately, `rounds` times, in this process: the
    median of fast / readable over rounds. Side by side, both see the same machine load."""
    ratios = {name: [] for name in pairs}
    for index in range(rounds):
        for name, (readable, fast) in pairs.items():
            seconds = {}
            for which, run in ((("readable", readable), ("fast", fast)) if index % 2 else
                               (("fast", fast), ("readable", readable))):
                start = time.perf_counter()
                run()
                seconds[which] = time.perf_counter() - start
            ratios[name].append(seconds["fast"] / seconds["readable"])
    return {name: round(float(np.median(values)), 3) for name, values in ratios.items()}


def pieces(config, rounds=100):
    """Each fast piece of the train step against the readable lines it mirrors, at this config's
    sizes: whether the two give the same numbers (bit for bit), and the median time ratio
    fast / readable over `rounds` alternating calls (below 1: the fast piece is faster).

        adam        clip_by_global_norm + adam_step    against speed.adam_update on one flat buffer
        likelihood  model.decode + bernoulli_nll      against fused.decode_nll (value and gradient)
        elu         np.where(x > 0, x, e^x - 1)       against layers.elu's where-free form
        row_mean    ndarray.mean(axis=-1)             against fused.row_mean (the GRU's layer norm)
    """
    from autograd import grad
    from .. import adam, fused
    from ..distributions import bernoulli_nll
    from ..layers import elu, mean_of
    from ..model import decode, init_params
    from ..training import elbo_inputs, training_batch
    from ..utils import speed
    from ..utils.speed import keep_freed_memory
    from ..utils.trees import tree_leaves
    keep_freed_memory()                                       # as make_train_step does
    rng = np.random.default_rng(0)
    params = init_params(config)
    leaves = tree_leaves(params)
    grads = [(1e-2 * rng.standard_normal(leaf.shape)).astype(leaf.dtype) for leaf in leaves]
    state = adam.adam_step(leaves, grads, adam.init_adam(leaves), 1e-3)[1]
    flat = speed.flat_of(grads)
    flat_leaves, flat_state = speed.adam_update(leaves, flat, speed.global_norm_flat(flat), state, 1e-3,
                                               config.grad_clip)   # views into one buffer, as in training

    def readable_adam(leaves=flat_leaves, state=flat_state):
        clipped, _ = adam.clip_by_global_norm(grads, config.grad_clip)
        return adam.adam_step(leaves, clipped, state, 1e-3)[0]

    def fast_adam():
        flat = speed.flat_of(grads)
        return speed.adam_update(flat_leaves, flat, speed.global_norm_flat(flat), flat_state, 1e-3, config.grad_clip)[0]

    pixels, _, _, weight, _ = elbo_inputs(training_batch(config, 0), config, 0)
    batch, steps = pixels.shape[:2]
    post = {"deter": rng.standard_normal((batch, steps, config.deter_size)).astype(config.dtype),
            "stoch": rng.standard_normal((batch, steps, config.stoch_size)).astype(config.dtype)}
    tree = {"decoder": params["decoder"], "post": post}
    readable_nll = grad(lambda p: mean_of(bernoulli_nll(decode(p, config, p["post"]), pixels, weight)))
    fast_nll = grad(lambda p: mean_of(fused.decode_nll(p, config, p["post"], pixels, weight)))
    activations = rng.standard_normal((batch * steps, config.hidden_size)).astype(config.dtype)
    gates = rng.standard_normal((batch, 3 * config.deter_size)).astype(config.dtype)

    def where_elu(x=activations):
        return np.where(x > 0, x, np.exp(np.minimum(x, 0.0)) - 1.0)

    pairs = {"adam": (readable_adam, fast_adam), "likelihood": (lambda: readable_nll(tree), lambda: fast_nll(tree)),
             "elu": (where_elu, lambda: elu(activations)),
             "row_mean": (lambda: gates.mean(axis=-1, keepdims=True), lambda: fused.row_mean(gates))}

    def same(a, b):
        return all(np.array_equal(x, y) for x, y in zip(tree_leaves(a), tree_leaves(b)))

    result = {"same_numbers": {name: same(readable(), fast()) for name, (readable, fast) in pairs.items()},
              "fast_over_readable": alternate(pairs, rounds), "rounds": rounds}
    return result


# Where a step's time goes: cProfile's own time of each function (a matrix product written with @
# counts in the function that writes it), summed into the parts of the step. First match wins.
PROFILE_PARTS = (
    ("Adam over the flat buffer, with the clip's norm", ("speed.py", ("adam_update", "adam_step_flat",
                                                                     "global_norm_flat", "flat_of", "leaf_views"))),
    ("the fused filter, forward and backward through time", ("fused.py", None)),
    ("MLP layers and the decoder's likelihood (fused primitives)", ("speed.py", None)),
    ("making the batch: the world and its frames", ("world.py", None)),
    ("the readable lines on the traced path (heads, KL, dreams)", ("rssm_np", None)),
    ("autograd: tracing the forward, running the backward", ("autograd", None)),
)


def profile_parts(config, steps=20, warmup=3):
    """ms per train step by part of the step (PROFILE_PARTS; the rest is NumPy's own functions and
    Python's), from cProfile over `steps` steps; the profiler's own overhead inflates the total."""
    import cProfile
    import pstats
    train_step = make_train_step(config)
    state = init_train_state(config)
    for _ in range(warmup):
        state, _ = train_step(state)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        state, _ = train_step(state)
    profiler.disable()
    totals = dict.fromkeys([label for label, _ in PROFILE_PARTS] + ["NumPy's functions and the rest"], 0.0)
    for (filename, _, function), (_, _, own, _, _) in pstats.Stats(profiler).stats.items():
        label = next((label for label, (where, names) in PROFILE_PARTS
                      if where in filename and (names is None or function in names)), "NumPy's functions and the rest")
        totals[label] += own
    return {"ms_per_step_profiled": round(1000 * sum(totals.values()) / steps, 2),
            "parts": [{"part": label, "ms": round(1000 * total / steps, 2)} for label, total in totals.items()]}


def scaling(args, measured):
    """ms/step and peak memory for T in {16, 32, 64} x B in {8, 16, 32, 64}, each in a fresh process;
    measured: where (results.provenance), printed once with the rows."""
    rows = []
    for seq_len in (16, 32, 64):
        for batch in (8, 16, 32, 64):
            command = [sys.executable, "-m", "rssm_np.lab.bench", "--batch", str(batch), "--seq-len", str(seq_len),
                       "--steps", str(args.steps), "--dtype", args.dtype]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            result = json.loads(output.strip().splitlines()[-1])
            result.pop("provenance", None)            # said once, for the whole table
            rows.append(result)
            print(f"T={seq_len:3d} B={batch:3d} | {result['ms_per_step']:8.1f} ms/step | "
                  f"{result['peak_rss_mb']:7.0f} MB peak | {result['achieved_gflops']:6.1f} GFLOP/s", flush=True)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for batch in (8, 16, 32, 64):
        picked = [r for r in rows if r["batch"] == batch]
        left.plot([r["seq_len"] for r in picked], [r["ms_per_step"] for r in picked], "o-", label=f"B={batch}")
        right.plot([r["seq_len"] for r in picked], [r["peak_rss_mb"] for r in picked], "o-", label=f"B={batch}")
    left.set(xlabel="sequence length T", ylabel="ms per train step", title="time per step")
    right.set(xlabel="sequence length T", ylabel="peak RSS (MB)", title="peak memory")
    for ax in (left, right):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
    fig.savefig(args.plot, dpi=90)
    print(json.dumps({"scaling": rows, "plot": args.plot, "provenance": measured}))


def recipe_name(args, config, levers):
    """What a profile or products line measured: the demo's recipe, or Config() (with levers)."""
    from ..config import Config
    if args.demo_recipe:
        return "the demo's recipe"
    return "Config()" + (" with levers" if any(getattr(config, name) != getattr(Config, name) for name in levers) else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Time the rssm_np train step.")
    parser.add_argument("--batch", type=int, default=16, help="sequences per step (default 16)")
    parser.add_argument("--seq-len", type=int, default=32, help="frames per sequence (default 32)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--plain", action="store_true", help="use the plain-autograd recurrent core, not fused")
    parser.add_argument("--kl-balance", type=float, default=0.0, metavar="A", help="time with KL balancing A (default 0: off)")
    parser.add_argument("--overshooting", type=int, default=1, metavar="D",
                        help="time with latent overshooting to distance D (default 1: off)")
    parser.add_argument("--obs-overshooting", type=int, default=1, metavar="D",
                        help="time with observation overshooting to distance D (default 1: off)")
    parser.add_argument("--obs-overshooting-every", type=int, default=1, metavar="K",
                        help="start observation overshooting's dreams at every K-th frame (default 1)")
    parser.add_argument("--scaling", action="store_true", help="table and plot over T and B")
    parser.add_argument("--pieces", action="store_true",
                        help="time each fast piece against the readable lines it mirrors, alternately in one process")
    parser.add_argument("--profile", action="store_true",
                        help="where each millisecond of the step goes: cProfile's time summed by part of the step")
    parser.add_argument("--products", action="store_true",
                        help="the step, then each of its matrix products timed alone: how far the step is from "
                             "this machine's matrix speed")
    parser.add_argument("--demo-recipe", action="store_true",
                        help="time the demo's recipe (config.DEMO_RECIPE: occluders, pushes, observation overshooting; "
                             "its fields take the place of the lever flags)")
    parser.add_argument("--plot", default=os.path.join("runs", "bench", "scaling.png"), help="where --scaling saves its plot")
    args = parser.parse_args(argv)
    for name in ("batch", "seq_len", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    measured = provenance(argv, program="python -m rssm_np.lab.bench")
    if args.scaling:
        scaling(args, measured)
        return
    levers = dict(kl_balance=args.kl_balance, overshooting=args.overshooting, obs_overshooting=args.obs_overshooting,
                  obs_overshooting_every=args.obs_overshooting_every)
    if args.demo_recipe:
        from ..config import DEMO_RECIPE
        levers.update(DEMO_RECIPE)
    if args.profile or args.products:     # where the step's time goes, or how far it is from its products
        from ..config import Config
        try:
            config = Config(batch_size=args.batch, seq_len=args.seq_len, dtype=args.dtype, fused=not args.plain, **levers)
            result = profile_parts(config, args.steps) if args.profile else products_result(config, args.steps)
        except ValueError as error:
            parser.error(str(error))
        print(json.dumps(dict(result, recipe=recipe_name(args, config, levers), batch=args.batch, seq_len=args.seq_len,
                              dtype=args.dtype, fused=not args.plain, provenance=measured)))
        return
    if args.pieces:
        from ..config import Config
        config = Config(batch_size=args.batch, seq_len=args.seq_len, dtype=args.dtype)
        print(json.dumps(dict(pieces(config, rounds=5 * args.steps), batch=args.batch, seq_len=args.seq_len,
                              dtype=args.dtype, provenance=measured)))
        return
    try:
        result = time_train_step(args.batch, args.seq_len, args.steps, args.dtype, fused=not args.plain, **levers)
    except ValueError as error:
        parser.error(str(error))
    print(json.dumps(dict(result, provenance=measured)))


if __name__ == "__main__":
    main()
