"""Every command keeps the demo's promise: compare, plan, play and demo --seeds never lose or
overwrite work, check every output location before they start, keep what they finished when
stopped, and refuse up front what cannot finish. (demo.py's own cases: test_demo_keeps_work.py.)

Sizes are tiny: models of a few hundred weights, one or two episodes, a few frames.
"""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backend_bases import MouseEvent  # noqa: E402
from PIL import Image  # noqa: E402

import rssm_np.utils.files as files  # noqa: E402
from rssm_np import Config, init_params, predict, save  # noqa: E402
from rssm_np.checkpoint import load, load_train_state  # noqa: E402
from rssm_np.lab import compare, game, plan, play, seeds  # noqa: E402
from rssm_np.lab.planning import Planner, evaluate_planners  # noqa: E402
from rssm_np.training import init_train_state  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import demo  # noqa: E402

SMALL = dict(image_size=16, deter_size=8, stoch_size=3, hidden_size=8, embed_size=4, control=True)
TINY_PLAN = ["--episodes", "1", "--horizon", "2", "--candidates", "4", "--iterations", "1", "--top-k", "2"]
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=ROOT)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A small driven model, alone in a folder (plan writes next to it by default)."""
    config = Config(**SMALL)
    return save(str(tmp_path_factory.mktemp("model") / "model.npz"), init_params(config), config)


def fresh_model(folder):
    folder.mkdir(parents=True, exist_ok=True)
    config = Config(**SMALL)
    return save(str(folder / "model.npz"), init_params(config), config)


def usage_error(main, argv, capsys):
    """The usage error a command gives for argv (exit code 2, no traceback), as text."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def refuse_writes(monkeypatch):
    """Make every folder read-only for this process, root included (root writes anywhere)."""
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)


