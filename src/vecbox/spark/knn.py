"""Exact (and approximate) k-nearest-neighbour joins of two vector DataFrames on Spark.

Layout (docs/ARCHITECTURE.md, "Vector jobs on Spark"):

1. the queries are validated and brought to the driver, then cut into blocks of ``query_block``
   rows; each block is one broadcast variable;
2. for each block, every corpus partition is scanned by one task (``mapInArrow``): the partition
   is sorted by id, its scores against the block are one BLAS product per sub-block of queries,
   and the task emits its own top-k per query, ``(q, neighbour id, score)``; the blocks' scans
   are one ``union``, so all ``blocks × partitions`` tasks run in one Spark job;
3. the candidates (``queries × k × partitions`` rows) are shuffled by query and merged into the
   global top-k per query with one ``lexsort`` per partition.

Scores: ``cosine`` similarity, ``dot`` product (higher is nearer) or ``l2`` Euclidean distance
(lower is nearer). Ties go to the lower neighbour id, so the answer is deterministic.
``exact=False`` replaces the BLAS scan by one FAISS HNSW graph per corpus partition, whose
candidates are rescored exactly; :func:`approximate_recall` measures what that misses.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import reduce
from typing import Any

import numpy as np

from vecbox.errors import InvalidInputError
from vecbox.spark._frames import (
    VectorFrame,
    arrow_ids,
    check_k,
    check_metric,
    check_vectors,
    pyspark,
    read_partition,
    sortable,
    task_threads,
)
from vecbox.spark._arrow import vector_matrix

#: floats of one score matrix inside a task (a sub-block of queries × a corpus partition): 64 MB
SCORE_BUDGET = 1 << 24
OUTPUT_COLUMNS = ("query_id", "neighbor_id", "score", "rank")


def knn_join(
    queries: Any,
    corpus: Any,
    k: int = 10,
    metric: str = "cosine",
    exact: bool = True,
    *,
    exclude_self: bool = False,
    id_col: str = "id",
    vector_col: str = "vector",
    query_block: int | None = None,
    merge_partitions: int | None = None,
    ef_search: int = 128,
    hnsw_m: int = 32,
) -> Any:
    """The ``k`` nearest corpus rows of every query row, as a DataFrame.

    Parameters
    ----------
    queries, corpus : pyspark.sql.DataFrame
        Each with an id column (integers or strings, unique among the queries) and a vector
        column (``array<float>`` or ``array<double>``, all of one length). Pass the same
        DataFrame twice with ``exclude_self=True`` for a k-NN graph.
    k : int
        Neighbours per query; a corpus with fewer rows gives all of them.
    metric : {"cosine", "dot", "l2"}
        ``score`` is the cosine similarity, the inner product, or the Euclidean distance.
    exact : bool
        ``True``: every pair is scored (BLAS). ``False``: one FAISS HNSW graph per corpus
        partition (``hnsw_m`` links, ``ef_search`` depth), its candidates rescored exactly;
        check the recall with :func:`approximate_recall`.
    exclude_self : bool
        Skip corpus rows whose id equals the query's id.
    query_block : int, optional
        Queries per broadcast block. Default: 64 MB of query vectors (43,690 at d = 384).
    merge_partitions : int, optional
        Partitions of the merge shuffle. Default: one per ~4·10⁶ candidate rows, at least the
        cluster's parallelism.

    Returns
    -------
    pyspark.sql.DataFrame
        ``query_id, neighbor_id, score, rank`` (rank 1 = nearest; ties go to the lower
        neighbour id). Ids keep their type (bigint or string); ``score`` is float.

    Examples
    --------
    >>> spark = local_session("local[1]")                                     # doctest: +SKIP
    >>> df = spark.createDataFrame([(1, [1.0, 0.0]), (2, [0.8, 0.6]), (3, [0.0, 1.0])],
    ...                            "id long, vector array<float>")                 # doctest: +SKIP
    >>> [tuple(r) for r in knn_join(df, df, k=1, exclude_self=True).orderBy("query_id").collect()]  # doctest: +SKIP
    [(1, 2, 0.8, 1), (2, 1, 0.8, 1), (3, 2, 0.6, 1)]
    """
    q = check_vectors(queries, id_col, vector_col, "queries")
    c = q if corpus is queries else check_vectors(corpus, id_col, vector_col, "corpus", dim=q.dim)
    return join_frames(q, c, k, metric, exact, exclude_self=exclude_self, query_block=query_block,
                       merge_partitions=merge_partitions, ef_search=ef_search, hnsw_m=hnsw_m)


def join_frames(q: VectorFrame, c: VectorFrame, k: int, metric: str, exact: bool, *, exclude_self: bool,
                query_block: int | None, merge_partitions: int | None, ef_search: int, hnsw_m: int) -> Any:
    """:func:`knn_join` on frames already validated by :func:`~vecbox.spark._frames.check_vectors`."""
    k = check_k(k)
    check_metric(metric)
    spark = c.df.sparkSession
    schema = _output_schema(q.id_type, c.id_type)
    if q.rows == 0 or c.rows == 0:
        return spark.createDataFrame([], schema)
    if exclude_self and q.id_type != c.id_type:
        raise InvalidInputError(f"exclude_self compares query and corpus ids, but they are {q.id_type} and "
                                f"{c.id_type}; cast one side so the types match")
    qids, qx = _collect(q)
    dim = q.dim
    if query_block is None:
        query_block = max(1, (64 << 20) // (4 * dim))
    query_block = check_k(query_block, "query_block")
    sc = spark.sparkContext
    scan = _exact_scan if exact else _hnsw_scan
    qx = _prepare(qx, metric)
    parts = []
    for start in range(0, len(qids), query_block):
        block = sc.broadcast((start, qids[start:start + query_block], qx[start:start + query_block]))
        fn = scan(block, dim, k, metric, exclude_self, ef_search=ef_search, hnsw_m=hnsw_m)
        parts.append(c.df.mapInArrow(fn, f"q bigint, n {c.id_type}, s float"))
    cands = reduce(lambda a, b: a.union(b), parts)
    n_parts = c.df.rdd.getNumPartitions()
    if merge_partitions is None:
        merge_partitions = max(sc.defaultParallelism, math.ceil(len(qids) * min(k, c.rows) * n_parts / 4e6))
    all_ids = sc.broadcast(qids)
    merge = _merge(all_ids, k, metric, q.id_type, c.id_type)
    return cands.repartition(check_k(merge_partitions, "merge_partitions"), "q").mapInArrow(merge, schema)


def approximate_recall(approx: Any, queries: Any, corpus: Any, k: int = 10, metric: str = "cosine", *,
                       exclude_self: bool = False, sample: int = 200, seed: int = 0,
                       id_col: str = "id", vector_col: str = "vector") -> float:
    """recall@k of an approximate :func:`knn_join` result on a seeded sample of its queries.

    The sampled queries are joined exactly and compared with ``approx``'s lists by
    :func:`vecbox.evaluation.metrics.knn_recall` (ties at the k-th place can cost a little).
    """
    from pyspark.sql import functions as F

    from vecbox.evaluation.metrics import knn_recall

    k = check_k(k)
    n = queries.count()
    frac = min(1.0, 1.2 * check_k(sample, "sample") / max(n, 1))
    picked = queries.sample(fraction=frac, seed=seed).limit(sample).select(id_col).distinct()
    truth_q = queries.join(picked, id_col)
    truth = knn_join(truth_q, corpus, k, metric, True, exclude_self=exclude_self, id_col=id_col,
                     vector_col=vector_col)
    found = approx.join(picked.withColumnRenamed(id_col, "query_id"), "query_id").filter(F.col("rank") <= k)
    want, got = _lists(truth), _lists(found)
    keys = sorted(want)
    return float(knn_recall([got.get(q, []) for q in keys], [want[q] for q in keys], k)) if keys else 1.0


def _lists(df: Any) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = {}
    for r in df.select("query_id", "neighbor_id", "rank").orderBy("query_id", "rank").collect():
        out.setdefault(r[0], []).append(r[1])
    return out


def _output_schema(q_type: str, c_type: str) -> str:
    return f"query_id {q_type}, neighbor_id {c_type}, score float, rank int"


def _collect(frame: Any, role: str = "queries") -> tuple[np.ndarray, np.ndarray]:
    """The ids (sortable numpy array, checked unique) and vectors of ``frame``, on the driver."""
    table = frame.df.toArrow()
    ids = sortable(table.column("id"))
    x = vector_matrix(table.column("vector"), frame.dim)
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise InvalidInputError(f"the ids of the {role} must be unique; {uniq[counts > 1][0]!r} appears "
                                f"{counts.max()} times (and {int((counts > 1).sum())} id(s) repeat in all)")
    return ids, x


def _prepare(x: np.ndarray, metric: str) -> np.ndarray:
    """Unit rows for cosine (zero rows stay zero); the vectors as they are otherwise."""
    if metric != "cosine":
        return np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-30), dtype=np.float32)


def topk_positions(s: np.ndarray, k: int) -> np.ndarray:
    """Column positions of each row's ``k`` largest scores, best first; equal scores: lower position first.

    ``-inf`` marks an excluded pair; rows keep ``min(k, columns)`` entries.

    >>> topk_positions(np.array([[0.5, 0.9, 0.5, 0.1]], np.float32), 2).tolist()
    [[1, 0]]
    """
    m, n = s.shape
    if k >= n:
        part = np.broadcast_to(np.arange(n), (m, n)).copy()
    else:
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        rows = np.arange(m)[:, None]
        kth = s[rows, part].min(axis=1)
        # argpartition picks any of the entries tied with the k-th; redo those rows by position
        crowded = np.flatnonzero((s >= kth[:, None]).sum(axis=1) > k)
        for r in crowded:
            cols = np.flatnonzero(s[r] >= kth[r])
            part[r] = cols[np.lexsort((cols, -s[r, cols]))[:k]]
    vals = np.take_along_axis(s, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1)


def _scores(qb: np.ndarray, x: np.ndarray, xn: np.ndarray | None, metric: str) -> np.ndarray:
    """Scores of a query sub-block against a partition, higher = nearer (l2: minus the squared distance)."""
    s = qb @ x.T
    if metric == "l2":
        s *= 2.0
        s -= np.einsum("ij,ij->i", qb, qb)[:, None]
        s -= xn[None, :]
    return s


def _self_pairs(qids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query position, corpus position) of every pair with equal ids."""
    import pandas as pd

    at = pd.Index(qids).get_indexer(ids)
    cols = np.flatnonzero(at >= 0)
    return at[cols], cols


