"""Exact top-k search with BLAS, in blocks, over any number of queries at once.

Scores are always "higher is better" inside this module: inner products for
``dot``/``cosine`` (cosine vectors are stored normalised) and ``2 q·x - |x|²``
for ``l2`` (the query's own norm is a per-row constant, added back by the caller).

Selection follows FAISS's IndexFlat: scan blocks of database rows, keep the k
best per query, and let only the scores above the current k-th best compete,
so after the first block almost nothing needs sorting.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

_SMALL_FLOPS = 5e7  # below this, one BLAS thread beats waking (and syncing) the thread pool
_SCORE_BUDGET = 1 << 22  # floats in one block of scores (16 MiB): big enough for BLAS, small enough for cache
_MIN_BLOCK = 4096


def exact_topk(
    x: np.ndarray,
    q: np.ndarray,
    k: int,
    metric: str = "dot",
    *,
    valid: np.ndarray | None = None,
    sq_norms: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows of ``x`` for every row of ``q``.

    Parameters
    ----------
    x : ndarray (n, d) float32
        Database vectors (normalised already for cosine).
    q : ndarray (m, d) float32
        Queries (normalised already for cosine).
    k : int
        Neighbours per query.
    metric : {"dot", "cosine", "l2"}
    valid : ndarray (n,) bool, optional
        Rows allowed in the result (deleted or filtered rows are False).
    sq_norms : ndarray (n,) float32, optional
        ``|x|²`` per row, required for ``l2``.

    Returns
    -------
    scores, idx : ndarray (m, k)
        Sorted best first; higher is better (see the module docstring for l2).
        Where fewer than k rows are valid, ``idx`` is -1 and scores are -inf.

    Examples
    --------
    >>> x = np.eye(3, dtype=np.float32)
    >>> s, i = exact_topk(x, x[[2]], k=2)
    >>> i.tolist(), s[0, 0].item()
    ([[2, 0]], 1.0)
    """
    n = x.shape[0]
    m = q.shape[0]
    if metric == "l2" and sq_norms is None:
        sq_norms = np.einsum("ij,ij->i", x, x)
    best_s = np.full((m, k), -np.inf, dtype=np.float32)
    best_i = np.full((m, k), -1, dtype=np.int64)
    block = max(_MIN_BLOCK, _SCORE_BUDGET // max(m, 1))
    buf = np.empty((m, min(block, n)), dtype=np.float32)
    with _single_blas_thread(2.0 * m * n * x.shape[1] < _SMALL_FLOPS):
        for start in range(0, n, block):
            stop = min(start + block, n)
            s = buf[:, : stop - start]
            np.matmul(q, x[start:stop].T, out=s)
            if metric == "l2":
                s *= 2.0
                s -= sq_norms[start:stop]
            if valid is not None:
                s[:, ~valid[start:stop]] = -np.inf
            best_s, best_i = _merge_block(best_s, best_i, s, start, k)
    order = np.argsort(-best_s, axis=1, kind="stable")
    best_s = np.take_along_axis(best_s, order, axis=1)
    best_i = np.take_along_axis(best_i, order, axis=1)
    best_i[~np.isfinite(best_s)] = -1
    return best_s, best_i


def _merge_block(
    best_s: np.ndarray, best_i: np.ndarray, s: np.ndarray, offset: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge one block of scores into the running k best per query."""
    m, b = s.shape
    thr = best_s.min(axis=1)
    cand = s > thr[:, None]
    n_cand = int(np.count_nonzero(cand))
    if n_cand == 0:
        return best_s, best_i
    if n_cand > 4 * m * k and b > k:
        # Early blocks: most scores beat the (still -inf) threshold; cut each row to k first.
        part = np.argpartition(s, b - k, axis=1)[:, b - k :]
        cand_s = np.take_along_axis(s, part, axis=1)
        all_s = np.concatenate([best_s, cand_s], axis=1)
        all_i = np.concatenate([best_i, part + offset], axis=1)
        keep = np.argpartition(all_s, k, axis=1)[:, k:]
        return np.take_along_axis(all_s, keep, axis=1), np.take_along_axis(all_i, keep, axis=1)
    rows, cols = np.nonzero(cand)
    all_rows = np.concatenate([np.repeat(np.arange(m), k), rows])
    all_s = np.concatenate([best_s.ravel(), s[rows, cols]])
    all_i = np.concatenate([best_i.ravel(), cols.astype(np.int64) + offset])
    order = np.lexsort((-all_s, all_rows))
    counts = k + np.bincount(rows, minlength=m)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    take = order[(starts[:, None] + np.arange(k)[None, :]).ravel()]
    return all_s[take].reshape(m, k), all_i[take].reshape(m, k)


@functools.cache
def _numpy_blas() -> Any:
    """threadpoolctl's handle on the BLAS numpy uses (None when it cannot be found)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    libs = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
    own = [lib for lib in libs if "numpy" in lib.filepath]
    return (own or libs or [None])[0]


@contextmanager
def _single_blas_thread(small: bool) -> Iterator[None]:
    """Run small products on one BLAS thread: no pool wake-up, and no stall when cores are busy."""
    lib = _numpy_blas() if small else None
    if lib is None:
        yield
        return
    before = lib.num_threads
    lib.set_num_threads(1)
    try:
        yield
    finally:
        lib.set_num_threads(before)
