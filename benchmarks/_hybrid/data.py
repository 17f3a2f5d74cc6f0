"""The hybrid benchmark's data: SciFact (BEIR, test split) and LIMIT-small, with MiniLM vectors and analyzer terms.

Each set is a :class:`Corpus`: document and query ids and texts (a document's text is
``title + " " + text``, :meth:`vecbox.evaluation.beir.BeirDataset.doc_texts`), graded qrels,
the bundled all-MiniLM-L6-v2 vectors (from vecbox's embedding cache after the first run) and
each text's terms from :class:`vecbox.lexical.Analyzer` (the collection's default analysis),
which every lexical engine of the comparison is fed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import _report as R
import numpy as np

LIMIT_SMALL = R.DATA / "limit-small"
QUICK_SCIFACT = (500, 30)  # documents, queries
QUICK_LIMIT_QUERIES = 100


@dataclass
class Corpus:
    """One retrieval set, ready for every engine."""

    name: str
    doc_ids: list[str]
    docs: list[str]
    q_ids: list[str]
    queries: list[str]
    qrels: dict[str, dict[str, int]]
    doc_vecs: np.ndarray = field(repr=False)
    q_vecs: np.ndarray = field(repr=False)
    doc_terms: list[list[str]] = field(repr=False)
    q_terms: list[list[str]] = field(repr=False)
    analyse_s: float = 0.0  # seconds the analyzer took over the documents
    note: str = ""

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)

    @property
    def n_queries(self) -> int:
        return len(self.q_ids)


def _subset(doc_ids: list[str], docs: list[str], q_ids: list[str], qrels: dict[str, dict[str, int]],
            n_docs: int, n_queries: int) -> tuple[list[int], list[int]]:
    """Indices of the first ``n_queries`` judged queries and of ``n_docs`` documents holding all their relevant ones.

    The relevant documents come first (so the small run's nDCG means something), then the corpus in file order.
    """
    qi = list(range(min(n_queries, len(q_ids))))
    relevant = {d for i in qi for d, g in qrels.get(q_ids[i], {}).items() if g > 0}
    where = {d: j for j, d in enumerate(doc_ids)}
    chosen = sorted(where[d] for d in relevant if d in where)
    taken = set(chosen)
    for j in range(len(doc_ids)):
        if len(chosen) >= n_docs:
            break
        if j not in taken:
            chosen.append(j)
    return sorted(chosen), qi


def _corpus(name: str, root: Path, limit: tuple[int, int] | None, note: str = "") -> Corpus:
    """Load a BEIR-format folder, optionally cut down to ``limit = (documents, queries)``, encode and analyse it."""
    from vecbox.evaluation import load_beir
    from vecbox.lexical import Analyzer

    data = load_beir(root, split="test")
    doc_ids, docs = data.doc_texts()
    q_ids, queries = data.query_texts()
    if limit is not None:
        dj, qi = _subset(doc_ids, docs, q_ids, data.qrels, *limit)
        doc_ids, docs = [doc_ids[j] for j in dj], [docs[j] for j in dj]
        q_ids, queries = [q_ids[i] for i in qi], [queries[i] for i in qi]
    qrels = {q: data.qrels[q] for q in q_ids}
    enc = R.text_encoder()
    R.log(f"hybrid: {name}: encoding {len(docs):,} documents and {len(queries):,} queries (cached after the first run)")
    doc_vecs = np.ascontiguousarray(enc.encode(docs, kind="document"), dtype=np.float32)
    q_vecs = np.ascontiguousarray(enc.encode(queries, kind="query"), dtype=np.float32)
    an = Analyzer()
    t0 = time.perf_counter()
    doc_terms = [an.terms(d) for d in docs]
    analyse_s = time.perf_counter() - t0
    q_terms = [an.terms(q) for q in queries]
    return Corpus(name, doc_ids, docs, q_ids, queries, qrels, doc_vecs, q_vecs, doc_terms, q_terms, analyse_s, note)


def scifact(quick: bool) -> Corpus | None:
    """SciFact test (5,183 documents, 300 queries); quick: 500 documents, 30 queries. None when absent."""
    if not (R.SCIFACT / "corpus.jsonl").is_file():
        return None
    limit = QUICK_SCIFACT if quick else None
    note = (f"quick run: the first {QUICK_SCIFACT[1]} queries, {QUICK_SCIFACT[0]} documents including all their "
            "relevant ones" if quick else "")
    return _corpus("SciFact", R.SCIFACT, limit, note)


def limit_small(quick: bool) -> Corpus | None:
    """LIMIT-small (46 documents, 1,000 queries, 2 relevant each); quick: 100 queries. None when absent."""
    if not (LIMIT_SMALL / "corpus.jsonl").is_file():
        return None
    limit = (10**9, QUICK_LIMIT_QUERIES) if quick else None
    note = f"quick run: first {QUICK_LIMIT_QUERIES} queries" if quick else ""
    return _corpus("LIMIT-small", LIMIT_SMALL, limit, note)


def run_dict(q_ids: list[str], hits: list[list[tuple[str, float]]]) -> dict[str, dict[str, float]]:
    """``{query id: {doc id: score}}`` from each query's ranked ``(doc id, score)`` list.

    Scores are replaced by a strictly decreasing rank score, so the metrics see the engine's own
    order (its ties broken its way) rather than trec_eval's tie-break on equal scores.
    """
    return {q: {d: float(len(h) - r) for r, (d, _) in enumerate(h)} for q, h in zip(q_ids, hits)}


def quality(c: Corpus, hits: list[list[tuple[str, float]]], ks: tuple[int, ...]) -> dict[str, float]:
    """nDCG@k and recall@k (trec_eval definitions, BEIR's) of ranked hits, averaged over the judged queries."""
    from vecbox.evaluation import evaluate

    m = evaluate(run_dict(c.q_ids, hits), c.qrels, ks)
    return {k: v for k, v in m.items() if k.startswith(("ndcg", "recall"))}


__all__ = ["Corpus", "limit_small", "quality", "run_dict", "scifact"]
