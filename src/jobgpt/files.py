"""Atomic writes, fingerprints and file-system errors: the one place the pipeline writes a file.

Every output (tokenizer.json, the bins' meta.json, checkpoints, metrics, the loss plot, the demo
corpus) is written to a hidden temp file beside its destination and renamed over it, so a reader
sees the old file or the new one, never half of one, even when the writer is killed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from jobgpt.errors import JobGPTError

logger = logging.getLogger(__name__)


def temp_path(path: Path) -> Path:
    """A hidden, process-specific temp name beside ``path`` (same filesystem: rename is atomic).
    The "jobgpt-" mark lets `sweep_temp_files` tell our leftovers from other programs'."""
    return path.with_name(f".{path.name}.jobgpt-{os.getpid()}.tmp")


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file in `path`'s directory; on success rename it over `path`.

    Text modes write UTF-8 with newlines kept as given. The file gets the usual permissions
    (umask), like every other output of the pipeline (mkstemp would make it 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    try:
        with open(tmp, mode, **text) as f:
            yield f
        os.replace(tmp, path)
    finally:
        # After a successful replace there is nothing left to remove. On a full or read-only
        # disk the clean-up may fail too: the first error is the one to report.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def sha256_text(text: str) -> str:
    """Hex sha256 of a string's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- when the file system says no -------------------------------------------------------------

# errno -> what it means for a user, and what to do about it
_OS_FIXES = {
    errno.ENOSPC: ("no space left on the device", "free some disk space, or write elsewhere"),
    errno.EDQUOT: ("the disk quota is used up", "free some space, or write elsewhere"),
    errno.EROFS: ("the file system is read-only", "choose a writable location"),
    errno.EACCES: ("permission denied", "check the permissions, or write elsewhere"),
    errno.EPERM: ("operation not permitted", "check the permissions, or write elsewhere"),
    errno.EISDIR: ("it is a directory, not a file", "name a file there instead"),
    errno.ENOTDIR: ("a part of the path is a file, not a directory", "fix the path"),
    errno.EEXIST: ("a file is in the way", "remove it, or choose another path"),
    errno.ENOENT: ("it does not exist", "check the path"),
}


def os_error(err: OSError, doing: str = "") -> JobGPTError:
    """An OSError as the house error: the file, what failed in words, and the fix."""
    what, fix = _OS_FIXES.get(err.errno or 0, (err.strerror or str(err), "check the path"))
    if err.errno is None and "written" in str(err):  # numpy's tofile on a short write
        what, fix = "a write was cut short (the disk is probably full)", _OS_FIXES[errno.ENOSPC][1]
    subject = doing or (f"cannot use {err.filename}" if err.filename else "a file operation failed")
    where = f" ({err.filename})" if doing and err.filename else ""
    return JobGPTError(f"{subject}{where}: {what}", fix)


def check_output(path: str | Path, flag: str, is_dir: bool = False) -> None:
    """Before long work: `path` can be written as a file (or a directory, `is_dir`) — it is not
    the other kind, and the nearest folder that exists is writable. A problem found after an
    hour of training would cost that hour."""
    path = Path(path)
    if path.exists() and path.is_dir() != is_dir:
        kind, other = ("a directory", "a file") if is_dir else ("a file", "a directory")
        raise JobGPTError(
            f"{flag} {path} is {other}, but it must be {kind}",
            f"pass {kind} path to {flag}, or move {path} away",
        )
    folder = path if is_dir else path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise JobGPTError(
            f"{flag} {path} cannot be created: {folder} is a file, not a directory",
            f"choose another {flag}, or move {folder} away",
        )
    if not os.access(folder, os.W_OK):
        reason = "is on a read-only file system" if _read_only(folder) else "is not writable"
        raise JobGPTError(f"{flag} {path}: {folder} {reason}", f"choose a writable {flag}")


def refuse_to_replace(path: str | Path, overwrite: bool, what: str) -> None:
    """Outputs are not replaced silently: a tokenizer or bins that other outputs were built
    from would quietly stop matching them."""
    if Path(path).exists() and not overwrite:
        raise JobGPTError(
            f"{path} already exists ({what} of an earlier run)",
            "pass --overwrite to replace it, or choose another output path",
        )


def _read_only(folder: Path) -> bool:
    return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)


# --- one writer per output, and no leftovers ---------------------------------------------------


class OutputBusy(JobGPTError):
    """Another jobgpt process is writing the same output."""


@contextmanager
def exclusive(target: str | Path, what: str, is_dir: bool = False) -> Iterator[None]:
    """Hold an advisory lock on `target` (an output file, or folder: `is_dir`) while writing it.

    A second run on the same output gets a clear error naming the first process instead of
    interleaving its files with it. `flock` locks die with their process, so the lock of a
    run that was killed is free again at once: nothing stale to clean up by hand.
    """
    target = Path(target)
    lock = target / ".jobgpt.lock" if is_dir else target.with_name(f".{target.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    f = _lock(lock, target, what)
    try:
        f.write(f"jobgpt (PID {os.getpid()}: {' '.join(sys.argv)[:200]})")
        f.flush()
        yield
    finally:
        lock.unlink(missing_ok=True)  # while still held: no one can hold a deleted file's lock
        f.close()


def _lock(lock: Path, target: Path, what: str) -> IO:
    """The open, locked, empty lock file. A file another run deleted on release (after we
    opened it) locks nothing: then open the new one."""
    while True:
        f = open(lock, "a+", encoding="utf-8")  # noqa: SIM115  # closed by `exclusive`
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise OutputBusy(
                f"{target} is being written by {holder}; two runs on one {what} would mix "
                "their files",
                f"wait for it to finish (or stop it), or choose another {what}",
            ) from None
        try:
            if os.stat(lock).st_ino == os.fstat(f.fileno()).st_ino:
                f.seek(0)
                f.truncate()
                return f
        except FileNotFoundError:
            pass
        f.close()


# `temp_path` names: ".<name>.jobgpt-<pid>.tmp"
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.jobgpt-(?P<pid>\d+)\.tmp$")


def sweep_temp_files(folder: str | Path) -> list[Path]:
    """Remove temp files that killed runs left in `folder` (their process no longer exists).
    A run removes its own on any ordinary exit; `kill -9` leaves them, and they may be big."""
    removed = []
    for path in Path(folder).glob(".*.tmp"):
        match = _TEMP_NAME.match(path.name)
        if match and not _alive(int(match["pid"])):
            with contextlib.suppress(OSError):
                if path.is_dir():  # a directory written whole, then renamed (an export)
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(path)
    if removed:
        logger.info(
            "removed %d temp file(s) left in %s by an interrupted run", len(removed), folder
        )
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
