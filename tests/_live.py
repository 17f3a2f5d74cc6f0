"""A real ``uvicorn`` server on a free loopback port, in a thread, for the tests that talk HTTP to vecbox."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(app: Any, port: int) -> tuple[Any, threading.Thread]:
    """``app`` served by uvicorn on ``127.0.0.1:port`` in a daemon thread, once it accepts connections."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.02)
    return server, thread


def stop_server(server: Any, thread: threading.Thread) -> None:
    server.should_exit = True
    thread.join(timeout=30)


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """The base URL of ``app`` served on loopback for the duration of the block."""
    port = free_port()
    server, thread = start_server(app, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(server, thread)
