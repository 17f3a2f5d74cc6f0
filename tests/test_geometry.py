"""Geometry statistics against hand-computed cases and brute-force definitions."""

from __future__ import annotations

import numpy as np
import pytest

from vecbox.analysis import geometry as geo
from vecbox.errors import DimensionMismatchError, InvalidInputError


def unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_alignment_and_uniformity_hand_computed():
    x = [[1.0, 0.0], [0.0, 1.0]]
    y = [[0.0, 1.0], [0.0, 1.0]]
    # distances: sqrt(2) and 0 -> alpha=2: (2 + 0) / 2
    assert geo.alignment(x, y) == pytest.approx(1.0)
    assert geo.alignment(x, y, alpha=1) == pytest.approx(np.sqrt(2) / 2)
    # two antipodal points: ||x1 - x2||^2 = 4 -> log exp(-2 * 4) = -8
    assert geo.uniformity([[1.0, 0.0], [-2.0, 0.0]]) == pytest.approx(-8.0)
    # scaling does not matter (normalised first)
    assert geo.uniformity([[3.0, 0.0], [0.0, 5.0]]) == pytest.approx(-4.0)


def test_uniformity_matches_pairwise_definition(rng):
    x = rng.normal(size=(60, 5))
    a = unit(x)
    d2 = [np.sum((a[i] - a[j]) ** 2) for i in range(60) for j in range(i + 1, 60)]
    assert geo.uniformity(x, t=2) == pytest.approx(np.log(np.mean(np.exp(-2 * np.array(d2)))), rel=1e-6)
    # spread out points are more uniform (lower) than a tight cone
    cone = rng.normal(size=(60, 5)) * 0.05 + np.array([1, 0, 0, 0, 0])
    assert geo.uniformity(x) < geo.uniformity(cone)
    assert geo.joint_uniformity(x, cone) == pytest.approx(geo.uniformity(np.vstack([x, cone]), max_samples=None))
    # repo-compatible mode: x concatenated with itself, y ignored
    assert geo.joint_uniformity(x, cone, repo_compatible=True) == pytest.approx(
        geo.uniformity(np.vstack([x, x]), max_samples=None))


def test_relative_alignment_hand_computed():
    x = [[1.0, 0.0], [0.0, 1.0]]
    # each positive at distance 0, hardest negative at distance^2 2 -> 0 - 2
    assert geo.relative_alignment(x, x) == pytest.approx(-2.0)
    swapped = [[0.0, 1.0], [1.0, 0.0]]
    assert geo.relative_alignment(x, swapped) == pytest.approx(2.0)


def test_modality_gap_and_shift(rng):
    g = geo.modality_gap([[1.0, 0.0]], [[0.0, 1.0]])
    assert g.gap == pytest.approx(np.sqrt(2))
    np.testing.assert_allclose(g.vector, [1.0, -1.0])
    a = unit(rng.normal(size=(200, 8)) + 3 * np.eye(8)[0])
    b = unit(rng.normal(size=(200, 8)) + 3 * np.eye(8)[1])
    gap = geo.modality_gap(a, b).gap
    closer = geo.modality_gap(*geo.shift_gap(a, b, 0.5)).gap
    wider = geo.modality_gap(*geo.shift_gap(a, b, -0.5)).gap
    assert closer < gap < wider
    assert geo.modality_gap(a, a).gap == pytest.approx(0.0, abs=1e-12)


def test_spectral_statistics_hand_computed(rng):
    # rank one: effective rank and participation ratio are 1
    line = np.outer(rng.normal(size=100), rng.normal(size=6))
    assert geo.effective_rank(line) == pytest.approx(1.0, abs=1e-6)
    assert geo.participation_ratio(line) == pytest.approx(1.0, abs=1e-6)
    # equal variance in 4 orthogonal directions: both are 4
    square = np.vstack([np.eye(4), -np.eye(4)]) * 2.0
    assert geo.effective_rank(square) == pytest.approx(4.0)
    assert geo.participation_ratio(square) == pytest.approx(4.0)
    # participation ratio from covariance eigenvalues (brute force)
    x = rng.normal(size=(300, 5)) * np.array([3, 2, 1, 1, 0.5])
    lam = np.linalg.eigvalsh(np.cov(x.T))
    assert geo.participation_ratio(x) == pytest.approx(lam.sum() ** 2 / (lam**2).sum(), rel=1e-6)  # float32 inputs


def test_isotropy_and_mean_cosine(rng):
    sym = np.vstack([np.eye(3), -np.eye(3)])
    assert geo.isotropy(sym) == pytest.approx(1.0)
    cone = rng.normal(size=(500, 16)) * 0.1 + 1.0
    ball = rng.normal(size=(500, 16))
    assert geo.isotropy(cone) < 0.1 < geo.isotropy(ball)
    a = unit(cone)
    sims = a @ a.T
    brute = (sims.sum() - np.trace(sims)) / (500 * 499)
    assert geo.mean_cosine(cone) == pytest.approx(brute)
    assert abs(geo.mean_cosine(ball)) < 0.05


def test_dimension_stats_match_scipy(rng):
    stats = pytest.importorskip("scipy.stats")
    x = rng.standard_t(5, size=(2000, 6))
    x[:, 2] = x[:, 2] * 10 + 40
    ds = geo.dimension_stats(x)
    np.testing.assert_allclose(ds.kurtosis, stats.kurtosis(x, axis=0, fisher=True, bias=True), rtol=1e-5)
    np.testing.assert_allclose(ds.mean, x.mean(0), atol=1e-5)
    assert ds.outlier_dims.tolist() == [2]
    assert set(geo.dimension_stats_dict(ds)) == {"mean", "std", "min", "max", "kurtosis", "outlier_dims"}


def test_geometry_report_and_errors(rng):
    x, y = rng.normal(size=(50, 8)), rng.normal(size=(50, 8)) + 1
    rep = geo.geometry_report(x, y)
    for key in ("uniformity", "effective_rank", "isotropy", "gap", "alignment", "relative_alignment"):
        assert np.isfinite(rep[key]), key
    with pytest.raises(DimensionMismatchError):
        geo.modality_gap(x, rng.normal(size=(5, 7)))
    with pytest.raises(InvalidInputError, match="positive pairs"):
        geo.alignment(x, y[:10])
    with pytest.raises(InvalidInputError, match="NaN"):
        geo.uniformity(np.array([[np.nan, 1.0], [1.0, 0.0]]))
    with pytest.raises(InvalidInputError, match="'t' parameter"):
        geo.uniformity(x, t=0)
    with pytest.raises(InvalidInputError, match="at least 2"):
        geo.effective_rank(x[:1])
