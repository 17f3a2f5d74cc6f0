"""Exact Chamfer (MaxSim) scores between token sets, batched with BLAS.

``chamfer(Q, P) = sum over q in Q of max over p in P of <q, p>`` (ColBERT's late
interaction). Higher is better; for unit vectors each term lies in [-1, 1], so the
score lies in [-|Q|, |Q|]. An item without tokens contributes nothing: a query
without tokens scores 0, and so does a document without tokens.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vecbox.errors import InvalidInputError
from vecbox.multivector._ragged import TokenSets, as_token_sets

_SCORE_BUDGET = 1 << 22  # floats in one block of token-by-token scores (16 MiB)
_QUERY_TOKENS = 1024  # query tokens per block


def _item_blocks(offsets: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Runs of whole items whose tokens fit the budget (an item larger than it gets a block of its own)."""
    out = []
    n = offsets.shape[0] - 1
    start = 0
    while start < n:
        stop = int(np.searchsorted(offsets, offsets[start] + budget, side="right")) - 1
        stop = min(max(stop, start + 1), n)
        out.append((start, stop))
        start = stop
    return out


def _segment_max_sum(s: np.ndarray, q_off: np.ndarray, d_off: np.ndarray) -> np.ndarray:
    """``s`` (query tokens, doc tokens) -> (queries, docs): max over each doc's columns, sum over each query's rows."""
    nq, nd = q_off.shape[0] - 1, d_off.shape[0] - 1
    out = np.zeros((nq, nd), dtype=np.float32)
    d_ok = np.diff(d_off) > 0
    q_ok = np.diff(q_off) > 0
    if not d_ok.any() or not q_ok.any():
        return out
    m = np.maximum.reduceat(s, d_off[:-1][d_ok], axis=1)  # (query tokens, non-empty docs)
    out[np.ix_(q_ok, d_ok)] = np.add.reduceat(m, q_off[:-1][q_ok], axis=0)
    return out


