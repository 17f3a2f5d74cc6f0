"""Compile Mongo-style ``where`` filters into parameterized SQLite SQL.

A filter is matched against each row's metadata: a JSON object stored as TEXT
(``NULL`` behaves like ``{}``). The compiled fragment never contains user data;
every field path and value is passed as a ``?`` parameter.

Language
--------
* ``{"a": 1, "b": {"$gt": 2}}``: the entries of a dict are ANDed.
* ``$and`` / ``$or`` take a non-empty list of filters, ``$not`` one filter.
* A field key is a dotted path into nested objects: ``"a.b"`` reads
  ``metadata["a"]["b"]``. Keys may not contain ``"``, ``\\`` or control
  characters. Non-ASCII keys only match metadata written with
  ``json.dumps(..., ensure_ascii=False)`` (SQLite compares raw key text).
* A scalar field value means ``$eq``; a dict is an AND of operators:
  ``$eq $ne`` (str/int/float/bool), ``$gt $gte $lt $lte`` (str or number),
  ``$in $nin`` (list of scalars) and ``$exists`` (bool).

Semantics
---------
* Type-strict: ``"1"`` never equals ``1``; ``True`` never equals ``1``;
  ``1`` equals ``1.0``. Range operators compare numbers with numbers and
  strings with strings (BINARY collation, i.e. code point order); a value of
  the other kind never matches.
* Missing fields match no operator except ``$ne``, ``$nin`` and
  ``$exists: false``. A JSON ``null`` is present (``$exists: true``) but
  equals nothing, so it too matches ``$ne`` and ``$nin``.
* An array-valued field matches ``$eq``, ``$in`` and range operators if ANY
  element matches, and ``$ne`` / ``$nin`` if NO element matches. Each operator
  is tested on its own, so ``{"$gt": 1, "$lt": 3}`` may be satisfied by two
  different elements (as in MongoDB). Object-valued fields and nested arrays
  never equal a scalar.
* ``$in: []`` matches nothing and ``$nin: []`` matches every row. Lists go in
  as one JSON parameter, so their length is not bounded by SQLite's variable
  limit.
* NaN, infinities and integers outside the signed 64-bit range are rejected.
"""

from __future__ import annotations

import difflib
import json
import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

from vecbox.errors import FilterError, InvalidInputError

__all__ = ["FILTER_OPERATORS", "Filter", "compile_filter", "filter_key"]

