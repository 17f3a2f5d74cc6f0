"""Checks and helpers shared by the vector jobs on Spark (kNN join, near-duplicates, anomaly scores).

A vector DataFrame has an id column (integers or strings) and a vector column
(``array<float>`` or ``array<double>``, one length for every row). :func:`check_vectors`
validates both in one aggregate pass and names the column in every error. The other
helpers run inside the Python workers: they read a whole partition from Arrow batches and
limit BLAS / FAISS threads to the task's cores, so ``local[2]``'s two workers do not each
start two threads on two cores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from vecbox._optional import require
from vecbox.errors import DatasetError, DimensionMismatchError, InvalidInputError

_INT_TYPES = ("tinyint", "smallint", "int", "bigint")
METRICS = ("cosine", "dot", "l2")


def pyspark(purpose: str) -> Any:
    """pyspark with pyarrow and pandas (the ``spark`` extra), or the error naming the pip command."""
    for name in ("pyarrow", "pandas", "pyspark.sql.functions"):
        require(name, "spark", purpose)
    return require("pyspark", "spark", purpose)


@dataclass(frozen=True)
class VectorFrame:
    """A validated vector DataFrame: ``df`` has exactly the columns ``id`` and ``vector`` (array<float>)."""

    df: Any
    rows: int
    dim: int | None  # None when there are no rows
    id_type: str  # "bigint" or "string"


def check_vectors(df: Any, id_col: str, vector_col: str, role: str, dim: int | None = None) -> VectorFrame:
    """Validate ``df``'s id and vector columns in one pass; return it as ``(id, vector array<float>)``.

    Raises a :class:`~vecbox.errors.VecboxError` naming the column for: a missing column, a
    vector column that is not an array of numbers, ids that are not integers or strings, null
    ids or vectors, vectors of different lengths (or not ``dim`` long), NaN or infinity.
    """
    pyspark("vector jobs on Spark")
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if not hasattr(df, "sparkSession"):
        raise InvalidInputError(f"the {role} must be a Spark DataFrame; got {type(df).__name__}")
    cols = df.columns
    for name, what in ((id_col, "id_col"), (vector_col, "vector_col")):
        if name not in cols:
            raise DatasetError(f"the {role} DataFrame has no column {name!r} (its columns: {', '.join(cols)}); "
                               f"name the right one with {what}=")
    vtype = df.schema[vector_col].dataType
    if not (isinstance(vtype, T.ArrayType) and isinstance(vtype.elementType, (T.FloatType, T.DoubleType))):
        hint = (" (an ML Vector: convert it with pyspark.ml.functions.vector_to_array)"
                if "Vector" in type(vtype).__name__ else "")
        raise InvalidInputError(f"column {vector_col!r} of the {role} is {vtype.simpleString()}{hint}; "
                                "it must be array<float> or array<double>")
    itype = dict(df.dtypes)[id_col]
    if itype not in _INT_TYPES + ("string",):
        raise InvalidInputError(f"column {id_col!r} of the {role} is {itype}; ids must be integers or strings "
                                f"(cast it, e.g. df.withColumn({id_col!r}, df[{id_col!r}].cast('string')))")
    id_type = "string" if itype == "string" else "bigint"
    v = F.col(vector_col)
    bad = F.exists(v, lambda e: e.isNull() | F.isnan(e) | (F.abs(e) == float("inf")))
    stats = df.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.when(F.col(id_col).isNull(), 1).otherwise(0)).alias("null_ids"),
        F.sum(F.when(v.isNull(), 1).otherwise(0)).alias("null_vectors"),
        F.sum(F.when(bad, 1).otherwise(0)).alias("not_finite"),
        F.min(F.size(v)).alias("low"),
        F.max(F.size(v)).alias("high"),
    ).first()
    if stats["null_ids"]:
        raise DatasetError(f"column {id_col!r} of the {role} has {stats['null_ids']} null id(s); drop or fill them")
    if stats["null_vectors"]:
        raise DatasetError(f"column {vector_col!r} of the {role} has {stats['null_vectors']} null vector(s); "
                           "drop or fill those rows")
    if stats["not_finite"]:
        first = df.filter(bad).select(id_col).first()[0]
        raise InvalidInputError(f"column {vector_col!r} of the {role} has {stats['not_finite']} vector(s) holding "
                                f"NaN or infinity (first: id {first!r}); vectors must be finite")
    n = int(stats["n"])
    found = None if n == 0 else int(stats["low"])
    if n and stats["low"] != stats["high"]:
        raise DimensionMismatchError(f"column {vector_col!r} of the {role} holds vectors of {stats['low']} to "
                                     f"{stats['high']} numbers; every row needs the same length")
    if found == 0:
        raise DimensionMismatchError(f"column {vector_col!r} of the {role} holds empty vectors")
    if dim is not None and found is not None and found != dim:
        raise DimensionMismatchError(f"column {vector_col!r} of the {role} holds vectors of {found} numbers, "
                                     f"but the other side's have {dim}; use vectors from the same model")
    out = df.select(F.col(id_col).cast(id_type).alias("id"), v.cast("array<float>").alias("vector"))
    return VectorFrame(out, n, found, id_type)


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise InvalidInputError(f"metric must be one of {', '.join(METRICS)}; got {metric!r}")
    return metric


def check_k(k: Any, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidInputError(f"{name} must be an integer >= 1; got {k!r}")
    return int(k)


# --------------------------------------------------------------------------- inside the Python workers
def read_partition(batches: Iterator[Any], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """All rows of one partition as ``(ids, x)``, sorted by id (so a tie in score goes to the lower id)."""
    import pyarrow as pa

    from vecbox.spark._arrow import vector_matrix

    chunks = [b for b in batches if b.num_rows]
    if not chunks:
        return np.empty(0, dtype=object), np.zeros((0, dim), dtype=np.float32)
    table = pa.Table.from_batches(chunks)
    ids = sortable(table.column("id"))
    x = vector_matrix(table.column("vector"), dim)
    order = np.argsort(ids, kind="stable")
    return ids[order], x[order]


def sortable(column: Any) -> np.ndarray:
    """An Arrow id column as a numpy array numpy can sort: int64, or fixed-width unicode for strings."""
    values = column.to_numpy(zero_copy_only=False) if hasattr(column, "to_numpy") else np.asarray(column)
    if values.dtype.kind in "iu":
        return values.astype(np.int64, copy=False)
    return np.asarray(values.tolist() if values.dtype == object else values, dtype=str)


def arrow_ids(ids: np.ndarray, id_type: str) -> Any:
    import pyarrow as pa

    return pa.array(ids.tolist() if ids.dtype.kind == "U" else ids, pa.string() if id_type == "string" else pa.int64())


@contextlib.contextmanager
def task_threads() -> Iterator[int]:
    """Limit BLAS and FAISS threads to this task's cores (``spark.task.cpus``) while the block runs."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    cores = max(1, int(ctx.cpus())) if ctx is not None else 1
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # then BLAS keeps its own setting
        limits: Any = contextlib.nullcontext()
    else:
        limits = threadpool_limits(cores)
    with limits:
        try:
            import faiss
        except ImportError:
            yield cores
            return
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(cores)
        try:
            yield cores
        finally:
            faiss.omp_set_num_threads(before)


__all__ = ["METRICS", "VectorFrame", "check_vectors", "check_metric", "check_k", "read_partition", "sortable",
           "arrow_ids", "task_threads", "pyspark"]
