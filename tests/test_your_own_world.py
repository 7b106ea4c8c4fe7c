"""Your own world: the pendulum of examples/pendulum.py trained through the public door, the checks
train makes on a user's batches, and the world-agnostic measurement of rssm_np/lab/frames.py."""

import importlib.util
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from rssm_np import Config, init_params, train
from rssm_np.lab import frames
from rssm_np.lab.evaluate import filtered_frames

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "pendulum.py")

# Small enough that a step takes milliseconds: the frames stay the example's 32x32.
TINY = dict(image_size=32, action_size=1, deter_size=32, stoch_size=8, hidden_size=64, embed_size=32,
            batch_size=8, seq_len=16)


def load_example():
    spec = importlib.util.spec_from_file_location("pendulum_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pendulum = load_example()


def logit(p):
    return math.log(p / (1 - p))


# --- the world ----------------------------------------------------------------------------------

def test_the_pendulum_world_same_seed_same_data_frames_in_range():
    first, again = pendulum.pendulum(4, 12, seed=(0, 3)), pendulum.pendulum(4, 12, seed=(0, 3))
    other = pendulum.pendulum(4, 12, seed=(0, 4))
    for key in ("obs", "actions", "angle"):
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["obs"], other["obs"])
    obs, actions = first["obs"], first["actions"]
    assert obs.shape == (4, 12, 32, 32) and obs.dtype == np.float32
    assert actions.shape == (4, 12, 1) and actions.dtype == np.float32
    assert obs.min() == 0 and obs.max() <= 1 and np.all(np.abs(actions) <= 1)
    lit = obs[obs > 0]
    assert lit.min() >= pendulum.PIXEL_FLOOR      # floored: no float32 subnormals reach the BLAS


def test_the_frame_shows_the_bob_where_the_angle_puts_it():
    angles = np.linspace(-3, 3, 13)
    images = pendulum.render(angles)
    brightest = np.array([np.unravel_index(np.argmax(image), image.shape)[::-1] for image in images])   # [x, y]
    assert np.abs(brightest - pendulum.bob_position(angles)).max() <= 0.5 + 1e-9


def energy(angle, velocity):
    """Per unit of moment of inertia: theta'^2 / 2 - omega0^2 cos(theta)."""
    return velocity ** 2 / 2 - pendulum.OMEGA0 ** 2 * np.cos(angle)


def test_a_free_swing_keeps_its_energy_and_damping_takes_it(monkeypatch):
    angle, velocity = np.array([1.5]), np.array([0.0])
    start = energy(angle, velocity)
    monkeypatch.setattr(pendulum, "DAMPING", 0.0)
    energies = []
    for _ in range(300):
        angle, velocity = pendulum.step_pendulum(angle, velocity, np.zeros(1))
        energies.append(energy(angle, velocity))
    # Semi-implicit Euler keeps the energy within O(omega0 dt) of its start, and it does not drift:
    # the mean over the first two swings is the mean over the last two.
    swing, energies = pendulum.OMEGA0 ** 2 * (1 - math.cos(1.5)), np.array(energies)[:, 0]
    assert np.abs(energies - start).max() < 0.05 * swing
    assert abs(energies[:60].mean() - energies[-60:].mean()) < 0.002 * swing
    monkeypatch.undo()
    angle, velocity = np.array([1.5]), np.array([0.0])
    for _ in range(300):
        angle, velocity = pendulum.step_pendulum(angle, velocity, np.zeros(1))
    # Damped, the swing's energy above the bottom decays about as exp(-damping t): exp(-3) after 300 frames.
    bottom = -pendulum.OMEGA0 ** 2
    assert energy(angle, velocity)[0] - bottom < 0.1 * (start[0] - bottom)


def test_a_small_swing_takes_its_period_and_the_torque_pushes(monkeypatch):
    monkeypatch.setattr(pendulum, "DAMPING", 0.0)
    angle, velocity, angles = np.array([0.05]), np.array([0.0]), []
    for _ in range(200):
        angle, velocity = pendulum.step_pendulum(angle, velocity, np.zeros(1))
        angles.append(angle[0])
    upward = np.nonzero((np.array(angles[:-1]) < 0) & (np.array(angles[1:]) >= 0))[0]
    period = np.diff(upward).mean()
    assert abs(period - 2 * math.pi / pendulum.OMEGA0) <= 1.0       # frames
    pushed, free = (pendulum.step_pendulum(np.zeros(1), np.zeros(1), np.array([u]))[0] for u in (1.0, 0.0))
    assert pushed[0] > 0 and free[0] == 0


