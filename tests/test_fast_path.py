"""The fast paths of the train step against the readable code they mirror, and float32 throughout.

Each fast piece is checked three ways: against finite differences in float64 (the helpers of
tests/test_gradients.py), against the readable autograd version in value and gradient, and, for
the train step as a whole, against a step assembled by hand from the readable functions. The
last tests run one float32 train step with every traced value and every backward output
inspected: no float64 may appear anywhere on the float32 path.
"""

import autograd.numpy as np
import numpy as onp
import pytest
from autograd import grad

import autograd.core
from rssm_np import Config, adam, fused, init_params, layers, training
from rssm_np.utils import speed
from rssm_np.distributions import bernoulli_nll
from rssm_np.utils.speed import dense_bernoulli_nll
from rssm_np.model import decode
from rssm_np.training import init_train_state, make_train_step
from rssm_np.utils.trees import tree_leaves
from test_gradients import SEEDS, TINY, check_tree, weighted_sum


# --- ELU: the where-free form is the where form, to the bit ----------------------------------

def _float32_sample():
    """2^24 float32 bit patterns spread over all 2^32 (every 256th, offset so that the low bits
    vary too), the 2^20 consecutive float32 just inside -1e-3 and their negatives (small |x|,
    where e^x - 1 loses its digits), and the special values."""
    spread = (onp.arange(1 << 24, dtype=onp.uint64) * 256 + onp.arange(1 << 24, dtype=onp.uint64) % 251)
    near_zero = onp.arange(onp.float32(-1e-3).view(onp.uint32) - (1 << 20), onp.float32(-1e-3).view(onp.uint32),
                           dtype=onp.uint32)
    specials = onp.array([0.0, -0.0, onp.inf, -onp.inf, 1e-45, -1e-45, 1.2e-38, -1.2e-38, 3.4e38, -3.4e38,
                          88.7, -88.7, -103.9, -104.0], dtype=onp.float32)
    return onp.concatenate([spread.astype(onp.uint32).view(onp.float32), near_zero.view(onp.float32),
                            -near_zero.view(onp.float32), specials])


def _same_bits(a, b):
    """Equal bit for bit, NaN for NaN (a NaN's payload is not a number the model uses)."""
    nan = onp.isnan(a)
    assert onp.array_equal(nan, onp.isnan(b))
    width = onp.uint32 if a.dtype == onp.float32 else onp.uint64
    onp.testing.assert_array_equal(a[~nan].view(width), b[~nan].view(width))


def test_elu_is_the_where_form_to_the_bit():
    """layers.elu is max(x, 0) + (e^min(x, 0) - 1), and fused.step_forward's ELU is
    max(x, 0) + expm1(min(x, 0)): each equals its np.where form bit for bit, signed zeros included
    (one of the two terms is always an exact zero). Run over all 2^32 float32 once, they agree
    everywhere; here a 2^24 sample, and float64 values at random."""
    rng = onp.random.default_rng(0)
    for x in (_float32_sample(), rng.standard_normal(1 << 20) * onp.logspace(-300, 2, 1 << 20)):
        with onp.errstate(all="ignore"):
            _same_bits(layers.elu(x), onp.where(x > 0, x, onp.exp(onp.minimum(x, 0.0)) - 1.0))
            _same_bits(onp.maximum(x, 0.0) + onp.expm1(onp.minimum(x, 0.0)),
                       onp.where(x > 0, x, onp.expm1(onp.minimum(x, 0.0))))
    assert layers.elu(onp.ones(3, onp.float32)).dtype == onp.float32


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_row_mean_is_numpys_mean_to_the_bit(dtype):
    """fused.row_mean (sum / count) against ndarray.mean, which divides in float64 and rounds:
    the same numbers, on rows of every width the loop meets and values over many scales."""
    rng = onp.random.default_rng(0)
    for width in (1, 3, 12, 384, 1000):
        x = (rng.standard_normal((2000, width)) * onp.exp(rng.uniform(-20, 20, (2000, 1)))).astype(dtype)
        _same_bits(fused.row_mean(x), x.mean(axis=-1, keepdims=True))


