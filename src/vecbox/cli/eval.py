"""``vecbox eval beir``: retrieval quality on a standard data set."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from vecbox.cli._render import JsonOpt, emit

if TYPE_CHECKING:
    from vecbox.jobs.beir import BeirReport

eval_app = typer.Typer(help="Evaluate retrieval quality on standard data sets.", no_args_is_help=True)


@eval_app.command("beir")
def eval_beir(
    dataset_dir: Annotated[Path, typer.Argument(help="Folder with corpus.jsonl, queries.jsonl, qrels/.")],
    split: Annotated[str, typer.Option(help="Qrels split.")] = "test",
    model: Annotated[str, typer.Option(help="'default' or a sentence-transformers path.")] = "default",
    mode: Annotated[str, typer.Option(help="dense (embeddings), lexical (BM25) or hybrid (both, fused).")] = "dense",
    fusion: Annotated[Optional[str], typer.Option(help="Hybrid fusion: default, rrf, minmax, zscore, 3sigma.")] = None,
    layers: Annotated[Optional[int], typer.Option(help="Run only the model's first N transformer layers.")] = None,
    dims: Annotated[Optional[int], typer.Option(help="Keep the first D dimensions of each vector (renormalised).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest a BEIR data set and report nDCG@k, recall@k and MRR@k (exact dense search, BM25, or both).

    ``--layers``/``--dims`` evaluate an elastic setting of the model (the same as the model string
    ``MODEL@layers=N,dims=D``), e.g. a Starbucks- or 2D-Matryoshka-tuned model at a rung of its ladder.
    """
    from vecbox.jobs.beir import evaluate_beir

    report = evaluate_beir(dataset_dir, split=split, model=_elastic(model, layers, dims), show_progress=not as_json,
                           mode=mode, fusion=fusion)
    emit(report.as_dict(), as_json, lambda: _metrics_table(report))


def _elastic(model: str, layers: int | None, dims: int | None) -> str:
    """``model`` at the ``--layers``/``--dims`` setting; a setting given twice must agree."""
    from vecbox.encoders._model import elastic_settings, model_ref

    if layers is None and dims is None:
        return model
    return model_ref(*elastic_settings(model, layers, dims))


def _metrics_table(report: BeirReport) -> Table:
    table = Table(title=f"{report.dataset} ({report.split}): {report.n_docs:,} docs, {report.n_queries:,} queries, "
                        f"model {report.model}, mode {report.mode}" + (f" ({report.fusion} fusion)" if report.fusion else ""),
                  title_justify="left")
    ks = sorted({int(name.split("@")[1]) for name in report.metrics})
    table.add_column("metric")
    for kk in ks:
        table.add_column(f"@{kk}", justify="right")
    for metric in ("ndcg", "recall", "mrr", "precision"):
        if f"{metric}@{ks[0]}" in report.metrics:
            table.add_row(metric, *(f"{report.metrics[f'{metric}@{kk}']:.4f}" for kk in ks))
    return table
