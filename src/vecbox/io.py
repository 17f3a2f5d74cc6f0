"""Files and arrays in and out of collections: JSONL/CSV/Parquet records, vector matrices.

This module sits above :class:`~vecbox.collection.Collection`: the array-only layers
(``encoders``, ``analysis``, ``spark``, ``evaluation``) never see a collection; these
functions move their inputs and outputs in and out of one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vecbox._optional import require
from vecbox._validation import as_matrix, check_positive_int
from vecbox.collection import Collection
from vecbox.errors import DatasetError, InvalidInputError
from vecbox.records import (  # noqa: F401 - read_records, IngestError: public here too
    FORMATS,
    IngestError,
    _open_rows,
    _Rows,
    read_records,
)


def ingest_file(
    path: str | Path,
    file: str | Path,
    *,
    text_field: str | None = None,
    vector_field: str | None = None,
    id_field: str = "id",
    metadata_fields: Sequence[str] | None = None,
    batch_size: int = 10_000,
    upsert: bool = False,
    show_progress: bool = False,
    schema: Mapping[str, Any] | None = None,
    skip_rows: int = 0,
    document_field: str | None = None,
    metadata_field: str | None = None,
) -> dict[str, Any]:
    """Add every row of ``file`` to the collection at ``path``; each batch is one atomic commit.

    ``file`` may also be a directory of Parquet files (what Spark's ``.write.parquet`` or
    :func:`to_parquet` writes: ``part-*.parquet``), read in name order as one stream of rows.
    With ``vector_field``, ``document_field`` names a column stored as each row's document, and
    ``metadata_field`` a column holding each row's metadata as a JSON object (text) or a map:
    ``to_parquet``'s output comes back with ``vector_field="vector", document_field="document",
    metadata_field="metadata"``.

    Exactly one of ``text_field`` (encoded with the collection's model, kept as the
    document) or ``vector_field`` (a list of numbers, or a JSON list in CSV) is used.
    Other fields become metadata (all of them unless ``metadata_fields`` is given).
    The file is streamed: about ``batch_size`` rows are in memory at a time.

    CSV cells are typed as :func:`read_records` says, so ``{"year": {"$gte": 2024}}`` finds
    the rows whose ``year`` column holds 2024 or more: all-integer columns give ``int``,
    all-number ones ``float``, ``true``/``false`` ones ``bool``, empty cells ``None``, the
    rest (and integers such as ``02134`` that a number would change) ``str``. ``schema``
    (CSV only) fixes a column's type, e.g. ``{"zip": "str", "year": "int"}``. The id, text
    and vector columns are always read as text. A CSV file's header, row lengths, encoding and
    schema are checked over the whole file before anything is written.

    ``skip_rows`` skips the first rows of the file (resume after a failed ingest). A bad row,
    or a batch the collection refuses (an id already stored, say), raises :class:`IngestError`
    naming the file and line; the batches committed before it stay stored, and the error
    says how many (``committed_rows``) and which ``skip_rows=`` resumes after them.

    Returns ``{"rows", "version", "seconds", "rows_per_s"}``.

    >>> import pathlib
    >>> _ = pathlib.Path(tmp, "notes.csv").write_text(
    ...     'id,vec,year\\na,"[1, 0]",2023\\nb,"[0.8, 0.6]",2024\\nc,"[0, 1]",2025\\n')
    >>> col = Collection.create(tmp + "/notes", dim=2)
    >>> ingest_file(tmp + "/notes", tmp + "/notes.csv", vector_field="vec")["rows"]
    3
    >>> [(h.id, h.metadata) for h in col.search([1.0, 0.0], k=5, where={"year": {"$gte": 2024}})]
    [('b', {'year': 2024}), ('c', {'year': 2025})]
    """
    if (text_field is None) == (vector_field is None):
        raise InvalidInputError("give exactly one of text_field (text to encode) or vector_field (ready vectors)")
    batch_size = check_positive_int(batch_size, "batch_size")
    if isinstance(skip_rows, bool) or not isinstance(skip_rows, (int, np.integer)) or skip_rows < 0:
        raise InvalidInputError(f"skip_rows must be an integer >= 0 (rows to skip); got {skip_rows!r}")
    if isinstance(metadata_fields, str):
        raise InvalidInputError(f"metadata_fields must be a list of field names; got the string {metadata_fields!r}")
    keep = None if metadata_fields is None else set(metadata_fields)
    if document_field is not None and text_field is not None:
        raise InvalidInputError("document_field is for ready vectors; with text_field the text is the document")
    col = Collection.open(path)
    file = Path(file)
    field = text_field if text_field is not None else vector_field
    role = "text" if text_field is not None else "vector"
    source = _open_source(file, schema, {id_field: "id", field: role})  # type: ignore[dict-item]
    extra = [(f, what) for f, what in ((document_field, "document_field"), (metadata_field, "metadata_field")) if f]
    if source.columns is not None:
        for name, what in [(id_field, "id_field"), (field, f"{role}_field"), *extra,
                           *((m, "metadata_fields") for m in (metadata_fields or ()))]:
            if name not in source.columns:
                raise InvalidInputError(f"{what} {name!r} is not a column of {file.name} "
                                        f"(columns: {', '.join(source.columns)}); choose the right field name")
    skip = {id_field, text_field, vector_field, document_field, metadata_field}
    version, rows, batches, t0 = col.version, 0, 0, time.perf_counter()
    batch: list[tuple[int, dict[str, Any]]] = []
    where = source.where

    def flush() -> int:
        ids = [_as_id(r, id_field, file, where, n) for n, r in batch]
        first: dict[str, int] = {}
        for (n, _), id_ in zip(batch, ids):
            if id_ in first:
                raise IngestError(f"{file}, {where(n)}: id {id_!r} repeats the id of {where(first[id_])}; ids must "
                                  "be unique - fix one of them")
            first[id_] = n
        metas = [{k: v for k, v in r.items() if k not in skip and (keep is None or k in keep)} for _, r in batch]
        if metadata_field is not None:
            for (n, r), meta in zip(batch, metas):
                meta.update(_metadata_cell(r.get(metadata_field), metadata_field, file, where, n))
        if text_field is not None:
            texts = [_text(r, text_field, file, where, n) for n, r in batch]
            x: Any = col.encoder.encode(texts, kind="document", show_progress=show_progress)
            docs: list[str] | None = texts
        else:
            x = np.stack([_vector(r, vector_field, col.dim, file, where, n)  # type: ignore[arg-type]
                          for n, r in batch])
            docs = None if document_field is None else [r.get(document_field) for _, r in batch]
        try:
            return (col.upsert if upsert else col.add)(ids, x, metas, docs)
        except (InvalidInputError, DatasetError) as exc:
            a, b = batch[0][0], batch[-1][0]
            span = f"rows {skip_rows + rows - len(batch) + 1}-{skip_rows + rows}"
            raise IngestError(f"{file}, {span} ({where(a)} to {where(b)}): {exc}") from exc

    seen = 0
    try:
        for n, row in source:
            seen += 1
            if seen <= skip_rows:
                continue
            batch.append((n, row))
            rows += 1
            if len(batch) >= batch_size:
                version = flush()
                batches += 1
                batch = []
        if batch:
            version = flush()
            batches += 1
    except (InvalidInputError, DatasetError) as exc:
        stored = rows - len(batch)
        raise IngestError(f"{str(exc).rstrip('.')}. {_committed(stored, batches, skip_rows + stored)}",
                          committed_rows=stored, committed_batches=batches, resume_at=skip_rows + stored) from (
            exc.__cause__ if isinstance(exc, IngestError) else exc)  # the collection's own error, if any
    except BaseException as exc:  # not the input's fault (a lock timeout, Ctrl-C): say what is stored all the same
        stored = rows - len(batch)
        if stored:
            exc.add_note(f"vecbox ingest: {_committed(stored, batches, skip_rows + stored)}")
        raise
    if rows == 0:
        after = f" after skipping {skip_rows}" if skip_rows else ""
        raise DatasetError(f"{file} holds no rows{after}; nothing was ingested")
    elapsed = time.perf_counter() - t0
    return {"rows": rows, "version": version, "seconds": elapsed, "rows_per_s": rows / elapsed if elapsed else 0.0}


def _open_source(file: Path, schema: Mapping[str, Any] | None, text_columns: Mapping[str, str]) -> _Rows:
    """The rows of a file, or of every Parquet file of a directory in name order (Spark's part files)."""
    if not file.is_dir():
        return _open_rows(file, schema, text_columns)
    parts = sorted(p for p in file.iterdir() if p.is_file() and p.suffix.lower() in (".parquet", ".pq")
                   and not p.name.startswith(("_", ".")))
    if not parts:
        raise DatasetError(f"{file} is a directory without .parquet files; give a JSONL, CSV or Parquet file, or a "
                           "directory of Parquet part files (as Spark's .write.parquet writes)")
    columns = _open_rows(parts[0], schema, text_columns).columns
    starts: list[int] = []

    def rows() -> Any:  # one part open at a time: Spark may have written thousands
        n = 0
        for part in parts:
            rows_of_part = _open_rows(part, schema, text_columns)
            if rows_of_part.columns != columns:
                raise IngestError(f"{part} has columns {rows_of_part.columns}, but {parts[0].name} has {columns}; "
                                  "every part file of a directory needs the same columns")
            starts.append(n)
            for _, row in rows_of_part:
                n += 1
                yield n, row

    def where(n: int) -> str:
        i = max(j for j, s0 in enumerate(starts) if s0 < n) if starts else 0
        return f"{parts[i].name}, row {n - starts[i]}"

    return _Rows(rows(), where, columns)


def _metadata_cell(value: Any, name: str, file: Path, where: Callable[[int], str], n: int) -> dict[str, Any]:
    """A metadata column's value (JSON object text, a dict, or a list of key-value pairs) as a dict."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as exc:
            raise IngestError(f"{file}, {where(n)}: the {name!r} value is not JSON ({exc.msg}); write the metadata "
                              'as a JSON object such as {"year": 2024}') from None
    if isinstance(value, list) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        value = dict(value)  # an Arrow map column
    if not isinstance(value, dict):
        raise IngestError(f"{file}, {where(n)}: the {name!r} value is {type(value).__name__}, not a JSON object; "
                          'write the metadata as an object such as {"year": 2024}')
    return value


def to_parquet(path: str | Path, out_dir: str | Path, *, batch_size: int = 10_000) -> dict[str, Any]:
    """Write every item of the collection at ``path`` to a directory of Parquet files (for Spark and others).

    One ``part-NNNNN.parquet`` per ``batch_size`` items, with the columns ``id`` (string),
    ``vector`` (list<float>; unit length under cosine, as :meth:`Collection.get` returns them),
    ``document`` (string or null) and ``metadata`` (the metadata as JSON text, or null): any
    metadata fits one column. ``out_dir`` must not exist or be empty. Read it back with
    ``spark.read.parquet(out_dir)``, or into a collection with :func:`ingest_file` (``vector_field=
    "vector", document_field="document", metadata_field="metadata"``).

    Returns ``{"rows", "files", "out"}``.

    >>> col = Collection.create(tmp + "/c", dim=2)
    >>> _ = col.add(["a", "b"], np.array([[1.0, 0.0], [0.0, 1.0]]), [{"year": 2024}, None], ["x", None])
    >>> to_parquet(tmp + "/c", tmp + "/out")["rows"]
    2
    """
    pa = require("pyarrow", "io", "writing Parquet")
    pq = require("pyarrow.parquet", "io", "writing Parquet")
    batch_size = check_positive_int(batch_size, "batch_size")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInputError(f"{out} already exists and is not an empty directory; choose a new output directory")
    col = Collection.open(path)
    ids = col.ids()
    out.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("id", pa.string()), ("vector", pa.list_(pa.float32())), ("document", pa.string()),
                        ("metadata", pa.string())])
    files = 0
    for files, start in enumerate(range(0, len(ids), batch_size), 1):
        recs = col.get(ids[start:start + batch_size])
        x = np.stack([r.vector for r in recs]).astype(np.float32, copy=False)
        vectors = pa.ListArray.from_arrays(pa.array(np.arange(0, x.size + 1, col.dim, dtype=np.int32)),
                                           pa.array(x.reshape(-1)))
        table = pa.Table.from_arrays(
            [pa.array([r.id for r in recs], pa.string()), vectors, pa.array([r.document for r in recs], pa.string()),
             pa.array([None if r.metadata is None else json.dumps(r.metadata, ensure_ascii=False) for r in recs],
                      pa.string())], schema=schema)
        tmp = out / f".part-{files - 1:05d}.parquet.tmp"
        pq.write_table(table, tmp)
        tmp.rename(out / f"part-{files - 1:05d}.parquet")  # a reader never sees a half-written part
    return {"rows": len(ids), "files": files, "out": str(out)}


def _committed(rows: int, batches: int, resume_at: int) -> str:
    if rows == 0:
        return "Nothing was written."
    return (f"{rows} row{'s' * (rows != 1)} ({batches} batch{'es' * (batches != 1)}) were committed before this error "
            f"and stay stored; fix the file, then resume after them with skip_rows={resume_at}, or re-run the whole "
            "file with upsert=True.")


def _cell(row: dict[str, Any], name: str, file: Path, where: str, what: str) -> Any:
    if name not in row:
        raise IngestError(f"{file}, {where}: no {name!r} field (fields: {', '.join(map(str, row))}); "
                          "choose the right field name")
    if row[name] is None or (isinstance(row[name], str) and not row[name].strip()):
        raise IngestError(f"{file}, {where}: the {name!r} value is empty; every row needs {what}")
    return row[name]


def _as_id(row: dict[str, Any], id_field: str, file: Path, where: Callable[[int], str], n: int) -> str:
    if isinstance(row.get(id_field), str) and row[id_field].strip():
        return row[id_field]  # the common case, before any error wording
    where = where(n)  # type: ignore[assignment]
    value = _cell(row, id_field, file, where, "an id")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise IngestError(f"{file}, {where}: id {value!r} must be a string or an integer")
    return str(value)


def _text(row: dict[str, Any], name: str, file: Path, where: Callable[[int], str], n: int) -> str:
    if isinstance(row.get(name), str) and row[name].strip():
        return row[name]
    where = where(n)  # type: ignore[assignment]
    value = _cell(row, name, file, where, "a text to encode")
    if not isinstance(value, str):
        raise IngestError(f"{file}, {where}: the {name!r} value {value!r} is {type(value).__name__}, not text")
    return value


def _vector(row: dict[str, Any], name: str, dim: int, file: Path, where: Callable[[int], str], n: int) -> np.ndarray:
    value = row.get(name)
    problem = _vector_problem(value, dim) if value is not None else "empty"
    if isinstance(problem, np.ndarray):
        return problem
    at = where(n)
    if problem == "empty" or name not in row:
        _cell(row, name, file, at, "a vector, a JSON list of numbers such as [0.1, 0.2, ...]")
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    raise IngestError(f"{file}, {at}: the {name!r} value {shown} {problem}")


def _vector_problem(value: Any, dim: int) -> np.ndarray | str:
    """The vector in ``value`` (a list, or a JSON list in a string) as float32, or what is wrong with it."""
    write = "write it as [0.1, 0.2, ...]"
    if isinstance(value, str):
        if not value.strip():
            return "empty"
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            return f"is not a JSON list of numbers ({exc.msg}); {write}"
    if not isinstance(value, (list, tuple, np.ndarray)):
        return f"is not a JSON list of numbers; {write}"
    try:
        x = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return f"holds values that are not numbers; {write}"
    if x.ndim != 1 or len(x) != dim:
        got = f"{len(x)} numbers" if x.ndim == 1 else f"shape {x.shape}"
        return f"has {got}; the collection's vectors have {dim} numbers"
    if not np.isfinite(x).all():
        return "holds NaN or infinity; vectors must be finite"
    if np.abs(x).max(initial=0.0) >= 3.4e38:
        return "holds a number beyond float32's range"
    return x.astype(np.float32)


def collection_vectors(col: Collection, *, limit: int | None = None, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """The live ids of ``col`` in insertion order and their vectors, a float32 ``(n, dim)`` matrix.

    ``limit`` reads a seeded random sample of at most ``limit`` rows instead (still in
    insertion order; the other vectors are never loaded). An empty collection gives
    ``([], (0, dim) array)``. Vectors are as :meth:`Collection.get` returns them
    (unit length under cosine).

    >>> col = Collection.create(tmp, dim=2)
    >>> _ = col.add(["a", "b"], np.array([[3.0, 4.0], [0.0, 2.0]], np.float32))
    >>> ids, x = collection_vectors(col)
    >>> ids, x.tolist()
    (['a', 'b'], [[0.6000000238418579, 0.800000011920929], [0.0, 1.0]])
    """
    ids = col.ids()
    if limit is not None and len(ids) > limit:
        pick = np.sort(np.random.default_rng(seed).choice(len(ids), limit, replace=False))
        ids = [ids[i] for i in pick]
    if not ids:
        return [], np.zeros((0, col.dim), dtype=np.float32)
    return ids, np.stack([r.vector for r in col.get(ids)]).astype(np.float32, copy=False)


def to_collection(
    path: str | Path,
    source: Any,
    ids: Sequence[Any] | np.ndarray | None = None,
    *,
    metric: str = "cosine",
    batch_size: int = 100_000,
    exist_ok: bool = False,
) -> Collection:
    """Store embeddings in a new collection at ``path``; returns it open.

    ``source`` is one of:

    * a float matrix ``(n, dim)``, with ``ids`` one per row (e.g. FastRP's ``model.nodes_``);
    * a Spark DataFrame with columns ``id`` and ``vector`` (what :func:`vecbox.spark.fastrp`
      returns), brought to the driver as Arrow (``toArrow``), so it must fit in driver memory;
    * the path of a Parquet file or directory with those columns (what
      :func:`vecbox.encoders.graph.save_embeddings` or Spark's ``.write.parquet`` writes),
      streamed batch by batch.

    Ids become ``str(id)``; each batch of ``batch_size`` rows is one atomic commit.

    >>> x = np.eye(3, dtype=np.float32)
    >>> col = to_collection(tmp + "/c", x, ids=[10, 11, 12])
    >>> len(col), col.search(x[1], k=1)[0].id
    (3, '11')
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    if hasattr(source, "sparkSession") or isinstance(source, (str, Path)):
        if ids is not None:
            raise InvalidInputError("ids= is for a vector matrix; a DataFrame or Parquet source brings its 'id' column")
        return _arrow_to_collection(path, source, metric=metric, batch_size=batch_size, exist_ok=exist_ok)
    if ids is None:
        raise InvalidInputError("pass ids= (one per row) with a vector matrix, e.g. to_collection(path, x, ids=model.nodes_)")
    x = as_matrix(source, name="vectors")
    id_list = [str(v) for v in np.asarray(ids).tolist()]
    if len(id_list) != len(x):
        raise InvalidInputError(f"got {len(id_list)} ids for {len(x)} vectors; pass one id per row")
    col = Collection.create(path, dim=int(x.shape[1]), metric=metric, exist_ok=exist_ok)
    for start in range(0, len(id_list), batch_size):
        col.add(id_list[start:start + batch_size], x[start:start + batch_size])
    return col


def _arrow_to_collection(path: str | Path, source: Any, *, metric: str, batch_size: int,
                         exist_ok: bool) -> Collection:
    from vecbox.spark._arrow import vector_matrix

    if hasattr(source, "sparkSession"):
        batches = source.select("id", "vector").toArrow().to_batches(max_chunksize=batch_size)
    else:
        ds = require("pyarrow.dataset", "io", "reading Parquet")
        batches = ds.dataset(str(source), format="parquet").to_batches(columns=["id", "vector"],
                                                                        batch_size=batch_size)
    col = None
    for batch in batches:
        if batch.num_rows == 0:
            continue
        x = vector_matrix(batch.column(1))
        if col is None:
            col = Collection.create(path, dim=int(x.shape[1]), metric=metric, exist_ok=exist_ok)
        col.add([str(v) for v in batch.column(0).to_pylist()], x)
    if col is None:
        raise InvalidInputError("the embeddings are empty; nothing to store")
    return col
