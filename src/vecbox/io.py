"""Files and arrays in and out of collections: JSONL/CSV/Parquet records, vector matrices.

This module sits above :class:`~vecbox.collection.Collection`: the array-only layers
(``encoders``, ``analysis``, ``spark``, ``evaluation``) never see a collection; these
functions move their inputs and outputs in and out of one.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vecbox._optional import require
from vecbox._validation import as_matrix, check_positive_int
from vecbox.collection import Collection
from vecbox.errors import DatasetError, InvalidInputError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def read_records(file: str | Path) -> Iterator[dict[str, Any]]:
    """Stream the rows of a JSONL, CSV or Parquet file as dicts (format from the extension).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.jsonl"
    >>> _ = p.write_text('{"id": "a", "text": "hi"}\\n')
    >>> list(read_records(p))
    [{'id': 'a', 'text': 'hi'}]
    """
    file = Path(file)
    fmt = FORMATS.get(file.suffix.lower())
    if fmt is None:
        raise InvalidInputError(f"cannot tell the format of {file}; use a .jsonl, .csv or .parquet file")
    if not file.is_file():
        raise DatasetError(f"{file} does not exist")
    if fmt == "jsonl":
        with open(file, encoding="utf-8-sig") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{file}, line {lineno}: not valid JSON ({exc.msg}); one JSON object per line") from None
                if not isinstance(row, dict):
                    raise DatasetError(f"{file}, line {lineno}: expected a JSON object, got {type(row).__name__}")
                yield row
    elif fmt == "csv":
        with open(file, encoding="utf-8-sig", newline="") as fh:
            yield from csv.DictReader(fh)
    else:
        pq = require("pyarrow.parquet", "io", "reading Parquet")
        for batch in pq.ParquetFile(file).iter_batches(batch_size=10_000):
            yield from batch.to_pylist()


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
) -> dict[str, Any]:
    """Add every row of ``file`` to the collection at ``path``; each batch is one atomic commit.

    Exactly one of ``text_field`` (encoded with the collection's model, kept as the
    document) or ``vector_field`` (a list of numbers, or a JSON list in CSV) is used.
    Other fields become metadata (all of them unless ``metadata_fields`` is given).
    """
    if (text_field is None) == (vector_field is None):
        raise InvalidInputError("give exactly one of text_field (text to encode) or vector_field (ready vectors)")
    col = Collection.open(path)
    skip = {id_field, text_field, vector_field}
    version, rows, t0 = col.version, 0, time.perf_counter()
    batch: list[dict[str, Any]] = []

    def flush() -> int:
        ids = [_as_id(r, id_field, rows - len(batch) + i + 1) for i, r in enumerate(batch)]
        metas = [{k: v for k, v in r.items() if k not in skip and (metadata_fields is None or k in metadata_fields)}
                 for r in batch]
        if text_field is not None:
            texts = [_field(r, text_field, rows - len(batch) + i + 1) for i, r in enumerate(batch)]
            x = col.encoder.encode(texts, kind="document", show_progress=show_progress)
            docs: list[str] | None = texts
        else:
            x = [_vector(_field(r, vector_field, rows - len(batch) + i + 1)) for i, r in enumerate(batch)]  # type: ignore[arg-type]
            docs = None
        return (col.upsert if upsert else col.add)(ids, x, metas, docs)

    for row in read_records(file):
        batch.append(row)
        rows += 1
        if len(batch) >= batch_size:
            version = flush()
            batch = []
    if batch:
        version = flush()
    if rows == 0:
        raise DatasetError(f"{file} holds no rows; nothing was ingested")
    elapsed = time.perf_counter() - t0
    return {"rows": rows, "version": version, "seconds": elapsed, "rows_per_s": rows / elapsed if elapsed else 0.0}


def _field(row: dict[str, Any], name: str, lineno: int) -> Any:
    if name not in row or row[name] is None:
        raise DatasetError(f"row {lineno} has no {name!r} field (fields: {', '.join(map(str, row))}); choose the right field name")
    return row[name]


def _as_id(row: dict[str, Any], id_field: str, lineno: int) -> str:
    value = _field(row, id_field, lineno)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DatasetError(f"row {lineno}: id {value!r} must be a string or an integer")
    return str(value)


def _vector(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


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
