"""The id-only fast path (:mod:`vecbox.query.fastpath`) answers exactly as the general path.

The general path is forced with ``explain=True`` (same planner, same index, same
effort); the reference for what must never be returned is exact search.
"""

from __future__ import annotations

import numpy as np
import pytest

from vecbox.collection import Collection
from vecbox.errors import DimensionMismatchError, InvalidInputError
from vecbox.index.flat import exact_topk

D = 24
N = 4_000


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((30, D)).astype(np.float32) * 2
    x = centers[rng.integers(0, 30, N)] + rng.standard_normal((N, D)).astype(np.float32)
    q = centers[rng.integers(0, 30, 40)] + rng.standard_normal((40, D)).astype(np.float32)
    return x.astype(np.float32), q.astype(np.float32)


def _built(path, x, metadatas=None, **index_kw) -> Collection:
    """A collection of ``x`` (ids r0, r1, ...) with an HNSW index (M=16, ef_construction=80 unless given)."""
    col = Collection.create(path, dim=D)
    col.add([f"r{i}" for i in range(len(x))], x, metadatas)
    col.build_index("hnsw", **{"M": 16, "ef_construction": 80, **index_kw})
    return col


def _general(col: Collection, q: np.ndarray, k: int, **kw) -> list:
    return col.search(q, k, include_metadata=False, explain=True, **kw).hits


def _count_general_runs(col: Collection) -> list[int]:
    """Count the calls that take the general path (``Executor.run``) from now on."""
    calls = [0]
    run = col._executor.run

    def counted(*a, **kw):
        calls[0] += 1
        return run(*a, **kw)

    col._executor.run = counted
    return calls


def _same(fast: list, slow: list) -> None:
    assert [h.id for h in fast] == [h.id for h in slow]
    np.testing.assert_allclose([h.score for h in fast], [h.score for h in slow], rtol=1e-5, atol=1e-5)


@pytest.fixture(params=["cosine", "dot", "l2"])
def indexed(request, tmp_path):
    x, q = _data()
    col = Collection.create(tmp_path / "c", dim=D, metric=request.param)
    col.add([f"r{i}" for i in range(N)], x)
    col.build_index("hnsw", M=16, ef_construction=80, ef_search=48)
    yield col, x, q
    col.close()


def test_hot_path_matches_general_path(indexed):
    col, _, q = indexed
    general = [_general(col, qq, 10) for qq in q]
    runs = _count_general_runs(col)
    for qq, ref in zip(q, general):
        _same(col.search(qq, 10, include_metadata=False), ref)
    assert runs[0] == 0  # every one of them took the hot path


def test_hot_path_batch_matches_single_and_general(indexed):
    col, _, q = indexed
    batch = col.search_batch(q, 7, include_metadata=False, ef_search=64)
    general = col.search_batch(q, 7, include_metadata=False, ef_search=64, explain=True).hits
    for b, g, qq in zip(batch, general, q):
        _same(b, g)
        _same(b, col.search(qq, 7, include_metadata=False, ef_search=64))


def test_an_answer_survives_the_next_searches(indexed):
    # one query at a time, the walk answers into buffers the index reuses: hits must be copies
    col, _, q = indexed
    first = col.search(q[0], 10, include_metadata=False)
    kept = [(h.id, h.score) for h in first]
    later = [col.search(qq, 10, include_metadata=False) for qq in q[1:6]]
    assert [(h.id, h.score) for h in first] == kept
    _same(first, _general(col, q[0], 10))
    for qq, hits in zip(q[1:6], later):
        _same(hits, _general(col, qq, 10))


def test_float64_and_non_contiguous_queries(indexed):
    col, _, q = indexed
    wide = np.repeat(q[:3].astype(np.float64), 2, axis=1)[:, ::2]  # float64, strided
    for qq, ref in zip(wide, q[:3]):
        _same(col.search(qq, 5, include_metadata=False), _general(col, ref, 5))


def test_rows_added_after_the_build_are_found(tmp_path):
    x, q = _data()
    col = _built(tmp_path / "c", x)
    col.search(q[0], 5, include_metadata=False)  # hot path state built for this version
    col.add(["new"], q[:1] * 3)  # the nearest row of q[0] by far, outside the index
    hits = col.search(q[0], 5, include_metadata=False)
    assert hits[0].id == "new"
    _same(hits, _general(col, q[0], 5))


def test_deleted_rows_never_come_back(tmp_path):
    x, q = _data()
    col = _built(tmp_path / "c", x, ef_search=64)
    ids = [f"r{i}" for i in range(N)]
    first = [h.id for h in col.search(q[1], 10, include_metadata=False)]
    col.delete(first[:5])
    after = [h.id for h in col.search(q[1], 10, include_metadata=False)]
    assert not set(first[:5]) & set(after) and len(after) == 10
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    keep = ~np.isin(np.array(ids), first[:5])
    _, idx = exact_topk(xn, (q[1] / np.linalg.norm(q[1]))[None], 10, "cosine", valid=keep)
    assert len(set(after) & {ids[i] for i in idx[0]}) >= 8  # still approximate, still good