def _emit(start: int, rows: np.ndarray, ids: np.ndarray, cols: np.ndarray, s: np.ndarray, id_type: str) -> Any:
    import pyarrow as pa

    keep = np.isfinite(s)
    return pa.RecordBatch.from_arrays(
        [pa.array((start + rows[keep]).astype(np.int64)), arrow_ids(ids[cols[keep]], id_type),
         pa.array(s[keep].astype(np.float32))], names=["q", "n", "s"])


def _partition(batches: Iterator[Any], dim: int, metric: str) -> tuple[np.ndarray, np.ndarray, str]:
    """A task's corpus partition: ids (sorted), vectors prepared for ``metric``, the ids' Spark type."""
    ids, x = read_partition(batches, dim)
    return ids, _prepare(x, metric), "bigint" if ids.dtype.kind in "iu" else "string"


def _exact_scan(block: Any, dim: int, k: int, metric: str, exclude_self: bool, **_: Any) -> Any:
    def scan(batches: Iterator[Any]) -> Iterator[Any]:
        ids, x, id_type = _partition(batches, dim, metric)
        if not len(ids):
            return
        start, qids, qx = block.value
        self_q, self_c = _self_pairs(qids, ids) if exclude_self else (np.empty(0, np.int64), np.empty(0, np.int64))
        own = np.full(len(qids), -1, dtype=np.int64)  # each query's own row in this partition, or -1
        own[self_q] = self_c
        with task_threads():
            for s0 in range(0, len(qids), 4096):
                qb = qx[s0:s0 + 4096]
                top, vals = exact_topk(qb, x, k, metric, own[s0:s0 + 4096] if exclude_self else None)
                if metric == "l2":  # the expansion loses digits near 0: rescore the k chosen pairs directly
                    diff = qb[:, None, :] - x[top]
                    vals = np.where(np.isfinite(vals), -np.einsum("ijk,ijk->ij", diff, diff), vals)
                rows = np.repeat(np.arange(s0, s0 + len(qb)), top.shape[1])
                yield _emit(start, rows, ids, top.reshape(-1), vals.reshape(-1), id_type)

    return scan


