"""The ASGI layer in front of every route: refuse encoded path tricks and bodies above the limit.

Runs before routing and before any body is parsed, so a 2 GB upload is cut off at the limit
(from its ``Content-Length``, or by counting a chunked body as it arrives) instead of being
buffered, and ``/collections/%2e%2e`` never reaches a route as ``..``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from vecbox.server.errors import RequestTooLarge
from vecbox.server.security import ENCODED_PATH_TRICKS, Limits

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

INGEST_SUFFIX = "/ingest"


async def _reply(send: Send, status: int, kind: str, message: str) -> None:
    body = json.dumps({"error": {"type": kind, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: 400 for percent-encoded ``/ \\ .`` or NUL in the path, 413 for an oversized body."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("raw_path") or scope.get("path", "").encode()
        if ENCODED_PATH_TRICKS.search(raw.split(b"?", 1)[0]):
            await _reply(send, 400, "PathRefusedError", "the URL path holds a percent-encoded '/', '\\', '.' or NUL; "
                                                        "collection names are plain letters, digits, '_', '.', '-'")
            return
        limit = self.limits.max_ingest_bytes if scope.get("path", "").endswith(INGEST_SUFFIX) \
            else self.limits.max_body_bytes
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _reply(send, 400, "BadRequest", f"Content-Length {declared!r} is not a number")
                return
            if size > limit:
                await _reply(send, 413, "RequestTooLarge", RequestTooLarge(limit).detail)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise RequestTooLarge(limit)
            return message

        await self.app(scope, counted, send)


__all__ = ["Guard"]
