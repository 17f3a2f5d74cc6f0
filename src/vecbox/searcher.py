"""Per-collection search state and execution: filter masks, the ANN index, funnel prefixes.

:class:`Searcher` turns one search call into a plan (:mod:`vecbox.query.planner`)
and runs it. It caches, per collection handle:

* the filter's allowed-row mask (from the in-memory metadata columns of
  :mod:`vecbox.query.columns`, or from SQLite when a filter cannot be evaluated
  there), keyed by the filter and the committed version - repeated filters,
  such as a tenant or a language, cost nothing after the first search;
* the loaded ANN index and the map from its labels to rows of the live view;
* contiguous prefix matrices for funnel search.

The exact scan itself stays with the caller (``exact_fn``), which knows about
codecs; this module only decides where it runs and merges results.
"""

from __future__ import annotations

import copy
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

from vecbox.errors import CorruptCollectionError
from vecbox.index.ann import AnnIndex, walk_module
from vecbox.index.flat import merge_topk, rescore
from vecbox.index.funnel import funnel_search, prefix_matrix
from vecbox.query import planner
from vecbox.query.columns import MetadataColumns
from vecbox.query.filters import compile_filter
from vecbox.storage import catalog
from vecbox.storage.live import LiveVectors

ExactFn = Callable[[np.ndarray, int, "np.ndarray | None", int, "dict[str, Any] | None"],
                   tuple[np.ndarray, np.ndarray]]
_MASK_CACHE = 8  # filters whose masks are kept (LRU)
_SAMPLE_ABOVE = 200_000  # rows: above this, a filter SQLite must evaluate is first estimated on a sample
_SAMPLE_SIZE = 2_000
GATHER_FRACTION = 0.5  # an exact scan copies the allowed rows out below this share, else masks the rest
GATHER_CACHE_BYTES = 32 << 20  # a cached filter keeps its gathered rows (for exact scans) up to this size


def _batch_bucket(n_queries: int) -> int:
    """Batches share a plan: beyond 64 queries an exact scan's per-call setup cost is noise."""
    return min(n_queries, 64)


def _walk_key(wkey: str | None, k: int, effort: int | None, n_queries: int) -> tuple[Any, ...]:
    """The hot path's key of a search: (filter key, k, effort, batch size bucket)."""
    return wkey, k, effort, _batch_bucket(n_queries)


class LabelSet:
    """The index labels a search may return (``mask``, ``count``) and FAISS's packed bitmap of them (made once)."""

    __slots__ = ("mask", "count", "_bitmap")

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask
        self.count = int(np.count_nonzero(mask))
        self._bitmap: np.ndarray | None = None

    @property
    def bitmap(self) -> np.ndarray:
        if self._bitmap is None:
            self._bitmap = np.packbits(self.mask, bitorder="little")
        return self._bitmap


class Allowed:
    """Rows a search may return: ``mask`` over the live view (``None`` = every live row)."""

    __slots__ = ("mask", "count", "source", "labels", "sql", "cache")

    def __init__(self, mask: np.ndarray | None, count: int, source: str, sql: tuple[str, list[Any]] | None = None):
        self.mask = mask
        self.count = count
        self.source = source
        self.labels: dict[int, LabelSet] = {}  # per ANN index (by id)
        self.sql = sql  # set when only estimated: the filter still to be checked on candidates
        self.cache: dict[str, Any] = {}  # the exact scan's gathered rows, reused by repeated filters


