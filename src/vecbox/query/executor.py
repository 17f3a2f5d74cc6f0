"""Run one search: plan it, generate candidates (exact scan, code scan, ANN walk, funnel), merge, fall back.

:class:`Executor` is the general path of a search (the fast path, :mod:`vecbox.query.fastpath`,
answers the common id-only walk without it). Given the handle's :class:`~vecbox.storage.reader.Reader`
(live view, codec) and a parsed :class:`~vecbox.query.filters.Filter`, it

1. asks :class:`~vecbox.query.selection.Selection` which rows the filter allows
   (exact, or estimated on a sample when the index may make the full list unnecessary);
2. asks :mod:`vecbox.query.planner` for a plan (cached per inputs);
3. runs it: an exact scan of the allowed rows (:mod:`vecbox.index.flat`, or the code scan
   of :mod:`vecbox.index.codescan` with a codec), the ANN index's filtered or post-filtered
   walk (:mod:`vecbox.index.ann`) plus an exact scan of rows committed after the index was
   built, or a Matryoshka funnel (:mod:`vecbox.index.funnel`);
4. re-runs exactly any query that came back with fewer than ``min(k, matches)`` hits.

It also holds the ANN index, loaded when a search first needs it (exact searches never read it).
A damaged index (unreadable files) never breaks a search: searches run exactly, say so in the
plan's reason and in one :class:`RuntimeWarning`, and :meth:`Executor.index_problem` reports it
until the index is rebuilt or dropped.
"""

from __future__ import annotations

import copy
import math
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from vecbox.errors import CorruptCollectionError, InvalidInputError
from vecbox.index.ann import AnnIndex, damaged_message
from vecbox.index.codescan import two_stage_search
from vecbox.index.flat import exact_topk, merge_topk, rescore
from vecbox.index.funnel import funnel_search, prefix_matrix
from vecbox.query import planner
from vecbox.query.filters import Filter
from vecbox.query.selection import GATHER_CACHE_BYTES, GATHER_FRACTION, Allowed, Selection
from vecbox.storage.live import LiveVectors
from vecbox.storage.reader import Reader


def batch_bucket(n_queries: int) -> int:
    """Batches share a plan: beyond 64 queries an exact scan's per-call setup cost is noise."""
    return min(n_queries, 64)


