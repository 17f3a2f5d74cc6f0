"""Fusion study: which way of merging a dense and a BM25 list should hybrid search use by default?

Runs MiniLM (exact cosine) and BM25 (bm25s, k1=1.5, b=0.75, on ``vecbox.lexical.Analyzer``
terms - the collection's analysis) on SciFact test (BEIR) and LIMIT-small, keeps each
retriever's top N (N = 100 and 1000; BM25 keeps only documents with a positive score, as a
lexical index would), fuses them with every method of ``vecbox.query.fusion`` and prints
markdown tables:

1. the main table - SciFact nDCG@10 and recall@100, LIMIT recall@2 and recall@10;
2. paired bootstrap intervals of the default against the better single retriever and against
   equal-weight z-scores;
3. the default's sensitivity to its two constants (the noise reference ``e(n)``, scaled or
   replaced by a constant, and the confidence floor) and to the candidate depth N.

Usage::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python benchmarks/_hybrid/fusion_study.py

Data: /work/shared/data/{scifact,limit-small} (override with ``--data``). Retrieved lists are
cached in /tmp/vecbox_fusion_study (``--cache``); embeddings in the encoder's own cache.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import time
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np

from vecbox.evaluation import evaluate_per_query
from vecbox.evaluation.beir import load_beir
from vecbox.query import fusion as fusion_mod
from vecbox.query.fusion import Fusion

DATASETS = {"scifact": ("ndcg@10", "recall@100"), "limit-small": ("recall@2", "recall@10")}
MAX_DEPTH = 1000
Runs = list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]  # dense pos, scores, lexical pos, scores


# ------------------------------------------------------------------------------ retrieval
def retrieve(folder: Path, cache: Path) -> dict:
    """Dense and BM25 top-``MAX_DEPTH`` lists for every judged query (cached as a pickle)."""
    path = cache / f"{folder.name}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    import bm25s

    from vecbox.encoders.cache import default_cache_dir
    from vecbox.encoders.text import TextEncoder
    from vecbox.lexical.analyzer import Analyzer

    ds = load_beir(folder, split="test")
    doc_ids, doc_texts = ds.doc_texts()
    query_ids, query_texts = ds.query_texts()
    enc = TextEncoder("default", cache_dir=default_cache_dir())
    sims = enc.encode(query_texts, kind="query") @ enc.encode(doc_texts, kind="document").T
    analyzer = Analyzer()
    bm25 = bm25s.BM25(k1=1.5, b=0.75)
    bm25.index([analyzer.terms(t) for t in doc_texts], show_progress=False)
    runs: Runs = []
    for i, text in enumerate(query_texts):
        dense = sims[i].astype(np.float64)
        d_top = np.lexsort((np.arange(dense.size), -dense))[:MAX_DEPTH]
        ids = bm25.get_tokens_ids(analyzer.terms(text))
        lex = bm25.get_scores(ids).astype(np.float64) if ids else np.zeros(len(doc_ids))
        hit = np.flatnonzero(lex > 0)
        l_top = hit[np.lexsort((hit, -lex[hit]))][:MAX_DEPTH]
        runs.append((d_top, dense[d_top], l_top, lex[l_top]))
    data = {"doc_ids": doc_ids, "query_ids": query_ids, "qrels": ds.qrels, "runs": runs}
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data))
    return data


# ----------------------------------------------------------------------------- evaluation
Ranker = Callable[[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]], np.ndarray]


def rankers() -> dict[str, Ranker]:
    """Every method of the main table: the two retrievers alone and the fusions."""
    out: dict[str, Ranker] = {"dense (MiniLM)": lambda d, l: d[0], "lexical (BM25)": lambda d, l: l[0]}
    for name, spec in [("RRF k=60", "rrf"), ("minmax", "minmax"), ("zscore", "zscore"),
                       ("3sigma (DBSF)", "3sigma"), ("**default**", "default")]:
        f = Fusion.parse(spec)
        out[name] = lambda d, l, f=f: f.fuse([d, l], k=100).positions
    return out


def per_query(data: dict, rank: Ranker, depth: int, metrics: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per-query values of ``metrics`` for the ranking ``rank`` makes of the top-``depth`` lists."""
    run = {}
    for qid, (dp, ds, lp, ls) in zip(data["query_ids"], data["runs"]):
        order = rank((dp[:depth], ds[:depth]), (lp[:depth], ls[:depth]))[:100]
        # Scores from ranks: the metric then keeps the fused order exactly (no re-tie-breaking).
        run[qid] = {data["doc_ids"][p]: float(100 - r) for r, p in enumerate(order.tolist())}
    ks = sorted({int(m.split("@")[1]) for m in metrics})

    pq = evaluate_per_query(run, data["qrels"], ks=ks)
    return {m: np.array([pq[q][m] for q in data["query_ids"]]) for m in metrics}


