"""The main job, ``vecbox demo``: semantic search over the Python standard library's own docs.

It harvests several thousand docstrings from the running interpreter, builds a
collection on disk (resumable: a second run reuses it), answers a few
natural-language questions, shows a metadata-filtered search, a hybrid (BM25 +
dense) search that finds what the dense search alone misses, and prints the build
and query figures.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from vecbox.collection import Collection, Hit
from vecbox.demo.stdlib_docs import harvest_stdlib_docs

DEFAULT_PATH = Path("vecbox-demo") / f"stdlib-py{sys.version_info.major}{sys.version_info.minor}"
QUESTIONS = (
    "read a csv file",
    "compute a sha256 digest of a file",
    "parse command line options",
    "run a subprocess with a timeout",
    "send an email over SMTP",
    "serialize an object to JSON",
)
FILTERED = (("join two path components", {"package": "os"}),
            ("read lines from a file lazily", {"kind": {"$in": ["function", "method"]}, "package": {"$ne": "io"}}))
HYBRID = "RFC 2822 date"  # names a standard: BM25 matches "RFC 2822", the vectors only "date"
_CHUNK = 256


@dataclass
class DemoReport:
    """Figures of one demo run."""

    path: str
    n_texts: int
    built_now: int
    build_s: float
    texts_per_s: float
    query_ms: list[float] = field(default_factory=list)
    answers: dict[str, list[Hit]] = field(default_factory=dict)


def build(path: Path, console: Console, max_texts: int | None = None) -> tuple[Collection, int, float]:
    """Create or resume the demo collection; return it, the texts added now and the seconds spent."""
    col = Collection.create(path, model="default", exist_ok=True)
    t0 = time.perf_counter()
    with console.status("harvesting docstrings from the standard library..."):
        docs = harvest_stdlib_docs(max_texts=max_texts)
    if col.lexical is None:  # a collection built by an older vecbox: index its documents for BM25 once
        col.enable_lexical()
    stored = set(col.ids())
    todo = [d for d in docs if d.id not in stored]
    console.print(f"[bold]{len(docs):,}[/] docstrings harvested; {len(stored):,} already stored, {len(todo):,} to encode")
    if todo:
        columns = (TextColumn("building"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("build", total=len(todo))
            for start in range(0, len(todo), _CHUNK):
                chunk = todo[start : start + _CHUNK]
                x = col.encoder.encode([d.text for d in chunk], kind="document")
                col.add([d.id for d in chunk], x, [d.metadata for d in chunk], [d.text for d in chunk])
                bar.update(task, advance=len(chunk))
    return col, len(todo), time.perf_counter() - t0


def run_demo(path: str | Path = DEFAULT_PATH, *, max_texts: int | None = None, k: int = 5,
             rebuild: bool = False, console: Console | None = None) -> DemoReport:
    """Run the demo end to end and print it; returns the figures."""
    console = console or Console()
    path = Path(path)
    if rebuild and path.exists():
        import shutil

        shutil.rmtree(path)
    console.rule("[bold]vecbox demo[/]: semantic search over the Python standard library's docs")
    t_open = time.perf_counter()
    col, built, build_s = build(path, console, max_texts)
    n = col.count()
    rate = built / build_s if built else 0.0
    report = DemoReport(str(path), n, built, build_s, rate)
    col.encoder.encode(["warm-up"], kind="query")  # load the model before timing queries
    if not built:
        console.print(f"reused the stored collection at {path}; ready in {time.perf_counter() - t_open:.1f} s")

    for question in QUESTIONS:
        hits = _timed_search(col, question, k, None, report)
        _show(console, question, None, hits)
    for question, where in FILTERED:
        hits = _timed_search(col, question, k, where, report)
        _show(console, question, where, hits)

    _show_hybrid(console, col, HYBRID, k)

    info = col.info()
    figures = Table(title="figures", show_header=False, title_justify="left")
    figures.add_row("collection", f"{path} ({info['count']:,} texts, {info['bytes_on_disk'] / 2**20:.1f} MiB on disk)")
    if built:
        figures.add_row("build time", f"{build_s:.1f} s for {built:,} texts ({rate:,.0f} texts/s, encode + durable commit)")
    else:
        figures.add_row("build time", "0 s (reused; pass --rebuild to build again)")
    figures.add_row("query latency", f"median {statistics.median(report.query_ms):.1f} ms, "
                                     f"max {max(report.query_ms):.1f} ms (encode + exact search, k={k})")
    console.print(figures)
    return report


def _timed_search(col: Collection, question: str, k: int, where: dict[str, Any] | None, report: DemoReport) -> list[Hit]:
    t0 = time.perf_counter()
    hits = col.search_text(question, k=k, where=where)
    report.query_ms.append((time.perf_counter() - t0) * 1000)
    report.answers[question] = hits
    return hits


def _show_hybrid(console: Console, col: Collection, question: str, k: int) -> None:
    """Dense and hybrid answers side by side; ``+`` marks what only the hybrid search found."""
    dense = col.search_text(question, k=k)
    hybrid = col.search_text(question, k=k, mode="hybrid")
    seen = {h.id for h in dense}
    table = Table(title=f"[bold]{question!r}[/]  dense vs hybrid (BM25 + dense, fused)", title_justify="left",
                  expand=True)
    table.add_column("dense", style="cyan", ratio=1)
    table.add_column("hybrid", style="cyan", ratio=1)
    for d, h in zip(dense, hybrid):
        table.add_row(d.id, h.id if h.id in seen else f"[bold green]+ {h.id}[/]")
    console.print(table)


def _show(console: Console, question: str, where: dict[str, Any] | None, hits: list[Hit]) -> None:
    title = f"[bold]{question!r}[/]" + (f"  where={where}" if where else "")
    table = Table(title=title, title_justify="left", expand=True)
    table.add_column("score", justify="right", width=6)
    table.add_column("name", style="cyan", no_wrap=True, ratio=3, min_width=24)
    table.add_column("kind", width=8)
    table.add_column("docstring", ratio=4, no_wrap=True, overflow="ellipsis")
    for h in hits:
        meta = h.metadata or {}
        doc = (h.document or "").split(": ", 1)[-1]
        table.add_row(f"{h.score:.3f}", h.id, str(meta.get("kind", "")), doc)
    console.print(table)
