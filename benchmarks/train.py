"""Making better embeddings (issue 21): elastic inference first.

Section 1 (``train-elastic``): encoding throughput of the bundled all-MiniLM-L6-v2 at elastic depth
``TextEncoder(layers=n)`` for n = 1, 2, 3, 6, on SciFact abstracts (documents, up to 256 word
pieces) and SciFact queries (short), against plain sentence-transformers ``encode`` of the full
model in the same run (the peer). ``dims`` does not change the encoding time (a slice of the
output), so it is not timed. Target: ``layers=3`` encodes >= 1.7x faster than 6 layers.

Section 2 (``train-grid``, only with ``--train-grid``: hours on 2 cores): nDCG@10 on SciFact test
for layers {1, 2, 3, 6} x dims {32, 64, 128, 384}: the base model (truncated), and the base tuned
with MNRL, Matryoshka, 2DMSE and Starbucks on the same unsupervised SciFact pairs (title -> body
and inverse cloze, :mod:`vecbox.train.pairs`) with the same step budget; training wall time and
peak RSS; a heat map. Tuned models are kept under the vecbox cache (``train-grid/``) and training
resumes from its checkpoints when a run is interrupted (``--train-grid-minutes`` caps each model's
training per run). Targets (issue 21): Starbucks >= base + 5 points at every ladder size below full
and >= 2DMSE at every ladder size; full size after tuning >= base.

Section 3 (``train-merge``, only with ``--train-merge``, which runs this step alone: ~1 h): two parents
MNRL-tuned with the grid's budget, one on the SciFact pairs (the grid's ``mnrl`` model) and one on the
demo's standard-library docstrings of three quarters of the packages, merged by every method of
:mod:`vecbox.train.merge` (Self Positioning on 64 probe pairs); nDCG@10 of base, parents and merges on
SciFact test and on a retrieval set from the held-out packages (a docstring's first sentence finds its
object). Target (issue 21): the merged model within 1 point of the better parent on each task.

Section 4 (``train-default``, only with ``--train-default``: ~30 min): ``vecbox train pairs <SciFact>
--loss starbucks`` with every other option at its default, timed as a process. Target (issue 21): one
Starbucks run on the SciFact pairs in <= 45 min on these 2 cores.

Run: ``python benchmarks/run_all.py --only train`` (``--quick``: 64 documents, prints only);
``python benchmarks/train.py --train-grid`` for both sections (``--quick --train-grid``: a smoke
run of the grid on 400 documents and 8 steps, prints only).

Late interaction (issue 21; run 2026-12-07, 670 s): ``python benchmarks/train.py --train-maxsim`` runs only this
step: it trains the MaxSim head (:mod:`vecbox.train.late`, 128-d, ``loss="maxsim"``) on MiniLM with
the grid's own unsupervised SciFact pairs (same count, seed, batch and step budget unless
``--train-maxsim-steps`` / ``--train-maxsim-lr`` say otherwise), into the vecbox cache
(``train-grid/full/maxsim``; resumable like the grid), and prints the MUVERA re-run to do next:
``python benchmarks/multivector.py --multivector-model <that directory>``. It writes no section:
the measurement is the multivector benchmark's.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _report as R  # noqa: E402

NAME = "train-elastic"
GRID_NAME = "train-grid"
MERGE_NAME = "train-merge"
DEFAULT_NAME = "train-default"
LAYERS = (1, 2, 3, 6)
DIMS = (32, 64, 128, 384)
GRID_LOSSES = ("mnrl", "matryoshka", "2dmse", "starbucks")
LADDER = ((1, 32), (2, 64), (3, 128), (4, 256), (5, 384), (6, 384))  # vecbox.train.losses.default_ladder(6, 384)


def add_arguments(parser: Any) -> None:
    R.add_options(parser, "train", {
        "docs": (int, "SciFact abstracts encoded per setting (default 512; --quick 64)"),
        "repeats": (int, "timed repeats per setting, best kept (default 3; --quick 1)"),
        "grid-pairs": (int, "grid: training pairs made from SciFact (default 5000; --quick 64)"),
        "grid-steps": (int, "grid: steps per loss, the same budget for all (default 150; --quick 8)"),
        "grid-batch": (int, "grid: pairs per step (default 32; --quick 8)"),
        "grid-minutes": (float, "grid: training minutes per model in this run; resume in the next (default none)"),
        "maxsim-steps": (int, "--train-maxsim: steps (default: the grid's, --train-grid-steps)"),
        "maxsim-lr": (float, "--train-maxsim: peak learning rate (default 2e-5, the grid's)"),
    })
    parser.add_argument("--train-grid", action="store_true", help="also run the training grid (hours)")
    parser.add_argument("--train-default", action="store_true",
                        help="only one Starbucks run of `vecbox train pairs` on SciFact with the CLI's defaults: "
                             "its wall time against the 45-minute target (its own section)")
    parser.add_argument("--train-merge", action="store_true",
                        help="only the merge experiment: a SciFact-tuned and a stdlib-tuned model merged by each "
                             "method, scored on both tasks (its own section; the other sections are not run)")
    parser.add_argument("--train-maxsim", action="store_true",
                        help="only train the late-interaction (MaxSim) head on the grid's pairs, for "
                             "benchmarks/multivector.py --multivector-model (the other sections are not run)")


def _scifact(n_docs: int) -> tuple[list[str], list[str]]:
    docs, queries = [], []
    with open(R.SCIFACT / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            docs.append(f"{d.get('title', '')}. {d.get('text', '')}")
            if len(docs) == n_docs:
                break
    with open(R.SCIFACT / "queries.jsonl", encoding="utf-8") as fh:
        queries = [json.loads(line)["text"] for line in fh if line.strip()]
    return docs, queries


def elastic(quick: bool, n_docs: int, repeats: int) -> dict[str, Any]:
    """Seconds per pass at each depth, vecbox and the peer (plain sentence-transformers, full model).

    The texts are cut into chunks of 64 (one batch); chunk by chunk, every setting encodes the chunk
    in turn, and each (setting, chunk) keeps its best of ``repeats``; a setting's time is the sum over
    chunks. A burst of load from other processes then hits every setting alike. One torch thread:
    on 2 shared cores a second thread mostly waits for a core, which makes the timings erratic.
    """
    import torch

    from vecbox.encoders.text import TextEncoder

    docs, queries = _scifact(n_docs)
    queries = queries[: 64 if quick else 300]
    st = TextEncoder().model
    encoders = {}
    for n in LAYERS:
        enc = TextEncoder(layers=n)
        enc._model = st  # the same loaded weights; the view runs the first n layers
        encoders[n] = enc
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out: dict[str, Any] = {"n_docs": len(docs), "n_queries": len(queries), "best": {}}
    try:
        for kind, texts in (("documents", docs), ("queries", queries)):
            texts = sorted(texts, key=len, reverse=True)  # the chunks are the batches both encoders form
            chunks = [texts[i : i + 64] for i in range(0, len(texts), 64)]
            st.encode(chunks[-1], batch_size=64)  # warm-up
            for enc in encoders.values():
                enc.encode(chunks[-1])
            best: dict[Any, float] = {}
            for chunk in chunks:
                runs: dict[Any, Any] = {"peer": lambda c=chunk: st.encode(c, batch_size=64, normalize_embeddings=True)}
                runs.update({n: (lambda e=e, c=chunk: e.encode(c)) for n, e in encoders.items()})
                times = {key: float("inf") for key in runs}
                for _ in range(repeats):
                    for key, fn in runs.items():
                        times[key] = min(times[key], R.timed(fn)[0])
                for key, t in times.items():
                    best[key] = best.get(key, 0.0) + t
            out["best"][kind] = best
            R.log(f"train: {kind}: " + ", ".join(f"{k}: {len(texts) / v:,.1f}/s" for k, v in best.items()))
    finally:
        torch.set_num_threads(threads)
    return out


def publish(res: dict[str, Any], env: dict[str, Any], write: bool) -> None:
    headers = ["encoder", "documents/s", "speed-up vs 6 layers", "queries/s", "speed-up vs 6 layers"]
    counts = {"documents": res["n_docs"], "queries": res["n_queries"]}
    rows = []
    for key in ("peer", *LAYERS):
        label = "sentence-transformers `encode` (peer), 6 layers" if key == "peer" else f"vecbox `layers={key}`"
        row: list[Any] = [label]
        for kind in ("documents", "queries"):
            b = res["best"][kind]
            row += [R.fmt_rate(counts[kind] / b[key]), R.fmt_ratio(b[6] / b[key])]
        rows.append(row)
    R.print_table("Elastic depth: encoding throughput of all-MiniLM-L6-v2", headers, rows)
    speed3 = {k: res["best"][k][6] / res["best"][k][3] for k in counts}
    ok = speed3["documents"] >= 1.7
    _publish(NAME, [
        "## Elastic inference: encoding throughput vs depth (issue 21)",
        f"`TextEncoder(layers=n)` runs only the first n of MiniLM's 6 transformer layers (a view of the "
        f"model sharing its weights), then pools and normalises. {res['n_docs']} SciFact abstracts (title + "
        f"text, truncated at 256 word pieces) and {res['n_queries']} SciFact queries in batches of 64, one "
        f"torch thread; batch by batch every setting runs in turn and keeps its best of the repeats, so "
        f"load from other processes hits all settings alike. The peer is plain sentence-transformers "
        f"`encode` of the full model on the same batches in the same run.",
        R.md_table(headers, rows),
        f"**Target** `layers=3` ≥ 1.7× faster than 6 layers on documents: {speed3['documents']:.2f}× — "
        f"{R.verdict(ok)} (queries: {speed3['queries']:.2f}×). `dims` is not timed: it slices the output. "
        f"What the early exit costs in retrieval quality (and what Starbucks/2DMSE training wins back) is the "
        f"training grid's job, not measured yet.",
    ], env, write)


def _publish(section: str, parts: list[str], env: dict[str, Any], write: bool) -> None:
    """Print a section's body (``parts`` then the load warning and the environment), or write it to BENCHMARKS."""
    body = "\n\n".join(x for x in [*parts, R.busy_warning(env) or "", R.environment_markdown(env)] if x)
    print(body if not write else "")
    if write:
        R.write_section(section, body)
        R.log(f"train: wrote section {section} of {R.DOCS_PATH}")


