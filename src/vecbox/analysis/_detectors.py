"""The anomaly detectors: one contract (:class:`BaseDetector`), seven implementations, a registry.

Public names are re-exported by :mod:`vecbox.analysis.anomaly` (documented there); this
module is what :mod:`vecbox.analysis._adbench` builds on, so neither imports the other's user.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import numpy as np

from vecbox._optional import require
from vecbox.analysis._common import check_choice, check_float, check_int, pairwise_sq_dists, vectors
from vecbox.analysis._neighbors import INDEXES, NeighborIndex
from vecbox.errors import DimensionMismatchError, InvalidInputError, NotFittedError


class BaseDetector:
    """The contract every detector follows (the one abstract base).

    Subclasses define ``_check_params()``, ``_fit(x)``, ``_score(x)`` and, when
    scoring training rows needs leave-one-out, ``_training_scores(x)``.
    """

    _min_samples: ClassVar[int] = 5  # fewer normal samples than this describe no distribution

    contamination: float

    # ------------------------------------------------------------------ parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind == p.KEYWORD_ONLY]

    def get_params(self) -> dict[str, Any]:
        """The constructor's keyword parameters (as scikit-learn's ``get_params``, without nesting)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> "BaseDetector":
        """Set constructor parameters; unknown names raise. Refit afterwards."""
        for name, value in params.items():
            if name not in self._param_names():
                raise InvalidInputError(
                    f"{type(self).__name__} has no parameter {name!r}; its parameters are {', '.join(self._param_names())}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ contract
    def fit(self, x: Any) -> "BaseDetector":
        """Learn what normal looks like from ``x`` (n, d); returns ``self``.

        Raises
        ------
        InvalidInputError
            If a parameter is out of range, ``x`` is not a finite 2-D array,
            or it has fewer rows than the detector needs.
        """
        check_float(self.contamination, "contamination", 0.0, 0.5, low_open=True)
        self._check_params()
        x = vectors(x, "x")
        need = self._needed_samples()
        if x.shape[0] < need:
            raise InvalidInputError(
                f"{type(self).__name__} needs at least {need} normal samples to fit; got {x.shape[0]}. "
                "Pass more training vectors or lower k / n_components."
            )
        self.n_features_in_ = int(x.shape[1])
        self.n_samples_fit_ = int(x.shape[0])
        self._fit(x)
        train = np.asarray(self._training_scores(x), dtype=np.float64)
        self.threshold_ = float(np.quantile(train, 1.0 - self.contamination))
        return self

    def score(self, x: Any) -> np.ndarray:
        """Anomaly score of each row of ``x``: float64 ``(n,)``, higher = more anomalous.

        Raises
        ------
        NotFittedError
            If ``fit`` has not been called.
        DimensionMismatchError
            If ``x`` has a different width from the training vectors.
        """
        self._check_fitted()
        x = vectors(x, "x")
        if x.shape[1] != self.n_features_in_:
            raise DimensionMismatchError(
                f"x has {x.shape[1]} features, but {type(self).__name__} was fitted on {self.n_features_in_}; "
                "score vectors from the same model as the training vectors"
            )
        return np.asarray(self._score(x), dtype=np.float64).reshape(-1)

    def predict(self, x: Any) -> np.ndarray:
        """Boolean mask ``(n,)``: True where ``score(x) > threshold_`` (an anomaly)."""
        return self.score(x) > self.threshold_

    # ------------------------------------------------------------------ hooks
    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(x_normal) before score/predict")

    def _needed_samples(self) -> int:
        return self._min_samples

    def _check_params(self) -> None:
        """Validate the constructor parameters (raise InvalidInputError)."""

    def _fit(self, x: np.ndarray) -> None:
        raise NotImplementedError

    def _score(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _training_scores(self, x: np.ndarray) -> np.ndarray:
        """Scores of the training rows, used for ``threshold_``; default: score them like new data."""
        return self._score(x)

    def _self_scores(self, x: np.ndarray) -> np.ndarray:
        """Scores of the (whole) training set, as used by :func:`anomaly_scores` on one array."""
        return self._score(x)


class _NeighborDetector(BaseDetector):
    k: int
    index: str
    threshold_sample: int
    seed: int

    def _needed_samples(self) -> int:
        return max(self._min_samples, int(self.k) + 1)

    def _check_params(self) -> None:
        check_int(self.k, "k")
        check_choice(self.index, "index", INDEXES)
        check_int(self.threshold_sample, "threshold_sample")
        check_int(self.nprobe, "nprobe")
        check_int(self.ef_search, "ef_search")

    def _build(self, x: np.ndarray) -> None:
        self.index_ = NeighborIndex(x, self.index, nlist=self.nlist, nprobe=self.nprobe,
                                    ef_search=self.ef_search, seed=self.seed)

    def _sample_rows(self, n: int) -> np.ndarray:
        if n <= self.threshold_sample:
            return np.arange(n)
        return np.sort(np.random.default_rng(self.seed).choice(n, self.threshold_sample, replace=False))


class KNNDetector(_NeighborDetector):
    """Distance to the k nearest training vectors (Ramaswamy et al. 2000; PyOD ``KNN``).

    Parameters
    ----------
    k : int
        Neighbours. Text-ADBench uses ``k=3``.
    method : {"largest", "mean", "median"}
        Score = distance to the k-th neighbour, or mean / median of the k distances.
    index : {"flat", "ivf", "hnsw"}
        FAISS search: exact, inverted lists, or graph. Use ``"ivf"`` for 10^6 vectors.
    nlist, nprobe, ef_search : int
        IVF cells (default ~sqrt(n)) and cells searched; HNSW search depth.
    contamination : float
        Expected share of anomalies in the training data, in (0, 0.5]; sets ``threshold_``.
    threshold_sample : int
        ``threshold_`` is estimated from at most this many training rows (leave-one-out),
        so fitting 10^6 vectors does not cost a full self-join.
    seed : int
        Seed of the IVF training sample and the threshold sample.

    Attributes
    ----------
    n_features_in_, n_samples_fit_ : int
    threshold_ : float
        Scores above it are predicted anomalous. Scores are Euclidean distances, in [0, inf).
    """

    def __init__(self, *, k: int = 10, method: str = "largest", index: str = "flat", nlist: int | None = None,
                 nprobe: int = 16, ef_search: int = 64, contamination: float = 0.1,
                 threshold_sample: int = 10_000, seed: int = 0) -> None:
        self.k = k
        self.method = method
        self.index = index
        self.nlist = nlist
        self.nprobe = nprobe
        self.ef_search = ef_search
        self.contamination = contamination
        self.threshold_sample = threshold_sample
        self.seed = seed

    def _check_params(self) -> None:
        super()._check_params()
        check_choice(self.method, "method", ("largest", "mean", "median"))

    def _aggregate(self, dist: np.ndarray) -> np.ndarray:
        if self.method == "largest":
            return dist[:, -1]
        if self.method == "mean":
            return dist.mean(axis=1)
        return np.median(dist, axis=1)

    def _fit(self, x: np.ndarray) -> None:
        self._build(x)

    def _score(self, x: np.ndarray) -> np.ndarray:
        return self._aggregate(self.index_.search(x, self.k)[0])

    def _training_scores(self, x: np.ndarray) -> np.ndarray:
        rows = self._sample_rows(x.shape[0])
        return self._aggregate(self.index_.search_self(x[rows], rows, self.k)[0])

    def _self_scores(self, x: np.ndarray) -> np.ndarray:
        return self._aggregate(self.index_.search_self(x, np.arange(x.shape[0]), self.k)[0])


class LOFDetector(_NeighborDetector):
    """Local outlier factor (Breunig et al. 2000), scikit-learn's ``novelty=True`` definition, FAISS-backed.

    The score is the LOF itself: about 1 inside a cluster, larger for points whose
    neighbourhood is sparser than their neighbours' (PyOD's ``LOF.decision_function``).
    Fitting needs the k neighbours of every training vector (a self-join).

    Parameters
    ----------
    k : int
        Neighbours (``n_neighbors``); Text-ADBench uses 30.
    index, nlist, nprobe, ef_search, contamination, seed
        As in :class:`KNNDetector`.
    """

    def __init__(self, *, k: int = 20, index: str = "flat", nlist: int | None = None, nprobe: int = 16,
                 ef_search: int = 64, contamination: float = 0.1, seed: int = 0) -> None:
        self.k = k
        self.index = index
        self.nlist = nlist
        self.nprobe = nprobe
        self.ef_search = ef_search
        self.contamination = contamination
        self.seed = seed

    threshold_sample = 1 << 62  # LOF needs every training row's neighbourhood anyway

    def _fit(self, x: np.ndarray) -> None:
        self._build(x)
        n = x.shape[0]
        dist, idx = self.index_.search_self(x, np.arange(n), self.k)
        self.k_distance_ = dist[:, -1].astype(np.float64)
        self.lrd_ = self._lrd(dist, idx)
        self._train_lof = self.lrd_[idx].mean(axis=1) / self.lrd_

    def _lrd(self, dist: np.ndarray, idx: np.ndarray) -> np.ndarray:
        reach = np.maximum(dist.astype(np.float64), self.k_distance_[idx])
        return 1.0 / (reach.mean(axis=1) + 1e-10)

    def _score(self, x: np.ndarray) -> np.ndarray:
        dist, idx = self.index_.search(x, self.k)
        lrd = self._lrd(dist, idx)
        return self.lrd_[idx].mean(axis=1) / lrd

    def _training_scores(self, x: np.ndarray) -> np.ndarray:
        return self._train_lof

    _self_scores = _training_scores


class IForestDetector(BaseDetector):
    """Isolation forest (Liu et al. 2008) via scikit-learn; score = minus ``score_samples``, in (-1, 0].

    Parameters
    ----------
    n_estimators : int
        Trees.
    max_samples : int or "auto"
        Rows per tree (``"auto"``: min(256, n)).
    contamination : float
    seed : int
        ``random_state`` of the forest (same seed, same trees as PyOD ``IForest``).
    """

    def __init__(self, *, n_estimators: int = 100, max_samples: int | str = "auto", contamination: float = 0.1,
                 seed: int = 0) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.contamination = contamination
        self.seed = seed

    def _check_params(self) -> None:
        check_int(self.n_estimators, "n_estimators")
        if self.max_samples != "auto":
            check_int(self.max_samples, "max_samples")

    def _fit(self, x: np.ndarray) -> None:
        ensemble = require("sklearn.ensemble", "analysis", "the iforest detector")
        self.model_ = ensemble.IsolationForest(n_estimators=self.n_estimators, max_samples=self.max_samples,
                                               random_state=self.seed).fit(x)

    def _score(self, x: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples(x)


class PCADetector(BaseDetector):
    """Principal-component detector.

    ``form="reconstruction"`` (default): squared distance from the centred vector to
    its projection on the top components - the energy in the minor subspace.
    ``form="pyod"``: PyOD's ``PCA`` score, the sum over kept components ``c_j`` of
    ``||x - c_j|| / explained_variance_ratio_j`` (what Text-ADBench ran).

    Parameters
    ----------
    n_components : int or float
        Components kept; a float in (0, 1) keeps the fewest that explain that share of
        the variance (Text-ADBench: 0.9).
    standardize : bool
        Scale every dimension to zero mean, unit variance first (PyOD's default).
    form : {"reconstruction", "pyod"}
    contamination : float
    """

    def __init__(self, *, n_components: int | float = 0.9, standardize: bool = True, form: str = "reconstruction",
                 contamination: float = 0.1) -> None:
        self.n_components = n_components
        self.standardize = standardize
        self.form = form
        self.contamination = contamination

    def _check_params(self) -> None:
        check_choice(self.form, "form", ("reconstruction", "pyod"))
        if isinstance(self.n_components, float):
            check_float(self.n_components, "n_components", 0.0, 1.0, low_open=True, high_open=True)
        else:
            check_int(self.n_components, "n_components")

    def _needed_samples(self) -> int:
        extra = 0 if isinstance(self.n_components, float) else int(self.n_components) + 1
        return max(self._min_samples, extra)

    def _fit(self, x: np.ndarray) -> None:
        x = x.astype(np.float64)
        self.mean_ = x.mean(axis=0)
        self.scale_ = np.ones(x.shape[1])
        if self.standardize:
            std = x.std(axis=0)
            self.scale_ = np.where(std > 0, std, 1.0)
        z = (x - self.mean_) / self.scale_
        _, s, vt = np.linalg.svd(z, full_matrices=False)
        # scikit-learn's sign convention (largest |entry| of each component positive): the "pyod"
        # form measures distances to the component vectors themselves, so the sign matters there
        pivot = vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)]
        vt *= np.where(pivot < 0, -1.0, 1.0)[:, None]
        var = s**2 / max(x.shape[0] - 1, 1)
        ratio = var / var.sum() if var.sum() > 0 else np.full_like(var, 1.0 / var.size)
        if isinstance(self.n_components, float):
            m = int(np.searchsorted(np.cumsum(ratio), self.n_components, side="right") + 1)
        else:
            m = int(self.n_components)
        if m > vt.shape[0]:
            raise InvalidInputError(f"n_components={self.n_components} exceeds min(n, d) = {vt.shape[0]}; lower it")
        self.n_components_ = min(m, vt.shape[0])
        self.components_ = vt[: self.n_components_]
        self.explained_variance_ratio_ = ratio[: self.n_components_]

    def _score(self, x: np.ndarray) -> np.ndarray:
        if self.form == "pyod":  # PyOD measures from the raw (or standardised) point, not the centred one
            z = (x.astype(np.float64) - self.mean_) / self.scale_ if self.standardize else x.astype(np.float64)
            return (np.sqrt(pairwise_sq_dists(z, self.components_)) / self.explained_variance_ratio_).sum(axis=1)
        z = (x.astype(np.float64) - self.mean_) / self.scale_
        proj = (z @ self.components_.T) @ self.components_
        return ((z - proj) ** 2).sum(axis=1)


class ECODDetector(BaseDetector):
    """ECOD (Li et al. 2022): per dimension, ``-log`` of the empirical left / right tail probability.

    The score is the sum over dimensions of the larger of the two tail terms,
    as PyOD's ``ECOD`` computes it (its skewness-corrected term is always one
    of the two, so it never wins the per-dimension max).

    By default (``transductive=False``) the tails are estimated from the
    training vectors only, counting the scored point itself once
    (``(#{train <= v} + 1) / (n + 1)``): a one-class detector whose scores do
    not depend on the other rows being scored. ``transductive=True`` does what
    PyOD does: it re-estimates the tails over train + the scored batch, so a
    batch full of anomalies dilutes its own tails (on SMS spam, where half the
    test set is spam, that costs about 0.23 AUROC).

    Parameters
    ----------
    transductive : bool
    contamination : float
    """

    def __init__(self, *, transductive: bool = False, contamination: float = 0.1) -> None:
        self.transductive = transductive
        self.contamination = contamination

    def _fit(self, x: np.ndarray) -> None:
        self.sorted_ = np.sort(x, axis=0)

    @staticmethod
    def _tails(sorted_col: np.ndarray, v: np.ndarray, extra: float, total: float) -> np.ndarray:
        le = np.searchsorted(sorted_col, v, side="right")
        ge = sorted_col.size - np.searchsorted(sorted_col, v, side="left")
        return np.maximum(-np.log((le + extra) / total), -np.log((ge + extra) / total))

    def _score(self, x: np.ndarray) -> np.ndarray:
        n = self.sorted_.shape[0]
        out = np.zeros(x.shape[0])
        for j in range(x.shape[1]):
            if self.transductive:
                col = np.sort(np.r_[self.sorted_[:, j], x[:, j]])
                out += self._tails(col, x[:, j], 0.0, float(col.size))
            else:
                out += self._tails(self.sorted_[:, j], x[:, j], 1.0, n + 1.0)
        return out

    def _training_scores(self, x: np.ndarray) -> np.ndarray:
        # a training point is already in the sample: count it once, not twice
        n = x.shape[0]
        out = np.zeros(n)
        for j in range(x.shape[1]):
            out += self._tails(self.sorted_[:, j], x[:, j], 0.0, float(n))
        return out

    _self_scores = _training_scores


class OCSVMDetector(BaseDetector):
    """One-class SVM (Schölkopf et al. 2001) via scikit-learn; score = minus ``decision_function``.

    Parameters
    ----------
    kernel : str
        ``"rbf"`` (Text-ADBench), ``"linear"``, ``"poly"``, ``"sigmoid"``.
    nu : float
        Upper bound on the share of training errors, in (0, 1]. PyOD's default 0.5.
    gamma : "auto", "scale" or float
        RBF width; ``"auto"`` = 1 / d (PyOD's default).
    contamination : float
    """

    def __init__(self, *, kernel: str = "rbf", nu: float = 0.5, gamma: str | float = "auto",
                 contamination: float = 0.1) -> None:
        self.kernel = kernel
        self.nu = nu
        self.gamma = gamma
        self.contamination = contamination

    def _check_params(self) -> None:
        check_choice(self.kernel, "kernel", ("rbf", "linear", "poly", "sigmoid"))
        check_float(self.nu, "nu", 0.0, 1.0, low_open=True)

    def _fit(self, x: np.ndarray) -> None:
        svm = require("sklearn.svm", "analysis", "the ocsvm detector")
        self.model_ = svm.OneClassSVM(kernel=self.kernel, nu=self.nu, gamma=self.gamma).fit(x)

    def _score(self, x: np.ndarray) -> np.ndarray:
        return -self.model_.decision_function(x)


class KDEDetector(BaseDetector):
    """Gaussian kernel density; score = ``-log`` of the (unnormalised) density, exact, in blocks.

    ``score(x) = -log sum_i exp(-||x - x_i||^2 / (2 h^2))``: the same ranking as PyOD's
    ``KDE`` (scikit-learn ``KernelDensity``) without its additive constant.

    Parameters
    ----------
    bandwidth : float
        Kernel width ``h`` (Text-ADBench: 50, which on unit vectors is nearly a
        distance-to-the-mean score).
    contamination : float
    """

    def __init__(self, *, bandwidth: float = 1.0, contamination: float = 0.1) -> None:
        self.bandwidth = bandwidth
        self.contamination = contamination

    def _check_params(self) -> None:
        check_float(self.bandwidth, "bandwidth", 0.0, np.inf, low_open=True, high_open=True)

    def _fit(self, x: np.ndarray) -> None:
        self.train_ = x.astype(np.float64)

    def _score(self, x: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        out = np.empty(x.shape[0])
        h2 = 2.0 * float(self.bandwidth) ** 2
        for s in range(0, x.shape[0], 1024):
            logk = -pairwise_sq_dists(x[s:s + 1024], self.train_) / h2
            if exclude_self:
                logk[np.arange(logk.shape[0]), np.arange(s, s + logk.shape[0])] = -np.inf
            top = logk.max(axis=1, keepdims=True)
            out[s:s + 1024] = -(top[:, 0] + np.log(np.exp(logk - top).sum(axis=1)))
        return out

    def _self_scores(self, x: np.ndarray) -> np.ndarray:
        return self._score(x, exclude_self=True)


DETECTORS: dict[str, type[BaseDetector]] = {
    "knn": KNNDetector,
    "lof": LOFDetector,
    "iforest": IForestDetector,
    "pca": PCADetector,
    "ecod": ECODDetector,
    "ocsvm": OCSVMDetector,
    "kde": KDEDetector,
}

#: Detector settings of the Text-ADBench paper (its PyOD arguments).
TEXT_ADBENCH_PARAMS: dict[str, dict[str, Any]] = {
    "ocsvm": {"kernel": "rbf"},
    "iforest": {},
    "lof": {"k": 30},
    "pca": {"n_components": 0.9},
    "knn": {"k": 3},
    "kde": {"bandwidth": 50.0},
    "ecod": {},
}


def make_detector(method: str, **params: Any) -> BaseDetector:
    """Build a detector by name (``"knn"``, ``"lof"``, ``"iforest"``, ``"pca"``, ``"ecod"``, ``"ocsvm"``, ``"kde"``).

    >>> make_detector("knn", k=3)
    KNNDetector(k=3, method='largest', index='flat', nlist=None, nprobe=16, ef_search=64, contamination=0.1, threshold_sample=10000, seed=0)
    """
    check_choice(method, "method", tuple(DETECTORS))
    cls = DETECTORS[method]
    unknown = set(params) - set(cls._param_names())
    if unknown:
        raise InvalidInputError(
            f"{cls.__name__} has no parameter(s) {', '.join(sorted(unknown))}; its parameters are {', '.join(cls._param_names())}"
        )
    return cls(**params)

