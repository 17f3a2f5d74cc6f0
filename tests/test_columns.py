"""Tests for vecbox.query.columns: numpy masks checked against the SQL of compile_filter."""

from __future__ import annotations

import functools
import json
import random
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_filters import HAND_ROWS, INJECTION_KEY, _db, filters, leaves
from vecbox.errors import FilterError
from vecbox.query import columns
from vecbox.query.columns import MetadataColumns
from vecbox.query.filters import compile_filter

ARRAY_FIELDS = {"tags", "mixed"}  # the fields of test_filters' rows that hold arrays
any_filter = st.one_of(leaves, filters)  # single conditions select non-trivial subsets more often


# --------------------------------------------------------------------------- helpers
def _connect(path: Path | str = ":memory:") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "CREATE TABLE rows (rid INTEGER PRIMARY KEY, id TEXT NOT NULL, seg_id INTEGER NOT NULL, "
        "pos INTEGER NOT NULL, metadata TEXT, document TEXT, added INTEGER NOT NULL, deleted INTEGER)"
    )
    return conn


def _dump(md) -> str | None:
    return None if md is None else json.dumps(md, ensure_ascii=False)


def _insert(conn: sqlite3.Connection, rows, deleted=()) -> None:
    """Append ``rows`` ((rid, metadata) pairs); rids in ``deleted`` get a tombstone."""
    deleted = set(deleted)
    conn.executemany(
        "INSERT INTO rows (rid, id, seg_id, pos, metadata, document, added, deleted) "
        "VALUES (?, ?, 0, ?, ?, NULL, 1, ?)",
        [(rid, f"id{rid}", rid, _dump(md), 2 if rid in deleted else None) for rid, md in rows],
    )


def _all_rids(conn: sqlite3.Connection) -> np.ndarray:
    return np.array([r for (r,) in conn.execute("SELECT rid FROM rows ORDER BY rid")], dtype=np.int64)


def _sql_mask(conn: sqlite3.Connection, where, rids: np.ndarray) -> np.ndarray:
    sql, params = compile_filter(where)
    hits = [r for (r,) in conn.execute(f"SELECT rid FROM rows WHERE rid <= ? AND ({sql})", [int(rids[-1]), *params])]
    return np.isin(rids, np.array(hits, dtype=np.int64))


def _paths(where) -> set[str]:
    out: set[str] = set()
    for key, cond in where.items():
        if key in ("$and", "$or"):
            for w in cond:
                out |= _paths(w)
        elif key == "$not":
            out |= _paths(cond)
        else:
            out.add(key)
    return out


def _uses_arrays(where) -> bool:
    return any(p.split(".")[0] in ARRAY_FIELDS and p != "mixed.a" for p in _paths(where))


@functools.lru_cache(maxsize=None)
def _random_rows() -> tuple[tuple[int, object], ...]:
    """test_filters' 402 random metadata rows (the filter strategy draws values from them), with gapped rids."""
    _, rows = _db()
    return tuple((3 * rid + 7, md) for rid, md in rows.items())


@functools.lru_cache(maxsize=None)
def _random_table() -> tuple[sqlite3.Connection, np.ndarray, MetadataColumns]:
    conn = _connect()
    rows = _random_rows()
    _insert(conn, rows, deleted={rid for rid, _ in rows[::5]})
    return conn, _all_rids(conn), MetadataColumns()


# --------------------------------------------------------------------------- random filters
def test_random_filters_match_sql():
    conn, rids, cols = _random_table()
    counts: Counter[str] = Counter()

    @settings(max_examples=400, deadline=None)
    @given(any_filter)
    def check(where):
        got = cols.mask(conn, where, rids, epoch=0)
        if _uses_arrays(where):
            assert got is None  # 'tags' and 'mixed' hold arrays in some rows
            counts["fallback"] += 1
            return
        assert got is not None
        assert got.dtype == bool and got.shape == rids.shape
        np.testing.assert_array_equal(got, _sql_mask(conn, where, rids))
        counts["columns"] += 1
        counts["nontrivial"] += 0 < got.sum() < len(rids)

    check()
    total = counts["columns"] + counts["fallback"]
    assert total >= 300
    assert counts["columns"] >= 0.3 * total, counts
    assert counts["nontrivial"] >= 0.3 * counts["columns"], counts