_COMPARISONS = {"$eq": "=", "$ne": "=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_FIELD_OPERATORS = (*_COMPARISONS, "$in", "$nin", "$exists")
_LOGICAL_OPERATORS = ("$and", "$or", "$not")
FILTER_OPERATORS: tuple[str, ...] = (*_FIELD_OPERATORS, *_LOGICAL_OPERATORS)
"""Every operator a ``where`` filter may use."""

MAX_DEPTH = 32
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BAD_KEY_CHARS = re.compile(r'["\\\x00-\x1f]')
_INT64 = (-(2**63), 2**63 - 1)
_NUMBER_TYPES = "('integer', 'real')"
_SCALARS = "str/int/float/bool"


def compile_filter(where: Mapping[str, Any] | None, column: str = "metadata") -> tuple[str, list[Any]]:
    """Compile a ``where`` filter into a parameterized SQLite condition.

    Parameters
    ----------
    where : Mapping[str, Any] or None
        A Mongo-style filter (see the module docstring for the language and
        its semantics). ``None`` and ``{}`` match every row.
    column : str, default "metadata"
        Name of the TEXT column holding each row's metadata as a JSON object.
        Must be a plain SQL identifier.

    Returns
    -------
    sql : str
        A boolean SQL expression (never NULL) for a ``WHERE`` clause.
    params : list
        The values for the ``?`` placeholders in ``sql``, in order.

    Raises
    ------
    FilterError
        If the filter is malformed; the message names the offending part.

    Examples
    --------
    >>> import sqlite3
    >>> db = sqlite3.connect(":memory:")
    >>> _ = db.execute("CREATE TABLE rows (rid INTEGER PRIMARY KEY, metadata TEXT)")
    >>> _ = db.executemany("INSERT INTO rows VALUES (?, ?)",
    ...     [(1, '{"year": 1999, "tags": ["a", "b"]}'), (2, '{"year": 2005}'), (3, '{"year": "2005"}')])
    >>> sql, params = compile_filter({"year": {"$gte": 2000}})
    >>> [r for (r,) in db.execute(f"SELECT rid FROM rows WHERE {sql}", params)]
    [2]
    >>> sql, params = compile_filter({"$or": [{"tags": "b"}, {"year": {"$in": ["2005"]}}]})
    >>> [r for (r,) in db.execute(f"SELECT rid FROM rows WHERE {sql}", params)]
    [1, 3]
    """
    if not isinstance(column, str) or not _IDENTIFIER.fullmatch(column):
        raise InvalidInputError(f"column must be a plain SQL identifier, got {column!r}")
    if where is None:
        return "1", []
    params: list[Any] = []
    sql = _Compiler(column, params).filter(where, "where", 1)
    return sql, params


class _Compiler:
    def __init__(self, column: str, params: list[Any]) -> None:
        self.col = column
        self.params = params

    def filter(self, where: Any, loc: str, depth: int) -> str:
        if not isinstance(where, Mapping):
            raise FilterError(
                f"{loc} must be a dict mapping field names to conditions, got {_kind(where)}: {_show(where)}"
            )
        if depth > MAX_DEPTH:
            raise FilterError(f"{loc} nests filters deeper than {MAX_DEPTH} levels; flatten the filter")
        parts = []
        for key, value in where.items():
            if not isinstance(key, str):
                raise FilterError(
                    f"{loc} has a key of type {_kind(key)} ({_show(key)}); keys must be str field names or operators"
                )
            sub = f"{loc}[{key!r}]"
            if key.startswith("$"):
                parts.append(self.logical(key, value, loc, sub, depth))
            else:
                parts.append(self.field(key, value, sub))
        return _join(parts, "AND")

    def logical(self, op: str, value: Any, loc: str, sub: str, depth: int) -> str:
        if op == "$not":
            return f"NOT ({self.filter(value, sub, depth + 1)})"
        if op in ("$and", "$or"):
            if not isinstance(value, (list, tuple)) or not value:
                raise FilterError(
                    f"{sub} must be a non-empty list of filter dicts, got {_kind(value)}: {_show(value)}"
                )
            parts = [self.filter(v, f"{sub}[{i}]", depth + 1) for i, v in enumerate(value)]
            return _join(parts, op[1:].upper())
        if op in _FIELD_OPERATORS:
            raise FilterError(
                f"filter operator {op!r} in {loc} applies to a field; write {{'field': {{{op!r}: ...}}}}"
            )
        raise FilterError(_unknown(op, loc, _LOGICAL_OPERATORS))

    def field(self, key: str, value: Any, loc: str) -> str:
        path = _json_path(key, loc)
        if isinstance(value, Mapping):
            if not value:
                raise FilterError(f"{loc} is an empty operator dict; give at least one operator, e.g. {{'$eq': ...}}")
            return _join([self.operator(path, op, arg, loc) for op, arg in value.items()], "AND")
        if value is None:
            raise FilterError(
                f"{loc} is None; null cannot be matched, use {{'$exists': False}} to find rows without the field"
            )
        if isinstance(value, (list, tuple)):
            raise FilterError(f"{loc} is a list ({_show(value)}); to match any of several values use {{'$in': [...]}}")
        if not isinstance(value, (str, numbers.Real)):
            raise FilterError(
                f"{loc} must be a {_SCALARS} value (shorthand for $eq) or a dict of operators, "
                f"got {_kind(value)}: {_show(value)}"
            )
        return self.operator(path, "$eq", value, loc, shorthand=True)

    def operator(self, path: str, op: Any, arg: Any, loc: str, shorthand: bool = False) -> str:
        where = loc if shorthand else f"{loc}[{_show(op)}]"
        if not isinstance(op, str) or not op.startswith("$"):
            hint = f" (did you mean '${op}'?)" if isinstance(op, str) and f"${op}" in _FIELD_OPERATORS else ""
            raise FilterError(
                f"{loc} has the non-operator key {_show(op)}{hint}. Operator dicts may only hold operators "
                f"({', '.join(_FIELD_OPERATORS)}); address nested fields with a dotted key such as 'a.b'"
            )
        if op == "$exists":
            if not isinstance(arg, bool):
                raise FilterError(f"$exists expects True or False, got {_kind(arg)} at {where}: {_show(arg)}")
            self.params.append(path)
            return f"json_type({self.col}, ?) IS {'NOT ' if arg else ''}NULL"
        if op in ("$in", "$nin"):
            if not isinstance(arg, (list, tuple)):
                raise FilterError(f"{op} expects a list of {_SCALARS}, got {_kind(arg)} at {where}: {_show(arg)}")
            values = [_scalar(v, f"{where}[{i}]", op) for i, v in enumerate(arg)]
            sql = self.any_element(path, self.membership(values)) if values else "0"
            return f"NOT ({sql})" if op == "$nin" else sql
        if op in _COMPARISONS:
            if op not in ("$eq", "$ne") and (isinstance(arg, bool) or not isinstance(arg, (str, numbers.Real))):
                raise FilterError(f"{op} expects a number or a string, got {_kind(arg)} at {where}: {_show(arg)}")
            value = _scalar(arg, where, op)
            sql = self.any_element(path, self.compare(_COMPARISONS[op], value))
            return f"NOT ({sql})" if op == "$ne" else sql
        if op in _LOGICAL_OPERATORS:
            raise FilterError(f"{where}: {op} combines whole filters and belongs at the top level, not inside a field")
        raise FilterError(_unknown(op, loc, _FIELD_OPERATORS))

    def any_element(self, path: str, test: tuple[str, list[Any]]) -> str:
        # json_each yields an array's elements, or a scalar as a single row, but
        # an object's members, which must never match: hence the type guard.
        condition, params = test
        self.params += [path, path, *params]
        return (
            f"(json_type({self.col}, ?) IS NOT 'object' AND "
            f"EXISTS (SELECT 1 FROM json_each({self.col}, ?) AS e WHERE {condition}))"
        )

    @staticmethod
    def compare(sql_op: str, value: Any) -> tuple[str, list[Any]]:
        if isinstance(value, bool):
            # JSON true/false read back as 1/0, so booleans are matched by type.
            return "e.type = ?", ["true" if value else "false"]
        kind = "e.type = 'text'" if isinstance(value, str) else f"e.type IN {_NUMBER_TYPES}"
        return f"{kind} AND e.value {sql_op} ?", [value]

    @staticmethod
    def membership(values: list[Any]) -> tuple[str, list[Any]]:
        # Split by kind so each list is type-homogeneous; an uncorrelated
        # IN (SELECT ...) is built once per statement, so big lists stay fast.
        groups = [
            ("e.type = 'text' AND e.value", [v for v in values if isinstance(v, str)]),
            (f"e.type IN {_NUMBER_TYPES} AND e.value", [v for v in values if not isinstance(v, (str, bool))]),
            ("e.type", ["true" if v else "false" for v in values if isinstance(v, bool)]),
        ]
        parts, params = [], []
        for lhs, group in groups:
            if group:
                parts.append(f"({lhs} IN (SELECT value FROM json_each(?)))")
                params.append(json.dumps(group))
        return " OR ".join(parts), params


def _json_path(key: str, loc: str) -> str:
    if not key:
        raise FilterError(f"{loc}: field names must be non-empty strings")
    parts = key.split(".")
    if "" in parts:
        raise FilterError(f"{loc}: field path {key!r} has an empty segment; use 'a.b' to address nested fields")
    bad = _BAD_KEY_CHARS.search(key)
    if bad:
        raise FilterError(
            f"{loc}: field name {key!r} contains {bad.group()!r}; double quotes, backslashes and "
            "control characters cannot be addressed in a filter, rename the metadata key"
        )
    if not key.isascii() and _unencodable(key):
        raise FilterError(
            f"{loc}: field name {key!r} contains a lone surrogate and is not valid UTF-8; no stored metadata "
            "key can hold it - fix the string's decoding"
        )
    return "$" + "".join(f'."{part}"' for part in parts)


def _scalar(value: Any, loc: str, op: str) -> str | int | float | bool:
    if isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):
        value = int(value)
        if not _INT64[0] <= value <= _INT64[1]:
            raise FilterError(f"{loc} is {value}, outside the signed 64-bit range SQLite can store")
        return value
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise FilterError(f"{loc} is {value!r}; NaN and infinities never match, give a finite number")
        return value
    what = f"a list of {_SCALARS}" if op in ("$in", "$nin") else f"a {_SCALARS} value"
    raise FilterError(f"{op} expects {what}, got {_kind(value)} at {loc}: {_show(value)}")


