"""Codecs: ``vecbox recompress`` and ``vecbox analyze quantization``.

``recompress`` is a top-level command (in :data:`commands`); :func:`analyze_quantization`
joins the ``analyze`` group (the package wires it in).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from vecbox.cli._render import JsonOpt, PathArg, emit
from vecbox.errors import InvalidInputError

if TYPE_CHECKING:
    from vecbox.analysis.quantization import QuantizationReport

commands = typer.Typer()


@commands.command()
def recompress(
    path: PathArg,
    codec: Annotated[str, typer.Option("--codec", help="Codec spec, e.g. int8, rot+int4, binary, pq:48; 'none' for float32.")],
    keep_float: Annotated[Optional[bool], typer.Option("--keep-float/--codes-only", help="Keep float vectors on disk for rescoring (default: unchanged).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the codec's random parts.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild a collection with another codec (fits it on the stored vectors, rewrites every code)."""
    from vecbox.collection import Collection

    with Collection.open(path) as col:
        before = col.info()
        version = col.recompress(None if codec.strip().lower() == "none" else codec, keep_float=keep_float, seed=seed)
        after = col.info()
    keys = ("codec", "keep_float", "bytes_per_vector", "bytes_on_disk")
    emit({"path": str(path), "version": version, "before": {k: before[k] for k in keys},
          "after": {k: after[k] for k in keys}, "count": after["count"]}, as_json,
         lambda: f"recompressed {path}: {before['codec'] or 'float32'} ({before['bytes_per_vector']} B/vector) -> "
                 f"{after['codec'] or 'float32'} ({after['bytes_per_vector']} B/vector), {after['count']:,} vectors, "
                 f"version {version}")


def analyze_quantization(
    path: PathArg,
    sample: Annotated[int, typer.Option(help="Vectors used as the database sample.")] = 5000,
    queries: Annotated[int, typer.Option(help="Vectors used as queries.")] = 200,
    k: Annotated[int, typer.Option(help="Neighbours per query (recall@k).")] = 10,
    target: Annotated[float, typer.Option(help="Recall@k a recommended codec must reach (with rescoring).")] = 0.95,
    as_json: JsonOpt = False,
) -> None:
    """Outlier statistics and estimated recall@k per codec on a sample of a collection; recommends a codec."""
    from vecbox.analysis.quantization import quantization_report
    from vecbox.collection import Collection
    from vecbox.io import collection_vectors

    with Collection.open(path) as col:
        ids, x = collection_vectors(col, limit=sample + queries)
        metric = col.metric
    if not ids:
        raise InvalidInputError(f"{path} is empty; add vectors before analysing them")
    rep = quantization_report(x, metric=metric, sample=sample, queries=queries, k=k, target=target)
    emit(rep.as_dict(), as_json, lambda: _report_view(rep))


def _report_view(rep: QuantizationReport) -> list[object]:
    table = Table(title=f"recall@{rep.k} on {rep.sample:,} sampled vectors, {rep.queries} queries")
    for name in ("codec", "bytes/vector", "smaller", "codes only", f"rescored ({rep.oversample:g}x)"):
        table.add_column(name, justify="left" if name == "codec" else "right")
    for e in rep.estimates:
        table.add_row(e.spec, str(e.bytes_per_vector), f"{e.compression:g}x", f"{e.recall:.3f}", f"{e.recall_rescored:.3f}")
    outliers = (f"OSP excess kurtosis {rep.osp_kurtosis:.2f} (max per vector {rep.max_vector_kurtosis:.1f}); "
                f"outlier dimensions: {rep.outlier_dimensions or 'none'}")
    return [table, outliers, f"[bold]recommended: {rep.recommended}[/bold] - {rep.reason}"]
