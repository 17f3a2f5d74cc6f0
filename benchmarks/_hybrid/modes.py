"""vecbox's three retrieval modes over one collection: dense, lexical (BM25) and hybrid with each fusion.

Dense: ``col.search(vector, k)`` (exact cosine scan: no ANN index at these sizes). Lexical:
``col.search_lexical(text, k)``. Hybrid: ``col.search(vector, k, text=..., fusion=..., candidates=100)``
(dense top 100 and BM25 top 100, fused). ``include_metadata=False`` throughout: ids and scores only,
as the peers return. A ``vec`` argument overrides the pre-encoded query vector (the timed
"including encoding" paths encode the query first).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .data import Corpus
from .engines import Hits

CANDIDATES = 100  # each retriever's list handed to fusion (vecbox's default)
FUSIONS: dict[str, Any] = {  # label -> fusion spec
    "rrf (k 60)": {"method": "rrf", "k": 60},
    "minmax": "minmax",
    "zscore": "zscore",
    "3sigma": "3sigma",
    "default": "default",
}


class VecboxModes:
    """Search one vecbox collection holding a :class:`Corpus` (ids, vectors, documents)."""

    def __init__(self, col: Any, c: Corpus) -> None:
        self.col, self.c = col, c

    def dense(self, i: int, k: int, vec: np.ndarray | None = None) -> Hits:
        v = self.c.q_vecs[i] if vec is None else vec
        return [(h.id, h.score) for h in self.col.search(v, k, include_metadata=False)]

    def lexical(self, i: int, k: int) -> Hits:
        return [(h.id, h.score) for h in self.col.search_lexical(self.c.queries[i], k, include_metadata=False)]

    def hybrid(self, i: int, k: int, fusion: Any = "default", vec: np.ndarray | None = None,
               candidates: int = CANDIDATES) -> Hits:
        v = self.c.q_vecs[i] if vec is None else vec
        hits = self.col.search(v, k, text=self.c.queries[i], fusion=fusion, candidates=candidates,
                               include_metadata=False)
        return [(h.id, h.score) for h in hits]


    def fusion_inputs(self, i: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The two candidate lists a hybrid search of query ``i`` hands to fusion, as ``(positions, scores)``
        (from ``explain=True``), to time the fusion step alone."""
        plan = self.col.search(self.c.q_vecs[i], 10, text=self.c.queries[i], candidates=CANDIDATES,
                               include_metadata=False, explain=True).plan
        where = self._positions()
        return [(np.array([where[d] for d, _ in hits], dtype=np.int64), np.array([s for _, s in hits]))
                for hits in (plan.dense_hits, plan.lexical_hits)]

    def _positions(self) -> dict[str, int]:
        if not hasattr(self, "_where"):
            self._where = {d: j for j, d in enumerate(self.c.doc_ids)}
        return self._where


def hybrid_available() -> str | None:
    """Why hybrid search cannot run yet (the fusion module has not landed), or None."""
    try:
        from vecbox.query.fusion import Fusion  # noqa: F401
    except ImportError as e:
        return f"vecbox.query.fusion not importable ({e})"
    return None


__all__ = ["CANDIDATES", "FUSIONS", "VecboxModes", "hybrid_available"]
