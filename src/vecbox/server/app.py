"""The HTTP API over a directory of collections: :func:`create_app` builds the FastAPI application.

Endpoints are plain ``def`` functions, so FastAPI runs them in its thread pool and a search
never blocks the event loop; only ``/ingest`` is ``async`` (it reads the body as it streams) and
hands each batch to the pool. Read endpoints need a read or read-write key, the others a
read-write key (when keys are configured); ``/health``, the API documentation (``/docs``,
``/openapi.json``: the API's description, no data) and the web page (``/`` and its files under
``/page``: static, it calls the API with the key the user types) need none.

>>> from fastapi.testclient import TestClient
>>> http = TestClient(create_app(tmp))
>>> http.post("/collections", json={"name": "docs", "dim": 2}).json()["dim"]
2
>>> http.post("/collections/docs/add", json={"ids": ["a"], "vectors": [[1, 0]]}).json()
{'version': 1, 'rows': 1, 'ids': None}
>>> http.post("/collections/docs/search", json={"vector": [1, 0.1], "k": 1}).json()["hits"][0]["id"]
'a'
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse
from fastapi.security import APIKeyHeader, HTTPBearer
from fastapi.staticfiles import StaticFiles

from vecbox.errors import InvalidInputError
from vecbox.results import Explained
from vecbox.server import schemas as s
from vecbox.server.errors import install
from vecbox.server.explore import collection_map, neighbours
from vecbox.server.middleware import Guard
from vecbox.server.registry import Entry, Registry
from vecbox.server.security import ApiKeys, Limits
from vecbox.server.writing import ingest, write_rows

ENV_ROOT, ENV_KEYS, ENV_READ_ONLY_KEYS = "VECBOX_SERVE_ROOT", "VECBOX_API_KEYS", "VECBOX_READ_ONLY_KEYS"
ENV_LIMITS = "VECBOX_SERVE_LIMITS"
#: The web page's files: plain HTML, CSS and one script, served as they are (no build step).
PAGE_DIR = Path(__file__).with_name("page")
# Declared for the OpenAPI page (its "Authorize" button); the check itself is ApiKeys.authorize.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <key>")
WhereQuery = Annotated[str | None, Query(description='A filter as JSON, e.g. {"year": {"$gte": 2020}}')]
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <key>")


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as numbers and lists, tuples as lists, NaN / inf as ``None``.

    >>> jsonable({"a": (np.float32(0.5), float("nan")), "b": np.arange(2)})
    {'a': [0.5, None], 'b': [0, 1]}
    """
    if isinstance(value, dict):
        return {str(k): jsonable(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(x) for x in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _hits(out: Any) -> dict[str, Any]:
    if isinstance(out, Explained):
        plan = out.plan
        return {"hits": [h._asdict() for h in out.hits], "plan": jsonable(plan.to_dict()),
                "plan_type": type(plan).__name__}
    return {"hits": [h._asdict() for h in out]}


def _info(name: str, entry: Entry) -> dict[str, Any]:
    info = entry.reader.info()
    info.pop("path", None)  # where the server keeps its files is none of the client's business
    return {"name": name, **jsonable(info)}


def _where(where: str | None) -> Any:
    if where is None:
        return None
    try:
        return json.loads(where)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"where= is not valid JSON ({exc.msg} at column {exc.colno}): {where!r}") from None


def search(entry: Entry, req: s.SearchRequest, limits: Limits) -> Any:
    """Run one search request on ``entry``'s reader handle: a vector, a text, or both."""
    for name in ("k", "candidates", "ef_search", "nprobe"):
        limits.check_k(getattr(req, name), name)
    col, mode = entry.reader, req.mode
    common = {"where": req.where, "include_metadata": req.include_metadata, "explain": req.explain}
    dense = {"ef_search": req.ef_search, "exact": req.exact, "oversample": req.oversample}
    if req.vector is None and req.text is None:
        raise InvalidInputError("a search needs a vector, a text, or both (hybrid)")
    if mode == "lexical":
        if req.vector is not None:
            raise InvalidInputError("mode 'lexical' searches the text alone; drop the vector, or use mode 'hybrid'")
        return col.search_lexical(req.text, req.k, **common)
    if req.vector is not None and req.text is None and mode == "hybrid":
        raise InvalidInputError("mode 'hybrid' needs a text as well as the vector (or no vector: it is encoded)")
    if req.vector is not None and req.text is not None and mode == "dense":
        raise InvalidInputError("a vector and a text make a hybrid search; omit mode, or set it to 'hybrid'")
    hybrid = mode == "hybrid" or (req.vector is not None and req.text is not None)
    if req.vector is None and entry.multivector:  # token vectors and a Chamfer rerank: search_text's own path
        entry.text_encoder(loaded=True)
        return col.search_text(req.text, req.k, mode=mode or "dense", oversample=req.oversample, fusion=req.fusion,
                               candidates=req.candidates, **common)
    # an array, not the parsed list: an id-only search then takes the collection's one-C-call fast path
    query = np.asarray(req.vector, dtype=np.float64) if req.vector is not None else entry.encode([req.text], "query")[0]
    if hybrid:
        return col.search(query, req.k, text=req.text, fusion=req.fusion, candidates=req.candidates, **dense, **common)
    return col.search(query, req.k, nprobe=req.nprobe, fusion=req.fusion, candidates=req.candidates, **dense, **common)


def _routes(registry: Registry, keys: ApiKeys, limits: Limits) -> tuple[APIRouter, APIRouter]:
    """The read endpoints and the write endpoints, each router behind its key check."""

    def read_access(request: Request, _b: Any = Depends(_bearer), _h: Any = Depends(_header)) -> None:
        keys.authorize(request.headers, write=False)

    def write_access(request: Request, _b: Any = Depends(_bearer), _h: Any = Depends(_header)) -> None:
        keys.authorize(request.headers, write=True)

    reads = APIRouter(dependencies=[Depends(read_access)], tags=["read"])
    writes = APIRouter(dependencies=[Depends(write_access)], tags=["write"])

    @reads.get("/collections", response_model=s.CollectionsResponse)
    def list_collections() -> dict[str, Any]:
        """The collections under the served root."""
        return {"collections": registry.names()}

    @reads.get("/collections/{name}")
    def info(name: str) -> dict[str, Any]:
        """Settings and sizes of one collection (``Collection.info``, without the server's path) and its name."""
        return _info(name, registry.get(name))

    @reads.get("/collections/{name}/count", response_model=s.CountResponse)
    def count(name: str, where: WhereQuery = None) -> dict[str, Any]:
        """Live items, optionally only those matching ``where``."""
        return {"count": registry.get(name).reader.count(where=_where(where))}

    @reads.get("/collections/{name}/ids", response_model=s.IdsResponse)
    def ids(name: str, where: WhereQuery = None) -> dict[str, Any]:
        """Live ids (optionally matching ``where``), in insertion order."""
        return {"ids": registry.get(name).reader.ids(where=_where(where))}

    @reads.get("/collections/{name}/index")
    def index_info(name: str) -> dict[str, Any]:
        """The ANN index's settings (``{"index": null}`` without one)."""
        return {"index": jsonable(registry.get(name).reader.index_info())}

    @reads.post("/collections/{name}/get", response_model=s.GetResponse)
    def get(name: str, req: s.GetRequest) -> dict[str, Any]:
        """Stored items by id, in the order asked (vectors normalised under cosine)."""
        limits.check_rows(len(req.ids), "ids")
        records = registry.get(name).reader.get(req.ids, missing_ok=req.missing_ok)
        return {"records": [{"id": r.id, "vector": r.vector.tolist() if req.include_vectors else None,
                             "metadata": r.metadata, "document": r.document} for r in records]}

    @reads.post("/collections/{name}/search", response_model=s.SearchResponse)
    def search_endpoint(name: str, req: s.SearchRequest) -> dict[str, Any]:
        """Nearest items: ``vector`` (dense), ``text`` (``mode``: dense, lexical or hybrid), or both (hybrid)."""
        return _hits(search(registry.get(name), req, limits))

    @reads.get("/collections/{name}/map")
    def map_endpoint(name: str, points: int = 2000, seed: int = 0) -> dict[str, Any]:
        """A seeded sample of up to ``points`` items on a 2-D PCA map, with metadata, snippets and anomaly scores."""
        return jsonable(collection_map(registry.get(name).reader, points=points, seed=seed))

    @reads.get("/collections/{name}/neighbors")
    def neighbors_endpoint(name: str, id: str, k: int = 10, where: WhereQuery = None) -> dict[str, Any]:
        """The ``k`` nearest other items of the stored item ``id`` (optionally only those matching ``where``)."""
        limits.check_k(k)
        return jsonable(neighbours(registry.get(name).reader, id, k=k, where=_where(where)))

    @writes.post("/collections", response_model=None, status_code=201)
    def create(req: s.CreateRequest) -> dict[str, Any]:
        """Create a collection (``exist_ok``: or open the existing one with the same settings)."""
        options = req.model_dump(exclude={"name"})
        return _info(req.name, registry.create(req.name, options))

    def _write(name: str, req: s.WriteRequest, mode: str) -> dict[str, Any]:
        rows = req.vectors if req.vectors is not None else req.texts
        limits.check_rows(len(rows) if isinstance(rows, list) else 0)
        if req.vectors is not None and req.texts is not None:
            raise InvalidInputError("give vectors or texts, not both (texts are encoded into the vectors)")
        version, generated = write_rows(registry.get(name), mode, req.ids, req.vectors, req.texts, req.metadatas,
                                        req.documents)
        return {"version": version, "rows": len(rows) if isinstance(rows, list) else 0, "ids": generated}

    @writes.post("/collections/{name}/add")
    def add(name: str, req: s.WriteRequest) -> dict[str, Any]:
        """Add new items in one commit (an id already stored: 409). ``ids`` are returned when generated."""
        return _write(name, req, "add")

    @writes.post("/collections/{name}/upsert")
    def upsert(name: str, req: s.WriteRequest) -> dict[str, Any]:
        """Add items, replacing stored items with the same id, in one commit."""
        return _write(name, req, "upsert")

    @writes.post("/collections/{name}/delete", response_model=s.DeleteResponse)
    def delete(name: str, req: s.DeleteRequest) -> dict[str, Any]:
        """Delete by ids and/or filter in one commit (``where: {}`` deletes everything)."""
        if req.ids is not None:
            limits.check_rows(len(req.ids), "ids")
        with registry.get(name).writing() as col:
            deleted = col.delete(req.ids, where=req.where, missing_ok=req.missing_ok)
            return {"deleted": deleted, "version": col.version}

    @writes.post("/collections/{name}/ingest", response_model=s.IngestResponse)
    async def ingest_endpoint(request: Request, name: str, batch_size: int | None = None,
                              upsert: bool = False) -> dict[str, Any]:
        """Bulk load: JSONL in the body, one ``{"id", "vector" | "text", "metadata", "document"}`` per line.

        Lines are committed ``batch_size`` at a time as they arrive; a bad line stops the load
        with an error that says which batches are stored and where to resume.
        """
        from starlette.concurrency import run_in_threadpool

        entry = await run_in_threadpool(registry.get, name)
        return await ingest(request, entry, upsert=upsert, batch_rows=batch_size or limits.ingest_batch_rows,
                            limits=limits)

    @writes.post("/collections/{name}/index")
    def build_index(name: str, req: s.IndexRequest) -> dict[str, Any]:
        """Build (or rebuild) the ANN index; searches use it at once. Returns the index's settings."""
        limits.check_k(req.ef_search, "ef_search")
        limits.check_k(req.nprobe, "nprobe")
        entry = registry.get(name)
        # on the reader handle, which then holds the new index without loading it again
        return {"index": jsonable(entry.reader.build_index(**req.model_dump()))}

    @writes.delete("/collections/{name}/index")
    def drop_index(name: str) -> dict[str, Any]:
        """Remove the ANN index (searches become exact)."""
        registry.get(name).reader.drop_index()
        return {"index": None}

    return reads, writes


def create_app(root: str | Path, *, api_keys: Iterable[str] = (), read_only_keys: Iterable[str] = (),
               limits: Limits | None = None, lock_timeout: float = 10.0) -> FastAPI:
    """The FastAPI application serving the collections under the directory ``root``.

    ``api_keys`` may read and write, ``read_only_keys`` only read; with neither, the server
    is open (keep it on loopback). ``limits`` bounds request bodies, ``k`` and batch sizes;
    ``lock_timeout`` is how long a write waits for another writer before a 503.

    >>> app = create_app(tmp, api_keys=["s3cret"])
    >>> from fastapi.testclient import TestClient
    >>> TestClient(app).get("/collections").status_code
    401
    """
    keys = ApiKeys(api_keys, read_only_keys)
    limits = limits or Limits()
    registry = Registry(root, lock_timeout=lock_timeout)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        registry.close()

    app = FastAPI(title="vecbox", summary="Collections of vectors: store, filter, search (dense, BM25, hybrid).",
                  lifespan=lifespan)
    app.state.registry, app.state.limits, app.state.keys = registry, limits, keys
    install(app)

    @app.get("/health", tags=["health"])
    def health() -> dict[str, Any]:
        """Liveness: no key needed, nothing about the data."""
        from vecbox import __version__

        return {"status": "ok", "version": __version__}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        """The web page (static: it holds no data and asks for a key when the API needs one)."""
        return FileResponse(PAGE_DIR / "index.html")

    app.mount("/page", StaticFiles(directory=PAGE_DIR), name="page")
    reads, writes = _routes(registry, keys, limits)
    app.include_router(reads)
    app.include_router(writes)
    app.add_middleware(Guard, limits=limits)
    return app


def app_from_env() -> FastAPI:
    """The application ``vecbox serve --workers N`` starts in each worker process (settings from the environment)."""
    root = os.environ.get(ENV_ROOT)
    if not root:
        raise InvalidInputError(f"{ENV_ROOT} is not set; start the server with `vecbox serve ROOT`")
    split = lambda var: [k for k in os.environ.get(var, "").split(",") if k.strip()]  # noqa: E731
    limits = Limits(**json.loads(os.environ[ENV_LIMITS])) if os.environ.get(ENV_LIMITS) else None
    return create_app(root, api_keys=split(ENV_KEYS), read_only_keys=split(ENV_READ_ONLY_KEYS), limits=limits)


__all__ = ["ENV_KEYS", "ENV_LIMITS", "ENV_READ_ONLY_KEYS", "ENV_ROOT", "app_from_env", "create_app", "jsonable",
           "search"]
