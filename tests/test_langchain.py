"""The LangChain adapter: LangChain's own standard suite, over a local directory and over ``vecbox serve``.

``VectorStoreIntegrationTests`` (from ``langchain-tests``) runs twice: on a store in a fresh
directory (the collection is created by the first add) and on a store over a live uvicorn server
on a free loopback port (a :class:`vecbox.client.Client` and a new collection name per test).
Embeddings: the suite's own ``DeterministicFakeEmbedding`` (offline, deterministic). The async
tests of the suite run under pytest-asyncio (a dependency of ``langchain-tests``): the suite classes
carry its ``asyncio`` mark, so they run in its default strict mode.

The rest checks what the suite does not: filters, scores and relevance scores against the
collection's own answers, hits equal to a local Collection's, an existing collection reopened,
``from_texts``, MMR, and the error for a missing embedding or target.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import VectorStoreIntegrationTests

from vecbox import Collection
from vecbox.errors import FilterError, InvalidInputError
from vecbox.integrations.langchain import VecboxVectorStore

from ._live import live_server

# The standard suite's async tests need pytest-asyncio's mark (its default mode is strict); its sync
# tests, marked too since the mark is per class, would each warn that they are not async.
STANDARD_SUITE_MARKS = [
    pytest.mark.asyncio,
    pytest.mark.filterwarnings("ignore:.*is marked with '@pytest.mark.asyncio' but it is not an async function"),
]

KEY = "lc-test-key-123456"
WORDS = ["apple", "pear", "river", "stone", "cloud", "engine", "violin", "garden", "rocket", "candle"]


# ------------------------------------------------------------------ a live server
@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("uvicorn")
    pytest.importorskip("httpx")
    from vecbox.server import create_app

    with live_server(create_app(tmp_path_factory.mktemp("served"), api_keys=[KEY])) as url:
        yield url


@pytest.fixture
def client(server_url: str) -> Iterator:
    from vecbox.client import Client

    with Client(server_url, api_key=KEY, timeout=30) as c:
        yield c


# ------------------------------------------------------------- the standard suite
class TestLocalStandardSuite(VectorStoreIntegrationTests):
    """LangChain's suite over a store in an empty directory (no collection until the first add)."""

    pytestmark = STANDARD_SUITE_MARKS

    @pytest.fixture()
    def vectorstore(self, tmp_path) -> Iterator[VectorStore]:  # type: ignore[override]
        store = VecboxVectorStore(tmp_path / "store", embedding=self.get_embeddings())
        try:
            yield store
        finally:
            store.close()


class TestRemoteStandardSuite(VectorStoreIntegrationTests):
    """LangChain's suite over ``vecbox serve``: a Client and a collection the first add creates."""

    pytestmark = STANDARD_SUITE_MARKS

    @pytest.fixture()
    def vectorstore(self, client) -> Iterator[VectorStore]:  # type: ignore[override]
        name = f"lc-{uuid.uuid4().hex[:12]}"
        store = VecboxVectorStore(client, embedding=self.get_embeddings(), collection=name)
        try:
            yield store
        finally:
            if name in client.collections():
                client.open(name).delete(where={})


# ------------------------------------------------------------------ our own checks
DIM = 16


def _texts(n: int) -> tuple[list[str], list[dict]]:
    texts = [f"{WORDS[i % 10]} {WORDS[(i * 3) % 10]} {i}" for i in range(n)]
    metas = [{"year": 2000 + i % 7, "lang": "en" if i % 3 else "de", "tags": [WORDS[i % 10]]} for i in range(n)]
    return texts, metas


@pytest.fixture
def emb() -> DeterministicFakeEmbedding:
    return DeterministicFakeEmbedding(size=DIM)


@pytest.fixture(params=["local", "remote"])
def filled(request, tmp_path, emb):
    """A store holding 60 texts, and a local Collection holding the same vectors, for reference."""
    if request.param == "local":
        store = VecboxVectorStore(str(tmp_path / "lc"), embedding=emb)
    else:
        store = VecboxVectorStore(request.getfixturevalue("client"), embedding=emb,
                                  collection=f"lc-{uuid.uuid4().hex[:12]}")
    texts, metas = _texts(60)
    ids = [f"t{i}" for i in range(60)]
    assert store.add_texts(texts, metas, ids=ids) == ids
    ref = Collection.create(tmp_path / "ref", dim=DIM)
    ref.add(ids, np.asarray(emb.embed_documents(texts)), metas, texts)
    yield store, ref
    ref.close()
    store.close()


def test_hits_scores_and_filters_equal_the_collections_own(filled, emb):
    store, ref = filled
    q = "violin garden 7"
    qv = emb.embed_query(q)
    for where in (None, {"year": {"$gte": 2004}}, {"lang": "de", "tags": {"$in": ["river", "stone"]}},
                  {"$or": [{"year": 2001}, {"lang": "de"}]}):
        got = store.similarity_search_with_score(q, k=7, filter=where)
        want = ref.search(qv, k=7, where=where)
        assert [(d.id, d.page_content, d.metadata) for d, _ in got] == [(h.id, h.document, h.metadata) for h in want]
        np.testing.assert_allclose([s for _, s in got], [h.score for h in want], rtol=1e-6)
        assert [d.id for d in store.similarity_search(q, k=7, where=where)] == [h.id for h in want]
        assert [d.id for d in store.similarity_search_by_vector(qv, k=7, filter=where)] == [h.id for h in want]
    # scores: cosine similarity, best first; relevance scores are (1 + cos) / 2 in [0, 1]
    got = store.similarity_search_with_score(q, k=60)
    scores = [s for _, s in got]
    assert scores == sorted(scores, reverse=True) and -1 <= scores[-1] and scores[0] <= 1 + 1e-6
    rel = store.similarity_search_with_relevance_scores(q, k=5)
    np.testing.assert_allclose([r for _, r in rel], [(1 + s) / 2 for s in scores[:5]], rtol=1e-6)
    # the retriever LangChain builds from the store
    assert [d.id for d in store.as_retriever(search_kwargs={"k": 3}).invoke(q)] == [h.id for h in ref.search(qv, k=3)]
    with pytest.raises(FilterError):
        store.similarity_search(q, k=3, filter={"year": {"$regex": "x"}})


