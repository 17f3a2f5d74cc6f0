"""``Collection``: the one user-facing object for stored vectors - validate, delegate, build hits.

A collection handle composes the layers below it and holds none of their logic:
:mod:`vecbox.storage` (the catalog and all its SQL, segment files, the write protocol, the
read state), :mod:`vecbox.query` (filters, selection, planning, execution, the fast path),
:mod:`vecbox.index` (exact, code-scan and ANN candidate generation) and :mod:`vecbox.codecs`.
"""

from __future__ import annotations

import sqlite3
import threading
import warnings
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vecbox import _validation as v
from vecbox.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    CorruptCollectionError,
    DuplicateIdError,
    InvalidInputError,
    UnknownIdError,
)
from vecbox.collection_hybrid import HybridMethods
from vecbox.collection_index import IndexMethods
from vecbox.collection_ops import OperationsMethods
from vecbox.collection_text import TextMethods
from vecbox.index.funnel import check_stages
from vecbox.lexical.settings import lexical_settings
from vecbox.query.executor import Executor
from vecbox.query.fastpath import FastPath
from vecbox.query.filters import Filter
from vecbox.query.planner import Plan
from vecbox.results import Explained, Hit, Record
from vecbox.storage import catalog, writes
from vecbox.storage.codec_state import CodecConfig, keeps_floats
from vecbox.storage.lock import WriteLock, check_timeout
from vecbox.storage.reader import Reader
from vecbox.storage.segments import SEGMENT_DIR, dir_size
from vecbox.storage.tokens import TokenFiles

if TYPE_CHECKING:
    from vecbox.encoders.text import TextEncoder
    from vecbox.multivector import FDEConfig
    from vecbox.storage.live import LiveVectors

LOCK_FILE = "LOCK"


