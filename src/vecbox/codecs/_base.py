"""The two stage contracts: a :class:`Transform` maps vectors to vectors, a :class:`Quantizer` maps them to codes.

Every stage is configured by its spec arguments and a seed, learns its state in
``fit`` (attributes ending in ``_``), and round-trips through ``get_state`` /
``set_state`` as a JSON-able dict plus named numpy arrays (never pickle).
Internal: :class:`vecbox.codecs.Codec` validates inputs before they reach a stage.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from vecbox.codecs._scan import block_rows, topk_blocks


class Transform(ABC):
    """A (usually inner-product preserving) map of ``d_in``-dim vectors to ``d_out`` dims."""

    name: ClassVar[str]
    min_fit_rows: ClassVar[int] = 0

    def __init__(self, d_in: int, args: tuple[Any, ...] = (), seed: int = 0) -> None:
        self.d_in = d_in
        self.args = args
        self.seed = seed

    @property
    def d_out(self) -> int:
        return self.d_in

    def fit(self, x: np.ndarray) -> "Transform":
        return self

    @abstractmethod
    def apply(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def invert(self, y: np.ndarray) -> np.ndarray: ...

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {}

    def set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        pass


class Quantizer(ABC):
    """Vectors of width ``d`` to ``uint8`` codes of ``code_size`` bytes, with asymmetric scoring.

    ``score(q, codes)`` estimates the inner product of float queries with the coded
    vectors (higher = more similar); ``search`` returns the best ``k`` rows per query.
    """

    name: ClassVar[str]
    min_fit_rows: ClassVar[int] = 0

    def __init__(self, d: int, args: tuple[Any, ...] = (), seed: int = 0) -> None:
        self.d = d
        self.args = args
        self.seed = seed

    @property
    @abstractmethod
    def code_size(self) -> int: ...

    def fit(self, x: np.ndarray) -> "Quantizer":
        return self

    @abstractmethod
    def encode(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def decode(self, codes: np.ndarray) -> np.ndarray: ...

    def score(self, q: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Estimated inner products ``(m, n)`` of queries with coded vectors (decodes in blocks)."""
        out = np.empty((len(q), len(codes)), dtype=np.float32)
        block = block_rows(self.d, len(q))
        for start in range(0, len(codes), block):
            out[:, start:start + block] = q @ self.decode(codes[start:start + block]).T
        return out

    def search(self, q: np.ndarray, codes: np.ndarray, k: int, metric: str = "dot",
               valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` rows per query: ``(scores, idx)``, scores higher-is-better (``-|q-x|²`` for l2)."""
        return self._numpy_search(q, codes, k, metric, valid)

    def _numpy_search(self, q: np.ndarray, codes: np.ndarray, k: int, metric: str,
                      valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        qn = np.einsum("ij,ij->i", q, q)[:, None] if metric == "l2" else None

        def score_block(start: int, stop: int) -> np.ndarray:
            xb = self.decode(codes[start:stop])
            s = q @ xb.T
            if qn is not None:
                s = 2 * s - np.einsum("ij,ij->i", xb, xb)[None, :] - qn
            return s

        return topk_blocks(score_block, len(codes), len(q), k, block_rows(self.d, len(q)), valid)

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {}

    def set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        pass
