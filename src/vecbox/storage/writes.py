"""The write protocol: every change to a collection's files and catalog, in the order that survives a crash.

Each write makes its new files durable first (written to a temporary name, fsynced,
renamed, directory fsynced: :mod:`vecbox.storage.segments`), then commits one SQLite
transaction that references them (:mod:`vecbox.storage.catalog`), and only then removes
what no committed version references any more. A process killed at any point leaves
either the old version or the new one; files written for a commit that never happened
are garbage, collected by the next writer (:func:`collect_garbage`). Files a commit stops
referencing are *retired*, not deleted: a reader whose snapshot predates the commit may still
read them, so they go only when SQLite shows no such reader (or after :data:`RETIRED_GRACE`).

Three writes exist, and the crash tests (``tests/test_durability.py``) kill processes
inside each of them:

* :func:`append_batch` - ``add`` / ``upsert`` / ``add_multi``: one new segment (plus a token
  segment for a multi-vector batch), its rows, tombstones for the rows it replaces;
* :func:`rewrite_all` - ``compact`` / ``recompress``: one segment holding every live row,
  tombstones dropped, optionally a new codec, the epoch bumped;
* :func:`commit_index` - ``build_index`` / ``drop_index``: the index directory, then the config
  that names it.

The caller holds the collection's write lock around each call.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vecbox.storage import catalog
from vecbox.storage.codec_state import CodecConfig
from vecbox.storage.terms import drop_dead_terms, insert_terms
from vecbox._fs import fsync_dir
from vecbox.errors import CollectionExistsError
from vecbox.storage.segments import (
    CODEC_DIR,
    INDEX_DIR,
    SEGMENT_DIR,
    QUARANTINE_DIR,
    codes_file,
    has_floats,
    open_codes,
    open_segment,
    remove_segment,
    remove_unreferenced,
    write_segment,
)

RETIRED_GRACE = 600.0  # seconds a retired file is kept for readers whose snapshot SQLite cannot vouch for


class _Tokens(Protocol):
    x: np.ndarray  # (N, token_dim) float32, every item's tokens concatenated
    offsets: np.ndarray  # (n + 1,) int64


class _Index(Protocol):
    version: int

    @property
    def kind(self) -> str: ...

    def save(self, path: Path) -> Any: ...


def create_collection(path: Path, config: dict[str, Any]) -> None:
    """Make the collection directory ``path`` (absent or empty) atomically: all of it, or nothing.

    The catalog and folders are made in a hidden sibling directory, fsynced, then renamed onto
    ``path`` (rename replaces an empty directory), so a process killed midway leaves ``path``
    as it was - absent or empty - and at most a ``.<name>.creating-*`` folder beside it.
    """
    tmp = path.parent / f".{path.name}.creating-{uuid.uuid4().hex[:12]}"
    tmp.mkdir(parents=True)
    try:
        (tmp / SEGMENT_DIR).mkdir()
        if config.get("codec") is not None:
            (tmp / CODEC_DIR).mkdir()
        conn = catalog.connect(tmp, create=True)
        try:
            catalog.initialise(conn, config)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the whole catalog in vecbox.sqlite before the rename
        finally:
            conn.close()
        for sub in (tmp / SEGMENT_DIR, tmp):
            fsync_dir(sub)
        try:
            os.rename(tmp, path)
        except OSError as exc:  # another process created it first (the directory is no longer empty)
            raise CollectionExistsError(f"{path} was created meanwhile ({exc.strerror}); open it instead") from None
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def append_batch(root: Path, conn: sqlite3.Connection, operation: str, ids: Sequence[str],
                 metadatas: Sequence[str | None], documents: Sequence[str | None],
                 floats: np.ndarray | None, codes: np.ndarray | None, *, replaced: Mapping[str, int],
                 fitted_codec: CodecConfig | None = None, tokens: _Tokens | None = None,
                 terms: Sequence[str | None] | None = None) -> int:
    """Commit one batch of rows; return its version.

    ``replaced`` maps ids to the rids of live rows this batch tombstones (an upsert);
    ``fitted_codec`` is the codec config to commit with the batch when the codec was fitted
    on it (its directory is already durable); ``tokens`` are a multi-vector batch's token
    vectors, written to their own segment; ``terms`` the rows' analysed documents for the
    lexical index (:mod:`vecbox.storage.terms`). On any error nothing is committed and the files
    written for the batch are removed.
    """
    tok_name = None
    try:
        if tokens is not None:
            tok_name, _ = write_segment(root, tokens.x)
        name, sums = write_segment(root, floats, codes)
    except BaseException:
        if tok_name is not None:
            remove_segment(root, tok_name)
        raise
    try:
        with catalog.transaction(conn) as c:
            version = catalog.log_version(c, operation, len(ids), len(replaced))
            if fitted_codec is not None:
                catalog.set_config(c, "codec", fitted_codec.to_json())
                catalog.bump_epoch(c)
            if replaced:
                catalog.tombstone(c, list(replaced.values()), version)
            seg_id = catalog.insert_segment(c, name, len(ids), version, sums)
            catalog.insert_rows(c, seg_id, version, ids, metadatas, documents)
            if tokens is not None:
                catalog.insert_tokens(c, seg_id, tok_name, tokens.offsets)
            if terms is not None:
                insert_terms(c, seg_id, terms)
    except BaseException:
        remove_segment(root, name)
        if tok_name is not None:
            remove_segment(root, tok_name)
        raise
    return version


MERGE_FACTOR = 10  # segments of one size tier merged into one (Lucene's TieredMergePolicy default segsPerTier)
MERGE_BELOW = 10_000  # rows: bigger segments are already efficient; only compaction rewrites them


def tier(n: int) -> int:
    """Size tier of a segment of ``n`` rows: 0 for 1-9 rows, 1 for 10-99, ... (base MERGE_FACTOR)."""
    t = 0
    while n >= MERGE_FACTOR:
        n //= MERGE_FACTOR
        t += 1
    return t


def merge_small_segments(root: Path, conn: sqlite3.Connection, dim: int, code_size: int | None) -> int:
    """Merge every size tier holding MERGE_FACTOR small segments or more into one segment; return merges done.

    A tiered policy as in Lucene or an LSM store, for segments under MERGE_BELOW rows: a
    collection written one row at a time keeps at most ``MERGE_FACTOR - 1`` segments per tier,
    and each row is rewritten once per tier. Each merge is one commit of the usual protocol -
    the merged file durable first, then the rows re-pointed and the old segments dropped in
    one transaction, the old files retired. Rows keep their rids (and tombstones), so indexes,
    caches and readers' views stay valid; a reader re-points its rows on its next refresh.
    """
    merges = 0
    while True:
        by_tier: dict[int, list[tuple[int, str, int]]] = {}
        for seg_id, (file, n) in sorted(catalog.segment_files(conn).items()):
            if n < MERGE_BELOW:
                by_tier.setdefault(tier(n), []).append((seg_id, file, n))
        full = [segs for _, segs in sorted(by_tier.items()) if len(segs) >= MERGE_FACTOR]
        if not full:
            if merges:
                collect_garbage(root, conn)
            return merges
        _merge(root, conn, full[0], dim, code_size)
        merges += 1


def _merge(root: Path, conn: sqlite3.Connection, segs: list[tuple[int, str, int]], dim: int,
           code_size: int | None) -> None:
    """One merge: the segments' files concatenated in order, so a row's new position is its segment's offset + pos."""
    sums = catalog.segment_checksums(conn)

    def joined(opener: Any, width: int, name_of: Any) -> np.ndarray:
        # a damaged source is never merged into a "good" file: each is checked against its XXH3-64 checksum
        return np.concatenate([opener(root, f, n, width, sums.get(s, {}).get(name_of(f))) for s, f, n in segs])

    x = joined(open_segment, dim, str) if all(has_floats(f) for _, f, _ in segs) else None
    codes = joined(open_codes, code_size, codes_file) if code_size is not None else None
    name, new_sums = write_segment(root, x, codes)
    offsets = np.concatenate([[0], np.cumsum([n for *_, n in segs])[:-1]]).tolist()
    try:
        with catalog.transaction(conn) as c:
            before = catalog.referenced_paths(c)
            version = catalog.log_version(c, "merge", 0, 0)
            seg_id = catalog.insert_segment(c, name, sum(n for *_, n in segs), version, new_sums)
            catalog.repoint_segments(c, seg_id, [(s, off) for (s, _, _), off in zip(segs, offsets)])
            retire_dropped(c, before)
    except BaseException:
        remove_segment(root, name)
        raise


