"""The levers for more learning per minute: KL balancing, latent overshooting, the planned schedule.

Gradients are checked in float64 against central differences, as in test_gradients.py. With a
stop-gradient the loss's value no longer tells its gradient, so each check names which part of
the value's derivative the gradient must equal.
"""

import math

import autograd.numpy as np
import numpy as onp
import pytest
from autograd import grad
from autograd.misc import flatten

from rssm_np import Config, init_params, levers, loss, model, training
from rssm_np.distributions import bernoulli_nll, kl_gaussian
from rssm_np.config import DEMO_RECIPE
from rssm_np.lab import bench
from rssm_np.lab.bench import step_seconds
from rssm_np.training import learning_rate_at
from rssm_np.world import make_dataset

EPS = 1e-6
RTOL = 1e-5        # the full loss passes many ELU kinks (see test_gradients.FULL_LOSS_RTOL)
TINY = dict(image_size=8, deter_size=6, stoch_size=3, hidden_size=7, embed_size=5,
            batch_size=2, seq_len=5, dtype="float64", free_nats=0.0, occlusion=True, control=True)


def directional(f, x, direction):
    """(f(x + eps v) - f(x - eps v)) / (2 eps): the derivative of f along v, O(eps^2) accurate."""
    return (f(x + EPS * direction) - f(x - EPS * direction)) / (2 * EPS)


def assert_close(analytic, numeric, rtol=RTOL):
    assert abs(analytic - numeric) <= rtol * max(1.0, abs(numeric)), (analytic, numeric)


def gaussians(seed, shape=(3, 4, 2)):
    rng = onp.random.default_rng(seed)
    return (rng.standard_normal(shape), rng.uniform(0.3, 2.0, shape),
            rng.standard_normal(shape), rng.uniform(0.3, 2.0, shape))


# --- KL balancing ---------------------------------------------------------------------------

@pytest.mark.parametrize("balance", [0.8, 0.3])
@pytest.mark.parametrize("seed", [0, 1])
def test_kl_balancing_moves_the_prior_by_a_and_the_posterior_by_one_minus_a(balance, seed):
    """d KL_bal / d prior = a d KL / d prior and d KL_bal / d posterior = (1 - a) d KL / d posterior,
    each against central differences of the plain KL; the value is the plain KL's."""
    mq, sq, mp, sp = gaussians(seed)
    post, prior = {"mean": mq, "std": sq}, {"mean": mp, "std": sp}
    mean_kl = lambda *args: np.mean(kl_gaussian(*args))
    direction = onp.random.default_rng(seed + 10).standard_normal((2,) + mq.shape)
    assert levers.balanced_kl(post, prior, balance, 0.0) == pytest.approx(mean_kl(mq, sq, mp, sp), rel=1e-14)

    prior_grad = grad(lambda p: levers.balanced_kl(post, {"mean": p[0], "std": p[1]}, balance, 0.0))(onp.stack([mp, sp]))
    numeric = directional(lambda p: mean_kl(mq, sq, p[0], p[1]), onp.stack([mp, sp]), direction)
    assert_close(onp.sum(prior_grad * direction), balance * numeric, rtol=1e-7)

    post_grad = grad(lambda q: levers.balanced_kl({"mean": q[0], "std": q[1]}, prior, balance, 0.0))(onp.stack([mq, sq]))
    numeric = directional(lambda q: mean_kl(q[0], q[1], mp, sp), onp.stack([mq, sq]), direction)
    assert_close(onp.sum(post_grad * direction), (1 - balance) * numeric, rtol=1e-7)


@pytest.mark.filterwarnings("ignore:Output seems independent of input")
def test_kl_balancing_below_free_nats_costs_nothing():
    mq, sq, mp, sp = gaussians(2)
    prior = {"mean": mp, "std": sp}
    free = 1e3
    assert levers.balanced_kl({"mean": mq, "std": sq}, prior, 0.8, free) == free
    assert onp.all(grad(lambda m: levers.balanced_kl({"mean": m, "std": sq}, prior, 0.8, free))(mq) == 0)


def _loss_parts(params, batch, config, seed=0):
    """(loss, reconstruction, mean KL) of the checked inputs, as training computes them."""
    return model.negative_elbo(params, config, *training.elbo_inputs(batch, config, seed))


