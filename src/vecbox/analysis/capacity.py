"""Capacity limits of single-vector retrieval (Weller et al. 2025, "On the Theoretical Limitations of Embedding-Based Retrieval").

The *free-embedding* experiment asks the easiest possible question: if query and
document vectors of width ``d`` could be anything at all (optimised directly,
no model in the way), can every top-2 set of ``n`` documents be retrieved? All
``C(n, 2)`` pairs are queries; the largest ``n`` for which optimisation reaches
100 % accuracy is the *critical n* of ``d``. It grows roughly polynomially in
``d`` - so a fixed width caps which combinations any embedder can return.

Protocol (``google-deepmind/limit:code/free_embedding_experiment.py``): query and
document matrices start N(0, 1) and L2-normalised; full-batch softmax loss over
all documents at temperature ``T = 0.1``; Adam, lr 0.01; both matrices are
renormalised after every step; accuracy (top-k vs relevant, every
``eval_every`` steps, best value kept) stops the run at 1.0, and a loss plateau
(``patience`` steps without a ``1e-5`` improvement) or ``max_steps`` stops it
otherwise. Critical n is found by galloping (doubling) and then binary search.

:func:`limit_eval` scores a retrieval model and BM25 on the LIMIT data set,
where - the paper's point - lexical BM25 wins.

Examples
--------
>>> free_embedding_accuracy(4, d=4, seed=0).accuracy
1.0
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vecbox._optional import require
from vecbox.analysis._common import check_float, check_int
from vecbox.errors import InvalidInputError


@dataclass(frozen=True)
class FreeEmbeddingResult:
    """One optimisation run of the free-embedding experiment."""

    n: int
    d: int
    k: int
    accuracy: float
    """Best accuracy seen, in [0, 1]: sum |top-k ∩ relevant| / sum |relevant|."""
    steps: int
    seconds: float

    @property
    def solved(self) -> bool:
        return self.accuracy >= 1.0


def free_embedding_accuracy(
    n: int,
    d: int,
    *,
    k: int = 2,
    temperature: float = 0.1,
    lr: float = 0.01,
    max_steps: int = 20_000,
    patience: int = 1000,
    min_delta: float = 1e-5,
    eval_every: int = 50,
    max_queries: int | None = None,
    seed: int = 0,
    threads: int | None = 1,
) -> FreeEmbeddingResult:
    """Optimise free query/document vectors of width ``d`` for all ``C(n, k)`` top-k sets; return the best accuracy.

    Parameters
    ----------
    n, d, k : int
        Documents, width, relevant documents per query (the paper: k = 2).
    temperature, lr : float
        Softmax temperature (0.1) and Adam learning rate (0.01).
    max_steps, patience, min_delta, eval_every : int / float
        Stopping rules (the reference allows 100,000 steps; 20,000 is the default here,
        which changes the critical n by at most a little - raise it to check).
    max_queries : int, optional
        Use a seeded sample of this many combinations instead of all of them.
    seed : int
        Seeds the initial vectors (and the query sample).
    threads : int or None
        Torch intra-op threads for this run (restored afterwards); one is fastest for these
        small matrices. ``None`` keeps torch's setting.
    """
    torch = require("torch", "text", "the free-embedding experiment")
    n = check_int(n, "n", 2)
    d = check_int(d, "d", 1)
    k = check_int(k, "k", 1, n - 1)
    check_float(temperature, "temperature", 0.0, np.inf, low_open=True, high_open=True)
    check_float(lr, "lr", 0.0, np.inf, low_open=True, high_open=True)
    max_steps = check_int(max_steps, "max_steps")
    combos = np.asarray(list(itertools.combinations(range(n), k)), dtype=np.int64)
    if max_queries is not None and combos.shape[0] > check_int(max_queries, "max_queries"):
        pick = np.random.default_rng(seed + 1).choice(combos.shape[0], max_queries, replace=False)
        combos = combos[np.sort(pick)]
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(check_int(threads, "threads"))
    try:
        return _train(torch, combos, n, d, k, temperature, lr, max_steps, patience, min_delta, eval_every, seed)
    finally:
        torch.set_num_threads(before)


def _train(torch: Any, combos: np.ndarray, n: int, d: int, k: int, temperature: float, lr: float, max_steps: int,
           patience: int, min_delta: float, eval_every: int, seed: int) -> FreeEmbeddingResult:
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    nq = combos.shape[0]
    q = torch.nn.functional.normalize(torch.randn(nq, d, generator=gen, dtype=torch.float32), dim=1).requires_grad_()
    doc = torch.nn.functional.normalize(torch.randn(n, d, generator=gen, dtype=torch.float32), dim=1).requires_grad_()
    rel = torch.from_numpy(combos)
    target = torch.zeros(nq, n)
    target.scatter_(1, rel, 1.0)
    opt = torch.optim.Adam([q, doc], lr=lr)
    best_acc, best_loss, since_best, step = 0.0, math.inf, 0, 0
    total_rel = float(nq * k)
    with torch.inference_mode(False):
        for step in range(1, max_steps + 1):
            opt.zero_grad(set_to_none=True)
            logits = q @ doc.T / temperature
            logp = torch.log_softmax(logits, dim=1)
            loss = -(logp * target).sum() / total_rel
            loss.backward()
            opt.step()
            with torch.no_grad():
                q.div_(q.norm(dim=1, keepdim=True).clamp_min(1e-12))
                doc.div_(doc.norm(dim=1, keepdim=True).clamp_min(1e-12))
            lv = float(loss.detach())
            if lv < best_loss - min_delta:
                best_loss, since_best = lv, 0
            else:
                since_best += 1
            if step % eval_every == 0 or step == max_steps:
                with torch.no_grad():
                    top = torch.topk(q @ doc.T, k, dim=1).indices
                    hits = torch.gather(target, 1, top).sum().item()
                best_acc = max(best_acc, hits / total_rel)
                if best_acc >= 1.0:
                    break
            if since_best >= patience:
                break
    return FreeEmbeddingResult(n, d, k, float(best_acc), step, time.perf_counter() - t0)


@dataclass
class CriticalN:
    """The largest ``n`` solved at width ``d``, with every trial that led to it."""

    d: int
    critical_n: int
    seconds: float
    trials: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def critical_n(
    d: int,
    *,
    k: int = 2,
    initial_n: int | None = None,
    max_n: int = 4096,
    seed: int = 0,
    progress: Callable[[FreeEmbeddingResult], None] | None = None,
    **train: Any,
) -> CriticalN:
    """Largest ``n`` whose ``C(n, k)`` top-k sets are all solvable at width ``d``: gallop, then binary search.

    Galloping tries ``initial_n`` (default ``d + 1``), then ``+1, +2, +4, ...`` above
    the last success until a run fails; binary search then narrows the interval
    between the last success and the first failure. ``train`` goes to :func:`free_embedding_accuracy`.
    """
    d = check_int(d, "d", 1)
    t0 = time.perf_counter()
    trials: list[dict[str, Any]] = []

    def solved(n: int) -> bool:
        res = free_embedding_accuracy(n, d, k=k, seed=seed, **train)
        trials.append({"n": n, "accuracy": res.accuracy, "steps": res.steps, "seconds": round(res.seconds, 3)})
        if progress is not None:
            progress(res)
        return res.solved

    lo = max(k + 1, check_int(initial_n, "initial_n", k + 1) if initial_n is not None else d + 1)
    if not solved(lo):  # start was too high: binary search below it
        hi, lo = lo, k  # k documents are always solvable
    else:  # gallop: lo + 1, lo + 2, lo + 4, ... until a failure
        step, hi = 1, None
        while hi is None:
            cand = lo + step
            if cand > max_n:
                hi = max_n + 1
            elif solved(cand):
                lo, step = cand, step * 2
            else:
                hi = cand
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if solved(mid) else (lo, mid)
    return CriticalN(d, lo, time.perf_counter() - t0, trials)


def capacity_curve(dims: Sequence[int] = tuple(range(2, 13)), *, progress: Callable[[CriticalN], None] | None = None,
                   **kw: Any) -> list[CriticalN]:
    """:func:`critical_n` for each width in ``dims``; the search of ``d`` starts near the previous critical n."""
    out: list[CriticalN] = []
    for d in dims:
        start = max(d + 1, out[-1].critical_n) if out else None
        res = critical_n(d, initial_n=start, **kw)
        out.append(res)
        if progress is not None:
            progress(res)
    return out


def fit_capacity(dims: Sequence[int], ns: Sequence[int], degree: int = 3) -> np.ndarray:
    """Least-squares polynomial ``n(d)`` (coefficients, highest power first; the paper fits a cubic).

    >>> (np.round(fit_capacity([1, 2, 3, 4], [1, 8, 27, 64]), 6) + 0.0).tolist()
    [1.0, 0.0, 0.0, 0.0]
    """
    d = np.asarray(dims, dtype=np.float64)
    n = np.asarray(ns, dtype=np.float64)
    if d.shape != n.shape or d.size <= degree:
        raise InvalidInputError(f"need more than {degree} (d, n) points of equal count to fit a degree-{degree} curve")
    return np.polyfit(d, n, degree) + 0.0


# --------------------------------------------------------------------------- LIMIT evaluation
def _bm25_run(doc_ids: list[str], doc_texts: list[str], query_ids: list[str], query_texts: list[str],
              k: int) -> dict[str, dict[str, float]]:
    bm25s = require("bm25s", "analysis", "the BM25 run of the LIMIT evaluation")
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(doc_texts, stopwords="en", show_progress=False), show_progress=False)
    qtok = bm25s.tokenize(query_texts, stopwords="en", show_progress=False)
    docs, scores = retriever.retrieve(qtok, k=min(k, len(doc_ids)), show_progress=False, n_threads=1)
    return {qid: {doc_ids[int(j)]: float(s) for j, s in zip(row, srow)}
            for qid, row, srow in zip(query_ids, docs, scores)}


def limit_eval(path: str | Path, *, model: str = "default", ks: Sequence[int] = (2, 10, 20),
               cache_dir: str | Path | None = None, bm25: bool = True) -> dict[str, dict[str, float]]:
    """Recall@k of a dense model (exact cosine search) and of BM25 (bm25s) on a LIMIT data set.

    Returns ``{"<model>": {"recall@2": ..., ...}, "bm25": {...}}``; recall in [0, 1],
    averaged over every judged query (``vecbox.evaluation.evaluate``).
    """
    from vecbox.encoders.text import TextEncoder
    from vecbox.evaluation import evaluate, load_beir

    data = load_beir(path, split="test")
    doc_ids, doc_texts = data.doc_texts()
    query_ids, query_texts = data.query_texts()
    kmax = max(ks)
    enc = TextEncoder(model, cache_dir=cache_dir)
    xd = enc.encode(doc_texts, kind="document")
    xq = enc.encode(query_texts, kind="query")
    sims = xq @ xd.T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :kmax]
    run = {qid: {doc_ids[j]: float(sims[i, j]) for j in top[i]} for i, qid in enumerate(query_ids)}
    out = {enc.name: {m: v for m, v in evaluate(run, data.qrels, ks=ks).items() if m.startswith("recall")}}
    if bm25:
        brun = _bm25_run(doc_ids, doc_texts, query_ids, query_texts, kmax)
        out["bm25"] = {m: v for m, v in evaluate(brun, data.qrels, ks=ks).items() if m.startswith("recall")}
    return out


def capacity_report(dims: Sequence[int], *, max_steps: int = 20_000, limit_path: str | Path | None = None,
                    plot: str | Path | None = None, show_progress: bool = False, seed: int = 0) -> dict[str, Any]:
    """Critical n for each ``d`` in ``dims``, a cubic fit (when there are enough points), optionally the
    LIMIT evaluation (default model vs BM25) and a PNG of the curve.

    Returns ``{"curve": [CriticalN as dict...], "fit": [coefficients, highest power first] or [],
    "limit": {...} or None, "seconds": float}``.
    """
    dims = [check_int(d, "d", 1) for d in dims]
    if not dims:
        raise InvalidInputError("dims is empty; pass at least one width, e.g. 2-8")
    t0 = time.perf_counter()
    if show_progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("capacity probe", total=len(dims))
            curve = capacity_curve(dims, max_steps=max_steps, seed=seed,
                                   progress=lambda r: bar.update(task, advance=1, description=f"d={r.d}: n={r.critical_n}"))
    else:
        curve = capacity_curve(dims, max_steps=max_steps, seed=seed)
    ns = [c.critical_n for c in curve]
    coeffs = fit_capacity(dims, ns, 3) if len(dims) > 3 else np.array([])
    if plot is not None:
        from vecbox.analysis._plots import plot_capacity

        plot_capacity(dims, ns, coeffs if coeffs.size else None, plot)
    limit = None
    if limit_path is not None:
        from vecbox.encoders.cache import default_cache_dir

        limit = limit_eval(limit_path, cache_dir=default_cache_dir())
    return {"curve": [c.as_dict() for c in curve], "fit": coeffs.tolist(), "limit": limit,
            "seconds": time.perf_counter() - t0}


__all__ = [
    "capacity_report",
    "FreeEmbeddingResult",
    "free_embedding_accuracy",
    "CriticalN",
    "critical_n",
    "capacity_curve",
    "fit_capacity",
    "limit_eval",
]
