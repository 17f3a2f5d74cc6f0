"""FastRP and its evaluation as the paper's code does them, written without vecbox.

A transcription of ``GTmac/FastRP:fastrp.py`` (``fastrp_projection`` + ``fastrp_merge`` with
``input_matrix="trans"``, ``projection_method="sparse"``, ``normalization=True``) and of the
DeepWalk ``scoring.py`` protocol its notebook calls. vecbox's FastRP is tested against
:func:`fastrp` (same projection: equal numbers) and benchmarked against it (the paper's own
seeded projection: Macro-F1 over seeds).

The paper's code takes the adjacency as given; the issue's protocol (and vecbox's
``self_loops="drop"`` on an undirected graph) first symmetrises it with ``max(A, Aᵀ)`` and
drops the diagonal: :func:`prepare`. Where the paper's code divides by zero (a node of
degree 0: ``1/0`` in ``D⁻¹``, ``0^β`` with ``β < 0``) this version gives the node a zero row
and the factor 1, which is what vecbox documents; no other step differs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp


def prepare(a: Any, self_loops: str = "drop") -> sp.csr_matrix:
    """``max(A, Aᵀ)`` in float64, the diagonal dropped unless ``self_loops="keep"``."""
    a = sp.csr_matrix(a, dtype=np.float64)
    a = a.maximum(a.T).tocsr()
    if self_loops == "drop":
        a = (a - sp.diags(a.diagonal())).tocsr()
    a.eliminate_zeros()
    return a


def sklearn_projection(n: int, dim: int, seed: int) -> np.ndarray:
    """The paper's projection: scikit-learn's ``SparseRandomProjection(dim, random_state=seed)``
    fitted on ``n`` features (density ``1/√n``, entries ``±√(√n/dim)``), as an (n, dim) array."""
    from sklearn.random_projection import SparseRandomProjection

    rp = SparseRandomProjection(n_components=dim, random_state=seed).fit(sp.csr_matrix((1, n)))
    return np.asarray(rp.components_.T.todense())


def fastrp(a: Any, projection: np.ndarray, weights: list[float], beta: float,
           normalize: bool = True) -> np.ndarray:
    """The paper's FastRP of adjacency ``a`` (dense or sparse, used as given) with an (n, d) ``projection``.

    ``M = D⁻¹A``; ``U₁ = M·diag(deg^β)·R``, ``Uᵢ = M·Uᵢ₋₁``; ``U = Σ wᵢ·rownorm(Uᵢ)``;
    every column scaled to mean 0, std 1 (``sklearn.preprocessing.scale``).
    """
    deg = np.asarray(a.sum(axis=1), dtype=np.float64).ravel()
    pos = deg > 0
    inv = np.where(pos, 1.0 / np.where(pos, deg, 1.0), 0.0)
    factor = np.where(pos, np.where(pos, deg, 1.0) ** beta, 1.0)
    cur = np.asarray(projection, dtype=np.float64) * factor[:, None]  # components_ @ diag(deg^β)
    merged = np.zeros_like(cur)
    for w in weights:
        cur = inv[:, None] * np.asarray(a @ cur)  # M @ U = D⁻¹ (A @ U)
        if normalize:
            norms = np.linalg.norm(cur, axis=1)
            merged += w * cur / np.where(norms > 0, norms, 1.0)[:, None]
        else:
            merged += w * cur
    std = merged.std(axis=0)
    return (merged - merged.mean(axis=0)) / np.where(std > 10 * np.finfo(float).eps, std, 1.0)


def scoring(x: np.ndarray, y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]], C: float,
            max_iter: int = 1000) -> list[dict[str, float]]:
    """DeepWalk's ``scoring.py`` (``TopKRanker(LogisticRegression(C))``) on given train/test splits.

    For each test node, the ``k`` labels with the highest one-vs-rest probability, ``k`` = its
    true label count; Micro- and Macro-F1 over all labels (``MultiLabelBinarizer(range(L))``).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.multiclass import OneVsRestClassifier

    out = []
    y = np.asarray(y)
    for train, test in splits:
        clf = OneVsRestClassifier(LogisticRegression(C=C, max_iter=max_iter, tol=1e-6))
        clf.fit(x[train], y[train])
        proba = clf.predict_proba(x[test])
        pred = np.zeros_like(y[test])
        for i, k in enumerate(y[test].sum(axis=1)):
            pred[i, np.argsort(proba[i])[::-1][:k]] = 1
        out.append({avg: float(f1_score(y[test], pred, average=avg, zero_division=0)) for avg in ("micro", "macro")})
    return out
