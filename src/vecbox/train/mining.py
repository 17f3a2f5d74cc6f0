"""Hard negatives from a vecbox collection, with NV-Embed's positive-aware filter.

For each training pair, the collection's nearest documents to the anchor are candidates. Many
of the nearest are unlabelled positives (false negatives), so a candidate is dropped when it
scores at or above ``ratio`` times the positive's own score (NV-Embed's "TopK-PercPos", ratio
0.95), and, with ``margin``, at or above the positive's score minus ``margin`` (the "TopK-MarginPos"
variant). The positive's own document never counts. The highest-scoring survivors are the hard
negatives. Scores are the collection's similarities (cosine or dot; higher = more similar).

>>> positive_aware_filter(np.array([0.95, 0.86, 0.85, 0.5]), 0.9).tolist()   # 0.95 * 0.9 = 0.855
[False, False, True, True]
>>> positive_aware_filter(np.array([0.95, 0.86, 0.85, 0.5]), 0.9, margin=0.1).tolist()
[False, False, False, True]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from vecbox._validation import as_matrix, check_positive_int
from vecbox.errors import InvalidInputError
from vecbox.results import Hit
from vecbox.train.pairs import Pair


def positive_aware_filter(scores: np.ndarray, positive_score: float, *, ratio: float = 0.95,
                          margin: float | None = None) -> np.ndarray:
    """Mask of the candidates kept: ``score < ratio * positive_score`` (and ``< positive_score - margin``)."""
    scores = np.asarray(scores, dtype=np.float64)
    keep = scores < ratio * positive_score
    if margin is not None:
        keep &= scores < positive_score - margin
    return keep


def _check_options(ratio: float, margin: float | None, n_negatives: int, candidates: int) -> None:
    if not 0.0 < float(ratio) <= 1.0:
        raise InvalidInputError(f"ratio must be in (0, 1] (NV-Embed uses 0.95); got {ratio}")
    if margin is not None and not float(margin) >= 0.0:
        raise InvalidInputError(f"margin must be >= 0; got {margin}")
    check_positive_int(n_negatives, "n_negatives")
    if check_positive_int(candidates, "candidates") < n_negatives:
        raise InvalidInputError(f"candidates ({candidates}) must be >= n_negatives ({n_negatives})")


def mine_negatives(collection: Any, queries: Any, positives: Any, positive_ids: Sequence[str | None], *,
                   n_negatives: int = 1, candidates: int = 50, ratio: float = 0.95, margin: float | None = None,
                   include_documents: bool = False) -> list[list[Hit]]:
    """The hard negatives of each query (vectors ``(n, d)``), best first: the collection's top
    ``candidates`` less the positive's document (``positive_ids[i]``) and less what the
    positive-aware filter drops, cut to ``n_negatives``. ``positives`` are the positives' vectors,
    scored against their query as the collection scores (cosine or dot)."""
    _check_options(ratio, margin, n_negatives, candidates)
    if collection.metric not in ("cosine", "dot"):
        raise InvalidInputError(f"mining needs similarity scores; {collection.path} uses metric "
                                f"{collection.metric!r} - use a cosine or dot collection")
    q = as_matrix(queries, d=collection.dim, name="queries")
    p = as_matrix(positives, d=collection.dim, name="positives")
    if len(p) != len(q) or len(positive_ids) != len(q):
        raise InvalidInputError(f"got {len(q)} queries, {len(p)} positives and {len(positive_ids)} positive ids; "
                                "give one of each per pair")
    if collection.metric == "cosine":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        pn = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
        pos_scores = np.einsum("ij,ij->i", qn, pn)
    else:
        pos_scores = np.einsum("ij,ij->i", q, p)
    hits = collection.search_batch(q, candidates, include_metadata=include_documents)
    out = []
    for row, pos, pid in zip(hits, pos_scores, positive_ids):
        row = [h for h in row if h.id != pid]
        keep = positive_aware_filter(np.array([h.score for h in row]), float(pos), ratio=ratio, margin=margin)
        out.append([h for h, k in zip(row, keep) if k][:n_negatives])
    return out


def mine_hard_negatives(collection: Any, pairs: Sequence[Pair], *, n_negatives: int = 1, candidates: int = 50,
                        ratio: float = 0.95, margin: float | None = None, encoder: Any = None,
                        show_progress: bool = False) -> list[Pair]:
    """``pairs`` with hard negatives (texts of the collection's documents) added, encoded with the
    collection's model (or ``encoder``, which must be that model at the same setting).

    Pairs whose anchor has no surviving candidate keep no negatives. The collection must store
    its documents (``add_texts`` does).
    """
    _check_options(ratio, margin, n_negatives, candidates)
    if encoder is None:
        encoder = collection.encoder
    elif hasattr(encoder, "check_matches"):
        encoder.check_matches(collection.model, f"collection {collection.path}")
    pairs = list(pairs)
    if not pairs:
        return []
    q = encoder.encode([p.anchor for p in pairs], kind="query", show_progress=show_progress)
    pv = encoder.encode([p.positive for p in pairs], kind="document", show_progress=show_progress)
    found = mine_negatives(collection, q, pv, [p.doc_id for p in pairs], n_negatives=n_negatives,
                           candidates=candidates, ratio=ratio, margin=margin, include_documents=True)
    out = []
    for pair, hits in zip(pairs, found):
        if any(h.document is None for h in hits):
            raise InvalidInputError(f"{collection.path} does not store the documents of its items; mine from a "
                                    "collection filled with add_texts (or add(..., documents=...))")
        negs = tuple(h.document for h in hits if h.document != pair.positive)  # type: ignore[misc]
        out.append(replace(pair, negatives=pair.negatives + negs))
    return out


__all__ = ["mine_hard_negatives", "mine_negatives", "positive_aware_filter"]