# --- training through the public door --------------------------------------------------------

def test_the_pendulum_trains_through_the_public_door():
    """60 steps of a tiny model on the example's world: the loss falls below 0.7 of where it
    started, the posterior decodes the seen frames far better than a blank frame, and on held-out
    sequences the imagined frames beat all three baselines over the first 5 steps."""
    config = Config(**TINY, seed=0)
    asked = []

    def batches(step):
        asked.append(step)
        return pendulum.make_batches(config)(step)

    state = train(config, steps=60, batches=batches)
    assert asked == list(range(60))                     # the checked first batch is trained on, not asked twice
    losses = np.array([h["loss"] for h in state["history"]])
    assert losses[-5:].mean() < 0.7 * losses[:5].mean()
    held_out = pendulum.pendulum(16, 20, seed=pendulum.HELD_OUT_SEED)
    metrics = frames.frame_metrics(state["params"], config, held_out, context=10, samples=4)
    assert json.loads(json.dumps(metrics)) == metrics
    early = {name: frames.over(metrics["curves"][name]["mse"], 5) for name in frames.PREDICTORS}
    assert early["model"] < 0.9 * min(early[name] for name in frames.BASELINES), early
    seen, _ = filtered_frames(state["params"], config, held_out["obs"], held_out["actions"])
    blank = frames.squared_error(np.zeros_like(held_out["obs"]), held_out["obs"]).mean()
    assert frames.squared_error(seen, held_out["obs"]).mean() < 0.3 * blank


def test_a_users_world_starts_the_decoder_at_its_own_average_pixel():
    config = Config(**TINY)
    batches = pendulum.make_batches(config)
    state = train(config, steps=0, batches=batches)
    mass = batches(0)["obs"].astype(np.float64).sum(axis=(-2, -1)).mean()
    bias = state["params"]["decoder"][-1]["b"]
    np.testing.assert_allclose(bias, logit(mass / 32 ** 2), rtol=1e-6)
    chosen = train(config, steps=0, batches=batches, pixel_mass=50.0)
    np.testing.assert_allclose(chosen["params"]["decoder"][-1]["b"], logit(50.0 / 32 ** 2), rtol=1e-6)
    dark = train(config, steps=0, batches=lambda step: {**batches(step), "obs": np.zeros((8, 16, 32, 32), np.float32)})
    assert np.all(np.isfinite(dark["params"]["decoder"][-1]["b"]))    # an all-black batch: half a pixel, not -inf
    with pytest.raises(ValueError, match="pixel_mass must be < 1024"):
        train(config, steps=0, batches=batches, pixel_mass=1024)


