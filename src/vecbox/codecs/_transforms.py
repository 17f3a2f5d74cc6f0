"""Transforms: ``rot`` / ``rot:hadamard`` and ``pca`` (orthogonal, keep inner products), ``trunc:D``.

* ``rot:qr`` — a seeded random orthogonal matrix: ``Q`` of the QR factorisation of a
  standard normal ``d x d`` matrix, columns sign-fixed by ``diag(R)`` (Outlier-Safe
  Pre-Training's ``rotation_utils``; research/algorithms.md §5). It spreads the
  energy of outlier dimensions over all dimensions before low-bit quantization.
* ``rot:hadamard`` — ``H diag(s) / sqrt(d)`` with ``H`` a Hadamard matrix
  (Sylvester ``2^k``, times a Paley block of order 12, 20, 24 ... for widths such
  as 384) and ``s`` seeded random signs. Only the signs are stored.
* ``rot`` — ``rot:hadamard`` where the width has a Hadamard construction, else
  ``rot:qr``. Measured over seeds 0-4 with int4 (compression benchmark): Hadamard
  was +0.00 / +0.23 recall points against plain int4 on SciFact docs / sentences,
  QR -0.19 / -0.00, and Hadamard was better on the planted-outlier set; it also
  fits 10x faster and stores d signs instead of d^2 floats. A collection saved with
  the QR ``rot`` of earlier versions keeps its matrix (the saved arrays say which).
* ``pca`` — the eigenvectors of the fit sample's covariance, largest variance
  first, applied as a pure rotation (no centring, so inner products are kept):
  "post-hoc Matryoshka", after which ``trunc:D`` keeps the D most varied directions.
* ``trunc:D`` — the first ``D`` dimensions, renormalised to unit length (Matryoshka
  models; research/algorithms.md §3). Queries get the same treatment, so scores
  are cosines at ``D`` dimensions. Zero vectors stay zero.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from vecbox.codecs._base import Transform
from vecbox.codecs._spec import hadamard_factor


class _Orthogonal(Transform):
    """A transform by an orthogonal matrix ``matrix_`` (d x d): inner products are kept exactly."""

    matrix_: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        return x @ self.matrix_

    def invert(self, y: np.ndarray) -> np.ndarray:
        return y @ self.matrix_.T


class Rotation(_Orthogonal):
    """Seeded orthogonal rotation, random (QR) or randomized Hadamard."""

    name: ClassVar[str] = "rot"

    @property
    def kind(self) -> str:
        """``"hadamard"`` or ``"qr"``: as spelled, else as fitted or loaded, else Hadamard where ``d`` has one."""
        if self.args:
            return str(self.args[0])
        return self.__dict__.get("kind_") or ("hadamard" if hadamard_factor(self.d_in) else "qr")

    def fit(self, x: np.ndarray) -> "Rotation":
        self.kind_ = self.kind
        rng = np.random.default_rng(self.seed)
        if self.kind == "hadamard":
            self.signs_ = np.where(rng.random(self.d_in) < 0.5, -1, 1).astype(np.int8)
            self.matrix_ = _hadamard_rotation(self.d_in, self.signs_)
        else:
            self.matrix_ = random_orthogonal(self.d_in, rng)
        return self

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if self.kind == "hadamard":
            return {}, {"signs": self.signs_}
        return {}, {"matrix": self.matrix_}

    def set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.kind_ = "hadamard" if "signs" in arrays else "qr"  # a plain `rot` saved before 0.2 is QR
        if self.kind == "hadamard":
            self.signs_ = arrays["signs"].astype(np.int8)
            self.matrix_ = _hadamard_rotation(self.d_in, self.signs_)
        else:
            self.matrix_ = arrays["matrix"].astype(np.float32)


class PCA(_Orthogonal):
    """Variance-ordered orthogonal rotation learned from the fit sample."""

    name: ClassVar[str] = "pca"
    min_fit_rows: ClassVar[int] = 2

    def fit(self, x: np.ndarray) -> "PCA":
        x64 = x.astype(np.float64)
        centred = x64 - x64.mean(axis=0)
        vals, vecs = np.linalg.eigh(centred.T @ centred / max(len(x) - 1, 1))
        order = np.argsort(-vals, kind="stable")
        vecs = vecs[:, order]
        vecs *= np.where(vecs[np.abs(vecs).argmax(axis=0), np.arange(vecs.shape[1])] < 0, -1.0, 1.0)
        self.matrix_ = vecs.astype(np.float32)
        self.explained_variance_ = vals[order].astype(np.float32)
        return self

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"matrix": self.matrix_, "explained_variance": self.explained_variance_}

    def set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.matrix_ = arrays["matrix"].astype(np.float32)
        self.explained_variance_ = arrays["explained_variance"].astype(np.float32)


class Truncate(Transform):
    """Keep the first ``D`` dimensions and renormalise (Matryoshka truncation)."""

    name: ClassVar[str] = "trunc"

    @property
    def d_out(self) -> int:
        return int(self.args[0])

    def apply(self, x: np.ndarray) -> np.ndarray:
        y = np.ascontiguousarray(x[:, : self.d_out])
        norms = np.linalg.norm(y, axis=1, keepdims=True)
        return np.divide(y, norms, out=np.zeros_like(y), where=norms > 0)

    def invert(self, y: np.ndarray) -> np.ndarray:
        out = np.zeros((len(y), self.d_in), dtype=np.float32)
        out[:, : self.d_out] = y
        return out

    def set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        pass


def random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-random ``d x d`` orthogonal matrix (float32), from QR with the sign fix."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    q *= np.sign(np.diag(r))[None, :]
    return q.astype(np.float32)


def hadamard(n: int) -> np.ndarray:
    """A Hadamard matrix of order ``n`` (entries ±1, ``H Hᵀ = n I``), Sylvester ⊗ Paley I.

    >>> h = hadamard(12); bool((h @ h.T == 12 * np.eye(12)).all())
    True
    """
    factor = hadamard_factor(n)
    if factor is None:
        raise ValueError(f"no Hadamard construction for order {n}")
    m, p = factor
    h = np.ones((1, 1))
    while h.shape[0] < p:
        h = np.block([[h, h], [h, -h]])
    return np.kron(_paley(m), h) if m > 1 else h


def _paley(m: int) -> np.ndarray:
    """Paley construction I: order ``m = q + 1`` for a prime ``q = 3 (mod 4)``."""
    q = m - 1
    residues = {(i * i) % q for i in range(1, q)}
    chi = np.array([0] + [1 if i in residues else -1 for i in range(1, q)])
    jac = chi[(np.arange(q)[None, :] - np.arange(q)[:, None]) % q]  # skew-symmetric for q = 3 mod 4
    s = np.zeros((m, m))
    s[0, 1:] = 1
    s[1:, 0] = -1
    s[1:, 1:] = jac
    return s + np.eye(m)


def _hadamard_rotation(d: int, signs: np.ndarray) -> np.ndarray:
    # Row-vector convention: y = x @ M with M = diag(s) Hᵀ / sqrt(d), i.e. y = H (s * x) / sqrt(d).
    return (signs[:, None].astype(np.float64) * hadamard(d).T / np.sqrt(d)).astype(np.float32)