def exact_topk(q: np.ndarray, x: np.ndarray, k: int, metric: str, own: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Positions and scores (higher = nearer; l2: minus the squared distance) of each query's ``k`` best rows.

    Ties go to the lower position; ``own[i]`` (or -1) is a row that query ``i`` must skip. FAISS's
    blocked exact search (``faiss.knn``) picks ``k + 2`` candidates; a row whose k-th score equals the
    next candidate's may have equal rows FAISS left out, so only those rows are redone with numpy.
    Without FAISS, or for tiny partitions, numpy does it all in tiles of at most ``SCORE_BUDGET`` scores.
    """
    n = len(x)
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is None or n < k + 2:
        return _numpy_topk(q, x, k, metric, own)
    d, i = faiss.knn(q, x, k + 2, faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT)
    s = -d if metric == "l2" else d
    if own is not None:
        s[i == own[:, None]] = -np.inf
    order = np.lexsort((i, -s), axis=1)
    i, s = np.take_along_axis(i, order, axis=1), np.take_along_axis(s, order, axis=1)
    crowded = np.flatnonzero(s[:, k - 1] <= s[:, k])
    if len(crowded):
        i[crowded, :k], s[crowded, :k] = _numpy_topk(q[crowded], x, k, metric,
                                                     None if own is None else own[crowded])
    return i[:, :k], s[:, :k]


def _numpy_topk(q: np.ndarray, x: np.ndarray, k: int, metric: str, own: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray]:
    xn = np.einsum("ij,ij->i", x, x) if metric == "l2" else None
    step = max(1, min(len(q), SCORE_BUDGET // max(len(x), 1)))
    tops, vals = [], []
    for s0 in range(0, len(q), step):
        s = _scores(q[s0:s0 + step], x, xn, metric)
        if own is not None:
            rows = np.flatnonzero(own[s0:s0 + step] >= 0)
            s[rows, own[s0:s0 + step][rows]] = -np.inf
        top = topk_positions(s, k)
        tops.append(top)
        vals.append(np.take_along_axis(s, top, axis=1))
    return np.vstack(tops), np.vstack(vals)


def _hnsw_scan(block: Any, dim: int, k: int, metric: str, exclude_self: bool, *, ef_search: int,
               hnsw_m: int) -> Any:
    def scan(batches: Iterator[Any]) -> Iterator[Any]:
        import faiss

        ids, x, id_type = _partition(batches, dim, metric)
        if not len(ids):
            return
        start, qids, qx = block.value
        want = min(len(ids), max(2 * k, k + 10) + int(exclude_self))
        with task_threads():
            index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
            index.hnsw.efSearch = max(int(ef_search), want)
            index.add(x)
            for s0 in range(0, len(qids), 4096):
                qb = qx[s0:s0 + 4096]
                _, cand = index.search(qb, want)
                found = cand >= 0
                cand = np.where(found, cand, 0)  # fewer found than asked: padding, dropped below as -inf
                vecs = x[cand]
                if metric == "l2":
                    diff = qb[:, None, :] - vecs
                    s = -np.einsum("ijk,ijk->ij", diff, diff)
                else:
                    s = np.einsum("ik,ijk->ij", qb, vecs)
                s[~found] = -np.inf
                if exclude_self:
                    s[qids[s0:s0 + len(qb), None] == ids[cand]] = -np.inf
                # ties by id: candidate positions are id-sorted partition positions
                order = np.lexsort((cand, -s), axis=1)[:, :k]
                top = np.take_along_axis(cand, order, axis=1)
                vals = np.take_along_axis(s, order, axis=1)
                rows = np.repeat(np.arange(s0, s0 + len(qb)), top.shape[1])
                yield _emit(start, rows, ids, top.reshape(-1), vals.reshape(-1), id_type)

    return scan


def _merge(all_ids: Any, k: int, metric: str, q_type: str, c_type: str) -> Any:
    def merge(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        chunks = [b for b in batches if b.num_rows]
        if not chunks:
            return
        t = pa.Table.from_batches(chunks)
        q = t.column("q").to_numpy()
        n = sortable(t.column("n"))
        s = t.column("s").to_numpy()
        order = np.lexsort((n, -s, q))
        q, n, s = q[order], n[order], s[order]
        head = np.ones(len(q), dtype=bool)
        head[1:] = q[1:] != q[:-1]
        starts = np.flatnonzero(head)
        rank = np.arange(len(q)) - np.repeat(starts, np.diff(np.append(starts, len(q))))
        keep = rank < k
        q, n, s, rank = q[keep], n[keep], s[keep], rank[keep]
        score = np.sqrt(np.maximum(-s, 0.0)) if metric == "l2" else s
        yield pa.RecordBatch.from_arrays(
            [arrow_ids(all_ids.value[q], q_type), arrow_ids(n, c_type), pa.array(score.astype(np.float32)),
             pa.array((rank + 1).astype(np.int32))], names=list(OUTPUT_COLUMNS))

    return merge


__all__ = ["knn_join", "join_frames", "approximate_recall", "exact_topk", "topk_positions", "OUTPUT_COLUMNS"]