@pytest.mark.parametrize("fused_core", [True, False])
@pytest.mark.parametrize("part, steps", [("prior", 5), ("posterior", 1)])
def test_kl_balancing_in_the_full_loss_against_finite_differences(fused_core, part, steps):
    """In the whole model: the prior's own weights get a times the KL's derivative (the
    reconstruction does not read them); the posterior's own weights get the reconstruction's
    derivative plus (1 - a) times the KL's. Each against central differences of the plain parts.
    The posterior's case uses one frame: over more, z_t also feeds h_{t+1} and so the later
    priors, a path that balancing weighs by a, and differences cannot tell the two apart."""
    balance = 0.8
    config = Config(**{**TINY, "seq_len": steps}, kl_balance=balance, fused=fused_core)
    plain = Config(**{**TINY, "seq_len": steps}, fused=fused_core)
    batch = make_dataset(2, steps, size=8, seed=3, occlusion=True, control=True)
    params = init_params(config, seed=3)
    assert loss(params, batch, config) == pytest.approx(loss(params, batch, plain), rel=1e-14)
    gradient = grad(loss)(params, batch, config)
    recon_share, kl_share = (0.0, balance) if part == "prior" else (1.0, 1 - balance)
    flat, unflatten = flatten(params[part])
    direction = onp.random.default_rng(4).standard_normal(flat.shape)

    def parts(vector, index):
        return float(_loss_parts({**params, part: unflatten(vector)}, batch, plain)[index])

    numeric = recon_share * directional(lambda v: parts(v, 1), flat, direction) \
        + kl_share * directional(lambda v: parts(v, 2), flat, direction)
    assert abs(numeric) > 1e-3
    assert_close(onp.dot(flatten(gradient[part])[0], direction), numeric)


# --- latent overshooting --------------------------------------------------------------------

def test_overshooting_of_distance_one_is_the_plain_elbo(monkeypatch):
    """D = 1 with no balancing: the loss is the plain bound, and negative_elbo never calls the levers."""
    config = Config(**TINY, overshooting=1)
    batch = make_dataset(2, 5, size=8, seed=0, occlusion=True, control=True)
    params = init_params(config, seed=0)
    inputs = training.elbo_inputs(batch, config, 0)
    assert inputs[-1] is None
    embed = model.encode(params, inputs[0])
    post, prior = model.observe(params, config, embed, inputs[1], inputs[2])
    plain = bernoulli_nll(model.decode(params, config, post), inputs[0], inputs[3]).mean() \
        + onp.mean(kl_gaussian(post["mean"], post["std"], prior["mean"], prior["std"]))

    def untouched(*args, **kwargs):
        raise AssertionError("negative_elbo called a lever with both levers off")

    for name in ("kl_term", "balanced_kl", "overshooting_kl"):
        monkeypatch.setattr(levers, name, untouched)
    assert loss(params, batch, config) == pytest.approx(plain, rel=1e-13)


@pytest.mark.parametrize("model_name", ["rssm", "ssm", "rnn"])
def test_overshooting_dreams_from_the_posterior_d_steps_back(model_name):
    """KL_2, written out one start time at a time with img_step: from the posterior state at t-2,
    dream to t-1 (which must be observe's own prior there), sample z, dream on to t, and compare
    with the posterior at t. overshooting_kl must equal the mean over b and t."""
    config = Config(**{**TINY, "occlusion": False}, model=model_name, overshooting=2)
    batch = make_dataset(2, 5, size=8, seed=1, control=True)
    params = init_params(config, seed=1)
    pixels, prev_actions, eps, weight, overshoot_eps = training.elbo_inputs(batch, config, 5)
    post, prior = model.observe(params, config, model.encode(params, pixels), prev_actions, eps)
    kls = []
    for t in range(1, config.seq_len):
        if t == 1:
            start = model.initial_state(config, 2)                        # the state before frame 0
        else:
            start = {"deter": post["deter"][:, t - 2], "stoch": post["stoch"][:, t - 2]}
        one = model.img_step(params, config, start, prev_actions[:, t - 1], overshoot_eps[0][:, t - 1])
        onp.testing.assert_allclose(one["mean"], prior["mean"][:, t - 1], rtol=1e-12)
        two = model.img_step(params, config, one, prev_actions[:, t])
        kls.append(kl_gaussian(post["mean"][:, t], post["std"][:, t], two["mean"], two["std"]))
    expected = onp.mean(kls)
    term = levers.overshooting_kl(params, config, post, prior, prev_actions, overshoot_eps, model.img_step)
    assert term == pytest.approx(expected, rel=1e-12)


