"""``vecbox serve ROOT``: the HTTP API over the collections in a directory (FastAPI on uvicorn)."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from vecbox.cli._render import err_console
from vecbox.errors import InvalidInputError

commands = typer.Typer()


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("::1"), is_loopback("0.0.0.0")
    (True, True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def env_keys(var: str) -> list[str]:
    """Comma-separated keys from the environment variable ``var`` (empty entries dropped).

    >>> os.environ["VECBOX_DOCTEST_KEYS"] = "k1, k2,"
    >>> env_keys("VECBOX_DOCTEST_KEYS")
    ['k1', 'k2']
    """
    return [k.strip() for k in os.environ.get(var, "").split(",") if k.strip()]


@commands.command()
def serve(
    root: Annotated[Path, typer.Argument(help="Directory holding the collections (one sub-directory each).")],
    host: Annotated[str, typer.Option(help="Interface to listen on; anything but loopback needs --allow-remote.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key: Annotated[Optional[list[str]], typer.Option(
        "--api-key", help="Read-write key (repeatable; also $VECBOX_API_KEYS, comma-separated).")] = None,
    read_only_key: Annotated[Optional[list[str]], typer.Option(
        "--read-only-key", help="Read-only key (repeatable; also $VECBOX_READ_ONLY_KEYS).")] = None,
    allow_remote: Annotated[bool, typer.Option(
        "--allow-remote", help="Allow listening on a non-loopback interface.")] = False,
    workers: Annotated[int, typer.Option(help="Worker processes (each opens the collections itself).")] = 1,
    max_body_mb: Annotated[int, typer.Option(help="Largest request body, MiB (also of one /ingest).")] = 64,
    max_k: Annotated[int, typer.Option(help="Largest k (and candidates, ef_search) a search may ask for.")] = 10_000,
    max_batch_rows: Annotated[int, typer.Option(help="Most rows in one add / upsert / get / delete.")] = 100_000,
) -> None:
    """Serve the collections under ROOT over HTTP (REST + JSON; a web page at /, OpenAPI docs at /docs)."""
    from vecbox._optional import require

    require("fastapi", "server", "vecbox serve")
    uvicorn = require("uvicorn", "server", "vecbox serve")
    from vecbox.server.app import ENV_KEYS, ENV_LIMITS, ENV_READ_ONLY_KEYS, ENV_ROOT, create_app
    from vecbox.server.security import MiB, Limits

    keys = [*(api_key or []), *env_keys(ENV_KEYS)]
    ro_keys = [*(read_only_key or []), *env_keys(ENV_READ_ONLY_KEYS)]
    if not root.is_dir():
        raise InvalidInputError(f"{root} is not a directory; create it (mkdir -p {root}) or point at the directory "
                                "holding your collections")
    if workers < 1:
        raise InvalidInputError(f"--workers must be >= 1; got {workers}")
    if not is_loopback(host):
        if not allow_remote:
            raise InvalidInputError(f"--host {host} accepts connections from other machines; pass --allow-remote "
                                    "to do that on purpose (and set --api-key), or keep the default 127.0.0.1")
        if not keys and not ro_keys:
            err_console.print(f"[bold yellow]warning:[/] listening on {host} with no API key: anyone who can reach "
                              f"port {port} can read and change every collection under {root}; set --api-key")
    limits = Limits(max_body_bytes=max_body_mb * MiB, max_ingest_bytes=max_body_mb * MiB, max_k=max_k,
                    max_batch_rows=max_batch_rows)
    err_console.print(f"serving {root} on http://{host}:{port} (web page: /, API docs: /docs; "
                      f"{'keys required' if keys or ro_keys else 'no API key'})")
    if workers == 1:
        uvicorn.run(create_app(root, api_keys=keys, read_only_keys=ro_keys, limits=limits), host=host, port=port)
        return
    # Several processes need an import string; each worker rebuilds the app from these variables.
    os.environ[ENV_ROOT] = str(root.resolve())
    os.environ[ENV_KEYS] = ",".join(keys)
    os.environ[ENV_READ_ONLY_KEYS] = ",".join(ro_keys)
    os.environ[ENV_LIMITS] = json.dumps({"max_body_bytes": limits.max_body_bytes, "max_k": max_k,
                                         "max_ingest_bytes": limits.max_ingest_bytes,
                                         "max_batch_rows": max_batch_rows})
    uvicorn.run("vecbox.server.app:app_from_env", factory=True, host=host, port=port, workers=workers)
