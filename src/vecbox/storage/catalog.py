"""The SQLite catalog: ids, metadata, documents, segment list and the version log.

One SQLite transaction (WAL mode, ``synchronous=FULL``) is the commit point of
every write. Rows are never updated in place by add/upsert/delete: a delete or
an upsert writes a tombstone (``deleted`` = the version that removed the row);
only compaction rewrites rows.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vecbox.errors import CollectionNotFoundError, CorruptCollectionError

CATALOG_FILE = "vecbox.sqlite"
FORMAT_NAME = "vecbox-collection"
FORMAT_VERSION = 1

_SCHEMA = """
CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE versions (
    version INTEGER PRIMARY KEY,
    committed_at REAL NOT NULL,
    operation TEXT NOT NULL,
    added INTEGER NOT NULL,
    deleted INTEGER NOT NULL
);
CREATE TABLE segments (
    seg_id INTEGER PRIMARY KEY,
    file TEXT NOT NULL UNIQUE,
    n INTEGER NOT NULL,
    version INTEGER NOT NULL,
    checksums TEXT  -- JSON {file name: XXH3-64 checksum} of the segment's files (NULL in collections made before)
);
CREATE TABLE rows (
    rid INTEGER PRIMARY KEY,  -- grows with every insert, rows leave only by compaction (a new epoch)
    id TEXT NOT NULL,
    seg_id INTEGER NOT NULL REFERENCES segments(seg_id),
    pos INTEGER NOT NULL,
    metadata TEXT,
    document TEXT,
    added INTEGER NOT NULL,
    deleted INTEGER
);
CREATE UNIQUE INDEX rows_live_id ON rows(id) WHERE deleted IS NULL;
CREATE INDEX rows_deleted ON rows(deleted) WHERE deleted IS NOT NULL;
"""


class _CatalogConnection(sqlite3.Connection):
    """A catalog connection that knows its WAL file, so a writer can keep that file small."""

    wal_path: Path | None = None
    wal_retry_at: int = 0  # WAL size at which a checkpoint that found readers busy is tried again


def connect(root: Path, create: bool = False) -> sqlite3.Connection:
    """Open the catalog of the collection at ``root`` (autocommit mode; transactions are explicit).

    Opening an existing catalog writes nothing until the file is known to be vecbox's: one not in
    WAL mode is switched to WAL only after its ``config`` table shows vecbox's format tag, so a
    foreign SQLite file named ``vecbox.sqlite`` is refused (:class:`CollectionNotFoundError`)
    byte for byte as it was, with no ``-wal`` / ``-shm`` file left beside it.

    >>> from pathlib import Path
    >>> foreign = Path(tmp)
    >>> sqlite3.connect(foreign / CATALOG_FILE).execute("CREATE TABLE t (x)").connection.close()
    >>> connect(foreign)
    Traceback (most recent call last):
    ...
    vecbox.errors.CollectionNotFoundError: ... does not hold a vecbox collection: ...
    """
    path = root / CATALOG_FILE
    if not create and not path.is_file():
        raise CollectionNotFoundError(
            f"{root} is not a vecbox collection (no {CATALOG_FILE}); "
            "create one with Collection.create(path, dim=...) or `vecbox create PATH`"
        )
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S,
                               factory=_CatalogConnection)
        conn.wal_path = path.with_name(path.name + "-wal")
        if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":  # a read: changes nothing
            if not create:
                try:
                    row = conn.execute("SELECT value FROM config WHERE key = 'format'").fetchone()
                except sqlite3.OperationalError as exc:
                    if not str(exc).startswith("no such"):  # no config table (or column): another program's file
                        raise
                    row = None
                if row is None or row[0] != json.dumps(FORMAT_NAME):
                    raise CollectionNotFoundError(
                        f"{root} does not hold a vecbox collection: {path} is an SQLite database without vecbox's "
                        "format tag (left untouched); check the path, or create a collection in an empty directory"
                    )
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        raise CorruptCollectionError(
            f"{path} is not a readable SQLite catalog ({exc}); restore it from a backup"
        ) from None
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    return conn


WAL_LIMIT = 16 << 20  # bytes the WAL file is cut back to when SQLite restarts it
WAL_TRUNCATE_AT = 8 << 20  # a writer past this WAL size checkpoints it and truncates it to zero
_TRUNCATE_WAIT_MS = 250  # how long that checkpoint waits for readers still using the WAL
BUSY_TIMEOUT_S = 30.0


def limit_wal(conn: sqlite3.Connection) -> None:
    """Keep the WAL file small: cut it back to :data:`WAL_LIMIT` whenever it restarts (readers stop it shrinking)."""
    conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")


def bound_wal(conn: sqlite3.Connection) -> None:
    """After a commit: once the WAL passes :data:`WAL_TRUNCATE_AT`, checkpoint it whole and truncate it.

    SQLite's automatic checkpoint is passive: it copies frames up to the oldest reader's
    snapshot and the file restarts from its beginning only when no reader uses it, so under
    readers that never pause (many small commits, searches between them) it grows past any
    ``journal_size_limit``. A ``TRUNCATE`` checkpoint waits (briefly) for the readers of old
    frames to finish - new readers then read the database file - and empties the file. If
    readers stay busy the wait gives up and is not tried again until the file has grown a
    quarter of the threshold more, so a long reader costs a writer one short wait, not one per commit.
    """
    wal = getattr(conn, "wal_path", None)
    if wal is None:
        return
    try:
        size = os.stat(wal).st_size
    except OSError:
        return
    if size < max(WAL_TRUNCATE_AT, conn.wal_retry_at):  # type: ignore[attr-defined]
        return
    try:
        conn.execute(f"PRAGMA busy_timeout={_TRUNCATE_WAIT_MS}")
        try:
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    except sqlite3.Error:  # the commit stands; a checkpoint that could not run is tried again later
        busy = 1
    conn.wal_retry_at = size + WAL_TRUNCATE_AT // 4 if busy else 0  # type: ignore[attr-defined]


def initialise(conn: sqlite3.Connection, config: dict[str, Any]) -> None:
    """Create the schema and write the collection's configuration (version 0)."""
    with transaction(conn):
        for stmt in _SCHEMA.strip().split(";"):
            if stmt.strip():
                conn.execute(stmt)
        full = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "epoch": 0, **config}
        conn.executemany(
            "INSERT INTO config(key, value) VALUES (?, ?)", [(k, json.dumps(v)) for k, v in full.items()]
        )
        conn.execute(
            "INSERT INTO versions(version, committed_at, operation, added, deleted) VALUES (0, ?, 'create', 0, 0)",
            (time.time(),),
        )


