"""Measuring the libraries: one point (a knob value: QPS one query at a time and batched, recall@k), a
sweep of the knob per filter with the ef bisected where recall crosses the target, and the interleaved
re-timing of the points that reach it (so every library sees the same stretch of machine time).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

import _report as R
import numpy as np

from vecbox.evaluation import knn_recall

from .data import Dataset, Filter, exact_truth, make_filters, subset
from .peers import METHODS, Method
from .settings import TARGET_RECALL, Config, K

SATURATED = 0.99  # stop a sweep once recall reaches this: more effort only costs time
MIN_SINGLE = 10
SINGLE_PASSES = 5  # passes over the single-query sample (fastest kept), within the per-point budget
MIN_BATCH = 20
SLOW_QUERY_S = 1.0  # a point slower than this per query ends the sweep (higher effort is slower still)
REFINE_POINTS = 4  # extra points at most per (method, filter) when bisecting ef where recall crosses the target
REFINE_SHARE = 16  # bisection stops once hi - lo <= hi // REFINE_SHARE (~6 %)


def _timed_pass(m: Method, qs: np.ndarray, flt: Filter) -> float:
    """Seconds spent in the library's own calls over one pass of single queries."""
    t = 0.0
    for q in qs:
        t0 = time.perf_counter()
        m.query_one(q, flt)
        t += time.perf_counter() - t0
    return t


def measure_point(m: Method, ds: Dataset, flt: Filter, truth: np.ndarray, cfg: Config) -> dict[str, Any]:
    q = ds.q
    ns = min(cfg.n_single, len(q))
    found, spent = [], 0.0
    with R.limit_threads(1):
        m.search_one(q[ns % len(q)], flt)  # warm-up (caches, lazy loading)
        for i in range(ns):
            t0 = time.perf_counter()
            raw = m.query_one(q[i], flt)
            spent += time.perf_counter() - t0
            found.append(m.ids_one(raw))
            if spent > cfg.single_budget and i + 1 >= MIN_SINGLE:
                break
        # Repeat the same queries while the budget allows and keep the fastest pass (timeit's rule): a pass
        # of 200 fast queries lasts ~20 ms, and a VM's noise bursts moved single passes by +-30 %.
        best, total = spent, spent
        for _ in range(SINGLE_PASSES - 1):
            if total + best > cfg.single_budget:
                break
            t = _timed_pass(m, q[:len(found)], flt)
            best, total = min(best, t), total + t
    single = np.stack(found)
    pt: dict[str, Any] = {"knob": m.value, "knob_label": m.knob_label(m.value), "n_single": len(single),
                          "qps_single": len(single) / best,
                          "recall_single": knn_recall(single, truth[:len(single)])}
    nb = int(min(cfg.n_batch, len(q), cfg.batch_budget * pt["qps_single"]))  # a batch is rarely slower per query
    pt.update(n_batch=0, qps_batch=None, recall_batch=None)
    if nb >= MIN_BATCH:
        with R.limit_threads(cfg.threads):
            m.search_batch(q[:8], flt)  # warm-up
            R.quiet_gc()
            t0 = time.perf_counter()
            raw = m.query_batch(q[:nb], flt)
            t = time.perf_counter() - t0
            batch = m.ids_batch(raw)
        pt.update(n_batch=nb, qps_batch=nb / t, recall_batch=knn_recall(batch, truth[:nb]))
    if m.plans_per_call:
        # one query at a time may be planned differently from a batch (e.g. a walk vs an exact scan):
        # measure that path's recall on as many queries as the batch (untimed), report the lower recall
        with R.limit_threads(1):
            found += [m.search_one(q[i], flt) for i in range(len(found), max(nb, len(found)))]
        single = np.stack(found)
        pt["recall_single"] = knn_recall(single, truth[:len(single)])
        both = [r for r in (pt["recall_single"], pt["recall_batch"]) if r is not None]
        pt["recall"], pt["recall_n"] = min(both), len(single)
    else:  # the same algorithm either way: the larger sample estimates its recall better
        use_batch = pt["recall_batch"] is not None and pt["n_batch"] >= pt["n_single"]
        pt["recall"] = pt["recall_batch"] if use_batch else pt["recall_single"]
        pt["recall_n"] = pt["n_batch"] if use_batch else pt["n_single"]
    try:
        plans = sorted({p for p in (m.plan(q[i], flt) for i in range(min(3, len(q)))) if p})
        pt["plan"] = "; ".join(plans) or None
    except Exception as exc:  # explain= not available (yet)
        pt["plan"] = None
        pt["plan_error"] = f"{type(exc).__name__}: {exc}"
    return pt


