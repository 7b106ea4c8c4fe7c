"""Planning: CEM on functions with a known minimum, the true-physics planner reaching its goals,
the model planner's interface (shapes, seeds, bad arguments), and the planning command."""

import json
import os

import numpy as np
import pytest

from rssm_np import Config, init_params
from rssm_np.checkpoint import save
from rssm_np.lab.planning import (CemPhysics, Planner, cem, episode_metrics, evaluate_planners, goal_cost,
                              run_episodes, sample_episodes)
from rssm_np.world import render

SMALL = dict(image_size=16, deter_size=12, stoch_size=4, hidden_size=16, embed_size=8)
TINY_SEARCH = dict(horizon=3, candidates=8, iterations=2, top_k=2)


@pytest.fixture(scope="module")
def model():
    config = Config(control=True, **SMALL)
    return init_params(config, seed=0), config


def test_cem_finds_the_minimum_of_a_quadratic():
    """cost(a) = sum (a - a*)^2 over a (K, A) sequence: the refitted mean lands on a*, per problem."""
    rng = np.random.default_rng(0)
    target = rng.uniform(-0.9, 0.9, size=(3, 5, 2))                                  # (B, K, A)

    def cost(actions):                                                               # (B, N, K, A)
        return ((actions - target[:, None]) ** 2).sum(axis=(2, 3))
    mean = cem(cost, 3, 5, 2, candidates=200, iterations=8, top_k=20, rng=np.random.default_rng(1))
    assert mean.shape == (3, 5, 2)
    assert np.abs(mean - target).max() < 0.05


def test_cem_keeps_actions_in_the_box():
    """The minimum of sum (a - 3)^2 over [-1, 1] is the corner a = 1: clipping holds the search there."""
    mean = cem(lambda a: ((a - 3.0) ** 2).sum(axis=(2, 3)), 2, 4, 2, candidates=100, iterations=10, top_k=10,
               rng=np.random.default_rng(0))
    assert mean.max() <= 1.0 and mean.min() > 0.9


def test_goal_cost_sums_distances_over_the_plan():
    positions = np.array([[[[3.0, 4.0], [0.0, 1.0]]]])                               # (1, 1, 2, 2)
    assert goal_cost(positions, np.zeros((1, 2)))[0, 0] == pytest.approx(5.0 + 1.0)


def test_episode_metrics_on_a_constructed_path():
    goals = np.array([[0.0, 0.0], [10.0, 10.0]])
    positions = np.zeros((2, 31, 2))
    positions[0, :, 0] = 1.0                                                         # 1 px away all along
    positions[1] = [10.0, 13.0]                                                      # 3 px away all along
    metrics = episode_metrics(positions, goals, seconds=0.6)
    assert metrics["success_rate"] == 0.5
    assert metrics["final_px"] == pytest.approx(2.0) and metrics["last10_px"] == pytest.approx(2.0)
    assert metrics["ms_per_step"] == pytest.approx(1000 * 0.6 / (30 * 2))


def test_the_true_physics_planner_reaches_its_goals():
    starts, goals = sample_episodes(8, 32, seed=3)
    physics = CemPhysics(32, "bounce", horizon=8, candidates=40, iterations=3, top_k=5, seed=0)
    physics.reset(8)
    positions, _ = run_episodes(lambda frames, states, goals: physics.act(states, goals), starts, goals, 32, "bounce")
    metrics = episode_metrics(positions, goals, 0.0)
    coasting, _ = run_episodes(lambda frames, states, goals: np.zeros((8, 2)), starts, goals, 32, "bounce")
    assert metrics["success_rate"] == 1.0 and metrics["final_px"] < 1.0
    assert episode_metrics(coasting, goals, 0.0)["final_px"] > 5.0


def test_episodes_keep_goals_off_the_walls_and_repeat_with_the_seed():
    starts, goals = sample_episodes(200, 16, seed=0)
    assert goals.min() >= 3.0 and goals.max() <= 16 - 1 - 3.0
    again = sample_episodes(200, 16, seed=0)
    assert np.array_equal(starts, again[0]) and np.array_equal(goals, again[1])