# --------------------------------------------------------------------------- section 2: the training grid
def _grid_data(quick: bool) -> tuple[Any, list[str], list[str], list[str], list[str], dict[str, dict[str, int]]]:
    """SciFact test: (the data set, doc ids, doc texts, query ids, query texts, qrels); --quick keeps 50
    queries and 400 documents (their relevant ones first)."""
    from vecbox.evaluation.beir import load_beir

    data = load_beir(R.SCIFACT, split="test")
    doc_ids, doc_texts = data.doc_texts()
    q_ids = list(data.queries)
    if quick:
        q_ids = q_ids[:50]
        wanted = {d for q in q_ids for d in data.qrels[q]}
        keep = [i for i, d in enumerate(doc_ids) if d in wanted]
        keep += [i for i, d in enumerate(doc_ids) if d not in wanted][: max(0, 400 - len(keep))]
        doc_ids, doc_texts = [doc_ids[i] for i in keep], [doc_texts[i] for i in keep]
    return data, doc_ids, doc_texts, q_ids, [data.queries[q] for q in q_ids], {q: data.qrels[q] for q in q_ids}


def _ndcg_grid(model: str, docs: tuple[list[str], list[str]], queries: tuple[list[str], list[str]],
               qrels: dict[str, dict[str, int]], cache: Path | None, layers: tuple[int, ...] = LAYERS,
               dims: tuple[int, ...] = DIMS) -> dict[tuple[int, int], float]:
    """nDCG@10 of exact search at every (layers, dims) of the grid; one corpus encoding per depth."""
    import numpy as np

    from vecbox.encoders.text import TextEncoder
    from vecbox.evaluation import evaluate

    out = {}
    for n in layers:
        enc = TextEncoder(model, layers=n, cache_dir=cache)
        x = enc.encode(docs[1], kind="document", show_progress=True)
        q = enc.encode(queries[1], kind="query")
        for d in dims:
            xd = x[:, :d] / np.linalg.norm(x[:, :d], axis=1, keepdims=True)
            qd = q[:, :d] / np.linalg.norm(q[:, :d], axis=1, keepdims=True)
            s = qd @ xd.T
            top = np.argsort(-s, axis=1, kind="stable")[:, :10]
            run = {qid: {docs[0][j]: float(s[i, j]) for j in top[i]} for i, qid in enumerate(queries[0])}
            out[(n, d)] = evaluate(run, qrels, (10,))["ndcg@10"]
        R.log(f"train-grid: {Path(model).name} layers={n}: " + ", ".join(f"{d}: {out[(n, d)]:.3f}" for d in dims))
    return out


