"""Safe files: what every command that writes does, so no run destroys work it did not make.

- write_atomically / replace_atomically: a temporary file beside the target, then os.replace, so
  a crash or Ctrl-C mid-write leaves the previous file whole.

- claim_folder: the output folder is checked (a folder, creatable, writable), locked against a
  second run at the same time, and refused if it already holds any file the command would write
  (another run's or another command's results) the user did not ask to replace. All of this
  before any work starts. check_folder is the first part alone (compare checks each
  OUT/<world>/<model>/ folder with it).
- write_or_keep: a write that still fails at the end keeps what was computed under a fallback
  name (beside the file, else in the system's temporary folder) and says where.
- stop_signals: Ctrl-C (once or twice), SIGTERM and SIGHUP all become one KeyboardInterrupt, so
  the command saves what it has and exits politely; a second signal cannot cut the save short.
- silence_stdout: after the reader closed our stdout (`| head`), later prints go nowhere.
- ending, keep_work, tell: how a command that was stopped says so: the reason and the exit code a
  shell expects (128 + the signal; 141 for a closed stdout), its last step saved, told on stderr.
"""

import contextlib
import os
import re
import signal
import sys
import tempfile


try:
    import fcntl                  # POSIX; where absent, runs in one folder are not locked
except ImportError:
    fcntl = None

LOCK_NAME = ".lock"
_TEMPORARY = re.compile(r"^\.tmp-(\d+)-")   # a temporary file of write_atomically, named by its pid


class FolderError(ValueError):
    """The output folder cannot be used; the message says why and what to do."""


def check_folder(out):
    """Raise FolderError unless `out` is a folder, or can be made one, that this process can write in.

    Refused: '', a regular file, a path under a regular file, a broken symlink, a read-only folder.
    """
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


def claim_folder(out, results, overwrite=False, resuming=None, how_to_continue=None, lock=True):
    """Make `out` this run's folder, or raise FolderError.

    results: every file the command writes there (models, checkpoints, metrics, figures; a path
    below `out` for a file in a subfolder). If one already exists, the folder holds the work of
    another run, or of another command: refused unless overwrite, or unless `resuming` (the path
    of the checkpoint this run continues) lies in this very folder. how_to_continue: the words
    the refusal offers for continuing that run (e.g. "--resume OUT/checkpoint.npz to continue
    that run"). Returns the lock (keep it open for the run; close it at the end), or None when
    lock is False (a command that writes one file pair, not a run folder, leaves no OUT/.lock).
    """
    check_folder(out)
    held = _lock(out) if lock else None
    found = [name for name in results if os.path.lexists(os.path.join(out, name))]
    continuing = resuming is not None and os.path.realpath(os.path.dirname(os.path.abspath(resuming))) == \
        os.path.realpath(out)
    if found and not (overwrite or continuing):
        if held is not None:
            held.close()
        shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        raise FolderError(f"already holds another run's results ({shown}); pass --overwrite to "
                          f"replace them, " + (f"{how_to_continue}, " if how_to_continue else "") +
                          "or choose another folder")
    return held


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


def stopped_by(received):
    """The reason a stop signal gives: "interrupted" for Ctrl-C, else "stopped by SIGTERM" (or SIGHUP)."""
    return "interrupted" if not received or received[0] == signal.SIGINT else \
        f"stopped by {signal.Signals(received[0]).name}"


def signal_exit_code(received):
    """128 + the signal's number, as a shell reports a process that a signal ended."""
    return 128 + (received[0] if received else signal.SIGINT)


def ending(error, received):
    """(reason, exit code) for what ended a command: a stop signal (the KeyboardInterrupt of
    stop_signals, which recorded it in `received`), a closed stdout (exit 141, as SIGPIPE would
    give; later prints go nowhere), or another OSError (exit 1)."""
    if isinstance(error, KeyboardInterrupt):
        return stopped_by(received), signal_exit_code(received)
    if isinstance(error, BrokenPipeError):
        silence_stdout()
        return "stdout was closed", 141
    return f"error: {error}", 1