# --- an MLP's hidden layer as one primitive ---------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_dense_elu_finite_differences(seed):
    rng = onp.random.default_rng(seed)
    tree = {"x": rng.standard_normal((6, 5)), "w": rng.standard_normal((5, 4)), "b": rng.standard_normal(4)}
    check_tree(lambda p: weighted_sum(speed.dense_elu(p["x"], p["w"], p["b"]), seed), tree, seed)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dense_elu_is_elu_of_dense_to_the_bit(dtype):
    """layers.dense_elu against the two readable calls elu(dense(layer, x)), value and gradient
    with respect to x, W and b, bit for bit (the same operations: elu's backward, then dense's)."""
    rng = onp.random.default_rng(0)
    tree = {"x": rng.standard_normal((40, 9)), "w": rng.standard_normal((9, 7)), "b": rng.standard_normal(7)}
    tree = {k: (3 * v).astype(dtype) for k, v in tree.items()}

    def readable(p):
        return _readout(layers.elu(layers.dense({"w": p["w"], "b": p["b"]}, p["x"])), dtype)

    def fused_lines(p):
        return _readout(speed.dense_elu(p["x"], p["w"], p["b"]), dtype)

    _same_bits(speed.dense_elu(tree["x"], tree["w"], tree["b"]),
               layers.elu(layers.dense({"w": tree["w"], "b": tree["b"]}, tree["x"])))
    want, got = grad(readable)(tree), grad(fused_lines)(tree)
    for name in tree:
        assert got[name].dtype == onp.dtype(dtype)
        _same_bits(got[name], want[name])


# --- the decoder's output layer and the likelihood as one primitive --------------------------

def _likelihood_inputs(seed, dtype="float64", rows=6, hidden=5, pixels=9):
    rng = onp.random.default_rng(seed)
    inputs = {"hidden": rng.standard_normal((rows, hidden)), "w": 2 * rng.standard_normal((hidden, pixels)),
              "b": rng.standard_normal(pixels)}
    target = rng.uniform(0, 1, (rows, pixels))
    target[:, :2] = [0.0, 1.0]                                     # the world's extremes
    weight = (rng.uniform(size=(rows, pixels)) > 0.3).astype(dtype)
    return {k: v.astype(dtype) for k, v in inputs.items()}, target.astype(dtype), weight


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("masked", [False, True])
def test_dense_bernoulli_nll_finite_differences(seed, masked):
    inputs, target, weight = _likelihood_inputs(seed)
    weight = weight if masked else None
    check_tree(lambda p: weighted_sum(dense_bernoulli_nll(p["hidden"], p["w"], p["b"], target, weight, saved={}),
                                      seed), inputs, seed)


def _readout(y, read_dtype):
    """weighted_sum with weights of read_dtype: float32 keeps a float32 graph float32."""
    weights = onp.random.default_rng(100).standard_normal(onp.shape(y)).astype(read_dtype)
    return np.sum(y * weights)


@pytest.mark.parametrize("dtype,read_dtype", [("float64", "float64"), ("float32", "float32"),
                                              ("float32", "float64")])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("rows", [5, 64, 150])
def test_dense_bernoulli_nll_equals_the_readable_lines(dtype, read_dtype, masked, rows):
    """The same value and gradient as bernoulli_nll(layers.dense(...)), to the bit: the same
    operations in the same order, a chunk of rows at a time (rows: fewer than, exactly and not a
    multiple of the chunk), with logits out to +-40, where the likelihood saturates. A float64
    gradient arriving at float32 logits promotes the backward, as it does in bernoulli_nll."""
    inputs, target, weight = _likelihood_inputs(1, dtype, rows=rows, hidden=8, pixels=30)
    inputs["w"] = inputs["w"] * 4                                   # logits up to ~ +-40
    weight = weight if masked else None

    def readable(p):
        return _readout(bernoulli_nll(layers.dense({"w": p["w"], "b": p["b"]}, p["hidden"]), target, weight),
                        read_dtype)

    def fused_lines(p):
        return _readout(dense_bernoulli_nll(p["hidden"], p["w"], p["b"], target, weight, saved={}), read_dtype)

    plain_nll = bernoulli_nll(layers.dense({"w": inputs["w"], "b": inputs["b"]}, inputs["hidden"]), target, weight)
    fused_nll = dense_bernoulli_nll(inputs["hidden"], inputs["w"], inputs["b"], target, weight)
    assert fused_nll.dtype == onp.dtype(dtype)
    onp.testing.assert_array_equal(fused_nll, plain_nll)
    want, got = grad(readable)(inputs), grad(fused_lines)(inputs)
    for name in inputs:
        assert got[name].dtype == want[name].dtype
        onp.testing.assert_array_equal(got[name], want[name])


