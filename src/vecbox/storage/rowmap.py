"""A saved row map: a new handle of a big collection starts without reading every row from SQLite.

Before its first search a handle must know each row's rid, segment, position and external
id. At 10^6 rows reading them from the catalog costs about a second (half the SQL, half
making a million tuples). :func:`save` writes them as arrays, at one committed ``(epoch,
version)``, to ``rowmap.bin``; :func:`load` gives them back in about ten milliseconds, and the
live view then reads from the catalog only what was committed after that version - as an
open handle does on every refresh.

The file is derived data, never the truth. It is ignored (and the catalog read as before)
when it fails its checksum, belongs to another epoch, is newer than the catalog, names a
segment the catalog no longer holds as it was, or disagrees with the catalog about its
last row. It is written with a temporary name and renamed, so a reader sees the old file
or the new one; two writers leave one of their files, each valid. No pickle: ids are one
NUL-separated UTF-8 block (ids cannot contain NUL).

The format is one read and one hash: a magic line, the length of a JSON header (uint64), the
header (epoch, version, segments, where each array lies and its dtype, the body's XXH3-64),
then the arrays' raw bytes, each 64-byte aligned. It replaced an ``.npz``, whose zip members
are each copied through a CRC-32 as they are read: at 10^6 rows 30-36 ms of a new handle's
first search, against ~8 ms for the whole file read once and hashed with XXH3.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash

from vecbox.storage import catalog

FILE = "rowmap.bin"
_MAGIC = b"vecbox row map 3\n"  # 3: segment and position as int32, as the live view holds them
_ALIGN = 64
_TMP_PREFIX = "tmp-rowmap-"
ABANDONED_AFTER = 600.0  # seconds: a temporary row map this old belongs to a writer that died
MIN_ROWS = 50_000  # a refresh that read at least this many rows from the catalog saves the map for the next handle
_ARRAYS = {"rids": "<i8", "seg": "<i4", "pos": "<i4", "alive": "|b1", "ids": "|u1"}  # name: dtype
# maps of an earlier format: never read, removed by the next save (a rowmap.bin of format 2 fails the
# magic check, and the next save replaces it)
_OLD_FILES = ("rowmap.npz",)


@dataclass
class RowMap:
    """Every row of a live view at ``version``: rid, segment, position, liveness and id, in rid order."""

    version: int
    rids: np.ndarray  # int64
    seg: np.ndarray  # int32
    pos: np.ndarray  # int32
    alive: np.ndarray  # bool (as loaded, every array is writable: a live view adopts them as they are)
    ids: np.ndarray | bytes  # object (str); as loaded, the NUL-joined UTF-8 block (see decode_ids)
    segments: dict[int, tuple[str, int]]  # seg_id -> (file, rows) of the segments the rows are in


def save(root: Path, epoch: int, rows: RowMap) -> None:
    """Write ``rows`` as the collection's saved row map (best effort: a read-only directory keeps the old one).

    >>> import tempfile; root = Path(tempfile.mkdtemp())
    >>> m = RowMap(3, np.array([1, 2]), np.array([0, 0]), np.array([0, 1]), np.array([True, False]),
    ...            np.array(["a", "b"], dtype=object), {0: ("s0.npy", 2)})
    >>> save(root, 0, m); (root / FILE).exists()
    True
    """
    ids = rows.ids if isinstance(rows.ids, bytes) else "\x00".join(rows.ids.tolist()).encode()
    arrays = {
        "rids": rows.rids.astype(np.int64), "seg": rows.seg.astype(np.int32), "pos": rows.pos.astype(np.int32),
        "alive": rows.alive.astype(bool), "ids": np.frombuffer(ids, dtype=np.uint8),
    }
    places, at = {}, 0
    for name, arr in arrays.items():
        places[name] = [at, arr.nbytes, arr.dtype.str]
        at = -(-(at + arr.nbytes) // _ALIGN) * _ALIGN
    body = bytearray(at)
    for name, arr in arrays.items():
        body[places[name][0] : places[name][0] + arr.nbytes] = arr.tobytes()
    meta = json.dumps({"epoch": epoch, "version": rows.version, "n": len(rows.rids), "arrays": places,
                       "segments": {str(k): list(v) for k, v in rows.segments.items()},
                       "xxh3": xxhash.xxh3_64_intdigest(body)}).encode()
    head = _MAGIC + len(meta).to_bytes(8, "little") + meta
    head += b"\x00" * (-len(head) % _ALIGN)  # the body starts aligned, so each array's view of it is
    _remove_abandoned(root)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".bin", dir=root)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(head)
                fh.write(body)
            os.replace(tmp, root / FILE)
            for old in _OLD_FILES:
                (root / old).unlink(missing_ok=True)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass  # only a speed-up: a handle that cannot write it reads the catalog next time too


def decode_ids(block: bytes) -> np.ndarray:
    """The ids of a saved row map's NUL-joined UTF-8 block, as an object array.

    >>> decode_ids(chr(0).join(["a", "bé"]).encode()).tolist()
    ['a', 'bé']
    """
    return np.array(block.decode().split("\x00"), dtype=object)


def _remove_abandoned(root: Path, older_than: float = ABANDONED_AFTER) -> None:
    """Remove temporary row maps a process left when it died mid-write (older than ``older_than`` s)."""
    now = time.time()
    for path in root.glob(_TMP_PREFIX + "*"):
        try:
            if now - path.stat().st_mtime > older_than:
                path.unlink()
        except OSError:  # gone meanwhile, or not ours to remove
            pass


def load(root: Path, conn: sqlite3.Connection, epoch: int, version: int) -> RowMap | None:
    """The saved row map, if it is intact and agrees with the catalog (read inside the caller's read
    transaction) at ``epoch`` and a version up to ``version``; else ``None``."""
    try:
        with open(root / FILE, "rb", buffering=0) as fh:
            # numpy's buffer, not a bytearray: numpy asks for huge pages for big arrays, and a 32 MB
            # bytearray's first-touch page faults alone took 17-38 ms here against 5-14 ms
            data = memoryview(np.empty(os.fstat(fh.fileno()).st_size, dtype=np.uint8)).cast("B")
            if fh.readinto(data) != len(data) or data[: len(_MAGIC)] != _MAGIC:
                return None
        start = len(_MAGIC) + 8
        size = int.from_bytes(data[len(_MAGIC) : start], "little")
        meta = json.loads(bytes(data[start : start + size]))
        if meta["epoch"] != epoch or not 0 <= meta["version"] <= version:
            return None
        body = data[-(-(start + size) // _ALIGN) * _ALIGN :]
        if xxhash.xxh3_64_intdigest(body) != meta["xxh3"]:
            return None  # damaged
        arrays = {}
        for name, dtype in _ARRAYS.items():
            at, nbytes, kind = meta["arrays"][name]
            if not (kind == dtype and isinstance(at, int) and isinstance(nbytes, int) and 0 <= at
                    and at + nbytes <= len(body)):
                return None
            arrays[name] = np.frombuffer(body[at : at + nbytes], dtype=np.dtype(dtype))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None  # absent, damaged or not ours
    ids = arrays["ids"].tobytes()
    n = meta["n"]
    if n == 0 or any(len(arrays[k]) != n for k in ("rids", "seg", "pos", "alive")) or ids.count(b"\x00") != n - 1:
        return None
    segments = {int(k): (v[0], int(v[1])) for k, v in meta["segments"].items()}
    held = catalog.segment_files(conn)
    if any(held.get(k) != v for k, v in segments.items()):
        return None  # a segment was merged away since: the rows moved
    if catalog.row_id(conn, int(arrays["rids"][-1])) != ids[ids.rfind(b"\x00") + 1 :].decode():
        return None  # another catalog (a file copied over) with the same epoch and version
    return RowMap(meta["version"], arrays["rids"], arrays["seg"], arrays["pos"], arrays["alive"], ids, segments)


__all__ = ["FILE", "MIN_ROWS", "RowMap", "decode_ids", "load", "save"]
