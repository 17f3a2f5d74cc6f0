"""Anomaly detection over embeddings: seven detectors behind one scikit-learn-style contract.

Every detector is fitted on (mostly) normal vectors and scores new ones::

    det = KNNDetector(k=10).fit(x_normal)      # validates x, sets n_features_in_, threshold_
    s = det.score(x_new)                       # ndarray (n,), float64, higher = more anomalous
    mask = det.predict(x_new)                  # bool (n,), s > threshold_

Unlike scikit-learn's ``score`` (one float for a whole data set), ``score``
here returns one value per row, PyOD's ``decision_function`` direction.
``threshold_`` is the ``1 - contamination`` quantile of the training scores
(leave-one-out for the neighbour-based detectors), as in PyOD.

========  ====================================================================  ==========
name      score                                                                 backend
========  ====================================================================  ==========
knn       distance to the k-th nearest training vector (or mean of the k)       FAISS
lof       local outlier factor (Breunig et al. 2000), as scikit-learn's         FAISS
iforest   isolation-forest path length, negated                                 scikit-learn
pca       squared residual outside the top principal subspace                   numpy
ecod      empirical-CDF tail probabilities, summed over dimensions              numpy
ocsvm     one-class SVM decision value, negated                                 scikit-learn
kde       negative log Gaussian kernel density                                  numpy
========  ====================================================================  ==========

The kNN and LOF detectors search with FAISS: ``index="flat"`` is exact,
``"ivf"`` and ``"hnsw"`` are approximate and scale to millions of vectors.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> normal = rng.normal(size=(500, 8)).astype("float32")
>>> test = np.vstack([rng.normal(size=(5, 8)), rng.normal(6.0, 1.0, size=(5, 8))])
>>> det = KNNDetector(k=5, contamination=0.01).fit(normal)
>>> det.predict(test).astype(int).tolist()
[0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
>>> anomaly_scores(test, method="knn", k=3).shape
(10,)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vecbox.analysis._adbench import DetectorResult, evaluate_detectors, load_sms_spam, one_class_split
from vecbox.analysis._common import check_int, vectors
from vecbox.analysis._detectors import (
    DETECTORS,
    TEXT_ADBENCH_PARAMS,
    BaseDetector,
    ECODDetector,
    IForestDetector,
    KDEDetector,
    KNNDetector,
    LOFDetector,
    OCSVMDetector,
    PCADetector,
    make_detector,
)
from vecbox.analysis._metrics import auprc_trapezoid, auroc, average_precision, roc_curve


def anomaly_scores(x: Any, method: str = "knn", *, reference: Any = None, k: int | None = 10,
                   **params: Any) -> np.ndarray:
    """One-off anomaly scores of the rows of ``x``, higher = more anomalous.

    Without ``reference`` the detector is fitted on ``x`` itself and every row is
    scored against the others (leave-one-out for ``knn`` and ``lof``); with
    ``reference`` it is fitted on those (normal) vectors and scores ``x``.

    Parameters
    ----------
    x : array (n, d)
    method : str
        A name from :data:`DETECTORS`.
    reference : array (m, d), optional
        Normal vectors to fit on.
    k : int or None
        Neighbours, for ``knn`` and ``lof`` (ignored by the others).
    **params
        Other constructor parameters of the detector.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.vstack([np.zeros((20, 2)) + np.random.default_rng(1).normal(0, .1, (20, 2)), [[3.0, 3.0]]])
    >>> int(np.argmax(anomaly_scores(x, "knn", k=3)))
    20
    """
    if method in ("knn", "lof") and k is not None:
        params["k"] = k
    det = make_detector(method, **params)
    if reference is not None:
        return det.fit(reference).score(x)
    det.fit(x)
    xv = vectors(x, "x")
    return np.asarray(det._self_scores(xv), dtype=np.float64)


_TRUE = {"1", "true", "yes", "anomaly", "anomalous", "outlier", "spam"}


def score_report(ids: list[str], scores: np.ndarray, labels: list[Any] | None = None, *, top: int = 10) -> dict[str, Any]:
    """Summary of a scoring run: the ``top`` highest-scoring ids and, with labels, AUROC / AUPRC.

    ``labels`` may hold 0/1, booleans or strings (``"1"``, ``"true"``, ``"anomaly"``,
    ``"spam"``... count as anomalous); missing values count as normal.

    >>> r = score_report(["a", "b", "c"], np.array([0.1, 0.9, 0.5]), [0, 1, 0], top=1)
    >>> r["top"], r["auroc"]
    ([{'id': 'b', 'score': 0.9}], 1.0)
    """
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")[: check_int(top, "top", 0)]
    out: dict[str, Any] = {
        "n": int(s.size),
        "mean": float(s.mean()),
        "max": float(s.max()),
        "top": [{"id": ids[i], "score": float(s[i])} for i in order],
    }
    if labels is not None:
        y = np.array([1 if (v is True or (not isinstance(v, bool) and isinstance(v, (int, float)) and v == 1)
                            or str(v).strip().lower() in _TRUE) else 0 for v in labels], dtype=np.int64)
        out["labels"] = y
        out["n_labelled_anomalies"] = int(y.sum())
        if 0 < y.sum() < y.size:
            out.update(auroc=auroc(y, s), auprc_trapezoid=auprc_trapezoid(y, s), average_precision=average_precision(y, s))
    return out


def plot_anomalies(x: Any, scores: np.ndarray, path: Any, *, labels: Any = None, method: str = "pca") -> Any:
    """Write a PNG: score histogram (split by label), ROC when labelled, 2-D map (PCA, or UMAP if installed) by score."""
    from vecbox.analysis._plots import plot_anomaly_overview

    return plot_anomaly_overview(vectors(x, "x"), np.asarray(scores, dtype=np.float64), path, labels=labels,
                                 method=method)


__all__ = [
    "BaseDetector",
    "KNNDetector",
    "LOFDetector",
    "IForestDetector",
    "PCADetector",
    "ECODDetector",
    "OCSVMDetector",
    "KDEDetector",
    "DETECTORS",
    "TEXT_ADBENCH_PARAMS",
    "make_detector",
    "anomaly_scores",
    "score_report",
    "plot_anomalies",
    "auroc",
    "auprc_trapezoid",
    "average_precision",
    "roc_curve",
    "DetectorResult",
    "evaluate_detectors",
    "load_sms_spam",
    "one_class_split",
]
