"""The collection's single-writer lock: an advisory ``flock`` on ``LOCK``.

The kernel drops the lock when its holder dies (even by SIGKILL), so a crashed
writer never leaves a collection locked.
"""

from __future__ import annotations

import fcntl
import math
import numbers
import os
import threading
import time
from pathlib import Path
from typing import Any

from vecbox.errors import CollectionLockedError, CorruptCollectionError, InvalidInputError


def check_timeout(timeout: Any, name: str = "lock_timeout") -> float:
    """Return ``timeout`` as seconds to wait: a number >= 0, or ``math.inf`` to wait for as long as it takes.

    >>> check_timeout(2), check_timeout(math.inf)
    (2.0, inf)
    >>> check_timeout("10")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    vecbox.errors.InvalidInputError: lock_timeout must be a number of seconds >= 0 ...; got '10' (a str)
    """
    if (isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or math.isnan(timeout)
            or timeout < 0):
        raise InvalidInputError(
            f"{name} must be a number of seconds >= 0 (math.inf: wait forever); "
            f"got {timeout!r} (a {type(timeout).__name__})"
        )
    return float(timeout)


class WriteLock:
    """Re-entrant (per object) exclusive lock on a collection directory.

    Parameters
    ----------
    path : Path
        The lock file.
    timeout : float
        Seconds to wait for another writer before raising :class:`CollectionLockedError`
        (``math.inf``: wait as long as it takes); anything else raises :class:`InvalidInputError`.

    A ``LOCK`` that is not a file (a directory in its place) stops writers with
    :class:`CorruptCollectionError`; :meth:`try_acquire` just says no, so readers open the
    collection as usual.
    """

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = Path(path)
        self.timeout = check_timeout(timeout)
        self._fd: int | None = None
        self._depth = 0
        self._thread_lock = threading.RLock()

    def acquire(self, timeout: float | None = None) -> None:
        timeout = self.timeout if timeout is None else check_timeout(timeout, "timeout")
        if not self._thread_lock.acquire(timeout=-1 if math.isinf(timeout) else timeout):
            raise self._locked_error(timeout)
        if self._depth:
            self._depth += 1
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except IsADirectoryError:
            self._thread_lock.release()
            raise CorruptCollectionError(
                f"{self.path} is a directory, not the collection's lock file, so nothing can be written; "
                f"remove the directory {self.path.name} (rmdir {self.path}) - vecbox recreates the file"
            ) from None
        except BaseException:
            self._thread_lock.release()
            raise
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
        """Take the lock only if it is free right now (``False`` also when it cannot be taken at all:
        a directory in its place, a read-only collection)."""
        try:
            self.acquire(timeout=0)
            return True
        except (CollectionLockedError, CorruptCollectionError, OSError):
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
