"""``Collection``: the one user-facing object for stored vectors.

It coordinates the catalog (SQLite, the commit point), the segment files, the
in-memory view of live vectors, the filter compiler and exact search; it
contains none of them.
"""

from __future__ import annotations

import json
import threading
import uuid
from itertools import repeat as _repeat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vecbox import _validation as v
from vecbox.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    DuplicateIdError,
    InvalidInputError,
    UnknownIdError,
)
from vecbox.index.flat import exact_topk
from vecbox.query.filters import compile_filter
from vecbox.storage import catalog
from vecbox.storage.live import LiveVectors
from vecbox.storage.lock import WriteLock
from vecbox.storage.segments import SEGMENT_DIR, remove_unreferenced, write_segment

if TYPE_CHECKING:
    from vecbox.encoders.text import TextEncoder

LOCK_FILE = "LOCK"
_GATHER_FRACTION = 0.5  # below this share of allowed rows, copy them out instead of masking the rest


@dataclass(frozen=True)
class Hit:
    """One search result.

    ``score`` is the cosine similarity (cosine, in [-1, 1]) or the inner product
    (dot) - higher is more similar - or the Euclidean distance (l2) - lower is
    more similar. Hits are always ordered best first.
    """

    id: str
    score: float
    metadata: dict[str, Any] | None = None
    document: str | None = None


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
        self._lock = WriteLock(self.path / LOCK_FILE, timeout=lock_timeout)
        self._live = LiveVectors(self.path, self.dim, keep_sq_norms=self.metric == "l2")
        self._state = threading.RLock()
        self._encoder = encoder
        if self._lock.try_acquire():  # collect garbage left by a writer that died before its commit
            try:
                remove_unreferenced(self.path, {f for f, _ in catalog.segment_files(self._conn).values()})
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
        if dim is None:
            raise InvalidInputError("give dim= (the vector width) or model= (a text model to take it from)")
        dim = v.check_positive_int(dim, "dim")
        if (path / catalog.CATALOG_FILE).exists():
            if not exist_ok:
                raise CollectionExistsError(
                    f"{path} already holds a collection; open it with Collection.open(path) or pass exist_ok=True"
                )
            col = cls(path, lock_timeout=lock_timeout, encoder=encoder)
            if (col.dim, col.metric) != (dim, metric) or (model is not None and col.model != model):
                raise CollectionExistsError(
                    f"{path} holds a collection with dim={col.dim}, metric={col.metric!r}, model={col.model!r}, "
                    f"not dim={dim}, metric={metric!r}, model={model!r}; choose another path"
                )
            return col
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise CollectionExistsError(f"{path} exists and is not an empty directory; choose a new path")
        (path / SEGMENT_DIR).mkdir(parents=True, exist_ok=True)
        conn = catalog.connect(path, create=True)
        try:
            catalog.initialise(conn, {"dim": dim, "metric": metric, "model": model})
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

    def __enter__(self) -> "Collection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.count()

    def __repr__(self) -> str:
        return f"Collection({str(self.path)!r}, dim={self.dim}, metric={self.metric!r}, version={self.version})"

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

    def _write(self, mode: str, ids: Any, vectors: Any, metadatas: Any, documents: Any) -> int:
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
            name = write_segment(self.path, x)
            try:
                with catalog.transaction(self._conn) as conn:
                    version = catalog.log_version(conn, mode, len(ids), len(existing))
                    if existing:
                        conn.execute(
                            "UPDATE rows SET deleted = ? WHERE deleted IS NULL AND rid IN (SELECT value FROM json_each(?))",
                            (version, json.dumps(list(existing.values()))),
                        )
                    seg_id = conn.execute(
                        "INSERT INTO segments(file, n, version) VALUES (?, ?, ?)", (name, len(ids), version)
                    ).lastrowid
                    conn.executemany(
                        "INSERT INTO rows(id, seg_id, pos, metadata, document, added) VALUES (?, ?, ?, ?, ?, ?)",
                        zip(ids, _repeat(seg_id), range(len(ids)), metas, docs, _repeat(version)),
                    )
            except BaseException:
                (self.path / SEGMENT_DIR / name).unlink(missing_ok=True)
                raise
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
                self._live.refresh(conn)
            live = self._live
            keep = np.flatnonzero(live.alive)
            name = write_segment(self.path, live.x[keep]) if len(keep) else None
            try:
                with catalog.transaction(self._conn) as conn:
                    version = catalog.log_version(conn, "compact", 0, 0)
                    conn.execute("DELETE FROM rows WHERE deleted IS NOT NULL")
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
                    conn.execute(
                        "UPDATE config SET value = ? WHERE key = 'epoch'", (json.dumps(catalog.epoch(conn) + 1),)
                    )
            except BaseException:
                if name is not None:
                    (self.path / SEGMENT_DIR / name).unlink(missing_ok=True)
                raise
            remove_unreferenced(self.path, {f for f, _ in catalog.segment_files(self._conn).values()})
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return before - _dir_size(self.path / SEGMENT_DIR)

    # ------------------------------------------------------------------- reads
    def count(self, where: Mapping[str, Any] | None = None) -> int:
        """Number of live items, optionally only those matching ``where``."""
        sql, params = compile_filter(where)
        return int(self._conn.execute(f"SELECT COUNT(*) FROM rows WHERE deleted IS NULL AND ({sql})", params).fetchone()[0])

    def get(self, ids: Sequence[str], *, missing_ok: bool = False) -> list[Record]:
        """Fetch items by id, in the order asked; unknown ids raise :class:`UnknownIdError` unless ``missing_ok``."""
        id_list = v.check_ids(ids)
        with self._state, catalog.transaction(self._conn, write=False) as conn:
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
            vecs = self._live.x[self._live.positions(np.asarray(rids, dtype=np.int64))] if rids else np.empty((0, self.dim), np.float32)
        return [
            Record(rows[r][0], vecs[j].copy(), rows[r][1], rows[r][2]) for j, r in enumerate(rids)
        ]

    def ids(self, where: Mapping[str, Any] | None = None) -> list[str]:
        """All live ids (optionally matching ``where``), in insertion order."""
        sql, params = compile_filter(where)
        return [i for (i,) in self._conn.execute(f"SELECT id FROM rows WHERE deleted IS NULL AND ({sql}) ORDER BY rid", params)]

    def search(
        self, query: Any, k: int = 10, *, where: Mapping[str, Any] | None = None, include_metadata: bool = True
    ) -> list[Hit]:
        """The ``k`` stored items nearest to one query vector, best first.

        Parameters
        ----------
        query : array-like (d,)
        k : int
        where : dict, optional
            Metadata filter, e.g. ``{"year": {"$gte": 2020}, "lang": {"$in": ["en", "de"]}}``.
        include_metadata : bool
            Fetch metadata and documents for the hits (skip for raw speed).
        """
        q = v.as_matrix(query, d=self.dim, name="query", allow_1d=True)
        if len(q) != 1:
            raise InvalidInputError(f"search() takes one query; got {len(q)} - use search_batch() for several")
        return self.search_batch(q, k, where=where, include_metadata=include_metadata)[0]

    def search_batch(
        self, queries: Any, k: int = 10, *, where: Mapping[str, Any] | None = None, include_metadata: bool = True
    ) -> list[list[Hit]]:
        """Exact search for many queries at once (one BLAS pass per block of stored rows)."""
        q = v.as_matrix(queries, d=self.dim, name="queries")
        k = v.check_positive_int(k, "k")
        sql, params = compile_filter(where) if where else (None, [])
        if self.metric == "cosine":
            q = _normalise(q, "queries")
        with self._state, catalog.transaction(self._conn, write=False) as conn:
            live = self._live
            live.refresh(conn)
            x, valid, sq, pos_map = live.x, live.alive, live.sq_norms if self.metric == "l2" else None, None
            if sql is not None:
                rids = np.array(
                    conn.execute(f"SELECT rid FROM rows WHERE deleted IS NULL AND ({sql})", params).fetchall(),
                    dtype=np.int64,
                ).ravel()
                pos = live.positions(rids)
                if len(pos) < _GATHER_FRACTION * live.n:
                    pos_map = pos
                    x, valid = x[pos], None
                    sq = sq[pos] if sq is not None else None
                else:
                    valid = np.zeros(live.n, dtype=bool)
                    valid[pos] = True
            elif live.n_alive == live.n:
                valid = None
            if len(x) == 0:
                return [[] for _ in range(len(q))]
            scores, idx = exact_topk(x, q, min(k, len(x)), self.metric, valid=valid, sq_norms=sq)
            if pos_map is not None:
                idx = np.where(idx >= 0, pos_map[np.maximum(idx, 0)], -1)
            hit_rids = np.where(idx >= 0, live.rids[np.maximum(idx, 0)], -1)
            rows = _fetch_rows(conn, np.unique(hit_rids[hit_rids >= 0]).tolist(), with_payload=include_metadata)
        if self.metric == "l2":
            scores = np.sqrt(np.maximum(np.einsum("ij,ij->i", q, q)[:, None] - scores, 0.0))
        return [
            [Hit(rows[r][0], float(s), rows[r][1], rows[r][2]) for r, s in zip(rr, ss) if r >= 0]
            for rr, ss in zip(hit_rids.tolist(), scores.tolist())
        ]

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
            x = self.encoder.encode(texts[sl], kind="document", show_progress=show_progress)  # type: ignore[arg-type]
            version = write(id_list[sl], x, metas[sl], texts[sl])
        return version

    def search_text(
        self, text: str, k: int = 10, *, where: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        """Encode ``text`` as a query with the collection's model and search."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(f"search_text needs a non-empty string; got {text!r}")
        return self.search(self.encoder.encode([text], kind="query")[0], k, where=where)

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
        }


def _normalise(x: np.ndarray, name: str) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
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


__all__ = ["Collection", "Hit", "Record"]
