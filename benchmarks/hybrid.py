"""Hybrid retrieval benchmark: vecbox's lexical index, its fusions and its peers, same data, same run (issue 19).

Data: SciFact (BEIR, test split: 5,183 documents, 300 queries; a document is title + " " + text) and
LIMIT-small (46 documents, 1,000 queries, 2 relevant documents each), with the bundled
all-MiniLM-L6-v2 vectors (vecbox's embedding cache) and :class:`vecbox.lexical.Analyzer` terms. A set
whose folder is missing under ``/work/shared/data`` is skipped with a note.

1. **Quality** (trec_eval / BEIR definitions, ``vecbox.evaluation``): SciFact nDCG@10 and recall@100,
   LIMIT-small recall@2 and recall@10, for vecbox dense, lexical (BM25) and hybrid with each fusion
   (rrf k 60, minmax, zscore, 3sigma, default); the peers on the same queries.
2. **Latency** on SciFact, one query at a time: median and p95 ms and QPS for each vecbox mode with
   pre-encoded query vectors, and dense / hybrid again including the query's encoding (MiniLM, no
   embedding cache).
3. **Peers**: bm25s on the same analyzer tokens (k1 1.5, b 0.75); LanceDB on the same vectors and
   texts - native FTS alone and ``query_type="hybrid"`` with ``RRFReranker``.
4. **Lexical engines** on the same tokens: vecbox (terms in the catalog + RAM postings), SQLite FTS5,
   bm25s, tantivy - build rate, QPS, nDCG@10, disk, and the work each would need to stay exactly in
   step with vecbox's committed rows.

Run through ``benchmarks/run_all.py --only hybrid`` or alone: ``python benchmarks/hybrid.py [--quick] [--write]``
(``--quick``: 500 SciFact documents including the relevant ones of the first 30 queries, 100 LIMIT
queries, one timed pass; prints only). The parts are in ``benchmarks/_hybrid/`` (data, vecbox modes,
lexical engines, LanceDB, timing, report).
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _report as R  # noqa: E402
from _hybrid import data as D  # noqa: E402
from _hybrid import engines as E  # noqa: E402
from _hybrid.modes import FUSIONS, VecboxModes, hybrid_available  # noqa: E402
from _hybrid.peers import Lance, lance_missing  # noqa: E402
from _hybrid.report import publish  # noqa: E402
from _hybrid.timing import latency, paired  # noqa: E402

NAME = "hybrid"
DEPTH = 100  # hits kept per query for the quality metrics (recall@100)


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    R.add_options(parser, NAME, {
        "passes": (int, "timed passes over the queries per latency figure (default 3; quick 1)"),
        "encode-queries": (int, "queries timed with their encoding (default 100; quick 10)"),
    })


# --------------------------------------------------------------------------- quality
def _ranked(fn: Any, n: int, k: int = DEPTH) -> list[list[tuple[str, float]]]:
    return [fn(i, k) for i in range(n)]


def quality_runs(c: D.Corpus, vb: VecboxModes, lance: Lance | None, bm25s: E.Engine | None,
                 ks: tuple[int, ...], notes: list[str], lance_limits: tuple[int, ...] = (100, 10)
                 ) -> dict[str, dict[str, float]]:
    """Each method's metrics on ``c``: vecbox dense / lexical / hybrid per fusion, then the peers."""
    n = c.n_queries
    out = {"vecbox dense": D.quality(c, _ranked(vb.dense, n), ks),
           "vecbox lexical (BM25)": D.quality(c, _ranked(vb.lexical, n), ks)}
    why = hybrid_available()
    if why:
        notes.append(f"vecbox hybrid skipped: {why}")
    else:
        for label, spec in FUSIONS.items():
            out[f"vecbox hybrid {label}"] = D.quality(c, _ranked(lambda i, k, s=spec: vb.hybrid(i, k, s), n), ks)
    if bm25s is not None:
        out["bm25s"] = D.quality(c, _ranked(bm25s.search, n), ks)
    if lance is not None:
        out["LanceDB dense (flat)"] = D.quality(c, _ranked(lance.dense, n), ks)
        out["LanceDB FTS"] = D.quality(c, _ranked(lance.fts, n), ks)
        for limit in lance_limits:
            out[f"LanceDB hybrid RRF, limit {limit}"] = D.quality(c, _ranked(lance.hybrid, n, limit), ks)
    return out


