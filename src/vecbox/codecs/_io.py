"""Saving and loading a fitted codec without pickle: ``codec.json`` plus one ``.npy`` per array.

The directory is written under a temporary name, every file is fsynced, then the
directory is renamed into place and its parent fsynced, so a crash leaves either
no codec or a complete one. ``codec.json`` records each array's shape, dtype and
SHA-256; loading checks all three, so a truncated or altered file raises
:class:`CorruptCollectionError` naming the file instead of returning wrong codes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from vecbox._fs import fsync_dir
from vecbox.errors import CollectionExistsError, CorruptCollectionError

CONFIG_FILE = "codec.json"
FORMAT_NAME = "vecbox-codec"
FORMAT_VERSION = 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_codec_dir(path: Path, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``config`` (JSON) and ``arrays`` (``.npy``) durably into the new directory ``path``."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise CollectionExistsError(f"{path} already exists and is not empty; save the codec to a new directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        files: dict[str, Any] = {}
        for key, arr in arrays.items():
            arr = np.ascontiguousarray(arr)
            fname = f"{key}.npy"
            with open(tmp / fname, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
                fh.flush()
                os.fsync(fh.fileno())
            files[key] = {"file": fname, "dtype": arr.dtype.str, "shape": list(arr.shape),
                          "sha256": _sha256(tmp / fname)}
        doc = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **config, "arrays": files}
        with open(tmp / CONFIG_FILE, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        fsync_dir(tmp)
        if path.exists():
            path.rmdir()
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_codec_dir(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a directory written by :func:`write_codec_dir`, checking every array against the config."""
    path = Path(path)
    cfg_path = path / CONFIG_FILE
    remedy = "restore the directory from a backup, or fit and save the codec again (Collection.recompress)"
    try:
        doc = json.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptCollectionError(f"codec directory {path} has no {CONFIG_FILE}; {remedy}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptCollectionError(f"codec file {cfg_path} is damaged ({exc}); {remedy}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise CorruptCollectionError(f"{cfg_path} is not a vecbox codec file (no {FORMAT_NAME!r} tag); {remedy}")
    if doc.get("format_version") != FORMAT_VERSION:
        raise CorruptCollectionError(
            f"{cfg_path} uses codec format {doc.get('format_version')}; this vecbox reads format {FORMAT_VERSION}. "
            "Upgrade vecbox, or refit the codec"
        )
    arrays: dict[str, np.ndarray] = {}
    for key, meta in (doc.get("arrays") or {}).items():
        try:
            fpath = path / meta["file"]
            expect = (np.dtype(meta["dtype"]), tuple(meta["shape"]), meta["sha256"])
        except (KeyError, TypeError) as exc:
            raise CorruptCollectionError(f"{cfg_path}: entry for array {key!r} is malformed ({exc}); {remedy}") from None
        if not fpath.is_file():
            raise CorruptCollectionError(f"codec array file {fpath} is missing; {remedy}")
        if _sha256(fpath) != expect[2]:
            raise CorruptCollectionError(
                f"codec array file {fpath} is damaged or truncated (SHA-256 differs from {CONFIG_FILE}); {remedy}"
            )
        try:
            arr = np.load(fpath, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise CorruptCollectionError(f"codec array file {fpath} is unreadable ({exc}); {remedy}") from None
        if arr.dtype != expect[0] or arr.shape != expect[1]:
            raise CorruptCollectionError(
                f"codec array file {fpath} holds {arr.dtype} {arr.shape}, {CONFIG_FILE} says "
                f"{expect[0]} {expect[1]}; {remedy}"
            )
        arrays[key] = arr
    return doc, arrays
