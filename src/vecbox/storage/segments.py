"""Immutable vector segments: one ``.npy`` file per committed batch (plus its codes, with a codec).

A segment is written to a temporary name, fsynced, renamed and its directory
fsynced *before* the SQLite transaction that references it commits. A file no
committed version references is garbage (a writer died before its commit), and
so is a codec directory under ``codecs/`` that the catalog's config does not name.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from vecbox._fs import file_checksum, fsync_dir
from vecbox.errors import CorruptCollectionError

SEGMENT_DIR = "segments"
CODEC_DIR = "codecs"
INDEX_DIR = "indexes"  # ANN indexes: derived caches, one directory each
CODES_SUFFIX = ".codes.npy"
_TMP_PREFIX = "tmp-"


def codes_file(name: str) -> str:
    """File holding the codes of the segment ``name`` (the catalog's ``segments.file``)."""
    return name if name.endswith(CODES_SUFFIX) else name[: -len(".npy")] + CODES_SUFFIX


def has_floats(name: str) -> bool:
    """Whether the segment ``name`` has a float32 file (False for code-only segments, ``keep_float=False``)."""
    return not name.endswith(CODES_SUFFIX)


class _Checksummed:
    """A binary file that keeps the XXH3-64 checksum of everything written to it (np.save writes through it)."""

    def __init__(self, fh: Any) -> None:
        self.fh, self.hash = fh, xxhash.xxh3_64()

    def write(self, data: Any) -> int:
        self.hash.update(data)
        return self.fh.write(data)

    @property
    def digest(self) -> int:
        return self.hash.intdigest()


def write_segment(root: Path, x: np.ndarray | None, codes: np.ndarray | None = None) -> tuple[str, dict[str, int]]:
    """Write a new segment durably under ``root/segments``; return its catalog name and its files' checksums.

    ``x`` (float32 vectors) goes to ``seg-<uuid>.npy`` and ``codes`` (uint8, when the
    collection has a codec) to ``seg-<uuid>.codes.npy``. Each file is written to a
    temporary name, fsynced and renamed; the directory is fsynced once at the end.
    The catalog name is the float file, or the codes file when there are no floats.
    The checksums (``file name -> xxh3`` of the whole file) go to the catalog with the
    segment, so a flipped byte or a file swapped for another is caught when it is read.
    """
    seg_dir = root / SEGMENT_DIR
    stem = f"seg-{uuid.uuid4().hex}"
    names: list[str] = []
    sums: dict[str, int] = {}
    try:
        for arr, name in ((x, f"{stem}.npy"), (codes, f"{stem}{CODES_SUFFIX}")):
            if arr is None:
                continue
            tmp = seg_dir / f"{_TMP_PREFIX}{name}"
            with open(tmp, "wb") as fh:
                out = _Checksummed(fh)
                np.save(out, np.ascontiguousarray(arr), allow_pickle=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, seg_dir / name)
            names.append(name)
            sums[name] = out.digest
        fsync_dir(seg_dir)
    except BaseException:
        for name in names:
            (seg_dir / name).unlink(missing_ok=True)
        raise
    return names[0], sums


def check_file(path: Path, expected: int | None) -> None:
    """Raise :class:`CorruptCollectionError` if ``path``'s XXH3-64 checksum is not ``expected`` (``None``: not recorded)."""
    if expected is not None and file_checksum(path) != expected:
        raise checksum_error(path)


def checksum_error(path: Path) -> CorruptCollectionError:
    """The error for a segment file whose bytes do not match the checksum the catalog recorded."""
    return CorruptCollectionError(
        f"segment file {path} does not match the checksum the catalog recorded for it (flipped bytes, or "
        "another file in its place); restore it from a backup, or re-create the collection from its source data"
    )


def remove_segment(root: Path, name: str) -> None:
    """Delete a segment's files (float and codes); used when its commit failed."""
    for fname in {name, codes_file(name)}:
        (root / SEGMENT_DIR / fname).unlink(missing_ok=True)


def open_segment(root: Path, name: str, n: int, d: int, checksum: int | None = None) -> np.ndarray:
    """Memory-map a committed segment, checking it holds ``n`` float32 vectors of width ``d`` (and its XXH3-64 checksum)."""
    return _open(root / SEGMENT_DIR / name, n, d, np.float32, checksum)


def open_codes(root: Path, name: str, n: int, width: int, checksum: int | None = None) -> np.ndarray:
    """Memory-map the codes of a committed segment, checking they are ``n`` uint8 rows of ``width`` bytes."""
    return _open(root / SEGMENT_DIR / codes_file(name), n, width, np.uint8, checksum)


def _open(path: Path, n: int, d: int, dtype: type, checksum: int | None = None) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise CorruptCollectionError(
            f"segment file {path} is missing but the catalog references it; "
            "restore it from a backup, or re-create the collection from its source data"
        ) from None
    except (ValueError, OSError, EOFError) as exc:
        raise CorruptCollectionError(
            f"segment file {path} is damaged or truncated ({exc}); "
            "restore it from a backup, or re-create the collection from its source data"
        ) from None
    if arr.dtype != dtype or arr.ndim != 2 or arr.shape != (n, d):
        raise CorruptCollectionError(
            f"segment file {path} holds {arr.dtype} {arr.shape}, the catalog expects {np.dtype(dtype)} ({n}, {d}); "
            "restore it from a backup, or re-create the collection from its source data"
        )
    check_file(path, checksum)
    return arr


def segment_file_set(name: str) -> set[str]:
    """The files of the segment ``name``: its float file and/or its codes file."""
    return {name, codes_file(name)}


QUARANTINE_DIR = "quarantine"


def remove_unreferenced(root: Path, keep: set[str], *, evidence_after: float | None = None
                        ) -> tuple[list[str], list[str]]:
    """Delete what no committed version references and nothing must keep; call only under the write lock.

    ``keep`` holds paths relative to ``root`` (referenced files, and retired files a reader may
    still use). Unfinished writes (``tmp-*``) and unreferenced index directories go. A finished
    segment file or codec directory written after ``evidence_after`` (the latest commit's time)
    is not garbage but evidence - a writer died between its write and its commit, or the
    catalog lost commits (a damaged WAL) - so it moves to ``quarantine/`` instead. Returns
    ``(removed, quarantined)`` relative paths. Entries that are not what their place holds (a
    directory named like a segment) are left alone: they are someone else's, not garbage.
    """
    removed: list[str] = []
    quarantined: list[str] = []
    for parent in (SEGMENT_DIR, CODEC_DIR, INDEX_DIR):
        folder = root / parent
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            rel = f"{parent}/{path.name}"
            if rel in keep:
                continue
            if parent == SEGMENT_DIR:
                if not path.is_file() or not (path.name.startswith(_TMP_PREFIX) or path.suffix == ".npy"):
                    continue
            elif not path.is_dir():
                continue
            finished = not path.name.startswith(_TMP_PREFIX) and parent != INDEX_DIR
            if finished and evidence_after is not None and _mtime(path) > evidence_after:
                target = root / QUARANTINE_DIR / parent
                target.mkdir(parents=True, exist_ok=True)
                os.replace(path, target / path.name)
                quarantined.append(rel)
                continue
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(rel)
    return removed, quarantined


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def dir_size(path: Path) -> int:
    """Bytes the files under ``path`` occupy on disk (allocated blocks, not apparent sizes: a 1-row
    segment takes a whole block, which is what many small commits really cost)."""
    total = 0
    for p in path.rglob("*"):
        try:
            st = p.lstat()
        except OSError:  # removed meanwhile
            continue
        if p.is_file():
            total += st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size
    return total