def test_dense_bernoulli_nll_refuses_data_of_another_precision():
    inputs, target, weight = _likelihood_inputs(0, "float32")
    with pytest.raises(TypeError, match="float64"):
        dense_bernoulli_nll(inputs["hidden"], inputs["w"], inputs["b"], target.astype(onp.float64), weight)


def test_dense_bernoulli_nll_with_and_without_saved_values():
    """The backward reads what the forward saved; given nothing, it runs the forward again: same gradient."""
    inputs, target, weight = _likelihood_inputs(0)
    with_saved = grad(lambda p: weighted_sum(dense_bernoulli_nll(p["hidden"], p["w"], p["b"], target, weight,
                                                                 saved={}), 0))(inputs)
    without = grad(lambda p: weighted_sum(dense_bernoulli_nll(p["hidden"], p["w"], p["b"], target, weight), 0))(inputs)
    for name in inputs:
        onp.testing.assert_array_equal(with_saved[name], without[name])


def test_dense_bernoulli_nll_refuses_a_gradient_for_the_data():
    inputs, target, weight = _likelihood_inputs(0)
    with pytest.raises(NotImplementedError, match="target"):
        grad(lambda x: onp.sum(dense_bernoulli_nll(inputs["hidden"], inputs["w"], inputs["b"], x, weight)))(target)


@pytest.mark.parametrize("model", ["rssm", "rnn", "ssm"])
@pytest.mark.parametrize("masked", [False, True])
def test_decode_nll_equals_decode_then_bernoulli_nll(model, masked):
    """fused.decode_nll against the two readable lines of model.negative_elbo, through every
    decoder weight and the state it reads: value and gradient to the bit; and finite differences."""
    config = Config(**TINY, model=model)
    params = init_params(config, seed=3)
    rng = onp.random.default_rng(3)
    batch, steps, pixels = 2, 4, config.image_size ** 2
    state = {"deter": rng.standard_normal((batch, steps, config.deter_size)),
             "stoch": rng.standard_normal((batch, steps, config.stoch_size))}
    target = rng.uniform(0, 1, (batch, steps, pixels))
    weight = (rng.uniform(size=(batch, steps, pixels)) > 0.3).astype(float) if masked else None
    tree = {"decoder": params["decoder"], "state": state}

    def readable(p):
        return weighted_sum(bernoulli_nll(decode(p, config, p["state"]), target, weight), 0)

    def fused_lines(p):
        return weighted_sum(fused.decode_nll(p, config, p["state"], target, weight), 0)

    onp.testing.assert_array_equal(fused.decode_nll(tree, config, state, target, weight),
                                   bernoulli_nll(decode(tree, config, state), target, weight))
    want, got = grad(readable)(tree), grad(fused_lines)(tree)
    for a, b in zip(tree_leaves(got), tree_leaves(want)):
        onp.testing.assert_array_equal(a, b)
    check_tree(fused_lines, tree, 0)


# --- the train step: its flat Adam against the readable update, and float32 throughout --------

SMALL = dict(image_size=8, deter_size=6, stoch_size=3, hidden_size=7, embed_size=5, batch_size=2, seq_len=4)


@pytest.mark.parametrize("grad_clip", [100.0, 1e-3])
def test_train_step_equals_the_readable_update(grad_clip):
    """Two steps of make_train_step (flat Adam) against the readable assembly: the gradient of
    training.loss with the step's noise seed, clip_by_global_norm, adam_step. The gradients are
    the same numbers; the update is adam_step's to float32 rounding (tests/test_adam.py)."""
    config = Config(**SMALL, grad_clip=grad_clip)
    fast = init_train_state(config)
    params, adam_state = fast["params"], fast["adam"]
    train_step = make_train_step(config)
    for step in range(2):
        fast, stats = train_step(fast)
        batch = training.training_batch(config, step)
        grads = tree_leaves(grad(training.loss)(params, batch, config, (config.seed, step, 1)))
        grads, norm = adam.clip_by_global_norm(grads, grad_clip)
        leaves, adam_state = adam.adam_step(tree_leaves(params), grads, adam_state,
                                            training.learning_rate_at(config, step))
        params = training.tree_rebuild(params, leaves)
        assert stats["grad_norm"] == pytest.approx(norm, rel=1e-12)
        for got, want in zip(tree_leaves(fast["params"]) + fast["adam"]["m"] + fast["adam"]["v"],
                             leaves + adam_state["m"] + adam_state["v"]):
            assert got.dtype == onp.float32
            onp.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6 * onp.max(onp.abs(want)))


