"""Every hand-written differentiable piece, checked against finite differences in float64.

How a check works (central_difference_check below): pick a random direction v in parameter
space. autograd's gradient g gives the directional derivative g . v. Central differences give
it independently: (f(x + eps v) - f(x - eps v)) / (2 eps), whose error is O(eps^2). In float64
with eps = 1e-6 the two agree to ~1e-8 relative unless the gradient is wrong.
"""

import numpy as onp
import autograd.numpy as np
import pytest
from autograd import grad
from autograd.misc import flatten

from rssm_np import Config, init_params, loss
from rssm_np import fused, layers, model
from rssm_np.distributions import bernoulli_nll, gaussian_head, kl_gaussian, sample_gaussian
from rssm_np.world import make_dataset

EPS = 1e-6
RTOL = 1e-6      # relative tolerance on the directional derivative
SEEDS = [0, 1, 2]


def central_difference_check(f, x, seed, eps=EPS, rtol=RTOL):
    """Assert that autograd's gradient of scalar f at x (a float64 vector) matches finite differences."""
    rng = onp.random.default_rng(seed)
    direction = rng.standard_normal(x.shape)
    analytic = onp.dot(grad(f)(x), direction)
    numeric = (f(x + eps * direction) - f(x - eps * direction)) / (2 * eps)
    assert abs(analytic - numeric) <= rtol * max(1.0, abs(numeric)), (analytic, numeric)


def check_tree(f, tree, seed, rtol=RTOL):
    """central_difference_check for a function of a nested dict of arrays."""
    flat, unflatten = flatten(tree)
    central_difference_check(lambda v: f(unflatten(v)), flat.astype(onp.float64), seed, rtol=rtol)


# The full loss passes hundreds of ELU units; a step of eps can carry one across 0, where ELU's
# second derivative jumps, and then the central difference is only O(eps) accurate, not O(eps^2).
FULL_LOSS_RTOL = 1e-5


def weighted_sum(y, seed):
    """A fixed random linear read-out, so the check sees every output component."""
    weights = onp.random.default_rng(seed + 100).standard_normal(onp.shape(y))
    return np.sum(y * weights)