def _damage_is_corrupt(fn: Any) -> Any:
    """Reads that may run outside a transaction word a damaged catalog as :class:`CorruptCollectionError`."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if type(exc) is not sqlite3.DatabaseError:
                raise
            raise CorruptCollectionError(f"the catalog is damaged ({exc}); restore the collection from a backup or "
                                         "a snapshot (Collection.verify() lists what is readable)") from None
    return wrapper


@contextmanager
def transaction(conn: sqlite3.Connection, write: bool = True) -> Iterator[sqlite3.Connection]:
    """One SQLite transaction: ``BEGIN IMMEDIATE`` for writers, a snapshot for readers."""
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield conn
    except BaseException as exc:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.DatabaseError:  # a damaged catalog may refuse even that; the error below says why
            pass
        if type(exc) is sqlite3.DatabaseError:  # "database disk image is malformed" and the like
            raise CorruptCollectionError(f"the catalog is damaged ({exc}); restore the collection from a backup or "
                                         "a snapshot (Collection.verify() lists what is readable)") from None
        raise
    else:
        conn.execute("COMMIT")
        if write:
            bound_wal(conn)


def read_config(conn: sqlite3.Connection, root: Path) -> dict[str, Any]:
    """Read and check the configuration table: format tag and version, ``dim`` (an int >= 1), ``metric``.

    A damaged table (an unreadable page, a value that is not JSON, an impossible ``dim`` or
    ``metric``) raises :class:`CorruptCollectionError` naming the file and the value found.

    >>> from vecbox import Collection
    >>> Collection.create(tmp + "/c", dim=3).close()
    >>> conn = connect(Path(tmp) / "c")
    >>> {k: v for k, v in read_config(conn, Path(tmp) / "c").items() if k in ("dim", "metric")}
    {'dim': 3, 'metric': 'cosine'}
    """
    from vecbox._validation import METRICS  # the bottom layer: no cycle

    path = root / CATALOG_FILE

    def shown(value: Any) -> str:  # the value and, where repr alone could mislead ('1' vs 1), its JSON type
        kinds = {str: "a string", bool: "a bool", int: "an int", float: "a float", list: "a list", dict: "an object"}
        kind = kinds.get(type(value))
        return f"{value!r} ({kind})" if kind and not isinstance(value, type(None)) else repr(value)

    try:
        rows = conn.execute("SELECT key, value FROM config").fetchall()
    except sqlite3.DatabaseError as exc:
        if str(exc).startswith("no such"):
            raise CollectionNotFoundError(
                f"{root} does not hold a vecbox collection: {path} has no vecbox config table; check the path"
            ) from None
        raise CorruptCollectionError(
            f"{path} is damaged ({exc}); restore the collection from a backup"
        ) from None
    config: dict[str, Any] = {}
    for key, value in rows:
        try:
            config[key] = json.loads(value)
        except (TypeError, ValueError, RecursionError):
            raise CorruptCollectionError(
                f"{path} is damaged: its config value {key!r} is not JSON ({value!r:.60}); "
                "restore the collection from a backup"
            ) from None
    if config.get("format") != FORMAT_NAME:
        raise CollectionNotFoundError(f"{root} does not hold a vecbox collection (catalog has no vecbox format tag)")
    version = config.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise CorruptCollectionError(
            f"{path} has format_version {shown(version)}; this vecbox reads format {FORMAT_VERSION} (an int). "
            "Upgrade vecbox if the collection is newer, or re-create it (or restore it from a backup)"
        )
    dim = config.get("dim")
    if type(dim) is not int or dim < 1:
        raise CorruptCollectionError(
            f"{path} is damaged: dim {shown(dim)} is not a positive integer; restore the collection from a backup"
        )
    metric = config.get("metric")
    if not isinstance(metric, str) or metric not in METRICS:
        raise CorruptCollectionError(
            f"{path} is damaged: metric {shown(metric)} is not one of {', '.join(METRICS)}; "
            "restore the collection from a backup"
        )
    return config


@_damage_is_corrupt
def current_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT MAX(version) FROM versions").fetchone()[0])


def epoch(conn: sqlite3.Connection) -> int:
    return int(json.loads(conn.execute("SELECT value FROM config WHERE key='epoch'").fetchone()[0]))


def log_version(conn: sqlite3.Connection, operation: str, added: int, deleted: int) -> int:
    """Append the next version to the log (inside the caller's write transaction)."""
    version = current_version(conn) + 1
    conn.execute(
        "INSERT INTO versions(version, committed_at, operation, added, deleted) VALUES (?, ?, ?, ?, ?)",
        (version, time.time(), operation, added, deleted),
    )
    return version


@_damage_is_corrupt
def live_rids_for_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, int]:
    """Map the given external ids to the rids of their live rows (missing ids are absent)."""
    out: dict[str, int] = {}
    for chunk_start in range(0, len(ids), 30000):
        chunk = ids[chunk_start : chunk_start + 30000]
        cur = conn.execute(
            "SELECT id, rid FROM rows WHERE deleted IS NULL AND id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(chunk)),),
        )
        out.update(cur.fetchall())
    return out


