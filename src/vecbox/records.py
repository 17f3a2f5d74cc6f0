"""Records from files: JSONL, CSV (typed by pyarrow, streamed) and Parquet, with errors that name the line.

:func:`read_records` yields one dict per row; :func:`vecbox.io.ingest_file` stores them. Knows
nothing of collections.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any


from vecbox._optional import require
from vecbox.errors import DatasetError, InvalidInputError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}

#: bytes of CSV that pyarrow parses at a time; a pass over a CSV file holds some dozen blocks (its read-ahead),
#: never the whole file. Grown (x4, up to 1 GiB) while a row does not fit in one block.
CSV_BLOCK_SIZE = 1 << 20

#: the column types a CSV ``schema`` may name, and their spellings
CSV_TYPES = {"str": "str", "string": "str", "text": "str", "int": "int", "integer": "int", "float": "float",
             "double": "float", "bool": "bool", "boolean": "bool", str: "str", int: "int", float: "float", bool: "bool"}


class IngestError(InvalidInputError, DatasetError):
    """A file's rows could not be read or stored: the message names the file, the line (or row) and what to do.

    Raised by :func:`read_records` and :func:`ingest_file`. It is both an
    :class:`~vecbox.errors.InvalidInputError` and a :class:`~vecbox.errors.DatasetError`. From
    :func:`ingest_file` it also says what was already stored, since each batch is its own commit:

    * ``committed_rows`` / ``committed_batches``: rows and batches committed before the error; they stay
      stored (0: nothing was written);
    * ``resume_at``: the ``skip_rows=`` value that resumes after them once the file is fixed.

    The error of the collection itself (a :class:`~vecbox.errors.DuplicateIdError`, say) is its ``__cause__``.
    """

    def __init__(self, message: str, *, committed_rows: int = 0, committed_batches: int = 0,
                 resume_at: int = 0) -> None:
        super().__init__(message)
        self.committed_rows = committed_rows
        self.committed_batches = committed_batches
        self.resume_at = resume_at


class _Rows:
    """The rows of one file, as ``(n, row)`` pairs; ``where(n)`` says where row ``n`` is ("line 12")."""

    def __init__(self, rows: Iterator[tuple[int, dict[str, Any]]], where: Callable[[int], str],
                 columns: list[str] | None = None) -> None:
        self.rows, self.where, self.columns = rows, where, columns

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        return self.rows


def read_records(file: str | Path, *, schema: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Stream the rows of a JSONL, CSV or Parquet file as dicts (format from the extension).

    JSONL and Parquet rows keep their own types. CSV cells are typed per column, over the whole
    file (read twice, block by block): a column whose cells are all integers gives ``int``, all
    numbers ``float``, all ``true``/``false`` (any case) ``bool``; an empty cell is ``None``; any
    other column stays ``str``. A column with an integer that a number would not keep exactly
    (``02134``, ``+5``, beyond 64 bits) stays ``str`` too. ``schema`` (CSV only) fixes a
    column's type instead: ``{"zip": "str", "year": "int"}`` (``str``, ``int``, ``float`` or
    ``bool``, which also takes ``1``/``0``). CSV needs pyarrow (``pip install 'vecbox[io]'``).

    Bad input raises :class:`IngestError` naming the file and line: invalid JSON, a CSV row
    with more or fewer fields than the header, a value the schema's type does not fit, a file
    that is not UTF-8.

    >>> import pathlib
    >>> p = pathlib.Path(tmp) / "r.csv"
    >>> _ = p.write_text("id,year,zip,draft,note\\na,2024,02134,true,\\n")
    >>> list(read_records(p))
    [{'id': 'a', 'year': 2024, 'zip': '02134', 'draft': True, 'note': None}]
    >>> list(read_records(p, schema={"year": "str"}))[0]["year"]
    '2024'
    """
    for _, row in _open_rows(file, schema):
        yield row


