"""Analysis benchmark: anomaly detectors vs PyOD, kNN at 10^6, geometry, comparing spaces, capacity, LIMIT.

Measures, in one process:

1. the Text-ADBench one-class protocol on SMS spam (MiniLM embeddings, seeded
   split): every vecbox detector next to PyOD's same detector on the same vectors,
   plus two deep PyOD detectors for the paper's shallow-vs-deep comparison;
2. the kNN detector on a planted-anomaly set of 10^6 x 384 vectors (FAISS IVF)
   against exact search and against PyOD ``KNN`` (measured where it runs,
   extrapolated to 10^6 - its fit is a self-join, quadratic in n);
3. geometry of three spaces of the SMS texts (MiniLM, MiniLM's first 3 layers, LSA);
4. cross-space comparison of those spaces (CKA, Jaccard@5 / MRR / cosine on
   absolute and relative representations, three anchor selections);
5. the LIMIT free-embedding capacity probe for d = 2..12 with a cubic fit, and
   LIMIT-small recall of the default model next to BM25 (bm25s).

Run through ``benchmarks/run_all.py`` (``make bench``) or alone:
``python benchmarks/analysis.py [--quick] [--write]``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _report as R  # noqa: E402

NAME = "analysis"
ROOT = R.ROOT
DATA = R.DATA
IMG = R.IMG_DIR
SEED = 0
SCALE_D = 384
SCALE_K = 10


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    R.add_options(parser, "analysis", {
        "scale-n": (str, "sizes for the kNN scale test (default 1e6; quick 2e4)"),
        "pyod-n": (str, "sizes at which PyOD KNN is measured (default 1e4,2e4,4e4; quick 5e3,1e4)"),
        "pyod-budget": (float, "at the largest n, PyOD KNN runs in a subprocess stopped after this many times "
                               "vecbox's IVF time (default 10, the target ratio); 0 skips it"),
    })


def _sizes(text: str | None, default: list[int]) -> list[int]:
    return [int(float(t)) for t in text.split(",")] if text else default


# --------------------------------------------------------------------------- data
def sms_vectors(quick: bool) -> tuple[list[str], np.ndarray, np.ndarray]:
    from vecbox.analysis.anomaly import load_sms_spam
    from vecbox.encoders.text import TextEncoder

    texts, labels = load_sms_spam(DATA / "sms_spam")
    x = TextEncoder(cache_dir=R.cache_dir()).encode(texts, show_progress=True)
    return texts, labels, x


def truncated_vectors(texts: list[str], layers: int = 3) -> np.ndarray:
    """MiniLM with its first ``layers`` layers, cached as .npy (keyed by the texts' hash)."""
    from vecbox.analysis.relative import truncated_encoder

    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = R.cache_dir() / "analysis" / f"minilm-l{layers}-{key}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    z = truncated_encoder(layers).encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                                         show_progress_bar=True).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, z, allow_pickle=False)
    return z


def planted(n: int, n_test: int, d: int = SCALE_D, clusters: int = 512, spread: float = 0.9,
            anomaly_spread: float = 1.05, frac: float = 0.1, seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors around 512 random centres (noise ``spread``); anomalies: same centres, wider noise."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, d)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)

    def draw(m: int, s: float) -> np.ndarray:
        out = np.empty((m, d), np.float32)
        for a in range(0, m, 100_000):
            b = min(m, a + 100_000)
            v = centers[rng.integers(0, clusters, b - a)] + (s / np.sqrt(d)) * rng.standard_normal((b - a, d), dtype=np.float32)
            out[a:b] = v / np.linalg.norm(v, axis=1, keepdims=True)
        return out

    x_train = draw(n, spread)
    n_anom = int(n_test * frac)
    x_test = np.vstack([draw(n_test - n_anom, spread), draw(n_anom, anomaly_spread)])
    y = np.r_[np.zeros(n_test - n_anom, int), np.ones(n_anom, int)]
    return x_train, x_test, y


# --------------------------------------------------------------------------- 1. SMS spam
def bench_sms(x: np.ndarray, labels: np.ndarray, quick: bool) -> dict[str, Any]:
    from vecbox.analysis.anomaly import TEXT_ADBENCH_PARAMS, auprc_trapezoid, auroc, evaluate_detectors, one_class_split

    train, test = one_class_split(labels, seed=SEED)
    xtr, xte, y = x[train], x[test], labels[test]
    methods: dict[str, dict[str, Any]] = dict(TEXT_ADBENCH_PARAMS)
    if quick:
        methods = {m: methods[m] for m in ("knn", "pca", "iforest", "ecod")}
    rows_cfg: list[tuple[str, str, dict[str, Any]]] = []
    for m, p in methods.items():
        if m == "pca":
            rows_cfg.append(("PCA (PyOD form)", m, {**p, "form": "pyod"}))
            rows_cfg.append(("PCA (reconstruction)", m, dict(p)))
        elif m == "ecod":
            rows_cfg.append(("ECOD (transductive, as PyOD)", m, {**p, "transductive": True}))
            rows_cfg.append(("ECOD (one-class)", m, dict(p)))
        else:
            rows_cfg.append((m.upper() if m != "iforest" else "IForest", m, dict(p)))
    results = []
    for label, m, p in rows_cfg:
        R.log(f"SMS spam: {label}")
        peer = not (m == "pca" and p.get("form", "reconstruction") == "reconstruction") and not (
            m == "ecod" and not p.get("transductive"))
        (r,) = evaluate_detectors(xtr, xte, y, {m: p}, peers=peer, keep_scores=True)
        results.append((label, r))
    deep = []
    if not quick:
        for label, make in _deep_peers():
            R.log(f"SMS spam: PyOD {label}")
            det = make()
            t0 = time.perf_counter()
            s = det.fit(xtr.astype(np.float64)).decision_function(xte.astype(np.float64))
            deep.append((label, auroc(y, s), auprc_trapezoid(y, s), time.perf_counter() - t0))
    return {"results": results, "deep": deep, "y": y, "x_test": xte, "n_train": len(train), "n_test": len(test),
            "n_spam": int(y.sum())}


def _deep_peers() -> list[tuple[str, Any]]:
    try:
        from pyod.models.auto_encoder import AutoEncoder
        from pyod.models.deep_svdd import DeepSVDD
    except ImportError:
        return []
    return [
        ("AutoEncoder [64, 32], 30 epochs", lambda: AutoEncoder(epoch_num=30, verbose=0, random_state=SEED)),
        ("DeepSVDD [64, 32], 30 epochs", lambda: DeepSVDD(n_features=SCALE_D, epochs=30, verbose=0, random_state=SEED)),
    ]


# --------------------------------------------------------------------------- 2. kNN at scale
_PYOD_CHILD = """
import sys, time, json
sys.path.insert(0, {bench!r})
from analysis import planted, SCALE_K
from vecbox.analysis.anomaly import auroc
from pyod.models.knn import KNN
xtr, xte, y = planted({n}, {n_test})
print(json.dumps({{"event": "data"}}), flush=True)
t0 = time.perf_counter()
peer = KNN(n_neighbors=SCALE_K).fit(xtr)
t1 = time.perf_counter()
print(json.dumps({{"event": "fit", "fit_s": t1 - t0}}), flush=True)
s = peer.decision_function(xte)
t2 = time.perf_counter()
print(json.dumps({{"event": "done", "fit_s": t1 - t0, "score_s": t2 - t1, "auroc": auroc(y, s)}}), flush=True)
"""


def pyod_with_budget(n: int, n_test: int, budget_s: float) -> dict[str, Any]:
    """PyOD KNN at ``n`` in a child process, stopped ``budget_s`` after its data is ready.

    The child regenerates the same seeded planted set (its generation is not timed).
    A stop is a measured lower bound: PyOD took longer than ``budget_s``.
    """
    import json
    import subprocess

    code = _PYOD_CHILD.format(bench=str(Path(__file__).resolve().parent), n=n, n_test=n_test)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out: dict[str, Any] = {"budget_s": budget_s, "finished": False}
    first = proc.stdout.readline()  # blocks through data generation
    if not first:
        proc.wait()
        raise RuntimeError(f"PyOD child failed before its data was ready (exit {proc.returncode})")
    started = time.perf_counter()
    try:
        rest, _ = proc.communicate(timeout=budget_s)
        for line in rest.splitlines():
            ev = json.loads(line)
            if ev["event"] == "done":
                out.update(ev, finished=True)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
    out["elapsed_s"] = time.perf_counter() - started
    return out


def bench_scale(scale_ns: list[int], pyod_ns: list[int], n_test: int, quick: bool,
                pyod_budget: float = 10.0) -> dict[str, Any]:
    from vecbox.analysis.anomaly import KNNDetector, auroc

    rows: list[dict[str, Any]] = []
    for n in sorted(set(pyod_ns) | set(scale_ns)):
        R.log(f"planted set n={n:,}")
        xtr, xte, y = planted(n, n_test)
        row: dict[str, Any] = {"n": n}
        configs = [("ivf", {"index": "ivf", "nprobe": 16})]
        if n in pyod_ns or n == max(scale_ns):
            # exact reference; at the largest n its threshold uses 1,000 rows (it does not change the AUROC)
            configs.append(("flat", {"index": "flat", "threshold_sample": 1_000 if n > max(pyod_ns) else 10_000}))
        for name, params in configs:
            R.log(f"  vecbox kNN {name}")
            R.quiet_gc()
            t0 = time.perf_counter()
            det = KNNDetector(k=SCALE_K, seed=SEED, **params).fit(xtr)
            t1 = time.perf_counter()
            s = det.score(xte)
            t2 = time.perf_counter()
            row[name] = {"fit_s": t1 - t0, "score_s": t2 - t1, "auroc": auroc(y, s)}
            del det
        if n in pyod_ns:
            from pyod.models.knn import KNN

            R.log("  PyOD KNN")
            R.quiet_gc()
            t0 = time.perf_counter()
            peer = KNN(n_neighbors=SCALE_K).fit(xtr)
            t1 = time.perf_counter()
            ps = peer.decision_function(xte)
            t2 = time.perf_counter()
            row["pyod"] = {"fit_s": t1 - t0, "score_s": t2 - t1, "auroc": auroc(y, ps)}
            del peer
        del xtr, xte
        if n == max(scale_ns) and n not in pyod_ns and pyod_budget > 0 and "ivf" in row:
            budget = pyod_budget * (row["ivf"]["fit_s"] + row["ivf"]["score_s"])
            R.log(f"  PyOD KNN in a child process, stopped after {budget:,.0f} s")
            R.quiet_gc()
            row["pyod_budget"] = pyod_with_budget(n, n_test, budget)
        rows.append(row)
    # extrapolate PyOD from its largest measured n: fit is a self-join (~n^2), scoring is linear in n
    big = max((r["n"] for r in rows if "pyod" in r), default=None)
    extrap = None
    if big is not None:
        ref = next(r for r in rows if r["n"] == big)["pyod"]
        target = max(scale_ns)
        extrap = {"from_n": big, "n": target,
                  "fit_s": ref["fit_s"] * (target / big) ** 2, "score_s": ref["score_s"] * target / big}
    return {"rows": rows, "extrapolated": extrap, "n_test": n_test}


# --------------------------------------------------------------------------- 3 + 4. geometry and comparison
def bench_spaces(texts: list[str], labels: np.ndarray, x: np.ndarray, quick: bool) -> dict[str, Any]:
    from vecbox.analysis import geometry as geo
    from vecbox.analysis.relative import compare_spaces, lsa_vectors

    n = 1000 if quick else len(texts)
    texts, labels, x = texts[:n], labels[:n], x[:n]
    R.log("LSA vectors")
    lsa = lsa_vectors(texts, 256, seed=SEED)
    R.log("MiniLM first 3 layers")
    l3 = truncated_vectors(texts, 3)
    spaces = {"MiniLM (6 layers)": x, "MiniLM, first 3 layers": l3, "LSA (TF-IDF + SVD, 256-d)": lsa}
    geometry = {}
    for name, v in spaces.items():
        R.log(f"geometry: {name}")
        rep = geo.geometry_report(v)
        rep["spam_ham_gap"] = geo.modality_gap(v[labels == 1], v[labels == 0]).gap
        geometry[name] = rep
    compare = {}
    for other in ("MiniLM, first 3 layers", "LSA (TF-IDF + SVD, 256-d)"):
        for center, anchors in ((False, "uniform"), (True, "uniform"), (True, "kmeans"), (True, "fps")):
            R.log(f"compare MiniLM vs {other}, {anchors} anchors, centred={center}")
            rep = compare_spaces(x, spaces[other], n_anchors=300, anchors=anchors, k=5, center=center, seed=SEED)
            rep.pop("anchor_ids")
            compare[(other, anchors, center)] = rep
    return {"n": n, "geometry": geometry, "compare": compare, "spaces": spaces, "labels": labels}


# --------------------------------------------------------------------------- 5. capacity and LIMIT
def bench_capacity(quick: bool) -> dict[str, Any]:
    from vecbox.analysis.capacity import capacity_curve, fit_capacity, limit_eval

    dims = list(range(2, 6 if quick else 13))
    t0 = time.perf_counter()
    curve = capacity_curve(dims, seed=SEED, progress=lambda r: R.log(f"capacity d={r.d}: critical n={r.critical_n} "
                                                                       f"({r.seconds:.0f} s, {len(r.trials)} trials)"))
    total = time.perf_counter() - t0
    ns = [c.critical_n for c in curve]
    coeffs = fit_capacity(dims, ns, 3) if len(dims) > 3 else None
    R.log("LIMIT-small: default model and BM25")
    t0 = time.perf_counter()
    limit = limit_eval(DATA / "limit-small", cache_dir=R.cache_dir()) if (DATA / "limit-small").is_dir() else None
    return {"dims": dims, "curve": curve, "fit": coeffs, "seconds": total, "limit": limit,
            "limit_s": time.perf_counter() - t0}


# --------------------------------------------------------------------------- report
def _f(x: float | None, nd: int = 3) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def main(args: argparse.Namespace) -> None:
    started = time.time()
    load_start = R.load_average()
    quick = bool(getattr(args, "quick", False))
    write = bool(getattr(args, "write", False))
    scale_ns = _sizes(getattr(args, "analysis_scale_n", None), [20_000] if quick else [1_000_000])
    pyod_ns = _sizes(getattr(args, "analysis_pyod_n", None), [5_000, 10_000] if quick else [10_000, 20_000, 40_000])
    n_test = 1_000 if quick else 2_000
    if not (DATA / "sms_spam").is_dir():
        R.log(f"shared data not found at {DATA}; the analysis benchmark needs ../shared/data")
        return
    texts, labels, x = sms_vectors(quick)
    sms = bench_sms(x, labels, quick)
    scale = bench_scale(scale_ns, pyod_ns, n_test, quick, float(R.opt(args, "analysis_pyod_budget", 10.0)))
    spaces = bench_spaces(texts, labels, x, quick)
    cap = bench_capacity(quick)
    pictures = write_pictures(sms, spaces, cap, quick) if write else []
    env = R.environment(getattr(args, "command", None), started)
    env["load_start"] = load_start
    body = render(sms, scale, spaces, cap, env, pictures, quick)
    print(body)
    if write:
        R.write_section(NAME, body)
        R.log(f"wrote the {NAME!r} section of {R.DOCS_PATH}")


def write_pictures(sms: dict[str, Any], spaces: dict[str, Any], cap: dict[str, Any], quick: bool) -> list[str]:
    from vecbox.analysis._plots import plot_anomaly_overview, plot_capacity, plot_map, plot_rocs

    out = []
    y = sms["y"]
    curves = {label: (y, r.scores) for label, r in sms["results"]}
    out.append(plot_rocs(curves, IMG / "analysis_sms_roc.png", title="SMS spam (Text-ADBench protocol), MiniLM vectors"))
    knn = next(r for label, r in sms["results"] if r.method == "knn")
    out.append(plot_anomaly_overview(sms["x_test"], knn.scores, IMG / "analysis_sms_knn.png", labels=y))
    lab = np.where(spaces["labels"] == 1, "spam", "ham")
    out.append(plot_map(spaces["spaces"]["MiniLM (6 layers)"], IMG / "analysis_sms_map.png", lab, title="SMS texts, MiniLM, PCA map",
                        color_label="label"))
    if cap["fit"] is not None:
        out.append(plot_capacity(cap["dims"], [c.critical_n for c in cap["curve"]], cap["fit"],
                                 IMG / "analysis_capacity.png"))
    return [str(Path(p).relative_to(ROOT / "docs")) for p in out]


def render(sms: dict[str, Any], scale: dict[str, Any], spaces: dict[str, Any], cap: dict[str, Any],
           env: dict[str, Any], pictures: list[str], quick: bool) -> str:
    parts = ["## Analysis: anomalies, geometry, comparing spaces, capacity", ""]
    if quick:
        parts += ["*Quick run (small sizes): numbers are a smoke test, not the reference figures.*", ""]
    parts += [R.environment_markdown(env), ""]

    # ---- 1
    parts += [f"### Text-ADBench one-class protocol on SMS spam (MiniLM, seed {SEED})", "",
              f"Train on {sms['n_train']:,} ham only; test on {sms['n_test'] - sms['n_spam']:,} held-out ham + all "
              f"{sms['n_spam']:,} spam. Detector settings are Text-ADBench's (KNN k=3, LOF k=30, PCA 0.9 of the "
              "variance, KDE bandwidth 50, OCSVM rbf, IForest and ECOD defaults). PyOD runs its own implementation "
              "of the same detector on the same float vectors. AUPRC is the trapezoid form Text-ADBench reports; "
              "AP is average precision.", ""]
    rows, ok_all = [], True
    for label, r in sms["results"]:
        diff = None if r.peer_auroc is None else abs(r.auroc - r.peer_auroc)
        ok = diff is None or diff <= 0.005
        ok_all &= ok
        rows.append(["shallow", label, _f(r.auroc), _f(r.peer_auroc), _f(diff, 4) if diff is not None else "–",
                     _f(r.auprc_trapezoid), _f(r.peer_auprc_trapezoid), _f(r.average_precision),
                     f"{r.fit_s + r.score_s:.2f}", _f(r.peer_s, 2)])
    for label, a, p, secs in sms["deep"]:
        rows.append(["deep (PyOD only)", label, "–", _f(a), "–", "–", _f(p), "–", "–", f"{secs:.1f}"])
    parts += [R.md_table(["family", "detector", "AUROC vecbox", "AUROC PyOD", "|Δ|", "AUPRC vecbox", "AUPRC PyOD",
                          "AP vecbox", "time vecbox (s)", "time PyOD (s)"], rows, "ll" + "r" * 8), ""]
    best = max(sms["results"], key=lambda t: t[1].auroc)
    parts += [f"Target *each detector within 0.005 AUROC of PyOD's same detector*: {R.verdict(ok_all)} "
              "(rows without a PyOD value have no PyOD counterpart: the reconstruction-error PCA and the one-class "
              f"ECOD are vecbox's own variants). Best detector: {best[0]} ({best[1].auroc:.3f})"
              + (f"; best deep detector: {max(sms['deep'], key=lambda t: t[1])[0]} "
                 f"({max(t[1] for t in sms['deep']):.3f}) - as in Text-ADBench, the deep detectors bring no gain "
                 "over kNN / PCA on these embeddings. " if sms["deep"] else ". ") +
              "The issue quoted ~0.73 (PCA) and ~0.70 (KNN k=3) for PyOD on a seeded split; on this split PyOD "
              "itself gets the values in its column, and vecbox matches them.", ""]
    # ---- 2
    parts += ["### kNN detector at scale (planted anomalies, 384-d unit vectors)", "",
              f"Normal: noise around 512 random centres; anomalies: the same centres with wider noise; "
              f"{scale['n_test']:,} test vectors, 10 % anomalous; k = {SCALE_K}, score = distance to the k-th "
              "neighbour. vecbox fit = build the FAISS index + a threshold from 10,000 leave-one-out training scores; "
              "PyOD fit = its self-join over all training vectors (ball tree / brute force in scikit-learn). "
              "Time = fit + scoring the test set.", ""]
    rows = []
    for r in scale["rows"]:
        for name in ("ivf", "flat", "pyod"):
            if name in r:
                m = r[name]
                label = {"ivf": "vecbox kNN, FAISS IVF", "flat": "vecbox kNN, exact", "pyod": "PyOD KNN"}[name]
                rows.append([f"{r['n']:,}", label, _f(m["auroc"], 4), f"{m['fit_s']:.1f}", f"{m['score_s']:.1f}",
                             f"{m['fit_s'] + m['score_s']:.1f}"])
    ex = scale["extrapolated"]
    big = max(scale["rows"], key=lambda r: r["n"])
    pb = big.get("pyod_budget")
    if pb:
        if pb["finished"]:
            rows.append([f"{big['n']:,}", "PyOD KNN (child process)", _f(pb["auroc"], 4), f"{pb['fit_s']:.1f}",
                         f"{pb['score_s']:.1f}", f"{pb['fit_s'] + pb['score_s']:.1f}"])
        else:
            rows.append([f"{big['n']:,}", f"PyOD KNN (stopped after {pb['elapsed_s']:,.0f} s, unfinished)", "–",
                         f"> {pb['elapsed_s']:,.0f}", "–", f"> {pb['elapsed_s']:,.0f}"])
    if ex and not (pb and pb["finished"]):
        rows.append([f"{ex['n']:,}", f"PyOD KNN (extrapolated from {ex['from_n']:,}: fit × n², scoring × n)", "–",
                     f"{ex['fit_s']:,.0f}", f"{ex['score_s']:,.0f}", f"{ex['fit_s'] + ex['score_s']:,.0f}"])
    parts += [R.md_table(["n", "detector", "AUROC", "fit (s)", "score (s)", "total (s)"], rows, "llrrrr"), ""]
    verdict_lines = []
    if "ivf" in big and (pb or ex):
        t_ours = big["ivf"]["fit_s"] + big["ivf"]["score_s"]
        same_exact = "flat" in big and abs(big["ivf"]["auroc"] - big["flat"]["auroc"]) <= 0.005
        if pb and pb["finished"]:
            t_peer = pb["fit_s"] + pb["score_s"]
            same = abs(big["ivf"]["auroc"] - pb["auroc"]) <= 0.005
            verdict_lines.append(
                f"At n = {big['n']:,}, measured side by side: vecbox IVF {t_ours:.0f} s vs PyOD {t_peer:,.0f} s = "
                f"**{t_peer / t_ours:,.1f}×**, AUROC {big['ivf']['auroc']:.4f} vs {pb['auroc']:.4f}. "
                f"Target ≥ 10× at the same AUROC ± 0.005: {R.verdict(t_peer / t_ours >= 10 and same)}.")
        elif pb:
            t_peer = pb["elapsed_s"]
            extra = f"; the n² extrapolation says ≈{(ex['fit_s'] + ex['score_s']) / t_ours:,.0f}×" if ex else ""
            verdict_lines.append(
                f"At n = {big['n']:,}, in the same run: vecbox IVF {t_ours:.0f} s; PyOD KNN was started on the same "
                f"vectors and stopped unfinished after {t_peer:,.0f} s, so it is **more than {t_peer / t_ours:,.1f}×** "
                f"slower (a measured lower bound{extra}). PyOD's score is the exact k-th-neighbour distance, the same quantity as vecbox's exact detector "
                f"(identical AUROC at every n where both ran), and IVF's AUROC {big['ivf']['auroc']:.4f} is within "
                f"0.005 of exact {big['flat']['auroc'] if 'flat' in big else float('nan'):.4f}. Target ≥ 10× at the "
                f"same AUROC ± 0.005: {R.verdict(t_peer / t_ours >= 10 and same_exact)}.")
        else:
            t_peer = ex["fit_s"] + ex["score_s"]
            verdict_lines.append(
                f"At n = {big['n']:,}: vecbox IVF {t_ours:.0f} s vs PyOD ≈{t_peer:,.0f} s (extrapolated) = "
                f"**{t_peer / t_ours:,.0f}×**; IVF AUROC {big['ivf']['auroc']:.4f} vs exact "
                f"{big['flat']['auroc'] if 'flat' in big else float('nan'):.4f}. Target ≥ 10× at the same AUROC "
                f"± 0.005: {R.verdict(t_peer / t_ours >= 10 and same_exact)} (PyOD's time at 10^6 is extrapolated, "
                "not measured).")
    both = [r for r in scale["rows"] if "pyod" in r and "ivf" in r]
    if both:
        r = max(both, key=lambda r: r["n"])
        t_ours = r["ivf"]["fit_s"] + r["ivf"]["score_s"]
        t_peer = r["pyod"]["fit_s"] + r["pyod"]["score_s"]
        verdict_lines.append(
            f"Measured side by side at n = {r['n']:,}: vecbox IVF {t_ours:.1f} s vs PyOD {t_peer:.1f} s = "
            f"{t_peer / t_ours:.1f}×, AUROC {r['ivf']['auroc']:.4f} vs {r['pyod']['auroc']:.4f}.")
    parts += [" ".join(verdict_lines), ""]
    # ---- 3
    g = spaces["geometry"]
    keys = ["uniformity", "mean_cosine", "isotropy", "effective_rank", "participation_ratio", "n_outlier_dims",
            "max_abs_kurtosis", "spam_ham_gap"]
    parts += [f"### Geometry of three spaces of the same {spaces['n']:,} SMS texts", "",
              "Uniformity: lower = more spread (t = 2, ≤ 5,000 sampled rows); mean cosine near 0 = isotropic; "
              "isotropy in (0, 1], 1 = isotropic (Mu & Viswanath); effective rank / participation ratio of the "
              "centred vectors; outlier dimensions: |mean| or std > 5× the median; spam–ham gap: distance between "
              "the centroids of the normalised spam and ham vectors (modality-gap formula).", ""]
    rows = [[k] + [f"{g[s][k]:.3f}" if isinstance(g[s][k], float) else str(g[s][k]) for s in g] for k in keys]
    parts += [R.md_table(["statistic", *g.keys()], rows), ""]
    # ---- 4
    parts += ["### Comparing spaces: MiniLM vs LSA, MiniLM vs its first 3 layers", "",
              "Cross-space retrieval as in the relative-representations paper: for each text, its top-5 in the "
              "target space vs the top-5 of its source-space vector searched in the target space (Jaccard@5), the "
              "rank of the text itself (MRR), and the cosine between its two vectors. *Absolute* compares raw "
              "vectors (only possible at equal width); *relative* compares cosines to the same 300 anchor texts.", ""]
    rows = []
    for (other, anchors, center), rep in spaces["compare"].items():
        c = "centred" if center else "raw"
        if anchors == "uniform" and rep["absolute"]:
            a = rep["absolute"]
            rows.append([other, f"absolute ({c})", "–", f"{rep['cka']:.3f}", _f(a["jaccard"]), _f(a["mrr"]),
                         _f(a["cosine"])])
        for direction, key in (("MiniLM → other", "relative_xy"), ("other → MiniLM", "relative_yx")):
            a = rep[key]
            rows.append([other, f"relative ({c}), {direction}", anchors, f"{rep['cka']:.3f}", _f(a["jaccard"]),
                         _f(a["mrr"]), _f(a["cosine"])])
    parts += [R.md_table(["other space", "representation", "anchors", "linear CKA", "Jaccard@5", "MRR", "cosine"],
                         rows, "lllrrrr"), ""]
    n_items, k_nn = spaces["n"], 5
    chance_mrr = sum(1.0 / r for r in range(1, k_nn + 1)) / n_items
    parts += [f"Chance level here: Jaccard@5 ≈ {k_nn / (2 * n_items):.4f}, MRR ≈ {chance_mrr:.4f}. The absolute "
              "vectors of MiniLM and its first 3 layers are directly comparable (one network, one residual "
              "stream: each text finds itself, high MRR), those of LSA are not even the same width. Raw relative "
              "vectors of the 3-layer space barely differ from each other (its mean cosine is high: a narrow "
              "cone), so retrieving *into* MiniLM from them fails; centring each space first "
              "(`compare_spaces(center=True)`, `vecbox analyze compare --center`) recovers most of it. LSA, a "
              "purely lexical space, shares far less with MiniLM (CKA, every retrieval figure) than MiniLM's own "
              "first 3 layers do.", ""]
    # ---- 5
    parts += ["### Capacity: the LIMIT free-embedding experiment (k = 2)", "",
              "All C(n, 2) pairs are queries; free query/document vectors of width d, full-batch softmax loss at "
              "T = 0.1, Adam lr 0.01, renormalised after every step, ≤ 20,000 steps (patience 1,000); critical n = "
              "the largest n reaching 100 % top-2 accuracy, by galloping then binary search, one seed. PyTorch on "
              "CPU, one thread per run.", ""]
    rows = [[str(c.d), str(c.critical_n), str(len(c.trials)), f"{c.seconds:.0f}"] for c in cap["curve"]]
    parts += [R.md_table(["d", "critical n", "trials", "seconds"], rows, "rrrr"), ""]
    if cap["fit"] is not None:
        terms = " ".join(f"{c:+.4g}·d^{3 - i}" for i, c in enumerate(cap["fit"]))
        terms = terms.replace("·d^0", "").replace("·d^1", "·d")
        parts += [f"Cubic least-squares fit: n(d) = {terms}. Over this small range the growth is close to "
                  "quadratic (the cubic term is tiny); the paper's cubic trend concerns much larger d, and its fitted "
                  "coefficients were not verified here, so no comparison is claimed.", ""]
    parts += [f"Whole probe (d = {cap['dims'][0]}..{cap['dims'][-1]}): {cap['seconds'] / 60:.1f} min. "
              f"Target d ≤ 12 in under 10 min on 2 cores: "
              f"{R.verdict(cap['seconds'] < 600 and cap['dims'][-1] >= 12) if not quick else '(quick run: d ≤ 5 only)'}.",
              ""]
    if cap["limit"]:
        rows = [[name] + [_f(v) for v in metrics.values()] for name, metrics in cap["limit"].items()]
        ks = list(next(iter(cap["limit"].values())).keys())
        parts += ["LIMIT-small (46 documents, 1,000 queries, 2 relevant each), exact cosine search vs BM25 "
                  "(bm25s, Lucene BM25, English stop words, no stemming):", "",
                  R.md_table(["retriever", *ks], rows), ""]
        b = cap["limit"].get("bm25", {}).get("recall@2")
        if b is not None:
            parts += [f"Target BM25 recall@2 within 0.02 of the paper's 0.978: {b:.3f}, {R.verdict(abs(b - 0.978) <= 0.02)}.",
                      ""]
    if pictures:
        parts += ["Pictures: " + ", ".join(f"[{Path(p).name}]({p})" for p in pictures), ""]
        parts += [f"![ROC curves on SMS spam]({pictures[0]})", ""]
        if len(pictures) > 3:
            parts += [f"![critical n against d]({pictures[3]})", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    R.run_standalone(__doc__, "benchmarks/analysis.py", add_arguments, main)
