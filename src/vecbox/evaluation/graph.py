"""Evaluating node embeddings: node classification, link prediction, k-hop reconstruction.

- :func:`node_classification` - the DeepWalk/FastRP protocol: shuffle the labelled nodes,
  train one-vs-rest logistic regression on the first ``ratio`` of them, predict for each
  test node its ``k`` most probable labels where ``k`` is its true label count, and report
  Micro- and Macro-F1 (higher is better, in [0, 1]) averaged over ``n_shuffles`` shuffles.
- :func:`link_prediction` - hold out a share of the edges, embed the rest, and score
  held-out edges against as many sampled non-edges: ROC-AUC in [0, 1], 0.5 = chance.
- :func:`reconstruction_map` - the GEM/RESTORE mAP: for each node, rank all other nodes by
  embedding similarity and average the precision at each true k-hop neighbour (in [0, 1]).

Everything here needs numpy and scipy only; the classifier (:class:`OneVsRestLogistic`) is
checked against scikit-learn's in the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from vecbox._validation import as_matrix, check_positive_int
from vecbox.encoders._graph_io import Graph, as_graph, node_index
from vecbox.errors import InvalidInputError

DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


# --------------------------------------------------------------------------- metrics
def f1_scores(y_true: Any, y_pred: Any) -> dict[str, float]:
    """Micro- and Macro-F1 of binary indicator matrices of shape (n, n_labels).

    A label that is neither true nor predicted for any row scores 0 in the macro
    average (scikit-learn's ``zero_division=0``).

    >>> f1_scores([[1, 0], [0, 1]], [[1, 0], [1, 0]])
    {'micro': 0.5, 'macro': 0.3333333333333333}
    """
    t = _indicator(y_true, "y_true")
    p = _indicator(y_pred, "y_pred")
    if t.shape != p.shape:
        raise InvalidInputError(f"y_true has shape {t.shape} but y_pred has {p.shape}; they must match")
    tp = np.asarray(t.multiply(p).sum(axis=0)).ravel()
    fp = np.asarray(p.sum(axis=0)).ravel() - tp
    fn = np.asarray(t.sum(axis=0)).ravel() - tp
    denom = 2 * tp + fp + fn
    per_label = np.divide(2 * tp, denom, out=np.zeros(len(tp)), where=denom > 0)
    total = 2 * tp.sum() + fp.sum() + fn.sum()
    return {"micro": float(2 * tp.sum() / total) if total else 0.0, "macro": float(per_label.mean())}


def _indicator(y: Any, name: str) -> sp.csr_matrix:
    m = sp.csr_matrix(y, dtype=np.float64)
    if m.ndim != 2 or (m.nnz and not np.all(m.data == 1)):
        raise InvalidInputError(f"{name} must be a 0/1 indicator matrix of shape (n, n_labels)")
    return m


def roc_auc(y_true: Any, scores: Any) -> float:
    """ROC-AUC of ``scores`` (higher = more likely positive) for 0/1 labels; ties count half.

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y = np.asarray(y_true).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise InvalidInputError(f"y_true has {y.size} entries but scores has {s.size}")
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise InvalidInputError("ROC-AUC needs at least one positive and one negative example")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # average ranks over ties (1-based)
    boundaries = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(s)]])
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision_at(scores: np.ndarray, truth: np.ndarray, max_k: int | None = None) -> float:
    """GEM's per-node AP: precision at each correct item among the top ``max_k``, averaged over those hits.

    ``scores`` and ``truth`` (bool) cover the candidate nodes; 0 when no hit is ranked.
    """
    order = np.argsort(-scores, kind="stable")
    if max_k is not None:
        order = order[:max_k]
    hits = truth[order]
    n_hits = int(hits.sum())
    if n_hits == 0:
        return 0.0
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / n_hits)


# --------------------------------------------------------------------------- labels
def label_matrix(pairs: Sequence[tuple[Hashable, Hashable]], nodes: np.ndarray) -> tuple[sp.csr_matrix, list[Any]]:
    """Binary (n_nodes, n_labels) matrix from ``(node, label)`` pairs, plus the label names.

    Raises :class:`InvalidInputError` naming the first node that is not in ``nodes``.
    """
    if not pairs:
        raise InvalidInputError("no labels given; pass (node, label) pairs")
    rows = node_index(np.asarray(nodes), [p[0] for p in pairs], what="node in labels")
    names = sorted({p[1] for p in pairs}, key=lambda v: (str(type(v)), v))
    col_of = {name: j for j, name in enumerate(names)}
    cols = np.array([col_of[p[1]] for p in pairs], dtype=np.int64)
    y = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(nodes), len(names)))
    y.data[:] = 1.0  # repeated pairs count once
    return y, names


