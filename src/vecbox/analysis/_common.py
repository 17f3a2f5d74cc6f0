"""Private helpers shared by the analysis modules: input gates and small math (optional imports: :mod:`vecbox._optional`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from vecbox._validation import as_matrix
from vecbox.errors import InvalidInputError


def vectors(x: Any, name: str = "x", d: int | None = None) -> np.ndarray:
    """Return the array ``x`` as a validated float32 ``(n, d)`` matrix (:func:`~vecbox._validation.as_matrix`).

    Analysis takes arrays only; a collection's vectors come from :func:`vecbox.io.collection_vectors`.
    A width mismatch raises :class:`~vecbox.errors.DimensionMismatchError`.
    """
    return as_matrix(x, d=d, name=name)


def normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm (float64); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, eps)


def check_int(value: Any, name: str, low: int = 1, high: int | None = None) -> int:
    """An int in ``[low, high]`` or an :class:`InvalidInputError` naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (
        high is not None and value > high
    ):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InvalidInputError(f"the {name!r} parameter must be an integer {rng}; got {value!r} instead")
    return int(value)


def check_float(value: Any, name: str, low: float, high: float, *, low_open: bool = False,
                high_open: bool = False) -> float:
    """A real number in the given interval or an :class:`InvalidInputError` naming the parameter."""
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and np.isfinite(value)
    if ok:
        v = float(value)
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise InvalidInputError(f"the {name!r} parameter must be a number in {lo}{low}, {high}{hi}; got {value!r} instead")
    return float(value)


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidInputError(f"the {name!r} parameter must be one of {', '.join(map(repr, choices))}; got {value!r} instead")
    return str(value)


def pairwise_sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``(len(a), len(b))`` in float64, clipped at 0."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)
