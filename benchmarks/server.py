"""Server benchmark: ``vecbox serve`` under load on loopback, and Chroma's own server side by side (issue 20).

1. **Load.** A 100k x 384 collection (``--quick``: 10k) of the search benchmark's SYNTHETIC
   mixture (see :func:`dataset`) with an HNSW index (``build_index("hnsw")``), served by
   ``vecbox serve`` started as a subprocess. First 200 of the queries one at a time: recall@10
   against exact search and unloaded latency, for each server at its default index settings.
   Then 32 concurrent clients (one asyncio loop, httpx) run for 30 s, each request a search
   (k=10; most of them) or an upsert of 10 rows (``--server-upsert-fraction``, default 0.1).
   Reported: p50 / p99 latency per kind, throughput, and every error by status. Targets: zero
   5xx, search p99 < 50 ms.
2. **Text queries.** A small collection with the bundled model; after a first query (which
   loads the model), short text queries one at a time: p50. Target: < 30 ms.
3. **Chroma.** ``chroma run --path DIR --port P`` on the same vectors, the same query mix and
   the same concurrency through chromadb's ``AsyncHttpClient``; ratios vecbox / Chroma.

The load generator runs in this process, on the same 2 cores as the server: its own CPU is part
of what is measured, for both servers alike.

Run through ``benchmarks/run_all.py --only server`` or alone:
``python benchmarks/server.py [--quick] [--write]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _report as R

from vecbox.evaluation.metrics import knn_recall

NAME = "server"
DIM, K, UPSERT_ROWS, SEED = 384, 10, 10, 0
RECALL_QUERIES = 200  # of the load's queries, sent one at a time before the load (recall@K, unloaded latency)
SRC = str(Path(__file__).resolve().parents[1] / "src")
NOTE = ("The clients are a closed loop (each sends its next request when the last one is answered), so by "
        "Little's law the mean latency under load is clients / throughput: a search p99 under 50 ms with 32 clients "
        "needs well over 640 requests/s, at most ~3 ms of CPU per request for server and load generator together on "
        "these 2 cores. Measured on this collection (10 s runs, CPU time of each process): the load generator alone "
        "(httpx, one asyncio loop) spends 1.7-3.6 ms of CPU per request; the server spends ~1.9 ms per search "
        "(HTTP, JSON, the HNSW walk) and ~25 ms per upsert of 10 rows (a segment file, two fsyncs, the commit, "
        "small-segment merges; every acknowledged upsert is durable), ~4.5 ms per request at 10 % upserts. That "
        "caps this mix at ~300 requests/s on 2 cores (~100 ms mean latency), whatever the server does in Python; "
        "`--workers 2` measured no better (221 vs 256 requests/s) because the load generator already takes a core.")
TEXT_QUERIES = ["solar panels", "heart disease", "machine learning", "river flooding", "vitamin d",
                "protein folding", "climate change", "stock market", "quantum computing", "gene therapy"]


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--server-n", type=int, default=None, help="vectors in the collection (default 100,000; quick 10,000)")
    parser.add_argument("--server-seconds", type=float, default=None, help="load duration (default 30; quick 10)")
    parser.add_argument("--server-clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--server-upsert-fraction", type=float, default=0.1, help="share of requests that upsert")
    parser.add_argument("--server-workers", type=int, default=1, help="vecbox serve --workers")
    parser.add_argument("--server-no-chroma", action="store_true", help="skip Chroma's server")
    parser.add_argument("--server-no-text", action="store_true", help="skip the text-query test")


# --------------------------------------------------------------------------- processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            raise RuntimeError(f"{what} did not start (exit {proc.returncode})")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start_vecbox(root: Path, workers: int) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "vecbox.cli", "serve", str(root), "--port", str(port),
                             "--workers", str(workers)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    _wait(f"{url}/health", proc, "vecbox serve")
    return proc, url


def start_chroma(path: Path) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    chroma = Path(sys.executable).with_name("chroma")
    proc = subprocess.Popen([str(chroma if chroma.exists() else "chroma"), "run", "--path", str(path), "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    _wait(f"http://127.0.0.1:{port}/api/v2/heartbeat", proc, "chroma run")
    return proc, port


# --------------------------------------------------------------------------- data
N_QUERIES, N_UPSERT_BODIES = 512, 256


def dataset(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` collection vectors, the load's queries and the upserts' new vectors, all from one distribution.

    The search benchmark's SYNTHETIC mixture (unit vectors: cluster centres plus a shared 48-d
    latent factor plus noise), because real embeddings have that kind of structure; isotropic
    random vectors are the one case where no ANN index beats a scan (every point is about equally
    far from every other), which measures the index's worst case rather than a service.
    """
    from _search.data import synthetic_dataset

    extra = N_QUERIES + N_UPSERT_BODIES * UPSERT_ROWS
    ds = synthetic_dataset(n, extra)
    return ds.x, ds.q[:N_QUERIES], ds.q[N_QUERIES:]


