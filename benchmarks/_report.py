"""Shared helpers for the benchmarks: options, threads, timing, machine facts, tables, plots, the shared
data (SciFact), docs/BENCHMARKS.md. Every ``benchmarks/*.py`` imports it as ``R``.

Every benchmark writes one section of ``docs/BENCHMARKS.md``, delimited by
``<!-- BEGIN name -->`` / ``<!-- END name -->``; :func:`write_section` replaces
only that section and keeps the rest of the file (header and other sections)
byte for byte. A new section is appended at the end.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import importlib
import importlib.metadata
import json
import os
import platform
import re
import shlex
import statistics
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS_PATH = ROOT / "docs" / "BENCHMARKS.md"
IMG_DIR = ROOT / "docs" / "img"
DATA = ROOT.parent / "shared" / "data"  # data sets shared with the other projects (BEIR SciFact, graphs, ...)
SCIFACT = DATA / "scifact"

HEADER = """\
# Benchmarks

`make bench` runs `.venv/bin/python benchmarks/run_all.py` (with `HF_HUB_OFFLINE=1`), which
runs every module in `benchmarks/` that defines `main(args)`. Each benchmark prints its
tables and rewrites its own section of this file (between `<!-- BEGIN name -->` and
`<!-- END name -->` markers); text outside those markers is kept as is.

All peer numbers (FAISS, plain sentence-transformers, ...) are measured **in the same run,
on the same machine, on the same seeded data** as the vecbox numbers they are compared
with; ratios are vecbox / peer time (lower is better) unless a table says otherwise. Each
section records when and where it was measured and the exact command.

Reproduce:

```sh
make bench                                     # full run, rewrites the sections below
.venv/bin/python benchmarks/run_all.py --quick # small smoke run (prints only; add --write to update this file)
.venv/bin/python benchmarks/run_all.py --only core          # one benchmark (--help: all options)
```

Timings are wall-clock (`time.perf_counter`), after one warm-up call. The reference machine
has 2 cores: if anything else runs at the same time, numbers get worse and noisier (multithreaded
BLAS calls can slow down many times over when a core is taken), so each section says how much CPU
other processes used during its run and warns when it was more than 10 %.
"""


# --------------------------------------------------------------------------- timing
def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``fn`` once; return (seconds, result)."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def quiet_gc() -> None:
    """Collect garbage now so that a collection does not land inside a timed region."""
    gc.collect()


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Run ``fn`` ``repeats`` times (garbage collected before each); return (fastest seconds, last result).

    The fastest run is timeit's rule: on a shared machine the slower runs measure the other processes.
    """
    times, out = [], None
    for _ in range(repeats):
        quiet_gc()
        t, out = timed(fn)
        times.append(t)
    return min(times), out


# --------------------------------------------------------------------------- options, threads
def opt(args: Any, name: str, default: Any) -> Any:
    """``args.name`` unless it is missing or None (run_all's namespace holds every benchmark's options)."""
    value = getattr(args, name, None)
    return default if value is None else value


def add_options(parser: Any, prefix: str, options: dict[str, tuple[Callable[[str], Any], str]]) -> None:
    """Add ``--{prefix}-{name}`` (type, help) for each option, all defaulting to None: ``main`` then picks the
    default with :func:`opt`, which may differ between a full run and ``--quick``."""
    for name, (kind, text) in options.items():
        parser.add_argument(f"--{prefix}-{name}", type=kind, default=None, help=text)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@contextlib.contextmanager
def limit_threads(n: int, *, blas: bool = True, openmp: bool = True, faiss: bool = True) -> Iterator[None]:
    """Limit the threads of BLAS (numpy), of OpenMP libraries and of FAISS's OpenMP to ``n`` inside the block.

    On the 2-core reference machine a second BLAS or OpenMP thread mostly spins and waits, so a single-query
    or training step is timed with one. ``blas`` / ``openmp`` select threadpoolctl's APIs (nothing happens
    without threadpoolctl); ``faiss`` sets ``faiss.omp_set_num_threads`` (when FAISS is installed).
    """
    fx = None
    if faiss:
        try:
            import faiss as fx
        except ImportError:
            fx = None
    before = fx.omp_get_max_threads() if fx is not None else None
    ctx: Any = contextlib.nullcontext()
    if blas or openmp:
        try:
            from threadpoolctl import threadpool_limits

            ctx = threadpool_limits(limits=n, user_api=None if blas and openmp else "blas" if blas else "openmp")
        except ImportError:
            pass
    if fx is not None:
        fx.omp_set_num_threads(n)
    try:
        with ctx:
            yield
    finally:
        if fx is not None:
            fx.omp_set_num_threads(before)


