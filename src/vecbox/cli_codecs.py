"""CLI commands for codecs: ``vecbox recompress`` and ``vecbox analyze quantization``.

Plain functions with Typer ``Annotated`` parameters; ``cli.py`` registers them.
Errors are :class:`~vecbox.errors.VecboxError`, which the app turns into a message and exit code 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def recompress(
    path: Annotated[Path, typer.Argument(help="Collection directory.")],
    codec: Annotated[str, typer.Option("--codec", help="Codec spec, e.g. int8, rot+int4, binary, pq:48; 'none' for float32.")],
    keep_float: Annotated[Optional[bool], typer.Option("--keep-float/--codes-only", help="Keep float vectors on disk for rescoring (default: unchanged).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the codec's random parts.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Rebuild a collection with another codec (fits it on the stored vectors, rewrites every code)."""
    from vecbox.collection import Collection

    with Collection.open(path) as col:
        before = col.info()
        version = col.recompress(None if codec.strip().lower() == "none" else codec, keep_float=keep_float, seed=seed)
        after = col.info()
    keys = ("codec", "keep_float", "bytes_per_vector", "bytes_on_disk")
    if as_json:
        return _emit({"path": str(path), "version": version, "before": {k: before[k] for k in keys},
                      "after": {k: after[k] for k in keys}, "count": after["count"]})
    console.print(f"recompressed {path}: {before['codec'] or 'float32'} ({before['bytes_per_vector']} B/vector) -> "
                  f"{after['codec'] or 'float32'} ({after['bytes_per_vector']} B/vector), {after['count']:,} vectors, "
                  f"version {version}")


def analyze_quantization(
    path: Annotated[Path, typer.Argument(help="Collection directory.")],
    sample: Annotated[int, typer.Option(help="Vectors used as the database sample.")] = 5000,
    queries: Annotated[int, typer.Option(help="Vectors used as queries.")] = 200,
    k: Annotated[int, typer.Option(help="Neighbours per query (recall@k).")] = 10,
    target: Annotated[float, typer.Option(help="Recall@k a recommended codec must reach (with rescoring).")] = 0.95,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Outlier statistics and estimated recall@k per codec on a sample of a collection; recommends a codec."""
    from vecbox.analysis.quantization import quantization_report
    from vecbox.collection import Collection

    with Collection.open(path) as col:
        rep = quantization_report(col, sample=sample, queries=queries, k=k, target=target)
    if as_json:
        return _emit(rep.as_dict())
    table = Table(title=f"recall@{rep.k} on {rep.sample:,} sampled vectors, {rep.queries} queries")
    for col_name in ("codec", "bytes/vector", "smaller", "codes only", f"rescored ({rep.oversample:g}x)"):
        table.add_column(col_name, justify="left" if col_name == "codec" else "right")
    for e in rep.estimates:
        table.add_row(e.spec, str(e.bytes_per_vector), f"{e.compression:g}x", f"{e.recall:.3f}", f"{e.recall_rescored:.3f}")
    console.print(table)
    console.print(f"OSP excess kurtosis {rep.osp_kurtosis:.2f} (max per vector {rep.max_vector_kurtosis:.1f}); "
                  f"outlier dimensions: {rep.outlier_dimensions or 'none'}")
    console.print(f"[bold]recommended: {rep.recommended}[/bold] - {rep.reason}")
