"""A Python client of ``vecbox serve``: remote collections with the methods and return types of :class:`Collection`.

``Client(url).open(name)`` gives a :class:`RemoteCollection`; its ``search`` returns
:class:`~vecbox.results.Hit` lists (or :class:`~vecbox.results.Explained` with the server's
:class:`~vecbox.query.planner.Plan` / :class:`~vecbox.query.hybrid.HybridPlan`), ``get`` returns
:class:`~vecbox.results.Record` with numpy vectors, and the server's errors are raised as the same
:mod:`vecbox.errors` classes a local collection raises (a missing collection is a
:class:`~vecbox.errors.CollectionNotFoundError`, a stored id a :class:`~vecbox.errors.DuplicateIdError`).

Reads (``GET``, ``get``, searches) are retried on connection errors and timeouts, with backoff;
writes never are, since a write that timed out may have been applied. Not imported by
``import vecbox`` (it needs httpx, from the ``server`` extra): ``from vecbox.client import Client``.

>>> from vecbox.client import Client
>>> client = Client("http://127.0.0.1:8000", api_key="s3cret", timeout=10)
>>> client.url
'http://127.0.0.1:8000'
>>> col = client.open("papers")                       # doctest: +SKIP
>>> [h.id for h in col.search([0.1, 0.2, 0.3], k=3)]  # doctest: +SKIP
['p17', 'p3', 'p42']
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import fields
from typing import Any

import numpy as np

from vecbox import errors as vecbox_errors
from vecbox._optional import require
from vecbox.errors import InvalidInputError, VecboxError
from vecbox.query.hybrid import HybridPlan
from vecbox.query.planner import Plan
from vecbox.results import Explained, Hit, Record

httpx = require("httpx", "server", "vecbox.client (the HTTP client)")

_sleep = time.sleep  # the pause between retries (tests replace it)
INGEST_CHUNK_BYTES = 1 << 16


class ServerError(VecboxError):
    """The server answered with an error that has no :mod:`vecbox.errors` class (``status``, ``kind``: its type)."""

    def __init__(self, message: str, status: int | None = None, kind: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


class AuthenticationError(ServerError, PermissionError):
    """401 (no key, or a wrong one) or 403 (a read-only key on a write)."""


class RequestRejectedError(ServerError, InvalidInputError):
    """The server refused the request itself: malformed, a wrong shape, too large, a refused name."""


class ServerUnavailableError(ServerError, ConnectionError):
    """The server could not be reached (or did not answer in time), after the retries a read allows."""


def _raise_for(response: "httpx.Response") -> None:
    try:
        err = response.json()["error"]
        kind, message = str(err["type"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        raise ServerError(f"HTTP {response.status_code} from {response.request.url}: {response.text[:200]!r}",
                          response.status_code) from None
    cls = getattr(vecbox_errors, kind, None) if kind in vecbox_errors.__all__ else None
    if cls is not None:
        exc = cls(message)
        exc.status = response.status_code  # type: ignore[attr-defined]
        raise exc
    if response.status_code in (401, 403):
        raise AuthenticationError(message, response.status_code, kind)
    if response.status_code in (400, 413, 422):
        raise RequestRejectedError(message, response.status_code, kind)
    raise ServerError(message, response.status_code, kind)


def _as_list(x: Any) -> Any:
    """Numbers for JSON: a numeric array as nested lists; anything else as it is (the server says what is wrong)."""
    if isinstance(x, np.ndarray) or (isinstance(x, (list, tuple)) and x and isinstance(x[0], np.ndarray)):
        arr = np.asarray(x)
        if arr.dtype.kind in "fiu":
            return arr.tolist()
    return list(x) if isinstance(x, tuple) else x


def _dataclass(cls: type, data: Mapping[str, Any]) -> Any:
    return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def _plan(data: Mapping[str, Any] | None, kind: str | None) -> Any:
    """The server's plan as the object a local search returns (``dict`` if it is neither kind)."""
    if data is None:
        return None
    if kind == "Plan":
        return _dataclass(Plan, data)
    if kind == "HybridPlan":
        dense = _dataclass(Plan, data["dense"]) if data.get("dense") else None
        plan = _dataclass(HybridPlan, {**data, "dense": dense})
        plan.dense_hits = [tuple(h) for h in plan.dense_hits]
        plan.lexical_hits = [tuple(h) for h in plan.lexical_hits]
        return plan
    return dict(data)


