"""Evaluate ``where`` filters as numpy masks over cached metadata columns.

:func:`vecbox.query.filters.compile_filter` answers a filter in SQLite, which
costs about a second per filter on a million rows (every row's JSON is parsed
again). :class:`MetadataColumns` instead keeps, per field path a filter
names, one columnar copy of that field over every row of the ``rows`` table
(live and deleted, ascending ``rid``), and evaluates filters with vectorised
numpy operations in milliseconds.

Representation of one field column (``n`` rows):

* ``kind`` (int8): the field's JSON type in that row, read with
  ``json_type`` - missing, null, false, true, integer, real, text, object or
  array;
* ``num`` (float64): the value where it is a number, NaN elsewhere;
* ``code`` (int32): where the value is a string, its index into the column's
  dictionary of distinct strings (in order of first appearance), -1
  elsewhere. Equality and ``$in`` look strings up in the dictionary, range
  operators compare the dictionary once (numpy compares ``str`` by code
  point, which is SQLite's BINARY collation on UTF-8) and index the result by
  code.

A column is read lazily, with one query for all the fields of a filter that
need reading, and extended incrementally: later calls read only rows whose
``rid`` is above the last one cached (rows are only ever appended). A new
``epoch`` (compaction rewrote the table) drops every column.

The semantics are exactly those of :mod:`vecbox.query.filters`. Object-valued
fields need no special case (they are present and equal no scalar, like
``null``). Whenever the columns cannot reproduce the SQL result exactly,
:meth:`MetadataColumns.mask` returns ``None`` and the caller runs the SQL:

* a field holds an array in some row (array elements match individually);
* a field holds an integer of magnitude above 2**53 (float64 is not exact
  there), or a filter compares with an integer float64 cannot represent;
* a stored string is not valid UTF-8, or a filter string cannot be encoded
  as UTF-8 (the SQL path reports that error itself), or an ``$in`` / ``$nin``
  string contains U+0000 (SQLite reads such lists as JSON and truncates the
  string there);
* the ``rids`` passed are not ascending or disagree with the table.
"""

from __future__ import annotations

import itertools
import operator
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from vecbox.query.filters import Filter
from vecbox.storage import catalog

__all__ = ["MetadataColumns"]

# Codes of ``kind``: the row's json_type at the field path.
MISSING, NULL, FALSE, TRUE, INTEGER, REAL, TEXT, OBJECT, ARRAY = range(9)
_JSON_TYPES = ("null", "false", "true", "integer", "real", "text", "object", "array")
_MAX_SPAN = 2**58  # (rid - lower) * 16 + kind must stay within int64
_EXACT_LIMIT = 2**53  # integers above this magnitude may not survive float64
_CHUNK = 1 << 16  # rows fetched per fetchmany
_DICT_ARRAY_BUDGET = 64 << 20  # bytes: above this the string dictionary is compared as Python objects
_RANGE = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}
_SMALL_IN = 64  # longer number lists are looked up by binary search


class _Fallback(Exception):
    """The filter cannot be answered exactly from columns: the caller runs SQL."""


class _Undecodable(Exception):
    """A stored string is not valid UTF-8, so Python cannot read it as str."""


