"""Collection behaviour, checked against brute-force numpy search and hand-built expectations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vecbox import Collection, Hit
from vecbox.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    CorruptCollectionError,
    DimensionMismatchError,
    DuplicateIdError,
    FilterError,
    InvalidInputError,
    UnknownIdError,
    VecboxError,
)


def brute_force(x: np.ndarray, q: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Independent reference: full score matrix in float64 and a full sort."""
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        x64 = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
        q64 = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
    if metric == "l2":
        d = np.sqrt(((q64[:, None, :] - x64[None, :, :]) ** 2).sum(-1))
        order = np.argsort(d, axis=1)[:, :k]
        return np.take_along_axis(d, order, 1), order
    s = q64 @ x64.T
    order = np.argsort(-s, axis=1)[:, :k]
    return np.take_along_axis(s, order, 1), order


def make(col_path, rng, n=500, d=16, metric="cosine"):
    col = Collection.create(col_path, dim=d, metric=metric)
    x = rng.standard_normal((n, d)).astype(np.float32)
    ids = [f"id{i}" for i in range(n)]
    metas = [{"i": i, "group": ["a", "b", "c"][i % 3], "even": i % 2 == 0} for i in range(n)]
    col.add(ids, x, metadatas=metas, documents=[f"doc {i}" for i in range(n)])
    return col, x, ids, metas


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_search_matches_brute_force(col_path, rng, metric):
    col, x, ids, _ = make(col_path, rng, metric=metric)
    q = rng.standard_normal((7, x.shape[1])).astype(np.float32)
    ref_s, ref_i = brute_force(x, q, 10, metric)
    hits = col.search_batch(q, k=10)
    for row, hs in enumerate(hits):
        assert [h.id for h in hs] == [ids[j] for j in ref_i[row]]
        np.testing.assert_allclose([h.score for h in hs], ref_s[row], rtol=1e-4, atol=1e-4)
    one = col.search(q[0], k=10)  # gemv vs gemm may differ in the last bit
    assert [h.id for h in one] == [h.id for h in hits[0]]
    assert [h.score for h in one] == pytest.approx([h.score for h in hits[0]], rel=1e-6, abs=1e-6)  # ~1 ulp


def test_search_returns_metadata_and_documents(col_path, rng):
    col, x, ids, metas = make(col_path, rng)
    hit = col.search(x[42], k=1)[0]
    assert hit == Hit("id42", pytest.approx(1.0, abs=1e-5), metas[42], "doc 42")
    bare = col.search(x[42], k=1, include_metadata=False)[0]
    assert bare.id == "id42" and bare.metadata is None


def test_filtered_search_equals_brute_force_over_matching_rows(col_path, rng):
    col, x, ids, metas = make(col_path, rng)
    q = rng.standard_normal((3, x.shape[1])).astype(np.float32)
    for where, mask in [
        ({"group": "b"}, [m["group"] == "b" for m in metas]),  # 1/3 of rows: gathered path
        ({"i": {"$gte": 100}}, [m["i"] >= 100 for m in metas]),  # 80%: masked path
        ({"$or": [{"i": {"$lt": 5}}, {"group": {"$in": ["c"]}}], "even": True},
         [(m["i"] < 5 or m["group"] == "c") and m["even"] for m in metas]),
    ]:
        allowed = np.flatnonzero(mask)
        _, ref_i = brute_force(x[allowed], q, 10, "cosine")
        got = col.search_batch(q, k=10, where=where)
        for row in range(len(q)):
            assert [h.id for h in got[row]] == [ids[allowed[j]] for j in ref_i[row]]
        assert col.count(where) == len(allowed)


@pytest.mark.parametrize("n_match", [0, 1, 9, 10, 500])
def test_filters_matching_few_or_all_rows(col_path, rng, n_match):
    col, x, ids, _ = make(col_path, rng)
    hits = col.search(x[0], k=10, where={"i": {"$lt": n_match}})
    assert len(hits) == min(n_match, 10)
    assert all(int(h.id[2:]) < n_match for h in hits)