def delete_rows(conn: sqlite3.Connection, rids: Sequence[int]) -> int:
    """Tombstone ``rids`` in one commit (inside the caller's write transaction); return the version."""
    version = catalog.log_version(conn, "delete", 0, len(rids))
    catalog.tombstone(conn, rids, version)
    return version


def rewrite_all(root: Path, conn: sqlite3.Connection, operation: str, rids: Sequence[int],
                floats: np.ndarray | None, codes: np.ndarray | None, *,
                new_codec: CodecConfig | None = None, codec_changes: bool = False) -> int:
    """Replace every segment by one holding the rows ``rids`` (in that order); return the version.

    Tombstoned rows are dropped and the epoch bumped (readers reload). With
    ``codec_changes`` the commit also switches the codec config to ``new_codec``
    (``None``: float vectors), whose directory must already be durable. Old files are
    collected after the commit.
    """
    name, sums = write_segment(root, floats, codes) if len(rids) else (None, None)
    tok = _live_tokens(root, conn, set(rids))  # a multi-vector collection's surviving tokens, in one file
    try:
        with catalog.transaction(conn) as c:
            before = catalog.referenced_paths(c)
            version = catalog.log_version(c, operation, 0, 0)
            catalog.drop_tombstones(c)
            drop_dead_terms(c)
            if tok is not None:
                catalog.move_tokens(c, *tok)
            seg_id = catalog.insert_segment(c, name, len(rids), version, sums) if name is not None else None
            catalog.move_rows(c, seg_id, list(rids))
            if codec_changes:
                catalog.set_config(c, "codec", new_codec.to_json() if new_codec is not None else None)
            catalog.bump_epoch(c)
            retire_dropped(c, before)
    except BaseException:
        for made in (name, tok[0] if tok else None):
            if made is not None:
                remove_segment(root, made)
        raise
    collect_garbage(root, conn)
    return version


