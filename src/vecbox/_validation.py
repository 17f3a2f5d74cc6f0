"""The single gate for user input: arrays, ids, metadata and small parameters.

Everything that reaches storage has passed through here, so internals can trust
their inputs and bad input never reaches the disk.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from vecbox.errors import DimensionMismatchError, DuplicateIdError, InvalidInputError

METRICS = ("cosine", "dot", "l2")
MAX_METADATA_DEPTH = 64
"""How deeply metadata may nest lists and dicts (the metadata dict itself is level 1)."""


def normalise_rows(x: np.ndarray, name: str = "vectors") -> np.ndarray:
    """Unit-length float32 rows for cosine similarity.

    Norms are taken in float32 (as every other float32 tool does) except for rows whose squared
    norm leaves float32's range - huge (3e38) or tiny (1e-30) rows - which are normalised in
    float64 instead of turning into zeros or being called "all zeros".

    >>> normalise_rows(np.array([[3e38, 0.0], [1e-30, 1e-30]], np.float32)).astype(float).round(4).tolist()
    [[1.0, 0.0], [0.7071, 0.7071]]
    """
    with np.errstate(over="ignore", under="ignore"):
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    bad = ~((norms > 1e-18) & (norms < 1e18)).ravel()  # squares under/overflowed, or a zero row
    if bad.any():
        x64 = x[bad].astype(np.float64)
        n64 = np.sqrt(np.einsum("ij,ij->i", x64, x64))[:, None]
        if np.any(n64 == 0):
            row = int(np.flatnonzero(bad)[np.flatnonzero(n64.ravel() == 0)[0]])
            raise InvalidInputError(
                f"{name} row {row} is all zeros; cosine similarity is undefined for it - drop it or use "
                "metric='dot'/'l2'"
            )
        norms[bad] = 1.0
        out = np.ascontiguousarray(x / norms, dtype=np.float32)
        out[bad] = (x64 / n64).astype(np.float32)
        return out
    return np.ascontiguousarray(x / norms, dtype=np.float32)


MAX_NORM = 1e19  # dot products and squared norms of vectors up to this norm stay inside float32


def check_magnitude(x: np.ndarray, name: str = "vectors") -> np.ndarray:
    """Return ``x`` if every row's norm is below :data:`MAX_NORM`, else raise: larger rows overflow float32 scores.

    >>> check_magnitude(np.ones((2, 3), np.float32)).shape
    (2, 3)
    """
    if x.size and float(np.abs(x).max()) * math.sqrt(x.shape[1]) >= MAX_NORM:  # cheap bound first
        x64 = x.astype(np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", x64, x64))
        if norms.max() >= MAX_NORM:
            row = int(np.argmax(norms >= MAX_NORM))
            raise InvalidInputError(
                f"{name} row {row} has norm {norms[row]:.3g}, too large for float32 arithmetic (its scores would "
                f"overflow); scale the vectors down to norms below {MAX_NORM:.0e}"
            )
    return x


def as_matrix(x: Any, d: int | None = None, name: str = "x", allow_1d: bool = False) -> np.ndarray:
    """Return ``x`` as a finite, C-contiguous float32 array of shape ``(n, d)``.

    Parameters
    ----------
    x : array-like
        Vectors, one per row.
    d : int, optional
        Required width; a mismatch raises :class:`DimensionMismatchError`.
    name : str
        Name used in error messages.
    allow_1d : bool
        Accept a single vector of shape ``(d,)`` and return it as ``(1, d)``.

    Examples
    --------
    >>> as_matrix([[1, 2], [3, 4]]).dtype
    dtype('float32')
    >>> as_matrix([1.0, 2.0], d=2, allow_1d=True).shape
    (1, 2)
    """
    if isinstance(x, np.ndarray):
        if x.dtype == np.uint8 and name != "codes":
            raise InvalidInputError(f"{name} has dtype uint8, which looks like compressed codes; pass float vectors")
        arr = x
    else:
        try:
            arr = np.asarray(x)  # no dtype: what the values are shows in arr.dtype (a cast would hide it)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"{name} must be a numeric array of shape (n, d); could not convert it: {exc}"
            ) from None
    kind = arr.dtype.kind
    if kind not in "iuf":
        arr = _real_objects(arr, name) if kind == "O" else _refuse_dtype(arr, name)
    elif isinstance(x, (list, tuple)) and arr.ndim in (1, 2) and _holds_bools(x, arr):
        raise InvalidInputError(
            f"{name} contains bool values (True/False) among its numbers, which would be read as 1/0; "
            "vectors must hold real numbers - convert them explicitly (float(b)) if 0/1 is meant"
        )
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 1 and allow_1d:
        arr = arr[None, :]
    if arr.ndim != 2:
        hint = " (one vector? pass x[None, :] or a list of vectors)" if arr.ndim == 1 else ""
        raise InvalidInputError(f"{name} must be a 2-D array of shape (n, d); got shape {arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise InvalidInputError(f"{name} is empty (shape {arr.shape}); pass at least one vector")
    if arr.shape[1] == 0:
        raise InvalidInputError(f"{name} has zero columns; vectors need at least one dimension")
    if d is not None and arr.shape[1] != d:
        raise DimensionMismatchError(
            f"{name} has {arr.shape[1]} columns; this collection stores {d}-d vectors. "
            "Encode with the collection's model or create a new collection with the right dimension."
        )
    finite = np.isfinite(arr)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise InvalidInputError(
            f"{name} contains NaN or infinite values in {bad_rows.size} row(s) (first: row {int(bad_rows[0])}); "
            "remove or repair those vectors before adding them"
        )
    return np.ascontiguousarray(arr)


_BOOL_TYPES = frozenset((bool, np.bool_))
_BOOLS = (bool, np.bool_)
_REAL_TYPES = (int, float, np.integer, np.floating)
_DTYPE_WORDS = {"b": "bool", "c": "complex", "U": "str", "S": "bytes", "M": "datetime64", "m": "timedelta64",
                "V": "structured (void)"}


def _holds_bools(x: Sequence[Any], arr: np.ndarray) -> bool:
    """Does a list (of lists) hold bools among its numbers? ``np.asarray`` (giving ``arr``) read them as 1/0.

    A bool became an exact 0 or 1, which float vectors rarely hold: only then are the values' types looked at.
    """
    if not np.count_nonzero((arr == 0) | (arr == 1)):  # ~3 us for 384 values; NaN compares False, silently
        return False
    items = x if arr.ndim == 1 else itertools.chain.from_iterable(x)
    return not _BOOL_TYPES.isdisjoint(map(type, items))  # C-speed: ~40 ns per value


def _refuse_dtype(arr: np.ndarray, name: str) -> np.ndarray:
    word = _DTYPE_WORDS.get(arr.dtype.kind, str(arr.dtype))
    hint = {"b": "convert with x.astype(np.float32) if 0/1 is meant",
            "U": "parse numeric strings first, e.g. np.asarray(x, dtype=np.float32)",
            "S": "parse numeric strings first, e.g. np.asarray(x, dtype=np.float32)",
            "c": "pass the real part (x.real) or split real and imaginary parts into columns"}.get(
                arr.dtype.kind, "pass an array of ints or floats")
    raise InvalidInputError(
        f"{name} has {word} values (dtype {arr.dtype}); vectors must be real numbers (int or float) - {hint}"
    )


def _real_objects(arr: np.ndarray, name: str) -> np.ndarray:
    """An object array of real numbers as float64; anything else in it (str, bool, None, ...) is refused."""
    for v in arr.ravel().tolist():
        if isinstance(v, _BOOLS) or not isinstance(v, _REAL_TYPES):
            raise InvalidInputError(
                f"{name} contains a {type(v).__name__} value ({v!r:.40}); vectors must hold real numbers "
                "(int or float), not bool, str, complex or None - convert or drop those values"
            )
    try:
        return np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(f"{name} could not be converted to floats: {exc}") from None


def _text_problem(s: str) -> str | None:
    r"""Why ``s`` cannot be stored as it is (``None``: it can): a NUL or a lone surrogate.

    >>> _text_problem("ok é"), _text_problem("a\x00b")[:30], _text_problem("\ud800")[:26]
    (None, 'contains a NUL character (U+00', 'contains a lone surrogate ')
    """
    if "\x00" in s:
        return ("contains a NUL character (U+0000), which SQLite cuts text at (it would be stored or "
                "matched cut short); remove or replace it")
    if not s.isascii():  # O(1): the common all-ASCII string costs nothing more
        try:
            s.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (f"contains a lone surrogate ({s[exc.start]!r} at position {exc.start}), which is not valid "
                    "UTF-8 and cannot be stored; fix the text's decoding (e.g. bytes.decode('utf-8', "
                    "errors='replace'))")
    return None


def _check_texts(values: Sequence[str], name: str) -> None:
    """Raise for the first string of ``values`` that :func:`_text_problem` refuses (one C-speed pass when none)."""
    joined = "".join(values)
    if "\x00" not in joined and (joined.isascii() or _text_problem(joined) is None):
        return
    for i, v in enumerate(values):
        problem = _text_problem(v)
        if problem:
            raise InvalidInputError(f"{name}[{i}] {v!r:.60} {problem}")


def check_ids(ids: Any, n: int | None = None, name: str = "ids") -> list[str]:
    r"""Return ``ids`` as a list of non-empty strings, unique within the batch.

    Ids may hold any Unicode text except NUL (U+0000) and lone surrogates.

    >>> check_ids(["a", "é"])
    ['a', 'é']
    >>> check_ids(["a\x00b"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    vecbox.errors.InvalidInputError: ids[0] 'a\x00b' contains a NUL character (U+0000), ...
    """
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise InvalidInputError(f"{name} must be a list of strings; got {type(ids).__name__}")
    out = list(ids)
    for i, v in enumerate(out):
        if not isinstance(v, str):
            raise InvalidInputError(
                f"{name}[{i}] is {type(v).__name__} {v!r}; ids are strings - convert them with str()"
            )
        if not v:
            raise InvalidInputError(f"{name}[{i}] is an empty string; ids must be non-empty")
    if not out:
        raise InvalidInputError(f"{name} is empty; pass at least one id")
    _check_texts(out, name)
    if n is not None and len(out) != n:
        raise InvalidInputError(f"got {len(out)} {name} for {n} vectors; pass exactly one id per vector")
    if len(set(out)) != len(out):
        seen: set[str] = set()
        dups = [v for v in out if v in seen or seen.add(v)]  # type: ignore[func-returns-value]
        raise DuplicateIdError(
            f"{name} repeats {len(dups)} id(s) within one batch (first: {dups[0]!r}); each id may appear once per batch"
        )
    return out


def check_metadatas(metadatas: Sequence[Mapping[str, Any] | None] | None, n: int) -> list[str | None]:
    """Validate metadata dicts and return them serialised as compact JSON (``None`` for no metadata)."""
    if metadatas is None:
        return [None] * n
    if isinstance(metadatas, Mapping):
        raise InvalidInputError("metadatas must be a list with one dict per vector; got a single dict")
    metas = list(metadatas)
    if len(metas) != n:
        raise InvalidInputError(f"got {len(metas)} metadata entries for {n} vectors; pass one dict (or None) per vector")
    out: list[str | None] = []
    for i, m in enumerate(metas):
        if m is None:
            out.append(None)
            continue
        if not isinstance(m, Mapping):
            raise InvalidInputError(f"metadatas[{i}] is {type(m).__name__}; metadata must be a dict or None")
        for key in m:
            if not isinstance(key, str):
                raise InvalidInputError(f"metadatas[{i}] has a non-string key {key!r}; metadata keys must be strings")
        try:
            text = json.dumps(m, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"metadatas[{i}] is not JSON-compatible ({exc}); use str, int, float, bool, None, lists and dicts"
            ) from None
        except RecursionError:  # the C encoder gave up (~1000 levels): far beyond the limit
            raise InvalidInputError(_metadata_problem(m, i) or _too_deep(i, "")) from None
        # Cheap tests first (C-speed string scans); the walk runs only when one of them flags something.
        # NUL is always escaped by json.dumps; a lone surrogate is kept raw; depth <= number of brackets.
        if ("\\u0000" in text or not text.isascii() and _text_problem(text) is not None
                or text.count("{") + text.count("[") > MAX_METADATA_DEPTH):
            problem = _metadata_problem(m, i)
            if problem:
                raise InvalidInputError(problem)
        out.append(text)
    return out


def _too_deep(i: int, where: str) -> str:
    return (f"metadatas[{i}]{where} nests lists/dicts deeper than {MAX_METADATA_DEPTH} levels; "
            "flatten it (e.g. join a path into one key) - deeper metadata cannot be filtered on reliably")


def _metadata_problem(m: Mapping[str, Any], i: int) -> str | None:
    """The first problem of metadata ``m`` found walking it without recursion: too deep, NUL, surrogate."""
    stack: list[tuple[Any, int, str]] = [(m, 1, "")]
    while stack:
        node, depth, where = stack.pop()
        if depth > MAX_METADATA_DEPTH:
            return _too_deep(i, where)
        items = node.items() if isinstance(node, Mapping) else enumerate(node)
        children = []
        for key, value in items:
            at = f"{where}[{key!r:.40}]"
            if isinstance(key, str):
                problem = _text_problem(key)
                if problem:
                    return f"metadatas[{i}] has a key {key!r:.40}{' under ' + where if where else ''} that {problem}"
            if isinstance(value, str):
                problem = _text_problem(value)
                if problem:
                    return f"metadatas[{i}]{at} is a string that {problem}"
            elif isinstance(value, (Mapping, list, tuple)):
                children.append((value, depth + 1, at))
        stack.extend(reversed(children))
    return None


def check_documents(documents: Sequence[str | None] | None, n: int) -> list[str | None]:
    """Validate optional document texts (one per vector)."""
    if documents is None:
        return [None] * n
    if isinstance(documents, str):
        raise InvalidInputError("documents must be a list with one string per vector; got a single string")
    docs = list(documents)
    if len(docs) != n:
        raise InvalidInputError(f"got {len(docs)} documents for {n} vectors; pass one string (or None) per vector")
    for i, doc in enumerate(docs):
        if doc is not None:
            if not isinstance(doc, str):
                raise InvalidInputError(f"documents[{i}] is {type(doc).__name__}; documents must be strings or None")
            if "\x00" in doc or not doc.isascii():
                problem = _text_problem(doc)
                if problem:
                    raise InvalidInputError(f"documents[{i}] {problem}")
    return docs


def check_metric(metric: Any) -> str:
    """Return a known metric name or raise with the list of choices."""
    if metric not in METRICS:
        raise InvalidInputError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return str(metric)


def check_positive_int(value: Any, name: str) -> int:
    """Return ``value`` as an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def check_finite_number(value: Any, name: str) -> float:
    """Return ``value`` as a finite float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInputError(f"{name} must be a finite number; got {value!r}")
    return float(value)
