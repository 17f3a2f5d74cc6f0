"""A content-addressed on-disk cache of embeddings (SQLite, no pickle).

Keys are SHA-256 digests of (model fingerprint, prompt, text), so a changed
model or prompt never returns stale vectors. One class serves both encoders:
:class:`~vecbox.encoders.text.TextEncoder` stores one vector per text
(``embeddings.sqlite``), :class:`~vecbox.encoders.tokens.TokenEncoder` one token
matrix per text (``tokens.sqlite``, ``tokens=True``).

>>> cache = EmbeddingCache(tmp, dim=2)
>>> key = text_key("model", "", "hello")
>>> cache.put_many([key], np.array([[0.6, 0.8]], np.float32))
>>> cache.get_many([key, text_key("model", "", "other")])[key].tolist()
[0.6000000238418579, 0.800000011920929]
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def default_cache_dir() -> Path:
    """Where embeddings are cached: ``$VECBOX_CACHE_DIR`` or ``~/.cache/vecbox``."""
    return Path(os.environ.get("VECBOX_CACHE_DIR", Path.home() / ".cache" / "vecbox"))


def text_key(fingerprint: str, prompt: str, text: str) -> bytes:
    """The cache key of one text: SHA-256 of the model fingerprint, the prompt and the text."""
    return hashlib.sha256(f"{fingerprint}\x00{prompt}\x00{text}".encode()).digest()


class EmbeddingCache:
    """Maps text keys to float32 arrays of one width ``dim``.

    ``tokens=False``: one vector ``(dim,)`` per key, in ``<dir>/embeddings.sqlite``;
    ``tokens=True``: one matrix ``(t, dim)`` per key (``t`` may be 0), in ``<dir>/tokens.sqlite``.
    A damaged entry (wrong size) is a miss, never an error.
    """

    def __init__(self, directory: str | Path, dim: int, *, tokens: bool = False) -> None:
        self.tokens = bool(tokens)
        self.path = Path(directory) / ("tokens.sqlite" if self.tokens else "embeddings.sqlite")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        # the two tables keep the layouts of the caches written before they shared this class
        self._table, self._blob = ("tok", "x") if self.tokens else ("emb", "vec")
        self._rows = "n" if self.tokens else "1"
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        rows = "n INTEGER NOT NULL, " if self.tokens else ""
        self._conn.execute(f"CREATE TABLE IF NOT EXISTS {self._table} (key BLOB PRIMARY KEY, {rows}{self._blob} BLOB NOT NULL)")

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached arrays of those ``keys`` that are found (repeated keys are looked up once)."""
        uniq = list(dict.fromkeys(keys))
        out: dict[bytes, np.ndarray] = {}
        for start in range(0, len(uniq), 500):
            chunk = uniq[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT key, {self._rows}, {self._blob} FROM {self._table} WHERE key IN ({marks})"
            for key, n, blob in self._conn.execute(sql, chunk):
                arr = np.frombuffer(blob, dtype=np.float32)
                if arr.size == n * self.dim:
                    out[key] = arr.reshape(n, self.dim) if self.tokens else arr
        return out

    def put_many(self, keys: Sequence[bytes], arrays: np.ndarray | Sequence[np.ndarray]) -> None:
        """Store one array per key in one transaction: the rows of a ``(len(keys), dim)`` matrix,
        or (``tokens=True``) one ``(t, dim)`` matrix per key."""
        if not self.tokens:
            arrays = np.ascontiguousarray(arrays, dtype=np.float32)
        rows = "n, " if self.tokens else ""
        marks = "?, ?, ?" if self.tokens else "?, ?"
        self._conn.execute("BEGIN")
        self._conn.executemany(
            f"INSERT OR REPLACE INTO {self._table}(key, {rows}{self._blob}) VALUES ({marks})",
            (self._row(k, a) for k, a in zip(keys, arrays)),
        )
        self._conn.execute("COMMIT")

    def _row(self, key: bytes, a: np.ndarray) -> tuple[bytes, int, bytes] | tuple[bytes, bytes]:
        blob = np.ascontiguousarray(a, dtype=np.float32).tobytes()
        return (key, int(a.shape[0]), blob) if self.tokens else (key, blob)

    def close(self) -> None:
        self._conn.close()


class TokenCache(EmbeddingCache):
    """The token-matrix cache: ``EmbeddingCache(directory, dim, tokens=True)``."""

    def __init__(self, directory: str | Path, dim: int) -> None:
        super().__init__(directory, dim, tokens=True)


__all__ = ["EmbeddingCache", "TokenCache", "default_cache_dir", "text_key"]
