"""Where run files go: fresh names that never collide, and the guard that keeps a run from
replacing what is already there.

- :func:`run_stamp` / :func:`new_run_path`: the one way every front end (CLI, station commands,
  recipes, TUI, demo) names a run file or folder it chooses itself:
  ``<stem>-YYYYmmdd-HHMMSS.mmm-xxxxxx`` (local time to the millisecond plus six random hex
  digits, never repeated within a process), so two commands started in the same second, or
  the same millisecond, do not share a name.
- :func:`check_out`: what a run may write to. A path that does not exist is fine; anything else
  is refused with :class:`RunFileExistsError` unless ``overwrite`` is given, and even then
  never a file whose writer is still alive, nor anything that is not a regular file (a
  directory, a device, a FIFO, a socket, a symbolic link to one of those or to nothing).
- :func:`write_output`: how ``chipctl export`` and ``chipctl plot`` write a file that is not a
  run: the same guard (:func:`check_out` with ``source`` and ``keep_runs``), so they never
  replace the run file they read, any run file, or anything that is not a regular file, and an
  existing file only with ``overwrite``; written under a temporary name in the same folder and
  renamed into place (the temporary file removed on failure).
- :func:`writer_alive`: whether the process that a run file names as its writer still runs
  (also what :mod:`chipctl.resume` asks before continuing a "running" file).

The writer (:class:`~chipctl.runfile.writer.RunWriter`) checks again when it puts the new file
in place, and then creates it exclusively (a hard link, which fails if the name was taken in
between) unless it may overwrite.
"""

from __future__ import annotations

import os
import secrets
import socket
import stat
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py

from chipctl.runfile.format import RunFileError
from chipctl.runfile.reader import RunFile

__all__ = [
    "RunFileExistsError",
    "check_out",
    "held_here",
    "path_key",
    "process_alive",
    "new_run_path",
    "run_stamp",
    "write_output",
    "writer_alive",
]


class RunFileExistsError(RunFileError, ValueError):
    """A run would replace something at its ``--out`` path; nothing was written.

    A ``ValueError`` (bad input): the command line prints it as one line with exit code 2.
    """


# -- fresh names ------------------------------------------------------------------------------


_issued: set[str] = set()
_issued_lock = threading.Lock()


def run_stamp() -> str:
    """``YYYYmmdd-HHMMSS.mmm-xxxxxx``: local time to the millisecond and 6 random hex digits;
    never the same twice in one process (and another process choosing in the same millisecond
    picks the same digits with a chance of 1 in 16.7 million)."""
    with _issued_lock:
        while True:
            now = datetime.now()
            stamp = f"{now:%Y%m%d-%H%M%S}.{now.microsecond // 1000:03d}-{secrets.token_hex(3)}"
            if stamp not in _issued:
                _issued.add(stamp)
                return stamp


def new_run_path(directory: str | os.PathLike[str], stem: str, suffix: str = ".h5") -> Path:
    """A path ``directory/<stem>-<run_stamp()><suffix>`` that does not exist yet.

    ``suffix=""`` names a folder (the demo's). Nothing is created; the stamp's random part makes
    a collision with another process choosing at the same moment vanishingly unlikely, and the
    writer's exclusive creation catches the rest.
    """
    directory = Path(directory)
    while True:
        path = directory / f"{stem}-{run_stamp()}{suffix}"
        if not os.path.lexists(path):
            return path


# -- live writers -----------------------------------------------------------------------------

_held: set[str] = set()
_held_lock = threading.RLock()


def path_key(path: str | os.PathLike[str]) -> str:
    """One key per file, whatever the spelling (relative, ``..``, a symbolic link)."""
    return os.path.normcase(os.path.realpath(path))


def held_here(path: str | os.PathLike[str]) -> bool:
    """True if a :class:`~chipctl.runfile.writer.RunWriter` of this process has ``path`` open."""
    with _held_lock:
        return path_key(Path(path)) in _held


def claim(path: Path, *, overwrite: bool) -> None:
    """:func:`check_out` ``path`` and, in the same step, record that a writer of this process
    is about to hold it (the writer calls this; :func:`release` undoes it)."""
    with _held_lock:
        check_out(path, overwrite=overwrite)
        _held.add(path_key(path))


def hold(path: Path) -> None:
    """Record that a writer of this process holds ``path`` (a resumed run's own file)."""
    with _held_lock:
        _held.add(path_key(path))


def release(path: Path) -> None:
    """The writer of this process closed ``path``."""
    with _held_lock:
        _held.discard(path_key(path))


def writer_alive(meta: dict[str, Any]) -> bool:
    """True if the run file's writer (``writer_pid`` on ``writer_host``) is another process
    of this host that still exists. False for this process, an unknown pid or another host
    (which cannot be checked from here)."""
    pid = int(meta.get("writer_pid", 0) or 0)
    if pid <= 0 or pid == os.getpid() or meta.get("writer_host") != socket.gethostname():
        return False
    return process_alive(pid)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the guard --------------------------------------------------------------------------------

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