def _open_rows(file: str | Path, schema: Mapping[str, Any] | None = None, text_columns: Mapping[str, str] | None = None,
               ) -> _Rows:
    """``text_columns``: column -> role ("id", "text", "vector") of the CSV columns always read as text."""
    file = Path(file)
    fmt = FORMATS.get(file.suffix.lower())
    if fmt is None:
        raise InvalidInputError(f"cannot tell the format of {file}; use a .jsonl, .csv or .parquet file")
    if not file.is_file():
        raise DatasetError(f"{file} does not exist")
    if schema is not None and fmt != "csv":
        raise InvalidInputError(f"schema= types the columns of a CSV file; {file.name} is {fmt}, whose values keep "
                                "their own types - drop schema=")
    if fmt == "jsonl":
        return _Rows(_jsonl_rows(file), lambda n: f"line {n}")
    if fmt == "csv":
        return _csv_rows(file, schema or {}, text_columns or {})
    pq = require("pyarrow.parquet", "io", "reading Parquet")
    try:
        pf = pq.ParquetFile(file)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid / ArrowIOError: not Parquet, or truncated
        raise IngestError(f"{file} is not a readable Parquet file ({exc}); write it again, or use JSONL or CSV"
                          ) from None
    return _Rows(_parquet_rows(pf), lambda n: f"row {n}", list(pf.schema_arrow.names))