# --------------------------------------------------------------------------- environment
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


def _version(dist: str, module: str | None = None) -> str | None:
    """Version of an installed distribution, without importing it when possible."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        pass
    if module:
        try:
            return str(importlib.import_module(module).__version__)
        except Exception:
            return None
    return None


def blas_info() -> list[str]:
    """numpy's BLAS (from its build configuration), then every BLAS / OpenMP library loaded now (threadpoolctl)."""
    lines: list[str] = []
    try:
        import numpy as np

        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]  # numpy >= 2
        lines.append(f"numpy built with {blas.get('name')} {blas.get('version')}")
    except Exception:
        pass
    try:
        from threadpoolctl import threadpool_info

        for lib in threadpool_info():
            parts = Path(lib.get("filepath", "")).parts
            pkg = parts[parts.index("site-packages") + 1] if "site-packages" in parts else Path(*parts[:-1]).name
            owner = pkg.replace(".libs", "").replace("_", "-")
            arch = f", core {lib['architecture']}" if lib.get("architecture") else ""
            version = f" {lib['version']}" if lib.get("version") else ""
            line = f"{lib.get('internal_api')}{version} ({owner}{arch}, {lib.get('num_threads')} threads)"
            if line not in lines:
                lines.append(line)
    except Exception:
        lines.append("threadpoolctl not available")
    return lines or ["unknown"]


def environment(command: str | None = None, started: float | None = None) -> dict[str, Any]:
    """Facts about this machine and software, for the report.

    Call it at the end of a benchmark, so that every BLAS library it loaded is listed;
    ``started`` (a ``time.time()``) dates the report from the start of the run.
    """
    import numpy as np

    flags = _cpu_flags()
    simd = [f for f in ("avx512f", "avx2", "fma") if f in flags]
    affinity = usable_cores()
    ram = _ram_gib()
    return {
        "date": _dt.datetime.fromtimestamp(started if started is not None else time.time(), _dt.timezone.utc)
        .strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{_cpu_model()} ({', '.join(simd) or 'no AVX'})",
        "cores": f"{os.cpu_count()} logical, {affinity} usable",
        "ram": f"{ram:.1f} GiB" if ram else "unknown",
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "numpy": np.__version__,
        "blas": blas_info(),
        "vecbox": _version("vecbox", "vecbox"),
        "faiss": _version("faiss-cpu", "faiss"),
        "torch": _version("torch", "torch"),
        "sentence-transformers": _version("sentence-transformers", "sentence_transformers"),
        "command": command or shlex.join([Path(sys.executable).name, *sys.argv]),
        "load_end": load_average(),
    }


def load_average() -> float | None:
    """1-minute load average (other processes competing for the cores), if the OS reports it."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def process_table() -> dict[int, tuple[int, str, list[str]]]:
    """Every live process: pid -> (parent pid, command name, the fields of ``/proc/PID/stat`` after the
    name, so that ``[11]``/``[12]`` are user/system ticks and ``[19]`` the start tick). Empty off Linux."""
    procs = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            fields = text[text.rindex(")") + 2:].split()
            procs[int(stat.parent.name)] = (int(fields[1]), text[text.index("(") + 1:text.rindex(")")], fields)
        except (OSError, ValueError, IndexError):
            continue
    return procs


def descendants(procs: dict[int, tuple[int, str, list[str]]], root: int | None = None) -> set[int]:
    """The pids below ``root`` (default: this process) in a :func:`process_table`."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [os.getpid() if root is None else root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


