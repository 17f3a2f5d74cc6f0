"""Harvest the docstrings of Python's standard library into short texts.

The demo searches the documentation that ships with the running interpreter:
one text per public module, class, function and method of the standard
library, shaped ``"{qualified name}{signature}: {docstring}"``.

Importing every standard-library module has side effects (threads, signal
handlers, codecs, ``readline`` fiddling with the terminal, deprecation
warnings...), so :func:`harvest_stdlib_docs` never imports them in the calling
process: it runs this file as a script in a child interpreter and parses the
JSON the child prints. The child runs with ``-s -S -P`` (no user site, no
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

import importlib
import inspect
import json
import os
import pkgutil
import re
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DocText", "harvest_stdlib_docs"]

#: Longest text produced, in characters (the embedding model reads ~256 tokens).
MAX_TEXT_CHARS = 1000
#: Longest signature kept; longer ones are written ``(...)``.
_MAX_SIGNATURE_CHARS = 300
_DEFAULT_TIMEOUT_S = 120.0

#: Top-level modules never imported: side effects, GUI, tests, installers,
#: deprecated shims, Windows/macOS-only, and OS back ends documented via ``os``.
_EXCLUDED_MODULES = frozenset(
    {
        "__main__",
        "antigravity",
        "this",
        "idlelib",
        "tkinter",
        "turtle",
        "turtledemo",
        "test",
        "lib2to3",
        "ensurepip",
        "venv",
        "pydoc_data",
        "sre_compile",
        "sre_constants",
        "sre_parse",
        "msilib",
        "msvcrt",
        "winreg",
        "winsound",
        "nt",
        "ntpath",
        "nturl2path",
        "posix",
        "posixpath",
        "genericpath",
        # Deprecated, removed in 3.12, and replaced by setuptools' copy when a
        # ``distutils-precedence.pth`` is installed: the content would depend
        # on the environment.
        "distutils",
        # Windows / macOS-only submodules (most fail to import elsewhere anyway).
        "asyncio.windows_events",
        "asyncio.windows_utils",
        "ctypes.macholib",
        "ctypes.wintypes",
        "multiprocessing.popen_spawn_win32",
    }
)
#: Private-looking modules that are kept anyway.
_KEPT_PRIVATE_MODULES = frozenset({"__future__"})
#: Modules reachable only as attributes of another module.
_EXTRA_MODULES = ("os.path",)
#: Packages whose submodules are not walked (``encodings.*`` are codecs).
_NO_SUBMODULES = frozenset({"encodings"})
_TEST_SUBMODULES = frozenset({"test", "tests", "idle_test"})

#: Implementation modules whose objects are documented under another name.
_INTERNAL_MODULES = frozenset({"posix", "nt", "genericpath", "posixpath", "ntpath"})
#: Public home of objects implemented in an internal module, where the rule
#: "strip the leading underscore" (``_csv`` -> ``csv``) does not find it.
_PREFERRED_HOME = {
    "posix": "os",
    "nt": "os",
    "genericpath": "os.path",
    "posixpath": "os.path",
    "ntpath": "os.path",
    "_collections_abc": "collections.abc",
    "_thread": "threading",
    "_weakrefset": "weakref",
    "_elementtree": "xml.etree.ElementTree",
    "_sre": "re",
    "_hashlib": "hashlib",
    "_md5": "hashlib",
    "_sha1": "hashlib",
    "_sha256": "hashlib",
    "_sha512": "hashlib",
    "_sha3": "hashlib",
    "_blake2": "hashlib",
    "_posixsubprocess": "subprocess",
    "_lsprof": "cProfile",
    "_pydecimal": "decimal",
    "_pyio": "io",
}
_KIND_ORDER = {"module": 0, "function": 1, "class": 2, "method": 3}
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


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
    # Imported here, not at the top: this file also runs as a stand-alone
    # script in the child, where ``vecbox`` is deliberately not importable.
    from vecbox.errors import InvalidInputError

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
        str(Path(__file__).resolve()),
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


# --------------------------------------------------------------------------- child side


def _is_private(dotted: str) -> bool:
    return any(part.startswith("_") for part in dotted.split("."))


def _try_import(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except KeyboardInterrupt:
        raise
    except BaseException:  # ImportError, SystemExit, OSError... from odd modules
        return None


def _public_modules() -> list[tuple[str, Any]]:
    """``(public name, module)`` pairs, sorted by name, one per module object."""
    found: dict[str, Any] = {}

    def add_package(name: str, package: Any) -> None:
        if name in _NO_SUBMODULES:
            return
        path = getattr(package, "__path__", None)
        if path is None:
            return
        try:
            infos = sorted(pkgutil.iter_modules(path), key=lambda info: info.name)
        except Exception:
            return
        for info in infos:
            if (
                info.name.startswith("_")
                or info.name in _TEST_SUBMODULES
                or info.name.startswith("test_")
            ):
                continue
            full = f"{name}.{info.name}"
            if full in _EXCLUDED_MODULES or full in found:
                continue
            module = _try_import(full)
            if module is None:
                continue
            found[full] = module
            if info.ispkg:
                add_package(full, module)

    tops = sorted(
        name
        for name in sys.stdlib_module_names
        if name not in _EXCLUDED_MODULES
        and (not name.startswith("_") or name in _KEPT_PRIVATE_MODULES)
    )
    for name in [*tops, *_EXTRA_MODULES]:
        module = _try_import(name)
        if module is None:
            continue
        found[name] = module
        add_package(name, module)

    pairs: list[tuple[str, Any]] = []
    seen: set[int] = set()
    for name in sorted(found):
        module = found[name]
        if id(module) in seen:  # e.g. ``xml.etree.cElementTree`` aliases
            continue
        seen.add(id(module))
        pairs.append((name, module))
    return pairs


def _preferred_home(origin: str, walked: set[str]) -> str | None:
    """The public module that documents objects implemented in ``origin``."""
    if origin in _PREFERRED_HOME:
        return _PREFERRED_HOME[origin]
    if not _is_private(origin):
        return None  # public origin: no preference, the first module wins
    parts = origin.split(".")
    stripped = ".".join(part.lstrip("_") for part in parts)
    if stripped in walked:
        return stripped
    for i, part in enumerate(parts):
        if part.startswith("_"):
            return ".".join(parts[:i]) or None
    return None


def _belongs(public: str, real: str, name: str, origin: str, exported: set[str] | None) -> bool:
    """Whether ``module.name`` (defined in ``origin``) is documented under ``public``."""
    if origin in (public, real):
        return True
    listed = exported is None or name in exported
    if origin in _INTERNAL_MODULES or _is_private(origin):
        return listed  # C accelerator or implementation module
    if origin.startswith((public + ".", real + ".")):
        return exported is not None and name in exported  # package facade
    return False


def _own_doc(obj: Any) -> str | None:
    try:
        doc = obj.__doc__
    except Exception:
        return None
    if not isinstance(doc, str):
        return None
    doc = inspect.cleandoc(doc)
    return doc or None


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _signature(obj: Any, *, drop_self: bool = False) -> str:
    try:
        sig = inspect.signature(obj)
    except Exception:  # builtins without __text_signature__, odd callables
        return ""
    params = list(sig.parameters.values())
    if drop_self and params and params[0].name == "self":
        try:
            sig = sig.replace(parameters=params[1:])
        except Exception:
            return ""
    try:
        text = _ADDRESS.sub("", str(sig))
    except Exception:
        return ""
    text = _collapse(text)
    return text if len(text) <= _MAX_SIGNATURE_CHARS else "(...)"


def _truncate(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit - 3)
    if cut < limit // 2:
        cut = limit - 3
    return text[:cut].rstrip() + "..."


def _is_auto_doc(short_name: str, doc: str) -> bool:
    """A docstring written by the machinery for an undocumented class.

    ``Point(x, y)`` from ``namedtuple``/``dataclass``, ``An enumeration.``
    from ``enum`` (functional API).
    """
    if doc == "An enumeration.":
        return True
    return "\n" not in doc and doc.startswith(short_name + "(") and doc.endswith(")")


_OBJECT_INIT_DOC = inspect.cleandoc(object.__init__.__doc__ or "")


def _class_doc(cls: type, name: str) -> str | None:
    """The class docstring, else its own ``__init__`` docstring (like pydoc shows)."""
    doc = _own_doc(cls)
    if doc is not None and (
        _is_auto_doc(getattr(cls, "__name__", name), doc) or _class_doc_is_inherited(cls, doc)
    ):
        doc = None
    if doc is None:
        try:
            init = vars(cls).get("__init__")
        except Exception:
            init = None
        init_doc = _own_doc(init) if inspect.isfunction(init) else None
        if init_doc is not None and init_doc != _OBJECT_INIT_DOC:
            doc = init_doc
    return doc


def _record(public: str, kind: str, name: str, signature: str, doc: str) -> dict[str, Any]:
    head = f"module {name}" if kind == "module" else f"{name}{signature}"
    return {
        "id": name,
        "text": _truncate(_collapse(f"{head}: {doc}")),
        "metadata": {
            "module": public,
            "package": public.split(".")[0],
            "kind": kind,
            "name": name,
        },
        "_doc": _collapse(doc),
    }


def _own_bases(cls: type) -> list[type]:
    """``cls`` and its private bases up to the first public one, in MRO order.

    What these define is documented with ``cls``: private bases are never
    harvested themselves (``argparse._ActionsContainer``, ``_io._IOBase``).
    """
    mro = list(cls.__mro__)
    own = [cls]
    for base in mro[1:]:
        if not getattr(base, "__name__", "_").startswith("_"):
            break
        own.append(base)
    return own


def _class_doc_is_inherited(cls: type, doc: str) -> bool:
    """Whether a public base (or ``object``) has the very same docstring."""
    try:
        public_bases = cls.__mro__[len(_own_bases(cls)) :]
    except Exception:
        return False
    return any(_own_doc(base) == doc for base in public_bases)


def _method_records(public: str, qualname: str, cls: type) -> list[dict[str, Any]]:
    """The documented public methods of ``cls``.

    Methods defined by the class itself count, and so do those of its
    private bases up to the first public one (``argparse.ArgumentParser``
    inherits ``add_argument`` from ``argparse._ActionsContainer``); methods
    of public bases are documented with those bases.
    """
    try:
        mro = list(cls.__mro__)
        own_bases = _own_bases(cls)
    except Exception:
        return []
    records = []
    done: set[str] = set()
    for depth, owner in enumerate(own_bases):
        try:
            namespace = dict(vars(owner))
        except Exception:
            continue
        for attr in sorted(namespace):
            if attr.startswith("_") or attr in done:
                continue
            done.add(attr)
            func = _unwrap(namespace[attr])
            if not inspect.isroutine(func):
                continue  # properties, constants, nested classes
            doc = _own_doc(func)
            if doc is None:
                continue
            if any(
                attr in vars(base) and _own_doc(_unwrap(vars(base)[attr])) == doc
                for base in mro[depth + 1 :]
            ):
                continue  # same text as the method it overrides
            try:
                bound = getattr(cls, attr)
            except Exception:
                bound = func
            signature = _signature(bound, drop_self=True)
            record = _record(public, "method", f"{qualname}.{attr}", signature, doc)
            record["_depth"] = depth
            record["_func"] = func
            records.append(record)
    return records


def _unwrap(raw: Any) -> Any:
    return raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw


def _collect() -> list[dict[str, Any]]:
    """Import the standard library and build the records (runs in the child)."""
    warnings.simplefilter("ignore")
    modules = _public_modules()
    walked = {name for name, _ in modules}
    order = {name: i for i, (name, _) in enumerate(modules)}

    # Pass 1: every (module, name) under which a class or routine may be
    # documented; each object goes to its best home.
    candidates: list[tuple[str, str, str, Any]] = []
    owner: dict[int, tuple[tuple[Any, ...], str, str]] = {}
    for public, module in modules:
        real = getattr(module, "__name__", public)
        exported_raw = getattr(module, "__all__", None)
        exported = (
            {n for n in exported_raw if isinstance(n, str)}
            if isinstance(exported_raw, (list, tuple, set, frozenset))
            else None
        )
        try:
            names = sorted(dir(module))
        except Exception:
            continue
        for name in names:
            if name.startswith("_"):
                continue
            try:
                obj = getattr(module, name)
            except BaseException:
                continue
            if inspect.isclass(obj):
                kind = "class"
            elif inspect.isroutine(obj):
                kind = "function"
            else:
                continue
            origin = getattr(obj, "__module__", None)
            if not isinstance(origin, str) or not _belongs(public, real, name, origin, exported):
                continue
            home = _preferred_home(origin, walked)
            rank = (public != home, order[public], name != getattr(obj, "__name__", None), name)
            best = owner.get(id(obj))
            if best is None or rank < best[0]:
                owner[id(obj)] = (rank, public, name)
            candidates.append((public, name, kind, obj))

    # Pass 2: the texts.
    records: list[dict[str, Any]] = []
    for public, module in modules:
        doc = _own_doc(module)
        if doc is not None:
            records.append(_record(public, "module", public, "", doc))
    for public, name, kind, obj in candidates:
        if owner[id(obj)][1:] != (public, name):
            continue
        doc = _own_doc(obj)
        qualname = f"{public}.{name}"
        if kind == "class":
            doc = _class_doc(obj, name)
            if doc is not None:
                records.append(_record(public, "class", qualname, _signature(obj), doc))
            records.extend(_method_records(public, qualname, obj))
        elif doc is not None:
            records.append(_record(public, "function", qualname, _signature(obj), doc))

    # A method inherited from a private base (``_io._IOBase.readline``) is
    # reachable from several public classes: keep it once, on the class
    # closest to the definition, then the first one.
    method_owner: dict[int, tuple[int, int, str]] = {}
    for record in records:
        if record.get("_depth"):
            rank = (record["_depth"], order[record["metadata"]["module"]], record["id"])
            key = id(record["_func"])
            if key not in method_owner or rank < method_owner[key]:
                method_owner[key] = rank
    records = [
        r
        for r in records
        if not r.get("_depth")
        or method_owner[id(r["_func"])] == (r["_depth"], order[r["metadata"]["module"]], r["id"])
    ]

    # Dedupe identical docstrings within a module (modules, then functions,
    # classes, own methods, inherited methods win), then ids; finally sort.
    records.sort(
        key=lambda r: (
            r["metadata"]["module"],
            _KIND_ORDER[r["metadata"]["kind"]],
            r.get("_depth", 0),
            r["id"],
        )
    )
    seen_docs: set[tuple[str, str]] = set()
    seen_ids: set[str] = set()
    kept = []
    for record in records:
        record.pop("_depth", None)
        record.pop("_func", None)
        doc_key = (record["metadata"]["module"], record.pop("_doc"))
        if doc_key in seen_docs or record["id"] in seen_ids:
            continue
        seen_docs.add(doc_key)
        seen_ids.add(record["id"])
        kept.append(record)
    kept.sort(
        key=lambda r: (r["metadata"]["module"], r["metadata"]["kind"] != "module", r["id"])
    )
    return kept


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _main(argv: list[str]) -> int:
    as_json = "--json" in argv
    unknown = [arg for arg in argv if arg != "--json"]
    if unknown:
        print(f"usage: python -m vecbox.demo.stdlib_docs [--json] (got {unknown})", file=sys.stderr)
        return 2
    # Modules may write to stdout when imported (or at exit): point file
    # descriptor 1 at /dev/null while harvesting and write the result to a
    # duplicate of the real stdout.
    sys.stdout.flush()
    real_stdout = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    records = _collect()
    if as_json:
        payload = json.dumps(records, ensure_ascii=True, separators=(",", ":")) + "\n"
    else:
        modules = len({r["metadata"]["module"] for r in records})
        lines = [f"{len(records)} texts from {modules} modules"]
        lines += [r["text"][:100] for r in records[:: max(1, len(records) // 20)]]
        payload = "\n".join(lines) + "\n"
    try:
        sys.stdout.flush()
    except Exception:
        pass
    _write_all(real_stdout, payload.encode("utf-8"))
    os.close(real_stdout)
    sys.stderr.flush()
    # Skip interpreter shutdown: imported modules may have left atexit hooks
    # or non-daemon threads behind.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
