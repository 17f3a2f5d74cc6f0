"""The ``vecbox`` command line: thin Typer commands over the library, Rich output, ``--json`` for machines."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from vecbox.errors import InvalidInputError, VecboxError

app = typer.Typer(
    help="vecbox: store, search and evaluate vector embeddings on one machine.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
eval_app = typer.Typer(help="Evaluate retrieval quality on standard data sets.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
console = Console()

PathArg = Annotated[Path, typer.Argument(help="Collection directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _parse_json(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{what} is not valid JSON ({exc.msg} at column {exc.colno}): {text!r}") from None


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@app.command()
def create(
    path: PathArg,
    dim: Annotated[Optional[int], typer.Option(help="Vector width (taken from --model when omitted).")] = None,
    metric: Annotated[str, typer.Option(help="cosine, dot or l2.")] = "cosine",
    model: Annotated[Optional[str], typer.Option(help="Text model: 'default' or a sentence-transformers path.")] = None,
) -> None:
    """Create an empty collection."""
    from vecbox.collection import Collection

    col = Collection.create(path, dim=dim, metric=metric, model=model)
    console.print(f"created {path} (dim={col.dim}, metric={col.metric}, model={col.model})")


@app.command()
def ingest(
    path: PathArg,
    file: Annotated[Path, typer.Argument(help="JSONL, CSV or Parquet file.")],
    text_field: Annotated[Optional[str], typer.Option(help="Field holding text to encode.")] = None,
    vector_field: Annotated[Optional[str], typer.Option(help="Field holding a ready vector.")] = None,
    id_field: Annotated[str, typer.Option(help="Field holding the id.")] = "id",
    metadata_fields: Annotated[Optional[str], typer.Option(help="Comma-separated fields kept as metadata (default: all others).")] = None,
    batch_size: Annotated[int, typer.Option(help="Rows per atomic commit.")] = 10_000,
    upsert: Annotated[bool, typer.Option(help="Replace items whose id is already stored.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add records from a file (a text field to encode, or a vector field)."""
    from vecbox.io import ingest_file

    result = ingest_file(path, file, text_field=text_field, vector_field=vector_field, id_field=id_field,
                         metadata_fields=metadata_fields.split(",") if metadata_fields else None,
                         batch_size=batch_size, upsert=upsert, show_progress=not as_json)
    if as_json:
        _emit(result)
    else:
        console.print(f"ingested {result['rows']:,} rows into {path} (version {result['version']}, "
                      f"{result['rows_per_s']:,.0f} rows/s)")


