"""Near-duplicate pairs and groups of a vector DataFrame on Spark.

The pairs come from the kNN join's scan (:mod:`vecbox.spark.knn`: queries broadcast in blocks,
each corpus partition scored with BLAS), keeping every pair at or above the cosine threshold
instead of a top-k, each unordered pair once (``id_a < id_b``). The groups are the connected
components of those pairs, found on the driver with :func:`scipy.sparse.csgraph.connected_components`
(the pairs must fit there; at a threshold meant for duplicates they are few).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import reduce
from typing import Any, NamedTuple

import numpy as np

from vecbox.errors import InvalidInputError
from vecbox.spark._frames import arrow_ids, check_vectors, read_partition, sortable, task_threads
from vecbox.spark.knn import SCORE_BUDGET, _collect, _prepare


class NearDuplicates(NamedTuple):
    """``pairs``: ``id_a, id_b, score`` (``id_a < id_b``); ``groups``: ``id, group, size`` (group = its lowest id)."""

    pairs: Any
    groups: Any


def near_duplicates(df: Any, threshold: float = 0.95, *, id_col: str = "id", vector_col: str = "vector",
                    query_block: int | None = None) -> NearDuplicates:
    """Every pair of rows whose cosine similarity is at least ``threshold``, and the groups they form.

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        Unique ids (integers or strings) and vectors (``array<float>``/``array<double>``).
    threshold : float
        Cosine similarity in [-1, 1]; pairs scoring ``>= threshold`` are duplicates.
    query_block : int, optional
        Rows per broadcast block (default: 64 MB of vectors).

    Returns
    -------
    NearDuplicates
        ``pairs`` (a lazy DataFrame ``id_a, id_b, score``) and ``groups`` (a DataFrame
        ``id, group, size`` listing every row that has at least one duplicate; ``group`` is the
        lowest id of its connected component, ``size`` the component's row count).

    Examples
    --------
    >>> res = near_duplicates(df, 0.98)                                    # doctest: +SKIP
    >>> res.groups.orderBy("id").show()                                    # doctest: +SKIP
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not -1.0 <= threshold <= 1.0:
        raise InvalidInputError(f"threshold must be a cosine similarity in [-1, 1]; got {threshold!r}")
    frame = check_vectors(df, id_col, vector_col, "DataFrame")
    spark = df.sparkSession
    pair_schema = f"id_a {frame.id_type}, id_b {frame.id_type}, score float"
    group_schema = f"id {frame.id_type}, group {frame.id_type}, size bigint"
    if frame.rows == 0:
        return NearDuplicates(spark.createDataFrame([], pair_schema), spark.createDataFrame([], group_schema))
    ids, x = _collect(frame, "DataFrame")
    x = _prepare(x, "cosine")
    block = query_block or max(1, (64 << 20) // (4 * frame.dim))
    sc = spark.sparkContext
    parts = [frame.df.mapInArrow(_range_scan(sc.broadcast((ids[s:s + block], x[s:s + block])), frame.dim,
                                             float(threshold), frame.id_type), pair_schema)
             for s in range(0, len(ids), block)]
    pairs = reduce(lambda a, b: a.union(b), parts)
    return NearDuplicates(pairs, _groups(pairs, spark, group_schema))


def components(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Connected components of the pairs ``(a[i], b[i])``: ``(ids, group, size)``, group = lowest id.

    >>> [v.tolist() for v in components(np.array([1, 5, 7]), np.array([2, 2, 8]))]
    [[1, 2, 5, 7, 8], [1, 1, 1, 7, 7], [3, 3, 3, 2, 2]]
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nodes, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    m = len(a)
    graph = coo_matrix((np.ones(m, dtype=np.int8), (inv[:m], inv[m:])), shape=(len(nodes), len(nodes)))
    _, label = connected_components(graph, directed=False)
    first = np.full(label.max() + 1 if len(label) else 0, len(nodes))
    np.minimum.at(first, label, np.arange(len(nodes)))  # nodes are sorted: the lowest position is the lowest id
    size = np.bincount(label)
    return nodes, nodes[first[label]], size[label]


def _groups(pairs: Any, spark: Any, schema: str) -> Any:
    import pandas as pd

    table = pairs.select("id_a", "id_b").toArrow()
    if table.num_rows == 0:
        return spark.createDataFrame([], schema)
    nodes, group, size = components(sortable(table.column("id_a")), sortable(table.column("id_b")))
    cast = (lambda v: v.tolist()) if nodes.dtype.kind == "U" else (lambda v: v.astype(np.int64))
    frame = pd.DataFrame({"id": cast(nodes), "group": cast(group), "size": size.astype(np.int64)})
    return spark.createDataFrame(frame, schema)


def _range_scan(block: Any, dim: int, threshold: float, id_type: str) -> Any:
    def scan(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        ids, x = read_partition(batches, dim)
        if not len(ids):
            return
        qids, qx = block.value
        x = _prepare(x, "cosine")
        step = max(1, min(len(qids), SCORE_BUDGET // len(ids), 4096))
        with task_threads():
            for s0 in range(0, len(qids), step):
                s = qx[s0:s0 + step] @ x.T
                hit = (s >= np.float32(threshold)) & (qids[s0:s0 + step, None] < ids[None, :])
                r, c = np.nonzero(hit)
                if len(r):
                    yield pa.RecordBatch.from_arrays(
                        [arrow_ids(qids[s0 + r], id_type), arrow_ids(ids[c], id_type), pa.array(s[r, c])],
                        names=["id_a", "id_b", "score"])

    return scan


__all__ = ["near_duplicates", "NearDuplicates", "components"]