def test_mmr_and_filtered_delete(filled, emb):
    store, ref = filled
    q = "pear stone"
    mmr = store.max_marginal_relevance_search(q, k=4, fetch_k=20, lambda_mult=1.0)
    # lambda 1: pure relevance, i.e. the nearest four
    assert [d.id for d in mmr] == [h.id for h in ref.search(emb.embed_query(q), k=4)]
    diverse = store.max_marginal_relevance_search(q, k=4, fetch_k=20, lambda_mult=0.1, filter={"lang": "en"})
    assert len(diverse) == 4 and all(d.metadata["lang"] == "en" for d in diverse)
    assert store.delete(filter={"lang": "de"}) is True
    assert store.collection.count() == ref.count({"lang": "en"})
    assert store.delete() is True and store.collection.count() == 0


def test_a_new_directory_is_created_on_first_add_and_reopened(tmp_path, emb):
    path = tmp_path / "new" / "col"
    store = VecboxVectorStore(path, embedding=emb, metric="dot")
    assert store.collection is None and not path.exists()
    assert store.similarity_search("x") == [] and store.get_by_ids(["a"]) == [] and store.delete(["a"])
    store.add_documents([Document("hello", id="h"), Document("world", metadata={"n": 1})])
    assert store.collection.dim == DIM and store.collection.metric == "dot"
    store.close()
    again = VecboxVectorStore(path, embedding=emb)  # an existing collection: opened, keeps its metric
    assert again.collection.metric == "dot" and len(again.collection) == 2
    assert again.get_by_ids(["h"]) == [Document("hello", id="h")]
    again.close()
    # a collection under a root, by name; and an open Collection object
    under = VecboxVectorStore(tmp_path / "root", embedding=emb, collection="docs")
    under.add_texts(["a", "b"], ids=["1", "2"])
    assert (tmp_path / "root" / "docs").is_dir()
    under.close()
    with Collection.open(tmp_path / "root" / "docs") as col:
        direct = VecboxVectorStore(col, embedding=emb)
        assert [d.id for d in direct.similarity_search("a", k=1)] == ["1"]


def test_from_texts_and_repeated_ids_in_one_batch(tmp_path, emb):
    store = VecboxVectorStore.from_texts(["one", "two", "three"], emb, [{"n": 1}, {"n": 2}, {"n": 3}],
                                         ids=["a", "b", "a"], path_or_client=tmp_path / "ft")
    assert sorted(store.collection.ids()) == ["a", "b"]
    assert store.get_by_ids(["a"]) == [Document("three", id="a", metadata={"n": 3})]  # the last one wins
    store.close()
    docs = [Document("x", metadata={"k": "v"})]
    other = VecboxVectorStore.from_documents(docs, emb, path_or_client=str(tmp_path / "fd"))
    assert [d.page_content for d in other.similarity_search("x", k=5)] == ["x"]
    other.close()


def test_clear_errors(tmp_path, emb, client):
    with pytest.raises(InvalidInputError, match="embedding"):
        VecboxVectorStore(tmp_path, embedding=None)
    with pytest.raises(InvalidInputError, match="path_or_client"):
        VecboxVectorStore.from_texts(["a"], emb)
    with pytest.raises(InvalidInputError, match="collection=<name>"):
        VecboxVectorStore(client, embedding=emb)
    with pytest.raises(InvalidInputError, match="directory path"):
        VecboxVectorStore(42, embedding=emb)
    store = VecboxVectorStore(tmp_path / "e", embedding=emb)
    with pytest.raises(InvalidInputError, match="2 metadatas for 1 texts"):
        store.add_texts(["a"], [{}, {}])
    with pytest.raises(InvalidInputError, match="not both"):
        store.similarity_search("a", filter={}, where={})


def test_import_vecbox_does_not_import_the_frameworks():
    import subprocess
    import sys

    code = "import sys, vecbox, vecbox.integrations; print('langchain_core' in sys.modules, 'llama_index' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_missing_framework_names_the_pip_command():
    import subprocess
    import sys

    code = ("import sys\n"
            "for m in ('langchain_core', 'llama_index', 'llama_index.core'): sys.modules[m] = None\n"
            "from vecbox.errors import MissingDependencyError\n"
            "for mod in ('vecbox.integrations.langchain', 'vecbox.integrations.llamaindex'):\n"
            "    try:\n"
            "        __import__(mod)\n"
            "    except MissingDependencyError as e:\n"
            "        print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out) == 2
    assert "pip install 'vecbox[integrations]'" in out[0] and "pip install langchain-core" in out[0]
    assert "pip install 'vecbox[integrations]'" in out[1] and "pip install llama-index-core" in out[1]