def insert_rows(conn: sqlite3.Connection, seg_id: int, version: int, ids: Sequence[str],
                metadatas: Sequence[str | None], documents: Sequence[str | None]) -> None:
    """Insert one segment's rows (positions 0..n-1) in one statement: the batch is one JSON parameter
    expanded by ``json_each``, about three times faster than ``executemany`` with six parameters a row."""
    if all(m is None for m in metadatas) and all(d is None for d in documents):
        conn.execute(
            "INSERT INTO rows(id, seg_id, pos, metadata, document, added) "
            "SELECT value, ?, key, NULL, NULL, ? FROM json_each(?)",
            (seg_id, version, json.dumps(list(ids), ensure_ascii=False)),
        )
        return
    conn.execute(
        "INSERT INTO rows(id, seg_id, pos, metadata, document, added) "
        "SELECT json_extract(value, '$[0]'), ?, key, json_extract(value, '$[1]'), json_extract(value, '$[2]'), ? "
        "FROM json_each(?)",
        (seg_id, version, json.dumps(list(zip(ids, metadatas, documents)), ensure_ascii=False)),
    )


def segment_files(conn: sqlite3.Connection) -> dict[int, tuple[str, int]]:
    return {seg_id: (file, n) for seg_id, file, n in conn.execute("SELECT seg_id, file, n FROM segments")}


