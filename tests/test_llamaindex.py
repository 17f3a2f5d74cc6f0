"""The LlamaIndex adapter, checked against a vecbox Collection's own answers.

Each test fills a :class:`VecboxLlamaIndexStore` (over a local directory, and over a live
``vecbox serve`` on a free loopback port) and a plain local Collection with the same vectors,
documents and metadata; every query, filter, delete and read through LlamaIndex's types must give
what the Collection gives for the equivalent vecbox call.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import (
    Document,
    NodeRelationship,
    RelatedNodeInfo,
    TextNode,
)
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from vecbox import Collection
from vecbox.errors import FilterError, InvalidInputError
from vecbox.integrations.llamaindex import (
    VecboxLlamaIndexStore,
    metadata_filters_to_where,
)

from ._live import live_server

DIM = 8
N = 60
KEY = "li-test-key-123456"
WORDS = ["apple", "pear", "river", "stone", "cloud", "engine", "violin", "garden", "rocket", "candle"]


# ------------------------------------------------------------------ a live server
@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    pytest.importorskip("uvicorn")
    pytest.importorskip("httpx")
    from vecbox.client import Client
    from vecbox.server import create_app

    with live_server(create_app(tmp_path_factory.mktemp("served"), api_keys=[KEY])) as url, \
            Client(url, api_key=KEY, timeout=30) as c:
        yield c


# ------------------------------------------------------------------------- data
def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, DIM)).astype(np.float32)
    ids = [f"n{i}" for i in range(N)]
    docs = [f"{WORDS[i % 10]} {WORDS[(i * 3) % 10]} number {i}" for i in range(N)]
    metas = [{"year": 2000 + i % 7, "lang": "en" if i % 3 else "de", "tags": [WORDS[i % 10], WORDS[(i + 1) % 10]],
              "score": round(float(i) / 7, 3)} for i in range(N)]
    refs = [f"doc{i % 5}" for i in range(N)]
    return ids, x, docs, metas, refs


def _nodes(ids, x, docs, metas, refs) -> list[TextNode]:
    return [TextNode(id_=i, text=d, embedding=v.tolist(), metadata=dict(m),
                     relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=r)})
            for i, v, d, m, r in zip(ids, x, docs, metas, refs)]


@pytest.fixture(params=["local", "remote"])
def pair(request, tmp_path):
    """(store, reference Collection, data): the same items in both; the reference has ref_doc_id in its metadata."""
    if request.param == "local":
        store = VecboxLlamaIndexStore(tmp_path / "li")
    else:
        store = VecboxLlamaIndexStore(request.getfixturevalue("client"), collection=f"li-{uuid.uuid4().hex[:12]}")
    data = _data()
    ids, x, docs, metas, refs = data
    assert store.add(_nodes(*data)) == ids
    ref = Collection.create(tmp_path / "ref", dim=DIM)
    ref.add(ids, x, [{**m, "ref_doc_id": r} for m, r in zip(metas, refs)], docs)
    yield store, ref, data
    ref.close()
    store.close()


def _q(v, k=5, **kw) -> VectorStoreQuery:
    return VectorStoreQuery(query_embedding=np.asarray(v).tolist(), similarity_top_k=k, **kw)


def _f(*filters, condition=FilterCondition.AND) -> MetadataFilters:
    return MetadataFilters(filters=list(filters), condition=condition)


M = MetadataFilter
FILTERS = [  # LlamaIndex filters and the vecbox where a Collection is asked with
    (_f(M(key="year", value=2003)), {"year": 2003}),
    (_f(M(key="lang", value="de", operator=FilterOperator.NE)), {"lang": {"$ne": "de"}}),
    (_f(M(key="year", value=2003, operator=">"), M(key="year", value=2005, operator="<=")),
     {"year": {"$gt": 2003, "$lte": 2005}}),
    (_f(M(key="score", value=3.0, operator=">="), M(key="score", value=6.5, operator="<")),
     {"score": {"$gte": 3.0, "$lt": 6.5}}),
    (_f(M(key="year", value=[2001, 2002], operator="in")), {"year": {"$in": [2001, 2002]}}),
    (_f(M(key="year", value=[2001, 2002], operator="nin")), {"year": {"$nin": [2001, 2002]}}),
    (_f(M(key="tags", value=["violin", "rocket"], operator="any")), {"tags": {"$in": ["violin", "rocket"]}}),
    (_f(M(key="tags", value=["violin", "garden"], operator="all")), {"$and": [{"tags": "violin"}, {"tags": "garden"}]}),
    (_f(M(key="tags", value="river", operator="contains")), {"tags": "river"}),
    (_f(M(key="year", value=2001), M(key="lang", value="de"), condition=FilterCondition.OR),
     {"$or": [{"year": 2001}, {"lang": "de"}]}),
    (_f(M(key="year", value=2001), M(key="lang", value="de"), condition=FilterCondition.NOT),
     {"$and": [{"year": {"$ne": 2001}}, {"lang": {"$ne": "de"}}]}),
    (_f(M(key="lang", value="en"), _f(M(key="year", value=2000), M(key="year", value=2006),
                                      condition=FilterCondition.OR)),
     {"lang": "en", "year": {"$in": [2000, 2006]}}),
]


# ------------------------------------------------------------------------ tests
def test_dense_queries_equal_the_collections_hits_and_nodes_round_trip(pair):
    store, ref, (ids, x, docs, metas, refs) = pair
    for j in (0, 17, 42):
        q = x[j] + 0.1
        res = store.query(_q(q, k=7))
        want = ref.search(q, k=7)
        assert res.ids == [h.id for h in want]
        np.testing.assert_allclose(res.similarities, [h.score for h in want], rtol=1e-5)
        for node, h in zip(res.nodes, want):
            i = ids.index(h.id)
            assert isinstance(node, TextNode) and node.node_id == h.id
            assert node.get_content() == docs[i] and node.metadata == metas[i] and node.ref_doc_id == refs[i]
    assert store.query(_q(x[3], k=1)).similarities[0] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("case", range(len(FILTERS)))
def test_filters_equal_the_collections_where(pair, case):
    store, ref, (_ids, x, *_rest) = pair
    filters, where = FILTERS[case]
    res = store.query(_q(x[5], k=N, filters=filters))
    want = [h.id for h in ref.search(x[5], k=N, where=where)]
    assert res.ids == want and want  # every case matches something
    assert sorted(n.node_id for n in store.get_nodes(filters=filters)) == sorted(want)


def test_unsupported_filters_and_modes_say_so(pair):
    store, _, (_, x, *_rest) = pair
    for op in ("text_match", "is_empty"):
        with pytest.raises(FilterError, match=op):
            store.query(_q(x[0], filters=_f(M(key="lang", value="e", operator=op))))
    with pytest.raises(InvalidInputError, match="not supported"):
        store.query(_q(x[0], mode=VectorStoreQueryMode.SVM))
    with pytest.raises(InvalidInputError, match="query_embedding"):
        store.query(VectorStoreQuery(query_str="x", similarity_top_k=2))
    assert metadata_filters_to_where(None) is None and metadata_filters_to_where(_f()) is None


def test_doc_ids_node_ids_text_and_hybrid_modes(pair):
    store, ref, (_ids, x, *_rest) = pair
    q = x[9] + 0.2
    res = store.query(_q(q, k=10, doc_ids=["doc1", "doc3"]))
    assert res.ids == [h.id for h in ref.search(q, k=10, where={"ref_doc_id": {"$in": ["doc1", "doc3"]}})]
    among = ["n1", "n2", "n9", "n30", "n44", "missing"]
    res = store.query(_q(q, k=3, node_ids=among))
    want = [h for h in ref.search(q, k=N) if h.id in among][:3]
    assert res.ids == [h.id for h in want]
    np.testing.assert_allclose(res.similarities, [h.score for h in want], rtol=1e-5)
    res = store.query(_q(q, k=5, node_ids=among, filters=_f(M(key="lang", value="en"))))
    assert res.ids == [h.id for h in ref.search(q, k=N, where={"lang": "en"}) if h.id in among][:5]
    text = VectorStoreQuery(query_str="violin garden", similarity_top_k=6, mode=VectorStoreQueryMode.TEXT_SEARCH)
    assert store.query(text).ids == [h.id for h in ref.search_lexical("violin garden", k=6)]
    hyb = _q(q, k=6, query_str="rocket", mode=VectorStoreQueryMode.HYBRID, filters=_f(M(key="lang", value="de")))
    assert store.query(hyb).ids == [h.id for h in ref.search(q, k=6, text="rocket", where={"lang": "de"})]


def test_delete_by_ref_doc_id_nodes_and_clear(pair):
    store, ref, (_ids, x, *_rest) = pair
    store.delete("doc2")
    ref.delete(where={"ref_doc_id": "doc2"})
    assert store.query(_q(x[2], k=N)).ids == [h.id for h in ref.search(x[2], k=N)]
    assert len(store.get_nodes()) == ref.count() == N - N // 5
    store.delete_nodes(["n1", "n3", "unknown"])
    store.delete_nodes(filters=_f(M(key="year", value=2004)))
    ref.delete(["n1", "n3"])
    ref.delete(where={"year": 2004})
    assert sorted(n.node_id for n in store.get_nodes()) == sorted(ref.ids())
    assert [n.node_id for n in store.get_nodes(node_ids=["n4", "n1", "n5"])] == [i for i in ["n4", "n5"] if i in ref.ids()]
    store.clear()
    assert store.get_nodes() == [] and store.query(_q(x[0])).ids == []


def test_a_new_store_creates_its_collection_on_first_add(tmp_path):
    store = VecboxLlamaIndexStore(tmp_path / "new", metric="dot")
    assert store.client is None and store.query(_q([1.0] * DIM)).ids == [] and store.get_nodes() == []
    store.delete("nothing")
    with pytest.raises(InvalidInputError, match="no embedding"):
        store.add([TextNode(text="x", id_="x")])
    store.add([TextNode(text="x", id_="x", embedding=[1.0] * DIM)])
    assert store.client.dim == DIM and store.client.metric == "dot"
    store.close()


def test_a_collection_filled_without_llamaindex_is_queried_as_text_nodes(tmp_path):
    col = Collection.create(tmp_path / "plain", dim=3)
    col.add(["a", "b"], [[1, 0, 0], [0, 1, 0]], [{"k": 1}, None], ["alpha", "beta"])
    res = VecboxLlamaIndexStore(col).query(_q([1.0, 0.2, 0.0], k=2))
    assert res.ids == ["a", "b"]
    assert [(n.node_id, n.get_content(), n.metadata) for n in res.nodes] == [("a", "alpha", {"k": 1}),
                                                                             ("b", "beta", {})]
    col.close()


class _HashEmbedding(BaseEmbedding):
    """Deterministic offline embeddings: a seeded normal vector per text."""

    def _vec(self, text: str) -> list[float]:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        return np.random.default_rng(seed).standard_normal(DIM).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vec(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vec(text)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vec(query)


def test_vector_store_index_end_to_end(tmp_path):
    emb = _HashEmbedding(model_name="hash")
    store = VecboxLlamaIndexStore(tmp_path / "idx")
    docs = [Document(text=f"{w} is a word", id_=f"d-{w}", metadata={"w": w}) for w in WORDS]
    index = VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=store),
                                            embed_model=emb)
    assert store.client.count() == len(WORDS)
    got = index.as_retriever(similarity_top_k=3).retrieve("violin is a word")
    assert got[0].node.get_content() == "violin is a word"  # embedded with its metadata, so not exactly 1.0
    want = store.client.search(emb.get_query_embedding("violin is a word"), k=3)
    assert [n.node.node_id for n in got] == [h.id for h in want]
    np.testing.assert_allclose([n.score for n in got], [h.score for h in want], rtol=1e-6)
    index.delete_ref_doc("d-violin")
    assert store.client.count() == len(WORDS) - 1
    assert "violin" not in [n.node.metadata["w"] for n in index.as_retriever(similarity_top_k=10).retrieve("violin")]
    store.close()
