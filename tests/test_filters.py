"""Tests for vecbox.query.filters: compiled SQL checked against a pure-Python reference."""

from __future__ import annotations

import functools
import json
import operator
import random
import re
import sqlite3

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vecbox.errors import FilterError, InvalidInputError
from vecbox.query.filters import FILTER_OPERATORS, compile_filter

INJECTION_KEY = "x') OR 1=1 --"
STRINGS = ["", "1", "alpha", "beta", "Zeta", "O'Brien", 'say "hi"', "' OR 1=1 --", "ünï", "2005", "a b"]
NUMBERS = [-3, 0, 1, 1.0, 1.5, 2, 2.25, 7, 1999, 2000, 2000.0, 2005, 2010.5, 2020]


# --------------------------------------------------------------------------- reference evaluator
_MISSING = object()
_RANGE = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


def _kind(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "num"
    if isinstance(v, str):
        return "str"
    return None  # null, objects and nested arrays equal nothing


def _lookup(metadata, key):
    cur = metadata
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def _elements(value):
    if value is _MISSING or isinstance(value, dict):
        return []
    return value if isinstance(value, list) else [value]


def _same(a, b):
    return _kind(a) is not None and _kind(a) == _kind(b) and a == b


_WANTED_CACHE = {}


def _wanted(values):
    # Keyed on id() for speed with the 50,000-element list; keeping the list
    # alive in the cache stops its id from being reused by another list.
    cached = _WANTED_CACHE.get(id(values))
    if cached is None or cached[0] is not values:
        cached = _WANTED_CACHE[id(values)] = (values, {(_kind(a), a) for a in values})
    return cached[1]


def _op(op, arg, value):
    elements = _elements(value)
    if op == "$exists":
        return (value is not _MISSING) == arg
    if op in ("$eq", "$ne"):
        hit = any(_same(e, arg) for e in elements)
        return hit if op == "$eq" else not hit
    if op in ("$in", "$nin"):
        wanted = _wanted(arg)
        hit = any(_kind(e) is not None and (_kind(e), e) in wanted for e in elements)
        return hit if op == "$in" else not hit
    return any(_kind(e) == _kind(arg) and _RANGE[op](e, arg) for e in elements)


def _matches(where, metadata):
    """Reference semantics of a (valid) filter on one metadata dict."""
    metadata = metadata or {}
    for key, cond in where.items():
        if key == "$and":
            ok = all(_matches(w, metadata) for w in cond)
        elif key == "$or":
            ok = any(_matches(w, metadata) for w in cond)
        elif key == "$not":
            ok = not _matches(cond, metadata)
        else:
            ops = cond if isinstance(cond, dict) else {"$eq": cond}
            ok = all(_op(op, arg, _lookup(metadata, key)) for op, arg in ops.items())
        if not ok:
            return False
    return True


# --------------------------------------------------------------------------- seeded table
def _random_scalar(rng):
    return rng.choice([rng.choice(STRINGS), rng.choice(NUMBERS), rng.choice([True, False])])


def _random_metadata(rng):
    md = {}
    candidates = {
        "year": lambda: rng.choice([rng.randint(1995, 2015), rng.choice(NUMBERS), str(rng.randint(1999, 2006)),
                                    True, False, None]),
        "score": lambda: rng.choice([rng.randint(-4, 8) / 4, rng.randint(-2, 3)]),
        "flag": lambda: rng.choice([True, False, 0, 1, "true"]),
        "name": lambda: rng.choice(STRINGS),
        "tags": lambda: rng.choice([[_random_scalar(rng) for _ in range(rng.randint(0, 4))], _random_scalar(rng)]),
        "info": lambda: rng.choice([
            {"lang": rng.choice(["en", "de", "fr"]), "n": rng.randint(0, 5),
             "deep": {"x": _random_scalar(rng)}},
            {"lang": rng.choice(["en", 1, True])},
            rng.choice(STRINGS),
        ]),
        "with space": lambda: _random_scalar(rng),
        INJECTION_KEY: lambda: _random_scalar(rng),
        "mixed": lambda: rng.choice([[1, [1], {"a": 1}, None], {"a": 1}, None, [], [[2]]]),
    }
    for key, make in candidates.items():
        if rng.random() < 0.7:
            md[key] = make()
    return md


HAND_ROWS = {  # rid -> metadata, small enough to state expected results by hand
    1: {"v": 1}, 2: {"v": 1.0}, 3: {"v": True}, 4: {"v": "1"}, 5: {"v": [1, "x"]},
    6: {"v": {"a": 1}}, 7: {}, 8: {"v": None}, 9: {"v": [True, "b"]}, 10: {"v": 0}, 11: {"v": False},
}


@functools.lru_cache(maxsize=None)
def _db():
    rng = random.Random(20240607)
    rows = {rid: _random_metadata(rng) for rid in range(1, 401)}
    rows[401] = None  # a NULL metadata column behaves like {}
    rows[402] = {}
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE rows (rid INTEGER PRIMARY KEY, metadata TEXT)")
    db.executemany("INSERT INTO rows VALUES (?, ?)",
                   [(rid, None if md is None else json.dumps(md, ensure_ascii=False)) for rid, md in rows.items()])
    db.execute("CREATE TABLE hand (rid INTEGER PRIMARY KEY, meta TEXT)")
    db.executemany("INSERT INTO hand VALUES (?, ?)", [(rid, json.dumps(md)) for rid, md in HAND_ROWS.items()])
    return db, rows


def _sql_rids(where, table="rows", column="metadata"):
    db, _ = _db()
    sql, params = compile_filter(where, column)
    _assert_no_user_text(sql)
    return sorted(r for (r,) in db.execute(f"SELECT rid FROM {table} WHERE {sql}", params))


def _ref_rids(where):
    _, rows = _db()
    return sorted(rid for rid, md in rows.items() if _matches(where, md))


def _assert_no_user_text(sql):
    # The only quoted literals the compiler may emit are its own JSON type names.
    stripped = re.sub(r"'(object|text|integer|real)'", "", sql)
    assert "'" not in stripped and '"' not in stripped, sql


def _hand(where):
    return set(_sql_rids(where, table="hand", column="meta"))


# --------------------------------------------------------------------------- explicit semantics
@pytest.mark.parametrize("where, expected", [
    ({"v": 1}, {1, 2, 5}),                      # 1 == 1.0, array element, not True / "1"
    ({"v": 1.0}, {1, 2, 5}),
    ({"v": True}, {3, 9}),                      # bool is not int
    ({"v": False}, {11}),
    ({"v": 0}, {10}),
    ({"v": "1"}, {4}),                          # "1" != 1
    ({"v": {"$ne": 1}}, {3, 4, 6, 7, 8, 9, 10, 11}),  # missing / null / object match $ne
    ({"v": {"$gt": 0}}, {1, 2, 5}),             # numbers only: no bools, strings or objects
    ({"v": {"$gte": 0}}, {1, 2, 5, 10}),
    ({"v": {"$lt": "c"}}, {4, 9}),           # strings only
    ({"v": {"$in": [1, "b"]}}, {1, 2, 5, 9}),
    ({"v": {"$in": [True]}}, {3, 9}),
    ({"v": {"$nin": [1, "b"]}}, {3, 4, 6, 7, 8, 10, 11}),
    ({"v": {"$in": []}}, set()),
    ({"v": {"$nin": []}}, set(HAND_ROWS)),
    ({"v": {"$exists": True}}, set(HAND_ROWS) - {7}),  # explicit null exists
    ({"v": {"$exists": False}}, {7}),
    ({"v.a": 1}, {6}),
    ({"$not": {"v": 1}}, set(HAND_ROWS) - {1, 2, 5}),
    ({"$or": [{"v": "x"}, {"v": False}]}, {5, 11}),
])
def test_explicit_semantics(where, expected):
    assert _hand(where) == expected
    assert {rid for rid, md in HAND_ROWS.items() if _matches(where, md)} == expected


def test_empty_filter_matches_everything():
    assert compile_filter(None) == ("1", [])
    assert compile_filter({}) == ("1", [])
    assert _sql_rids({}) == _ref_rids({}) == list(range(1, 403))


def test_filter_operators_exported():
    assert set(FILTER_OPERATORS) == {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists",
                                     "$and", "$or", "$not"}


# --------------------------------------------------------------------------- against the reference
HAND_FILTERS = [
    {"year": 2000}, {"year": 2000.0}, {"year": "2005"}, {"year": True}, {"year": {"$eq": 2005}},
    {"year": {"$ne": 2000}}, {"year": {"$ne": "2005"}}, {"year": {"$gt": 2005}}, {"year": {"$gte": 2000, "$lt": 2010}},
    {"year": {"$lte": 1999.5}}, {"year": {"$gt": "2002"}}, {"year": {"$lt": ""}}, {"year": {"$exists": True}},
    {"year": {"$exists": False}}, {"year": {"$in": [1999, 2001, "2001", True]}}, {"year": {"$nin": [2000, "2000"]}},
    {"year": {"$in": []}}, {"year": {"$nin": []}},
    {"score": {"$gt": 0.5}}, {"score": {"$gte": 0, "$lte": 1}}, {"score": 1}, {"score": {"$in": [0.25, 1, -1]}},
    {"flag": True}, {"flag": 1}, {"flag": {"$ne": False}}, {"flag": {"$in": [0, False]}}, {"flag": "true"},
    {"name": "O'Brien"}, {"name": 'say "hi"'}, {"name": ""}, {"name": {"$gte": "a", "$lt": "z"}},
    {"name": {"$gt": "Zeta"}}, {"name": {"$in": STRINGS[:5]}}, {"name": {"$nin": ["alpha", "ünï"]}},
    {"tags": "alpha"}, {"tags": 1}, {"tags": True}, {"tags": {"$ne": "alpha"}}, {"tags": {"$gt": 1000}},
    {"tags": {"$in": ["beta", 2]}}, {"tags": {"$nin": ["beta", 2]}}, {"tags": {"$exists": True, "$nin": [True]}},
    {"tags": {"$gt": 1, "$lt": 3}}, {"info.lang": "en"}, {"info.lang": 1}, {"info.lang": {"$ne": "en"}},
    {"info.n": {"$gte": 3}}, {"info.deep.x": {"$exists": True}}, {"info.deep.x": {"$in": [1, "alpha", False]}},
    {"info": "alpha"}, {"info": {"$exists": True}}, {"info.lang.x": {"$exists": False}},
    {"with space": {"$in": [1, "a b", False]}}, {INJECTION_KEY: {"$exists": True}}, {INJECTION_KEY: "' OR 1=1 --"},
    {"mixed": 1}, {"mixed": {"$ne": 1}}, {"mixed": {"$exists": True}}, {"mixed.a": 1}, {"mixed": {"$nin": [2]}},
    {"nope": {"$ne": 1}}, {"nope": 1}, {"nope": {"$nin": [1]}},
    {"year": {"$gte": 2000}, "name": {"$ne": "alpha"}},
    {"$and": [{"year": {"$gte": 2000}}, {"$or": [{"tags": "alpha"}, {"flag": True}]}]},
    {"$or": [{"year": {"$lt": 2000}}, {"$not": {"score": {"$gt": 0}}}, {"info.lang": "de"}]},
    {"$not": {"$and": [{"year": {"$exists": True}}, {"tags": {"$exists": True}}]}},
    {"$not": {"$not": {"name": "alpha"}}}, {"$and": [{}]}, {"$not": {}},
    {"$or": [{"year": 2000}], "$and": [{"flag": False}], "name": {"$exists": True}},
]


@pytest.mark.parametrize("where", HAND_FILTERS, ids=[json.dumps(w, ensure_ascii=True)[:60] for w in HAND_FILTERS])
def test_hand_written_filters_match_reference(where):
    assert _sql_rids(where) == _ref_rids(where)


def test_reference_is_not_trivial():
    # Guards the comparisons above against vacuous agreement on empty results.
    nonempty = sum(bool(_ref_rids(w)) for w in HAND_FILTERS)
    partial = sum(0 < len(_ref_rids(w)) < 402 for w in HAND_FILTERS)
    assert nonempty > 0.8 * len(HAND_FILTERS) and partial > 0.7 * len(HAND_FILTERS)


def test_large_in_list_is_one_parameter():
    big = list(range(50_000)) + [f"s{i}" for i in range(1000)] + ["alpha", "2005", 0.25, True]
    for op in ("$in", "$nin"):
        for field in ("year", "tags", "name", "score"):
            where = {field: {op: big}}
            sql, params = compile_filter(where)
            assert len(params) < 10
            assert _sql_rids(where) == _ref_rids(where)


def test_numpy_scalars_are_accepted():
    where = {"year": {"$gte": np.int64(2000), "$lt": np.float64(2010.0)}, "score": {"$in": [np.float32(0.25)]}}
    plain = {"year": {"$gte": 2000, "$lt": 2010.0}, "score": {"$in": [0.25]}}
    assert _sql_rids(where) == _ref_rids(plain)


# --------------------------------------------------------------------------- property test
FIELDS = ["year", "score", "flag", "name", "tags", "info", "info.lang", "info.n", "info.deep.x", "with space",
          INJECTION_KEY, "mixed", "mixed.a", "nope"]
scalars = st.one_of(st.sampled_from(STRINGS), st.sampled_from(NUMBERS), st.booleans(),
                    st.integers(1995, 2015), st.integers(-8, 8).map(lambda k: k / 4))


def _present(field):
    """Values stored under `field`, so that random filters select non-trivial subsets."""
    found = {(_kind(e), e) for md in _db()[1].values() for e in _elements(_lookup(md or {}, field)) if _kind(e)}
    return sorted(found, key=repr)


@functools.lru_cache(maxsize=None)
def _condition(field):
    pool = _present(field)
    values = st.one_of(st.sampled_from(pool).map(lambda kv: kv[1]), scalars) if pool else scalars
    rangeable = values.filter(lambda v: not isinstance(v, bool))
    operators = st.one_of(
        st.tuples(st.sampled_from(["$eq", "$ne"]), values),
        st.tuples(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), rangeable),
        st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(values, max_size=6)),
        st.tuples(st.just("$exists"), st.booleans()),
    )
    return st.one_of(values, st.lists(operators, min_size=1, max_size=2).map(dict))


