"""Which rows a search may return: filters parsed once, allowed-row masks and their caches.

:class:`Selection` is one collection handle's memory of filters:

* :meth:`Selection.parse` turns a ``where`` dict into a :class:`~vecbox.query.filters.Filter`
  once. The canonical JSON of a 500-name ``$in`` list costs ~30 us, a fifth of a graph
  walk, so the filter of each of the last few ``where`` objects is remembered with a deep
  copy of it and reused while the object still equals that copy (a C-level comparison,
  ~1 us; a filter mutated in place no longer equals its copy and is parsed again). Filters
  equal to one seen recently share its parse.
* :meth:`Selection.allowed` gives the live rows a filter lets through (an :class:`Allowed`),
  from the in-memory metadata columns (:mod:`vecbox.query.columns`) or, when those cannot
  answer exactly, from SQLite; cached per filter and version for the 8 most recent filters,
  so a repeated filter (a tenant, a language) costs nothing after its first search. Above
  200k rows a filter SQLite must answer is first *estimated* on a seeded sample of 2,000
  rows (the plan may not need the full row set).
* the labels of the ANN index those rows are (:class:`LabelSet`, with FAISS's packed
  bitmap), kept with each cached filter.
"""

from __future__ import annotations

import copy
import sqlite3
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from vecbox.query.columns import MetadataColumns
from vecbox.query.filters import Filter, filter_key
from vecbox.storage import catalog
from vecbox.storage.live import LiveVectors

MASK_CACHE = 8  # filters whose masks are kept (LRU)
SAMPLE_ABOVE = 200_000  # rows: above this, a filter SQLite must evaluate is first estimated on a sample
SAMPLE_SIZE = 2_000
GATHER_FRACTION = 0.5  # an exact scan copies the allowed rows out below this share, else masks the rest
GATHER_CACHE_BYTES = 32 << 20  # a cached filter keeps its gathered rows (for exact scans) up to this size
_PARSED = 64  # parsed filters remembered by key
_MEMO = 16  # where objects remembered by identity

NO_FILTER = Filter.parse(None)


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
    """Rows a search may return: ``mask`` over the live view (``None`` = every live row).

    ``estimated`` is the filter still to be checked on candidates when the count was only
    estimated from a sample (``None``: ``mask``/``count`` are exact).
    """

    __slots__ = ("mask", "count", "source", "labels", "estimated", "cache")

    def __init__(self, mask: np.ndarray | None, count: int, source: str, estimated: Filter | None = None):
        self.mask = mask
        self.count = count
        self.source = source
        self.labels: dict[int, LabelSet] = {}  # per ANN index (by id)
        self.estimated = estimated
        self.cache: dict[str, Any] = {}  # the exact scan's gathered rows, reused by repeated filters


