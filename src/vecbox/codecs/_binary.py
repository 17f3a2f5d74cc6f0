"""``binary``: one sign bit per dimension, packed 8 to a byte.

Bit ``j`` is ``x_j > t_j`` with ``t_j`` the dimension's mean on the fit sample
(MiniLM-style embeddings are not centred at 0). Bits are packed with
``np.packbits`` (first dimension in the high bit, like sentence-transformers'
``ubinary``). A code decodes to ``t + s * (2b - 1)`` with ``s_j`` the mean
absolute deviation of dimension ``j``.

``search`` is a two-step scan. Step 1 is symmetric: the query is binarised with
the same thresholds and every code is ranked by Hamming distance (XOR + popcount
on 64-bit words with ``np.bitwise_count``, or FAISS ``knn_hamming`` when
installed). Step 2 is asymmetric: the best ``refine * k`` by Hamming are re-ranked
by the float query against the decoded signs, which recovers most of what the
Hamming distance loses (research note in docs/BENCHMARKS.md, compression section).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from vecbox.codecs._base import Quantizer
from vecbox.codecs._scan import faiss_module, sort_topk

REFINE = 8  # Hamming shortlist = REFINE * k rows, re-ranked asymmetrically
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
# _SIGNS[i, v] = +1 if bit i (first = high bit, np.packbits order) of the byte value v is set, else -1.
_SIGNS = (np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).T.astype(np.float32) * 2 - 1)


class Binary(Quantizer):
    """Sign bits around the per-dimension mean; Hamming scan, asymmetric re-rank."""

    name: ClassVar[str] = "binary"
    min_fit_rows: ClassVar[int] = 2

    @property
    def code_size(self) -> int:
        return (self.d + 7) // 8

    def fit(self, x: np.ndarray) -> "Binary":
        self.threshold_ = x.mean(axis=0).astype(np.float32)
        self.scale_ = np.abs(x - self.threshold_).mean(axis=0).astype(np.float32)
        return self

    def encode(self, x: np.ndarray) -> np.ndarray:
        return np.packbits(x > self.threshold_, axis=1)

    def _signs(self, codes: np.ndarray) -> np.ndarray:
        bits = np.unpackbits(codes, axis=1, count=self.d)
        return bits.astype(np.float32) * 2.0 - 1.0

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return self._signs(codes) * self.scale_ + self.threshold_

    def score(self, q: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Asymmetric: float query against ``t + s * (2b - 1)``."""
        return (q * self.scale_) @ self._signs(codes).T + (q @ self.threshold_)[:, None]

    def hamming_search(self, q: np.ndarray, codes: np.ndarray, k: int,
                       valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Step 1 alone: the ``k`` nearest codes by Hamming distance; scores are ``-distance``."""
        qc = self.encode(q)
        n = len(codes)
        k_eff = min(k, n)
        faiss = faiss_module()
        if faiss is not None and valid is not None and k_eff <= 2048:  # scan a copy of the allowed codes
            rows = np.flatnonzero(valid)
            scores, idx = self.hamming_search(q, codes[rows], k)
            return scores, np.where(idx >= 0, rows[np.maximum(idx, 0)], -1)
        if faiss is not None and k_eff <= 2048 and n:
            dist, idx = faiss.knn_hamming(qc, np.ascontiguousarray(codes), k_eff)  # sorted, nearest first
            scores = -dist.astype(np.float32)
            if k_eff == k:
                return scores, idx
            return sort_topk(np.pad(scores, ((0, 0), (0, k - k_eff)), constant_values=-np.inf),
                             np.pad(idx, ((0, 0), (0, k - k_eff)), constant_values=-1))
        else:
            dist = hamming(qc, codes)
            if valid is not None:
                dist = np.where(valid[None, :], dist, np.iinfo(np.int32).max)
            part = np.argpartition(dist, k_eff - 1, axis=1)[:, :k_eff] if k_eff < n else np.tile(np.arange(n), (len(q), 1))
            d_part = np.take_along_axis(dist, part, axis=1)
            scores = np.where(d_part == np.iinfo(np.int32).max, -np.inf, -d_part).astype(np.float32)
            idx = part.astype(np.int64)
        if k_eff < k:
            scores = np.pad(scores, ((0, 0), (0, k - k_eff)), constant_values=-np.inf)
            idx = np.pad(idx, ((0, 0), (0, k - k_eff)), constant_values=-1)
        return sort_topk(scores, idx)

    def search(self, q: np.ndarray, codes: np.ndarray, k: int, metric: str = "dot",
               valid: np.ndarray | None = None, refine: int = REFINE) -> tuple[np.ndarray, np.ndarray]:
        _, short = self.hamming_search(q, codes, max(k, refine * k), valid)
        safe = np.maximum(short, 0)
        s = np.empty(short.shape, dtype=np.float32)
        nbytes = self.code_size
        qs = np.zeros((len(q), 8 * nbytes), dtype=np.float32)
        qs[:, : self.d] = q * self.scale_
        base = q @ self.threshold_
        cols = np.arange(nbytes)[None, :]
        for start in range(0, len(q), 64):  # chunks of queries bound the lookup tables' memory
            sl = slice(start, start + 64)
            # Per query, byte position and byte value: the sum of +-q_j s_j over that byte's 8 bits.
            tables = qs[sl].reshape(-1, nbytes, 8) @ _SIGNS  # (chunk, nbytes, 256)
            for i in range(tables.shape[0]):
                s[start + i] = tables[i][cols, codes[safe[start + i]]].sum(axis=1) + base[start + i]
        if metric == "l2":
            xb = self.decode(codes[safe.ravel()]).reshape(*safe.shape, self.d)
            s = 2 * s - np.einsum("mkd,mkd->mk", xb, xb) - np.einsum("md,md->m", q, q)[:, None]
        s[short < 0] = -np.inf
        top = np.argpartition(-s, k - 1, axis=1)[:, :k] if s.shape[1] > k else np.argsort(-s, axis=1)
        return sort_topk(np.take_along_axis(s, top, axis=1), np.take_along_axis(short, top, axis=1))

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"threshold": self.threshold_, "scale": self.scale_}

    def set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.threshold_ = arrays["threshold"].astype(np.float32)
        self.scale_ = arrays["scale"].astype(np.float32)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances ``(len(a), len(b))`` between packed bit codes (int32).

    XOR of 64-bit words and ``np.bitwise_count`` when the code width is a multiple
    of 8 bytes (numpy >= 2.0); otherwise a byte-wise popcount lookup table.
    """
    width = a.shape[1]
    out = np.empty((len(a), len(b)), dtype=np.int32)
    if width % 8 == 0 and hasattr(np, "bitwise_count"):
        aw = np.ascontiguousarray(a).view(np.uint64)
        bw = np.ascontiguousarray(b).view(np.uint64)
        for i in range(len(a)):
            np.sum(np.bitwise_count(bw ^ aw[i]), axis=1, dtype=np.int32, out=out[i])
    else:
        for i in range(len(a)):
            np.sum(_POPCOUNT[b ^ a[i]], axis=1, dtype=np.int32, out=out[i])
    return out