def _grid_pairs(quick: bool, args: Any, data: Any, doc_ids: list[str]) -> list[Any]:
    """The grid's unsupervised pairs (title -> body, inverse cloze; seed 0) from the documents ``doc_ids``."""
    from vecbox.train.pairs import Doc, make_pairs

    n_pairs = R.opt(args, "train_grid_pairs", 64 if quick else 5000)
    corpus = [Doc(i, data.corpus[i].get("title", ""), data.corpus[i].get("text", "")) for i in doc_ids]
    return make_pairs(corpus, kinds=("title", "ict"), seed=0, max_pairs=n_pairs)


def _grid_root(quick: bool) -> Path:
    return Path(R.cache_dir()) / "train-grid" / ("quick" if quick else "full")


def grid(quick: bool, args: Any) -> dict[str, Any]:
    """Train each loss with the same budget on the same pairs, then score every (layers, dims)."""
    steps, batch = _budget(quick, args)
    data, doc_ids, doc_texts, q_ids, q_texts, qrels = _grid_data(quick)
    pairs = _grid_pairs(quick, args, data, doc_ids)
    root = _grid_root(quick)
    cache = None if quick else R.cache_dir()
    res: dict[str, Any] = {"n_docs": len(doc_ids), "n_queries": len(q_ids), "n_pairs": len(pairs), "steps": steps,
                           "batch": batch, "models": {}, "train": {}}
    res["models"]["base"] = _ndcg_grid("default", (doc_ids, doc_texts), (q_ids, q_texts), qrels, cache)
    for loss in GRID_LOSSES:
        out = root / loss
        res["train"][loss] = _train_or_reuse(loss, pairs, out, quick, args,
                                             f"SciFact corpus: {len(pairs)} title/inverse-cloze pairs")
        if res["train"][loss]["finished"]:
            res["models"][loss] = _ndcg_grid(str(out), (doc_ids, doc_texts), (q_ids, q_texts), qrels, cache)
    return res


