"""A consistent copy of a live collection: SQLite's online backup plus links to its immutable files.

:func:`snapshot` copies the catalog with SQLite's backup API in one step (one consistent
version, while writers and readers keep working), then hard-links (or, across file
systems, copies) every segment, codec and index file that version references. Those files
are immutable, and a read transaction held on the source for the whole copy keeps the
writer's garbage collection from deleting any of them meanwhile (see
:func:`vecbox.storage.writes.collect_garbage`). The copy is assembled in a hidden sibling of
``dest`` and renamed into place, so a killed snapshot leaves no half-made collection.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from pathlib import Path

from vecbox._fs import fsync_dir
from vecbox.errors import CollectionExistsError
from vecbox.storage import catalog


def snapshot(root: Path, dest: Path) -> Path:
    """Copy the collection at ``root`` to the new directory ``dest`` (absent or empty); return ``dest``."""
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise CollectionExistsError(f"{dest} exists and is not an empty directory; choose a new path for the snapshot")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.snapshot-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    pin = catalog.connect(root)
    try:
        pin.execute("BEGIN")
        pin.execute("SELECT COUNT(*) FROM versions").fetchone()  # pins a snapshot: its files stay until we end
        out = sqlite3.connect(tmp / catalog.CATALOG_FILE)
        try:
            pin.backup(out)  # pages=-1: the whole database in one step, one consistent version
        finally:
            out.close()
        copy = catalog.connect(tmp)
        try:
            wanted = sorted(catalog.referenced_paths(copy))
            copy.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            copy.close()
        (tmp / "segments").mkdir(exist_ok=True)
        for rel in wanted:
            if (root / rel).exists():  # a segment without codes, or codes without floats: the other is absent
                _link_tree(root / rel, tmp / rel)
        fsync_dir(tmp / "segments")
        fsync_dir(tmp)
        try:
            os.rename(tmp, dest)
        except OSError as exc:
            raise CollectionExistsError(f"{dest} was created meanwhile ({exc.strerror}); choose a new path") from None
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        pin.close()
    return dest


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link a file, or every file of a directory (copy where links cannot cross file systems)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        dst.mkdir()
        for child in src.iterdir():
            _link_tree(child, dst / child.name)
        fsync_dir(dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
        with open(dst, "rb") as fh:
            os.fsync(fh.fileno())


__all__ = ["snapshot"]