def test_overshooting_gradient_against_finite_differences_with_the_target_held():
    """The posterior is the target (its gradient is stopped): with the posterior's statistics held
    as constants, the overshooting term's gradient matches central differences; and the traced
    posterior gives the very same gradient, so nothing flows into it."""
    config = Config(**TINY, overshooting=3)
    batch = make_dataset(2, 5, size=8, seed=2, occlusion=True, control=True)
    params = init_params(config, seed=2)
    pixels, prev_actions, eps, _, overshoot_eps = training.elbo_inputs(batch, config, 2)
    held, _ = model.observe(params, config, model.encode(params, pixels), prev_actions, eps)
    flat, unflatten = flatten(params)

    def term(vector, hold):
        p = unflatten(vector)
        post, prior = model.observe(p, config, model.encode(p, pixels), prev_actions, eps)
        if hold:
            post = {**post, "mean": held["mean"], "std": held["std"]}
        return levers.overshooting_kl(p, config, post, prior, prev_actions, overshoot_eps, model.img_step)

    direction = onp.random.default_rng(7).standard_normal(flat.shape)
    held_grad, traced_grad = grad(lambda v: term(v, True))(flat), grad(lambda v: term(v, False))(flat)
    assert_close(onp.dot(held_grad, direction), directional(lambda v: term(v, True), flat, direction))
    onp.testing.assert_allclose(traced_grad, held_grad, rtol=1e-12, atol=1e-15)
    assert onp.linalg.norm(held_grad) > 0


def test_overshooting_adds_its_term_to_the_loss_and_trains():
    config = Config(**TINY, overshooting=3)
    batch = make_dataset(2, 5, size=8, seed=0, occlusion=True, control=True)
    params = init_params(config, seed=0)
    total, recon, _ = _loss_parts(params, batch, config)
    plain_total = _loss_parts(params, batch, Config(**TINY))[0]
    assert total > plain_total and onp.isfinite(total)


# --- the schedule ---------------------------------------------------------------------------

def test_planned_schedule_values_at_known_steps():
    """lr_k = lr (min_lr / lr)^(min(k, K) / K): lr at 0, the geometric mean halfway, min_lr at K and after."""
    config = Config(learning_rate=3e-3, min_learning_rate=1e-4, lr_decay_steps=4500)
    assert learning_rate_at(config, 0) == pytest.approx(3e-3, rel=1e-12)
    assert learning_rate_at(config, 2250) == pytest.approx(math.sqrt(3e-3 * 1e-4), rel=1e-12)
    assert learning_rate_at(config, 4500) == pytest.approx(1e-4, rel=1e-12)
    assert learning_rate_at(config, 20000) == pytest.approx(1e-4, rel=1e-12)
    # the equivalent half-life is K ln 2 / ln(lr / min_lr) = 917 steps
    assert learning_rate_at(config, 917) == pytest.approx(1.5e-3, rel=1e-3)
    longer = Config(lr_decay_steps=25000)
    assert learning_rate_at(longer, 4500) > 10 * learning_rate_at(config, 4500)


def test_half_life_schedule_values_at_known_steps():
    config = Config(learning_rate=3e-3, min_learning_rate=1e-4, lr_half_life=1000)
    assert learning_rate_at(config, 0) == pytest.approx(3e-3)
    assert learning_rate_at(config, 1000) == pytest.approx(1.5e-3)
    assert learning_rate_at(config, 3000) == pytest.approx(3.75e-4)
    assert learning_rate_at(config, 10000) == pytest.approx(1e-4)
    assert learning_rate_at(Config(lr_half_life=0), 10 ** 6) == Config().learning_rate


def test_a_wall_clock_budget_becomes_planned_steps(monkeypatch, capsys):
    monkeypatch.setattr(bench, "step_seconds", lambda config: [0.3, 0.25, 0.2])
    config = Config()
    assert bench.planned_steps(config, None, 2.0) == 480
    assert bench.planned_steps(config, 100, 2.0) == 100
    assert bench.planned_steps(config, 4500, None) == 4500
    assert "planned 480 steps in 2 minutes" in capsys.readouterr().out


def test_the_profile_splits_real_steps_into_named_parts():
    """bench --profile: every part named, none negative, the fused filter and autograd both seen,
    and the parts add up to the total it reports."""
    result = bench.profile_parts(Config(**{**TINY, "dtype": "float32"}), steps=2, warmup=1)
    parts = {part["part"]: part["ms"] for part in result["parts"]}
    assert list(parts)[:-1] == [label for label, _ in bench.PROFILE_PARTS] and all(ms >= 0 for ms in parts.values())
    assert parts["the fused filter, forward and backward through time"] > 0
    assert parts["autograd: tracing the forward, running the backward"] > 0
    assert sum(parts.values()) == pytest.approx(result["ms_per_step_profiled"], abs=0.05)