def _budget(quick: bool, args: Any) -> tuple[int, int]:
    """The grid's step budget, the same for every model it trains: (steps, pairs per step)."""
    return R.opt(args, "train_grid_steps", 8 if quick else 150), R.opt(args, "train_grid_batch", 8 if quick else 32)


def _train_or_reuse(loss: str, pairs: list[Any], out: Path, quick: bool, args: Any, data: str) -> dict[str, Any]:
    """Train the base model with ``loss`` on ``pairs`` into ``out`` with the grid's budget (or resume there), or
    reuse the model an earlier run finished: its wall time, whether it finished, the run's peak RSS."""
    import resource

    from vecbox.train.card import CARD_FILE
    from vecbox.train.fit import TrainSettings, train

    card = out / CARD_FILE
    if card.is_file():
        seconds = json.loads(card.read_text())["Figures"]["wall time of this call (s)"]
        return {"seconds": seconds, "finished": True, "peak_rss_gib": None, "note": "trained in an earlier run"}
    steps, batch = _budget(quick, args)
    settings = TrainSettings(loss=loss, batch_size=batch, max_steps=steps, seed=0,
                             max_seq_length=64 if quick else 128, checkpoint_every=25,
                             ladder=LADDER if loss == "starbucks" else None)
    R.log(f"train: training {out.name} ({loss}, {steps} steps of {batch} pairs)")
    result = train("default", pairs, out, settings, max_minutes=R.opt(args, "train_grid_minutes", None),
                   show_progress=True, data=data)
    if not result.finished:
        R.log(f"train: {out.name} stopped at step {result.steps}/{result.total_steps}; run again to resume")
    return {"seconds": result.seconds, "finished": result.finished,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def train_maxsim(quick: bool, args: Any) -> dict[str, Any]:
    """Train the late-interaction head (``loss="maxsim"``, 128-d) on MiniLM with the grid's pairs and budget.

    Issue 21. The result feeds ``benchmarks/multivector.py --multivector-model DIR``: the
    MUVERA target (>= 3x fewer candidates than the single-vector heuristic for 90% recall), missed with
    MiniLM's untrained token vectors, measured again on MaxSim-trained ones.
    """
    import resource

    from vecbox.train.card import CARD_FILE
    from vecbox.train.fit import TrainSettings, train

    steps, batch = _budget(quick, args)
    steps = R.opt(args, "train_maxsim_steps", steps)
    data, doc_ids, *_ = _grid_data(quick)
    pairs = _grid_pairs(quick, args, data, doc_ids)
    out = _grid_root(quick) / "maxsim"
    if (out / CARD_FILE).is_file():  # trained by an earlier run: never train over it
        R.log("train-maxsim: already trained; the MUVERA re-run: "
              f"python benchmarks/multivector.py --multivector-model {out}")
        return {"out": str(out), "finished": True, "note": "trained in an earlier run"}
    settings = TrainSettings(loss="maxsim", batch_size=batch, max_steps=steps, seed=0, head_dim=128,
                             lr=R.opt(args, "train_maxsim_lr", 2e-5), max_seq_length=64 if quick else 128,
                             checkpoint_every=25)
    R.log(f"train-maxsim: training the 128-d MaxSim head ({steps} steps of {batch} pairs) into {out}")
    result = train("default", pairs, out, settings, max_minutes=R.opt(args, "train_grid_minutes", None),
                   show_progress=True, data=f"SciFact corpus: {len(pairs)} title/inverse-cloze pairs")
    res = {"out": str(out), "pairs": len(pairs), "steps": result.steps, "total_steps": result.total_steps,
           "finished": result.finished, "seconds": round(result.seconds, 1),
           "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
           "first_loss": result.losses[0] if result.losses else None,
           "last_loss": result.losses[-1] if result.losses else None}
    print(json.dumps(res, indent=2))
    if result.finished:
        R.log("train-maxsim: done; next, the MUVERA re-run: "
              f"python benchmarks/multivector.py --multivector-model {out}")
    else:
        R.log(f"train-maxsim: stopped at step {result.steps}/{result.total_steps}; run again to resume")
    return res


def publish_grid(res: dict[str, Any], env: dict[str, Any], write: bool) -> None:
    headers = ["model", "layers", *[f"dims {d}" for d in DIMS]]
    rows = [[name, n, *[f"{grid_[(n, d)]:.3f}" for d in DIMS]] for name, grid_ in res["models"].items() for n in LAYERS]
    R.print_table("nDCG@10 on SciFact test, layers x dims", headers, rows)
    base, sb, mse = res["models"].get("base"), res["models"].get("starbucks"), res["models"].get("2dmse")
    sizes = [(n, d) for n, d in LADDER if (n, d) in (base or {}) and (n, d) != (6, 384)]
    checks = []
    if base and sb:
        gain = {sz: sb[sz] - base[sz] for sz in sizes}
        checks.append(f"Starbucks − base at the ladder sizes in the grid {sizes}: "
                      + ", ".join(f"{sz}: {100 * g:+.1f}" for sz, g in gain.items())
                      + f" points — {R.verdict(all(g >= 0.05 for g in gain.values()))} (target ≥ +5)")
        checks.append(f"full size after Starbucks tuning {sb[(6, 384)]:.3f} vs base {base[(6, 384)]:.3f} — "
                      f"{R.verdict(sb[(6, 384)] >= base[(6, 384)])}")
    if sb and mse:
        checks.append("Starbucks ≥ 2DMSE at every ladder size in the grid: "
                      + R.verdict(all(sb[sz] >= mse[sz] for sz in sizes + [(6, 384)])))
    train_rows = [[loss, f"{t['seconds'] / 60:.1f}", "-" if t.get("peak_rss_gib") is None else f"{t['peak_rss_gib']:.1f}",
                   "yes" if t["finished"] else "no (resume next run)"] for loss, t in res["train"].items()]
    _publish(GRID_NAME, [
        "## Fine-tuning grid: nDCG@10 on SciFact by layers × dims (issue 21)",
        f"Base all-MiniLM-L6-v2 and the same model tuned by each loss on {res['n_pairs']:,} unsupervised "
        f"SciFact pairs (title → body, inverse cloze), {res['steps']} steps of {res['batch']} pairs each; "
        f"{res['n_docs']:,} documents, {res['n_queries']} test queries, exact search.",
        R.md_table(headers, rows),
        "\n".join(f"- {c}" for c in checks),
        R.md_table(["loss", "training minutes", "peak RSS of the run (GiB)", "finished"], train_rows),
    ], env, write)
    if write:
        _heatmap(res)


def _heatmap(res: dict[str, Any]) -> None:
    plt = R.pyplot()
    names = list(res["models"])
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        m = [[res["models"][name][(n, d)] for d in DIMS] for n in LAYERS]
        im = ax.imshow(m, vmin=0, vmax=0.75, cmap="viridis", origin="lower")
        ax.set_xticks(range(len(DIMS)), [str(d) for d in DIMS])
        ax.set_yticks(range(len(LAYERS)), [str(n) for n in LAYERS])
        ax.set_title(name)
        ax.set_xlabel("dims")
        for i in range(len(LAYERS)):
            for j in range(len(DIMS)):
                ax.text(j, i, f"{m[i][j]:.2f}", ha="center", va="center", fontsize=7, color="w")
    axes[0][0].set_ylabel("layers")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="nDCG@10")
    R.save_figure(fig, R.IMG_DIR / "train_grid.png", dpi=110, rect=(0, 0, 0.92, 1))


