"""Graph embedding evaluation (vecbox.evaluation.graph), checked against scikit-learn, GEM's mAP and hand cases."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tests.conftest import shared_data
from vecbox.encoders.graph import FastRP, as_graph, read_labels
from vecbox.errors import DatasetError, InvalidInputError
from vecbox.evaluation.graph import (
    OneVsRestLogistic,
    average_precision_at,
    k_hop_targets,
    label_matrix,
    link_prediction,
    node_classification,
    reconstruction_map,
    roc_auc,
    split_edges,
    top_k_predictions,
    f1_scores,
)

Y_TRUE = np.array([[1, 0, 0, 1, 0], [0, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [1, 0, 0, 0, 0],
                   [0, 0, 0, 1, 0]])
Y_PRED = np.array([[1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 1, 0], [1, 0, 0, 0, 0],
                   [0, 0, 0, 1, 0]])  # label 4: never true, never predicted


# --------------------------------------------------------------------------- metrics vs scikit-learn
def test_f1_matches_sklearn_on_fixed_inputs():
    metrics = pytest.importorskip("sklearn.metrics")
    got = f1_scores(Y_TRUE, Y_PRED)
    for average in ("micro", "macro"):
        assert got[average] == pytest.approx(metrics.f1_score(Y_TRUE, Y_PRED, average=average, zero_division=0))
    # by hand: TP=5, FP=2, FN=3 -> micro = 10/15; per label 6/7, 2/3, 0, 1/2, 0 -> macro = mean
    assert got["micro"] == pytest.approx(10 / 15)
    assert got["macro"] == pytest.approx((6 / 7 + 2 / 3 + 0 + 0.5 + 0) / 5)
    assert f1_scores(sp.csr_matrix(Y_TRUE), sp.csr_matrix(Y_PRED)) == got
    with pytest.raises(InvalidInputError, match="shape"):
        f1_scores(Y_TRUE, Y_PRED[:, :3])


def test_roc_auc_matches_sklearn_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 0])
    s = np.array([0.1, 0.9, 0.4, 0.4, 0.35, 0.8, 0.2, 0.4, 0.95, 0.05])
    assert roc_auc(y, s) == pytest.approx(metrics.roc_auc_score(y, s))
    rng = np.random.default_rng(1)
    y2, s2 = rng.integers(0, 2, 500), np.round(rng.normal(size=500), 1)
    assert roc_auc(y2, s2) == pytest.approx(metrics.roc_auc_score(y2, s2))
    with pytest.raises(InvalidInputError, match="positive and one negative"):
        roc_auc([1, 1], [0.2, 0.3])


def test_logistic_matches_sklearn():
    lm = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 6))
    y = (x @ rng.normal(size=(6, 3)) + rng.normal(size=(300, 3)) > 0.5).astype(int)
    ours = OneVsRestLogistic(C=0.5, tol=1e-8, max_iter=2000).fit(x, y)
    for j in range(3):
        ref = lm.LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(x, y[:, j])
        np.testing.assert_allclose(ours.coef_[j], ref.coef_[0], atol=1e-4)
        np.testing.assert_allclose(ours.intercept_[j], ref.intercept_[0], atol=1e-4)
        np.testing.assert_allclose(ours.predict_proba(x)[:, j], ref.predict_proba(x)[:, 1], atol=1e-5)


def test_top_k_predictions():
    proba = np.array([[0.1, 0.7, 0.3], [0.5, 0.2, 0.9]])
    assert top_k_predictions(proba, np.array([1, 2])).toarray().tolist() == [[0, 1, 0], [1, 0, 1]]


# --------------------------------------------------------------------------- GEM mAP
def gem_compute_map(predicted_edge_list, true_adj, max_k=-1):
    """GEM's evaluation/metrics.py computePrecisionCurve + computeMAP, transcribed."""
    n = true_adj.shape[0]
    node_edges = [[] for _ in range(n)]
    for st, ed, w in predicted_edge_list:
        node_edges[st].append((st, ed, w))
    node_ap, count = [0.0] * n, 0
    for i in range(n):
        if true_adj[i].sum() == 0:
            continue
        count += 1
        edges = sorted(node_edges[i], key=lambda e: e[2], reverse=True)
        k = len(edges) if max_k == -1 else min(max_k, len(edges))
        correct, precision, delta = 0, [], []
        for j in range(k):
            hit = true_adj[edges[j][0], edges[j][1]] != 0
            correct += hit
            delta.append(1.0 if hit else 0.0)
            precision.append(correct / (j + 1))
        node_ap[i] = 0 if sum(delta) == 0 else sum(p * d for p, d in zip(precision, delta)) / sum(delta)
    return sum(node_ap) / count


@pytest.mark.parametrize("max_k", [None, 3])
def test_reconstruction_map_matches_gem(rng, max_k):
    edges = rng.integers(0, 25, size=(60, 2))
    edges = edges[edges[:, 0] != edges[:, 1]]
    g = as_graph(edges)
    x = rng.normal(size=(g.n_nodes, 4))
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = xn @ xn.T
    predicted = [(i, j, sims[i, j]) for i in range(g.n_nodes) for j in range(g.n_nodes) if i != j]
    expected = gem_compute_map(predicted, g.adjacency.toarray(), -1 if max_k is None else max_k)
    assert reconstruction_map(x, g, k=1, max_k=max_k, sample=None) == pytest.approx(expected)


