"""FastRP against the paper's code on awkward graphs (issue 24): asymmetric weighted ``.mat``-style
adjacency, self-loops, isolated nodes, the projection's distribution, and the evaluation protocol.

The independent reference is ``benchmarks/_graph/reference.py``: a transcription of
``GTmac/FastRP:fastrp.py`` and DeepWalk's ``scoring.py`` written without vecbox (numpy, and
scikit-learn for the paper's own projection and classifier). Given vecbox's projection rows it
must give vecbox's numbers (float32 rounding aside); hand-worked cases pin the rules themselves.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from vecbox.encoders.graph import (
    FastRP,
    as_graph,
    degree_scale,
    node_keys,
    propagate_reference,
    sparse_projection,
    transition_matrix,
)
from vecbox.evaluation.graph import node_classification

_BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "_graph"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_graph_{name}", _BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ref = _load("reference")
synthetic = _load("synthetic")


def awkward_matrix(rng: np.random.Generator, n: int = 40, m: int = 120) -> sp.csr_matrix:
    """A ``.mat``-style adjacency: one-way and two-way entries with different weights, self-loops,
    a node whose only entry is a self-loop (4), and nodes with no entry at all (n-1, n-2)."""
    u = rng.integers(0, n - 2, m)
    v = rng.integers(0, n - 2, m)
    keep = (u != v) & (u != 4) & (v != 4)
    u, v = u[keep], v[keep]
    w = rng.choice([0.5, 1.0, 2.0, 7.0], len(u))
    back = rng.random(len(u)) < 0.5
    loops = np.array([1, 4, 9, 17])
    rows = np.concatenate([u, v[back], loops])
    cols = np.concatenate([v, u[back], loops])
    vals = np.concatenate([w, rng.uniform(0.1, 5.0, int(back.sum())), [3.0, 1.0, 0.5, 2.0]])
    a = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
    assert (a != a.T).nnz > 0 and a.diagonal()[4] > 0 and a[n - 1].nnz == 0
    return a


def vecbox_projection(model: FastRP) -> np.ndarray:
    """The (n, d) rows vecbox drew for ``model``'s nodes (same seed semantics as ``fit``)."""
    n, d = len(model.nodes_), model.dim
    density = 1 / math.sqrt(n)
    return sparse_projection(node_keys(model.nodes_), d, density, math.sqrt(1 / density) / math.sqrt(d), model.seed)


# --------------------------------------------------------------------------- equal numbers, shared projection
@pytest.mark.parametrize("beta", [-0.64, 0.0, 0.5])
@pytest.mark.parametrize("self_loops", ["drop", "keep"])
def test_equals_the_reference_on_asymmetric_weighted_matrices(rng, beta, self_loops):
    a = awkward_matrix(rng)
    weights = [0.0, 0.5, 1.0, 6.67]
    model = FastRP(dim=32, weights=weights, beta=beta, seed=3, self_loops=self_loops)
    x = model.fit_transform(a)
    expected = ref.fastrp(ref.prepare(a, self_loops), vecbox_projection(model), weights, beta)
    assert np.isfinite(x).all()
    np.testing.assert_allclose(x, expected, atol=2e-5 * max(1.0, np.abs(expected).max()))
    # the isolated nodes (no entry; only a dropped self-loop) get the same constant row as the reference's
    isolated = [38, 39] + ([4] if self_loops == "drop" else [])
    np.testing.assert_allclose(x[isolated], expected[isolated], atol=1e-5)


@pytest.mark.parametrize("self_loops", ["drop", "keep"])
def test_equals_the_reference_when_directed(rng, self_loops):
    """directed=True: the paper's code on A exactly as given (``"keep"``: loops included, as that code does)."""
    a = awkward_matrix(rng)
    model = FastRP(dim=16, weights=[1.0, 2.0, 3.0], beta=-0.3, seed=8, directed=True, self_loops=self_loops)
    x = model.fit_transform(a)
    given = a if self_loops == "keep" else (a - sp.diags(a.diagonal())).tocsr()  # out-edges, no symmetrisation
    np.testing.assert_allclose(x, ref.fastrp(given, vecbox_projection(model), [1.0, 2.0, 3.0], -0.3), atol=5e-5)