def test_observation_overshootings_products_are_counted():
    """bench's GFLOP count grows by the dreamed rows' products, in proportion to the dreamed frames:
    with T = 32 and D = 5, 31 + 30 + 29 + 28 from every frame, 8 + 8 + 8 + 7 from every 4th."""
    plain = bench.matmul_flops(Config(), 16, 32)
    every_4th = bench.matmul_flops(Config(obs_overshooting=5, obs_overshooting_every=4), 16, 32) - plain
    every_frame = bench.matmul_flops(Config(obs_overshooting=5, obs_overshooting_every=1), 16, 32) - plain
    assert every_4th > 0 and every_frame / every_4th == pytest.approx(118 / 31, rel=1e-12)


@pytest.mark.parametrize("fields", [{}, DEMO_RECIPE], ids=["Config()", "demo recipe"])
def test_the_steps_products_agree_with_its_flop_count(fields):
    """bench --products lists every product of the step by its shape; matmul_flops counts them by
    formula. Two derivations, within 2% (data inputs' backward and the dreams past the last frame)."""
    products = bench.step_products(Config(**fields), 16, 32)
    listed = sum(2 * m * k * n * calls for _, m, k, n, _, calls in products)
    assert listed == pytest.approx(bench.matmul_flops(Config(**fields), 16, 32), rel=0.02)
    loop = [calls for part, *_, calls in products if part == "filter: the loop over time"]
    assert sum(loop) == 3 * 32 + (3 * 32 - 1) + 3       # forward and dx per step (not step 0's GRU dx), dW once
    assert all(layout in ("nn", "tn", "nt") and min(m, k, n, calls) >= 1 for _, m, k, n, layout, calls in products)


def test_the_products_are_timed_alone_and_summed_by_part():
    config = Config(**{**TINY, "dtype": "float32"})
    parts, total = bench.time_products(bench.step_products(config, 2, 5), "float32", rounds=2)
    assert set(parts) == {"encoder", "filter: terms for all frames", "filter: the loop over time", "prior", "decoder"}
    assert all(ms > 0 for ms in parts.values()) and total == pytest.approx(sum(parts.values()))
    with pytest.raises(ValueError, match="model='rnn'"):
        bench.step_products(Config(model="rnn"), 16, 32)


def test_step_seconds_times_real_steps():
    times = step_seconds(Config(**{**TINY, "dtype": "float32"}), steps=2, warmup=1)
    assert len(times) == 2 and all(0 < t < 60 for t in times)


@pytest.mark.parametrize("fields, words", [
    (dict(kl_balance=1.5), "kl_balance"), (dict(kl_balance=-0.1), "kl_balance"),
    (dict(overshooting=0), "overshooting"), (dict(overshooting=40, seq_len=32), "overshooting"),
    (dict(lr_decay_steps=-1), "lr_decay_steps"),
    (dict(lr_decay_steps=10, min_learning_rate=0.0), "min_learning_rate")])
def test_lever_fields_are_checked(fields, words):
    with pytest.raises((ValueError, TypeError), match=words):
        Config(**fields)


# --- the data -------------------------------------------------------------------------------

def test_push_share_sets_the_share_of_pushed_training_frames():
    from rssm_np.training import training_batch
    from rssm_np.world import PUSH_PROB
    default = Config(control=True)
    assert default.push_share == PUSH_PROB
    same = training_batch(Config(control=True, push_share=PUSH_PROB), 3)
    onp.testing.assert_array_equal(training_batch(default, 3)["actions"], same["actions"])
    for share in (0.0, 0.2, 1.0):
        actions = training_batch(Config(control=True, push_share=share, batch_size=64), 0)["actions"]
        pushed = onp.mean(onp.any(actions != 0, axis=-1))
        assert abs(pushed - share) < 0.03, (share, pushed)
    with pytest.raises(ValueError, match="push_share"):
        Config(push_share=1.5)
    with pytest.raises(ValueError, match="push_prob"):
        make_dataset(2, 3, control=True, push_prob=-0.1)