def bootstrap(diff: np.ndarray, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a paired per-query difference and its 95 % percentile bootstrap interval."""
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(reps, diff.size))].mean(axis=1)
    return float(diff.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


@contextlib.contextmanager
def default_constants(noise: Callable[[int], float], floor: float) -> Iterator[None]:
    """Run the module's own default with other constants (the grid measures the shipped code path)."""
    saved = fusion_mod.noise_max, fusion_mod.MIN_CONFIDENCE
    fusion_mod.noise_max, fusion_mod.MIN_CONFIDENCE = noise, floor
    try:
        yield
    finally:
        fusion_mod.noise_max, fusion_mod.MIN_CONFIDENCE = saved


def mean_weights(data: dict, depth: int) -> float:
    """Mean lexical weight the default gives, over the queries."""
    f = Fusion()
    return float(np.mean([f.fuse([(dp[:depth], ds[:depth]), (lp[:depth], ls[:depth])], k=10).details["weights"][1]
                          for dp, ds, lp, ls in data["runs"]]))


def ablation(stats_over: str, fill: str) -> Ranker:
    """The default's rule with another statistics base or missing-document value (study only).

    ``stats_over``: "union" (shipped: mean/std over the union, misses imputed) or "own" (each
    list's own hits). ``fill``: "min" (shipped: the list's lowest score) or "mean" (z = 0).
    """
    def rank(d: tuple[np.ndarray, np.ndarray], l: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        union = np.unique(np.concatenate([d[0], l[0]]))
        cols, conf = [], []
        for p, sc in (d, l):
            base = sc if stats_over == "own" else np.concatenate([sc, np.full(union.size - sc.size, sc.min())])
            mu, sd = base.mean(), base.std() or 1.0
            col = np.full(union.size, 0.0 if fill == "mean" else (sc.min() - mu) / sd)
            col[np.searchsorted(union, p)] = (sc - mu) / sd
            cols.append(col)
            conf.append(max((sc[0] - mu) / sd - fusion_mod.noise_max(base.size), fusion_mod.MIN_CONFIDENCE))
        w = np.asarray(conf) / sum(conf)
        total = w[0] * cols[0] + w[1] * cols[1]
        return union[np.lexsort((union, -total))]
    return rank


# --------------------------------------------------------------------------------- report
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/vecbox_fusion_study"))
    ap.add_argument("--depths", type=int, nargs="+", default=[100, 1000])
    args = ap.parse_args()
    t0 = time.time()
    data = {name: retrieve(args.data / name, args.cache) for name in DATASETS}
    cols = [(name, m) for name, ms in DATASETS.items() for m in ms]
    header = "| method | " + " | ".join(f"{n} {m}" for n, m in cols) + " |"

    values: dict[tuple[int, str], dict[tuple[str, str], np.ndarray]] = {}
    for depth in args.depths:
        print(f"\n### Candidate depth N = {depth} (each retriever's top N)\n")
        print(header)
        print("|" + "---|" * (len(cols) + 1))
        for label, rank in rankers().items():
            vals = {}
            for name, ms in DATASETS.items():
                for m, v in per_query(data[name], rank, depth, ms).items():
                    vals[(name, m)] = v
            values[(depth, label)] = vals
            print(f"| {label} | " + " | ".join(f"{vals[c].mean():.4f}" for c in cols) + " |")
        print("\nmean lexical weight of the default: "
              + ", ".join(f"{n} {mean_weights(data[n], depth):.2f}" for n in DATASETS))

    print("\n### Paired bootstrap (95 %), default minus other, per query\n")
    print("| N | data set metric | vs better single retriever | vs zscore (equal weights) |")
    print("|---|---|---|---|")
    for depth in args.depths:
        for name, ms in DATASETS.items():
            m = ms[0]
            d = values[(depth, "**default**")][(name, m)]
            singles = {lab: values[(depth, lab)][(name, m)] for lab in ("dense (MiniLM)", "lexical (BM25)")}
            best = max(singles, key=lambda lab: singles[lab].mean())
            a, b = bootstrap(d - singles[best]), bootstrap(d - values[(depth, "zscore")][(name, m)])
            print(f"| {depth} | {name} {m} | {a[0]:+.4f} [{a[1]:+.4f}, {a[2]:+.4f}] ({best}) "
                  f"| {b[0]:+.4f} [{b[1]:+.4f}, {b[2]:+.4f}] |")

    default = Fusion()
    fuse = lambda d, l: default.fuse([d, l], k=100).positions
    shipped = fusion_mod.noise_max
    grid: list[tuple[str, Callable[[int], float], float]] = [
        (f"{s:g} x e(n), floor {fl:g}", (lambda n, s=s: s * shipped(n)), fl)
        for s in (0.0, 0.5, 0.8, 1.0, 1.2, 1.5) for fl in (0.01, 0.1, 0.5)]
    grid += [(f"constant c = {c:g}, floor 0.1", (lambda n, c=c: c), 0.1) for c in (1.0, 1.5, 2.0, 2.5, 3.0)]
    print("\n### Sensitivity of the default (confidence = max(top z - reference, floor))\n")
    hdr = " | ".join(f"N={d} SciFact nDCG@10 | N={d} LIMIT R@2" for d in args.depths)
    print(f"| reference, floor | {hdr} |")
    print("|" + "---|" * (1 + 2 * len(args.depths)))
    for label, noise, fl in grid:
        cells = []
        with default_constants(noise, fl):
            for depth in args.depths:
                for name, ms in DATASETS.items():
                    cells.append(f"{per_query(data[name], fuse, depth, ms[:1])[ms[0]].mean():.4f}")
        mark = " (shipped)" if label == "1 x e(n), floor 0.1" else ""
        print(f"| {label}{mark} | " + " | ".join(cells) + " |")

    print("\n### Ablation: where the z statistics come from, what a missed document gets\n")
    print(f"| variant | {hdr} |")
    print("|" + "---|" * (1 + 2 * len(args.depths)))
    for over, fill in (("union", "min"), ("union", "mean"), ("own", "min"), ("own", "mean")):
        rank = ablation(over, fill)
        cells = [f"{per_query(data[n], rank, depth, DATASETS[n][:1])[DATASETS[n][0]].mean():.4f}"
                 for depth in args.depths for n in DATASETS]
        mark = " (shipped)" if (over, fill) == ("union", "min") else ""
        print(f"| stats over {over}, missed = list {fill}{mark} | " + " | ".join(cells) + " |")

    print("\n### Candidate depth (default vs RRF vs zscore)\n")
    print("| N | default SciFact nDCG@10 | default LIMIT R@2 | RRF SciFact | RRF LIMIT "
          "| zscore SciFact | zscore LIMIT |")
    print("|---|---|---|---|---|---|---|")
    rk = rankers()
    for depth in (10, 20, 50, 100, 200, 1000):
        cells = [per_query(data[n], rk[lab], depth, DATASETS[n][:1])[DATASETS[n][0]].mean()
                 for lab in ("**default**", "RRF k=60", "zscore") for n in DATASETS]
        print(f"| {depth} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    print(f"\n({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
