"""``vecbox analyze anomalies | geometry | compare | capacity``: understand a set of embeddings.

Inputs are a collection directory or a ``.npy`` file of shape ``(n, d)``; results are Rich
tables, JSON (``--json``) or PNGs (``--plot``). ``analyze quantization`` lives in
:mod:`vecbox.cli.codecs`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.table import Table

from vecbox.cli._render import JsonOpt, console, emit, float_cell, kv_table
from vecbox.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np

analyze_app = typer.Typer(
    help="Understand your embeddings: anomalies, geometry, comparing two models' spaces, capacity limits.",
    no_args_is_help=True,
)

InputArg = Annotated[Path, typer.Argument(help="Collection directory or .npy file of vectors (n, d).")]
PlotOpt = Annotated[Optional[Path], typer.Option("--plot", help="Write a PNG picture to this path.")]


def load_input(path: Path, field: str | None = None) -> tuple[list[str], np.ndarray, list[Any] | None]:
    """``(ids, vectors, values of a metadata field or None)`` from a collection directory or an ``.npy`` file.

    A ``.npy`` file's ids are the row numbers:

    >>> np.save(f"{tmp}/x.npy", np.eye(3, 2, dtype=np.float32))
    >>> ids, x, values = load_input(Path(tmp) / "x.npy")
    >>> ids, x.shape, values
    (['0', '1', '2'], (3, 2), None)
    """
    if path.is_dir():
        from vecbox.collection import Collection
        from vecbox.io import collection_vectors

        with Collection.open(path) as col:
            ids, x = collection_vectors(col)
            if not ids:
                raise InvalidInputError(f"{path} holds no vectors; add some before analysing it")
            values = [(r.metadata or {}).get(field) for r in col.get(ids)] if field else None
        return ids, x, values
    if path.suffix != ".npy" or not path.is_file():
        raise InvalidInputError(f"{path} is neither a collection directory nor an existing .npy file of vectors")
    if field:
        raise InvalidInputError("a metadata field needs a collection directory; a .npy file has no metadata")
    import numpy as np

    x = np.load(path, allow_pickle=False)
    return [str(i) for i in range(len(x))], x, None


@analyze_app.command()
def anomalies(
    data: InputArg,
    method: Annotated[str, typer.Option(help="knn, lof, iforest, pca, ecod, ocsvm or kde.")] = "knn",
    k: Annotated[int, typer.Option(help="Neighbours (knn, lof).")] = 10,
    reference: Annotated[Optional[Path], typer.Option(help="Fit on these normal vectors instead (leave-one-out otherwise).")] = None,
    label_field: Annotated[Optional[str], typer.Option(help="Metadata field with 1/true = anomaly: report AUROC/AUPRC.")] = None,
    top: Annotated[int, typer.Option(help="Rows to list.")] = 10,
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score every vector (higher = more anomalous) and list the most anomalous; with --plot, histogram + 2-D map."""
    from vecbox.analysis import anomaly

    ids, x, labels = load_input(data, label_field)
    ref = load_input(reference)[1] if reference else None
    status = console.status(f"scoring {len(ids):,} vectors with {method}") if not as_json else contextlib.nullcontext()
    with status:
        scores = anomaly.anomaly_scores(x, method, reference=ref, k=k)
    report = anomaly.score_report(ids, scores, labels, top=top)
    if plot:
        anomaly.plot_anomalies(x, scores, plot, labels=report.get("labels"))
    emit({key: value for key, value in report.items() if key != "labels"}, as_json,
         lambda: _anomalies_view(f"{method}: {len(ids):,} vectors, top {top} anomalies", report))