@settings(max_examples=150, deadline=None)
@given(any_filter, st.integers(1, 401), st.integers(0, 401))
def test_random_filters_incremental(where, split, prefix):
    """Mask a prefix of the rows, append the rest, mask again: both equal SQL (fresh cache each example)."""
    rows = _random_rows()
    conn = _connect()
    cols = MetadataColumns()
    _insert(conn, rows[:split])
    first = _all_rids(conn)
    got = cols.mask(conn, where, first, epoch=0)
    if got is not None:
        np.testing.assert_array_equal(got, _sql_mask(conn, where, first))
    _insert(conn, rows[split:], deleted={rid for rid, _ in rows[split::7]})
    rids = _all_rids(conn)
    got = cols.mask(conn, where, rids, epoch=0)
    if not _uses_arrays(where):
        assert got is not None
    if got is not None:
        np.testing.assert_array_equal(got, _sql_mask(conn, where, rids))
    if prefix:  # a caller holding fewer rows than are cached gets the prefix
        got = cols.mask(conn, where, rids[:prefix], epoch=0)
        if got is not None:
            np.testing.assert_array_equal(got, _sql_mask(conn, where, rids[:prefix]))


# --------------------------------------------------------------------------- hand-written semantics
HAND = {rid: md for rid, md in HAND_ROWS.items() if rid not in (5, 9)}  # rows 5 and 9 hold arrays
HAND |= {12: {"v": "é"}, 13: None, 14: {"v": 2**53}, 15: {"v": -2.5}, 16: {"v": {"b": "x"}}, 17: {"v": "Z"},
         18: {"v": "日本"}, 19: {"v": "😀"}, 20: {"v": ""}, 21: {"w": 1}}


@pytest.fixture(scope="module")
def hand():
    conn = _connect()
    _insert(conn, sorted(HAND.items()), deleted={2, 12})
    return conn, _all_rids(conn), MetadataColumns()


@pytest.mark.parametrize("where, expected", [
    ({"v": 1}, {1, 2}),                          # 1 == 1.0; not True, not "1"
    ({"v": 1.0}, {1, 2}),
    ({"v": True}, {3}),                          # True != 1
    ({"v": False}, {11}),
    ({"v": 0}, {10}),                            # 0 != False
    ({"v": "1"}, {4}),                           # "1" != 1
    ({"v": {"$in": [1]}}, {1, 2}),
    ({"v": {"$in": [True, "1"]}}, {3, 4}),
    ({"v": {"$in": [0, 1.0, False]}}, {1, 2, 10, 11}),
    ({"v": {"$ne": 1}}, set(HAND) - {1, 2}),     # missing, null and objects match $ne
    ({"v": {"$nin": [1, True]}}, set(HAND) - {1, 2, 3}),
    ({"v": {"$gt": 0}}, {1, 2, 14}),             # numbers only: no True, no strings
    ({"v": {"$gte": 0}}, {1, 2, 10, 14}),
    ({"v": {"$lt": 0}}, {15}),
    ({"v": {"$lte": 2**53}}, {1, 2, 10, 14, 15}),
    ({"v": 2**53}, {14}),
    ({"v": {"$exists": True}}, set(HAND) - {7, 13, 21}),  # null is present
    ({"v": {"$exists": False}}, {7, 13, 21}),    # missing, NULL metadata, other field only
    ({"v": {"$in": []}}, set()),
    ({"v": {"$nin": []}}, set(HAND)),
    ({"nope": {"$in": []}}, set()),
    ({"nope": {"$nin": []}}, set(HAND)),
    ({"nope": {"$ne": 1}}, set(HAND)),
    ({"nope": 1}, set()),
    ({"v": {"$gt": ""}}, {4, 12, 17, 18, 19}),   # strings only, code point order
    ({"v": {"$gte": ""}}, {4, 12, 17, 18, 19, 20}),
    ({"v": {"$gt": "z"}}, {12, 18, 19}),         # "é" > "z" by code point
    ({"v": {"$lt": "a"}}, {4, 17, 20}),          # "1" and "Z" sort before "a"
    ({"v": {"$gte": "é", "$lt": "日"}}, {12}),
    ({"v": {"$gt": "日本"}}, {19}),              # astral plane above the BMP (UTF-8 order)
    ({"v": {"$lte": "😀"}}, {4, 12, 17, 18, 19, 20}),
    ({"v.b": "x"}, {16}),                        # dotted path into a nested object
    ({"v.b": {"$exists": True}}, {16}),
    ({"v.b": {"$ne": "x"}}, set(HAND) - {16}),
    ({"v": "x"}, set()),                         # an object never equals a scalar
    ({"v": {"$in": ["x", {"b": "x"}.get("b")]}}, set()),
    ({"v.b.c": {"$exists": False}}, set(HAND)),  # path through a string
    ({"$not": {"v": 1}}, set(HAND) - {1, 2}),
    ({"$or": [{"v": "é"}, {"w": 1}]}, {12, 21}),
    ({"$and": [{"v": {"$exists": True}}, {"v": {"$nin": [1, True, False, 0]}}]},
     set(HAND) - {1, 2, 3, 7, 10, 11, 13, 21}),
    ({"$not": {}}, set()),
    ({"$and": [{}]}, set(HAND)),
])
def test_hand_semantics(hand, where, expected):
    conn, rids, cols = hand
    got = cols.mask(conn, where, rids, epoch=0)
    assert got is not None
    assert set(rids[got].tolist()) == expected
    np.testing.assert_array_equal(got, _sql_mask(conn, where, rids))