def test_other_writers_are_seen(tmp_path):
    x, q = _data()
    path = tmp_path / "c"
    col = _built(path, x)
    col.search(q[2], 3, include_metadata=False)
    other = Collection.open(path)
    other.add(["elsewhere"], q[2:3] * 5)
    other.close()
    assert col.search(q[2], 3, include_metadata=False)[0].id == "elsewhere"


def test_handles_on_one_path_share_the_shm_descriptor_until_the_last_closes(tmp_path):
    # closing a descriptor drops every POSIX lock this process holds on the file, SQLite's
    # WAL read locks included: one handle's close must not close the descriptor another uses
    from vecbox.storage import watch

    x, q = _data()
    path = tmp_path / "c"
    a = _built(path, x)
    b = Collection.open(path)
    key = a._reader._watch._key
    assert key is not None and b._reader._watch._key == key
    assert watch._SHM_OPEN[key][2] == 2
    a.close()
    assert watch._SHM_OPEN[key][2] == 1
    b.add(["late"], q[4:5] * 3)
    assert b.search(q[4], 1, include_metadata=False)[0].id == "late"
    assert b.search(q[4], 1)[0].id == "late"
    b.close()
    assert key not in watch._SHM_OPEN


def test_a_filter_mutated_in_place_is_not_taken_for_the_old_one(tmp_path):
    # filter keys are remembered per filter object (their JSON is costly): a mutation must show
    x, q = _data()
    col = _built(tmp_path / "c", x, [{"g": i % 10} for i in range(N)])
    where = {"g": {"$in": [1, 2]}}
    for _ in range(3):
        hits = col.search(q[0], 5, where=where, include_metadata=False)
    assert {int(h.id[1:]) % 10 for h in hits} <= {1, 2}
    where["g"]["$in"].remove(1)
    where["g"]["$in"].append(3)
    for _ in range(2):
        hits = col.search(q[0], 5, where=where, include_metadata=False)
        assert {int(h.id[1:]) % 10 for h in hits} <= {2, 3}
        _same(hits, _general(col, q[0], 5, where={"g": {"$in": [2, 3]}}))


def _add_from_another_process(path, vec):
    Collection.open(path).add(["other-process"], vec)


def test_no_sql_until_someone_commits_then_the_commit_is_seen(tmp_path):
    """The WAL-header watch spares SQLite entirely between commits, yet a commit in another process is seen."""
    import multiprocessing

    x, q = _data()
    path = tmp_path / "c"
    col = _built(path, x)
    col.search(q[3], 3, include_metadata=False)
    statements: list[str] = []
    col._conn.set_trace_callback(statements.append)
    for _ in range(3):
        col.search(q[3], 3, include_metadata=False)
    assert statements == []
    proc = multiprocessing.get_context("spawn").Process(target=_add_from_another_process, args=(path, q[3:4] * 5))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert col.search(q[3], 3, include_metadata=False)[0].id == "other-process"
    assert any("data_version" in st for st in statements)


@pytest.mark.parametrize("bad, error", [
    (np.full(D, np.nan, np.float32), InvalidInputError),
    (np.r_[np.ones(D - 1, np.float32), np.inf].astype(np.float32), InvalidInputError),
    (np.ones(D + 1, np.float32), DimensionMismatchError),
    (np.ones(D, np.uint8), InvalidInputError),
])
def test_bad_queries_get_the_general_paths_errors(indexed, bad, error):
    col, _, _ = indexed
    with pytest.raises(error):
        col.search(bad, 5, include_metadata=False)


def test_zero_query_is_an_error_only_for_cosine(indexed):
    col, _, _ = indexed
    zero = np.zeros(D, np.float32)
    if col.metric == "cosine":
        with pytest.raises(InvalidInputError, match="all zeros"):
            col.search(zero, 5, include_metadata=False)
    else:  # every score is 0 (dot) or the row's norm (l2): same answer as the general path
        _same(col.search(zero, 5, include_metadata=False), _general(col, zero, 5))


def test_bad_k_and_effort_are_rejected(indexed):
    col, _, q = indexed
    for kw in ({"k": 0}, {"k": 2.5}, {"k": 5, "ef_search": 0}):
        with pytest.raises(InvalidInputError):
            col.search(q[0], include_metadata=False, **kw)


def test_k_larger_than_the_collection(tmp_path):
    x, q = _data()
    col = _built(tmp_path / "c", x)
    hits = col.search(q[0], N + 10, include_metadata=False)
    assert len(hits) == N and len({h.id for h in hits}) == N


