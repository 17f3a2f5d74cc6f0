"""Adapters that let retrieval frameworks use vecbox collections as their vector store.

* :mod:`vecbox.integrations.langchain` - :class:`~vecbox.integrations.langchain.VecboxVectorStore`,
  a LangChain ``VectorStore`` (needs ``langchain-core``);
* :mod:`vecbox.integrations.llamaindex` - :class:`~vecbox.integrations.llamaindex.VecboxLlamaIndexStore`,
  a LlamaIndex vector store (needs ``llama-index-core``).

Both work over a local collection directory or a collection served by ``vecbox serve``
(a :class:`vecbox.client.RemoteCollection`). Importing this package imports neither framework;
each module imports its own, and says which ``pip install`` is missing when it is absent:
``pip install 'vecbox[integrations]'``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from vecbox.errors import CollectionNotFoundError, InvalidInputError

__all__: list[str] = []


def _is_client(obj: Any) -> bool:
    return type(obj).__module__ == "vecbox.client" and type(obj).__name__ == "Client"


class _CollectionRef:
    """The collection an adapter works on, made on the first write when it does not exist yet.

    ``target`` is a local directory (``str`` / ``Path``; with ``name``, the collection is the
    subdirectory ``name``), a :class:`~vecbox.Collection`, a :class:`vecbox.client.RemoteCollection`,
    or a :class:`vecbox.client.Client` together with ``name``. Safe to share between threads
    (LangChain's async methods run the sync ones in a thread pool).
    """

    def __init__(self, target: Any, name: str | None = None, *, metric: str = "cosine") -> None:
        self.metric = metric
        self._lock = threading.Lock()
        self._col: Any = None
        self._path: Path | None = None
        self._client: Any = None
        self._name = name
        if isinstance(target, (str, Path)):
            self._path = Path(target) / name if name else Path(target)
        elif _is_client(target):
            if not name:
                raise InvalidInputError("a vecbox Client needs collection=<name>: the collection on the server to use")
            self._client = target
        elif all(hasattr(target, a) for a in ("search", "upsert", "get", "delete", "dim")):
            if name:
                raise InvalidInputError("collection= names a collection under a path or a Client; "
                                        "a collection object was passed already")
            self._col = target  # a Collection or a RemoteCollection
        else:
            raise InvalidInputError(f"expected a directory path, a vecbox Collection, a RemoteCollection or a Client; "
                                    f"got {type(target).__name__}")

    def get(self) -> Any:
        """The collection, or ``None`` while it does not exist (nothing was added yet)."""
        if self._col is not None:
            return self._col
        with self._lock:
            if self._col is None:
                self._col = self._open()
            return self._col

    def _open(self) -> Any:
        if self._client is not None:
            try:
                return self._client.open(self._name)
            except CollectionNotFoundError:
                return None
        assert self._path is not None
        if self._path.is_dir() and any(self._path.iterdir()):
            from vecbox import Collection

            return Collection.open(self._path)
        return None

    def ensure(self, dim: int) -> Any:
        """The collection, created with width ``dim`` (and ``metric``) if it does not exist."""
        col = self.get()
        if col is not None:
            return col
        with self._lock:
            if self._col is None:
                if self._client is not None:
                    self._col = self._client.create(self._name, dim=dim, metric=self.metric, exist_ok=True)
                else:
                    from vecbox import Collection

                    self._col = Collection.create(self._path, dim=dim, metric=self.metric, exist_ok=True)
            return self._col

    @property
    def current_metric(self) -> str:
        col = self._col
        return str(col.metric) if col is not None else self.metric

    def close(self) -> None:
        """Close a local collection this reference opened (a passed-in object stays open)."""
        with self._lock:
            if self._path is not None and self._col is not None and hasattr(self._col, "close"):
                self._col.close()
                self._col = None
