"""Immutable vector segments: one ``.npy`` file per committed batch.

A segment is written to a temporary name, fsynced, renamed and its directory
fsynced *before* the SQLite transaction that references it commits. A file no
committed version references is garbage (a writer died before its commit).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np

from vecbox.errors import CorruptCollectionError

SEGMENT_DIR = "segments"
_TMP_PREFIX = "tmp-"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_segment(root: Path, x: np.ndarray) -> str:
    """Write ``x`` durably as a new segment file under ``root/segments``; return its file name."""
    seg_dir = root / SEGMENT_DIR
    name = f"seg-{uuid.uuid4().hex}.npy"
    tmp = seg_dir / f"{_TMP_PREFIX}{name}"
    with open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(x), allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, seg_dir / name)
    _fsync_dir(seg_dir)
    return name


def open_segment(root: Path, name: str, n: int, d: int) -> np.ndarray:
    """Memory-map a committed segment, checking it holds ``n`` float32 vectors of width ``d``."""
    path = root / SEGMENT_DIR / name
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
    if arr.dtype != np.float32 or arr.ndim != 2 or arr.shape != (n, d):
        raise CorruptCollectionError(
            f"segment file {path} holds {arr.dtype} {arr.shape}, the catalog expects float32 ({n}, {d}); "
            "restore it from a backup, or re-create the collection from its source data"
        )
    return arr


def remove_unreferenced(root: Path, referenced: set[str]) -> int:
    """Delete segment files no committed version references; call only while holding the write lock."""
    removed = 0
    seg_dir = root / SEGMENT_DIR
    for path in seg_dir.iterdir():
        if path.name not in referenced and (path.name.startswith(_TMP_PREFIX) or path.suffix == ".npy"):
            path.unlink(missing_ok=True)
            removed += 1
    return removed
