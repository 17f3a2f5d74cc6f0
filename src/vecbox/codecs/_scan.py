"""Top-k scans over codes: a blocked numpy scan and thin FAISS helpers.

Scores inside this module are "higher is better": inner products for ``dot``,
negative squared distances for ``l2``. FAISS is used only when importable (the
``codecs`` extra); every FAISS path has a numpy twin that the tests compare it with.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from vecbox._optional import require

_BLOCK_BYTES = 1 << 21  # decoded float32 rows per block: ~2 MiB, stays in L2/L3 cache
_USE_FAISS = True  # tests flip this to compare the numpy twin with the FAISS path


def faiss_module(purpose: str | None = None) -> Any | None:
    """The ``faiss`` module: the one FAISS loader of the codecs.

    With ``purpose`` FAISS is required (e.g. ``"the 'pq' codec"``): a missing FAISS raises
    :class:`~vecbox.errors.MissingDependencyError` naming the pip command. Without it FAISS
    is an accelerator: ``None`` when it is not installed or the tests turned it off
    (``_USE_FAISS``), and the caller runs its numpy twin.
    """
    if purpose is not None:
        return require("faiss", "codecs", purpose)
    if not _USE_FAISS:
        return None
    try:
        return importlib.import_module("faiss")
    except ImportError:
        return None


def block_rows(width: int, m: int = 1) -> int:
    """Rows per block so that a decoded block (and its scores for ``m`` queries) stays small."""
    return int(max(256, min(65536, _BLOCK_BYTES // max(4 * width + 4 * m, 1))))


def topk_blocks(
    score_block: Callable[[int, int], np.ndarray], n: int, m: int, k: int, block: int,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` of ``n`` rows per query, scoring ``block`` rows at a time with ``score_block(start, stop)``.

    Returns ``(scores, idx)`` of shape ``(m, k)`` sorted best first; missing results are ``-inf`` / -1.
    """
    best_s = np.full((m, k), -np.inf, dtype=np.float32)
    best_i = np.full((m, k), -1, dtype=np.int64)
    for start in range(0, n, block):
        stop = min(start + block, n)
        s = score_block(start, stop)
        if valid is not None:
            s[:, ~valid[start:stop]] = -np.inf
        b = stop - start
        if b > k:
            part = np.argpartition(s, b - k, axis=1)[:, b - k:]
            cand_s = np.take_along_axis(s, part, axis=1)
        else:
            part = np.broadcast_to(np.arange(b), (m, b))
            cand_s = s
        all_s = np.concatenate([best_s, cand_s], axis=1)
        all_i = np.concatenate([best_i, part + start], axis=1)
        keep = np.argpartition(all_s, all_s.shape[1] - k, axis=1)[:, all_s.shape[1] - k:]
        best_s = np.take_along_axis(all_s, keep, axis=1)
        best_i = np.take_along_axis(all_i, keep, axis=1)
    return sort_topk(best_s, best_i)


def sort_topk(scores: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row best first; entries with a non-finite score get index -1."""
    order = np.argsort(-scores, axis=1, kind="stable")
    scores = np.take_along_axis(scores, order, axis=1).astype(np.float32, copy=False)
    idx = np.take_along_axis(idx, order, axis=1)
    idx[~np.isfinite(scores)] = -1
    return scores, idx


def faiss_search(index: Any, codes: np.ndarray, q: np.ndarray, k: int, valid: np.ndarray | None,
                 higher_is_better: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """Search ``codes`` with a trained, empty FAISS flat-codes ``index`` that views them without a copy.

    Returns ``None`` when this FAISS build cannot view external memory (the caller then
    uses its numpy scan). The view lives only for the duration of this call.
    """
    faiss = faiss_module()
    if faiss is None or len(codes) == 0:
        return None
    store = index.codes
    if not all(hasattr(store, a) for a in ("is_owned", "view_data", "view_size", "c_ptr", "c_size")):
        return None
    codes = np.ascontiguousarray(codes)
    ptr = faiss.swig_ptr(codes)
    store.is_owned, store.view_data, store.view_size = False, ptr, codes.size
    store.c_ptr, store.c_size = ptr, codes.size
    index.ntotal = len(codes)
    try:
        params = None
        if valid is not None:
            bitmap = np.packbits(valid.astype(bool), bitorder="little")
            sel = faiss.IDSelectorBitmap(len(valid), faiss.swig_ptr(bitmap))
            params = faiss.SearchParameters(sel=sel)
        kk = min(k, len(codes))
        dist, labels = index.search(q, kk, params=params)
    finally:
        index.ntotal = 0
        store.is_owned, store.view_size, store.c_size = True, 0, 0
    scores = dist if higher_is_better else -dist
    scores = np.where(labels >= 0, scores, -np.inf).astype(np.float32)
    if kk < k:
        scores = np.pad(scores, ((0, 0), (0, k - kk)), constant_values=-np.inf)
        labels = np.pad(labels, ((0, 0), (0, k - kk)), constant_values=-1)
    return sort_topk(scores, labels.astype(np.int64))
