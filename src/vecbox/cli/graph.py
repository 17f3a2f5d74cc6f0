"""``vecbox graph fastrp | eval``: FastRP node embeddings (locally or on Spark) and node classification.

Spinners and progress bars go to stderr, so ``--json`` output on stdout stays clean.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from vecbox.cli._render import JsonOpt, emit, err_console
from vecbox.errors import InvalidInputError

graph_app = typer.Typer(help="Graph node embeddings: FastRP (locally or on Spark) and node classification.",
                        no_args_is_help=True)


def _floats(text: Optional[str], what: str) -> Optional[list[float]]:
    """The numbers of a comma-separated option (``None`` when not given).

    >>> _floats("0,0,1,6.67", "--weights")
    [0.0, 0.0, 1.0, 6.67]
    """
    if text is None:
        return None
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InvalidInputError(f"{what} must be comma-separated numbers, e.g. 0,0,1,6.67; got {text!r}") from None


def _run_fastrp(edges: Path, out: Path, spark_master: Optional[str], params: dict[str, Any]) -> dict[str, Any]:
    """Embed ``edges`` and write ``out`` (.npy + .nodes.json, or .parquet); returns a summary."""
    from vecbox.encoders.graph import FastRP, save_embeddings

    if out.suffix.lower() not in (".npy", ".parquet", ".pq"):
        raise InvalidInputError(f"--out must end in .npy or .parquet; got {out}")
    t0 = time.perf_counter()
    if spark_master is None:
        model = FastRP(**params)
        x = model.fit_transform(edges)
        save_embeddings(out, model.nodes_, x)
        return {"nodes": model.n_nodes_, "edges": model.n_edges_, "dim": x.shape[1], "out": str(out),
                "seconds": round(time.perf_counter() - t0, 3), "engine": "local"}
    from vecbox.spark import embeddings_to_numpy, fastrp, local_session, read_edges

    spark = local_session(spark_master)
    emb = fastrp(read_edges(spark, edges), **params)
    if out.suffix.lower() == ".npy":  # collected on the driver
        ids, x = embeddings_to_numpy(emb)
        save_embeddings(out, ids, x)
        n = len(ids)
    else:
        emb.write.mode("overwrite").parquet(str(out))
        n = spark.read.parquet(str(out)).count()
    return {"nodes": n, "dim": params["dim"], "out": str(out), "seconds": round(time.perf_counter() - t0, 3),
            "engine": f"spark {spark_master}"}


@graph_app.command("fastrp")
def fastrp_cmd(
    edges: Annotated[Path, typer.Argument(help="Edge list: TSV/CSV (src, dst[, weight]) or Parquet.")],
    out: Annotated[Path, typer.Option("--out", help="Output: emb.npy (+ emb.nodes.json) or emb.parquet.")],
    dim: Annotated[int, typer.Option(help="Embedding dimension.")] = 128,
    weights: Annotated[Optional[str], typer.Option(help="Iteration weights, e.g. 0,0,1,6.67 (default per variant).")] = None,
    beta: Annotated[Optional[float], typer.Option(help="Degree exponent (default -0.64; GDS 0).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    variant: Annotated[str, typer.Option(help="reference (the paper's code) or gds (Neo4j GDS).")] = "reference",
    directed: Annotated[bool, typer.Option(help="Treat edges as directed.")] = False,
    spark: Annotated[Optional[str], typer.Option("--spark", metavar="MASTER", help="Run on Spark, e.g. local[2].")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compute FastRP node embeddings of an edge list."""
    params = {"dim": dim, "weights": _floats(weights, "--weights"), "beta": beta, "seed": seed,
              "variant": variant, "directed": directed}
    with err_console.status(f"FastRP on {edges} ({'Spark ' + spark if spark else 'local'})..."):
        result = _run_fastrp(edges, out, spark, params)
    emit(result, as_json, lambda: escape(f"embedded {result['nodes']:,} nodes (d={result['dim']}) in "
                                         f"{result['seconds']:.2f} s [{result['engine']}] -> {result['out']}"))


@graph_app.command("eval")
def eval_cmd(
    emb: Annotated[Path, typer.Argument(help="Embeddings written by 'vecbox graph fastrp' (.npy or .parquet).")],
    labels: Annotated[Path, typer.Option("--labels", help="node<TAB>label lines (several lines per node allowed).")],
    train_ratios: Annotated[str, typer.Option(help="Comma-separated training shares.")] = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
    shuffles: Annotated[int, typer.Option(help="Random splits per ratio.")] = 5,
    c: Annotated[float, typer.Option("--C", help="Inverse regularisation of the logistic regression.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the shuffles.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Node classification: one-vs-rest logistic regression, Micro/Macro-F1 per training ratio."""
    from rich.progress import Progress

    from vecbox.encoders.graph import load_embeddings, read_labels
    from vecbox.evaluation.graph import label_matrix, node_classification

    nodes, x = load_embeddings(emb)
    y, names = label_matrix(read_labels(labels), nodes)
    with Progress(console=err_console, transient=True, disable=as_json) as bar:
        task = bar.add_task("fitting classifiers", total=None)
        rows = node_classification(x, y, train_ratios=_floats(train_ratios, "--train-ratios") or [], C=c,
                                   n_shuffles=shuffles, seed=seed,
                                   progress=lambda done, total: bar.update(task, completed=done, total=total))
    emit({"embeddings": str(emb), "labels": len(names), "results": rows}, as_json,
         lambda: _f1_table(f"{emb.name}: {x.shape[0]:,} nodes, {len(names)} labels, {shuffles} shuffles", rows))


def _f1_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for name in ("train ratio", "Micro-F1", "Macro-F1"):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(f"{r['train_ratio']:.0%}", f"{r['micro_f1']:.4f} ± {r['micro_f1_std']:.4f}",
                      f"{r['macro_f1']:.4f} ± {r['macro_f1_std']:.4f}")
    return table