class CpuMonitor:
    """How much CPU *other* processes used while a benchmark ran.

    ``/proc/stat`` gives the busy time of the whole machine; ``os.times()`` that of this process and
    of its exited children once waited for. A Spark JVM and its Python workers are descendants that
    may never be waited for by this process (the workers are the JVM's, and a stopped session's JVM
    can outlive its use), so a thread looks at this process's descendants every ``interval`` seconds
    and keeps the last CPU time seen of each (its own user + system time, so that a waited-for
    grandchild is not counted twice). The benchmark's own CPU is this process's plus the larger of
    its waited children's and its seen descendants'; the rest of the machine's busy time, over the wall
    time and the cores, is the share taken by other processes (0.0 = idle machine apart from the
    benchmark, 1.0 = every core busy with something else). Unlike the load average it does not count
    the benchmark itself.

    >>> mon = CpuMonitor()            # doctest: +SKIP
    >>> ...                           # doctest: +SKIP
    >>> mon.others_share()            # doctest: +SKIP
    0.03
    """

    def __init__(self, interval: float = 2.0) -> None:
        self._seen: dict[tuple[int, int], float] = {}  # (pid, start tick) -> CPU seconds last seen
        self._lock = threading.Lock()  # the watching thread and _sample both look
        self._look()
        self._start = self._sample()
        ref = weakref.ref(self)

        def watch() -> None:  # holds no reference between looks: the thread ends with its monitor
            while True:
                time.sleep(interval)
                mon = ref()
                if mon is None:
                    return
                mon._look()
                del mon

        threading.Thread(target=watch, name="vecbox-bench-cpu", daemon=True).start()

    def _look(self) -> None:
        """Record the CPU time of every live descendant of this process (and of those seen before)."""
        procs = process_table()
        mine, tick = descendants(procs), os.sysconf("SC_CLK_TCK")
        with self._lock:
            for pid, (_, _, f) in procs.items():
                key = (pid, int(f[19]))
                # a descendant orphaned after it was seen (its parent exited) is still the benchmark's
                if pid in mine or key in self._seen:
                    self._seen[key] = (int(f[11]) + int(f[12])) / tick

    def _sample(self) -> tuple[float, float | None, float]:
        t = os.times()
        self._look()
        with self._lock:
            seen = sum(self._seen.values())
        own = t.user + t.system + max(t.children_user + t.children_system, seen)
        busy = None
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
            vals = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
            busy = (sum(vals) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
        return time.perf_counter(), busy, own

    def others_share(self) -> float | None:
        """Share of all cores used by other processes since construction (None if unknown)."""
        w0, b0, o0 = self._start
        w1, b1, o1 = self._sample()
        if b0 is None or b1 is None or w1 <= w0:
            return None
        cores = os.cpu_count() or 1
        return max(0.0, ((b1 - b0) - (o1 - o0)) / ((w1 - w0) * cores))


def busy_warning(env: dict[str, Any]) -> str | None:
    """A Markdown warning when other processes competed for the CPU during the run.

    Uses ``env["others_cpu"]`` (from :class:`CpuMonitor`) when present: warns above 10 %.
    Otherwise falls back on the 1-min load average (which includes the benchmark itself).
    """
    cores = os.cpu_count() or 1
    others = env.get("others_cpu")
    if others is not None:
        if others <= 0.10:
            return None
        what = f"other processes used {others:.0%} of the {cores} cores during the run"
    else:
        loads = [x for x in (env.get("load_start"), env.get("load_end")) if x is not None]
        if not loads or max(loads) <= 0.5 * cores + 1:
            return None
        what = f"1-min load average up to {max(loads):.1f} on {cores} cores"
    return (
        f"> ⚠️ Measured while other processes were using the CPU ({what}): absolute numbers are "
        f"pessimistic and noisier than on an idle machine; vecbox and its peers were measured side by side, "
        f"so the ratios are less affected. Re-run `make bench` on an idle machine for reference figures."
    )


def environment_markdown(env: dict[str, Any]) -> str:
    """The environment as a compact Markdown bullet list."""
    sw = ", ".join(
        f"{name} {env[name]}"
        for name in ("python", "numpy", "vecbox", "faiss", "torch", "sentence-transformers")
        if env.get(name)
    )
    blas = "; ".join(env["blas"])
    load = ""
    if env.get("others_cpu") is not None:
        load = f" (other processes used {env['others_cpu']:.0%} of the CPU meanwhile)"
    elif env.get("load_start") is not None and env.get("load_end") is not None:
        load = f" (1-min load average {env['load_start']:.2f} at the start, {env['load_end']:.2f} at the end)"
    return "\n".join(
        [
            f"- **Measured:** {env['date']}{load}, command `{env['command']}`",
            f"- **Machine:** {env['cpu']}, {env['cores']} cores, {env['ram']} RAM, {env['os']}",
            f"- **Software:** {sw}",
            f"- **BLAS / OpenMP loaded:** {blas}",
        ]
    )


# --------------------------------------------------------------------------- tables
def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub Markdown table; ``align`` is one char per column (l/r), default: first left, rest right."""
    align = align or "l" + "r" * (len(headers) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], note: str | None = None) -> None:
    """Print a table with Rich (plain text if Rich is missing)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(f"\n{title}\n" + md_table(headers, rows))
        return
    table = Table(title=title, title_justify="left", caption=note, caption_justify="left")
    for i, h in enumerate(headers):
        table.add_column(str(h), justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[re.sub(r"\*\*(.*?)\*\*", r"\1", str(c)) for c in row])
    console = Console()
    if not console.is_terminal or console.width < 160:
        console = Console(width=160)  # wide tables; a pipe or log file has no width limit
    console.print(table)


def log(msg: str) -> None:
    """Progress line on stderr (kept out of the tables)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- plots
def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int, rect: tuple[float, float, float, float] | None = None) -> Path:
    """Lay ``fig`` out (``tight_layout``, within ``rect`` if given), write it to ``path`` and close it."""
    fig.tight_layout(**({"rect": rect} if rect else {}))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


# --------------------------------------------------------------------------- number formats
def fmt_rate(x: float) -> str:
    """Rate with thousands separators (``123,456``); one decimal below 100 (``18.0``)."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 1 else f"{x:.3g}"


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}×"


