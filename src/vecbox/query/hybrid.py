"""Lexical and hybrid search over one snapshot: BM25 top-N and dense top-N under the same filter mask, fused.

Both retrievers see the rows the planner allows (:meth:`Selection.allowed
<vecbox.query.selection.Selection.allowed>`): the dense side runs the ordinary plan
(exact scan, filtered walk ...) for ``candidates`` hits, the lexical side scores only the
allowed live rows. So a filter never makes a hybrid search return fewer than ``k`` hits while
``k`` allowed rows match either side, and both lists are over the same rows before fusion
(:mod:`vecbox.query.fusion`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from vecbox.query.executor import Executor
from vecbox.query.filters import Filter
from vecbox.query.fusion import Fusion
from vecbox.query.planner import Plan
from vecbox.storage.reader import Reader
from vecbox.storage.terms import LexicalView

MODES = ("dense", "lexical", "hybrid")


@dataclass
class HybridPlan:
    """What a lexical or hybrid search did (``explain=True``): each retriever's list and how they were fused.

    ``dense`` is the dense side's :class:`~vecbox.query.planner.Plan` (``None`` in lexical
    mode); ``lexical`` holds the query's terms and how many allowed rows matched any of them;
    ``dense_hits`` / ``lexical_hits`` are each retriever's candidates ``(id, score)``, best
    first; ``fusion`` is the fusion's own account (method, constants, weights, normalisation).
    """

    mode: str
    rows_allowed: int
    filter_source: str
    dense: Plan | None = None
    lexical: dict[str, Any] = field(default_factory=dict)
    fusion: dict[str, Any] = field(default_factory=dict)
    dense_hits: list[tuple[str, float]] = field(default_factory=list)
    lexical_hits: list[tuple[str, float]] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.mode if self.dense is None else f"{self.mode} ({self.dense.path} + bm25)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        lex = self.lexical
        parts = [f"{self.mode}: {self.rows_allowed:,} rows allowed ({self.filter_source})",
                 f"lexical: terms {lex.get('terms')} matched {lex.get('matched', 0):,} rows, "
                 f"{len(self.lexical_hits)} candidates"]
        if self.dense is not None:
            parts.append(f"dense: {self.dense} - {len(self.dense_hits)} candidates")
        if self.fusion:
            parts.append("fusion: " + ", ".join(f"{k}={v}" for k, v in self.fusion.items()))
        return "\n".join(parts)


def lexical_candidates(view: LexicalView, reader: Reader, terms: list[str], n: int, mask: np.ndarray | None
                       ) -> tuple[np.ndarray, np.ndarray, int]:
    """BM25 top ``n`` among the allowed live rows: ``(scores, positions, rows matched)``."""
    live = reader.live
    return view.index.top_n(terms, n, live.alive, mask, key=(id(live), live.epoch, live.version))


def run(conn: sqlite3.Connection, reader: Reader, executor: Executor, view: LexicalView, mode: str,
        q: np.ndarray | None, terms: list[str], k: int, flt: Filter, fusion: Fusion, candidates: int, *,
        effort: int | None = None, exact: bool = False, oversample: float = 4.0,
        ) -> tuple[np.ndarray, np.ndarray, HybridPlan, tuple[tuple[np.ndarray, np.ndarray], ...]]:
    """One lexical or hybrid search: ``(scores, positions, plan, per-retriever (scores, positions))``."""
    live = reader.live
    allowed = executor.selection.allowed(conn, live, flt)
    n = max(k, candidates)
    ls, lp, matched = lexical_candidates(view, reader, terms, n, allowed.mask)
    plan = HybridPlan(mode, allowed.count, allowed.source,
                      lexical={"terms": terms, "matched": matched, "k1": view.k1, "b": view.b})
    if mode == "lexical":
        return ls[:k], lp[:k], plan, ((ls, lp),)
    assert q is not None
    ds, dp, dplan = executor.run(conn, reader, q, n, flt, effort=effort, exact=exact, oversample=oversample)
    ds, dp = ds[0], dp[0]
    keep = dp >= 0
    ds, dp = ds[keep].astype(np.float64), dp[keep]
    plan.dense = dplan
    fused = fusion.fuse([(dp, ds), (lp, ls)], k, checked=True)  # unique positions, finite scores
    plan.fusion = fused.details
    return fused.scores, fused.positions, plan, ((ds, dp), (ls, lp))


__all__ = ["HybridPlan", "MODES", "lexical_candidates", "run"]
