"""Ragged token sets: a variable number of d-dimensional vectors per item.

vecbox keeps them as one concatenated float32 matrix ``x`` ``(N, d)`` plus int64
``offsets`` ``(n + 1,)``: item ``i`` owns ``x[offsets[i]:offsets[i + 1]]``. This is
what :class:`~vecbox.encoders.tokens.TokenEncoder` returns and what a collection
stores on disk; a list of ``(n_i, d)`` arrays is accepted too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vecbox._validation import as_matrix
from vecbox.errors import DimensionMismatchError, InvalidInputError


@dataclass(frozen=True)
class TokenSets:
    """A validated ragged batch: ``x`` (N, d) float32 and ``offsets`` (n + 1,) int64."""

    x: np.ndarray
    offsets: np.ndarray

    @property
    def n(self) -> int:
        """Number of items."""
        return int(self.offsets.shape[0] - 1)

    @property
    def d(self) -> int:
        return int(self.x.shape[1])

    @property
    def counts(self) -> np.ndarray:
        """Tokens per item, int64 (n,)."""
        return np.diff(self.offsets)

    def item_of_token(self) -> np.ndarray:
        """Item index of every row of ``x``, int64 (N,)."""
        return np.repeat(np.arange(self.n, dtype=np.int64), self.counts)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.x[self.offsets[i] : self.offsets[i + 1]]

    def take(self, items: np.ndarray) -> TokenSets:
        """The sub-batch of ``items`` (any order, repeats allowed), gathered without a Python loop."""
        items = np.asarray(items, dtype=np.int64)
        starts = self.offsets[items]
        counts = self.offsets[items + 1] - starts
        offsets = np.zeros(items.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        rows = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1], dtype=np.int64)
        return TokenSets(np.ascontiguousarray(self.x[rows]), offsets)


def as_token_sets(
    token_sets: Any, offsets: Any = None, *, d: int | None = None, name: str = "token_sets"
) -> TokenSets:
    """Validate ragged input into :class:`TokenSets`.

    Parameters
    ----------
    token_sets : list of (n_i, d) arrays, or (N, d) array, or (x, offsets) tuple, or TokenSets
        A list holds one token matrix per item (``(0, d)`` for an item without tokens).
        A 2-D array needs ``offsets``; a 2-tuple ``(x, offsets)`` is what
        :meth:`TokenEncoder.encode <vecbox.encoders.tokens.TokenEncoder.encode>` returns.
    offsets : array of int, optional
        ``(n + 1,)``, starting at 0, non-decreasing, ending at ``N``.
    d : int, optional
        Required token width.

    Examples
    --------
    >>> ts = as_token_sets([np.ones((2, 3)), np.zeros((1, 3))])
    >>> ts.x.shape, ts.offsets.tolist()
    ((3, 3), [0, 2, 3])
    >>> as_token_sets(np.ones((3, 3)), [0, 1, 3]).counts.tolist()
    [1, 2]
    """
    if isinstance(token_sets, TokenSets) and offsets is None:
        out = token_sets
    else:
        if (
            offsets is None
            and isinstance(token_sets, tuple)
            and len(token_sets) == 2
            and np.ndim(token_sets[1]) == 1
            and np.ndim(token_sets[0]) == 2
        ):
            token_sets, offsets = token_sets
        if offsets is not None:
            out = _from_concatenated(token_sets, offsets, name)
        elif isinstance(token_sets, np.ndarray):
            hint = " (one item? pass [x])" if token_sets.ndim == 2 else ""
            raise InvalidInputError(
                f"{name} is a single array of shape {token_sets.shape}; pass a list with one (n_i, d) array "
                f"per item, or the concatenated array together with offsets={hint}"
            )
        else:
            out = _from_list(token_sets, name)
    if d is not None and out.d != d:
        raise DimensionMismatchError(
            f"{name} holds {out.d}-d token vectors; expected {d}-d (the width the documents were encoded with). "
            "Encode queries and documents with the same model."
        )
    return out


def _from_concatenated(x: Any, offsets: Any, name: str) -> TokenSets:
    off = np.asarray(offsets)
    if off.ndim != 1 or off.shape[0] < 2 or not np.issubdtype(off.dtype, np.integer):
        raise InvalidInputError(
            f"offsets must be a 1-D integer array of length n_items + 1 (got shape {off.shape}, dtype {off.dtype}); "
            "item i owns rows x[offsets[i]:offsets[i+1]]"
        )
    off = off.astype(np.int64)
    arr = np.asarray(x) if not isinstance(x, np.ndarray) else x
    if arr.ndim != 2:
        raise InvalidInputError(f"{name} must be a 2-D array (N, d) of concatenated tokens; got shape {arr.shape}")
    if off[0] != 0 or off[-1] != arr.shape[0] or np.any(np.diff(off) < 0):
        raise InvalidInputError(
            f"offsets must start at 0, never decrease and end at the number of rows ({arr.shape[0]}); "
            f"got offsets[0]={int(off[0])}, offsets[-1]={int(off[-1])}"
        )
    if arr.shape[0] == 0:
        if arr.shape[1] == 0:
            raise InvalidInputError(f"{name} has zero columns; token vectors need at least one dimension")
        return TokenSets(np.zeros((0, arr.shape[1]), dtype=np.float32), off)
    if isinstance(arr, np.memmap) or (arr.dtype == np.float32 and arr.flags.c_contiguous and not arr.flags.writeable):
        # A memory-mapped store: check finiteness in chunks, never copy it.
        mat = arr if arr.dtype == np.float32 else as_matrix(arr, name=name)
        for start in range(0, mat.shape[0], 1 << 18):
            if not np.isfinite(mat[start : start + (1 << 18)]).all():
                raise InvalidInputError(f"{name} contains NaN or infinite values; repair those token vectors")
        return TokenSets(mat, off)
    return TokenSets(as_matrix(arr, name=name), off)


def _from_list(token_sets: Any, name: str) -> TokenSets:
    if isinstance(token_sets, (str, bytes)) or not hasattr(token_sets, "__iter__"):
        raise InvalidInputError(f"{name} must be a list of (n_i, d) arrays; got {type(token_sets).__name__}")
    mats = [np.asarray(t, dtype=np.float32) for t in token_sets]
    if not mats:
        raise InvalidInputError(f"{name} is empty; pass at least one item")
    d = None
    for i, m in enumerate(mats):
        if m.ndim != 2:
            raise InvalidInputError(
                f"{name}[{i}] has shape {m.shape}; every item must be a 2-D (n_i, d) array of token vectors"
            )
        if m.shape[0] > 0 or d is None:
            if d is not None and m.shape[1] != d and m.shape[0] > 0:
                raise DimensionMismatchError(f"{name}[{i}] has {m.shape[1]}-d tokens; earlier items have {d}-d")
            if m.shape[0] > 0:
                d = m.shape[1]
    if d is None:  # only empty items
        d = mats[0].shape[1]
        if d == 0:
            raise InvalidInputError(f"{name} has zero columns; token vectors need at least one dimension")
        return TokenSets(np.zeros((0, d), dtype=np.float32), np.zeros(len(mats) + 1, dtype=np.int64))
    counts = np.array([m.shape[0] for m in mats], dtype=np.int64)
    offsets = np.zeros(len(mats) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    x = np.concatenate([m for m in mats if m.shape[0] > 0], axis=0)
    return TokenSets(as_matrix(x, name=name), offsets)
