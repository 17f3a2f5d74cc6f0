"""What the server refuses before any collection is touched: API keys, collection names, request limits.

Keys are compared in constant time (``hmac.compare_digest`` over SHA-256 digests, so neither the
content nor the length of a configured key leaks through timing); every configured key is
compared, whichever matches first. A collection name is one directory right under the served
root: a strict pattern, then the resolved path must be that directory itself (no symlink, nothing
outside the root).

>>> keys = ApiKeys(["rw-key"], ["ro-key"])
>>> keys.access("rw-key"), keys.access("ro-key"), keys.access("guess")
('write', 'read', None)
>>> check_name("papers-2024")
'papers-2024'
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vecbox.errors import InvalidInputError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# Percent-encoded '/', '\', '.' and NUL in a raw URL path: decoded before routing, they would let a
# name carry a separator or a dot segment past the router, so they are refused outright.
ENCODED_PATH_TRICKS = re.compile(rb"%(2f|5c|2e|00)", re.IGNORECASE)
MiB = 1 << 20


class AuthError(Exception):
    """A request without a valid key (401) or a read-only key on a write endpoint (403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class PathRefusedError(InvalidInputError):
    """A collection name that is not one plain directory inside the served root."""


@dataclass(frozen=True)
class Limits:
    """Per-request limits of the server.

    ``max_body_bytes`` bounds every request body (413 beyond), ``max_ingest_bytes`` the streamed
    body of ``/ingest``; ``max_k`` bounds ``k``, ``candidates`` and ``ef_search``; ``max_batch_rows``
    the rows of one ``add`` / ``upsert`` / ``get`` / ``delete`` request; ``ingest_batch_rows`` is the
    default number of JSONL lines per commit of ``/ingest``.

    >>> Limits(max_k=100).max_k
    100
    >>> Limits(max_k=0)
    Traceback (most recent call last):
    ...
    vecbox.errors.InvalidInputError: Limits.max_k must be a positive integer; got 0
    """

    max_body_bytes: int = 64 * MiB
    max_ingest_bytes: int = 64 * MiB
    max_k: int = 10_000
    max_batch_rows: int = 100_000
    ingest_batch_rows: int = 1_000

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_ingest_bytes", "max_k", "max_batch_rows", "ingest_batch_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"Limits.{name} must be a positive integer; got {value!r}")

    def check_k(self, value: int | None, name: str = "k") -> None:
        """Refuse a ``k`` (or ``candidates``, ``ef_search``) above :attr:`max_k`.

        >>> Limits(max_k=10).check_k(11)
        Traceback (most recent call last):
        ...
        vecbox.errors.InvalidInputError: k=11 is above this server's limit of 10; ask for fewer results (or start the server with a larger --max-k)
        """
        if isinstance(value, int) and not isinstance(value, bool) and value > self.max_k:
            raise InvalidInputError(f"{name}={value} is above this server's limit of {self.max_k}; ask for fewer "
                                    "results (or start the server with a larger --max-k)")

    def check_rows(self, n: int, what: str = "rows") -> None:
        """Refuse a batch of more than :attr:`max_batch_rows` rows."""
        if n > self.max_batch_rows:
            raise InvalidInputError(f"{n:,} {what} in one request is above this server's limit of "
                                    f"{self.max_batch_rows:,}; split the batch, or use /ingest for bulk loads")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def check_key(key: Any) -> str:
    """A configured key: a non-empty string of printable characters without spaces or commas.

    >>> check_key("a b")
    Traceback (most recent call last):
    ...
    vecbox.errors.InvalidInputError: an API key must be a non-empty string without spaces, commas or control characters; got one of 3 characters
    """
    if not isinstance(key, str) or not key or any(c.isspace() or c == "," or not c.isprintable() for c in key):
        size = f"one of {len(key)} characters" if isinstance(key, str) else repr(type(key).__name__)
        raise InvalidInputError("an API key must be a non-empty string without spaces, commas or control "
                                f"characters; got {size}")
    return key


