"""Retrieval evaluation on a BEIR-format data set: encode, store, search, score."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vecbox.collection import Collection
from vecbox.errors import InvalidInputError
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
    mode: str = "dense"
    fusion: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("dataset", "split", "model", "mode", "fusion", "n_docs", "n_queries",
                                              "metrics", "timings")}


def evaluate_beir(
    dataset_dir: str | Path,
    *,
    split: str = "test",
    model: str = "default",
    ks: tuple[int, ...] = (1, 3, 5, 10, 100),
    cache_dir: str | Path | None = None,
    collection_path: str | Path | None = None,
    show_progress: bool = False,
    mode: str = "dense",
    fusion: Any = None,
) -> BeirReport:
    """Ingest a BEIR corpus into a collection, run every query with exact search, and score the run.

    ``mode``: ``"dense"`` (the model's embeddings), ``"lexical"`` (BM25 over the documents;
    nothing is encoded) or ``"hybrid"`` (both, fused with ``fusion``; see
    :meth:`Collection.search`).

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
    if mode not in ("dense", "lexical", "hybrid"):
        raise InvalidInputError(f"mode must be 'dense', 'lexical' or 'hybrid'; got {mode!r}")
    data = load_beir(dataset_dir, split=split)
    doc_ids, doc_texts = data.doc_texts()
    query_ids = list(data.queries)
    query_texts = [data.queries[i] for i in query_ids]
    timings: dict[str, float] = {}
    encoder = None
    if mode == "lexical":  # BM25 alone: the collection's vectors are placeholders, nothing is encoded
        x, model_name = np.ones((len(doc_ids), 1), np.float32), "none (BM25)"
    else:
        encoder = TextEncoder(model, cache_dir=cache_dir if cache_dir is not None else default_cache_dir())
        t0 = time.perf_counter()
        x = encoder.encode(doc_texts, kind="document", show_progress=show_progress)
        timings["encode_corpus_s"] = time.perf_counter() - t0
        model_name = encoder.name
    with tempfile.TemporaryDirectory(prefix="vecbox-beir-") as tmp:
        path = Path(collection_path) if collection_path is not None else Path(tmp) / "corpus"
        col = Collection.create(path, dim=x.shape[1], metric="cosine", model=model if encoder else None,
                                exist_ok=True)
        t0 = time.perf_counter()
        if col.count() == 0:
            col.add(doc_ids, x, documents=doc_texts if mode != "dense" else None)
        timings["ingest_s"] = time.perf_counter() - t0
        q = None
        if encoder is not None:
            t0 = time.perf_counter()
            q = encoder.encode(query_texts, kind="query")
            timings["encode_queries_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if mode == "dense":
            hits = col.search_batch(q, k=max(ks), include_metadata=False)
        elif mode == "lexical":
            hits = [col.search_lexical(t, k=max(ks), include_metadata=False) for t in query_texts]
        else:
            hits = [col.search(q[i], k=max(ks), text=t, fusion=fusion, candidates=max(100, max(ks)),
                               include_metadata=False) for i, t in enumerate(query_texts)]
        timings["search_s"] = time.perf_counter() - t0
        col.close()
    run = {qid: {h.id: h.score for h in hs} for qid, hs in zip(query_ids, hits)}
    metrics = evaluate(run, data.qrels, ks=ks)
    return BeirReport(data.name, split, model_name, len(doc_ids), len(query_ids), metrics, timings, mode=mode,
                      fusion=fusion if mode == "hybrid" else None)


__all__ = ["BeirReport", "default_cache_dir", "evaluate_beir"]
