"""Harvest the docstrings of Python's standard library into short texts.

The demo searches the documentation that ships with the running interpreter:
one text per public module, class, function and method of the standard
library, shaped ``"{qualified name}{signature}: {docstring}"``.

Importing every standard-library module has side effects (threads, signal
handlers, codecs, ``readline`` fiddling with the terminal, deprecation
warnings...), so :func:`harvest_stdlib_docs` never imports them in the calling
process: it runs :mod:`vecbox.demo._stdlib_harvest` (which modules and objects)
as a script in a child interpreter, with :mod:`vecbox.demo._stdlib_texts`
(docstring to text), and parses the JSON the child prints. The child runs with ``-s -S -P`` (no user site, no
``site`` module and therefore no third-party ``.pth`` hooks, no script
directory on ``sys.path``), without any ``PYTHON*`` variable of the caller
except ``PYTHONHOME``, with ``PYTHONHASHSEED=0`` so that set reprs in
signatures are stable, and in a throw-away working directory. The child imports
nothing but the standard library; in particular it does not import ``vecbox``.

``python -m vecbox.demo.stdlib_docs --json`` prints the harvest as JSON (a list
of ``{"id", "text", "metadata"}`` objects); without ``--json`` it prints a
short summary.

What is harvested
-----------------
* Modules: the names in :data:`sys.stdlib_module_names`, plus ``os.path``,
  plus the public submodules of packages found with :func:`pkgutil.iter_modules`
  (recursively: ``email.mime.text``, ``xml.etree.ElementTree``...). Excluded:
  private modules (``_*``, except ``__future__``), modules with side effects or
  useless here (``antigravity``, ``this``, ``idlelib``, ``tkinter``, ``turtle``,
  ``lib2to3``, ``venv``...), the deprecated ``sre_*`` shims and ``distutils``
  (which setuptools may replace with its own copy), Windows/macOS-only
  modules, test packages, the ``encodings.*`` codecs, the OS back ends reached
  through ``os`` (``posix``, ``nt``, ``posixpath``/``ntpath``, ``genericpath``),
  and anything that fails to import (any :class:`BaseException`).
* Members: public classes and routines of each module, and the public methods
  defined by those classes (their own ``__dict__``; inherited methods are not
  repeated). An object counts for the module that defines it (its
  ``__module__``); re-exports are skipped, with two exceptions that follow the
  documented names: objects implemented in a private accelerator (``_csv``,
  ``_io``, ``_hashlib``, ``posix``, ``genericpath``...) count for the public
  module that exposes them (``csv.reader``, ``io.open``, ``hashlib.sha256``,
  ``os.open``, ``os.path.exists``), and objects a package lists in its
  ``__all__`` but defines in a submodule count for the package
  (``asyncio.run``, ``unittest.TestCase``). Each object is harvested once.
* Skipped: undocumented objects, auto-generated docstrings
  (``Point(x, y)`` of a named tuple or data class), docstrings identical to the
  one they override in a base class (or :class:`object`), and docstrings
  identical to another one already kept for the same module (module-level
  functions win over methods, so ``random.randint`` is kept and
  ``random.Random.randint`` dropped).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vecbox.demo import _stdlib_harvest
from vecbox.demo._stdlib_texts import MAX_TEXT_CHARS  # noqa: F401  (re-exported)
from vecbox.demo._stdlib_texts import truncate as _truncate  # noqa: F401  (re-exported)
from vecbox.errors import InvalidInputError

__all__ = ["DocText", "harvest_stdlib_docs"]

_DEFAULT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class DocText:
    """One harvested text.

    Attributes
    ----------
    id : str
        The qualified name, e.g. ``"subprocess.run"``; unique in a harvest.
    text : str
        ``"{qualified name}{signature}: {docstring}"`` (``"module {name}:
        {docstring}"`` for modules), whitespace-collapsed, at most
        ``MAX_TEXT_CHARS`` characters.
    metadata : dict
        ``{"module": "os.path", "package": "os", "kind": "function",
        "name": "os.path.join"}``; ``kind`` is one of ``"module"``,
        ``"class"``, ``"function"``, ``"method"``.
    """

    id: str
    text: str
    metadata: dict


def harvest_stdlib_docs(
    max_texts: int | None = None, *, timeout: float = _DEFAULT_TIMEOUT_S
) -> list[DocText]:
    """Harvest the docstrings of the standard library of the running interpreter.

    The modules are imported in a child interpreter (see the module
    docstring), so the caller's ``sys.modules``, warnings filters, signal
    handlers and terminal are left alone.

    Parameters
    ----------
    max_texts : int or None, optional
        Keep at most this many texts: an evenly spread subset of the full
        harvest (every ``len / max_texts``-th text, in order), so that every
        part of the standard library stays represented. ``None`` (default)
        keeps everything.
    timeout : float, optional
        Seconds to wait for the child interpreter (default 120).

    Returns
    -------
    list of DocText
        Sorted by module, then the module's own text first, then by id.
        Identical on every call with the same interpreter.

    Raises
    ------
    InvalidInputError
        If ``max_texts`` is negative or not an integer.
    RuntimeError
        If the child interpreter fails, times out or prints invalid JSON.

    Example
    -------
    >>> from vecbox.demo.stdlib_docs import harvest_stdlib_docs
    >>> texts = harvest_stdlib_docs()
    >>> by_id = {t.id: t for t in texts}
    >>> by_id["os.path.join"].metadata
    {'module': 'os.path', 'package': 'os', 'kind': 'function', 'name': 'os.path.join'}
    >>> by_id["os.path.join"].text[:40]
    'os.path.join(a, *p): Join two or more pa'
    """
    if max_texts is not None and (
        isinstance(max_texts, bool) or not isinstance(max_texts, int) or max_texts < 0
    ):
        raise InvalidInputError(
            f"max_texts must be None or an integer >= 0, got {max_texts!r}"
        )
    records = _run_child(timeout)
    texts = [
        DocText(id=r["id"], text=r["text"], metadata=dict(r["metadata"])) for r in records
    ]
    if max_texts is not None and max_texts < len(texts):
        n = len(texts)
        texts = [texts[i * n // max_texts] for i in range(max_texts)]
    return texts


# --------------------------------------------------------------------------- parent side


def _child_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PYTHON") or key == "PYTHONHOME"
    }
    env["PYTHONHASHSEED"] = "0"  # set reprs in signature defaults
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave the interpreter's directories alone
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _run_child(timeout: float) -> list[dict[str, Any]]:
    command = [
        sys.executable,
        "-s",  # no user site-packages
        "-S",  # no site module: no third-party .pth hooks (e.g. a distutils shim)
        "-P",  # no script directory on sys.path
        "-W",
        "ignore",
        str(Path(_stdlib_harvest.__file__).resolve()),
        "--json",
    ]
    with tempfile.TemporaryDirectory(prefix="vecbox-stdlib-docs-") as cwd:
        try:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=_child_env(),
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(
                f"harvesting the standard library docs took more than {timeout:g} s; "
                "pass a larger timeout="
            ) from exc
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip()[-2000:]
        raise RuntimeError(
            f"the child interpreter harvesting the standard library docs exited "
            f"with code {done.returncode}: {tail or '(no error output)'}"
        )
    try:
        records = json.loads(done.stdout)
    except ValueError as exc:
        raise RuntimeError(
            "the child interpreter harvesting the standard library docs printed "
            f"invalid JSON ({exc}); first bytes: {done.stdout[:200]!r}"
        ) from exc
    if not isinstance(records, list):
        raise RuntimeError("the child interpreter did not print a JSON list")
    return records


if __name__ == "__main__":
    sys.exit(_stdlib_harvest._main(sys.argv[1:]))