@app.command()
def search(
    path: PathArg,
    query: Annotated[Optional[str], typer.Argument(help="Query text (needs a collection with a model).")] = None,
    vector: Annotated[Optional[str], typer.Option(help="Query vector as a JSON list, instead of text.")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Number of results.")] = 10,
    where: Annotated[Optional[str], typer.Option(help='Metadata filter as JSON, e.g. \'{"year": {"$gte": 2020}}\'.')] = None,
    explain: Annotated[bool, typer.Option(help="Also print the plan: path taken, filter estimate, reason.")] = False,
    exact: Annotated[bool, typer.Option(help="Ignore the ANN index (exact search).")] = False,
    ef_search: Annotated[Optional[int], typer.Option(help="HNSW search effort for this query (default: the index's).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Search by text or by vector, optionally filtered."""
    from vecbox.collection import Collection

    col = Collection.open(path)
    flt = _parse_json(where, "--where")
    if (query is None) == (vector is None):
        raise InvalidInputError("give either a QUERY text or --vector '[...]', not both or neither")
    qvec = col.encoder.encode([query], kind="query")[0] if query is not None else _parse_json(vector, "--vector")
    res = col.search(qvec, k=k, where=flt, explain=True, exact=exact, ef_search=ef_search)
    hits, plan = res.hits, res.plan
    if as_json:
        out: Any = [{"id": h.id, "score": h.score, "metadata": h.metadata, "document": h.document} for h in hits]
        _emit({"hits": out, "plan": plan.to_dict()} if explain else out)
        return
    if explain:
        console.print(f"[bold]plan[/] {plan}", highlight=False)
    table = Table(title=f"{len(hits)} hits", title_justify="left")
    for col_name in ("score", "id", "metadata", "document"):
        table.add_column(col_name, overflow="fold" if col_name != "document" else "ellipsis")
    for h in hits:
        table.add_row(f"{h.score:.4f}", h.id, json.dumps(h.metadata, ensure_ascii=False) if h.metadata else "",
                      (h.document or "")[:120])
    console.print(table)


@app.command()
def info(path: PathArg, as_json: JsonOpt = False) -> None:
    """Show a collection's settings, counts and size."""
    from vecbox.collection import Collection

    data = Collection.open(path).info()
    if as_json:
        _emit(data)
        return
    table = Table(show_header=False, title=str(path), title_justify="left")
    for key, value in data.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value))
    console.print(table)


@app.command()
def delete(
    path: PathArg,
    ids: Annotated[Optional[list[str]], typer.Argument(help="Ids to delete.")] = None,
    where: Annotated[Optional[str], typer.Option(help="Delete items matching this JSON filter.")] = None,
    missing_ok: Annotated[bool, typer.Option(help="Ignore ids that are not stored.")] = False,
) -> None:
    """Delete items by id and/or filter (one atomic commit)."""
    from vecbox.collection import Collection

    n = Collection.open(path).delete(ids or None, where=_parse_json(where, "--where"), missing_ok=missing_ok)
    console.print(f"deleted {n:,} item(s)")


@app.command()
def compact(path: PathArg) -> None:
    """Rewrite live vectors into one segment and drop deleted rows."""
    from vecbox.collection import Collection

    freed = Collection.open(path).compact()
    console.print(f"compacted {path}; freed {freed / 2**20:.1f} MiB")


@app.command()
def index(
    path: PathArg,
    kind: Annotated[str, typer.Option(help="hnsw (graph) or ivf (inverted lists).")] = "hnsw",
    m: Annotated[int, typer.Option("--M", "-M", help="HNSW graph degree.")] = 32,
    ef_construction: Annotated[int, typer.Option(help="HNSW build beam width.")] = 200,
    ef_search: Annotated[Optional[int], typer.Option(help="HNSW search effort (default: calibrated).")] = None,
    nlist: Annotated[Optional[int], typer.Option(help="IVF lists (default ~4 sqrt(n)).")] = None,
    nprobe: Annotated[Optional[int], typer.Option(help="IVF lists scanned per query (default: calibrated).")] = None,
    storage: Annotated[str, typer.Option(help="Vectors in the index: flat (float32) or sq8.")] = "flat",
    target_recall: Annotated[float, typer.Option(help="Calibrate the search effort to this recall@10.")] = 0.95,
    drop: Annotated[bool, typer.Option("--drop", help="Remove the index instead (searches become exact).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build (or rebuild, or --drop) the collection's ANN index; searches use it from then on."""
    from vecbox.collection import Collection

    col = Collection.open(path)
    if drop:
        col.drop_index()
        console.print(f"dropped the index of {path}; searches are exact")
        return
    with console.status(f"building a {kind} index over {col.count():,} rows ...", spinner="dots"):
        data = col.build_index(kind, M=m, ef_construction=ef_construction, ef_search=ef_search, nlist=nlist,
                               nprobe=nprobe, storage=storage, target_recall=target_recall)
    if as_json:
        _emit(data)
        return
    table = Table(show_header=False, title=f"{kind} index of {path}", title_justify="left")
    for key, value in data.items():
        if value is not None:
            table.add_row(key, f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value))
    console.print(table)


@eval_app.command("beir")
def eval_beir(
    dataset_dir: Annotated[Path, typer.Argument(help="Folder with corpus.jsonl, queries.jsonl, qrels/.")],
    split: Annotated[str, typer.Option(help="Qrels split.")] = "test",
    model: Annotated[str, typer.Option(help="'default' or a sentence-transformers path.")] = "default",
    as_json: JsonOpt = False,
) -> None:
    """Ingest a BEIR data set and report nDCG@k, recall@k and MRR@k with exact search."""
    from vecbox.jobs.beir import evaluate_beir

    report = evaluate_beir(dataset_dir, split=split, model=model, show_progress=not as_json)
    if as_json:
        _emit(report.as_dict())
        return
    table = Table(title=f"{report.dataset} ({report.split}): {report.n_docs:,} docs, {report.n_queries:,} queries, "
                        f"model {report.model}", title_justify="left")
    ks = sorted({int(name.split("@")[1]) for name in report.metrics})
    table.add_column("metric")
    for kk in ks:
        table.add_column(f"@{kk}", justify="right")
    for metric in ("ndcg", "recall", "mrr", "precision"):
        if f"{metric}@{ks[0]}" in report.metrics:
            table.add_row(metric, *(f"{report.metrics[f'{metric}@{kk}']:.4f}" for kk in ks))
    console.print(table)


@app.command()
def demo(
    path: Annotated[Optional[Path], typer.Option(help="Where to keep the demo collection.")] = None,
    max_texts: Annotated[Optional[int], typer.Option(help="Use only this many docstrings (faster).")] = None,
    rebuild: Annotated[bool, typer.Option(help="Throw away the stored collection and build it again.")] = False,
) -> None:
    """Semantic search over the Python standard library's documentation (the main job)."""
    from vecbox.demo.job import DEFAULT_PATH, run_demo

    run_demo(path or DEFAULT_PATH, max_texts=max_texts, rebuild=rebuild, console=console)


def _register_feature_apps() -> None:
    """Each feature area keeps its commands in its own module; they are only wired in here."""
    from vecbox.cli_analyze import analyze_app
    from vecbox.cli_codecs import analyze_quantization, recompress
    from vecbox.cli_graph import graph_app

    app.command("recompress")(recompress)
    analyze_app.command("quantization")(analyze_quantization)
    app.add_typer(analyze_app, name="analyze")
    app.add_typer(graph_app, name="graph")


_register_feature_apps()


def main() -> None:
    """Entry point: runs the app and turns every vecbox error into one readable line."""
    try:
        app(standalone_mode=False)
    except VecboxError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except typer.Abort:
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except __import__("click").ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
