"""A full check of a collection on disk: SQLite integrity, every file, every checksum, the index.

:func:`verify` reads everything a collection references, the way a careful operator would
before trusting a backup or after a crash, and returns a :class:`Report` of problems, each
saying what is wrong and what to do. It never changes the collection.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vecbox.errors import CorruptCollectionError
from vecbox.storage import catalog
from vecbox.storage.segments import SEGMENT_DIR, codes_file, has_floats, open_codes, open_segment


@dataclass
class Report:
    """What :func:`verify` found: ``ok`` when ``problems`` is empty; ``checked`` counts what was read."""

    path: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def __str__(self) -> str:
        head = f"{self.path}: {'OK' if self.ok else f'{len(self.problems)} problem(s)'} - " + ", ".join(
            f"{v:,} {k}" for k, v in self.checked.items())
        return "\n".join([head, *(f"  problem: {p}" for p in self.problems), *(f"  note: {w}" for w in self.warnings)])


def verify(root: Path, conn: sqlite3.Connection, dim: int, code_size: int | None,
           load_codec: Any = None, load_index: Any = None) -> Report:
    """Check the collection at ``root`` inside one read snapshot of ``conn``.

    ``code_size`` is the width of its codes (``None`` without a codec); ``load_codec(dir)`` and
    ``load_index(dir)`` load the codec and the index (raising :class:`CorruptCollectionError`).
    """
    rep = Report(str(root))
    try:
        result = conn.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        rep.problems.append(f"the SQLite catalog is damaged ({exc}); restore vecbox.sqlite from a backup or snapshot")
        return rep
    if result != [("ok",)]:
        rep.problems.append(f"SQLite integrity check failed: {'; '.join(r[0] for r in result[:5])}; restore the "
                            "catalog from a backup or snapshot")
        return rep
    rep.checked["catalog pages"] = int(conn.execute("PRAGMA page_count").fetchone()[0])
    with catalog.transaction(conn, write=False) as c:
        _segments(root, c, dim, code_size, rep)
        _tokens(root, c, rep)
        codec = catalog.config_value(c, "codec")
        if codec and codec.get("dir") and load_codec is not None:
            try:
                load_codec(root / codec["dir"])
                rep.checked["codec"] = 1
            except CorruptCollectionError as exc:
                rep.problems.append(str(exc))
        index = catalog.config_value(c, "index")
        if index and load_index is not None:
            _index(root, c, index, load_index, rep)
        quarantine = root / "quarantine"
        if quarantine.is_dir() and any(quarantine.rglob("*")):
            rep.warnings.append(f"{quarantine} holds files newer than a commit the catalog lacks; see the warning "
                                "given when they were moved")
    return rep


def _segments(root: Path, conn: sqlite3.Connection, dim: int, code_size: int | None, rep: Report) -> None:
    sums = catalog.segment_checksums(conn)
    counts = catalog.rows_per_segment(conn)
    n_files = 0
    for seg_id, (file, n) in catalog.segment_files(conn).items():
        checksums = sums.get(seg_id, {})
        try:
            if has_floats(file):
                open_segment(root, file, n, dim, checksums.get(file))
                n_files += 1
            if code_size is not None:
                open_codes(root, file, n, code_size, checksums.get(codes_file(file)))
                n_files += 1
        except CorruptCollectionError as exc:
            rep.problems.append(str(exc))
        if not checksums:
            rep.warnings.append(f"segment {file} has no recorded checksum (written before checksums); "
                                "compact() rewrites it with one")
        if counts.get(seg_id, 0) > n:
            rep.problems.append(f"the catalog puts {counts[seg_id]} rows in segment {file}, which holds {n}; "
                                "restore the catalog from a backup")
    bad = catalog.rows_outside_segments(conn)
    if bad:
        rep.problems.append(f"{bad} rows point outside their segments; restore the catalog from a backup")
    rep.checked["segment files"] = n_files
    rep.checked["rows"] = sum(counts.values())


def _tokens(root: Path, conn: sqlite3.Connection, rep: Report) -> None:
    files = catalog.token_files(conn)
    for f in files:
        path = root / SEGMENT_DIR / f
        try:
            mm = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            rep.problems.append(f"token file {path} cannot be read ({exc}); restore it from a backup")
            continue
        end = catalog.token_extent(conn, f)
        if mm.ndim != 2 or mm.shape[0] < end:
            rep.problems.append(f"token file {path} holds {mm.shape}, shorter than the {end} tokens the catalog "
                                "places in it; restore it from a backup")
    if files:
        rep.checked["token files"] = len(files)


def _index(root: Path, conn: sqlite3.Connection, cfg: dict[str, Any], load_index: Any, rep: Report) -> None:
    try:
        ann = load_index(root / cfg["dir"])
    except CorruptCollectionError as exc:
        rep.problems.append(f"{exc} (searches meanwhile run exactly)")
        return
    rep.checked["index rows"] = ann.n
    rids = np.asarray(ann.rids)
    if len(rids) and (np.any(np.diff(rids) <= 0)):
        rep.problems.append("the index's rids are not ascending; rebuild it with build_index() / `vecbox index`")
    known = catalog.existing_rids(conn, rids.tolist())
    if len(known) < len(rids):
        rep.warnings.append(f"{len(rids) - len(known):,} index rows were compacted away; they are never returned, "
                            "and the next compact() rebuilds the index")
    if ann.version > catalog.current_version(conn):
        rep.problems.append(f"the index covers version {ann.version}, newer than the catalog's "
                            f"{catalog.current_version(conn)}; rebuild it with build_index()")


__all__ = ["Report", "verify"]