class Selection:
    """Filter parses, allowed-row masks and label sets of one collection handle (not shared between processes)."""

    def __init__(self) -> None:
        self.columns = MetadataColumns()
        self._masks: OrderedDict[tuple[Any, ...], Allowed] = OrderedDict()
        self._memo: dict[int, tuple[Any, Any, Filter]] = {}  # id(where) -> (where, deep copy, parse)
        self._parsed: OrderedDict[str, Filter] = OrderedDict()  # key -> parse

    # ---------------------------------------------------------------- parsing
    def parse(self, where: Mapping[str, Any] | None) -> Filter:
        """The :class:`Filter` of ``where`` (remembered; raises :class:`FilterError` when malformed)."""
        if not where:
            return NO_FILTER if where is None else Filter.parse(where)
        memo = self._memo.get(id(where))
        if memo is not None and memo[0] is where and memo[1] == where:
            return memo[2]
        try:
            key = filter_key(where)
        except (TypeError, ValueError):  # not JSON-able: the parser words the error
            return Filter.parse(where)
        flt = self._parsed.get(key)
        if flt is None:
            flt = Filter.parse(where, key=key)
            self._parsed[key] = flt
            while len(self._parsed) > _PARSED:
                self._parsed.popitem(last=False)
        try:
            snapshot = copy.deepcopy(where)
        except Exception:  # an odd object in the filter: no memo, the parse alone is right
            return flt
        if len(self._memo) >= _MEMO:
            self._memo.clear()
        self._memo[id(where)] = (where, snapshot, flt)  # holding `where` keeps its id from being reused
        return flt

    # ------------------------------------------------------------------ masks
    def cached(self, flt: Filter, live: LiveVectors) -> Allowed | None:
        """The filter's exactly known allowed rows at the live view's version, if cached (no SQLite needed)."""
        hit = self._masks.get((flt.key, live.epoch, live.version, live.n))
        return hit if hit is not None and hit.estimated is None else None

    def allowed(self, conn: sqlite3.Connection, live: LiveVectors, flt: Filter, *,
                may_estimate: bool = False) -> Allowed:
        """Which live rows match ``flt`` (cached per filter and version)."""
        if flt.empty:
            return Allowed(None, live.n_alive, "no filter")
        key = (flt.key, live.epoch, live.version, live.n)
        hit = self._masks.get(key)
        if hit is not None and hit.estimated is None:
            self._masks.move_to_end(key)
            return hit
        mask = self.columns.mask(conn, flt, live.rids, live.epoch)
        if mask is not None:
            mask &= live.alive
            source = "exact count (metadata columns)"
            slips = self.columns.type_mismatches(flt)
            if slips:  # visible in explain (the plan's estimate_source) and warned about once per filter
                source += "; warning: " + "; ".join(slips)
                warnings.warn(f"filter {flt.key}: " + "; ".join(slips), RuntimeWarning, stacklevel=5)
            result = Allowed(mask, int(np.count_nonzero(mask)), source)
        else:
            if may_estimate and live.n_alive > SAMPLE_ABOVE:
                return self._estimate(conn, live, flt)
            rids = np.array(catalog.matching_rids(conn, flt.where_sql), dtype=np.int64)
            pos = live.positions(rids)
            held = pos < live.n  # a commit after this view's refresh may add rows it does not hold yet
            held[held] = live.rids[pos[held]] == rids[held]
            mask = np.zeros(live.n, dtype=bool)
            mask[pos[held]] = True
            result = Allowed(mask, int(np.count_nonzero(held)), "exact count (SQLite)")
        return self.remember(key, result)

    def remember(self, key: tuple[Any, ...], entry: Allowed) -> Allowed:
        self._masks[key] = entry
        while len(self._masks) > MASK_CACHE:
            self._masks.popitem(last=False)
        return entry

    def _estimate(self, conn: sqlite3.Connection, live: LiveVectors, flt: Filter) -> Allowed:
        """Estimate the match count from a seeded sample of live rows (the filter is checked later)."""
        alive = np.flatnonzero(live.alive)
        sample = live.rids[np.random.default_rng(0).choice(alive, min(SAMPLE_SIZE, len(alive)), replace=False)]
        hits = catalog.count_matching(conn, flt.where_sql, among=sample.tolist())
        est = int(round(hits / len(sample) * len(alive)))
        return Allowed(None, est, f"estimated from a sample of {len(sample):,} rows (SQLite)", estimated=flt)

    @staticmethod
    def check_estimated(conn: sqlite3.Connection, live: LiveVectors, allowed: Allowed, pos: np.ndarray) -> np.ndarray:
        """Mask over the live view of the candidate positions ``pos`` that pass an estimated filter."""
        assert allowed.estimated is not None
        cand = np.unique(pos[pos >= 0])
        rids = live.rids[cand]
        ok = catalog.matching_rids(conn, allowed.estimated.where_sql, among=rids.tolist())
        good = np.zeros(live.n, dtype=bool)
        good[cand[np.isin(rids, ok)]] = True
        return good

    # ----------------------------------------------------------------- labels
    def label_set(self, allowed: Allowed, label_pos: np.ndarray, held: np.ndarray, index_id: int,
                  live: LiveVectors) -> LabelSet:
        """Labels of an index whose rows ``allowed`` lets through, cached with the filter (or with liveness)."""
        owner = allowed
        if allowed.mask is None:  # no filter: the labels of live rows, cached per version
            key = ("alive", index_id, live.epoch, live.version)
            owner = self._masks.get(key) or self.remember(key, Allowed(None, live.n_alive, "live rows"))
        labels = owner.labels.get(index_id)
        if labels is None:
            base = allowed.mask if allowed.mask is not None else live.alive
            labels = owner.labels[index_id] = LabelSet(held & base[label_pos])
        return labels


__all__ = ["Allowed", "GATHER_CACHE_BYTES", "GATHER_FRACTION", "LabelSet", "NO_FILTER", "Selection"]
