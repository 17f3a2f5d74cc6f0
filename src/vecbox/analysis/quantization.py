"""Quantization diagnostics: outlier statistics and a recall estimate per codec on your own vectors.

* :func:`vector_kurtosis` — per-vector excess kurtosis across dimensions, exactly as
  Outlier-Safe Pre-Training measures it (``evaluate_kurtosis.py``; research/algorithms.md §5):
  ``k = mean_D(x⁴) / std_D(x)⁴ − 3``, with the **raw** (uncentred) fourth moment and the
  Bessel-corrected, centred standard deviation over the D dimensions of one vector.
  :func:`osp_kurtosis` is the paper's summary: the mean over vectors of ``relu(k)``.
  A vector whose energy sits in a few dimensions has a large value (up to about D);
  a Gaussian-like vector has about 0.
* :func:`dimension_kurtosis` — per-dimension excess kurtosis across vectors (Fisher:
  centred fourth moment over the squared variance, minus 3): spiky dimensions.
* :func:`outlier_dimensions` — dimensions whose RMS magnitude is many times the median's.
* :func:`quantization_report` — fits each candidate codec on a sample, measures
  recall@k against exact search on that sample (codes alone, and with exact rescoring
  of ``k × oversample`` candidates) and recommends the smallest codec that meets a target.

Every function takes an ``(n, d)`` array (for a collection's vectors use
:func:`vecbox.io.collection_vectors` and pass ``metric=col.metric``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from vecbox import _validation as v
from vecbox.codecs import make_codec
from vecbox.index.codescan import two_stage_search
from vecbox.errors import InvalidInputError
from vecbox.index.flat import exact_topk

DEFAULT_CODECS = ("int8", "rot+int8", "int4", "rot+int4", "binary", "pq")


def vector_kurtosis(x: Any) -> np.ndarray:
    """Per-vector excess kurtosis across dimensions (the OSP definition); shape ``(n,)``.

    Examples
    --------
    >>> x = np.zeros((1, 384), np.float32); x[0, :] = 0.01; x[0, 7] = 1.0
    >>> float(vector_kurtosis(x)[0]) > 100
    True
    """
    x = v.as_matrix(x, name="x").astype(np.float64)
    if x.shape[1] < 2:
        raise InvalidInputError("kurtosis across dimensions needs vectors with at least 2 dimensions")
    m4 = np.mean(x**4, axis=1)
    std = np.std(x, axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = m4 / std**4 - 3.0
    return np.where(std > 0, k, 0.0)


def osp_kurtosis(x: Any) -> float:
    """OSP's summary number: the mean over vectors of ``relu(vector_kurtosis(x))``."""
    return float(np.maximum(vector_kurtosis(x), 0.0).mean())


def dimension_kurtosis(x: Any) -> np.ndarray:
    """Per-dimension excess kurtosis across vectors (Fisher, biased moments); shape ``(d,)``, 0 for constant dims."""
    x = v.as_matrix(x, name="x").astype(np.float64)
    c = x - x.mean(axis=0)
    m2 = np.mean(c**2, axis=0)
    m4 = np.mean(c**4, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = m4 / m2**2 - 3.0
    return np.where(m2 > 0, k, 0.0)


def outlier_dimensions(x: Any, threshold: float = 5.0) -> np.ndarray:
    """Dimensions whose RMS magnitude exceeds ``threshold`` × the median dimension's, largest first.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((500, 64)).astype(np.float32); x[:, 9] *= 40
    >>> outlier_dimensions(x).tolist()
    [9]
    """
    x = v.as_matrix(x, name="x")
    threshold = v.check_finite_number(threshold, "threshold")
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=0))
    ratio = rms / max(float(np.median(rms)), np.finfo(np.float64).tiny)
    dims = np.flatnonzero(ratio > threshold)
    return dims[np.argsort(-ratio[dims], kind="stable")]


# --------------------------------------------------------------------------- readiness report
@dataclass(frozen=True)
class CodecEstimate:
    """Recall@k of one codec on the sample (1.0 = same top-k as exact float search)."""

    spec: str
    bytes_per_vector: int
    compression: float  # float32 bytes / code bytes
    recall: float  # codes alone (keep_float=False)
    recall_rescored: float  # scan k*oversample codes, rescore exactly (keep_float=True, the default)


