"""The play mode: the game's rules without a screen, the scripted recording, the key-script parser."""

import dataclasses

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backend_bases import KeyEvent  # noqa: E402
from PIL import Image  # noqa: E402

from rssm_np import Config, init_params, save  # noqa: E402
from rssm_np.lab import game as rules  # noqa: E402  (the game's rules)
from rssm_np.lab import play  # noqa: E402
from rssm_np.training import train  # noqa: E402
from rssm_np.world import ACTION_GAIN, MAX_SPEED, step_state  # noqa: E402

TINY = dict(image_size=16, deter_size=16, stoch_size=4, hidden_size=32, embed_size=16, batch_size=8,
            seq_len=12, learning_rate=1e-2, control=True, seed=0)


@pytest.fixture(scope="module")
def untrained():
    config = Config(**TINY)
    return rules.Model(init_params(config), config)


@pytest.fixture(scope="module")
def trained():
    """60 steps (a few seconds): enough for the posterior to find the dot within a pixel or two."""
    config = Config(**TINY)
    return rules.Model(train(config, steps=60)["params"], config)


def played(game, script):
    """The game after the keys of `script`."""
    for key in rules.parse_keys(script):
        game = rules.step(game, key)
    return game


@pytest.mark.parametrize("key, action", [("wait", (0, 0)), ("right", (1, 0)), ("left", (-1, 0)),
                                         ("up", (0, -1)), ("down", (0, 1)), ("d", (1, 0)), ("w", (0, -1))])
def test_keys_move_the_real_dot_as_the_world_says(untrained, key, action):
    game = rules.new_game(untrained, seed=3)
    moved = rules.step(game, key)
    expected = step_state(game.world[None], np.array([action], dtype=float), 16, "bounce")[0]
    np.testing.assert_allclose(moved.world, expected)
    np.testing.assert_array_equal(moved.action, action)
    assert moved.t == game.t + 1


def test_kick_gives_a_new_velocity_within_the_worlds_speeds(untrained):
    game = rules.new_game(untrained, seed=1)
    kicked = rules.step(game, "k")
    coasted = rules.step(game, "wait")
    assert not np.allclose(kicked.world[2:], coasted.world[2:])
    assert 0.5 <= np.linalg.norm(kicked.world[2:]) <= MAX_SPEED + 1e-9


def test_occluder_hides_the_dot_from_the_model_not_from_the_world(untrained):
    game = rules.new_game(untrained, seed=2)
    hidden = rules.step(game, "o")
    np.testing.assert_allclose(hidden.world, rules.step(game, "wait").world)
    x, y = np.rint(hidden.world[:2]).astype(int)
    assert hidden.occluder[y, x] and hidden.seen[y, x] == 0.0
    assert hidden.seen[hidden.occluder].max() == 0.0


def test_step_is_pure_and_repeatable(untrained):
    game = rules.new_game(untrained, seed=4)
    world, deter = game.world.copy(), game.state["deter"].copy()
    keys = rules.parse_keys("right*2 k o space wait*2")
    first, second = game, game
    for key in keys:
        first, second = rules.step(first, key), rules.step(second, key)
    np.testing.assert_array_equal(game.world, world)
    np.testing.assert_array_equal(game.state["deter"], deter)
    np.testing.assert_array_equal(first.world, second.world)
    np.testing.assert_array_equal(first.state["stoch"], second.state["stoch"])


def test_closed_eyes_let_no_frame_reach_the_posterior(untrained):
    """With eyes closed the belief is the same whatever the real dot does; with eyes open it is not."""
    closed = rules.step(rules.new_game(untrained, seed=5), "space")
    elsewhere = dataclasses.replace(closed, world=np.array([3.0, 12.0, -1.5, 0.5]))
    for key in rules.parse_keys("wait*3 right k wait*2"):
        closed, elsewhere = rules.step(closed, key), rules.step(elsewhere, key)
        assert not closed.eyes_open and closed.seen.max() == 0.0
        np.testing.assert_array_equal(closed.state["deter"], elsewhere.state["deter"])
        np.testing.assert_array_equal(closed.state["stoch"], elsewhere.state["stoch"])
        np.testing.assert_array_equal(closed.belief, elsewhere.belief)
    assert not np.allclose(closed.world, elsewhere.world)
    opened, opened_elsewhere = rules.step(closed, "space"), rules.step(elsewhere, "space")
    assert not np.allclose(opened.state["stoch"], opened_elsewhere.state["stoch"])      # the posterior reads the frame


def test_reopened_eyes_bring_the_belief_back(trained):
    """Kicked while the model dreams, the belief goes wrong; five frames after the eyes open it is close."""
    game = played(rules.new_game(trained, seed=0), "wait*6 space k wait*8")
    dreaming_error = game.error
    game = played(game, "space wait*5")
    assert game.eyes_open
    assert game.error < 2.0, (dreaming_error, game.error)
    assert game.error < dreaming_error, (dreaming_error, game.error)


def test_the_particles_spread_while_dreaming(trained):
    game = played(rules.new_game(trained, seed=0), "wait*6")
    seeing = game.spread
    game = played(game, "space wait*10")
    assert game.spread > seeing, (seeing, game.spread)


