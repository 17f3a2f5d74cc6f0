"""FastRP on Spark DataFrames: the same numbers as :class:`vecbox.encoders.graph.FastRP`.

Layout (see docs/ARCHITECTURE.md, "Graph embeddings (FastRP) and Spark"):

- every node belongs to one of ``num_blocks`` blocks, ``pmod(xxhash64(id), num_blocks)``;
- the edge table ``(block(src), src, dst, coefficient)`` is shuffled once, by block, and cached;
- the routing table ``(dst, block)`` lists which blocks need which node's vector;
- the node state ``(id, block, x, acc)`` holds each node's current iterate and running sum.

One hop joins the state with the routing table (each vector travels once to every block
that has an edge pointing at it, not once per edge), cogroups those copies and the
blocks' own ``acc`` rows with the block's edges, and multiplies a local CSR matrix by the
received vectors with scipy inside ``applyInArrow``. The random rows are computed from
(seed, node id) on the executors with the same function as the local version, so no
projection matrix is ever shipped.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vecbox._optional import require
from vecbox.encoders.graph import (
    DEFAULT_BETA,
    DEFAULT_WEIGHTS,
    GDS_SPARSITY,
    degree_scale,
    finish_stats,
    l2_normalize_rows,
    node_keys,
    resolve_params,
    sparse_projection,
)
from vecbox.encoders._graph_io import DST_NAMES, SRC_NAMES, WEIGHT_NAMES
from vecbox.errors import DatasetError, InvalidInputError
from vecbox.spark._arrow import vector_matrix

_INT_TYPES = ("tinyint", "smallint", "int", "bigint")


def _pyspark() -> Any:
    """pyspark (>= 4.0, with pandas and pyarrow: the ``spark`` extra), or the error naming the pip command."""
    for name in ("pyarrow", "pyspark.sql.functions"):
        require(name, "spark", "FastRP on Spark")
    return require("pyspark", "spark", "FastRP on Spark")


# --------------------------------------------------------------------------- sessions and input
def local_session(master: str = "local[2]", app_name: str = "vecbox", shuffle_partitions: int = 8,
                  conf: dict[str, str] | None = None) -> Any:
    """A SparkSession for one machine (or ``master`` of a cluster), set up for vecbox.

    Binds the driver to 127.0.0.1 for ``local[...]`` masters, turns off the web UI and the
    console progress bar, and runs Python workers with this interpreter (``PYSPARK_PYTHON``
    is set for this process if it is unset, so executors import the same vecbox).
    """
    _pyspark()
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (SparkSession.builder.master(master).appName(app_name)
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
               .config("spark.sql.execution.arrow.pyspark.enabled", "true"))
    if master.startswith("local"):
        builder = (builder.config("spark.driver.host", "127.0.0.1")
                   .config("spark.driver.bindAddress", "127.0.0.1"))
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def read_edges(spark: Any, path: str | Path, *, src: str | None = None, dst: str | None = None,
               weight: str | None = None, header: bool | None = None, delimiter: str | None = None) -> Any:
    """Read an edge list (TSV/CSV/text or Parquet) into a DataFrame with columns ``src, dst[, weight]``.

    The column rules are those of :func:`vecbox.encoders.graph.read_edges`: a header row is
    detected from known names (``src``/``source``, ``dst``/``target``, ``weight``); without one
    the columns are ``src, dst[, weight]``.
    """
    _pyspark()
    from pyspark.sql import functions as F

    path = str(path)
    if path.lower().endswith((".parquet", ".pq")) or Path(path).is_dir():
        df = spark.read.parquet(path)
        has_header = True
    else:
        lines = spark.read.text(path).filter(~F.col("value").startswith("#")).limit(1).collect()
        if not lines:
            raise DatasetError(f"{path} has no edges; expected lines like 'src<TAB>dst[<TAB>weight]'")
        first = lines[0][0]
        sep = delimiter or ("\t" if path.lower().endswith(".tsv") or "\t" in first else
                            "," if path.lower().endswith(".csv") or "," in first else " ")
        fields = [f.strip() for f in first.split(sep)]
        known = {n for n in SRC_NAMES + DST_NAMES + WEIGHT_NAMES}
        has_header = any(f.lower() in known for f in fields) if header is None else header
        df = spark.read.csv(path, sep=sep, header=has_header, inferSchema=True, comment="#")
    cols = df.columns
    if not has_header:
        if src or dst or weight:
            raise DatasetError(f"{path} has no header row, so src=/dst=/weight= cannot name columns; add a header")
        if len(cols) < 2 or len(cols) > 3:
            raise DatasetError(f"{path} has {len(cols)} column(s); expected 2 or 3 (src, dst[, weight])")
        names = ["src", "dst", "weight"][: len(cols)]
        return df.toDF(*names)
    s = _pick(cols, src, SRC_NAMES, "source", path)
    d = _pick(cols, dst, DST_NAMES, "target", path)
    w = _pick(cols, weight, WEIGHT_NAMES, "weight", path, required=weight is not None)
    out = [F.col(s).alias("src"), F.col(d).alias("dst")] + ([F.col(w).alias("weight")] if w else [])
    return df.select(*out)


def _pick(cols: list[str], given: str | None, candidates: Sequence[str], role: str, where: str,
          required: bool = True) -> str | None:
    lower = {c.lower(): c for c in cols}
    if given is not None:
        if given.lower() not in lower:
            raise DatasetError(f"{where} has no column {given!r}; its columns are {cols}")
        return lower[given.lower()]
    for cand in candidates:
        if cand in lower:
            return lower[cand]
    if not required:
        return None
    raise DatasetError(f"{where} has columns {cols} but no {role} column; name it one of {list(candidates)}")


# --------------------------------------------------------------------------- arrow helpers (run on executors)
def _list_array(x: np.ndarray) -> Any:
    import pyarrow as pa

    n, d = x.shape
    offsets = pa.array(np.arange(0, n * d + 1, d, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(x, dtype=np.float32).reshape(-1)))


def _positions(universe: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of each of ``values`` in ``universe`` (all present)."""
    if universe.dtype.kind in "iu" and values.dtype.kind in "iu":
        order = np.argsort(universe, kind="stable")
        return order[np.searchsorted(universe, values, sorter=order)]
    lookup = {v: i for i, v in enumerate(universe.tolist())}
    return np.fromiter((lookup[v] for v in values.tolist()), dtype=np.int64, count=len(values))