def config_value(conn: sqlite3.Connection, key: str, default: Any = None) -> Any:
    """One value of the config table (``default`` when the key is absent, e.g. older collections)."""
    row = conn.execute("SELECT value FROM config WHERE key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row is not None else default


def set_config(conn: sqlite3.Connection, key: str, value: Any) -> None:
    """Insert or replace one config value (inside the caller's write transaction)."""
    conn.execute("INSERT OR REPLACE INTO config(key, value) VALUES (?, ?)", (key, json.dumps(value)))


def bump_epoch(conn: sqlite3.Connection) -> int:
    """Advance the epoch (inside a write transaction): readers reload everything on their next refresh."""
    new = epoch(conn) + 1
    set_config(conn, "epoch", new)
    return new


# ------------------------------------------------------------------ statements over rows and segments
# Every other module asks these (filters compile to a fragment, ``where_sql``, pasted only here).
def _json(values: Sequence[Any]) -> str:
    return json.dumps(list(values))


def insert_segment(conn: sqlite3.Connection, file: str, n: int, version: int,
                   checksums: dict[str, int] | None = None) -> int:
    """Record a new segment file and its files' checksums (inside the caller's write transaction); return its id."""
    if not _has_column(conn, "segments", "checksums"):  # a collection made before checksums: add the column
        conn.execute("ALTER TABLE segments ADD COLUMN checksums TEXT")
    return int(conn.execute("INSERT INTO segments(file, n, version, checksums) VALUES (?, ?, ?, ?)",
                            (file, n, version, json.dumps(checksums) if checksums else None)).lastrowid)


def _has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))


def segment_checksums(conn: sqlite3.Connection) -> dict[int, dict[str, int]]:
    """``seg_id -> {file name: XXH3-64 checksum}`` of segments whose checksums were recorded."""
    if not _has_column(conn, "segments", "checksums"):
        return {}
    return {seg_id: json.loads(c) for seg_id, c in
            conn.execute("SELECT seg_id, checksums FROM segments WHERE checksums IS NOT NULL")}


def tombstone(conn: sqlite3.Connection, rids: Sequence[int], version: int) -> None:
    """Mark live rows deleted by ``version`` (delete, or replaced by an upsert)."""
    conn.execute("UPDATE rows SET deleted = ? WHERE deleted IS NULL AND rid IN (SELECT value FROM json_each(?))",
                 (version, _json(rids)))


def matching_rids(conn: sqlite3.Connection, where_sql: tuple[str, list[Any]] | None = None,
                  among: Sequence[int] | None = None) -> list[int]:
    """Rids of live rows matching a compiled filter (``None``: every live row), optionally only ``among`` these."""
    sql, params = where_sql or ("1", [])
    if among is None:
        cur = conn.execute(f"SELECT rid FROM rows WHERE deleted IS NULL AND ({sql})", params)
    else:
        cur = conn.execute(f"SELECT rid FROM rows WHERE deleted IS NULL AND rid IN (SELECT value FROM json_each(?)) "
                           f"AND ({sql})", [_json(among), *params])
    return [r for (r,) in cur]


@_damage_is_corrupt
def count_matching(conn: sqlite3.Connection, where_sql: tuple[str, list[Any]] | None = None,
                   among: Sequence[int] | None = None) -> int:
    """How many rows match: live rows (``among=None``), or the rows ``among`` (live or not: a sample)."""
    sql, params = where_sql or ("1", [])
    if among is None:
        row = conn.execute(f"SELECT COUNT(*) FROM rows WHERE deleted IS NULL AND ({sql})", params).fetchone()
    else:
        row = conn.execute(f"SELECT COUNT(*) FROM rows WHERE rid IN (SELECT value FROM json_each(?)) AND ({sql})",
                           [_json(among), *params]).fetchone()
    return int(row[0])