def verdict(ok: bool) -> str:
    return "✅ met" if ok else "❌ missed"


# --------------------------------------------------------------------------- docs/BENCHMARKS.md
def _markers(name: str) -> tuple[str, str]:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"section name {name!r}: use letters, digits, '_', '-', '.'")
    return f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"


def write_section(name: str, body: str, path: Path = DOCS_PATH) -> Path:
    """Replace the ``name`` section of ``path`` with ``body`` (append it if absent).

    The file is created with :data:`HEADER` if it does not exist. Everything
    outside the section's markers is preserved. The write is atomic (temp file +
    rename), so an interrupted run never leaves half a file.
    """
    begin, end = _markers(name)
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    block = f"{begin}\n{body.strip()}\n{end}"
    i, j = text.find(begin), text.find(end)
    if (i == -1) != (j == -1) or (i != -1 and j < i):
        raise RuntimeError(f"{path}: the markers of section {name!r} are unbalanced; fix the file by hand")
    if i == -1:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        text = text[:i] + block + text[j + len(end) :]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- shared data: SciFact, the encoder cache
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


def cache_dir() -> Path:
    """vecbox's cache directory (embeddings, tokens): what the benchmarks encode once is reused."""
    from vecbox.encoders.cache import default_cache_dir

    return default_cache_dir()


def text_encoder() -> Any:
    """The default text encoder (all-MiniLM-L6-v2), caching its vectors in :func:`cache_dir`."""
    from vecbox.encoders.text import TextEncoder

    return TextEncoder(cache_dir=cache_dir())


def scifact_sentence_rows(root: Path = SCIFACT) -> tuple[list[str], list[str], list[int]]:
    """The SciFact corpus split into sentences (titles are sentences too), unique, in file order, with the
    document id and the position in its document of each sentence's first occurrence."""
    seen: dict[str, tuple[str, int]] = {}
    with open(root / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            parts = [doc.get("title", "").strip()] + [p.strip() for p in _SENTENCE_SPLIT.split(doc.get("text", ""))]
            pos = 0
            for p in parts:
                if p:
                    seen.setdefault(p, (str(doc.get("_id")), pos))
                    pos += 1
    texts = list(seen)
    return texts, [seen[t][0] for t in texts], [seen[t][1] for t in texts]


def scifact_queries(enc: Any, root: Path = SCIFACT) -> Any:
    """The SciFact queries encoded by ``enc`` (an (n, d) array)."""
    with open(root / "queries.jsonl", encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh if line.strip()]
    return enc.encode(texts, kind="query")


# --------------------------------------------------------------------------- memory, disk, versions
def rss_bytes() -> int | None:
    """Resident set size of this process now (Linux ``/proc/self/statm``), or None elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def trim_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``), before an RSS reading."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def dir_bytes(path: Path | str) -> int:
    """Bytes of all files under ``path`` (a file: its size; missing: 0)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def versions(dists: Sequence[str]) -> str:
    """``"name 1.2.3, other 4.5"`` for the installed distributions among ``dists`` (missing ones: "not installed")."""
    return ", ".join(f"{d} {_version(d) or 'not installed'}" for d in dists)


def run_standalone(doc: str, script: str, add_arguments: Callable[[Any], None], main: Callable[[Any], Any]) -> Any:
    """The ``if __name__ == "__main__"`` block every benchmark shares: ``--quick``, ``--write``, its own options.

    ``--write`` defaults to yes for a full run and no with ``--quick``; ``args.command`` records the command line.
    """
    import argparse

    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--write", action=argparse.BooleanOptionalAction, default=None,
                   help="update docs/BENCHMARKS.md (default: yes for a full run, no with --quick)")
    add_arguments(p)
    args = p.parse_args()
    if args.write is None:
        args.write = not args.quick
    args.command = " ".join(["python", script, *sys.argv[1:]])
    return main(args)