def test_k_larger_than_collection_and_empty_collection(col_path, rng):
    col = Collection.create(col_path, dim=4)
    assert col.search([1, 0, 0, 0], k=5) == []
    col.add(["a", "b"], [[1, 0, 0, 0], [0, 1, 0, 0]])
    assert [h.id for h in col.search([1, 0, 0, 0], k=5)] == ["a", "b"]


def test_reopen_sees_everything(col_path, rng):
    col, x, ids, metas = make(col_path, rng, metric="l2")
    col.close()
    again = Collection.open(col_path)
    assert (again.dim, again.metric, again.count(), again.version) == (16, "l2", 500, 1)
    rec = again.get(["id7", "id3"])
    assert [r.id for r in rec] == ["id7", "id3"]
    np.testing.assert_array_equal(rec[0].vector, x[7])
    assert rec[1].metadata == metas[3] and rec[1].document == "doc 3"


def test_upsert_delete_and_compact(col_path, rng):
    col, x, ids, _ = make(col_path, rng, n=50, metric="dot")
    new = rng.standard_normal((2, 16)).astype(np.float32)
    col.upsert(["id1", "new"], new, metadatas=[{"v": 2}, None])
    assert col.count() == 51
    assert col.get(["id1"])[0].metadata == {"v": 2}
    np.testing.assert_array_equal(col.get(["id1"])[0].vector, new[0])
    assert col.delete(["id2", "id3"]) == 2
    assert col.delete(where={"i": {"$lt": 10}}) == 7  # id0..id9 minus id1 (replaced) and id2, id3
    remaining = [i for i in ids if int(i[2:]) >= 10] + ["id1", "new"]
    assert sorted(col.ids()) == sorted(remaining)
    before = {h.id: h.score for h in col.search(x[20], k=60)}
    assert "id2" not in before and before.keys() == set(remaining)
    freed = col.compact()
    assert freed > 0 and col.info()["tombstones"] == 0 and col.info()["segments"] == 1
    after = {h.id: h.score for h in Collection.open(col_path).search(x[20], k=60)}
    assert after == pytest.approx(before)


def test_version_increments_per_commit(col_path):
    col = Collection.create(col_path, dim=2)
    assert col.version == 0
    assert col.add(["a"], [[1, 0]]) == 1
    assert col.upsert(["a"], [[0, 1]]) == 2
    assert col.delete(["a"]) == 1 and col.version == 3


# --------------------------------------------------------------- bad input
def _state(col):
    return col.version, col.count(), sorted(p.name for p in (col.path / "segments").iterdir())


@pytest.mark.parametrize(
    "call, error, fragment",
    [
        (lambda c: c.add(["x"], np.ones((1, 5))), DimensionMismatchError, "5 columns"),
        (lambda c: c.add(["x"], [[np.nan, 1, 1, 1]]), InvalidInputError, "NaN"),
        (lambda c: c.add(["x"], [[np.inf, 1, 1, 1]]), InvalidInputError, "infinite"),
        (lambda c: c.add([], np.empty((0, 4))), InvalidInputError, "empty"),
        (lambda c: c.add(["x", "x"], np.ones((2, 4))), DuplicateIdError, "'x'"),
        (lambda c: c.add(["a"], np.ones((1, 4))), DuplicateIdError, "upsert"),
        (lambda c: c.add([1], np.ones((1, 4))), InvalidInputError, "str()"),
        (lambda c: c.add(["x", "y"], np.ones((1, 4))), InvalidInputError, "one id per vector"),
        (lambda c: c.add(["x"], np.ones((1, 4)), metadatas=[{"t": object()}]), InvalidInputError, "JSON"),
        (lambda c: c.add(["x"], np.ones((1, 4)), metadatas=[{"f": float("nan")}]), InvalidInputError, "JSON"),
        (lambda c: c.add(["x"], np.zeros((1, 4))), InvalidInputError, "all zeros"),
        (lambda c: c.delete(["nope"]), UnknownIdError, "nope"),
        (lambda c: c.get(["a", "nope"]), UnknownIdError, "missing_ok"),
        (lambda c: c.search([1, 2, 3], k=1), DimensionMismatchError, "4-d"),
        (lambda c: c.search([1, 0, 0, 0], k=0), InvalidInputError, "positive"),
        (lambda c: c.search([1, 0, 0, 0], where={"a": {"$regex": "x"}}), FilterError, "$regex"),
        (lambda c: c.search([1, 0, 0, 0], where={"a": {"$in": 3}}), FilterError, "$in"),
        (lambda c: c.count(where={"$nor": []}), FilterError, "$nor"),
    ],
)
def test_bad_input_raises_clear_error_and_writes_nothing(col_path, call, error, fragment):
    col = Collection.create(col_path, dim=4)
    col.add(["a"], [[1, 0, 0, 0]], metadatas=[{"k": 1}])
    before = _state(col)
    with pytest.raises(error) as info:
        call(col)
    assert isinstance(info.value, VecboxError)
    assert fragment in str(info.value)
    assert _state(col) == before
    assert [r.id for r in Collection.open(col_path).get(["a"])] == ["a"]


