"""``Collection``: the one user-facing object for stored vectors.

It coordinates the catalog (SQLite, the commit point), the segment files, the
in-memory view of live vectors, the filter compiler, exact search and the codecs
(compressed vectors in RAM, exact rescoring from disk); it contains none of them.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
from contextlib import nullcontext
from functools import partial
import uuid
from itertools import repeat as _repeat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from vecbox import _validation as v
from vecbox.codecs import Codec, parse_spec, two_stage_search
from vecbox.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    DuplicateIdError,
    InvalidInputError,
    UnknownIdError,
)
from vecbox.index.ann import AnnIndex, IndexParams, new_index_dirname
from vecbox.index.calibration import calibrate, calibrate_walks
from vecbox.index.flat import exact_topk
from vecbox.index.funnel import check_stages
from vecbox.query.filters import compile_filter
from vecbox.query.planner import Plan
from vecbox.searcher import GATHER_CACHE_BYTES, GATHER_FRACTION, Searcher
from vecbox.storage import catalog, tokens
from vecbox.storage.codec_state import CodecState, codec_config, keeps_floats
from vecbox.storage.live import LiveVectors
from vecbox.storage.lock import WriteLock
from vecbox.storage.tokens import TokenFiles
from vecbox.storage.segments import (
    CODEC_DIR,
    INDEX_DIR,
    SEGMENT_DIR,
    remove_segment,
    remove_unreferenced,
    write_segment,
)

if TYPE_CHECKING:
    from vecbox.encoders.text import TextEncoder
    from vecbox.multivector import FDEConfig

LOCK_FILE = "LOCK"


class Hit(NamedTuple):
    """One search result (a named tuple: cheap to make, since searches return many).

    ``score`` is the cosine similarity (cosine, in [-1, 1]) or the inner product
    (dot) - higher is more similar - or the Euclidean distance (l2) - lower is
    more similar. Hits are always ordered best first.
    """

    id: str
    score: float
    metadata: dict[str, Any] | None = None
    document: str | None = None


@dataclass(frozen=True)
class Explained:
    """What ``search(..., explain=True)`` returns: the hits and the :class:`~vecbox.query.planner.Plan` that ran."""

    hits: Any
    plan: Plan


@dataclass(frozen=True)
class Record:
    """One stored item, as returned by :meth:`Collection.get` (vectors are normalised under cosine)."""

    id: str
    vector: np.ndarray
    metadata: dict[str, Any] | None
    document: str | None


class Collection:
    """A durable set of vectors with string ids, JSON metadata and exact search.

    Create with :meth:`create`, open with :meth:`open`. Any number of processes
    may read; one writes at a time (others wait up to ``lock_timeout`` seconds).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> col = Collection.create(tempfile.mkdtemp() + "/c", dim=3, metric="cosine")
    >>> col.add(["a", "b"], np.array([[1, 0, 0], [0, 1, 0]]), metadatas=[{"n": 1}, {"n": 2}])
    1
    >>> [h.id for h in col.search([1, 0.1, 0], k=2)]
    ['a', 'b']
    >>> [h.id for h in col.search([1, 0.1, 0], k=2, where={"n": {"$gt": 1}})]
    ['b']
    """

    def __init__(self, path: Path, *, lock_timeout: float = 10.0, encoder: "TextEncoder | None" = None) -> None:
        self.path = Path(path)
        self._conn = catalog.connect(self.path)
        self._config = catalog.read_config(self._conn, self.path)
        self.dim: int = int(self._config["dim"])
        self.metric: str = str(self._config["metric"])
        self.model: str | None = self._config.get("model")
        self._mv: dict[str, Any] | None = self._config.get("multivector")
        self._token_files: TokenFiles | None = None
        self._lock = WriteLock(self.path / LOCK_FILE, timeout=lock_timeout)
        self._state = threading.RLock()
        self._encoder = encoder
        self._codec_state = CodecState(self.path, self.dim)
        self._live = self._new_live(None)
        self._searcher = Searcher(self.path, self.dim, self.metric)
        self._score_mode = _SCORE_MODES[self.metric]  # how the C walk turns distances into Hit scores
        self._seen: tuple[int, int] | None = None  # (data_version, total_changes) at the last refresh
        self._watch = catalog.CommitWatch(self._conn, self.path)
        self._watched: tuple[bytes | None, int] = (None, -1)  # (wal-index header, total_changes) then
        self._sync_codec(self._conn)
        if self._lock.try_acquire():  # collect garbage left by a writer that died before its commit
            try:
                self._collect_garbage()
            finally:
                self._lock.release()

    # ----------------------------------------------------------------- lifecycle
    @classmethod
    def create(
        cls,
        path: str | Path,
        dim: int | None = None,
        *,
        metric: str = "cosine",
        model: str | None = None,
        exist_ok: bool = False,
        lock_timeout: float = 10.0,
        codec: str | None = None,
        keep_float: bool = True,
        seed: int = 0,
        multivector: "FDEConfig | None" = None,
        token_dim: int | None = None,
    ) -> "Collection":
        """Create an empty collection in the directory ``path``.

        Parameters
        ----------
        path : str or Path
            A directory that does not exist yet, or is empty.
        dim : int, optional
            Vector width; taken from ``model`` when omitted.
        metric : {"cosine", "dot", "l2"}
        model : str, optional
            Text model used by :meth:`add_texts` / :meth:`search_text`: ``"default"`` (the
            bundled all-MiniLM-L6-v2) or a sentence-transformers model directory.
        exist_ok : bool
            Open the collection if it already exists with the same settings.
        codec : str, optional
            Keep vectors compressed in RAM with this codec spec (``"int8"``, ``"rot+int4"``,
            ``"binary"``, ``"pq:48"`` ... see :mod:`vecbox.codecs`). The codec is fitted on the
            first batch written (which must hold at least ``min_fit_rows`` vectors; 256 for
            ``pq``); refit it on everything stored with :meth:`recompress`. Searches scan the
            codes, then rescore the best ``k * oversample`` exactly.
        keep_float : bool
            With a codec: also keep the float32 vectors on disk (memory-mapped, not in RAM)
            for exact rescoring and :meth:`get`. ``False`` stores codes only (smallest, lossy).
        seed : int
            Seed of the codec's random parts (rotations, k-means): same data + seed = same codes.
        multivector : FDEConfig, optional
            Make this a multi-vector (late-interaction) collection: each item is a set of token
            vectors of width ``token_dim`` (taken from ``model`` when omitted), stored as they are
            and represented by its MUVERA document FDE (so ``dim`` is the FDE width and the metric
            is ``dot``). Add with :meth:`add_multi` (or :meth:`add_texts` with a model), search with
            :meth:`search_multi` / :meth:`search_text`: FDE candidates, then exact Chamfer rerank.
        """
        path = Path(path)
        metric = v.check_metric(metric)
        encoder = None
        if model is not None:
            from vecbox.encoders.text import TextEncoder

            encoder = TextEncoder(model)
            model = encoder.name
            if dim is None:
                dim = encoder.dim
        mv_cfg = None
        if multivector is not None:
            from vecbox.multivector import FDEConfig

            if not isinstance(multivector, FDEConfig):
                raise InvalidInputError(f"multivector must be an FDEConfig; got {type(multivector).__name__}")
            token_dim = v.check_positive_int(token_dim if token_dim is not None else dim, "token_dim")
            mv_cfg = {"fde": multivector.to_dict(), "token_dim": token_dim}
            dim, metric = multivector.output_dim(token_dim), "dot"
        if dim is None:
            raise InvalidInputError("give dim= (the vector width) or model= (a text model to take it from)")
        dim = v.check_positive_int(dim, "dim")
        codec_cfg = codec_config(codec, dim, keep_float, seed)
        if (path / catalog.CATALOG_FILE).exists():
            if not exist_ok:
                raise CollectionExistsError(
                    f"{path} already holds a collection; open it with Collection.open(path) or pass exist_ok=True"
                )
            col = cls(path, lock_timeout=lock_timeout, encoder=encoder)
            if codec_cfg is not None and (col.codec is None or col.codec != codec_cfg["spec"]):
                raise CollectionExistsError(
                    f"{path} holds a collection with codec={col.codec!r}, not {codec_cfg['spec']!r}; "
                    "open it and call recompress() to change its codec, or choose another path"
                )
            if (col.dim, col.metric) != (dim, metric) or (model is not None and col.model != model):
                raise CollectionExistsError(
                    f"{path} holds a collection with dim={col.dim}, metric={col.metric!r}, model={col.model!r}, "
                    f"not dim={dim}, metric={metric!r}, model={model!r}; choose another path"
                )
            return col
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise CollectionExistsError(f"{path} exists and is not an empty directory; choose a new path")
        (path / SEGMENT_DIR).mkdir(parents=True, exist_ok=True)
        if codec_cfg is not None:
            (path / CODEC_DIR).mkdir()
        conn = catalog.connect(path, create=True)
        try:
            catalog.initialise(conn, {"dim": dim, "metric": metric, "model": model, "codec": codec_cfg,
                                      "multivector": mv_cfg})
        finally:
            conn.close()
        return cls(path, lock_timeout=lock_timeout, encoder=encoder)

    @classmethod
    def open(cls, path: str | Path, *, lock_timeout: float = 10.0) -> "Collection":
        """Open an existing collection; raises :class:`CollectionNotFoundError` if ``path`` holds none."""
        path = Path(path)
        if not path.is_dir():
            raise CollectionNotFoundError(
                f"{path} does not exist or is not a directory; create a collection there with Collection.create"
            )
        return cls(path, lock_timeout=lock_timeout)

    def close(self) -> None:
        """Release the catalog connection."""
        self._conn.close()
        self._watch.close()  # after the connection: see catalog._SHM_OPEN

    def __enter__(self) -> "Collection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.count()

    def __repr__(self) -> str:
        codec = f", codec={self.codec!r}" if self.codec else ""
        return f"Collection({str(self.path)!r}, dim={self.dim}, metric={self.metric!r}{codec}, version={self.version})"

    @property
    def codec(self) -> str | None:
        """The canonical codec spec (``None`` for float32 vectors in RAM)."""
        return self._codec_state.spec

    def write_lock(self) -> WriteLock:
        """Hold the write lock across several writes, so no other process interleaves.

        Waits up to ``lock_timeout`` seconds (set at open), then raises
        :class:`CollectionLockedError`. Each write inside still commits on its own.

        >>> with col.write_lock():          # doctest: +SKIP
        ...     col.delete(["a"]); col.add(["b"], x)
        """
        return self._lock

    @property
    def version(self) -> int:
        """The latest committed version (0 for a new collection; each write adds one)."""
        return catalog.current_version(self._conn)

    # ------------------------------------------------------------------ writes
    def add(
        self,
        ids: Sequence[str],
        vectors: Any,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        documents: Sequence[str | None] | None = None,
    ) -> int:
        """Add new items in one atomic commit and return the new version.

        Raises :class:`DuplicateIdError` if an id repeats in the batch or is already
        stored (use :meth:`upsert` to replace). Nothing is written on any error.
        """
        return self._write("add", ids, vectors, metadatas, documents)

    def upsert(
        self,
        ids: Sequence[str],
        vectors: Any,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        documents: Sequence[str | None] | None = None,
    ) -> int:
        """Add items, replacing any stored item with the same id, in one atomic commit."""
        return self._write("upsert", ids, vectors, metadatas, documents)

    def _write(self, mode: str, ids: Any, vectors: Any, metadatas: Any, documents: Any,
               token_sets: Any = None) -> int:
        x = v.as_matrix(vectors, d=self.dim, name="vectors")
        ids = v.check_ids(ids, n=len(x))
        metas = v.check_metadatas(metadatas, len(x))
        docs = v.check_documents(documents, len(x))
        if self.metric == "cosine":
            x = _normalise(x, "vectors")
        with self._lock:
            existing = catalog.live_rids_for_ids(self._conn, ids)
            if mode == "add" and existing:
                first = next(iter(existing))
                raise DuplicateIdError(
                    f"{len(existing)} of these ids are already stored (first: {first!r}); "
                    "use upsert() to replace them, or delete them first"
                )
            with self._state, catalog.transaction(self._conn, write=False) as conn:
                self._sync_codec(conn)
            codec, new_cfg = self._codec_state.for_write(x)
            codes = codec.encode(x) if codec is not None else None
            tok_name = None
            try:
                if token_sets is not None:  # the multi-vector field: its own segment, durable before the commit
                    tok_name = write_segment(self.path, token_sets.x)
                keep = keeps_floats(new_cfg) if new_cfg is not None else self._codec_state.keeps_floats
                name = write_segment(self.path, x if keep else None, codes)
            except BaseException:
                if tok_name is not None:
                    remove_segment(self.path, tok_name)
                self._codec_state.discard(new_cfg)
                raise
            try:
                with catalog.transaction(self._conn) as conn:
                    version = catalog.log_version(conn, mode, len(ids), len(existing))
                    if new_cfg is not None:  # the codec was fitted on this batch: commit it with the batch
                        catalog.set_config(conn, "codec", new_cfg)
                        catalog.bump_epoch(conn)
                    if existing:
                        conn.execute(
                            "UPDATE rows SET deleted = ? WHERE deleted IS NULL AND rid IN (SELECT value FROM json_each(?))",
                            (version, json.dumps(list(existing.values()))),
                        )
                    seg_id = conn.execute(
                        "INSERT INTO segments(file, n, version) VALUES (?, ?, ?)", (name, len(ids), version)
                    ).lastrowid
                    catalog.insert_rows(conn, seg_id, version, ids, metas, docs)
                    if token_sets is not None:
                        tokens.insert(conn, seg_id, tok_name, token_sets.offsets)
            except BaseException:
                remove_segment(self.path, name)
                if tok_name is not None:
                    remove_segment(self.path, tok_name)
                self._codec_state.discard(new_cfg)
                raise
            if new_cfg is not None:
                with self._state:
                    self._codec_state.set(new_cfg, codec)
        return version

    def delete(self, ids: Sequence[str] | None = None, *, where: Mapping[str, Any] | None = None,
               missing_ok: bool = False) -> int:
        """Delete items by id and/or filter in one atomic commit; return how many were deleted.

        Unknown ids raise :class:`UnknownIdError` (nothing is deleted) unless ``missing_ok``.
        """
        if ids is None and where is None:
            raise InvalidInputError("delete() needs ids=, where=, or both; to delete everything pass where={}")
        id_list = v.check_ids(ids) if ids is not None else None
        sql, params = compile_filter(where) if where is not None else ("1", [])
        with self._lock, catalog.transaction(self._conn) as conn:
            if id_list is not None:
                found = catalog.live_rids_for_ids(conn, id_list)
                missing = [i for i in id_list if i not in found]
                if missing and not missing_ok:
                    raise UnknownIdError(
                        f"{len(missing)} id(s) are not in the collection (first: {missing[0]!r}); "
                        "nothing was deleted - pass missing_ok=True to ignore unknown ids"
                    )
                rid_sql, rid_params = "rid IN (SELECT value FROM json_each(?))", [json.dumps(list(found.values()))]
            else:
                rid_sql, rid_params = "1", []
            rids = [r for (r,) in conn.execute(
                f"SELECT rid FROM rows WHERE deleted IS NULL AND {rid_sql} AND ({sql})", [*rid_params, *params]
            )]
            if not rids:
                return 0
            version = catalog.log_version(conn, "delete", 0, len(rids))
            conn.execute(
                "UPDATE rows SET deleted = ? WHERE rid IN (SELECT value FROM json_each(?))", (version, json.dumps(rids))
            )
        return len(rids)

    def compact(self) -> int:
        """Rewrite live vectors into one segment, drop tombstones and garbage; return the bytes freed."""
        with self._lock, self._state:
            before = _dir_size(self.path / SEGMENT_DIR)
            with catalog.transaction(self._conn, write=False) as conn:
                self._sync_codec(conn)
                self._live.refresh(conn)
            live = self._live
            keep = np.flatnonzero(live.alive)
            floats = live.floats(keep) if self._codec_state.keeps_floats else None
            codes = live.x[keep] if live.code_size is not None else None
            self._rewrite("compact", keep, floats, codes)
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            freed = before - _dir_size(self.path / SEGMENT_DIR)
        self._rebuild_index()
        return freed

    def _rebuild_index(self) -> None:
        """After a compaction: rebuild the ANN index (if any) without the dropped tombstones."""
        with self._state, catalog.transaction(self._conn, write=False) as conn:
            ann = self._searcher.index(conn)
        if ann is not None:
            p = ann.params
            self.build_index(p.kind, M=p.M, ef_construction=p.ef_construction, ef_search=p.ef_search,
                             nlist=p.nlist, nprobe=p.nprobe, storage=p.storage)

    def recompress(self, codec: str | None, *, keep_float: bool | None = None, seed: int = 0) -> int:
        """Rebuild the collection with another codec (or none) in one atomic commit; return the new version.

        The new codec is fitted on the live vectors (a seeded sample of at most 100,000),
        every vector is re-encoded and rewritten into one segment, and tombstones are
        dropped, as in :meth:`compact`. Readers keep their snapshot until they refresh.

        Parameters
        ----------
        codec : str or None
            New codec spec, e.g. ``"rot+int4"``; ``None`` keeps plain float32 vectors in RAM.
        keep_float : bool, optional
            Keep float vectors on disk for rescoring (default: as before). A collection that
            kept codes only cannot get its floats back; re-encoding its decoded codes compounds the loss.
        seed : int
            Seed of the new codec.
        """
        new_cfg = self._codec_state.recompress_config(codec, keep_float, seed)
        with self._lock, self._state:
            with catalog.transaction(self._conn, write=False) as conn:
                self._sync_codec(conn)
                self._live.refresh(conn)
            live = self._live
            keep = np.flatnonzero(live.alive)
            source = self._codec_state.vectors(live, keep)
            new_codec = self._codec_state.fit_new(new_cfg, source, seed)
            try:
                codes = new_codec.encode(source) if new_codec is not None else None
                version = self._rewrite("recompress", keep, source if keeps_floats(new_cfg) else None, codes, new_cfg)
            except BaseException:
                self._codec_state.discard(new_cfg)
                raise
            self._codec_state.set(new_cfg, new_codec)
            self._live = self._new_live(new_cfg)
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return version

    def _rewrite(self, operation: str, keep: np.ndarray, floats: np.ndarray | None, codes: np.ndarray | None,
                 codec_cfg: Any = False) -> int:
        """Replace every segment by one holding the rows ``keep`` (compact / recompress); holds the lock."""
        live = self._live
        name = write_segment(self.path, floats, codes) if len(keep) else None
        try:
            with catalog.transaction(self._conn) as conn:
                version = catalog.log_version(conn, operation, 0, 0)
                conn.execute("DELETE FROM rows WHERE deleted IS NOT NULL")
                tokens.drop_orphans(conn)
                if name is not None:
                    seg_id = conn.execute(
                        "INSERT INTO segments(file, n, version) VALUES (?, ?, ?)", (name, len(keep), version)
                    ).lastrowid
                    conn.executemany(
                        "UPDATE rows SET seg_id = ?, pos = ? WHERE rid = ?",
                        zip(_repeat(seg_id), range(len(keep)), live.rids[keep].tolist()),
                    )
                    conn.execute("DELETE FROM segments WHERE seg_id != ?", (seg_id,))
                else:
                    conn.execute("DELETE FROM segments")
                if codec_cfg is not False:
                    catalog.set_config(conn, "codec", codec_cfg)
                catalog.bump_epoch(conn)
        except BaseException:
            if name is not None:
                remove_segment(self.path, name)
            raise
        if codec_cfg is not False:
            self._codec_state.cfg = codec_cfg
        self._collect_garbage()
        return version

    # ------------------------------------------------------------------- index
    def build_index(
        self,
        kind: str = "hnsw",
        *,
        M: int = 32,
        ef_construction: int = 200,
        ef_search: int | None = None,
        nlist: int | None = None,
        nprobe: int | None = None,
        storage: str = "flat",
        target_recall: float | None = 0.95,
        seed: int = 0,
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
        storage : {"flat", "sq8"}
            Vectors inside the index: float32, or 8-bit codes (4x smaller, results rescored exactly).
        target_recall : float or None
            Calibrate the default effort to this recall@10 (ignored when the effort is given).

        Examples
        --------
        >>> info = col.build_index("hnsw", M=16, target_recall=0.95)  # doctest: +SKIP
        >>> info["kind"], info["ef_search"] >= 16  # doctest: +SKIP
        ('hnsw', True)
        """
        params = IndexParams(kind=kind, M=M, ef_construction=ef_construction, ef_search=ef_search or 64,
                             nlist=nlist, nprobe=nprobe or 16, storage=storage,
                             target_recall=None if (ef_search or nprobe) else target_recall).check()
        with self._state:
            with catalog.transaction(self._conn, write=False) as conn:
                self._sync_codec(conn)
                self._live.refresh(conn)
                version = catalog.current_version(conn)
            live = self._live
            keep = np.flatnonzero(live.alive)
            rids = live.rids[keep].copy()
            x = self._codec_state.vectors(live, keep)
        if len(keep) == 0:
            raise InvalidInputError("the collection is empty; add vectors before building an index")
        ann = AnnIndex.build(x, rids, self.metric, params, seed=seed, version=version)
        sq = None  # the rows' squared norms, an n x d pass: made once when both calibrations run
        if params.target_recall is not None:
            sq = np.einsum("ij,ij->i", x, x)
            effort, recall = calibrate(ann, x, self.metric, params.target_recall, seed=seed, sq_norms=sq)
            if params.kind == "hnsw":
                params.ef_search = effort
            else:
                params.nprobe = effort
            ann.calibrated_recall = recall
        ann.walk_calibration = calibrate_walks(ann, x, self.metric, seed=seed, sq_norms=sq)
        del x, sq
        self._commit_index(ann)
        return self.index_info()

    def _commit_index(self, ann: AnnIndex | None) -> None:
        """Save ``ann`` (or drop the index when None) and point the catalog at it; takes the write lock."""
        with self._lock:
            rel = None
            if ann is not None:
                rel = f"{INDEX_DIR}/{new_index_dirname(ann.params.kind)}"
                ann.save(self.path / rel)
            try:
                with catalog.transaction(self._conn) as conn:
                    cfg = None if ann is None else {"dir": rel, "kind": ann.params.kind, "version": ann.version}
                    catalog.set_config(conn, "index", cfg)
            except BaseException:
                if rel is not None:
                    shutil.rmtree(self.path / rel, ignore_errors=True)
                raise
            with self._state:
                self._searcher.set_index(ann, cfg)
            self._collect_garbage()

    def drop_index(self) -> None:
        """Remove the ANN index (searches become exact); a no-op without one."""
        self._commit_index(None)

    def index_info(self) -> dict[str, Any] | None:
        """The ANN index's kind, parameters, covered version and size (``None`` without an index)."""
        with self._state, catalog.transaction(self._conn, write=False) as conn:
            ann = self._searcher.index(conn)
            version = catalog.current_version(conn)
        if ann is None:
            return None
        p = ann.params
        return {
            "kind": p.kind, "rows": ann.n, "version": ann.version, "behind_by_versions": version - ann.version,
            "M": p.M if p.kind == "hnsw" else None, "ef_construction": p.ef_construction if p.kind == "hnsw" else None,
            "ef_search": p.ef_search if p.kind == "hnsw" else None,
            "nlist": p.nlist if p.kind == "ivf" else None, "nprobe": p.nprobe if p.kind == "ivf" else None,
            "storage": p.storage, "target_recall": p.target_recall,
            "calibrated_recall": ann.calibrated_recall, "walk_calibration": ann.walk_calibration,
            "walk_codes": ann.walks_codes,
            "build_seconds": round(ann.build_seconds, 3), "memory_bytes": ann.memory_bytes(),
        }

    # ------------------------------------------------------------------- codecs
    def _new_live(self, cfg: dict[str, Any] | None) -> LiveVectors:
        return LiveVectors(self.path, self.dim, keep_sq_norms=self.metric == "l2",
                           code_size=self._codec_state.code_size(cfg))

    def _sync_codec(self, conn: Any) -> None:
        """Follow codec changes committed by any process, resizing the live view if the code size changed."""
        state = self._codec_state
        if state.sync(conn) and state.code_size(state.cfg) != self._live.code_size:
            self._live = self._new_live(state.cfg)

    def _collect_garbage(self) -> None:
        """Delete segment files and codec directories no committed version references (holds the lock)."""
        cfg = catalog.config_value(self._conn, "codec")
        index = catalog.config_value(self._conn, "index")
        remove_unreferenced(
            self.path, {f for f, _ in catalog.segment_files(self._conn).values()} | tokens.files(self._conn),
            cfg.get("dir") if cfg else None, index["dir"] if index else None,
        )

    # ------------------------------------------------------------------- reads
    def count(self, where: Mapping[str, Any] | None = None) -> int:
        """Number of live items, optionally only those matching ``where``."""
        sql, params = compile_filter(where)
        return int(self._conn.execute(f"SELECT COUNT(*) FROM rows WHERE deleted IS NULL AND ({sql})", params).fetchone()[0])

    def get(self, ids: Sequence[str], *, missing_ok: bool = False) -> list[Record]:
        """Fetch items by id, in the order asked; unknown ids raise :class:`UnknownIdError` unless ``missing_ok``."""
        id_list = v.check_ids(ids)
        with self._state, catalog.transaction(self._conn, write=False) as conn:
            self._sync_codec(conn)
            self._live.refresh(conn)
            found = catalog.live_rids_for_ids(conn, id_list)
            missing = [i for i in id_list if i not in found]
            if missing and not missing_ok:
                raise UnknownIdError(
                    f"{len(missing)} id(s) are not in the collection (first: {missing[0]!r}); "
                    "check the ids, or pass missing_ok=True to skip them"
                )
            rids = [found[i] for i in id_list if i in found]
            rows = _fetch_rows(conn, rids)
            if rids:
                vecs = self._codec_state.vectors(self._live, self._live.positions(np.asarray(rids, dtype=np.int64)))
            else:
                vecs = np.empty((0, self.dim), np.float32)
        return [
            Record(rows[r][0], vecs[j].copy(), rows[r][1], rows[r][2]) for j, r in enumerate(rids)
        ]

    def ids(self, where: Mapping[str, Any] | None = None) -> list[str]:
        """All live ids (optionally matching ``where``), in insertion order."""
        sql, params = compile_filter(where)
        return [i for (i,) in self._conn.execute(f"SELECT id FROM rows WHERE deleted IS NULL AND ({sql}) ORDER BY rid", params)]

    def search(
        self, query: Any, k: int = 10, *, where: Mapping[str, Any] | None = None, include_metadata: bool = True,
        oversample: float = 4.0, explain: bool = False, ef_search: int | None = None, nprobe: int | None = None,
        exact: bool = False, funnel: Sequence[tuple[int | None, int]] | None = None,
    ) -> "list[Hit] | Explained":
        """The ``k`` stored items nearest to one query vector, best first.

        Parameters
        ----------
        query : array-like (d,)
        k : int
        where : dict, optional
            Metadata filter, e.g. ``{"year": {"$gte": 2020}, "lang": {"$in": ["en", "de"]}}``.
        include_metadata : bool
            Fetch metadata and documents for the hits (skip for raw speed).
        oversample : float
            With a codec: the code scan keeps ``k * oversample`` candidates, which are then
            rescored exactly from the float vectors on disk (``keep_float=True``) or ranked by
            the codec's estimates. Ignored without a codec (search is exact).
        explain : bool
            Return an :class:`Explained` (``.hits`` and ``.plan``: the path taken, the
            filter's estimated match count and the reason) instead of the list of hits.
        ef_search, nprobe : int, optional
            Search effort of the ANN index (HNSW beam width / IVF lists scanned) for this
            call; default: the index's own (calibrated by ``target_recall=``). The planner
            grows it under selective filters.
        exact : bool
            Ignore the ANN index: exact search over the allowed rows.
        funnel : list of (dims, keep), optional
            Matryoshka funnel, e.g. ``[(64, 400), (None, k)]``: an exact scan over the first
            64 dimensions keeps 400 rows, which are reranked with all dimensions. Needs
            float vectors in RAM in a variance-ordered basis: a Matryoshka-trained model
            (no codec) or a collection created with ``codec="pca+f32"``.

        Examples
        --------
        >>> col.search(x[0], k=5, where={"lang": "en"}, explain=True).plan.path  # doctest: +SKIP
        'hnsw+filter'
        """
        if not (include_metadata or explain or exact or funnel is not None or nprobe is not None):
            hits = self._plain_search(query, k, ef_search, where, one=True)
            if hits is not None:
                return hits
        q = v.as_matrix(query, d=self.dim, name="query", allow_1d=True)
        if len(q) != 1:
            raise InvalidInputError(f"search() takes one query; got {len(q)} - use search_batch() for several")
        out = self._search(q, k, where=where, include_metadata=include_metadata, oversample=oversample,
                                explain=explain, ef_search=ef_search, nprobe=nprobe, exact=exact, funnel=funnel)
        if isinstance(out, Explained):
            return Explained(out.hits[0], out.plan)
        return out[0]

    def _plain_search(self, queries: Any, k: Any, ef_search: Any, where: Any, one: bool) -> list[Any] | None:
        """An id-only search answered by the index's walk alone (:meth:`Searcher.plain`), or ``None``.

        Anything unusual - other input types, NaN/inf or zero vectors, no index, rows
        not in the index yet, a filter not seen before - goes the general way, which
        also words the errors.
        """
        if (type(queries) is not np.ndarray or queries.dtype.kind != "f" or queries.shape[-1:] != (self.dim,)
                or queries.ndim != (1 if one else 2) or not queries.size
                or type(k) is not int or k < 1 or ef_search is not None and (type(ef_search) is not int or ef_search < 1)):
            return None
        if self._searcher.ann is None:  # no index (as of the last sync): exact search, the general path's job
            return None
        wkey = self._searcher.filter_key(where)
        if self._searcher.plain_skipped(wkey, k, ef_search, 1 if one else len(queries)):  # e.g. an exact scan
            return None
        if one:
            q = queries if queries.dtype == np.float32 and queries.flags.c_contiguous else \
                np.ascontiguousarray(queries, dtype=np.float32)
            with self._state:
                self._sync(self._conn, in_transaction=False)
                hits = self._searcher.plain_hits(self._live, q, k, ef_search, wkey, self._score_mode, Hit)
            if hits is not NotImplemented:
                return hits
            queries = q[None, :]  # no C walk for this index: the batch form answers
        q = np.ascontiguousarray(queries, dtype=np.float32)
        sq = np.einsum("ij,ij->i", q, q)
        if not (sq.min() > 0.0 and sq.max() < math.inf):  # NaN/inf or a zero vector: the general path explains
            return None
        if self.metric == "cosine":
            q = q / np.sqrt(sq)[:, None]
        with self._state:
            self._sync(self._conn, in_transaction=False)
            hits = self._searcher.plain(self._live, q, k, ef_search, wkey, 2 if self.metric == "l2" else 0, Hit)
        return hits[0] if one and hits is not None else hits

    def search_batch(
        self, queries: Any, k: int = 10, *, where: Mapping[str, Any] | None = None, include_metadata: bool = True,
        oversample: float = 4.0, explain: bool = False, ef_search: int | None = None, nprobe: int | None = None,
        exact: bool = False, funnel: Sequence[tuple[int | None, int]] | None = None,
    ) -> "list[list[Hit]] | Explained":
        """Search for many queries at once (one plan for the batch; options as in :meth:`search`)."""
        if not (include_metadata or explain or exact or funnel is not None or nprobe is not None):
            hits = self._plain_search(queries, k, ef_search, where, one=False)
            if hits is not None:
                return hits
        return self._search(v.as_matrix(queries, d=self.dim, name="queries"), k, where=where,
                            include_metadata=include_metadata, oversample=oversample, explain=explain,
                            ef_search=ef_search, nprobe=nprobe, exact=exact, funnel=funnel)

    def _search(self, q: np.ndarray, k: int, *, where: Mapping[str, Any] | None, include_metadata: bool,
                oversample: float, explain: bool, ef_search: int | None, nprobe: int | None, exact: bool,
                funnel: Any) -> "list[list[Hit]] | Explained":
        k = v.check_positive_int(k, "k")
        oversample = v.check_finite_number(oversample, "oversample")
        if oversample < 1:
            raise InvalidInputError(f"oversample must be >= 1 (candidates = k * oversample); got {oversample!r}")
        effort = None
        for name, value in (("ef_search", ef_search), ("nprobe", nprobe)):
            if value is not None:
                effort = v.check_positive_int(value, name)
        stages = check_stages(funnel, self.dim, k) if funnel is not None else None
        if self.metric == "cosine":
            q = _normalise(q, "queries")
        with self._state:
            # Id-only searches whose filter mask is cached need no SQLite read at all: the
            # live view holds the ids, and PRAGMA data_version says whether anyone committed.
            wkey = self._searcher.filter_key(where)
            need_sql = include_metadata or wkey is not None and not self._searcher.has_mask(wkey, self._live)
            if where and need_sql:
                compile_filter(where)  # a malformed filter fails before any work (cached masks passed already)
            with (catalog.transaction(self._conn, write=False) if need_sql else nullcontext(self._conn)) as conn:
                self._sync(conn, in_transaction=need_sql)
                live = self._live
                codec = self._codec_state.codec if live.code_size is not None else None
                if live.n == 0:
                    plan = Plan("exact", "the collection is empty", 0, 0, "empty", 0.0)
                    empty: list[list[Hit]] = [[] for _ in range(len(q))]
                    return Explained(empty, plan) if explain else empty
                exact_fn = lambda qq, kk, mask, count, cache: self._exact(  # noqa: E731
                    live, codec, qq, kk, mask, count, oversample, cache)
                if stages is not None:
                    scores, pos, plan = self._funnel(conn, live, codec, q, stages, where)
                else:
                    scores, pos, plan = self._searcher.run(
                        conn, live, q, k, where=where, exact_fn=exact_fn, effort=effort, exact=exact,
                        floats=partial(self._codec_state.vectors, live), oversample=oversample, wkey=wkey)
                if include_metadata:
                    hit_rids = np.where(pos >= 0, live.rids[np.maximum(pos, 0)], -1)
                    rows = _fetch_rows(conn, np.unique(hit_rids[hit_rids >= 0]).tolist())
                    keys = hit_rids.tolist()
                else:
                    ids = live.ids
                    keys = [[ids[p] if p >= 0 else None for p in row] for row in pos.tolist()]
        if self.metric == "l2":
            scores = np.sqrt(np.maximum(np.einsum("ij,ij->i", q, q)[:, None] - scores, 0.0))
        if include_metadata:
            hits = [[Hit(rows[r][0], float(s), rows[r][1], rows[r][2]) for r, s in zip(rr, ss) if r >= 0]
                    for rr, ss in zip(keys, scores.tolist())]
        else:
            hits = [[Hit(i, float(s)) for i, s in zip(rr, ss) if i is not None] for rr, ss in zip(keys, scores.tolist())]
        return Explained(hits, plan) if explain else hits

    def _sync(self, conn: Any, *, in_transaction: bool) -> None:
        """Bring the live view, codec and index up to the latest commit - only if something was committed.

        ``PRAGMA data_version`` changes when another connection commits, ``total_changes``
        when this handle's own connection writes. The refresh runs in one read transaction.
        An unchanged WAL index header (:class:`~vecbox.storage.catalog.CommitWatch`)
        spares the PRAGMA outside a transaction: nobody committed since the last check.
        """
        watched = (self._watch.header(), self._conn.total_changes)
        if not in_transaction and watched[0] is not None and watched == self._watched:
            return
        # In a read transaction the PRAGMA always runs: it pins the transaction's snapshot now,
        # so the SQL that follows (metadata, filters) reads the version the live view shows.
        # the header was read first: a commit after it changes it again and is seen next time
        seen = (conn.execute("PRAGMA data_version").fetchone()[0], watched[1])
        if seen != self._seen:
            with (nullcontext(conn) if in_transaction else catalog.transaction(conn, write=False)) as c:
                self._sync_codec(c)
                self._live.refresh(c)
                self._searcher.index(c)
            self._seen = seen
        self._watched = watched

    def _exact(self, live: LiveVectors, codec: Codec | None, q: np.ndarray, k: int, mask: np.ndarray | None,
               count: int, oversample: float, cache: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact (or code-scan + rescore) top ``k`` over the rows in ``mask`` (None: every live row).

        ``cache`` (a repeated filter's) keeps the gathered rows: copying them costs more than scoring them.
        """
        x, valid, pos_map = live.x, mask, None
        sq = live.sq_norms if self.metric == "l2" and codec is None else None
        if mask is None:
            valid = None if live.n_alive == live.n else live.alive
        elif count < GATHER_FRACTION * live.n:
            if cache is not None and "gather" in cache:
                pos_map, x, sq = cache["gather"]
            else:
                pos_map = np.flatnonzero(mask)
                x = x[pos_map]
                sq = sq[pos_map] if sq is not None else None
                if cache is not None and x.nbytes <= GATHER_CACHE_BYTES:
                    cache["gather"] = (pos_map, x, sq)
            valid = None
        if len(x) == 0 or count == 0:
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        if codec is None:
            scores, idx = exact_topk(x, q, min(k, len(x)), self.metric, valid=valid, sq_norms=sq)
        else:
            scores, idx = self._search_codes(codec, x, q, k, oversample, valid, pos_map)
        if pos_map is not None:
            idx = np.where(idx >= 0, pos_map[np.maximum(idx, 0)], -1)
        return scores, idx

    def _search_codes(self, codec: Codec, codes: np.ndarray, q: np.ndarray, k: int, oversample: float,
                      valid: np.ndarray | None, pos_map: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Scan codes, rescore exactly from disk; indices are into ``codes`` (like exact_topk's)."""
        live = self._live
        to_live = (lambda rows: pos_map[rows]) if pos_map is not None else (lambda rows: rows)
        fetch = None
        if self._codec_state.keeps_floats:
            fetch = lambda rows: live.floats(to_live(rows))  # noqa: E731
            if pos_map is not None and len(codes) <= k * oversample:  # few rows match: score them all exactly
                return exact_topk(fetch(np.arange(len(codes))), q, min(k, len(codes)), self.metric)
        return two_stage_search(codec, q, codes, min(k, len(codes)), oversample=oversample,
                                metric=self.metric, valid=valid, fetch=fetch)

    def _funnel(self, conn: Any, live: LiveVectors, codec: Codec | None, q: np.ndarray,
                stages: list[tuple[int, int]], where: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray, Plan]:
        if codec is None:
            x = live.x
        elif self.codec == "pca+f32":
            x, q = live.x.view(np.float32), codec.transform(q)
        else:
            raise InvalidInputError(
                f"funnel search needs float vectors in RAM in a variance-ordered basis; this collection keeps "
                f"{self.codec!r} codes. Use a collection without a codec (Matryoshka-trained model) or "
                "recompress(codec='pca+f32')"
            )
        allowed = self._searcher.allowed(conn, live, where)
        scores, pos = self._searcher.funnel(live, x, q, stages, allowed)
        plan = Plan("funnel", f"shortlist at {stages[0][0]} dims, rerank at " +
                    ", ".join(str(d) for d, _ in stages[1:]) + " dims", live.n_alive, allowed.count,
                    allowed.source, allowed.count / max(live.n_alive, 1))
        return scores, pos, plan

    # ------------------------------------------------------------- multi-vector
    def _fde_config(self) -> "FDEConfig":
        from vecbox.multivector import FDEConfig

        if self._mv is None:
            raise InvalidInputError(
                f"{self.path} is not a multi-vector collection; create one with "
                "Collection.create(path, multivector=FDEConfig(...), token_dim=...)"
            )
        return FDEConfig.from_dict(self._mv["fde"])

    def add_multi(
        self,
        ids: Sequence[str],
        token_sets: Any,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        documents: Sequence[str | None] | None = None,
        *,
        upsert: bool = False,
    ) -> int:
        """Add items that are sets of token vectors, in one atomic commit; return the new version.

        ``token_sets`` is a list of ``(n_i, token_dim)`` arrays or the ragged ``(x, offsets)``
        pair :class:`~vecbox.encoders.tokens.TokenEncoder` returns. The tokens are stored as
        given; each item's vector is its MUVERA document FDE.

        >>> col = Collection.create(tmp, multivector=FDEConfig(reps=4, ksim=2), token_dim=8)  # doctest: +SKIP
        >>> col.add_multi(["a", "b"], [np.ones((3, 8)), np.eye(8)[:5]])                        # doctest: +SKIP
        1
        """
        from vecbox.multivector import as_token_sets, encode_documents

        cfg = self._fde_config()
        ts = as_token_sets(token_sets, d=int(self._mv["token_dim"]), name="token_sets")  # type: ignore[index]
        if not np.all(np.isfinite(ts.x)):
            raise InvalidInputError("token_sets contain NaN or infinite values; clean them before adding")
        return self._write("upsert" if upsert else "add", ids, encode_documents(ts, cfg), metadatas, documents,
                           token_sets=ts)

    def search_multi(
        self, queries: Any, k: int = 10, *, candidates: int = 100, where: Mapping[str, Any] | None = None,
        include_metadata: bool = True, ef_search: int | None = None,
    ) -> list[list[Hit]]:
        """Late-interaction search: FDE candidates (exact or ANN, filtered), then exact Chamfer rerank.

        ``queries`` are token sets (one ``(n_i, token_dim)`` array per query, or ``(x, offsets)``).
        Scores are Chamfer similarities ``sum_q max_p <q, p>``, best first.
        """
        from vecbox.multivector import as_token_sets, chamfer, encode_queries

        cfg = self._fde_config()
        k = v.check_positive_int(k, "k")
        candidates = v.check_positive_int(candidates, "candidates")
        if candidates < k:
            raise InvalidInputError(f"candidates ({candidates}) must be >= k ({k}); the rerank keeps k of them")
        qs = as_token_sets(queries, d=int(self._mv["token_dim"]), name="queries")  # type: ignore[index]
        cand = self.search_batch(encode_queries(qs, cfg), candidates, where=where, include_metadata=False,
                                 ef_search=ef_search)
        wanted = sorted({h.id for hits in cand for h in hits})
        with self._state, catalog.transaction(self._conn, write=False) as conn:
            where_is = tokens.locate(conn, wanted)
            if self._token_files is None:
                self._token_files = TokenFiles(self.path, int(self._mv["token_dim"]))  # type: ignore[index]
            mats = {i: self._token_files.get(*loc) for i, loc in where_is.items()}
            out: list[list[tuple[str, float]]] = []
            for qi, hits in enumerate(cand):
                ids = [h.id for h in hits if h.id in mats]
                if not ids:
                    out.append([])
                    continue
                sc = chamfer([qs[qi]], [mats[i] for i in ids])[0]
                order = np.argsort(-sc, kind="stable")[:k]
                out.append([(ids[j], float(sc[j])) for j in order])
            rows = {}
            if include_metadata:
                found = catalog.live_rids_for_ids(conn, sorted({i for r in out for i, _ in r}))
                rows = {rid_id[0]: rid_id for rid_id in _fetch_rows(conn, list(found.values())).values()}
        return [[Hit(i, s, *(rows[i][1:] if i in rows else (None, None))) for i, s in r] for r in out]

    # -------------------------------------------------------------------- text
    @property
    def encoder(self) -> "TextEncoder":
        """The text encoder of this collection's model (loaded on first use)."""
        if self._encoder is None:
            if self.model is None:
                raise InvalidInputError(
                    f"{self.path} was created without a text model; create it with model='default' "
                    "(or a sentence-transformers path) to use add_texts/search_text, or add vectors directly"
                )
            from vecbox.encoders.text import TextEncoder

            self._encoder = TextEncoder(self.model)
        return self._encoder

    def add_texts(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        upsert: bool = False,
        commit_every: int = 10_000,
        show_progress: bool = False,
    ) -> int:
        """Encode texts with the collection's model and store them (text kept as the document).

        Each chunk of ``commit_every`` texts is one atomic commit. Returns the last version.
        """
        texts = v.check_documents(texts, len(texts))  # type: ignore[arg-type]
        if not texts or any(t is None for t in texts):
            raise InvalidInputError("texts must be a non-empty list of strings")
        id_list = v.check_ids(ids, n=len(texts)) if ids is not None else [uuid.uuid4().hex for _ in texts]
        metas = list(metadatas) if metadatas is not None else [None] * len(texts)
        if len(metas) != len(texts):
            raise InvalidInputError(f"got {len(metas)} metadata entries for {len(texts)} texts")
        v.check_metadatas(metas, len(texts))
        if not upsert:  # fail before spending minutes on encoding
            existing = catalog.live_rids_for_ids(self._conn, id_list)
            if existing:
                raise DuplicateIdError(
                    f"{len(existing)} of these ids are already stored (first: {next(iter(existing))!r}); "
                    "pass upsert=True to replace them"
                )
        version = self.version
        write = self.upsert if upsert else self.add
        for start in range(0, len(texts), commit_every):
            sl = slice(start, start + commit_every)
            if self._mv is not None:  # multi-vector: token vectors per text
                tok = self.encoder._tokens().encode(texts[sl], kind="document", show_progress=show_progress)
                version = self.add_multi(id_list[sl], tok, metas[sl], texts[sl], upsert=upsert)
                continue
            x = self.encoder.encode(texts[sl], kind="document", show_progress=show_progress)  # type: ignore[arg-type]
            version = write(id_list[sl], x, metas[sl], texts[sl])
        return version

    def search_text(
        self, text: str, k: int = 10, *, where: Mapping[str, Any] | None = None, oversample: float = 4.0
    ) -> list[Hit]:
        """Encode ``text`` as a query with the collection's model and search."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(f"search_text needs a non-empty string; got {text!r}")
        if self._mv is not None:
            return self.search_multi(self.encoder._tokens().encode([text], kind="query"), k, where=where)[0]
        return self.search(self.encoder.encode([text], kind="query")[0], k, where=where, oversample=oversample)

    # -------------------------------------------------------------------- info
    def info(self) -> dict[str, Any]:
        """Settings and sizes: dim, metric, model, version, counts, segments, bytes on disk."""
        conn = self._conn
        return {
            "path": str(self.path),
            "dim": self.dim,
            "metric": self.metric,
            "model": self.model,
            "version": self.version,
            "count": self.count(),
            "tombstones": int(conn.execute("SELECT COUNT(*) FROM rows WHERE deleted IS NOT NULL").fetchone()[0]),
            "segments": int(conn.execute("SELECT COUNT(*) FROM segments").fetchone()[0]),
            "bytes_on_disk": _dir_size(self.path),
            "codec": self.codec,
            "keep_float": self._codec_state.keeps_floats,
            "bytes_per_vector": (
                parse_spec(self.codec).bytes_per_vector(self.dim) if self.codec else 4 * self.dim
            ),
            "index": self.index_info(),
            "multivector": self._mv,
        }


_SCORE_MODES = {"dot": 0, "cosine": 1, "l2": 2}  # see _walk.Graph.search_hits


def _normalise(x: np.ndarray, name: str) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    if np.any(norms == 0):
        row = int(np.flatnonzero(norms.ravel() == 0)[0])
        raise InvalidInputError(
            f"{name} row {row} is all zeros; cosine similarity is undefined for it - drop it or use metric='dot'/'l2'"
        )
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def _fetch_rows(conn: Any, rids: list[int], with_payload: bool = True) -> dict[int, tuple[str, Any, Any]]:
    if not rids:
        return {}
    cols = "rid, id, metadata, document" if with_payload else "rid, id, NULL, NULL"
    cur = conn.execute(f"SELECT {cols} FROM rows WHERE rid IN (SELECT value FROM json_each(?))", (json.dumps(rids),))
    return {rid: (i, json.loads(m) if m is not None else None, doc) for rid, i, m, doc in cur}


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


__all__ = ["Collection", "Explained", "Hit", "Record"]