@pytest.mark.parametrize("model_name,every", [("rssm", 1), ("rnn", 1), ("rssm", 2), ("ssm", 3)])
def test_observation_overshooting_decodes_the_dream_d_steps_on(model_name, every):
    """The term for D = 3, written out one start time at a time with img_step on the prior's mean:
    from the posterior at t-d, dream d steps (the first is observe's own prior), decode, and score
    the frame at t. observation_overshooting must equal the mean over d = 2, 3 of those means. With
    obs_overshooting_every = k the dreams start at frames 0, k, 2k, ..: the frame t dreamed d steps
    on is scored when t - (d - 1) is a multiple of k."""
    config = Config(**{**TINY, "occlusion": False}, model=model_name, obs_overshooting=3,
                    obs_overshooting_every=every)
    batch = make_dataset(2, 6, size=8, seed=3, control=True)
    params = init_params(config, seed=3)
    pixels, prev_actions, eps, weight, _ = training.elbo_inputs(batch, config, 4)
    post, prior = model.observe(params, config, model.encode(params, pixels), prev_actions, eps)
    per_distance = []
    for d in (2, 3):
        scores = []
        for t in range(d - 1, pixels.shape[1], every):
            start = model.initial_state(config, 2) if t - d < 0 else \
                {"deter": post["deter"][:, t - d], "stoch": post["stoch"][:, t - d]}
            state = start
            for k in range(t - d + 1, t + 1):                       # d dreamed steps, on the prior's mean
                state = model.img_step(params, config, state, prev_actions[:, k])
            scores.append(bernoulli_nll(model.decode(params, config, state), pixels[:, t]))
        per_distance.append(onp.mean(scores))
    term = levers.observation_overshooting(params, config, post, prior, pixels, weight, prev_actions,
                                           model.img_step, model.frame_nll)
    assert term == pytest.approx(onp.mean(per_distance), rel=1e-12)


@pytest.mark.parametrize("model_name", ["rssm", "rnn", "ssm"])
@pytest.mark.parametrize("every,distance", [(1, 3), (2, 5), (4, 5)])
def test_the_fused_dream_scores_what_the_loop_scores(model_name, every, distance):
    """observation_overshooting with config.fused (one fused.dream over every start, steps past the
    last frame weighted 0) against the loop over dreams_ahead (fused=False): value and gradient,
    float64."""
    configs = [Config(**{**TINY, "seq_len": 7}, model=model_name, obs_overshooting=distance,
                      obs_overshooting_every=every, fused=fast) for fast in (True, False)]
    batch = make_dataset(2, 7, size=8, seed=3, occlusion=True, control=True)
    params = init_params(configs[0], seed=3)
    pixels, prev_actions, eps, weight, _ = training.elbo_inputs(batch, configs[0], 4)

    def term(p, config):
        post, prior = model.observe(p, config, model.encode(p, pixels), prev_actions, eps)
        return levers.observation_overshooting(p, config, post, prior, pixels, weight, prev_actions,
                                               model.img_step, model.frame_nll)

    assert term(params, configs[0]) == pytest.approx(term(params, configs[1]), rel=1e-12)
    onp.testing.assert_allclose(flatten(grad(term)(params, configs[0]))[0], flatten(grad(term)(params, configs[1]))[0],
                                rtol=1e-9, atol=1e-12)


def test_observation_overshooting_gradient_against_finite_differences():
    """Its gradient, through the dream and the decoder, matches central differences (float64), and
    the loss with it on is the plain loss plus the term."""
    config = Config(**{**TINY, "free_nats": 0.0}, model="rnn", obs_overshooting=3, obs_overshooting_every=2)
    batch = make_dataset(2, 5, size=8, seed=5, occlusion=True, control=True)
    params = init_params(config, seed=5)
    pixels, prev_actions, eps, weight, _ = training.elbo_inputs(batch, config, 5)
    flat, unflatten = flatten(params)
    # Fresh weights put some ELUs exactly at 0 (zero biases on the empty memory), where the second
    # derivative jumps and central differences lose an order; nudged weights have no such unit.
    flat = flat + 0.05 * onp.random.default_rng(5).standard_normal(flat.shape)
    params = unflatten(flat)

    def term(vector):
        p = unflatten(vector)
        post, prior = model.observe(p, config, model.encode(p, pixels), prev_actions, eps)
        return levers.observation_overshooting(p, config, post, prior, pixels, weight, prev_actions,
                                               model.img_step, model.frame_nll)

    direction = onp.random.default_rng(11).standard_normal(flat.shape)
    analytic = grad(term)(flat)
    assert_close(onp.dot(analytic, direction), directional(term, flat, direction))
    plain = _loss_parts(params, batch, Config(**{**TINY, "model": "rnn", "free_nats": 0.0}))[0]
    assert _loss_parts(params, batch, config)[0] == pytest.approx(plain + term(flat), rel=1e-12)
