"""In-memory view of a collection's live vectors, refreshed incrementally from the catalog.

Rows are appended in rid order (rids only grow), so a rid's position is found
with ``searchsorted`` and a refresh reads only rows added, and tombstones
written, since the version already held. A compaction bumps the catalog's
epoch, which forces a full reload.

With a codec (``code_size`` set) the view holds each row's codes instead of its
float vector, so RAM holds only codes; the float vectors stay in their segment
files and :meth:`LiveVectors.floats` reads the few rows a search rescores
through memory maps.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Sequence

import numpy as np

from vecbox.storage import catalog
from vecbox.storage.segments import codes_file, has_floats, open_codes, open_segment


def distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an int array (``np.unique`` without its first-call import of ``numpy.ma``,
    ~30 ms that would land on a fresh handle's first search).

    >>> distinct(np.array([3, 1, 3, 2])).tolist()
    [1, 2, 3]
    """
    s = np.sort(values)
    return s[np.concatenate(([True], s[1:] != s[:-1]))] if len(s) else s


class LiveVectors:
    """Contiguous matrix of every stored row (float32 vectors, or uint8 codes), with a liveness mask.

    Attributes
    ----------
    x : ndarray (n, d) float32, or (n, code_size) uint8 with a codec
        Vectors (or codes) in rid order (a view into a growing buffer).
    rids : ndarray (n,) int64
        Catalog row id of each vector, ascending.
    ids : ndarray (n,) object
        External id of each row (so id-only searches need no SQLite read).
    alive : ndarray (n,) bool
        False for rows deleted or replaced by an upsert.
    """

    def __init__(self, root: Path, dim: int, keep_sq_norms: bool = False, code_size: int | None = None) -> None:
        self.root = root
        self.dim = dim
        self.keep_sq_norms = keep_sq_norms and code_size is None
        self.code_size = code_size
        self._reset()

    def _reset(self) -> None:
        width, dtype = (self.dim, np.float32) if self.code_size is None else (self.code_size, np.uint8)
        self._buf = np.empty((0, width), dtype=dtype)
        self._rids = np.empty(0, dtype=np.int64)
        self._alive = np.empty(0, dtype=bool)
        self._norms = np.empty(0, dtype=np.float32)
        self._ids = np.empty(0, dtype=object)
        self._seg = np.empty(0, dtype=np.int32)  # segment id and position of each row (for float reads)
        self._pos = np.empty(0, dtype=np.int32)
        self._segments: dict[int, tuple[str, int]] = {}
        self._maps: dict[int, np.ndarray] = {}
        self.n = 0
        self._n_alive: int | None = 0
        self.version = -1
        self.epoch = -1

    @property
    def x(self) -> np.ndarray:
        return self._buf[: self.n]

    @property
    def rids(self) -> np.ndarray:
        return self._rids[: self.n]

    @property
    def ids(self) -> np.ndarray:
        return self._ids[: self.n]

    @property
    def alive(self) -> np.ndarray:
        return self._alive[: self.n]

    @property
    def sq_norms(self) -> np.ndarray:
        return self._norms[: self.n]

    @property
    def n_alive(self) -> int:
        if self._n_alive is None:
            self._n_alive = int(np.count_nonzero(self.alive))
        return self._n_alive

    def positions(self, rids: np.ndarray) -> np.ndarray:
        """Positions in ``x`` of the given rids (which must be held)."""
        return np.searchsorted(self.rids, rids)

    def refresh(self, conn: sqlite3.Connection) -> None:
        """Bring the view up to the catalog's committed version; call inside a read transaction."""
        ep = catalog.epoch(conn)
        if ep != self.epoch:
            self._reset()
            self.epoch = ep
        version = catalog.current_version(conn)
        if version == self.version:
            return
        self._follow_merges(conn)
        max_rid = int(self.rids[-1]) if self.n else 0
        rows = catalog.rows_after(conn, max_rid)
        if rows:
            rids, seg_ids, pos, ids = zip(*rows)
            self._append(conn, np.array([rids, seg_ids, pos], dtype=np.int64).T, ids)
        dead = np.array(catalog.deleted_since(conn, self.version), dtype=np.int64).ravel()
        if len(dead):
            self._alive[self.positions(dead)] = False
            self._n_alive = None
        self.version = version

    def _follow_merges(self, conn: sqlite3.Connection) -> None:
        """Re-point rows whose segments were merged away (their data, already in RAM, is unchanged)."""
        if not self._segments:
            return
        segments = catalog.segment_files(conn)
        gone = [s for s in self._segments if s not in segments]
        if not gone:
            return
        moved = np.flatnonzero(np.isin(self._seg[: self.n], gone))
        if len(moved):
            rows = np.array(catalog.positions_of(conn, int(self._rids[moved[0]]), int(self._rids[moved[-1]])),
                            dtype=np.int64).reshape(-1, 3)
            at = np.searchsorted(rows[:, 0], self._rids[moved])
            self._seg[moved], self._pos[moved] = rows[at, 1], rows[at, 2]
        for s in gone:
            self._segments.pop(s, None)
            self._maps.pop(s, None)
        self._segments.update(segments)

    def _append(self, conn: sqlite3.Connection, new: np.ndarray, ids: Sequence[str]) -> None:
        m = len(new)
        self._grow(self.n + m)
        segments = catalog.segment_files(conn)
        sums = catalog.segment_checksums(conn)
        self._segments.update(segments)
        out = self._buf[self.n : self.n + m]
        seg_ids = new[:, 1]
        for seg_id in distinct(seg_ids):
            sel = np.flatnonzero(seg_ids == seg_id)
            file, count = segments[int(seg_id)]
            checksums = sums.get(int(seg_id), {})  # each file read whole here is checked against its XXH3-64 checksum first
            if self.code_size is None:
                seg = open_segment(self.root, file, count, self.dim, checksums.get(file))
            else:
                seg = open_codes(self.root, file, count, self.code_size, checksums.get(codes_file(file)))
            pos = new[sel, 2]
            if len(pos) == count and pos[0] == 0 and np.all(np.diff(pos) == 1):
                out[sel] = seg  # the common case: a whole segment, read sequentially
            else:
                out[sel] = seg[pos]
        self._rids[self.n : self.n + m] = new[:, 0]
        self._ids[self.n : self.n + m] = ids
        self._alive[self.n : self.n + m] = True
        self._n_alive = None
        self._seg[self.n : self.n + m] = new[:, 1]
        self._pos[self.n : self.n + m] = new[:, 2]
        if self.keep_sq_norms:
            self._norms[self.n : self.n + m] = np.einsum("ij,ij->i", out, out)
        self.n += m

    def floats(self, positions: np.ndarray) -> np.ndarray:
        """Float32 vectors ``(len(positions), dim)`` of the given rows, read from the segment files.

        In float mode this is a copy from RAM; with codes it reads through memory maps
        (the page cache), so only the requested rows are touched.
        """
        positions = np.asarray(positions, dtype=np.int64)
        if self.code_size is None:
            return self.x[positions]
        out = np.empty((len(positions), self.dim), dtype=np.float32)
        segs = self._seg[positions]
        for seg_id in distinct(segs):
            sel = np.flatnonzero(segs == seg_id)
            rows = self._pos[positions[sel]]
            order = np.argsort(rows, kind="stable")  # ascending offsets: sequential page reads
            out[sel[order]] = self._float_map(int(seg_id))[rows[order]]
        return out

    def _float_map(self, seg_id: int) -> np.ndarray:
        mm = self._maps.get(seg_id)
        if mm is None:
            file, count = self._segments[seg_id]
            if not has_floats(file):
                raise ValueError("this collection keeps codes only (keep_float=False); there are no float vectors")
            mm = self._maps[seg_id] = open_segment(self.root, file, count, self.dim)
        return mm

    def _grow(self, needed: int) -> None:
        cap = len(self._buf)
        if needed <= cap:
            return
        new_cap = max(needed, int(cap * 1.5), 1024)
        for name in ("_buf", "_rids", "_ids", "_alive", "_norms", "_seg", "_pos"):
            old = getattr(self, name)
            grown = np.empty((new_cap,) + old.shape[1:], dtype=old.dtype)
            grown[: self.n] = old[: self.n]
            setattr(self, name, grown)