def test_without_a_planner_g_and_p_say_so(untrained):
    game = rules.new_game(untrained)
    for key in ("g", "p"):
        assert rules.step(game, key).message == rules.NO_PLANNING


class ScriptedPlanner:
    """Stands in for rssm_np.lab.planning.Planner: records what it is given, always pushes right-down."""

    def __init__(self):
        self.calls, self.resets = [], []

    def reset(self, batch):
        self.resets.append(batch)

    def act(self, frames, goals):
        self.calls.append((frames.shape, goals.copy()))
        return np.array([[3.0, 0.5]])            # out of range on purpose: the game clips to [-1, 1]


def test_goal_then_p_lets_the_planner_drive(untrained):
    planner = ScriptedPlanner()
    game = played(rules.new_game(dataclasses.replace(untrained, planner=planner)), "g click:12,3 p")
    assert game.goal == (12.0, 3.0) and game.planning and planner.resets == [1]
    assert planner.calls[-1][0] == (1, 16, 16)
    np.testing.assert_array_equal(planner.calls[-1][1], [[12.0, 3.0]])
    np.testing.assert_array_equal(game.action, [1.0, 0.5])
    before = game
    game = rules.step(game, "left")                # a key pressed overrides the planner for that frame
    np.testing.assert_array_equal(game.action, [-1.0, 0.0])
    expected = step_state(before.world[None], np.array([[-1.0, 0.0]]), 16, "bounce")[0]
    np.testing.assert_allclose(game.world, expected)
    assert ACTION_GAIN > 0


def test_scripted_run_writes_a_gif_and_a_png(untrained, tmp_path):
    keys = rules.parse_keys("right*2 space wait*2 space")
    game, log, paths, _ = play.record(untrained, keys, str(tmp_path / "out" / "play.gif"), report=lambda line: None)
    gif, png = paths
    with Image.open(gif) as image:
        assert image.n_frames == len(keys) + 1
    with Image.open(png) as image:
        assert image.size[0] > 300
    assert len(log) == len(keys) + 1 and game.t == len(keys)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["play.gif", "play.png"]   # no temporary left


def test_key_script_parser():
    assert rules.parse_keys("right*2 space wait*3") == ["right", "right", "space", "wait", "wait", "wait"]
    assert rules.parse_keys("  a D  k*1 click:1.5,2 ") == ["left", "right", "k", "click:1.5,2"]
    for script, complaint in [("", "empty"), ("jump", "'jump' is not a key"), ("right*0", "bad count"),
                              ("right*x", "bad count"), ("right*", "bad count"), ("click:1", "not a click"),
                              ("click:a,b", "not a click")]:
        with pytest.raises(ValueError, match=complaint):
            rules.parse_keys(script)


def test_matplotlib_keys_are_off_in_the_play_window_only(untrained):
    """'q' closes an ordinary figure (matplotlib's binding); in the play window it only queues the key."""
    window = play.Window(plt.figure(), rules.new_game(untrained))
    other = plt.figure()
    for fig in (window.fig, other):
        KeyEvent("key_press_event", fig.canvas, "q")._process()
    assert plt.fignum_exists(window.fig.number) and not plt.fignum_exists(other.number)
    assert window.queue == ["q"]
    window.tick()
    assert window.game.quit and not plt.fignum_exists(window.fig.number)


def test_measurements_on_a_known_log():
    log = [(0, True, 1.0, 0.1), (1, True, 1.0, 0.1), (2, False, 2.0, 0.5), (3, False, 3.0, 0.9),
           (4, True, 0.5, 0.1), (5, True, 0.4, 0.1), (6, True, 0.3, 0.1)]
    summary = rules.measurements(log)
    assert summary["drift_px_per_closed_frame"] == pytest.approx(1.0)      # 1.0 -> 2.0 -> 3.0: one px a frame
    assert summary["peak_closed_error_px"] == 3.0
    assert summary["first_reopened_error_px"] == 0.5 and summary["third_reopened_error_px"] == 0.3
    assert summary["open_error_px"] == pytest.approx(3.2 / 5)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory, untrained):
    folder = tmp_path_factory.mktemp("models")
    driven = save(str(folder / "driven.npz"), untrained.params, untrained.config)
    plain_config = Config(**{**TINY, "control": False})
    plain = save(str(folder / "plain.npz"), init_params(plain_config), plain_config)
    return driven, plain, str(folder / "missing.npz")


@pytest.mark.parametrize("case, words", [
    ("no display", ["no display", "--record play.gif"]),
    ("missing", ["no checkpoint at"]),
    ("plain", ["trained without actions", "python demo.py"]),
    ("bad keys", ["--keys", "'jump' is not a key"]),
    ("not a gif", ["--record must name a .gif"]),
])
def test_command_line_errors_are_clear(model_files, capsys, case, words):
    driven, plain, missing = model_files
    argv = {"no display": [driven], "missing": [missing], "plain": [plain],
            "bad keys": [driven, "--record", "x.gif", "--keys", "right jump"],
            "not a gif": [driven, "--record", "x.png"]}[case]
    with pytest.raises(SystemExit) as exit_info:
        play.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err, err
