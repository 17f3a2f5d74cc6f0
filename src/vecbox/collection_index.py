"""The ANN-index methods of :class:`~vecbox.collection.Collection` (a mixin: build, drop, describe).

The index itself is a derived cache (:mod:`vecbox.index.ann`), built and calibrated by
:func:`vecbox.index.calibration.build_calibrated` and committed by
:func:`vecbox.storage.writes.commit_index`; these methods only compose them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vecbox import _validation as v
from vecbox.errors import InvalidInputError
from vecbox._memory import mapped_resident, peak_growth
from vecbox.index.ann import AnnIndex, IndexParams
from vecbox.index.calibration import build_calibrated
from vecbox.storage import catalog, writes


class IndexMethods:
    """``build_index`` / ``drop_index`` / ``index_info`` (mixed into :class:`~vecbox.collection.Collection`)."""

    _conn: Any
    _lock: Any
    _state: Any
    _reader: Any
    _executor: Any
    metric: str
    dim: int
    path: Any

    def build_index(
        self,
        kind: str = "hnsw",
        *,
        M: int = 32,
        ef_construction: int = 200,
        ef_search: int | None = None,
        nlist: int | None = None,
        nprobe: int | None = None,
        storage: str | None = None,
        pq_bytes: int | None = None,
        memory_budget: int | str | None = None,
        target_recall: float | None = 0.95,
        seed: int = 0,
        calibration_queries: Any = None,
    ) -> dict[str, Any]:
        """Build an ANN index over the live rows and make searches use it; return :meth:`index_info`.

        The index is a derived cache saved with the version it covers: rows written later
        are searched exactly and merged, deleted rows are never returned, and
        :meth:`compact` rebuilds it. Building reads a snapshot and does not block readers
        or writers; only saving it takes the write lock briefly. An ``hnsw`` index of 20k rows
        or more also measures its two filtered walks against each other on its own rows
        (``index_info()["walk_calibration"]``, see :mod:`vecbox.index.calibration`); the
        planner follows that measurement.

        Parameters
        ----------
        kind : {"hnsw", "ivf"}
            FAISS HNSW graph (best speed/recall; RAM ~ vectors + 8*M bytes per row) or IVF lists
            (smaller, faster to build; ``nlist`` ~ 4 sqrt(n) by default).
        M, ef_construction : int
            HNSW graph degree and build beam width.
        ef_search, nprobe : int, optional
            Default search effort. When omitted and ``target_recall`` is set, the smallest
            effort reaching that recall@10 on a sample of 200 stored rows is chosen.
        storage : {"flat", "sq8", "pq"}, optional
            Vectors inside the index: float32 (the default), 8-bit codes (4x smaller), or (IVF only)
            product-quantisation codes of ``pq_bytes`` bytes (default d/8: 32x smaller). Codes are
            rescored exactly from the stored floats, which stay in their files (memory-mapped).
        pq_bytes : int, optional
            Bytes per row of ``storage="pq"`` codes (must divide the dimension).
        memory_budget : int or str, optional
            RAM the index may take, in bytes or as ``"8GB"`` / ``"512MB"``: picks the most precise
            ``storage`` whose codes, list ids (IVF) or graph links (HNSW) fit in 90 % of it, and
            raises if none does. The float vectors are not counted: they are read in place.
        target_recall : float or None
            Calibrate the default effort to this recall@10 (ignored when the effort is given): the
            smallest effort whose recall's one-sided 95 % lower bound clears it.
            ``index_info()["calibration"]`` reports the recall reached, its 95 % interval and
            the queries it was measured on.
        calibration_queries : array (m, d), optional
            Past queries of this collection to calibrate on (up to 1,000 are used). Without them the
            calibration queries are stored rows moved off the data as far as a fresh query lies.

        Examples
        --------
        >>> from vecbox import Collection
        >>> col = Collection.create(tmp + "/c", dim=16)
        >>> _ = col.add([str(i) for i in range(3000)], np.random.default_rng(0).standard_normal((3000, 16)))
        >>> info = col.build_index("hnsw", M=16, target_recall=0.95)
        >>> info["kind"], info["ef_search"] >= 16, info["calibrated_recall"] >= 0.95
        ('hnsw', True, True)
        >>> info["calibration"]["source"], info["calibration"]["ci95"][0] <= info["calibrated_recall"]
        ('moved rows', True)
        """
        if memory_budget is not None:
            if storage is not None:
                raise InvalidInputError("pass storage= or memory_budget=, not both: the budget picks the storage")
            storage, pq_bytes = storage_for_budget(kind, self.count(), self.dim, parse_bytes(memory_budget),
                                                   M=M, pq_bytes=pq_bytes)  # type: ignore[attr-defined]
        params = IndexParams(kind=kind, M=M, ef_construction=ef_construction, ef_search=ef_search or 64,
                             nlist=nlist, nprobe=nprobe or 16, storage=storage or "flat",
                             target_recall=None if (ef_search or nprobe) else target_recall, pq_bytes=pq_bytes).check()
        queries = None
        if calibration_queries is not None:
            queries = v.as_matrix(calibration_queries, d=self.dim, name="calibration_queries", allow_1d=True)
            if self.metric == "cosine":
                queries = v.normalise_rows(queries, "calibration_queries")
        with self._state:
            with catalog.transaction(self._conn, write=False) as conn:
                self._refresh(conn)
                version = catalog.current_version(conn)
            live = self._live
            keep = np.flatnonzero(live.alive)
            rids = live.rids[keep].copy()
            live.save_rowmap()  # an index is built to serve searches: new handles start from these rows
            # every row live and stored as floats: build from the rows where they lie (memory-mapped
            # segments), a block at a time, instead of gathering a copy of them all first
            x = live.x if len(keep) == live.n and live.code_size is None else self._reader.vectors(keep)
        if len(keep) == 0:
            raise InvalidInputError("the collection is empty; add vectors before building an index")
        with peak_growth() as peak:
            ann = build_calibrated(x, rids, self.metric, params, seed=seed, version=version, queries=queries)
        ann.build_peak_bytes = peak["bytes"]
        del x
        self._commit_index(ann)
        return self.index_info()

    def _commit_index(self, ann: Any) -> None:
        """Save ``ann`` (or drop the index when None) and point the catalog at it; takes the write lock."""
        with self._lock:
            cfg = writes.commit_index(self.path, self._conn, ann)
            if ann is not None and cfg:  # searches read the saved files through memory maps, as any handle
                ann = AnnIndex.load(self.path / cfg["dir"], just_saved=True)  # does: the built index's RAM copy is let go
            with self._state:
                self._executor.set_index(ann, cfg)

    def drop_index(self) -> None:
        """Remove the ANN index (searches become exact); a no-op without one."""
        self._commit_index(None)

    def index_info(self) -> dict[str, Any] | None:
        """The ANN index's kind, parameters, covered version and size (``None`` without an index).

        A damaged index (its files unreadable) gives ``{"kind", "damaged"}``: searches run exactly
        until :meth:`build_index` replaces it (or :meth:`drop_index` removes it).
        """
        with self._state, catalog.transaction(self._conn, write=False) as conn:
            self._refresh(conn)
            version = catalog.current_version(conn)
            ann, problem, cfg = self._executor.ann, self._executor.index_problem(), self._reader.index_cfg
        if problem is not None:
            return {"kind": cfg["kind"] if cfg else None, "damaged": problem}
        if ann is None:
            return None
        p = ann.params
        return {
            "kind": p.kind, "rows": ann.n, "version": ann.version, "behind_by_versions": version - ann.version,
            "M": p.M if p.kind == "hnsw" else None, "ef_construction": p.ef_construction if p.kind == "hnsw" else None,
            "ef_search": p.ef_search if p.kind == "hnsw" else None,
            "nlist": p.nlist if p.kind == "ivf" else None, "nprobe": p.nprobe if p.kind == "ivf" else None,
            "storage": p.storage, "pq_bytes": p.pq_bytes, "target_recall": p.target_recall,
            "calibrated_recall": ann.calibrated_recall, "calibration": ann.calibration,
            "walk_calibration": ann.walk_calibration,
            "walk_codes": ann.walks_codes,
            "build_seconds": round(ann.build_seconds, 3), "memory_bytes": ann.memory_bytes(),
            "memory": self._index_memory(ann, cfg),
        }

    def _index_memory(self, ann: Any, cfg: Any) -> dict[str, Any]:
        """Measured: bytes of the index's files mapped in this process, how many are resident, on disk,
        and how far RSS rose while it was built."""
        directory = self.path / cfg["dir"] if cfg else None
        mapped = mapped_resident(directory) if directory is not None else None
        disk = sum(p.stat().st_size for p in directory.iterdir()) if directory is not None else None
        return {**(mapped or {"mapped_bytes": None, "resident_bytes": None}), "disk_bytes": disk,
                "build_peak_bytes": ann.build_peak_bytes}

    def _rebuild_index(self) -> None:
        """After a compaction: rebuild the ANN index (if any) without the dropped tombstones."""
        with self._state, catalog.transaction(self._conn, write=False) as conn:
            self._refresh(conn)  # type: ignore[attr-defined]
        ann = self._executor.ann
        if ann is not None:
            p = ann.params
            nlist = p.nlist if p.nlist is None or p.nlist <= self.count() else None  # type: ignore[attr-defined]
            self.build_index(p.kind, M=p.M, ef_construction=p.ef_construction, ef_search=p.ef_search,
                             nlist=nlist, nprobe=p.nprobe, storage=p.storage, pq_bytes=p.pq_bytes)


_UNITS = {"": 1, "B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}


def parse_bytes(value: int | str) -> int:
    """Bytes from an int or a string such as ``"8GB"``, ``"512 MB"``, ``"1.5GB"`` (binary units).

    >>> parse_bytes("8GB"), parse_bytes("1.5 kb"), parse_bytes(4096)
    (8589934592, 1536, 4096)
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
        return int(value)
    if isinstance(value, str):
        text = value.strip().upper().replace("IB", "B")
        number = text.rstrip("KMGTB ")
        unit = text[len(number):].strip()
        try:
            amount = float(number)
        except ValueError:
            amount = -1.0
        if unit in _UNITS and amount > 0:
            return int(amount * _UNITS[unit])
    raise InvalidInputError(f"memory_budget must be a positive number of bytes or a size like '8GB' or '512MB'; "
                            f"got {value!r}")


