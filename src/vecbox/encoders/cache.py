"""A content-addressed on-disk cache of embeddings (SQLite, no pickle).

Keys are SHA-256 digests of (model fingerprint, prompt, text), so a changed
model or prompt never returns stale vectors.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def text_key(fingerprint: str, prompt: str, text: str) -> bytes:
    return hashlib.sha256(f"{fingerprint}\x00{prompt}\x00{text}".encode()).digest()


class EmbeddingCache:
    """Maps text keys to float32 vectors of one width, stored in ``<dir>/embeddings.sqlite``."""

    def __init__(self, directory: str | Path, dim: int) -> None:
        self.path = Path(directory) / "embeddings.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS emb (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        out: dict[bytes, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for key, blob in self._conn.execute(f"SELECT key, vec FROM emb WHERE key IN ({marks})", chunk):
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.size == self.dim:  # a damaged entry is a miss, never an error
                    out[key] = vec
        return out

    def put_many(self, keys: Sequence[bytes], x: np.ndarray) -> None:
        x = np.ascontiguousarray(x, dtype=np.float32)
        self._conn.execute("BEGIN")
        self._conn.executemany(
            "INSERT OR REPLACE INTO emb(key, vec) VALUES (?, ?)", ((k, row.tobytes()) for k, row in zip(keys, x))
        )
        self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()