def _ids(col: Any) -> np.ndarray:
    return col.to_numpy(zero_copy_only=False) if hasattr(col, "to_numpy") else np.asarray(col)


# --------------------------------------------------------------------------- the algorithm
def fastrp(
    edges_df: Any,
    dim: int = 128,
    *,
    weights: Sequence[float] | None = None,
    beta: float | None = None,
    seed: int = 0,
    variant: str = "reference",
    normalize: bool = True,
    node_self_influence: float = 0.0,
    directed: bool = False,
    self_loops: str = "error",
    nodes_df: Any = None,
    src: str = "src",
    dst: str = "dst",
    weight: str | None = None,
    num_blocks: int | None = None,
    checkpoint: str = "local",
) -> Any:
    """FastRP embeddings of every node of a graph held in a Spark DataFrame.

    Parameters are those of :class:`vecbox.encoders.graph.FastRP` (same defaults, same
    results for the same seed, up to float32 rounding), plus:

    Parameters
    ----------
    edges_df : pyspark.sql.DataFrame
        One row per edge: ``src``, ``dst`` and optionally ``weight`` (names configurable).
        Ids must be integers or strings, the same type in both columns. (Node features,
        ``property_ratio`` of the GDS variant, are supported by the local FastRP only.)
    nodes_df : DataFrame, optional
        Extra node ids (column ``id``), e.g. isolated nodes.
    weight : str, optional
        Weight column. Default: the column ``weight`` if there is one, else every edge weighs 1.
    num_blocks : int, optional
        Number of node blocks (partitions of the per-hop multiplication). Default: the
        cluster's default parallelism, raised so that one block holds at most ~2·10⁶ edges.
    checkpoint : {"local", "reliable", "none"}
        How each hop's state is materialised: ``localCheckpoint`` (fast; lost with an
        executor), ``checkpoint`` (to the SparkContext's checkpoint directory, which you
        set), or plain caching.

    Returns
    -------
    pyspark.sql.DataFrame
        Columns ``id`` (the input's type) and ``vector`` (array<float>, ``dim`` long).
        Write it with ``.write.parquet(path)``; load it with
        :func:`vecbox.encoders.graph.load_embeddings` or :func:`vecbox.io.to_collection`.
    """
    _pyspark()
    from pyspark.sql import functions as F

    p = resolve_params({"dim": dim, "weights": weights, "beta": beta, "seed": seed, "variant": variant,
                        "normalize": normalize, "node_self_influence": node_self_influence,
                        "directed": directed, "self_loops": self_loops})
    if self_loops not in ("error", "drop", "keep"):
        raise InvalidInputError(f"self_loops must be 'error', 'drop' or 'keep'; got {self_loops!r}")
    if checkpoint not in ("local", "reliable", "none"):
        raise InvalidInputError(f"checkpoint must be 'local', 'reliable' or 'none'; got {checkpoint!r}")
    spark = edges_df.sparkSession
    raw, id_type = _clean_edges(edges_df, src, dst, weight, p)
    nodes = raw.select(F.col("src").alias("id")).union(raw.select(F.col("dst").alias("id")))
    edges = _combine(raw, p)
    if nodes_df is not None:
        if "id" not in nodes_df.columns:
            raise InvalidInputError(f"nodes_df needs an 'id' column; it has {nodes_df.columns}")
        nodes = nodes.union(nodes_df.select(F.col("id").cast(id_type).alias("id")))
    nodes = nodes.distinct()

    # degrees: weighted out-degree (reference) or number of out-edges (GDS)
    deg_expr = F.sum("w") if p["variant"] == "reference" else F.count(F.lit(1))
    degrees = edges.groupBy("src").agg(deg_expr.cast("double").alias("deg"))
    n_nodes = nodes.count()
    n_edges = edges.count()
    if num_blocks is None:
        num_blocks = max(spark.sparkContext.defaultParallelism, math.ceil(n_edges / 2_000_000))
    blocks = int(num_blocks)
    if blocks < 1:
        raise InvalidInputError(f"num_blocks must be a positive integer; got {num_blocks!r}")
    block_of = lambda c: F.pmod(F.xxhash64(c), F.lit(blocks)).cast("int")  # noqa: E731

    if p["variant"] == "reference":
        coef = F.col("w") / F.col("deg")
    else:
        coef = F.col("w")
    adj = (edges.join(degrees, "src")
           .select(block_of(F.col("src")).alias("block"), "src", "dst", coef.cast("float").alias("c"))
           .repartition(blocks, "block"))
    adj = _materialise(adj, checkpoint)
    # (aliasing gives the routing table's columns their own identity: it is cogrouped with adj later)
    routing = _materialise(adj.select(F.col("dst").alias("id"), F.col("block").alias("block")).distinct(), checkpoint)

    node_table = (nodes.join(degrees.withColumnRenamed("src", "id"), "id", "left")
                  .select("id", block_of(F.col("id")).alias("block"), F.coalesce("deg", F.lit(0.0)).alias("deg")))
    state_schema = f"id {id_type}, block int, x array<float>, acc array<float>"
    init = _initial_state(p, n_nodes)
    state = _materialise(node_table.repartition(blocks, "block").mapInArrow(init, state_schema), checkpoint)

    for alpha in p["weights"]:
        routed = routing.join(state.select("id", "x"), "id").select(
            "block", "id", F.lit(0).alias("role"), "x", F.lit(None).cast("array<float>").alias("acc"))
        own = state.select("block", "id", F.lit(1).alias("role"), F.lit(None).cast("array<float>").alias("x"), "acc")
        hop = _hop(p, alpha)
        nxt = (routed.unionByName(own).groupBy("block")
               .cogroup(adj.groupBy("block"))
               .applyInArrow(hop, state_schema))
        nxt = _materialise(nxt, checkpoint)
        state.unpersist()
        state = nxt
    adj.unpersist()
    routing.unpersist()

    if p["variant"] == "gds":
        return state.select("id", F.col("acc").alias("vector"))
    sums = state.select("acc").mapInArrow(_partial_sums(p["dim"]), "s array<double>, ss array<double>, n long").collect()
    s = np.sum([np.asarray(r["s"]) for r in sums], axis=0)
    ss = np.sum([np.asarray(r["ss"]) for r in sums], axis=0)
    mean, std = finish_stats(s, ss, int(sum(r["n"] for r in sums)))
    return state.select("id", "acc").mapInArrow(_standardise(p["dim"], mean, std), f"id {id_type}, vector array<float>")