class Executor:
    """Search state and execution of one collection handle: the loaded index, plans, selections, funnel prefixes."""

    def __init__(self, root: Path, dim: int, metric: str) -> None:
        self.root = root
        self.dim = dim
        self.metric = metric
        self.selection = Selection()
        self._ann: AnnIndex | None = None  # the loaded index (None: none, or a damaged one)
        self._ann_cfg: Any = None  # the config of the index loaded (or found damaged)
        self._want: Any = None  # the catalog's index config as of the last sync: loaded on first use
        self._ann_error: CorruptCollectionError | None = None
        self._warned: Any = None  # the index config whose damage was warned about
        self._labels: tuple[tuple[Any, ...], np.ndarray, np.ndarray, int] | None = None
        self._prefix: dict[int, tuple[tuple[Any, ...], np.ndarray]] = {}
        self._plans: dict[tuple[Any, ...], planner.Plan] = {}  # the same inputs always give the same plan

    # ------------------------------------------------------------------ index
    def index(self, cfg: dict[str, Any] | None) -> None:
        """Follow the catalog's ``index`` config ``cfg`` (at a sync): the index it names is loaded when a
        search first needs it (:attr:`ann`), so exact searches of a fresh handle never read it."""
        self._want = cfg
        self.poll()

    @property
    def ann(self) -> AnnIndex | None:
        """The index the last sync's config names, loaded now if it changed (``None``: none, or damaged).

        Read right after a sync, as every search does: the catalog then still names this directory
        (a rebuild since would have been seen), so retired files are not what gets loaded.
        """
        cfg = self._want
        if cfg != self._ann_cfg:
            self._ann, self._ann_error = None, None
            try:
                self._ann = AnnIndex.load(self.root / cfg["dir"]) if cfg else None
            except CorruptCollectionError as exc:  # searches run exactly until it is rebuilt
                self._ann_error = exc
            self._ann_cfg = cfg
            self._labels = None
        return self._ann

    @property
    def has_index(self) -> bool:
        """Whether the last sync's config names an index not (yet) found damaged; loads nothing."""
        return self._want is not None and (self._ann is not None or self._want != self._ann_cfg)

    def poll(self) -> None:
        """Drop the index if a background check of its files found damage (searches then run exactly)."""
        ann = self._ann
        if ann is not None and ann.pending:
            why = ann.problem()
            if why is not None and self._ann_cfg:
                self._ann, self._labels = None, None
                self._ann_error = CorruptCollectionError(damaged_message(self.root / self._ann_cfg["dir"], why))

    def set_index(self, ann: AnnIndex | None, cfg: Any) -> None:
        """Adopt an index this handle just built (saves re-reading it from disk)."""
        self._ann, self._ann_cfg, self._want, self._labels, self._ann_error = ann, cfg, cfg, None, None

    def index_problem(self) -> str | None:
        """Why the catalog's index cannot be used (``None``: it can, or there is none)."""
        if self.ann is None and self._ann_error is not None:  # (damage is found by loading it)
            return str(self._ann_error)
        return None

    def label_map(self, live: LiveVectors, ann: AnnIndex) -> tuple[np.ndarray, np.ndarray, int]:
        """(position of each label in the live view, label's row still held, rows covered by the index)."""
        key = (id(ann), live.epoch, live.n)
        if self._labels is None or self._labels[0][:2] != key[:2] or self._labels[0][2] > live.n:
            pos = live.positions(ann.rids)
            pos_c = np.minimum(pos, max(live.n - 1, 0))
            held = (pos < live.n) & (live.rids[pos_c] == ann.rids) if live.n else np.zeros(ann.n, bool)
            covered = int(np.searchsorted(live.rids, ann.max_rid, side="right"))
            self._labels = (key, pos_c, held, covered)
        return self._labels[1], self._labels[2], self._labels[3]

    # ------------------------------------------------------------------ plans
    def plan(self, ann: AnnIndex, live: LiveVectors, allowed: Allowed, k: int, effort: int | None, n_lab: int,
             n_queries: int, tail_count: int) -> planner.Plan:
        """The planner's choice for these inputs (cached: the same inputs always give the same plan)."""
        # a filter's rows are gathered on its first exact scan and kept (if small): later scans cost less
        gathered = (allowed.mask is not None and allowed.count < GATHER_FRACTION * live.n
                    and allowed.count * self.dim * 4 <= GATHER_CACHE_BYTES)
        n_queries = batch_bucket(n_queries)
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

    # ------------------------------------------------------------------- run
    def run(self, conn: sqlite3.Connection, reader: Reader, q: np.ndarray, k: int, flt: Filter, *,
            effort: int | None = None, exact: bool = False, oversample: float = 4.0,
            ) -> tuple[np.ndarray, np.ndarray, planner.Plan]:
        """Plan and run a search; returns (scores, live positions or -1, plan)."""
        live = reader.live
        k = min(k, max(live.n_alive, 1))  # a huge k costs no more memory than the rows there are
        self.index(reader.index_cfg)  # (and drops it if a background check found it damaged)
        ann = None if exact else self.ann  # an exact search does not load the index
        damaged = not exact and self._ann_error is not None
        sel = self.selection
        allowed = sel.allowed(conn, live, flt, may_estimate=ann is not None)
        if ann is None:
            plan = planner.choose(live.n_alive, allowed.count, k, None, estimate_source=allowed.source,
                                  n_queries=len(q))
            if exact:
                plan.reason = "exact=True"
            elif damaged:
                plan.reason = f"the index is damaged, so this search ran exactly: {self._ann_error}"
                self._warn_damaged()
            s, pos = self.exact(reader, q, k, allowed.mask, allowed.count, oversample, allowed.cache)
            return s, pos, plan
        label_pos, held, covered = self.label_map(live, ann)
        base = allowed.mask if allowed.mask is not None else live.alive
        labels = sel.label_set(allowed, label_pos, held, id(ann), live)
        n_lab = labels.count
        tail_mask = None
        tail_count = 0
        if covered < live.n:
            tail_mask = np.zeros(live.n, dtype=bool)
            tail_mask[covered:] = base[covered:]
            tail_count = int(np.count_nonzero(tail_mask))
        if allowed.estimated is not None:  # estimated: the index fraction is estimated too
            n_lab = min(ann.n, allowed.count)
        plan = self.plan(ann, live, allowed, k, effort, n_lab, len(q), tail_count)
        if allowed.estimated is not None and not plan.path.endswith("post-filter"):
            # only estimated, and the plan needs the allowed rows themselves: let SQLite list them now
            plan = copy.copy(plan)  # annotated; the cached plan stays as chosen
            allowed = sel.allowed(conn, live, flt)
            plan.estimate_source += f"; then counted exactly ({allowed.count:,})"
            base = allowed.mask if allowed.mask is not None else live.alive
            labels = sel.label_set(allowed, label_pos, held, id(ann), live)
            n_lab = labels.count
            if tail_mask is not None:
                tail_mask[covered:] = base[covered:]
                tail_count = int(np.count_nonzero(tail_mask))
        if plan.path == "exact":
            s, pos = self.exact(reader, q, k, allowed.mask, allowed.count, oversample, allowed.cache)
            return s, pos, plan
        kk = k if ann.exact_scores else max(k, math.ceil(k * max(oversample, ann.rescore_factor)))
        if plan.path.endswith("post-filter"):
            want = max(kk, math.ceil(k * planner.POST_FILTER_SAFETY / max(n_lab / max(ann.n, 1), 1e-9)) + k)
            s, lab = ann.search(q, want, effort=max(plan.effort or 0, want))
            pos = np.where(lab >= 0, label_pos[np.maximum(lab, 0)], -1)
            if allowed.estimated is not None:
                ok = sel.check_estimated(conn, live, allowed, pos) & live.alive
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
            s, pos = rescore(q, pos, reader.vectors, k, self.metric, rows=reader.float_rows)
        else:
            s, pos = s[:, :k], pos[:, :k]
        if tail_count:
            ts, tp = self.exact(reader, q, k, tail_mask, tail_count, oversample, None)
            s, pos = merge_topk([(s, pos), (ts, tp)], k)
        total = allowed.count if allowed.estimated is None else None
        need = min(k, total) if total is not None else k
        if need == 0 or pos[:, need - 1].min() >= 0:  # hits are sorted, -1 last: the k-th is there
            return s, pos, plan
        short = np.flatnonzero(pos[:, need - 1] < 0)
        if allowed.estimated is not None:  # only estimated so far: count exactly, then re-run the short queries
            allowed = sel.allowed(conn, live, flt)
            short = np.flatnonzero(np.count_nonzero(pos >= 0, axis=1) < min(k, allowed.count))
        if len(short):
            plan = copy.copy(plan)
            fs, fp = merge_topk([self.exact(reader, q[short], k, allowed.mask, allowed.count, oversample,
                                            allowed.cache)], s.shape[1])
            s, pos = s.copy(), pos.copy()
            s[short], pos[short] = fs, fp
            plan.fallback = len(short)
        return s, pos, plan

    def _warn_damaged(self) -> None:
        if self._warned != self._ann_cfg:
            self._warned = self._ann_cfg
            warnings.warn(f"{self._ann_error} - searches run exactly meanwhile", RuntimeWarning, stacklevel=4)

    # ------------------------------------------------------------ exact scans
    def exact(self, reader: Reader, q: np.ndarray, k: int, mask: np.ndarray | None, count: int,
              oversample: float, cache: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact (or code-scan + rescore) top ``k`` over the rows in ``mask`` (None: every live row).

        ``cache`` (a repeated filter's) keeps the gathered rows: copying them costs more than scoring them.
        Never allocates more than the rows it scans: ``k`` is cut to the number of candidate rows.
        """
        live, codec = reader.live, reader.codec
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
            return np.full((len(q), 0), -np.inf, np.float32), np.full((len(q), 0), -1, np.int64)
        if codec is None:
            scores, idx = exact_topk(x, q, min(k, len(x)), self.metric, valid=valid, sq_norms=sq)
        else:
            scores, idx = self._code_scan(reader, x, q, k, oversample, valid, pos_map)
        if pos_map is not None:
            idx = np.where(idx >= 0, pos_map[np.maximum(idx, 0)], -1)
        return scores, idx

    def _code_scan(self, reader: Reader, codes: np.ndarray, q: np.ndarray, k: int, oversample: float,
                   valid: np.ndarray | None, pos_map: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Scan codes, rescore exactly from disk; indices are into ``codes`` (like exact_topk's)."""
        live = reader.live
        fetch = None
        if reader.keeps_floats:
            def fetch(rows: np.ndarray) -> np.ndarray:
                return live.floats(pos_map[rows] if pos_map is not None else rows)

            if pos_map is not None and len(codes) <= k * oversample:  # few rows match: score them all exactly
                return exact_topk(fetch(np.arange(len(codes))), q, min(k, len(codes)), self.metric)
        return two_stage_search(reader.codec, q, codes, min(k, len(codes)), oversample=oversample,
                                metric=self.metric, valid=valid, fetch=fetch)

    # ----------------------------------------------------------------- funnel
    def funnel(self, conn: sqlite3.Connection, reader: Reader, q: np.ndarray, stages: list[tuple[int, int]],
               flt: Filter) -> tuple[np.ndarray, np.ndarray, planner.Plan]:
        """Matryoshka funnel over the float vectors in RAM (see :mod:`vecbox.index.funnel`)."""
        live, codec, cfg = reader.live, reader.codec, reader.codecs.cfg
        if codec is None:
            x = np.asarray(live.x)  # the funnel keeps a prefix matrix beside the rows: one array (a copy if mapped)
        elif cfg is not None and cfg.variance_ordered_floats:
            x, q = live.x.view(np.float32), codec.transform(q)
        else:
            raise InvalidInputError(
                f"funnel search needs float vectors in RAM in a variance-ordered basis; this collection keeps "
                f"{reader.codecs.spec!r} codes. Use a collection without a codec (Matryoshka-trained model) or "
                "recompress(codec='pca+f32')"
            )
        allowed = self.selection.allowed(conn, live, flt)
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
        scores, pos = funnel_search(x, q, stages, self.metric, prefix, valid=valid)
        plan = planner.Plan("funnel", f"shortlist at {stages[0][0]} dims, rerank at " +
                            ", ".join(str(d) for d, _ in stages[1:]) + " dims", live.n_alive, allowed.count,
                            allowed.source, allowed.count / max(live.n_alive, 1))
        return scores, pos, plan


__all__ = ["Executor", "batch_bucket"]
