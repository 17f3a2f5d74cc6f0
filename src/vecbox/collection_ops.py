"""``verify`` and ``snapshot`` of :class:`~vecbox.collection.Collection` (a mixin over :mod:`vecbox.storage`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from vecbox.storage.verify import Report


class OperationsMethods:
    """Operator's tools: settings and sizes, a full check, and a consistent copy while the collection stays in use."""

    path: Path
    dim: int
    metric: str
    model: str | None
    _conn: Any
    _state: Any
    _reader: Any
    _mv: dict[str, Any] | None

    def info(self) -> dict[str, Any]:
        """Settings and sizes: dim, metric, model, version, counts, segments, bytes on disk, index, lexical settings."""
        from vecbox.storage import catalog
        from vecbox.storage.segments import dir_size

        return {
            "path": str(self.path), "dim": self.dim, "metric": self.metric, "model": self.model,
            "version": self.version, **catalog.counts(self._conn),  # type: ignore[attr-defined]
            "bytes_on_disk": dir_size(self.path),
            "codec": self.codec,  # type: ignore[attr-defined]
            "keep_float": self._reader.keeps_floats,
            "bytes_per_vector": self._reader.codecs.code_size(self._reader.codecs.cfg) or 4 * self.dim,
            "index": self.index_info(),  # type: ignore[attr-defined]
            "multivector": self._mv,
            "lexical": self.lexical,  # type: ignore[attr-defined]
        }

    def verify(self) -> "Report":
        """Read and check everything the collection references; return a report (changes nothing).

        SQLite's integrity check, every segment file (present, shape, XXH3-64 checksum), token files, the
        codec and the ANN index (loads, checksums, rids) - each problem worded with its fix.

        >>> from vecbox import Collection
        >>> col = Collection.create(tmp + "/c", dim=2)
        >>> _ = col.add(["a"], [[1.0, 0.0]])
        >>> rep = col.verify()
        >>> rep.ok, rep.checked["segment files"]
        (True, 1)
        """
        from vecbox.codecs import load_codec
        from vecbox.index.ann import AnnIndex
        from vecbox.storage.verify import verify

        with self._state:
            codecs = self._reader.codecs
            return verify(self.path, self._conn, self.dim, codecs.code_size(codecs.cfg), load_codec, AnnIndex.load)

    def snapshot(self, dest: str | Path) -> Self:
        """Copy the collection, consistently, to the new directory ``dest`` while others keep reading and writing.

        SQLite's online backup of the catalog plus hard links to the immutable files it references
        (copies across file systems). Returns the snapshot, opened.

        >>> from vecbox import Collection
        >>> col = Collection.create(tmp + "/c", dim=2)
        >>> _ = col.add(["a"], [[1.0, 0.0]])
        >>> copy = col.snapshot(tmp + "/backup")
        >>> [h.id for h in copy.search([1.0, 0.0], 1)], copy.version == col.version
        (['a'], True)
        """
        from vecbox.storage.snapshot import snapshot

        return type(self).open(snapshot(self.path, Path(dest)))


__all__ = ["OperationsMethods"]