@dataclass(frozen=True)
class QuantizationReport:
    """What :func:`quantization_report` found; ``as_dict()`` gives JSON-ready data."""

    n_vectors: int
    dim: int
    sample: int
    queries: int
    k: int
    oversample: float
    target: float
    osp_kurtosis: float
    max_vector_kurtosis: float
    max_dimension_kurtosis: float
    outlier_dimensions: list[int]
    estimates: list[CodecEstimate]
    recommended: str
    reason: str
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def quantization_report(
    x: Any,
    *,
    codecs: tuple[str, ...] = DEFAULT_CODECS,
    sample: int = 5000,
    queries: int = 200,
    k: int = 10,
    oversample: float = 4.0,
    target: float = 0.95,
    metric: str = "cosine",
    seed: int = 0,
) -> QuantizationReport:
    """Estimate recall@k per codec on a sample of your vectors and recommend one.

    A seeded sample of ``sample`` vectors is the database and ``queries`` other vectors
    are the queries; exact search on the sample is the reference. The recommendation is
    the smallest codec whose rescored recall (the default collection mode, floats kept on
    disk) reaches ``target``; ties go to the higher recall.

    Parameters
    ----------
    x : array (n, d)
        Vectors. For a collection: ``collection_vectors(col, limit=sample + queries)[1]`` and
        ``metric=col.metric`` (:func:`vecbox.io.collection_vectors`).
    codecs : tuple of str
        Codec specs to try; ``"pq"`` means ``pq:M`` with ``M = d / 8`` (needs FAISS).
    sample, queries : int
        Database and query sample sizes. Recall on a sample is optimistic for a much
        larger collection (fewer near-ties); treat the numbers as an upper estimate.
    k, oversample, target, metric, seed
        As in :meth:`Collection.search`; ``target`` is the recall@k to reach.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((1500, 32)).astype(np.float32)
    >>> rep = quantization_report(x, codecs=("int8", "binary"), sample=1000, queries=50)
    >>> [e.spec for e in rep.estimates], rep.recommended
    (['int8', 'binary'], 'int8')
    """
    v.check_metric(metric)
    x = v.as_matrix(x, name="x")
    for name, value in (("sample", sample), ("queries", queries), ("k", k)):
        v.check_positive_int(value, name)
    n, d = x.shape
    if n < 2 * k + 2:
        raise InvalidInputError(f"the quantization report needs at least {2 * k + 2} vectors; got {n}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_q = min(queries, max(1, n // 5))
    q, db = x[order[:n_q]], x[order[n_q:n_q + sample]]
    if metric == "cosine":
        q = _unit(q)
        db = _unit(db)
    kk = min(k, len(db))
    _, truth = exact_topk(db, q, kk, metric)
    estimates, notes = [], []
    for spec in codecs:
        if spec == "pq":
            m = d // 8 if d % 8 == 0 else next((m for m in range(d // 8, 0, -1) if d % m == 0), 1)
            spec = f"pq:{m}"
        try:
            codec = make_codec(spec, d, seed=seed)
            if len(db) < codec.min_fit_rows:
                notes.append(f"{spec}: skipped, needs {codec.min_fit_rows} sample vectors to fit")
                continue
            codec.fit(db)
        except ImportError as exc:  # MissingDependencyError for pq without FAISS
            notes.append(f"{spec}: skipped ({exc})")
            continue
        codes = codec.encode(db)
        _, found = two_stage_search(codec, q, codes, kk, oversample=1.0, metric=metric)
        _, found_r = two_stage_search(codec, q, codes, kk, oversample=oversample, metric=metric,
                                      fetch=lambda rows: db[rows])
        estimates.append(CodecEstimate(
            str(codec.spec), codec.bytes_per_vector, round(4 * d / codec.bytes_per_vector, 2),
            _recall(truth, found), _recall(truth, found_r),
        ))
    recommended, reason = _recommend(estimates, target, k, oversample)
    vk = vector_kurtosis(x)
    dk = dimension_kurtosis(x)
    return QuantizationReport(
        n_vectors=n, dim=d, sample=len(db), queries=n_q, k=kk, oversample=oversample, target=target,
        osp_kurtosis=float(np.maximum(vk, 0).mean()), max_vector_kurtosis=float(vk.max()),
        max_dimension_kurtosis=float(dk.max()), outlier_dimensions=outlier_dimensions(x).tolist(),
        estimates=estimates, recommended=recommended, reason=reason, notes=notes,
    )


def _recommend(estimates: list[CodecEstimate], target: float, k: int, oversample: float) -> tuple[str, str]:
    ok = [e for e in estimates if e.recall_rescored >= target]
    if not ok:
        if not estimates:
            return "f16", "no candidate codec could be evaluated; f16 halves memory at almost no recall cost"
        best = max(estimates, key=lambda e: (e.recall_rescored, -e.bytes_per_vector))
        return best.spec, (f"no codec reached recall@{k} {target} with {oversample:g}x rescoring; "
                           f"{best.spec} came closest ({best.recall_rescored:.3f})")
    best = min(ok, key=lambda e: (e.bytes_per_vector, -e.recall_rescored, -e.recall))
    return best.spec, (f"{best.spec} is the smallest codec with recall@{k} >= {target} when the top {oversample:g}x are rescored "
                       f"from the float vectors ({best.recall_rescored:.3f}; {best.recall:.3f} from codes alone), "
                       f"{best.compression:g}x smaller than float32")


def _recall(truth: np.ndarray, found: np.ndarray) -> float:
    hits = [len(set(t[t >= 0].tolist()) & set(f[f >= 0].tolist())) / max(int((t >= 0).sum()), 1)
            for t, f in zip(truth, found)]
    return round(float(np.mean(hits)), 4)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


__all__ = [
    "CodecEstimate",
    "QuantizationReport",
    "dimension_kurtosis",
    "osp_kurtosis",
    "outlier_dimensions",
    "quantization_report",
    "vector_kurtosis",
]
