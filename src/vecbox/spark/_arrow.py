"""Embedding tables in Arrow (``id``, ``vector: list<float>``) as numpy arrays.

The layout is the one :func:`vecbox.spark.fastrp` returns and
:func:`vecbox.encoders.graph.save_embeddings` writes to Parquet. Only pyarrow is
imported (lazily, by the functions that need it); pyspark never is: a DataFrame is
used through its own ``select`` and ``toArrow`` methods.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vecbox.errors import DatasetError


def vector_matrix(column: Any, dim: int | None = None) -> np.ndarray:
    """A ``list<float>`` Arrow column (Array or ChunkedArray, no nulls) as a float32 ``(n, dim)`` matrix.

    ``dim`` is the known vector length; without it the length is read from the column, and
    rows of different lengths raise :class:`~vecbox.errors.DatasetError`. No rows give ``(0, dim)``
    (``(0, 0)`` when ``dim`` is not given).

    >>> import pyarrow as pa
    >>> vector_matrix(pa.array([[1.0, 2.0], [3.0, 4.0]]))
    array([[1., 2.],
           [3., 4.]], dtype=float32)
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    if n == 0:
        return np.zeros((0, dim or 0), dtype=np.float32)
    if dim is None:
        if column.null_count:
            raise DatasetError(f"{column.null_count} vector(s) are missing (null); drop or fill those rows")
        lengths = pc.min_max(pc.list_value_length(column))
        low, high = lengths["min"].as_py(), lengths["max"].as_py()
        if low != high:
            raise DatasetError(f"the vectors have different lengths ({low} to {high}); every row needs the same")
        dim = int(low)
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat, dtype=np.float32).reshape(n, dim)


def embeddings_to_numpy(df: Any) -> tuple[np.ndarray, np.ndarray]:
    """Bring a DataFrame with columns ``id`` and ``vector`` to the driver as ``(ids, x)``.

    ``ids`` is an object array of the ids as Python values (int or str, in row order) and
    ``x`` a float32 ``(n, dim)`` matrix. The whole table travels through Arrow
    (``DataFrame.toArrow``), so it must fit in driver memory; for larger outputs write
    Parquet and stream it (:func:`vecbox.io.to_collection` reads Parquet batch by batch).
    """
    table = df.select("id", "vector").toArrow()
    x = vector_matrix(table.column("vector"))
    ids = np.empty(len(x), dtype=object)
    ids[:] = table.column("id").to_pylist()
    return ids, x


__all__ = ["embeddings_to_numpy", "vector_matrix"]