def _clean_edges(df: Any, src: str, dst: str, weight: str | None, p: dict[str, Any]) -> tuple[Any, str]:
    """Validate the edge table (one aggregate pass) and select it as ``(src, dst, w)``."""
    from pyspark.sql import functions as F

    cols = df.columns
    if weight is None and "weight" in cols:
        weight = "weight"
    missing = [c for c in (src, dst) + ((weight,) if weight is not None else ()) if c not in cols]
    if missing:
        raise DatasetError(f"the edge DataFrame has columns {cols} but no {missing}; "
                           f"pass src=, dst= (and weight=) to name the columns")
    types = dict(df.dtypes)
    t_src, t_dst = types[src], types[dst]
    def kind(t: str) -> str:
        return "bigint" if t in _INT_TYPES else "string" if t == "string" else t
    if kind(t_src) != kind(t_dst) or kind(t_src) not in ("bigint", "string"):
        raise InvalidInputError(f"node ids must be integers or strings, the same in src and dst; got {t_src} and "
                                f"{t_dst}. Cast them, e.g. df.withColumn('{src}', df['{src}'].cast('long'))")
    id_type = kind(t_src)
    w = F.col(weight).cast("double") if weight is not None else F.lit(1.0)
    e = df.select(F.col(src).cast(id_type).alias("src"), F.col(dst).cast(id_type).alias("dst"), w.alias("w"))
    bad_w = F.col("w").isNull() | F.isnan("w") | (F.col("w") < 0) | (F.abs("w") == float("inf"))
    stats = e.agg(
        F.sum(F.when(F.col("src").isNull() | F.col("dst").isNull(), 1).otherwise(0)).alias("null_ids"),
        F.sum(F.when(bad_w, 1).otherwise(0)).alias("bad_w"),
        F.sum(F.when(F.col("src") == F.col("dst"), 1).otherwise(0)).alias("loops"),
        F.count(F.lit(1)).alias("m"),
    ).first()
    if not stats["m"]:
        raise InvalidInputError("the edge DataFrame is empty; pass at least one edge")
    if stats["null_ids"]:
        raise InvalidInputError(f"{stats['null_ids']} edge(s) have a missing src or dst; drop them first")
    if stats["bad_w"]:
        row = e.filter(bad_w).first()
        raise InvalidInputError(
            f"{stats['bad_w']} edge weight(s) are negative or not finite (first: {row['src']!r} -> {row['dst']!r} "
            f"has weight {row['w']!r}); FastRP needs finite weights >= 0 - fix or drop those edges")
    if stats["loops"]:
        if p["self_loops"] == "error":
            row = e.filter(F.col("src") == F.col("dst")).first()
            raise InvalidInputError(
                f"the graph has {stats['loops']} self-loop(s) (first: {row['src']!r} -> {row['dst']!r}); FastRP "
                "expects none. Remove them or pass self_loops='drop' (or 'keep')")
    return e, id_type


