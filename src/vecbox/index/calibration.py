"""Calibrate an ANN index on a sample of its own rows: the default effort, and which filtered walk wins.

Both calibrations query the index with stored rows moved off the data (see
:func:`calibration_queries`) and score it against exact search on the same rows.

* :func:`calibrate` picks the smallest ef_search / nprobe reaching a target recall
  (``build_index(target_recall=...)``).
* :func:`calibrate_walks` measures, under a random 10 % filter, what vecbox's
  two-hop walk costs against its one-hop walk at the same recall. Which one wins
  depends on the index, not only on the filter: on 50k sentence vectors the two-hop
  walk takes 0.3-0.4 of the one-hop walk's time at 10 %; on 10^6 vectors it needs 3x
  the ef for the same recall and is no faster. The planner reads the measured ratios
  (see :mod:`vecbox.query.planner`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from vecbox.evaluation.metrics import knn_recall
from vecbox.index.ann import AnnIndex, IndexParams
from vecbox._rows import sq_norms
from vecbox.index.flat import exact_topk, rescore

EF_GRID = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
NPROBE_GRID = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
# the filtered walks: ef where recall@10 first reaches WALK_RECALL under a random WALK_SELECTIVITY filter
WALK_EF_GRID = (10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512)
WALK_SELECTIVITY = 0.1
WALK_RECALL = 0.95
WALK_RECALLS = (0.9, 0.925, WALK_RECALL)  # where the walks are compared
WALK_MIN_ROWS = 20_000  # below this a 10 % filter keeps <= 2,000 rows, which the planner scans exactly
NEVER = 1e3  # the two-hop walk's time ratio when it never reaches the recall: the planner never takes it


def calibration_queries(x: np.ndarray, metric: str, n_queries: int, rng: np.random.Generator, k: int = 10,
                        sq_norms: np.ndarray | None = None) -> np.ndarray:
    """``n_queries`` sampled rows of ``x``, each moved as far off as it lies from its nearest other row.

    A stored row is an easy query (the walk ends on the row itself, whose graph links are its
    neighbours). A real query is a point the index has never seen: as far from its nearest
    stored row as a stored row is from its nearest other one. So each sampled row moves that
    distance in a random direction (on the unit sphere for cosine, so the normalised query keeps
    it); a row with an exact duplicate moves by its k-th neighbour's distance instead. Measured on
    a 10k mixture of the search benchmark: fresh queries from the mixture had recall@10 0.892 at
    ef 32; these queries 0.893, the earlier ones (moved by the k-th neighbour's distance, then
    normalised: 20 % closer to the data than a real query) 0.960.

    >>> x = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
    >>> calibration_queries(x, "l2", 5, np.random.default_rng(1)).shape
    (5, 8)
    """
    n = len(x)
    sample = np.sort(rng.choice(n, min(n_queries, n), replace=False))
    base = x[sample].astype(np.float64)
    sq_all = _sq_norms(x, sq_norms)
    _, nn = exact_topk(x, x[sample], min(k + 1, n), "l2", sq_norms=sq_all)
    dist = np.linalg.norm(x[nn] - base[:, None, :], axis=2)  # column 0: the row itself (or a duplicate)
    radius = dist[:, min(1, dist.shape[1] - 1)]
    radius = np.where(radius > 0, radius, dist[:, -1])
    noise = rng.standard_normal(base.shape)
    if metric == "cosine":  # a point of the sphere at chord distance `radius` from the (unit) row
        b = base / np.linalg.norm(base, axis=1, keepdims=True)
        u = noise - np.einsum("ij,ij->i", noise, b)[:, None] * b
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        theta = 2 * np.arcsin(np.clip(radius / 2, 0.0, 1.0))
        q = np.cos(theta)[:, None] * b + np.sin(theta)[:, None] * u
    else:
        q = base + noise / np.linalg.norm(noise, axis=1, keepdims=True) * radius[:, None]
    return np.ascontiguousarray(q, dtype=np.float32)


def _recall(truth: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    return knn_recall(labels, truth, k, per_query=True)


CONFIDENCE_Z = 1.645  # one-sided 95 %: the calibrated recall's lower bound must clear the target
MAX_SUPPLIED = 1000  # supplied (past) queries used for calibration, a seeded sample when more are given
# Moved rows are a proxy for real queries, and an optimistic one: on the SciFact sentences (50k) their
# recall@10 at ef 16 was 0.975 where the 1,109 SciFact queries got 0.946, though both lie as far from
# their nearest row (median cosine 0.73 / 0.72). So on moved rows the lower bound must clear a bar
# that leaves only this share of the target's misses: 0.975 for a target of 0.95.
PROXY_MISS_SHARE = 0.5


@dataclass
class Calibration:
    """What :func:`calibrate` measured at the effort it chose.

    ``recall`` is the mean recall@k over the calibration queries; ``ci95`` its two-sided
    95 % interval (normal approximation over the per-query recalls); ``source`` says which
    queries were used: ``"moved rows"`` (stored rows moved off the data, see
    :func:`calibration_queries`) or ``"supplied"`` (the caller's past queries).
    """

    effort: int
    recall: float
    ci95: tuple[float, float]
    queries: int
    source: str
    reached: bool
    required: float = 0.0  # the bar the recall's one-sided 95 % lower bound had to clear

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (saved with the index, shown by ``index_info()``)."""
        return {"recall": self.recall, "ci95": list(self.ci95), "queries": self.queries, "source": self.source,
                "effort": self.effort, "reached": self.reached, "required": self.required}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Calibration":
        """Inverse of :meth:`as_dict`; raises ``ValueError`` on anything else."""
        try:
            lo, hi = (float(v) for v in d["ci95"])
            return cls(int(d["effort"]), float(d["recall"]), (lo, hi), int(d["queries"]), str(d["source"]),
                       bool(d["reached"]), float(d.get("required", 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad calibration record ({exc})") from None


def calibrate(index: AnnIndex, x: np.ndarray, metric: str, target: float, *, k: int = 10,
              n_queries: int = 200, seed: int = 0, sq_norms: np.ndarray | None = None,
              queries: np.ndarray | None = None) -> Calibration:
    """Smallest effort (ef_search / nprobe) whose recall@k reaches ``target`` with 95 % confidence.

    The queries are ``queries`` when given (past queries of the collection: the best
    guide to future ones; a seeded sample of :data:`MAX_SUPPLIED` when there are more,
    normalised for cosine), else ``n_queries`` stored rows moved off the data
    (:func:`calibration_queries`). The one-sided 95 % lower bound of the mean recall must
    clear the target, not just the mean: a lucky sample must not pick a low effort. Moved
    rows are an optimistic proxy, so for them the bar is higher: only
    :data:`PROXY_MISS_SHARE` of the target's misses are allowed (0.975 for 0.95). The
    largest effort tried is returned (``reached=False``) when none clears it.

    >>> x = np.random.default_rng(0).standard_normal((3000, 16)).astype(np.float32)
    >>> from vecbox.index.ann import AnnIndex, IndexParams
    >>> idx = AnnIndex.build(x, np.arange(1, 3001), "l2", IndexParams("hnsw", M=16))
    >>> cal = calibrate(idx, x, "l2", 0.9)
    >>> cal.recall >= 0.95, cal.ci95[0] <= cal.recall <= cal.ci95[1], cal.source, cal.required
    (True, True, 'moved rows', 0.95)
    """
    n = len(x)
    rng = np.random.default_rng(seed)
    if queries is not None:
        q = queries if len(queries) <= MAX_SUPPLIED else queries[np.sort(rng.choice(len(queries), MAX_SUPPLIED,
                                                                                     replace=False))]
        q = np.ascontiguousarray(q / np.linalg.norm(q, axis=1, keepdims=True) if metric == "cosine" else q,
                                 dtype=np.float32)
        source, required = "supplied", target
    else:
        q, source, required = None, "moved rows", 1.0 - (1.0 - target) * PROXY_MISS_SHARE
    if n <= k:
        return Calibration(index.params.effort, 1.0, (1.0, 1.0), 0 if q is None else len(q), source, True, required)
    sq = _sq_norms(x, sq_norms)  # the queries' neighbours and the l2 truth share it
    if q is None:
        q = calibration_queries(x, metric, n_queries, rng, k, sq)
    _, truth = exact_topk(x, q, k, metric, sq_norms=sq if metric == "l2" else None)
    nlist = int(index.params.nlist or 1)
    grid = EF_GRID if index.params.kind == "hnsw" else tuple(p for p in NPROBE_GRID if p <= nlist)
    best = None
    for effort in grid:
        if index.exact_scores:
            _, lab = index.search(q, k, effort=effort)
        else:  # compressed codes: the best candidates rescored exactly, as a search does
            _, cand = index.search(q, k * index.rescore_factor, effort=effort)
            _, lab = rescore(q, cand, lambda rows: np.asarray(x[rows]), k, metric, rows=x)
        per = _recall(truth, lab, k)
        rec = float(per.mean())
        half = float(per.std(ddof=1) / np.sqrt(len(per))) if len(per) > 1 else 0.0
        reached = rec - CONFIDENCE_Z * half >= required
        best = Calibration(int(effort), rec, (max(0.0, rec - 1.96 * half), min(1.0, rec + 1.96 * half)), len(q),
                           source, reached, required)
        if reached:
            break
    assert best is not None
    return best


def calibrate_walks(index: AnnIndex, x: np.ndarray, metric: str, *, k: int = 10, n_queries: int = 200,
                    seed: int = 0, sq_norms: np.ndarray | None = None) -> dict[str, Any] | None:
    """The two-hop walk's ef and time against the one-hop walk's, at equal recall under a 10 % filter.

    Each walk runs up :data:`WALK_EF_GRID` (one thread, timed) until its mean recall@k
    among a random 10 % of the rows passes the highest of :data:`WALK_RECALLS`; the ef
    and time where each curve crosses each of those recalls are interpolated between
    grid points, and the ratios (two-hop / one-hop) are the medians over the recalls
    both walks reach. A single crossing is not enough: near 0.95 the two-hop walk's
    curve is flat (0.89 / 0.91 / 0.94 at ef 192 / 256 / 384 on 10^6 rows), so one grid
    step moved its ratio from 3.2 to 1.2 between two builds of the same data.

    Returns ``None`` where there is nothing to choose: no vecbox walk (IVF, ``sq8``,
    extension not built), fewer than :data:`WALK_MIN_ROWS` rows, or a one-hop walk that
    never reaches the recalls. Keys: ``one_hop_ef`` and ``two_hop_ef`` (at
    :data:`WALK_RECALL`, interpolated; ``two_hop_ef`` ``None`` when it never gets there),
    ``ef_ratio``, ``time_ratio`` (``NEVER`` when the two-hop walk reaches none of the
    recalls).

    >>> from vecbox.index.ann import AnnIndex, IndexParams
    >>> calibrate_walks(AnnIndex.build(np.eye(4, dtype=np.float32), np.arange(1, 5), "l2",
    ...                                IndexParams("hnsw")), np.eye(4, dtype=np.float32), "l2") is None
    True
    """
    walker = index.walker()
    n = len(x)
    if walker is None or n < WALK_MIN_ROWS:
        return None
    rng = np.random.default_rng([seed, 7])
    sq = _sq_norms(x, sq_norms)
    q = calibration_queries(x, metric, n_queries, rng, k, sq)
    mask = rng.random(n) < WALK_SELECTIVITY
    bitmap = np.packbits(mask, bitorder="little")
    _, truth = exact_topk(x, q, k, metric, valid=mask, sq_norms=sq if metric == "l2" else None)
    dist = np.empty((len(q), k), dtype=np.float32)
    lab = np.empty((len(q), k), dtype=np.int64)
    crossings = []
    for two_hop in (False, True):
        curve = []  # (ef, recall, seconds) up the grid
        for ef in WALK_EF_GRID:
            t0 = time.perf_counter()
            walker.search(q, k, ef, bitmap, dist, lab, 1, two_hop)
            curve.append((ef, float(_recall(truth, lab, k).mean()), time.perf_counter() - t0))
            if curve[-1][1] >= max(WALK_RECALLS):
                break
        crossings.append({r: _crossing(curve, r) for r in WALK_RECALLS})
    one, two = crossings
    if one[WALK_RECALL] is None:
        return None
    both = [r for r in WALK_RECALLS if one[r] is not None and two[r] is not None]
    ef1 = one[WALK_RECALL][0]
    ef2 = two[WALK_RECALL][0] if two[WALK_RECALL] is not None else None
    if not both:
        return {"one_hop_ef": ef1, "two_hop_ef": None, "ef_ratio": WALK_EF_GRID[-1] / ef1, "time_ratio": NEVER}
    return {"one_hop_ef": ef1, "two_hop_ef": ef2,
            "ef_ratio": float(np.median([two[r][0] / one[r][0] for r in both])),
            "time_ratio": float(np.median([two[r][1] / one[r][1] for r in both]))}


def _sq_norms(x: Any, given: np.ndarray | None) -> np.ndarray:
    """The rows' squared norms: ``given`` (the caller's, shared by both calibrations), else computed."""
    return given if given is not None else sq_norms(x)


def _crossing(curve: list[tuple[int, float, float]], target: float) -> tuple[float, float] | None:
    """(ef, seconds) where a walk's recall curve first reaches ``target``, linear between grid points."""
    for i, (ef, rec, sec) in enumerate(curve):
        if rec >= target:
            if i == 0:  # already there at the smallest ef: the walk costs that much at least
                return float(ef), sec
            ef0, rec0, sec0 = curve[i - 1]
            w = (target - rec0) / (rec - rec0)
            return ef0 + w * (ef - ef0), sec0 + w * (sec - sec0)
    return None


def build_calibrated(x: np.ndarray, rids: np.ndarray, metric: str, params: IndexParams, *, seed: int = 0,
                     version: int = 0, queries: np.ndarray | None = None) -> AnnIndex:
    """Build an index over ``x`` and calibrate it (what ``Collection.build_index`` runs).

    With ``params.target_recall`` set, :func:`calibrate` chooses the default effort on
    ``queries`` (past queries) or on moved rows, and ``calibration`` records what it
    measured; :func:`calibrate_walks` measures the filtered walks (``None`` where they
    need no measuring).

    >>> x = np.random.default_rng(0).standard_normal((2000, 16)).astype(np.float32)
    >>> idx = build_calibrated(x, np.arange(1, 2001), "l2", IndexParams("hnsw", M=16, target_recall=0.9).check())
    >>> idx.calibrated_recall >= 0.9
    True
    """
    ann = AnnIndex.build(x, rids, metric, params, seed=seed, version=version)
    sq = None  # the rows' squared norms, an n x d pass: made once when both calibrations run
    if params.target_recall is not None:
        sq = _sq_norms(x, None)
        cal = calibrate(ann, x, metric, params.target_recall, seed=seed, sq_norms=sq, queries=queries)
        if params.kind == "hnsw":
            params.ef_search = cal.effort
        else:
            params.nprobe = cal.effort
        ann.calibrated_recall = cal.recall
        ann.calibration = cal.as_dict()
    ann.walk_calibration = calibrate_walks(ann, x, metric, seed=seed, sq_norms=sq)
    return ann