@pytest.mark.parametrize("readout", ["linear", "centroid"])
def test_planner_actions_have_the_shape_and_range_and_repeat_with_the_seed(model, readout):
    params, config = model
    starts, goals = sample_episodes(3, 16, seed=1)
    frames = render(starts[:, :2], 16)
    runs = []
    for seed in (0, 0, 1):
        planner = Planner(params, config, seed=seed, readout=readout, **TINY_SEARCH)
        planner.reset(3)
        runs.append([planner.act(frames, goals) for _ in range(2)])
    first = runs[0][0]
    assert first.shape == (3, 2) and np.abs(first).max() <= 1.0
    assert planner.plan.shape == (3, 3, 2)
    assert all(np.array_equal(a, b) for a, b in zip(runs[0], runs[1]))
    assert not np.array_equal(runs[0][0], runs[2][0])
    dream = planner.dream(planner.plan)
    assert dream["positions"].shape == (3, 3, 2) and dream["frames"].shape == (3, 3, 16, 16)


def test_planner_refuses_bad_arguments(model):
    params, config = model
    planner = Planner(params, config, **TINY_SEARCH)
    frames, goals = np.zeros((2, 16, 16)), np.full((2, 2), 8.0)
    with pytest.raises(ValueError, match="reset"):
        planner.act(frames, goals)
    planner.reset(2)
    with pytest.raises(ValueError, match="act"):
        planner.dream(np.zeros((2, 3, 2)))
    cases = [
        (np.zeros((2, 32, 32)), goals, "frames must have shape"),
        (frames + 2.0, goals, r"\[0, 1\]"),
        (frames, np.array([[8.0, 8.0], [8.0, 16.5]]), "goals must be"),
        (np.zeros((3, 16, 16)), np.full((3, 2), 8.0), "2 episodes"),
        (frames, np.full((2, 3), 8.0), "goals must have shape"),
    ]
    for bad_frames, bad_goals, words in cases:
        with pytest.raises(ValueError, match=words):
            planner.act(bad_frames, bad_goals)
    for kwargs, words in ((dict(top_k=20, candidates=10), "top_k"), (dict(horizon=0), "horizon"),
                          (dict(readout="pixels"), "readout")):
        with pytest.raises(ValueError, match=words):
            Planner(params, config, **kwargs)


def test_evaluate_planners_runs_the_four_on_the_same_episodes(model):
    params, config = model
    goals, results = evaluate_planners(Planner(params, config, **TINY_SEARCH), episodes=2, seed=0)
    assert sorted(results) == ["CEM + true physics", "CEM in the model", "random actions", "zero actions"]
    starts = {name: r["positions"][:, 0].tolist() for name, r in results.items()}
    assert len({json.dumps(s) for s in starts.values()}) == 1 and goals.shape == (2, 2)


def test_plan_command_writes_its_files_and_refuses_a_model_without_actions(model, tmp_path, capsys):
    from rssm_np.lab.plan import main
    params, config = model
    path = save(str(tmp_path / "model.npz"), params, config)
    assert main([path, "--episodes", "2", "--horizon", "3", "--candidates", "8", "--iterations", "2",
                 "--top-k", "2"]) == 0
    with open(tmp_path / "plan.json") as file:
        assert set(json.load(file)["results"]) == {"CEM + true physics", "CEM in the model", "random actions",
                                                   "zero actions"}
    assert os.path.exists(tmp_path / "plan_episodes.png") and os.path.exists(tmp_path / "plan.gif")
    assert "CEM in the model" in capsys.readouterr().out
    plain = Config(**SMALL)
    plain_path = save(str(tmp_path / "plain.npz"), init_params(plain), plain)
    with pytest.raises(SystemExit) as exit_info:
        main([plain_path])
    assert exit_info.value.code == 2 and "without actions" in capsys.readouterr().err


def test_demo_plans_briefly_and_skips_a_model_without_actions(model, capsys):
    import demo
    params, config = model
    metrics = demo.planning_metrics(params, config, episodes=2)
    assert set(metrics["planning"]["CEM in the model"]) == {"success_rate", "final_px", "last10_px", "ms_per_step"}
    assert demo.planning_metrics(params, Config(**SMALL)) == {}
    assert "without actions" in capsys.readouterr().out