def _combine(e: Any, p: dict[str, Any]) -> Any:
    """Apply the local rules: drop loops if asked, add up repeats, mirror undirected edges, drop weight 0."""
    from pyspark.sql import functions as F

    if p["self_loops"] == "drop":
        e = e.filter(F.col("src") != F.col("dst"))
    e = e.groupBy("src", "dst").agg(F.sum("w").alias("w"))  # repeated edges add up
    if not p["directed"]:  # each pair takes the larger of its two directions' weights
        e = (e.union(e.select(F.col("dst").alias("src"), F.col("src").alias("dst"), "w"))
             .groupBy("src", "dst").agg(F.max("w").alias("w")))
    return e.filter(F.col("w") > 0)


def _materialise(df: Any, checkpoint: str) -> Any:
    """Compute ``df`` now and cut its lineage (each hop would otherwise replay all earlier ones)."""
    from pyspark import StorageLevel

    if checkpoint == "local":
        return df.localCheckpoint(eager=True)
    if checkpoint == "reliable":
        return df.checkpoint(eager=True)
    df = df.persist(StorageLevel.MEMORY_AND_DISK)
    df.count()
    return df


def _initial_state(p: dict[str, Any], n_nodes: int) -> Any:
    dim, seed, beta, variant = p["dim"], p["seed"], p["beta"], p["variant"]
    self_influence = p["node_self_influence"]

    def init(batches: Any) -> Any:
        import pyarrow as pa

        for batch in batches:
            ids = _ids(batch.column("id"))
            keys = node_keys(ids)
            deg = batch.column("deg").to_numpy(zero_copy_only=False)
            if variant == "reference":
                density = 1.0 / math.sqrt(n_nodes)
                x = sparse_projection(keys, dim, density, math.sqrt(1.0 / density) / math.sqrt(dim), seed)
                acc = np.zeros_like(x)
            else:
                x = sparse_projection(keys, dim, 1.0 / GDS_SPARSITY, math.sqrt(GDS_SPARSITY) / math.sqrt(dim), seed)
                acc = np.zeros_like(x)
                if self_influence != 0:
                    acc += np.float32(self_influence) * l2_normalize_rows(x * degree_scale(deg, beta)[:, None])
            x *= degree_scale(deg, beta)[:, None]
            yield pa.RecordBatch.from_arrays(
                [batch.column("id"), batch.column("block"), _list_array(x), _list_array(acc)],
                names=["id", "block", "x", "acc"])

    return init


