"""Approximate nearest-neighbour indexes (FAISS HNSW and IVF) as derived caches of a collection.

An :class:`AnnIndex` holds a FAISS index over a snapshot of the collection's rows
plus the catalog row id (rid) of every FAISS label. It never decides what may be
returned: the caller passes an allow-bitmap (liveness and filter) and merges the
rows committed after the snapshot, so a stale index is slower, never wrong.

Why FAISS (and not USearch) backs ``hnsw``: on our data both graphs reach the
same recall for the same M/ef (see docs/ARCHITECTURE.md and the ``search``
benchmark), but FAISS takes an allow-set as a C++ bitmap
(``IDSelectorBitmap``) inside the graph walk, where USearch's Python binding
filters through a Python callback per visited node; and FAISS's graph arrays can be
read in place by vecbox's own walk (below).

Searches of an ``hnsw`` index with float storage walk FAISS's graph and vectors in
vecbox's own C walk (:mod:`vecbox.index._walk`) rather than FAISS's: under a filter it
keeps the ef nearest *allowed* rows and walks on until it has them (hnswlib's rule),
where FAISS keeps the ef nearest rows of any kind and returns the allowed ones among
them - which collapses when the allowed rows lie away from the query. Without the
built extension (or for ``sq8`` storage and IVF) FAISS's own search runs.

Scores are "higher is better" as in :mod:`vecbox.index.flat`: inner products for
``dot``/``cosine`` and ``2 q.x - |x|^2`` for ``l2`` (FAISS's squared distances
are converted back).
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vecbox._fs import checksum_later, file_checksum, fsync_dir
from vecbox._rows import release_rows
from vecbox._optional import require
from vecbox.errors import CorruptCollectionError, InvalidInputError

INDEX_KINDS = ("hnsw", "ivf")
STORAGES = ("flat", "sq8", "pq")
ADD_BLOCK = 65_536  # rows handed to FAISS per add() call: the build copies one block at a time, never all rows
_META = "meta.json"
_RIDS = "rids.npy"
_INDEX_FILE = "index.faiss"
_CODES = ("walk-codes.npy", "walk-scale.npy", "walk-offset.npy", "walk-sqnorms.npy")  # the walk's codes, saved
CHECK_LATER_BYTES = 64 << 20  # a bigger index file is checked against its checksum in the background
_FORMAT = 1
# the walk reads 8-bit codes of rows of at least this many dimensions: a shorter float row is a few
# cache lines already, and in few dimensions the codes' rounding is coarse next to the distance gaps
# (24 dimensions, ef = k: recall 0.93 against 0.97 on the floats)
CODES_MIN_DIM = 64
# a walk over codes reads its rescored float rows by pread once they are this big (see _read_rows_by_pread):
# below it a few hundred MB of mapped rows in RSS cost less than a system call per rescored row
PREAD_ROWS_BYTES = int(os.environ.get("VECBOX_PREAD_ROWS_BYTES") or 256 << 20)


_FAISS: Any = None  # the faiss module once imported (the hot path skips the import statement)
_WALK: Any = None  # vecbox.index._walk once imported; False when the extension is not built


def _faiss() -> Any:
    global _FAISS
    if _FAISS is None:
        _FAISS = require("faiss", "codecs", "ANN indexes")
    return _FAISS


def walk_module() -> Any:
    """``vecbox.index._walk`` (vecbox's C walk), or ``None`` when the extension is not built."""
    global _WALK
    if _WALK is None:
        try:
            from vecbox.index import _walk
        except ImportError:  # a source tree without the built extension: FAISS's walk runs
            _WALK = False
        else:
            _WALK = _walk
    return _WALK or None


@dataclass
class IndexParams:
    """Build and search parameters of an ANN index (defaults are sound for 10^4-10^7 rows of d <= 1024).

    ``M`` / ``ef_construction`` / ``ef_search`` are HNSW's (graph degree, build and search
    beam width); ``nlist`` / ``nprobe`` are IVF's (number of lists, lists scanned per query;
    ``nlist`` defaults to about 4 sqrt(n)). ``storage="sq8"`` keeps 8-bit codes in the
    index instead of float32 (4x smaller; results are rescored exactly); ``storage="pq"`` (IVF
    only) keeps ``pq_bytes`` bytes of product-quantisation codes per row (default d/8: 32x smaller),
    also rescored exactly from the stored floats.
    """

    kind: str = "hnsw"
    M: int = 32
    ef_construction: int = 200
    ef_search: int = 64
    nlist: int | None = None
    nprobe: int = 16
    storage: str = "flat"
    target_recall: float | None = None
    pq_bytes: int | None = None

    def check(self) -> "IndexParams":
        """Return ``self`` if every parameter is valid, else raise :class:`InvalidInputError` naming it.

        >>> IndexParams("ivf", nlist=64).check().nlist
        64
        """
        if not isinstance(self.kind, str) or self.kind not in INDEX_KINDS:
            raise InvalidInputError(f"unknown index kind {self.kind!r}; choose one of {', '.join(INDEX_KINDS)}")
        if not isinstance(self.storage, str) or self.storage not in STORAGES:
            raise InvalidInputError(f"unknown index storage {self.storage!r}; choose one of {', '.join(STORAGES)}")
        for name in ("M", "ef_construction", "ef_search", "nprobe", "nlist"):
            value = getattr(self, name)
            if value is None and name == "nlist":
                continue
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InvalidInputError(f"{name} must be a positive integer; got {value!r}")
        if self.storage == "pq" and self.kind != "ivf":
            raise InvalidInputError("storage='pq' is for kind='ivf' (an HNSW walk needs cheap exact-ish distances); "
                                    "use kind='ivf', or storage='sq8' for a smaller HNSW index")
        if self.pq_bytes is not None and (isinstance(self.pq_bytes, bool) or not isinstance(self.pq_bytes, int)
                                          or self.pq_bytes < 1):
            raise InvalidInputError(f"pq_bytes must be a positive integer; got {self.pq_bytes!r}")
        recall = self.target_recall
        real = isinstance(recall, (int, float, np.integer, np.floating)) and not isinstance(recall, (bool, np.bool_))
        if recall is not None and (not real or not 0.0 < float(recall) <= 1.0):
            raise InvalidInputError(f"target_recall must be a number in (0, 1], or None; got {recall!r}")
        return self

    def check_rows(self, n: int) -> "IndexParams":
        """Return ``self`` if an index with these parameters can be built over ``n`` rows, else raise.

        IVF's k-means needs at least one training row per list (FAISS recommends 39 per list);
        a default ``nlist`` (``None``) is chosen from ``n`` and always fits.

        >>> IndexParams("ivf", nlist=100).check_rows(5000).nlist
        100
        >>> IndexParams("ivf", nlist=1000).check_rows(50)
        Traceback (most recent call last):
        ...
        vecbox.errors.InvalidInputError: nlist=1000 needs at least 1000 rows (39 x nlist recommended by FAISS); \
this collection has 50 - pass a smaller nlist (at most 50) or omit it
        """
        n = int(n)
        if n < 1:
            raise InvalidInputError("there are no rows to index; add vectors before building an index")
        if self.kind == "ivf" and self.nlist is not None and int(self.nlist) > n:
            raise InvalidInputError(
                f"nlist={int(self.nlist)} needs at least {int(self.nlist)} rows (39 x nlist recommended by FAISS); "
                f"this collection has {n} - pass a smaller nlist (at most {n}) or omit it"
            )
        return self

    @property
    def effort(self) -> int:
        """The default search effort: ef_search (hnsw) or nprobe (ivf)."""
        return self.ef_search if self.kind == "hnsw" else self.nprobe


@dataclass
class AnnIndex:
    """A FAISS index over a snapshot of rows, labelled 0..n-1, with the rid of each label.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((2000, 16)).astype(np.float32)
    >>> idx = AnnIndex.build(x, np.arange(1, 2001), "l2", IndexParams("hnsw", M=16))
    >>> s, lab = idx.search(x[:3], 1)
    >>> lab[:, 0].tolist()
    [0, 1, 2]
    """

    params: IndexParams
    metric: str
    rids: np.ndarray
    faiss_index: Any = field(repr=False)
    version: int = 0
    build_seconds: float = 0.0
    _search_params: dict[tuple[int, int | None], Any] = field(default_factory=dict, repr=False)
    _one: dict[int, tuple[Any, ...]] = field(default_factory=dict, repr=False)  # k -> single-query out buffers
    _graph: Any = field(default=None, repr=False)  # vecbox's walk over the graph (False: FAISS's search runs)
    # the two filtered walks measured against each other (vecbox.index.calibration.calibrate_walks); saved
    walk_calibration: dict[str, Any] | None = None
    calibrated_recall: float | None = None  # recall@10 at the effort target_recall chose (saved)
    calibration: dict[str, Any] | None = None  # calibration.Calibration.as_dict(): recall, ci95, queries, source
    codes: tuple[np.ndarray, ...] | None = field(default=None, repr=False)  # walk_codes(): made once, then saved
    pending: list[tuple[str, Any]] = field(default_factory=list, repr=False)  # (file, Future[bool]) checks
    build_peak_bytes: int | None = None  # how far RSS rose while it was built (saved)
    hnsw_file: "HnswFile | None" = field(default=None, repr=False)  # a loaded HNSW-flat file's parts, read in place

    @property
    def n(self) -> int:
        return len(self.rids)

    @property
    def kind(self) -> str:
        """``"hnsw"`` or ``"ivf"``."""
        return self.params.kind

    @property
    def max_rid(self) -> int:
        """Rows with a larger rid were committed after this snapshot (searched exactly by the caller)."""
        return int(self.rids[-1]) if len(self.rids) else 0

    @property
    def exact_scores(self) -> bool:
        """False when the index stores compressed vectors (its scores need an exact rescore)."""
        return self.params.storage == "flat"

    @property
    def rescore_factor(self) -> int:
        """Candidates per hit a search rescores exactly, at least (1: the index's scores are exact).

        8-bit codes rank the true top 10 within the best 40 (Collection.search's default oversample);
        PQ codes (d/8 bytes) need the best 160: measured recall@10 0.76 / 0.92 / 0.999 at 4 / 8 / 16x
        on 12k x 256 clustered rows."""
        return {"flat": 1, "sq8": 4}.get(self.params.storage, 16)

    @property
    def filter_rule(self) -> str:
        """How a filtered walk stops: ``"allowed"`` (vecbox's walk: the ef nearest allowed rows)
        or ``"beam"`` (FAISS's: the ef nearest rows, of which the allowed ones are returned)."""
        return "allowed" if self.walker() else "beam"

    @property
    def walks_codes(self) -> bool:
        """True when vecbox's walk reads 8-bit codes of the rows (kept in RAM beside the floats)."""
        return (self.params.kind == "hnsw" and self.params.storage == "flat" and self.faiss_index.d >= CODES_MIN_DIM
                and walk_module() is not None)

    def walker(self) -> Any:
        """vecbox's walk over this index (``hnsw`` with float storage, extension built), else ``None``.

        Made on first use; when :attr:`walks_codes`, that includes the codes (~1.6 s at 10^6 x 384).
        """
        if self._graph is None:
            self._graph = _graph_of(self) or False
        return self._graph or None

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, x: np.ndarray, rids: np.ndarray, metric: str, params: IndexParams, *, seed: int = 0,
              version: int = 0) -> "AnnIndex":
        """Build over ``x`` (rows in rid order; normalised already for cosine)."""
        import time

        faiss = _faiss()
        n, d = x.shape
        params.check().check_rows(n)
        t0 = time.perf_counter()
        fmetric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
        store = {"flat": "Flat", "sq8": "SQ8"}.get(params.storage) or pq_spec(d, pq_bytes(d, params.pq_bytes))
        if params.storage == "pq":
            params.pq_bytes = pq_bytes(d, params.pq_bytes)
        if params.kind == "hnsw":
            index = faiss.index_factory(d, f"HNSW{int(params.M)},{store}", fmetric)
            index.hnsw.efConstruction = int(params.ef_construction)
            index.hnsw.efSearch = int(params.ef_search)
        else:
            nlist = int(params.nlist or max(1, min(n // 39, int(round(4 * math.sqrt(max(n, 1)))))))
            params.nlist = nlist
            index = faiss.index_factory(d, f"IVF{nlist},{store}", fmetric)
            if hasattr(faiss.downcast_index(index), "do_polysemous_training"):  # classic 8-bit PQ: polysemous
                # training orders codes for Hamming filtering we never use
                faiss.downcast_index(index).do_polysemous_training = False  # 85 s of a 86 s train at 12k x 256
            index.cp.seed = int(seed)
            index.nprobe = int(params.nprobe)
        if not index.is_trained:  # on a sample: the build never holds all rows as one array
            cap = 256 * (params.nlist or 1) if params.kind == "ivf" else 200_000
            rows = np.sort(np.random.default_rng(seed).choice(n, cap, replace=False)) if n > cap else np.arange(n)
            index.train(np.ascontiguousarray(x[rows], dtype=np.float32))
        for start in range(0, n, ADD_BLOCK):  # x may be memory-mapped segments (RowChunks): a block at a time
            index.add(np.ascontiguousarray(x[start : start + ADD_BLOCK], dtype=np.float32))
            release_rows(x, start, start + ADD_BLOCK)  # read once: their pages need not stay in RSS
        return cls(params, metric, np.asarray(rids, dtype=np.int64).copy(), index, version,
                   time.perf_counter() - t0)

    # ----------------------------------------------------------------- search
    def search(self, q: np.ndarray, k: int, *, effort: int | None = None,
               allow: np.ndarray | None = None, two_hop: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` labels per query (``-1`` where fewer were found), scores higher-is-better.

        ``effort`` is ef_search (hnsw) or nprobe (ivf); ``allow`` a packed little-endian
        bitmap over labels (``np.packbits(mask, bitorder="little")``) of rows that may be returned;
        ``two_hop``: vecbox's walk scores only allowed rows, reaching them through disallowed
        neighbours (for selective filters; see ``_walk.c``; ignored by FAISS's walk).
        """
        k = max(1, min(int(k), self.n))
        q = np.ascontiguousarray(q, dtype=np.float32)
        dist, lab = self.search_plain(q, k, int(effort or self.params.effort), allow, two_hop=two_hop)
        scores = np.einsum("ij,ij->i", q, q)[:, None] - dist if self.metric == "l2" else dist
        if lab.min() < 0:
            scores = np.where(lab >= 0, scores, np.float32(-np.inf))
        return scores, lab

    def search_plain(self, q: np.ndarray, k: int, effort: int, allow: np.ndarray | None = None, *,
                     reuse: bool = False, two_hop: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """C-contiguous float32 queries ``(n, d)``: raw distances (FAISS's convention) and labels.

        The lean form of :meth:`search` (no copies, no score conversion; ``allow`` as
        there): at ~100 us per graph walk, every microsecond of Python around it shows.
        ``k`` must be at most :attr:`n`. ``reuse=True`` answers one query in buffers the
        index keeps (no allocation): the caller holds a lock and copies the answer out
        before the next call.
        """
        walker = self.walker()
        if reuse and len(q) == 1:
            out = self._one.get(k) or self._out_buffers(k)
            if walker:
                walker.search(q, k, effort, allow, out[0], out[1], 1, two_hop)
            else:
                self.faiss_index.search_c(1, (_FAISS or _faiss()).swig_ptr(q), k, out[2], out[3],
                                          self._params(effort, k, allow))
            return out[0], out[1]
        dist = np.empty((len(q), k), dtype=np.float32)
        lab = np.empty((len(q), k), dtype=np.int64)
        if walker:  # as many threads as FAISS would use (OpenMP's setting, which callers limit)
            threads = 1 if len(q) == 1 else (_FAISS or _faiss()).omp_get_max_threads()
            walker.search(q, k, effort, allow, dist, lab, threads, two_hop)
        else:
            faiss = _FAISS or _faiss()
            self.faiss_index.search_c(len(q), faiss.swig_ptr(q), k, faiss.swig_ptr(dist), faiss.swig_ptr(lab),
                                      self._params(effort, k, allow))
        return dist, lab

    def _out_buffers(self, k: int) -> tuple[Any, ...]:
        d1, l1 = np.empty((1, k), dtype=np.float32), np.empty((1, k), dtype=np.int64)
        if self.walker():  # FAISS's pointers only for FAISS's search (a walk needs no import of faiss)
            out = self._one[k] = (d1, l1, None, None)
        else:
            faiss = _FAISS or _faiss()
            out = self._one[k] = (d1, l1, faiss.swig_ptr(d1), faiss.swig_ptr(l1))
        return out

    def _params(self, effort: int, k: int, allow: np.ndarray | None) -> Any:
        """FAISS search parameters for (effort, allow-set), cached: SWIG objects cost ~10 us each to make."""
        key = (max(effort, k) if self.params.kind == "hnsw" else min(effort, int(self.params.nlist or effort)),
               id(allow) if allow is not None else None)
        entry = self._search_params.get(key)
        if entry is None or entry[1] is not allow:
            faiss = _faiss()
            sp = faiss.SearchParametersHNSW(efSearch=key[0]) if self.params.kind == "hnsw" else \
                faiss.SearchParametersIVF(nprobe=key[0])
            sel = None
            if allow is not None:
                sel = faiss.IDSelectorBitmap(self.n, faiss.swig_ptr(allow))
                sp.sel = sel
            if len(self._search_params) >= 64:
                self._search_params.pop(next(iter(self._search_params)))
            # the entry keeps the bitmap and selector alive for as long as FAISS may read them
            entry = self._search_params[key] = (sp, allow, sel)
        return entry[0]

    # --------------------------------------------------------------- persist
    def save(self, directory: Path) -> Path:
        """Write ``index.faiss`` + ``rids.npy`` + ``meta.json`` into a new directory (fsynced)."""
        faiss = _faiss()
        directory.mkdir(parents=True)
        index = self.faiss_index
        faiss.write_index(index.get() if isinstance(index, FaissOnDemand) else index, str(directory / _INDEX_FILE))
        arrays = {_RIDS: self.rids}
        if self.walks_codes:
            self.walker()  # made at build by the calibration already; saved so a load need not make them
            if self.codes is not None:
                arrays.update({name: arr for name, arr in zip(_CODES, self.codes) if arr is not None})
        for name, arr in arrays.items():
            with open(directory / name, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
                fh.flush()
                os.fsync(fh.fileno())
        meta = {"format": _FORMAT, "metric": self.metric, "n": self.n, "version": self.version,
                "build_seconds": self.build_seconds, "params": self.params.__dict__, "walks": self.walk_calibration,
                "calibrated_recall": self.calibrated_recall, "calibration": self.calibration,
                "build_peak_bytes": self.build_peak_bytes, "checksums": {name: file_checksum(directory / name) for name in (_INDEX_FILE, *arrays)}}
        with open(directory / _META, "w", encoding="utf-8") as fh:
            json.dump(meta, fh)
            fh.flush()
            os.fsync(fh.fileno())
        fd = os.open(directory / _INDEX_FILE, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(directory)
        fsync_dir(directory.parent)
        return directory

    @classmethod
    def load(cls, directory: Path, *, just_saved: bool = False) -> "AnnIndex":
        """Read an index written by :meth:`save`; damaged files raise :class:`CorruptCollectionError`.

        ``just_saved``: the caller's own :meth:`save` wrote and hashed these files a moment ago,
        so they are not read again to check them (the check is for files that lay on disk).

        Nothing big is read: FAISS maps the graph and the vectors in place
        (``IO_FLAG_MMAP_IFC``) and the walk's codes are memory-mapped, so a load costs
        milliseconds and the page cache holds what searches touch. Files over
        :data:`CHECK_LATER_BYTES` are checked against their checksums in the background
        (:attr:`pending`; :meth:`problem` reports a mismatch, and the index is then treated
        as damaged); smaller ones are checked here.
        """
        pending: list[tuple[str, Any]] = []
        try:
            meta = json.loads((directory / _META).read_text(encoding="utf-8"))
            for name, digest in (meta.get("checksums") or {}).items():  # absent in indexes saved before checksums
                if name not in (_INDEX_FILE, _RIDS, *_CODES):
                    raise ValueError(f"{name} is not a file of an index")
                if just_saved:
                    continue
                if (directory / name).stat().st_size >= CHECK_LATER_BYTES:
                    pending.append((name, checksum_later(directory / name, digest)))
                elif file_checksum(directory / name) != digest:
                    raise ValueError(f"{name} does not match its checksum (flipped bytes, or another file)")
            rids = np.load(directory / _RIDS, allow_pickle=False)
            hnsw = hnsw_file(directory / _INDEX_FILE) if walk_module() is not None else None
            if hnsw is not None:  # vecbox's walk reads it in place: FAISS (~0.2 s to import) waits until needed
                index: Any = FaissOnDemand(hnsw.path, hnsw.d, hnsw.ntotal)
            else:
                faiss = _faiss()
                index = faiss.read_index(str(directory / _INDEX_FILE), faiss.IO_FLAG_MMAP_IFC)
            params = IndexParams(**meta["params"])
            walks = meta.get("walks")  # absent in indexes saved before the walks were calibrated
            if walks is not None and not (isinstance(walks, dict) and all(
                    isinstance(walks.get(key), (int, float)) for key in ("ef_ratio", "time_ratio"))):
                raise ValueError("bad walk calibration")
            recall = meta.get("calibrated_recall")
            if recall is not None and not isinstance(recall, (int, float)):
                raise ValueError("bad calibrated recall")
            calibration = meta.get("calibration")  # absent in indexes saved before it was recorded
            if calibration is not None and not isinstance(calibration, dict):
                raise ValueError("bad calibration record")
            if meta.get("format") != _FORMAT or index.ntotal != len(rids) or len(rids) != meta["n"]:
                raise ValueError("sizes or format do not agree")
            codes = _load_codes(directory, len(rids), index.d)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise CorruptCollectionError(damaged_message(directory, str(exc))) from None
        return cls(params, meta["metric"], rids.astype(np.int64), index, int(meta["version"]),
                   float(meta.get("build_seconds", 0.0)), walk_calibration=walks, calibrated_recall=recall,
                   calibration=calibration, codes=codes, pending=pending, hnsw_file=hnsw,
                   build_peak_bytes=meta.get("build_peak_bytes") if isinstance(meta.get("build_peak_bytes"), int) else None)

    def problem(self) -> str | None:
        """What a finished background check found wrong (``None``: nothing, or still checking)."""
        still = []
        for name, future in self.pending:
            if not future.done():
                still.append((name, future))
            elif not future.result():
                return f"{name} does not match its checksum (flipped bytes, or another file)"
        self.pending = still
        return None

    def memory_bytes(self) -> int:
        """Approximate RAM of the index (vectors + graph links or list ids + the walk's codes)."""
        d = self.faiss_index.d
        per = {"flat": 4 * d, "sq8": d}.get(self.params.storage) or int(self.params.pq_bytes or d // 8)
        if self.walks_codes:
            per += d
        links = 2 * self.params.M * 4 * 1.1 if self.params.kind == "hnsw" else 8
        return int(self.n * (per + links + 8))


def pq_spec(d: int, m: int) -> str:
    """FAISS's spec for ``m`` bytes of PQ codes a row: ``2m`` sub-quantizers of 4 bits with SIMD
    fast-scan when ``2m`` divides ``d``, else ``m`` of 8 bits.

    Same bytes, same recall: on 300k rows of the search benchmark's mixture (IVF512, 160 candidates
    a query, one thread) PQ48 reached recall@10 0.724 in 1.55 ms a query and PQ96x4fs 0.732 in
    0.31 ms (5x faster), and trained in 11 s instead of 153 s.

    >>> pq_spec(384, 48), pq_spec(100, 4)
    ('PQ96x4fs', 'PQ4')
    """
    return f"PQ{2 * m}x4fs" if d % (2 * m) == 0 else f"PQ{m}"


def pq_bytes(d: int, wanted: int | None) -> int:
    """Bytes per row of a PQ code for width ``d``: ``wanted`` (which must divide ``d``) or the
    largest divisor of ``d`` not above d/8.

    >>> pq_bytes(384, None), pq_bytes(384, 96), pq_bytes(100, None)
    (48, 96, 10)
    """
    if wanted is not None:
        if d % int(wanted):
            raise InvalidInputError(f"pq_bytes={wanted} must divide the dimension {d} (PQ splits each vector into "
                                    f"pq_bytes sub-vectors); try one of {[m for m in range(1, d + 1) if d % m == 0][-8:]}")
        return int(wanted)
    return max(m for m in range(1, max(1, d // 8) + 1) if d % m == 0)


def damaged_message(directory: Path, why: str) -> str:
    return (f"the index in {directory} is damaged ({why}); it is only a cache - run "
            "Collection.build_index() (or `vecbox index PATH`) to rebuild it, or drop_index()")


def _load_codes(directory: Path, n: int, d: int) -> tuple[np.ndarray, ...] | None:
    """The walk's saved codes, memory-mapped (``None`` when the index has none saved)."""
    if not (directory / _CODES[0]).exists():
        return None
    codes = np.load(directory / _CODES[0], mmap_mode="r", allow_pickle=False)
    scale, offset = (np.load(directory / name, allow_pickle=False) for name in _CODES[1:3])
    sq = np.load(directory / _CODES[3], mmap_mode="r", allow_pickle=False) if (directory / _CODES[3]).exists() else None
    if (codes.dtype != np.uint8 or codes.shape != (n, d) or scale.shape != (d,) or offset.shape != (d,)
            or scale.dtype != np.float32 or offset.dtype != np.float32
            or sq is not None and (sq.shape != (n,) or sq.dtype != np.float32)):
        raise ValueError("the walk's codes do not fit the index")
    return codes, scale, offset, sq


def _graph_of(index: AnnIndex) -> Any:
    """A ``_walk.Graph`` reading ``index``'s graph and vectors in place (no copy), or ``None``.

    A loaded index's arrays are views of its file (:class:`HnswFile`); a built one's are views
    of FAISS's own memory, valid while the FAISS index lives unchanged, which holds for an
    :class:`AnnIndex` (built or loaded once, never added to).
    """
    walk = walk_module()
    if walk is None or index.params.kind != "hnsw" or index.params.storage != "flat" or index.n == 0:
        return None
    f = index.hnsw_file
    if f is not None:
        n, d, ip, x = f.ntotal, f.d, f.inner_product, f.x
        graph = walk.Graph(x.reshape(-1), f.neighbors, f.offsets, f.levels, f.cum, d, f.entry, f.max_level, ip)
    else:
        faiss = _faiss()
        fi = faiss.downcast_index(index.faiss_index)
        if not isinstance(fi, faiss.IndexHNSWFlat):  # pragma: no cover - what build() makes for hnsw+flat
            return None
        h, n, d = fi.hnsw, fi.ntotal, fi.d
        view = faiss.rev_swig_ptr
        x = view(faiss.downcast_index(fi.storage).get_xb(), n * d).reshape(n, d)
        ip = fi.metric_type == faiss.METRIC_INNER_PRODUCT
        graph = walk.Graph(
            x.reshape(-1), view(h.neighbors.data(), h.neighbors.size()),
            view(h.offsets.data(), h.offsets.size()), view(h.levels.data(), h.levels.size()),
            faiss.vector_to_array(h.cum_nneighbor_per_level), d, int(h.entry_point), int(h.max_level), ip,
        )
    if index.walks_codes:
        if index.codes is None:
            index.codes = walk_codes(x, ip)
        graph.set_codes(*index.codes)
        if f is not None and 4 * n * d >= PREAD_ROWS_BYTES:
            _read_rows_by_pread(graph, f.path, f.floats_at)
    return graph


def _read_rows_by_pread(graph: Any, path: Path, offset: int) -> None:
    """Have a walk over codes read the float rows it rescores from ``path`` (at ``offset``) by ``pread``.

    Only the final rows of a walk are read in float, at random: through a map of the file each
    such read faults in up to 2 MB (a large page-cache folio), so after a few hundred queries the
    whole float storage was resident (10^6 x 384: 2,118 MB of file pages against FAISS's 1,789 MB
    in all). Read by ``pread`` they stay in the page cache, shared and reclaimable, and RSS holds
    the graph and the codes. An index built in this process (not loaded) reads its rows in RAM.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # the walk reads the rows through the map
    try:
        graph.read_rows_from(fd, offset)
    finally:
        os.close(fd)


@dataclass
class HnswFile:
    """The parts of a saved FAISS ``IndexHNSWFlat`` (``index.faiss``), as views of one read-only map."""

    path: Path  # the file
    d: int
    ntotal: int
    inner_product: bool
    cum: np.ndarray  # int32: where each level's neighbours start in a node's list
    levels: np.ndarray  # int32 (n,)
    offsets: np.ndarray  # uint64 (n + 1,): where each node's list starts in ``neighbors``
    neighbors: np.ndarray  # int32, -1 padded
    entry: int
    max_level: int
    floats_at: int  # byte offset of the float rows in the file
    x: np.ndarray  # float32 (n, d): the rows


_HEADER = struct.Struct("<iqqqBi")  # FAISS's index header: d, ntotal, two dummies, is_trained, metric_type


def hnsw_file(path: Path) -> HnswFile | None:
    """``path``'s parts when it holds an ``IndexHNSWFlat`` (else ``None``: FAISS reads it), read in place.

    vecbox's walk needs the graph and the rows, not FAISS's index object; and FAISS, reading an HNSW
    index, goes through every neighbour list (its checks on a file it is handed), which from a cold
    page cache took ~1.1 s for the 80 MB graph of 300k rows, one 4 KB fault at a time. Here nothing
    is read but the headers: the first searches touch the pages they need. The walk bounds-checks
    every list it reads instead (``_walk.c``: ``list_of``), and the file's checksum is checked in
    the background as before.

    The layout is FAISS's ``write_index`` (faiss/impl/index_write.cpp): the tag ``IHNf``; the
    index header; the HNSW's vectors, each a uint64 count then its items (assign_probas float64,
    cum_nneighbor_per_level int32, levels int32, offsets uint64, neighbors int32); entry point,
    max level, efConstruction, efSearch and a dummy (int32); then the storage, an ``IndexFlat``
    (tag, header, the count of floats, the floats). Raises ``ValueError`` when these do not hold
    together.
    """
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    if len(mm) < 4 or bytes(mm[:4]) != b"IHNf":
        return None
    at = 4

    def take(size: int) -> bytes:
        nonlocal at
        if at + size > len(mm):
            raise ValueError("index.faiss ends early")
        at += size
        return bytes(mm[at - size : at])

    def header() -> tuple[int, int, int]:
        d, ntotal, _, _, _, metric = _HEADER.unpack(take(_HEADER.size))
        if metric > 1:
            take(4)  # metric_arg
        return d, ntotal, metric

    def vector(dtype: str) -> np.ndarray:
        nonlocal at
        count = int.from_bytes(take(8), "little")
        size = count * np.dtype(dtype).itemsize
        if at + size > len(mm):
            raise ValueError("index.faiss ends early")
        at += size
        return mm[at - size : at].view(dtype)

    d, ntotal, metric = header()
    vector("<f8")  # assign_probas: for adding, not searching
    cum, levels, offsets, neighbors = vector("<i4"), vector("<i4"), vector("<u8"), vector("<i4")
    entry, max_level = struct.unpack("<ii", take(8))
    take(12)  # efConstruction, efSearch, a dummy
    if take(4) not in (b"IxFI", b"IxF2") or header()[:2] != (d, ntotal):
        raise ValueError("index.faiss: the storage is not the flat rows of this graph")
    vector_at = at
    if int.from_bytes(take(8), "little") != ntotal * d or vector_at + 8 + 4 * ntotal * d != len(mm):
        raise ValueError("index.faiss: the rows do not end the file")
    if metric not in (0, 1) or d <= 0 or len(levels) != ntotal or len(offsets) != ntotal + 1:
        raise ValueError("index.faiss: the graph's sizes do not agree")
    x = mm[vector_at + 8 :].view("<f4").reshape(ntotal, d)
    return HnswFile(path, d, ntotal, metric == 0, cum, levels, offsets, neighbors, entry, max_level, vector_at + 8, x)


class FaissOnDemand:
    """A saved index's FAISS object, read (memory-mapped) on first use; ``d`` and ``ntotal`` without it.

    A loaded HNSW-flat index is searched by vecbox's walk over :func:`hnsw_file`'s views, so FAISS's
    read (and its pass over the graph) is left to what needs FAISS's own search.
    """

    def __init__(self, path: Path, d: int, ntotal: int) -> None:
        self.path, self.d, self.ntotal = path, d, ntotal
        self._index: Any = None

    def get(self) -> Any:
        """The FAISS index (read now if it was not yet)."""
        if self._index is None:
            faiss = _faiss()
            self._index = faiss.read_index(str(self.path), faiss.IO_FLAG_MMAP_IFC)
        return self._index

    def __getattr__(self, name: str) -> Any:  # what is not defined here is FAISS's
        return getattr(self.get(), name)


def walk_codes(x: np.ndarray, inner_product: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """FAISS's 8-bit scalar codes of ``x`` for the walk: ``(codes, scale, offset, sq_norms)``.

    Row ``i`` is ``offset + scale * codes[i]`` to within half a step per dimension (FAISS's
    ``QT_8bit``: each dimension's min..max in 255 steps). The walk scores its way through
    the graph on these (d bytes a row read instead of 4d: at 10^6 rows, where the rows come
    from DRAM, 1.5-1.9x the queries/s at the same recall) and scores its final ef rows exactly;
    ``sq_norms`` (exact) is for L2, ``None`` for inner product.

    >>> x = np.array([[0.0, 1.0], [1.0, 3.0]], dtype=np.float32)
    >>> codes, scale, offset, _ = walk_codes(x, True)
    >>> codes.tolist(), bool(np.allclose(offset + scale * codes, x, atol=scale / 2))
    ([[0, 0], [255, 255]], True)
    """
    faiss = _faiss()
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    sq = faiss.ScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit)
    sq.train(x)
    codes = np.empty((n, d), dtype=np.uint8)
    sq.compute_codes_c(faiss.swig_ptr(x), faiss.swig_ptr(codes), n)
    trained = faiss.vector_to_array(sq.trained).astype(np.float32)
    # FAISS decodes vmin + (c + 0.5) / 255 * vdiff
    scale = trained[d:] / np.float32(255)
    offset = trained[:d] + scale / 2
    return codes, scale, offset, None if inner_product else np.einsum("ij,ij->i", x, x)