# --------------------------------------------------------------------------- latency
def latency_runs(c: D.Corpus, vb: VecboxModes, lance: Lance | None, engines: dict[str, E.Engine],
                 passes: int, n_encode: int) -> dict[str, Any]:
    """Single-query timings on ``c`` with one thread each for BLAS, OpenMP and torch (see :func:`_timings`).

    The objects alive now are frozen out of the garbage collector meanwhile: with torch loaded a full
    collection takes ~0.5 s, and one runs before every timed pass.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    gc.collect()
    gc.freeze()
    try:
        with R.limit_threads(1):
            return _timings(c, vb, lance, engines, passes, n_encode)
    finally:
        gc.unfreeze()
        torch.set_num_threads(before)


def _timings(c: D.Corpus, vb: VecboxModes, lance: Lance | None, engines: dict[str, E.Engine],
             passes: int, n_encode: int) -> dict[str, Any]:
    """Search only (pre-encoded vectors), then including the query encoding (on the first ``n_encode``
    queries: MiniLM dominates those figures)."""
    import torch

    from vecbox.encoders.text import TextEncoder

    n = c.n_queries
    enc = TextEncoder("default")  # no cache_dir: every query is really encoded
    enc.encode(["warm up the model"], kind="query")

    def encode(i: int) -> Any:
        return enc.encode([c.queries[i]], kind="query")[0]

    search: dict[str, Any] = {}
    with_enc: dict[str, Any] = {}
    pairs: dict[str, Any] = {}
    R.log("hybrid: latency, search only")
    search["vecbox dense"] = latency(lambda i: vb.dense(i, 10), n, passes)
    search["vecbox lexical (BM25)"] = latency(lambda i: vb.lexical(i, 10), n, passes)
    parts = {"vecbox dense, k 100": latency(lambda i: vb.dense(i, 100), n, passes),
             "vecbox lexical, k 100": latency(lambda i: vb.lexical(i, 100), n, passes)}
    if not hybrid_available():
        from vecbox.query.fusion import Fusion

        for label, spec in FUSIONS.items():
            search[f"vecbox hybrid {label}"] = latency(lambda i, s=spec: vb.hybrid(i, 10, s), n, passes)
        lists = [vb.fusion_inputs(i) for i in range(n)]
        fz = Fusion.parse("default")
        parts["fusion alone (default, of the two lists)"] = latency(lambda i: fz.fuse(lists[i], 10, checked=True), n,
                                                                    passes)
        pair = paired(lambda i: vb.dense(i, 10), lambda i: vb.hybrid(i, 10, "default"), n, max(passes, 4))
        pairs = {"vecbox dense": pair[0], "vecbox hybrid default": pair[1]}
        # inside a hybrid search the dense scan follows the BM25 scoring, which pushes the vectors out of cache
        parts["vecbox dense, k 100, each right after a lexical search (untimed)"] = latency(
            lambda i: vb.dense(i, 100), n, passes, before=lambda i: vb.lexical(i, 100))
    for key, eng in engines.items():
        if key != "vecbox":
            search[eng.name] = latency(lambda i, e=eng: e.search(i, 10), n, passes)
    if lance is not None:
        search["LanceDB dense (flat)"] = latency(lambda i: lance.dense(i, 10), n, passes)
        search["LanceDB FTS"] = latency(lambda i: lance.fts(i, 10), n, passes)
        search["LanceDB hybrid RRF, limit 100"] = latency(lambda i: lance.hybrid(i, 100), n, passes)
        search["LanceDB hybrid RRF, limit 10"] = latency(lambda i: lance.hybrid(i, 10), n, passes)
    R.log("hybrid: latency, including the query encoding")
    n = min(n, n_encode)
    with_enc["encode the query (MiniLM)"] = latency(encode, n, passes)
    with_enc["vecbox dense"] = latency(lambda i: vb.dense(i, 10, encode(i)), n, passes)
    if not hybrid_available():
        with_enc["vecbox hybrid default"] = latency(lambda i: vb.hybrid(i, 10, "default", encode(i)), n, passes)
    if lance is not None:
        with_enc["LanceDB hybrid RRF, limit 100"] = latency(lambda i: lance.hybrid(i, 100, encode(i)), n, passes)
        with_enc["LanceDB hybrid RRF, limit 10"] = latency(lambda i: lance.hybrid(i, 10, encode(i)), n, passes)
    return {"search": search, "parts": parts, "paired": pairs, "with_encoding": with_enc, "n_encode": n,
            "torch_threads": torch.get_num_threads()}


# --------------------------------------------------------------------------- lexical engines
def build_engines(c: D.Corpus, tmp: Path, quick: bool, notes: list[str]) -> dict[str, E.Engine]:
    """Build each lexical engine over ``c``'s terms; records the build time on the engine."""
    out: dict[str, E.Engine] = {}
    for key, cls in E.ENGINES.items():
        why = E.available(key)
        if why:
            notes.append(f"{cls.name} skipped: {why}")
            continue
        R.log(f"hybrid: building the {cls.name} lexical index")
        eng = cls(tmp, repeats=1 if quick else 3) if key == "vecbox" else cls(tmp)  # type: ignore[call-arg]
        eng.build_s = eng.build(c)
        out[key] = eng
    return out


