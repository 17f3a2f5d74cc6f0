"""``vecbox create | ingest | search | info | delete | compact | verify | snapshot``: a collection and its items."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from vecbox.cli._render import JsonOpt, PathArg, console, emit, kv_table, parse_json
from vecbox.errors import InvalidInputError

commands = typer.Typer()


@commands.command()
def create(
    path: PathArg,
    dim: Annotated[Optional[int], typer.Option(help="Vector width (taken from --model when omitted).")] = None,
    metric: Annotated[str, typer.Option(help="cosine, dot or l2.")] = "cosine",
    model: Annotated[Optional[str], typer.Option(help="Text model: 'default' or a sentence-transformers path.")] = None,
    lexical: Annotated[bool, typer.Option(help="Index documents for BM25 (lexical and hybrid search).")] = True,
    language: Annotated[str, typer.Option(help="Language of the lexical analyzer (a Snowball stemmer name).")] = "english",
) -> None:
    """Create an empty collection."""
    from vecbox.collection import Collection

    col = Collection.create(path, dim=dim, metric=metric, model=model,
                            lexical={"language": language} if lexical else False)
    console.print(f"created {path} (dim={col.dim}, metric={col.metric}, model={col.model})")


@commands.command()
def ingest(
    path: PathArg,
    file: Annotated[Path, typer.Argument(help="JSONL, CSV or Parquet file, or a directory of Parquet part files.")],
    text_field: Annotated[Optional[str], typer.Option(help="Field holding text to encode.")] = None,
    vector_field: Annotated[Optional[str], typer.Option(help="Field holding a ready vector.")] = None,
    id_field: Annotated[str, typer.Option(help="Field holding the id.")] = "id",
    metadata_fields: Annotated[Optional[str], typer.Option(help="Comma-separated fields kept as metadata (default: all others).")] = None,
    batch_size: Annotated[int, typer.Option(help="Rows per atomic commit.")] = 10_000,
    upsert: Annotated[bool, typer.Option(help="Replace items whose id is already stored.")] = False,
    schema: Annotated[Optional[str], typer.Option(
        help='CSV column types as JSON, e.g. \'{"zip": "str", "year": "int"}\' (default: inferred).')] = None,
    skip_rows: Annotated[int, typer.Option(help="Skip the first N rows (resume after a failed ingest).")] = 0,
    document_field: Annotated[Optional[str], typer.Option(help="With --vector-field: field stored as the document.")] = None,
    metadata_field: Annotated[Optional[str], typer.Option(help="Field holding the metadata as a JSON object.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add records from a file or a Parquet directory (a text field to encode, or a vector field)."""
    from vecbox.io import ingest_file

    result = ingest_file(path, file, text_field=text_field, vector_field=vector_field, id_field=id_field,
                         metadata_fields=metadata_fields.split(",") if metadata_fields else None,
                         batch_size=batch_size, upsert=upsert, show_progress=not as_json,
                         schema=parse_json(schema, "--schema") if schema else None, skip_rows=skip_rows,
                         document_field=document_field, metadata_field=metadata_field)
    emit(result, as_json, lambda: f"ingested {result['rows']:,} rows into {path} (version {result['version']}, "
                                  f"{result['rows_per_s']:,.0f} rows/s)")