class Searcher:
    """Search state of one collection handle (not shared between processes)."""

    def __init__(self, root: Path, dim: int, metric: str) -> None:
        self.root = root
        self.dim = dim
        self.metric = metric
        self.columns = MetadataColumns()
        self._masks: OrderedDict[tuple[Any, ...], Allowed] = OrderedDict()
        self._ann: AnnIndex | None = None
        self._ann_cfg: Any = None
        self._ann_error: CorruptCollectionError | None = None
        self._labels: tuple[tuple[Any, ...], np.ndarray, np.ndarray, int] | None = None
        self._prefix: dict[int, tuple[tuple[Any, ...], np.ndarray]] = {}
        self._plans: dict[tuple[Any, ...], planner.Plan] = {}  # the same inputs always give the same plan
        self._plain: tuple[tuple[Any, ...], np.ndarray | None] | None = None  # (version key, id per label)
        self._plain_id_list: list[Any] = []  # the same ids as a list (the C walk reads it)
        # (filter key, k, effort, batch size bucket) -> (walk effort, bitmap, two_hop) at the version of _plain
        self._plain_walks: dict[tuple[Any, ...], tuple[int, np.ndarray | None, bool]] = {}
        # (filter key, k, effort, batch size bucket) planned other than as a walk: the hot path is not tried
        self._plain_misses: set[tuple[Any, ...]] = set()
        self._wkeys: dict[int, tuple[Any, Any, str]] = {}  # id(filter) -> (filter, copy, key): see filter_key
        self._misses_at: tuple[Any, ...] | None = None

    # ------------------------------------------------------------------ index
    @property
    def ann(self) -> AnnIndex | None:
        """The ANN index loaded at the last :meth:`index` call (``None``: none, or a damaged one)."""
        return self._ann

    def index(self, conn: Any) -> AnnIndex | None:
        """The collection's current ANN index (loaded on first use and after another process rebuilds it)."""
        cfg = catalog.config_value(conn, "index")
        if cfg != self._ann_cfg:
            self._ann, self._ann_error = None, None
            try:
                self._ann = AnnIndex.load(self.root / cfg["dir"]) if cfg else None
            except CorruptCollectionError as exc:  # exact searches and rebuilds still work
                self._ann_error = exc
            self._ann_cfg = cfg
            self._labels = None
        return self._ann

    def set_index(self, ann: AnnIndex | None, cfg: Any) -> None:
        """Adopt an index this handle just built (saves re-reading it from disk)."""
        self._ann, self._ann_cfg, self._labels, self._ann_error = ann, cfg, None, None

    def _label_map(self, live: LiveVectors, ann: AnnIndex) -> tuple[np.ndarray, np.ndarray, int]:
        """(position of each label in the live view, label's row still held, rows covered by the index)."""
        key = (id(ann), live.epoch, live.n)
        if self._labels is None or self._labels[0][:2] != key[:2] or self._labels[0][2] > live.n:
            pos = live.positions(ann.rids)
            pos_c = np.minimum(pos, max(live.n - 1, 0))
            held = (pos < live.n) & (live.rids[pos_c] == ann.rids) if live.n else np.zeros(ann.n, bool)
            covered = int(np.searchsorted(live.rids, ann.max_rid, side="right"))
            self._labels = (key, pos_c, held, covered)
        return self._labels[1], self._labels[2], self._labels[3]

    # ---------------------------------------------------------------- filters
    def filter_key(self, where: Mapping[str, Any] | None) -> str | None:
        """The cache key of a filter: its canonical JSON.

        The JSON of a 500-name ``$in`` list costs ~30 us, a fifth of a graph walk, so the
        key of each of the last few filter objects is remembered with a deep copy of it,
        and reused while the object still equals that copy (a C-level comparison, ~1 us).
        A filter mutated in place no longer equals its copy and gets a new key.
        """
        if not where:
            return None
        memo = self._wkeys.get(id(where))
        if memo is not None and memo[0] is where and memo[1] == where:
            return memo[2]
        key = json.dumps(where, sort_keys=True, default=repr)
        try:
            snapshot = copy.deepcopy(where)
        except Exception:  # an odd object in the filter: no memo, the key alone is right
            return key
        if len(self._wkeys) >= 16:
            self._wkeys.clear()
        self._wkeys[id(where)] = (where, snapshot, key)  # holding `where` keeps its id from being reused
        return key

    def has_mask(self, wkey: str, live: LiveVectors) -> bool:
        """True when the filter's allowed rows at the live view's version are cached (no SQLite needed)."""
        hit = self._masks.get((wkey, live.epoch, live.version, live.n))
        return hit is not None and hit.sql is None

    def allowed(self, conn: Any, live: LiveVectors, where: Mapping[str, Any] | None, *,
                may_estimate: bool = False, wkey: str | None = None) -> Allowed:
        """Which live rows match ``where`` (cached per filter and version)."""
        if not where:
            return Allowed(None, live.n_alive, "no filter")
        key = (wkey or self.filter_key(where), live.epoch, live.version, live.n)
        hit = self._masks.get(key)
        if hit is not None and hit.sql is None:
            self._masks.move_to_end(key)
            return hit
        mask = self.columns.mask(conn, where, live.rids, live.epoch)
        if mask is not None:
            mask &= live.alive
            result = Allowed(mask, int(np.count_nonzero(mask)), "exact count (metadata columns)")
        else:
            sql, params = compile_filter(where)
            if may_estimate and live.n_alive > _SAMPLE_ABOVE:
                return self._estimate(conn, live, sql, params)
            rids = np.array(conn.execute(f"SELECT rid FROM rows WHERE deleted IS NULL AND ({sql})", params)
                            .fetchall(), dtype=np.int64).ravel()
            pos = live.positions(rids)
            held = pos < live.n  # a commit after this view's refresh may add rows it does not hold yet
            held[held] = live.rids[pos[held]] == rids[held]
            mask = np.zeros(live.n, dtype=bool)
            mask[pos[held]] = True
            rids = rids[held]
            result = Allowed(mask, len(rids), "exact count (SQLite)")
        return self._remember(key, result)

    def _remember(self, key: tuple[Any, ...], entry: Allowed) -> Allowed:
        self._masks[key] = entry
        while len(self._masks) > _MASK_CACHE:
            self._masks.popitem(last=False)
        return entry

    def _estimate(self, conn: Any, live: LiveVectors, sql: str, params: list[Any]) -> Allowed:
        """Estimate the match count from a seeded sample of live rows (the filter is checked later)."""
        alive = np.flatnonzero(live.alive)
        sample = live.rids[np.random.default_rng(0).choice(alive, min(_SAMPLE_SIZE, len(alive)), replace=False)]
        hits = conn.execute(
            f"SELECT COUNT(*) FROM rows WHERE rid IN (SELECT value FROM json_each(?)) AND ({sql})",
            [json.dumps(sample.tolist()), *params],
        ).fetchone()[0]
        est = int(round(hits / len(sample) * len(alive)))
        return Allowed(None, est, f"estimated from a sample of {len(sample):,} rows (SQLite)", sql=(sql, params))

    def _check_sql(self, conn: Any, live: LiveVectors, allowed: Allowed, pos: np.ndarray) -> np.ndarray:
        """Mask of candidate positions that pass the filter of an estimated ``allowed``."""
        assert allowed.sql is not None
        sql, params = allowed.sql
        cand = np.unique(pos[pos >= 0])
        rids = live.rids[cand]
        ok = {r for (r,) in conn.execute(
            f"SELECT rid FROM rows WHERE deleted IS NULL AND rid IN (SELECT value FROM json_each(?)) AND ({sql})",
            [json.dumps(rids.tolist()), *params])}
        good = np.zeros(live.n, dtype=bool)
        good[cand[np.isin(rids, list(ok))]] = True
        return good

    # ---------------------------------------------------------------- search
    def run(self, conn: Any, live: LiveVectors, q: np.ndarray, k: int, *, where: Mapping[str, Any] | None,
            exact_fn: ExactFn, floats: Callable[[np.ndarray], np.ndarray], effort: int | None = None,
            exact: bool = False, oversample: float = 4.0, wkey: str | None = None,
            ) -> tuple[np.ndarray, np.ndarray, planner.Plan]:
        """Plan and run a search; returns (scores, live positions or -1, plan)."""
        if self._ann_error is not None and not exact:
            raise self._ann_error
        at = (id(self._ann), live.epoch, live.version, live.n)
        if at != self._misses_at:
            self._plain_misses.clear()
            self._misses_at = at
        ann = None if exact else self._ann
        allowed = self.allowed(conn, live, where, may_estimate=ann is not None, wkey=wkey)
        if ann is None:
            if allowed.sql is not None:  # pragma: no cover - estimates are only made with an index
                allowed = self.allowed(conn, live, where)
            plan = planner.choose(live.n_alive, allowed.count, k, None, estimate_source=allowed.source,
                                  n_queries=len(q))
            if exact:
                plan.reason = "exact=True"
            s, pos = exact_fn(q, k, allowed.mask, allowed.count, allowed.cache)
            return s, pos, plan
        label_pos, held, covered = self._label_map(live, ann)
        base = allowed.mask if allowed.mask is not None else live.alive
        labels = self._label_set(allowed, label_pos, held, ann, live)
        n_lab = labels.count
        tail_mask = None
        tail_count = 0
        if covered < live.n:
            tail_mask = np.zeros(live.n, dtype=bool)
            tail_mask[covered:] = base[covered:]
            tail_count = int(np.count_nonzero(tail_mask))
        if allowed.sql is not None:  # estimated: the index fraction is estimated too
            n_lab = min(ann.n, allowed.count)
        plan = self._plan(ann, live, allowed, k, effort, n_lab, len(q), tail_count)
        if allowed.sql is not None and not plan.path.endswith("post-filter"):
            # only estimated, and the plan needs the allowed rows themselves: let SQLite list them now
            plan = copy.copy(plan)  # annotated; the cached plan stays as chosen
            allowed = self.allowed(conn, live, where, wkey=wkey)
            plan.estimate_source += f"; then counted exactly ({allowed.count:,})"
            base = allowed.mask if allowed.mask is not None else live.alive
            labels = self._label_set(allowed, label_pos, held, ann, live)
            n_lab = labels.count
            if tail_mask is not None:
                tail_mask[covered:] = base[covered:]
                tail_count = int(np.count_nonzero(tail_mask))
        if plan.path == "exact":
            s, pos = exact_fn(q, k, allowed.mask, allowed.count, allowed.cache)
            return s, pos, plan
        kk = k if ann.exact_scores else max(k, math.ceil(k * oversample))
        if plan.path.endswith("post-filter"):
            want = max(kk, math.ceil(k * planner.POST_FILTER_SAFETY / max(n_lab / max(ann.n, 1), 1e-9)) + k)
            s, lab = ann.search(q, want, effort=max(plan.effort or 0, want))
            pos = np.where(lab >= 0, label_pos[np.maximum(lab, 0)], -1)
            if allowed.sql is not None:
                ok = self._check_sql(conn, live, allowed, pos) & live.alive
                keep = (lab >= 0) & ok[np.maximum(pos, 0)]
            else:
                keep = (lab >= 0) & labels.mask[np.maximum(lab, 0)]
            s = np.where(keep, s, -np.inf)
            s, pos = merge_topk([(s, np.where(keep, pos, -1))], kk)
        else:
            bitmap = labels.bitmap if n_lab < ann.n else None
            s, lab = ann.search(q, kk, effort=plan.effort, allow=bitmap, two_hop=plan.two_hop)
            pos = np.where(lab >= 0, label_pos[np.maximum(lab, 0)], -1)
        if not ann.exact_scores:
            s, pos = rescore(q, pos, floats, k, self.metric)
        else:
            s, pos = s[:, :k], pos[:, :k]
        if tail_count:
            ts, tp = exact_fn(q, k, tail_mask, tail_count, None)
            s, pos = merge_topk([(s, pos), (ts, tp)], k)
        total = allowed.count if allowed.sql is None else None
        need = min(k, total) if total is not None else k
        if need == 0 or pos[:, need - 1].min() >= 0:  # hits are sorted, -1 last: the k-th is there
            return s, pos, plan
        short = np.flatnonzero(pos[:, need - 1] < 0)
        if allowed.sql is not None:  # only estimated so far: count exactly, then re-run the short queries
            allowed = self.allowed(conn, live, where)
            short = np.flatnonzero(np.count_nonzero(pos >= 0, axis=1) < min(k, allowed.count))
        if len(short):
            plan = copy.copy(plan)
            fs, fp = exact_fn(q[short], k, allowed.mask, allowed.count, allowed.cache)
            s, pos = s.copy(), pos.copy()
            s[short], pos[short] = fs, fp
            plan.fallback = len(short)
        return s, pos, plan

    # ---------------------------------------------------------------- plans
    def _plan(self, ann: AnnIndex, live: LiveVectors, allowed: Allowed, k: int, effort: int | None, n_lab: int,
              n_queries: int, tail_count: int) -> planner.Plan:
        """The planner's choice for these inputs (cached: the same inputs always give the same plan)."""
        # a filter's rows are gathered on its first exact scan and kept (if small): later scans cost less
        gathered = (allowed.mask is not None and allowed.count < GATHER_FRACTION * live.n
                    and allowed.count * self.dim * 4 <= GATHER_CACHE_BYTES)
        n_queries = _batch_bucket(n_queries)
        key = (id(ann), live.n_alive, allowed.count, allowed.source, k, effort, n_lab, n_queries, tail_count, gathered)
        plan = self._plans.get(key)
        if plan is None:
            walks = ann.walk_calibration  # None: the planner's uncalibrated ratios
            measured = ({"two_hop_ef_ratio": walks["ef_ratio"], "two_hop_time_ratio": walks["time_ratio"]}
                        if walks else {})
            stats = planner.IndexStats(ann.params.kind, ann.n, ann.params.M, ann.params.effort,
                                       int(ann.params.nlist or 1), ann.filter_rule, **measured)
            plan = planner.choose(live.n_alive, allowed.count, k, stats, effort=effort,
                                  estimate_source=allowed.source, index_rows_allowed=n_lab, n_queries=n_queries,
                                  gathered=gathered)
            plan.tail_rows = tail_count
            if len(self._plans) > 256:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    # ------------------------------------------------------------- hot path
    def plain(self, live: LiveVectors, q: np.ndarray, k: int, effort: int | None, wkey: str | None,
              mode: int, hit_type: type) -> list[list[Any]] | None:
        """A graph walk answers alone: ``hit_type(id, score, None, None)`` hits per query, best first - or ``None``.

        Taken when :meth:`run` would walk the index and do nothing else: an index whose
        scores are exact (not ``sq8``), no rows committed since the build (no tail to
        merge), and either no filter and no deletions, or a filter (``wkey``) whose
        allowed labels are cached at this version and whose plan is the filtered walk.
        ``None`` otherwise, or when a query comes back with fewer than ``k`` hits: the
        general path then answers (and falls back to exact search where needed).
        ``mode``: 0 the FAISS distance is the score (dot, or cosine of normalised
        queries), 2 l2 (its square root).
        """
        found = self._known_walk(live, k, effort, wkey, len(q))
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

    def plain_hits(self, live: LiveVectors, q: np.ndarray, k: int, effort: int | None, wkey: str | None,
                   mode: int, hit_type: type) -> Any:
        """One float32 query ``(d,)`` answered as ``hit_type(id, score, None, None)`` hits by the C walk.

        The walk and every Python object of the answer are made in one C call (see
        ``_walk.Graph.search_hits``; ``mode``: 0 dot, 1 cosine, 2 l2 scores). ``None`` as in
        :meth:`plain`; ``NotImplemented`` when the index has no C walk (IVF, ``sq8``, or the
        extension not built): the caller then takes :meth:`plain`.
        """
        ann = self._ann
        walker = ann.walker() if ann is not None else None
        if walker is None:
            return NotImplemented
        found = self._known_walk(live, k, effort, wkey, 1)
        if found is None:
            return None
        _, (walk_effort, bitmap, two_hop), _ = found
        return walker.search_hits(q, k, walk_effort, bitmap, self._plain_id_list, mode, hit_type, two_hop)

    def _known_walk(self, live: LiveVectors, k: int, effort: int | None, wkey: str | None,
                    n_queries: int) -> tuple[AnnIndex, tuple[int, np.ndarray | None, bool], np.ndarray] | None:
        """(index, (walk effort, bitmap, two_hop), id per label) of a search the walk answers alone, or ``None``."""
        ann = self._ann
        if ann is None or self._ann_error is not None or k > ann.n:
            return None
        key = (id(ann), live.epoch, live.version, live.n)
        state = self._plain
        if state is None or state[0] != key:
            ids = self._plain_ids(live, ann)
            state = self._plain = (key, ids)
            self._plain_id_list = ids.tolist() if ids is not None else []
            self._plain_walks = {}
        ids = state[1]
        if ids is None:
            return None
        walk_key = _walk_key(wkey, k, effort, n_queries)
        known = self._plain_walks.get(walk_key)  # the same search at this version: the same walk
        if known is None:
            known = self._plain_walk(live, ann, k, effort, wkey, walk_key)
            if known is None:
                return None
            if len(self._plain_walks) >= 64:  # many one-off filters at one version: start over
                self._plain_walks.clear()
            self._plain_walks[walk_key] = known
        return ann, known, ids

    def _plain_walk(self, live: LiveVectors, ann: AnnIndex, k: int, effort: int | None, wkey: str | None,
                    walk_key: tuple[Any, ...]) -> tuple[int, np.ndarray | None, bool] | None:
        """(effort, bitmap) of the walk that answers this search alone, or ``None`` (see :meth:`plain`)."""
        if wkey is None:
            if live.n_alive != live.n:
                return None
            allowed, bitmap, n_lab = Allowed(None, live.n_alive, "no filter"), None, ann.n
        else:
            allowed = self._masks.get((wkey, live.epoch, live.version, live.n))
            labels = allowed.labels.get(id(ann)) if allowed is not None and allowed.sql is None else None
            if labels is None:
                return None
            n_lab = labels.count
            bitmap = labels.bitmap if n_lab < ann.n else None
        plan = self._plan(ann, live, allowed, k, effort, n_lab, walk_key[3], 0)  # [3]: the batch bucket
        if plan.path not in (ann.params.kind, ann.params.kind + "+filter") or not plan.effort:
            self._plain_misses.add(walk_key)  # until the next commit (see run)
            return None
        return plan.effort, bitmap, plan.two_hop

    def plain_skipped(self, wkey: str | None, k: int, effort: int | None, n_queries: int) -> bool:
        """True when :meth:`plain` found, since the last commit, that this search is planned other than as a walk."""
        return _walk_key(wkey, k, effort, n_queries) in self._plain_misses

    def _plain_ids(self, live: LiveVectors, ann: AnnIndex) -> np.ndarray | None:
        """Each label's id, when the index's walk alone can answer (exact scores, no tail, every label held)."""
        label_pos, held, covered = self._label_map(live, ann)
        if not ann.exact_scores or covered < live.n or not held.all():
            return None
        return live.ids[label_pos]

    def _label_set(self, allowed: Allowed, label_pos: np.ndarray, held: np.ndarray, ann: AnnIndex,
                   live: LiveVectors) -> LabelSet:
        """Labels of ``ann`` whose rows ``allowed`` lets through, cached with the filter (or with liveness)."""
        owner = allowed
        if allowed.mask is None:  # no filter: the labels of live rows, cached per version
            key = ("alive", id(ann), live.epoch, live.version)
            owner = self._masks.get(key) or self._remember(key, Allowed(None, live.n_alive, "live rows"))
        labels = owner.labels.get(id(ann))
        if labels is None:
            base = allowed.mask if allowed.mask is not None else live.alive
            labels = owner.labels[id(ann)] = LabelSet(held & base[label_pos])
        return labels

    # ---------------------------------------------------------------- funnel
    def funnel(self, live: LiveVectors, x: np.ndarray, q: np.ndarray, stages: list[tuple[int, int]],
               allowed: Allowed) -> tuple[np.ndarray, np.ndarray]:
        """Funnel search over the float matrix ``x`` of the live view (see :mod:`vecbox.index.funnel`)."""
        d1 = stages[0][0]
        key = (live.epoch, live.n)
        cached = self._prefix.get(d1)
        if cached is None or cached[0][0] != live.epoch or cached[0][1] > live.n:
            prefix = prefix_matrix(x, d1, self.metric)
        elif cached[0][1] < live.n:
            prefix = np.concatenate([cached[1], prefix_matrix(x[cached[0][1]:], d1, self.metric)])
        else:
            prefix = cached[1]
        self._prefix = {d1: (key, prefix)}
        valid = allowed.mask if allowed.mask is not None else (None if live.n_alive == live.n else live.alive)
        return funnel_search(x, q, stages, self.metric, prefix, valid=valid)
