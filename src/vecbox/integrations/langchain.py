"""A LangChain ``VectorStore`` over a vecbox collection: :class:`VecboxVectorStore`.

Needs ``langchain-core`` (``pip install 'vecbox[integrations]'``). The store works over a local
collection directory (created on the first add, with the embedding's width) or over a collection
served by ``vecbox serve`` (a :class:`vecbox.client.RemoteCollection`, or a
:class:`vecbox.client.Client` and a collection name).

Mapping: a ``Document``'s ``page_content`` is the vecbox document, its ``metadata`` the vecbox
metadata and its ``id`` the vecbox id (a new UUID when it has none). Adding an id already stored
replaces it (LangChain's "add is an upsert by id"). Filters (``filter=`` or ``where=``) are vecbox
``where`` dicts: ``{"year": {"$gte": 2020}, "lang": {"$in": ["en", "de"]}}``.

Scores: :meth:`VecboxVectorStore.similarity_search_with_score` returns vecbox's own score - the
cosine similarity for a cosine collection (the default; in [-1, 1], **higher is more similar**),
the inner product for ``dot``, the Euclidean distance for ``l2`` (lower is more similar).
``similarity_search_with_relevance_scores`` maps them to [0, 1], 1 the most similar:
``(1 + cosine) / 2``, the same for ``dot`` (exact for unit-length embeddings), and
``1 - distance / sqrt(2)`` for ``l2`` (LangChain's convention for unit-length embeddings).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from vecbox._optional import PIP_NAMES, require
from vecbox.errors import InvalidInputError
from vecbox.integrations import _CollectionRef

PIP_NAMES.setdefault("langchain_core", "langchain-core")  # for the missing-extra message
require("langchain_core", "integrations", "vecbox.integrations.langchain (the LangChain vector store)")

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

__all__ = ["VecboxVectorStore"]


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x))


class VecboxVectorStore(VectorStore):
    """A LangChain vector store kept in a vecbox collection, local or served.

    Parameters
    ----------
    path_or_client : str, Path, Collection, RemoteCollection or Client
        A collection directory (created on the first add if it does not exist; with
        ``collection``, the subdirectory of that name), an open :class:`~vecbox.Collection` or
        :class:`vecbox.client.RemoteCollection`, or a :class:`vecbox.client.Client` (then
        ``collection`` names the collection on the server, created on the first add if needed).
    embedding : Embeddings
        Turns texts and queries into vectors (its width becomes the collection's ``dim``).
    collection : str, optional
        The collection's name under a directory or on a server.
    metric : {"cosine", "dot", "l2"}
        Metric of a collection this store creates (an existing one keeps its own).

    Scores are vecbox's (module docstring): cosine similarity by default, higher is better.

    Examples
    --------
    >>> from langchain_core.documents import Document
    >>> from langchain_core.embeddings import DeterministicFakeEmbedding
    >>> store = VecboxVectorStore(tmp + "/lc", embedding=DeterministicFakeEmbedding(size=8))
    >>> store.add_documents([Document("apples are red", metadata={"year": 2020}),
    ...                      Document("the sky is blue", metadata={"year": 2024})], ids=["a", "b"])
    ['a', 'b']
    >>> [d.id for d in store.similarity_search("the sky is blue", k=2)]
    ['b', 'a']
    >>> doc, score = store.similarity_search_with_score("the sky is blue", k=1)[0]
    >>> doc.page_content, doc.metadata, round(score, 3)
    ('the sky is blue', {'year': 2024}, 1.0)
    >>> [d.id for d in store.similarity_search("the sky is blue", k=2, filter={"year": {"$lt": 2022}})]
    ['a']
    >>> store.delete(["a"]); [d.id for d in store.get_by_ids(["a", "b"])]
    True
    ['b']
    """

    def __init__(self, path_or_client: Any, embedding: Embeddings, collection: str | None = None, *,
                 metric: str = "cosine") -> None:
        if embedding is None:
            raise InvalidInputError("VecboxVectorStore needs embedding=<a LangChain Embeddings object>")
        self._embedding = embedding
        self._ref = _CollectionRef(path_or_client, collection, metric=metric)

    # ----------------------------------------------------------------- basics
    @property
    def embeddings(self) -> Embeddings:
        """The embedding model the store encodes texts and queries with."""
        return self._embedding

    @property
    def collection(self) -> Any:
        """The vecbox collection (local or remote), or ``None`` until the first add creates it."""
        return self._ref.get()

    def close(self) -> None:
        """Close a local collection this store opened itself."""
        self._ref.close()

    def __repr__(self) -> str:
        return f"VecboxVectorStore({self._ref.get()!r})"

    # ----------------------------------------------------------------- writes
    def add_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *,
                  ids: list[str | None] | None = None, **kwargs: Any) -> list[str]:
        """Embed and store ``texts`` (replacing stored items with the same ids); return their ids.

        Ids missing (``None``, or no ``ids``) get a new UUID. Within one call a repeated id keeps
        its last text. One commit for the whole batch.
        """
        if kwargs:
            raise TypeError(f"add_texts() got unexpected keyword arguments: {', '.join(sorted(kwargs))}")
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise InvalidInputError(f"got {len(metadatas)} metadatas for {len(texts)} texts; pass one per text")
        if ids is not None and len(ids) != len(texts):
            raise InvalidInputError(f"got {len(ids)} ids for {len(texts)} texts; pass one per text")
        out = [str(i) if i is not None else uuid.uuid4().hex for i in (ids or [None] * len(texts))]
        if not texts:
            return []
        metas = [dict(m) if m else {} for m in (metadatas or [None] * len(texts))]
        vectors = np.asarray(self._embedding.embed_documents(texts), dtype=np.float32)
        last = {i: j for j, i in enumerate(out)}  # a repeated id: its last occurrence wins
        keep = sorted(last.values())
        col = self._ref.ensure(vectors.shape[1])
        col.upsert([out[j] for j in keep], vectors[keep], [metas[j] for j in keep], [texts[j] for j in keep])
        return out

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete items by id (unknown ids are ignored); ``ids=None`` deletes what ``filter=`` matches, or all.

        Returns ``True``.
        """
        where = self._where(kwargs)
        if kwargs:
            raise TypeError(f"delete() got unexpected keyword arguments: {', '.join(sorted(kwargs))}")
        col = self._ref.get()
        if col is None:
            return True
        if ids is None:
            col.delete(where=where if where is not None else {})
        elif ids:
            col.delete(list(ids), where=where, missing_ok=True)
        return True

    # ------------------------------------------------------------------ reads
    @staticmethod
    def _document(id_: str, document: str | None, metadata: Mapping[str, Any] | None) -> Document:
        return Document(id=id_, page_content=document or "", metadata=dict(metadata or {}))

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents with these ids, in the order asked (unknown ids are skipped)."""
        col = self._ref.get()
        if col is None or not ids:
            return []
        records = col.get(list(dict.fromkeys(ids)), missing_ok=True)
        return [self._document(r.id, r.document, r.metadata) for r in records]

    @staticmethod
    def _where(kwargs: dict[str, Any]) -> Mapping[str, Any] | None:
        flt, where = kwargs.pop("filter", None), kwargs.pop("where", None)
        if flt is not None and where is not None:
            raise InvalidInputError("pass the metadata filter as filter= or where=, not both")
        return flt if flt is not None else where

    def similarity_search_with_score_by_vector(self, embedding: Sequence[float], k: int = 4,
                                               **kwargs: Any) -> list[tuple[Document, float]]:
        """The ``k`` nearest documents to a vector with vecbox's scores, best first.

        ``filter=`` (or ``where=``) is a vecbox filter; other keywords (``ef_search``, ``exact``,
        ``text`` for a hybrid search ...) go to :meth:`vecbox.Collection.search`.
        """
        where = self._where(kwargs)
        col = self._ref.get()
        if col is None:
            return []
        hits = col.search(np.asarray(embedding, dtype=np.float32), k=k, where=where, **kwargs)
        return [(self._document(h.id, h.document, h.metadata), float(h.score)) for h in hits]

    def similarity_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        """The ``k`` nearest documents to ``query`` with vecbox's scores (cosine similarity: higher is better)."""
        return self.similarity_search_with_score_by_vector(self._embedding.embed_query(query), k, **kwargs)

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, **kwargs: Any) -> list[Document]:
        """The ``k`` nearest documents to a vector, best first (``filter=``: a vecbox ``where`` dict)."""
        return [d for d, _ in self.similarity_search_with_score_by_vector(embedding, k, **kwargs)]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The ``k`` nearest documents to ``query``, best first (``filter=``: a vecbox ``where`` dict)."""
        return [d for d, _ in self.similarity_search_with_score(query, k, **kwargs)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        metric = self._ref.current_metric
        if metric == "l2":
            return lambda d: _clip01(1.0 - d / math.sqrt(2))
        return lambda s: _clip01((1.0 + s) / 2.0)  # cosine, and dot for unit-length embeddings

    def max_marginal_relevance_search_by_vector(self, embedding: list[float], k: int = 4, fetch_k: int = 20,
                                                lambda_mult: float = 0.5, **kwargs: Any) -> list[Document]:
        """Maximal marginal relevance among the ``fetch_k`` nearest: relevant and diverse documents."""
        where = self._where(kwargs)
        col = self._ref.get()
        if col is None:
            return []
        hits = col.search(np.asarray(embedding, dtype=np.float32), k=max(fetch_k, k), where=where, **kwargs)
        if not hits:
            return []
        records = col.get([h.id for h in hits])
        chosen = maximal_marginal_relevance(np.asarray(embedding, dtype=np.float32),
                                            [r.vector for r in records], lambda_mult=lambda_mult, k=k)
        return [self._document(records[i].id, records[i].document, records[i].metadata) for i in chosen]

    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5,
                                      **kwargs: Any) -> list[Document]:
        """Maximal marginal relevance for a text query (see :meth:`max_marginal_relevance_search_by_vector`)."""
        return self.max_marginal_relevance_search_by_vector(self._embedding.embed_query(query), k, fetch_k,
                                                            lambda_mult, **kwargs)

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings, metadatas: list[dict[str, Any]] | None = None, *,
                   ids: list[str] | None = None, path_or_client: Any = None, collection: str | None = None,
                   metric: str = "cosine", **kwargs: Any) -> VecboxVectorStore:
        """A store at ``path_or_client`` (required) holding ``texts``."""
        if path_or_client is None:
            raise InvalidInputError("VecboxVectorStore.from_texts needs path_or_client=<a collection directory, "
                                    "a Collection, a RemoteCollection or a Client>")
        if kwargs:
            raise TypeError(f"from_texts() got unexpected keyword arguments: {', '.join(sorted(kwargs))}")
        store = cls(path_or_client, embedding, collection, metric=metric)
        store.add_texts(texts, metadatas, ids=ids)
        return store