def test_nul_in_filter_string_matches_sql(hand):
    conn, rids, cols = hand
    for where in ({"v": {"$gte": "Z\x00"}}, {"v": {"$gt": "Z\x00"}}, {"v": {"$lt": "\x00"}}, {"v": "Z\x00"},
                  {"v": {"$ne": "Z\x00"}}):
        got = cols.mask(conn, where, rids, epoch=0)
        assert got is not None
        np.testing.assert_array_equal(got, _sql_mask(conn, where, rids))
    assert set(rids[cols.mask(conn, {"v": {"$gte": "Z\x00"}}, rids, epoch=0)].tolist()) == {12, 18, 19}
    # SQL reads $in lists as JSON, where SQLite cuts "Z\u0000" to "Z": left to SQL
    assert _sql_mask(conn, {"v": {"$in": ["Z\x00"]}}, rids).sum() == 1
    assert cols.mask(conn, {"v": {"$in": ["Z\x00", "é"]}}, rids, epoch=0) is None


def test_string_ranges_on_a_big_dictionary(monkeypatch):
    """Dictionaries too big for a numpy str array are compared as Python strings, with the same result."""
    monkeypatch.setattr(columns, "_DICT_ARRAY_BUDGET", 0)
    conn = _connect()
    _insert(conn, sorted(HAND.items()))
    rids = _all_rids(conn)
    cols = MetadataColumns()
    for where in ({"v": {"$gt": "z"}}, {"v": {"$gte": "é", "$lt": "日"}}, {"v": {"$lte": "😀"}},
                  {"v": {"$gte": "Z\x00"}}, {"v": {"$lt": ""}}, {"v": {"$gte": ""}}):
        got = cols.mask(conn, where, rids, epoch=0)
        np.testing.assert_array_equal(got, _sql_mask(conn, where, rids))


def test_none_and_empty_filter_match_everything(hand):
    conn, rids, cols = hand
    for where in (None, {}):
        got = cols.mask(conn, where, rids, epoch=0)
        assert got.dtype == bool and got.all() and len(got) == len(rids)


def test_empty_rids(hand):
    conn, _, cols = hand
    got = cols.mask(conn, {"v": 1}, np.zeros(0, np.int64), epoch=0)
    assert got is not None and got.shape == (0,)


def test_returned_mask_is_a_fresh_array(hand):
    conn, rids, cols = hand
    first = cols.mask(conn, {"v": {"$exists": True}}, rids, epoch=0)
    first &= False  # the caller ANDs with liveness in place
    again = cols.mask(conn, {"v": {"$exists": True}}, rids, epoch=0)
    assert again.sum() == len(HAND) - 3


