"""Binary-classification metrics for anomaly scores, in numpy (no scikit-learn needed).

Every function takes ``y_true`` (1 = anomaly / positive, 0 = normal) and
``scores`` (higher = more anomalous) and treats tied scores the way
scikit-learn does: all samples with the same score move together, so a
constant score gives AUROC 0.5.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vecbox.errors import InvalidInputError


def _check(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise InvalidInputError(f"y_true and scores must be 1-D; got shapes {y.shape} and {s.shape}")
    if y.shape != s.shape:
        raise InvalidInputError(f"y_true has {y.size} labels but scores has {s.size} values; pass one score per label")
    if y.dtype == bool:
        y = y.astype(np.int8)
    if not np.isin(y, (0, 1)).all():
        raise InvalidInputError(f"y_true must hold only 0 (normal) and 1 (anomaly); got values {np.unique(y)[:5]}")
    if not np.isfinite(s).all():
        raise InvalidInputError("scores contain NaN or infinite values; a detector produced invalid scores")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise InvalidInputError(
            f"y_true has {'no' if n_pos == 0 else 'only'} anomalies; AUROC/AUPRC need both classes"
        )
    return y.astype(np.int64), s


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """Trapezoid-rule integral of ``y`` over ``x`` (signed, like ``numpy.trapezoid``)."""
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def _binary_clf_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (false positives, true positives, thresholds) at each distinct score, descending."""
    order = np.argsort(s, kind="mergesort")[::-1]
    s, y = s[order], y[order]
    distinct = np.flatnonzero(np.diff(s)) if s.size > 1 else np.array([], dtype=np.int64)
    idx = np.r_[distinct, y.size - 1]
    tps = np.cumsum(y)[idx]
    fps = 1 + idx - tps
    return fps.astype(np.float64), tps.astype(np.float64), s[idx]


def roc_curve(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve: ``(fpr, tpr, thresholds)``, starting at (0, 0) with threshold ``inf``.

    Same points as ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.

    Examples
    --------
    >>> fpr, tpr, _ = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> fpr.tolist(), tpr.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    y, s = _check(y_true, scores)
    fps, tps, thr = _binary_clf_curve(y, s)
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    return fpr, tpr, np.r_[np.inf, thr]


def auroc(y_true: Any, scores: Any) -> float:
    """Area under the ROC curve, in [0, 1]; 0.5 is chance, 1.0 ranks every anomaly first.

    Equals ``sklearn.metrics.roc_auc_score`` (ties count one half).

    Examples
    --------
    >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    fpr, tpr, _ = roc_curve(y_true, scores)
    return _trapezoid(tpr, fpr)


def precision_recall_curve(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(precision, recall, thresholds)`` as ``sklearn.metrics.precision_recall_curve``.

    Recall is decreasing; the last point is (precision 1, recall 0) and has no threshold.
    """
    y, s = _check(y_true, scores)
    fps, tps, thr = _binary_clf_curve(y, s)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    sl = slice(None, None, -1)  # reverse so recall decreases
    return np.r_[precision[sl], 1.0], np.r_[recall[sl], 0.0], thr[sl]


def auprc_trapezoid(y_true: Any, scores: Any) -> float:
    """Area under the precision-recall curve by the trapezoid rule, in [0, 1].

    This is ``sklearn.metrics.auc(recall, precision)`` - the AUPRC Text-ADBench
    reports. It interpolates linearly between points, which can be optimistic;
    :func:`average_precision` is the step-wise form.

    Examples
    --------
    >>> round(auprc_trapezoid([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
    0.7917
    """
    precision, recall, _ = precision_recall_curve(y_true, scores)
    return -_trapezoid(precision, recall)


def average_precision(y_true: Any, scores: Any) -> float:
    """Average precision: sum over thresholds of (recall step) x precision, in [0, 1].

    Equals ``sklearn.metrics.average_precision_score`` (no interpolation).

    Examples
    --------
    >>> round(average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
    0.8333
    """
    precision, recall, _ = precision_recall_curve(y_true, scores)
    return float(-np.sum(np.diff(recall) * precision[:-1]))


__all__ = ["roc_curve", "auroc", "precision_recall_curve", "auprc_trapezoid", "average_precision"]