def test_edge_list_and_matrix_give_the_same_graph(rng):
    """The matrix's entries as (src, dst, w) rows - repeated pairs summing, both directions taking the max."""
    a = awkward_matrix(rng)
    coo = a.tocoo()
    edges = np.column_stack([coo.row, coo.col, coo.data])
    half = edges[: len(edges) // 2].copy()
    half[:, 2] /= 2  # the first half written twice with half the weight: repeats add up
    listed = np.vstack([half, half, edges[len(edges) // 2:]])
    kw = dict(dim=16, weights=[0.0, 1.0, 1.0], beta=-0.64, seed=2, self_loops="drop")
    from_matrix = FastRP(**kw).fit(a)
    from_edges = FastRP(**kw).fit(listed, nodes=range(a.shape[0]))
    assert from_edges.nodes_.tolist() == from_matrix.nodes_.tolist()
    np.testing.assert_allclose(from_edges.embedding_, from_matrix.embedding_, atol=1e-5)
    np.testing.assert_allclose(as_graph(listed, self_loops="drop", nodes=range(a.shape[0])).adjacency.toarray(),
                               ref.prepare(a).toarray(), rtol=1e-6)


def test_ppi_like_graph_equals_the_reference():
    """The benchmark's PPI-like graph, scaled down (self-loops, asymmetric weights, isolated nodes, 50 labels)."""
    a, y = synthetic.ppi_like(seed=5, n=600)
    model = FastRP(dim=64, seed=1, self_loops="drop")  # the paper's defaults: weights [0, 0, 1, 6.67], β = -0.64
    x = model.fit_transform(a)
    expected = ref.fastrp(ref.prepare(a), vecbox_projection(model), [0.0, 0.0, 1.0, 6.67], -0.64)
    np.testing.assert_allclose(x, expected, atol=1e-4)
    assert y.shape == (600, 50) and (y.sum(axis=1) > 0).all()
    assert np.count_nonzero(np.diff(ref.prepare(a).indptr) == 0) >= 4 and a.diagonal().any()


# --------------------------------------------------------------------------- hand-worked
def test_hand_worked_self_loop_asymmetry_and_isolated_node():
    # .mat-style entries: A[0,0] = 5 (loop), A[0,1] = 2, A[1,0] = 1, A[1,2] = 3 (one way), node 3 has no entry.
    a = sp.csr_matrix(np.array([[5, 2, 0, 0], [1, 0, 3, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=float))
    g = as_graph(a, self_loops="drop")
    # max(A, Aᵀ) without the diagonal: 0-1 weight max(2, 1) = 2, 1-2 weight 3
    np.testing.assert_array_equal(g.adjacency.toarray(), [[0, 2, 0, 0], [2, 0, 3, 0], [0, 3, 0, 0], [0, 0, 0, 0]])
    m, deg = transition_matrix(g.adjacency)
    assert deg.tolist() == [2.0, 5.0, 3.0, 0.0]  # weighted degree after dropping the loop
    np.testing.assert_allclose(m.toarray(), [[0, 1, 0, 0], [0.4, 0, 0.6, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    # beta = -1: diag(1/2, 1/5, 1/3, 1) R with R = [[2, 0], [0, 5], [3, 3], [1, -1]] -> [[1, 0], [0, 1], [1, 1], [1, -1]]
    r = np.array([[2, 0], [0, 5], [3, 3], [1, -1]], dtype=np.float32)
    lr = r * degree_scale(deg, -1.0)[:, None]
    np.testing.assert_allclose(lr, [[1, 0], [0, 1], [1, 1], [1, -1]], rtol=1e-6)
    # N1 = M LR: row0 = LR1 = (0, 1); row1 = 0.4 LR0 + 0.6 LR2 = (1, 0.6); row2 = LR1 = (0, 1); row3 = 0
    # one hop, weight 1: rownorm -> (0, 1), (1, 0.6)/√1.36, (0, 1), (0, 0)
    s = math.sqrt(1.36)
    u = np.array([[0, 1], [1 / s, 0.6 / s], [0, 1], [0, 0]])
    # column 0: values 0, 1/s, 0, 0 -> mean 1/(4s), population std √3/(4s); the isolated row is (0 - mean)/std
    expected = (u - u.mean(axis=0)) / u.std(axis=0)
    np.testing.assert_allclose(expected[:, 0], [-1 / math.sqrt(3), math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3)])
    got = propagate_reference(m, lr, [1.0], normalize=True)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(ref.fastrp(ref.prepare(a), r, [1.0], -1.0), expected, atol=1e-12)


def test_keep_counts_the_loop_in_the_degree_and_the_average():
    # keep: node 0's loop (weight 5) stays; deg(0) = 5 + 2 = 7 and node 0 averages itself with weight 5/7
    a = sp.csr_matrix(np.array([[5, 2, 0], [1, 0, 3], [0, 0, 0]], dtype=float))
    m, deg = transition_matrix(as_graph(a, self_loops="keep").adjacency)
    assert deg.tolist() == [7.0, 5.0, 3.0]
    np.testing.assert_allclose(m.toarray()[0], [5 / 7, 2 / 7, 0])


# --------------------------------------------------------------------------- the projection's distribution
def test_projection_has_the_papers_distribution():
    """vecbox's hashed rows against scikit-learn's SparseRandomProjection (the paper's): the same
    three values, the same density, signs balanced, no correlation between nodes or columns."""
    pytest.importorskip("sklearn")
    n, d = 3890, 128
    density = 1 / math.sqrt(n)
    value = math.sqrt(1 / density) / math.sqrt(d)
    ours = sparse_projection(node_keys(np.arange(n)), d, density, value, seed=0)
    paper = ref.sklearn_projection(n, d, seed=0)
    np.testing.assert_allclose(np.unique(ours), [-value, 0.0, value], rtol=1e-6)
    np.testing.assert_allclose(np.unique(paper), [-value, 0.0, value], rtol=1e-12)
    for r in (ours, paper):
        nz = r != 0
        assert nz.mean() == pytest.approx(density, rel=0.05)
        assert (r[nz] > 0).mean() == pytest.approx(0.5, abs=0.02)
        # per-node nonzero counts: Binomial(d, density) - mean and variance
        counts = nz.sum(axis=1)
        assert counts.mean() == pytest.approx(d * density, rel=0.05)
        assert counts.var() == pytest.approx(d * density * (1 - density), rel=0.15)
        # per-column counts: Binomial(n, density)
        assert nz.sum(axis=0).var() == pytest.approx(n * density * (1 - density), rel=0.3)
        # E[RᵀR] ∝ I: two columns share a nonzero row about n·density² = 1 time, so off-diagonal
        # entries are a few products out of the diagonal's ~62
        gram = r.T.astype(np.float64) @ r / (n * value**2 * density)
        off = gram - np.diag(np.diag(gram))
        assert np.abs(off).max() < 0.15 and abs(off.mean()) < 0.002


# --------------------------------------------------------------------------- the evaluation protocol
def test_node_classification_matches_deepwalk_scoring():
    """vecbox's protocol (one-vs-rest L2 logistic regression, top-k labels with k = the true count,
    Micro/Macro-F1 over all labels) equals DeepWalk's scoring.py with scikit-learn on the same splits."""
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(4)
    n, n_labels = 300, 6
    y = np.zeros((n, n_labels), dtype=np.int64)
    y[np.arange(n), rng.integers(0, n_labels, n)] = 1
    extra = rng.random(n) < 0.4
    y[np.flatnonzero(extra), rng.integers(0, n_labels, int(extra.sum()))] = 1
    x = y @ rng.normal(size=(n_labels, 10)) + rng.normal(scale=1.5, size=(n, 10))
    rows = node_classification(x, y, train_ratios=[0.5], n_shuffles=3, C=0.1, seed=7)[0]
    g = np.random.default_rng(7)
    perms = [g.permutation(n) for _ in range(3)]  # node_classification's shuffles
    scores = ref.scoring(x, y, [(p[:150], p[150:]) for p in perms], C=0.1)
    assert rows["macro_f1"] == pytest.approx(np.mean([s["macro"] for s in scores]), abs=2e-3)
    assert rows["micro_f1"] == pytest.approx(np.mean([s["micro"] for s in scores]), abs=2e-3)
    assert 0.3 < rows["macro_f1"] < 0.95  # neither trivial nor chance
