"""Multi-vector retrieval: FDE candidates (MIPS) -> exact Chamfer rerank, and the single-vector baseline.

All searches return ``(scores, idx)`` of shape ``(n_queries, k)``: exact Chamfer scores,
best first (higher is better), and document indices; ``-1`` / ``-inf`` pad rows that
have fewer than ``k`` results.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vecbox._validation import as_matrix, check_positive_int
from vecbox.errors import DimensionMismatchError, InvalidInputError
from vecbox.index.flat import exact_topk
from vecbox.multivector._chamfer import _maxsim_candidates, _top_k, chamfer
from vecbox.multivector._config import FDEConfig
from vecbox.multivector._fde import encode_queries
from vecbox.multivector._ragged import as_token_sets


def fde_candidates(query_fdes: np.ndarray, doc_fdes: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` documents with the largest FDE inner product per query (exact MIPS), ``(m, n)`` int64.

    ``-1`` pads rows when there are fewer than ``n`` documents.
    """
    n = check_positive_int(n, "candidates")
    q = as_matrix(query_fdes, name="query_fdes", allow_1d=True)
    x = as_matrix(doc_fdes, name="doc_fdes") if not isinstance(doc_fdes, np.memmap) else doc_fdes
    if q.shape[1] != x.shape[1]:
        raise DimensionMismatchError(
            f"query FDEs are {q.shape[1]}-d but document FDEs are {x.shape[1]}-d; encode both with the same FDEConfig"
        )
    return _fde_candidates(q, x, n)


def _fde_candidates(q: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    _, idx = exact_topk(x, q, min(n, x.shape[0]), metric="dot")
    if idx.shape[1] < n:
        idx = np.concatenate([idx, np.full((idx.shape[0], n - idx.shape[1]), -1, np.int64)], axis=1)
    return idx


def search(
    queries: Any,
    documents: Any,
    doc_fdes: np.ndarray,
    config: FDEConfig,
    *,
    k: int = 10,
    candidates: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """MUVERA retrieval: MIPS over document FDEs for ``candidates`` documents, then exact Chamfer rerank.

    Parameters
    ----------
    queries : token sets
        One set of query token vectors per query.
    documents : token sets
        The documents' token vectors (for the rerank), aligned with ``doc_fdes``.
    doc_fdes : ndarray (n_docs, D) float32
        ``encode_documents(documents, config)``.
    config : FDEConfig
        The config the documents were encoded with.
    k : int
        Results per query.
    candidates : int
        Documents reranked per query (>= k; more = higher recall, slower).

    Returns
    -------
    scores : ndarray (n_queries, k) float32
        Exact Chamfer scores, best first.
    idx : ndarray (n_queries, k) int64

    Examples
    --------
    >>> from vecbox.multivector import encode_documents
    >>> rng = np.random.default_rng(0)
    >>> docs = [rng.normal(size=(5, 16)).astype(np.float32) for _ in range(50)]
    >>> cfg = FDEConfig(reps=8, ksim=3)
    >>> fdes = encode_documents(docs, cfg)
    >>> s, i = search([docs[7][:3]], docs, fdes, cfg, k=1, candidates=10)
    >>> i.tolist()
    [[7]]
    """
    k = check_positive_int(k, "k")
    candidates = check_positive_int(candidates, "candidates")
    if candidates < k:
        raise InvalidInputError(f"candidates ({candidates}) must be >= k ({k}); the rerank keeps k of them")
    ds = as_token_sets(documents, name="documents")
    qs = as_token_sets(queries, d=ds.d, name="queries")
    if doc_fdes.shape[0] != ds.n:
        raise InvalidInputError(
            f"doc_fdes has {doc_fdes.shape[0]} rows for {ds.n} documents; encode every document once, in order"
        )
    cand = fde_candidates(encode_queries(qs, config), doc_fdes, candidates)
    return _top_k(_maxsim_candidates(qs, ds, cand), cand, k)


def search_exact(queries: Any, documents: Any, *, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force Chamfer over every document: the reference every approximate search is measured against.

    Examples
    --------
    >>> docs = [np.eye(3, dtype=np.float32)[[i]] for i in range(3)]
    >>> search_exact([np.eye(3, dtype=np.float32)[[2]]], docs, k=2)[1].tolist()
    [[2, 0]]
    """
    k = check_positive_int(k, "k")
    ds = as_token_sets(documents, name="documents")
    qs = as_token_sets(queries, d=ds.d, name="queries")
    scores = chamfer(qs, ds)
    cand = np.broadcast_to(np.arange(ds.n, dtype=np.int64), scores.shape)
    return _top_k(scores, cand, k)


def single_vector_candidates(queries: Any, documents: Any, k_token: int) -> list[np.ndarray]:
    """The single-vector heuristic's candidates: for every query token, the documents of its
    ``k_token`` nearest document tokens (inner product), united per query.

    Returns
    -------
    list of ndarray int64
        Per query, the distinct candidate documents, ordered by their best token score.
        ``len(result[i])`` is the deduplicated candidate count; the paper's non-deduplicated
        count is ``n_query_tokens * k_token``.

    Examples
    --------
    >>> docs = [np.eye(4, dtype=np.float32)[[0, 1]], np.eye(4, dtype=np.float32)[[2]]]
    >>> [c.tolist() for c in single_vector_candidates([np.eye(4, dtype=np.float32)[[0, 2]]], docs, 1)]
    [[0, 1]]
    """
    k_token = check_positive_int(k_token, "k_token")
    ds = as_token_sets(documents, name="documents")
    qs = as_token_sets(queries, d=ds.d, name="queries")
    if ds.x.shape[0] == 0:
        return [np.zeros(0, np.int64) for _ in range(qs.n)]
    s, tok = exact_topk(np.asarray(ds.x), qs.x, min(k_token, ds.x.shape[0]), metric="dot")
    doc = np.searchsorted(ds.offsets, tok, side="right") - 1  # (query tokens, k_token)
    out = []
    for i in range(qs.n):  # per query: flatten its tokens' hits, best score first, keep first occurrence
        lo, hi = qs.offsets[i], qs.offsets[i + 1]
        hits_s = s[lo:hi].ravel()
        hits_d = doc[lo:hi].ravel()
        keep = hits_d >= 0
        order = np.argsort(-hits_s[keep], kind="stable")
        ranked = hits_d[keep][order]
        _, first = np.unique(ranked, return_index=True)
        out.append(ranked[np.sort(first)].astype(np.int64))
    return out


def search_single_vector(
    queries: Any, documents: Any, *, k: int = 10, k_token: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """The single-vector heuristic end to end: token nearest neighbours, union, exact Chamfer rerank."""
    k = check_positive_int(k, "k")
    ds = as_token_sets(documents, name="documents")
    qs = as_token_sets(queries, d=ds.d, name="queries")
    lists = single_vector_candidates(qs, ds, k_token)
    width = max(max((c.size for c in lists), default=0), 1)
    cand = np.full((qs.n, width), -1, dtype=np.int64)
    for i, c in enumerate(lists):
        cand[i, : c.size] = c
    return _top_k(_maxsim_candidates(qs, ds, cand), cand, k)
