"""What every part of the search benchmark shares, and the settings of one run (:class:`Config`)."""

from __future__ import annotations

from dataclasses import dataclass

K = 10
DIM = 384
SEED = 0
M_HNSW = 32
EF_CONSTRUCTION = 200  # the default; --search-ef-construction sets Config.ef_construction
TARGET_RECALL = 0.95
SELECTIVITIES = (0.001, 0.01, 0.1, 0.5)
ADD_CHUNK = 100_000  # rows per add() call when a collection or table is filled


@dataclass
class Config:
    threads: int
    n_single: int
    n_batch: int
    single_budget: float  # seconds of single-query timing per point (at least sweep.MIN_SINGLE queries)
    batch_budget: float  # seconds a batch call may be expected to take
    sweep_budget: float  # seconds per (method, filter) sweep before it stops
    caps: dict[str, int]
    ef_construction: int = EF_CONSTRUCTION  # of every HNSW build