def storage_for_budget(kind: str, n: int, d: int, budget: int, *, M: int = 32,
                       pq_bytes: int | None = None) -> tuple[str, int | None]:
    """The most precise index storage whose RAM for ``n`` rows fits in 90 % of ``budget`` bytes.

    Per row: the codes (flat 4d, sq8 d, pq d/8, d/16 or d/32 bytes), plus list ids (IVF, 8 bytes) or
    graph links and the walk's 8-bit codes (HNSW, 8M + d bytes). Raises, saying what would fit, when
    nothing does.

    >>> storage_for_budget("ivf", 10_000_000, 384, 8 << 30)
    ('sq8', None)
    >>> storage_for_budget("ivf", 10_000_000, 384, 1 << 30)
    ('pq', 48)
    """
    from vecbox.index.ann import pq_bytes as pq_width

    extra = 8 if kind == "ivf" else 8 * M + d + 8
    options: list[tuple[str, int | None, int]] = [("flat", None, 4 * d), ("sq8", None, d)]
    if kind == "ivf":
        widths = [pq_bytes] if pq_bytes else sorted(
            {pq_width(d, None), *(m for m in (d // 16, d // 32) if m >= 1 and d % m == 0)}, reverse=True)
        options += [("pq", m, m) for m in widths]
    for storage, m, per in options:
        if n * (per + extra) <= 0.9 * budget:
            return storage, m
    smallest = options[-1]
    need = n * (smallest[2] + extra) / 0.9
    raise InvalidInputError(
        f"{n:,} rows do not fit a {kind} index in {budget / 2**20:,.0f} MB: the smallest storage "
        f"({smallest[0]}{'' if smallest[1] is None else f', {smallest[1]} bytes'}) needs ~{need / 2**20:,.0f} MB"
        + ("; use kind='ivf' with storage='pq'" if kind == "hnsw" else "; raise the budget")
    )


__all__ = ["IndexMethods"]