def _jsonl_rows(file: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(file, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise IngestError(_not_utf8(file, lineno, raw, exc)) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise IngestError(f"{file}, line {lineno}: not valid JSON ({exc.msg}); write one JSON object per "
                                  "line") from None
            if not isinstance(row, dict):
                raise IngestError(f"{file}, line {lineno}: expected a JSON object, got {type(row).__name__}")
            yield lineno, row


def _parquet_rows(pf: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    n = 0
    for batch in pf.iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            n += 1
            yield n, row


def _not_utf8(file: Path, lineno: int, raw: bytes, exc: UnicodeDecodeError) -> str:
    return (f"{file}, line {lineno}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); the file "
            f"is probably Latin-1 or another legacy encoding - re-encode it as UTF-8, e.g. iconv -f latin1 -t utf-8 "
            f"{file.name} > {file.stem}.utf8{file.suffix}")


# CSV: pyarrow parses (block by block), every column as text; the types come from a first pass over the file

def _csv_rows(file: Path, schema: Mapping[str, Any], text_columns: Mapping[str, str]) -> _Rows:
    pa = require("pyarrow", "io", "reading CSV")
    where = _CsvFile(file)
    names = where.grow(lambda: _csv_header(file, where))
    declared: dict[str, str] = {}
    for name, kind in schema.items():
        if name not in names:
            raise InvalidInputError(f"schema names {name!r}, but {name!r} is not a column of {file.name} "
                                    f"(columns: {', '.join(names)})")
        if not isinstance(kind, (str, type)) or kind not in CSV_TYPES:
            raise InvalidInputError(f"schema[{name!r}] is {kind!r}; use one of 'str', 'int', 'float', 'bool'")
        declared[name] = CSV_TYPES[kind]
    for name, role in text_columns.items():
        if declared.get(name, "str") != "str":
            raise InvalidInputError(f"schema[{name!r}] is {schema[name]!r}, but {name!r} is the {role} column, "
                                    "which is always read as text (ids are text, vectors are JSON lists); drop it "
                                    "from schema")
        declared[name] = "str"
    types = where.grow(lambda: _csv_types(file, names, declared, where))

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        n = 0
        try:
            for batch in _csv_batches(file, names, where):
                cols = [_csv_convert(batch.column(i), types[name]) for i, name in enumerate(names)]
                for row in pa.RecordBatch.from_arrays(cols, names=names).to_pylist():
                    n += 1
                    yield n, row
        except _Straddling:
            raise IngestError(f"{file} changed while it was read; ingest it again") from None

    return _Rows(rows(), where, names)


class _Straddling(Exception):
    """A CSV row is longer than pyarrow's block: read again with larger blocks."""


class _CsvFile:
    """A CSV file's block size, and where its data row ``n`` starts (``self(n)``): found on demand (only to
    word an error) by re-reading with Python's csv module, which counts physical lines (quoted newlines,
    blank lines) as pyarrow does not."""

    def __init__(self, file: Path) -> None:
        self.file, self.block_size = file, CSV_BLOCK_SIZE

    def grow(self, read: Callable[[], Any]) -> Any:
        """``read()``, again with 4 times larger blocks while a row does not fit in one (up to 1 GiB)."""
        while True:
            try:
                return read()
            except _Straddling:
                if self.block_size >= 1 << 30:
                    raise IngestError(f"{self.file} holds a row longer than 1 GiB; split it, or check the file's "
                                      "quoting (an unclosed quote makes the rest of the file one row)") from None
                self.block_size *= 4

    def __call__(self, n: int) -> str:
        for row, line, _ in self.records():
            if row == n:
                return f"line {line}"
        return f"data row {n}"

    def records(self) -> Iterator[tuple[int, int, list[str]]]:
        """``(data row, first line, fields)`` of each record that is not blank; the header is data row 0."""
        limit = csv.field_size_limit()
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        try:
            with open(self.file, encoding="utf-8-sig", errors="replace", newline="") as fh:
                reader, n = csv.reader(fh), 0
                for fields in reader:
                    if fields:
                        yield n, reader.line_num - sum(f.count("\n") for f in fields), fields
                        n += 1
        finally:
            csv.field_size_limit(limit)


def _csv_reader(file: Path, names: list[str] | None, block_size: int) -> Any:
    pa = require("pyarrow", "io", "reading CSV")
    pacsv = require("pyarrow.csv", "io", "reading CSV")
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in names} if names is not None else None,
        strings_can_be_null=True, null_values=[""], quoted_strings_can_be_null=True)
    return pacsv.open_csv(file, read_options=pacsv.ReadOptions(block_size=block_size, use_threads=False),
                          parse_options=pacsv.ParseOptions(newlines_in_values=True,
                                                           invalid_row_handler=lambda row: "error"),
                          convert_options=convert)


def _csv_header(file: Path, where: _CsvFile) -> list[str]:
    with _csv_errors(file, where, None):
        names = list(_csv_reader(file, None, where.block_size).schema.names)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise IngestError(f"{file}, line 1: the header names column {name!r} twice; give each column its own name")
        seen.add(name)
    return names


def _csv_batches(file: Path, names: list[str], where: _CsvFile) -> Iterator[Any]:
    with _csv_errors(file, where, names):
        yield from _csv_reader(file, names, where.block_size)


class _csv_errors:
    """Turn pyarrow's CSV errors into an :class:`IngestError` naming the line and saying what to do."""

    def __init__(self, file: Path, where: _CsvFile, names: list[str] | None) -> None:
        self.file, self.where, self.names = file, where, names

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        if exc is None or isinstance(exc, (IngestError, GeneratorExit)) or not isinstance(exc, (ValueError, OSError)):
            return False
        file, text = self.file, str(exc)
        if isinstance(exc, UnicodeDecodeError) or "UTF8" in text or "UTF-8" in text:
            with open(file, "rb") as fh:
                for lineno, raw in enumerate(fh, 1):
                    try:
                        raw.decode("utf-8")
                    except UnicodeDecodeError as bad:
                        raise IngestError(_not_utf8(file, lineno, raw, bad)) from None
        if "straddl" in text:
            raise _Straddling() from None
        if "Empty CSV file" in text:
            raise IngestError(f"{file} is empty; a CSV file needs a header line naming its columns") from None
        if "Expected" in text and "columns" in text:
            records = self.where.records()
            _, _, header = next(records, (0, 1, []))
            for _, line, fields in records:
                if len(fields) != len(header):
                    shown = ",".join(fields)
                    shown = shown if len(shown) <= 60 else shown[:57] + "..."
                    raise IngestError(
                        f"{file}, line {line}: {len(fields)} fields where the header has {len(header)} ({shown!r}); "
                        f"every row needs one value per column - quote values holding commas, "
                        f"or fix the row") from None
        raise IngestError(f"{file} is not a readable CSV file ({text}); check its quoting and header") from None


def _csv_types(file: Path, names: list[str], declared: dict[str, str], where: _CsvFile) -> dict[str, str]:
    """The type of each column: ``declared`` ones checked against every cell, the others inferred."""
    pa = require("pyarrow", "io", "reading CSV")
    pc = require("pyarrow.compute", "io", "reading CSV")
    infer = {name: {"bool": True, "int": True, "float": True, "seen": False} for name in names if name not in declared}
    start = 0
    for batch in _csv_batches(file, names, where):
        for i, name in enumerate(names):
            column = batch.column(i)
            if name in declared:
                if declared[name] != "str":
                    bad = _first_misfit(column, declared[name])
                    if bad is not None:
                        raise IngestError(
                            f"{file}, {where(start + bad + 1)}: {name} = {column[bad].as_py()!r} is not "
                            f"{_A[declared[name]]}, as schema[{name!r}] says; fix the value, or declare the column "
                            "'str'")
                continue
            state, values = infer[name], column.drop_null()
            if not len(values) or not (state["bool"] or state["int"] or state["float"]):
                continue
            state["seen"] = True
            if state["bool"]:
                state["bool"] = pc.all(pc.is_in(pc.utf8_lower(values), value_set=pa.array(["true", "false"]))).as_py()
            if state["int"] or state["float"]:
                intlike = pc.match_substring_regex(values, r"^[+-]?[0-9]+$")
                ints, others = values.filter(intlike), values.filter(pc.invert(intlike))
                if len(ints) and not _exact_ints(ints):
                    state["int"] = state["float"] = False
                if len(others):
                    state["int"] = False
                    if state["float"] and not _finite_floats(others):
                        state["float"] = False
        start += batch.num_rows
    types = dict(declared)
    for name, state in infer.items():
        if not state["seen"]:
            types[name] = "str"
        else:
            types[name] = next((t for t in ("bool", "int", "float") if state[t]), "str")
    return types


_A = {"int": "an integer", "float": "a finite number", "bool": "true/false (or 1/0)"}


def _exact_ints(values: Any) -> bool:
    """Whether integer-looking strings are int64s written the canonical way (no leading zero or plus sign)."""
    pa = require("pyarrow", "io", "reading CSV")
    pc = require("pyarrow.compute", "io", "reading CSV")
    try:
        back = pc.cast(pc.cast(values, pa.int64()), pa.string())
    except pa.ArrowInvalid:
        return False
    return bool(pc.all(pc.equal(back, values)).as_py())


def _finite_floats(values: Any) -> bool:
    pa = require("pyarrow", "io", "reading CSV")
    pc = require("pyarrow.compute", "io", "reading CSV")
    try:
        return bool(pc.all(pc.is_finite(pc.cast(values, pa.float64()))).as_py())
    except pa.ArrowInvalid:
        return False


def _first_misfit(column: Any, kind: str) -> int | None:
    """Index of the first non-null cell of ``column`` that type ``kind`` does not take (None: they all fit)."""
    pa = require("pyarrow", "io", "reading CSV")
    try:
        _csv_convert(column, kind, check=True)
        return None
    except (pa.ArrowInvalid, ValueError):
        pass
    for i in range(len(column)):
        if column[i].is_valid:
            try:
                _csv_convert(column.slice(i, 1), kind, check=True)
            except (pa.ArrowInvalid, ValueError):
                return i
    return None


def _csv_convert(column: Any, kind: str, check: bool = False) -> Any:
    """Cast a text column to ``kind``; ``check`` raises ValueError on cells the type does not take."""
    pa = require("pyarrow", "io", "reading CSV")
    pc = require("pyarrow.compute", "io", "reading CSV")
    if kind == "int":
        return pc.cast(column, pa.int64())
    if kind == "float":
        out = pc.cast(column, pa.float64())
        if check and pc.all(pc.is_finite(out)).as_py() is False:
            raise ValueError("not finite")
        return out
    if kind == "bool":
        lower = pc.utf8_lower(column)
        if check and pc.all(pc.is_in(lower, value_set=pa.array(["true", "false", "1", "0"]))).as_py() is False:
            raise ValueError("not a bool")
        return pc.or_(pc.equal(lower, "true"), pc.equal(lower, "1"))
    return column


# ingest
