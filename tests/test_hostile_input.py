"""Hostile input (issue 18): every bad value gets a clear vecbox error, never a raw exception, never silent corruption.

Each test feeds one kind of bad input through the public API (or the one internal gate it
concerns) and checks three things: the error is a :class:`VecboxError` subclass, its message
says what was wrong, and nothing was written or altered.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vecbox import Collection
from vecbox._validation import MAX_METADATA_DEPTH, as_matrix, check_documents, check_ids, check_metadatas
from vecbox.errors import (
    CollectionNotFoundError,
    CorruptCollectionError,
    FilterError,
    InvalidInputError,
    VecboxError,
)
from vecbox.index.ann import IndexParams
from vecbox.query.filters import MAX_DEPTH, Filter, compile_filter, filter_key
from vecbox.storage.lock import WriteLock


@pytest.fixture
def col(col_path):
    c = Collection.create(col_path, dim=2, metric="dot")
    c.add(["keep"], [[1.0, 0.0]], metadatas=[{"k": "a"}], documents=["kept"])
    yield c
    c.close()


def _unchanged(col: Collection) -> None:
    """Nothing of the rejected batch reached the catalog."""
    assert col.count() == 1 and col.version == 1
    assert [r.id for r in col.get(["keep"])] == ["keep"]


# ------------------------------------------------------------------ 1. NUL characters
@pytest.mark.parametrize("ids", [["a\x00b"], ["x\x00b", "x\x00c"], ["\x00"], ["ok", "tail\x00"]])
def test_nul_in_ids_is_rejected(col, ids):
    with pytest.raises(InvalidInputError, match=r"NUL") as info:
        col.add(ids, [[1.0, 2.0]] * len(ids))
    assert "U+0000" in str(info.value)
    _unchanged(col)
    with pytest.raises(InvalidInputError, match="NUL"):
        col.upsert(ids, [[1.0, 2.0]] * len(ids))
    with pytest.raises(InvalidInputError, match="NUL"):
        col.get(ids)
    _unchanged(col)


def test_nul_in_documents_is_rejected(col):
    with pytest.raises(InvalidInputError, match=r"documents\[1\].*NUL"):
        col.add(["d0", "d1"], [[1.0, 2.0]] * 2, documents=["fine", "cut\x00here"])
    _unchanged(col)


@pytest.mark.parametrize("meta", [{"k": "a\x00b"}, {"k\x00z": 1}, {"k": ["ok", "a\x00"]}, {"o": {"\x00": None}}])
def test_nul_in_metadata_is_rejected(col, meta):
    # SQLite's JSON functions cut strings at U+0000: {"k": "a"} would match {"k": "a\x00b"}
    with pytest.raises(InvalidInputError, match=r"metadatas\[0\].*NUL"):
        col.add(["m"], [[1.0, 2.0]], metadatas=[meta])
    _unchanged(col)


def test_escaped_backslash_u0000_text_is_not_a_nul(col):
    meta = {"k": "\\u0000 is six characters", "\\u0000": "key too"}
    col.add(["bs"], [[1.0, 2.0]], metadatas=[meta], documents=["\\u0000"])
    got = col.get(["bs"])[0]
    assert got.metadata == meta and got.document == "\\u0000"
    assert col.count(where={"k": "\\u0000 is six characters"}) == 1


# ------------------------------------------------------------------ 2. lone surrogates
@pytest.mark.parametrize("field", ["ids", "documents", "meta_value", "meta_key", "meta_nested"])
def test_lone_surrogates_are_rejected(col, field):
    ids, docs, metas = ["s"], None, None
    if field == "ids":
        ids = ["s\ud800"]
    elif field == "documents":
        docs = ["text \udfff"]
    elif field == "meta_value":
        metas = [{"k": "\ud800"}]
    elif field == "meta_key":
        metas = [{"\ud800": 1}]
    else:
        metas = [{"k": [{"deep": "x\udc80"}]}]
    with pytest.raises(InvalidInputError, match="surrogate") as info:
        col.add(ids, [[1.0, 2.0]], metadatas=metas, documents=docs)
    assert "UTF-8" in str(info.value)
    _unchanged(col)


def test_lone_surrogate_in_a_filter_is_a_filter_error(col):
    for where in ({"k": "\ud800"}, {"\ud800": 1}, {"k": {"$gt": "a\udfff"}}):
        with pytest.raises(FilterError, match="surrogate"):
            col.count(where=where)
        with pytest.raises(FilterError, match="surrogate"):
            col.search([1.0, 0.0], where=where)
        with pytest.raises(FilterError, match="surrogate"):
            col.delete(where=where)
    _unchanged(col)


# ------------------------------------------------------------------ 3. deep metadata
def _nest_dicts(depth: int) -> dict:
    m: object = 1
    for _ in range(depth):
        m = {"a": m}
    return m  # type: ignore[return-value]


def _nest_lists(depth: int) -> dict:
    m: object = 1
    for _ in range(depth - 1):
        m = [m]
    return {"a": m}


@pytest.mark.parametrize("nest", [_nest_dicts, _nest_lists])
@pytest.mark.parametrize("depth", [MAX_METADATA_DEPTH + 1, 5000, 100_000])
def test_deep_metadata_is_rejected(col, nest, depth):
    with pytest.raises(InvalidInputError, match=f"deeper than {MAX_METADATA_DEPTH}"):
        col.add(["deep"], [[1.0, 2.0]], metadatas=[nest(depth)])
    _unchanged(col)


@pytest.mark.parametrize("nest", [_nest_dicts, _nest_lists])
def test_metadata_at_the_depth_limit_round_trips(col, nest):
    meta = nest(MAX_METADATA_DEPTH)
    col.add(["limit"], [[1.0, 2.0]], metadatas=[meta])
    assert col.get(["limit"])[0].metadata == meta


def test_many_brackets_in_strings_are_not_depth(col):
    meta = {"s": "[" * 500 + "{" * 500, "l": [[1], [2], [3]] * 40}
    col.add(["br"], [[1.0, 2.0]], metadatas=[meta])
    assert col.get(["br"])[0].metadata == meta


# ------------------------------------------------------------------ 4. deep filters
def _deep_filters(depth: int) -> list[dict]:
    out = []
    for wrap in (lambda f: {"$not": f}, lambda f: {"$and": [f]}, lambda f: {"$or": [{"k": 1}, f]}):
        f: dict = {"k": "a"}
        for _ in range(depth):
            f = wrap(f)
        out.append(f)
    return out


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 20_000])
def test_deep_filters_are_filter_errors_everywhere(col, depth):
    for where in _deep_filters(depth):
        with pytest.raises(FilterError, match="deeper"):
            col.search([1.0, 0.0], where=where)
        with pytest.raises(FilterError, match="deeper"):
            col.search_batch([[1.0, 0.0]], where=where)
        with pytest.raises(FilterError, match="deeper"):
            col.count(where=where)
        with pytest.raises(FilterError, match="deeper"):
            col.delete(where=where)
        with pytest.raises(FilterError, match="deeper"):
            Filter.parse(where)
        with pytest.raises(FilterError, match="deeper"):
            compile_filter(where)
    _unchanged(col)


def test_filter_key_never_raises_recursion_error():
    deep_value = {"k": {"$in": _nest_lists(20_000)["a"]}}
    with pytest.raises(FilterError):
        filter_key(deep_value)
    with pytest.raises(FilterError):
        Filter.parse(deep_value)


def test_filters_at_the_depth_limit_still_work(col):
    where = {"k": "a"}
    for _ in range(MAX_DEPTH - 1):
        where = {"$and": [where]}
    assert col.count(where=where) == 1
    assert [h.id for h in col.search([1.0, 0.0], where=where)] == ["keep"]


# ------------------------------------------------------------------ 5. IVF lists vs rows
def test_ivf_nlist_above_the_row_count(col_path, rng):
    col = Collection.create(col_path, dim=8)
    col.add([str(i) for i in range(50)], rng.standard_normal((50, 8)))
    with pytest.raises(InvalidInputError, match=r"nlist=1000 needs at least 1000 rows.*has 50") as info:
        col.build_index("ivf", nlist=1000)
    assert "smaller nlist" in str(info.value)
    assert col.index_info() is None
    assert col.build_index("ivf", nlist=50)["nlist"] == 50  # n == nlist is enough
    assert col.build_index("ivf")["kind"] == "ivf"  # the default adapts to n


def test_index_params_check_rows():
    IndexParams("ivf", nlist=10).check().check_rows(10)
    IndexParams("hnsw").check().check_rows(1)
    IndexParams("ivf").check().check_rows(1)  # nlist=None: chosen from n
    with pytest.raises(InvalidInputError, match="nlist=11 needs at least 11 rows"):
        IndexParams("ivf", nlist=11).check_rows(10)
    with pytest.raises(InvalidInputError, match="no rows"):
        IndexParams("hnsw").check_rows(0)


@pytest.mark.parametrize("bad", [
    {"nlist": True}, {"nlist": 2.5}, {"nlist": "8"}, {"target_recall": "high"}, {"target_recall": float("nan")},
    {"target_recall": True}, {"M": 0}, {"nprobe": -1}, {"kind": ["ivf"]},
])
def test_index_params_reject_bad_values(bad):
    with pytest.raises(InvalidInputError):
        IndexParams(**bad).check()


def test_cli_index_nlist_above_the_row_count(col_path, rng):
    pytest.importorskip("vecbox.cli")
    col = Collection.create(col_path, dim=8)
    col.add([str(i) for i in range(50)], rng.standard_normal((50, 8)))
    col.close()
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-m", "vecbox.cli", "index", str(col_path), "--kind", "ivf",
                             "--nlist", "1000"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "needs at least 1000 rows" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------ 6. lock_timeout
@pytest.mark.parametrize("bad", ["x", -1, -0.5, float("nan"), True, None, [1]])
def test_bad_lock_timeout_is_rejected(col_path, bad):
    Collection.create(col_path, dim=2).close()
    with pytest.raises(InvalidInputError, match="lock_timeout"):
        Collection.open(col_path, lock_timeout=bad)
    with pytest.raises(InvalidInputError, match="lock_timeout"):
        Collection.create(col_path, dim=2, exist_ok=True, lock_timeout=bad)
    with pytest.raises(InvalidInputError, match="lock_timeout"):
        WriteLock(col_path / "LOCK", bad)


@pytest.mark.parametrize("good", [0, 0.25, 5, math.inf, np.float32(1.5)])
def test_good_lock_timeouts_work(col_path, good):
    col = Collection.create(col_path, dim=2, lock_timeout=good)
    assert col.add(["a"], [[1.0, 2.0]]) == 1


# ------------------------------------------------------------------ 7. silent coercions of vectors
@pytest.mark.parametrize("vectors, found", [
    ([["1", "2"]], "str"),
    ([[1 + 2j, 2]], "complex"),
    (np.array([[1 + 0j, 2]]), "complex"),
    ([[True, False]], "bool"),
    (np.array([[True, False]]), "bool"),
    ([[True, 0.5]], "bool"),
    ([[1, np.True_]], "bool"),
    (np.array([["1", "2"]]), "str"),
    (np.array([[b"1", b"2"]]), "bytes"),
    (np.array([["1", 2]], dtype=object), "str"),
    (np.array([[True, 2]], dtype=object), "bool"),
    (np.array([[1 + 1j, 2]], dtype=object), "complex"),
    ([[None, 1.0]], "NoneType"),
    (np.array([[1, 2]], dtype="datetime64[s]"), "datetime64"),
])
def test_non_numeric_vectors_are_rejected(col, vectors, found):
    with pytest.raises(InvalidInputError, match=found) as info:
        col.add(["v"], vectors)
    assert "vectors" in str(info.value)
    _unchanged(col)
    with pytest.raises(InvalidInputError, match=found):
        col.search(vectors[0])
    with pytest.raises(InvalidInputError, match=found):
        col.search_batch(vectors)


@pytest.mark.parametrize("vectors", [
    [[1, 2]], [(1.0, 2)], ((1, 2),), np.array([[1, 2]], np.int8), np.array([[1, 2]], np.uint16),
    np.array([[1, 2]], np.float16), np.array([[1, 2]], np.float64), np.array([[1, 2]], np.longdouble),
    np.array([[1.0, 2.0]], dtype=object), [[np.float32(1), np.int64(2)]], [np.array([1.0, 2.0])],
])
def test_real_numeric_vectors_are_accepted(vectors):
    out = as_matrix(vectors)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.tolist() == [[1.0, 2.0]]


def test_uint8_is_still_refused_as_codes_but_allowed_as_codes():
    with pytest.raises(InvalidInputError, match="compressed codes"):
        as_matrix(np.ones((2, 3), np.uint8))
    assert as_matrix(np.ones((2, 3), np.uint8), name="codes").dtype == np.float32


def test_float32_input_is_not_copied():
    x = np.ones((4, 3), np.float32)
    assert as_matrix(x) is x or np.shares_memory(as_matrix(x), x)


# ------------------------------------------------------------------ 8. damaged catalogs
def _set_config(path: Path, key: str, raw: str) -> None:
    conn = sqlite3.connect(path / "vecbox.sqlite")
    with conn:
        conn.execute("UPDATE config SET value = ? WHERE key = ?", (raw, key))
    conn.close()


@pytest.mark.parametrize("key, raw, fragment", [
    ("format_version", '"1"', r"format_version '1' \(a string\)"),
    ("format_version", "2", "format_version 2"),
    ("format_version", "true", r"format_version True \(a bool\)"),
    ("metric", '"cosinus"', "metric 'cosinus'"),
    ("metric", "3", r"metric 3 \(an int\)"),
    ("dim", '"16"', r"dim '16' \(a string\)"),
    ("dim", "0", "dim 0"),
    ("dim", "-3", "dim -3"),
    ("dim", "2.5", "dim 2.5"),
    ("dim", "null", "dim None"),
    ("metric", "{not json", "not JSON"),
    ("epoch", "", "not JSON"),
])
def test_damaged_config_values(col_path, key, raw, fragment):
    Collection.create(col_path, dim=16).close()
    _set_config(col_path, key, raw)
    with pytest.raises(CorruptCollectionError, match=fragment) as info:
        Collection.open(col_path)
    msg = str(info.value)
    assert "vecbox.sqlite" in msg and ("backup" in msg or "Upgrade" in msg or "re-create" in msg)


def test_missing_dim_or_metric(col_path):
    Collection.create(col_path, dim=16).close()
    conn = sqlite3.connect(col_path / "vecbox.sqlite")
    with conn:
        conn.execute("DELETE FROM config WHERE key = 'metric'")
    conn.close()
    with pytest.raises(CorruptCollectionError, match="metric"):
        Collection.open(col_path)


def _flip_page(path: Path, page: int, page_size: int = 4096) -> None:
    with open(path / "vecbox.sqlite", "r+b") as f:
        f.seek(page * page_size + (100 if page == 0 else 0))
        f.write(np.random.default_rng(page).integers(0, 256, 300, dtype=np.uint8).tobytes())


@pytest.mark.parametrize("page", [0, 1])  # the schema page, the config table
def test_flipped_catalog_page_on_open(col_path, rng, page):
    col = Collection.create(col_path, dim=4)
    col.add([f"i{i}" for i in range(500)], rng.standard_normal((500, 4)), metadatas=[{"s": "x" * 40}] * 500)
    col.close()
    _flip_page(col_path, page)
    with pytest.raises(CorruptCollectionError, match="vecbox.sqlite") as info:
        Collection.open(col_path)
    assert "backup" in str(info.value)


def test_flipped_page_anywhere_is_a_corrupt_collection_error(col_path, rng):
    col = Collection.create(col_path, dim=4)
    col.add([f"i{i}" for i in range(3000)], rng.standard_normal((3000, 4)), metadatas=[{"s": "x" * 40}] * 3000)
    col.close()
    pages = os.path.getsize(col_path / "vecbox.sqlite") // 4096
    for page in range(2, pages):
        target = col_path.parent / f"flip{page}"
        target.mkdir()
        for p in col_path.iterdir():
            if p.is_file():
                (target / p.name).write_bytes(p.read_bytes())
        (target / "segments").symlink_to(col_path / "segments")
        _flip_page(target, page)
        try:
            c = Collection.open(target)
            c.search([1.0, 0, 0, 0], where={"s": "x"})
            c.count()
        except VecboxError:
            pass


# ------------------------------------------------------------------ 9. foreign SQLite files
def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_foreign_sqlite_file_is_not_touched(tmp_path):
    root = tmp_path / "foreign"
    root.mkdir()
    db = root / "vecbox.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=DELETE")
    with conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    before = _digest(db)
    for attempt in (lambda: Collection.open(root), lambda: Collection.create(root, dim=2, exist_ok=True)):
        with pytest.raises(CollectionNotFoundError, match="vecbox"):
            attempt()
        assert _digest(db) == before
        assert sorted(p.name for p in root.iterdir()) == ["vecbox.sqlite"]  # no -wal, -shm, LOCK, segments/


def test_foreign_sqlite_file_with_a_config_table(tmp_path):
    root = tmp_path / "foreign"
    root.mkdir()
    conn = sqlite3.connect(root / "vecbox.sqlite")
    with conn:
        conn.execute("CREATE TABLE config (key TEXT, value TEXT)")
        conn.execute("INSERT INTO config VALUES ('format', '\"something-else\"')")
    conn.close()
    before = _digest(root / "vecbox.sqlite")
    with pytest.raises(CollectionNotFoundError, match="vecbox"):
        Collection.open(root)
    assert _digest(root / "vecbox.sqlite") == before
    assert sorted(p.name for p in root.iterdir()) == ["vecbox.sqlite"]


def test_a_vecbox_catalog_in_delete_mode_opens_and_returns_to_wal(col_path):
    col = Collection.create(col_path, dim=2)
    col.add(["a"], [[1.0, 2.0]])
    col.close()
    conn = sqlite3.connect(col_path / "vecbox.sqlite")
    assert conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    conn.close()
    again = Collection.open(col_path)
    assert again.count() == 1
    assert again._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# ------------------------------------------------------------------ 10. things in the way
def test_lock_that_is_a_directory_blocks_writes_only(col_path):
    col = Collection.create(col_path, dim=2, metric="dot")
    col.add(["a"], [[1.0, 2.0]])
    col.close()
    (col_path / "LOCK").unlink()
    (col_path / "LOCK").mkdir()
    reader = Collection.open(col_path)  # reads work
    assert reader.count() == 1 and reader.search([1.0, 2.0], k=1)[0].id == "a"
    assert reader.get(["a"])[0].vector.tolist() == [1.0, 2.0]
    with pytest.raises(CorruptCollectionError, match="remove the directory") as info:
        reader.add(["b"], [[2.0, 1.0]])
    assert str(col_path / "LOCK") in str(info.value)
    with pytest.raises(CorruptCollectionError, match="remove the directory"):
        reader.delete(["a"])
    assert reader.count() == 1
    (col_path / "LOCK").rmdir()
    assert reader.add(["b"], [[2.0, 1.0]]) == 2  # the lock works again once the directory is gone


def test_a_failed_lock_can_be_retried_from_the_same_thread(tmp_path):
    (tmp_path / "LOCK").mkdir()
    lock = WriteLock(tmp_path / "LOCK", 0.1)
    for _ in range(3):
        with pytest.raises(CorruptCollectionError):
            lock.acquire()
        assert lock.try_acquire() is False
    (tmp_path / "LOCK").rmdir()
    with lock:
        pass


def test_directory_named_like_a_segment_does_not_block_open(col_path):
    col = Collection.create(col_path, dim=2)
    col.add(["a"], [[1.0, 2.0]])
    col.close()
    (col_path / "segments" / "x.npy").mkdir()
    again = Collection.open(col_path)
    assert again.count() == 1 and again.search([1.0, 2.0], k=1)[0].id == "a"
    assert (col_path / "segments" / "x.npy").is_dir()  # not ours to delete


# ------------------------------------------------------------------ the gate functions directly
def test_gate_functions_name_the_position():
    with pytest.raises(InvalidInputError, match=r"ids\[2\]"):
        check_ids(["a", "b", "c\x00"])
    with pytest.raises(InvalidInputError, match=r"ids\[1\].*surrogate"):
        check_ids(["a", "\ud83d"])
    with pytest.raises(InvalidInputError, match=r"documents\[0\].*surrogate"):
        check_documents(["\ud83d"], 1)
    with pytest.raises(InvalidInputError, match=r"metadatas\[1\] has a key.*NUL"):
        check_metadatas([None, {"a\x00": 1}], 2)
    assert check_ids(["é", "😀", "a\nb"]) == ["é", "😀", "a\nb"]
    assert check_metadatas([{"t": "😀\n"}], 1) == [json.dumps({"t": "😀\n"}, ensure_ascii=False, separators=(",", ":"))]
