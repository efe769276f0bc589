"""One writer per folder: an exclusive lock on ``<folder>/.lock``.

A run folder (``torchmim train --out``) and a sweep folder (``torchmim sweep --out``) are written by
one process at a time. :class:`FolderLock` takes an exclusive ``fcntl.flock`` on the folder's
``.lock`` file and writes the holder (PID, host, command, start time) into it; a second writer gets
a one-line :class:`FolderLockedError` naming the folder and that process.

The kernel drops a ``flock`` when its process dies (``kill -9`` included), so a lock left by a dead
process is taken over by the next writer with nothing to clean up. Where ``fcntl`` is missing
(Windows) the lock file is created with ``O_EXCL`` and a lock whose recorded process is no longer alive on
this host is taken over.

The lock is re-entrant within one process (``run()`` holds its folder's lock and the trainer it
starts takes it again), not across threads of one process.

A lock that created its folder and leaves it holding nothing but the lock file (the run or sweep
failed before writing anything, e.g. on a missing data file) removes the lock file and the folders
it created when it is released, so a failed start leaves no new empty folder behind.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import ConfigError, FolderLockedError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "FolderLock", "FolderLockedError", "lock_holder"]

#: The lock file's name inside a locked folder.
LOCK_NAME = ".lock"

_held: dict[str, tuple[int, Any]] = {}  # realpath -> (count, open file), this process's locks
_created: dict[str, list[Path]] = {}  # realpath -> the folders its first acquire created
_guard = threading.Lock()


def lock_holder(folder: str | Path) -> dict[str, Any] | None:
    """What the folder's lock file says about its (last) holder: ``pid``, ``host``, ``command``,
    ``started``; ``None`` when there is no readable record."""
    try:
        data = json.loads((Path(folder) / LOCK_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process (it has not written its PID yet)"
    text = f"process {holder.get('pid')} on {holder.get('host')}"
    if holder.get("command"):
        text += f" ({holder['command'][:80]})"
    return text


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # pragma: no cover
        return True
    return True


def _only_lock_file(folder: Path) -> bool:
    try:
        return os.listdir(folder) == [LOCK_NAME]
    except OSError:
        return False


def _remove_empty(created: list[Path]) -> None:
    """Remove the (empty) folders in ``created``, innermost first; stop at one that is not empty
    (another process wrote there meanwhile) or cannot be removed."""
    for p in created:
        try:
            p.rmdir()
        except OSError:
            return


class FolderLock:
    """An exclusive, process-wide lock on a folder (a context manager).

    Args:
        folder: the folder to lock (created if missing).
        what: how the error message names the folder (``"run folder"``, ``"sweep folder"``).
    """

    def __init__(self, folder: str | Path, *, what: str = "folder") -> None:
        self.folder = Path(folder)
        self.what = what
        self._key: str | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK_NAME

    def acquire(self) -> FolderLock:
        """Take the lock or raise :class:`FolderLockedError` at once (never waits)."""
        missing = []  # the folders this acquire creates, innermost first
        p = self.folder.absolute()
        while not p.exists() and p != p.parent:
            missing.append(p)
            p = p.parent
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot use {self.folder} as a {self.what}: "
                              f"{e.strerror or type(e).__name__}") from None
        key = os.path.realpath(self.folder)
        with _guard:
            if key in _held:
                count, f = _held[key]
                _held[key] = (count + 1, f)
                self._key = key
                return self
            try:
                f = self._take()
            except BaseException:
                _remove_empty(missing)
                raise
            _held[key] = (1, f)
            _created[key] = missing
            self._key = key
        return self

    def _record(self) -> bytes:
        return (json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "command": " ".join(sys.argv), "started": time.time()}) + "\n").encode()

    def _locked(self) -> FolderLockedError:
        return FolderLockedError(
            f"{self.what} {self.folder} is in use by {_describe(lock_holder(self.folder))}; wait "
            "for it to finish or stop it (its lock is released when it exits), or use another "
            "folder")

    def _take(self) -> Any:
        if fcntl is not None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise ConfigError(f"cannot write into the {self.what} {self.folder}: "
                                  f"{e.strerror or type(e).__name__}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise self._locked() from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, self._record(), 0)
            return fd
        for _ in range(2):  # pragma: no cover - the O_EXCL fallback (Windows)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = lock_holder(self.folder)
                if holder and holder.get("host") == socket.gethostname() \
                        and isinstance(holder.get("pid"), int) and not _pid_alive(holder["pid"]):
                    self.path.unlink(missing_ok=True)  # a dead process's lock: take it over
                    continue
                raise self._locked() from None
            os.write(fd, self._record())
            return fd
        raise self._locked()  # pragma: no cover

    def release(self) -> None:
        """Release the lock (the last release of a re-entered lock drops it)."""
        if self._key is None:
            return
        with _guard:
            count, fd = _held[self._key]
            if count > 1:
                _held[self._key] = (count - 1, fd)
            else:
                del _held[self._key]
                created = _created.pop(self._key, [])
                # still holding the lock: remove the folder we created if it holds nothing else
                unused = bool(created) and _only_lock_file(self.folder)
                if unused:
                    self.path.unlink(missing_ok=True)
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
                else:  # pragma: no cover
                    os.close(fd)
                    self.path.unlink(missing_ok=True)
                if unused:
                    _remove_empty(created)
        self._key = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