def _live_tokens(root: Path, conn: sqlite3.Connection, keep: set[int]) -> tuple[str, list[int], list[int]] | None:
    """Write the tokens of the rows ``keep`` into one new token file: ``(file, rids, starts)`` (``None``: no tokens).

    Without this a compaction would keep every token file any survivor points into - 12 of 15 MiB
    when 1 of 5,000 items survives.
    """
    rows = [r for r in catalog.token_rows(conn) if r[0] in keep]
    if not rows:
        return None
    maps: dict[str, np.ndarray] = {}
    parts = []
    for _, file, start, count in rows:
        mm = maps.get(file)
        if mm is None:
            mm = maps[file] = np.load(root / SEGMENT_DIR / file, mmap_mode="r", allow_pickle=False)
        parts.append(mm[start:start + count])
    starts = np.concatenate([[0], np.cumsum([c for *_, c in rows])[:-1]]).tolist()
    name, _ = write_segment(root, np.concatenate(parts).astype(np.float32, copy=False))
    return name, [r[0] for r in rows], starts


def commit_index(root: Path, conn: sqlite3.Connection, index: _Index | None) -> dict[str, Any] | None:
    """Save ``index`` in a new directory and point the catalog at it (``None``: drop the index).

    Returns the catalog's new ``index`` config. The previous index directory is collected.
    """
    rel = None
    if index is not None:
        rel = f"{INDEX_DIR}/{index.kind}-{uuid.uuid4().hex}"
        index.save(root / rel)
    cfg = None if index is None else {"dir": rel, "kind": index.kind, "version": index.version}
    try:
        with catalog.transaction(conn) as c:
            before = catalog.referenced_paths(c)
            catalog.set_config(c, "index", cfg)
            retire_dropped(c, before)
    except BaseException:
        if rel is not None:
            shutil.rmtree(root / rel, ignore_errors=True)
        raise
    collect_garbage(root, conn)
    return cfg


def collect_garbage(root: Path, conn: sqlite3.Connection) -> tuple[list[str], list[str]]:
    """Delete files no committed version references once no reader can use them; return (removed, quarantined).

    Retired files (dropped by a commit, :func:`retire_dropped`) wait until no reader holds a
    snapshot older than the latest commit, or :data:`RETIRED_GRACE` seconds. Finished files
    newer than the latest commit are quarantined, with a warning (see
    :func:`~vecbox.storage.segments.remove_unreferenced`).
    """
    keep = catalog.referenced_paths(conn)
    waiting = catalog.retired(conn)
    if waiting:
        clear = catalog.no_older_readers(conn)
        cutoff = time.time() - RETIRED_GRACE
        releasable = [n for n, t in waiting.items() if clear or t < cutoff]
        keep |= set(waiting) - set(releasable)
    else:
        releasable = []
    removed, quarantined = remove_unreferenced(root, keep, evidence_after=catalog.last_commit_time(conn))
    catalog.forget_retired(conn, releasable)
    if quarantined:
        warnings.warn(
            f"{root}: {len(quarantined)} finished file(s) newer than the latest commit were moved to "
            f"{root / QUARANTINE_DIR} (first: {quarantined[0]}): a writer died before committing them, or the "
            "catalog lost commits (a damaged WAL). The collection is consistent without them; keep them if recent "
            "writes are missing, delete the folder otherwise", RuntimeWarning, stacklevel=3)
    return removed, quarantined


def collect_if_unlocked(root: Path, conn: sqlite3.Connection, lock: Any, *, best_effort: bool = False) -> None:
    """:func:`collect_garbage` if no writer holds ``lock`` (never waits for it).

    ``best_effort``: a failure (a full disk, a busy catalog) is left to the next writer instead of raised.
    """
    if not lock.try_acquire():
        return
    try:
        collect_garbage(root, conn)
    except (OSError, sqlite3.Error):
        if not best_effort:
            raise
    finally:
        lock.release()


def retire_dropped(conn: sqlite3.Connection, before: set[str]) -> None:
    """Inside a write transaction: record the paths of ``before`` that the catalog no longer references."""
    catalog.retire(conn, sorted(before - catalog.referenced_paths(conn)))


__all__ = ["MERGE_BELOW", "MERGE_FACTOR", "RETIRED_GRACE", "append_batch", "create_collection", "merge_small_segments", "collect_garbage", "collect_if_unlocked", "commit_index", "delete_rows", "retire_dropped",
           "rewrite_all"]
