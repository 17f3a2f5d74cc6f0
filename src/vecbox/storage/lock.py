"""The collection's single-writer lock: an advisory ``flock`` on ``LOCK``.

The kernel drops the lock when its holder dies (even by SIGKILL), so a crashed
writer never leaves a collection locked.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

from vecbox.errors import CollectionLockedError


class WriteLock:
    """Re-entrant (per object) exclusive lock on a collection directory.

    Parameters
    ----------
    path : Path
        The lock file.
    timeout : float
        Seconds to wait for another writer before raising :class:`CollectionLockedError`.
    """

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._fd: int | None = None
        self._depth = 0
        self._thread_lock = threading.RLock()

    def acquire(self, timeout: float | None = None) -> None:
        timeout = self.timeout if timeout is None else timeout
        if not self._thread_lock.acquire(timeout=max(timeout, 0) if timeout >= 0 else -1):
            raise self._locked_error(timeout)
        if self._depth:
            self._depth += 1
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    self._thread_lock.release()
                    raise self._locked_error(timeout) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        self._fd = fd
        self._depth = 1

    def try_acquire(self) -> bool:
        """Take the lock only if it is free right now."""
        try:
            self.acquire(timeout=0)
            return True
        except CollectionLockedError:
            return False

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        self._thread_lock.release()

    def __enter__(self) -> "WriteLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _locked_error(self, timeout: float) -> CollectionLockedError:
        return CollectionLockedError(
            f"another writer holds the lock on {self.path.parent} and did not release it within {timeout:g} s; "
            "wait for it to finish, or open the collection with a longer lock_timeout"
        )
