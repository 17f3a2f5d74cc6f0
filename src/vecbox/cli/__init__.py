"""The ``vecbox`` command line: thin Typer commands over the library, Rich output, ``--json`` for machines.

One module per noun, each holding its commands (a Typer app):

- :mod:`~vecbox.cli.collection` - ``create``, ``ingest``, ``search``, ``info``, ``delete``, ``compact``
- :mod:`~vecbox.cli.index` - ``index``
- :mod:`~vecbox.cli.codecs` - ``recompress``, ``analyze quantization``
- :mod:`~vecbox.cli.analyze` - ``analyze anomalies | geometry | compare | capacity``
- :mod:`~vecbox.cli.graph` - ``graph fastrp | eval``
- :mod:`~vecbox.cli.spark` - ``spark encode | knn | dedup | anomalies | export``
- :mod:`~vecbox.cli.eval` - ``eval beir``
- :mod:`~vecbox.cli.train` - ``train pairs | mine | merge``
- :mod:`~vecbox.cli.demo` - ``demo``

:mod:`~vecbox.cli._render` holds what they share: the consoles, ``emit`` (``--json`` or
Rich), the common option types, JSON arguments and the error handler used by :func:`main`.
Importing this package loads Typer, Rich and these modules only; each command imports the
parts of the library it needs when it runs.
"""

from __future__ import annotations

import typer

from vecbox.cli import collection, demo, index, serve
from vecbox.cli._render import run
from vecbox.cli.analyze import analyze_app
from vecbox.cli.codecs import analyze_quantization
from vecbox.cli.codecs import commands as codec_commands
from vecbox.cli.eval import eval_app
from vecbox.cli.graph import graph_app
from vecbox.cli.spark import spark_app
from vecbox.cli.train import train_app

app = typer.Typer(
    help="vecbox: store, search and evaluate vector embeddings on one machine.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
for _commands in (collection.commands, index.commands, demo.commands, codec_commands, serve.commands):
    app.registered_commands.extend(_commands.registered_commands)  # top-level commands, in help order
analyze_app.command("quantization")(analyze_quantization)
app.add_typer(eval_app, name="eval")
app.add_typer(analyze_app, name="analyze")
app.add_typer(graph_app, name="graph")
app.add_typer(spark_app, name="spark")
app.add_typer(train_app, name="train")


def main() -> None:
    """Entry point of the ``vecbox`` program: a vecbox error becomes one readable line and exit code 1."""
    run(app)


__all__ = ["app", "main"]
