"""A LlamaIndex vector store over a vecbox collection: :class:`VecboxLlamaIndexStore`.

Needs ``llama-index-core`` (``pip install 'vecbox[integrations]'``). Works over a local collection
directory (created on the first add, with the nodes' embedding width) or over a collection served
by ``vecbox serve`` (a :class:`vecbox.client.RemoteCollection`, or a :class:`vecbox.client.Client`
and a collection name).

Mapping: a node's id is the vecbox id, its embedding the vector, its text (``get_content()`` with
no metadata) the vecbox document; the vecbox metadata holds the node's metadata at the top level
(so filters see it) plus LlamaIndex's own keys (``_node_content``: the node without its text and
embedding, ``_node_type``, ``ref_doc_id`` / ``doc_id`` / ``document_id``), as every LlamaIndex store
keeps them. A collection filled without LlamaIndex can be queried too: its hits come back as
``TextNode`` objects built from the id, document and metadata.

Queries: ``VectorStoreQueryMode.DEFAULT`` is a dense search with ``query_embedding``;
``TEXT_SEARCH`` / ``SPARSE`` a BM25 search of ``query_str`` over the stored documents; ``HYBRID``
both, fused by vecbox (``Collection.search(..., text=)``). ``filters`` (:class:`MetadataFilters`,
nested, with ``and`` / ``or`` / ``not``) become a vecbox ``where`` (:func:`metadata_filters_to_where`);
``doc_ids`` restrict to nodes of those source documents, ``node_ids`` to those nodes (an empty
list, as ``VectorIndexRetriever`` passes, restricts nothing - LlamaIndex's convention).

Similarities are higher-is-better: vecbox's cosine similarity (or inner product for ``dot``), and
minus the Euclidean distance for ``l2`` (LlamaIndex's own convention); BM25 or fused scores in the
text and hybrid modes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vecbox._optional import PIP_NAMES, require
from vecbox.errors import FilterError, InvalidInputError
from vecbox.integrations import _CollectionRef

PIP_NAMES.setdefault("llama_index", "llama-index-core")  # for the missing-extra message
require("llama_index.core", "integrations", "vecbox.integrations.llamaindex (the LlamaIndex vector store)")

from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode, MetadataMode, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import (
    metadata_dict_to_node,
    node_to_metadata_dict,
)

__all__ = ["VecboxLlamaIndexStore", "metadata_filters_to_where"]

_SIMPLE = {FilterOperator.EQ: "$eq", FilterOperator.NE: "$ne", FilterOperator.GT: "$gt",
           FilterOperator.GTE: "$gte", FilterOperator.LT: "$lt", FilterOperator.LTE: "$lte",
           FilterOperator.IN: "$in", FilterOperator.NIN: "$nin"}


def _one_filter(f: MetadataFilter) -> dict[str, Any]:
    op = FilterOperator(f.operator)
    if op in _SIMPLE:
        return {f.key: {_SIMPLE[op]: f.value}}
    if op == FilterOperator.ANY:  # an array field holding any of the values (a scalar field: equal to one)
        return {f.key: {"$in": list(f.value) if isinstance(f.value, list) else [f.value]}}
    if op == FilterOperator.CONTAINS:  # an array field holding the value
        return {f.key: {"$eq": f.value}}
    if op == FilterOperator.ALL:  # an array field holding every value
        values = list(f.value) if isinstance(f.value, list) else [f.value]
        if not values:
            return {}
        return {"$and": [{f.key: {"$eq": v}} for v in values]}
    raise FilterError(f"the LlamaIndex filter operator {op.value!r} (on {f.key!r}) has no vecbox equivalent; "
                      f"use one of {', '.join(o.value for o in (*_SIMPLE, FilterOperator.ANY, FilterOperator.ALL, FilterOperator.CONTAINS))}")


def metadata_filters_to_where(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """A vecbox ``where`` dict equivalent to LlamaIndex ``MetadataFilters`` (``None`` for no filter).

    ``==, !=, >, >=, <, <=, in, nin`` map to ``$eq ... $nin``; ``any`` to ``$in``, ``contains`` to
    ``$eq`` and ``all`` to an ``$and`` of ``$eq`` (vecbox matches an array field when an element
    matches); conditions ``and`` / ``or`` to ``$and`` / ``$or``, ``not`` to "none of them"
    (as LlamaIndex's own stores do). ``text_match`` and ``is_empty`` raise :class:`FilterError`.

    >>> from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters
    >>> metadata_filters_to_where(MetadataFilters(filters=[
    ...     MetadataFilter(key="year", value=2020, operator=">="),
    ...     MetadataFilter(key="lang", value=["en", "de"], operator="in")], condition="or"))
    {'$or': [{'year': {'$gte': 2020}}, {'lang': {'$in': ['en', 'de']}}]}
    """
    if filters is None or not filters.filters:
        return None
    parts = []
    for f in filters.filters:
        part = metadata_filters_to_where(f) if isinstance(f, MetadataFilters) else _one_filter(f)
        parts.append(part if part is not None else {})
    condition = FilterCondition(filters.condition or FilterCondition.AND)
    if condition == FilterCondition.NOT:
        return {"$not": parts[0] if len(parts) == 1 else {"$or": parts}}
    if len(parts) == 1:
        return parts[0]
    return {"$and" if condition == FilterCondition.AND else "$or": parts}


def _and(*wheres: Mapping[str, Any] | None) -> dict[str, Any] | None:
    parts = [dict(w) for w in wheres if w]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$and": parts}


class VecboxLlamaIndexStore(BasePydanticVectorStore):
    """A LlamaIndex vector store kept in a vecbox collection, local or served.

    Parameters
    ----------
    path_or_client : str, Path, Collection, RemoteCollection or Client
        A collection directory (created on the first add if it does not exist; with
        ``collection``, the subdirectory of that name), an open :class:`~vecbox.Collection` or
        :class:`vecbox.client.RemoteCollection`, or a :class:`vecbox.client.Client` (then
        ``collection`` names the collection on the server, created on the first add if needed).
    collection : str, optional
        The collection's name under a directory or on a server.
    metric : {"cosine", "dot", "l2"}
        Metric of a collection this store creates (an existing one keeps its own).

    Examples
    --------
    >>> from llama_index.core.schema import TextNode, NodeRelationship, RelatedNodeInfo
    >>> from llama_index.core.vector_stores.types import (VectorStoreQuery, MetadataFilters,
    ...                                                   MetadataFilter)
    >>> store = VecboxLlamaIndexStore(tmp + "/li")
    >>> nodes = [TextNode(text=t, id_=i, embedding=e, metadata={"year": y},
    ...                   relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=d)})
    ...          for t, i, e, y, d in [("red apples", "n1", [1.0, 0.0, 0.0], 2020, "doc1"),
    ...                                ("green pears", "n2", [0.0, 1.0, 0.0], 2024, "doc1"),
    ...                                ("blue sky", "n3", [0.7, 0.7, 0.0], 2024, "doc2")]]
    >>> store.add(nodes)
    ['n1', 'n2', 'n3']
    >>> res = store.query(VectorStoreQuery(query_embedding=[1.0, 0.1, 0.0], similarity_top_k=2))
    >>> res.ids, [n.get_content() for n in res.nodes], [round(s, 3) for s in res.similarities]
    (['n1', 'n3'], ['red apples', 'blue sky'], [0.995, 0.774])
    >>> year = MetadataFilters(filters=[MetadataFilter(key="year", value=2024)])
    >>> store.query(VectorStoreQuery(query_embedding=[1.0, 0.1, 0.0], similarity_top_k=2, filters=year)).ids
    ['n3', 'n2']
    >>> store.delete("doc1")
    >>> store.query(VectorStoreQuery(query_embedding=[1.0, 0.1, 0.0], similarity_top_k=3)).ids
    ['n3']
    """

    stores_text: bool = True
    flat_metadata: bool = False
    _ref: _CollectionRef = PrivateAttr()

    def __init__(self, path_or_client: Any, collection: str | None = None, *, metric: str = "cosine",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._ref = _CollectionRef(path_or_client, collection, metric=metric)

    @classmethod
    def class_name(cls) -> str:
        return "VecboxLlamaIndexStore"

    @property
    def client(self) -> Any:
        """The vecbox collection (local or remote), or ``None`` until the first add creates it."""
        return self._ref.get()

    def close(self) -> None:
        """Close a local collection this store opened itself."""
        self._ref.close()

    # ----------------------------------------------------------------- writes
    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Store nodes (with their embeddings), replacing stored nodes with the same ids; one commit."""
        nodes = list(nodes)
        if not nodes:
            return []
        ids, vectors, metas, docs = [], [], [], []
        for node in nodes:
            if node.embedding is None:
                raise InvalidInputError(f"node {node.node_id!r} has no embedding; embed the nodes first "
                                        "(e.g. index them through VectorStoreIndex with an embed_model)")
            ids.append(node.node_id)
            vectors.append(node.get_embedding())
            docs.append(node.get_content(metadata_mode=MetadataMode.NONE))
            metas.append(node_to_metadata_dict(node, remove_text=True, flat_metadata=self.flat_metadata))
        last = {i: j for j, i in enumerate(ids)}  # a repeated id: its last node wins
        keep = sorted(last.values())
        x = np.asarray(vectors, dtype=np.float32)
        col = self._ref.ensure(x.shape[1])
        col.upsert([ids[j] for j in keep], x[keep], [metas[j] for j in keep], [docs[j] for j in keep])
        return ids

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the source document ``ref_doc_id``."""
        col = self._ref.get()
        if col is not None:
            col.delete(where={"ref_doc_id": ref_doc_id})

    def delete_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None,
                     **delete_kwargs: Any) -> None:
        """Delete nodes by id and/or filter (neither: every node, as LlamaIndex's SimpleVectorStore does)."""
        col = self._ref.get()
        if col is None:
            return
        where = metadata_filters_to_where(filters)
        if node_ids is not None:
            if node_ids:
                col.delete(list(node_ids), where=where, missing_ok=True)
        else:
            col.delete(where=where if where is not None else {})

    def clear(self) -> None:
        """Delete every node."""
        col = self._ref.get()
        if col is not None:
            col.delete(where={})

    # ------------------------------------------------------------------ reads
    @staticmethod
    def _node(id_: str, document: str | None, metadata: Mapping[str, Any] | None) -> BaseNode:
        metadata = dict(metadata or {})
        if "_node_content" in metadata:
            return metadata_dict_to_node(metadata, text=document)
        return TextNode(id_=id_, text=document or "", metadata=metadata)  # stored without LlamaIndex

    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None) -> list[BaseNode]:
        """Stored nodes by id (unknown ids skipped) and/or filter; neither: every node."""
        col = self._ref.get()
        if col is None:
            return []
        where = metadata_filters_to_where(filters)
        if node_ids is None:
            ids = col.ids(where)
        else:
            ids = list(dict.fromkeys(node_ids))
            if where is not None:
                allowed = set(col.ids(where))
                ids = [i for i in ids if i in allowed]
        if not ids:
            return []
        return [self._node(r.id, r.document, r.metadata) for r in col.get(ids, missing_ok=True)]

    def _similarity(self, score: float, metric: str) -> float:
        return -float(score) if metric == "l2" else float(score)

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The ``similarity_top_k`` best nodes for ``query`` (modes, filters and scores: module docstring)."""
        col = self._ref.get()
        if col is None:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        k = int(query.similarity_top_k)
        where = _and(metadata_filters_to_where(query.filters),
                     {"ref_doc_id": {"$in": list(query.doc_ids)}} if query.doc_ids else None)
        mode = VectorStoreQueryMode(query.mode)
        metric = str(col.metric)
        if query.node_ids:  # an empty list restricts nothing (VectorIndexRetriever passes [])
            return self._query_among(col, query, list(dict.fromkeys(query.node_ids)), where, k, metric)
        if mode in (VectorStoreQueryMode.TEXT_SEARCH, VectorStoreQueryMode.SPARSE):
            if not query.query_str:
                raise InvalidInputError(f"a {mode.value!r} query needs query_str")
            hits = col.search_lexical(query.query_str, k=k, where=where)
            metric = "bm25"
        elif mode == VectorStoreQueryMode.DEFAULT or mode == VectorStoreQueryMode.HYBRID:
            if query.query_embedding is None:
                raise InvalidInputError("a dense query needs query_embedding (embed the query first)")
            q = np.asarray(query.query_embedding, dtype=np.float32)
            if mode == VectorStoreQueryMode.HYBRID:
                if not query.query_str:
                    raise InvalidInputError("a 'hybrid' query needs query_str as well as query_embedding")
                hits, metric = col.search(q, k=k, where=where, text=query.query_str), "fused"
            else:
                hits = col.search(q, k=k, where=where)
        else:
            raise InvalidInputError(f"query mode {mode.value!r} is not supported by vecbox; use 'default', "
                                    "'hybrid', 'text_search' or 'sparse'")
        return VectorStoreQueryResult(nodes=[self._node(h.id, h.document, h.metadata) for h in hits],
                                      similarities=[self._similarity(h.score, metric) for h in hits],
                                      ids=[h.id for h in hits])

    def _query_among(self, col: Any, query: VectorStoreQuery, node_ids: list[str], where: Any, k: int,
                     metric: str) -> VectorStoreQueryResult:
        """An exact dense search restricted to ``node_ids`` (scored here, as vecbox would)."""
        if query.query_embedding is None:
            raise InvalidInputError("a query with node_ids needs query_embedding")
        if VectorStoreQueryMode(query.mode) != VectorStoreQueryMode.DEFAULT:
            raise InvalidInputError("node_ids= works with the 'default' (dense) query mode only")
        if where is not None:
            allowed = set(col.ids(where))
            node_ids = [i for i in node_ids if i in allowed]
        records = col.get(node_ids, missing_ok=True) if node_ids else []
        if not records:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        q = np.asarray(query.query_embedding, dtype=np.float64)
        x = np.stack([r.vector for r in records]).astype(np.float64)
        if metric == "cosine":
            scores = x @ (q / (np.linalg.norm(q) or 1.0))  # stored vectors are unit length
        elif metric == "dot":
            scores = x @ q
        else:
            scores = -np.linalg.norm(x - q, axis=1)
        order = np.argsort(-scores, kind="stable")[:k]
        return VectorStoreQueryResult(nodes=[self._node(records[i].id, records[i].document, records[i].metadata)
                                             for i in order],
                                      similarities=[float(scores[i]) for i in order],
                                      ids=[records[i].id for i in order])
