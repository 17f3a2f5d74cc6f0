"""k-nearest-neighbour search for the detectors, backed by FAISS (exact or approximate).

Distances are Euclidean (not squared). ``index`` is ``"flat"`` (exact),
``"ivf"`` (inverted lists, ``nlist`` cells of which ``nprobe`` are searched)
or ``"hnsw"`` (graph with ``M = 32``, search depth ``ef_search``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vecbox._optional import require

INDEXES = ("flat", "ivf", "hnsw")


class NeighborIndex:
    """A FAISS L2 index over the reference vectors; answers ``(distances, indices)`` of shape ``(n, k)``."""

    def __init__(self, x: np.ndarray, index: str = "flat", *, nlist: int | None = None, nprobe: int = 16,
                 ef_search: int = 64, seed: int = 0) -> None:
        faiss = require("faiss", "analysis", "nearest-neighbour search for the knn and lof detectors")
        n, d = x.shape
        self.n = n
        if index == "flat" or (index == "ivf" and n < 2_000):
            self.index: Any = faiss.IndexFlatL2(d)
        elif index == "ivf":
            cells = int(nlist) if nlist else int(np.clip(round(np.sqrt(n)), 16, 65_536))
            quantizer = faiss.IndexFlatL2(d)
            ivf = faiss.IndexIVFFlat(quantizer, d, cells)
            ivf.cp.seed = seed
            ivf.cp.niter = 10  # coarse cells only route the search; 10 Lloyd iterations are plenty
            train = x
            if n > 64 * cells:  # FAISS's k-means samples 256 points per cell anyway; 64 is plenty
                train = x[np.random.default_rng(seed).choice(n, 64 * cells, replace=False)]
            ivf.train(train)
            ivf.nprobe = min(int(nprobe), cells)
            ivf.parallel_mode = 0
            self.index = ivf
            self._quantizer = quantizer  # keep it alive
        elif index == "hnsw":
            hnsw = faiss.IndexHNSWFlat(d, 32)
            hnsw.hnsw.efConstruction = 80
            hnsw.hnsw.efSearch = int(ef_search)
            self.index = hnsw
        else:  # validated by the caller
            raise AssertionError(index)
        self.index.add(np.ascontiguousarray(x, dtype=np.float32))

    def search(self, q: np.ndarray, k: int, batch_size: int = 16_384) -> tuple[np.ndarray, np.ndarray]:
        """Euclidean distances and indices of the ``k`` nearest reference vectors of each row of ``q``."""
        k = min(k, self.n)
        dist = np.empty((q.shape[0], k), dtype=np.float32)
        idx = np.empty((q.shape[0], k), dtype=np.int64)
        for s in range(0, q.shape[0], batch_size):
            dd, ii = self.index.search(np.ascontiguousarray(q[s:s + batch_size], dtype=np.float32), k)
            dist[s:s + batch_size], idx[s:s + batch_size] = dd, ii
        if (idx < 0).any():  # an approximate index found fewer than k: treat missing as infinitely far
            dist[idx < 0] = np.inf
        np.sqrt(np.maximum(dist, 0.0, out=dist), out=dist)
        return dist, idx

    def search_self(self, x: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Neighbours of reference rows ``rows`` (their vectors ``x``) among the *other* reference rows."""
        dist, idx = self.search(x, k + 1)
        own = idx == rows[:, None]
        missing = ~own.any(axis=1)
        own[missing, -1] = True  # self not returned (exact duplicates, or ANN): drop the farthest instead
        # keep the first k non-self entries of each row
        keep = ~own
        keep &= np.cumsum(keep, axis=1) <= k
        return dist[keep].reshape(len(rows), -1), idx[keep].reshape(len(rows), -1)