def _float_dtypes(value):
    """The dtypes of every floating array in a traced value or a backward output."""
    if isinstance(value, (list, tuple)):
        return [d for item in value for d in _float_dtypes(item)]
    if isinstance(value, dict):
        return [d for item in value.values() for d in _float_dtypes(item)]
    dtype = getattr(value, "dtype", None)
    return [dtype] if dtype is not None and onp.issubdtype(dtype, onp.floating) else []


@pytest.fixture
def every_node_in_float32(monkeypatch):
    """Record every traced node's name and output, and wrap its backward to record what it returns:
    yields the list of (where, dtype) found that are not float32 (empty when all is well)."""
    found = []
    original = autograd.core.VJPNode.__init__

    def init(self, value, fun, args, kwargs, parent_argnums, parents):
        original(self, value, fun, args, kwargs, parent_argnums, parents)
        name = getattr(fun, "__name__", str(fun))
        found.extend((f"{name} forward", d) for d in _float_dtypes(value) if d != onp.float32)
        vjp = self.vjp

        def checked_vjp(g):
            outputs = vjp(g)
            found.extend((f"{name} backward", d) for d in _float_dtypes(outputs) if d != onp.float32)
            return outputs

        self.vjp = checked_vjp

    monkeypatch.setattr(autograd.core.VJPNode, "__init__", init)
    return found


FLOAT32_RUNS = {"plain": {}, "occlusion_control": dict(occlusion=True, control=True),
                "plain_loop": dict(fused=False), "rnn": dict(model="rnn"), "ssm": dict(model="ssm"),
                "levers": dict(kl_balance=0.8, overshooting=2, obs_overshooting=3, obs_overshooting_every=2)}


@pytest.mark.parametrize("run", sorted(FLOAT32_RUNS))
def test_a_float32_train_step_never_touches_float64(every_node_in_float32, monkeypatch, run):
    """One float32 train step: every traced value, every backward output, every leaf of the
    gradient and of the new state (params and moments) is float32; for the fused and the plain
    core, each model and the levers. autograd promotes silently (a float64 constant, a NumPy
    integer count), so this is where a regression shows."""
    config = Config(**SMALL, **FLOAT32_RUNS[run])
    gradients = []
    flat_of = training.flat_of

    def recording_flat_of(arrays):
        gradients.append(list(arrays))
        return flat_of(arrays)

    monkeypatch.setattr(training, "flat_of", recording_flat_of)
    state, stats = make_train_step(config)(init_train_state(config))
    assert stats["finite"] and state["step"] == 1
    assert gradients and all(g.dtype == onp.float32 for g in gradients[0])
    assert len(gradients[0]) == len(tree_leaves(state["params"]))
    new_leaves = tree_leaves(state["params"]) + state["adam"]["m"] + state["adam"]["v"]
    assert all(leaf.dtype == onp.float32 for leaf in new_leaves)
    assert every_node_in_float32 == []


def test_the_fused_likelihood_never_touches_float64(every_node_in_float32):
    """fused.decode_nll, in float32, forward and backward (the train step uses it through
    model.negative_elbo with config.fused)."""
    config = Config(**SMALL)
    params = init_params(config, seed=0)
    rng = onp.random.default_rng(0)
    state = {"deter": rng.standard_normal((2, 4, 6)).astype(onp.float32),
             "stoch": rng.standard_normal((2, 4, 3)).astype(onp.float32)}
    target = rng.uniform(0, 1, (2, 4, 64)).astype(onp.float32)
    weight = (rng.uniform(size=(2, 4, 64)) > 0.3).astype(onp.float32)
    from rssm_np.layers import mean_of
    gradient = grad(lambda p: mean_of(fused.decode_nll(p, config, state, target, weight)))(params)
    assert all(leaf.dtype == onp.float32 for leaf in tree_leaves(gradient["decoder"]))
    assert every_node_in_float32 == []