class Collection(IndexMethods, TextMethods, HybridMethods, OperationsMethods):
    """A durable set of vectors with string ids, JSON metadata, exact and ANN search.

    The index methods come from :class:`~vecbox.collection_index.IndexMethods`, the text and
    multi-vector ones from :class:`~vecbox.collection_text.TextMethods`, ``verify`` and
    ``snapshot`` from :class:`~vecbox.collection_ops.OperationsMethods`.

    Create with :meth:`create`, open with :meth:`open`. Any number of processes
    may read; one writes at a time (others wait up to ``lock_timeout`` seconds).

    Examples
    --------
    >>> col = Collection.create(tmp + "/c", dim=3, metric="cosine")
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
        try:
            self._open(lock_timeout, encoder)
        except BaseException as exc:
            self._conn.close()  # a failed open leaves nothing behind
            if type(exc) is sqlite3.DatabaseError:  # e.g. "database disk image is malformed"
                raise CorruptCollectionError(f"{self.path / catalog.CATALOG_FILE} is damaged ({exc}); restore the "
                                             "collection from a backup or a snapshot") from None
            raise

    def _open(self, lock_timeout: float, encoder: "TextEncoder | None") -> None:
        self._config = catalog.read_config(self._conn, self.path)
        self.dim: int = int(self._config["dim"])
        self.metric: str = str(self._config["metric"])
        self.model: str | None = self._config.get("model")
        self._mv: dict[str, Any] | None = self._config.get("multivector")
        self._token_files: TokenFiles | None = None
        self._lock = WriteLock(self.path / LOCK_FILE, timeout=lock_timeout)
        self._state = threading.RLock()
        self._encoder = encoder
        self._reader = Reader(self.path, self._conn, self.dim, self.metric)
        self._executor = Executor(self.path, self.dim, self.metric)
        self._fast = FastPath(self._executor, self.dim, self.metric)
        writes.collect_if_unlocked(self.path, self._conn, self._lock)  # left by a writer that died before its commit

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
        lexical: bool | Mapping[str, Any] = True,
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
        lexical : bool or dict
            Index documents for BM25 in their rows' commit, for :meth:`search_lexical` and hybrid
            search (default ``True``: English, Snowball, ``k1=1.5``, ``b=0.75``; a dict sets
            ``language``, ``stopwords``, ``stem``, ``fold_accents``, ``k1``, ``b``; ``False``: none).
        """
        path = Path(path)
        metric = v.check_metric(metric)
        lexical_cfg = lexical_settings(lexical)
        check_timeout(lock_timeout)
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
            if token_dim is None and encoder is not None:  # a late-interaction head makes tokens narrower
                token_dim = encoder.token_encoder().dim
            token_dim = v.check_positive_int(token_dim if token_dim is not None else dim, "token_dim")
            mv_cfg = {"fde": multivector.to_dict(), "token_dim": token_dim}
            dim, metric = multivector.output_dim(token_dim), "dot"
        if dim is None:
            raise InvalidInputError("give dim= (the vector width) or model= (a text model to take it from)")
        dim = v.check_positive_int(dim, "dim")
        codec_cfg = CodecConfig.from_options(codec, dim, keep_float, seed)
        if (path / catalog.CATALOG_FILE).exists():
            if not exist_ok:
                raise CollectionExistsError(
                    f"{path} already holds a collection; open it with Collection.open(path) or pass exist_ok=True"
                )
            col = cls(path, lock_timeout=lock_timeout, encoder=encoder)
            if codec_cfg is not None and col.codec != codec_cfg.spec:
                raise CollectionExistsError(
                    f"{path} holds a collection with codec={col.codec!r}, not {codec_cfg.spec!r}; "
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
        path.parent.mkdir(parents=True, exist_ok=True)
        writes.create_collection(path, {"dim": dim, "metric": metric, "model": model,
                                        "codec": codec_cfg.to_json() if codec_cfg else None, "multivector": mv_cfg,
                                        "lexical": lexical_cfg})
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
        """Release the catalog connection (a handle that wrote first deletes the files no reader needs any more)."""
        if self._conn.total_changes:  # so the next handle's open finds nothing to collect
            writes.collect_if_unlocked(self.path, self._conn, self._lock, best_effort=True)
        self._conn.close()
        self._reader.close()  # after the connection: see storage.watch._SHM_OPEN

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
        return self._reader.codecs.spec

    @property
    def _live(self) -> "LiveVectors":
        return self._reader.live

    def write_lock(self) -> WriteLock:
        """Hold the write lock across several writes, so no other process interleaves.

        Waits up to ``lock_timeout`` seconds (set at open), then raises
        :class:`CollectionLockedError`. Each write inside still commits on its own.

        >>> col = Collection.create(tmp + "/c", dim=2)
        >>> with col.write_lock():
        ...     v1 = col.add(["a"], [[1.0, 0.0]]); v2 = col.upsert(["a"], [[0.0, 1.0]])
        >>> col.version, col.get(["a"])[0].vector.tolist()
        (2, [0.0, 1.0])
        """
        return self._lock

    @property
    def version(self) -> int:
        """The latest committed version (0 for a new collection; each write adds one)."""
        return catalog.current_version(self._conn)

    def _refresh(self, conn: Any) -> None:
        """Bring the read state to the transaction's snapshot (inside a read transaction)."""
        self._reader.refresh(conn)
        self._executor.index(self._reader.index_cfg)

    def _sync(self, conn: Any, *, in_transaction: bool) -> None:
        """Bring the read state to the latest commit, only if something was committed (holds the state lock).

        That includes the lexical settings: building or rebuilding the lexical index is a commit too.
        """
        if self._reader.sync(conn, in_transaction=in_transaction):
            self._executor.index(self._reader.index_cfg)
            self._follow_lexical_config(conn)  # type: ignore[attr-defined]

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
        x = v.normalise_rows(x, "vectors") if self.metric == "cosine" else v.check_magnitude(x, "vectors")
        codecs = self._reader.codecs
        with self._lock:
            self._follow_lexical_config(self._conn)  # another handle may have built the index meanwhile
            terms = self._terms_for(docs)
            existing = catalog.live_rids_for_ids(self._conn, ids)
            if mode == "add" and existing:
                raise DuplicateIdError(
                    f"{len(existing)} of these ids are already stored (first: {next(iter(existing))!r}); "
                    "use upsert() to replace them, or delete them first"
                )
            with self._state, catalog.transaction(self._conn, write=False) as conn:
                self._reader.sync_codec(conn)
            codec, fitted = codecs.for_write(x)
            try:
                codes = codec.encode(x) if codec is not None else None
                keep = keeps_floats(fitted) if fitted is not None else codecs.keeps_floats
                version = writes.append_batch(self.path, self._conn, mode, ids, metas, docs, x if keep else None,
                                              codes, replaced=existing, fitted_codec=fitted, tokens=token_sets,
                                              terms=terms)
            except BaseException:
                codecs.discard(fitted)
                raise
            if fitted is not None:
                with self._state:
                    codecs.set(fitted, codec)
            self._merge_segments()
        return version

    def _merge_segments(self) -> None:
        """Merge small segments as they accumulate (holds the lock). The batch is committed whatever happens here."""
        try:
            writes.merge_small_segments(self.path, self._conn, self.dim, self._reader.codecs.code_size(
                self._reader.codecs.cfg))
        except Exception as exc:  # e.g. a full disk: nothing half-done (the merge is its own commit), retried next write
            warnings.warn(f"merging small segments of {self.path} failed ({exc}); the batch is committed, and the "
                          "merge is retried on the next write", RuntimeWarning, stacklevel=3)

    def delete(self, ids: Sequence[str] | None = None, *, where: Mapping[str, Any] | None = None,
               missing_ok: bool = False) -> int:
        """Delete items by id and/or filter in one atomic commit; return how many were deleted.

        Unknown ids raise :class:`UnknownIdError` (nothing is deleted) unless ``missing_ok``.
        """
        if ids is None and where is None:
            raise InvalidInputError("delete() needs ids=, where=, or both; to delete everything pass where={}")
        id_list = v.check_ids(ids) if ids is not None else None
        flt = Filter.parse(where)
        with self._lock, catalog.transaction(self._conn) as conn:
            among = None
            if id_list is not None:
                found = catalog.live_rids_for_ids(conn, id_list)
                missing = [i for i in id_list if i not in found]
                if missing and not missing_ok:
                    raise UnknownIdError(
                        f"{len(missing)} id(s) are not in the collection (first: {missing[0]!r}); "
                        "nothing was deleted - pass missing_ok=True to ignore unknown ids"
                    )
                among = list(found.values())
            rids = catalog.matching_rids(conn, flt.where_sql, among=among)
            if rids:
                writes.delete_rows(conn, rids)
        return len(rids)

    def compact(self) -> int:
        """Rewrite live vectors into one segment, drop tombstones and garbage; return the bytes freed."""
        with self._lock, self._state:
            before = dir_size(self.path / SEGMENT_DIR)
            with catalog.transaction(self._conn, write=False) as conn:
                self._refresh(conn)
            live = self._live
            keep = np.flatnonzero(live.alive)
            floats = live.floats(keep) if self._reader.keeps_floats else None
            codes = live.x[keep] if live.code_size is not None else None
            writes.rewrite_all(self.path, self._conn, "compact", live.rids[keep].tolist(), floats, codes)
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            freed = before - dir_size(self.path / SEGMENT_DIR)
        self._rebuild_index()
        return freed

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
        codecs = self._reader.codecs
        new_cfg = codecs.recompress_config(codec, keep_float, seed)
        with self._lock, self._state:
            with catalog.transaction(self._conn, write=False) as conn:
                self._refresh(conn)
            live = self._live
            keep = np.flatnonzero(live.alive)
            source = self._reader.vectors(keep)
            new_codec, new_cfg = codecs.fit_new(new_cfg, source)
            try:
                codes = new_codec.encode(source) if new_codec is not None else None
                version = writes.rewrite_all(self.path, self._conn, "recompress", live.rids[keep].tolist(),
                                             source if keeps_floats(new_cfg) else None, codes,
                                             new_codec=new_cfg, codec_changes=True)
            except BaseException:
                codecs.discard(new_cfg)
                raise
            self._reader.adopt_codec(new_cfg, new_codec)
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return version

    # ------------------------------------------------------------------- reads
    def count(self, where: Mapping[str, Any] | None = None) -> int:
        """Number of live items, optionally only those matching ``where``."""
        return catalog.count_matching(self._conn, Filter.parse(where).where_sql)

    def get(self, ids: Sequence[str], *, missing_ok: bool = False) -> list[Record]:
        """Fetch items by id, in the order asked; unknown ids raise :class:`UnknownIdError` unless ``missing_ok``."""
        id_list = v.check_ids(ids)
        with self._state, catalog.transaction(self._conn, write=False) as conn:
            self._refresh(conn)
            found = catalog.live_rids_for_ids(conn, id_list)
            missing = [i for i in id_list if i not in found]
            if missing and not missing_ok:
                raise UnknownIdError(
                    f"{len(missing)} id(s) are not in the collection (first: {missing[0]!r}); "
                    "check the ids, or pass missing_ok=True to skip them"
                )
            rids = [found[i] for i in id_list if i in found]
            rows = catalog.fetch_rows(conn, rids)
            if rids:
                vecs = self._reader.vectors(self._live.positions(np.asarray(rids, dtype=np.int64)))
            else:
                vecs = np.empty((0, self.dim), np.float32)
        return [Record(rows[r][0], vecs[j].copy(), rows[r][1], rows[r][2]) for j, r in enumerate(rids)]

    def ids(self, where: Mapping[str, Any] | None = None) -> list[str]:
        """All live ids (optionally matching ``where``), in insertion order."""
        return catalog.matching_ids(self._conn, Filter.parse(where).where_sql)

    # ------------------------------------------------------------------ search
    def search(
        self, query: Any, k: int = 10, *, where: Mapping[str, Any] | None = None, include_metadata: bool = True,
        oversample: float = 4.0, explain: bool = False, ef_search: int | None = None, nprobe: int | None = None,
        exact: bool = False, funnel: Sequence[tuple[int | None, int]] | None = None, text: str | None = None,
        fusion: Any = None, candidates: int | None = None,
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
            Return an :class:`Explained` (``.hits`` and ``.plan``) instead of the list of hits;
            :meth:`explain` returns the plan alone.
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
        text : str, optional
            Hybrid search: the query's text as well. Its BM25 top ``candidates`` over the
            stored documents and the vector's top ``candidates`` (both under ``where``) are
            fused (``fusion``: ``"default"``, ``"rrf"``, ``"minmax"``, ... see
            :mod:`vecbox.query.fusion`); ``explain`` shows both lists. Scores are fused scores.
        """
        if text is not None or fusion is not None or candidates is not None:
            return self._hybrid_search(query, text, k, where=where, include_metadata=include_metadata, explain=explain,
                                       fusion=fusion, candidates=candidates, ef_search=ef_search, exact=exact,
                                       oversample=oversample, funnel=funnel, nprobe=nprobe)
        if not (include_metadata or explain or exact or funnel is not None or nprobe is not None):
            hits = self._fast_search(query, k, ef_search, where, one=True)
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

    def explain(self, query: Any, k: int = 10, **options: Any) -> Plan:
        """The plan a search would run - path, reason, match estimate, effort, costs - for one query or a batch.

        Takes the options of :meth:`search` (``where``, ``ef_search``, ``exact``, ``funnel`` ...);
        the search runs, so ``fallback`` counts real fallbacks.

        >>> col = Collection.create(tmp + "/c", dim=2)
        >>> _ = col.add(["a", "b"], [[1.0, 0.0], [0.0, 1.0]], [{"lang": "en"}, {"lang": "de"}])
        >>> plan = col.explain([1.0, 0.0], k=1, where={"lang": "en"})
        >>> plan.path, plan.estimate
        ('exact', 1)
        """
        q = v.as_matrix(query, d=self.dim, name="query", allow_1d=True)
        return self._search(q, k, **{"where": None, "include_metadata": False, "oversample": 4.0,
                                     "ef_search": None, "nprobe": None, "exact": False, "funnel": None,
                                     **options, "explain": True}).plan

    def _fast_search(self, queries: Any, k: Any, ef_search: Any, where: Any, one: bool) -> list[Any] | None:
        """The fast path's answer (:mod:`vecbox.query.fastpath`), or ``None``: the general path runs."""
        with self._state:
            return self._fast.search(self._reader, self._sync_now, queries, k, ef_search, where, one, Hit)

    def _sync_now(self) -> None:
        self._sync(self._conn, in_transaction=False)

    def search_batch(
        self, queries: Any, k: int = 10, *, where: Mapping[str, Any] | None = None, include_metadata: bool = True,
        oversample: float = 4.0, explain: bool = False, ef_search: int | None = None, nprobe: int | None = None,
        exact: bool = False, funnel: Sequence[tuple[int | None, int]] | None = None,
    ) -> "list[list[Hit]] | Explained":
        """Search for many queries at once (one plan for the batch; options as in :meth:`search`)."""
        if not (include_metadata or explain or exact or funnel is not None or nprobe is not None):
            hits = self._fast_search(queries, k, ef_search, where, one=False)
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
        q = v.normalise_rows(q, "queries") if self.metric == "cosine" else v.check_magnitude(q, "queries")
        ex = self._executor
        with self._state:
            flt = ex.selection.parse(where)  # a malformed filter fails here, before any work
            # Id-only searches whose filter mask is cached need no SQLite read at all: the
            # live view holds the ids, and the commit watch says whether anyone committed.
            need_sql = include_metadata or not flt.empty and ex.selection.cached(flt, self._live) is None
            with (catalog.transaction(self._conn, write=False) if need_sql else nullcontext(self._conn)) as conn:
                self._sync(conn, in_transaction=need_sql)
                live = self._live
                if live.n == 0:
                    plan = Plan("exact", "the collection is empty", 0, 0, "empty", 0.0)
                    empty: list[list[Hit]] = [[] for _ in range(len(q))]
                    return Explained(empty, plan) if explain else empty
                if stages is not None:
                    scores, pos, plan = ex.funnel(conn, self._reader, q, stages, flt)
                else:
                    scores, pos, plan = ex.run(conn, self._reader, q, k, flt, effort=effort, exact=exact,
                                               oversample=oversample)
                if include_metadata:
                    hit_rids = np.where(pos >= 0, live.rids[np.maximum(pos, 0)], -1)
                    rows = catalog.fetch_rows(conn, sorted(set(hit_rids[hit_rids >= 0].tolist())))
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


__all__ = ["Collection", "Explained", "Hit", "Record"]
