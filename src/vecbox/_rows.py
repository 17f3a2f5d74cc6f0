"""Row-stitched matrices: consecutive pieces (memory maps of segment files, RAM arrays) read as one.

The live view of a large collection is not one array in RAM: its rows are the
segment files themselves, memory-mapped, so the page cache holds the hot rows and
nothing is copied when a collection opens. :class:`RowChunks` is that view: it
answers the few things the search code asks of a matrix (``len``, ``shape``, row
slices, row gathers) and materialises only the rows asked for. Code that needs one
contiguous matrix calls ``np.asarray`` (a copy) or iterates :meth:`RowChunks.pieces`.
"""

from __future__ import annotations

import functools
import mmap
import os
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np


def _physical_ram() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not a POSIX system
        return 16 << 30


# Mapped rows beyond this many bytes are let go of as soon as they are read (see :func:`evicts`);
# the environment variable VECBOX_KEEP_MAPPED_BYTES sets another limit (bytes).
KEEP_MAPPED_BYTES = int(os.environ.get("VECBOX_KEEP_MAPPED_BYTES") or _physical_ram() // 4)
# What one page fault on a file in the page cache may map around the faulting page: Linux maps 64 KB
# around it (fault_around_bytes), and with large folios in the page cache (ext4/xfs on 6.x kernels) the
# whole folio, up to a 2 MB huge page - measured here: reading 4 rows of a segment mapped 3.1 MB, and
# releasing 64 KB around each row let 0.9 MB stay. So releases cover the aligned 2 MB around a row.
FAULT_AROUND = 2 << 20


class RowChunks:
    """Consecutive 2-D pieces with equal width and dtype, indexed as one ``(n, d)`` matrix.

    Examples
    --------
    >>> a, b = np.arange(6.0).reshape(3, 2), np.arange(6.0, 10.0).reshape(2, 2)
    >>> m = RowChunks([a, b])
    >>> m.shape, m[2:4].tolist(), m[np.array([4, 0])].tolist()
    ((5, 2), [[4.0, 5.0], [6.0, 7.0]], [[8.0, 9.0], [0.0, 1.0]])
    """

    def __init__(self, pieces: list[np.ndarray]) -> None:
        self._pieces = pieces
        self.starts = np.cumsum([0] + [len(p) for p in pieces])
        first = pieces[0]
        self.shape = (int(self.starts[-1]), first.shape[1])
        self.dtype = first.dtype
        self.ndim = 2
        self.mapped = any(_mapping(p) is not None for p in pieces)  # read from files (asked on every gather)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.shape[1] * self.dtype.itemsize

    @functools.cached_property
    def parts(self) -> tuple[np.ndarray, tuple[np.ndarray, ...]] | None:
        """``(starts, pieces)``: int64 first rows (and the total at the end) and the pieces, for C code
        that reads the rows in place; ``None`` when a piece is not C-contiguous."""
        if not all(p.flags.c_contiguous for p in self._pieces):
            return None
        return self.starts.astype(np.int64), tuple(self._pieces)

    def pieces(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, piece)`` for every piece, in row order."""
        for start, piece in zip(self.starts[:-1].tolist(), self._pieces):
            yield start, piece

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                return self.take(np.arange(start, stop, step))
            return self._range(start, stop)
        return self.take(np.asarray(key))

    def _range(self, start: int, stop: int) -> np.ndarray:
        i = int(np.searchsorted(self.starts, start, side="right")) - 1
        j = int(np.searchsorted(self.starts, max(stop, start + 1), side="left")) - 1
        if stop <= start:
            return np.empty((0, self.shape[1]), self.dtype)
        if i == j:  # inside one piece: a view, no copy
            base = int(self.starts[i])
            return self._pieces[i][start - base : stop - base]
        out = np.empty((stop - start, self.shape[1]), self.dtype)
        for p in range(i, j + 1):
            lo, hi = max(start, int(self.starts[p])), min(stop, int(self.starts[p + 1]))
            out[lo - start : hi - start] = self._pieces[p][lo - int(self.starts[p]) : hi - int(self.starts[p])]
        return out

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The given rows (any order, repeats allowed) as a new array; a boolean mask selects too."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64, copy=False)
        if rows.ndim != 1:
            flat = self.take(rows.ravel())
            return flat.reshape(rows.shape + (self.shape[1],))
        rows = np.where(rows < 0, rows + len(self), rows)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        out = np.empty((len(rows), self.shape[1]), self.dtype)
        which = np.searchsorted(self.starts, rows, side="right") - 1
        evict = evicts(self)
        for p in np.unique(which).tolist():
            sel = np.flatnonzero(which == p)
            _take_into(self._pieces[p], rows[sel] - int(self.starts[p]), out, sel, evict)
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self._range(0, len(self)) if len(self._pieces) > 1 else np.asarray(self._pieces[0])
        return out if dtype is None else out.astype(dtype, copy=False)


def row_pieces(x: np.ndarray | RowChunks) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, array)`` pieces of ``x``: one for an array, one per piece of a :class:`RowChunks`.

    >>> [(s, p.shape) for s, p in row_pieces(np.zeros((4, 2)))]
    [(0, (4, 2))]
    """
    if isinstance(x, RowChunks):
        yield from x.pieces()
    else:
        yield 0, x


def sq_norms(x: np.ndarray | RowChunks, start: int = 0, block: int = 65_536) -> np.ndarray:
    """Squared norms of rows ``start:`` of ``x``, a block at a time (``x`` may be memory-mapped pieces).

    >>> sq_norms(RowChunks([np.ones((2, 3)), 2 * np.ones((1, 3))]), start=1).tolist()
    [3.0, 12.0]
    """
    out = np.empty(max(len(x) - start, 0), dtype=np.float32)
    evict = evicts(x)
    for first, piece in row_pieces(x):
        for lo in range(max(start - first, 0), len(piece), block):
            rows = np.asarray(piece[lo : lo + block])
            out[first + lo - start : first + lo - start + len(rows)] = np.einsum("ij,ij->i", rows, rows)
            if evict:
                _release(piece[lo : lo + block])
    return out


def _mapping(arr: np.ndarray) -> mmap.mmap | None:
    """The memory map an array's data lies in (``None`` for RAM)."""
    base: Any = arr
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    return base


def evicts(x: np.ndarray | RowChunks) -> bool:
    """Whether rows read from ``x`` are let go of at once: ``x`` is memory-mapped and bigger than
    :data:`KEEP_MAPPED_BYTES` (a quarter of RAM).

    Mapped pages a process has read count in its RSS until the kernel reclaims them, and each
    page fault maps its neighbourhood too (64 KB, or a whole large folio): a search rescoring 160 scattered rows of a
    15 GB collection would map 10 MB per query, and an exact scan all 15 GB. Below the limit
    the pages stay mapped (the next scan reads them without faults); above it, scans and
    gathers release what they read, and the page cache - not this process - holds the data.

    >>> evicts(np.zeros((2, 2)))
    False
    """
    if x.nbytes <= KEEP_MAPPED_BYTES:
        return False
    return x.mapped if isinstance(x, RowChunks) else _mapping(x) is not None


def gather(x: np.ndarray | RowChunks, rows: np.ndarray) -> np.ndarray:
    """``x[rows]`` as a new array; rows of a big mapping are read without mapping them (:func:`evicts`).

    >>> gather(np.arange(6.0).reshape(3, 2), np.array([2, 0])).tolist()
    [[4.0, 5.0], [0.0, 1.0]]
    """
    if isinstance(x, RowChunks) or not evicts(x):
        return x[rows]
    flat = np.asarray(rows, dtype=np.int64).ravel()
    flat = np.where(flat < 0, flat + len(x), flat)
    if len(flat) and (flat.min() < 0 or flat.max() >= len(x)):
        raise IndexError(f"row index out of range for {len(x)} rows")
    out = np.empty((len(flat),) + x.shape[1:], x.dtype)
    _take_into(x, flat, out, np.arange(len(flat)), True)
    return out.reshape(np.shape(rows) + x.shape[1:])


# A few scattered rows of a big mapping are read with pread: a page fault would map a whole page-cache
# folio (up to 2 MB) that must then be released again; a read copies 1.5 KB and maps nothing.
PREAD_MAX_ROWS = 4096
_FDS: dict[int, int] = {}  # id of a root memmap -> a read-only descriptor of its file, closed with it


def _take_into(piece: np.ndarray, local: np.ndarray, out: np.ndarray, sel: np.ndarray, evict: bool) -> None:
    """``out[sel] = piece[local]``; with ``evict``, without leaving the rows' pages mapped."""
    where = _file_of(piece) if evict and len(local) <= PREAD_MAX_ROWS and out.flags.c_contiguous else None
    if where is None:
        out[sel] = piece[local]
        if evict:
            _release_scattered(piece, local)
        return
    fd, first, stride = where
    for i, r in zip(sel.tolist(), local.tolist()):
        view = memoryview(out[i]).cast("B")
        if os.preadv(fd, [view], first + r * stride) != len(view):
            raise OSError(f"short read of row {r} of a segment file (truncated meanwhile?)")


def _file_of(arr: np.ndarray) -> tuple[int, int, int] | None:
    """``(fd, file offset of row 0, row stride)`` of rows of a memory-mapped ``.npy`` (``None`` otherwise)."""
    root: Any = arr
    while isinstance(getattr(root, "base", None), np.memmap):
        root = root.base
    if not isinstance(root, np.memmap) or getattr(root, "filename", None) is None or not arr.flags.c_contiguous:
        return None
    fd = _FDS.get(id(root))
    if fd is None:
        try:
            fd = os.open(root.filename, os.O_RDONLY)
        except OSError:
            return None
        _FDS[id(root)] = fd
        weakref.finalize(root, _close, id(root), fd)
    offset = root.offset + arr.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    return fd, offset, arr.strides[0]


def _close(key: int, fd: int) -> None:
    _FDS.pop(key, None)
    try:
        os.close(fd)
    except OSError:
        pass


def _release_scattered(piece: np.ndarray, rows: np.ndarray) -> None:
    """Release the pages a gather of ``rows`` of a mapped ``piece`` mapped, fault-around and large
    folios included: each row's aligned :data:`FAULT_AROUND` window, overlapping windows joined into one call."""
    mm = _mapping(piece)
    if mm is None or not hasattr(mm, "madvise") or len(rows) == 0:
        return
    begin = np.frombuffer(mm, dtype=np.uint8).ctypes.data
    row_bytes = piece.strides[0]
    first = piece.__array_interface__["data"][0] - begin + np.sort(rows) * row_bytes
    lo = first // FAULT_AROUND * FAULT_AROUND
    hi = np.minimum(-(-(first + row_bytes) // FAULT_AROUND) * FAULT_AROUND, len(mm))
    cut = np.flatnonzero(lo[1:] > hi[:-1]) + 1  # a window that starts after the last one ends: a new run
    starts, ends = lo[np.concatenate(([0], cut))], hi[np.concatenate((cut - 1, [len(hi) - 1]))]
    try:
        for a, b in zip(starts.tolist(), ends.tolist()):
            mm.madvise(mmap.MADV_DONTNEED, a, b - a)
    except (OSError, ValueError):  # not permitted here: the pages stay until the kernel reclaims them
        pass


def release_rows(x: np.ndarray | RowChunks, start: int, stop: int) -> None:
    """Let go of the pages of rows ``start:stop`` that this process mapped from files (a no-op for RAM rows).

    A pass over memory-mapped rows (an index build reading every row once) leaves each page it read
    mapped, and mapped pages count in RSS until the kernel reclaims them: reading 15 GB of rows would
    show 15 GB resident. ``MADV_DONTNEED`` drops them from this process's page tables; the page cache
    keeps the file's data, so reading them again costs a page fault, not a disk read.
    """
    for first, piece in row_pieces(x):
        lo, hi = max(start, first), min(stop, first + len(piece))
        if lo < hi:
            _release(piece[lo - first : hi - first])


def _release(arr: np.ndarray) -> None:
    base = _mapping(arr)
    if base is None or not hasattr(base, "madvise") or arr.nbytes == 0:
        return
    begin = np.frombuffer(base, dtype=np.uint8).ctypes.data  # where the mapping starts
    off = arr.__array_interface__["data"][0] - begin
    lo = off // mmap.PAGESIZE * mmap.PAGESIZE
    try:
        base.madvise(mmap.MADV_DONTNEED, lo, off + arr.nbytes - lo)
    except (OSError, ValueError):  # not permitted here: the pages stay until the kernel reclaims them
        pass


__all__ = ["KEEP_MAPPED_BYTES", "RowChunks", "evicts", "gather", "release_rows", "row_pieces", "sq_norms"]