def check_out(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    mine: bool = False,
    source: str | os.PathLike[str] | None = None,
    keep_runs: bool = False,
    writing: str = "a run file",
) -> None:
    """Refuse to let a run write ``path`` if that would destroy something.

    Raises :class:`RunFileExistsError` naming the path and what it is, when ``path``:

    - is not a regular file (directory, device, FIFO, socket, or a symbolic link to one of
      those or to nothing): always;
    - is the file ``source`` (the run file being read; the same file by any name): always;
    - is a run file that its writer still holds (this process, or a live process of this host;
      or "running" on another host, which cannot be checked): always;
    - is any other run file and ``keep_runs`` (export and plot never replace a run): always;
    - is any other existing file: unless ``overwrite``.

    Nothing is opened for writing; a run file is only read (its metadata). ``mine``: the
    caller's own writer holds ``path`` (the writer's last look before putting its file there).
    ``writing``: what would be written, for the messages.
    """
    path = Path(path)
    if held_here(path) and not mine:
        raise RunFileExistsError(
            f"{path} is being written by another run of this process; choose another --out"
        )
    if not os.path.lexists(path):
        return
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise RunFileExistsError(
            f"{path} is not a regular file (a symbolic link to nothing); refusing to replace it"
        ) from None
    except OSError as exc:
        raise RunFileExistsError(f"{path} exists and cannot be examined: {exc}") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a file")
        raise RunFileExistsError(
            f"{path} is not a regular file ({kind}); refusing to write {writing} there"
        )
    if source is not None and _same_file(path, Path(source)):
        raise RunFileExistsError(
            f"{path} is the run file being read; refusing to write {writing} over it"
        )
    try:
        with RunFile.open(path) as run:
            meta = run.metadata
            status = run.status
    except RunFileError:
        if keep_runs and _is_hdf5(path):
            # A run file too damaged to open is still someone's measurement.
            raise RunFileExistsError(
                f"{path} exists and is an HDF5 file (perhaps a damaged run file); "
                f"{writing} never replaces one, choose another file"
            ) from None
        if overwrite:
            return
        raise RunFileExistsError(
            f"{path} exists and is not a chipctl run file; give --overwrite to replace it"
        ) from None
    what = (
        f"a chipctl run file of {meta.get('procedure', '?')}, {status}, "
        f"{meta.get('start_time', '?')}"
    )
    pid = meta.get("writer_pid", "?")
    host = str(meta.get("writer_host", "") or "")
    if status == "running" and writer_alive(meta):
        raise RunFileExistsError(
            f"{path} exists ({what}) and is still being written by process {pid} on this host; "
            "choose another --out"
        )
    if status == "running" and host and host != socket.gethostname():
        raise RunFileExistsError(
            f"{path} exists ({what}) and may still be written by process {pid} on host {host} "
            "(cannot check from here); choose another --out, or remove it if that run is dead"
        )
    if keep_runs:
        raise RunFileExistsError(
            f"{path} exists ({what}); a run file is never replaced by {writing}, "
            "choose another file"
        )
    if not overwrite:
        hint = "" if status == "success" else " (or chipctl resume it)"
        raise RunFileExistsError(f"{path} exists ({what}); give --overwrite to replace it{hint}")


def _is_hdf5(path: Path) -> bool:
    try:
        return bool(h5py.is_hdf5(path))
    except OSError:
        return False


def _same_file(path: Path, other: Path) -> bool:
    try:
        return os.path.samefile(path, other)
    except OSError:
        return path_key(path) == path_key(other)


def write_output(
    path: str | os.PathLike[str],
    write: Callable[[Path], None],
    *,
    overwrite: bool = False,
    source: str | os.PathLike[str] | None = None,
    writing: str = "a file",
) -> Path:
    """Write a file that is not a run (an export, a plot) at ``path``, guarded.

    :func:`check_out` with ``keep_runs`` (and ``source``, the run file read) decides first;
    ``write(temporary)`` then writes the whole file under a temporary name in the same folder,
    and the file is renamed into place after a last look: created exclusively (a hard link)
    unless ``overwrite``, else replaced atomically. A failed ``write`` leaves nothing behind and
    ``path`` untouched. Creates the folder if needed.

    Raises:
        RunFileExistsError: refused (nothing written).
        OSError: the folder or the file cannot be written (whatever ``write`` raises too).
    """
    path = Path(path)

    def guard() -> None:
        check_out(path, overwrite=overwrite, source=source, keep_runs=True, writing=writing)

    guard()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp")
    try:
        write(temporary)
        guard()  # the last look
        if overwrite:
            os.replace(temporary, path)
            return path
        try:
            os.link(temporary, path)
        except FileExistsError:
            guard()  # says what appeared there
            raise RunFileExistsError(f"{path} exists; give --overwrite to replace it") from None
        except OSError:  # no hard links on this file system: the check above has to do
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path
