"""The fast path: an id-only search that the index's graph walk answers alone, in one C call.

Around a graph walk of ~50-100 us (50k rows) the general path (:mod:`vecbox.query.executor`)
spends 80-170 us of Python: validation, the plan lookup, label -> row mapping, merging,
building hits. When the walk alone is the answer - ``include_metadata=False``, an index with
exact scores (not ``sq8``), no rows committed since the build, and either no filter and no
deletions, or a filter whose allowed labels (and bitmap) are already cached at this version
and whose plan is the filtered walk - :meth:`FastPath.search` checks the input itself (a
float numpy query of the right width), and one C call (``_walk.Graph.search_hits``) walks,
turns distances into scores for the metric and builds the hits. Batches, IVF and FAISS's walk
answer into numpy arrays and one C call (``_walk.hits``) makes every batch's hits.

Anything else returns ``None`` and the general path runs: other input types, NaN/inf or zero
queries (the general path words the error), a search planned other than as a walk, a short
answer (the general path falls back to exact search).
"""

from __future__ import annotations

import math
from itertools import repeat
from typing import Any

import numpy as np

from vecbox.index.ann import AnnIndex, walk_module
from vecbox.query.executor import Executor, batch_bucket
from vecbox.query.filters import Filter
from vecbox.query.selection import NO_FILTER, Allowed
from vecbox.storage.live import LiveVectors
from vecbox.storage.reader import Reader

SCORE_MODES = {"dot": 0, "cosine": 1, "l2": 2}  # how the C walk turns distances into scores


def _walk_key(wkey: str | None, k: int, effort: int | None, n_queries: int) -> tuple[Any, ...]:
    """The fast path's key of a search: (filter key, k, effort, batch size bucket)."""
    return wkey, k, effort, batch_bucket(n_queries)


