"""One handle's read state: the live view, the codec and the commit watch, kept at the latest commit.

:class:`Reader` is what a search reads from. :meth:`Reader.sync` asks, without SQL when it
can (the WAL index header, :class:`~vecbox.storage.watch.CommitWatch`), whether any
connection committed since the last look, and only then refreshes - codec first (a
compaction or recompress may have changed the code size), then the live vectors, then
the name of the current ANN index (loading it is the query layer's job) - in one read
transaction, so everything it holds belongs to one committed version.
"""

from __future__ import annotations

import sqlite3
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from vecbox.codecs import Codec
from vecbox.storage import catalog
from vecbox.storage.codec_state import CodecConfig, CodecState
from vecbox.storage.live import LiveVectors
from vecbox.storage.watch import CommitWatch


class Reader:
    """The live view (``live``), codec state (``codecs``) and current index config of one collection handle.

    Not thread-safe on its own: the collection holds its state lock around every call.
    """

    def __init__(self, root: Path, conn: sqlite3.Connection, dim: int, metric: str) -> None:
        self.root = root
        self.dim = dim
        self.metric = metric
        self.codecs = CodecState(root, dim)
        self.live = self._new_live(None)
        self.index_cfg: dict[str, Any] | None = None  # the catalog's `index` config at the last refresh
        catalog.limit_wal(conn)
        self._watch = CommitWatch(conn, root)
        self._seen: tuple[int, int] | None = None  # (data_version, total_changes) at the last refresh
        self._watched: tuple[bytes | None, int] = (None, -1)  # (wal-index header, total_changes) then
        self.sync_codec(conn)

    def close(self) -> None:
        self._watch.close()

    # ------------------------------------------------------------------ state
    @property
    def codec(self) -> Codec | None:
        """The codec whose codes the live view holds (``None``: the view holds float vectors)."""
        return self.codecs.codec if self.live.code_size is not None else None

    @property
    def keeps_floats(self) -> bool:
        return self.codecs.keeps_floats

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        """Float vectors of live-view rows: stored floats, or decoded codes when only codes are kept."""
        return self.codecs.vectors(self.live, positions)

    @property
    def float_rows(self) -> Any:
        """The live view's rows (an array or :class:`~vecbox._rows.RowChunks`) when they are the float
        vectors themselves (no codec), for a rescore that reads them in place; else ``None``."""
        return self.live.x if self.live.code_size is None else None

    def _new_live(self, cfg: CodecConfig | None) -> LiveVectors:
        return LiveVectors(self.root, self.dim, keep_sq_norms=self.metric == "l2", code_size=self.codecs.code_size(cfg))

    def adopt_codec(self, cfg: CodecConfig | None, codec: Codec | None) -> None:
        """After this handle committed a new codec (recompress): hold it, and a live view of its codes."""
        self.codecs.set(cfg, codec)
        self.live = self._new_live(cfg)

    # ---------------------------------------------------------------- refresh
    def sync_codec(self, conn: sqlite3.Connection) -> None:
        """Follow codec changes committed by any process, resizing the live view if the code size changed."""
        state = self.codecs
        if state.sync(conn) and state.code_size(state.cfg) != self.live.code_size:
            self.live = self._new_live(state.cfg)

    def refresh(self, conn: sqlite3.Connection) -> None:
        """Bring codec, live view and index config to the transaction's snapshot (call inside one)."""
        self.sync_codec(conn)
        self.live.refresh(conn)
        self.index_cfg = catalog.config_value(conn, "index")

    def sync(self, conn: sqlite3.Connection, *, in_transaction: bool) -> bool:
        """:meth:`refresh`, but only if something was committed since the last one; True if it refreshed.

        ``PRAGMA data_version`` changes when another connection commits, ``total_changes``
        when this handle's own connection writes. An unchanged WAL index header spares the
        PRAGMA outside a transaction: nobody committed since the last check.
        """
        watched = (self._watch.header(), conn.total_changes)
        if not in_transaction and watched[0] is not None and watched == self._watched:
            return False
        # In a read transaction the PRAGMA always runs: it pins the transaction's snapshot now,
        # so the SQL that follows (metadata, filters) reads the version the live view shows.
        # The header was read first: a commit after it changes it again and is seen next time.
        seen = (conn.execute("PRAGMA data_version").fetchone()[0], watched[1])
        refreshed = seen != self._seen
        if refreshed:
            with (nullcontext(conn) if in_transaction else catalog.transaction(conn, write=False)) as c:
                self.refresh(c)
            self._seen = seen
        self._watched = watched
        return refreshed


__all__ = ["Reader"]
