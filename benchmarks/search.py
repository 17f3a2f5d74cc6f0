"""Fast search benchmark: ANN (HNSW / IVF) with metadata filters, vecbox vs its peers, same data, same run.

Data (cosine, 384-d, top-10; recall@10 is against the exact top-10 among the rows that match the filter,
numpy brute force):

(a) the SciFact corpus split into sentences (~50k, real all-MiniLM-L6-v2 vectors from the encoder cache),
    attributes from the data: ``doc`` (document id), ``pos`` (sentence position in its document),
    ``cat`` (k-means cluster of the vector, seeded; "c0".."c999": correlated with the vectors) and
    ``num`` (uniform in [0, 1), seeded); queries: the 1,109 SciFact queries;
(b) SYNTHETIC: a Gaussian mixture (1,000 components plus a shared 48-d latent factor, normalised),
    ``--search-synthetic-n`` vectors (default 200,000; see below), attributes ``cat`` (1,000 values,
    Zipf-like frequencies, independent of the vector) and ``num`` (uniform); 1,000 queries from the
    same mixture.

Filters: none, and at selectivity 0.1 %, 1 %, 10 %, 50 % a numeric range ``{"num": {"$lt": s}}`` and a
categorical ``{"cat": {"$in": [...]}}`` (categories whose counts add up to about s*n).

Methods, each built from the same arrays: vecbox (``Collection.build_index("hnsw", M=32,
ef_construction=200)``, and ``"ivf"``), raw FAISS ``IndexHNSWFlat`` (M=32, efConstruction=200, filters
as ``IDSelectorBitmap``), USearch (unfiltered only), hnswlib (``filter=`` callable), chromadb
``PersistentClient`` (``where=``) and LanceDB (IVF_RQ + scalar indexes, ``where(..., prefilter=True)``).
Each sweeps its search-effort knob (ef_search / nprobes); the tables report the fastest point at
recall@10 >= 0.95. The HNSW libraries' ef (all but chromadb's, 50-1000x slower) is then bisected between
the two grid points where recall crosses 0.95, to within ~6 %, so a cell is not decided by where the grid falls.

Time: estimated 40-45 min on the 2-core reference machine with the defaults (extrapolated from 20k and
50k runs; about 17 min of it building the seven indexes of the SYNTHETIC set). ``--search-synthetic-n 1000000`` runs the 10^6 set: measured
single-thread build rates (FAISS HNSW M=32 efC=200, 384-d: ~1,500 vectors/s at 20k, ~970/s at 60k,
falling with n; USearch about half that) extrapolate to 15-20 min per HNSW build at 10^6 with 2
threads, i.e. 1.5-2 h for the whole benchmark (chromadb and vecbox IVF are capped at 200,000 rows
there, ``--search-caps``).

Run through ``benchmarks/run_all.py`` or alone: ``python benchmarks/search.py [--quick] [--write]``.
This file is the entry point (options, the run over the data sets); the parts are in ``benchmarks/_search/``
(data sets, peer adapters, sweeps, funnel, report, saved results).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _report as R  # noqa: E402
from _search.data import make_filters, sentences_dataset, synthetic_dataset  # noqa: E402
from _search.funnel import funnel_bench  # noqa: E402
from _search.peers import METHODS  # noqa: E402
from _search.report import publish  # noqa: E402
from _search.saved import SAVED, load_set, save_set  # noqa: E402
from _search.settings import EF_CONSTRUCTION, Config  # noqa: E402
from _search.sweep import measure_set  # noqa: E402

ALL_METHODS = ("vecbox", "vecbox-ivf", "faiss", "usearch", "hnswlib", "chroma", "lance")
# 10^6 does not fit the ~40 min budget on the 2-core reference machine: one HNSW build (M=32,
# ef_construction=200, 384-d) of 10^6 vectors alone takes 15-20 min there, and five HNSW graphs are built.
# Pass --search-synthetic-n 1000000 for the 10^6 run (chromadb and vecbox IVF are then capped, see CAPS).
DEFAULT_SYNTHETIC_N = 200_000
CAPS = {"chroma": 200_000, "vecbox-ivf": 200_000}  # SYNTHETIC only; --search-caps overrides


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    R.add_options(parser, "search", {
        "sets": (str, "comma-separated data sets: sentences,synthetic (default both)"),
        "synthetic-n": (int, "vectors in the SYNTHETIC set (default 200,000; quick 20,000); 1000000 for the 10^6 "
                             "run (about 1.5-2 h on 2 cores, see the module docstring)"),
        "sentences-n": (int, "random subsample of the SciFact sentences (default all ~50k; quick 10,000)"),
        "methods": (str, f"comma-separated methods (default all: {','.join(ALL_METHODS)})"),
        "synthetic-methods": (str, "methods for the SYNTHETIC set only (default: as --search-methods)"),
        "ef-construction": (int, f"ef_construction of every HNSW build (default {EF_CONSTRUCTION})"),
        "reuse": (str, "data sets whose results of an earlier full run are reused instead of measured "
                       f"(saved in {SAVED}), e.g. synthetic: re-measure only the sentences"),
        "queries": (int, "queries timed one at a time per point (default 200; quick 50)"),
        "batch-queries": (int, "queries in the batched call per point (default 1000; quick 200)"),
        "threads": (int, "threads for index builds and batched search (default: all usable cores)"),
        "caps": (str, "METHOD=N,...: run these methods on the first N rows of the SYNTHETIC set only "
                      "(default chroma=200000,vecbox-ivf=200000; 'none' for no caps)"),
        "budget": (float, "seconds of one-query (and of batched) timing per sweep point; a sweep stops after "
                          "10x this (default 3; quick 2)"),
    })


def _caps(spec: str | None) -> dict[str, int]:
    if spec is None:
        return dict(CAPS)
    if spec.strip().lower() in ("", "none"):
        return {}
    out = {}
    for part in spec.split(","):
        name, _, n = part.partition("=")
        if name.strip() not in METHODS or not n.strip():
            raise SystemExit(f"--search-caps: expected METHOD=N with METHOD in {list(METHODS)}; got {part!r}")
        out[name.strip()] = int(float(n))
    return out


def _names(spec: str) -> list[str]:
    return [s.strip() for s in spec.split(",") if s.strip()]


def main(args: Any) -> dict[str, Any]:
    """Run the search benchmark; print tables; write the ``search`` section if ``args.write``."""
    quick = bool(getattr(args, "quick", False))
    sets = _names(R.opt(args, "search_sets", "sentences,synthetic"))
    methods = _names(R.opt(args, "search_methods", ",".join(ALL_METHODS)))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"--search-methods: unknown {unknown}; choose from {list(METHODS)}")
    budget = R.opt(args, "search_budget", 2.0 if quick else 3.0)
    cfg = Config(threads=R.opt(args, "search_threads", R.usable_cores()),
                 n_single=R.opt(args, "search_queries", 50 if quick else 200),
                 n_batch=R.opt(args, "search_batch_queries", 200 if quick else 1000),
                 single_budget=budget, batch_budget=budget, sweep_budget=10 * budget, caps={},
                 ef_construction=R.opt(args, "search_ef_construction", EF_CONSTRUCTION))
    syn_n = R.opt(args, "search_synthetic_n", 20_000 if quick else DEFAULT_SYNTHETIC_N)
    reuse = set(_names(R.opt(args, "search_reuse", "") or ""))
    started, load_start, monitor, t_start = time.time(), R.load_average(), R.CpuMonitor(), time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="vecbox-bench-search-"))
    all_res: dict[str, dict[str, Any]] = {}
    funnel = None
    try:
        for key in sets:
            if key in reuse:
                loaded = load_set(key)
                if loaded is None:
                    raise SystemExit(f"--search-reuse {key}: no saved results in {SAVED}; run that set first")
                all_res[key], saved_funnel = loaded
                funnel = saved_funnel if key == "sentences" else funnel
                R.log(f"search: {key}: reusing the results saved in {SAVED / (key + '.json')}")
                continue
            if key == "sentences":
                ds = sentences_dataset(R.opt(args, "search_sentences_n", 10_000 if quick else None))
            elif key == "synthetic":
                R.log(f"search: generating the SYNTHETIC set ({syn_n:,} vectors)")
                ds = synthetic_dataset(syn_n, 1000)
            else:
                raise SystemExit(f"--search-sets: unknown set {key!r}; use sentences,synthetic")
            if ds is None:
                continue
            cfg.caps = _caps(R.opt(args, "search_caps", None)) if key == "synthetic" else {}
            filters = make_filters(ds)
            set_methods = methods
            if key == "synthetic" and R.opt(args, "search_synthetic_methods", None):
                set_methods = _names(args.search_synthetic_methods)
            truths, results = measure_set(ds, filters, set_methods, cfg, tmp)
            if key == "sentences" and "vecbox" in methods:
                funnel = funnel_bench(ds, truths["none"], cfg, tmp)
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True, exist_ok=True)
            all_res[key] = {"label": ds.label, "ds": ds, "filters": filters, "results": results}
            if not quick:
                save_set(key, all_res[key], funnel if key == "sentences" else None, monitor.others_share())
            if key != sets[-1]:
                publish(all_res, funnel, args, cfg, quick, started, load_start, monitor,
                        time.perf_counter() - t_start, final=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - t_start
    target_rows = publish(all_res, funnel, args, cfg, quick, started, load_start, monitor, elapsed, final=True)
    return {
        "sets": {k: {"label": e["label"], "n": e["ds"].n, "failures": e["ds"].failures,
                     "results": e["results"], "filters": [(f.key, f.actual) for f in e["filters"]]}
                 for k, e in all_res.items()},
        "funnel": funnel, "targets": target_rows, "elapsed_s": elapsed,
    }


if __name__ == "__main__":
    R.run_standalone(__doc__, "benchmarks/search.py", add_arguments, main)