def test_the_dot_world_starts_where_it_always_did():
    """Without batches, train starts from init_params(config, seed) with the dot's pixel mass and
    trains on training_batch: the same numbers as the loop written out."""
    from rssm_np.model import DOT_PIXEL_MASS
    from rssm_np.training import init_train_state, make_train_step
    config = Config(image_size=16, deter_size=8, stoch_size=3, hidden_size=8, embed_size=4, batch_size=2,
                    seq_len=4, seed=3)
    start = init_train_state(config)
    fresh = init_params(config, seed=3)
    for got, want in zip(leaves_of(start["params"]), leaves_of(fresh)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(start["params"]["decoder"][-1]["b"], logit(DOT_PIXEL_MASS / 16 ** 2), rtol=1e-6)
    trained = train(config, steps=2)
    by_hand, step = init_train_state(config), make_train_step(config)
    for _ in range(2):
        by_hand, _ = step(by_hand)
    for got, want in zip(leaves_of(trained["params"]), leaves_of(by_hand["params"])):
        np.testing.assert_array_equal(got, want)


def leaves_of(params):
    from rssm_np.utils.trees import tree_leaves
    return [np.asarray(leaf) for leaf in tree_leaves(params)]


# --- a user's mistakes, caught at the door -----------------------------------------------------

def good(step):
    return pendulum.pendulum(8, 16, seed=(0, step))


def changed(**fields):
    return lambda step: {**good(step), **{key: make(good(step)) for key, make in fields.items()}}


# (what the user's batches return, the Config, the error, words the message must hold)
BAD_BATCHES = [
    (lambda step: [good(step)["obs"]], {}, TypeError, "batches(0) must return a dict"),
    (lambda step: {"obs": good(step)["obs"]}, {}, ValueError, "batches(0) returned no 'actions'"),
    (changed(obs=lambda b: "frames"), {}, TypeError, "batch['obs'] from batches(0) must be a NumPy"),
    (changed(obs=lambda b: (b["obs"] * 255).astype(np.uint8)), {}, TypeError, "dtype uint8, but frames are floats"),
    (changed(actions=lambda b: np.zeros((8, 16, 1), np.int64)), {}, TypeError, "a discrete action is a one-hot"),
    (changed(obs=lambda b: b["obs"][0]), {}, ValueError, "(one sequence? add the batch axis: obs[None])"),
    (changed(obs=lambda b: np.repeat(b["obs"][..., None], 3, axis=-1)), {}, ValueError, "(colour? average"),
    (changed(obs=lambda b: np.zeros((8, 16, 64, 64), np.float32)), {}, ValueError,
     "holds 64x64 frames, but config.image_size is 32: pass Config(image_size=64)"),
    (good, {"action_size": 2}, ValueError,
     "batch['actions'] from batches(0) has 1 action dimension, but config.action_size is 2: pass Config(action_size=1)"),
    (changed(actions=lambda b: b["actions"][..., 0]), {}, ValueError, "add an axis: actions[..., None]"),
    (changed(actions=lambda b: b["actions"][:, :-1]), {}, ValueError, "one action per frame"),
    (changed(actions=lambda b: b["actions"][:-1]), {}, ValueError, "holds 8 sequences of 16 frames"),
    (changed(obs=lambda b: np.where(b["obs"] > 0.9, np.nan, b["obs"])), {}, ValueError, "NaN or infinite"),
    (changed(actions=lambda b: b["actions"] + np.inf), {}, ValueError, "batch['actions'] from batches(0) holds 128"),
    (changed(obs=lambda b: np.maximum(b["obs"], np.float32(1 + 1e-7) * (b["obs"] > 0.9))), {}, ValueError,
     "a rounding step outside [0, 1]"),
    (changed(obs=lambda b: b["obs"] * 255), {}, ValueError, "(8-bit images? divide by 255)"),
    (changed(obs=lambda b: b["obs"] - 0.5), {}, ValueError, "frames must lie in [0, 1]"),
    (good, {"overshooting": 20, "seq_len": 20}, ValueError, "config.overshooting is 20, but batch['obs'] from"),
    (good, {"obs_overshooting": 20, "seq_len": 20}, ValueError, "config.obs_overshooting is 20, but batch['obs']"),
    (changed(mask=lambda b: np.zeros((8, 16, 32, 32), np.float32)), {}, TypeError, "batch['mask'] must be a bool"),
]


@pytest.mark.parametrize("batches,fields,error,words", BAD_BATCHES)
def test_a_bad_batch_is_refused_before_any_training(batches, fields, error, words):
    config = Config(**{**TINY, **fields})
    asked, stepped = [], []

    def counted(step):
        asked.append(step)
        return batches(step)

    with pytest.raises(error) as raised:
        train(config, steps=5, batches=counted, on_step=lambda *args: stepped.append(args))
    assert words in str(raised.value), str(raised.value)
    assert asked == [0] and stepped == []


def test_the_errors_the_page_shows_are_the_ones_train_raises():
    page = open(os.path.join(ROOT, "docs", "your-own-world.md"), encoding="utf-8").read()
    shown = re.findall(r"^(ValueError|TypeError): (.*)$", page, re.M)
    assert len(shown) >= 4
    raised = set()
    for batches, fields, error, _ in BAD_BATCHES:
        try:
            train(Config(**{**TINY, **fields}), steps=1, batches=batches)
        except (ValueError, TypeError) as caught:
            raised.add((type(caught).__name__, str(caught)))
    for kind, message in shown:
        assert (kind, message) in raised, f"docs/your-own-world.md shows {kind}: {message}, which train does not raise"


def test_a_state_from_another_config_is_named():
    from rssm_np.training import init_train_state
    config = Config(**TINY)
    other = init_train_state(Config(**{**TINY, "action_size": 2}))
    with pytest.raises(ValueError, match=r"state does not fit this config: state\['params'\]\['gru'\]\['w'\] has shape "
                                         r"\(42, 96\), but the config builds \(41, 96\)"):
        train(config, steps=1, state=other, batches=pendulum.make_batches(config))
    with pytest.raises(TypeError, match="state must be the dict train or init_train_state returns"):
        train(config, steps=1, state={"params": other["params"]})
    with pytest.raises(ValueError, match="pass pixel_mass to start fresh, or state to continue, not both"):
        train(config, steps=1, state=init_train_state(config), pixel_mass=10.0)


# --- measuring frames ------------------------------------------------------------------------

def test_frame_scores_by_hand():
    truth = np.zeros((1, 2, 2))
    truth[0, 0, 0] = 1.0
    truth[0, 1, 1] = 0.5
    guess = np.full((1, 2, 2), 0.25)
    assert frames.squared_error(guess, truth)[0] == pytest.approx((0.75 ** 2 + 0.25 ** 2 + 2 * 0.25 ** 2) / 4)
    floor = frames.PROBABILITY_FLOOR
    by_hand = -math.log(0.25) - 2 * math.log(0.75) - (0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert frames.bernoulli_nll(guess, truth)[0] == pytest.approx(by_hand, rel=1e-12)
    # The truth against itself: the entropy of the grey pixel, and the floor's price on the others.
    itself = -2 * math.log(1 - floor) - math.log(1 - floor) - 2 * 0.5 * math.log(0.5)
    assert frames.bernoulli_nll(truth, truth)[0] == pytest.approx(itself, rel=1e-12)


def test_the_baselines_on_a_world_that_stands_still():
    still = np.repeat(pendulum.render(np.array([0.7]))[:, None], 6, axis=1)        # (1, 6, S, S)
    seen, truth = still[:, :4], still[:, 4:]
    assert frames.squared_error(frames.copy_last(seen, 2), truth).max() == 0
    assert frames.squared_error(frames.average_of_context(seen, 2), truth).max() < 1e-12
    np.testing.assert_allclose(frames.squared_error(frames.blank(seen, 2), truth), (truth.astype(float) ** 2).mean())


def test_sampled_futures_spread_only_with_a_stochastic_state():
    data = pendulum.pendulum(4, 14, seed=pendulum.HELD_OUT_SEED)
    for model, spreads in (("rnn", False), ("rssm", True)):
        config = Config(**TINY, model=model)
        params = init_params(config, seed=0)
        spread, best_mse, best_nll = frames.sampled_futures(params, config, data, context=10, samples=3)
        assert spread.shape == best_mse.shape == best_nll.shape == (4, 4)
        assert (spread.min() > 1e-4) if spreads else (spread.max() < 1e-6)
        mean_path = frames.squared_error(frames.imagined(params, config, data, 10), data["obs"][:, 10:])
        if not spreads:
            np.testing.assert_allclose(best_mse, mean_path, rtol=1e-5)   # one future: the best is the mean path
    kl = frames.kl_per_dimension(params, config, data)
    assert kl.shape == (8,) and kl.min() >= 0


# --- the example, as a command ----------------------------------------------------------------

def test_the_example_is_a_front_door(tmp_path):
    out = str(tmp_path / "run")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    command = [sys.executable, EXAMPLE, "--steps", "2", "--held-out", "4", "--print-every", "1", "--out", out]
    done = subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^\s+2 \|.*\|\s+\d+m\d\ds$", done.stdout, re.M)           # progress with an ETA
    assert "copy the last seen frame" in done.stdout and "best baseline" in done.stdout
    for name in ("model.npz", "pendulum.json", "open_loop.png", "error_by_horizon.png", "sampled_futures.png"):
        assert os.path.join(out, name) in done.stdout and os.path.exists(os.path.join(out, name))
    with open(os.path.join(out, "pendulum.json")) as file:
        results = json.load(file)
    assert results["provenance"]["command"].startswith("python examples/pendulum.py --steps 2")
    assert results["steps"] == 2 and len(results["curves"]["model"]["mse"]) == pendulum.HORIZON
    again = subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    with open(os.path.join(out, "pendulum.json")) as file:
        assert json.load(file) == results                                    # the first run's results are intact


def test_the_code_the_page_shows_is_the_examples():
    page = open(os.path.join(ROOT, "docs", "your-own-world.md"), encoding="utf-8").read()
    block = re.findall(r"```python\n(.*?)```", page, re.S)[0]

    def lines(code):
        return {re.sub(r"\s+", " ", re.sub(r"\s+#.*$", "", line).strip()) for line in code.splitlines()} - {""}
    missing = lines(block) - lines(open(EXAMPLE, encoding="utf-8").read())
    assert not missing, f"docs/your-own-world.md shows lines examples/pendulum.py does not have: {missing}"