@_damage_is_corrupt
def matching_ids(conn: sqlite3.Connection, where_sql: tuple[str, list[Any]] | None = None) -> list[str]:
    """External ids of live rows matching a compiled filter, in insertion order."""
    sql, params = where_sql or ("1", [])
    return [i for (i,) in conn.execute(f"SELECT id FROM rows WHERE deleted IS NULL AND ({sql}) ORDER BY rid", params)]


def fetch_rows(conn: sqlite3.Connection, rids: Sequence[int],
               with_payload: bool = True) -> dict[int, tuple[str, Any, Any]]:
    """``rid -> (id, metadata, document)`` of the given rows (metadata parsed from JSON)."""
    if not len(rids):
        return {}
    cols = "rid, id, metadata, document" if with_payload else "rid, id, NULL, NULL"
    cur = conn.execute(f"SELECT {cols} FROM rows WHERE rid IN (SELECT value FROM json_each(?))", (_json(rids),))
    return {rid: (i, json.loads(m) if m is not None else None, doc) for rid, i, m, doc in cur}


@_damage_is_corrupt
def counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Live rows, tombstones and segment files of the catalog."""
    live, dead = conn.execute("SELECT COUNT(*) - COUNT(deleted), COUNT(deleted) FROM rows").fetchone()
    return {"count": int(live), "tombstones": int(dead),
            "segments": int(conn.execute("SELECT COUNT(*) FROM segments").fetchone()[0])}


def rows_after(conn: sqlite3.Connection, rid: int) -> list[tuple[int, int, int, str]]:
    """``(rid, seg_id, pos, id)`` of every row with a larger rid, ascending (a live view's refresh, in one pass)."""
    return conn.execute("SELECT rid, seg_id, pos, id FROM rows WHERE rid > ? ORDER BY rid", (rid,)).fetchall()


def row_id(conn: sqlite3.Connection, rid: int) -> str | None:
    """External id of the row ``rid`` (``None`` when there is none)."""
    row = conn.execute("SELECT id FROM rows WHERE rid = ?", (rid,)).fetchone()
    return None if row is None else row[0]


def deleted_since(conn: sqlite3.Connection, version: int) -> list[tuple[int]]:
    """Rids tombstoned by a version after ``version``."""
    return conn.execute("SELECT rid FROM rows WHERE deleted IS NOT NULL AND deleted > ?", (version,)).fetchall()


def repoint_segments(conn: sqlite3.Connection, seg_id: int, moves: Sequence[tuple[int, int]]) -> None:
    """Rows of each old segment ``s`` move to ``seg_id`` at ``offset + pos`` (``moves``: (s, offset)); drop them."""
    conn.execute("CREATE INDEX IF NOT EXISTS rows_seg ON rows(seg_id)")  # made on the first merge
    for old, offset in moves:
        conn.execute("UPDATE rows SET seg_id = ?, pos = pos + ? WHERE seg_id = ?", (seg_id, offset, old))
        conn.execute("DELETE FROM segments WHERE seg_id = ?", (old,))


def positions_of(conn: sqlite3.Connection, lo: int, hi: int) -> list[tuple[int, int, int]]:
    """``(rid, seg_id, pos)`` of the rows ``lo <= rid <= hi``, by rid (a live view re-pointing merged rows)."""
    return conn.execute("SELECT rid, seg_id, pos FROM rows WHERE rid >= ? AND rid <= ? ORDER BY rid",
                        (lo, hi)).fetchall()


def rows_per_segment(conn: sqlite3.Connection) -> dict[int, int]:  # noqa: D103
    return dict(conn.execute("SELECT seg_id, COUNT(*) FROM rows GROUP BY seg_id").fetchall())


def rows_outside_segments(conn: sqlite3.Connection) -> int:
    """Rows whose segment is missing from the catalog or whose position lies outside it (verify)."""
    return int(conn.execute("SELECT COUNT(*) FROM rows r LEFT JOIN segments s ON s.seg_id = r.seg_id "
                            "WHERE s.seg_id IS NULL OR r.pos < 0 OR r.pos >= s.n").fetchone()[0])


def token_extent(conn: sqlite3.Connection, file: str) -> int:
    """Tokens the catalog places in the token file ``file`` (its end offset)."""
    return int(conn.execute("SELECT MAX(start + count) FROM tokens WHERE file = ?", (file,)).fetchone()[0] or 0)


def existing_rids(conn: sqlite3.Connection, rids: Sequence[int]) -> set[int]:
    """Those of ``rids`` the rows table holds (live or tombstoned)."""
    return {r for (r,) in conn.execute("SELECT rid FROM rows WHERE rid IN (SELECT value FROM json_each(?))",
                                       (_json(rids),))}


def has_rows_below(conn: sqlite3.Connection, rid: int) -> bool:
    return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM rows WHERE rid < ?)", (rid,)).fetchone()[0])


