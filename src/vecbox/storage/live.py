"""A handle's view of a collection's live vectors, refreshed incrementally from the catalog.

Rows are appended in rid order (rids only grow), so a rid's position is found
with ``searchsorted`` and a refresh reads only rows added, and tombstones
written, since the version already held. A compaction bumps the catalog's
epoch, which forces a full reload.

**One copy of the floats.** A segment of at least :data:`MAP_MIN_BYTES` is not read:
its rows are its file, memory-mapped (a piece of :attr:`LiveVectors.x`, a
:class:`~vecbox._rows.RowChunks` when there are several), so opening a collection
reads nothing, the first exact scan streams the file through the page cache, and
RSS holds what is hot. Smaller segments (a few thousand rows) are copied into one
RAM buffer, checked against their checksums first, so many small commits do not
become many small pieces; a tiered merge turns them into one big segment, which
the view then maps instead. A mapped file is checked against its checksum in a
background thread (block by block, off the search path: reading 1.5 GB to check it
first would be the cold start this avoids); once the check finds damage, every use
of the view raises :class:`~vecbox.errors.CorruptCollectionError`, as a damaged RAM
segment does at once.

With a codec (``code_size`` set) the view holds each row's codes in RAM instead of its
float vector; the float vectors stay in their segment files and :meth:`LiveVectors.floats`
reads the few rows a search rescores through memory maps.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vecbox._fs import checksum_later
from vecbox._rows import RowChunks, gather, sq_norms
from vecbox.errors import CorruptCollectionError
from vecbox.storage import catalog, rowmap
from vecbox.storage.segments import SEGMENT_DIR, checksum_error, codes_file, has_floats, open_codes, open_segment


MAP_MIN_BYTES = 4 << 20  # a float segment at least this big is memory-mapped in place, not copied


class _Check:
    """A mapped segment file's checksum, being checked in the background."""

    def __init__(self, path: Path, expected: int | None) -> None:
        self.path = path
        self.future = checksum_later(path, expected) if expected is not None else None

    def done(self) -> bool:
        return self.future is None or self.future.done()

    def error(self) -> CorruptCollectionError | None:
        """The error to raise (waits for the check); ``None`` when the file is intact."""
        return None if self.future is None or self.future.result() else checksum_error(self.path)


def _push(pieces: list[list[Any]], start: int, stop: int, kind: str, source: int, offset: int) -> None:
    """Append the piece ``[start, stop, kind, source, offset]``, or extend the last piece when this one
    continues it (the next rows of the view from the next rows of the same source)."""
    last = pieces[-1] if pieces else None
    if (last is not None and last[2] == kind and last[3] == source and last[1] == start
            and last[4] + last[1] - last[0] == offset):
        last[1] = stop
    else:
        pieces.append([start, stop, kind, source, offset])


def distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an int array (``np.unique`` without its first-call import of ``numpy.ma``,
    ~30 ms that would land on a fresh handle's first search).

    >>> distinct(np.array([3, 1, 3, 2])).tolist()
    [1, 2, 3]
    """
    s = np.sort(values)
    return s[np.concatenate(([True], s[1:] != s[:-1]))] if len(s) else s


class LiveVectors:
    """Every stored row (float32 vectors, or uint8 codes) in rid order, with a liveness mask.

    Attributes
    ----------
    x : ndarray (n, d) float32 or RowChunks, or (n, code_size) uint8 with a codec
        Vectors (or codes) in rid order: an array, or memory-mapped segments and a RAM
        buffer stitched as one matrix (:class:`~vecbox._rows.RowChunks`).
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
        self._ram = np.empty((0, width), dtype=dtype)  # rows of small segments (all rows, with a codec)
        self._ram_n = 0
        # pieces of x in row order: [first row, end row, kind, source, first source row], where kind "ram"
        # reads _ram (source 0) and kind "map" the memory map of segment `source`
        self._pieces: list[list[Any]] = []
        self._x: np.ndarray | RowChunks | None = None  # x, made from the pieces when they change
        self._rids = np.empty(0, dtype=np.int64)
        self._alive = np.empty(0, dtype=bool)
        self._norms = np.empty(0, dtype=np.float32)
        self._norms_n = 0  # rows whose squared norm is computed (on first use: it reads every row)
        self._ids = np.empty(0, dtype=object)
        self._ids_saved: bytes | None = None  # ids of the first rows, as the saved row map holds them, until asked for
        self._map_version = -1  # the version of the row map this view loaded or saved (no need to save it again)
        self._seg = np.empty(0, dtype=np.int32)  # segment id and position of each row (for float reads)
        self._pos = np.empty(0, dtype=np.int32)
        self._segments: dict[int, tuple[str, int]] = {}
        self._maps: dict[int, np.ndarray] = {}
        self._checks: list[_Check] = []  # background checksum checks of mapped files, until they pass
        self.n = 0
        self._n_alive: int | None = 0
        self.version = -1
        self.epoch = -1

    @property
    def x(self) -> np.ndarray | RowChunks:
        if self._checks:
            self.raise_if_damaged()
        if self._x is None:
            arrays = [(self._ram if kind == "ram" else self._maps[src])[off : off + stop - start]
                      for start, stop, kind, src, off in self._pieces]
            self._x = (arrays[0] if len(arrays) == 1 else RowChunks(arrays) if arrays
                       else self._ram[:0])
        return self._x

    def raise_if_damaged(self, wait: bool = False) -> None:
        """Raise the error a finished background check found (``wait``: let every check finish first)."""
        pending = []
        for check in self._checks:
            if wait or check.done():
                exc = check.error()
                if exc is not None:
                    raise exc  # the check stays listed: every later use raises too
            else:
                pending.append(check)
        self._checks = pending

    @property
    def mapped_rows(self) -> int:
        """Rows read in place from memory-mapped segment files (the rest are in RAM)."""
        return sum(stop - start for start, stop, kind, _, _ in self._pieces if kind == "map")

    @property
    def rids(self) -> np.ndarray:
        return self._rids[: self.n]

    @property
    def ids(self) -> np.ndarray:
        if self._ids_saved is not None:  # decoded on first use: a search that returns metadata never needs them
            saved = rowmap.decode_ids(self._ids_saved)
            self._ids[: len(saved)] = saved
            self._ids_saved = None
        return self._ids[: self.n]

    @property
    def alive(self) -> np.ndarray:
        return self._alive[: self.n]

    @property
    def sq_norms(self) -> np.ndarray:
        if self._norms_n < self.n:  # computed on first use: a fresh handle reads no rows until a search needs them
            self._norms[self._norms_n : self.n] = sq_norms(self.x, self._norms_n)
            self._norms_n = self.n
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
        if self.version < 0:
            self._load_saved(conn, version)
        self._follow_merges(conn)
        max_rid = int(self.rids[-1]) if self.n else 0
        rows = catalog.rows_after(conn, max_rid)
        if rows:
            rids, seg_ids, pos, ids = zip(*rows)
            self._append(conn, np.array(rids, dtype=np.int64), np.array(seg_ids, dtype=np.int64),
                         np.array(pos, dtype=np.int64), ids)
        dead = np.array(catalog.deleted_since(conn, self.version), dtype=np.int64).ravel()
        if len(dead):
            self._alive[self.positions(dead)] = False
            self._n_alive = None
        self.version = version
        if len(rows) >= rowmap.MIN_ROWS and 4 * len(rows) >= self.n:  # a big read, a quarter of the rows or more:
            self.save_rowmap()  # saves cost O(n) in all while a collection grows by commits of any size

    def _load_saved(self, conn: sqlite3.Connection, version: int) -> None:
        """Start a fresh view from the saved row map, when there is a valid one (then at its version)."""
        saved = rowmap.load(self.root, conn, self.epoch, version)
        if saved is None:
            return
        n = len(saved.rids)
        self._segments.update(saved.segments)
        # the view holds nothing yet: the map's arrays become its own, not copied (at 10^6 rows the
        # copies were ~20 ms of a new handle's first search)
        self._rids, self._seg, self._pos, self._alive = saved.rids, saved.seg, saved.pos, saved.alive
        self._ids, self._norms = np.empty(n, dtype=object), np.empty(n, dtype=np.float32)
        self._place(conn, 0, saved.seg, saved.pos)
        self.n, self._n_alive, self._x = n, None, None
        self._ids_saved = saved.ids
        self.version = self._map_version = saved.version

    def save_rowmap(self) -> None:
        """Save this view's rows for the next handle's first refresh (:mod:`vecbox.storage.rowmap`)."""
        if self.n == 0 or self._map_version == self.version:  # the map on disk already holds these rows
            return
        seg = self._seg[: self.n]
        used = {int(s): self._segments[int(s)] for s in distinct(seg)}
        rowmap.save(self.root, self.epoch, rowmap.RowMap(self.version, self.rids, seg, self._pos[: self.n],
                                                         self.alive, self.ids, used))
        self._map_version = self.version

    def _follow_merges(self, conn: sqlite3.Connection) -> None:
        """Re-point rows whose segments were merged away; the pieces then follow the merged files."""
        if not self._segments:
            return
        segments = catalog.segment_files(conn)
        gone = [s for s in self._segments if s not in segments]
        if not gone:
            return
        old_x = self.x if self.code_size is None else None  # made before any map is dropped
        moved = np.flatnonzero(np.isin(self._seg[: self.n], gone))
        if len(moved):
            rows = np.array(catalog.positions_of(conn, int(self._rids[moved[0]]), int(self._rids[moved[-1]])),
                            dtype=np.int64).reshape(-1, 3)
            at = np.searchsorted(rows[:, 0], self._rids[moved])
            self._seg[moved], self._pos[moved] = rows[at, 1], rows[at, 2]
        for s in gone:
            self._segments.pop(s, None)
        self._segments.update(segments)
        if old_x is not None:  # codes stay in RAM as they are: their bytes did not change
            self._repiece(conn, old_x)
        for s in gone:
            self._maps.pop(s, None)

    def _repiece(self, conn: sqlite3.Connection, old_x: np.ndarray | RowChunks) -> None:
        """Pieces from scratch after a merge: runs of rows in one big file are mapped (small ones read from
        the rows already held, into a new RAM buffer), so merged rows leave RAM and old files are unmapped."""
        seg, pos = self._seg[: self.n], self._pos[: self.n]
        cut = np.flatnonzero((seg[1:] != seg[:-1]) | (pos[1:] != pos[:-1] + 1)) + 1
        bounds = np.concatenate(([0], cut, [self.n])).tolist()
        sums: dict[int, dict[str, int]] | None = None
        pieces: list[list[Any]] = []
        ram: list[tuple[int, int]] = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            seg_id = int(seg[a])
            if self._mappable(*self._segments[seg_id]):
                if seg_id not in self._maps:
                    sums = sums if sums is not None else catalog.segment_checksums(conn)
                    self._start_map(seg_id, sums)
                _push(pieces, a, b, "map", seg_id, int(pos[a]))
            else:
                ram.append((a, b))
        new_ram = np.empty((max(sum(b - a for a, b in ram), 1024), self.dim), dtype=np.float32)
        at = 0
        for a, b in ram:
            new_ram[at : at + b - a] = old_x[a:b]
            _push(pieces, a, b, "ram", 0, at)
            at += b - a
        pieces.sort(key=lambda p: p[0])  # mapped runs first, then RAM runs: back to row order
        self._pieces, self._ram, self._ram_n, self._x = pieces, new_ram, at, None
        used = {p[3] for p in pieces if p[2] == "map"}
        self._maps = {k: v for k, v in self._maps.items() if k in used}

    def _append(self, conn: sqlite3.Connection, rids: np.ndarray, seg_ids: np.ndarray, positions: np.ndarray,
                ids: Sequence[str] | None) -> None:
        """Add rows (in rid order) after the last one held; ``ids=None``: the caller fills their ids."""
        m = len(rids)
        self._grow(self.n + m)
        self._place(conn, self.n, seg_ids, positions)
        self._rids[self.n : self.n + m] = rids
        if ids is not None:
            self._ids[self.n : self.n + m] = ids
        self._alive[self.n : self.n + m] = True
        self._n_alive = None
        self._seg[self.n : self.n + m] = seg_ids
        self._pos[self.n : self.n + m] = positions
        self.n += m
        self._x = None

    def _place(self, conn: sqlite3.Connection, start: int, seg_ids: np.ndarray, positions: np.ndarray) -> None:
        """Make pieces of the view's rows ``start:start + len(seg_ids)``, which lie at ``positions`` of the
        segments ``seg_ids``: runs in a big float segment are mapped, the rest copied into RAM."""
        segments = catalog.segment_files(conn)
        sums = catalog.segment_checksums(conn)
        self._segments.update(segments)
        bounds = np.concatenate(([0], np.flatnonzero(np.diff(seg_ids)) + 1, [len(seg_ids)]))  # runs of one segment
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            seg_id = int(seg_ids[a])
            file, count = segments[seg_id]
            pos = positions[a:b]
            consecutive = bool(np.all(np.diff(pos) == 1))
            if consecutive and self._mappable(file, count):
                if seg_id not in self._maps:
                    self._start_map(seg_id, sums)
                _push(self._pieces, start + a, start + b, "map", seg_id, int(pos[0]))
                continue
            whole = consecutive and len(pos) == count and pos[0] == 0
            checksums = sums.get(seg_id, {})  # each file read whole here is checked against its XXH3-64 checksum first
            if self.code_size is None:
                seg = open_segment(self.root, file, count, self.dim, checksums.get(file))
            else:
                seg = open_codes(self.root, file, count, self.code_size, checksums.get(codes_file(file)))
            self._to_ram(start + a, start + b, seg if whole else seg[pos])

    def _to_ram(self, start: int, stop: int, rows: np.ndarray) -> None:
        """Copy rows ``start:stop`` into the RAM buffer as a piece (extending the last one when adjacent)."""
        m = stop - start
        if self._ram_n + m > len(self._ram):
            grown = np.empty((max(self._ram_n + m, int(len(self._ram) * 1.5), 1024),) + self._ram.shape[1:],
                             dtype=self._ram.dtype)
            grown[: self._ram_n] = self._ram[: self._ram_n]
            self._ram = grown
        self._ram[self._ram_n : self._ram_n + m] = rows
        _push(self._pieces, start, stop, "ram", 0, self._ram_n)
        self._ram_n += m

    def _mappable(self, file: str, count: int) -> bool:
        """Whether a segment's float rows are read in place (big enough, and floats are kept)."""
        return self.code_size is None and has_floats(file) and count * self.dim * 4 >= MAP_MIN_BYTES

    def _start_map(self, seg_id: int, sums: dict[int, dict[str, int]]) -> None:
        """Map a segment's floats, and check its file against its checksum in the background."""
        file = self._segments[seg_id][0]
        self._checks.append(_Check(self.root / SEGMENT_DIR / file, sums.get(seg_id, {}).get(file)))
        self._map(seg_id)

    def floats(self, positions: np.ndarray) -> np.ndarray:
        """Float32 vectors ``(len(positions), dim)`` of the given rows, read from the segment files.

        In float mode these are the rows of :attr:`x` (RAM or the page cache); with codes
        it reads through memory maps, so only the requested rows are touched.
        """
        positions = np.asarray(positions, dtype=np.int64)
        if self.code_size is None:
            return gather(self.x, positions)
        out = np.empty((len(positions), self.dim), dtype=np.float32)
        segs = self._seg[positions]
        for seg_id in distinct(segs):
            sel = np.flatnonzero(segs == seg_id)
            rows = self._pos[positions[sel]]
            order = np.argsort(rows, kind="stable")  # ascending offsets: sequential page reads
            out[sel[order]] = self._map(int(seg_id))[rows[order]]
        return out

    def _map(self, seg_id: int) -> np.ndarray:
        """The float rows of a segment, memory-mapped (opened once; mapped while the view refers to it)."""
        mm = self._maps.get(seg_id)
        if mm is None:
            file, count = self._segments[seg_id]
            if not has_floats(file):
                raise ValueError("this collection keeps codes only (keep_float=False); there are no float vectors")
            mm = self._maps[seg_id] = open_segment(self.root, file, count, self.dim)
        return mm

    def _grow(self, needed: int) -> None:
        cap = len(self._rids)
        if needed <= cap:
            return
        new_cap = max(needed, int(cap * 1.5), 1024)
        for name in ("_rids", "_ids", "_alive", "_norms", "_seg", "_pos"):
            old = getattr(self, name)
            grown = np.empty((new_cap,) + old.shape[1:], dtype=old.dtype)
            grown[: self.n] = old[: self.n]
            setattr(self, name, grown)
