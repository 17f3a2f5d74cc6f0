"""ANN indexes inside collections, the filtered-search planner and funnel search.

Every approximate path is checked against exact search on seeded data.
"""

from __future__ import annotations

import gc
import math
from pathlib import Path

import numpy as np
import pytest

from vecbox.collection import Collection, Explained
from vecbox.errors import FilterError, InvalidInputError
from vecbox.evaluation import knn_recall
from vecbox.index.flat import exact_topk

D = 32
K = 10


def clustered(n: int, d: int = D, seed: int = 0, centers: int = 50) -> np.ndarray:
    """Gaussian mixture; the centres are the same for every seed (queries come from the data's distribution)."""
    c = np.random.default_rng(12345).standard_normal((centers, d)).astype(np.float32) * 2
    rng = np.random.default_rng(seed)
    x = c[rng.integers(0, centers, n)] + rng.standard_normal((n, d)).astype(np.float32)
    return x.astype(np.float32)


def metadata(n: int, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    num = rng.random(n)
    cat = rng.integers(0, 100, n)
    return [{"num": float(a), "cat": f"c{b}", "i": i} for i, (a, b) in enumerate(zip(num, cat))]


def exact_ids(x: np.ndarray, ids: list[str], q: np.ndarray, k: int, metric: str, allow: np.ndarray | None = None):
    xx = x / np.linalg.norm(x, axis=1, keepdims=True) if metric == "cosine" else x
    qq = q / np.linalg.norm(q, axis=1, keepdims=True) if metric == "cosine" else q
    _, idx = exact_topk(xx, qq, k, metric, valid=allow)
    return [[ids[i] for i in row if i >= 0] for row in idx]


@pytest.fixture(scope="module")
def data():
    n = 20_000
    x = clustered(n)
    ids = [f"r{i}" for i in range(n)]
    metas = metadata(n)
    q = clustered(100, seed=7)
    return x, ids, metas, q


@pytest.fixture(scope="module")
def hnsw_col(tmp_path_factory, data):
    x, ids, metas, _ = data
    col = Collection.create(tmp_path_factory.mktemp("h") / "c", dim=D, metric="cosine")
    col.add(ids, x, metas)
    col.build_index("hnsw", M=8, ef_construction=80, target_recall=0.95)
    return col


def _search_ids(col, q, **kw):
    return [[h.id for h in hits] for hits in col.search_batch(q, K, include_metadata=False, **kw)]


# ----------------------------------------------------------------------------- unfiltered
@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_index_recall_against_exact(tmp_path, data, kind, metric):
    x, ids, _, q = data
    x, ids = x[:8000], ids[:8000]
    col = Collection.create(tmp_path / "c", dim=D, metric=metric)
    col.add(ids, x)
    info = col.build_index(kind, M=16, target_recall=0.95)
    assert info["kind"] == kind and info["rows"] == 8000 and info["calibrated_recall"] >= 0.95
    with Collection.open(tmp_path / "c") as reopened:  # saved with the index
        assert reopened.index_info()["calibrated_recall"] == info["calibrated_recall"]
    res = col.search_batch(q, K, include_metadata=False, explain=True)
    assert res.plan.path == kind
    found = [[h.id for h in hits] for hits in res.hits]
    assert knn_recall(found, exact_ids(x, ids, q, K, metric)) >= 0.93
    # scores of what the index returns are the exact scores
    exact = {h.id: h.score for h in col.search(q[0], 50, exact=True, include_metadata=False)}
    for h in res.hits[0]:
        if h.id in exact:
            assert h.score == pytest.approx(exact[h.id], abs=1e-4)


def test_sq8_storage_rescored_exactly(tmp_path, data):
    x, ids, _, q = data
    col = Collection.create(tmp_path / "c", dim=D)
    col.add(ids[:5000], x[:5000])
    col.build_index("hnsw", M=16, storage="sq8")
    got = col.search_batch(q, K, include_metadata=False)
    assert knn_recall([[h.id for h in r] for r in got], exact_ids(x[:5000], ids[:5000], q, K, "cosine")) >= 0.93
    ex = {h.id: h.score for h in col.search(q[0], 100, exact=True, include_metadata=False)}
    assert all(abs(h.score - ex[h.id]) < 1e-4 for h in got[0] if h.id in ex)


# ----------------------------------------------------------------------------- filters
@pytest.mark.parametrize("count", [0, 1, K - 1, K, 20_000])
def test_filters_matching_edge_counts(hnsw_col, data, count):
    x, ids, metas, q = data
    where = {"i": {"$lt": count}}
    allow = np.array([m["i"] < count for m in metas])
    res = hnsw_col.search_batch(q[:20], K, where=where, include_metadata=False, explain=True)
    found = [[h.id for h in hits] for hits in res.hits]
    truth = exact_ids(x, ids, q[:20], K, "cosine", allow)
    assert all(len(f) == min(K, count) for f in found)
    if count <= K:
        assert res.plan.path == "exact"
        assert [sorted(f) for f in found] == [sorted(t) for t in truth]
    else:
        assert knn_recall(found, truth) >= 0.95


@pytest.mark.parametrize("sel", [0.01, 0.1, 0.3, 0.6])
@pytest.mark.parametrize("kind", ["range", "in"])
def test_filtered_recall_every_selectivity(hnsw_col, data, sel, kind):
    x, ids, metas, q = data
    if kind == "range":
        where = {"num": {"$lt": sel}}
        allow = np.array([m["num"] < sel for m in metas])
    else:
        cats = [f"c{i}" for i in range(int(round(sel * 100)))]
        where = {"cat": {"$in": cats}}
        allow = np.array([m["cat"] in cats for m in metas])
    res = hnsw_col.search_batch(q, K, where=where, include_metadata=False, explain=True)
    found = [[h.id for h in hits] for hits in res.hits]
    assert knn_recall(found, exact_ids(x, ids, q, K, "cosine", allow)) >= 0.95
    assert res.plan.estimate == int(allow.sum())
    single = hnsw_col.search(q[0], K, where=where, explain=True)
    assert isinstance(single, Explained) and single.plan.path in (
        "exact", "hnsw+filter", "hnsw+post-filter")
    if sel >= 0.6:
        assert res.plan.path == "hnsw+filter" and res.plan.costs["post-filter"] > res.plan.costs["filter"]
    if sel <= 0.01:
        assert res.plan.path == "exact"
    assert res.plan.reason and str(res.plan)


def test_in_graph_filter_path_is_taken_and_accurate(hnsw_col, data):
    x, ids, metas, q = data
    where = {"num": {"$gte": 0.7}}
    allow = np.array([m["num"] >= 0.7 for m in metas])
    res = hnsw_col.search(q[0], K, where=where, explain=True)
    assert res.plan.path == "hnsw+filter"
    # vecbox's walk keeps the ef nearest allowed rows: no growth needed (FAISS's beam rule would grow it);
    # the two-hop walk, when its measured speed wins, keeps its calibrated multiple of ef
    info = hnsw_col.index_info()
    ef = math.ceil(info["ef_search"] * info["walk_calibration"]["ef_ratio"]) if res.plan.two_hop else info["ef_search"]
    assert res.plan.effort == ef and "nearest allowed rows" in res.plan.reason
    found = [[h.id for h in hnsw_col.search(qq, K, where=where, include_metadata=False)] for qq in q]
    assert knn_recall(found, exact_ids(x, ids, q, K, "cosine", allow)) >= 0.95


def test_malformed_filter_is_rejected_before_search(hnsw_col, data):
    with pytest.raises(FilterError):
        hnsw_col.search(data[3][0], K, where={"num": {"$lt": [1]}})


# ----------------------------------------------------------------------------- lifecycle
def test_deletes_upserts_and_reopen(tmp_path, data):
    x, ids, metas, q = data
    n = 6000
    path = tmp_path / "c"
    col = Collection.create(path, dim=D)
    col.add(ids[:n], x[:n], metas[:n])
    col.build_index("hnsw", M=16)
    top = [h.id for h in col.search(q[0], K)]
    col.delete(top[:5])
    new_vec = q[0] * 3  # an upserted row that is the best match for q[0]
    col.upsert([top[5]], new_vec[None, :])
    col.add(["late"], (q[0] + 0.01)[None, :])  # committed after the index: searched exactly
    hits = [h.id for h in col.search(q[0], K)]
    assert not set(top[:5]) & set(hits)
    assert hits[0] in (top[5], "late") and {"late", top[5]} <= set(hits)
    res = col.search(q[0], K, explain=True)
    assert res.plan.tail_rows == 2
    # a fresh handle (another process) loads the saved index and gets the same answer
    col2 = Collection.open(path)
    assert col2.index_info()["rows"] == n
    assert [h.id for h in col2.search(q[0], K)] == hits
    for _ in range(3):  # interleave more writes and a rebuild
        col2.delete(hits[:1])
        hits = hits[1:]
        col2.build_index("hnsw", M=16)
        assert hits[0] == col2.search(q[0], 1)[0].id
    freed = col2.compact()
    assert freed > 0
    info = col2.index_info()
    assert info["rows"] == col2.count() and info["behind_by_versions"] == 0
    truth = [[h.id for h in r] for r in col2.search_batch(q, K, exact=True)]
    assert knn_recall([[h.id for h in r] for r in col2.search_batch(q, K)], truth) >= 0.9
    col2.drop_index()
    assert col2.index_info() is None and not list((path / "indexes").iterdir())
    assert col2.search(q[0], K, explain=True).plan.path == "exact"


def test_a_damaged_index_never_breaks_search_and_says_so(tmp_path, data):
    """A damaged index is detected on load: searches run exactly (same hits as exact=True), the plan and
    one warning say why and what to do, index_info() reports it, and build_index() replaces it."""
    x, ids, _, q = data
    path = tmp_path / "c"
    col = Collection.create(path, dim=D)
    col.add(ids[:3000], x[:3000])
    col.build_index("hnsw", M=8)
    (idx_dir,) = (path / "indexes").iterdir()
    (idx_dir / "index.faiss").write_bytes(b"garbage")
    col2 = Collection.open(path)
    with pytest.warns(RuntimeWarning, match="build_index"):
        res = col2.search(q[0], K, explain=True)
    assert res.plan.path == "exact" and "damaged" in res.plan.reason and "build_index" in res.plan.reason
    exact = col2.search(q[0], K, exact=True)
    assert [h.id for h in res.hits] == [h.id for h in exact] and len(exact) == K  # the vectors are untouched
    assert [h.id for h in col2.search(q[0], K, include_metadata=False)] == [h.id for h in exact]
    assert [[h.id for h in r] for r in col2.search_batch(q[:5], K)] == \
        [[h.id for h in r] for r in col2.search_batch(q[:5], K, exact=True)]
    info = col2.index_info()
    assert info["kind"] == "hnsw" and "build_index" in info["damaged"]
    col2.build_index("hnsw", M=8)
    assert col2.search(q[0], K, explain=True).plan.path == "hnsw"
    assert "damaged" not in col2.index_info()


def _mapped_index_files(path) -> list[str]:
    """Files under ``path/indexes`` this process has memory-mapped (Linux's /proc/self/maps)."""
    where = str((path / "indexes").resolve())
    return [line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if where in line]


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's /proc/self/maps")
def test_a_fresh_handle_loads_its_index_only_when_a_search_walks_it(tmp_path, data):
    """Exact searches of a new handle (a one-shot CLI search, a cold start) never read the index: none
    of its files is mapped after them. The first search that walks it maps them, and answers as FAISS's
    exact reference does at this recall."""
    x, ids, _, q = data
    path = tmp_path / "c"
    with Collection.create(path, dim=D) as col:
        col.add(ids[:3000], x[:3000])
        col.build_index("hnsw", M=8)
    del col
    gc.collect()
    assert _mapped_index_files(path) == []
    col2 = Collection.open(path)
    truth = exact_ids(x[:3000], ids[:3000], q, K, "cosine")
    assert [h.id for h in col2.search(q[0], K, exact=True)] == truth[0]
    assert [[h.id for h in r] for r in col2.search_batch(q[:5], K, exact=True)] == truth[:5]
    assert _mapped_index_files(path) == []  # the exact path read nothing of the index
    res = col2.search_batch(q, K, explain=True)
    assert res.plan.path == "hnsw" and any(f.endswith("index.faiss") for f in _mapped_index_files(path))
    assert knn_recall([[h.id for h in r] for r in res.hits], truth) >= 0.9


def test_bad_index_parameters(tmp_path):
    col = Collection.create(tmp_path / "c", dim=4)
    with pytest.raises(InvalidInputError, match="empty"):
        col.build_index()
    col.add(["a"], np.ones((1, 4)))
    with pytest.raises(InvalidInputError, match="unknown index kind"):
        col.build_index("annoy")
    with pytest.raises(InvalidInputError, match="M must be"):
        col.build_index("hnsw", M=0)
    with pytest.raises(InvalidInputError, match="ef_search"):
        col.search(np.ones(4), 1, ef_search=0)


def test_target_recall_calibration_generalises(tmp_path, data):
    x, ids, _, q = data
    col = Collection.create(tmp_path / "c", dim=D)
    col.add(ids[:10000], x[:10000])
    low = col.build_index("hnsw", M=8, ef_construction=40, target_recall=0.8)
    high = col.build_index("hnsw", M=8, ef_construction=40, target_recall=0.99)
    assert high["ef_search"] >= low["ef_search"]
    found = [[h.id for h in r] for r in col.search_batch(q, K, include_metadata=False)]
    assert knn_recall(found, exact_ids(x[:10000], ids[:10000], q, K, "cosine")) >= 0.96


# ----------------------------------------------------------------------------- funnel
def _pca_friendly(n: int, d: int = 64, seed: int = 3) -> np.ndarray:
    """Vectors whose variance decays over dimensions after a random rotation (like real embeddings)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, d)) * (1.0 / np.arange(1, d + 1) ** 1.2)
    rot, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (z @ rot).astype(np.float32)


def test_funnel_on_pca_collection_tracks_exact(tmp_path):
    x = _pca_friendly(8000)
    q = _pca_friendly(50, seed=9)
    ids = [str(i) for i in range(len(x))]
    col = Collection.create(tmp_path / "c", dim=64, codec="pca+f32")
    col.add(ids, x)
    res = col.search_batch(q, K, funnel=[(16, 200), (None, K)], include_metadata=False, explain=True)
    assert res.plan.path == "funnel"
    truth = exact_ids(x, ids, q, K, "cosine")
    assert knn_recall([[h.id for h in r] for r in res.hits], truth) >= 0.97
    exact = {h.id: h.score for h in col.search(q[0], 100, exact=True, include_metadata=False)}
    assert all(abs(h.score - exact[h.id]) < 1e-4 for h in res.hits[0] if h.id in exact)
    # one query at a time gives the same hits and exact scores (the query must not be altered on the way)
    q0 = q[0].copy()
    single = col.search(q0, K, funnel=[(16, 200), (None, K)], include_metadata=False)
    np.testing.assert_array_equal(q0, q[0])
    assert [h.id for h in single] == [h.id for h in res.hits[0]]
    assert all(abs(h.score - exact[h.id]) < 1e-4 for h in single if h.id in exact)
    # a filter and rows added later are honoured
    col.add(["new"], q[:1])
    hits = col.search(q[0], K, funnel=[(16, 200), (None, K)], where=None)
    assert hits[0].id == "new"


def test_funnel_errors(tmp_path):
    col = Collection.create(tmp_path / "c", dim=8, codec="int8")
    col.add([str(i) for i in range(300)], np.random.default_rng(0).standard_normal((300, 8)))
    with pytest.raises(InvalidInputError, match="pca\\+f32"):
        col.search(np.ones(8), 3, funnel=[(4, 50), (None, 3)])
    plain = Collection.create(tmp_path / "p", dim=8)
    plain.add(["a"], np.ones((1, 8)))
    for bad in ([(4, 50)], [(9, 50), (None, 3)], [(4, 2), (None, 3)], [(4, 50), (2, 10)], "64"):
        with pytest.raises(InvalidInputError):
            plain.search(np.ones(8), 3, funnel=bad)


# ----------------------------------------------------------------------------- estimates, CLI
def test_sampled_estimate_for_filters_sqlite_must_answer(tmp_path, data, monkeypatch):
    """Array-valued fields are answered by SQLite; on big collections the match count is first estimated."""
    import vecbox.query.selection as selection_mod

    x, ids, _, q = data
    n = 6000
    rng = np.random.default_rng(5)
    tags = [["common", "rare"] if rng.random() < 0.03 else ["common"] if rng.random() < 0.9 else ["other"]
            for _ in range(n)]
    col = Collection.create(tmp_path / "c", dim=D)
    col.add(ids[:n], x[:n], [{"tags": t} for t in tags])
    col.build_index("hnsw", M=16)
    monkeypatch.setattr(selection_mod, "SAMPLE_ABOVE", 1000)  # what 200k rows would trigger
    for tag in ("common", "rare"):
        allow = np.array([tag in t for t in tags])
        res = col.search_batch(q[:30], K, where={"tags": tag}, include_metadata=False, explain=True)
        assert "sample" in res.plan.estimate_source
        assert abs(res.plan.estimate - allow.sum()) < 0.1 * n
        truth = exact_ids(x[:n], ids[:n], q[:30], K, "cosine", allow)
        assert knn_recall([[h.id for h in r] for r in res.hits], truth) >= 0.95
        assert all(len(r) == min(K, allow.sum()) for r in res.hits)
    assert res.plan.path == "exact"  # 3% of the rows: counted exactly, then scanned


def test_cli_index_and_explain(tmp_path, data):
    from typer.testing import CliRunner

    from vecbox.cli import app

    x, ids, metas, q = data
    path = tmp_path / "c"
    col = Collection.create(path, dim=D)
    col.add(ids[:4000], x[:4000], metas[:4000])
    runner = CliRunner()
    out = runner.invoke(app, ["index", str(path), "--M", "8", "--json"])
    assert out.exit_code == 0, out.output
    info = __import__("json").loads(out.output)
    assert info["kind"] == "hnsw" and info["rows"] == 4000 and info["M"] == 8
    vec = __import__("json").dumps(q[0].tolist())
    out = runner.invoke(app, ["search", str(path), "--vector", vec, "--where", '{"num": {"$gte": 0.5}}', "--explain",
                              "--json"])
    assert out.exit_code == 0, out.output
    res = __import__("json").loads(out.output)
    assert res["plan"]["path"] in ("hnsw+post-filter", "hnsw+filter", "exact") and len(res["hits"]) == K
    assert all(h["metadata"]["num"] >= 0.5 for h in res["hits"])
    out = runner.invoke(app, ["index", str(path), "--drop"])
    assert out.exit_code == 0 and Collection.open(path).index_info() is None


def test_many_deletions_after_build_use_an_allow_bitmap(tmp_path, data):
    x, ids, _, q = data
    n = 6000
    col = Collection.create(tmp_path / "c", dim=D)
    col.add(ids[:n], x[:n])
    col.build_index("hnsw", M=8)
    gone = ids[: int(0.7 * n)]
    col.delete(gone)
    res = col.search_batch(q[:30], K, include_metadata=False, explain=True)
    assert res.plan.path in ("hnsw+filter", "exact") and res.plan.estimate == n - len(gone)
    found = [[h.id for h in r] for r in res.hits]
    assert not set(gone) & {i for r in found for i in r}
    assert knn_recall(found, exact_ids(x[len(gone):n], ids[len(gone):n], q[:30], K, "cosine")) >= 0.95
    again = col.search_batch(q[:30], K, include_metadata=False)  # the cached bitmap gives the same answer
    assert [[h.id for h in r] for r in again] == found


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_a_collection_of_96_dimensions_walks_codes_with_exact_scores(tmp_path, metric):
    n, d = 20_000, 96
    x = clustered(n, d=d, seed=3)
    ids = [f"r{i}" for i in range(n)]
    q = clustered(30, d=d, seed=8)
    col = Collection.create(tmp_path / "c", dim=d, metric=metric)
    col.add(ids, x, metadatas=metadata(n))
    col.build_index("hnsw", M=16)
    assert col.index_info()["walk_codes"] is True
    allow = np.array([m["num"] < 0.5 for m in metadata(n)])
    for where, mask in ((None, None), ({"num": {"$lt": 0.5}}, allow)):
        assert col.search(q[0], K, where=where, explain=True).plan.path.startswith("hnsw")
        found = col.search_batch(q, K, where=where)
        exact = col.search_batch(q, K, where=where, exact=True)
        assert knn_recall([[h.id for h in r] for r in found], exact_ids(x, ids, q, K, metric, mask)) >= 0.95
        # the walk scored on codes but the hits carry the exact scores
        for r, e in zip(found, exact):
            by_id = {h.id: h.score for h in e}
            assert all(abs(h.score - by_id[h.id]) <= 1e-5 * abs(h.score) + 1e-6 for h in r if h.id in by_id)
    col.close()
    assert Collection.open(tmp_path / "c").index_info()["walk_codes"] is True
