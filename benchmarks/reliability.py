"""Reliability benchmark: readers under a busy writer, and many small commits (issue 18).

1. **Readers never fail.** One writer process loops over adds, upserts, deletes,
   compactions and index builds while four reader processes search (one query and batches,
   with and without a filter, with metadata), ``get`` and ``count`` as fast as they can, for
   ``--reliability-seconds`` (default 300). Every exception a reader sees is counted by type
   and message. Target: zero.
2. **Many small commits.** 10,000 single-row adds while two reader processes search: segment
   files at the end, allocated bytes, the first search of a fresh handle, and the largest WAL
   file seen. Targets: <= 50 segment files, first search <= 0.1 s, WAL <= 16 MB.
3. **Checksum cost.** Raw ingest (the core benchmark's protocol) with segment checksums and with
   the hashing switched off, alternating. Target: <= 5 %.

Run through ``benchmarks/run_all.py --only reliability`` or alone:
``python benchmarks/reliability.py [--quick] [--write]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _report as R  # noqa: E402
from _reliability_workers import DIM, SEED, _reader, _small_reader, _writer  # noqa: E402 - importable by spawn

NAME = "reliability"


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--reliability-seconds", type=float, default=None,
                        help="how long the readers run against the writer (default 300; quick 20)")
    parser.add_argument("--reliability-small-adds", type=int, default=None,
                        help="single-row adds in the small-commits test (default 10,000; quick 1,000)")


# --------------------------------------------------------------------------- tests
def bench_readers(tmp: Path, seconds: float) -> dict[str, Any]:
    from vecbox import Collection

    path = tmp / "busy"
    rng = np.random.default_rng(SEED)
    col = Collection.create(path, dim=DIM, metric="cosine")
    col.add([f"s{i}" for i in range(5000)], rng.standard_normal((5000, DIM)),
            [{"g": int(g)} for g in rng.integers(0, 10, 5000)])
    col.build_index("hnsw", M=8, ef_construction=40, target_recall=None, ef_search=32)
    col.close()
    ctx = mp.get_context("spawn")  # run standalone: under run_all the file has another module name
    out = ctx.Queue()
    stop_at = time.time() + seconds
    procs = [ctx.Process(target=_writer, args=(str(path), stop_at, out))]
    procs += [ctx.Process(target=_reader, args=(str(path), stop_at, 100 + i, out)) for i in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 600) for _ in procs]
    for p in procs:
        p.join()
    writer = next(r for kind, r in results if kind == "writer")
    readers = [r for kind, r in results if kind == "reader"]
    errors: Counter[str] = Counter()
    for r in readers:
        errors.update(r["errors"])
    with Collection.open(path) as check:
        verified = check.count()
    return {"seconds": seconds, "writer_ops": writer, "reads": sum(r["reads"] for r in readers),
            "errors": dict(errors), "tracebacks": {k: v for r in readers for k, v in r["tracebacks"].items()},
            "rows_at_end": verified}


def bench_small_commits(tmp: Path, n_adds: int) -> dict[str, Any]:
    from vecbox import Collection
    from vecbox.storage.segments import dir_size

    path = tmp / "small"
    col = Collection.create(path, dim=DIM)
    col.add(["seed"], np.ones((1, DIM)))
    ctx = mp.get_context("spawn")  # run standalone: under run_all the file has another module name
    out, stop = ctx.Queue(), ctx.Event()
    readers = [ctx.Process(target=_small_reader, args=(str(path), stop, out)) for _ in range(2)]
    for p in readers:
        p.start()
    rng = np.random.default_rng(SEED)
    t0 = time.perf_counter()
    for i in range(n_adds):
        col.add([f"a{i}"], rng.standard_normal((1, DIM)))
    add_seconds = time.perf_counter() - t0
    stop.set()
    stats = [out.get(timeout=120) for _ in readers]
    for p in readers:
        p.join()
    col.close()
    t0 = time.perf_counter()
    fresh = Collection.open(path)
    fresh.search(np.ones(DIM), 10)
    first_search = time.perf_counter() - t0
    files = len(list((path / "segments").iterdir()))
    return {"adds": n_adds, "adds_per_s": n_adds / add_seconds, "segment_files": files,
            "allocated_bytes": dir_size(path / "segments"), "first_search_s": first_search,
            "wal_max_bytes": max(s["wal_max"] for s in stats), "reader_errors": sum(s["errors"] for s in stats),
            "reader_reads": sum(s["reads"] for s in stats), "rows": fresh.count()}


def bench_checksum_cost(tmp: Path, n: int = 200_000, repeats: int = 3) -> dict[str, Any]:
    """Ingest throughput (core benchmark's protocol: 384-d, batches of 10,000) with and without segment checksums."""
    from vecbox import Collection
    from vecbox.storage import segments

    x = np.random.default_rng(SEED).standard_normal((n, 384)).astype(np.float32)
    real = segments._Checksummed.write

    def plain(self: Any, data: Any) -> int:  # the same write, no hashing
        return self.fh.write(data)

    times: dict[str, list[float]] = {"with": [], "without": []}
    for rep in range(repeats):
        for mode in (("with", "without") if rep % 2 == 0 else ("without", "with")):
            segments._Checksummed.write = real if mode == "with" else plain
            try:
                col = Collection.create(tmp / f"ck-{mode}-{rep}", dim=384)
                t0 = time.perf_counter()
                for start in range(0, n, 10_000):
                    col.add([f"{start + i}" for i in range(10_000)], x[start:start + 10_000])
                times[mode].append(time.perf_counter() - t0)
                col.close()
            finally:
                segments._Checksummed.write = real
            shutil.rmtree(tmp / f"ck-{mode}-{rep}", ignore_errors=True)
    rate = {m: n / float(np.median(t)) for m, t in times.items()}
    return {"n": n, "with_per_s": rate["with"], "without_per_s": rate["without"],
            "cost": 1 - rate["with"] / rate["without"]}


# --------------------------------------------------------------------------- report
def _tables(res: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    busy = res["readers"]
    ops = ", ".join(f"{k} {v:,}" for k, v in sorted(busy["writer_ops"].items()))
    t1 = ("4 readers + 1 writer", ["seconds", "writer operations", "reads", "reader errors", "target: 0"],
          [[f"{busy['seconds']:.0f}", ops, f"{busy['reads']:,}", sum(busy["errors"].values()),
            R.verdict(not busy["errors"])]])
    small = res["small"]
    t2 = (f"{small['adds']:,} single-row adds, 2 readers searching",
          ["segment files (<= 50)", "allocated MB", "first search s (<= 0.1)", "WAL max MB (<= 16)", "adds/s",
           "reader errors"],
          [[f"{small['segment_files']:,} {R.verdict(small['segment_files'] <= 50)}",
            f"{small['allocated_bytes'] / 1e6:.1f}",
            f"{small['first_search_s']:.3f} {R.verdict(small['first_search_s'] <= 0.1)}",
            f"{small['wal_max_bytes'] / 1e6:.1f} {R.verdict(small['wal_max_bytes'] <= 16e6)}",
            f"{small['adds_per_s']:,.0f}", small["reader_errors"]]])
    out = [t1, t2]
    ck = res.get("checksums")
    if ck:
        out.append((f"Checksum cost: ingest of {ck['n']:,} 384-d vectors, batches of 10,000 (median of 3, alternating)",
                    ["with checksums (vectors/s)", "without (vectors/s)", "cost (<= 5 %)"],
                    [[f"{ck['with_per_s']:,.0f}", f"{ck['without_per_s']:,.0f}",
                      f"{100 * ck['cost']:.1f} % {R.verdict(ck['cost'] <= 0.05)}"]]))
    return out


def main(args: argparse.Namespace) -> dict[str, Any]:
    quick = bool(getattr(args, "quick", False))
    seconds = R.opt(args, "reliability_seconds", 20.0 if quick else 300.0)
    n_adds = R.opt(args, "reliability_small_adds", 1000 if quick else 10_000)
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="vecbox-bench-reliability-"))
    try:
        R.log(f"reliability: 4 readers + 1 writer for {seconds:.0f} s")
        res = {"readers": bench_readers(tmp, seconds)}
        R.log(f"reliability: {n_adds:,} single-row adds")
        res["small"] = bench_small_commits(tmp, n_adds)
        R.log("reliability: checksum cost on ingest")
        res["checksums"] = bench_checksum_cost(tmp, 20_000 if quick else 200_000)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    env = R.environment(getattr(args, "command", None), started)
    tables = _tables(res)
    for title, headers, rows in tables:
        R.print_table(f"reliability — {title}", headers, rows)
    for key, tb in res["readers"]["tracebacks"].items():
        R.log(f"reader error {key}\n{tb}")
    if getattr(args, "write", not quick):
        body = ["## Reliability: readers under a busy writer, many small commits (issue 18)", "",
                R.environment_markdown(env), ""]
        for title, headers, rows in tables:
            body += [f"### {title}", "", R.md_table(headers, rows), ""]
        if res["readers"]["errors"]:
            body += ["Reader errors:", "", "```", json.dumps(res["readers"]["errors"], indent=1), "```", ""]
        R.write_section(NAME, "\n".join(body))
    return res


if __name__ == "__main__":
    R.run_standalone(__doc__, "benchmarks/reliability.py", add_arguments, main)
