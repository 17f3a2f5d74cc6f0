"""Scale benchmark: one copy of the vectors, cold start, memory, and calibration on real queries (issue 23).

1. **Calibration on real queries.** The SciFact corpus split into sentences (~50k, the bundled
   MiniLM), ``build_index("hnsw")`` at its defaults (target recall 0.95) for several seeds, then
   the SciFact queries one at a time through ``Collection.search``: recall@10 against exact
   search, for the 300 test queries and for all 1,109. Target: >= 0.95 at the default.
2. **10^6 x 384** (``--scale-n``; ``--quick``: 10^5) of the search benchmark's SYNTHETIC mixture
   (cluster centres + a shared 48-d latent factor + noise, unit vectors). Each step runs in its
   own process, so its RSS is its own:
   - *build*: ingest in batches of 50k, ``build_index("hnsw")`` (M 32, calibrated); time and peak RSS.
   - *cold ANN*: a new process opens the collection and runs one search: seconds to the first
     answer; then 1,000 queries one at a time (QPS, recall@10) and as one batch, RSS after them
     (resident anonymous + file pages, and the file pages alone).
   - *cold exact*: a new process, one exact search, then the warm exact search (median of 5).
   - *FAISS HNSW* (same M, efConstruction): built in its own process from the same vectors, its
     ef raised up a grid until recall@10 >= the recall vecbox reached; QPS and RSS after 1,000 queries.
   "Cold" is a new process with the files in the page cache (the build just wrote them); the page
   cache is dropped first when this process may (``/proc/sys/vm/drop_caches``), and the table says which.

Run through ``benchmarks/run_all.py --only scale`` or alone: ``python benchmarks/scale.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _report as R
import _scale_big as BIG

NAME = "scale"
K, M, EF_CONSTRUCTION, SEED, N_QUERIES, BATCH = 10, 32, 200, 0, 1000, 50_000
LANCE_TIMEOUT = 3600.0  # seconds for LanceDB's whole step at 10^7
FAISS_EF_GRID = (16, 24, 32, 48, 64, 96, 128, 192, 256)


def add_arguments(p: Any) -> None:
    R.add_options(p, "scale", {
        "n": (int, "rows of the synthetic collection (default 10^6; quick 10^5)"),
        "seeds": (int, "index seeds for the SciFact calibration check (default 3; quick 1)"),
        "skip": (str, "comma-separated parts to skip: calibration,synthetic,faiss"),
        "ef": (int, "build the synthetic index at this ef_search instead of calibrating it (a faster build)"),
        "big": (lambda s: int(float(s)), "also run the bigger-than-RAM part at this many rows (e.g. 1e7; hours)"),
        "big-skip": (str, "comma-separated steps of the big part to skip: faiss,lance; all (report only)"),
        "big-dir": (str, "keep the big part's files here, and resume from the steps already done"),
        "big-redo": (str, "steps to run again though done: lance (a wider grid on the table already built)"),
    })
    p.add_argument("--scale-phase", default=None, help=argparse.SUPPRESS)  # internal: one step in its own process
    p.add_argument("--scale-dir", default=None, help=argparse.SUPPRESS)


# ----------------------------------------------------------------------------- memory of this process
memory = BIG.memory  # MB resident now (anonymous, file-backed) and the peak (VmHWM), from /proc/self/status


def _drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- 1. calibration on SciFact
def calibration_check(seeds: int) -> dict[str, Any] | None:
    if not R.SCIFACT.is_dir():
        R.log(f"scale: {R.SCIFACT} not found; skipping the SciFact calibration check")
        return None
    from vecbox import Collection
    from vecbox.evaluation.metrics import knn_recall
    from vecbox.index.flat import exact_topk

    texts, _, _ = R.scifact_sentence_rows()
    enc = R.text_encoder()
    R.log(f"scale: encoding {len(texts):,} SciFact sentences (cached after the first run)")
    x = np.ascontiguousarray(enc.encode(texts, kind="document"), dtype=np.float32)
    q = np.ascontiguousarray(R.scifact_queries(enc), dtype=np.float32)
    with open(R.SCIFACT / "queries.jsonl", encoding="utf-8") as fh:
        qids = [json.loads(line)["_id"] for line in fh if line.strip()]
    test_ids = set()
    for path in (R.SCIFACT / "qrels").glob("test*"):
        test_ids |= {line.split("\t")[0] for line in path.read_text().splitlines()[1:] if line.strip()}
    test = np.array([i in test_ids for i in qids])
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    _, truth = exact_topk(xn, qn, K, "dot")
    rows = []
    with tempfile.TemporaryDirectory(prefix="vecbox-bench-scale-") as tmp:
        col = Collection.create(Path(tmp) / "c", dim=x.shape[1], metric="cosine")
        for start in range(0, len(x), BATCH):
            col.add([str(i) for i in range(start, min(start + BATCH, len(x)))], x[start:start + BATCH])
        for seed in range(seeds):
            R.log(f"scale: SciFact sentences, build_index('hnsw', seed={seed})")
            info = col.build_index("hnsw", seed=seed)
            got = np.array([[int(h.id) for h in col.search(v, k=K)] for v in q])
            per = knn_recall(got, truth, K, per_query=True)
            cal = info["calibration"]
            rows.append({"seed": seed, "ef": info["ef_search"], "calibrated": cal["recall"], "ci95": cal["ci95"],
                         "required": cal["required"], "test": float(per[test].mean()), "all": float(per.mean()),
                         "n_test": int(test.sum()), "n_all": len(q)})
        col.close()
    return {"n": len(x), "rows": rows}


# ----------------------------------------------------------------------------- 2. the synthetic collection
def _phase(name: str, workdir: Path, timeout: float | None = None) -> dict[str, Any]:
    """Run one step in a new Python process (its own RSS); it writes its result as JSON."""
    out = workdir / f"{name}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--scale-phase", name, "--scale-dir", str(workdir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run(cmd, check=True, env=env, timeout=timeout)
    return json.loads(out.read_text())


def run_phase(name: str, workdir: Path) -> None:
    res = PHASES[name](workdir)
    (workdir / f"{name}.json").write_text(json.dumps(res))


def _data(workdir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.load(workdir / "x.npy", mmap_mode="r")
    q = np.load(workdir / "q.npy")
    truth = np.load(workdir / "truth.npy")
    return x, q, truth


def phase_build(workdir: Path) -> dict[str, Any]:
    from vecbox import Collection

    t0 = time.perf_counter()
    with Collection.create(workdir / "col", dim=384, metric="cosine") as col:
        for start, rows in BIG._blocks(workdir / "x.npy", BATCH):  # plain reads: the source's pages are not our RSS
            col.add([str(i) for i in range(start, start + len(rows))], rows)
        ingest = time.perf_counter() - t0
        mem_ingest = memory()
        t0 = time.perf_counter()
        ef = json.loads((workdir / "config.json").read_text()).get("ef")
        info = col.build_index("hnsw", M=M, ef_construction=EF_CONSTRUCTION, ef_search=ef)
        build = time.perf_counter() - t0
    return {"ingest_s": ingest, "build_s": build, "peak_mb": memory()["VmHWM"], "after_ingest": mem_ingest,
            "ef": info["ef_search"], "calibration": info.get("calibration"), "disk_mb": R.dir_bytes(workdir / "col") / 2**20}


def phase_cold_ann(workdir: Path) -> dict[str, Any]:
    _, q, truth = _data(workdir)
    before = memory()
    res, col = BIG.time_queries(workdir / "col", q, truth)
    res.update(cold_first_s=res.pop("first_s"), memory_before=before, memory_after=memory())
    # the same queries again: the maps are warm now, as FAISS's index is in RAM after its build (the first
    # pass of a new process also faults the graph and codes in, which FAISS's process never does)
    t0 = time.perf_counter()
    for v in q:
        col.search(v, k=K)
    res["qps_single_again"] = len(q) / (time.perf_counter() - t0)
    col.close()
    return res


def phase_cold_exact(workdir: Path) -> dict[str, Any]:
    from vecbox import Collection

    _, q, truth = _data(workdir)
    t0 = time.perf_counter()
    col = Collection.open(workdir / "col")
    first = col.search(q[0], k=K, exact=True)
    cold = time.perf_counter() - t0
    warm = []
    for v in q[1:6]:
        t0 = time.perf_counter()
        col.search(v, k=K, exact=True)
        warm.append(time.perf_counter() - t0)
    ok = [int(h.id) for h in first] == truth[0].tolist()
    return {"cold_first_s": cold, "warm_s": float(np.median(warm)), "exact_matches_truth": ok,
            "memory_after": memory()}


def phase_faiss(workdir: Path) -> dict[str, Any]:
    import faiss

    from vecbox.evaluation.metrics import knn_recall

    x, q, truth = _data(workdir)
    target = json.loads((workdir / "cold_ann.json").read_text())["recall"]
    t0 = time.perf_counter()
    index = faiss.index_factory(x.shape[1], f"HNSW{M},Flat", faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    for start in range(0, len(x), BATCH):
        index.add(np.ascontiguousarray(x[start:start + BATCH]))
    build = time.perf_counter() - t0
    del x
    R.trim_memory()
    chosen = None
    for ef in FAISS_EF_GRID:
        index.hnsw.efSearch = ef
        _, lab = index.search(q, K)
        rec = float(knn_recall(lab, truth, K))
        chosen = (ef, rec)
        if rec >= target:
            break
    index.hnsw.efSearch = chosen[0]
    t0 = time.perf_counter()
    for v in q:
        index.search(v[None, :], K)
    single = time.perf_counter() - t0
    t0 = time.perf_counter()
    index.search(q, K)
    batch = time.perf_counter() - t0
    return {"build_s": build, "ef": chosen[0], "recall": chosen[1], "qps_single": len(q) / single,
            "qps_batch": len(q) / batch, "memory_after": memory()}


PHASES = {"build": phase_build, "cold_ann": phase_cold_ann, "cold_exact": phase_cold_exact, "faiss": phase_faiss,
          "warm_ann": phase_cold_ann, "warm_exact": phase_cold_exact,  # warm_*: a new process, files in the page cache
          **BIG.PHASES}


def synthetic(n: int, skip: set[str], ef: int | None) -> dict[str, Any]:
    from _search.data import synthetic_dataset

    from vecbox.index.flat import exact_topk

    workdir = Path(tempfile.mkdtemp(prefix="vecbox-bench-scale-"))
    try:
        R.log(f"scale: generating {n:,} x 384 SYNTHETIC vectors and {N_QUERIES:,} queries")
        ds = synthetic_dataset(n, N_QUERIES)
        np.save(workdir / "x.npy", ds.x)
        np.save(workdir / "q.npy", ds.q)
        R.log("scale: exact top-10 of the queries")
        _, truth = exact_topk(ds.x, ds.q, K, "dot")
        np.save(workdir / "truth.npy", truth)
        del ds
        R.trim_memory()
        res: dict[str, Any] = {"n": n, "fixed_ef": ef}
        (workdir / "config.json").write_text(json.dumps({"ef": ef}))
        R.log("scale: vecbox ingest + build_index('hnsw') in a new process")
        res["build"] = _phase("build", workdir)
        res["dropped_cache"] = _drop_caches()
        R.log("scale: vecbox cold open + first ANN search, then 1,000 queries, in a new process")
        res["cold_ann"] = _phase("cold_ann", workdir)
        _drop_caches()
        R.log("scale: vecbox cold open + first exact search, in a new process")
        res["cold_exact"] = _phase("cold_exact", workdir)
        R.log("scale: the same two, new processes with the files in the page cache")
        res["warm_ann"] = _phase("warm_ann", workdir)
        res["warm_exact"] = _phase("warm_exact", workdir)
        if "faiss" not in skip:
            R.log("scale: FAISS HNSW (same M, efConstruction) in a new process")
            res["faiss"] = _phase("faiss", workdir)
        return res
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def big(n: int, skip: set[str], keep_dir: str | None = None, redo: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The bigger-than-RAM part (see benchmarks/_scale_big.py): vecbox, then LanceDB, on ``n`` rows.

    With ``keep_dir`` the files stay there, and a step whose result is already there is not run
    again (a run stopped midway resumes; ``--scale-big-skip all`` only reports what is there) unless
    named in ``redo`` (``lance``: LanceDB's step goes on with a wider grid on the table it built).
    """
    workdir = Path(keep_dir) if keep_dir else Path(tempfile.mkdtemp(prefix="vecbox-bench-scale-big-"))
    workdir.mkdir(parents=True, exist_ok=True)

    def step(name: str, what: str, timeout: float | None = None, cold: bool = True) -> dict[str, Any] | None:
        done = workdir / f"{name}.json"
        if done.exists() and name.removeprefix("big_") not in redo:
            return json.loads(done.read_text())
        if "all" in skip:
            return None
        if cold:
            _drop_caches()
        R.log(f"scale: {what}")
        return _phase(name, workdir, timeout)

    try:
        meta = workdir / "big.json"
        res: dict[str, Any] = json.loads(meta.read_text()) if meta.exists() else {
            "n": n, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        if not (workdir / "truth.npy").exists():
            R.log(f"scale: generating {n:,} x 384 SYNTHETIC rows to disk, and the exact top-10 of "
                  f"{BIG.N_QUERIES:,} queries")
            BIG.generate(workdir, n)
            meta.write_text(json.dumps(res))
        for earlier in sorted(workdir.glob("earlier-*")):  # results of an earlier vecbox run on the same rows
            run = {k: json.loads((earlier / f"big_{k}.json").read_text()) for k in ("vecbox", "query", "query_warm")
                   if (earlier / f"big_{k}.json").exists()}
            res.setdefault("earlier", {})[(earlier / "label.txt").read_text().strip()] = run
        res["vecbox"] = step("big_vecbox", "vecbox ingest + build_index('ivf', memory_budget) in a new process")
        res["query"] = step("big_query", "vecbox new process: first search, 1,000 queries")
        res["query_warm"] = step("big_query_warm", "the same, a new process with the files in the page cache",
                                 cold=False)
        if "faiss" not in skip and res["query"] is not None and n * 384 * 4 <= BIG.FAISS_MAX_BYTES:
            res["faiss"] = step("big_faiss", "FAISS IVF-PQ + RFlat (floats in RAM) + queries in a new process", cold=False)
        if "lance" not in skip and res["query"] is not None:
            shutil.rmtree(workdir / "col", ignore_errors=True)  # room on disk for LanceDB's copy
            try:
                res["lance"] = step("big_lance", "LanceDB ingest + IVF_PQ + queries in a new process",
                                    timeout=LANCE_TIMEOUT)
            except subprocess.TimeoutExpired:
                res["lance_failed"] = f"did not finish ingest + IVF_PQ build + queries in {LANCE_TIMEOUT / 60:.0f} min"
            except subprocess.CalledProcessError as exc:
                res["lance_failed"] = str(exc)
        return res
    finally:
        if not keep_dir:
            shutil.rmtree(workdir, ignore_errors=True)


# ----------------------------------------------------------------------------- report
def _tables(res: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    tables = []
    cal = res.get("calibration")
    if cal:
        rows = [[r["seed"], r["ef"], f"{r['calibrated']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]",
                 f"{r['required']:.3f}", f"{r['test']:.3f}", f"{r['all']:.3f}",
                 R.verdict(r["test"] >= 0.95 and r["all"] >= 0.95)] for r in cal["rows"]]
        tables.append((f"Default HNSW on the SciFact sentences ({cal['n']:,}), real SciFact queries one at a time",
                       ["seed", "ef chosen", "calibrated recall@10 [95 % CI]", "bar (lower bound)",
                        f"recall@10, {cal['rows'][0]['n_test']} test queries",
                        f"recall@10, all {cal['rows'][0]['n_all']}", ">= 0.95"], rows))
    syn = res.get("synthetic")
    if syn:
        b, ca, ce, f, wa = syn["build"], syn["cold_ann"], syn["cold_exact"], syn.get("faiss"), syn.get("warm_ann")
        warm = min(ce["warm_s"], syn["warm_exact"]["warm_s"]) if "warm_exact" in syn else ce["warm_s"]
        rss = ca["memory_after"]["VmRSS"]
        rows = [
            ["ingest (s)", f"{b['ingest_s']:.1f}", "", ""],
            ["build HNSW M 32 (s)", f"{b['build_s']:.1f}", f"{f['build_s']:.1f}" if f else "", ""],
            ["peak RSS while building (MB)", f"{b['peak_mb']:,.0f}", "", ""],
            [f"ef (vecbox: {'fixed' if syn.get('fixed_ef') else 'calibrated'}; FAISS: first to reach vecbox's recall)",
             b["ef"], f["ef"] if f else "", ""],
            ["recall@10, 1,000 queries", f"{ca['recall']:.3f}", f"{f['recall']:.3f}" if f else "", ""],
            *([["QPS, one query at a time, the queries' second pass in a new process (maps warm); FAISS: its "
                "process after the build", f"{wa['qps_single_again']:,.0f}", f"{f['qps_single']:,.0f}" if f else "",
                R.fmt_ratio(wa["qps_single_again"] / f["qps_single"]) if f else ""]] if wa and "qps_single_again" in wa else []),
            *([["QPS, one query at a time: the first 1,000 queries of a new process with the files in the page cache "
                "(they also map the graph and codes in); FAISS: its process after the build",
                f"{wa['qps_single']:,.0f}", f"{f['qps_single']:,.0f}" if f else "",
                R.fmt_ratio(wa["qps_single"] / f["qps_single"]) if f else ""],
               ["QPS, one batch of 1,000, the same", f"{wa['qps_batch']:,.0f}", f"{f['qps_batch']:,.0f}" if f else "",
                R.fmt_ratio(wa["qps_batch"] / f["qps_batch"]) if f else ""]] if wa else []),
            ["QPS, one query at a time / one batch: the first 1,000 queries of a new process after the page cache "
             "was dropped (the graph and codes read from disk as the walks reach them)",
             f"{ca['qps_single']:,.0f} / {ca['qps_batch']:,.0f}", "", ""],
            ["RSS after 1,000 queries (MB)", f"{rss:,.0f} (anon {ca['memory_after']['RssAnon']:,.0f}, "
             f"file {ca['memory_after']['RssFile']:,.0f})",
             f"{f['memory_after']['VmRSS']:,.0f}" if f else "",
             R.fmt_ratio(rss / f["memory_after"]["VmRSS"]) + " " + R.verdict(rss <= 1.2 * f["memory_after"]["VmRSS"])
             if f else ""],
            ["new process: open + first ANN search (s), page cache dropped", f"{ca['cold_first_s']:.3f}", "",
             R.verdict(ca["cold_first_s"] <= 0.5)],
            ["new process: open + first exact search (s), page cache dropped", f"{ce['cold_first_s']:.3f}", "",
             f"{ce['cold_first_s'] / warm:.2f}x warm {R.verdict(ce['cold_first_s'] <= 2 * warm)}"],
            *([["new process: open + first ANN search (s), files in the page cache",
                f"{syn['warm_ann']['cold_first_s']:.3f}", "", R.verdict(syn["warm_ann"]["cold_first_s"] <= 0.5)],
               ["new process: open + first exact search (s), files in the page cache",
                f"{syn['warm_exact']['cold_first_s']:.3f}", "",
                f"{syn['warm_exact']['cold_first_s'] / warm:.2f}x warm "
                f"{R.verdict(syn['warm_exact']['cold_first_s'] <= 2 * warm)}"]] if "warm_ann" in syn else []),
            ["warm exact search (s): median of the 5 searches after the first, in the cold / the page-cache-warm "
             "process (the ratios divide by the faster)",
             f"{ce['warm_s']:.3f} / {syn['warm_exact']['warm_s']:.3f}" if "warm_exact" in syn else f"{ce['warm_s']:.3f}",
             "", ""],
            ["disk (MB)", f"{b['disk_mb']:,.0f}", "", ""],
        ]
        cache = "dropped before each cold step" if syn["dropped_cache"] else \
            "not dropped (not permitted here): cold = new process, files in the page cache"
        title = (f"{syn['n']:,} x 384 SYNTHETIC, HNSW M {M}: vecbox vs FAISS HNSW (page cache {cache})" if f else
                 f"{syn['n']:,} x 384 SYNTHETIC: cold start and memory of vecbox alone, HNSW M {M} (page cache "
                 f"{cache}; the FAISS step was not run{syn.get('why_no_faiss', '')})")
        tables.append((title, ["", "vecbox", "FAISS HNSW", "vecbox / FAISS, target"], rows))
    return tables


_KINDS = ("Default HNSW on the SciFact", "SYNTHETIC, HNSW", "cold start and memory of vecbox alone",
          "SYNTHETIC on one 24 GB machine")


def _kind(title: str) -> tuple[str, str] | None:
    """A table's kind and size (``("SYNTHETIC on one 24 GB machine", "10,000,000")``): a run at 10^6
    replaces the 10^6 table of its kind, not the 10^7 one."""
    kind = next((k for k in _KINDS if k in title), None)
    return (kind, title.split(" x ")[0] if " x " in title else "") if kind else None


def _kept_tables(new_titles: list[str]) -> list[str]:
    """The section's tables of the kinds this run did not measure, kept as they were (each says when)."""
    text = R.DOCS_PATH.read_text(encoding="utf-8") if R.DOCS_PATH.exists() else ""
    begin, end = R._markers(NAME)
    if begin not in text:
        return []
    old = text[text.index(begin) + len(begin) : text.index(end)]
    when = next((ln for ln in old.splitlines() if ln.startswith("- **Measured:**")), "")
    kept = []
    replaced = {_kind(t) for t in new_titles}
    for block in old.split("\n### ")[1:]:
        title = block.splitlines()[0]
        kind = _kind(title)
        if kind is None or kind in replaced:
            continue
        lines = block.rstrip().splitlines()
        noted = any(ln.startswith("_Kept from an earlier run") for ln in lines[:3]) or "measured" in title
        note = [f"_Kept from an earlier run ({when.replace('- **Measured:**', '').strip()})._", ""] if not noted else []
        rest = lines[1:]
        while rest and not rest[0]:
            rest.pop(0)
        kept += [f"### {lines[0]}", "", *note, *rest, ""]
    return kept


def main(args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "scale_phase", None):
        run_phase(args.scale_phase, Path(args.scale_dir))
        return {}
    quick = bool(getattr(args, "quick", False))
    n = int(R.opt(args, "scale_n", 100_000 if quick else 1_000_000))
    seeds = int(R.opt(args, "scale_seeds", 1 if quick else 3))
    skip = {s.strip() for s in str(R.opt(args, "scale_skip", "") or "").split(",") if s.strip()}
    started = time.time()
    res: dict[str, Any] = {}
    if "calibration" not in skip:
        res["calibration"] = calibration_check(seeds)
    if "synthetic" not in skip:
        res["synthetic"] = synthetic(n, skip, R.opt(args, "scale_ef", None))
    n_big = R.opt(args, "scale_big", None)
    if n_big:
        big_skip = {s.strip() for s in str(R.opt(args, "scale_big_skip", "") or "").split(",") if s.strip()}
        redo = frozenset(s.strip() for s in str(R.opt(args, "scale_big_redo", "") or "").split(",") if s.strip())
        res["big"] = big(int(n_big), big_skip, R.opt(args, "scale_big_dir", None), redo)
    (Path(tempfile.gettempdir()) / "vecbox-bench-scale.json").write_text(json.dumps(res, indent=1, default=str))
    report(res, getattr(args, "command", None), started, write=getattr(args, "write", not quick))
    return res


def report(res: dict[str, Any], command: str | None, started: float, write: bool = True) -> None:
    """Print the tables of ``res``; with ``write``, replace the section (keeping tables of kinds not in ``res``)."""
    env = R.environment(command, started)
    tables = _tables(res)
    if res.get("big") and res["big"].get("vecbox"):
        tables.append(BIG.table(res["big"]))
    for title, headers, rows in tables:
        R.print_table(f"scale — {title}", headers, rows)
    if write:
        body = ["## Scale: one copy of the vectors, cold start, calibration on real queries (issue 23)", "",
                R.environment_markdown(env), "", f"Versions: {R.versions(['faiss-cpu', 'numpy'] + (['lancedb'] if (res.get('big') or {}).get('lance') else []))}.", ""]
        for title, headers, rows in tables:
            body += [f"### {title}", "", R.md_table(headers, rows), ""]
        body += _kept_tables([title for title, _, _ in tables])
        R.write_section(NAME, "\n".join(body))


if __name__ == "__main__":
    R.run_standalone(__doc__, "benchmarks/scale.py", add_arguments, main)