def test_cached_filter_walk_matches_general_path_and_respects_deletes(tmp_path):
    x, q = _data()
    rng = np.random.default_rng(3)
    num = rng.random(N)
    col = _built(tmp_path / "c", x, [{"num": float(v)} for v in num], ef_search=32)
    where = {"num": {"$lt": 0.6}}
    plan = col.search(q[0], 10, where=where, include_metadata=False, explain=True).plan
    assert plan.path == "hnsw+filter"  # the walk with an allow-bitmap: the case the hot path serves
    general = [_general(col, qq, 10, where=where) for qq in q]
    runs = _count_general_runs(col)
    for qq, ref in zip(q, general):
        hits = col.search(qq, 10, where=where, include_metadata=False)
        assert all(num[int(h.id[1:])] < 0.6 for h in hits)
        _same(hits, ref)
    assert runs[0] == 0  # the filter's labels were cached by the first search: all took the hot path
    batch = col.search_batch(q, 10, where=where, include_metadata=False)
    for b, g in zip(batch, col.search_batch(q, 10, where=where, include_metadata=False, explain=True).hits):
        _same(b, g)
    gone = [h.id for h in col.search(q[5], 10, where=where, include_metadata=False)][:3]
    col.delete(gone)
    after = col.search(q[5], 10, where=where, include_metadata=False)
    assert len(after) == 10 and not set(gone) & {h.id for h in after}
    _same(after, _general(col, q[5], 10, where=where))


def test_a_remembered_walk_outlives_its_filters_mask_cache_and_not_a_commit(tmp_path):
    """The hot path remembers (effort, bitmap) per filter and version; other filters may evict the mask."""
    x, q = _data()
    num = np.random.default_rng(4).random(N)
    col = _built(tmp_path / "c", x, [{"num": float(v)} for v in num], ef_search=32)
    where = {"num": {"$lt": 0.6}}
    for qq in q[:2]:  # the first search caches the filter's mask, the second walks on the hot path
        col.search(qq, 10, where=where, include_metadata=False)
    for i in range(12):  # more filters than the mask cache holds (8): `where`'s mask is evicted
        col.search(q[0], 10, where={"num": {"$gte": 0.01 * i}}, include_metadata=False)
    runs = _count_general_runs(col)
    hits = col.search(q[1], 10, where=where, include_metadata=False)
    assert runs[0] == 0 and all(num[int(h.id[1:])] < 0.6 for h in hits)
    _same(hits, _general(col, q[1], 10, where=where))
    col.upsert([hits[0].id], x[int(hits[0].id[1:])][None, :], [{"num": 0.99}])
    after = col.search(q[1], 10, where=where, include_metadata=False)
    assert hits[0].id not in {h.id for h in after}  # the commit made the remembered walk stale
    _same(after, _general(col, q[1], 10, where=where))


def test_a_filter_planned_as_a_scan_is_retried_after_a_commit(tmp_path):
    x, q = _data()
    flag = np.zeros(N, bool)
    flag[:50] = True  # 50 matching rows: an exact scan
    col = _built(tmp_path / "c", x, [{"f": bool(b)} for b in flag])
    where = {"f": True}
    assert col.search(q[0], 5, where=where, include_metadata=False, explain=True).plan.path == "exact"
    col.search(q[0], 5, where=where, include_metadata=False)
    assert col._fast._skipped(col._live, col._executor.selection.parse(where).key, 5, None, 1)
    runs = _count_general_runs(col)
    hits = col.search(q[1], 5, where=where, include_metadata=False)
    assert runs[0] == 1 and all(int(h.id[1:]) < 50 for h in hits)
    col.upsert([f"r{i}" for i in range(N)], x, [{"f": True}] * N)  # now every row matches
    col.build_index("hnsw", M=16, ef_construction=80)
    col.search(q[2], 5, where=where, include_metadata=False)  # general path: forgets the old miss, caches labels
    before = runs[0]
    for qq in q[3:10]:
        _same(col.search(qq, 5, where=where, include_metadata=False), _general(col, qq, 5, where=where))
    assert runs[0] - before == 7  # only the explain=True references ran the general path


def test_c_walk_makes_real_hits_and_leaks_no_references(indexed):
    # one query is answered by the C walk, which builds the Hit tuples itself
    import sys

    from vecbox.collection import Hit

    col, _, q = indexed
    hits = col.search(q[0], 10, include_metadata=False)
    assert all(type(h) is Hit and h.metadata is None and h.document is None for h in hits)
    assert hits[0] == Hit(hits[0].id, hits[0].score) and hits[0]._replace(score=1.0).score == 1.0
    some_id = col._fast._plain_id_list[int(hits[0].id[1:])]
    before = sys.getrefcount(some_id)
    for _ in range(300):
        col.search(q[0], 10, include_metadata=False)
    assert sys.getrefcount(some_id) == before


def test_c_batch_makes_untracked_hits_and_leaks_no_references(indexed):
    # a batch's hits are made in C too, and kept out of the garbage collector (str ids, floats, None)
    import gc
    import sys

    from vecbox.collection import Hit

    col, _, q = indexed
    batch = col.search_batch(q, 10, include_metadata=False)
    assert all(type(h) is Hit and not gc.is_tracked(h) for hits in batch for h in hits)
    some_id = col._fast._plain_id_list[int(batch[0][0].id[1:])]
    before = sys.getrefcount(some_id)
    for _ in range(50):
        col.search_batch(q, 10, include_metadata=False)
    assert sys.getrefcount(some_id) == before
