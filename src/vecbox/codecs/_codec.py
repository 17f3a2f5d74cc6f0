"""``Codec``: transforms then one quantizer, built from a spec by one explicit name → class table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vecbox import _validation as v
from vecbox.codecs._base import Quantizer, Transform
from vecbox.codecs._binary import Binary
from vecbox.codecs._io import read_codec_dir, write_codec_dir
from vecbox.codecs._pq import PQ, LowRank
from vecbox.codecs._scalar import F16, F32, Int4, Int8
from vecbox.codecs._spec import CodecSpec, parse_spec
from vecbox.codecs._transforms import PCA, Rotation, Truncate
from vecbox.errors import (
    CorruptCollectionError,
    DimensionMismatchError,
    InvalidInputError,
    NotFittedError,
    SpecError,
)

STAGE_CLASSES: dict[str, type[Transform] | type[Quantizer]] = {
    "rot": Rotation,
    "pca": PCA,
    "trunc": Truncate,
    "f32": F32,
    "f16": F16,
    "int8": Int8,
    "int4": Int4,
    "binary": Binary,
    "pq": PQ,
    "lowrank": LowRank,
}
_ENCODE_BLOCK = 65_536  # rows transformed and encoded at a time (bounds the float temporaries)
_METRICS = ("dot", "cosine", "l2")


class Codec:
    """A fitted-or-not compression pipeline for ``d``-dimensional float vectors.

    Build with :func:`make_codec`; load with :func:`load_codec`. Codes are
    ``uint8`` arrays of shape ``(n, bytes_per_vector)``. Scores are estimated
    inner products (higher = more similar), computed asymmetrically: the float
    query meets the compressed codes. Same seed + same fit sample = same codes.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((1000, 64)).astype(np.float32)
    >>> codec = make_codec("rot+int8", 64, seed=0).fit(x)
    >>> codes = codec.encode(x)
    >>> codes.dtype, codes.shape, codec.bytes_per_vector
    (dtype('uint8'), (1000, 64), 64)
    >>> bool(np.abs(codec.decode(codes) - x).max() < 0.05)
    True
    >>> scores, idx = codec.search(x[:2], codes, k=3)
    >>> idx[:, 0].tolist()
    [0, 1]
    """

    def __init__(self, spec: CodecSpec, d: int, seed: int, transforms: list[Transform], quantizer: Quantizer) -> None:
        self.spec = spec
        self.d = d
        self.seed = seed
        self.transforms = transforms
        self.quantizer = quantizer
        self.n_fit_: int | None = None

    # ----------------------------------------------------------------- properties
    @property
    def d_out(self) -> int:
        """Width of the vectors the quantizer sees (after every transform)."""
        return self.quantizer.d

    @property
    def bytes_per_vector(self) -> int:
        return self.quantizer.code_size

    @property
    def min_fit_rows(self) -> int:
        """Fewest rows ``fit`` accepts (256 for ``pq``: one per centroid)."""
        return max([s.min_fit_rows for s in self.transforms] + [self.quantizer.min_fit_rows, 1])

    @property
    def is_fitted(self) -> bool:
        return self.n_fit_ is not None

    def __repr__(self) -> str:
        state = f"fitted on {self.n_fit_} rows" if self.is_fitted else "not fitted"
        return f"Codec({str(self.spec)!r}, d={self.d}, {self.bytes_per_vector} bytes/vector, {state})"

    # ----------------------------------------------------------------- estimator API
    def fit(self, x: Any) -> "Codec":
        """Learn every stage's state from the sample ``x`` ``(n, d)``; returns ``self``."""
        x = v.as_matrix(x, d=self.d, name="x")
        if len(x) < self.min_fit_rows:
            raise InvalidInputError(
                f"codec {str(self.spec)!r} needs at least {self.min_fit_rows} vectors to fit; got {len(x)}. "
                "Fit on a larger sample"
            )
        for t in self.transforms:
            t.fit(x)
            x = t.apply(x)
        self.quantizer.fit(np.ascontiguousarray(x, dtype=np.float32))
        self.n_fit_ = len(x)
        return self

    def transform(self, x: Any) -> np.ndarray:
        """Apply the transforms only (what the quantizer sees, and what queries become)."""
        self._check_fitted()
        x = v.as_matrix(x, d=self.d, name="x")
        return self._transform(x)

    def _transform(self, x: np.ndarray) -> np.ndarray:
        for t in self.transforms:
            x = t.apply(x)
        return np.ascontiguousarray(x, dtype=np.float32)

    def encode(self, x: Any) -> np.ndarray:
        """Compress ``x`` ``(n, d)`` into ``uint8`` codes ``(n, bytes_per_vector)``."""
        self._check_fitted()
        x = v.as_matrix(x, d=self.d, name="x")
        out = np.empty((len(x), self.bytes_per_vector), dtype=np.uint8)
        for start in range(0, len(x), _ENCODE_BLOCK):
            out[start:start + _ENCODE_BLOCK] = self.quantizer.encode(self._transform(x[start:start + _ENCODE_BLOCK]))
        return out

    def decode(self, codes: Any) -> np.ndarray:
        """Approximate float vectors ``(n, d)`` from codes (``trunc`` pads the dropped dimensions with zeros)."""
        self._check_fitted()
        codes = self.check_codes(codes)
        y = self.quantizer.decode(codes)
        for t in reversed(self.transforms):
            y = t.invert(y)
        return np.ascontiguousarray(y, dtype=np.float32)

    def score(self, q: Any, codes: Any) -> np.ndarray:
        """Estimated inner products ``(m, n)`` of float queries with coded vectors; higher = more similar.

        With ``trunc`` in the spec the queries are truncated and renormalised too, so the
        estimate is of the cosine at the truncated width.
        """
        self._check_fitted()
        q = v.as_matrix(q, d=self.d, name="q", allow_1d=True)
        codes = self.check_codes(codes)
        return self.quantizer.score(self._transform(q), codes)

    def search(self, q: Any, codes: Any, k: int = 10, *, metric: str = "dot",
               valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best codes for each query by the codec's own scan.

        Parameters
        ----------
        q : array (m, d) or (d,)
        codes : uint8 array (n, bytes_per_vector)
        k : int
        metric : {"dot", "cosine", "l2"}
            ``cosine`` is ``dot`` (vectors and queries are expected normalised).
        valid : bool array (n,), optional
            Rows allowed in the result.

        Returns
        -------
        scores, idx : arrays (m, k)
            Best first; higher is better (``-|q - x|²`` for l2). Missing results: ``-inf`` / -1.
        """
        self._check_fitted()
        q = v.as_matrix(q, d=self.d, name="q", allow_1d=True)
        codes = self.check_codes(codes)
        k = v.check_positive_int(k, "k")
        if metric not in _METRICS:
            raise InvalidInputError(f"unknown metric {metric!r}; choose one of {', '.join(_METRICS)}")
        if valid is not None:
            valid = np.asarray(valid)
            if valid.dtype != bool or valid.shape != (len(codes),):
                raise InvalidInputError(f"valid must be a bool array of shape ({len(codes)},); "
                                        f"got {valid.dtype} {valid.shape}")
        if len(codes) == 0:
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        return self.quantizer.search(self._transform(q), codes, k, "l2" if metric == "l2" else "dot", valid)

    # ----------------------------------------------------------------- checks
    def check_codes(self, codes: Any) -> np.ndarray:
        """Return ``codes`` if it is a ``uint8`` array ``(n, bytes_per_vector)``; never casts."""
        if not isinstance(codes, np.ndarray) or codes.dtype != np.uint8:
            got = codes.dtype if isinstance(codes, np.ndarray) else type(codes).__name__
            raise InvalidInputError(
                f"codes must be a uint8 numpy array as returned by encode(); got {got}. "
                "Codes are never cast: pass the array encode() returned"
            )
        if codes.ndim != 2 or codes.shape[1] != self.bytes_per_vector:
            raise DimensionMismatchError(
                f"codes have shape {codes.shape}; codec {str(self.spec)!r} on {self.d}-d vectors makes "
                f"(n, {self.bytes_per_vector}) codes. Were they made by another codec?"
            )
        return codes

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"codec {str(self.spec)!r} is not fitted; call fit(x) with a sample of vectors first")

    # ----------------------------------------------------------------- persistence
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(config, arrays)``: a JSON-able dict and named arrays that :func:`codec_from_state` restores."""
        self._check_fitted()
        stages, arrays = [], {}
        for i, stage in enumerate([*self.transforms, self.quantizer]):
            config, arrs = stage.get_state()
            stages.append({"name": stage.name, "args": list(stage.args), "config": config})
            arrays.update({f"{i}-{stage.name}-{key}": a for key, a in arrs.items()})
        return {"spec": str(self.spec), "d": self.d, "seed": self.seed, "n_fit": self.n_fit_, "stages": stages}, arrays

    def save(self, path: str | Path) -> Path:
        """Write the fitted codec to the new directory ``path`` (``codec.json`` + ``.npy`` files, fsynced)."""
        config, arrays = self.get_state()
        return write_codec_dir(Path(path), config, arrays)


def make_codec(spec: str | CodecSpec, d: int, *, seed: int = 0) -> Codec:
    """Build an unfitted :class:`Codec` for ``d``-dim vectors; dimensions are checked before any fitting.

    >>> make_codec("pca+trunc:128+int8", 384)
    Codec('pca+trunc:128+int8', d=384, 128 bytes/vector, not fitted)
    >>> make_codec("trunc:512+int8", 384)
    Traceback (most recent call last):
    ...
    vecbox.errors.SpecError: codec spec 'trunc:512+int8' does not fit: trunc:512 keeps 512 dims but only 384 arrive; use trunc:D with D <= 384
        trunc:512+int8
        ^^^^^^^^^
    """
    parsed = parse_spec(spec)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer; got {seed!r}")
    dims = parsed.dims(d)
    stages = []
    for i, (stage, d_in) in enumerate(zip(parsed.stages, dims)):
        cls = STAGE_CLASSES[stage.name]
        stages.append(cls(d_in, stage.args, int(seed) + i))
    return Codec(parsed, d, int(seed), stages[:-1], stages[-1])  # type: ignore[arg-type]


def codec_from_state(config: dict[str, Any], arrays: dict[str, np.ndarray]) -> Codec:
    """Rebuild a fitted codec from :meth:`Codec.get_state` output."""
    try:
        codec = make_codec(config["spec"], int(config["d"]), seed=int(config["seed"]))
        for i, (stage, entry) in enumerate(zip([*codec.transforms, codec.quantizer], config["stages"])):
            if entry["name"] != stage.name:
                raise CorruptCollectionError(f"codec config is inconsistent: it lists stage {entry['name']!r} where "
                                             f"the spec {config['spec']!r} has {stage.name!r}; refit the codec")
            prefix = f"{i}-{stage.name}-"
            stage.set_state(entry.get("config", {}), {k[len(prefix):]: a for k, a in arrays.items() if k.startswith(prefix)})
        codec.n_fit_ = int(config["n_fit"])
    except (KeyError, TypeError, ValueError, SpecError) as exc:
        raise CorruptCollectionError(f"codec config is incomplete or inconsistent ({type(exc).__name__}: {exc}); "
                                     "refit the codec") from None
    return codec


def load_codec(path: str | Path) -> Codec:
    """Load a codec saved with :meth:`Codec.save`; damaged files raise :class:`CorruptCollectionError`."""
    config, arrays = read_codec_dir(Path(path))
    return codec_from_state(config, arrays)