def _unknown(op: str, loc: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(op, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"filter operator {op!r} in {loc} is not known{hint} Known operators: {', '.join(known)}"


def _join(parts: list[str], glue: str) -> str:
    if not parts:
        return "1"  # an empty AND matches every row
    if len(parts) == 1:
        return parts[0]
    return f" {glue} ".join(f"({p})" for p in parts)


def _kind(value: Any) -> str:
    return type(value).__name__


def _show(value: Any, limit: int = 200) -> str:
    """``repr(value)`` for an error message: shortened, and never a RecursionError for a deeply nested value."""
    try:
        text = repr(value)
    except RecursionError:
        return f"<a {_kind(value)} nested too deeply to print>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------- parsed
class Filter:
    """A ``where`` filter parsed once: its SQL, its cache key and its plan for numpy masks.

    Everything that needs the filter - the SQLite fallback, the mask cache, the column
    evaluator (:mod:`vecbox.query.columns`) - reads it from here, so a search parses
    and validates its filter exactly once (``Filter.parse`` raises :class:`FilterError`).

    Attributes
    ----------
    where : Mapping or None
        The filter as given.
    sql, params :
        The compiled SQLite condition (``"1"`` for no filter) and its parameters.
    key : str or None
        Canonical JSON of the filter (``None`` when it matches everything): the cache key.
    mask_plan : tuple or None
        The filter with paths resolved and values normalised for the columns, or ``None``
        when the columns cannot answer it exactly (SQLite does).
    paths : list of str
        The JSON paths the filter reads.

    Examples
    --------
    >>> f = Filter.parse({"year": {"$gte": 2020}})
    >>> f.key, f.paths, f.empty
    ('{"year": {"$gte": 2020}}', ['$."year"'], False)
    >>> Filter.parse(None).empty, Filter.parse({}).sql
    (True, '1')
    """

    __slots__ = ("where", "sql", "params", "key", "mask_plan", "paths", "_unencodable")

    def __init__(self, where: Mapping[str, Any] | None, sql: str, params: list[Any], key: str | None,
                 mask_plan: tuple[Any, ...] | None, paths: list[str]) -> None:
        self.where, self.sql, self.params, self.key = where, sql, params, key
        self.mask_plan, self.paths = mask_plan, paths
        # A string SQLite cannot be given (a lone surrogate): the columns may still answer the
        # filter, SQL cannot - so :attr:`where_sql` refuses it with a FilterError, not a raw error.
        self._unencodable = next((p for p in params if isinstance(p, str) and not p.isascii()
                                  and _unencodable(p)), None)

    @classmethod
    def parse(cls, where: Mapping[str, Any] | None, key: str | None = None) -> "Filter":
        """Validate and compile ``where`` (``key``: its canonical JSON when the caller has it already)."""
        sql, params = compile_filter(where)  # raises FilterError on anything malformed
        if not where:
            return cls(where, sql, params, None, ("and", []), [])
        try:
            plan: tuple[Any, ...] | None = _mask_plan(where)
            paths = _plan_paths(plan)
        except _NoMaskPlan:
            plan, paths = None, []
        return cls(where, sql, params, key if key is not None else filter_key(where), plan, paths)

    @property
    def empty(self) -> bool:
        """True when the filter matches every row (``None`` or ``{}``)."""
        return self.key is None

    @property
    def where_sql(self) -> tuple[str, list[Any]]:
        """``(sql, params)`` for SQLite; raises :class:`FilterError` if a string in the filter is not valid UTF-8."""
        if self._unencodable is not None:
            text = self._unencodable
            raise FilterError(
                f"the filter holds the text {text!r:.60}, which contains a lone surrogate and is not valid UTF-8: "
                "SQLite cannot compare it and no stored text can equal it - fix the string's decoding"
            )
        return self.sql, self.params

    def __repr__(self) -> str:
        return f"Filter({self.key or '{}'})"


def filter_key(where: Mapping[str, Any]) -> str:
    """Canonical JSON of a filter: equal filters, equal keys (what caches are keyed by).

    Raises :class:`FilterError` (never ``RecursionError``) for a filter nested too deeply to encode,
    and ``TypeError`` / ``ValueError`` for one that is not JSON-able (the parser words those errors).

    >>> filter_key({"b": 1, "a": {"$in": [1, 2]}})
    '{"a": {"$in": [1, 2]}, "b": 1}'
    """
    try:
        return json.dumps(where, sort_keys=True, default=repr)
    except RecursionError:
        raise FilterError(
            f"where nests filters or values deeper than {MAX_DEPTH} levels (too deep even to encode); "
            "flatten the filter"
        ) from None


def _unencodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class _NoMaskPlan(Exception):
    """The filter cannot be answered exactly from metadata columns: SQLite answers it."""


# A plan is the filter with paths resolved and values normalised:
#   ("and", [plans]) | ("or", [plans]) | ("not", plan) | ("op", path, op, arg)


def _mask_plan(where: Mapping[str, Any]) -> tuple[Any, ...]:
    parts: list[tuple[Any, ...]] = []
    for key, cond in where.items():
        if key in ("$and", "$or"):
            parts.append((key[1:], [_mask_plan(w) for w in cond]))
        elif key == "$not":
            parts.append(("not", _mask_plan(cond)))
        else:
            path = _json_path(key, "where")
            ops = cond if isinstance(cond, Mapping) else {"$eq": cond}
            for op, arg in ops.items():
                if op in ("$in", "$nin"):
                    value: Any = [_value(v) for v in arg]
                    if any(isinstance(v, str) and "\x00" in v for v in value):
                        # SQL passes the list as JSON, and SQLite cuts JSON strings at U+0000
                        raise _NoMaskPlan("a NUL character in an $in / $nin string")
                elif op == "$exists":
                    value = bool(arg)
                else:
                    value = _value(arg)
                parts.append(("op", path, op, value))
    return ("and", parts)


def _value(v: Any) -> str | bool | float:
    """A filter scalar as compared by SQL: str, bool, or a float that equals it exactly."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise _NoMaskPlan("a filter string that is not valid UTF-8") from None
        return str.__str__(v)  # the characters SQLite is given, even for a str subclass
    if isinstance(v, numbers.Integral):
        f = float(int(v))
        if int(f) != int(v):
            raise _NoMaskPlan("an integer float64 cannot represent")
        return f
    return float(v)


def _plan_paths(plan: tuple[Any, ...]) -> list[str]:
    out: dict[str, None] = {}

    def walk(p: tuple[Any, ...]) -> None:
        if p[0] == "op":
            out[p[1]] = None
        elif p[0] == "not":
            walk(p[1])
        else:
            for q in p[1]:
                walk(q)

    walk(plan)
    return list(out)
