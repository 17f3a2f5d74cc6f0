"""vecbox as a service: an HTTP API (FastAPI) over a directory of collections, started by ``vecbox serve``.

- :mod:`~vecbox.server.app` - :func:`create_app`, the endpoints, the search request's dispatch
- :mod:`~vecbox.server.security` - API keys, collection names and paths, request limits
- :mod:`~vecbox.server.middleware` - encoded path tricks and oversized bodies, refused before routing
- :mod:`~vecbox.server.registry` - each collection opened once per process (reader and writer handles)
- :mod:`~vecbox.server.writing` - add / upsert of vectors or texts, streamed JSONL ingest
- :mod:`~vecbox.server.schemas` - request and response bodies (the OpenAPI page at ``/docs``)
- :mod:`~vecbox.server.errors` - every exception as a JSON error with its HTTP status

Needs the ``server`` extra (``pip install 'vecbox[server]'``); :class:`vecbox.client.Client` talks to it.
"""

from __future__ import annotations

from vecbox._optional import require

require("fastapi", "server", "vecbox serve (the HTTP API)")

from vecbox.server.app import create_app  # noqa: E402
from vecbox.server.security import Limits  # noqa: E402

__all__ = ["Limits", "create_app"]