class FastPath:
    """Id-only walks of one collection handle, remembered per version (see the module docstring)."""

    def __init__(self, executor: Executor, dim: int, metric: str) -> None:
        self.executor = executor
        self.dim = dim
        self.metric = metric
        self._score_mode = SCORE_MODES[metric]
        self._plain: tuple[tuple[Any, ...], np.ndarray | None] | None = None  # (version key, id per label)
        self._plain_id_list: list[Any] = []  # the same ids as a list (the C walk reads it)
        # (filter key, k, effort, batch size bucket) -> (walk effort, bitmap, two_hop) at the version of _plain
        self._walks: dict[tuple[Any, ...], tuple[int, np.ndarray | None, bool]] = {}
        # (filter key, k, effort, batch size bucket) planned other than as a walk: the fast path is not tried
        self._misses: set[tuple[Any, ...]] = set()
        self._misses_at: tuple[Any, ...] | None = None

    def search(self, reader: Reader, sync: Any, queries: Any, k: Any, ef_search: Any, where: Any,
               one: bool, hit_type: type) -> list[Any] | None:
        """Hits of an id-only search answered by the walk alone, or ``None`` (then the general path runs).

        ``sync()`` brings ``reader`` to the latest commit (the caller holds its state lock).
        """
        if (type(queries) is not np.ndarray or queries.dtype.kind != "f" or queries.shape[-1:] != (self.dim,)
                or queries.ndim != (1 if one else 2) or not queries.size
                or type(k) is not int or k < 1 or ef_search is not None and (type(ef_search) is not int or ef_search < 1)):
            return None
        ex = self.executor
        ex.poll()  # a background check of the index's files may have found damage
        if not ex.has_index:  # no index (as of the last sync): exact search, the general path's job
            return None
        flt = ex.selection.parse(where) if where else NO_FILTER
        n_queries = 1 if one else len(queries)
        if self._skipped(reader.live, flt.key, k, ef_search, n_queries):  # e.g. an exact scan
            return None
        if one:
            q = queries if queries.dtype == np.float32 and queries.flags.c_contiguous else \
                np.ascontiguousarray(queries, dtype=np.float32)
            sync()
            hits = self._one(reader.live, q, k, ef_search, flt, hit_type)
            if hits is not NotImplemented:
                return hits
            queries = q[None, :]  # no C walk for this index: the batch form answers
        q = np.ascontiguousarray(queries, dtype=np.float32)
        sq = np.einsum("ij,ij->i", q, q)
        if not (sq.min() > 0.0 and sq.max() < math.inf):  # NaN/inf or a zero vector: the general path explains
            return None
        if self.metric == "cosine":
            q = q / np.sqrt(sq)[:, None]
        sync()
        hits = self._batch(reader.live, q, k, ef_search, flt, 2 if self.metric == "l2" else 0, hit_type)
        return hits[0] if one and hits is not None else hits

    # ------------------------------------------------------------------ walks
    def _batch(self, live: LiveVectors, q: np.ndarray, k: int, effort: int | None, flt: Filter,
               mode: int, hit_type: type) -> list[list[Any]] | None:
        """``hit_type(id, score, None, None)`` hits per query, best first, from one walk - or ``None``.

        ``mode``: 0 the FAISS distance is the score (dot, or cosine of normalised queries), 2 l2 (its root).
        """
        found = self._known_walk(live, k, effort, flt, len(q))
        if found is None:
            return None
        ann, (walk_effort, bitmap, two_hop), ids = found
        dist, lab = ann.search_plain(q, k, walk_effort, bitmap, reuse=True, two_hop=two_hop)  # under the lock
        walk = walk_module()
        if walk is not None:  # every Python object of the answer made in one C call
            return walk.hits(dist, lab, self._plain_id_list, mode, hit_type)
        if lab[:, -1].min() < 0:
            return None
        scores = np.sqrt(np.maximum(dist, 0.0)) if mode == 2 else dist
        return [list(map(tuple.__new__, repeat(hit_type), zip(ii, ss, repeat(None), repeat(None))))
                for ii, ss in zip(ids[lab].tolist(), scores.tolist())]

    def _one(self, live: LiveVectors, q: np.ndarray, k: int, effort: int | None, flt: Filter,
             hit_type: type) -> Any:
        """One float32 query ``(d,)`` answered by the C walk; ``NotImplemented`` when the index has none."""
        ann = self.executor.ann
        walker = ann.walker() if ann is not None else None
        if walker is None:
            return NotImplemented
        found = self._known_walk(live, k, effort, flt, 1)
        if found is None:
            return None
        _, (walk_effort, bitmap, two_hop), _ = found
        return walker.search_hits(q, k, walk_effort, bitmap, self._plain_id_list, self._score_mode, hit_type, two_hop)

    def _known_walk(self, live: LiveVectors, k: int, effort: int | None, flt: Filter,
                    n_queries: int) -> tuple[AnnIndex, tuple[int, np.ndarray | None, bool], np.ndarray] | None:
        """(index, (walk effort, bitmap, two_hop), id per label) of a search the walk answers alone, or ``None``."""
        ex = self.executor
        ann = ex.ann
        if ann is None or k > ann.n:  # (a damaged index is never loaded: None)
            return None
        key = (id(ann), live.epoch, live.version, live.n)
        state = self._plain
        if state is None or state[0] != key:
            ids = self._ids(live, ann)
            state = self._plain = (key, ids)
            self._plain_id_list = ids.tolist() if ids is not None else []
            self._walks = {}
        ids = state[1]
        if ids is None:
            return None
        walk_key = _walk_key(flt.key, k, effort, n_queries)
        known = self._walks.get(walk_key)  # the same search at this version: the same walk
        if known is None:
            known = self._walk(live, ann, k, effort, flt, walk_key)
            if known is None:
                return None
            if len(self._walks) >= 64:  # many one-off filters at one version: start over
                self._walks.clear()
            self._walks[walk_key] = known
        return ann, known, ids

    def _walk(self, live: LiveVectors, ann: AnnIndex, k: int, effort: int | None, flt: Filter,
              walk_key: tuple[Any, ...]) -> tuple[int, np.ndarray | None, bool] | None:
        """(effort, bitmap, two_hop) of the walk that answers this search alone, or ``None``."""
        if flt.empty:
            if live.n_alive != live.n:
                return None
            allowed, bitmap, n_lab = Allowed(None, live.n_alive, "no filter"), None, ann.n
        else:
            allowed = self.executor.selection.cached(flt, live)
            labels = allowed.labels.get(id(ann)) if allowed is not None else None
            if labels is None:
                return None
            n_lab = labels.count
            bitmap = labels.bitmap if n_lab < ann.n else None
        plan = self.executor.plan(ann, live, allowed, k, effort, n_lab, walk_key[3], 0)  # [3]: the batch bucket
        if plan.path not in (ann.params.kind, ann.params.kind + "+filter") or not plan.effort:
            self._misses.add(walk_key)  # until the next commit (see _skipped)
            return None
        return plan.effort, bitmap, plan.two_hop

    def _skipped(self, live: LiveVectors, wkey: str | None, k: int, effort: int | None, n_queries: int) -> bool:
        """True when this search was found, since the last commit, to be planned other than as a walk."""
        at = (id(self.executor.ann), live.epoch, live.version, live.n)
        if at != self._misses_at:
            self._misses.clear()
            self._misses_at = at
        return _walk_key(wkey, k, effort, n_queries) in self._misses

    def _ids(self, live: LiveVectors, ann: AnnIndex) -> np.ndarray | None:
        """Each label's id, when the index's walk alone can answer (exact scores, no tail, every label held)."""
        label_pos, held, covered = self.executor.label_map(live, ann)
        if not ann.exact_scores or covered < live.n or not held.all():
            return None
        return live.ids[label_pos]


__all__ = ["FastPath", "SCORE_MODES"]
