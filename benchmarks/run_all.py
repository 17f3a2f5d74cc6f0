"""Run every benchmark in this directory: each ``benchmarks/*.py`` module that defines ``main(args)``.

``make bench`` runs this file. Modules whose name starts with ``_`` (shared
helpers) and this file are skipped. A module may define
``add_arguments(parser)`` to add its own options (prefix them with the module
name, e.g. ``--core-sizes``); every ``main`` receives the same namespace, with
``args.quick`` (small smoke run), ``args.write`` (update docs/BENCHMARKS.md)
and ``args.command`` (the command line, for the report).

Examples::

    python benchmarks/run_all.py                 # everything, full size; rewrites docs/BENCHMARKS.md
    python benchmarks/run_all.py --quick         # smoke run; prints only
    python benchmarks/run_all.py --only core --core-sizes 1e4,1e5
    python benchmarks/run_all.py --list
"""

from __future__ import annotations

import argparse
import ast
import gc
import importlib.util
import os
import shlex
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _defines(path: Path, names: tuple[str, ...]) -> set[str]:
    """Top-level functions among ``names`` that ``path`` defines (read without importing it)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError:
        return set(names)  # let the import report the error
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names}


def discover() -> list[Path]:
    """Benchmark files, sorted by name (``core`` first)."""
    files = [
        p for p in sorted(HERE.glob("*.py"))
        if not p.name.startswith("_") and p.resolve() != Path(__file__).resolve() and "main" in _defines(p, ("main",))
    ]
    return sorted(files, key=lambda p: (p.stem != "core", p.stem))


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"vecbox_bench_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _command() -> str:
    argv = shlex.join(["python", "benchmarks/run_all.py", *sys.argv[1:]])
    if os.environ.get("MAKELEVEL"):
        return "make bench" if len(sys.argv) == 1 else f"make bench ({argv})"
    return argv


def main(argv: list[str] | None = None) -> int:
    files = discover()
    names = [p.stem for p in files]
    parser = argparse.ArgumentParser(
        description="Run vecbox's benchmarks and update docs/BENCHMARKS.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"benchmarks found: {', '.join(names) or 'none'}",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a fast smoke run")
    parser.add_argument("--only", default="", help="comma-separated benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--write", action=argparse.BooleanOptionalAction, default=None,
        help="update docs/BENCHMARKS.md (default: yes for a full run, no with --quick)",
    )
    parser.add_argument("--keep-going", action="store_true", help="run the remaining benchmarks if one fails")

    # Per-benchmark options: only modules that define add_arguments are imported here.
    modules: dict[str, ModuleType] = {}
    broken: dict[str, str] = {}  # a benchmark that fails to import must not stop the others
    for path in files:
        if "add_arguments" in _defines(path, ("add_arguments",)):
            try:
                modules[path.stem] = _load(path)
                modules[path.stem].add_arguments(parser.add_argument_group(f"{path.stem} options"))
            except Exception:
                broken[path.stem] = traceback.format_exc()
    args = parser.parse_args(argv)
    if args.write is None:
        args.write = not args.quick
    args.command = _command()

    if args.list:
        print("\n".join(names))
        return 0
    selected = [n.strip() for n in args.only.split(",") if n.strip()] or names
    unknown = [n for n in selected if n not in names]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; found: {names}")

    failed = []
    t0 = time.perf_counter()
    for name in selected:
        print(f"\n=== benchmark: {name} ===", file=sys.stderr, flush=True)
        try:
            if name in broken:
                print(broken[name], file=sys.stderr)
                raise RuntimeError(f"benchmarks/{name}.py failed to import (traceback above)")
            module = modules.get(name) or _load(HERE / f"{name}.py")
            module.main(args)
        except KeyboardInterrupt:
            raise
        except Exception:
            traceback.print_exc()
            failed.append(name)
            if not args.keep_going:
                break
        gc.collect()
    minutes = (time.perf_counter() - t0) / 60
    if failed:
        print(f"\nbenchmarks failed: {', '.join(failed)} ({minutes:.1f} min)", file=sys.stderr)
        return 1
    print(f"\nall benchmarks done in {minutes:.1f} min", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