def upsert_rows(n: int, fresh: np.ndarray) -> list[tuple[list[str], np.ndarray]]:
    """The upserts of the load: each replaces up to UPSERT_ROWS random stored ids with new vectors."""
    rng = np.random.default_rng(SEED + 2)
    out = []
    for j in range(N_UPSERT_BODIES):
        ids = list(dict.fromkeys(str(int(i)) for i in rng.integers(0, n, UPSERT_ROWS)))
        out.append((ids, fresh[j * UPSERT_ROWS: j * UPSERT_ROWS + len(ids)]))
    return out


def build_vecbox(root: Path, x: np.ndarray) -> dict[str, float]:
    from vecbox import Collection

    t0 = time.perf_counter()
    col = Collection.create(root / "bench", dim=DIM, metric="cosine")
    for start in range(0, len(x), 10_000):
        col.add([str(i) for i in range(start, min(start + 10_000, len(x)))], x[start:start + 10_000])
    t1 = time.perf_counter()
    col.build_index("hnsw")
    t2 = time.perf_counter()
    col.close()
    return {"ingest_s": t1 - t0, "index_s": t2 - t1}


def build_chroma(port: int, x: np.ndarray) -> dict[str, float]:
    import chromadb

    client = chromadb.HttpClient(host="127.0.0.1", port=port)
    col = client.create_collection("bench", metadata={"hnsw:space": "cosine"})
    batch = min(5000, client.get_max_batch_size())
    t0 = time.perf_counter()
    for start in range(0, len(x), batch):
        stop = min(start + batch, len(x))
        col.add(ids=[str(i) for i in range(start, stop)], embeddings=x[start:stop])
    col.query(query_embeddings=x[:1], n_results=K)  # the index is usable
    return {"ingest_s": time.perf_counter() - t0}


def exact_top(x: np.ndarray, queries: np.ndarray) -> list[list[str]]:
    """The true top-K ids of each query (unit vectors: inner product = cosine)."""
    from vecbox.index.flat import exact_topk

    _, idx = exact_topk(x, queries, K, "cosine")
    return [[str(i) for i in row] for row in idx.tolist()]


def recall_vecbox(url: str, x: np.ndarray, queries: np.ndarray) -> dict[str, float]:
    """recall@K of the served search against exact search, and one-at-a-time latency, before the load."""
    import httpx

    queries = queries[:RECALL_QUERIES]
    truth, found, times = exact_top(x, queries), [], []
    with httpx.Client(base_url=url, timeout=60) as http:
        for q in queries:
            t0 = time.perf_counter()
            r = http.post("/collections/bench/search", json={"vector": q.tolist(), "k": K, "include_metadata": False})
            times.append(time.perf_counter() - t0)
            r.raise_for_status()
            found.append([h["id"] for h in r.json()["hits"]])
    return {"recall": float(knn_recall(found, truth, K)), "p50": float(np.median(times))}


def recall_chroma(port: int, x: np.ndarray, queries: np.ndarray) -> dict[str, float]:
    """The same for Chroma's server (its default HNSW settings)."""
    import chromadb

    col = chromadb.HttpClient(host="127.0.0.1", port=port).get_collection("bench")
    queries = queries[:RECALL_QUERIES]
    truth, found, times = exact_top(x, queries), [], []
    for q in queries:
        t0 = time.perf_counter()
        r = col.query(query_embeddings=[q.tolist()], n_results=K, include=["distances"])
        times.append(time.perf_counter() - t0)
        found.append(r["ids"][0])
    return {"recall": float(knn_recall(found, truth, K)), "p50": float(np.median(times))}


