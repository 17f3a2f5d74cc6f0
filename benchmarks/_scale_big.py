"""The bigger-than-RAM part of the scale benchmark (issue 23): 10^7 x 384 on one 24 GB machine.

Steps, each in its own process (so each peak RSS is its own), over a working directory:

- ``big_vecbox``: ingest the rows from ``x.npy`` (read with plain file reads, not a map, so the
  reader's pages are not this process's) in commits of 50k rows, then ``build_index("ivf",
  memory_budget=...)`` - the budget picks PQ codes; the index trains on a sample, adds a block at a
  time, and is calibrated to recall 0.95 with an exact rescore of the candidates from the
  memory-mapped segments. Time and peak RSS of each.
- ``big_query``: a new process opens the collection, runs one search (the first answer), then the
  1,000 queries one at a time (QPS, recall@10 against exact) and as one batch; RSS and peak RSS.
- ``big_faiss``: FAISS IVF-PQ with a float refine (``IVF{nlist},PQ{2m}x4fs,RFlat``: the same lists
  and code bytes as vecbox, the floats for the rescore held in RAM - so only where they fit), its
  (nprobe, k_factor) raised along a grid until its recall@10 reaches vecbox's; the same queries.
- ``big_lance``: LanceDB (its own on-disk format) ingests the same rows, builds IVF_PQ with the same
  partitions and code bytes, and its (nprobes, refine_factor) are raised along a grid until its
  recall@10 on the queries reaches vecbox's; then the same 1,000 queries one at a time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

import _report as R

K, N_QUERIES, BATCH, NLIST = 10, 1000, 50_000, 2048  # 2,048 lists: ~4,900 rows each at 10^7; a 4,096-list k-means on these 2 cores is ~4x the time
LANCE_GRID = ((16, 4), (32, 4), (32, 10), (64, 10), (64, 20), (128, 20), (128, 40), (256, 40))
LANCE_GRID_MORE = ((384, 40), (512, 40), (768, 40), (1024, 40))  # a second run's sweep, when the first stopped short
BUDGET_PER_ROW = 2**30 / 10**7  # memory_budget: 1 GB at 10^7 rows, which picks 48-byte PQ codes (as at 10^6: 102 MB)
FAISS_GRID = ((16, 4), (32, 4), (32, 8), (64, 8), (64, 16), (128, 16), (128, 32), (256, 32), (512, 32))  # (nprobe, k_factor)
FAISS_MAX_BYTES = 8 << 30  # FAISS's refine keeps every float in RAM: run it only where they fit with room to spare
TRAIN_ROWS = 256  # per list: FAISS's own default cap on k-means training rows


def memory() -> dict[str, float]:
    """MB resident now (VmRSS; anonymous, file-backed) and the peak (VmHWM), from /proc/self/status."""
    out: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    return out


def generate(workdir: Path, n: int) -> None:
    """``x.npy`` (n rows), ``q.npy`` and ``truth.npy`` (exact top 10), a block at a time."""
    from _search.data import synthetic_blocks

    from vecbox.index.flat import exact_topk, merge_topk

    x = np.lib.format.open_memmap(workdir / "x.npy", mode="w+", dtype=np.float32, shape=(n, 384))
    q = np.empty((N_QUERIES, 384), dtype=np.float32)
    parts = []
    for s, blk in synthetic_blocks(n + N_QUERIES, chunk=200_000):
        e = s + len(blk)
        if s < n:
            x[s : min(e, n)] = blk[: n - s]
        if e > n:
            q[max(s, n) - n : e - n] = blk[max(n - s, 0):]
    x.flush()
    del x
    np.save(workdir / "q.npy", q)
    # "past queries" for the calibration: the same mixture, other draws than the test queries and the rows
    np.save(workdir / "past.npy", next(synthetic_blocks(N_QUERIES, chunk=N_QUERIES, first_block=10**6))[1])
    x = np.load(workdir / "x.npy", mmap_mode="r")
    for s in range(0, n, 1_000_000):
        blk = np.array(x[s : s + 1_000_000])
        sc, i = exact_topk(blk, q, K, "dot")
        parts.append((sc, i + s))
    np.save(workdir / "truth.npy", merge_topk(parts, K)[1])


def _blocks(path: Path, size: int = BATCH) -> Iterator[tuple[int, np.ndarray]]:
    """Rows of an .npy file read with plain reads (no memory map: the pages are the page cache's, not ours)."""
    with open(path, "rb") as fh:
        major, _ = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, _ = read_header(fh)
        n, d = shape
        for s in range(0, n, size):
            m = min(size, n - s)
            yield s, np.fromfile(fh, dtype=np.float32, count=m * d).reshape(m, d)


def phase_vecbox(workdir: Path) -> dict[str, Any]:
    from vecbox import Collection

    t0 = time.perf_counter()
    with Collection.create(workdir / "col", dim=384, metric="cosine") as col:
        for s, blk in _blocks(workdir / "x.npy"):
            col.add([str(i) for i in range(s, s + len(blk))], blk)
        ingest = time.perf_counter() - t0
        after_ingest = memory()
        t0 = time.perf_counter()
        past = np.load(workdir / "past.npy") if (workdir / "past.npy").exists() else None
        budget = int(BUDGET_PER_ROW * col.count())
        info = col.build_index("ivf", nlist=NLIST, memory_budget=budget, calibration_queries=past)
        build = time.perf_counter() - t0
    return {"ingest_s": ingest, "build_s": build, "after_ingest": after_ingest, "after_build": memory(), "budget": budget,
            "storage": info["storage"], "pq_bytes": info.get("pq_bytes"), "nprobe": info.get("nprobe"),
            "calibration": info.get("calibration"), "index_memory": info.get("memory"),
            "disk_mb": R.dir_bytes(workdir / "col") / 2**20}


def time_queries(path: Path, q: np.ndarray, truth: np.ndarray) -> tuple[dict[str, Any], Any]:
    """Open the collection at ``path`` in this (new) process: seconds to the first answer, then the
    queries one at a time and as one batch (QPS), their recall@10 against ``truth``, and the plan;
    and the open collection (measure memory while it is held)."""
    from vecbox import Collection
    from vecbox.evaluation.metrics import knn_recall

    t0 = time.perf_counter()
    col = Collection.open(path)
    first = col.search(q[0], k=K)
    cold = time.perf_counter() - t0
    assert len(first) == K
    t0 = time.perf_counter()
    got = [[int(h.id) for h in col.search(v, k=K)] for v in q]
    single = time.perf_counter() - t0
    t0 = time.perf_counter()
    col.search_batch(q, k=K)
    batch = time.perf_counter() - t0
    return {"first_s": cold, "qps_single": len(q) / single, "qps_batch": len(q) / batch,
            "recall": float(knn_recall(np.array(got), truth, K)), "plan": col.search(q[0], k=K, explain=True).plan.path}, col


def phase_query(workdir: Path) -> dict[str, Any]:
    res, col = time_queries(workdir / "col", np.load(workdir / "q.npy"), np.load(workdir / "truth.npy"))
    res.update(memory=memory(), resident_mb=resident_by_kind())
    col.close()
    return res


def resident_by_kind() -> dict[str, float]:
    """MB resident now per kind of mapping (/proc/self/smaps): segment files, index files, other files, anonymous."""
    out = {"segments": 0.0, "index": 0.0, "other files": 0.0, "anonymous": 0.0}
    kind = "anonymous"
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            name = head[5] if len(head) > 5 else ""
            kind = ("segments" if "/segments/" in name else "index" if "/indexes/" in name
                    else "other files" if name.startswith("/") else "anonymous")
        elif head and head[0] == "Rss:":
            out[kind] += int(head[1]) / 1024
    return out


def sweep_to(target: float, grid: tuple[tuple[int, int], ...], search: Any, truth: np.ndarray,
             sweep: list[tuple[Any, ...]] | None = None) -> tuple[tuple[int, int], list[tuple[Any, ...]]]:
    """The first grid point whose recall@10 (``search(a, b)``'s labels against ``truth``) reaches
    ``target`` - or the last one - and every point tried, with its recall, after ``sweep``."""
    from vecbox.evaluation.metrics import knn_recall

    sweep = list(sweep or [])
    for a, b in grid:
        rec = float(knn_recall(search(a, b), truth, K))
        sweep.append((a, b, rec))
        if rec >= target:
            return (a, b), sweep
    return grid[-1], sweep


def phase_lance(workdir: Path) -> dict[str, Any]:
    import lancedb
    import pyarrow as pa
    from lancedb.index import IvfPq

    from vecbox.evaluation.metrics import knn_recall

    q, truth = np.load(workdir / "q.npy"), np.load(workdir / "truth.npy")
    target = json.loads((workdir / "big_query.json").read_text())["recall"]  # the same in the warm step
    pq = json.loads((workdir / "big_vecbox.json").read_text()).get("pq_bytes") or 48
    schema = pa.schema([("id", pa.int64()), ("vector", pa.list_(pa.float32(), 384))])

    def batches() -> Iterator[Any]:
        for s, blk in _blocks(workdir / "x.npy"):
            yield pa.record_batch([pa.array(np.arange(s, s + len(blk), dtype=np.int64)),
                                   pa.FixedSizeListArray.from_arrays(pa.array(blk.reshape(-1)), 384)], schema=schema)

    done = workdir / "big_lance.json"
    if done.exists():  # built by an earlier run: raise its grid further (the sweep goes on where it stopped)
        before = json.loads(done.read_text())
        table = lancedb.connect(str(workdir / "lance")).open_table("big")
        ingest, build, grid = before["ingest_s"], before["build_s"], LANCE_GRID_MORE
    else:
        before, grid = {}, LANCE_GRID
        t0 = time.perf_counter()
        table = lancedb.connect(str(workdir / "lance")).create_table("big", batches(), schema=schema)
        ingest = time.perf_counter() - t0
        t0 = time.perf_counter()
        table.create_index("vector", config=IvfPq(distance_type="cosine", num_partitions=NLIST, num_sub_vectors=pq))
        build = time.perf_counter() - t0

    def run(vs: np.ndarray, nprobes: int, refine: int) -> np.ndarray:
        out = np.full((len(vs), K), -1, dtype=np.int64)
        for i, v in enumerate(vs):
            ids = (table.search(v).distance_type("cosine").nprobes(nprobes).refine_factor(refine)
                   .select(["id", "_distance"]).limit(K).to_arrow()["id"].to_numpy())
            out[i, : len(ids)] = ids
        return out

    chosen, sweep = sweep_to(target, grid, lambda a, b: run(q[:200], a, b), truth[:200],
                             [tuple(row) for row in before.get("sweep", [])])
    t0 = time.perf_counter()
    got = run(q, *chosen)
    single = time.perf_counter() - t0
    mem = memory()
    mem["VmHWM"] = max(mem["VmHWM"], before.get("memory", {}).get("VmHWM", 0))  # the build's process counts too
    return {"ingest_s": ingest, "build_s": build, "nprobes": chosen[0], "refine_factor": chosen[1],
            "sweep": sweep, "recall": float(knn_recall(got, truth, K)), "qps_single": len(q) / single,
            "memory": mem, "disk_mb": R.dir_bytes(workdir / "lance") / 2**20}


def phase_faiss(workdir: Path) -> dict[str, Any]:
    import faiss

    from vecbox.evaluation.metrics import knn_recall
    from vecbox.index.ann import pq_spec

    q, truth = np.load(workdir / "q.npy"), np.load(workdir / "truth.npy")
    target = json.loads((workdir / "big_query.json").read_text())["recall"]
    pq = json.loads((workdir / "big_vecbox.json").read_text()).get("pq_bytes") or 48
    x = np.load(workdir / "x.npy", mmap_mode="r")
    t0 = time.perf_counter()
    index = faiss.index_factory(x.shape[1], f"IVF{NLIST},{pq_spec(x.shape[1], pq)},RFlat", faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(0).choice(len(x), min(len(x), TRAIN_ROWS * NLIST), replace=False)
    index.train(np.ascontiguousarray(x[np.sort(sample)]))
    for _, blk in _blocks(workdir / "x.npy"):
        index.add(blk)
    build = time.perf_counter() - t0
    del x
    after_build = memory()

    def run(vs: np.ndarray, nprobe: int, k_factor: int, batch: bool = False) -> np.ndarray:
        params = faiss.IndexRefineSearchParameters(k_factor=k_factor, base_index_params=faiss.SearchParametersIVF(nprobe=nprobe))
        if batch:
            return index.search(vs, K, params=params)[1]
        return np.concatenate([index.search(v[None, :], K, params=params)[1] for v in vs])

    chosen, sweep = sweep_to(target, FAISS_GRID, lambda a, b: run(q[:200], a, b), truth[:200])
    t0 = time.perf_counter()
    got = run(q, *chosen)
    single = time.perf_counter() - t0
    t0 = time.perf_counter()
    run(q, *chosen, batch=True)
    batch = time.perf_counter() - t0
    return {"build_s": build, "pq_bytes": pq, "nprobe": chosen[0], "k_factor": chosen[1], "sweep": sweep,
            "recall": float(knn_recall(got, truth, K)), "qps_single": len(q) / single, "qps_batch": len(q) / batch,
            "after_build": after_build, "memory": memory()}


PHASES = {"big_vecbox": phase_vecbox, "big_faiss": phase_faiss, "big_query": phase_query, "big_query_warm": phase_query, "big_lance": phase_lance}


def lance_vs(qy: dict[str, Any], ln: dict[str, Any]) -> str:
    """vecbox's QPS over LanceDB's at the same recall, or what LanceDB reached when it never got there."""
    if ln["recall"] + 0.005 >= qy["recall"]:
        return (R.fmt_ratio(qy["qps_single"] / ln["qps_single"]) + f" LanceDB's, at its first grid point reaching "
                f"vecbox's recall ({ln['recall']:.3f})")
    return (f"LanceDB never reached {qy['recall']:.3f} in its grid (its best {ln['recall']:.3f}, at "
            f"{ln['qps_single']:,.0f} QPS)")


def table(big: dict[str, Any]) -> tuple[str, list[str], list[list[Any]]]:
    """The 10^7 table: vecbox next to LanceDB, with the issue's targets."""
    b, qy, ln, qw = big["vecbox"], big["query"], big.get("lance"), big.get("query_warm")
    peak = max(b["after_ingest"]["VmHWM"], b["after_build"]["VmHWM"], qy["memory"]["VmHWM"] if qy else 0,
               qw["memory"]["VmHWM"] if qw else 0)
    if qy is None:  # stopped before the queries: what the build measured
        qy = {"recall": float("nan"), "qps_single": float("nan"), "qps_batch": float("nan"), "first_s": float("nan"),
              "memory": {"VmHWM": float("nan")}}
    cal = b.get("calibration") or {}

    def lance(key: str, fmt: str = "{:,.1f}") -> str:
        return fmt.format(ln[key]) if ln and key in ln else ""

    rows = [
        ["ingest (s)", f"{b['ingest_s']:,.0f}", lance("ingest_s", "{:,.0f}"), ""],
        [f"build IVF{NLIST} (s)", f"{b['build_s']:,.0f}", lance("build_s", "{:,.0f}"), ""],
        ["index", f"{b['storage']} {b.get('pq_bytes') or ''} bytes (memory_budget={b.get('budget', 2**30) / 2**20:,.0f} MB), nprobe "
         f"{b['nprobe']} calibrated ({cal.get('recall', float('nan')):.3f} on {cal.get('queries', '?')} "
         f"{'past queries (other draws of the mixture than the test queries)' if cal.get('source') == 'supplied' else cal.get('source', '?')}"
         f"{'' if cal.get('reached', True) else ', target not reached: the largest nprobe tried'})",
         f"IVF_PQ {b.get('pq_bytes')} sub-vectors, nprobes {ln['nprobes']}, refine_factor {ln['refine_factor']}"
         if ln else "", ""],
        ["peak RSS, ingest (MB)", f"{b['after_ingest']['VmHWM']:,.0f}", "", ""],
        ["peak RSS, ingest + build (MB)", f"{b['after_build']['VmHWM']:,.0f}", "", ""],
        ["peak RSS, new process + 1,000 queries (MB)", f"{qy['memory']['VmHWM']:,.0f}",
         f"{ln['memory']['VmHWM']:,.0f} (the peak of its ingest, build, sweep and queries)" if ln else "", ""],
        ["peak RSS of any step (MB), target <= 12 GB", f"{peak:,.0f}", "", R.verdict(peak <= 12 * 1024)],
        ["recall@10, 1,000 queries", f"{qy['recall']:.3f}", lance("recall", "{:.3f}"),
         R.verdict(qy["recall"] >= 0.95)],
        ["QPS, one query at a time (a new process, page cache dropped: rows rescored from disk)",
         f"{qy['qps_single']:,.0f}", lance("qps_single", "{:,.0f}"),
         (lance_vs(qy, ln) + "; " if ln and not qw else "") + ">= 100 " + R.verdict(qy["qps_single"] >= 100)],
        ["QPS, one batch of 1,000", f"{qy['qps_batch']:,.0f}", "", ""],
        *([["the same two, a new process with the files in the page cache (as LanceDB's step, which queries "
            "after its build)", f"{qw['qps_single']:,.0f} / {qw['qps_batch']:,.0f} (recall {qw['recall']:.3f})", "",
            (lance_vs(qw, ln) + "; " if ln else "") + ">= 100 " + R.verdict(qw["qps_single"] >= 100)]] if qw else []),
        *([["resident after the queries (MB): segments / index / other files / anonymous",
            " / ".join(f"{qy['resident_mb'][k]:,.0f}" for k in ("segments", "index", "other files", "anonymous")),
            "", ""]] if qy.get("resident_mb") else []),
        ["new process: open + first search (s)", f"{qy['first_s']:.2f}", "", ""],
        ["disk (MB)", f"{b['disk_mb']:,.0f}", lance("disk_mb", "{:,.0f}"), ""],
    ]
    if big.get("lance_failed"):
        rows.append(["LanceDB", "", big["lance_failed"], ""])
    if ln and ln.get("sweep"):
        rows.append(["LanceDB (nprobes, refine_factor): recall@10 on the first 200 queries", "",
                     ", ".join(f"({a}, {b_}): {r:.3f}" for a, b_, r in ln["sweep"]), ""])
    for label, run in big.get("earlier", {}).items():
        rows.append([label, f"nprobe {run['vecbox']['nprobe']}: recall@10 {run['query']['recall']:.3f}, QPS "
                     f"{run['query']['qps_single']:,.0f} one at a time / {run['query']['qps_batch']:,.0f} batch; "
                     f"build {run['vecbox']['build_s']:,.0f} s, peak RSS "
                     f"{max(run['vecbox']['after_build']['VmHWM'], run['query']['memory']['VmHWM']):,.0f} MB"
                     + (f"; files in the page cache: {run['query_warm']['qps_single']:,.0f} / "
                        f"{run['query_warm']['qps_batch']:,.0f}" if "query_warm" in run else ""), "", ""])
    fs = big.get("faiss")
    title = (f"{big['n']:,} x 384 SYNTHETIC on one 24 GB machine: vecbox IVF-PQ + exact rescore vs "
             f"{'FAISS IVF-PQ + refine and ' if fs else ''}LanceDB IVF_PQ (measured {big['when']})")
    if not fs:
        return title, ["", "vecbox", "LanceDB", "target"], rows
    # FAISS's process queries right after its build, its floats in RAM: vecbox's like-for-like run is the
    # one with the files in the page cache, when there is one
    vq = qw or qy
    ratio = (f"vecbox {R.fmt_ratio(vq['qps_single'] / fs['qps_single'])} FAISS's, one query at a time; "
             f"{R.fmt_ratio(vq['qps_batch'] / fs['qps_batch'])} in a batch"
             f"{', vecbox with the files in the page cache' if qw else ''}") if fs["recall"] + 0.005 >= vq["recall"] else \
        f"FAISS never reached {vq['recall']:.3f} in its grid (its best {fs['recall']:.3f})"
    by_label = {
        f"build IVF{NLIST} (s)": f"{fs['build_s']:,.0f}",
        "index": f"IVF{NLIST}, PQ {fs.get('pq_bytes', '?')} bytes (4-bit fast-scan), RFlat; nprobe {fs['nprobe']}, k_factor {fs['k_factor']}",
        "peak RSS, ingest + build (MB)": f"{fs['after_build']['VmHWM']:,.0f}",
        "peak RSS, new process + 1,000 queries (MB)": f"{fs['memory']['VmHWM']:,.0f} (its build and queries: one process)",
        "recall@10, 1,000 queries": f"{fs['recall']:.3f}",
        "QPS, one query at a time (a new process, page cache dropped: rows rescored from disk)": f"{fs['qps_single']:,.0f} ({ratio})",
        "QPS, one batch of 1,000": f"{fs['qps_batch']:,.0f}",
    }
    rows = [[r[0], r[1], by_label.get(r[0], ""), *r[2:]] for r in rows]
    rows.append(["FAISS (nprobe, k_factor): recall@10 on the first 200 queries", "",
                 ", ".join(f"({a}, {b_}): {r:.3f}" for a, b_, r in fs["sweep"]), "", ""])
    return title, ["", "vecbox", "FAISS IVF-PQ + refine", "LanceDB", "target"], rows
