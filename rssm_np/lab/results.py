"""Where a number was measured: the provenance a command writes beside its results.

    {"command": "python demo.py --seeds 3",     the command line, as a user would type it
     "commit": "305a2bb...", "dirty": false,     the code it ran (git), and whether it had local changes
     "cores": 2, "numpy": "2.4.0", "python": "3.11.9", "date": "2025-06-01"}   the machine, and when (UTC)

A command that writes a results file (metrics.json, seeds.json, compare.json, plan.json) puts this
dict under the key "provenance"; `python -m rssm_np.lab.docs record` keeps it, and the docs print
it under every table made from that file, so a reader knows where each number comes from.
"""

import datetime
import os
import platform
import shlex
import subprocess
import sys

import numpy as np

# The folder that holds the rssm_np package: the repository, when the code runs from a clone.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def git(*words, root=ROOT):
    """The output of `git -C root words...`, or None where git or the repository is missing."""
    try:
        done = subprocess.run(["git", "-C", root, *words], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def code_version(root=ROOT):
    """(commit, dirty): the commit the package's repository is at, and whether `git status --porcelain`
    lists anything; (None, None) when the package does not run from a clone of its repository."""
    top = git("rev-parse", "--show-toplevel", root=root)
    if top is None or os.path.realpath(top.strip()) != os.path.realpath(root):
        return None, None           # no git, or an unrelated repository around an installed package
    commit, status = git("rev-parse", "HEAD", root=root), git("status", "--porcelain", root=root)
    return (commit.strip() if commit else None), (None if status is None else bool(status.strip()))


def program_typed():
    """How this process was started, as a user types it: "python demo.py" or "python -m rssm_np.lab.bench"."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:                       # python -m package.module
        name = spec.name[:-len(".__main__")] if spec.name.endswith(".__main__") else spec.name
        return f"python -m {name}"
    script = sys.argv[0] if sys.argv and sys.argv[0] else "python"
    path = os.path.realpath(script)
    if path.startswith(os.path.realpath(ROOT) + os.sep):     # a script of this repository: say it from its root
        script = os.path.relpath(path, os.path.realpath(ROOT))
    return f"python {shlex.quote(script)}"


def provenance(argv=None, program=None):
    """Where and with what results are being measured, as a dict (see the module docstring).

    argv: the command's arguments, as main(argv) receives them (None: this process's sys.argv[1:]).
    program: how the command is started, e.g. "python demo.py" (None: read from this process).
    """
    words = sys.argv[1:] if argv is None else [str(word) for word in argv]
    commit, dirty = code_version()
    return {
        "command": " ".join([program or program_typed()] + [shlex.quote(word) for word in words]),
        "commit": commit,
        "dirty": dirty,
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
    }