def keep_work(reason, save_checkpoint, step, path, resume, last_checkpoint):
    """What a stopped run does with its work: save_checkpoint() writes its last finished step to
    `path`, then it tells where and how to continue (the command `resume`), or why it could not
    and where the last checkpoint is."""
    try:
        save_checkpoint()
    except (OSError, ValueError) as error:
        tell(f"\n{reason}: could not save step {step} ({error}); last checkpoint: {last_checkpoint}")
        return
    tell(f"\n{reason}: saved step {step} to {path}; continue with: {resume}")


def tell(message):
    """A message about how the run ended: to stderr, which stays open when stdout was closed."""
    try:
        print(message, file=sys.stderr, flush=True)
    except OSError:
        pass                      # the terminal is gone too (SIGHUP): the files on disk say it all


def write_text(path, text):
    """Write a text file atomically (see write_atomically)."""
    return write_atomically(path, lambda file: file.write(text.encode("utf-8")))


# --- atomic writes: a reader sees the old file or the new one, never half of one ---

def process_alive(pid):
    """True if a process with this id runs on this machine (POSIX; elsewhere: assume it does)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temporaries(folder):
    """Delete the temporary files that writers killed mid-write (kill -9) left in `folder`."""
    for name in os.listdir(folder):
        match = _TEMPORARY.match(name)
        if match and int(match.group(1)) != os.getpid() and not process_alive(int(match.group(1))):
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass                  # another cleaner got there first, or it is not ours to remove


def _mode_for(path):
    """The permissions a user expects: those of the file being replaced, else 0666 minus the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_atomically(path, write):
    """Call write(file) on a temporary file beside `path`, then os.replace it onto `path`.

    A reader sees the old file or the new one, never half of one. A symlink at `path` is followed
    (its target is replaced, the link stays); the file keeps the permissions of the one it
    replaces. The temporary's name holds this process's id, so one left by a killed writer is
    recognised and removed by the next write into the folder. Returns `path`.
    """
    def write_and_sync(temporary):
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())

    return replace_atomically(path, write_and_sync)


def replace_atomically(path, write_path):
    """write_atomically for writers that want a file name: write_path(temporary_path) writes it.

    The temporary keeps `path`'s suffix, so matplotlib and Pillow pick the format from it.
    """
    target = os.path.realpath(path)
    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    _remove_stale_temporaries(folder)
    suffix = os.path.splitext(target)[1]
    handle, temporary = tempfile.mkstemp(prefix=f".tmp-{os.getpid()}-", suffix=suffix, dir=folder)
    os.close(handle)
    try:
        write_path(temporary)
        os.chmod(temporary, _mode_for(target))
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path


def fallback_paths(path):
    """Where write_or_keep puts a file its own path refused: NAME.unsaved-PID.EXT beside it, then
    the same name in the system's temporary folder (another disk, most likely writable)."""
    stem, suffix = os.path.splitext(os.path.basename(path))
    name = f"{stem}.unsaved-{os.getpid()}{suffix}"
    return [os.path.join(os.path.dirname(os.path.abspath(path)), name), os.path.join(tempfile.gettempdir(), name)]


def write_or_keep(path, write):
    """write(path), a function that writes the file at the path it is given (atomically: e.g.
    lambda target: write_text(target, text)); if that fails (the folder went read-only, the disk
    filled, a file took the folder's name), write(fallback) for each of fallback_paths until one
    takes it, said on stderr. Returns the path written. Raises the first OSError if none takes
    it: the caller then says what is lost."""
    try:
        return write(path)
    except OSError as error:
        for fallback in fallback_paths(path):
            try:
                write(fallback)
            except OSError:
                continue
            tell(f"warning: could not write {path} ({error.strerror or error}); kept it as {fallback}")
            return fallback
        raise


def write_text_or_keep(path, text):
    """write_text with write_or_keep's fallback."""
    return write_or_keep(path, lambda target: write_text(target, text))


def machine_memory():
    """Bytes of physical memory, or None where the OS does not say (config.check_fits_memory)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def run_command(main):
    """What every command's `if __name__ == "__main__"` does: exit with main()'s code; a Ctrl-C that
    comes late, after the work was kept and the command had ended, exits 130 without a traceback."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