# --------------------------------------------------------------------------- load
async def _load(search: Callable[[int], Awaitable[None]], upsert: Callable[[int], Awaitable[None]], *,
                seconds: float, clients: int, upsert_fraction: float, warmup: float = 2.0) -> dict[str, Any]:
    lat: dict[str, list[float]] = {"search": [], "upsert": []}
    errors: Counter[str] = Counter()
    t_start = time.perf_counter()
    t_measure, t_end = t_start + warmup, t_start + warmup + seconds

    async def client(c: int) -> None:
        rng = np.random.default_rng(1000 + c)
        i = 0
        while True:
            now = time.perf_counter()
            if now >= t_end:
                return
            kind = "upsert" if rng.random() < upsert_fraction else "search"
            i += 1
            try:
                await (upsert if kind == "upsert" else search)(int(rng.integers(1 << 30)))
            except Exception as exc:  # noqa: BLE001 - counted, by kind
                if now >= t_measure:
                    errors[f"{kind}: {getattr(exc, 'status', None) or type(exc).__name__}"] += 1
                continue
            if now >= t_measure:
                lat[kind].append(time.perf_counter() - now)

    await asyncio.gather(*(client(c) for c in range(clients)))
    return {"lat": lat, "errors": dict(errors), "seconds": seconds}


class _HTTPStatus(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:200]}")
        self.status = status