def read_metadata_fields(cur: sqlite3.Cursor, paths: Sequence[str], lower: int, upper: int,
                         json_types: Sequence[str]) -> None:
    """Run on ``cur`` the read of JSON ``paths`` of rows ``lower <= rid <= upper`` (:mod:`vecbox.query.columns`).

    Rows give ``(rid - lower) * 16 + kind0, value0, kind1, value1, ...``; a kind is the 1-based position of
    the value's ``json_type`` in ``json_types`` (0: missing). Packing saves a Python object per row.
    """
    k = len(paths)
    case = "CASE json_type(metadata, ?{i}) " + " ".join(
        f"WHEN '{name}' THEN {code}" for code, name in enumerate(json_types, start=1)) + " ELSE 0 END"
    value = "json_extract(metadata, ?{i})"
    kinds = [case.format(i=i + 1) for i in range(k)]
    select = ", ".join([f"(rid - ?{k + 1}) * 16 + {kinds[0]}", value.format(i=1)]
                       + [f"{kinds[i]}, {value.format(i=i + 1)}" for i in range(1, k)])
    cur.execute(f"SELECT {select} FROM rows WHERE rid >= ?{k + 1} AND rid <= ?{k + 2} ORDER BY rid",
                (*paths, lower, upper))


def drop_tombstones(conn: sqlite3.Connection) -> None:
    """Delete tombstoned rows and their tokens for good (compaction, inside its write transaction)."""
    conn.execute("DELETE FROM rows WHERE deleted IS NOT NULL")
    if _has_tokens(conn):
        conn.execute("DELETE FROM tokens WHERE rid NOT IN (SELECT rid FROM rows)")


def move_rows(conn: sqlite3.Connection, seg_id: int | None, rids: Sequence[int]) -> None:
    """Point ``rids`` at positions 0.. of segment ``seg_id`` and drop every other segment (``None``: all)."""
    if seg_id is None:
        conn.execute("DELETE FROM segments")
        return
    conn.executemany("UPDATE rows SET seg_id = ?, pos = ? WHERE rid = ?",
                     zip(itertools.repeat(seg_id), range(len(rids)), rids))
    conn.execute("DELETE FROM segments WHERE seg_id != ?", (seg_id,))


# ------------------------------------------------------------------ the multi-vector field's tokens table
TOKENS_DDL = ("CREATE TABLE IF NOT EXISTS tokens (rid INTEGER PRIMARY KEY, file TEXT NOT NULL, "
              "start INTEGER NOT NULL, count INTEGER NOT NULL)")


def _has_tokens(conn: sqlite3.Connection) -> bool:
    return _has_table(conn, "tokens")


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def insert_tokens(conn: sqlite3.Connection, seg_id: int, file: str, offsets: Any) -> None:
    """Record where the tokens of the rows just inserted from segment ``seg_id`` are (same transaction)."""
    conn.execute(TOKENS_DDL)
    rids = [r for (r,) in conn.execute("SELECT rid FROM rows WHERE seg_id = ? ORDER BY pos", (seg_id,))]
    starts, ends = list(offsets[:-1]), list(offsets[1:])
    conn.execute(
        "INSERT INTO tokens(rid, file, start, count) SELECT json_extract(value, '$[0]'), ?, "
        "json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each(?)",
        (file, json.dumps([[r, int(s), int(e) - int(s)] for r, s, e in zip(rids, starts, ends)])),
    )