def test_unknown_metric_and_create_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="cosine, dot, l2"):
        Collection.create(tmp_path / "c", dim=4, metric="hamming")
    with pytest.raises(InvalidInputError, match="dim"):
        Collection.create(tmp_path / "c")
    Collection.create(tmp_path / "c", dim=4)
    with pytest.raises(CollectionExistsError, match="exist_ok"):
        Collection.create(tmp_path / "c", dim=4)
    assert Collection.create(tmp_path / "c", dim=4, exist_ok=True).dim == 4
    with pytest.raises(CollectionExistsError, match="dim=4"):
        Collection.create(tmp_path / "c", dim=8, exist_ok=True)


def test_paths_that_are_not_collections(tmp_path):
    with pytest.raises(CollectionNotFoundError, match="does not exist"):
        Collection.open(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(CollectionNotFoundError, match="not a vecbox collection"):
        Collection.open(tmp_path / "plain")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "vecbox.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(CorruptCollectionError, match="backup"):
        Collection.open(tmp_path / "junk")


def test_truncated_segment_is_reported_not_misread(col_path, rng):
    col, x, ids, _ = make(col_path, rng, n=100)
    seg = next((col_path / "segments").iterdir())
    data = seg.read_bytes()
    seg.write_bytes(data[: len(data) // 2])
    fresh = Collection.open(col_path)
    with pytest.raises(CorruptCollectionError, match="truncated"):
        fresh.search(x[0], k=3)
    assert fresh.count() == 100  # the catalog itself is intact


def test_segment_with_wrong_shape_is_reported(col_path, rng):
    col, x, ids, _ = make(col_path, rng, n=10)
    seg = next((col_path / "segments").iterdir())
    np.save(seg, np.ones((10, 3), dtype=np.float32))
    with pytest.raises(CorruptCollectionError, match=r"\(10, 16\)"):
        Collection.open(col_path).search(x[0], k=3)


def test_garbage_segments_from_a_dead_writer_are_removed(col_path, rng):
    col, x, _, _ = make(col_path, rng, n=10)
    (col_path / "segments" / "tmp-seg-dead.npy").write_bytes(b"partial")
    np.save(col_path / "segments" / "seg-orphan.npy", np.ones((3, 16), np.float32))
    reopened = Collection.open(col_path)
    names = {p.name for p in (col_path / "segments").iterdir()}
    assert "tmp-seg-dead.npy" not in names and "seg-orphan.npy" not in names
    assert reopened.count() == 10 and len(reopened.search(x[0], k=20)) == 10


def test_metadata_round_trips_as_json(col_path):
    col = Collection.create(col_path, dim=2)
    meta = {"s": "é ✓", "n": 3, "f": 2.5, "b": False, "z": None, "l": [1, "a"], "o": {"x": [True]}}
    col.add(["a"], [[1, 2]], metadatas=[meta])
    assert Collection.open(col_path).get(["a"])[0].metadata == meta
    raw = col._conn.execute("SELECT metadata FROM rows").fetchone()[0]
    assert json.loads(raw) == meta
