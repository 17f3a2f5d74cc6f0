"""The Text-ADBench one-class protocol: data loading, the split, and a detector table (with PyOD peers).

Public names are re-exported by :mod:`vecbox.analysis.anomaly`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vecbox._optional import require
from vecbox.analysis._common import vectors
from vecbox.analysis._detectors import TEXT_ADBENCH_PARAMS, make_detector
from vecbox.analysis._metrics import auprc_trapezoid, auroc, average_precision
from vecbox.errors import DatasetError, InvalidInputError


def load_sms_spam(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read the UCI SMS Spam Collection: ``(texts, labels)``, label 1 = spam (the anomaly), 0 = ham.

    ``path`` is the ``SMSSpamCollection`` file or the folder holding it. Each line
    is ``ham|spam<TAB>text``.

    Raises
    ------
    DatasetError
        If the file is missing or a line is not ``label<TAB>text``.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "SMSSpamCollection"
    if not p.is_file():
        raise DatasetError(f"{p} not found; expected the UCI 'SMSSpamCollection' file (label<TAB>text per line)")
    texts: list[str] = []
    labels: list[int] = []
    with open(p, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            label, sep, text = line.partition("\t")
            if not sep or label not in ("ham", "spam"):
                raise DatasetError(f"{p}, line {lineno}: expected 'ham<TAB>text' or 'spam<TAB>text'; got {line[:60]!r}")
            texts.append(text)
            labels.append(int(label == "spam"))
    return texts, np.asarray(labels, dtype=np.int8)


def one_class_split(labels: Any, *, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Text-ADBench's one-class split: ``(train_idx, test_idx)``.

    Test = **all** anomalies + as many normals; train = the remaining normals
    (no anomaly is ever trained on). With ``seed=None`` the test normals are the
    first ones in file order (Text-ADBench's ``data_preprocess.py``); with a seed
    they are a seeded random choice.

    Examples
    --------
    >>> tr, te = one_class_split([0, 1, 0, 0, 1, 0])
    >>> tr.tolist(), te.tolist()
    ([3, 5], [0, 1, 2, 4])
    """
    y = np.asarray(labels)
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise InvalidInputError("labels must be a 1-D array of 0 (normal) and 1 (anomaly)")
    normal = np.flatnonzero(y == 0)
    anomalies = np.flatnonzero(y == 1)
    n_test = anomalies.size
    if anomalies.size == 0 or normal.size <= n_test:
        raise InvalidInputError(
            f"need anomalies and more normals than anomalies; got {normal.size} normal and {anomalies.size} anomalous"
        )
    order = normal if seed is None else np.random.default_rng(seed).permutation(normal)
    test = np.sort(np.r_[order[:n_test], anomalies])
    train = np.sort(order[n_test:])
    return train, test


@dataclass
class DetectorResult:
    """One detector on one split: vecbox's scores and, when asked, PyOD's on the same vectors."""

    method: str
    params: dict[str, Any]
    auroc: float
    auprc_trapezoid: float
    average_precision: float
    fit_s: float
    score_s: float
    peer_auroc: float | None = None
    peer_auprc_trapezoid: float | None = None
    peer_s: float | None = None
    scores: np.ndarray | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("scores")
        return d


def pyod_peer(method: str, params: dict[str, Any], contamination: float = 0.1, seed: int = 0) -> Any:
    """PyOD's implementation of the same detector with the same settings (for side-by-side runs)."""
    require("pyod", "analysis", "the PyOD peer detectors")
    if method == "knn":
        from pyod.models.knn import KNN

        return KNN(n_neighbors=params.get("k", 10), method=params.get("method", "largest"), contamination=contamination)
    if method == "lof":
        from pyod.models.lof import LOF

        return LOF(n_neighbors=params.get("k", 20), contamination=contamination)
    if method == "iforest":
        from pyod.models.iforest import IForest

        return IForest(n_estimators=params.get("n_estimators", 100), max_samples=params.get("max_samples", "auto"),
                       random_state=params.get("seed", seed), contamination=contamination)
    if method == "pca":
        from pyod.models.pca import PCA

        return PCA(n_components=params.get("n_components", 0.9), standardization=params.get("standardize", True),
                   contamination=contamination)
    if method == "ecod":
        from pyod.models.ecod import ECOD

        return ECOD(contamination=contamination)
    if method == "ocsvm":
        from pyod.models.ocsvm import OCSVM

        return OCSVM(kernel=params.get("kernel", "rbf"), nu=params.get("nu", 0.5), gamma=params.get("gamma", "auto"),
                     contamination=contamination)
    if method == "kde":
        from pyod.models.kde import KDE

        return KDE(bandwidth=params.get("bandwidth", 1.0), contamination=contamination)
    raise InvalidInputError(f"no PyOD peer for method {method!r}")


def evaluate_detectors(
    x_train: Any,
    x_test: Any,
    y_test: Any,
    methods: dict[str, dict[str, Any]] | None = None,
    *,
    peers: bool = False,
    keep_scores: bool = False,
    progress: Any = None,
) -> list[DetectorResult]:
    """Fit each detector on ``x_train`` (normals only), score ``x_test`` and report AUROC / AUPRC.

    Parameters
    ----------
    x_train, x_test : array (n, d)
    y_test : array of 0/1
        1 = anomaly.
    methods : dict of name to parameters, optional
        Default: every detector with the Text-ADBench settings (:data:`TEXT_ADBENCH_PARAMS`).
    peers : bool
        Also run PyOD's implementation of each detector on the same vectors.
    keep_scores : bool
        Keep each detector's test scores on the result (for plots).
    progress : callable, optional
        Called with the method name before each detector runs.

    Returns
    -------
    list of DetectorResult
        AUROC, AUPRC in its trapezoid form (Text-ADBench's) and average precision, all in [0, 1].
    """
    xtr = vectors(x_train, "x_train")
    xte = vectors(x_test, "x_test", d=xtr.shape[1])
    y = np.asarray(y_test)
    if y.shape != (xte.shape[0],):
        raise InvalidInputError(f"y_test has shape {y.shape}; expected one label per row of x_test ({xte.shape[0]})")
    results = []
    for method, params in (methods or TEXT_ADBENCH_PARAMS).items():
        if progress is not None:
            progress(method)
        det = make_detector(method, **params)
        t0 = time.perf_counter()
        det.fit(xtr)
        t1 = time.perf_counter()
        s = det.score(xte)
        t2 = time.perf_counter()
        res = DetectorResult(method, dict(params), auroc(y, s), auprc_trapezoid(y, s), average_precision(y, s),
                             t1 - t0, t2 - t1, scores=s if keep_scores else None)
        if peers:
            peer = pyod_peer(method, params, contamination=det.contamination)
            t0 = time.perf_counter()
            ps = peer.fit(xtr.astype(np.float64)).decision_function(xte.astype(np.float64))
            res.peer_s = time.perf_counter() - t0
            res.peer_auroc, res.peer_auprc_trapezoid = auroc(y, ps), auprc_trapezoid(y, ps)
        results.append(res)
    return results