# --------------------------------------------------------------------------- section 3: merging two tuned models
def _stdlib_split(text: str, name: str) -> tuple[str, str]:
    """A harvested text ``"name(signature): docstring"`` (``"module name: docstring"``) as (head, docstring)."""
    end = len(f"module {name}") if text.startswith("module ") else len(name)
    if text[end:end + 1] == "(":  # the signature runs to its matching bracket (annotations hold ": ")
        depth = 0
        for i in range(end, len(text)):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            if depth == 0:
                end = i + 1
                break
        else:  # cut off inside the signature: no docstring left
            return text, ""
    return text[:end], text[end:].removeprefix(":").strip()


def _stdlib_task(quick: bool) -> tuple[list[Any], tuple[list[str], list[str]], tuple[list[str], list[str]],
                                       dict[str, dict[str, int]]]:
    """The standard library's docstrings (the demo's harvest) split by package, a quarter of the packages
    (by a hash of the name) held out: (training documents, (test doc ids, texts), (query ids, texts), qrels).

    Training documents: the other packages' objects, title = name and signature, body = docstring. The
    retrieval set: every held-out object is a document (its name and signature, then its docstring); for
    a docstring of two sentences or more whose first is 20 characters or longer, that first sentence is a
    query whose one relevant document is its object, the sentence removed from the document.
    """
    import zlib

    from vecbox.demo.stdlib_docs import harvest_stdlib_docs
    from vecbox.train.pairs import Doc, sentences

    train_docs, doc_ids, doc_texts, q_ids, q_texts = [], [], [], [], []
    for t in harvest_stdlib_docs(max_texts=1200 if quick else None):
        head, doc = _stdlib_split(t.text, t.metadata["name"])
        if zlib.crc32(t.metadata["package"].encode()) % 4:
            train_docs.append(Doc(t.id, head, doc))
            continue
        sents = sentences(doc)
        if len(sents) >= 2 and len(sents[0]) >= 20:
            q_ids.append(f"q:{t.id}")
            q_texts.append(sents[0])
            doc = " ".join(sents[1:])
        doc_ids.append(t.id)
        doc_texts.append(f"{head}: {doc}" if doc else head)
    return train_docs, (doc_ids, doc_texts), (q_ids, q_texts), {q: {q[2:]: 1} for q in q_ids}


