"""Geometry of an embedding space: alignment, uniformity, modality gap, effective rank, isotropy.

All functions take arrays ``(n, d)`` and return plain floats or
small dataclasses. Vectors are L2-normalised first wherever the definition is on
the unit sphere (alignment, uniformity, gap, mean cosine).

Definitions
-----------
* alignment (Wang & Isola 2020): ``mean_i ||x_i - y_i||^alpha`` over positive
  pairs, in [0, 2^alpha]; lower = positives closer.
* uniformity: ``log mean_{i<j} exp(-t ||x_i - x_j||^2)``, in [-4t, 0]; lower =
  more uniform on the sphere.
* relative alignment (what ``changdaeoh/multimodal-mixup`` logs as "alignment"):
  ``mean_i [||x_i - y_i||^2 - min_{j != i} ||x_i - y_j||^2]``; negative when each
  positive is closer than the hardest negative.
* modality gap (Liang et al. 2022): ``||mean(x) - mean(y)||`` of the normalised
  sets, in [0, 2].
* effective rank (Roy & Vetterli 2007): ``exp(H(p))``, ``p = s / sum(s)`` over the
  singular values of the centred data, in [1, min(n, d)].
* participation ratio: ``(sum lambda)^2 / sum lambda^2`` over covariance
  eigenvalues, in [1, min(n, d)].
* isotropy (Mu & Viswanath 2018): ``min_c Z(c) / max_c Z(c)`` with
  ``Z(c) = sum_i exp(c . x_i)`` over the principal directions ``c``, in (0, 1];
  1 = isotropic.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(400, 16))
>>> round(effective_rank(x), 1), round(participation_ratio(x), 1)
(15.9, 15.4)
>>> round(modality_gap(x, x + 3.0).gap, 3) > 0.5
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vecbox.analysis._common import check_float, check_int, normalize, vectors
from vecbox.errors import DimensionMismatchError, InvalidInputError


def _pair(x: Any, y: Any, same_n: bool) -> tuple[np.ndarray, np.ndarray]:
    xv = vectors(x, "x")
    yv = vectors(y, "y")
    if xv.shape[1] != yv.shape[1]:
        raise DimensionMismatchError(f"x has {xv.shape[1]} columns and y has {yv.shape[1]}; both sets must live in one space")
    if same_n and xv.shape[0] != yv.shape[0]:
        raise InvalidInputError(f"x has {xv.shape[0]} rows and y has {yv.shape[0]}; pass aligned positive pairs (row i with row i)")
    return xv, yv


def alignment(x: Any, y: Any, alpha: float = 2.0) -> float:
    """Mean distance^alpha between positive pairs ``(x_i, y_i)`` on the unit sphere; lower is better.

    >>> round(alignment([[1.0, 0.0]], [[0.0, 1.0]]), 6)
    2.0
    """
    xv, yv = _pair(x, y, same_n=True)
    check_float(alpha, "alpha", 0.0, np.inf, low_open=True, high_open=True)
    return float(np.mean(np.linalg.norm(normalize(xv) - normalize(yv), axis=1) ** alpha))


def relative_alignment(x: Any, y: Any) -> float:
    """Positive distance minus hardest-negative distance (squared), averaged over ``x`` (repo-compatible).

    >>> relative_alignment([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]])
    -2.0
    """
    xv, yv = _pair(x, y, same_n=True)
    if xv.shape[0] < 2:
        raise InvalidInputError("relative_alignment needs at least 2 pairs (a negative for each positive)")
    a, b = normalize(xv), normalize(yv)
    d2 = np.maximum(2.0 - 2.0 * (a @ b.T), 0.0)
    pos = np.diag(d2).copy()
    np.fill_diagonal(d2, np.inf)
    return float(np.mean(pos - d2.min(axis=1)))


def uniformity(x: Any, t: float = 2.0, *, max_samples: int | None = 5000, seed: int = 0) -> float:
    """``log mean_{i<j} exp(-t ||x_i - x_j||^2)`` of the normalised rows; lower = more uniform.

    Over at most ``max_samples`` rows (a seeded sample; ``None`` = all rows).

    >>> round(uniformity([[1.0, 0.0], [-1.0, 0.0]]), 1)
    -8.0
    """
    xv = vectors(x, "x")
    check_float(t, "t", 0.0, np.inf, low_open=True, high_open=True)
    if xv.shape[0] < 2:
        raise InvalidInputError("uniformity needs at least 2 vectors")
    if max_samples is not None and xv.shape[0] > check_int(max_samples, "max_samples", low=2):
        xv = xv[np.random.default_rng(seed).choice(xv.shape[0], max_samples, replace=False)]
    a = normalize(xv)
    iu = np.triu_indices(a.shape[0], k=1)
    d2 = np.maximum(2.0 - 2.0 * (a @ a.T), 0.0)[iu]
    v = -t * d2
    top = v.max()
    return float(top + np.log(np.mean(np.exp(v - top))))


def joint_uniformity(x: Any, y: Any, t: float = 2.0, *, repo_compatible: bool = False, **kw: Any) -> float:
    """Uniformity of two sets together (``cat([x, y])``), the multimodal reading of the m²-mix paper.

    ``repo_compatible=True`` reproduces what ``changdaeoh/multimodal-mixup`` logs:
    ``uniformity(cat([x, x]))`` - ``x`` concatenated with itself (its duplicate
    pairs add zero distances) and ``y`` ignored.
    """
    xv, yv = _pair(x, y, same_n=False)
    both = np.vstack([xv, xv]) if repo_compatible else np.vstack([xv, yv])
    if repo_compatible:
        kw.setdefault("max_samples", None)
    return uniformity(both, t, **kw)


@dataclass(frozen=True)
class Gap:
    """Centroid gap between two sets on the unit sphere."""

    gap: float
    """``||mean(normalize(x)) - mean(normalize(y))||``, in [0, 2]."""
    vector: np.ndarray
    """The gap vector ``mean(x) - mean(y)`` (d,)."""
    cosine: float
    """Mean cosine between the two sets' centroids' directions (1 = same direction)."""


def modality_gap(x: Any, y: Any) -> Gap:
    """Gap between the centroids of two normalised sets (e.g. images and texts, or two models).

    >>> modality_gap([[1.0, 0.0]], [[0.0, 1.0]]).gap
    1.4142135623730951
    """
    xv, yv = _pair(x, y, same_n=False)
    cx, cy = normalize(xv).mean(axis=0), normalize(yv).mean(axis=0)
    delta = cx - cy
    cos = float(cx @ cy / max(np.linalg.norm(cx) * np.linalg.norm(cy), 1e-12))
    return Gap(float(np.linalg.norm(delta)), delta, cos)


def shift_gap(x: Any, y: Any, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Move the two sets along the unit gap direction and renormalise (Liang et al.'s gap shifting).

    ``x`` moves by ``-lam/2`` and ``y`` by ``+lam/2`` along ``gap / ||gap||``:
    ``lam > 0`` closes the gap, ``lam < 0`` widens it. Returns the shifted,
    normalised ``(x, y)`` as float64.
    """
    xv, yv = _pair(x, y, same_n=False)
    check_float(lam, "lam", -np.inf, np.inf, low_open=True, high_open=True)
    g = modality_gap(xv, yv).vector
    norm = np.linalg.norm(g)
    if norm == 0:
        return normalize(xv), normalize(yv)
    u = g / norm
    return normalize(normalize(xv) - lam / 2 * u), normalize(normalize(yv) + lam / 2 * u)


