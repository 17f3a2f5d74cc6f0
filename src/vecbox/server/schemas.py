"""Request and response bodies of the HTTP API (pydantic models; they make the OpenAPI page at ``/docs``).

Only the shape is checked here. Values - vectors, ids, metadata, filters, parameters - pass
through untouched to the collection, whose validation (:mod:`vecbox._validation`, the filter
parser) is the one gate for user input and words the errors; so vectors are typed ``Any`` for
pydantic and documented as numbers in the schema.

>>> SearchRequest(vector=[0.1, 0.2], k=3).k
3
>>> Hit(id="a", score=0.5).model_dump()
{'id': 'a', 'score': 0.5, 'metadata': None, 'document': None}
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

Vector = Annotated[Any, WithJsonSchema({"type": "array", "items": {"type": "number"}})]
Matrix = Annotated[Any, WithJsonSchema({"type": "array", "items": {"type": "array", "items": {"type": "number"}}})]
Metadata = dict[str, Any] | None
Where = dict[str, Any] | None
Fusion = str | dict[str, Any] | None


class _Body(BaseModel):
    # extra="forbid": a misspelt option is an error, not silently ignored; strict: no "10" -> 10 or true -> 1
    model_config = ConfigDict(extra="forbid", strict=True)


class CreateRequest(_Body):
    """``POST /collections``: what ``Collection.create`` takes (``model``: the bundled ``"default"`` only)."""

    name: str = Field(description="Directory name under the served root: letters, digits, '_', '.', '-'.")
    dim: int | None = Field(None, description="Vector width; taken from the model when omitted.")
    metric: Literal["cosine", "dot", "l2"] = "cosine"
    model: str | None = Field(None, description="'default' (bundled all-MiniLM-L6-v2) to store and search text.")
    lexical: bool | dict[str, Any] = Field(True, description="BM25 index of documents: true, false or settings.")
    codec: str | None = Field(None, description="Codec spec kept in RAM, e.g. 'int8', 'rot+int4'.")
    keep_float: bool = True
    exist_ok: bool = False


class WriteRequest(_Body):
    """``POST .../add`` and ``.../upsert``: ``vectors`` or ``texts`` (encoded with the collection's model), one commit."""

    ids: list[Any] | None = Field(None, description="One string id per row (optional with texts: random ids).")
    vectors: Matrix | None = None
    texts: list[Any] | None = Field(None, description="Texts to encode; each is stored as its row's document.")
    metadatas: list[Metadata] | None = None
    documents: list[Any] | None = Field(None, description="Documents for vector rows (indexed for BM25).")


class DeleteRequest(_Body):
    """``POST .../delete``: by ids, by filter, or both (``where: {}`` deletes everything)."""

    ids: list[Any] | None = None
    where: Where = None
    missing_ok: bool = False


class GetRequest(_Body):
    """``POST .../get``: stored items by id, in the order asked."""

    ids: list[Any]
    missing_ok: bool = False
    include_vectors: bool = True


class SearchRequest(_Body):
    """``POST .../search``: a vector, a text, or both (hybrid).

    ``mode`` defaults to ``dense`` for a vector or a text alone and to ``hybrid`` for both; a text
    alone searches ``dense`` (the model's embedding), ``lexical`` (BM25) or ``hybrid``.
    """

    vector: Vector | None = None
    text: str | None = None
    mode: Literal["dense", "lexical", "hybrid"] | None = None
    k: int = 10
    where: Where = None
    explain: bool = False
    include_metadata: bool = True
    ef_search: int | None = None
    nprobe: int | None = None
    exact: bool = False
    oversample: float = 4.0
    fusion: Fusion = None
    candidates: int | None = None


class IndexRequest(_Body):
    """``POST .../index``: ``Collection.build_index`` options."""

    kind: Literal["hnsw", "ivf"] = "hnsw"
    M: int = 32
    ef_construction: int = 200
    ef_search: int | None = None
    nlist: int | None = None
    nprobe: int | None = None
    storage: Literal["flat", "sq8"] = "flat"
    target_recall: float | None = 0.95
    seed: int = 0


class Hit(BaseModel):
    id: str
    score: float
    metadata: Metadata = None
    document: str | None = None


class SearchResponse(BaseModel):
    """The hits, best first; with ``explain``, the plan that ran (``plan_type``: ``Plan`` or ``HybridPlan``)."""

    hits: list[Hit]
    plan: dict[str, Any] | None = None
    plan_type: str | None = None


class Record(BaseModel):
    id: str
    vector: Vector | None = None
    metadata: Metadata = None
    document: str | None = None


class GetResponse(BaseModel):
    records: list[Record]


class WriteResponse(BaseModel):
    version: int
    rows: int


class DeleteResponse(BaseModel):
    deleted: int
    version: int


class CountResponse(BaseModel):
    count: int


class IdsResponse(BaseModel):
    ids: list[str]


class IngestResponse(BaseModel):
    """What ``/ingest`` stored: rows and batches committed, the first and last version they made."""

    rows: int
    batches: int
    versions: list[int]
    version: int


class CollectionsResponse(BaseModel):
    collections: list[str]


class ErrorBody(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


__all__ = ["CollectionsResponse", "CountResponse", "CreateRequest", "DeleteRequest", "DeleteResponse", "ErrorBody",
           "ErrorResponse", "GetRequest", "GetResponse", "Hit", "IdsResponse", "IndexRequest", "IngestResponse",
           "Record", "SearchRequest", "SearchResponse", "WriteRequest", "WriteResponse"]
