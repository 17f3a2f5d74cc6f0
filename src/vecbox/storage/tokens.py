"""The multi-vector field: per-row token vectors in immutable segment files, located by the catalog.

A multi-vector collection stores, for every row, a variable number of token
vectors (late interaction, ColBERT-style). They go to their own segment files
(``segments/seg-<uuid>.npy``, float32 ``(N, d)``, written and fsynced before the
commit like every segment), and one catalog table says where each row's tokens
are::

    tokens(rid INTEGER PRIMARY KEY, file TEXT, start INTEGER, count INTEGER)

Its rows are inserted in the same transaction as the rows they belong to, so a
crash leaves either both or neither. The row's own vector is its MUVERA document
FDE, so filters, ANN indexes and exact search work on multi-vector rows unchanged.
Compaction drops the token rows of deleted rows; a token file no row refers to
any more is garbage. The table's SQL lives with the rest in :mod:`vecbox.storage.catalog`
(``insert_tokens``, ``locate_tokens``, ``token_files``); this module maps the files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vecbox.errors import CorruptCollectionError
from vecbox.storage.segments import SEGMENT_DIR


class TokenFiles:
    """Memory maps of token files, opened once per handle (files are immutable)."""

    def __init__(self, root: Path, dim: int) -> None:
        self.root = root
        self.dim = dim
        self._maps: dict[str, np.ndarray] = {}

    def retain(self, files: set[str]) -> None:
        """Release the maps of files no longer referenced (compacted away), so their space can be freed."""
        for f in [f for f in self._maps if f not in files]:
            del self._maps[f]

    def get(self, file: str, start: int, count: int) -> np.ndarray:
        mm = self._maps.get(file)
        if mm is None:
            path = self.root / SEGMENT_DIR / file
            try:
                mm = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise CorruptCollectionError(
                    f"token file {path} cannot be read ({exc}); restore it from a backup, or re-add the items"
                ) from None
            if mm.dtype != np.float32 or mm.ndim != 2 or mm.shape[1] != self.dim:
                raise CorruptCollectionError(
                    f"token file {path} holds {mm.dtype} {mm.shape}, expected float32 (N, {self.dim}); "
                    "restore it from a backup, or re-add the items"
                )
            self._maps[file] = mm
        if start + count > mm.shape[0]:
            raise CorruptCollectionError(
                f"token file {self.root / SEGMENT_DIR / file} is shorter than the catalog says; restore it from a backup"
            )
        return np.asarray(mm[start:start + count])