def train_merge(quick: bool, args: Any) -> dict[str, Any] | None:
    """Merge a SciFact-tuned and a stdlib-tuned MiniLM by each method; nDCG@10 of parents and merges on both tasks.

    Both parents are MNRL-tuned from MiniLM with the grid's budget on unsupervised pairs of their corpus
    (the SciFact one is the grid's ``mnrl`` model, shared with it). Self Positioning learns its two
    coefficients on 64 probe pairs, half from each training set (never the test sets).
    """
    import numpy as np

    from vecbox.train.card import CARD_FILE
    from vecbox.train.merge import merge_models
    from vecbox.train.pairs import make_pairs

    data, doc_ids, doc_texts, q_ids, q_texts, qrels = _grid_data(quick)
    sci_pairs = _grid_pairs(quick, args, data, doc_ids)
    std_docs, std_corpus, std_queries, std_qrels = _stdlib_task(quick)
    std_pairs = make_pairs(std_docs, kinds=("title", "ict"), seed=0,
                           max_pairs=R.opt(args, "train_grid_pairs", 64 if quick else 5000))
    root = _grid_root(quick)
    parents = {"SciFact-tuned": root / "mnrl", "stdlib-tuned": root / "stdlib-mnrl"}
    steps, batch = _budget(quick, args)
    res: dict[str, Any] = {"steps": steps, "batch": batch,
                           "pairs": {"SciFact-tuned": len(sci_pairs), "stdlib-tuned": len(std_pairs)},
                           "stdlib": {"train_objects": len(std_docs), "docs": len(std_corpus[0]),
                                      "queries": len(std_queries[0])},
                           "scifact": {"docs": len(doc_ids), "queries": len(q_ids)},
                           "train": {}, "merge": {}, "models": {}}
    res["train"]["SciFact-tuned"] = _train_or_reuse(
        "mnrl", sci_pairs, parents["SciFact-tuned"], quick, args,
        f"SciFact corpus: {len(sci_pairs)} title/inverse-cloze pairs")
    res["train"]["stdlib-tuned"] = _train_or_reuse(
        "mnrl", std_pairs, parents["stdlib-tuned"], quick, args,
        f"Python standard library docstrings, 3/4 of its packages ({len(std_docs)} objects): "
        f"{len(std_pairs)} name-and-signature/docstring and inverse-cloze pairs")
    if not all(t["finished"] for t in res["train"].values()):
        R.log("train-merge: a parent is not trained yet; run again to resume")
        return None
    rng = np.random.default_rng(0)
    probe = [ps[i] for ps in (sci_pairs, std_pairs) for i in rng.choice(len(ps), size=min(32, len(ps)), replace=False)]
    models: dict[str, Any] = {"base MiniLM": "default", **{k: str(v) for k, v in parents.items()}}
    for method in ("linear", "slerp", "task_arithmetic", "ties", "self_positioning"):
        out = root / f"merge-{method}"
        if not (out / CARD_FILE).is_file():  # the card is written last: a merge cut short is done again
            t0 = time.perf_counter()
            merge_models(list(parents.values()), out, method=method,
                         base="default" if method not in ("linear", "slerp") else None,
                         probe=probe if method == "self_positioning" else None)
            res["merge"][method] = {"seconds": time.perf_counter() - t0}
        card = json.loads((out / CARD_FILE).read_text())
        res["merge"].setdefault(method, {})["learned"] = (card.get("Merge") or {}).get("learned")
        models[f"merged: {method}"] = str(out)
    cache = None if quick else R.cache_dir()
    for name, model in models.items():
        sci = _ndcg_grid(model, (doc_ids, doc_texts), (q_ids, q_texts), qrels, cache, (6,), (384,))[(6, 384)]
        std = _ndcg_grid(model, std_corpus, std_queries, std_qrels, cache, (6,), (384,))[(6, 384)]
        res["models"][name] = {"scifact": sci, "stdlib": std}
        R.log(f"train-merge: {name}: SciFact {sci:.4f}, stdlib {std:.4f}")
    return res


