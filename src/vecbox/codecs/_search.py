"""Two-stage search over codes: scan the codes, then rescore a shortlist exactly.

Stage 1 asks the codec for the best ``ceil(k * oversample)`` rows per query.
Stage 2, when float vectors are available (``fetch``), recomputes their exact
scores and keeps the best ``k``; otherwise the codec's own estimates rank them.
Knows nothing of storage: ``fetch(rows)`` returns the float vectors of those rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from vecbox.codecs._codec import Codec
from vecbox.codecs._scan import sort_topk

_RESCORE_CHUNK = 256  # queries per einsum over their shortlists


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
    found = idx >= 0
    uniq, inv = np.unique(idx[found], return_inverse=True)
    vecs = fetch(uniq)
    local = np.zeros(idx.shape, dtype=np.int64)
    local[found] = inv
    exact = np.full(idx.shape, -np.inf, dtype=np.float32)
    for start in range(0, len(q), _RESCORE_CHUNK):
        sl = slice(start, start + _RESCORE_CHUNK)
        rows = vecs[local[sl]]  # (chunk, kk, d)
        sc = np.einsum("mkd,md->mk", rows, q[sl])
        if l2:
            sc = 2 * sc - np.einsum("mkd,mkd->mk", rows, rows)
        exact[sl] = np.where(found[sl], sc, -np.inf)
    if exact.shape[1] > k:
        top = np.argpartition(-exact, k - 1, axis=1)[:, :k]
        exact, idx = np.take_along_axis(exact, top, axis=1), np.take_along_axis(idx, top, axis=1)
    scores, idx = sort_topk(exact, idx)
    return _pad(scores, idx, k)


def _pad(scores: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if scores.shape[1] < k:
        extra = k - scores.shape[1]
        scores = np.pad(scores, ((0, 0), (0, extra)), constant_values=-np.inf)
        idx = np.pad(idx, ((0, 0), (0, extra)), constant_values=-1)
    return scores, idx
