"""What every command that writes results does, so no run destroys work it did not make.

- claim_folder: the output folder is checked (a folder, creatable, writable), locked against a
  second run at the same time, and refused if it holds another run's results the user did not
  ask to replace. All of this before any training starts.
- stop_signals: Ctrl-C (once or twice), SIGTERM and SIGHUP all become one KeyboardInterrupt, so
  the command saves what it has and exits politely; a second signal cannot cut the save short.
- silence_stdout: after the reader closed our stdout (`| head`), later prints go nowhere.
"""

import contextlib
import os
import signal
import sys
import tempfile

from ..checkpoint import write_atomically

try:
    import fcntl                  # POSIX; where absent, runs in one folder are not locked
except ImportError:
    fcntl = None

LOCK_NAME = ".lock"


class FolderError(ValueError):
    """The output folder cannot be used; the message says why and what to do."""


def _check_creatable(out):
    if out == "":
        raise FolderError("must name a folder, got ''")
    if os.path.islink(out) and not os.path.exists(out):
        raise FolderError(f"is a symlink to {os.readlink(out)!r}, which does not exist")
    if os.path.exists(out) and not os.path.isdir(out):
        raise FolderError("exists and is not a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as error:
        raise FolderError(f"cannot be created ({error.strerror or error})") from None
    try:                          # the atomic writes need to create files here: try one now
        handle, probe = tempfile.mkstemp(prefix=f".tmp-{os.getpid()}-", dir=out)
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        raise FolderError(f"is not writable ({error.strerror or error})") from None


def _lock(out):
    """An exclusive lock on OUT/.lock held while the returned file stays open.

    The kernel releases it when the process ends, however it ends (kill -9 too), so a lock is
    never stale. The file is left in place: deleting it would let two runs lock two files.
    """
    if fcntl is None:
        return None
    file = open(os.path.join(out, LOCK_NAME), "a+")
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        file.seek(0)
        holder = file.read().strip() or "unknown"
        file.close()
        raise FolderError(f"is in use by another run (pid {holder}); wait for it to end, or choose another folder") \
            from None
    file.truncate(0)
    file.write(str(os.getpid()))
    file.flush()
    return file


def claim_folder(out, results, overwrite=False, resuming=None):
    """Make `out` this run's folder, or raise FolderError.

    results: the file names a run writes there (a model, a checkpoint, metrics). If one already
    exists, the folder holds another run's work: refused unless overwrite, or unless `resuming`
    (the path of the checkpoint this run continues) lies in this very folder. Returns the lock
    (keep it open for the run; close it at the end).
    """
    _check_creatable(out)
    lock = _lock(out)
    found = [name for name in results if os.path.exists(os.path.join(out, name))]
    continuing = resuming is not None and os.path.realpath(os.path.dirname(os.path.abspath(resuming))) == \
        os.path.realpath(out)
    if found and not (overwrite or continuing):
        if lock is not None:
            lock.close()
        raise FolderError(f"already holds another run's results ({', '.join(found)}); pass --overwrite to "
                          f"replace them, --resume {os.path.join(out, found[0])} to continue that run, "
                          f"or choose another folder")
    return lock


@contextlib.contextmanager
def stop_signals():
    """Within: SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt once; later ones are recorded
    and ignored, so the save that follows the first one runs to its end. Yields the list of
    signal numbers received (exit code: 128 + the first)."""
    received = []

    def handler(signum, frame):
        received.append(signum)
        if len(received) == 1:
            raise KeyboardInterrupt

    names = [name for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {name: signal.signal(getattr(signal, name), handler) for name in names}
    try:
        yield received
    finally:
        for name, old in previous.items():
            signal.signal(getattr(signal, name), old)


def silence_stdout():
    """Send later prints to the null device: the reader of our stdout has gone (`| head`)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):
        sys.stdout = open(os.devnull, "w")


def write_text(path, text):
    """Write a text file atomically (see checkpoint.write_atomically)."""
    return write_atomically(path, lambda file: file.write(text.encode("utf-8")))