def load_vecbox(url: str, n: int, queries: np.ndarray, fresh: np.ndarray, args: dict[str, Any]) -> dict[str, Any]:
    import httpx

    search_bodies = [json.dumps({"vector": q.tolist(), "k": K, "include_metadata": False}).encode() for q in queries]
    upsert_bodies = [json.dumps({"ids": ids, "vectors": vecs.tolist()}).encode() for ids, vecs in upsert_rows(n, fresh)]

    async def run() -> dict[str, Any]:
        limits = httpx.Limits(max_connections=args["clients"], max_keepalive_connections=args["clients"])
        headers = {"Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60, headers=headers) as http:
            async def post(path: str, body: bytes) -> None:
                r = await http.post(path, content=body)
                if r.status_code >= 400:
                    raise _HTTPStatus(r.status_code, r.text)

            async def search(i: int) -> None:
                await post("/collections/bench/search", search_bodies[i % len(search_bodies)])

            async def upsert(i: int) -> None:
                await post("/collections/bench/upsert", upsert_bodies[i % len(upsert_bodies)])

            return await _load(search, upsert, **args)

    return asyncio.run(run())


def load_chroma(port: int, n: int, queries: np.ndarray, fresh: np.ndarray, args: dict[str, Any]) -> dict[str, Any]:
    import chromadb

    queries = [q.tolist() for q in queries]
    upserts = [(ids, vecs.tolist()) for ids, vecs in upsert_rows(n, fresh)]

    async def run() -> dict[str, Any]:
        client = await chromadb.AsyncHttpClient(host="127.0.0.1", port=port)
        col = await client.get_collection("bench")

        async def search(i: int) -> None:
            await col.query(query_embeddings=[queries[i % len(queries)]], n_results=K, include=["distances"])

        async def upsert(i: int) -> None:
            ids, vecs = upserts[i % len(upserts)]
            await col.upsert(ids=ids, embeddings=vecs)

        return await _load(search, upsert, **args)

    return asyncio.run(run())


def text_queries(root: Path, url: str) -> dict[str, Any]:
    """First text query (loads the model) and the p50 of short ones after it, one at a time."""
    import httpx

    from vecbox import Collection

    col = Collection.create(root / "texts", model="default")
    col.add_texts([f"{q} study number {i}" for i in range(20) for q in TEXT_QUERIES],
                  [f"t{i}" for i in range(200)])
    col.close()
    with httpx.Client(base_url=url, timeout=120) as http:
        t0 = time.perf_counter()
        r = http.post("/collections/texts/search", json={"text": "solar energy", "k": K})
        first = time.perf_counter() - t0
        r.raise_for_status()
        times = []
        for rep in range(5):
            for q in TEXT_QUERIES:
                t0 = time.perf_counter()
                http.post("/collections/texts/search", json={"text": q, "k": K}).raise_for_status()
                times.append(time.perf_counter() - t0)
    return {"first_s": first, "p50_s": float(np.median(times)), "p99_s": float(np.percentile(times, 99)),
            "queries": len(times)}


# --------------------------------------------------------------------------- report
def summary(res: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"errors": res["errors"]}
    total = 0
    for kind, xs in res["lat"].items():
        a = np.asarray(xs) if xs else np.asarray([np.nan])
        out[kind] = {"n": len(xs), "p50": float(np.median(a)), "p99": float(np.percentile(a, 99)),
                     "per_s": len(xs) / res["seconds"]}
        total += len(xs)
    out["per_s"] = total / res["seconds"]
    out["five_xx"] = sum(v for k, v in res["errors"].items() if k.split(": ")[-1].isdigit()
                         and int(k.split(": ")[-1]) >= 500)
    return out


def _errs(s: dict[str, Any]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in sorted(s["errors"].items())) or "0"


def _tables(res: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    cfg = res["config"]
    v = res["vecbox"]
    heads = ["server", "search p50 ms", "search p99 ms (< 50)", "upsert p50 ms", "upsert p99 ms", "searches/s", "upserts/s",
             "requests/s", "errors"]
    rows = [["vecbox serve", R.fmt_ms(v["search"]["p50"]),
             f"{R.fmt_ms(v['search']['p99'])} {R.verdict(v['search']['p99'] < 0.05)}",
             R.fmt_ms(v["upsert"]["p50"]), R.fmt_ms(v["upsert"]["p99"]), f"{v['search']['per_s']:,.0f}",
             f"{v['upsert']['per_s']:,.0f}", f"{v['per_s']:,.0f}",
             f"{_errs(v)} (5xx: {v['five_xx']} {R.verdict(v['five_xx'] == 0)})"]]
    c = res.get("chroma")
    if c:
        rows.append(["chroma run", R.fmt_ms(c["search"]["p50"]), R.fmt_ms(c["search"]["p99"]),
                     R.fmt_ms(c["upsert"]["p50"]), R.fmt_ms(c["upsert"]["p99"]), f"{c['search']['per_s']:,.0f}",
                     f"{c['upsert']['per_s']:,.0f}", f"{c['per_s']:,.0f}", _errs(c)])
        ratio = lambda a, b: R.fmt_ratio(a / b) if b else "-"
        rows.append(["vecbox / chroma", ratio(v["search"]["p50"], c["search"]["p50"]),
                     ratio(v["search"]["p99"], c["search"]["p99"]), ratio(v["upsert"]["p50"], c["upsert"]["p50"]),
                     ratio(v["upsert"]["p99"], c["upsert"]["p99"]), ratio(v["search"]["per_s"], c["search"]["per_s"]),
                     ratio(v["upsert"]["per_s"], c["upsert"]["per_s"]), ratio(v["per_s"], c["per_s"]), ""])
    title = (f"{cfg['clients']} concurrent clients for {cfg['seconds']:.0f} s on loopback: {cfg['n']:,} x {DIM} "
             f"SYNTHETIC mixture, HNSW; {100 * (1 - cfg['upsert_fraction']):.0f} % searches (k={K}), "
             f"{100 * cfg['upsert_fraction']:.0f} % upserts of {UPSERT_ROWS} rows; vecbox --workers {cfg['workers']}")
    out = [(title, heads, rows)]
    b = res["build"]
    build_rows = [["vecbox (local Collection, then served)", f"{b['vecbox']['ingest_s']:.1f}",
                   f"{b['vecbox']['index_s']:.1f}"]]
    if "chroma" in b:
        build_rows.append(["chroma (HttpClient adds, index built on add)", f"{b['chroma']['ingest_s']:.1f}", "-"])
    out.append(("Setup (not part of the load)", ["", "ingest s", "index s"], build_rows))
    rec = res.get("recall", {})
    if rec:
        out.append((f"What a search returns: recall@{K} against exact search and latency one query at a time "
                    f"({RECALL_QUERIES} of the load's queries, before the load; each server's default index settings)",
                    ["server", f"recall@{K}", "p50 ms"],
                    [[name, f"{r['recall']:.3f}", R.fmt_ms(r["p50"])] for name, r in
                     (("vecbox serve", rec.get("vecbox")), ("chroma run", rec.get("chroma"))) if r]))
    t = res.get("text")
    if t:
        out.append((f"Text queries (bundled model, kept loaded), {t['queries']} short queries one at a time",
                    ["first query (loads the model)", "p50 ms (< 30)", "p99 ms"],
                    [[f"{t['first_s']:.2f} s", f"{R.fmt_ms(t['p50_s'])} {R.verdict(t['p50_s'] < 0.03)}",
                      R.fmt_ms(t["p99_s"])]]))
    return out


def main(args: argparse.Namespace) -> dict[str, Any]:
    quick = bool(getattr(args, "quick", False))
    n = int(R.opt(args, "server_n", 10_000 if quick else 100_000))
    seconds = float(R.opt(args, "server_seconds", 10.0 if quick else 30.0))
    load_args = {"seconds": seconds, "clients": int(R.opt(args, "server_clients", 32)),
                 "upsert_fraction": float(R.opt(args, "server_upsert_fraction", 0.1))}
    workers = int(R.opt(args, "server_workers", 1))
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="vecbox-bench-server-"))
    res: dict[str, Any] = {"config": {**load_args, "n": n, "workers": workers}, "build": {}}
    try:
        x, queries, fresh = dataset(n)
        R.log(f"server: building the vecbox collection ({n:,} x {DIM}, HNSW)")
        root = tmp / "vecbox"
        root.mkdir()
        res["build"]["vecbox"] = build_vecbox(root, x)
        proc, url = start_vecbox(root, workers)
        try:
            R.log("server: vecbox recall and one-at-a-time latency")
            res["recall"] = {"vecbox": recall_vecbox(url, x, queries)}
            R.log(f"server: vecbox load, {load_args['clients']} clients, {seconds:.0f} s")
            res["vecbox"] = summary(load_vecbox(url, n, queries, fresh, load_args))
            if not R.opt(args, "server_no_text", False):
                R.log("server: text queries")
                res["text"] = text_queries(root, url)
        finally:
            _stop(proc)
        if not R.opt(args, "server_no_chroma", False):
            R.log("server: chroma run, adding the same vectors")
            cproc, port = start_chroma(tmp / "chroma")
            try:
                res["build"]["chroma"] = build_chroma(port, x)
                res.setdefault("recall", {})["chroma"] = recall_chroma(port, x, queries)
                R.log(f"server: chroma load, {load_args['clients']} clients, {seconds:.0f} s")
                res["chroma"] = summary(load_chroma(port, n, queries, fresh, load_args))
            finally:
                _stop(cproc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    env = R.environment(getattr(args, "command", None), started)
    tables = _tables(res)
    for title, headers, rows in tables:
        R.print_table(f"server — {title}", headers, rows)
    if getattr(args, "write", not quick):
        body = ["## Server: `vecbox serve` under load, and Chroma's server (issue 20)", "",
                R.environment_markdown(env), "",
                ("The load generator (one asyncio loop: httpx for vecbox, chromadb's `AsyncHttpClient` for Chroma) "
                 "runs on the same cores as the server, for both alike. Latencies are per request, client side. "
                 f"Versions: {R.versions(['chromadb', 'fastapi', 'uvicorn', 'httpx'])}."), "",
                NOTE, ""]
        for title, headers, rows in tables:
            body += [f"### {title}", "", R.md_table(headers, rows), ""]
        R.write_section(NAME, "\n".join(body))
    return res


if __name__ == "__main__":
    R.run_standalone(__doc__, "benchmarks/server.py", add_arguments, main)