@commands.command()
def search(
    path: PathArg,
    query: Annotated[Optional[str], typer.Argument(help="Query text (dense mode needs a collection with a model).")] = None,
    vector: Annotated[Optional[str], typer.Option(help="Query vector as a JSON list (with QUERY: hybrid).")] = None,
    mode: Annotated[str, typer.Option(help="dense (embedding), lexical (BM25 over documents) or hybrid (both, fused).")] = "dense",
    fusion: Annotated[Optional[str], typer.Option(
        help='Hybrid fusion: default, rrf, minmax, zscore, 3sigma, or JSON such as \'{"method": "rrf", "k": 20}\'.')] = None,
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
    flt = parse_json(where, "--where")
    if mode not in ("dense", "lexical", "hybrid"):
        raise InvalidInputError(f"--mode must be dense, lexical or hybrid; got {mode!r}")
    if query is None and vector is None:
        raise InvalidInputError("give a QUERY text, --vector '[...]', or both (hybrid)")
    if query is None and mode != "dense":
        raise InvalidInputError(f"--mode {mode} needs a QUERY text")
    if query is not None and vector is not None and mode == "dense":
        mode = "hybrid"  # a text and a vector: both retrievers
    if fusion is not None and mode != "hybrid":
        raise InvalidInputError("--fusion applies to hybrid search; add --mode hybrid")
    fz = (parse_json(fusion, "--fusion") if fusion.lstrip().startswith("{") else fusion) if fusion else None
    if mode == "lexical":
        res = col.search_lexical(query, k=k, where=flt, explain=True)  # type: ignore[arg-type]
    else:
        qvec = parse_json(vector, "--vector") if vector is not None else col.encoder.encode([query], kind="query")[0]
        res = col.search(qvec, k=k, where=flt, explain=True, exact=exact, ef_search=ef_search,
                         **({"text": query, "fusion": fz} if mode == "hybrid" else {}))
    hits = [{"id": h.id, "score": h.score, "metadata": h.metadata, "document": h.document} for h in res.hits]
    emit({"hits": hits, "plan": res.plan.to_dict()} if explain else hits, as_json,
         lambda: [Text.from_markup(f"[bold]plan[/] {res.plan}") if explain else None, _hits_table(hits)])


def _hits_table(hits: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(hits)} hits", title_justify="left")
    for name in ("score", "id", "metadata", "document"):
        table.add_column(name, overflow="fold" if name != "document" else "ellipsis")
    for h in hits:
        table.add_row(f"{h['score']:.4f}", h["id"], json.dumps(h["metadata"], ensure_ascii=False) if h["metadata"] else "",
                      (h["document"] or "")[:120])
    return table


@commands.command()
def info(path: PathArg, as_json: JsonOpt = False) -> None:
    """Show a collection's settings, counts and size."""
    from vecbox.collection import Collection

    data = Collection.open(path).info()
    emit(data, as_json, lambda: kv_table(str(path), data))


@commands.command()
def delete(
    path: PathArg,
    ids: Annotated[Optional[list[str]], typer.Argument(help="Ids to delete.")] = None,
    where: Annotated[Optional[str], typer.Option(help="Delete items matching this JSON filter.")] = None,
    missing_ok: Annotated[bool, typer.Option(help="Ignore ids that are not stored.")] = False,
) -> None:
    """Delete items by id and/or filter (one atomic commit)."""
    from vecbox.collection import Collection

    n = Collection.open(path).delete(ids or None, where=parse_json(where, "--where"), missing_ok=missing_ok)
    console.print(f"deleted {n:,} item(s)")


@commands.command()
def compact(path: PathArg) -> None:
    """Rewrite live vectors into one segment and drop deleted rows."""
    from vecbox.collection import Collection

    freed = Collection.open(path).compact()
    console.print(f"compacted {path}; freed {freed / 2**20:.1f} MiB")


@commands.command()
def verify(path: PathArg, as_json: JsonOpt = False) -> None:
    """Check everything the collection references (SQLite, files, checksums, index); exit 1 on any problem."""
    from vecbox.collection import Collection

    with Collection.open(path) as col:
        report = col.verify()
    emit(report.to_dict(), as_json, lambda: str(report))
    if not report.ok:
        raise typer.Exit(1)


@commands.command()
def snapshot(
    path: PathArg,
    dest: Annotated[Path, typer.Argument(help="New directory for the copy (must not exist, or be empty).")],
) -> None:
    """Copy the collection consistently while others keep reading and writing (online backup + hard links)."""
    from vecbox.collection import Collection

    with Collection.open(path) as col, col.snapshot(dest) as copy:
        console.print(f"snapshot of {path} at version {copy.version} written to {dest} ({copy.count():,} items)")
