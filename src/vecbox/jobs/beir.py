"""Retrieval evaluation on a BEIR-format data set: encode, store, search, score."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vecbox.collection import Collection
from vecbox.encoders.cache import default_cache_dir
from vecbox.encoders.text import TextEncoder
from vecbox.evaluation import evaluate, load_beir


@dataclass
class BeirReport:
    """Scores of one BEIR evaluation, with what it took."""

    dataset: str
    split: str
    model: str
    n_docs: int
    n_queries: int
    metrics: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("dataset", "split", "model", "n_docs", "n_queries", "metrics", "timings")}


def evaluate_beir(
    dataset_dir: str | Path,
    *,
    split: str = "test",
    model: str = "default",
    ks: tuple[int, ...] = (1, 3, 5, 10, 100),
    cache_dir: str | Path | None = None,
    collection_path: str | Path | None = None,
    show_progress: bool = False,
) -> BeirReport:
    """Ingest a BEIR corpus into a collection, run every query with exact search, and score the run.

    Corpus embeddings are cached on disk (keyed by model and text hash), so a
    second evaluation with the same model only encodes the queries.

    Examples
    --------
    A two-document data set in the BEIR layout (on SciFact's test split the default
    model scores ndcg@10 0.645):

    >>> import json, pathlib
    >>> root = pathlib.Path(tmp) / "tiny"
    >>> (root / "qrels").mkdir(parents=True)
    >>> docs = {"d1": "Read a CSV file with the csv module.", "d2": "Compute a SHA-256 digest with hashlib."}
    >>> _ = (root / "corpus.jsonl").write_text(
    ...     "".join(json.dumps({"_id": i, "title": "", "text": t}) + "\\n" for i, t in docs.items()))
    >>> _ = (root / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "hash a string"}) + "\\n")
    >>> _ = (root / "qrels" / "test.tsv").write_text("query-id\\tcorpus-id\\tscore\\nq1\\td2\\t1\\n")
    >>> report = evaluate_beir(root, ks=(1, 2), cache_dir=tmp)
    >>> report.n_docs, report.n_queries, report.metrics["ndcg@1"]
    (2, 1, 1.0)
    """
    data = load_beir(dataset_dir, split=split)
    encoder = TextEncoder(model, cache_dir=cache_dir if cache_dir is not None else default_cache_dir())
    doc_ids, doc_texts = data.doc_texts()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    x = encoder.encode(doc_texts, kind="document", show_progress=show_progress)
    timings["encode_corpus_s"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="vecbox-beir-") as tmp:
        path = Path(collection_path) if collection_path is not None else Path(tmp) / "corpus"
        col = Collection.create(path, dim=encoder.dim, metric="cosine", model=model, exist_ok=True)
        t0 = time.perf_counter()
        if col.count() == 0:
            col.add(doc_ids, x)
        timings["ingest_s"] = time.perf_counter() - t0
        query_ids = list(data.queries)
        t0 = time.perf_counter()
        q = encoder.encode([data.queries[i] for i in query_ids], kind="query")
        timings["encode_queries_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        hits = col.search_batch(q, k=max(ks), include_metadata=False)
        timings["search_s"] = time.perf_counter() - t0
        col.close()
    run = {qid: {h.id: h.score for h in hs} for qid, hs in zip(query_ids, hits)}
    metrics = evaluate(run, data.qrels, ks=ks)
    return BeirReport(data.name, split, encoder.name, len(doc_ids), len(query_ids), metrics, timings)


__all__ = ["BeirReport", "default_cache_dir", "evaluate_beir"]
