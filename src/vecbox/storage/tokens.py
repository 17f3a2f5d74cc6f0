"""The multi-vector field: per-row token vectors in immutable segment files, located by the catalog.

A multi-vector collection stores, for every row, a variable number of token
vectors (late interaction, ColBERT-style). They go to their own segment files
(``segments/seg-<uuid>.npy``, float32 ``(N, d)``, written and fsynced before the
commit like every segment), and one catalog table says where each row's tokens
are::

    tokens(rid INTEGER PRIMARY KEY, file TEXT, start INTEGER, count INTEGER)

Its rows are inserted in the same transaction as the rows they belong to, so a
crash leaves either both or neither. The row's own vector is its MUVERA document
FDE, so filters, ANN indexes and exact search work on multi-vector rows unchanged.
Compaction drops the token rows of deleted rows; a token file no row refers to
any more is garbage.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np

from vecbox.errors import CorruptCollectionError
from vecbox.storage.segments import SEGMENT_DIR

DDL = "CREATE TABLE IF NOT EXISTS tokens (rid INTEGER PRIMARY KEY, file TEXT NOT NULL, start INTEGER NOT NULL, " \
      "count INTEGER NOT NULL)"


def insert(conn: sqlite3.Connection, seg_id: int, file: str, offsets: np.ndarray) -> None:
    """Record the tokens of the rows just inserted from segment ``seg_id`` (inside the write transaction)."""
    conn.execute(DDL)
    rids = [r for (r,) in conn.execute("SELECT rid FROM rows WHERE seg_id = ? ORDER BY pos", (seg_id,))]
    starts, counts = offsets[:-1].tolist(), np.diff(offsets).tolist()
    conn.execute(
        "INSERT INTO tokens(rid, file, start, count) SELECT json_extract(value, '$[0]'), ?, "
        "json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each(?)",
        (file, json.dumps([list(t) for t in zip(rids, starts, counts)])),
    )


def files(conn: sqlite3.Connection) -> set[str]:
    """Token files some row refers to (kept by garbage collection)."""
    if not _exists(conn):
        return set()
    return {f for (f,) in conn.execute("SELECT DISTINCT file FROM tokens")}


def drop_orphans(conn: sqlite3.Connection) -> None:
    """Forget the tokens of rows compaction removed (inside its write transaction)."""
    if _exists(conn):
        conn.execute("DELETE FROM tokens WHERE rid NOT IN (SELECT rid FROM rows)")


def locate(conn: sqlite3.Connection, ids: list[str]) -> dict[str, tuple[str, int, int]]:
    """``id -> (file, start, count)`` for live rows among ``ids``."""
    if not ids or not _exists(conn):
        return {}
    cur = conn.execute(
        "SELECT r.id, t.file, t.start, t.count FROM rows r JOIN tokens t ON t.rid = r.rid "
        "WHERE r.deleted IS NULL AND r.id IN (SELECT value FROM json_each(?))",
        (json.dumps(ids),),
    )
    return {i: (f, s, c) for i, f, s, c in cur}


class TokenFiles:
    """Memory maps of token files, opened once per handle (files are immutable)."""

    def __init__(self, root: Path, dim: int) -> None:
        self.root = root
        self.dim = dim
        self._maps: dict[str, np.ndarray] = {}

    def get(self, file: str, start: int, count: int) -> np.ndarray:
        mm = self._maps.get(file)
        if mm is None:
            path = self.root / SEGMENT_DIR / file
            try:
                mm = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise CorruptCollectionError(
                    f"token file {path} cannot be read ({exc}); restore it from a backup, or re-add the items"
                ) from None
            if mm.dtype != np.float32 or mm.ndim != 2 or mm.shape[1] != self.dim:
                raise CorruptCollectionError(
                    f"token file {path} holds {mm.dtype} {mm.shape}, expected float32 (N, {self.dim}); "
                    "restore it from a backup, or re-add the items"
                )
            self._maps[file] = mm
        if start + count > mm.shape[0]:
            raise CorruptCollectionError(
                f"token file {self.root / SEGMENT_DIR / file} is shorter than the catalog says; restore it from a backup"
            )
        return np.asarray(mm[start:start + count])


def _exists(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tokens'").fetchone() is not None
