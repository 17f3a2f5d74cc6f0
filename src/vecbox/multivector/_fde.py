"""MUVERA fixed dimensional encodings (FDEs), vectorised over all tokens of all items.

One repetition r of the reference algorithm (``graph-mining/sketching/point_cloud``),
with ``B = 2**ksim`` partitions:

1. SimHash: ``S = x @ G_r`` with ``G_r ~ N(0, 1)^(d x ksim)``; sign bits ``b_j = S_j > 0``.
2. Partition index: fold the bits with ``idx = (idx << 1) + (b_j ^ (idx & 1))``, i.e. the
   prefix-XOR of the bits (first hyperplane in the most significant bit). A partition's
   own bit pattern is ``p ^ (p >> 1)``, so every point is at Hamming distance 0 from its
   own partition.
3. Inner projection ``Y = x`` (identity) or ``Y = x @ A_r`` (AMS sketch: one random ±1 per
   input row, unscaled).
4. Block ``(item, p)`` = sum of ``Y`` over the item's points in ``p`` (queries) or their
   mean (documents).
5. Documents with ``fill_empty``: an empty block gets ``Y`` of the item's point whose sign
   bits are nearest (Hamming) to ``p ^ (p >> 1)``; ties go to the first point.

Blocks are concatenated repetition by repetition; the optional final projection is a
count-sketch of the whole FDE (random bucket and sign per coordinate).

Random matrices: repetition r draws from ``numpy.random.default_rng(seed + r)`` (SimHash
normals, then AMS columns and signs from a second generator with the same seed); the
final projection from ``default_rng(seed)``. The reference's ``seed + r`` scheme is kept;
its mt19937 numbers are not reproducible in numpy, so FDEs match the reference in
distribution and semantics, not bit for bit.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from vecbox.errors import InvalidInputError
from vecbox.multivector._config import FDEConfig
from vecbox.multivector._ragged import TokenSets, as_token_sets

_TOKENS_PER_CHUNK = 1 << 16  # tokens encoded at once: bounds the per-repetition temporaries
_FILL_BUDGET = 1 << 22  # int64 keys per step of the empty-partition search


def simhash_matrix(d: int, ksim: int, seed: int) -> np.ndarray:
    """Gaussian SimHash hyperplanes ``(d, ksim)`` float32 of one repetition (``seed + r``)."""
    return np.random.default_rng(seed).normal(0.0, 1.0, size=(d, ksim)).astype(np.float32)


def ams_matrix(d: int, dproj: int, seed: int) -> np.ndarray:
    """AMS sketch ``(d, dproj)`` float32: each row has one ±1 at a uniformly random column."""
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, dproj, size=d)
    signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=d)
    a = np.zeros((d, dproj), dtype=np.float32)
    a[np.arange(d), cols] = signs
    return a


def count_sketch(fde_dim: int, final_dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bucket ``(fde_dim,)`` int64 and sign ``(fde_dim,)`` float32 of every FDE coordinate."""
    rng = np.random.default_rng(seed)
    buckets = rng.integers(0, final_dim, size=fde_dim)
    signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=fde_dim)
    return buckets.astype(np.int64), signs


def gray_to_binary(code: np.ndarray, ksim: int) -> np.ndarray:
    """Prefix-XOR from the top bit: the partition index of sign-bit pattern ``code``."""
    idx = code.copy()
    shift = 1
    while shift < ksim:
        idx ^= idx >> shift
        shift <<= 1
    return idx


def partition_bits(p: np.ndarray) -> np.ndarray:
    """The sign-bit pattern a partition index stands for: ``p ^ (p >> 1)`` (the reference's helper)."""
    return p ^ (p >> 1)