def _hits(body: Mapping[str, Any], explain: bool) -> "list[Hit] | Explained":
    hits = [Hit(h["id"], h["score"], h.get("metadata"), h.get("document")) for h in body["hits"]]
    return Explained(hits, _plan(body.get("plan"), body.get("plan_type"))) if explain else hits


class Client:
    """Talk to a ``vecbox serve`` at ``url``.

    Parameters
    ----------
    url : str
        The server's base URL, e.g. ``"http://127.0.0.1:8000"``.
    api_key : str, optional
        Sent as ``Authorization: Bearer <key>``.
    timeout : float
        Seconds to wait for the server (to connect: at most 5 s).
    retries : int
        Extra attempts of a read after a connection error or a timeout, waiting ``backoff``,
        ``2 * backoff`` ... seconds between them. Writes are attempted once.

    >>> Client("http://localhost:8000/", retries=0).url
    'http://localhost:8000'
    """

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 30.0, retries: int = 3,
                 backoff: float = 0.25) -> None:
        self.url = url.rstrip("/")
        self.retries, self.backoff = int(retries), float(backoff)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers,
                                  timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)))

    def request(self, method: str, path: str, *, body: Any = None, params: Mapping[str, Any] | None = None,
                content: Any = None, idempotent: bool | None = None) -> Any:
        """One API call: ``body`` sent as JSON (NaN included, for the server to refuse), the JSON answer returned."""
        idempotent = method == "GET" if idempotent is None else idempotent
        headers = {}
        if body is not None:
            content = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        attempts = self.retries + 1 if idempotent else 1
        for attempt in range(attempts):
            try:
                response = self._http.request(method, path, content=content, params=params, headers=headers)
                break
            except httpx.TransportError as exc:
                if attempt + 1 < attempts:
                    _sleep(self.backoff * 2 ** attempt)
                    continue
                sent = "the request was not sent" if isinstance(exc, httpx.ConnectError) else \
                    "a write may or may not have been applied" if not idempotent else "no answer"
                tries = f" after {attempts} attempts" if attempts > 1 else " (writes are not retried)"
                raise ServerUnavailableError(
                    f"could not reach the vecbox server at {self.url}{tries}: {type(exc).__name__}: {exc} "
                    f"({sent}); check that `vecbox serve` is running there", None, type(exc).__name__) from None
        if response.status_code >= 400:
            _raise_for(response)
        return response.json()

    def health(self) -> dict[str, Any]:
        """The server's ``/health`` answer (``{"status": "ok", "version": ...}``)."""
        return self.request("GET", "/health")

    def collections(self) -> list[str]:
        """Names of the collections the server holds."""
        return self.request("GET", "/collections")["collections"]

    def create(self, name: str, dim: int | None = None, *, metric: str = "cosine", model: str | None = None,
               lexical: bool | Mapping[str, Any] = True, codec: str | None = None, keep_float: bool = True,
               exist_ok: bool = False) -> "RemoteCollection":
        """Create collection ``name`` on the server (options as in :meth:`Collection.create`)."""
        info = self.request("POST", "/collections", body={
            "name": name, "dim": dim, "metric": metric, "model": model, "lexical": lexical, "codec": codec,
            "keep_float": keep_float, "exist_ok": exist_ok})
        return RemoteCollection(self, name, info)

    def open(self, name: str) -> "RemoteCollection":
        """The server's collection ``name`` (:class:`~vecbox.errors.CollectionNotFoundError` if it has none)."""
        return RemoteCollection(self, name, self.request("GET", f"/collections/{name}"))

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"