def test_large_in_lists():
    conn = _connect()
    rng = random.Random(5)
    rows = [(rid, {"n": rng.choice([rng.randint(0, 500), rng.randint(0, 500) / 4, str(rng.randint(0, 50)), True]),
                   "s": rng.choice(["a", "b", f"s{rng.randint(0, 300)}", 3])}) for rid in range(1, 2001)]
    _insert(conn, rows)
    rids = _all_rids(conn)
    cols = MetadataColumns()
    big = list(range(0, 400, 3)) + [0.25, 12.5, "7", "s5", True] + [f"s{i}" for i in range(0, 300, 2)]
    for field in ("n", "s"):
        for op in ("$in", "$nin"):
            where = {field: {op: big}}
            got = cols.mask(conn, where, rids, epoch=0)
            np.testing.assert_array_equal(got, _sql_mask(conn, where, rids))
            assert 0 < got.sum() < len(rids)


def test_numpy_scalars_in_filters(hand):
    conn, rids, cols = hand
    where = {"v": {"$in": [np.int64(1), np.float32(-2.5)]}}
    got = cols.mask(conn, where, rids, epoch=0)
    assert set(rids[got].tolist()) == {1, 2, 15}
    np.testing.assert_array_equal(got, _sql_mask(conn, where, rids))


def test_negative_and_sparse_rids():
    conn = _connect()
    _insert(conn, [(-(2**40), {"a": 1}), (-3, {"a": 2}), (0, {"a": 1}), (2**40, {"a": "1"})])
    cols = MetadataColumns()
    rids = _all_rids(conn)
    assert cols.mask(conn, {"a": 1}, rids, epoch=0).tolist() == [True, False, True, False]
    _insert(conn, [(2**41, {"a": 1})])
    assert cols.mask(conn, {"a": 1}, _all_rids(conn), epoch=0).tolist() == [True, False, True, False, True]


def test_row_factory_of_the_connection_is_ignored():
    conn = _connect()
    conn.row_factory = sqlite3.Row
    _insert(conn, [(1, {"a": 1}), (2, {"a": "x"})])
    got = MetadataColumns().mask(conn, {"a": 1}, np.array([1, 2]), epoch=0)
    assert got.tolist() == [True, False]


# --------------------------------------------------------------------------- incremental loading
def test_appended_rows_are_read_and_deleted_rows_kept():
    conn = _connect()
    cols = MetadataColumns()
    _insert(conn, [(1, {"a": 1}), (2, {"a": 2}), (4, {"a": 1})], deleted={2})
    got = cols.mask(conn, {"a": {"$lte": 1}}, np.array([1, 2, 4]), epoch=0)
    assert got.tolist() == [True, False, True]
    _insert(conn, [(5, {"a": 0.5}), (9, {"a": "1"}), (10, None)], deleted={9})
    conn.execute("UPDATE rows SET deleted = 3 WHERE rid = 1")  # a delete only sets the tombstone
    rids = np.array([1, 2, 4, 5, 9, 10])
    got = cols.mask(conn, {"a": {"$lte": 1}}, rids, epoch=0)
    assert got.tolist() == [True, False, True, True, False, False]  # deleted rows still masked by value
    np.testing.assert_array_equal(got, _sql_mask(conn, {"a": {"$lte": 1}}, rids))
    assert cols.mask(conn, {"a": {"$ne": 2}}, rids, epoch=0).tolist() == [True, False, True, True, True, True]


def test_only_rows_above_the_last_cached_rid_are_read():
    conn = _connect()
    cols = MetadataColumns()
    _insert(conn, [(1, {"a": 1}), (2, {"a": 2})])
    assert cols.mask(conn, {"a": 2}, np.array([1, 2]), epoch=0).tolist() == [False, True]
    # Rewrite a cached row behind the cache's back (the catalog never does this without a new epoch):
    # the cache keeps its copy, proving that it reads only the appended rows.
    conn.execute("UPDATE rows SET metadata = '{\"a\": 1}' WHERE rid = 2")
    _insert(conn, [(3, {"a": 2})])
    assert cols.mask(conn, {"a": 2}, np.array([1, 2, 3]), epoch=0).tolist() == [False, True, True]
    # a field not cached yet is read in full
    conn.execute("UPDATE rows SET metadata = '{\"a\": 1, \"b\": 5}' WHERE rid = 1")
    assert cols.mask(conn, {"b": 5}, np.array([1, 2, 3]), epoch=0).tolist() == [True, False, False]
    # the same filter under a new epoch sees the table as it is
    assert cols.mask(conn, {"a": 2}, np.array([1, 2, 3]), epoch=1).tolist() == [False, False, True]