@pytest.mark.parametrize("seed", SEEDS)
def test_dense(seed):
    rng = onp.random.default_rng(seed)
    x = rng.standard_normal((4, 5))
    layer = layers.init_dense(rng, 5, 3, dtype="float64")
    layer["b"] = rng.standard_normal(3)
    check_tree(lambda p: weighted_sum(layers.dense(p["layer"], p["x"]), seed), {"layer": layer, "x": x}, seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_mlp_with_elu(seed):
    rng = onp.random.default_rng(seed)
    tree = {"mlp": layers.init_mlp(rng, [5, 7, 3], dtype="float64"), "x": rng.standard_normal((4, 5))}
    check_tree(lambda p: weighted_sum(layers.mlp(p["mlp"], p["x"]), seed), tree, seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_layer_norm(seed):
    rng = onp.random.default_rng(seed)
    tree = {"x": rng.standard_normal((4, 6)), "scale": rng.standard_normal(6), "bias": rng.standard_normal(6)}
    check_tree(lambda p: weighted_sum(layers.layer_norm(p["x"], p["scale"], p["bias"]), seed), tree, seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_gru_step(seed):
    """The readable GRU step, model.transition: h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1}) with layer
    norm and all three gates, checked in every weight and input."""
    rng = onp.random.default_rng(seed)
    gru = layers.init_gru(rng, 3 + 2, 4, dtype="float64")                 # z of 3, a of 2, h of 4
    gru["ln_scale"] = 1 + 0.3 * rng.standard_normal(12)
    gru["ln_bias"] = 0.3 * rng.standard_normal(12)
    tree = {"gru": gru, "h": rng.standard_normal((5, 4)), "z": rng.standard_normal((5, 3)),
            "a": rng.standard_normal((5, 2))}
    config = Config(deter_size=4, stoch_size=3, dtype="float64")                # the "rssm": a GRU

    def step(p):
        state = {"deter": p["h"], "stoch": p["z"]}
        return weighted_sum(model.transition({"gru": p["gru"]}, config, state, p["a"]), seed)

    check_tree(step, tree, seed)


def _gates_inputs(seed, batch=5, size=4):
    rng = onp.random.default_rng(seed)
    return {"pre": 2 * rng.standard_normal((batch, 3 * size)), "deter": rng.standard_normal((batch, size)),
            "ln_scale": 1 + 0.3 * rng.standard_normal(3 * size), "ln_bias": 0.3 * rng.standard_normal(3 * size)}


@pytest.mark.parametrize("seed", SEEDS)
def test_fused_gru_gates_finite_differences(seed):
    """The hand-written backward of fused.gru_gates against finite differences."""
    check_tree(lambda p: weighted_sum(fused.gru_gates(p["pre"], p["deter"], p["ln_scale"], p["ln_bias"]), seed),
               _gates_inputs(seed), seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_fused_gru_gates_equals_readable_version(seed):
    """Same value and same gradient (to float64 rounding) as layers.gru_gates, argument by argument."""
    inputs = _gates_inputs(seed)

    def readable(p):
        return weighted_sum(layers.gru_gates(p["pre"], p["deter"], p["ln_scale"], p["ln_bias"]), seed)

    def handwritten(p):
        return weighted_sum(fused.gru_gates(p["pre"], p["deter"], p["ln_scale"], p["ln_bias"]), seed)

    assert onp.allclose(readable(inputs), handwritten(inputs), rtol=1e-12, atol=1e-12)
    readable_grad, handwritten_grad = grad(readable)(inputs), grad(handwritten)(inputs)
    for key in inputs:
        onp.testing.assert_allclose(handwritten_grad[key], readable_grad[key], rtol=1e-10, atol=1e-12)


def test_gru_update_gate_forced_open_copies_memory():
    """u = 0 (update pre-activation very negative) gives h_t = h_{t-1}, whatever the input."""
    inputs = _gates_inputs(0)
    inputs["ln_scale"] = onp.concatenate([onp.ones(8), onp.zeros(4)])
    inputs["ln_bias"] = onp.concatenate([onp.zeros(8), onp.full(4, -60.0)])
    for gates in (layers.gru_gates, fused.gru_gates):
        out = gates(inputs["pre"], inputs["deter"], inputs["ln_scale"], inputs["ln_bias"])
        onp.testing.assert_allclose(out, inputs["deter"], atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_gaussian_head_and_sampling(seed):
    rng = onp.random.default_rng(seed)
    eps = rng.standard_normal((4, 3))

    def f(p):
        mean, std = gaussian_head(p["out"], 0.1)
        return weighted_sum(sample_gaussian(mean, std, eps), seed) + weighted_sum(std, seed + 1)

    check_tree(f, {"out": rng.standard_normal((4, 6))}, seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_kl_gaussian(seed):
    rng = onp.random.default_rng(seed)
    tree = {"mq": rng.standard_normal((4, 3)), "sq": rng.uniform(0.2, 2, (4, 3)),
            "mp": rng.standard_normal((4, 3)), "sp": rng.uniform(0.2, 2, (4, 3))}
    check_tree(lambda p: weighted_sum(kl_gaussian(p["mq"], p["sq"], p["mp"], p["sp"]), seed), tree, seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_bernoulli_nll(seed):
    rng = onp.random.default_rng(seed)
    target = rng.uniform(0, 1, (4, 9))
    weight = (rng.uniform(size=(4, 9)) > 0.3).astype(float)
    check_tree(lambda p: weighted_sum(bernoulli_nll(p["logits"], target, weight), seed),
               {"logits": 3 * rng.standard_normal((4, 9))}, seed)


TINY = dict(image_size=8, deter_size=6, stoch_size=3, hidden_size=7, embed_size=5,
            batch_size=2, seq_len=4, dtype="float64", free_nats=0.0)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("world", ["plain", "occlusion_control"])
def test_full_loss(seed, world):
    """The whole negative ELBO: encoder, GRU over time, posterior, prior, KL, decoder."""
    occluded = world == "occlusion_control"
    for fused_core in (True, False):
        config = Config(**TINY, occlusion=occluded, control=occluded, fused=fused_core)
        batch = make_dataset(2, 4, size=8, seed=seed, occlusion=occluded, control=occluded)
        params = init_params(config, seed=seed)
        check_tree(lambda p: loss(p, batch, config, seed=seed), params, seed, rtol=FULL_LOSS_RTOL)


def test_full_loss_with_free_nats_active():
    """When the KL is below free_nats the KL term is constant: its gradient must vanish."""
    config = Config(**{**TINY, "free_nats": 1e3})
    batch = make_dataset(2, 4, size=8, seed=0)
    params = init_params(config, seed=0)
    base = dict(TINY, free_nats=1e3, kl_scale=0.0)
    no_kl = Config(**base)
    g_with, g_without = grad(loss)(params, batch, config), grad(loss)(params, batch, no_kl)
    onp.testing.assert_allclose(flatten(g_with)[0], flatten(g_without)[0], rtol=1e-12, atol=1e-14)
    check_tree(lambda p: loss(p, batch, config), params, 0, rtol=FULL_LOSS_RTOL)


def _filter_inputs(seed, batch=3, steps=4, deter=5, stoch=2, hidden=6):
    rng = onp.random.default_rng(seed)
    return {"deter": rng.standard_normal((batch, deter)), "stoch": rng.standard_normal((batch, stoch)),
            "action_terms": rng.standard_normal((batch, steps, 3 * deter)),
            "embed_terms": rng.standard_normal((batch, steps, hidden)),
            "w_hz": 0.5 * rng.standard_normal((deter + stoch, 3 * deter)),
            "ln_scale": 1 + 0.3 * rng.standard_normal(3 * deter), "ln_bias": 0.3 * rng.standard_normal(3 * deter),
            "w_post": 0.5 * rng.standard_normal((deter, hidden)), "w_out": 0.5 * rng.standard_normal((hidden, 2 * stoch)),
            "b_out": 0.3 * rng.standard_normal(2 * stoch), "eps": rng.standard_normal((batch, steps, stoch))}


FILTER_ARGUMENTS = ["deter", "stoch", "action_terms", "embed_terms", "w_hz", "ln_scale", "ln_bias",
                    "w_post", "w_out", "b_out", "eps"]     # positional: autograd traces positional arguments only
DIFFERENTIATED = ["deter", "stoch", "action_terms", "embed_terms", "w_hz", "ln_scale", "ln_bias", "w_post", "w_out",
                  "b_out"]


def _run_filter(inputs, differentiated, tape=None, point=False):
    """fused.filter_sequence with `differentiated` (a dict) in place of those inputs."""
    values = [differentiated.get(name, inputs[name]) for name in FILTER_ARGUMENTS]
    return fused.filter_sequence(*values, 0.1, tape=tape, point=point)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("point", [False, True])
def test_fused_filter_sequence_finite_differences(seed, point):
    """Backpropagation through time by hand (fused.filter_sequence), every input training
    differentiates, against finite differences; point: the RNN's head (z = mean, no std)."""
    inputs = _filter_inputs(seed)
    if point:
        inputs["w_out"], inputs["b_out"] = inputs["w_out"][:, :2], inputs["b_out"][:2]
    check_tree(lambda p: weighted_sum(_run_filter(inputs, p, fused.Tape(), point), seed),
               {name: inputs[name] for name in DIFFERENTIATED}, seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_fused_ssm_filter_finite_differences(seed):
    """The ssm's fused loop (no layer norm, no memory: h_t = elu(z_{t-1} W_z + action_term_t)),
    its hand-written backward through time against finite differences, every trained input."""
    inputs = _filter_inputs(seed)
    stoch, deter = inputs["stoch"].shape[-1], inputs["deter"].shape[-1]
    rng = onp.random.default_rng(seed + 7)
    inputs.update(w_hz=0.5 * rng.standard_normal((stoch, deter)), ln_scale=None, ln_bias=None,
                  action_terms=0.5 * rng.standard_normal(inputs["action_terms"].shape[:2] + (deter,)))
    trained = {name: inputs[name] for name in DIFFERENTIATED if inputs[name] is not None}
    check_tree(lambda p: weighted_sum(_run_filter(inputs, p, fused.Tape()), seed), trained, seed)


def test_fused_filter_sequence_with_and_without_a_tape():
    """The VJP reads the tape the forward filled; given none, it runs the forward again: same gradient."""
    inputs = _filter_inputs(0)
    weights = {name: inputs[name] for name in DIFFERENTIATED}
    with_tape = grad(lambda p: weighted_sum(_run_filter(inputs, p, fused.Tape()), 0))(weights)
    without = grad(lambda p: weighted_sum(_run_filter(inputs, p, None), 0))(weights)
    for name in DIFFERENTIATED:
        onp.testing.assert_array_equal(with_tape[name], without[name])


def test_fused_filter_sequence_refuses_gradients_training_never_needs():
    inputs = _filter_inputs(0)
    for name in ("eps",):
        with pytest.raises(NotImplementedError, match=name):
            grad(lambda x: np.sum(_run_filter(inputs, {name: x})))(inputs[name])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("world", ["plain", "occlusion_control", "rnn", "ssm"])
def test_fused_loss_equals_plain_autograd_loss(seed, world):
    """The full loss with the fused recurrent core equals the plain autograd version, value and gradient
    (for the ssm, the fused loop's h_t = elu(z W_z + (a W_a + b)) has no memory)."""
    occluded = world == "occlusion_control"
    model = world if world in ("rnn", "ssm") else "rssm"
    fast = Config(**TINY, occlusion=occluded, control=occluded, fused=True, model=model)
    plain = Config(**TINY, occlusion=occluded, control=occluded, fused=False, model=model)
    batch = make_dataset(2, 4, size=8, seed=seed, occlusion=occluded, control=occluded)
    params = init_params(fast, seed=seed)
    assert abs(loss(params, batch, fast, seed=seed) - loss(params, batch, plain, seed=seed)) < 1e-10
    onp.testing.assert_allclose(flatten(grad(loss)(params, batch, fast, seed))[0],
                                flatten(grad(loss)(params, batch, plain, seed))[0], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("model", ["rnn", "ssm"])
@pytest.mark.parametrize("seed", [0, 1])
def test_full_loss_of_each_variant(model, seed):
    """The RNN (no noise, KL of unit-variance Gaussians) and the SSM (no memory): whole loss, float64."""
    config = Config(**TINY, model=model, boundary="random")
    batch = make_dataset(2, 4, size=8, seed=seed, boundary="random")
    params = init_params(config, seed=seed)
    check_tree(lambda p: loss(p, batch, config, seed=seed), params, seed, rtol=FULL_LOSS_RTOL)


def test_rnn_kl_is_half_the_squared_distance_of_the_means():
    """With both stds fixed at 1, KL(q || p) = 0.5 ||mean_q - mean_p||^2: the regression of the prior."""
    from rssm_np.distributions import kl_gaussian
    from rssm_np.variants import state_head
    config = Config(**TINY, model="rnn")
    rng = onp.random.default_rng(0)
    (m_q, s_q), (m_p, s_p) = state_head(config, rng.standard_normal((5, 3))), state_head(config, rng.standard_normal((5, 3)))
    onp.testing.assert_allclose(kl_gaussian(m_q, s_q, m_p, s_p), 0.5 * ((m_q - m_p) ** 2).sum(-1), rtol=1e-12)
