"""``vecbox spark encode | knn | dedup | anomalies | export``: the vector jobs on Apache Spark.

Each command starts a SparkSession on ``--master`` (``local[2]`` by default), reads its input
(Parquet file or directory, JSONL, or CSV for ``encode``), writes a Parquet directory and prints
a summary (``--json`` for machines). Spark's own stage progress bar is shown on stderr unless
``--json`` is given. Without Java or pyspark the command stops with one line saying what to install.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from vecbox.cli._render import JsonOpt, PathArg, emit, err_console
from vecbox.errors import InvalidInputError, MissingDependencyError

spark_app = typer.Typer(help="Vector jobs on Apache Spark: encode texts, k-NN joins, near-duplicates, anomaly "
                             "scores, and collections out to Parquet.", no_args_is_help=True)

MasterOpt = Annotated[str, typer.Option("--master", help="Spark master URL, e.g. local[2] or spark://host:7077.")]
IdOpt = Annotated[str, typer.Option("--id-col", help="Id column (integers or strings).")]
VectorOpt = Annotated[str, typer.Option("--vector-col", help="Vector column (array of numbers).")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output Parquet directory (replaced if it exists).")]
InputArg = Annotated[Path, typer.Argument(help="Parquet file or directory, or JSONL (CSV for encode).")]


def session(master: str, as_json: bool) -> Any:
    """A SparkSession on ``master``, or a :class:`MissingDependencyError` naming what to install."""
    if not os.environ.get("JAVA_HOME") and shutil.which("java") is None:
        raise MissingDependencyError("Spark needs a Java runtime (17 or 21) and none was found; install one (e.g. "
                                     "apt-get install openjdk-17-jre-headless) or set JAVA_HOME")
    from vecbox.spark._frames import pyspark

    pyspark("vecbox spark")
    from vecbox.spark import local_session

    return local_session(master, app_name="vecbox-cli",
                         conf={"spark.ui.showConsoleProgress": "false" if as_json else "true"})


def read_frame(spark: Any, path: Path) -> Any:
    """A DataFrame of a Parquet file/directory, a JSONL file or a CSV file (with a header row)."""
    if not path.exists():
        raise InvalidInputError(f"{path} does not exist")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in (".parquet", ".pq"):
        return spark.read.parquet(str(path))
    if suffix in (".jsonl", ".ndjson", ".json"):
        return spark.read.json(str(path))
    if suffix == ".csv":
        return spark.read.csv(str(path), header=True, inferSchema=True, multiLine=True, escape='"')
    raise InvalidInputError(f"cannot tell the format of {path}; use Parquet (a file or a directory), JSONL or CSV")


def _write(df: Any, out: Path) -> int:
    df.write.mode("overwrite").parquet(str(out))
    return df.sparkSession.read.parquet(str(out)).count()


def _table(title: str, columns: tuple[str, str], rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(columns[0])
    table.add_column(columns[1], justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def _done(result: dict[str, Any], t0: float, as_json: bool, text: str, extra: Any = None) -> None:
    result["seconds"] = round(time.perf_counter() - t0, 3)
    emit(result, as_json, lambda: [escape(f"{text} in {result['seconds']:.1f} s -> {result.get('out', '')}"), extra])


@spark_app.command("encode")
def encode_cmd(
    data: InputArg,
    out: OutOpt,
    text_col: Annotated[str, typer.Option("--text-col", help="Column holding the text.")] = "text",
    model: Annotated[str, typer.Option(help="'default' (bundled all-MiniLM-L6-v2) or a local model directory.")] = "default",
    vector_col: Annotated[str, typer.Option("--vector-col", help="Name of the new vector column.")] = "vector",
    kind: Annotated[str, typer.Option(help="document or query (picks the prompt).")] = "document",
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.")] = 64,
    layers: Annotated[Optional[int], typer.Option(help="Elastic inference: transformer layers to run.")] = None,
    dims: Annotated[Optional[int], typer.Option(help="Elastic inference: leading coordinates to keep.")] = None,
    partitions: Annotated[Optional[int], typer.Option(help="Repartition the input first (default: as read).")] = None,
    master: MasterOpt = "local[2]",
    as_json: JsonOpt = False,
) -> None:
    """Encode a text column with a sentence-transformers model; write the rows plus a vector column."""
    from vecbox.spark import encode

    t0 = time.perf_counter()
    spark = session(master, as_json)
    df = read_frame(spark, data)
    if partitions:
        df = df.repartition(partitions)
    rows = _write(encode(df, text_col, model, layers, dims, output_col=vector_col, kind=kind, batch_size=batch_size),
                  out)
    _done({"rows": rows, "out": str(out), "master": master}, t0, as_json, f"encoded {rows:,} texts")


@spark_app.command("knn")
def knn_cmd(
    queries: InputArg,
    out: OutOpt,
    corpus: Annotated[Optional[Path], typer.Option(help="Corpus to search (default: QUERIES itself, a k-NN graph "
                                                        "without self-matches).")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Neighbours per query.")] = 10,
    metric: Annotated[str, typer.Option(help="cosine, dot or l2 (score = similarity, product or distance).")] = "cosine",
    approximate: Annotated[bool, typer.Option("--approximate", help="FAISS HNSW per corpus partition (rescored "
                                                                     "exactly); prints recall@k on a sample.")] = False,
    ef_search: Annotated[int, typer.Option(help="HNSW search depth with --approximate.")] = 128,
    id_col: IdOpt = "id",
    vector_col: VectorOpt = "vector",
    master: MasterOpt = "local[2]",
    as_json: JsonOpt = False,
) -> None:
    """Exact (or approximate) top-k of every query among the corpus: query_id, neighbor_id, score, rank."""
    from vecbox.spark import approximate_recall, knn_join

    t0 = time.perf_counter()
    spark = session(master, as_json)
    q = read_frame(spark, queries)
    c = q if corpus is None else read_frame(spark, corpus)
    opts = {"exclude_self": corpus is None, "id_col": id_col, "vector_col": vector_col}
    res = knn_join(q, c, k, metric, not approximate, ef_search=ef_search, **opts)
    result: dict[str, Any] = {"rows": _write(res, out), "out": str(out), "k": k, "metric": metric,
                              "exact": not approximate, "master": master}
    if approximate:
        result["recall_at_k_sample"] = approximate_recall(spark.read.parquet(str(out)), q, c, k, metric, **opts)
    _done(result, t0, as_json, f"wrote {result['rows']:,} neighbour rows"
          + (f" (recall@{k} on a sample: {result['recall_at_k_sample']:.3f})" if approximate else ""))


@spark_app.command("dedup")
def dedup_cmd(
    data: InputArg,
    out: OutOpt,
    threshold: Annotated[float, typer.Option(help="Cosine similarity at or above which two rows are duplicates.")] = 0.95,
    id_col: IdOpt = "id",
    vector_col: VectorOpt = "vector",
    master: MasterOpt = "local[2]",
    as_json: JsonOpt = False,
) -> None:
    """Near-duplicate pairs (OUT/pairs) and their connected components as groups (OUT/groups)."""
    from vecbox.spark import near_duplicates

    t0 = time.perf_counter()
    spark = session(master, as_json)
    from pyspark.sql import functions as F  # after session(): without pyspark it has said what to install
    res = near_duplicates(read_frame(spark, data), threshold, id_col=id_col, vector_col=vector_col)
    pairs = _write(res.pairs, out / "pairs")
    rows = _write(res.groups, out / "groups")
    sizes = spark.read.parquet(str(out / "groups")).select("group", "size").distinct()
    top = sizes.orderBy(F.desc("size"), "group").limit(10).collect()
    result = {"pairs": pairs, "rows_in_groups": rows, "groups": sizes.count(),
              "largest": [{"group": r[0], "size": r[1]} for r in top], "out": str(out), "threshold": threshold,
              "master": master}
    table = _table("largest groups", ("group", "size"), [(str(r[0]), str(r[1])) for r in top])
    _done(result, t0, as_json, f"{pairs:,} pairs, {result['groups']:,} groups ({rows:,} rows)", table if top else None)


@spark_app.command("anomalies")
def anomalies_cmd(
    data: InputArg,
    out: OutOpt,
    k: Annotated[int, typer.Option("-k", "--k", help="Neighbours (score = distance to the k-th).")] = 10,
    method: Annotated[str, typer.Option(help="largest (k-th distance) or mean (of the k).")] = "largest",
    top: Annotated[int, typer.Option(help="Rows to print, most anomalous first.")] = 10,
    id_col: IdOpt = "id",
    vector_col: VectorOpt = "vector",
    master: MasterOpt = "local[2]",
    as_json: JsonOpt = False,
) -> None:
    """k-NN anomaly score of every row (KNNDetector's exact score): id, score."""
    from vecbox.spark import anomaly_scores

    t0 = time.perf_counter()
    spark = session(master, as_json)
    from pyspark.sql import functions as F  # after session(): without pyspark it has said what to install
    rows = _write(anomaly_scores(read_frame(spark, data), k, method=method, id_col=id_col, vector_col=vector_col), out)
    best = spark.read.parquet(str(out)).orderBy(F.desc("score"), id_col).limit(top).collect()
    result = {"rows": rows, "out": str(out), "k": k, "method": method, "master": master,
              "top": [{"id": r[0], "score": r[1]} for r in best]}
    table = _table(f"top {len(best)} by score", ("id", "score"), [(str(r[0]), f"{r[1]:.4f}") for r in best])
    _done(result, t0, as_json, f"scored {rows:,} rows", table)


@spark_app.command("export")
def export_cmd(
    path: PathArg,
    out: Annotated[Path, typer.Argument(help="New directory for the part-*.parquet files.")],
    batch_size: Annotated[int, typer.Option(help="Items per Parquet file.")] = 100_000,
    as_json: JsonOpt = False,
) -> None:
    """Write a collection to Parquet (id, vector, document, metadata as JSON) for Spark; no Spark needed."""
    from vecbox.io import to_parquet

    t0 = time.perf_counter()
    result = to_parquet(path, out, batch_size=batch_size)
    _done(result, t0, as_json, f"exported {result['rows']:,} items in {result['files']} file(s)")


__all__ = ["spark_app", "session", "read_frame"]
