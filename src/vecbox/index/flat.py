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
from typing import Any, Callable, Iterator

import numpy as np

from vecbox._rows import RowChunks, evicts, release_rows
from vecbox.index.ann import walk_module

_SMALL_FLOPS = 5e7  # below this, one BLAS thread beats waking (and syncing) the thread pool
_SCORE_BUDGET = 1 << 22  # floats in one block of scores (16 MiB): big enough for BLAS, small enough for cache
_MIN_BLOCK = 4096
_RESCORE_CHUNK = 256  # queries per batched product over their candidate lists
_ONE_SHOT = 1 << 20  # scores: up to this many (4 MiB), compute them all at once


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
    x : ndarray (n, d) float32, or RowChunks
        Database vectors (normalised already for cosine). A :class:`~vecbox._rows.RowChunks`
        (memory-mapped segments) is scanned piece by piece and the lists merged.
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
    >>> s, i = exact_topk(x, np.array([[0.1, 0, 1]], np.float32), k=2)
    >>> i.tolist(), s[0, 0].item()
    ([[2, 0]], 1.0)
    """
    evict = evicts(x)  # a mapping bigger than a quarter of RAM: let go of each block once it is scored
    if isinstance(x, RowChunks):
        parts = []
        for start, piece in x.pieces():
            stop = start + len(piece)
            s, i = exact_topk(piece, q, min(k, len(piece)), metric,
                              valid=None if valid is None else valid[start:stop],
                              sq_norms=None if sq_norms is None else sq_norms[start:stop])
            parts.append((s, np.where(i >= 0, i + start, -1)))
            if evict:
                release_rows(piece, 0, len(piece))
        return merge_topk(parts, k)
    n = x.shape[0]
    m = q.shape[0]
    if metric == "l2" and sq_norms is None:
        sq_norms = np.einsum("ij,ij->i", x, x)
    if m * n <= _ONE_SHOT:
        out = _one_shot(x, q, k, metric, valid, sq_norms)
        if evict:
            release_rows(x, 0, n)
        return out
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
            if evict:
                release_rows(x, start, stop)
    order = np.argsort(-best_s, axis=1, kind="stable")
    best_s = np.take_along_axis(best_s, order, axis=1)
    best_i = np.take_along_axis(best_i, order, axis=1)
    best_i[~np.isfinite(best_s)] = -1
    return best_s, best_i


def _one_shot(x: np.ndarray, q: np.ndarray, k: int, metric: str, valid: np.ndarray | None,
              sq_norms: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Small problems: all scores at once, then one partition (no block merging, far less overhead)."""
    s = q @ x.T
    if metric == "l2":
        s *= 2.0
        s -= sq_norms
    if valid is not None:
        s[:, ~valid] = -np.inf
    k = min(k, s.shape[1])
    if len(q) == 1:  # one query: 1-d operations, a few microseconds instead of tens
        row = s[0]
        part = np.argpartition(row, len(row) - k)[len(row) - k:] if k < len(row) else np.arange(len(row))
        part = part[np.argsort(-row[part], kind="stable")]
        top = row[part][None, :]
        idx = part[None, :].astype(np.int64)
        idx[~np.isfinite(top)] = -1
        return top.astype(np.float32, copy=False), idx
    idx = np.argpartition(s, s.shape[1] - k, axis=1)[:, s.shape[1] - k:] if k < s.shape[1] else \
        np.broadcast_to(np.arange(s.shape[1]), s.shape).copy()
    top = np.take_along_axis(s, idx, axis=1)
    order = np.argsort(-top, axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    idx = np.take_along_axis(idx, order, axis=1).astype(np.int64)
    idx[~np.isfinite(top)] = -1
    return top.astype(np.float32, copy=False), idx


def rescore(
    q: np.ndarray,
    idx: np.ndarray,
    fetch: Callable[[np.ndarray], np.ndarray],
    k: int,
    metric: str = "dot",
    rows: np.ndarray | RowChunks | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top ``k`` of each query's candidate rows ``idx`` (``-1`` = none), vectors from ``fetch``.

    ``fetch(rows)`` returns the float vectors of the given (unique, ascending) rows;
    each is read once however many queries share it. Scores follow :func:`exact_topk`.
    ``rows``: the float vectors themselves (the matrix ``idx`` indexes), when the caller holds
    them: vecbox's C rescore then reads the candidates in place, in one call (not from a mapping
    that :func:`~vecbox._rows.evicts`, whose reads must not stay mapped: ``fetch`` reads those).

    >>> x = np.eye(3, dtype=np.float32)
    >>> s, i = rescore(x[[1]], np.array([[0, 1, -1]]), lambda rows: x[rows], k=2)
    >>> i.tolist()
    [[1, 0]]
    """
    fast = _rescore_in_place(q, idx, rows, k, metric) if rows is not None else None
    if fast is not None:
        return fast
    found = idx >= 0
    uniq, inv = np.unique(idx[found], return_inverse=True)
    vecs = fetch(uniq)
    local = np.zeros(idx.shape, dtype=np.int64)
    local[found] = inv
    exact = np.full(idx.shape, -np.inf, dtype=np.float32)
    for start in range(0, len(q), _RESCORE_CHUNK):
        sl = slice(start, start + _RESCORE_CHUNK)
        if len(q) == 1:  # one query: a plain matrix-vector product over its candidates
            rows = vecs[local[0]]
            sc = (rows @ q[0])[None, :]
            if metric == "l2":
                sc = 2 * sc - np.einsum("kd,kd->k", rows, rows)[None, :]
        else:
            rows = vecs[local[sl]]  # (chunk, candidates, d)
            sc = np.matmul(rows, q[sl][:, :, None])[:, :, 0]
            if metric == "l2":
                sc = 2 * sc - np.einsum("mkd,mkd->mk", rows, rows)
        exact[sl] = np.where(found[sl], sc, -np.inf)
    if exact.shape[1] > k:
        top = np.argpartition(-exact, k - 1, axis=1)[:, :k]
        exact, idx = np.take_along_axis(exact, top, axis=1), np.take_along_axis(idx, top, axis=1)
    order = np.argsort(-exact, axis=1, kind="stable")
    exact = np.take_along_axis(exact, order, axis=1)
    idx = np.take_along_axis(idx, order, axis=1)
    idx = np.where(np.isfinite(exact), idx, -1)
    if exact.shape[1] < k:
        pad = ((0, 0), (0, k - exact.shape[1]))
        exact, idx = np.pad(exact, pad, constant_values=-np.inf), np.pad(idx, pad, constant_values=-1)
    return exact, idx


def _rescore_in_place(q: np.ndarray, idx: np.ndarray, rows: np.ndarray | RowChunks, k: int,
                      metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`rescore` by the C walk module's ``rescore`` (``None``: not built, or rows it cannot read)."""
    walk = walk_module()
    if walk is None or rows.dtype != np.float32 or rows.ndim != 2 or evicts(rows):
        return None
    parts = rows.parts if isinstance(rows, RowChunks) else (
        (np.array([0, len(rows)], dtype=np.int64), (rows,)) if rows.flags.c_contiguous else None)
    if parts is None:
        return None
    scores = np.empty((len(q), k), dtype=np.float32)
    pos = np.empty((len(q), k), dtype=np.int64)
    walk.rescore(np.ascontiguousarray(q, dtype=np.float32), np.ascontiguousarray(idx, dtype=np.int64),
                 parts[0], parts[1], k, metric == "l2", scores, pos)
    return scores, pos


def merge_topk(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-query top lists ``(scores, idx)`` from disjoint row sets into one top ``k``.

    >>> a = (np.array([[0.9, 0.1]]), np.array([[4, 7]]))
    >>> b = (np.array([[0.5, -np.inf]]), np.array([[2, -1]]))
    >>> merge_topk([a, b], 3)[1].tolist()
    [[4, 2, 7]]
    """
    scores = np.concatenate([p[0] for p in parts], axis=1).astype(np.float32)
    idx = np.concatenate([p[1] for p in parts], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    scores, idx = np.take_along_axis(scores, order, axis=1), np.take_along_axis(idx, order, axis=1)
    idx = np.where(np.isfinite(scores), idx, -1)
    if scores.shape[1] < k:
        pad = ((0, 0), (0, k - scores.shape[1]))
        scores, idx = np.pad(scores, pad, constant_values=-np.inf), np.pad(idx, pad, constant_values=-1)
    return scores, idx


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