# --------------------------------------------------------------------------- node classification
class OneVsRestLogistic:
    """One-vs-rest L2-regularised logistic regression, all labels solved as one L-BFGS problem.

    Label ``l`` gets weights ``w_l`` and intercept ``b_l`` minimising
    ``C · Σᵢ logloss(yᵢₗ, xᵢ·w_l + b_l) + ½‖w_l‖²`` - scikit-learn's
    ``OneVsRestClassifier(LogisticRegression(C=C))`` objective (intercept not penalised).
    The labels' problems are independent, so their sum has the same minimiser; solving
    them together with L-BFGS turns many small fits into two matrix products per step.
    It stops when every gradient entry of the scaled objective is below ``tol`` (scikit-learn's
    ``lbfgs`` criterion) or after ``max_iter`` steps.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 500, tol: float = 1e-4) -> None:
        self.C = C
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, x: np.ndarray, y: Any) -> "OneVsRestLogistic":
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y.toarray() if sp.issparse(y) else y, dtype=np.float64)
        n, d = x.shape
        c = float(self.C)
        scale = 1.0 / (c * n)  # scikit-learn's scaling, so that ``tol`` means the same as its ``tol``
        xb = np.hstack([x, np.ones((n, 1))])  # the last row of theta is the (unpenalised) intercept
        penal = np.ones((d + 1, 1))
        penal[d] = 0.0

        def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
            z = xb @ w
            loss = np.logaddexp(0.0, z) - y * z  # log(1 + e^z) - y z, computed stably
            f = (c * loss.sum() + 0.5 * np.sum(penal * w * w)) * scale
            grad = (c * (xb.T @ (_sigmoid(z) - y)) + penal * w) * scale
            return float(f), grad

        theta, self.n_iter_ = _lbfgs(objective, np.zeros((d + 1, y.shape[1])), self.max_iter, self.tol)
        self.coef_ = theta[:d].T.copy()
        self.intercept_ = theta[d].copy()
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Per-label probabilities, shape (n, n_labels) (each label on its own, rows do not sum to 1)."""
        return _sigmoid(np.asarray(x, dtype=np.float64) @ self.coef_.T + self.intercept_)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Inner product without BLAS (a BLAS call costs more than it saves at this size when threads contend)."""
    return float(np.einsum("ij,ij->", a, b))


def _lbfgs(fun: Callable[[np.ndarray], tuple[float, np.ndarray]], x: np.ndarray, max_iter: int, tol: float,
           memory: int = 10) -> tuple[np.ndarray, int]:
    """Minimise a smooth convex ``fun`` (returning value and gradient) by L-BFGS with Armijo backtracking."""
    f, g = fun(x)
    s_hist: list[np.ndarray] = []
    y_hist: list[np.ndarray] = []
    it = 0
    for it in range(1, max_iter + 1):
        if np.max(np.abs(g)) <= tol:
            return x, it - 1
        q = g.copy()
        alphas = []
        for s_, y_ in zip(reversed(s_hist), reversed(y_hist)):
            a = _dot(s_, q) / _dot(y_, s_)
            alphas.append(a)
            q -= a * y_
        if s_hist:
            q *= _dot(s_hist[-1], y_hist[-1]) / _dot(y_hist[-1], y_hist[-1])
        for (s_, y_), a in zip(zip(s_hist, y_hist), reversed(alphas)):
            q += (a - _dot(y_, q) / _dot(y_, s_)) * s_
        direction = -q
        slope = _dot(g, direction)
        if slope >= 0:  # not a descent direction: restart from the gradient
            s_hist.clear()
            y_hist.clear()
            direction, slope = -g, -_dot(g, g)
        step = 1.0 if s_hist else min(1.0, 1.0 / max(np.max(np.abs(g)), 1e-12))
        while True:
            x_new = x + step * direction
            f_new, g_new = fun(x_new)
            if f_new <= f + 1e-4 * step * slope or step < 1e-12:
                break
            step *= 0.5
        s_vec, y_vec = x_new - x, g_new - g
        if _dot(s_vec, y_vec) > 1e-12:
            s_hist.append(s_vec)
            y_hist.append(y_vec)
            if len(s_hist) > memory:
                s_hist.pop(0)
                y_hist.pop(0)
        if f - f_new <= 1e-12 * max(1.0, abs(f)) and np.max(np.abs(g_new)) <= 10 * tol:
            return x_new, it
        x, f, g = x_new, f_new, g_new
    return x, it


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def node_classification(
    x: Any,
    labels: Any,
    *,
    train_ratios: Sequence[float] = DEFAULT_RATIOS,
    n_shuffles: int = 5,
    C: float = 1.0,
    seed: int = 0,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, float]]:
    """Multi-label node classification F1 (DeepWalk/FastRP protocol).

    Parameters
    ----------
    x : array-like, shape (n_nodes, d)
        Node embeddings.
    labels : array-like or sparse, shape (n_nodes, n_labels)
        0/1 indicator matrix aligned with ``x`` (see :func:`label_matrix`). Rows without
        any label are left out (DeepWalk's ``scoring.py`` keeps them as all-negative training
        rows; on Planetoid-style data "unlabelled" means unknown, not negative).
    train_ratios : sequence of float in (0, 1)
    n_shuffles : int
    C : float
        Inverse regularisation strength of the logistic regression (the paper: 0.1 at d = 512;
        the default 1.0 overfits 512-wide FastRP embeddings: Macro-F1 0.265 instead of 0.277 on
        BlogCatalog at 50 %).
    seed : int
    threads : int, optional
        BLAS threads for the fits (needs threadpoolctl; default: BLAS's own setting). On a
        busy machine ``threads=1`` is often faster.
    progress : callable, optional
        Called as ``progress(done, total)`` after each fit.

    Returns
    -------
    list of dict
        One row per ratio: ``train_ratio``, ``micro_f1``, ``macro_f1`` (means, in [0, 1],
        higher is better) and their standard deviations ``micro_f1_std``, ``macro_f1_std``,
        plus ``n_train``, ``n_test``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.eye(2)[rng.integers(0, 2, 200)]
    >>> x = y @ np.array([[2.0, 0.0], [0.0, 2.0]]) + rng.normal(size=(200, 2))
    >>> rows = node_classification(x, y, train_ratios=[0.5], n_shuffles=2)
    >>> rows[0]["micro_f1"] > 0.8
    True
    """
    x = as_matrix(x, name="embeddings")
    y = _indicator(labels, "labels")
    if y.shape[0] != x.shape[0]:
        raise InvalidInputError(f"labels has {y.shape[0]} rows but there are {x.shape[0]} embeddings; align them")
    ratios = [float(r) for r in train_ratios]
    if not ratios or any(not 0 < r < 1 for r in ratios):
        raise InvalidInputError(f"train_ratios must be numbers in (0, 1); got {list(train_ratios)!r}")
    n_shuffles = check_positive_int(n_shuffles, "n_shuffles")
    if not (isinstance(C, (int, float)) and C > 0):
        raise InvalidInputError(f"C must be a positive number; got {C!r}")
    keep = np.flatnonzero(np.asarray(y.sum(axis=1)).ravel() > 0)
    x, y = x[keep], y[keep]
    n = len(keep)
    rng = np.random.default_rng(seed)
    shuffles = [rng.permutation(n) for _ in range(n_shuffles)]
    rows, done, total = [], 0, len(ratios) * n_shuffles
    for ratio in ratios:
        n_train = int(ratio * n)
        if n_train < 1 or n_train >= n:
            raise InvalidInputError(f"train ratio {ratio} leaves an empty train or test set with {n} labelled nodes")
        micro, macro = [], []
        for perm in shuffles:
            tr, te = perm[:n_train], perm[n_train:]
            with _blas_threads(threads):
                clf = OneVsRestLogistic(C=C).fit(x[tr], y[tr])
            y_te = y[te]
            pred = top_k_predictions(clf.predict_proba(x[te]), np.asarray(y_te.sum(axis=1)).ravel().astype(np.int64))
            f = f1_scores(y_te, pred)
            micro.append(f["micro"])
            macro.append(f["macro"])
            done += 1
            if progress is not None:
                progress(done, total)
        rows.append({"train_ratio": ratio, "micro_f1": float(np.mean(micro)), "macro_f1": float(np.mean(macro)),
                     "micro_f1_std": float(np.std(micro)), "macro_f1_std": float(np.std(macro)),
                     "n_train": n_train, "n_test": n - n_train})
    return rows


def _blas_threads(threads: int | None) -> Any:
    import contextlib

    if threads is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=check_positive_int(threads, "threads"), user_api="blas")


def top_k_predictions(proba: np.ndarray, k: np.ndarray) -> sp.csr_matrix:
    """Indicator matrix with, in row i, the ``k[i]`` labels of highest probability."""
    n, n_labels = proba.shape
    order = np.argsort(proba, axis=1, kind="stable")[:, ::-1]
    mask = np.arange(n_labels)[None, :] < np.asarray(k)[:, None]
    rows = np.repeat(np.arange(n), mask.sum(axis=1))
    return sp.csr_matrix((np.ones(len(rows)), (rows, order[mask])), shape=(n, n_labels))


# --------------------------------------------------------------------------- link prediction
def split_edges(graph: Any, test_fraction: float = 0.1, seed: int = 0) -> tuple[Graph, np.ndarray, np.ndarray]:
    """Hold out ``test_fraction`` of the edges; returns (train graph, held-out pairs, sampled non-edge pairs).

    The train graph keeps every node (some may become isolated). Pairs are row positions
    (shape (k, 2)); non-edges are distinct pairs u != v that are not edges of the full graph.
    """
    g = as_graph(graph)
    if not 0 < test_fraction < 1:
        raise InvalidInputError(f"test_fraction must be in (0, 1); got {test_fraction!r}")
    adj = g.adjacency.tocoo()
    mask = adj.row != adj.col
    if not g.directed:
        mask &= adj.row < adj.col
    u, v, w = adj.row[mask], adj.col[mask], adj.data[mask]
    m = len(u)
    n_test = int(round(test_fraction * m))
    if n_test < 1 or n_test >= m:
        raise InvalidInputError(f"test_fraction={test_fraction} of {m} edges leaves no train or no test edge")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(m)
    te, tr = perm[:n_test], perm[n_test:]
    n = g.n_nodes
    train = sp.csr_matrix((w[tr], (u[tr], v[tr])), shape=(n, n), dtype=np.float32)
    if not g.directed:
        train = (train + train.T).tocsr()
    train_graph = Graph(train, g.nodes, g.directed)
    pos = np.stack([u[te], v[te]], axis=1)
    existing = set((adj.row.astype(np.int64) * n + adj.col).tolist())
    neg: list[tuple[int, int]] = []
    seen: set[int] = set()
    if n * (n - 1) - len(existing) < n_test:
        raise InvalidInputError("the graph is too dense to sample as many non-edges as held-out edges")
    while len(neg) < n_test:
        a = rng.integers(0, n, size=2 * n_test)
        b = rng.integers(0, n, size=2 * n_test)
        for i, j in zip(a.tolist(), b.tolist()):
            if i == j:
                continue
            if not g.directed and i > j:
                i, j = j, i
            code = i * n + j
            if code in existing or code in seen:
                continue
            seen.add(code)
            neg.append((i, j))
            if len(neg) == n_test:
                break
    return train_graph, pos, np.array(neg, dtype=np.int64)


def pair_scores(x: np.ndarray, pairs: np.ndarray, similarity: str = "cosine") -> np.ndarray:
    """Similarity of each pair of rows (``"cosine"`` or ``"dot"``), higher = more likely linked."""
    a, b = x[pairs[:, 0]].astype(np.float64), x[pairs[:, 1]].astype(np.float64)
    s = np.einsum("ij,ij->i", a, b)
    if similarity == "cosine":
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        s = s / np.where(na * nb > 0, na * nb, 1.0)
    elif similarity != "dot":
        raise InvalidInputError(f"similarity must be 'cosine' or 'dot'; got {similarity!r}")
    return s


def link_prediction(
    graph: Any,
    embed: Callable[[Graph], np.ndarray],
    *,
    test_fraction: float = 0.1,
    similarity: str = "cosine",
    seed: int = 0,
) -> dict[str, float]:
    """Link-prediction ROC-AUC: embed the graph without held-out edges, score them against non-edges.

    ``embed(train_graph)`` must return one row per node of ``train_graph.nodes``, e.g.
    ``lambda g: FastRP(dim=128).fit_transform(g)``.

    Returns ``{"auc": ..., "n_test": ..., "n_train_edges": ...}``.
    """
    train, pos, neg = split_edges(graph, test_fraction, seed)
    x = np.asarray(embed(train), dtype=np.float32)
    if x.shape[0] != train.n_nodes:
        raise InvalidInputError(f"embed returned {x.shape[0]} rows for {train.n_nodes} nodes; keep every node")
    scores = np.concatenate([pair_scores(x, pos, similarity), pair_scores(x, neg, similarity)])
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    return {"auc": roc_auc(y, scores), "n_test": int(len(pos)), "n_train_edges": int(train.n_edges)}


# --------------------------------------------------------------------------- reconstruction
def k_hop_targets(adj: sp.csr_matrix, sources: np.ndarray, k: int) -> sp.csr_matrix:
    """Boolean (len(sources), n) matrix: nodes reachable from each source within ``k`` hops, itself excluded."""
    a = (adj != 0).astype(np.float32).tocsr()
    start = sp.csr_matrix((np.ones(len(sources), dtype=np.float32), (np.arange(len(sources)), sources)),
                          shape=(len(sources), adj.shape[0]))
    reach = start.copy()
    frontier = start
    for _ in range(k):
        frontier = (frontier @ a).astype(bool).astype(np.float32)
        reach = (reach + frontier).astype(bool).astype(np.float32)
    reach = reach.tolil()
    for i, s in enumerate(sources.tolist()):
        reach[i, s] = 0
    return reach.tocsr().astype(bool)


def reconstruction_map(
    x: Any,
    graph: Any,
    *,
    k: int = 1,
    max_k: int | None = None,
    similarity: str = "cosine",
    sample: int | None = 1000,
    seed: int = 0,
) -> float:
    """Mean average precision of reconstructing each node's ≤k-hop neighbourhood (GEM / RESTORE).

    For each (sampled) node u with at least one k-hop neighbour, all other nodes are ranked
    by similarity to u; AP(u) = Σᵢ precision@i · [i-th is a neighbour] / (number of
    neighbours ranked within ``max_k``). Returns the mean over those nodes, in [0, 1].
    ``sample`` limits the number of source nodes (None = all).
    """
    g = as_graph(graph)
    x = as_matrix(x, name="embeddings")
    if x.shape[0] != g.n_nodes:
        raise InvalidInputError(f"embeddings have {x.shape[0]} rows for a graph of {g.n_nodes} nodes")
    k = check_positive_int(k, "k")
    rng = np.random.default_rng(seed)
    has_edges = np.flatnonzero(np.diff(g.adjacency.indptr) > 0)
    sources = has_edges if sample is None or sample >= len(has_edges) else np.sort(
        rng.choice(has_edges, size=sample, replace=False))
    truth = k_hop_targets(g.adjacency, sources, k)
    z = x.astype(np.float64)
    if similarity == "cosine":
        norms = np.linalg.norm(z, axis=1)
        z = z / np.where(norms > 0, norms, 1.0)[:, None]
    elif similarity != "dot":
        raise InvalidInputError(f"similarity must be 'cosine' or 'dot'; got {similarity!r}")
    aps = []
    for start in range(0, len(sources), 256):
        block = sources[start:start + 256]
        sims = z[block] @ z.T
        for i, u in enumerate(block.tolist()):
            t = truth[start + i].toarray().ravel()
            s = sims[i].copy()
            s[u] = -np.inf
            cand = np.ones(len(s), dtype=bool)
            cand[u] = False
            aps.append(average_precision_at(s[cand], t[cand], max_k))
    return float(np.mean(aps))


__all__ = [
    "f1_scores",
    "roc_auc",
    "average_precision_at",
    "label_matrix",
    "node_classification",
    "OneVsRestLogistic",
    "top_k_predictions",
    "split_edges",
    "pair_scores",
    "link_prediction",
    "k_hop_targets",
    "reconstruction_map",
    "DEFAULT_RATIOS",
]
