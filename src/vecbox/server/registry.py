"""The collections a server process holds open: each opened once, kept with its text model.

Each served collection gets two handles. Reads (searches, gets, counts) share the *reader*
handle, which is safe for concurrent reads and follows every commit on its own; writes go
through a separate *writer* handle, one at a time (a thread lock here, the collection's file lock
across processes). They are separate because one handle's SQLite connection cannot hold a read
snapshot for one thread and a write transaction for another. Text is encoded with the reader's
encoder, so the model is loaded once per process, by whichever request needs it first.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vecbox.errors import CollectionLockedError, CollectionNotFoundError, InvalidInputError
from vecbox.server.security import NAME_PATTERN, collection_path
from vecbox.storage.catalog import CATALOG_FILE

if TYPE_CHECKING:
    from vecbox.collection import Collection
    from vecbox.encoders.text import TextEncoder

#: Model names a client may ask ``create`` for: the bundled model only, since any other value is a
#: path on the server's disk, and loading a model directory runs code the client chose.
SERVED_MODELS = ("default", "all-MiniLM-L6-v2")


@dataclass
class Entry:
    """One served collection: its reader handle, its writer handle (opened on the first write) and locks."""

    name: str
    path: Path
    reader: "Collection"
    lock_timeout: float
    writer: "Collection | None" = None
    multivector: bool = False  # its text searches go through search_text (token vectors, Chamfer rerank)
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    model_lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def writing(self) -> Iterator["Collection"]:
        """The writer handle, held by this thread alone (waits up to ``lock_timeout``, then 503)."""
        if not self.write_lock.acquire(timeout=self.lock_timeout):
            raise CollectionLockedError(f"another request is writing to {self.name!r} and did not finish within "
                                        f"{self.lock_timeout:g} s; retry in a moment")
        try:
            if self.writer is None:
                from vecbox.collection import Collection

                # the reader's encoder object: the model's weights are loaded once, for both handles
                encoder = self.text_encoder() if self.reader.model is not None else None
                self.writer = Collection(self.path, lock_timeout=self.lock_timeout, encoder=encoder)
            yield self.writer
        finally:
            self.write_lock.release()

    def text_encoder(self, *, loaded: bool = False) -> "TextEncoder":
        """The collection's encoder, shared by both handles; ``loaded``: with its weights in memory.

        The first caller loads the weights (seconds); the others wait for it instead of loading
        them again.
        """
        with self.model_lock:
            encoder = self.reader.encoder  # raises "created without a text model" when there is none
            if loaded:
                encoder.model
        return encoder

    def encode(self, texts: list[str], kind: str) -> np.ndarray:
        """Encode ``texts`` (``kind``: ``"query"`` or ``"document"``) with the collection's model."""
        return self.text_encoder(loaded=True).encode(texts, kind=kind)  # type: ignore[arg-type]

    def close(self) -> None:
        for handle in (self.writer, self.reader):
            if handle is not None:
                handle.close()


class Registry:
    """Open collections by name under one root; thread-safe."""

    def __init__(self, root: str | Path, *, lock_timeout: float = 10.0) -> None:
        root = Path(root)
        if not root.is_dir():
            raise CollectionNotFoundError(f"{root} is not a directory; give `vecbox serve` the directory that holds "
                                          "(or will hold) the collections")
        self.root = root.resolve()
        self.lock_timeout = lock_timeout
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()
        self._opening: dict[str, threading.Lock] = {}  # one lock per name: a collection is opened once

    def path(self, name: str) -> Path:
        """The checked directory of ``name`` (see :func:`~vecbox.server.security.collection_path`)."""
        return collection_path(self.root, name)

    def get(self, name: str) -> Entry:
        """The open entry of ``name``, opening it on first use; :class:`CollectionNotFoundError` if there is none.

        A burst of first requests opens the collection once: the others wait for that open (which
        loads the ANN index) instead of each opening, and loading, a handle of their own.
        """
        path = self.path(name)
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None:
                return entry
            opening = self._opening.setdefault(name, threading.Lock())
        with opening:
            with self._lock:
                entry = self._entries.get(name)
            if entry is not None:  # opened by the request this one waited for
                return entry
            if not (path / CATALOG_FILE).is_file():
                raise CollectionNotFoundError(f"there is no collection {name!r} on this server; create it with "
                                              "POST /collections, or list them with GET /collections")
            from vecbox.collection import Collection

            handle = Collection(path, lock_timeout=self.lock_timeout)
            entry = Entry(name, path, handle, self.lock_timeout, multivector=handle.info()["multivector"] is not None)
            with self._lock:
                kept = self._entries.setdefault(name, entry)
            if kept is not entry:  # a create() of the same name registered its own meanwhile
                handle.close()
            return kept

    def create(self, name: str, options: dict[str, Any]) -> Entry:
        """Create collection ``name`` with ``Collection.create`` options (``exist_ok``: or open it)."""
        from vecbox.collection import Collection

        model = options.get("model")
        if model is not None and model not in SERVED_MODELS:
            raise InvalidInputError(f"model {model!r} cannot be chosen over the API; use 'default' (the bundled "
                                    "all-MiniLM-L6-v2), or create the collection on the server with the Python API")
        path = self.path(name)
        with self._lock:
            # closed at once: the writer handle opens on the first write, sharing the reader's encoder
            Collection.create(path, lock_timeout=self.lock_timeout, **options).close()
            entry = self._entries.get(name)
            if entry is not None:  # exist_ok=True on a collection already served: keep its handles
                return entry
            reader = Collection(path, lock_timeout=self.lock_timeout)
            entry = self._entries[name] = Entry(name, path, reader, self.lock_timeout,
                                                multivector=reader.info()["multivector"] is not None)
            return entry

    def names(self) -> list[str]:
        """Names of the collections under the root (plain directories with a catalog; symlinks are skipped)."""
        out = []
        for child in sorted(self.root.iterdir()):
            if (NAME_PATTERN.fullmatch(child.name) and ".." not in child.name and not child.is_symlink()
                    and child.is_dir() and (child / CATALOG_FILE).is_file()):
                out.append(child.name)
        return out

    def close(self) -> None:
        """Close every handle (the server's shutdown)."""
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            entry.close()


__all__ = ["Entry", "Registry", "SERVED_MODELS"]