def refine_crossing(m: Method, ds: Dataset, flt: Filter, truth: np.ndarray, cfg: Config,
                    pts: list[dict[str, Any]], label: str) -> list[dict[str, Any]]:
    """Bisect an integer knob between the two grid points where recall crosses TARGET_RECALL; return the new points.

    On a coarse grid a library whose point lands at 0.951 beats one whose points give 0.943 and 0.963
    (it must use the slower 0.963 point): the cell is decided by where the grid falls. Bisecting every
    library's ef alike to within ~6 % of the lowest effort reaching the target removes most of that luck.
    The bisection has its own time (half the sweep's budget): on 10^6 rows, where a point takes ~6 s,
    the grid alone used the sweep's budget and left the crossing unrefined.
    """
    hi_i = next((i for i, p in enumerate(pts) if p["recall"] >= TARGET_RECALL), None)
    if not m.refine or not hi_i:  # nothing reached the target, or the lowest grid point already does
        return []
    lo, hi = grid = pts[hi_i - 1]["knob"], pts[hi_i]["knob"]
    if not (isinstance(lo, int) and isinstance(hi, int)):
        return []
    new: list[dict[str, Any]] = []
    t_r = time.perf_counter()
    while (hi - lo > max(1, hi // REFINE_SHARE) and len(new) < REFINE_POINTS
           and time.perf_counter() - t_r <= cfg.sweep_budget / 2):
        mid = (lo + hi) // 2
        m.set_knob(mid)
        pt = measure_point(m, ds, flt, truth, cfg)
        pt["refined"] = True
        new.append(pt)
        if pt["recall"] >= TARGET_RECALL:
            hi = mid
        else:
            lo = mid
    if new:
        R.log(f"search: {ds.key}: {label}: {flt.key:>9}: refined {m.knob} {grid[0]}..{grid[1]} -> {lo}..{hi} "
              f"with {len(new)} points: " + ", ".join(f"{p['knob']} recall {p['recall']:.3f} "
                                                     f"{p['qps_single']:,.0f} QPS" for p in new))
    return new


def run_method(key: str, ds: Dataset, filters: list[Filter], truths: dict[str, np.ndarray], cfg: Config,
               tmp: Path, keep: dict[str, Method] | None = None) -> dict[str, Any] | None:
    """Build one method and sweep its knob over every filter; ``keep`` receives the live method
    (for :func:`retime`) instead of it being closed, when it ran on the whole set without error."""
    cls = METHODS[key]
    cap = cfg.caps.get(key)
    capped = cap is not None and cap < ds.n
    if capped:
        ds = subset(ds, cap)
        filters = make_filters(ds)
        R.log(f"search: {ds.key}: {cls.name} capped at n={cap:,}: exact top-{K} for the subset")
        truths = {f.key: exact_truth(ds.x, ds.q, f.mask) for f in filters}
    m = cls(cfg.threads, tmp, cfg.ef_construction)
    res: dict[str, Any] = {"key": key, "name": m.name + (f" (n={ds.n:,})" if capped else ""), "who": m.who,
                           "knob": m.knob, "n": ds.n, "capped": capped, "points": {}, "filtered": m.filtered}
    R.log(f"search: {ds.key}: building {res['name']} on {ds.n:,} vectors")
    R.trim_memory()
    rss0 = R.rss_bytes()
    t0 = time.perf_counter()
    try:
        with R.limit_threads(cfg.threads):
            m.build(ds)
    except Exception as exc:
        ds.fail(f"{res['name']}: build failed", exc, expected=(ImportError,))
        with contextlib.suppress(Exception):
            m.close()
        return None
    res["build_s"] = time.perf_counter() - t0
    res["ingest_s"] = m.ingest_s
    t_start = time.perf_counter()
    try:
        m.set_knob(m.knobs[0])
        m.search_one(ds.q[0], filters[0])
        R.trim_memory()
        rss1 = R.rss_bytes()
        res["ram_mb"] = (rss1 - rss0) / 1e6 if rss0 is not None and rss1 is not None else None
        res["disk_mb"] = (m.disk_bytes() or 0) / 1e6
        R.log(f"search: {ds.key}: {res['name']}: built in {res['build_s']:.1f} s"
              + (f" (ingest {m.ingest_s:.1f} s)" if m.ingest_s else "")
              + f", RAM +{res['ram_mb'] or 0:.0f} MB, disk {res['disk_mb']:.0f} MB")
        for flt in filters:
            if flt.kind != "none" and not m.filtered:
                continue
            pts, t_f = [], time.perf_counter()
            for value in m.knobs:
                m.set_knob(value)
                pt = measure_point(m, ds, flt, truths[flt.key], cfg)
                pts.append(pt)
                if (pt["recall"] >= SATURATED or 1 / pt["qps_single"] > SLOW_QUERY_S
                        or time.perf_counter() - t_f > cfg.sweep_budget):
                    break
            refined = refine_crossing(m, ds, flt, truths[flt.key], cfg, pts, res["name"])
            if refined:
                # plots draw the points in knob order; refined points lie strictly between two grid
                # points, so pts[-1] stays the last (highest-effort) grid point the sweep measured
                pts = sorted(pts + refined, key=lambda p: p["knob"])
            res["points"][flt.key] = pts
            best = best_point(pts)
            R.log(f"search: {ds.key}: {res['name']}: {flt.key:>9}: {len(pts)} points"
                  + (f" ({len(refined)} refined)" if refined else "") + " in "
                  f"{time.perf_counter() - t_f:.0f} s; best@{TARGET_RECALL}: "
                  + (f"{best['knob_label']} recall {best['recall']:.3f} {best['qps_single']:,.0f} QPS"
                     if best else f"none (max recall {max(p['recall'] for p in pts):.3f})")
                  + (f"; plan {pts[-1]['plan']}" if pts[-1].get("plan") else ""))
    except Exception as exc:
        res["error"] = ds.fail(f"{res['name']}: search failed", exc)
    finally:
        res["notes"] = m.notes + ([f"{m.failed_queries} hnswlib queries returned fewer than k (counted as misses)"]
                                  if getattr(m, "failed_queries", 0) else [])
        res["search_s"] = time.perf_counter() - t_start
        if keep is not None and res["points"] and not capped and "error" not in res:
            keep[key] = m
        else:
            with contextlib.suppress(Exception):
                m.close()
        del m
        R.trim_memory()
    return res if res["points"] else None


RETIME_ROUNDS = 5  # rounds of the interleaved re-timing (fastest kept per point)
RETIME_SHARE = 0.25  # points slower than this share of a filter's fastest are not re-timed: they cannot win
RETIME_PASS_S = 0.15  # a re-timing pass of the filter's slowest point lasts about this long (all use the same queries)


def retime(kept: dict[str, Method], results: list[dict[str, Any]], ds: Dataset, filters: list[Filter],
           cfg: Config) -> None:
    """Time every method's points that reach the target recall again, interleaved, and keep the fastest round.

    The sweeps measure one library after another, minutes apart, and this kind of VM drifts
    by up to 2x over minutes: a ratio between two sweeps says as much about the drift as about
    the libraries. Here each round runs one pass per point (all libraries, in a rotating order)
    before the next round starts, so every library sees the same stretch of machine time;
    each point keeps its fastest round (timeit's rule), one query at a time and batched.
    """
    chosen: dict[str, list[tuple[Method, dict[str, Any]]]] = {}
    for flt in filters:
        pts = [(kept[r["key"]], p) for r in results if r["key"] in kept
               for p in r["points"].get(flt.key, []) if p["recall"] >= TARGET_RECALL]
        if pts:
            fastest = max(p["qps_single"] for _, p in pts)
            chosen[flt.key] = [(m, p) for m, p in pts if p["qps_single"] >= RETIME_SHARE * fastest]
    # close the methods with nothing to re-time first: their background threads (LanceDB's and
    # chromadb's runtimes) must not share the 2 cores with the passes being timed
    needed = {id(m) for pts in chosen.values() for m, _ in pts}
    for key in [k for k, m in kept.items() if id(m) not in needed]:
        with contextlib.suppress(Exception):
            kept.pop(key).close()
    R.trim_memory()
    for flt in filters:
        pts = chosen.get(flt.key)
        if not pts:
            continue
        single: dict[int, list[float]] = {id(p): [] for _, p in pts}
        batch: dict[int, list[float]] = {id(p): [] for _, p in pts}
        # every point of a filter runs the same queries, as many as its slowest point answers in
        # RETIME_PASS_S: a pass of 200 queries lasts ~15 ms at 50k rows, and a VM's noise bursts
        # are as long, which moved single passes by +-20 %
        n_f = int(min(len(ds.q), max(min(p["n_single"] for _, p in pts),
                                     RETIME_PASS_S * min(p["qps_single"] for _, p in pts))))
        qs = ds.q[:n_f]
        t_f = time.perf_counter()
        for r in range(RETIME_ROUNDS):
            for j in range(len(pts)):
                m, p = pts[(j + r) % len(pts)]
                m.set_knob(p["knob"])
                with R.limit_threads(1):
                    m.query_one(ds.q[-1], flt)  # warm-up after the knob switch (plans, caches)
                    single[id(p)].append(_timed_pass(m, qs, flt))
                if p["n_batch"]:
                    with R.limit_threads(cfg.threads):
                        R.quiet_gc()
                        t0 = time.perf_counter()
                        m.query_batch(ds.q[:p["n_batch"]], flt)
                        batch[id(p)].append(time.perf_counter() - t0)
            if r >= 1 and time.perf_counter() - t_f > 10 * cfg.sweep_budget:
                break
        for m, p in pts:
            p["qps_single_seq"], p["qps_batch_seq"] = p["qps_single"], p["qps_batch"]
            p["qps_single"], p["n_retimed"] = n_f / min(single[id(p)]), n_f
            if batch[id(p)]:
                p["qps_batch"] = p["n_batch"] / min(batch[id(p)])
            p["retimed"] = len(single[id(p)])
        R.log(f"search: {ds.key}: {flt.key:>9}: re-timed {len(pts)} points interleaved on {n_f} queries, "
              f"{len(single[id(pts[0][1])])} rounds in {time.perf_counter() - t_f:.0f} s")


def best_point(points: list[dict[str, Any]], key: str = "qps_single") -> dict[str, Any] | None:
    ok = [p for p in points if p["recall"] >= TARGET_RECALL and p.get(key)]
    return max(ok, key=lambda p: p[key]) if ok else None


def measure_set(ds: Dataset, filters: list[Filter], methods: list[str], cfg: Config,
                tmp: Path) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """The exact ground truth of every filter, then every method swept in turn and the interleaved
    re-timing of their points; returns (truth per filter key, one result per method that ran)."""
    R.log(f"search: {ds.label}: {ds.n:,} x {ds.x.shape[1]}, {len(ds.q):,} queries; exact ground truth for "
          f"{len(filters)} filters")
    t0 = time.perf_counter()
    with R.limit_threads(cfg.threads):
        truths = {f.key: exact_truth(ds.x, ds.q, f.mask) for f in filters}
    R.log(f"search: {ds.label}: ground truth in {time.perf_counter() - t0:.1f} s")
    results = []
    kept: dict[str, Method] = {}
    try:
        for mkey in methods:
            t0 = time.perf_counter()
            r = run_method(mkey, ds, filters, truths, cfg, tmp, keep=kept)
            R.log(f"search: {ds.key}: {mkey} done in {(time.perf_counter() - t0) / 60:.1f} min")
            if r is not None:
                results.append(r)
        t0 = time.perf_counter()
        retime(kept, results, ds, filters, cfg)
        R.log(f"search: {ds.key}: interleaved re-timing done in {(time.perf_counter() - t0) / 60:.1f} min")
    finally:
        for m in kept.values():
            with contextlib.suppress(Exception):
                m.close()
        kept.clear()
        R.trim_memory()
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True, exist_ok=True)
    return truths, results