def _centred_spectrum(x: Any) -> np.ndarray:
    xv = vectors(x, "x").astype(np.float64)
    if xv.shape[0] < 2:
        raise InvalidInputError("spectral statistics need at least 2 vectors")
    return np.linalg.svd(xv - xv.mean(axis=0), compute_uv=False)


def effective_rank(x: Any) -> float:
    """Roy & Vetterli's effective rank of the centred data, in [1, min(n, d)]."""
    s = _centred_spectrum(x)
    s = s[s > s.max() * 1e-12] if s.max() > 0 else np.ones(1)
    p = s / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def participation_ratio(x: Any) -> float:
    """``(sum lambda)^2 / sum lambda^2`` over covariance eigenvalues, in [1, min(n, d)]."""
    lam = _centred_spectrum(x) ** 2
    if lam.sum() == 0:
        return 1.0
    return float(lam.sum() ** 2 / (lam**2).sum())


def isotropy(x: Any) -> float:
    """Mu & Viswanath's partition-function isotropy of the (uncentred) vectors, in (0, 1]; 1 = isotropic."""
    xv = vectors(x, "x").astype(np.float64)
    _, _, vt = np.linalg.svd(xv, full_matrices=False)
    logz = np.array([_logsumexp(xv @ c) for c in np.vstack([vt, -vt])])
    return float(np.exp(logz.min() - logz.max()))


def _logsumexp(v: np.ndarray) -> float:
    top = v.max()
    return float(top + np.log(np.exp(v - top).sum()))