def token_rows(conn: sqlite3.Connection) -> list[tuple[int, str, int, int]]:
    """``(rid, file, start, count)`` of every row's tokens, by rid (compaction rewrites them)."""
    if not _has_tokens(conn):
        return []
    return conn.execute("SELECT rid, file, start, count FROM tokens ORDER BY rid").fetchall()


def move_tokens(conn: sqlite3.Connection, file: str, rids: Sequence[int], starts: Sequence[int]) -> None:
    """Point the tokens of ``rids`` at ``file`` from ``starts`` on (counts unchanged; inside a write transaction)."""
    conn.executemany("UPDATE tokens SET file = ?, start = ? WHERE rid = ?",
                     zip(itertools.repeat(file), [int(s) for s in starts], rids))


def token_files(conn: sqlite3.Connection) -> set[str]:
    """Token files some row refers to (kept by garbage collection)."""
    if not _has_tokens(conn):
        return set()
    return {f for (f,) in conn.execute("SELECT DISTINCT file FROM tokens")}


def locate_tokens(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, tuple[str, int, int]]:
    """``id -> (file, start, count)`` of the tokens of live rows among ``ids``."""
    if not len(ids) or not _has_tokens(conn):
        return {}
    cur = conn.execute(
        "SELECT r.id, t.file, t.start, t.count FROM rows r JOIN tokens t ON t.rid = r.rid "
        "WHERE r.deleted IS NULL AND r.id IN (SELECT value FROM json_each(?))", (_json(ids),))
    return {i: (f, s, c) for i, f, s, c in cur}


def referenced_paths(conn: sqlite3.Connection) -> set[str]:
    """Every file and directory the committed catalog references, relative to the collection root.

    Segment files (``segments/<file>`` and its codes file), token files, the codec directory
    and the index directory: what garbage collection must keep.
    """
    from vecbox.storage.segments import segment_file_set, SEGMENT_DIR  # (no cycle: segments imports no catalog)

    out = set()
    for f, _ in segment_files(conn).values():
        out.update(f"{SEGMENT_DIR}/{name}" for name in segment_file_set(f))
    out.update(f"{SEGMENT_DIR}/{f}" for f in token_files(conn))
    for key in ("codec", "index"):
        value = config_value(conn, key)
        if value and value.get("dir"):
            out.add(value["dir"])
    return out


# ------------------------------------------------------------------ retired files
# A write that stops referencing files (compaction, recompress, a new index) records them here,
# in its own commit. They are deleted only once no reader can still use them: when SQLite's WAL
# bookkeeping shows no reader holds a snapshot older than the latest commit, or RETIRED_GRACE
# seconds after they were retired (a reader stuck that long re-reads its snapshot anyway).
RETIRED_DDL = "CREATE TABLE IF NOT EXISTS retired (name TEXT PRIMARY KEY, retired_at REAL NOT NULL)"


def retire(conn: sqlite3.Connection, names: Sequence[str]) -> None:
    """Record files no longer referenced as of this (write) transaction's commit."""
    if names:
        conn.execute(RETIRED_DDL)
        now = time.time()
        conn.executemany("INSERT OR REPLACE INTO retired(name, retired_at) VALUES (?, ?)", [(n, now) for n in names])


def retired(conn: sqlite3.Connection) -> dict[str, float]:
    """``name -> time retired`` of files waiting to be deleted."""
    if not _has_table(conn, "retired"):
        return {}
    return dict(conn.execute("SELECT name, retired_at FROM retired").fetchall())


def forget_retired(conn: sqlite3.Connection, names: Sequence[str]) -> None:
    """Drop deleted files from the retired list (its own small commit)."""
    if names:
        with transaction(conn):
            conn.execute("DELETE FROM retired WHERE name IN (SELECT value FROM json_each(?))", (_json(names),))


def no_older_readers(conn: sqlite3.Connection) -> bool:
    """True when no connection holds a read snapshot older than the latest commit.

    A passive checkpoint copies WAL frames into the database up to the oldest reader's
    snapshot only, so "every frame checkpointed" means every active reader sees the latest
    commit (SQLite's own snapshot bookkeeping: https://www.sqlite.org/wal.html#concurrency).
    """
    busy, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return busy == 0 and done == log


def last_commit_time(conn: sqlite3.Connection) -> float:
    return float(conn.execute("SELECT MAX(committed_at) FROM versions").fetchone()[0])
