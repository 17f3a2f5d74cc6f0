"""Calibrate an ANN index on a sample of its own rows: the default effort, and which filtered walk wins.

Both calibrations query the index with stored rows moved off the data (see
:func:`calibration_queries`) and score it against exact search on the same rows.

* :func:`calibrate` picks the smallest ef_search / nprobe reaching a target recall
  (``build_index(target_recall=...)``).
* :func:`calibrate_walks` measures, under a random 10 % filter, what vecbox's
  two-hop walk costs against its one-hop walk at the same recall. Which one wins
  depends on the index, not only on the filter: on 50k sentence vectors the two-hop
  walk is as fast at 10 % and 2.5x faster at 5 %; on 10^6 vectors it needs 3-5x the
  ef of the one-hop walk for the same recall, and loses. The planner reads the
  measured ratios (see :mod:`vecbox.query.planner`).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from vecbox.index.ann import AnnIndex
from vecbox.index.flat import exact_topk

EF_GRID = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
NPROBE_GRID = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
# the filtered walks: ef where recall@10 first reaches WALK_RECALL under a random WALK_SELECTIVITY filter
WALK_EF_GRID = (10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512)
WALK_SELECTIVITY = 0.1
WALK_RECALL = 0.95
WALK_MIN_ROWS = 20_000  # below this a 10 % filter keeps <= 2,000 rows, which the planner scans exactly
NEVER = 1e3  # the two-hop walk's time ratio when it never reaches the recall: the planner never takes it


def calibration_queries(x: np.ndarray, metric: str, n_queries: int, rng: np.random.Generator, k: int = 10,
                        ) -> np.ndarray:
    """``n_queries`` sampled rows of ``x``, each moved by a random offset as long as its distance to its k-th neighbour.

    A stored row is an easy query (the walk ends on the row itself, whose graph links
    are its neighbours); moved off the data at the neighbourhood's scale, it is like a
    real query.

    >>> x = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
    >>> calibration_queries(x, "l2", 5, np.random.default_rng(1)).shape
    (5, 8)
    """
    n = len(x)
    sample = np.sort(rng.choice(n, min(n_queries, n), replace=False))
    base = x[sample]
    sq_all = np.einsum("ij,ij->i", x, x)
    _, nn = exact_topk(x, base, min(k + 1, n), "l2", sq_norms=sq_all)
    radius = np.linalg.norm(x[nn[:, -1]] - base, axis=1, keepdims=True)
    noise = rng.standard_normal(base.shape).astype(np.float32)
    q = base + noise / np.linalg.norm(noise, axis=1, keepdims=True) * radius
    if metric == "cosine":
        q /= np.linalg.norm(q, axis=1, keepdims=True)
    return np.ascontiguousarray(q, dtype=np.float32)


def _recall(truth: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    return np.array([len(np.intersect1d(a, b)) / k for a, b in zip(truth, labels)])


def calibrate(index: AnnIndex, x: np.ndarray, metric: str, target: float, *, k: int = 10,
              n_queries: int = 200, seed: int = 0) -> tuple[int, float]:
    """Smallest effort (ef_search / nprobe) whose mean recall@k reaches ``target`` on a sample.

    Returns ``(effort, recall)``; the largest effort tried if none reaches the target.
    The recall must clear the target with 95% confidence over the sample, not just on
    average.

    >>> x = np.random.default_rng(0).standard_normal((3000, 16)).astype(np.float32)
    >>> from vecbox.index.ann import IndexParams
    >>> idx = AnnIndex.build(x, np.arange(1, 3001), "l2", IndexParams("hnsw", M=16))
    >>> effort, recall = calibrate(idx, x, "l2", 0.9)
    >>> recall >= 0.9
    True
    """
    n = len(x)
    if n <= k:
        return index.params.effort, 1.0
    q = calibration_queries(x, metric, n_queries, np.random.default_rng(seed), k)
    _, truth = exact_topk(x, q, k, metric, sq_norms=np.einsum("ij,ij->i", x, x) if metric == "l2" else None)
    grid = EF_GRID if index.params.kind == "hnsw" else tuple(p for p in NPROBE_GRID if p <= int(index.params.nlist or 1))
    best = (grid[-1], 0.0)
    for effort in grid:
        _, lab = index.search(q, k, effort=effort)
        per = _recall(truth, lab, k)
        rec = float(per.mean())
        # one-sided 95% lower bound: the sample is small, and a lucky sample must not pick a low effort
        if rec - 1.645 * per.std(ddof=1) / np.sqrt(len(per)) >= target:
            return effort, rec
        best = (effort, rec)
    return best


def calibrate_walks(index: AnnIndex, x: np.ndarray, metric: str, *, k: int = 10, n_queries: int = 200,
                    seed: int = 0) -> dict[str, Any] | None:
    """The two-hop walk's ef and time against the one-hop walk's, at the same recall under a 10 % filter.

    For each walk, the smallest ef of :data:`WALK_EF_GRID` whose mean recall@k reaches
    :data:`WALK_RECALL` among a random 10 % of the rows, and the time of that walk (one
    thread, best of three passes). Returns ``None`` where there is nothing to choose:
    no vecbox walk (IVF, ``sq8``, extension not built) or fewer than
    :data:`WALK_MIN_ROWS` rows. Keys: ``one_hop_ef``, ``two_hop_ef``, ``ef_ratio``
    (two-hop ef / one-hop ef), ``time_ratio`` (two-hop time / one-hop time; ``NEVER``
    when the two-hop walk never reaches the recall), ``recall`` (the one-hop walk's).
    """
    walker = index.walker()
    n = len(x)
    if walker is None or n < WALK_MIN_ROWS:
        return None
    rng = np.random.default_rng([seed, 7])
    q = calibration_queries(x, metric, n_queries, rng, k)
    mask = rng.random(n) < WALK_SELECTIVITY
    bitmap = np.packbits(mask, bitorder="little")
    _, truth = exact_topk(x, q, k, metric, valid=mask,
                          sq_norms=np.einsum("ij,ij->i", x, x) if metric == "l2" else None)
    found = {}
    for two_hop in (False, True):
        for ef in WALK_EF_GRID:
            _, lab = index.search_plain(q, k, ef, bitmap, two_hop=two_hop)
            rec = float(_recall(truth, lab, k).mean())
            if rec >= WALK_RECALL:
                found[two_hop] = (ef, rec, _walk_seconds(walker, q, k, ef, bitmap, two_hop))
                break
    if False not in found:  # not even the one-hop walk reaches the recall: nothing to compare
        return None
    ef1, rec1, t1 = found[False]
    if True not in found:
        return {"one_hop_ef": ef1, "two_hop_ef": None, "ef_ratio": WALK_EF_GRID[-1] / ef1, "time_ratio": NEVER,
                "recall": rec1}
    ef2, _, t2 = found[True]
    return {"one_hop_ef": ef1, "two_hop_ef": ef2, "ef_ratio": ef2 / ef1, "time_ratio": t2 / t1, "recall": rec1}


def _walk_seconds(walker: Any, q: np.ndarray, k: int, ef: int, bitmap: np.ndarray, two_hop: bool) -> float:
    dist = np.empty((len(q), k), dtype=np.float32)
    lab = np.empty((len(q), k), dtype=np.int64)
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        walker.search(q, k, ef, bitmap, dist, lab, 1, two_hop)
        best = min(best, time.perf_counter() - t0)
    return best
