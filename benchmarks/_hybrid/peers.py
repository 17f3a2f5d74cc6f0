"""Peers of vecbox's hybrid search, measured in the same run: LanceDB (hybrid and FTS alone).

LanceDB gets the same MiniLM vectors and the same document texts as vecbox, and analyses the
texts itself with its native full-text index (``create_fts_index(use_tantivy=False)``: simple
tokenizer, English Snowball stemming, English stop words, lower-casing, ASCII folding - the
closest of its options to vecbox's analyzer). Its vector search is a flat (exact) cosine scan:
no vector index, which is exact and fast enough at SciFact's 5k documents. Hybrid search is
``query_type="hybrid"`` with ``RRFReranker()`` (k 60) over its own ``limit`` hits per side.
(bm25s, the other peer, is an engine of :mod:`.engines`.)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import _report as R
import numpy as np

from .data import Corpus
from .engines import Hits

ADD_CHUNK = 2048
os.environ.setdefault("LANCEDB_LOG", "error")  # read when lancedb is first imported: no warning on every query


def lance_missing() -> str | None:
    """Why LanceDB cannot run here, or None."""
    try:
        import lancedb  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as e:
        return f"LanceDB not installed ({e.name})"
    return None


class Lance:
    """A LanceDB table ``docs(id, text, vector)`` with a native FTS index on ``text``."""

    name = "LanceDB"
    fts_note = ("native FTS (`use_tantivy=False`): `base_tokenizer='simple'`, `language='English'`, `stem=True`, "
                "`remove_stop_words=True`, `lower_case=True`, `ascii_folding=True`, no positions")
    vector_note = "no vector index: flat (exact) cosine scan"

    def __init__(self, tmp: Path, c: Corpus) -> None:
        self.tmp, self.c = tmp, c
        self.build_s: dict[str, float] = {}

    def build(self) -> None:
        import lancedb
        import pyarrow as pa

        c = self.c
        d = c.doc_vecs.shape[1]
        schema = pa.schema([("id", pa.int64()), ("text", pa.string()), ("vector", pa.list_(pa.float32(), d))])

        def batches() -> Any:
            for s in range(0, c.n_docs, ADD_CHUNK):
                e = min(s + ADD_CHUNK, c.n_docs)
                yield pa.record_batch([pa.array(np.arange(s, e, dtype=np.int64)), pa.array(c.docs[s:e]),
                                       pa.FixedSizeListArray.from_arrays(pa.array(c.doc_vecs[s:e].reshape(-1)), d)],
                                      schema=schema)

        self.path = self.tmp / f"lance-{c.name}"
        db = lancedb.connect(str(self.path))
        t0 = time.perf_counter()
        self.table = db.create_table("docs", batches(), schema=schema)
        self.build_s["table"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.table.create_fts_index("text", use_tantivy=False, base_tokenizer="simple", language="English",
                                    stem=True, remove_stop_words=True, lower_case=True, ascii_folding=True,
                                    with_position=False)
        self.build_s["fts"] = time.perf_counter() - t0

    def _hits(self, t: Any) -> Hits:
        ids = self.c.doc_ids
        score = "_relevance_score" if "_relevance_score" in t.column_names else "_score"
        return [(ids[int(j)], float(s)) for j, s in zip(t["id"].to_pylist(), t[score].to_pylist())]

    def hybrid(self, i: int, k: int, vec: np.ndarray | None = None) -> Hits:
        """LanceDB hybrid: top ``k`` vector hits and top ``k`` FTS hits, fused by RRF (k 60), best ``k``."""
        from lancedb.rerankers import RRFReranker

        v = self.c.q_vecs[i] if vec is None else vec
        q = (self.table.search(query_type="hybrid").vector(v).text(self.c.queries[i]).distance_type("cosine")
             .rerank(RRFReranker()).select(["id"]).limit(k))
        return self._hits(q.to_arrow())

    def fts(self, i: int, k: int) -> Hits:
        t = self.table.search(self.c.queries[i], query_type="fts").select(["id"]).limit(k).to_arrow()
        return self._hits(t)

    def dense(self, i: int, k: int) -> Hits:
        t = (self.table.search(self.c.q_vecs[i]).distance_type("cosine").select(["id", "_distance"]).limit(k)
             .to_arrow())
        ids = self.c.doc_ids
        return [(ids[int(j)], 1.0 - float(s)) for j, s in zip(t["id"].to_pylist(), t["_distance"].to_pylist())]

    def disk_bytes(self) -> int:
        return R.dir_bytes(self.path)


__all__ = ["Lance", "lance_missing"]