def engine_rows(c: D.Corpus, engines: dict[str, E.Engine], lat: dict[str, Any]) -> list[dict[str, Any]]:
    """The comparison's figures per engine (quality from a depth-100 run of each)."""
    rows = []
    for key, eng in engines.items():
        q = D.quality(c, _ranked(eng.search, c.n_queries), (10, 100))
        timing = lat["vecbox lexical (BM25)" if key == "vecbox" else eng.name]
        build_s = eng.build_s
        rows.append({"key": key, "name": eng.name, "build_s": build_s, "detail": eng.build_detail,
                     "docs_s": E.rate(c.n_docs, build_s), "latency": timing, "ndcg@10": q["ndcg@10"],
                     "recall@100": q["recall@100"], "disk": eng.disk_bytes(), "crash": eng.crash_safety,
                     "scoring": eng.scoring, "notes": eng.notes, "split": getattr(eng, "split", None)})
    return rows


# --------------------------------------------------------------------------- data sets
def run_scifact(c: D.Corpus, tmp: Path, quick: bool, passes: int, n_encode: int, notes: list[str]) -> dict[str, Any]:
    """Everything measured on SciFact: engines, quality, latency."""
    engines = build_engines(c, tmp, quick, notes)
    col, add_s = E.vecbox_collection(tmp / "vecbox-scifact", c)
    vb = VecboxModes(col, c)
    vb.lexical(0, 10)  # builds the postings
    lance = _lance(c, tmp, notes)
    try:
        R.log("hybrid: SciFact quality")
        quality = quality_runs(c, vb, lance, engines.get("bm25s"), (10, 100), notes)
        lat = latency_runs(c, vb, lance, engines, passes, n_encode)
        rows = engine_rows(c, engines, lat["search"])
    finally:
        col.close()
        for eng in engines.values():
            eng.close()
    return {"corpus": c, "quality": quality, "latency": lat, "engines": rows, "add_s": add_s,
            "lance": None if lance is None else {"build_s": lance.build_s, "disk": lance.disk_bytes(),
                                                   "notes": [lance.fts_note, lance.vector_note]}}


def run_limit(c: D.Corpus, tmp: Path, notes: list[str]) -> dict[str, Any]:
    """LIMIT-small: quality only (46 documents)."""
    bm25s = None
    if not E.available("bm25s"):
        bm25s = E.Bm25s(tmp / "limit")
        bm25s.build(c)
    col, _ = E.vecbox_collection(tmp / "vecbox-limit", c)
    lance = _lance(c, tmp, notes)
    try:
        R.log("hybrid: LIMIT-small quality")
        # 46 documents: LanceDB's limit 100 fuses everything both sides return
        quality = quality_runs(c, VecboxModes(col, c), lance, bm25s, (2, 10), notes, lance_limits=(100,))
    finally:
        col.close()
    return {"corpus": c, "quality": quality}


def _lance(c: D.Corpus, tmp: Path, notes: list[str]) -> Lance | None:
    why = lance_missing()
    if why:
        if why not in notes:
            notes.append(f"LanceDB skipped: {why}")
        return None
    lance = Lance(tmp, c)
    lance.build()
    return lance


def run(quick: bool, passes: int, n_encode: int, tmp: Path) -> dict[str, Any]:
    notes: list[str] = []
    res: dict[str, Any] = {"notes": notes, "quick": quick, "passes": passes}
    sf = D.scifact(quick)
    if sf is None:
        notes.append(f"SciFact skipped: no corpus.jsonl under {R.SCIFACT}")
    else:
        res["scifact"] = run_scifact(sf, tmp, quick, passes, n_encode, notes)
    lim = D.limit_small(quick)
    if lim is None:
        notes.append(f"LIMIT-small skipped: no corpus.jsonl under {D.LIMIT_SMALL}")
    else:
        (tmp / "limit").mkdir()
        res["limit"] = run_limit(lim, tmp, notes)
    return res


def main(args: argparse.Namespace) -> dict[str, Any]:
    quick = bool(getattr(args, "quick", False))
    passes = R.opt(args, "hybrid_passes", 1 if quick else 3)
    n_encode = R.opt(args, "hybrid_encode_queries", 10 if quick else 100)
    started, monitor = time.time(), R.CpuMonitor()
    tmp = Path(tempfile.mkdtemp(prefix="vecbox-bench-hybrid-"))
    try:
        res = run(quick, passes, n_encode, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    env = R.environment(getattr(args, "command", None), started)
    env["others_cpu"] = monitor.others_share()
    publish(res, env, write=bool(getattr(args, "write", not quick)), name=NAME)
    return res


if __name__ == "__main__":
    R.run_standalone(__doc__, "benchmarks/hybrid.py", add_arguments, main)