def test_reconstruction_hand_cases():
    # two disjoint triangles, embeddings = one-hot community: every node ranks its 2 neighbours first
    edges = np.array([[0, 1], [1, 2], [0, 2], [3, 4], [4, 5], [3, 5]])
    x = np.array([[1, 0]] * 3 + [[0, 1]] * 3, dtype=float)
    assert reconstruction_map(x, edges, sample=None) == pytest.approx(1.0)
    # AP by hand: hits at ranks 2 and 3 of 4 -> (1/2 + 2/3) / 2
    assert average_precision_at(np.array([0.9, 0.8, 0.7, 0.1]), np.array([False, True, True, False])) \
        == pytest.approx((1 / 2 + 2 / 3) / 2)
    # path 0-1-2-3: 2-hop targets of node 0 are {1, 2}
    path = as_graph(np.array([[0, 1], [1, 2], [2, 3]]))
    assert k_hop_targets(path.adjacency, np.array([0, 3]), 2).toarray().tolist() == [
        [False, True, True, False], [False, True, True, False]]


# --------------------------------------------------------------------------- labels and classification
def test_label_files_and_unknown_nodes(tmp_path):
    path = tmp_path / "labels.tsv"
    path.write_text("0\tx\n1\ty\n1\tx\n2\t-1\n")
    pairs = read_labels(path)
    assert pairs == [(0, "x"), (1, "y"), (1, "x")]  # -1 = unlabelled (Planetoid)
    y, names = label_matrix(pairs, np.array([0, 1, 2]))
    assert names == ["x", "y"] and y.toarray().tolist() == [[1, 0], [1, 1], [0, 0]]
    with pytest.raises(InvalidInputError, match="unknown node in labels 7"):
        label_matrix([(0, "x"), (7, "y")], np.array([0, 1, 2]))
    bad = tmp_path / "bad.tsv"
    bad.write_text("0\tx\textra\n")
    with pytest.raises(DatasetError, match="line 1"):
        read_labels(bad)
    # text ids in the label file match integer node ids
    y2, _ = label_matrix([("2", "x")], np.array([0, 1, 2]))
    assert y2.toarray()[2].tolist() == [1]


def test_node_classification_protocol(rng):
    centers = rng.normal(size=(4, 8)) * 3
    cls = rng.integers(0, 4, 400)
    x = centers[cls] + rng.normal(size=(400, 8))
    y = np.eye(4)[cls]
    y[:50, (cls[:50] + 1) % 4] = 1  # some nodes carry two labels
    rows = node_classification(x, y, train_ratios=[0.1, 0.5], n_shuffles=3, C=1.0, seed=1)
    assert [r["train_ratio"] for r in rows] == [0.1, 0.5]
    assert rows[0]["n_train"] == 40 and rows[1]["n_test"] == 200
    assert all(r["micro_f1"] > 0.75 and r["macro_f1"] > 0.7 for r in rows)
    assert rows == node_classification(x, y, train_ratios=[0.1, 0.5], n_shuffles=3, C=1.0, seed=1)
    calls = []
    node_classification(x, y, train_ratios=[0.5], n_shuffles=2, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 2), (2, 2)]
    with pytest.raises(InvalidInputError, match="train_ratios"):
        node_classification(x, y, train_ratios=[1.5])
    with pytest.raises(InvalidInputError, match="rows"):
        node_classification(x, y[:10])


# --------------------------------------------------------------------------- link prediction
def planted_partition(rng: np.random.Generator, n: int = 120, groups: int = 4, p_in: float = 0.3,
                      p_out: float = 0.01) -> np.ndarray:
    g = rng.integers(0, groups, n)
    iu = np.triu_indices(n, 1)
    prob = np.where(g[iu[0]] == g[iu[1]], p_in, p_out)
    keep = rng.random(len(prob)) < prob
    return np.column_stack([iu[0][keep], iu[1][keep]])


def test_split_edges_holds_out_edges_and_samples_non_edges(rng):
    edges = planted_partition(rng)
    g = as_graph(edges)
    train, pos, neg = split_edges(g, 0.2, seed=1)
    full = g.adjacency.toarray()
    tr = train.adjacency.toarray()
    assert len(pos) == len(neg) == round(0.2 * g.n_edges)
    assert train.n_edges == g.n_edges - len(pos) and train.n_nodes == g.n_nodes
    assert np.all(full[pos[:, 0], pos[:, 1]] > 0) and np.all(tr[pos[:, 0], pos[:, 1]] == 0)
    assert np.all(full[neg[:, 0], neg[:, 1]] == 0) and np.all(neg[:, 0] != neg[:, 1])
    assert len({tuple(p) for p in neg.tolist()}) == len(neg)


def test_link_prediction_with_fastrp(rng):
    edges = planted_partition(rng)
    result = link_prediction(edges, lambda g: FastRP(dim=64, weights=[1.0, 1.0, 1.0], beta=-0.5).fit_transform(g),
                             test_fraction=0.1, seed=2)
    assert result["auc"] > 0.8
    with pytest.raises(InvalidInputError, match="rows"):
        link_prediction(edges, lambda g: np.zeros((3, 2)))


# --------------------------------------------------------------------------- real data
def test_blogcatalog_quick_quality():
    data = shared_data("blogcatalog")
    model = FastRP(dim=128, weights=[0.0, 0.0, 1.0, 6.67], beta=-0.64)
    x = model.fit_transform(data / "edges.tsv")
    assert (model.n_nodes_, model.n_edges_) == (10312, 333983)
    y, names = label_matrix(read_labels(data / "labels.tsv"), model.nodes_)
    assert len(names) == 39 and y.nnz == 14476
    row = node_classification(x, y, train_ratios=[0.5], n_shuffles=1, C=0.1, threads=1)[0]
    assert row["micro_f1"] > 0.33 and row["macro_f1"] > 0.18  # the paper: 0.41 / 0.28 at d = 512