def publish_merge(res: dict[str, Any], env: dict[str, Any], write: bool) -> None:
    m = res["models"]
    best = {task: max(m[p][task] for p in ("SciFact-tuned", "stdlib-tuned")) for task in ("scifact", "stdlib")}

    def ok(name: str) -> bool:  # within 1 nDCG@10 point of the better parent on both tasks
        return all(m[name][task] >= best[task] - 0.01 for task in best)

    rows = []
    for name, r in m.items():
        learned = (res["merge"].get(name.removeprefix("merged: ")) or {}).get("learned")
        note = f"learned weights {', '.join(f'{w:.3f}' for w in learned['weights'])}" if learned else ""
        rows.append([name, f"{r['scifact']:.4f}", f"{r['stdlib']:.4f}",
                     R.verdict(ok(name)) if name.startswith("merged") else "", note])
    headers = ["model", "SciFact nDCG@10", "stdlib nDCG@10", "within 1 point of the better parent on both", "note"]
    R.print_table("Merging a SciFact-tuned and a stdlib-tuned MiniLM", headers, rows)
    merged = [n for n in m if n.startswith("merged")]
    sp = "merged: self_positioning"
    train_rows = [[name, f"{t['seconds'] / 60:.1f}", "-" if t.get("peak_rss_gib") is None else f"{t['peak_rss_gib']:.1f}",
                   res["pairs"][name]] for name, t in res["train"].items()]
    st = res["stdlib"]
    _publish(MERGE_NAME, [
        "## Model merging: a SciFact-tuned ⊕ a stdlib-tuned MiniLM (issue 21)",
        f"Two parents MNRL-tuned from all-MiniLM-L6-v2 with the grid's budget ({res['steps']} steps of "
        f"{res['batch']} pairs) on unsupervised pairs of their own corpus: SciFact (title → body, inverse cloze) "
        f"and the demo's standard-library docstrings of three quarters of the packages (name and signature → "
        f"docstring, inverse cloze; {st['train_objects']:,} objects). Merged by each method of "
        f"`vecbox.train.merge` at its defaults (linear and SLERP halfway; task arithmetic and TIES from the base, "
        f"weights 1, TIES density 0.2; Self Positioning learns the task-arithmetic weights on 64 probe pairs, "
        f"32 from each training set). Scored by exact search at full size on SciFact test "
        f"({res['scifact']['docs']:,} documents, {res['scifact']['queries']} queries) and a stdlib retrieval "
        f"set from the held-out quarter of the packages ({st['docs']:,} objects as documents; {st['queries']:,} "
        f"queries, each a docstring's first sentence, relevant: its object, the sentence removed from it).",
        R.md_table(headers, rows, "lrrll"),
        f"- **Target** merged within 1 point of the better parent on each task (SciFact {best['scifact']:.4f}, "
        f"stdlib {best['stdlib']:.4f}): Self Positioning (the paper's method, weights learned on probe pairs, "
        f"not on the test sets) — {R.verdict(ok(sp)) if sp in m else 'not run'}; methods that meet it: "
        f"{', '.join(n.removeprefix('merged: ') for n in merged if ok(n)) or 'none'}",
        R.md_table(["parent", "training minutes", "peak RSS of the run (GiB)", "pairs"], train_rows),
    ], env, write)


