"""Making better embeddings (issue 21): elastic inference first.

Section 1 (``train-elastic``): encoding throughput of the bundled all-MiniLM-L6-v2 at elastic depth
``TextEncoder(layers=n)`` for n = 1, 2, 3, 6, on SciFact abstracts (documents, up to 256 word
pieces) and SciFact queries (short), against plain sentence-transformers ``encode`` of the full
model in the same run (the peer). ``dims`` does not change the encoding time (a slice of the
output), so it is not timed. Target: ``layers=3`` encodes >= 1.7x faster than 6 layers.

The training grid (nDCG@10 on SciFact for layers x dims, per loss) is a later section; it is not
measured yet.

Run: ``python benchmarks/run_all.py --only train`` (``--quick``: 64 documents, prints only).
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
LAYERS = (1, 2, 3, 6)


def add_arguments(parser: Any) -> None:
    R.add_options(parser, "train", {
        "docs": (int, "SciFact abstracts encoded per setting (default 512; --quick 64)"),
        "repeats": (int, "timed repeats per setting, best kept (default 3; --quick 1)"),
    })


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
    """Texts per second at each depth, vecbox and the peer (plain sentence-transformers, full model)."""
    from vecbox.encoders.text import TextEncoder

    docs, queries = _scifact(n_docs)
    queries = queries[: 64 if quick else 300]
    full = TextEncoder()
    st = full.model
    out: dict[str, Any] = {"n_docs": len(docs), "n_queries": len(queries), "rows": []}
    for kind, texts in (("documents", docs), ("queries", queries)):
        st.encode(texts[:32], batch_size=64)  # warm-up
        R.quiet_gc()
        peer_s = R.best_of(lambda: st.encode(texts, batch_size=64, normalize_embeddings=True), repeats)[0]
        for n in LAYERS:
            enc = TextEncoder(layers=n)
            enc._model = st  # the same loaded weights; the view runs the first n layers
            enc.encode(texts[:32])
            R.quiet_gc()
            s = R.best_of(lambda: enc.encode(texts), repeats)[0]
            out["rows"].append({"kind": kind, "layers": n, "s": s, "rate": len(texts) / s, "peer_s": peer_s})
            R.log(f"train: {kind} layers={n}: {len(texts) / s:,.1f} texts/s (peer, 6 layers: {len(texts) / peer_s:,.1f})")
    return out


def publish(res: dict[str, Any], env: dict[str, Any], write: bool) -> None:
    headers = ["texts", "layers", "texts/s", "speed-up vs 6 layers", "vs sentence-transformers (6 layers)"]
    rows = []
    six = {r["kind"]: r["s"] for r in res["rows"] if r["layers"] == 6}
    for r in res["rows"]:
        rows.append([r["kind"], r["layers"], R.fmt_rate(r["rate"]), R.fmt_ratio(six[r["kind"]] / r["s"]),
                     R.fmt_ratio(r["peer_s"] / r["s"])])
    R.print_table("Elastic depth: encoding throughput of all-MiniLM-L6-v2", headers, rows)
    speed3 = {k: six[k] / next(r["s"] for r in res["rows"] if r["kind"] == k and r["layers"] == 3) for k in six}
    ok = speed3["documents"] >= 1.7
    warn = R.busy_warning(env)
    body = "\n\n".join(x for x in [
        "## Elastic inference: encoding throughput vs depth (issue 21)",
        f"`TextEncoder(layers=n)` runs only the first n of MiniLM's 6 transformer layers (a view of the "
        f"model sharing its weights), then pools and normalises. {res['n_docs']} SciFact abstracts (title + "
        f"text, truncated at 256 word pieces) and {res['n_queries']} SciFact queries, batch 64, length-sorted; "
        f"best of the repeats after a warm-up. The peer is plain sentence-transformers `encode` of the full "
        f"model on the same texts in the same run (ratio > 1: vecbox faster).",
        R.md_table(headers, rows),
        f"**Target** `layers=3` ≥ 1.7× faster than 6 layers on documents: {speed3['documents']:.2f}× — "
        f"{R.verdict(ok)} (queries: {speed3['queries']:.2f}×; short texts spend a larger share of their time "
        f"outside the layers: tokenising, embeddings, pooling). What the early exit costs in retrieval quality "
        f"(and what Starbucks/2DMSE training wins back) is the training grid's job, not measured yet.",
        warn or "",
        R.environment_markdown(env),
    ] if x)
    print(body if not write else "")
    if write:
        R.write_section(NAME, body)
        R.log(f"train: wrote section {NAME} of {R.DOCS_PATH}")


def main(args: Any) -> None:
    quick = bool(getattr(args, "quick", False))
    if not (R.SCIFACT / "corpus.jsonl").is_file():
        print(f"train: SciFact not found at {R.SCIFACT}; skipped", file=sys.stderr)
        return
    started, monitor = time.time(), R.CpuMonitor()
    res = elastic(quick, R.opt(args, "train_docs", 64 if quick else 512), R.opt(args, "train_repeats", 1 if quick else 3))
    env = R.environment(getattr(args, "command", None), started)
    env["others_cpu"] = monitor.others_share()
    publish(res, env, write=bool(getattr(args, "write", not quick)))


if __name__ == "__main__":
    R.run_standalone(__doc__, "benchmarks/train.py", add_arguments, main)
