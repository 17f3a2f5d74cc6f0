"""k-NN anomaly scores of every row of a vector DataFrame on Spark.

The score is :class:`vecbox.analysis.anomaly.KNNDetector`'s with ``index="flat"`` (exact), as
``vecbox.analysis.anomaly.anomaly_scores(x, "knn", k=k)`` gives it on one machine: the
Euclidean distance (not squared, vectors as given, not normalised) from each row to its
k-th nearest *other* row (leave-one-out), or the mean of the k distances. It is one exact
self-join (:func:`vecbox.spark.knn.knn_join`, ``metric="l2"``, ``exclude_self=True``) and an
aggregation per row.
"""

from __future__ import annotations

from typing import Any

from vecbox.errors import InvalidInputError
from vecbox.spark._frames import check_k, check_vectors
from vecbox.spark.knn import join_frames


def anomaly_scores(df: Any, k: int = 10, *, method: str = "largest", id_col: str = "id",
                   vector_col: str = "vector", query_block: int | None = None,
                   merge_partitions: int | None = None) -> Any:
    """``id, score`` for every row of ``df``: its k-th nearest other row's Euclidean distance.

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        Unique ids and vectors, as :func:`~vecbox.spark.knn.knn_join` takes them.
    k : int
        Neighbours; ``df`` needs at least ``k + 1`` rows (as ``KNNDetector``).
    method : {"largest", "mean"}
        The k-th distance, or the mean of the k distances (``KNNDetector(method=...)``).
    query_block, merge_partitions
        As :func:`~vecbox.spark.knn.knn_join` takes them.

    Returns
    -------
    pyspark.sql.DataFrame
        ``id`` (named ``id_col``) and ``score`` (double, higher = more anomalous).

    Examples
    --------
    >>> anomaly_scores(df, k=5).orderBy("score", ascending=False).show(10)   # doctest: +SKIP
    """
    from pyspark.sql import functions as F

    k = check_k(k)
    if method not in ("largest", "mean"):
        raise InvalidInputError(f"method must be 'largest' or 'mean'; got {method!r}")
    frame = check_vectors(df, id_col, vector_col, "DataFrame")
    if frame.rows < k + 1:
        raise InvalidInputError(f"anomaly scores with k={k} need at least {k + 1} rows; the DataFrame has "
                                f"{frame.rows}. Pass more rows or a lower k")
    pairs = join_frames(frame, frame, k, "l2", True, exclude_self=True, query_block=query_block,
                        merge_partitions=merge_partitions, ef_search=128, hnsw_m=32)
    agg = F.max("score") if method == "largest" else F.avg("score")
    return pairs.groupBy("query_id").agg(agg.cast("double").alias("score")).withColumnRenamed("query_id", id_col)


__all__ = ["anomaly_scores"]