leaves = st.lists(st.sampled_from(FIELDS).flatmap(lambda f: st.tuples(st.just(f), _condition(f))),
                  min_size=1, max_size=2).map(dict)
filters = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(lambda a: {"$and": a}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda a: {"$or": a}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda a: {"$not": a}, inner),
        st.builds(lambda a, b, c: {**a, "$or": b, "$not": c}, leaves, st.lists(inner, min_size=1, max_size=2), inner),
    ),
    max_leaves=8,
)


@settings(max_examples=500, deadline=None)
@given(filters)
def test_random_filters_match_reference(where):
    assert _sql_rids(where) == _ref_rids(where)


# --------------------------------------------------------------------------- malformed filters
def _nested_not(levels):
    where = {"year": 1}
    for _ in range(levels - 1):
        where = {"$not": where}
    return where


class Weird:
    pass


@pytest.mark.parametrize("where, fragment", [
    ({"year": {"$gte2": 1}}, "filter operator '$gte2' in where['year'] is not known; did you mean '$gte'?"),
    ({"year": {"$gte2": 1}}, "Known operators: $eq, $ne"),
    ({"$andd": [{"a": 1}]}, "did you mean '$and'"),
    ({"$bogus": 1}, "'$bogus' in where is not known"),
    ({"year": {"gte": 3}}, "did you mean '$gte'"),
    ({"info": {"lang": "en"}}, "dotted key such as 'a.b'"),
    ({"$gte": 5}, "applies to a field"),
    ({"year": {"$or": [{"a": 1}]}}, "belongs at the top level"),
    ({"tags": ["a", "b"]}, "use {'$in': [...]}"),
    ({"year": None}, "{'$exists': False}"),
    ({"year": Weird()}, "where['year'] must be a str/int/float/bool value"),
    ({"year": {"$in": {"a": 1}}}, "$in expects a list of str/int/float/bool, got dict"),
    ({"year": {"$nin": "abc"}}, "$nin expects a list of str/int/float/bool, got str"),
    ({"year": {"$in": [1, None]}}, "where['year']['$in'][1]"),
    ({"year": {"$in": [[1]]}}, "got list"),
    ({"year": {"$eq": [1]}}, "$eq expects a str/int/float/bool value, got list"),
    ({"year": {"$ne": {"a": 1}}}, "got dict"),
    ({"year": {"$gt": True}}, "$gt expects a number or a string, got bool at where['year']['$gt']"),
    ({"year": {"$lt": None}}, "got NoneType"),
    ({"year": {"$gte": float("nan")}}, "where['year']['$gte'] is nan"),
    ({"year": {"$lte": float("inf")}}, "NaN and infinities"),
    ({"year": float("-inf")}, "where['year'] is -inf"),
    ({"year": {"$eq": 2**64}}, "64-bit"),
    ({"year": {"$exists": 1}}, "$exists expects True or False, got int at where['year']['$exists']"),
    ({"year": {}}, "empty operator dict"),
    ([{"year": 1}], "where must be a dict"),
    ("year", "got str"),
    ({1: 2}, "key of type int"),
    ({"year": {1: 2}}, "non-operator key 1"),
    ({"$and": []}, "where['$and'] must be a non-empty list"),
    ({"$or": {"a": 1}}, "non-empty list of filter dicts, got dict"),
    ({"$and": [{"a": 1}, 5]}, "where['$and'][1] must be a dict"),
    ({"$not": [{"a": 1}]}, "where['$not'] must be a dict"),
    (_nested_not(33), "deeper than 32 levels"),
    ({"": 1}, "non-empty"),
    ({"a..b": 1}, "empty segment"),
    ({".a": 1}, "empty segment"),
    ({'a"b': 1}, "contains '\"'"),
    ({"a\\b": 1}, "backslashes"),
    ({"a\nb": 1}, "control characters"),
])
def test_malformed_filters_raise(where, fragment):
    with pytest.raises(FilterError) as info:
        compile_filter(where)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_nesting_limit_is_inclusive():
    compile_filter(_nested_not(32))


def test_column_must_be_identifier():
    for bad in ("metadata; DROP TABLE rows", "", "a.b", 'x"', 3):
        with pytest.raises(InvalidInputError):
            compile_filter({"a": 1}, column=bad)
    assert "json_type(meta_2," in compile_filter({"a": 1}, column="meta_2")[0]


# --------------------------------------------------------------------------- injection
@pytest.mark.parametrize("where", [
    {INJECTION_KEY: 1},
    {"name": "' OR 1=1 --"},
    {"name": {"$in": ["'); DROP TABLE rows; --", '" OR ""="']}},
    {"year": {"$gt": "') OR 1=1 --"}},
    {"x') OR json_type(metadata, '$') --": {"$exists": False}},
])
def test_injection_is_data(where):
    sql, params = compile_filter(where)
    _assert_no_user_text(sql)
    assert _sql_rids(where) == _ref_rids(where)
    db, _ = _db()
    assert db.execute("SELECT count(*) FROM rows").fetchone() == (402,)