def sign_codes(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Sign bits of ``x @ g`` packed into int64, first hyperplane in the most significant bit."""
    ksim = g.shape[1]
    if ksim == 0:
        return np.zeros(x.shape[0], dtype=np.int64)
    bits = (x @ g) > 0
    weights = np.left_shift(np.int64(1), np.arange(ksim - 1, -1, -1, dtype=np.int64))
    return bits.astype(np.int64) @ weights


def partition_index(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Partition of every row of ``x`` under hyperplanes ``g`` (the reference's Gray-code fold)."""
    return gray_to_binary(sign_codes(x, g), g.shape[1])


class _Plan:
    """The random matrices of one config at one token width (cached by :func:`_plan`; never mutated)."""

    def __init__(self, config: FDEConfig, d: int) -> None:
        self.config = config
        self.d = d
        self.B = config.partitions
        self.dp = config.block_dim(d)
        self.block = self.B * self.dp
        # All repetitions side by side: repetition r owns columns [r*ksim, (r+1)*ksim) and [r*dp, (r+1)*dp).
        self.g_all = (
            np.concatenate([simhash_matrix(d, config.ksim, config.seed + r) for r in range(config.reps)], axis=1)
            if config.ksim > 0
            else None
        )
        self.a_all = (
            np.concatenate([ams_matrix(d, self.dp, config.seed + r) for r in range(config.reps)], axis=1)
            if config.projection == "ams"
            else None
        )
        self.sketch: list[sp.csr_matrix] | None = None
        if config.final_dim is not None:
            buckets, signs = count_sketch(config.fde_dim(d), config.final_dim, config.seed)
            self.sketch = []
            for r in range(config.reps):
                sl = slice(r * self.block, (r + 1) * self.block)
                # (final_dim, block): row = bucket, so that P_r @ block.T adds each coordinate to its bucket
                self.sketch.append(
                    sp.csr_matrix(
                        (signs[sl], (buckets[sl], np.arange(self.block))), shape=(config.final_dim, self.block)
                    )
                )


@lru_cache(maxsize=16)
def _plan(config: FDEConfig, d: int) -> _Plan:
    """The plan of a (frozen, hashable) config: drawn once, reused by every query of a search loop."""
    return _Plan(config, d)


def encode_fde(
    token_sets: Any,
    config: FDEConfig,
    *,
    kind: Literal["query", "document"],
    offsets: Any = None,
    fill_empty: bool | None = None,
) -> np.ndarray:
    """Fixed dimensional encodings of a batch of token sets.

    Parameters
    ----------
    token_sets : list of (n_i, d) arrays, or (x, offsets), or (N, d) array with ``offsets``
        One set of token vectors per item (see :func:`as_token_sets`).
    config : FDEConfig
    kind : {"query", "document"}
        Queries sum their points per partition; documents average them.
    offsets : array of int, optional
        Item boundaries when ``token_sets`` is the concatenated ``(N, d)`` array.
    fill_empty : bool, optional
        Override ``config.fill_empty`` (documents only). Asking a query to fill raises.

    Returns
    -------
    ndarray (n_items, config.output_dim(d)) float32
        An item without tokens encodes to zeros.

    Raises
    ------
    InvalidInputError
        ``fill_empty=True`` for queries, or malformed token sets.
    """
    if kind not in ("query", "document"):
        raise InvalidInputError(f"kind must be 'query' or 'document'; got {kind!r}")
    if not isinstance(config, FDEConfig):
        raise InvalidInputError(f"config must be an FDEConfig; got {type(config).__name__}")
    if kind == "query":
        if fill_empty:
            raise InvalidInputError(
                "queries never fill empty partitions: a query FDE sums its tokens per partition "
                "(as in the reference, which rejects fill for queries); drop fill_empty=True"
            )
        fill = False
    else:
        fill = config.fill_empty if fill_empty is None else bool(fill_empty)
    ts = as_token_sets(token_sets, offsets)
    plan = _plan(config, ts.d)
    out = np.zeros((ts.n, config.output_dim(ts.d)), dtype=np.float32)
    # Chunks of whole items, so the per-repetition temporaries stay bounded.
    start = 0
    while start < ts.n:
        stop = int(np.searchsorted(ts.offsets, ts.offsets[start] + _TOKENS_PER_CHUNK, side="right")) - 1
        stop = min(max(stop, start + 1), ts.n)
        lo, hi = int(ts.offsets[start]), int(ts.offsets[stop])
        chunk = TokenSets(ts.x[lo:hi], ts.offsets[start : stop + 1] - lo)
        out[start:stop] = _encode_chunk(chunk, plan, average=kind == "document", fill=fill)
        start = stop
    return out


def encode_queries(token_sets: Any, config: FDEConfig, *, offsets: Any = None) -> np.ndarray:
    """Query FDEs: per partition, the **sum** of the projected tokens; never filled.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> q = [rng.normal(size=(4, 8)), rng.normal(size=(2, 8))]
    >>> encode_queries(q, FDEConfig(reps=2, ksim=3)).shape
    (2, 128)
    """
    return encode_fde(token_sets, config, kind="query", offsets=offsets)


def encode_documents(token_sets: Any, config: FDEConfig, *, offsets: Any = None) -> np.ndarray:
    """Document FDEs: per partition, the **mean** of the projected tokens; empty partitions
    filled with the nearest token when ``config.fill_empty``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(7, 8)).astype(np.float32)
    >>> f = encode_documents((x, np.array([0, 3, 7])), FDEConfig(reps=2, ksim=3, dproj=4))
    >>> f.shape, bool((f.reshape(2, 2, 8, 4) != 0).any(axis=-1).all())   # no empty block
    ((2, 64), True)
    """
    return encode_fde(token_sets, config, kind="document", offsets=offsets)


def _encode_chunk(ts: TokenSets, plan: _Plan, *, average: bool, fill: bool) -> np.ndarray:
    cfg = plan.config
    n, B, dp, k = ts.n, plan.B, plan.dp, cfg.ksim
    if ts.x.shape[0] == 0:
        return np.zeros((n, cfg.output_dim(ts.d)), dtype=np.float32)
    x = np.ascontiguousarray(ts.x, dtype=np.float32)
    ntok = x.shape[0]
    item = ts.item_of_token()
    has_tokens = ts.counts > 0
    final = plan.sketch is not None
    out = np.zeros((n, cfg.final_dim if final else cfg.reps * plan.block), dtype=np.float32)
    tok_index = np.arange(ntok + 1, dtype=np.int64)
    # One GEMM for the hyperplanes (and one for the projections) of all repetitions:
    # narrow per-repetition products are memory-bound and several times slower.
    sketch = x @ plan.g_all if k > 0 else None
    y_all = x @ plan.a_all if plan.a_all is not None else None
    for r in range(cfg.reps):
        code = np.zeros(ntok, dtype=np.int64)
        for j in range(k):  # pack the sign bits, first hyperplane in the most significant bit
            code <<= 1
            code |= sketch[:, r * k + j] > 0  # type: ignore[index]
        part = gray_to_binary(code, k)
        y = x if y_all is None else y_all[:, r * dp : (r + 1) * dp]
        seg = item * B + part
        # Sum the tokens of every (item, partition) cell with one sparse product (no loop over tokens).
        gather = sp.csc_matrix((np.ones(ntok, dtype=np.float32), seg, tok_index), shape=(n * B, ntok))
        block = np.asarray(gather @ y, dtype=np.float32).reshape(n, B, dp)
        counts = np.bincount(seg, minlength=n * B).reshape(n, B)
        if average:
            nz = counts > 0
            block[nz] /= counts[nz][:, None].astype(np.float32)
            if fill and k > 0:
                empty = (~nz) & has_tokens[:, None]
                if empty.any():
                    _fill(block, empty, code, item, y, ts, B)
        flat = block.reshape(n, plan.block)
        if final:
            out += (plan.sketch[r] @ flat.T).T  # type: ignore[index]
        else:
            out[:, r * plan.block : (r + 1) * plan.block] = flat
    return out


def _fill(
    block: np.ndarray, empty: np.ndarray, code: np.ndarray, item: np.ndarray, y: np.ndarray, ts: TokenSets, B: int
) -> None:
    """Fill empty (item, partition) blocks with the projected point of smallest Hamming distance.

    Only the first point of each (item, sign pattern) can win (ties go to the first point),
    so the search runs over distinct patterns per item, not over all points.
    """
    ntok = code.shape[0]
    n = ts.n
    first = np.full(n * B, ntok, dtype=np.int64)
    np.minimum.at(first, item * B + code, np.arange(ntok, dtype=np.int64))
    first = first.reshape(n, B)
    patterns = np.arange(B, dtype=np.int64)
    # dist[c, p] = popcount(c ^ bits(p))
    xor = patterns[:, None] ^ partition_bits(patterns)[None, :]
    dist = np.zeros((B, B), dtype=np.int64)
    while xor.any():
        dist += xor & 1
        xor >>= 1
    big = np.int64(ntok + 1)
    rows = np.flatnonzero(empty.any(axis=1))
    # Items per step so that (distinct patterns x B) keys stay within the budget.
    per = max(1, _FILL_BUDGET // (B * B))
    for s in range(0, rows.size, per):
        items = rows[s : s + per]
        f = first[items]  # (m, B): first point with each pattern, ntok where absent
        it, c = np.nonzero(f < ntok)  # distinct patterns, grouped by item (row-major)
        keys = dist[c] * big + f[it, c][:, None]  # (u, B): distance, then point order
        starts = np.flatnonzero(np.r_[True, it[1:] != it[:-1]])
        best = np.minimum.reduceat(keys, starts, axis=0) % big  # (m, B) point per partition
        e_item, e_part = np.nonzero(empty[items])
        block[items[e_item], e_part] = y[best[e_item, e_part]]
