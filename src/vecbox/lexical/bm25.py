"""BM25 over analysed documents held in RAM: postings appended in row order, scored with masks.

The scoring is Lucene's BM25 (what bm25s calls ``method="lucene"``, after Kamphuis et al.,
ECIR 2020), summed over the query's terms, repeats counted::

    idf(t)    = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
    w(t, d)   = idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * len(d) / avglen))
    score(d)  = sum over query terms t of w(t, d)

with ``k1 = 1.5`` and ``b = 0.75`` by default (bm25s's defaults). ``N``, ``df`` and ``avglen``
count the documents the caller says are alive (deleted rows drop out of the statistics at
once), so the scores are those of an index rebuilt from the live documents alone.

Postings live in blocks: each :meth:`BM25Index.append` adds a block, and blocks are merged
(term-major, CSC-like) when a small one would otherwise be scanned by every query - so a
stream of small commits costs a query a few extra array slices, not a rebuild.

:meth:`BM25Index.top_n` (what searches use) runs the scoring and the top-n selection in one C
pass (:mod:`vecbox.lexical._bm25`) with the same arithmetic as :meth:`BM25Index.scores`, the
numpy reference it is tested against; without the built extension it falls back to that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

try:
    from vecbox.lexical import _bm25
except ImportError:  # a source tree without the built extension: the numpy path answers
    _bm25 = None

K1 = 1.5
B = 0.75


@dataclass
class _Block:
    """Postings of a run of rows, term-major: term ``t``'s rows are ``pos[ptr[t]:ptr[t+1]]``."""

    ptr: np.ndarray  # int64 (n_terms_at_build + 1,)
    pos: np.ndarray  # int64 row positions, ascending within a term
    tf: np.ndarray  # float32 term frequencies

    @classmethod
    def build(cls, term_ids: np.ndarray, pos: np.ndarray, tf: np.ndarray, n_terms: int) -> "_Block":
        order = np.lexsort((pos, term_ids))
        counts = np.bincount(term_ids, minlength=n_terms)
        ptr = np.zeros(n_terms + 1, np.int64)
        np.cumsum(counts, out=ptr[1:])
        return cls(ptr, pos[order], tf[order])

    def postings(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        if t + 1 >= len(self.ptr):
            return self.pos[:0], self.tf[:0]
        lo, hi = self.ptr[t], self.ptr[t + 1]
        return self.pos[lo:hi], self.tf[lo:hi]

    def coo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        terms = np.repeat(np.arange(len(self.ptr) - 1, dtype=np.int64), np.diff(self.ptr))
        return terms, self.pos, self.tf


class BM25Index:
    """Term postings of documents at row positions ``0..n-1`` (rows without a document have none).

    >>> idx = BM25Index()
    >>> idx.append(np.array([0, 1, 2]), [["cat", "sat"], ["dog", "dog", "ran"], None])
    >>> scores, pos, matched = idx.top_n(["dog"], 2, alive=np.ones(3, bool))
    >>> pos.tolist(), round(float(scores[0]), 4)  # ln(2) * 2 / (2 + 1.5 * (0.25 + 0.75 * 3 / 2.5))
    ([1], 0.3722)
    """

    def __init__(self, k1: float = K1, b: float = B) -> None:
        self.k1, self.b = float(k1), float(b)
        self.vocab: dict[str, int] = {}
        self.n = 0  # row positions covered (the next append starts at or after n)
        self._len = np.zeros(0, np.float32)  # document length in terms, per row position (0: no document)
        self._blocks: list[_Block] = []
        self._stats: tuple[object, int, int, np.ndarray, bool] | None = None  # (key, rows, docs, norms, all live)

    # ------------------------------------------------------------ building
    def append(self, positions: np.ndarray, docs: Sequence[Sequence[str] | None]) -> None:
        """Index the documents at ``positions`` (ascending, all >= :attr:`n`); ``None`` means no document."""
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) != len(docs):
            raise ValueError(f"{len(positions)} positions for {len(docs)} documents")
        if not len(positions):
            return
        if positions[0] < self.n or np.any(np.diff(positions) <= 0):
            raise ValueError("positions must be ascending and start at or after the rows already indexed")
        end = int(positions[-1]) + 1
        if end > len(self._len):
            grown = np.zeros(max(end, int(len(self._len) * 1.5), 1024), np.float32)
            grown[: self.n] = self._len[: self.n]
            self._len = grown
        vocab = self.vocab
        term_ids: list[int] = []
        rows: list[int] = []
        for p, terms in zip(positions.tolist(), docs):
            if not terms:
                continue
            self._len[p] = len(terms)
            for term in terms:
                t = vocab.get(term)
                if t is None:
                    t = vocab[term] = len(vocab)
                term_ids.append(t)
            rows.extend([p] * len(terms))
        self.n = end
        if not term_ids:
            return
        # one (term, row) pair per occurrence -> unique pairs with their counts = term frequencies
        key = np.asarray(rows, np.int64) * len(vocab) + np.asarray(term_ids, np.int64)
        uniq, tf = np.unique(key, return_counts=True)
        block = _Block.build(uniq % len(vocab), uniq // len(vocab), tf.astype(np.float32), len(vocab))
        self._blocks.append(block)
        self._merge_small()

    def _merge_small(self) -> None:
        """Keep blocks few: merge the newest ones while the last is no bigger than the one before it."""
        while len(self._blocks) > 1 and len(self._blocks[-1].pos) * 2 >= len(self._blocks[-2].pos):
            b2, b1 = self._blocks.pop(), self._blocks.pop()
            parts = [b1.coo(), b2.coo()]
            self._blocks.append(_Block.build(*(np.concatenate(c) for c in zip(*parts)), len(self.vocab)))

    # ------------------------------------------------------------- scoring
    def scores(self, terms: Sequence[str], alive: np.ndarray, allowed: np.ndarray | None = None,
               key: object = None) -> tuple[np.ndarray, np.ndarray]:
        """BM25 of every matching row: ``(positions, scores)``, positions ascending, scores > 0.

        ``alive`` (bool, one per row position, at least :attr:`n` long) defines the corpus the
        statistics count; ``allowed`` (optional, same length) limits which rows are returned.
        ``key`` names ``alive``'s state (e.g. a committed version): while it and :attr:`n`
        stay the same, the corpus statistics and length norms (an O(rows) pass) are reused.
        """
        n_rows = min(self.n, len(alive))
        live = alive[:n_rows]
        n_docs, norm, all_live = self._corpus(live, n_rows, key)
        if n_docs == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        weights = self._query_weights(terms)
        if not weights:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        # every query term's postings in one array (term index ``tix``), scored in a few vector ops
        parts = [(i, blk.postings(t)) for i, t in enumerate(weights) for blk in self._blocks]
        pos = np.concatenate([p for _, (p, _) in parts])
        tf = np.concatenate([f for _, (_, f) in parts])
        tix = np.repeat(np.array([i for i, _ in parts], np.int64), [len(p) for _, (p, _) in parts])
        if not (all_live and n_rows == self.n):  # else every posting is of a live row: nothing to drop
            keep = pos < n_rows
            keep[keep] = live[pos[keep]]
            pos, tf, tix = pos[keep], tf[keep], tix[keep]
        df = np.bincount(tix, minlength=len(weights))
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5)) * np.fromiter(weights.values(), np.float64, len(weights))
        acc = np.bincount(pos, weights=idf[tix] * tf / (tf + norm[pos]), minlength=n_rows)
        if allowed is not None:
            acc[~allowed[:n_rows]] = 0.0
        found = np.flatnonzero(acc > 0)
        return found, acc[found]

    def _query_weights(self, terms: Sequence[str]) -> dict[int, int]:
        """Term id -> its count in the query, for the query terms in the vocabulary (in query order)."""
        weights: dict[int, int] = {}
        for term in terms:
            t = self.vocab.get(term)
            if t is not None:
                weights[t] = weights.get(t, 0) + 1
        return weights

    def top_n(self, terms: Sequence[str], n: int, alive: np.ndarray, allowed: np.ndarray | None = None,
              key: object = None) -> tuple[np.ndarray, np.ndarray, int]:
        """The ``n`` best rows ``(scores, positions, rows matched)``: best first, ties by lower position.

        The same scores as :meth:`scores` (arguments as there), selected in one C pass.

        >>> idx = BM25Index()
        >>> idx.append(np.array([0, 1, 2]), [["cat", "sat"], ["dog", "dog", "ran"], ["dog"]])
        >>> s, pos, matched = idx.top_n(["dog"], 1, alive=np.ones(3, bool))  # the shorter document wins
        >>> pos.tolist(), matched
        ([2], 2)
        """
        if _bm25 is None:
            pos, s = self.scores(terms, alive, allowed, key)
            matched = len(pos)
            if matched > n:
                part = np.argpartition(-s, n - 1)[:n]
                pos, s = pos[part], s[part]
            order = np.lexsort((pos, -s))
            return s[order], pos[order], matched
        n_rows = min(self.n, len(alive))
        live = alive[:n_rows]
        n_docs, norm, all_live = self._corpus(live, n_rows, key)
        weights = self._query_weights(terms) if n_docs else {}
        if not weights:
            return np.zeros(0, np.float64), np.zeros(0, np.int64), 0
        pos_list, tf_list, tix = [], [], []
        for i, t in enumerate(weights):
            for blk in self._blocks:
                p, f = blk.postings(t)
                if len(p):
                    pos_list.append(p)
                    tf_list.append(f)
                    tix.append(i)
        out_s, out_p = np.empty(n, np.float64), np.empty(n, np.int64)
        qtf = np.fromiter(weights.values(), np.float64, len(weights))
        written, matched = _bm25.top(pos_list, tf_list, tix, qtf, n_docs, norm, None if all_live else live,
                                     None if allowed is None else np.ascontiguousarray(allowed[:n_rows]), n_rows,
                                     out_s, out_p)
        return out_s[:written], out_p[:written], matched

    def _corpus(self, live: np.ndarray, n_rows: int, key: object) -> tuple[int, np.ndarray, bool]:
        """Live documents, each row's length norm ``k1 (1 - b + b len / avglen)``, and whether every row is alive."""
        if key is not None and self._stats is not None and self._stats[:2] == (key, n_rows):
            return self._stats[2:]  # type: ignore[return-value]
        lengths = self._len[:n_rows]
        has_doc = live & (lengths > 0)
        n_docs = int(np.count_nonzero(has_doc))
        avg = float(lengths[has_doc].sum()) / n_docs if n_docs else 1.0
        norm = self.k1 * (1.0 - self.b + self.b * lengths / avg)
        all_live = bool(live.all())
        self._stats = (key, n_rows, n_docs, norm, all_live) if key is not None else None
        return n_docs, norm, all_live

    @property
    def n_postings(self) -> int:
        return sum(len(blk.pos) for blk in self._blocks)


__all__ = ["B", "BM25Index", "K1"]
