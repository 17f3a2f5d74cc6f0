"""``vecbox demo``: the main job, semantic search over the standard library's documentation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vecbox.cli._render import console

commands = typer.Typer()


@commands.command()
def demo(
    path: Annotated[Optional[Path], typer.Option(help="Where to keep the demo collection.")] = None,
    max_texts: Annotated[Optional[int], typer.Option(help="Use only this many docstrings (faster).")] = None,
    rebuild: Annotated[bool, typer.Option(help="Throw away the stored collection and build it again.")] = False,
) -> None:
    """Semantic search over the Python standard library's documentation (the main job)."""
    from vecbox.demo.job import DEFAULT_PATH, run_demo

    run_demo(path or DEFAULT_PATH, max_texts=max_texts, rebuild=rebuild, console=console)
