"""Fusion of ranked lists (dense and lexical) into one hybrid ranking.

Each retriever hands over its top candidates as ``(positions, scores)``, best first.
:class:`Fusion` turns them into one list. Methods:

* ``"rrf"`` - reciprocal rank fusion, ``sum_i w_i / (k + rank_i)`` (ranks from 1; ``w = 1``).
* ``"minmax"`` - each list scaled to [0, 1] by its own min and max (Weaviate's relative score);
  a document a list did not return gets 0 from it.
* ``"3sigma"`` - each list scaled by ``(s - (mean - 3 std)) / (6 std)`` of its own scores
  (Qdrant's DBSF); a document a list did not return gets 0 from it.
* ``"zscore"`` - z-scores over the union of the candidates, equal weights (see below).
* ``"default"`` - the same z-scores, weighted per query by each list's confidence.

The default, step by step (``n`` = size of the union of candidates):

1. A document missing from a list gets that list's lowest score: a top-N list says only
   that the others score at most that much. A list whose scores are all equal says only
   which documents it found, so its hits count 1 and the others 0.
2. ``z_i`` = list ``i``'s scores standardised over the ``n`` union documents, so both
   retrievers speak in the same unit whatever their raw scales.
3. Confidence ``c_i = max(z_i(top hit of i) - e(n), 0.1)``, where ``e(n)`` is the expected
   largest of ``n`` standard normal draws (Blom's approximation): a list's best hit counts
   only by how far it clears the best hit pure noise would show. The floor keeps a flat
   list as a tie-breaker.
4. Fused score ``sum_i w_i z_i`` with ``w_i = c_i / sum_j c_j`` (times the user's weights).

Gaussian reasoning: if relevant documents sit ``d_i`` standard deviations above the rest,
the log-likelihood ratio of relevance is ``sum_i d_i z_i`` up to a constant; ``c_i`` is an
estimate of ``d_i`` from the one hit that is probably relevant, less its selection bias.
Measured in ``benchmarks/_hybrid/fusion_study.py``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from vecbox.errors import InvalidInputError

try:
    from vecbox.query import _fusion
except ImportError:  # a source tree without the built extension: the numpy path answers
    _fusion = None

METHODS = ("default", "rrf", "minmax", "zscore", "3sigma")
MIN_CONFIDENCE = 0.1
_SPEC_HELP = ("a fusion spec is None, one of " + ", ".join(repr(m) for m in METHODS)
              + ", a dict such as {'method': 'rrf', 'k': 20, 'weights': (1.0, 2.0)}, or a Fusion")


@dataclass(frozen=True)
class FusedList:
    """The fused ranking: ``positions`` best first, their fused ``scores``, and ``details`` for explain."""

    positions: np.ndarray
    scores: np.ndarray
    details: dict[str, Any] = field(default_factory=dict)


@functools.lru_cache(maxsize=4096)  # union sizes repeat (at most 2 x candidates of them); inv_cdf is pure Python
def noise_max(n: int) -> float:
    """Expected largest of ``n`` independent standard normal draws (Blom's approximation).

    >>> noise_max(1), round(noise_max(100), 3)
    (0.0, 2.499)
    """
    return NormalDist().inv_cdf((n - 0.375) / (n + 0.25)) if n > 1 else 0.0


def _clean(pos: np.ndarray, sc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop non-finite scores and repeated positions (the first, best, occurrence stays)."""
    pos = np.asarray(pos, dtype=np.int64).reshape(-1)
    sc = np.asarray(sc, dtype=np.float64).reshape(-1)
    if pos.shape != sc.shape:
        raise InvalidInputError(f"fusion: a list has {pos.size} positions but {sc.size} scores")
    keep = np.isfinite(sc)
    if not keep.all():
        pos, sc = pos[keep], sc[keep]
    # a retriever's list has no repeats: check that cheaply (a sort), deduplicate only when it does
    if pos.size > 1:
        srt = np.sort(pos)
        if (srt[1:] == srt[:-1]).any():
            _, first = np.unique(pos, return_index=True)
            first.sort()
            pos, sc = pos[first], sc[first]
    return pos, sc


def _mean_std_dev(a: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Mean, population standard deviation and deviations ``a - mean`` of a small 1-d float64 array.

    ``np.mean`` / ``np.std`` without their per-call overhead (fusion runs on every hybrid query).

    >>> mu, sd, dev = _mean_std_dev(np.array([1.0, 2.0, 3.0, 4.0]))
    >>> mu, sd, dev.tolist()
    (2.5, 1.118033988749895, [-1.5, -0.5, 0.5, 1.5])
    """
    mu = float(np.add.reduce(a)) / a.size
    d = a - mu
    return mu, math.sqrt(float(np.dot(d, d)) / a.size), d


_noise = np.empty(0)  # noise_max(n) for n = 0, 1, ... (the C fusion reads it)


def _noise_table(grow: bool = False) -> np.ndarray:
    """``noise_max(n)`` for ``n = 0, 1, ...``: 4,096 of them at first, twice as many each time a union outgrows them."""
    global _noise
    if grow or not len(_noise):
        _noise = np.array([noise_max(n) for n in range(max(4096, 2 * len(_noise)))])
    return _noise


def _sorted_union(parts: list[np.ndarray]) -> np.ndarray:
    """The distinct positions of ``parts``, ascending (``np.unique`` of their concatenation, a quarter of its cost).

    >>> _sorted_union([np.array([5, 1]), np.array([1, 3])]).tolist()
    [1, 3, 5]
    """
    c = np.concatenate(parts) if parts else np.empty(0, np.int64)
    if c.size < 2:
        return c
    c.sort()
    first = np.empty(c.size, bool)
    first[0] = True
    np.not_equal(c[1:], c[:-1], out=first[1:])
    return c[first]


def _rank_order(pos: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the best ``k``: higher score first, then lower position (deterministic)."""
    return np.lexsort((pos, -scores))[:k]


@dataclass(frozen=True)
class Fusion:
    """How a hybrid search merges its ranked lists (see the module docstring for the methods).

    >>> dense = (np.array([3, 1, 5]), np.array([0.9, 0.8, 0.3]))
    >>> lexical = (np.array([1, 7]), np.array([5.0, 2.0]))
    >>> out = Fusion.parse("rrf").fuse([dense, lexical], k=3)
    >>> out.positions.tolist(), round(float(out.scores[0]), 5)   # 1/62 + 1/61
    ([1, 3, 7], 0.03252)
    >>> out = Fusion().fuse([dense, lexical], k=4)   # the lexical list's top stands out more
    >>> out.positions.tolist(), [round(w, 2) for w in out.details["weights"]]
    ([1, 3, 5, 7], [0.15, 0.85])
    """

    method: str = "default"
    k: int = 60
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidInputError(f"unknown fusion method {self.method!r}; {_SPEC_HELP}")
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise InvalidInputError(f"fusion k (the RRF constant) must be a positive integer; got {self.k!r}")
        object.__setattr__(self, "k", int(self.k))
        if self.weights is not None:
            w = self.weights
            ok = isinstance(w, (Sequence, np.ndarray)) and not isinstance(w, str) and len(w) >= 1 and all(
                isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)
                and np.isfinite(x) and x >= 0 for x in w)
            if not ok or sum(w) <= 0:
                raise InvalidInputError(f"fusion weights must be non-negative numbers, one per list "
                                        f"(dense, lexical), not all zero; got {w!r}")
            object.__setattr__(self, "weights", tuple(float(x) for x in w))

    @classmethod
    def parse(cls, spec: Any) -> Fusion:
        """A :class:`Fusion` from ``None`` (the default), a method name, a dict or a Fusion.

        >>> Fusion.parse({"method": "rrf", "k": 20})
        Fusion(method='rrf', k=20, weights=None)
        >>> Fusion.parse(None).method
        'default'
        """
        if spec is None:
            return cls()
        if isinstance(spec, Fusion):
            return spec
        if isinstance(spec, str):
            if spec not in METHODS:
                raise InvalidInputError(f"unknown fusion {spec!r}; {_SPEC_HELP}")
            return cls(method=spec)
        if isinstance(spec, Mapping):
            unknown = sorted(map(str, set(spec) - {"method", "k", "weights"}))
            if unknown:
                raise InvalidInputError(f"unknown fusion setting(s) {unknown}; {_SPEC_HELP}")
            return cls(**spec)
        raise InvalidInputError(f"cannot read fusion spec {spec!r} ({type(spec).__name__}); {_SPEC_HELP}")

    def fuse(self, lists: Sequence[tuple[np.ndarray, np.ndarray]], k: int, *, checked: bool = False) -> FusedList:
        """Merge ``(positions, scores)`` lists (each best first) into the best ``k`` positions.

        ``checked``: the lists are already 1-d int64 positions without repeats and finite float64
        scores (a retriever's own output), so the cleaning pass is skipped.

        >>> no_match = (np.array([], dtype=np.int64), np.array([]))
        >>> Fusion("minmax").fuse([(np.array([4, 2]), np.array([0.5, 0.1])), no_match], k=5).positions.tolist()
        [4, 2]
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidInputError(f"fusion k (results to return) must be a positive integer; got {k!r}")
        cleaned = list(lists) if checked else [_clean(p, s) for p, s in lists]
        if self.weights is not None and len(self.weights) != len(cleaned):
            raise InvalidInputError(f"fusion has {len(self.weights)} weights for {len(cleaned)} lists")
        user = np.asarray(self.weights if self.weights is not None else [1.0] * len(cleaned))
        details: dict[str, Any] = {"method": self.method, "candidates": [int(p.size) for p, _ in cleaned]}
        union = _sorted_union([p for p, _ in cleaned])
        details["union"] = int(union.size)
        if union.size == 0:
            details["weights"] = [0.0] * len(cleaned)
            return FusedList(np.empty(0, np.int64), np.empty(0), details)
        if checked and _fusion is not None and self.method in ("default", "zscore"):
            return self._z_fusion_c(cleaned, user, int(k), details)
        if self.method == "rrf":
            details["k"] = self.k
            total = np.zeros(union.size)
            for (p, _), w in zip(cleaned, user):
                total[np.searchsorted(union, p)] += w / (self.k + 1.0 + np.arange(p.size))
            details["weights"] = user.tolist()
        else:
            total = self._score_fusion(cleaned, union, user, details)
        top = _rank_order(union, total, int(k))
        return FusedList(union[top], total[top], details)

    def _z_fusion_c(self, cleaned: list[tuple[np.ndarray, np.ndarray]], user: np.ndarray, k: int,
                    details: dict[str, Any]) -> FusedList:
        """The z-score fusions ("default", "zscore") in one C pass (:mod:`vecbox.query._fusion`), same details."""
        n_lists = len(cleaned)
        out_p, out_s = np.empty(k, np.int64), np.empty(k)
        weights, stats = np.empty(n_lists), np.empty((n_lists, 9))
        default = self.method == "default"
        args = ([np.ascontiguousarray(p, np.int64) for p, _ in cleaned],
                [np.ascontiguousarray(s, np.float64) for _, s in cleaned], np.ascontiguousarray(user, np.float64),
                default)
        while (got := _fusion.fuse(*args, _noise_table(), k, out_p, out_s, weights, stats)) is None:
            _noise_table(grow=True)  # a union larger than the table
        written, union = got
        details["union"] = union
        details["weights"] = weights.tolist()
        per_list = []
        for n, lo, hi, mean, std, member, u_mean, u_std, top_z in stats.tolist():
            if n == 0:
                per_list.append({"n": 0})
                continue
            info: dict[str, Any] = {"n": int(n), "min": lo, "max": hi, "mean": mean, "std": std}
            if member:
                info["membership_only"] = True
            info.update(union_mean=u_mean, union_std=u_std, top_z=top_z)
            if default:
                info["confidence"] = max(top_z - noise_max(union), MIN_CONFIDENCE)
            per_list.append(info)
        details["lists"] = per_list
        if default:
            details.update(noise_max=noise_max(union), min_confidence=MIN_CONFIDENCE)
        return FusedList(out_p[:written], out_s[:written], details)

    def _score_fusion(self, cleaned: list[tuple[np.ndarray, np.ndarray]], union: np.ndarray,
                      user: np.ndarray, details: dict[str, Any]) -> np.ndarray:
        """Normalise each list onto the union, weight and sum; records the parameters in ``details``."""
        columns, conf, per_list = [], [], []
        for p, s in cleaned:
            col, c, info = _column(self.method, np.searchsorted(union, p), s, union.size)
            columns.append(col)
            conf.append(c)
            per_list.append(info)
        w = user * np.asarray(conf)
        if w.sum() <= 0:  # the user's weight sits on lists that came back empty
            w = np.asarray(conf)
        w = w / w.sum()
        details["weights"] = w.tolist()
        details["lists"] = per_list
        if self.method == "default":
            details.update(noise_max=noise_max(union.size), min_confidence=MIN_CONFIDENCE)
        return np.asarray(columns).T @ w


def _column(method: str, at: np.ndarray, s: np.ndarray, n: int) -> tuple[np.ndarray, float, dict[str, Any]]:
    """One list's normalised scores over the ``n`` union documents (its hits at ``at``), its confidence, its stats."""
    if s.size == 0:
        return np.zeros(n), 0.0, {"n": 0}
    # Every normalisation is scale-free; dividing by max|s| first keeps huge scores from overflowing.
    raw_lo, raw_hi = float(s.min()), float(s.max())
    scale = max(abs(raw_lo), abs(raw_hi)) or 1.0
    s = s / scale
    lo, hi = raw_lo / scale, raw_hi / scale  # = s.min(), s.max(): division by a positive number keeps the order
    mean, std, _ = _mean_std_dev(s)
    info: dict[str, Any] = {"n": int(s.size), "min": lo * scale, "max": hi * scale, "mean": mean * scale,
                            "std": std * scale}
    if hi == lo:
        info["membership_only"] = True
        s, fill = np.ones(s.size), 0.0
        if method in ("minmax", "3sigma"):
            col = np.zeros(n)
            col[at] = 1.0
            return col, 1.0, info
    elif method == "minmax":
        col = np.zeros(n)
        col[at] = (s - lo) / (hi - lo)
        return col, 1.0, info
    elif method == "3sigma":
        low, width = mean - 3 * std, 6 * std
        col = np.zeros(n)
        col[at] = (s - low) / width
        info.update(low=float(low * scale), high=float((low + width) * scale))
        return col, 1.0, info
    else:
        fill = lo
    x = np.full(n, fill)
    x[at] = s
    mu, sd, dev = _mean_std_dev(x)
    z = dev / sd if sd > 0 else np.zeros(n)
    top_z = float(z[at[0]])
    unit = 1.0 if info.get("membership_only") else scale
    info.update(union_mean=mu * unit, union_std=sd * unit, top_z=top_z)
    if method != "default":
        return z, 1.0, info
    info["confidence"] = c = max(top_z - noise_max(n), MIN_CONFIDENCE)
    return z, c, info


__all__ = ["METHODS", "MIN_CONFIDENCE", "FusedList", "Fusion", "noise_max"]
