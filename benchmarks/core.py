"""Core benchmark: durable ingest, text ingest with the default model, exact search vs FAISS.

Measures, in one process, on seeded data:

1. ingest of raw 384-d vectors through ``Collection.add`` (one durable commit
   per batch of 10,000), with FAISS ``IndexFlatIP.add`` (in memory) and a bare
   ``np.save`` + ``fsync`` per batch as context;
2. ingest of ~2,000 standard-library docstrings through ``Collection.add_texts``
   (default model, all-MiniLM-L6-v2) vs plain ``SentenceTransformer.encode``;
3. exact top-10 cosine search over 10^4, 10^5 and 10^6 vectors, one query at a
   time and in batches of 100, vs ``faiss.IndexFlatIP`` on the same data, with
   a check that both return the same neighbours.

Run through ``benchmarks/run_all.py`` (``make bench``) or alone:
``python benchmarks/core.py [--quick] [--write]``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _report as R  # noqa: E402

NAME = "core"
DIM = 384
K = 10
SEED = 20240501
INGEST_BATCH = 10_000
BUILD_BATCH = 50_000
QUERY_BATCH = 100

INGEST_TARGET = 100_000  # vectors/s
SINGLE_TARGET = 1.5  # vecbox / FAISS
BATCH_TARGET = 1.2
SCORE_TOL = 1e-5  # two top-k lists with the same scores up to this are the same answer (ties)
# FAISS's batched search, second configuration: its BLAS path (used by default only from 128,000
# queries on in faiss-cpu 1.15) with bigger database blocks than the default 1,024 rows.
FAISS_BLAS = {"distance_compute_blas_threshold": 20, "distance_compute_blas_database_bs": 65_536}


# --------------------------------------------------------------------------- options
def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Options of this benchmark (prefixed ``--core-`` so they can sit next to other benchmarks')."""
    R.add_options(parser, "core", {
        "ingest-n": (int, "vectors for the raw ingest test (default 200,000; quick 20,000)"),
        "sizes": (str, "comma-separated collection sizes for search (default 10000,100000,1000000; "
                       "quick 10000,100000)"),
        "texts": (int, "standard-library texts for the text ingest test (default 2000; quick 200)"),
        "skip": (str, "comma-separated parts to skip: ingest, text, search"),
    })


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([SEED, *key])


def unit_gaussian(n: int, seed_key: int, chunk: int = 100_000) -> np.ndarray:
    """``n`` seeded standard-normal vectors of width DIM, L2-normalised, float32."""
    rng = _rng(seed_key)
    out = np.empty((n, DIM), dtype=np.float32)
    for s in range(0, n, chunk):
        block = out[s : s + chunk]
        rng.standard_normal(block.shape, dtype=np.float32, out=block)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _pause() -> None:
    """Let the other library's BLAS/OpenMP worker threads stop spinning before timing switches library."""
    gc.collect()
    time.sleep(0.3)