class ApiKeys:
    """The configured read-write and read-only keys; no keys at all means an open server.

    >>> ApiKeys([], []).required
    False
    """

    def __init__(self, read_write: Iterable[str] = (), read_only: Iterable[str] = ()) -> None:
        rw = [check_key(k) for k in read_write]
        ro = [check_key(k) for k in read_only]
        both = set(rw) & set(ro)
        if both:
            raise InvalidInputError(f"{len(both)} key(s) are configured both read-write and read-only; "
                                    "give each key one role")
        self._keys = [(_digest(k), "write") for k in rw] + [(_digest(k), "read") for k in ro]

    @property
    def required(self) -> bool:
        """Whether requests must carry a key."""
        return bool(self._keys)

    def access(self, presented: str) -> str | None:
        """``"write"``, ``"read"`` or ``None`` (no configured key matches ``presented``)."""
        got = _digest(presented)
        found = None
        for digest, role in self._keys:  # no early exit: the time does not depend on which key matched
            if hmac.compare_digest(got, digest) and found is None:
                found = role
        return found

    def authorize(self, headers: Mapping[str, str], write: bool) -> None:
        """Raise :class:`AuthError` unless ``headers`` carry a key allowed to read (or, with ``write``, to write).

        The key is taken from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

        >>> keys = ApiKeys(["rw"], ["ro"])
        >>> keys.authorize({"x-api-key": "ro"}, write=False)
        >>> keys.authorize({"authorization": "Bearer ro"}, write=True)
        Traceback (most recent call last):
        ...
        vecbox.server.security.AuthError: this API key is read-only; writes need a read-write key
        """
        if not self.required:
            return
        presented = presented_key(headers)
        if presented is None:
            raise AuthError(401, "this server needs an API key: send 'Authorization: Bearer <key>' or "
                                 "'X-API-Key: <key>'")
        role = self.access(presented)
        if role is None:
            raise AuthError(401, "the API key is not valid for this server; check the key you were given")
        if write and role != "write":
            raise AuthError(403, "this API key is read-only; writes need a read-write key")


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request carries (``Authorization: Bearer`` first, then ``X-API-Key``), or ``None``.

    >>> presented_key({"authorization": "Bearer abc"}), presented_key({"x-api-key": "xyz"}), presented_key({})
    ('abc', 'xyz', None)
    """
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def check_name(name: Any) -> str:
    """A collection name: 1-128 of ``A-Z a-z 0-9 _ . -``, starting with a letter or digit, without ``..``.

    >>> check_name("../etc")
    Traceback (most recent call last):
    ...
    vecbox.server.security.PathRefusedError: collection name '../etc' is not allowed: use 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit, without '..'
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        shown = repr(name) if isinstance(name, str) and len(name) <= 200 else f"of type {type(name).__name__}"
        raise PathRefusedError(f"collection name {shown} is not allowed: use 1-128 letters, digits, '_', '.' or "
                               "'-', starting with a letter or digit, without '..'")
    return name


def collection_path(root: Path, name: str) -> Path:
    """The directory of collection ``name`` under ``root`` (already resolved), refusing symlinks and escapes.

    >>> import os
    >>> root = Path(tmp).resolve()
    >>> collection_path(root, "docs") == root / "docs"
    True
    >>> os.symlink("/", root / "escape")
    >>> collection_path(root, "escape")
    Traceback (most recent call last):
    ...
    vecbox.server.security.PathRefusedError: collection 'escape' is a symbolic link; this server serves only directories inside its root
    """
    path = root / check_name(name)
    if path.is_symlink():
        raise PathRefusedError(f"collection {name!r} is a symbolic link; this server serves only directories "
                               "inside its root")
    resolved = path.resolve()
    if resolved.parent != root or resolved.name != name:
        raise PathRefusedError(f"collection {name!r} resolves outside this server's root; it cannot be served")
    return resolved


__all__ = ["ApiKeys", "AuthError", "ENCODED_PATH_TRICKS", "Limits", "NAME_PATTERN", "PathRefusedError",
           "check_key", "check_name", "collection_path", "presented_key"]