def test_fields_cached_to_different_lengths_are_extended_together():
    conn = _connect()
    cols = MetadataColumns()
    _insert(conn, [(1, {"a": 1, "b": "x"}), (2, {"a": 2, "b": "y"})])
    assert cols.mask(conn, {"a": 1}, np.array([1, 2]), epoch=0).tolist() == [True, False]
    _insert(conn, [(3, {"a": 1, "b": "y"}), (4, {"b": "x"})])
    where = {"$or": [{"a": 1}, {"b": "x"}], "c": {"$exists": False}}
    rids = np.array([1, 2, 3, 4])
    got = cols.mask(conn, where, rids, epoch=0)
    assert got.tolist() == [True, False, True, True]
    np.testing.assert_array_equal(got, _sql_mask(conn, where, rids))


def test_epoch_change_drops_the_cache(tmp_path):
    conn = _connect(tmp_path / "catalog.sqlite")
    cols = MetadataColumns()
    _insert(conn, [(1, {"a": 1}), (2, {"a": "x"}), (3, {"a": 2})])
    where = {"a": {"$in": [1, "x"]}}
    assert cols.mask(conn, where, np.array([1, 2, 3]), epoch=4).tolist() == [True, True, False]
    # compaction: rewrite the table with other metadata, same rids, and bump the epoch
    conn.execute("DELETE FROM rows")
    _insert(conn, [(1, {"a": "x"}), (2, {"a": [1]}), (3, {"a": 1.0})])
    conn.execute("DELETE FROM rows WHERE rid = 2")
    rids = np.array([1, 3])
    got = cols.mask(conn, where, rids, epoch=5)
    assert got.tolist() == [True, True]
    np.testing.assert_array_equal(got, _sql_mask(conn, where, rids))
    assert cols.mask(conn, {"a": {"$gt": 1}}, rids, epoch=5).tolist() == [False, False]


# --------------------------------------------------------------------------- fallbacks
def test_array_valued_field_falls_back():
    conn = _connect()
    cols = MetadataColumns()
    _insert(conn, [(1, {"a": 1, "t": "x"}), (2, {"a": 2, "t": ["x", "y"]}), (3, {"a": 3, "t": []})])
    rids = np.array([1, 2, 3])
    assert cols.mask(conn, {"t": "x"}, rids, epoch=0) is None
    assert cols.mask(conn, {"t": {"$exists": True}}, rids, epoch=0) is None
    assert cols.mask(conn, {"a": {"$gte": 2}, "t": "x"}, rids, epoch=0) is None
    assert cols.mask(conn, {"a": {"$gte": 2}}, rids, epoch=0).tolist() == [False, True, True]
    # an array appended later to a cached field also switches it to SQL
    _insert(conn, [(4, {"a": [4]})])
    assert cols.mask(conn, {"a": {"$gte": 2}}, np.array([1, 2, 3, 4]), epoch=0) is None


def test_object_valued_field_is_evaluated():
    conn = _connect()
    _insert(conn, [(1, {"a": {"b": 1}}), (2, {"a": 1}), (3, {"a": {}}), (4, {})])
    rids = np.array([1, 2, 3, 4])
    cols = MetadataColumns()
    for where, expected in [({"a": 1}, [False, True, False, False]), ({"a": {"$ne": 1}}, [True, False, True, True]),
                            ({"a": {"$exists": True}}, [True, True, True, False]),
                            ({"a.b": {"$gte": 1}}, [True, False, False, False])]:
        got = cols.mask(conn, where, rids, epoch=0)
        assert got.tolist() == expected
        np.testing.assert_array_equal(got, _sql_mask(conn, where, rids))


