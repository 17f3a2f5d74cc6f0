"""The lexical index's durable half: each row's analysed terms, committed with the row.

A row's terms (its document through the collection's :class:`~vecbox.lexical.Analyzer`,
space-joined) go into the ``terms`` table in the transaction that inserts the row, so after a
crash at any moment the lexical index holds exactly the committed documents. Deletes are
the rows' tombstones (the live mask), upserts are new rows, compaction drops the terms of
the rows it drops in its own transaction. Nothing else is stored: the postings a query reads
are rebuilt in RAM from this table (:class:`LexicalView`), incrementally as rows arrive.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

import numpy as np

from vecbox.lexical.bm25 import BM25Index
from vecbox.storage.live import LiveVectors

TERMS_DDL = "CREATE TABLE IF NOT EXISTS terms (rid INTEGER PRIMARY KEY, terms TEXT NOT NULL)"


def has_terms_table(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'terms'").fetchone() is not None


def insert_terms(conn: sqlite3.Connection, seg_id: int, terms: Sequence[str | None]) -> None:
    """Store the terms of the rows just inserted from segment ``seg_id`` (same transaction; ``None``: no document)."""
    conn.execute(TERMS_DDL)
    rids = [r for (r,) in conn.execute("SELECT rid FROM rows WHERE seg_id = ? ORDER BY pos", (seg_id,))]
    pairs = [[r, t] for r, t in zip(rids, terms) if t is not None]
    if pairs:
        conn.execute("INSERT INTO terms(rid, terms) SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') "
                     "FROM json_each(?)", (json.dumps(pairs, ensure_ascii=False),))


def insert_terms_for(conn: sqlite3.Connection, rid_terms: Sequence[tuple[int, str]]) -> None:
    """Store terms for existing rows (building the index of a collection made without one)."""
    conn.execute(TERMS_DDL)
    conn.executemany("INSERT OR REPLACE INTO terms(rid, terms) VALUES (?, ?)", rid_terms)


def drop_dead_terms(conn: sqlite3.Connection) -> None:
    """Delete the terms of rows that no longer exist (compaction, inside its write transaction)."""
    if has_terms_table(conn):
        conn.execute("DELETE FROM terms WHERE rid NOT IN (SELECT rid FROM rows)")


def terms_after(conn: sqlite3.Connection, rid: int) -> list[tuple[int, str]]:
    """``(rid, terms)`` of every row with terms and a larger rid, ascending."""
    if not has_terms_table(conn):
        return []
    return conn.execute("SELECT rid, terms FROM terms WHERE rid > ? ORDER BY rid", (rid,)).fetchall()


def documents_without_terms(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    """``(rid, document)`` of rows with a document but no terms (all of them before the index existed)."""
    if not has_terms_table(conn):
        return conn.execute("SELECT rid, document FROM rows WHERE document IS NOT NULL ORDER BY rid").fetchall()
    return conn.execute("SELECT r.rid, r.document FROM rows r LEFT JOIN terms t ON t.rid = r.rid "
                        "WHERE r.document IS NOT NULL AND t.rid IS NULL ORDER BY r.rid").fetchall()


class LexicalView:
    """BM25 postings of a live view's rows, following the ``terms`` table (call :meth:`refresh` in a read transaction).

    Positions are the live view's; a new live view (compaction: a new epoch, or a codec change)
    starts the postings over.
    """

    def __init__(self, k1: float, b: float) -> None:
        self.k1, self.b = k1, b
        self.index = BM25Index(k1, b)
        self._live: LiveVectors | None = None
        self._epoch = -1
        self._version = -1
        self._max_rid = 0

    def current(self, live: LiveVectors) -> bool:
        """True when the postings already cover ``live`` as it is (no SQL needed)."""
        return live is self._live and live.epoch == self._epoch and live.version == self._version

    def refresh(self, conn: sqlite3.Connection, live: LiveVectors) -> None:
        if live is not self._live or live.epoch != self._epoch:
            self.index = BM25Index(self.k1, self.b)
            self._live, self._epoch, self._max_rid = live, live.epoch, 0
        rows = terms_after(conn, self._max_rid)
        if rows:
            rids = np.fromiter((r for r, _ in rows), np.int64, len(rows))
            held = rids <= (live.rids[-1] if live.n else -1)  # rows newer than the view's snapshot wait
            rids = rids[held]
            if len(rids):
                self.index.append(live.positions(rids), [t.split() for _, t in rows[: len(rids)]])
                self._max_rid = int(rids[-1])
        self._version = live.version


__all__ = ["LexicalView", "TERMS_DDL", "documents_without_terms", "drop_dead_terms", "has_terms_table",
           "insert_terms", "insert_terms_for", "terms_after"]