def with_raw_bytes(source, target, member="config.npy"):
    """A copy of a checkpoint whose `member` holds raw bytes instead of an .npy array."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            new.writestr(info, b"not an array" if info.filename == member else old.read(info))
    return str(target)


# --- a command never replaces what it did not make ------------------------------------------

def test_plan_refuses_to_replace_a_plan_unless_asked(tmp_path, capsys):
    path = fresh_model(tmp_path / "run")
    assert plan.main([path] + TINY_PLAN) == 0
    written = {name: (tmp_path / "run" / name).read_bytes() for name in ("plan.json", "plan.gif")}
    err = usage_error(plan.main, [path] + TINY_PLAN, capsys)
    assert "already holds another run's results (plan.json, plan_episodes.png, plan.gif); pass --overwrite" in err
    assert all((tmp_path / "run" / name).read_bytes() == data for name, data in written.items())
    assert plan.main([path, "--overwrite"] + TINY_PLAN) == 0


def test_play_refuses_to_replace_the_gif_or_its_png_unless_asked(model_path, tmp_path, capsys):
    own_png = tmp_path / "clip.png"
    own_png.write_bytes(b"the user's own picture")
    err = usage_error(play.main, [model_path, "--record", str(tmp_path / "clip.gif"), "--keys", "wait"], capsys)
    assert "already holds another run's results (clip.png); pass --overwrite" in err
    assert own_png.read_bytes() == b"the user's own picture"
    assert play.main([model_path, "--record", str(tmp_path / "clip.gif"), "--keys", "wait", "--overwrite"]) == 0
    assert not (tmp_path / ".lock").exists()                 # one file pair, not a run folder: no lock left


def test_the_commands_file_names_do_not_collide(tmp_path, capsys):
    """The demo, the comparison and the planner write into --out under names no other one uses, so
    no command's results are another's to replace; and each still refuses its own names."""
    import demo
    claimed = {"demo": set(demo.RESULTS) | set(demo.SEEDS_RESULTS), "compare": set(compare.RESULTS + compare.FIGURES),
               "plan": set(plan.RESULTS)}
    for first in claimed:
        for second in claimed:
            if first < second:
                assert not claimed[first] & claimed[second], (first, second, claimed[first] & claimed[second])
    (tmp_path / "compare_error_by_horizon.png").write_bytes(b"figure")
    err = usage_error(compare.main, ["--steps", "2", "--out", str(tmp_path)], capsys)
    assert "(compare_error_by_horizon.png)" in err and "--overwrite" in err


def test_each_command_knows_every_file_it_writes():
    """The names each command claims are the names its code writes (read from the source)."""
    def written(module, function):
        source = open(os.path.join(ROOT, "rssm_np", "lab", module)).read()
        body = source[source.index(f"def {function}("):]
        body = body[:re.search(r"\n(?=\S)", body).start()]        # up to the next top-level line
        return set(re.findall(r'os\.path\.join\((?:out|args\.out), "([\w.]+)"\)', body))

    report = written("report.py", "write_figures") | written("report.py", "write_belief_figures")
    assert report and report <= set(demo.RESULTS)
    assert written("compare.py", "write_figures") == set(compare.FIGURES)
    assert written("plan.py", "run") | written("plan.py", "keep_so_far") <= set(plan.RESULTS)
    names = {"demo": set(demo.RESULTS), "plan": set(plan.RESULTS), "seeds": set(demo.SEEDS_RESULTS),
             "compare": set(compare.RESULTS + compare.FIGURES)}
    shared = {(a, b): names[a] & names[b] for a in names for b in names if a < b and names[a] & names[b]}
    assert shared == {}                             # no name is two commands' (the test above)


def compare_state(folder, seed=0, step=2, name="checkpoint.npz", model="rnn"):
    """A compare model file in `folder` at `step` (its config: compare.model_config)."""
    config = compare.model_config(model, "bounce", seed)
    state = init_train_state(config)
    state["step"] = step
    folder.mkdir(parents=True, exist_ok=True)
    return save(str(folder / name), state["params"], config, state)


def test_compare_refuses_models_of_another_seed_or_length(tmp_path, capsys):
    out = tmp_path / "cmp"
    run = out / "bounce" / "rnn"
    compare_state(run, seed=0, step=4, name="checkpoint.npz")
    argv = ["--models", "rnn", "--worlds", "bounce", "--out", str(out)]
    before = (run / "checkpoint.npz").read_bytes()
    err = usage_error(compare.main, argv + ["--steps", "10", "--seed", "1"], capsys)
    assert "holds models of another run" in err and "seed=0" in err and "--overwrite" in err
    err = usage_error(compare.main, argv + ["--steps", "3"], capsys)
    assert "is a run of 4 steps, and --steps is 3" in err
    assert (run / "checkpoint.npz").read_bytes() == before
    args = compare.parse_args(argv + ["--steps", "4"])          # the same run: continued, not refused
    args.lock.close()
    compare_state(run, seed=0, step=2, name="model.npz")        # a finished run of 2 steps
    err = usage_error(compare.main, argv + ["--steps", "10"], capsys)
    assert "model.npz is a run of 2 steps, and --steps is 10" in err
    (out / "random").write_text("a file where a folder goes")
    err = usage_error(compare.main, ["--models", "rnn", "--worlds", "random", "--out", str(out)], capsys)
    assert "cannot be created" in err


def test_compare_continues_from_the_furthest_along_state_and_says_so(tmp_path, capsys):
    """A quick run's model.npz (step 2), then a longer run's checkpoint (step 4): continue from 4."""
    out = tmp_path / "cmp"
    run = out / "bounce" / "rnn"
    compare_state(run, step=2, name="model.npz")
    compare_state(run, step=4, name="checkpoint.npz")
    args = compare.parse_args(["--models", "rnn", "--worlds", "bounce", "--steps", "5", "--overwrite",
                               "--out", str(out)])
    try:
        compare.run_one(args, "bounce", "rnn", compare.Progress(1, 5))
    finally:
        args.lock.close()
    assert f"continuing from {run / 'checkpoint.npz'} (step 4" in capsys.readouterr().out
    assert load_train_state(str(run / "model.npz"))[2]["step"] == 5


def test_demo_resume_continues_from_the_furthest_along_file_of_the_run(tmp_path, capsys):
    config = Config(image_size=16, deter_size=8, stoch_size=3, hidden_size=8, embed_size=4)
    for name, step in (("model.npz", 1), ("checkpoint.npz", 3)):
        state = init_train_state(config)
        state["step"] = step
        save(str(tmp_path / name), state["params"], config, state)
    args = demo.parse_args(["--resume", str(tmp_path / "model.npz"), "--steps", "5", "--out", str(tmp_path)])
    args.lock.close()
    assert args.state["step"] == 3 and args.resume == str(tmp_path / "checkpoint.npz")
    assert "is further along this run" in capsys.readouterr().out


# --- every output location is checked before any work ---------------------------------------

@pytest.mark.parametrize("case", ["under a file", "read-only model folder", "read-only --out"])
def test_plan_checks_its_output_folder_before_planning(model_path, tmp_path, capsys, monkeypatch, case):
    regular = tmp_path / "file"
    regular.write_text("x")
    argv = {"under a file": [model_path, "--out", str(regular / "plans")],
            "read-only model folder": [model_path],
            "read-only --out": [model_path, "--out", str(tmp_path / "ro")]}[case]
    if case.startswith("read-only"):
        refuse_writes(monkeypatch)
    started = []
    monkeypatch.setattr(plan, "evaluate_planners", lambda *a, **k: started.append(1))
    err = usage_error(plan.main, argv + TINY_PLAN, capsys)
    assert not started
    assert {"under a file": "cannot be created (Not a directory)",
            "read-only model folder": "the output folder",
            "read-only --out": "is not writable (Permission denied)"}[case] in err
    if case == "read-only model folder":
        assert "(the model's; --out chooses another) is not writable" in err


@pytest.mark.parametrize("case", ["under a file", "read-only"])
def test_play_checks_the_recording_place_before_the_first_frame(model_path, tmp_path, capsys, monkeypatch, case):
    regular = tmp_path / "file"
    regular.write_text("x")
    target = str(regular / "clip.gif") if case == "under a file" else str(tmp_path / "clip.gif")
    if case == "read-only":
        refuse_writes(monkeypatch)
    monkeypatch.setattr(play, "record", lambda *a, **k: pytest.fail("recorded before checking"))
    err = usage_error(play.main, [model_path, "--record", target], capsys)
    assert ("exists and is not a folder" if case == "under a file" else "is not writable") in err


def test_a_write_that_fails_at_the_end_keeps_the_result_beside_it(tmp_path, capsys, monkeypatch):
    path = fresh_model(tmp_path / "run")
    drawn = plan.episodes_figure

    def folder_gone(target, *args, **kwargs):          # the final name refuses; any other works
        if target.endswith("plan_episodes.png"):
            raise PermissionError(13, "Permission denied")
        return drawn(target, *args, **kwargs)

    monkeypatch.setattr(plan, "episodes_figure", folder_gone)
    assert plan.main([path] + TINY_PLAN) == 0
    fallback = tmp_path / "run" / f"plan_episodes.unsaved-{os.getpid()}.png"
    captured = capsys.readouterr()
    assert fallback.exists() and f"kept it as {fallback}" in captured.err and str(fallback) in captured.out

    def only_elsewhere(target):                         # the whole folder refuses: the system's temporary one takes it
        if target.startswith(str(tmp_path)):
            raise OSError(28, "No space left on device")
        return files.write_text(target, "kept")

    written = files.write_or_keep(str(tmp_path / "x.txt"), only_elsewhere)
    assert open(written).read() == "kept" and written == files.fallback_paths(str(tmp_path / "x.txt"))[1]
    os.remove(written)


# --- demo --seeds: the children are the parent's -------------------------------------------

def test_seeds_check_every_seed_folder_before_any_seed_starts(tmp_path, capsys, monkeypatch):
    out = tmp_path / "many"
    out.mkdir()
    (out / "seed1").write_text("a file where seed 1's folder goes")
    monkeypatch.setattr(seeds.subprocess, "Popen", lambda *a, **k: pytest.fail("a seed started"))
    err = usage_error(demo.main, ["--seeds", "2", "--steps", "2", "--out", str(out)], capsys)
    assert "the folder of seed 1" in err and "exists and is not a folder" in err
    (out / "seed1").unlink()
    fresh_model(out / "seed1")
    err = usage_error(demo.main, ["--seeds", "2", "--steps", "2", "--out", str(out)], capsys)
    assert "the folder of seed 1" in err and "already holds another run's results (model.npz)" in err


@pytest.mark.parametrize("ending, code", [("interrupt", 130), ("error", 1)])
def test_a_stopped_seeds_run_stops_its_seeds_and_keeps_the_finished_ones(tmp_path, capsys, monkeypatch, ending,
                                                                         code):
    """Seed 0 finishes at once, seed 1 runs on; then the parent is stopped (or fails)."""
    pids = tmp_path / "pids"

    def stand_in(script, args, seed, config_flags):
        folder = os.path.join(args.out, f"seed{seed}")
        work = (f"from tests.test_seeds import write_metrics; write_metrics({folder!r}, 1.0, 0.9)" if seed == 0 else
                f"open({str(pids)!r}, 'a').write(str(os.getpid())); time.sleep(120)")
        return [sys.executable, "-c", f"import os, sys, time; sys.path.insert(0, {ROOT!r}); {work}"]

    out = tmp_path / "many"
    real_sleep, calls = time.sleep, []

    def sleep(seconds):                                  # the parent's poll: fail once seed 0 is surely done
        real_sleep(0.2)
        if (out / "seed0" / "metrics.json").exists() and pids.exists():
            calls.append(seconds)
        if len(calls) == 4:
            raise KeyboardInterrupt if ending == "interrupt" else OSError(28, "No space left on device")

    monkeypatch.setattr(seeds, "seed_command", stand_in)
    monkeypatch.setattr(seeds, "time", type("Clock", (), {"sleep": staticmethod(sleep),     # seeds' clock only
                                                          "perf_counter": staticmethod(time.perf_counter)}))
    assert demo.main(["--seeds", "2", "--jobs", "2", "--out", str(out)]) == code
    err = capsys.readouterr().err
    assert "stopped seeds [1]" in err and "wrote the table of the 1 finished seed(s)" in err
    assert "Traceback" not in err
    with pytest.raises(ProcessLookupError):
        os.kill(int(pids.read_text()), 0)                  # the running seed was stopped, not left behind
    assert json.load(open(out / "seeds.json"))["folders"] == [str(out / "seed0")]


# --- stop signals: a one-line message, the work so far, the shell's exit code ---------------

def run_until(argv, marker, sig, cwd):
    """Start a command, wait for `marker` on its stdout, send `sig`; return (exit code, stderr)."""
    process = subprocess.Popen([sys.executable, "-u", "-m"] + argv, cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        if marker in line:
            process.send_signal(sig)
            break
    process.stdout.read()
    process.wait(timeout=120)
    err = process.stderr.read()
    process.stdout.close()
    process.stderr.close()
    return process.returncode, err


def test_ctrl_c_in_plan_keeps_the_episodes_so_far(tmp_path):
    path = fresh_model(tmp_path / "run")
    code, err = run_until(["rssm_np.lab.plan", path, "--episodes", "4", "--candidates", "400", "--top-k", "5"],
                          "CEM in the model     |  5/30", signal.SIGINT, ROOT)
    assert code == 130 and "Traceback" not in err, err
    assert re.search(r"interrupted: kept the model planner's 4 episodes up to step \d+/30", err)
    kept = json.load(open(tmp_path / "run" / "plan_so_far.json"))
    # The three reference planners run first and finished: they are kept beside the model's episodes.
    assert kept["stopped_after_step"] >= 5 and set(kept["results"]) == {
        "zero actions", "random actions", "CEM + true physics", "CEM in the model"}
    assert all("positions" not in r and 0 <= r["success_rate"] <= 1 for r in kept["results"].values())
    with Image.open(tmp_path / "run" / "plan.gif") as gif:
        assert gif.n_frames == kept["stopped_after_step"]
    assert not (tmp_path / "run" / "plan.json").exists()


def test_the_kept_episodes_are_the_ones_the_planner_played(tmp_path):
    """Replaying the executed actions gives the very positions of the uninterrupted run."""
    params, config = load(fresh_model(tmp_path))
    planner = Planner(params, config, horizon=2, candidates=4, iterations=1, top_k=2)
    recorder = plan.Recorder(planner, 2)
    goals, results = evaluate_planners(planner, episodes=2, seed=3, on_step=recorder)
    args = type("Args", (), {"config": config, "episodes": 2, "seed": 3})
    positions, replayed_goals = plan.episodes_so_far(args, 7, recorder.actions)
    np.testing.assert_array_equal(replayed_goals, goals)
    np.testing.assert_array_equal(positions, results["CEM in the model"]["positions"][:, :8])


def test_sigterm_in_play_keeps_the_frames_so_far_as_a_gif(model_path, tmp_path):
    gif = tmp_path / "clip.gif"
    code, err = run_until(["rssm_np.lab.play", model_path, "--record", str(gif), "--keys", "wait*1000"],
                          "frame   25/", signal.SIGTERM, ROOT)
    assert code == 143 and "Traceback" not in err, err
    frames = int(re.search(r"stopped by SIGTERM: kept the (\d+) frames recorded so far", err).group(1))
    assert 26 <= frames < 1001
    with Image.open(gif) as image:
        assert image.n_frames == frames
    assert (tmp_path / "clip.png").exists()


def test_compare_exits_with_the_signals_code(tmp_path):
    code, err = run_until(["rssm_np.lab.compare", "--steps", "1000", "--models", "rnn", "--worlds", "bounce",
                           "--out", str(tmp_path / "cmp")], "run ", signal.SIGTERM, ROOT)
    assert code == 143 and "Traceback" not in err and "stopped by SIGTERM: what was trained so far is kept in" in err


# --- inputs that cannot finish are refused up front -----------------------------------------

def test_sizes_that_cannot_fit_in_memory_are_refused_by_name(model_path, tmp_path, capsys):
    err = usage_error(plan.main, [model_path, "--candidates", str(10 ** 9), "--out", str(tmp_path)], capsys)
    assert "--episodes 64 x --candidates 1000000000 is too large" in err
    err = usage_error(plan.main, [model_path, "--episodes", str(10 ** 8), "--out", str(tmp_path)], capsys)
    assert "--episodes 100000000 x --candidates 40 is too large" in err
    err = usage_error(play.main, [model_path, "--record", str(tmp_path / "x.gif"), "--particles", str(10 ** 8)],
                      capsys)
    assert "--particles 100000000 is too large" in err
    params, config = load(model_path)
    with pytest.raises(ValueError, match="horizon=1000000000 is too large"):
        predict(params, config, np.zeros((1, 2, 16, 16)), horizon=10 ** 9)
    with pytest.raises(ValueError, match="config.hidden_size=1000000 is too large"):
        init_params(Config(hidden_size=10 ** 6))


def test_key_scripts_are_bounded_and_clicks_stay_on_the_image(model_path, tmp_path, capsys):
    err = usage_error(play.main, [model_path, "--record", str(tmp_path / "x.gif"), "--keys", "right*100000"], capsys)
    assert f"longer than {game.MAX_SCRIPT_KEYS} keys" in err
    with pytest.raises(ValueError, match="longer than"):
        game.parse_keys("wait*" + "9" * 5000)                  # refused before any list is built
    err = usage_error(play.main, [model_path, "--record", str(tmp_path / "x.gif"), "--keys", "g click:16,3"], capsys)
    assert "'click:16,3' is off the image: a click's x and y are pixels in [0, 15]" in err
    assert not os.path.exists(tmp_path / "x.gif")


def test_clicks_on_the_edge_of_the_window_land_on_the_image(model_path):
    import matplotlib.pyplot as plt
    model = game.load_model(model_path)
    window = play.Window(plt.figure(), game.step(game.new_game(model), "g"))
    ax = window.screen.panels[0]
    x, y = ax.transData.transform((-0.45, 15.45))           # inside the axes, half a pixel off the image
    MouseEvent("button_press_event", window.fig.canvas, x, y, button=1)._process()
    plt.close(window.fig)
    goal = game.step(window.game, window.queue[-1]).goal
    assert goal == (0.0, 15.0)
    assert game.step(game.step(game.new_game(model), "g"), "click:-3,99").goal == (0.0, 15.0)


# --- damaged files, frozen configs, honest messages -----------------------------------------

def test_a_member_holding_raw_bytes_gets_the_same_clear_error_everywhere(tmp_path, capsys):
    config = Config(image_size=16, deter_size=8, stoch_size=3, hidden_size=8, embed_size=4, control=True)
    state = init_train_state(config)
    state["step"] = 1
    good = save(str(tmp_path / "good.npz"), state["params"], config, state)
    for member in ("config.npy", "params/gru/w.npy", "train/step.npy"):
        bad = with_raw_bytes(good, tmp_path / "bad.npz", member)
        name = member[:-4]
        with pytest.raises(ValueError, match=f"'{name}' is not an array"):
            load_train_state(bad)
    bad = with_raw_bytes(good, tmp_path / "bad.npz", "config.npy")
    words = "'config' is not an array (it holds bytes)"
    assert words in usage_error(plan.main, [bad], capsys)
    assert words in usage_error(demo.main, ["--resume", bad, "--out", str(tmp_path / "r")], capsys)
    assert words in usage_error(play.main, [bad, "--record", str(tmp_path / "x.gif")], capsys)


def test_a_config_cannot_change_after_it_is_made():
    config = Config(image_size=16)
    for field, value in (("model", "transformer"), ("image_size", 7)):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(config, field, value)
    assert config.model == "rssm" and config.image_size == 16
    with pytest.raises(ValueError, match="config.image_size must be an integer >= 8, got 7"):
        dataclasses.replace(config, image_size=7)
    with pytest.raises(ValueError, match="config.model must be one of"):
        dataclasses.replace(config, model="transformer")
    assert type(Config(deter_size=np.int64(8)).deter_size) is int      # still normalised while it is made


def test_frames_a_rounding_step_above_one_are_called_that(model_path):
    params, config = load(model_path)
    with pytest.raises(ValueError, match=r"got values in \[1\.0000001, 1\.0000001\], a rounding step outside "
                                         r"\[0, 1\]: clip them, np\.clip\(obs, 0, 1\)"):
        predict(params, config, np.full((1, 2, 16, 16), 1 + 1e-7), horizon=1)
    with pytest.raises(ValueError, match=r"got values in \[0, 255\]$"):
        predict(params, config, np.full((1, 2, 16, 16), 255.0) * np.eye(16)[None, None], horizon=1)
