"""Matryoshka funnel search: shortlist with the first few dimensions, rerank with more.

Adaptive retrieval from the Matryoshka paper: the first ``d'`` coordinates of a
Matryoshka-trained embedding (or of any embedding after a variance-ordered PCA
rotation) already rank well, so an exact scan at ``d' << d`` picks a shortlist
that a few full-dimension dot products then put in order.

Stages are ``[(dims, keep), ..., (None, k)]``: ``dims`` grows, ``keep`` shrinks,
``None`` means all dimensions. Under cosine each prefix is renormalised (a
truncated unit vector is not a unit vector), as sentence-transformers'
``truncate_dim`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vecbox.errors import InvalidInputError
from vecbox.index.flat import exact_topk, rescore


def check_stages(stages: Any, dim: int, k: int) -> list[tuple[int, int]]:
    """Validate ``funnel=`` and return ``[(dims, keep), ...]`` with ``None`` resolved; last keep = k.

    >>> check_stages([(64, 400), (None, 10)], 384, 10)
    [(64, 400), (384, 10)]
    """
    if not isinstance(stages, Sequence) or isinstance(stages, str) or len(stages) < 2:
        raise InvalidInputError(
            f"funnel must be a list of at least two (dims, keep) stages, e.g. [(64, 400), (None, {k})]; got {stages!r}"
        )
    out: list[tuple[int, int]] = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, (tuple, list)) or len(stage) != 2:
            raise InvalidInputError(f"funnel stage {i} must be a (dims, keep) pair; got {stage!r}")
        dims, keep = stage
        dims = dim if dims is None else dims
        if isinstance(dims, bool) or not isinstance(dims, (int, np.integer)) or not 1 <= dims <= dim:
            raise InvalidInputError(f"funnel stage {i}: dims must be an integer in 1..{dim} or None; got {stage[0]!r}")
        if isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 1:
            raise InvalidInputError(f"funnel stage {i}: keep must be a positive integer; got {keep!r}")
        if out and (dims <= out[-1][0] or keep > out[-1][1]):
            raise InvalidInputError(
                f"funnel stages must use more dimensions and keep no more rows than the stage before; got {stages!r}"
            )
        out.append((int(dims), int(keep)))
    if out[0][1] < k:
        raise InvalidInputError(f"the first funnel stage keeps {out[0][1]} rows, fewer than k={k}")
    out[-1] = (out[-1][0], k)
    return out


def prefix_matrix(x: np.ndarray, dims: int, metric: str) -> np.ndarray:
    """Contiguous copy of the first ``dims`` columns (rows renormalised under cosine)."""
    p = np.array(x[:, :dims], dtype=np.float32, order="C", copy=True)  # never a view: normalised in place below
    if metric == "cosine":
        norms = np.linalg.norm(p, axis=1, keepdims=True)
        np.divide(p, norms, out=p, where=norms > 0)
    return p


def funnel_search(
    x: np.ndarray,
    q: np.ndarray,
    stages: list[tuple[int, int]],
    metric: str,
    prefix: np.ndarray,
    *,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the funnel over rows of ``x``; ``prefix`` is :func:`prefix_matrix` of ``x`` at ``stages[0][0]`` dims.

    Returns ``(scores, idx)`` in :func:`vecbox.index.flat.exact_topk`'s convention; the scores
    are exact when the last stage uses every dimension.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((500, 32)).astype(np.float32)
    >>> x /= np.linalg.norm(x, axis=1, keepdims=True)
    >>> st = check_stages([(8, 100), (None, 5)], 32, 5)
    >>> _, idx = funnel_search(x, x[:2], st, "cosine", prefix_matrix(x, 8, "cosine"))
    >>> idx[:, 0].tolist()
    [0, 1]
    """
    d = x.shape[1]
    d1, n1 = stages[0]
    qp = _query_prefix(q, d1, metric, d)
    sq = np.einsum("ij,ij->i", prefix, prefix) if metric == "l2" else None
    _, cand = exact_topk(prefix, qp, min(n1, len(prefix)), "l2" if metric == "l2" else "dot", valid=valid, sq_norms=sq)
    scores = np.empty((len(q), 0), np.float32)
    for dims, keep in stages[1:]:
        qd = _query_prefix(q, dims, metric, d)
        fetch = (lambda rows, dims=dims: prefix_matrix(x[rows], dims, metric)) if dims < d else (lambda rows: x[rows])
        scores, cand = rescore(qd, cand, fetch, keep, "l2" if metric == "l2" else "dot")
    return scores, cand


def _query_prefix(q: np.ndarray, dims: int, metric: str, d: int) -> np.ndarray:
    if dims == d:
        return q
    return prefix_matrix(q, dims, metric)