# --------------------------------------------------------------------------- section 4: one run with the CLI's defaults
def default_run(quick: bool) -> dict[str, Any]:
    """``vecbox train pairs <SciFact> --loss starbucks`` with every other option at its default, in a child
    process: wall time, steps, peak RSS. A run cut short resumes from its checkpoint when this step runs
    again; every call is kept in ``bench-calls.json`` next to the model, so the time reported is their sum
    and the report says the run was resumed."""
    import resource
    import subprocess

    out = _grid_root(quick) / "starbucks-cli"
    ledger = out / "bench-calls.json"
    calls = json.loads(ledger.read_text()) if ledger.is_file() else []
    if not (calls and calls[-1]["finished"]):
        cmd = [sys.executable, "-m", "vecbox.cli", "train", "pairs", str(R.SCIFACT), "--loss", "starbucks",
               "--out", str(out), "--json"]
        if quick:
            cmd += ["--max-pairs", "64", "--max-steps", "4"]
        R.log("train-default: " + " ".join(cmd[2:]))
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode:
            raise RuntimeError(f"vecbox train pairs failed ({done.returncode}): {done.stderr[-2000:]}")
        summary = json.loads(done.stdout)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        calls.append({"wall_seconds": wall, "train_seconds": summary["seconds"], "steps": summary["steps"],
                      "total_steps": summary["total_steps"], "pairs": summary["pairs"], "data": summary["data"],
                      "resumed_from": summary.get("resumed_from"), "finished": summary["finished"],
                      "peak_rss_gib": peak / 2**20 if peak > before else None, "measured": time.strftime(
                          "%Y-%m-%d %H:%M UTC", time.gmtime())})
        out.mkdir(parents=True, exist_ok=True)
        ledger.write_text(json.dumps(calls, indent=2))
    return {"command": "vecbox train pairs ../shared/data/scifact --loss starbucks --out DIR"
                       + (" --max-pairs 64 --max-steps 4" if quick else ""), "calls": calls}


def publish_default(res: dict[str, Any], env: dict[str, Any], write: bool) -> None:
    calls = res["calls"]
    last = calls[-1]
    wall = sum(c["wall_seconds"] for c in calls)
    peaks = [c["peak_rss_gib"] for c in calls if c["peak_rss_gib"] is not None]
    rows = [[c["measured"], c["resumed_from"] or 0, c["steps"], f"{c['train_seconds'] / 60:.1f}",
             f"{c['wall_seconds'] / 60:.1f}", "-" if c["peak_rss_gib"] is None else f"{c['peak_rss_gib']:.1f}"]
            for c in calls]
    headers = ["measured", "from step", "to step", "training minutes", "wall minutes (process start to exit)",
               "peak RSS (GiB)"]
    R.print_table("One Starbucks run with the CLI's defaults", headers, rows)
    _publish(DEFAULT_NAME, [
        "## One Starbucks run with the defaults (issue 21)",
        f"`{res['command']}`: every other option at its default (1 epoch, batch 32, 128 word pieces, "
        f"learning rate 2e-5, the ladder (1,32), (2,64), (3,128), (4,256), (5,384), (6,384) with the KL term to "
        f"the full model) on {last['data']} — {last['total_steps']} steps. The wall time runs from the "
        "process's start (Python, torch and the model loading) to its exit, on both cores.",
        R.md_table(headers, rows),
        f"- **Target** one Starbucks run on the SciFact pairs ≤ 45 min with the defaults: "
        f"{wall / 60:.1f} min{' over ' + str(len(calls)) + ' calls (resumed)' if len(calls) > 1 else ''} — "
        f"{R.verdict(last['finished'] and wall <= 45 * 60) if last['finished'] else 'not finished yet'}"
        + (f"; peak RSS {max(peaks):.1f} GiB" if peaks else ""),
    ], env, write)


def _measured(args: Any, step: Any, publish_fn: Any, write: bool) -> None:
    """Run ``step()``, then publish its result with the environment and the others' CPU share meanwhile
    (nothing when the step returns no result to publish yet)."""
    started, monitor = time.time(), R.CpuMonitor()
    res = step()
    if res:
        env = R.environment(getattr(args, "command", None), started)
        env["others_cpu"] = monitor.others_share()
        publish_fn(res, env, write=write)


def main(args: Any) -> None:
    quick = bool(getattr(args, "quick", False))
    if not (R.SCIFACT / "corpus.jsonl").is_file():
        print(f"train: SciFact not found at {R.SCIFACT}; skipped", file=sys.stderr)
        return
    write = bool(getattr(args, "write", not quick))
    if getattr(args, "train_maxsim", False):  # its own step: trains a model, measures nothing here
        train_maxsim(quick, args)
    elif getattr(args, "train_default", False):  # its own step, its own section
        _measured(args, lambda: default_run(quick), publish_default, write)
    elif getattr(args, "train_merge", False):  # its own step, its own section
        _measured(args, lambda: train_merge(quick, args), publish_merge, write)
    else:
        _measured(args, lambda: elastic(quick, R.opt(args, "train_docs", 64 if quick else 512),
                                        R.opt(args, "train_repeats", 1 if quick else 3)), publish, write)
        if getattr(args, "train_grid", False):
            _measured(args, lambda: grid(quick, args), publish_grid, write)


if __name__ == "__main__":
    R.run_standalone(__doc__, "benchmarks/train.py", add_arguments, main)