def mean_cosine(x: Any, *, max_samples: int | None = 5000, seed: int = 0) -> float:
    """Average cosine between distinct rows, in [-1, 1]: near 0 for an isotropic space, high for a cone."""
    xv = vectors(x, "x")
    if xv.shape[0] < 2:
        raise InvalidInputError("mean_cosine needs at least 2 vectors")
    if max_samples is not None and xv.shape[0] > max_samples:
        xv = xv[np.random.default_rng(seed).choice(xv.shape[0], max_samples, replace=False)]
    a = normalize(xv)
    n = a.shape[0]
    s = a.sum(axis=0)
    return float((s @ s - n) / (n * (n - 1)))


@dataclass(frozen=True)
class DimensionStats:
    """Per-dimension statistics (arrays of shape (d,)) and the outlier dimensions they reveal."""

    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    kurtosis: np.ndarray
    """Excess kurtosis of each dimension (0 for a Gaussian)."""
    outlier_dims: np.ndarray
    """Dimensions whose |mean| or std exceeds ``outlier_factor`` x the median over dimensions."""


def dimension_stats(x: Any, outlier_factor: float = 5.0) -> DimensionStats:
    """Mean, std, range and excess kurtosis of every dimension, plus outlier dimensions.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(1000, 8)); x[:, 3] += 20
    >>> dimension_stats(x).outlier_dims.tolist()
    [3]
    """
    xv = vectors(x, "x").astype(np.float64)
    check_float(outlier_factor, "outlier_factor", 1.0, np.inf, high_open=True)
    mean, std = xv.mean(axis=0), xv.std(axis=0)
    centred = xv - mean
    m2 = (centred**2).mean(axis=0)
    kurt = np.where(m2 > 0, (centred**4).mean(axis=0) / np.where(m2 > 0, m2, 1.0) ** 2 - 3.0, 0.0)
    am, ms = np.median(np.abs(mean)), np.median(std)
    out = (np.abs(mean) > outlier_factor * max(am, 1e-12)) & (np.abs(mean) > 1e-6) | (std > outlier_factor * max(ms, 1e-12))
    return DimensionStats(mean, std, xv.min(axis=0), xv.max(axis=0), kurt, np.flatnonzero(out))


def geometry_report(x: Any, y: Any = None, *, max_samples: int = 5000, seed: int = 0) -> dict[str, Any]:
    """Every single-number statistic of ``x`` (and, with ``y``, of the pair) as a flat dict.

    Keys: ``n``, ``d``, ``mean_norm``, ``uniformity``, ``mean_cosine``, ``effective_rank``,
    ``participation_ratio``, ``isotropy``, ``n_outlier_dims``, ``max_abs_kurtosis``; with ``y``
    also ``gap``, ``joint_uniformity`` and, when the rows are paired (same n), ``alignment``
    and ``relative_alignment``.
    """
    xv = vectors(x, "x")
    sample = xv
    if xv.shape[0] > max_samples:
        sample = xv[np.random.default_rng(seed).choice(xv.shape[0], max_samples, replace=False)]
    ds = dimension_stats(sample)
    out: dict[str, Any] = {
        "n": int(xv.shape[0]),
        "d": int(xv.shape[1]),
        "mean_norm": float(np.linalg.norm(xv, axis=1).mean()),
        "uniformity": uniformity(sample, max_samples=None) if sample.shape[0] > 1 else float("nan"),
        "mean_cosine": mean_cosine(sample, max_samples=None) if sample.shape[0] > 1 else float("nan"),
        "effective_rank": effective_rank(sample) if sample.shape[0] > 1 else float("nan"),
        "participation_ratio": participation_ratio(sample) if sample.shape[0] > 1 else float("nan"),
        "isotropy": isotropy(sample),
        "n_outlier_dims": int(ds.outlier_dims.size),
        "max_abs_kurtosis": float(np.abs(ds.kurtosis).max()),
    }
    if y is not None:
        xv2, yv = _pair(xv, y, same_n=False)
        out["gap"] = modality_gap(xv2, yv).gap
        out["joint_uniformity"] = joint_uniformity(xv2, yv, max_samples=max_samples, seed=seed)
        if xv2.shape[0] == yv.shape[0] and xv2.shape[0] > 1:
            out["alignment"] = alignment(xv2, yv)
            out["relative_alignment"] = relative_alignment(xv2[:max_samples], yv[:max_samples])
    return out


def dimension_stats_dict(stats: DimensionStats) -> dict[str, Any]:
    """A :class:`DimensionStats` as JSON-ready lists."""
    return {k: np.asarray(v).tolist() for k, v in asdict(stats).items()}


__all__ = [
    "alignment",
    "relative_alignment",
    "uniformity",
    "joint_uniformity",
    "Gap",
    "modality_gap",
    "shift_gap",
    "effective_rank",
    "participation_ratio",
    "isotropy",
    "mean_cosine",
    "DimensionStats",
    "dimension_stats",
    "dimension_stats_dict",
    "geometry_report",
]