class RemoteCollection:
    """One collection on a server, with :class:`~vecbox.collection.Collection`'s methods (over HTTP)."""

    def __init__(self, client: Client, name: str, info: Mapping[str, Any]) -> None:
        self.client, self.name = client, name
        self.dim: int = int(info["dim"])
        self.metric: str = str(info["metric"])
        self.model: str | None = info.get("model")
        self._base = f"/collections/{name}"

    def _call(self, method: str, op: str, body: Any = None, **kw: Any) -> Any:
        return self.client.request(method, f"{self._base}{op}", body=body, **kw)

    def __repr__(self) -> str:
        return f"RemoteCollection({self.client.url!r}, {self.name!r}, dim={self.dim}, metric={self.metric!r})"

    def __len__(self) -> int:
        return self.count()

    # ------------------------------------------------------------------ writes
    def _write(self, op: str, ids: Any, vectors: Any, metadatas: Any, documents: Any) -> int:
        body = {"ids": _as_list(ids) if ids is not None else None, "vectors": _as_list(vectors),
                "metadatas": list(metadatas) if metadatas is not None else None,
                "documents": list(documents) if documents is not None else None}
        return self._call("POST", op, body)["version"]

    def add(self, ids: Sequence[str], vectors: Any, metadatas: Sequence[Mapping[str, Any] | None] | None = None,
            documents: Sequence[str | None] | None = None) -> int:
        """Add new items in one commit; return the new version (an id already stored: DuplicateIdError)."""
        return self._write("/add", ids, vectors, metadatas, documents)

    def upsert(self, ids: Sequence[str], vectors: Any, metadatas: Sequence[Mapping[str, Any] | None] | None = None,
               documents: Sequence[str | None] | None = None) -> int:
        """Add items, replacing stored items with the same id, in one commit; return the new version."""
        return self._write("/upsert", ids, vectors, metadatas, documents)

    def add_texts(self, texts: Sequence[str], ids: Sequence[str] | None = None,
                  metadatas: Sequence[Mapping[str, Any] | None] | None = None, *, upsert: bool = False,
                  commit_every: int = 10_000) -> int:
        """Store texts, encoded by the server with the collection's model; one request and commit per ``commit_every``."""
        texts, version = list(texts), 0
        for start in range(0, max(len(texts), 1), commit_every):
            sl = slice(start, start + commit_every)
            body = {"texts": texts[sl], "ids": list(ids)[sl] if ids is not None else None,
                    "metadatas": list(metadatas)[sl] if metadatas is not None else None}
            version = self._call("POST", "/upsert" if upsert else "/add", body)["version"]
        return version

    def delete(self, ids: Sequence[str] | None = None, *, where: Mapping[str, Any] | None = None,
               missing_ok: bool = False) -> int:
        """Delete by ids and/or filter in one commit; return how many were deleted."""
        body = {"ids": list(ids) if ids is not None else None, "where": where, "missing_ok": missing_ok}
        return self._call("POST", "/delete", body)["deleted"]

    def ingest(self, records: Iterable[Mapping[str, Any]], *, batch_size: int | None = None,
               upsert: bool = False) -> dict[str, Any]:
        """Stream ``{"id", "vector" | "text", "metadata", "document"}`` records as JSONL; the server commits per batch.

        Returns ``{"rows", "batches", "versions", "version"}``. Records are sent as they are
        produced (a generator is never held in memory whole).
        """
        def body() -> Iterator[bytes]:
            chunk: list[bytes] = []
            size = 0
            for rec in records:
                line = {k: _as_list(val) if k == "vector" else val for k, val in rec.items()}
                data = json.dumps(line).encode() + b"\n"
                chunk.append(data)
                size += len(data)
                if size >= INGEST_CHUNK_BYTES:
                    yield b"".join(chunk)
                    chunk, size = [], 0
            if chunk:
                yield b"".join(chunk)

        params: dict[str, Any] = {"upsert": str(bool(upsert)).lower()}
        if batch_size is not None:
            params["batch_size"] = batch_size
        return self._call("POST", "/ingest", content=body(), params=params)

    # ------------------------------------------------------------------- reads
    def get(self, ids: Sequence[str], *, missing_ok: bool = False) -> list[Record]:
        """Stored items by id, in the order asked, as :class:`Record` (float32 vectors)."""
        body = self._call("POST", "/get", {"ids": list(ids), "missing_ok": missing_ok}, idempotent=True)
        return [Record(r["id"], np.asarray(r["vector"], dtype=np.float32), r.get("metadata"), r.get("document"))
                for r in body["records"]]

    def count(self, where: Mapping[str, Any] | None = None) -> int:
        """Live items, optionally only those matching ``where``."""
        params = {"where": json.dumps(where)} if where is not None else None
        return self._call("GET", "/count", params=params)["count"]

    def ids(self, where: Mapping[str, Any] | None = None) -> list[str]:
        """Live ids (optionally matching ``where``), in insertion order."""
        params = {"where": json.dumps(where)} if where is not None else None
        return self._call("GET", "/ids", params=params)["ids"]

    def info(self) -> dict[str, Any]:
        """The collection's settings and sizes (as :meth:`Collection.info`, without the server's path)."""
        return self._call("GET", "")

    @property
    def version(self) -> int:
        """The latest committed version."""
        return int(self.info()["version"])

    # ------------------------------------------------------------------ search
    def _search(self, body: dict[str, Any]) -> "list[Hit] | Explained":
        return _hits(self._call("POST", "/search", body, idempotent=True), bool(body.get("explain")))

    def search(self, query: Any, k: int = 10, *, where: Mapping[str, Any] | None = None, include_metadata: bool = True,
               oversample: float = 4.0, explain: bool = False, ef_search: int | None = None,
               nprobe: int | None = None, exact: bool = False, text: str | None = None, fusion: Any = None,
               candidates: int | None = None) -> "list[Hit] | Explained":
        """The ``k`` nearest items to one query vector (``text=``: hybrid), as :meth:`Collection.search`."""
        return self._search({"vector": _as_list(query), "text": text, "k": k, "where": where,
                             "include_metadata": include_metadata, "oversample": oversample, "explain": explain,
                             "ef_search": ef_search, "nprobe": nprobe, "exact": exact, "fusion": fusion,
                             "candidates": candidates})

    def search_text(self, text: str, k: int = 10, *, mode: str = "dense", where: Mapping[str, Any] | None = None,
                    oversample: float = 4.0, fusion: Any = None, candidates: int | None = None,
                    explain: bool = False, include_metadata: bool = True) -> "list[Hit] | Explained":
        """Search with a text (``mode``: dense, lexical or hybrid); the server encodes it with its loaded model."""
        return self._search({"text": text, "mode": mode, "k": k, "where": where, "oversample": oversample,
                             "fusion": fusion, "candidates": candidates, "explain": explain,
                             "include_metadata": include_metadata})

    def search_lexical(self, text: str, k: int = 10, *, where: Mapping[str, Any] | None = None,
                       include_metadata: bool = True, explain: bool = False) -> "list[Hit] | Explained":
        """BM25 search over the stored documents."""
        return self._search({"text": text, "mode": "lexical", "k": k, "where": where,
                             "include_metadata": include_metadata, "explain": explain})

    # ------------------------------------------------------------------- index
    def build_index(self, kind: str = "hnsw", *, M: int = 32, ef_construction: int = 200,
                    ef_search: int | None = None, nlist: int | None = None, nprobe: int | None = None,
                    storage: str = "flat", target_recall: float | None = 0.95, seed: int = 0) -> dict[str, Any]:
        """Build (or rebuild) the ANN index on the server; return :meth:`index_info`."""
        body = {"kind": kind, "M": M, "ef_construction": ef_construction, "ef_search": ef_search, "nlist": nlist,
                "nprobe": nprobe, "storage": storage, "target_recall": target_recall, "seed": seed}
        return self._call("POST", "/index", body)["index"]

    def drop_index(self) -> None:
        """Remove the ANN index (searches become exact)."""
        self._call("DELETE", "/index")

    def index_info(self) -> dict[str, Any] | None:
        """The ANN index's settings (``None`` without one)."""
        return self._call("GET", "/index")["index"]


__all__ = ["AuthenticationError", "Client", "RemoteCollection", "RequestRejectedError", "ServerError",
           "ServerUnavailableError"]