class _Column:
    """One field path over the first ``n`` cached rows (arrays grow with spare capacity)."""

    __slots__ = ("n", "kind", "num", "code", "lookup", "strings", "unsupported", "_dict_cache")

    def __init__(self) -> None:
        self.n = 0
        self.kind = np.zeros(0, np.int8)
        self.num = np.zeros(0, np.float64)
        self.code = np.zeros(0, np.int32)
        # str -> code; a missing key gets the next code (the dict's length) in C.
        self.lookup: defaultdict[str, int] = defaultdict()
        self.lookup.default_factory = self.lookup.__len__
        self.strings: list[str] = []
        self.unsupported: str | None = None
        self._dict_cache: tuple[int, np.ndarray, bool] | None = None

    def append(self, kind: np.ndarray, values: np.ndarray) -> None:
        """Add rows: their ``kind`` codes and ``json_extract`` values (object array)."""
        if np.any(kind == ARRAY):
            self.unsupported = "an array value"
            return
        k = len(kind)
        is_num = (kind == INTEGER) | (kind == REAL)
        num = np.full(k, np.nan)
        num[is_num] = values[is_num].astype(np.float64)
        big = (kind == INTEGER) & (np.abs(num) >= _EXACT_LIMIT)
        if big.any() and any(abs(v) > _EXACT_LIMIT for v in values[big]):  # exact test on the few candidates
            self.unsupported = "an integer of magnitude above 2**53"
            return
        is_text = kind == TEXT
        code = np.full(k, -1, np.int32)
        texts = values[is_text]
        before = len(self.lookup)
        code[is_text] = np.fromiter(map(self.lookup.__getitem__, texts), np.int32, len(texts))
        if len(self.lookup) > before:
            self.strings.extend(itertools.islice(self.lookup, before, None))
        self._grow(self.n + k)
        sl = slice(self.n, self.n + k)
        self.kind[sl], self.num[sl], self.code[sl] = kind, num, code
        self.n += k

    def _grow(self, need: int) -> None:
        if need <= len(self.kind):
            return
        cap = max(need, len(self.kind) + len(self.kind) // 2, 1024)
        for name in ("kind", "num", "code"):
            old = getattr(self, name)
            new = np.empty(cap, old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)

    def dictionary(self) -> tuple[np.ndarray, bool]:
        """The distinct strings as an array (``str`` dtype, or ``object`` when that is unsafe or big)."""
        if self._dict_cache is None or self._dict_cache[0] != len(self.strings):
            strings = self.strings
            width = max(map(len, strings), default=0)
            arr: np.ndarray | None = None
            if len(strings) * width * 4 <= _DICT_ARRAY_BUDGET:
                arr = np.array(strings, dtype=f"<U{max(width, 1)}")
                # numpy drops trailing NULs from str items; keep exactness.
                lengths = np.fromiter(map(len, strings), np.int64, len(strings))
                if not np.array_equal(np.char.str_len(arr), lengths):
                    arr = None
            unicode = arr is not None
            if arr is None:
                arr = np.empty(len(strings), dtype=object)
                arr[:] = strings
            self._dict_cache = (len(strings), arr, unicode)
        return self._dict_cache[1], self._dict_cache[2]


class MetadataColumns:
    """Columnar cache of metadata fields that turns ``where`` filters into boolean masks.

    One instance serves one collection; the caller serialises access (no
    internal locking). See the module docstring for the representation and
    the cases that return ``None``.

    Examples
    --------
    >>> import json, sqlite3
    >>> import numpy as np
    >>> conn = sqlite3.connect(":memory:")
    >>> _ = conn.execute("CREATE TABLE rows (rid INTEGER PRIMARY KEY, metadata TEXT)")
    >>> docs = [{"year": 1999}, {"year": 2005.0}, {"year": "2005"}, None, {"year": True}]
    >>> _ = conn.executemany("INSERT INTO rows VALUES (?, ?)",
    ...                      [(i + 1, json.dumps(d)) for i, d in enumerate(docs)])
    >>> cols = MetadataColumns()
    >>> rids = np.arange(1, 6)
    >>> cols.mask(conn, {"year": {"$gte": 2000}}, rids, epoch=0)
    array([False,  True, False, False, False])
    >>> cols.mask(conn, {"year": {"$in": [1999, "2005"]}}, rids, epoch=0)
    array([ True, False,  True, False, False])
    >>> cols.mask(conn, {"year": {"$exists": False}}, rids, epoch=0)
    array([False, False, False,  True, False])
    >>> _ = conn.execute("INSERT INTO rows VALUES (6, ?)", (json.dumps({"year": [2005]}),))
    >>> cols.mask(conn, {"year": 2005}, np.arange(1, 7), epoch=0) is None  # arrays: use SQL
    True
    """

    def __init__(self) -> None:
        self._epoch: int | None = None
        self._rids = np.zeros(0, np.int64)  # rids verified against the table, ascending
        self._n = 0  # valid length of self._rids
        self._columns: dict[str, _Column] = {}

    def clear(self) -> None:
        """Drop every cached column."""
        self._rids = np.zeros(0, np.int64)
        self._n = 0
        self._columns.clear()

    def mask(
        self, conn: sqlite3.Connection, where: "Filter | Mapping[str, Any] | None", rids: np.ndarray, epoch: int
    ) -> np.ndarray | None:
        """Boolean mask (len(rids),) of rows matching `where`, or None when this filter cannot be
        evaluated from columns (the caller then falls back to SQL). `rids` are ALL rows the caller holds,
        ascending (every row of the table with rid <= rids[-1], in order); call inside the caller's read
        transaction on `conn`. A changed `epoch` drops every cached column.

        Parameters
        ----------
        conn : sqlite3.Connection
            Connection to the catalog holding the ``rows`` table.
        where : Filter, Mapping or None
            A parsed :class:`~vecbox.query.filters.Filter`, or a filter in the language of
            :mod:`vecbox.query.filters` (parsed here); ``None`` and ``{}`` match every row.
        rids : numpy.ndarray
            Integer row ids, strictly ascending.
        epoch : int
            The collection's compaction epoch.

        Returns
        -------
        numpy.ndarray or None
            A new, writable boolean array aligned with ``rids`` (deleted rows
            included), or ``None`` (see the module docstring).

        Raises
        ------
        FilterError
            If the filter is malformed.
        """
        flt = where if isinstance(where, Filter) else Filter.parse(where)  # validates; raises FilterError
        rids = np.asarray(rids)
        if flt.empty:
            return np.ones(len(rids), dtype=bool)
        if epoch != self._epoch:
            self.clear()
            self._epoch = epoch
        if rids.ndim != 1 or not (np.issubdtype(rids.dtype, np.integer) or len(rids) == 0):
            return None
        rids = rids.astype(np.int64, copy=False)
        r = len(rids)
        if r > 1 and not np.all(rids[1:] > rids[:-1]):
            return None
        plan, paths = flt.mask_plan, flt.paths
        if plan is None:
            return None
        try:
            if r == 0:
                return np.zeros(0, dtype=bool)
            m = min(r, self._n)
            if not np.array_equal(rids[:m], self._rids[:m]):
                return None  # the caller's rows disagree with rows already checked against the table
            if any(self._columns.get(p) is not None and self._columns[p].unsupported for p in paths):
                return None
            self._load(conn, [p for p in paths if p not in self._columns or self._columns[p].n < r], rids)
            if any(self._columns[p].unsupported for p in paths):
                return None
            return _evaluate(plan, self._columns, r)
        except _Fallback:
            return None

    def type_mismatches(self, flt: Filter) -> list[str]:
        """Numeric comparisons against fields whose cached rows hold strings but no number (likely a typing slip,
        e.g. CSV values stored as "2024"): they match nothing, silently. Call after :meth:`mask`."""
        out: list[str] = []

        def walk(p: tuple[Any, ...]) -> None:
            if p[0] == "op":
                _, path, op, arg = p
                args = arg if isinstance(arg, list) else [arg]
                col = self._columns.get(path)
                if (op not in ("$exists", "$ne", "$nin") and col is not None and col.n
                        and any(isinstance(a, float) for a in args)):
                    kind = col.kind[: col.n]
                    if np.any(kind == TEXT) and not np.any((kind == INTEGER) | (kind == REAL)):
                        out.append(f"{path} holds strings and no numbers, so {op} {args[0]:g} matches nothing "
                                   "(store numbers as numbers, or compare with a string)")
            elif p[0] == "not":
                walk(p[1])
            else:
                for q in p[1]:
                    walk(q)

        if flt.mask_plan is not None:
            walk(flt.mask_plan)
        return out

    # ------------------------------------------------------------------ loading
    def _load(self, conn: sqlite3.Connection, paths: list[str], rids: np.ndarray) -> None:
        """Bring ``paths`` up to ``len(rids)`` rows; one query per group of equally long columns."""
        if getattr(conn, "text_factory", str) is not str:
            raise _Fallback("the connection does not return text as str")
        groups: dict[int, list[str]] = {}
        for path in paths:
            col = self._columns.setdefault(path, _Column())
            groups.setdefault(col.n, []).append(path)
        for n, group in groups.items():
            self._load_group(conn, group, n, rids)

    def _load_group(self, conn: sqlite3.Connection, group: list[str], n: int, rids: np.ndarray) -> None:
        if n:
            lower = int(rids[n - 1]) + 1
        else:  # read from the first rid passed; the table must hold nothing below it
            lower = int(rids[0])
            if catalog.has_rows_below(conn, lower):
                self._forget_empty(group)
                raise _Fallback("the table holds rows below the first rid passed")
        try:
            got, kinds, values = _read(conn, group, lower, int(rids[-1]))
        except _Undecodable as exc:
            if len(group) == 1:  # rows are permanent until the next epoch: stop trying
                self._columns[group[0]].unsupported = str(exc)
            else:  # find out which of the fields holds the string
                for path in group:
                    self._load_group(conn, [path], n, rids)
            return
        if not np.array_equal(got, rids[n:]):
            self._forget_empty(group)  # nothing of this read is kept
            raise _Fallback("the table's rows differ from the rids passed")
        # rids[:n] matched self._rids and the table holds exactly rids[n:] above
        # them: every rid passed is now verified.
        self._verified(rids)
        for path, kind, vals in zip(group, kinds, values):
            self._columns[path].append(kind, vals)

    def _forget_empty(self, group: list[str]) -> None:
        for path in group:
            if self._columns[path].n == 0 and not self._columns[path].unsupported:
                del self._columns[path]

    def _verified(self, rids: np.ndarray) -> None:
        r = len(rids)
        if r > self._n:
            if r > len(self._rids):
                grown = np.empty(max(r, len(self._rids) + len(self._rids) // 2), np.int64)
                grown[: self._n] = self._rids[: self._n]
                self._rids = grown
            self._rids[self._n : r] = rids[self._n :]
            self._n = r


def _read(
    conn: sqlite3.Connection, paths: list[str], lower: int, upper: int
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """rid, kind codes and json_extract values of ``paths`` for rows with lower <= rid <= upper."""
    if upper - lower >= _MAX_SPAN:
        raise _Fallback("rids span too wide a range")
    k = len(paths)
    cur = conn.cursor()
    cur.row_factory = None
    packed_parts: list[np.ndarray] = []
    kind_parts: list[list[np.ndarray]] = [[] for _ in paths]
    value_parts: list[list[np.ndarray]] = [[] for _ in paths]
    try:
        catalog.read_metadata_fields(cur, paths, lower, upper, _JSON_TYPES)
        while rows := cur.fetchmany(_CHUNK):
            c = len(rows)
            packed_parts.append(np.fromiter(map(operator.itemgetter(0), rows), np.int64, c))
            value_parts[0].append(np.fromiter(map(operator.itemgetter(1), rows), object, c))
            for j in range(1, k):
                kind_parts[j].append(np.fromiter(map(operator.itemgetter(2 * j), rows), np.int8, c))
                value_parts[j].append(np.fromiter(map(operator.itemgetter(2 * j + 1), rows), object, c))
    except sqlite3.OperationalError as exc:  # a stored string that is not UTF-8 cannot be fetched as str
        if "decode" in str(exc).lower():
            raise _Undecodable(f"a string that is not valid UTF-8 ({exc})") from None
        raise
    finally:
        cur.close()

    def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype)

    packed = cat(packed_parts, np.int64)
    kind_arrays = [(packed & 15).astype(np.int8)] + [cat(p, np.int8) for p in kind_parts[1:]]
    return (packed >> 4) + lower, kind_arrays, [cat(p, object) for p in value_parts]


# ------------------------------------------------------------------ evaluation
def _evaluate(plan: tuple[Any, ...], columns: Mapping[str, _Column], r: int) -> np.ndarray:
    tag = plan[0]
    if tag == "op":
        return _operator(columns[plan[1]], plan[2], plan[3], r)
    if tag == "not":
        return ~_evaluate(plan[1], columns, r)
    combine: Callable[[np.ndarray, np.ndarray], Any] = np.logical_and if tag == "and" else np.logical_or
    out: np.ndarray | None = None
    for sub in plan[1]:
        m = _evaluate(sub, columns, r)
        if out is None:
            out = m
        else:
            combine(out, m, out=out)
    if out is None:  # an empty AND ({} or {"$not": {}})
        return np.ones(r, dtype=bool)
    return out


def _operator(col: _Column, op: str, arg: Any, r: int) -> np.ndarray:
    kind = col.kind[:r]
    if op == "$exists":
        return kind != MISSING if arg else kind == MISSING
    if op in ("$eq", "$ne"):
        hit = _isin(col, [arg], r)
        return ~hit if op == "$ne" else hit
    if op in ("$in", "$nin"):
        hit = _isin(col, arg, r)
        return ~hit if op == "$nin" else hit
    cmp = _RANGE[op]
    if isinstance(arg, str):
        dictionary, unicode = col.dictionary()
        table = np.zeros(len(dictionary) + 1, dtype=bool)  # the final False is what code -1 indexes
        if unicode and "\x00" not in arg:  # numpy drops trailing NULs of str values, so not with one
            table[:-1] = cmp(dictionary, arg)
        else:
            table[:-1] = np.fromiter(map(cmp, col.strings, itertools.repeat(arg)), bool, len(dictionary))
        return table[col.code[:r]]
    return cmp(col.num[:r], arg)  # NaN (not a number) compares False


def _isin(col: _Column, values: list[Any], r: int) -> np.ndarray:
    """Rows whose scalar equals one of ``values`` (normalised: bool, str or float)."""
    bools = {v for v in values if isinstance(v, bool)}
    strs = [v for v in values if isinstance(v, str)]
    nums = [v for v in values if isinstance(v, float)]
    out = np.zeros(r, dtype=bool)
    kind = col.kind[:r]
    for b in bools:
        out |= kind == (TRUE if b else FALSE)
    if strs:
        codes = [c for c in map(col.lookup.get, strs) if c is not None]
        if codes:
            table = np.zeros(len(col.strings) + 1, dtype=bool)  # last entry: code -1
            table[codes] = True
            out |= table[col.code[:r]]
    if nums:
        num = col.num[:r]
        wanted = np.unique(np.asarray(nums, dtype=np.float64))
        if len(wanted) <= _SMALL_IN:  # numpy tests short lists element by element
            out |= np.isin(num, wanted)
        else:
            idx = np.searchsorted(wanted, num)
            np.minimum(idx, len(wanted) - 1, out=idx)
            out |= wanted[idx] == num
    return out

