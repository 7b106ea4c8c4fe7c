"""demo.py never destroys a result it did not make, and every way a run ends keeps the work.

The signal cases run real processes, all at once, each stopped after its first training step.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

import rssm_np.utils.files as runs
from rssm_np import Config, init_params, save
from rssm_np.checkpoint import load_train_state
from rssm_np.training import init_train_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import demo  # noqa: E402

SMALL = dict(image_size=16, deter_size=8, stoch_size=3, hidden_size=8, embed_size=4)


def start(out):
    """A demo run of many steps into `out`, its stdout and stderr piped to us."""
    return subprocess.Popen([sys.executable, "demo.py", "--steps", "1000", "--no-eval", "--print-every", "1",
                             "--out", out], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until_training(process):
    """Read the run's stdout up to its first progress line: it holds its folder and has trained a step."""
    for line in process.stdout:
        if re.match(r"\s+\d+ \|", line):
            return
    raise AssertionError(f"demo never started training: {process.stderr.read()}")


@pytest.fixture(scope="module")
def ended(tmp_path_factory):
    """(exit code, stderr, folder) of runs ended each way; plus a second run into a busy folder."""
    base = tmp_path_factory.mktemp("ended")
    ways = ["SIGINT", "SIGINT twice", "SIGTERM", "SIGHUP", "closed stdout"]
    folders = {way: str(base / way.replace(" ", "_")) for way in ways}
    processes = {way: start(folders[way]) for way in ways}          # all start at once
    wait_until_training(processes["SIGINT"])
    busy = subprocess.Popen([sys.executable, "demo.py", "--steps", "1", "--no-eval", "--out", folders["SIGINT"]],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for way, process in processes.items():
        if way == "SIGINT":
            continue
        wait_until_training(process)
        if way == "closed stdout":
            process.stdout.close()          # the next progress line meets a closed pipe
            continue
        process.send_signal(getattr(signal, way.split()[0]))
        if way == "SIGINT twice":
            time.sleep(0.05)                # the second arrives while the first one's save runs
            process.send_signal(signal.SIGINT)
    busy_stderr = busy.communicate(timeout=120)[1]
    processes["SIGINT"].send_signal(signal.SIGINT)
    results = {}
    for way, process in processes.items():
        process.wait(timeout=120)
        results[way] = (process.returncode, process.stderr.read(), folders[way])
        process.stderr.close()
        if process.stdout and not process.stdout.closed:
            process.stdout.close()
    results["busy"] = (busy.returncode, busy_stderr, folders["SIGINT"])
    return results


@pytest.mark.parametrize("way,code", [("SIGINT", 130), ("SIGINT twice", 130), ("SIGTERM", 143), ("SIGHUP", 129),
                                      ("closed stdout", 141)])
def test_every_way_a_run_ends_saves_a_checkpoint_and_says_where(ended, way, code):
    returncode, stderr, folder = ended[way]
    assert returncode == code, stderr
    assert "Traceback" not in stderr
    checkpoint = os.path.join(folder, "checkpoint.npz")
    assert f"to {checkpoint}; continue with: python demo.py --resume {checkpoint}" in stderr
    _, _, state = load_train_state(checkpoint)
    assert state["step"] >= 1
    assert not [name for name in os.listdir(folder) if name.startswith(".tmp-")]


def test_a_second_run_into_a_busy_folder_is_refused(ended):
    returncode, stderr, _ = ended["busy"]
    assert returncode == 2 and "is in use by another run (pid" in stderr and "Traceback" not in stderr


def refused(argv, capsys):
    """The usage error demo gives for argv (exit code 2), as text."""
    with pytest.raises(SystemExit) as exit_:
        demo.parse_args(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


def small_checkpoint(path, step=0):
    config = Config(**SMALL)
    state = init_train_state(config)
    state["step"] = step
    return save(str(path), init_params(config), config, state)


def test_a_run_never_replaces_another_runs_results_unless_asked(tmp_path, capsys):
    out = tmp_path / "run"
    model = small_checkpoint(out / "model.npz")
    before = open(model, "rb").read()
    assert "already holds another run's results (model.npz); pass --overwrite" in refused(["--out", str(out)], capsys)
    assert open(model, "rb").read() == before
    for argv in (["--out", str(out), "--overwrite"], ["--out", str(out), "--resume", model, "--steps", "3"]):
        args = demo.parse_args(argv)
        args.lock.close()


def test_output_folders_that_cannot_hold_results_are_refused_before_training(tmp_path, capsys, monkeypatch):
    regular = tmp_path / "file"
    regular.write_text("x")
    os.symlink(tmp_path / "missing", tmp_path / "dangling")
    assert "--out '' must name a folder" in refused(["--out", ""], capsys)
    assert "cannot be created" in refused(["--out", str(regular / "run")], capsys)
    assert "exists and is not a folder" in refused(["--out", str(regular)], capsys)
    assert "is a symlink to" in refused(["--out", str(tmp_path / "dangling")], capsys)
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.geteuid() == 0:                    # root writes anywhere: make the folder refuse for it too
        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")
        monkeypatch.setattr(runs.tempfile, "mkstemp", refuse)
    assert "is not writable (Permission denied)" in refused(["--out", str(read_only)], capsys)


def test_resume_refuses_flags_that_disagree_and_names_the_default(tmp_path, capsys):
    path = small_checkpoint(tmp_path / "at0.npz")
    assert "--seed 3 disagrees with" in refused(["--resume", path, "--seed", "3", "--out", str(tmp_path)], capsys)
    assert "--occlusion disagrees with" in refused(["--resume", path, "--occlusion", "--out", str(tmp_path)], capsys)
    finished = small_checkpoint(tmp_path / "done.npz", step=demo.DEFAULT_STEPS)
    message = refused(["--resume", finished, "--out", str(tmp_path)], capsys)
    assert f"the default total of {demo.DEFAULT_STEPS}" in message
    assert f"--steps {demo.DEFAULT_STEPS} counts" not in message


def test_a_budget_that_ends_before_the_first_step_writes_nothing(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert demo.main(["--minutes", "1e-9", "--no-eval", "--out", out]) == 1
    assert "ended before the first training step; nothing was written" in capsys.readouterr().err
    assert not os.path.exists(os.path.join(out, "model.npz"))


def test_a_full_disk_at_a_checkpoint_keeps_the_last_one(tmp_path, capsys, monkeypatch):
    real_save, calls = demo.save, []

    def save_until_the_disk_fills(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(demo, "save", save_until_the_disk_fills)
    out = str(tmp_path / "run")
    assert demo.main(["--steps", "3", "--checkpoint-every", "1", "--no-eval", "--out", out]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert load_train_state(os.path.join(out, "checkpoint.npz"))[2]["step"] == 1


def test_ctrl_c_during_the_evaluation_keeps_the_model_and_says_how_to_evaluate(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "evaluate", interrupted)
    out = str(tmp_path / "run")
    assert demo.main(["--steps", "1", "--out", out]) == 130
    assert "evaluate it again with: python demo.py --resume" in capsys.readouterr().err
    assert load_train_state(os.path.join(out, "model.npz"))[2]["step"] == 1


def test_ctrl_c_before_the_first_step_writes_nothing(tmp_path, capsys, monkeypatch):
    import rssm_np.training as training

    def interrupted(config, step):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "training_batch", interrupted)
    out = str(tmp_path / "run")
    assert demo.main(["--steps", "5", "--no-eval", "--out", out]) == 130
    assert "nothing new to save" in capsys.readouterr().err
    assert not [name for name in os.listdir(out) if name.endswith((".npz", ".json"))]
