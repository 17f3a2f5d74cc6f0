"""Writes over HTTP: rows of vectors and/or texts as one commit, and JSONL streamed in batches.

Texts are encoded *before* the collection's write lock is taken (encoding takes seconds, a commit
milliseconds), then stored with their text as the document - what ``add_texts`` does, in one
commit. A multi-vector collection stores token vectors per text, so its texts go through
``add_texts`` itself.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from vecbox import _validation as v
from vecbox.errors import InvalidInputError
from vecbox.server.errors import PartialIngest
from vecbox.server.registry import Entry
from vecbox.server.security import Limits

LINE_FIELDS = ("id", "vector", "text", "metadata", "document")


def write_rows(entry: Entry, mode: str, ids: list[Any] | None, vectors: Any, texts: list[Any] | None,
               metadatas: list[Any] | None, documents: list[Any] | None) -> tuple[int, list[str] | None]:
    """Store one batch (``mode``: ``"add"`` or ``"upsert"``) in one commit: ``(version, generated ids or None)``.

    Exactly one of ``vectors`` / ``texts`` holds rows; a ``None`` entry of ``texts`` marks a row
    whose vector is in ``vectors`` instead (a JSONL batch mixing both).
    """
    if vectors is None and texts is None:
        raise InvalidInputError("a write needs vectors (with ids) or texts")
    generated = None
    if texts is not None and vectors is None:
        texts = v.check_documents(texts, len(texts))
        if not texts or any(t is None for t in texts):
            raise InvalidInputError("texts must be a non-empty list of strings")
        if documents is not None:
            raise InvalidInputError("texts are stored as their rows' documents; send documents only with vectors")
        if ids is None:
            ids = generated = [uuid.uuid4().hex for _ in texts]
        if entry.multivector:  # token vectors per text: add_texts encodes them (under the lock)
            entry.text_encoder(loaded=True)
            with entry.writing() as col:
                return col.add_texts(texts, ids, metadatas, upsert=mode == "upsert",
                                     commit_every=max(1, len(texts))), generated
        vectors, documents = entry.encode(texts, "document"), texts
    elif texts is not None:  # mixed: encode the text rows, keep the vector rows
        todo = [i for i, t in enumerate(texts) if t is not None]
        if entry.multivector:
            raise InvalidInputError("a multi-vector collection takes texts only; send no vectors to it")
        encoded = entry.encode([texts[i] for i in todo], "document")
        vectors, documents = list(vectors), list(documents) if documents is not None else [None] * len(texts)
        for j, i in enumerate(todo):
            vectors[i], documents[i] = encoded[j], texts[i]
    if ids is None:
        raise InvalidInputError("vectors need ids: one string per row")
    with entry.writing() as col:
        write = col.add if mode == "add" else col.upsert
        return write(ids, vectors, metadatas, documents), generated


def _parse_line(raw: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise InvalidInputError(f"not valid JSON ({reason}{where}); each line is one JSON object") from None
    if not isinstance(obj, dict):
        raise InvalidInputError(f"a line must be a JSON object; got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(LINE_FIELDS))
    if unknown:
        raise InvalidInputError(f"unknown field(s) {unknown}; a line has {', '.join(LINE_FIELDS)}")
    if "id" not in obj:
        raise InvalidInputError('a line needs an "id"')
    if ("vector" in obj) == ("text" in obj):
        raise InvalidInputError('a line has a "vector" or a "text" (encoded with the collection\'s model), '
                                'exactly one of them')
    if "text" in obj and obj.get("document") is not None:
        raise InvalidInputError('a "text" line stores its text as the document; drop "document"')
    return obj


def _commit(entry: Entry, lines: list[tuple[int, bytes]], upsert: bool) -> int:
    """Parse and store one batch of JSONL lines; a problem raises ``(line number, exception)``."""
    rows = []
    for number, raw in lines:
        try:
            rows.append(_parse_line(raw))
        except InvalidInputError as exc:
            raise _LineError(number, exc) from None
    texts = [r.get("text") for r in rows]
    all_text = all(t is not None for t in texts)
    try:
        version, _ = write_rows(
            entry, "upsert" if upsert else "add", [r["id"] for r in rows],
            None if all_text else [r.get("vector") for r in rows],
            None if all(t is None for t in texts) else texts,
            [r.get("metadata") for r in rows],
            None if all_text else [r.get("document") for r in rows])
    except Exception as exc:
        raise _LineError(lines[0][0], exc, batch=(lines[0][0], lines[-1][0])) from None
    return version


class _LineError(Exception):
    def __init__(self, line: int, cause: Exception, batch: tuple[int, int] | None = None) -> None:
        super().__init__(str(cause))
        self.line, self.cause, self.batch = line, cause, batch


async def ingest(request: Request, entry: Entry, *, upsert: bool, batch_rows: int, limits: Limits) -> dict[str, Any]:
    """Store the JSONL lines of ``request``'s body, ``batch_rows`` lines per commit, as they arrive.

    Returns ``{"rows", "batches", "versions", "version"}``; a bad line, a refused batch or a body
    above the limit raises :class:`~vecbox.server.errors.PartialIngest` (the batches before it stay).
    """
    batch_rows = v.check_positive_int(batch_rows, "batch_size")
    limits.check_rows(batch_rows, "lines per batch (batch_size)")
    stored = {"rows": 0, "batches": 0, "versions": []}
    pending: list[tuple[int, bytes]] = []
    line = 0

    async def flush() -> None:
        try:
            version = await run_in_threadpool(_commit, entry, pending, upsert)
        except _LineError as exc:
            cause = exc.cause
            if exc.batch is not None and isinstance(cause, InvalidInputError):
                cause = type(cause)(f"the batch of lines {exc.batch[0]}-{exc.batch[1]} was refused: {cause}")
            raise PartialIngest(cause, exc.line, stored["rows"], stored["batches"], _last(stored),
                                pending[0][0]) from None
        stored["rows"] += len(pending)
        stored["batches"] += 1
        stored["versions"].append(version)
        pending.clear()

    tail = b""
    try:
        async for chunk in request.stream():
            if b"\n" not in chunk:
                tail += chunk
                continue
            *lines, rest = (tail + chunk).split(b"\n")
            tail = rest
            for raw in lines:
                line += 1
                if raw.strip():
                    pending.append((line, raw))
                    if len(pending) >= batch_rows:
                        await flush()
    except ClientDisconnect:
        return {**stored, "version": _last(stored)}  # nobody reads the answer; the stored batches stay
    except PartialIngest:
        raise
    except Exception as exc:  # the body was cut off at the limit, or the stream broke
        raise PartialIngest(exc, line + 1, stored["rows"], stored["batches"], _last(stored),
                            pending[0][0] if pending else line + 1) from None
    if tail.strip():
        line += 1
        pending.append((line, tail))
    if pending:
        await flush()
    if not stored["batches"]:
        raise InvalidInputError("the request body held no JSONL lines; send one JSON object per line")
    return {**stored, "version": _last(stored)}


def _last(stored: dict[str, Any]) -> int | None:
    return stored["versions"][-1] if stored["versions"] else None


__all__ = ["LINE_FIELDS", "ingest", "write_rows"]