def _hop(p: dict[str, Any], alpha: float) -> Any:
    dim, variant, normalize = p["dim"], p["variant"], p["normalize"]

    def hop(left: Any, right: Any) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc
        import scipy.sparse as sp

        own = left.filter(pc.equal(left.column("role"), 1))
        nb = left.filter(pc.equal(left.column("role"), 0))
        own_ids = _ids(own.column("id"))
        acc = vector_matrix(own.column("acc"), dim).copy()
        y = np.zeros((len(own_ids), dim), dtype=np.float32)
        if right.num_rows and len(own_ids):
            nb_ids = _ids(nb.column("id"))
            xs = vector_matrix(nb.column("x"), dim)
            rows = _positions(own_ids, _ids(right.column("src")))
            cols = _positions(nb_ids, _ids(right.column("dst")))
            c = right.column("c").to_numpy(zero_copy_only=False).astype(np.float32)
            m = sp.csr_matrix((c, (rows, cols)), shape=(len(own_ids), len(nb_ids)), dtype=np.float32)
            m.sum_duplicates()
            m.sort_indices()
            y = np.asarray(m @ xs, dtype=np.float32)
        if variant == "gds":
            y = l2_normalize_rows(y)
            if alpha != 0:
                acc += np.float32(alpha) * y
        elif alpha != 0:
            acc += np.float32(alpha) * (l2_normalize_rows(y) if normalize else y)
        block = own.column("block")
        return pa.table({"id": own.column("id"), "block": block, "x": _list_array(y), "acc": _list_array(acc)})

    return hop


def _partial_sums(dim: int) -> Any:
    def sums(batches: Any) -> Any:
        import pyarrow as pa

        s, ss, n = np.zeros(dim), np.zeros(dim), 0
        for batch in batches:
            x = vector_matrix(batch.column("acc"), dim).astype(np.float64)
            s += x.sum(axis=0)
            ss += np.einsum("ij,ij->j", x, x)
            n += len(x)
        yield pa.RecordBatch.from_arrays(
            [pa.array([s.tolist()], pa.list_(pa.float64())), pa.array([ss.tolist()], pa.list_(pa.float64())),
             pa.array([n], pa.int64())], names=["s", "ss", "n"])

    return sums


def _standardise(dim: int, mean: np.ndarray, std: np.ndarray) -> Any:
    mean32, std32 = mean.astype(np.float32), std.astype(np.float32)

    def apply(batches: Any) -> Any:
        import pyarrow as pa

        for batch in batches:
            x = vector_matrix(batch.column("acc"), dim)
            x = (x - mean32) / std32
            yield pa.RecordBatch.from_arrays([batch.column("id"), _list_array(x)], names=["id", "vector"])

    return apply


__all__ = ["fastrp", "read_edges", "local_session", "DEFAULT_WEIGHTS", "DEFAULT_BETA"]
