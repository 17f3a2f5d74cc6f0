"""The child-interpreter side of the standard-library harvest: which modules, which objects.

:func:`vecbox.demo.stdlib_docs.harvest_stdlib_docs` runs this file as a script
(``--json``) in a child interpreter, with ``-s -S -P``: it imports nothing but the
standard library, and not ``vecbox``. The docstring-to-text half lives in
:mod:`vecbox.demo._stdlib_texts`, loaded from the file next to this one (``-P``
keeps this directory off ``sys.path``). What is harvested is described in
:mod:`vecbox.demo.stdlib_docs`.

- :func:`_public_modules`: the public standard-library modules and submodules that import;
- :func:`_collect`: every documented public class, routine and method, each counted for
  one module (its preferred public home), deduplicated and sorted;
- :func:`_main`: the script entry point; prints the records as JSON (or a summary)
  while the imported modules' own output goes to ``/dev/null``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import pkgutil
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any


def _load_texts() -> ModuleType:
    """:mod:`vecbox.demo._stdlib_texts`: imported as usual, or from its file when run as a script."""
    if __package__:
        from vecbox.demo import _stdlib_texts

        return _stdlib_texts
    path = Path(__file__).resolve().with_name("_stdlib_texts.py")
    spec = importlib.util.spec_from_file_location("_vecbox_stdlib_texts", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_texts = _load_texts()

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
        doc = _texts.own_doc(module)
        if doc is not None:
            records.append(_texts.text_record(public, "module", public, "", doc))
    for public, name, kind, obj in candidates:
        if owner[id(obj)][1:] != (public, name):
            continue
        doc = _texts.own_doc(obj)
        qualname = f"{public}.{name}"
        if kind == "class":
            doc = _texts.class_doc(obj, name)
            if doc is not None:
                records.append(_texts.text_record(public, "class", qualname, _texts.signature_of(obj), doc))
            records.extend(_texts.method_records(public, qualname, obj))
        elif doc is not None:
            records.append(_texts.text_record(public, "function", qualname, _texts.signature_of(obj), doc))

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