def _anomalies_view(title: str, report: dict[str, Any]) -> list[object]:
    table = Table(title=title, title_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("id")
    table.add_column("score", justify="right")
    for i, row in enumerate(report["top"], 1):
        table.add_row(str(i), row["id"], f"{row['score']:.4f}")
    if "auroc" not in report:
        return [table]
    return [table, (f"AUROC {report['auroc']:.4f}  AUPRC (trapezoid) {report['auprc_trapezoid']:.4f}  "
                    f"AP {report['average_precision']:.4f}")]


@analyze_app.command()
def geometry(
    data: InputArg,
    other: Annotated[Optional[Path], typer.Option(help="A second set (e.g. another modality): gap, alignment.")] = None,
    color_by: Annotated[Optional[str], typer.Option(help="Metadata field colouring the 2-D map (with --plot).")] = None,
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Uniformity, isotropy, effective rank, outlier dimensions (and gap/alignment against --other)."""
    from vecbox.analysis import geometry as geo
    from vecbox.analysis._plots import plot_map

    _, x, colors = load_input(data, color_by)
    report = geo.geometry_report(x, load_input(other)[1] if other else None)
    if plot:
        plot_map(x, plot, colors, title=f"{data.name}: PCA map", color_label=color_by or "")
    emit(report, as_json, lambda: kv_table(f"geometry of {data}", report, float_cell))


@analyze_app.command()
def compare(
    first: Annotated[Path, typer.Argument(help="Collection or .npy: the first space.")],
    second: Annotated[Path, typer.Argument(help="The same items in a second space (same ids or same row order).")],
    anchors: Annotated[str, typer.Option(help="Anchor selection: uniform, kmeans or fps.")] = "uniform",
    n_anchors: Annotated[int, typer.Option(help="Number of anchors.")] = 300,
    k: Annotated[int, typer.Option(help="Neighbours for Jaccard@k / MRR.")] = 5,
    center: Annotated[bool, typer.Option(help="Subtract each space's mean first (helps anisotropic spaces).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Compare two embedding spaces of the same items: CKA and cross-space retrieval (absolute and relative)."""
    from vecbox.analysis import relative

    ids_a, xa, _ = load_input(first)
    ids_b, xb, _ = load_input(second)
    xa, xb = relative.align_by_ids(ids_a, xa, ids_b, xb)
    report = relative.compare_spaces(xa, xb, n_anchors=n_anchors, anchors=anchors, k=k, center=center)
    emit(report, as_json, lambda: _compare_table(report, k))


def _compare_table(report: dict[str, Any], k: int) -> Table:
    table = Table(title=f"{report['n']:,} items, {report['d_x']}-d vs {report['d_y']}-d, linear CKA {report['cka']:.3f}",
                  title_justify="left")
    for name in ("representation", f"Jaccard@{k}", "MRR", "cosine"):
        table.add_column(name, justify="left" if name == "representation" else "right")
    for name in ("absolute", "relative_xy", "relative_yx"):
        if report[name]:
            table.add_row(name.replace("_xy", " 1→2").replace("_yx", " 2→1"),
                          *(f"{report[name][m]:.3f}" for m in ("jaccard", "mrr", "cosine")))
    return table


@analyze_app.command()
def capacity(
    dims: Annotated[str, typer.Option(help="Widths d to probe, e.g. '2-8' or '2,4,8'.")] = "2-8",
    max_steps: Annotated[int, typer.Option(help="Optimisation steps per trial.")] = 20_000,
    limit: Annotated[Optional[Path], typer.Option(help="Also evaluate the default model and BM25 on this LIMIT folder.")] = None,
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The LIMIT free-embedding experiment: the largest n whose every top-2 set is retrievable at width d."""
    from vecbox.analysis import capacity as cap

    report = cap.capacity_report(_parse_dims(dims), max_steps=max_steps, limit_path=limit, plot=plot,
                                 show_progress=not as_json)
    emit(report, as_json, lambda: _capacity_view(report))


def _capacity_view(report: dict[str, Any]) -> list[object]:
    table = Table(title="critical n per dimension (k = 2)", title_justify="left")
    for name in ("d", "critical n", "trials", "seconds"):
        table.add_column(name, justify="right")
    for row in report["curve"]:
        table.add_row(str(row["d"]), str(row["critical_n"]), str(len(row["trials"])), f"{row['seconds']:.1f}")
    fit = "fit n(d) = " + " + ".join(f"{c:.4g}·d^{3 - i}" for i, c in enumerate(report["fit"]))
    return [table, fit, *(f"LIMIT {name}: " + ", ".join(f"{m} {v:.3f}" for m, v in metrics.items())
                          for name, metrics in (report.get("limit") or {}).items())]


def _parse_dims(text: str) -> list[int]:
    """The widths of ``--dims``: a range ``lo-hi`` (inclusive) or a comma-separated list.

    >>> _parse_dims("2-5"), _parse_dims("2,4,8")
    ([2, 3, 4, 5], [2, 4, 8])
    """
    try:
        if "-" in text:
            lo, hi = (int(t) for t in text.split("-", 1))
            return list(range(lo, hi + 1))
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InvalidInputError(f"--dims must look like '2-8' or '2,4,8'; got {text!r}") from None
