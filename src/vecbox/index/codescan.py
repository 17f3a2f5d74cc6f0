"""Two-stage search over codes: scan the codes, then rescore a shortlist exactly.

A candidate generator like :mod:`vecbox.index.flat`, over a codec's codes (:mod:`vecbox.codecs`).

Stage 1 asks the codec for the best ``ceil(k * oversample)`` rows per query.
Stage 2, when float vectors are available (``fetch``), recomputes their exact
scores and keeps the best ``k``; otherwise the codec's own estimates rank them.
Knows nothing of storage: ``fetch(rows)`` returns the float vectors of those rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from vecbox.codecs import Codec
from vecbox.index.flat import rescore

def two_stage_search(
    codec: Codec,
    q: np.ndarray,
    codes: np.ndarray,
    k: int,
    *,
    oversample: float = 4.0,
    metric: str = "dot",
    valid: np.ndarray | None = None,
    fetch: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` rows of ``codes`` per query: codec scan of ``k * oversample``, then exact rescoring.

    Parameters
    ----------
    codec : Codec
        Fitted codec that made ``codes``.
    q : ndarray (m, d) float32
        Queries (normalised already for cosine).
    codes : ndarray (n, bytes_per_vector) uint8
    k : int
    oversample : float
        Shortlist size factor (>= 1).
    metric : {"dot", "cosine", "l2"}
    valid : ndarray (n,) bool, optional
        Rows allowed in the result.
    fetch : callable, optional
        ``fetch(rows) -> (len(rows), d) float32``; without it the shortlist is ranked by codec estimates.

    Returns
    -------
    scores, idx : ndarray (m, k)
        Best first, higher is better, in :func:`vecbox.index.flat.exact_topk`'s convention
        (inner products; ``2 q.x - |x|²`` for l2). Missing results: ``-inf`` / -1.
    """
    l2 = metric == "l2"
    kk = min(max(k, math.ceil(k * oversample)), len(codes))
    s, idx = codec.search(q, codes, kk, metric=metric, valid=valid)
    if fetch is None:
        if l2:  # codec scores are -|q - x|²; add |q|² back for the 2 q.x - |x|² convention
            s = s + np.einsum("ij,ij->i", q, q)[:, None]
        return _pad(s[:, :k], idx[:, :k], k)
    return rescore(q, idx, fetch, k, metric)


def _pad(scores: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if scores.shape[1] < k:
        extra = k - scores.shape[1]
        scores = np.pad(scores, ((0, 0), (0, extra)), constant_values=-np.inf)
        idx = np.pad(idx, ((0, 0), (0, extra)), constant_values=-1)
    return scores, idx