def chamfer(queries: Any, documents: Any) -> np.ndarray:
    """Exact Chamfer similarity of every query against every document.

    Parameters
    ----------
    queries, documents : token sets
        A list of ``(n_i, d)`` arrays, an ``(x, offsets)`` tuple or :class:`TokenSets`.

    Returns
    -------
    ndarray (n_queries, n_documents) float32
        ``sum_q max_p <q, p>``; higher is better.

    Examples
    --------
    >>> q = [np.array([[1.0, 0.0], [0.0, 1.0]])]
    >>> p = [np.array([[0.6, 0.8], [1.0, 0.0]]), np.array([[0.0, -1.0]])]
    >>> chamfer(q, p).astype(float).round(2).tolist()   # 1.0 + 0.8, and 0.0 + -1.0
    [[1.8, -1.0]]
    """
    qs = as_token_sets(queries, name="queries")
    ds = as_token_sets(documents, d=qs.d, name="documents")
    out = np.zeros((qs.n, ds.n), dtype=np.float32)
    for q0, q1 in _item_blocks(qs.offsets, _QUERY_TOKENS):
        qlo, qhi = int(qs.offsets[q0]), int(qs.offsets[q1])
        if qhi == qlo:
            continue
        qx = qs.x[qlo:qhi]
        q_off = qs.offsets[q0 : q1 + 1] - qlo
        for d0, d1 in _item_blocks(ds.offsets, max(1, _SCORE_BUDGET // (qhi - qlo))):
            dlo, dhi = int(ds.offsets[d0]), int(ds.offsets[d1])
            if dhi == dlo:
                continue
            s = qx @ np.asarray(ds.x[dlo:dhi]).T
            out[q0:q1, d0:d1] = _segment_max_sum(s, q_off, ds.offsets[d0 : d1 + 1] - dlo)
    return out


def maxsim_candidates(queries: Any, documents: Any, candidates: np.ndarray) -> np.ndarray:
    """Exact Chamfer scores of each query against its own candidate documents.

    Parameters
    ----------
    queries : token sets (m items)
    documents : token sets (all documents)
    candidates : ndarray (m, c) int
        Document indices per query; ``-1`` marks padding.

    Returns
    -------
    ndarray (m, c) float32
        Chamfer scores; ``-inf`` where the candidate is ``-1``.
    """
    qs = as_token_sets(queries, name="queries")
    ds = as_token_sets(documents, d=qs.d, name="documents")
    cand = np.asarray(candidates)
    if cand.ndim != 2 or cand.shape[0] != qs.n or not np.issubdtype(cand.dtype, np.integer):
        raise InvalidInputError(
            f"candidates must be an integer array of shape ({qs.n}, c), one row per query; "
            f"got {cand.shape} {cand.dtype}"
        )
    if cand.size and (cand.max() >= ds.n or cand.min() < -1):
        raise InvalidInputError(f"candidates must be document indices in [0, {ds.n}) or -1 for padding")
    return _maxsim_candidates(qs, ds, cand.astype(np.int64))


def _maxsim_candidates(qs: TokenSets, ds: TokenSets, cand: np.ndarray) -> np.ndarray:
    """Per query, score its candidates where their tokens lie: no copy of document tokens.

    Candidates are visited in index order; documents adjacent in storage share one matrix
    product (a run), so many candidates cost few BLAS calls and a full candidate list
    degenerates into the blocked brute force.
    """
    scores = np.full(cand.shape, -np.inf, dtype=np.float32)
    x, offsets = ds.x, ds.offsets
    for i in range(qs.n):  # one query at a time; the loop below is over runs of documents, never tokens
        q = qs[i]
        ok = np.flatnonzero(cand[i] >= 0)
        if ok.size == 0:
            continue
        if q.shape[0] == 0:
            scores[i, ok] = 0.0
            continue
        order = ok[np.argsort(cand[i, ok], kind="stable")]
        docs = cand[i, order]
        # a new run starts where the next document is not the next one in storage, or the run is full
        budget = max(1, _SCORE_BUDGET // q.shape[0])
        breaks = np.flatnonzero(docs[1:] != docs[:-1] + 1) + 1
        bounds = np.concatenate([[0], breaks, [docs.size]])
        q_off = np.array([0, q.shape[0]])
        for a, b in zip(bounds[:-1], bounds[1:]):
            while a < b:
                lo = int(offsets[docs[a]])
                stop = int(np.searchsorted(offsets[docs[a:b] + 1], lo + budget, side="right")) + a
                stop = min(max(stop, a + 1), b)
                hi = int(offsets[docs[stop - 1] + 1])
                if hi > lo:
                    s = q @ np.asarray(x[lo:hi]).T
                    scores[i, order[a:stop]] = _segment_max_sum(s, q_off, offsets[docs[a] : docs[stop - 1] + 2] - lo)[0]
                else:
                    scores[i, order[a:stop]] = 0.0
                a = stop
    return scores


def rerank(queries: Any, documents: Any, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rerank candidate lists by exact Chamfer and keep the best ``k``.

    Parameters
    ----------
    queries, documents : token sets
    candidates : ndarray (m, c) int
        Document indices per query (``-1`` = padding), e.g. from MIPS over FDEs.
    k : int

    Returns
    -------
    scores : ndarray (m, k) float32
        Chamfer scores, best first; ``-inf`` where fewer than k candidates exist.
    idx : ndarray (m, k) int64
        Document indices; ``-1`` where fewer than k candidates exist.

    Examples
    --------
    >>> q = [np.array([[1.0, 0.0]])]
    >>> p = [np.array([[0.5, 0.5]]), np.array([[0.9, 0.1]]), np.array([[0.0, 1.0]])]
    >>> s, i = rerank(q, p, np.array([[0, 1, -1]]), k=2)
    >>> i.tolist(), s.astype(float).round(2).tolist()
    ([[1, 0]], [[0.9, 0.5]])
    """
    from vecbox._validation import check_positive_int

    k = check_positive_int(k, "k")
    scores = maxsim_candidates(queries, documents, candidates)
    cand = np.asarray(candidates, dtype=np.int64)
    return _top_k(scores, cand, k)


def _top_k(scores: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    m, c = scores.shape
    if c < k:
        scores = np.concatenate([scores, np.full((m, k - c), -np.inf, np.float32)], axis=1)
        cand = np.concatenate([cand, np.full((m, k - c), -1, np.int64)], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top_s = np.take_along_axis(scores, order, axis=1)
    top_i = np.take_along_axis(cand, order, axis=1)
    top_i[~np.isfinite(top_s)] = -1
    return top_s, top_i
