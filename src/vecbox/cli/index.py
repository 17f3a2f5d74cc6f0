"""``vecbox index``: build, rebuild or drop a collection's ANN index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vecbox.cli._render import JsonOpt, PathArg, console, emit, kv_table

commands = typer.Typer()


@commands.command()
def index(
    path: PathArg,
    kind: Annotated[str, typer.Option(help="hnsw (graph) or ivf (inverted lists).")] = "hnsw",
    m: Annotated[int, typer.Option("--M", "-M", help="HNSW graph degree.")] = 32,
    ef_construction: Annotated[int, typer.Option(help="HNSW build beam width.")] = 200,
    ef_search: Annotated[Optional[int], typer.Option(help="HNSW search effort (default: calibrated).")] = None,
    nlist: Annotated[Optional[int], typer.Option(help="IVF lists (default ~4 sqrt(n)).")] = None,
    nprobe: Annotated[Optional[int], typer.Option(help="IVF lists scanned per query (default: calibrated).")] = None,
    storage: Annotated[Optional[str], typer.Option(
        help="Vectors in the index: flat (float32, default), sq8 or pq (IVF); codes are rescored exactly.")] = None,
    pq_bytes: Annotated[Optional[int], typer.Option(help="Bytes per row of pq codes (default d/8).")] = None,
    memory_budget: Annotated[Optional[str], typer.Option(
        help="RAM the index may take, e.g. 8GB: picks the storage that fits.")] = None,
    target_recall: Annotated[float, typer.Option(help="Calibrate the search effort to this recall@10.")] = 0.95,
    calibration_queries: Annotated[Optional[Path], typer.Option(
        help="A .npy file of past queries (m x d) to calibrate the effort on, instead of moved stored rows.")] = None,
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
    queries = _past_queries(calibration_queries) if calibration_queries is not None else None
    with console.status(f"building a {kind} index over {col.count():,} rows ...", spinner="dots"):
        data = col.build_index(kind, M=m, ef_construction=ef_construction, ef_search=ef_search, nlist=nlist,
                               nprobe=nprobe, storage=storage, pq_bytes=pq_bytes,
                               memory_budget=memory_budget, target_recall=target_recall,
                               calibration_queries=queries)
    emit(data, as_json,
         lambda: kv_table(f"{kind} index of {path}", {key: value for key, value in data.items() if value is not None}))


def _past_queries(path: Path) -> object:
    """The float array in a ``.npy`` file (never a pickle), or a vecbox error naming the file."""
    import numpy as np

    from vecbox.errors import InvalidInputError

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"--calibration-queries {path}: cannot read it as a .npy array of queries ({exc}); "
                                "save them with numpy.save(path, queries)") from None