# --------------------------------------------------------------------------- 1. raw ingest
def bench_ingest(n: int, tmp: Path, repeats: int) -> dict[str, Any]:
    import faiss

    from vecbox import Collection

    n = max(INGEST_BATCH, n - n % INGEST_BATCH)
    x = _rng(1).standard_normal((n, DIM), dtype=np.float32)  # not normalised: vecbox normalises (cosine)
    ids = [f"doc-{i:07d}" for i in range(n)]
    metas = [{"i": i, "group": f"g{i % 16}", "even": i % 2 == 0} for i in range(n)]
    batches = [slice(s, s + INGEST_BATCH) for s in range(0, n, INGEST_BATCH)]

    def vecbox(with_meta: bool) -> float:
        path = tmp / "ingest"
        with Collection.create(path, dim=DIM, metric="cosine") as col:
            t0 = time.perf_counter()
            for sl in batches:
                col.add(ids[sl], x[sl], metadatas=metas[sl] if with_meta else None)
            total = time.perf_counter() - t0
            assert col.count() == n, "ingest lost rows"
        return total

    def floor() -> float:
        """The same float32 bytes, one np.save + fsync + rename (+ directory fsync) per batch; nothing else."""
        floor_dir = tmp / "ingest"
        floor_dir.mkdir()
        t0 = time.perf_counter()
        for b, sl in enumerate(batches):
            xb = x[sl]
            xb = xb / np.linalg.norm(xb, axis=1, keepdims=True)
            tmpf = floor_dir / f"tmp-{b}.npy"
            with open(tmpf, "wb") as fh:
                np.save(fh, xb, allow_pickle=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmpf, floor_dir / f"{b}.npy")
            fd = os.open(floor_dir, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        return time.perf_counter() - t0

    def in_faiss() -> float:
        """FAISS, in memory: normalise (cosine) and add, batch by batch."""
        index = faiss.IndexFlatIP(DIM)
        t0 = time.perf_counter()
        for sl in batches:
            xb = np.array(x[sl], dtype=np.float32)
            faiss.normalize_L2(xb)
            index.add(xb)
        total = time.perf_counter() - t0
        assert index.ntotal == n
        return total

    paths = {"vecbox": lambda: vecbox(False), "vecbox_meta": lambda: vecbox(True), "floor": floor, "faiss": in_faiss}
    # Warm-up: one batch through every path (imports, SQLite, allocator).
    with Collection.create(tmp / "warm", dim=DIM, metric="cosine") as col:
        col.add(ids[batches[0]], x[batches[0]], metadatas=metas[batches[0]])
    shutil.rmtree(tmp / "warm")
    in_faiss()
    times: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            os.sync()  # flush earlier passes' dirty pages now, not inside the next timed pass
            R.quiet_gc()
            times[name].append(paths[name]())
            shutil.rmtree(tmp / "ingest", ignore_errors=True)
            R.log(f"ingest {name} run {r}: {n / times[name][-1]:,.0f} vectors/s")
    out: dict[str, Any] = {"n": n, "batch": INGEST_BATCH, "repeats": repeats}
    for name, ts in times.items():
        out[name] = {"seconds": R.median(ts), "rate": n / R.median(ts), "all": ts}
    return out


# --------------------------------------------------------------------------- 2. text ingest
def bench_text(n_texts: int, repeats: int, tmp: Path) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    from vecbox import Collection
    from vecbox.demo.stdlib_docs import harvest_stdlib_docs
    from vecbox.encoders.text import TextEncoder

    docs = harvest_stdlib_docs(max_texts=n_texts)
    texts = [d.text for d in docs]
    ids = [d.id for d in docs]
    metas = [d.metadata for d in docs]
    lengths = np.array([len(t) for t in texts])

    model_dir = TextEncoder().model_dir  # the bundled all-MiniLM-L6-v2
    model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    # Warm-up texts: the 64 longest (largest padded batch: allocations) and 64 short ones.
    by_len = sorted(texts, key=len)
    warm = by_len[-64:] + by_len[:64]
    model.encode(warm, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                 show_progress_bar=False)  # first forward passes allocate and pick kernels

    vb_times, st_times = [], []
    peer_vecs = stored = None
    for r in range(repeats):
        # Alternate which side goes first, so drift in machine speed affects both.
        for side in (("st", "vb") if r % 2 == 0 else ("vb", "st")):
            R.quiet_gc()
            if side == "st":
                t, peer_vecs = R.timed(lambda: model.encode(
                    texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                    show_progress_bar=False))
                st_times.append(t)
            else:
                path = tmp / f"texts-{r}"
                col = Collection.create(path, metric="cosine", model="default")
                col.encoder.encode(warm)  # untimed: load the model and warm it up
                R.quiet_gc()
                t, _ = R.timed(lambda: col.add_texts(texts, ids=ids, metadatas=metas))
                vb_times.append(t)
                assert col.count() == len(texts)
                stored = np.stack([rec.vector for rec in col.get(ids)])
                col.close()
                shutil.rmtree(path)
            R.log(f"text {side} run {r}: {len(texts) / t:,.1f} texts/s")
    cos = np.einsum("ij,ij->i", stored, peer_vecs)
    vb, st = R.median(vb_times), R.median(st_times)
    return {
        "n": len(texts),
        "chars": {"min": int(lengths.min()), "median": float(np.median(lengths)),
                  "mean": float(lengths.mean()), "max": int(lengths.max())},
        "repeats": repeats,
        "vecbox": {"seconds": vb, "rate": len(texts) / vb, "all": vb_times},
        "st": {"seconds": st, "rate": len(texts) / st, "all": st_times},
        "ratio": vb / st,
        "min_cos": float(cos.min()),
    }


# --------------------------------------------------------------------------- 3. exact search
def _agreement(vb_hits: list[list[Any]], f_ids: np.ndarray, f_scores: np.ndarray) -> tuple[int, int, int]:
    """(queries with identical top-k id sets, queries whose top-k scores agree within SCORE_TOL, queries)."""
    same_ids = same_scores = 0
    for hits, fi, fs in zip(vb_hits, f_ids, f_scores):
        vi = [int(h.id) for h in hits]
        vs = np.array([h.score for h in hits], dtype=np.float64)
        same_ids += set(vi) == set(fi.tolist())
        same_scores += len(vs) == len(fs) and bool(np.all(np.abs(vs - fs) <= SCORE_TOL))
    return same_ids, same_scores, len(vb_hits)


@contextlib.contextmanager
def _faiss_settings(settings: dict[str, int]) -> Any:
    import faiss

    old = {k: getattr(faiss.cvar, k) for k in settings}
    try:
        for k, val in settings.items():
            setattr(faiss.cvar, k, val)
        yield
    finally:
        for k, val in old.items():
            setattr(faiss.cvar, k, val)


class _FaissWithSettings:
    """``index.search`` run with some ``faiss.cvar`` settings, restored after each call."""

    def __init__(self, index: Any, settings: dict[str, int]) -> None:
        self.index, self.settings = index, settings

    def search(self, q: np.ndarray, k: int) -> Any:
        with _faiss_settings(self.settings):
            return self.index.search(q, k)


def _compare(sides: dict[str, Any], calls: list[Any], rounds: int) -> dict[str, tuple[list[float], list[Any]]]:
    """Time every side on every call; return {side: (seconds per call, results)}.

    Each side is warmed up once. The calls are split into ``rounds`` rounds; in each
    round every side runs its share of the calls in its own block (the order of the
    sides alternates between rounds), after a pause, so that the worker threads of the
    other library (OpenBLAS / OpenMP threads spin after a call) do not steal the cores,
    and slow drifts in machine load hit all sides alike.
    """
    for fn in sides.values():
        fn(calls[0])
    out: dict[str, tuple[list[float], list[Any]]] = {name: ([], []) for name in sides}
    names = list(sides)
    chunks = [calls[i::rounds] for i in range(rounds)]
    for r, chunk in enumerate(chunks):
        for name in names if r % 2 == 0 else names[::-1]:
            fn = sides[name]
            _pause()
            times, results = out[name]
            for c in chunk:
                t0 = time.perf_counter()
                res = fn(c)
                times.append(time.perf_counter() - t0)
                results.append(res)
    return out


def bench_search_one(n: int, tmp: Path) -> dict[str, Any]:
    import faiss

    from vecbox import Collection

    R.log(f"search n={n:,}: generating data")
    x = unit_gaussian(n, seed_key=1000 + int(np.log10(n)))
    queries = unit_gaussian(QUERY_BATCH, seed_key=7)
    path = tmp / f"search-{n}"
    col = Collection.create(path, dim=DIM, metric="cosine")
    R.log(f"search n={n:,}: building the collection (batches of {min(BUILD_BATCH, n):,})")
    t0 = time.perf_counter()
    for s in range(0, n, BUILD_BATCH):
        e = min(s + BUILD_BATCH, n)
        col.add([str(i) for i in range(s, e)], x[s:e],
                metadatas=[{"i": i, "bucket": i % 100} for i in range(s, e)])
    build_s = time.perf_counter() - t0
    index = faiss.IndexFlatIP(DIM)
    index.add(x)
    del x
    gc.collect()

    # Smaller collections are cheap: time more queries there. Always >= 20 single queries, >= 3 batches.
    n_single = 100 if n <= 10_000 else 50 if n <= 100_000 else 20
    n_batch = 7 if n <= 100_000 else 3
    single_q = [queries[i] for i in range(min(n_single, QUERY_BATCH))]
    single_q += [queries[i % QUERY_BATCH] for i in range(len(single_q), n_single)]
    res: dict[str, Any] = {"n": n, "build_s": build_s, "n_single": n_single, "n_batch": n_batch}

    # Each side is timed in blocks after its own warm-up and a pause, alternating (see _compare).
    faiss_blas = _FaissWithSettings(index, FAISS_BLAS)
    single = _compare(
        {"vb": lambda q: col.search(q, K, include_metadata=False), "faiss": lambda q: index.search(q[None, :], K)},
        single_q, rounds=4,
    )
    batch = _compare(
        {
            "vb": lambda Q: col.search_batch(Q, K, include_metadata=False),
            "vb_meta": lambda Q: col.search_batch(Q, K, include_metadata=True),
            "faiss": lambda Q: index.search(Q, K),
            "faiss_blas": lambda Q: faiss_blas.search(Q, K),
        },
        [queries] * n_batch, rounds=n_batch,
    )
    (t_vb1, vb1), (t_f1, f1) = single["vb"], single["faiss"]
    (t_vbB, vbB), (t_vbM, vbM) = batch["vb"], batch["vb_meta"]
    (t_fB, fB), (t_fT, fT) = batch["faiss"], batch["faiss_blas"]
    t_best = min(R.median(t_fB), R.median(t_fT))

    assert vbM[0][0][0].metadata is not None and vbM[0][0][0].metadata["i"] == int(vbM[0][0][0].id)
    s_ids, s_sc, s_n = _agreement([r[:K] for r in vb1], np.vstack([f[1] for f in f1]),
                                  np.vstack([f[0] for f in f1]))
    b_ids, b_sc, b_n = _agreement(vbB[0], fB[0][1], fB[0][0])
    assert np.array_equal(fB[0][1], fT[0][1]) or _agreement(vbB[0], fT[0][1], fT[0][0])[1] == b_n
    res.update(
        single={"vecbox": R.median(t_vb1), "faiss": R.median(t_f1)},
        batch={"vecbox": R.median(t_vbB), "vecbox_meta": R.median(t_vbM), "faiss_default": R.median(t_fB),
               "faiss_blas": R.median(t_fT), "faiss": t_best},
        agree_single=(s_ids, s_sc, s_n),
        agree_batch=(b_ids, b_sc, b_n),
    )
    res["single"]["ratio"] = res["single"]["vecbox"] / res["single"]["faiss"]
    res["batch"]["ratio"] = res["batch"]["vecbox"] / res["batch"]["faiss"]
    res["batch"]["ratio_meta"] = res["batch"]["vecbox_meta"] / res["batch"]["faiss"]
    R.log(
        f"search n={n:,}: single {res['single']['vecbox'] * 1e3:.2f} vs {res['single']['faiss'] * 1e3:.2f} ms, "
        f"batch {res['batch']['vecbox'] * 1e3:.1f} vs {res['batch']['faiss_default'] * 1e3:.1f} "
        f"(BLAS path {res['batch']['faiss_blas'] * 1e3:.1f}) ms"
    )
    col.close()
    del col, index
    gc.collect()
    shutil.rmtree(path)
    return res


# --------------------------------------------------------------------------- report
def _spread(xs: list[float]) -> str:
    med = R.median(xs)
    return f"{med:.2f}" if len(xs) < 2 else f"{med:.2f} ({min(xs):.2f}–{max(xs):.2f})"


def _tables(results: dict[str, Any]) -> list[tuple[str, str, list[str], list[list[str]], str | None]]:
    """(title, intro sentence, headers, rows, note) per table."""
    tables = []
    ing = results.get("ingest")
    if ing:
        vb = ing["vecbox"]["rate"]
        tables.append((
            "Ingest of raw vectors",
            f"Raw {DIM}-d float32 vectors added with `Collection.add` in batches of {ing['batch']:,} "
            f"(cosine; every batch is one durable commit: segment file fsynced, then the SQLite "
            f"transaction), {ing['n']:,} vectors in total, median of {ing['repeats']} runs. Target: ≥ {INGEST_TARGET:,} vectors/s "
            f"without metadata. The other rows are context, not targets: the same bytes written with "
            f"a bare `np.save` + `fsync` per batch (what durability costs at least), and FAISS "
            f"`IndexFlatIP.add` in memory (nothing is written to disk).",
            ["Path", "Vectors/s", "Seconds: median (min–max)", "vs vecbox", "Target"],
            [
                ["**vecbox** `Collection.add` (durable, no metadata)", R.fmt_rate(vb),
                 _spread(ing["vecbox"]["all"]), "1.00×", f"≥ {INGEST_TARGET:,}: {R.verdict(vb >= INGEST_TARGET)}"],
                ["vecbox `Collection.add` + 3-key metadata per vector", R.fmt_rate(ing["vecbox_meta"]["rate"]),
                 _spread(ing["vecbox_meta"]["all"]), R.fmt_ratio(ing["vecbox_meta"]["rate"] / vb), "-"],
                ["floor: `np.save` + `fsync` per batch (no ids, no catalog)", R.fmt_rate(ing["floor"]["rate"]),
                 _spread(ing["floor"]["all"]), R.fmt_ratio(ing["floor"]["rate"] / vb), "-"],
                ["FAISS `IndexFlatIP.add` (normalise + add, in memory, not durable)",
                 R.fmt_rate(ing["faiss"]["rate"]), _spread(ing["faiss"]["all"]),
                 R.fmt_ratio(ing["faiss"]["rate"] / vb), "-"],
            ],
            "'vs vecbox' = rate / vecbox rate (higher means faster than vecbox).",
        ))
    txt = results.get("text")
    if txt:
        c = txt["chars"]
        tables.append((
            "Ingest of texts with the default model",
            f"{txt['n']:,} docstrings of the Python standard library "
            f"(`harvest_stdlib_docs(max_texts={txt['n']})`, {c['min']}-{c['max']} characters, "
            f"median {c['median']:.0f}) embedded with the bundled all-MiniLM-L6-v2. vecbox: "
            f"`Collection.add_texts` (encode + durable commit, ids and metadata stored). Peer: "
            f"`SentenceTransformer.encode(batch_size=64, normalize_embeddings=True)` on the same model "
            f"files (encode only). Both models are loaded and warmed up before timing. Median of {txt['repeats']} runs each. Goal: the commit adds little "
            f"to encoding (ratio close to 1.00×).",
            ["Path", "Texts/s", "Seconds: median (min–max)", "Ratio (time vecbox / peer)"],
            [
                ["**vecbox** `Collection.add_texts`", R.fmt_rate(txt["vecbox"]["rate"]),
                 _spread(txt["vecbox"]["all"]), R.fmt_ratio(txt["ratio"])],
                ["sentence-transformers `encode` (peer)", R.fmt_rate(txt["st"]["rate"]),
                 _spread(txt["st"]["all"]), "1.00×"],
            ],
            f"Stored vectors vs the peer's: minimum cosine similarity {txt['min_cos']:.6f}.",
        ))
    srch = results.get("search")
    if srch:
        rows1, rowsB = [], []
        for r in srch:
            si, ss, sn = r["agree_single"]
            bi, bs, bn = r["agree_batch"]
            rows1.append([
                f"{r['n']:,}", R.fmt_ms(r["single"]["vecbox"]), R.fmt_ms(r["single"]["faiss"]),
                R.fmt_ratio(r["single"]["ratio"]), R.verdict(r["single"]["ratio"] <= SINGLE_TARGET),
                f"{si / sn:.2f} / {ss / sn:.2f} ({sn} queries)",
            ])
            rowsB.append([
                f"{r['n']:,}", R.fmt_ms(r["batch"]["vecbox"]), R.fmt_ms(r["batch"]["vecbox_meta"]),
                R.fmt_ms(r["batch"]["faiss_default"]), R.fmt_ms(r["batch"]["faiss_blas"]),
                R.fmt_ratio(r["batch"]["ratio"]),
                R.verdict(r["batch"]["ratio"] <= BATCH_TARGET), R.fmt_ratio(r["batch"]["ratio_meta"]),
                f"{bi / bn:.2f} / {bs / bn:.2f}",
            ])
        n_single = ", ".join(f"{r['n_single']}" for r in srch)
        n_batch = ", ".join(f"{r['n_batch']}" for r in srch)
        agree_note = (
            f"Agreement = share of queries whose top-{K} id set is identical to FAISS's / share whose "
            f"top-{K} scores are equal within {SCORE_TOL:g} (the same answer up to ties and float rounding)."
        )
        tables.append((
            "Exact search, one query at a time",
            f"Exact top-{K} cosine search over n unit-normalised Gaussian {DIM}-d vectors (seeded), one "
            f"query per call: median milliseconds per query over {n_single} queries. vecbox: "
            f"`Collection.search(q, k={K}, include_metadata=False)` (ids and scores, read from the "
            f"committed collection); peer: `faiss.IndexFlatIP.search` on the same normalised vectors. "
            f"Target: vecbox / FAISS ≤ {SINGLE_TARGET}×.",
            ["n", "vecbox ms/query", "FAISS ms/query", "Ratio", f"≤ {SINGLE_TARGET}×", "Agreement (ids / scores)"],
            rows1,
            agree_note,
        ))
        tables.append((
            f"Exact search, batches of {QUERY_BATCH} queries",
            f"The same collections, {QUERY_BATCH} queries per call: median milliseconds per batch over "
            f"{n_batch} batches. vecbox: `Collection.search_batch(Q, k={K}, include_metadata=False)`, and "
            f"the full path with `include_metadata=True` (each hit's JSON metadata fetched from SQLite and "
            f"decoded); peer: `faiss.IndexFlatIP.search`, timed twice: with its default settings and "
            f"with its BLAS path forced (`faiss.cvar.distance_compute_blas_threshold = "
            f"{FAISS_BLAS['distance_compute_blas_threshold']}`, `distance_compute_blas_database_bs = "
            f"{FAISS_BLAS['distance_compute_blas_database_bs']:,}`). Ratios are against the faster of the two. "
            f"Target: vecbox (ids only) / FAISS ≤ {BATCH_TARGET}×.",
            ["n", "vecbox ms/batch", "vecbox + metadata ms/batch", "FAISS default ms/batch",
             "FAISS BLAS path ms/batch", "Ratio vs faster FAISS", f"≤ {BATCH_TARGET}×", "Ratio with metadata",
             "Agreement (ids / scores)"],
            rowsB,
            agree_note,
        ))
    return tables


def _section(results: dict[str, Any], tables: list, env: dict[str, Any]) -> str:
    parts = ["## Core: ingest and exact search", ""]
    if results["quick"]:
        parts += ["> **Quick mode** (`--quick`): small sizes, smoke test only; run `make bench` for the real figures.", ""]
    warning = R.busy_warning(env)
    if warning:
        parts += [warning, ""]
    parts += [R.environment_markdown(env), ""]
    for title, intro, headers, rows, note in tables:
        parts += [f"### {title}", "", intro, "", R.md_table(headers, rows)]
        if note:
            parts += ["", note]
        parts.append("")
    srch = results.get("search")
    if srch:
        builds = "; ".join(f"n = {r['n']:,}: {r['build_s']:.1f} s ({r['n'] / r['build_s']:,.0f} vectors/s)"
                           for r in srch)
        parts += [
            "Notes:",
            "",
            f"- Building the search collections (`Collection.add` in batches of {BUILD_BATCH:,} with a "
            f"2-key metadata dict per vector, durable commits): {builds}.",
            "- Each side is warmed up once, then timed in blocks (a block per side per round, after a "
            "0.3 s pause, the order of the sides alternating between rounds), so that the spinning worker "
            "threads of one library's BLAS/OpenMP do not slow the other down and drifts in machine load "
            "hit both sides alike.",
            "- vecbox's matrix products run on numpy's OpenBLAS, FAISS's on the OpenBLAS bundled in the "
            "faiss-cpu wheel (see the BLAS line above: the core each one detected). By default FAISS "
            "scans with its own SIMD kernels, one query per thread, below "
            "`distance_compute_blas_threshold` queries.",
            f"- Total benchmark time: {results['elapsed_s'] / 60:.1f} min.",
            "",
        ]
    return "\n".join(parts)


def _exit_on_sigterm() -> None:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run the core benchmark; print the tables; write the ``core`` section if ``args.write``."""
    quick = bool(getattr(args, "quick", False))
    skip = {s.strip() for s in R.opt(args, "core_skip", "").split(",") if s.strip()}
    unknown = skip - {"ingest", "text", "search"}
    if unknown:
        raise SystemExit(f"--core-skip: unknown part(s) {sorted(unknown)}; use ingest, text, search")
    ingest_n = R.opt(args, "core_ingest_n", 20_000 if quick else 200_000)
    n_texts = R.opt(args, "core_texts", 200 if quick else 2000)
    sizes = [int(float(s)) for s in R.opt(args, "core_sizes", "1e4,1e5" if quick else "1e4,1e5,1e6").split(",")]
    started, load_start, monitor = time.time(), R.load_average(), R.CpuMonitor()

    t_start = time.perf_counter()
    results: dict[str, Any] = {"quick": quick}
    tmp = Path(tempfile.mkdtemp(prefix="vecbox-bench-core-"))
    _exit_on_sigterm()  # so that `finally` deletes the (up to 1.5 GB) collections when the run is killed
    try:
        if "ingest" not in skip:
            R.log(f"core: raw ingest, {ingest_n:,} vectors")
            results["ingest"] = bench_ingest(ingest_n, tmp, repeats=1 if quick else 3)
        if "text" not in skip:
            R.log(f"core: text ingest, {n_texts:,} texts")
            results["text"] = bench_text(n_texts, repeats=1 if quick else 3, tmp=tmp)
        if "search" not in skip:
            results["search"] = [bench_search_one(n, tmp) for n in sizes]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["elapsed_s"] = time.perf_counter() - t_start

    env = R.environment(getattr(args, "command", None), started)  # now: lists the BLAS libraries loaded
    env["load_start"], env["others_cpu"] = load_start, monitor.others_share()
    results["environment"] = env
    tables = _tables(results)
    for title, _intro, headers, rows, note in tables:
        R.print_table(f"core — {title}", headers, rows, note)
    if getattr(args, "write", not quick):
        path = R.write_section(NAME, _section(results, tables, env))
        R.log(f"core: wrote section '{NAME}' of {path}")
    R.log(f"core: done in {results['elapsed_s'] / 60:.1f} min")
    return results


if __name__ == "__main__":
    R.run_standalone(__doc__, "benchmarks/core.py", add_arguments, main)
