"""Index calibration on a sample of its own rows: the two filtered walks measured against each other.

The reference is exact search among the allowed rows: at the ef each walk is given,
its recall reaches the target, and one grid step lower it does not. The planner's use
of the measured ratios is checked on hand-worked costs.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vecbox.errors import CorruptCollectionError
from vecbox.evaluation import knn_recall
from vecbox.index import calibration
from vecbox.index.ann import AnnIndex, IndexParams
from vecbox.index.flat import exact_topk
from vecbox.query import planner

pytest.importorskip("faiss")

D, K = 24, 10


@pytest.fixture(scope="module")
def built():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((50, D)).astype(np.float32) * 2
    x = (centres[rng.integers(0, 50, calibration.WALK_MIN_ROWS)]
         + rng.standard_normal((calibration.WALK_MIN_ROWS, D)).astype(np.float32))
    idx = AnnIndex.build(x, np.arange(1, len(x) + 1), "l2", IndexParams("hnsw", M=8, ef_construction=64))
    return idx, x, calibration.calibrate_walks(idx, x, "l2", seed=3)


def _walk_recall(idx, x, q, mask, ef, two_hop):
    _, truth = exact_topk(x, q, K, "l2", valid=mask)
    _, lab = idx.search(q, K, effort=ef, allow=np.packbits(mask, bitorder="little"), two_hop=two_hop)
    return knn_recall(lab, truth)


def test_each_walk_reaches_the_recall_at_its_calibrated_ef(built):
    idx, x, res = built
    assert res is not None and set(res) == {"one_hop_ef", "two_hop_ef", "ef_ratio", "time_ratio"}
    # the same queries and filter as the calibration drew (its seed), scored against exact search: the
    # interpolated ef lies between the grid point below the recall and the one at or above it
    rng = np.random.default_rng([3, 7])
    q = calibration.calibration_queries(x, "l2", 200, rng, K)
    mask = rng.random(len(x)) < calibration.WALK_SELECTIVITY
    grid = calibration.WALK_EF_GRID
    for two_hop, ef in ((False, res["one_hop_ef"]), (True, res["two_hop_ef"])):
        above = next(g for g in grid if g >= ef)
        assert _walk_recall(idx, x, q, mask, above, two_hop) >= calibration.WALK_RECALL
        if above != grid[0]:
            below = grid[grid.index(above) - 1]
            assert below <= ef and _walk_recall(idx, x, q, mask, below, two_hop) < calibration.WALK_RECALL
    assert res["ef_ratio"] > 0 and 0 < res["time_ratio"] < calibration.NEVER


def test_crossings_are_interpolated_between_grid_points():
    curve = [(10, 0.80, 1.0), (20, 0.90, 2.0), (40, 0.96, 3.0)]
    assert calibration._crossing(curve, 0.93) == pytest.approx((30.0, 2.5))
    assert calibration._crossing(curve, 0.5) == (10.0, 1.0)  # reached at the smallest ef
    assert calibration._crossing(curve, 0.97) is None


def test_nothing_to_choose_means_no_calibration(built):
    idx, x, _ = built
    small = AnnIndex.build(x[:5000], np.arange(1, 5001), "l2", IndexParams("hnsw", M=8, ef_construction=32))
    assert calibration.calibrate_walks(small, x[:5000], "l2") is None  # a 10 % filter is scanned exactly here
    ivf = AnnIndex.build(x, np.arange(1, len(x) + 1), "l2", IndexParams("ivf"))
    assert calibration.calibrate_walks(ivf, x, "l2") is None  # FAISS's walk: no two-hop form


def test_the_calibration_is_saved_with_the_index_and_checked_on_load(built, tmp_path):
    idx, _, res = built
    idx.walk_calibration, idx.calibrated_recall = res, 0.97
    loaded = AnnIndex.load(idx.save(tmp_path / "i"))
    assert loaded.walk_calibration == res and loaded.calibrated_recall == 0.97
    meta_path = tmp_path / "i" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["walks"] = {"ef_ratio": "fast"}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CorruptCollectionError, match="build_index"):
        AnnIndex.load(tmp_path / "i")
    del meta["walks"]  # an index saved before walks were calibrated: the planner's defaults
    meta_path.write_text(json.dumps(meta))
    assert AnnIndex.load(tmp_path / "i").walk_calibration is None


@pytest.mark.parametrize("sel, time_ratio, two_hop, effort", [
    (0.1, 0.5, True, 128),  # half the one-hop walk's time at 10 %: two hops, at twice the ef
    (0.1, 0.9, False, 64),  # not clearly cheaper (TWO_HOP_MARGIN 0.8): one hop
    (0.05, 0.9, True, 208),  # one hop: 1.5*32*64 / 0.05 = 61,440; two: 1.5*32*64 * 10 * 0.9 * 2**0.7 = 44,915
    (0.05, 1.0, False, 64),  # two: 49,906 > 0.8 * 61,440
    (0.5, 0.2, False, 64),  # one hop: 6,144 against two hops' 30,720
])
def test_planner_prices_two_hops_from_the_calibration(sel, time_ratio, two_hop, effort):
    stats = planner.IndexStats("hnsw", 1_000_000, M=32, effort=64, filter_rule="allowed",
                               two_hop_ef_ratio=2.0, two_hop_time_ratio=time_ratio)
    plan = planner.choose(1_000_000, int(1_000_000 * sel), K, stats)
    assert plan.path == "hnsw+filter" and plan.two_hop is two_hop and plan.effort == effort
    one, two = 1.5 * 32 * 64 / sel, 1.5 * 32 * 64 * 10 * time_ratio * max(1, 0.1 / sel) ** 0.7
    assert math.isclose(plan.costs["filter"], two if two_hop else one)


# ---------------------------------------------------------------- the default effort: recall with its interval
def _mixture(n, d=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, d)).astype(np.float32) * 1.5
    return (centres[rng.integers(0, 40, n)] + rng.standard_normal((n, d)).astype(np.float32)).astype(np.float32)


def test_calibrated_recall_and_interval_are_those_of_exact_search_at_the_chosen_effort():
    x = _mixture(4000)
    idx = AnnIndex.build(x, np.arange(1, 4001), "l2", IndexParams("hnsw", M=8, ef_construction=40))
    cal = calibration.calibrate(idx, x, "l2", 0.9, seed=5)
    # the same queries (its seed), scored independently: per-query recall against exact search at the chosen ef
    q = calibration.calibration_queries(x, "l2", 200, np.random.default_rng(5), K)
    _, truth = exact_topk(x, q, K, "l2")
    _, lab = idx.search(q, K, effort=cal.effort)
    per = np.array([len(set(a) & set(b)) / K for a, b in zip(lab.tolist(), truth.tolist())])
    half = per.std(ddof=1) / math.sqrt(len(per))
    assert cal.source == "moved rows" and cal.queries == 200 and cal.reached
    assert cal.recall == pytest.approx(per.mean(), abs=1e-12)
    assert cal.ci95 == pytest.approx((per.mean() - 1.96 * half, min(1.0, per.mean() + 1.96 * half)), abs=1e-12)
    assert cal.required == pytest.approx(0.95)  # moved rows: half the misses a target of 0.9 allows
    assert per.mean() - 1.645 * half >= 0.95  # the lower bound clears that bar ...
    below = calibration.EF_GRID[calibration.EF_GRID.index(cal.effort) - 1] if cal.effort > calibration.EF_GRID[0] else None
    if below is not None:  # ... and one grid step lower it did not
        _, lab = idx.search(q, K, effort=below)
        per = np.array([len(set(a) & set(b)) / K for a, b in zip(lab.tolist(), truth.tolist())])
        assert per.mean() - 1.645 * per.std(ddof=1) / math.sqrt(len(per)) < 0.95


def test_supplied_queries_far_from_the_data_need_a_larger_effort(tmp_path):
    from vecbox import Collection

    x = _mixture(6000, seed=1)
    col = Collection.create(tmp_path / "c", dim=x.shape[1], metric="l2")
    col.add([str(i) for i in range(len(x))], x)
    moved = col.build_index("hnsw", M=6, ef_construction=32, target_recall=0.97)
    # past queries between the clusters: harder than any query near the data
    rng = np.random.default_rng(9)
    past = (x[rng.integers(0, len(x), 300)] + x[rng.integers(0, len(x), 300)]) / 2
    past += rng.standard_normal(past.shape).astype(np.float32)
    info = col.build_index("hnsw", M=6, ef_construction=32, target_recall=0.97, calibration_queries=past)
    cal = info["calibration"]
    assert moved["calibration"]["source"] == "moved rows"
    assert cal["source"] == "supplied" and cal["queries"] == 300 and info["ef_search"] == cal["effort"]
    assert info["ef_search"] >= moved["ef_search"]
    # the recall it reports is what the collection's own searches get on those queries (exact numpy reference)
    d2 = ((past[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    truth = np.argsort(d2, axis=1, kind="stable")[:, :K]
    got = np.array([[int(h.id) for h in col.search(qq, k=K)] for qq in past])
    assert knn_recall(got, truth) == pytest.approx(cal["recall"], abs=0.01)
    assert cal["ci95"][0] <= cal["recall"] <= cal["ci95"][1] and cal["required"] == 0.97  # real queries: no margin
    with Collection.open(tmp_path / "c") as again:  # saved with the index
        assert again.index_info()["calibration"] == cal


@pytest.mark.parametrize("bad, error", [
    (lambda x: x[:5, :7], "DimensionMismatchError"),
    (lambda x: np.where(np.arange(x.shape[1]) == 0, np.nan, x[:5]), "InvalidInputError"),
])
def test_bad_calibration_queries_are_refused_and_the_index_is_kept(tmp_path, bad, error):
    from vecbox import Collection, errors

    x = _mixture(1000, seed=2)
    col = Collection.create(tmp_path / "c", dim=x.shape[1])
    col.add([str(i) for i in range(len(x))], x)
    before = col.build_index("hnsw", M=8)
    with pytest.raises(getattr(errors, error), match="calibration_queries"):
        col.build_index("hnsw", M=8, calibration_queries=bad(x).astype(np.float32))
    assert col.index_info() == before