def test_inexact_integers_fall_back():
    conn = _connect()
    cols = MetadataColumns()
    _insert(conn, [(1, {"a": 2**53 - 1, "b": 2**53 + 1, "c": 1.5}), (2, {"a": -(2**53) + 1, "c": 1e300})])
    conn.execute("INSERT INTO rows VALUES (3, 'x', 0, 0, '{\"d\": 123456789012345678901234567890}', NULL, 1, NULL)")
    rids = np.array([1, 2, 3])
    assert cols.mask(conn, {"b": 1}, rids, epoch=0) is None  # stored integer beyond 2**53
    assert cols.mask(conn, {"d": {"$exists": True}}, rids, epoch=0) is None  # beyond int64 even
    assert cols.mask(conn, {"a": 2**53 + 1}, rids, epoch=0) is None  # filter integer float64 cannot hold
    for where in ({"a": {"$lt": 2**60}}, {"a": 2**53 - 1}, {"c": {"$gt": 2**62}}, {"c": {"$in": [1.5, 2**60]}}):
        got = cols.mask(conn, where, rids, epoch=0)
        assert got is not None
        np.testing.assert_array_equal(got, _sql_mask(conn, where, rids))


def test_undecodable_string_falls_back_for_that_field_only():
    conn = _connect()
    cols = MetadataColumns()
    _insert(conn, [(1, {"a": 1, "s": "ok"})])
    conn.execute("INSERT INTO rows VALUES (2, 'x', 0, 0, '{\"a\": 2, \"s\": \"\\ud800\"}', NULL, 1, NULL)")
    rids = np.array([1, 2])
    assert cols.mask(conn, {"s": "ok", "a": 1}, rids, epoch=0) is None
    assert cols.mask(conn, {"a": 2}, rids, epoch=0).tolist() == [False, True]
    assert cols.mask(conn, {"s": "\ud800"}, rids, epoch=0) is None  # SQL reports the unencodable string


def test_inconsistent_rids_fall_back():
    conn = _connect()
    cols = MetadataColumns()
    _insert(conn, [(1, {"a": 1}), (2, {"a": 2}), (5, {"a": 1})])
    where = {"a": 1}
    assert cols.mask(conn, where, np.array([1, 5]), epoch=0) is None  # a row is missing
    assert cols.mask(conn, where, np.array([2, 5]), epoch=0) is None  # the first row is missing
    assert cols.mask(conn, where, np.array([1, 2, 3, 5]), epoch=0) is None  # a row too many
    assert cols.mask(conn, where, np.array([2, 1, 5]), epoch=0) is None  # not ascending
    assert cols.mask(conn, where, np.array([1, 2, 5, 6]), epoch=0) is None  # beyond the table
    assert cols.mask(conn, where, np.array([[1, 2, 5]]), epoch=0) is None  # not 1-d
    assert cols.mask(conn, where, np.array([1.0, 2.0, 5.0]), epoch=0) is None  # not integers
    assert cols.mask(conn, where, np.array([1, 2, 5]), epoch=0).tolist() == [True, False, True]
    assert cols.mask(conn, where, np.array([1, 3, 5]), epoch=0) is None  # disagrees with the cached rids
    assert cols.mask(conn, {"zz": {"$exists": False}}, np.array([1, 2, 6]), epoch=0) is None
    assert cols.mask(conn, where, np.array([1, 2]), epoch=0).tolist() == [True, False]  # a prefix is fine


@pytest.mark.parametrize("where", [
    {"a": {"$gte2": 1}}, {"$bogus": 1}, {"a": None}, {"a": [1, 2]}, {"a": {"$in": 3}}, {"a": {"$gt": True}},
    {"a": {"$exists": 1}}, {"$and": []}, {"a..b": 1}, {INJECTION_KEY + '"': 1}, [{"a": 1}],
    {"a": {"$eq": float("nan")}},
])
def test_malformed_filters_raise(where):
    conn = _connect()
    _insert(conn, [(1, {"a": 1})])
    with pytest.raises(FilterError):
        MetadataColumns().mask(conn, where, np.array([1]), epoch=0)
