"""The search benchmark's data: the two data sets, their filters and the exact ground truth.

(a) the SciFact corpus split into sentences, real all-MiniLM-L6-v2 vectors from the encoder cache, with
    attributes from the data (``doc``, ``pos``), ``cat`` (a k-means cluster of the vector: correlated
    with the query's neighbourhood) and ``num`` (uniform); (b) SYNTHETIC: a Gaussian mixture plus a
    shared latent factor, with ``cat`` independent of the vector. Filters: none, and at each selectivity
    a range on ``num`` and a ``$in`` on ``cat``.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, Iterator

import _report as R
import numpy as np

from .settings import DIM, SEED, SELECTIVITIES, K


@dataclass
class Dataset:
    key: str
    label: str
    x: np.ndarray
    q: np.ndarray
    attrs: dict[str, np.ndarray]  # per row; "cat" holds integer codes, names are f"c{code}"
    note: str = ""
    failures: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.x)

    def metadatas(self, start: int, stop: int) -> list[dict[str, Any]]:
        cols = {k: v[start:stop].tolist() for k, v in self.attrs.items()}
        cols["cat"] = [f"c{c}" for c in cols["cat"]]
        keys = list(cols)
        return [dict(zip(keys, vals)) for vals in zip(*(cols[k] for k in keys))]

    def fail(self, what: str, exc: BaseException, expected: tuple[type[BaseException], ...] = ()) -> str:
        """Log that ``what`` failed on this set and keep the message for the report (a traceback too, unless
        ``exc`` is an ``expected`` kind or an AttributeError / TypeError: an API a library lacks)."""
        msg = f"{what}: {type(exc).__name__}: {exc}"
        R.log(f"search: {self.key}: {msg}")
        if not isinstance(exc, (*expected, AttributeError, TypeError)):
            traceback.print_exc()
        self.failures.append(msg)
        return msg


def _normalise(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _kmeans_labels(x: np.ndarray, clusters: int) -> np.ndarray:
    import faiss

    with R.limit_threads(1):
        km = faiss.Kmeans(x.shape[1], clusters, niter=20, seed=SEED, spherical=True, verbose=False)
        km.train(x)
        _, labels = km.index.search(x, 1)
    return labels.ravel().astype(np.int64)


def sentences_dataset(max_n: int | None) -> Dataset | None:
    if not R.SCIFACT.is_dir():
        R.log(f"search: {R.SCIFACT} not found; skipping the SciFact sentences set")
        return None
    texts, docs, pos = R.scifact_sentence_rows()  # the sentences of the compression benchmark
    enc = R.text_encoder()
    R.log(f"search: encoding {len(texts):,} SciFact sentences (cached after the first run)")
    x = np.ascontiguousarray(enc.encode(texts, kind="document"), dtype=np.float32)
    q = np.ascontiguousarray(R.scifact_queries(enc), dtype=np.float32)
    rng = np.random.default_rng([SEED, 1])
    keep = np.arange(len(x))
    if max_n is not None and max_n < len(x):
        keep = np.sort(rng.choice(len(x), max_n, replace=False))
    x = _normalise(x[keep].copy())
    q = _normalise(q.copy())
    clusters = max(10, min(1000, len(x) // 50))
    R.log(f"search: k-means with {clusters} clusters for the 'cat' attribute")
    attrs = {
        "doc": np.array(docs, dtype=object)[keep],
        "pos": np.array(pos, dtype=np.int64)[keep],
        "cat": _kmeans_labels(x, clusters),
        "num": rng.random(len(x)),
    }
    note = (f"SciFact corpus sentences ({len(x):,}{' of ' + format(len(texts), ',') if len(x) < len(texts) else ''}), "
            f"{len(q):,} SciFact queries; `cat` = spherical k-means cluster of the vector ({clusters} clusters, "
            "so a `cat` filter is correlated with the query's neighbourhood), `num` uniform in [0, 1)")
    return Dataset("sentences", "SciFact sentences", x, q, attrs, note)


def synthetic_blocks(total: int, components: int = 1000, latent: int = 48,
                     chunk: int = 100_000, first_block: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, rows)`` of the SYNTHETIC mixture, a block at a time (rows 0..total-1, unit vectors):
    the same rows as :func:`synthetic_dataset`, for sizes that do not fit in RAM. ``first_block``
    draws other rows of the same mixture (e.g. 10**6: queries disjoint from every stored row)."""
    rng = np.random.default_rng([SEED, 2])
    centers = rng.standard_normal((components, DIM), dtype=np.float32)
    w = (rng.standard_normal((latent, DIM), dtype=np.float32) / np.sqrt(latent)).astype(np.float32)
    weights = 1.0 / np.arange(1, components + 1) ** 0.5
    weights /= weights.sum()
    for b, s in enumerate(range(0, total, chunk)):
        e = min(s + chunk, total)
        r = np.random.default_rng([SEED, 3, first_block + b])
        comp = r.choice(components, e - s, p=weights)
        blk = centers[comp] + 1.5 * (r.standard_normal((e - s, latent), dtype=np.float32) @ w)
        blk += 0.5 * r.standard_normal((e - s, DIM), dtype=np.float32)
        yield s, _normalise(blk)


def synthetic_dataset(n: int, n_queries: int, components: int = 1000, latent: int = 48, n_cats: int = 1000,
                      chunk: int = 100_000) -> Dataset:
    """SYNTHETIC: x = center[c] + 1.5 * (z W) + 0.5 * noise, normalised; c from a skewed mixture, z in 48-d."""
    total = n + n_queries
    out = np.empty((total, DIM), dtype=np.float32)
    for s, blk in synthetic_blocks(total, components, latent, chunk):
        out[s : s + len(blk)] = blk
    cat_p = 1.0 / np.arange(1, n_cats + 1) ** 0.8
    cat_p /= cat_p.sum()
    ra = np.random.default_rng([SEED, 4])
    attrs = {"cat": ra.permutation(n_cats)[ra.choice(n_cats, n, p=cat_p)].astype(np.int64), "num": ra.random(n)}
    note = (f"SYNTHETIC Gaussian mixture ({components:,} components with skewed weights, plus a shared "
            f"{latent}-d latent factor), {n:,} vectors, {n_queries:,} queries from the same mixture; `cat` has "
            f"{n_cats:,} values with Zipf-like frequencies, independent of the vector; `num` uniform in [0, 1)")
    return Dataset("synthetic", f"SYNTHETIC mixture {n:,}", out[:n], out[n:], attrs, note)


def subset(ds: Dataset, n: int) -> Dataset:
    """The first ``n`` rows (for a peer capped at a smaller size; rows are in random order)."""
    return Dataset(ds.key, f"{ds.label} (first {n:,})", ds.x[:n], ds.q, {k: v[:n] for k, v in ds.attrs.items()},
                   ds.note, ds.failures)


# --------------------------------------------------------------------------- filters and ground truth
@dataclass
class Filter:
    kind: str  # "none", "range" or "in"
    target: float | None  # requested selectivity
    where: dict[str, Any] | None  # vecbox / chroma syntax
    sql: str | None  # LanceDB
    mask: np.ndarray | None  # rows that match
    stored_actual: float | None = None  # set when loaded from a saved run (no mask)

    @property
    def key(self) -> str:
        return "none" if self.kind == "none" else f"{self.kind}:{self.target:g}"

    @property
    def actual(self) -> float:
        if self.stored_actual is not None:
            return self.stored_actual
        return 1.0 if self.mask is None else float(self.mask.mean())

    @property
    def label(self) -> str:
        return "none" if self.kind == "none" else {"range": "num < s", "in": "cat $in"}[self.kind]


def pick_categories(counts: np.ndarray, target_rows: float, rng: np.random.Generator) -> list[int]:
    """Categories (seeded random order) whose counts add up to about ``target_rows`` without overshooting much."""
    chosen, total = [], 0
    for c in rng.permutation(len(counts)):
        if counts[c] == 0 or total >= target_rows:
            continue
        if total + counts[c] <= 1.05 * target_rows:
            chosen.append(int(c))
            total += int(counts[c])
    if not chosen:  # every category is bigger than the target: take the closest one
        nz = np.flatnonzero(counts)
        chosen = [int(nz[np.argmin(np.abs(counts[nz] - target_rows))])]
    return sorted(chosen)


def make_filters(ds: Dataset) -> list[Filter]:
    out = [Filter("none", None, None, None, None)]
    counts = np.bincount(ds.attrs["cat"])
    rng = np.random.default_rng([SEED, 5])
    for s in SELECTIVITIES:
        out.append(Filter("range", s, {"num": {"$lt": s}}, f"num < {s!r}", ds.attrs["num"] < s))
        cats = pick_categories(counts, s * ds.n, rng)
        names = [f"c{c}" for c in cats]
        out.append(Filter("in", s, {"cat": {"$in": names}}, "cat IN (" + ", ".join(f"'{c}'" for c in names) + ")",
                          np.isin(ds.attrs["cat"], cats)))
    return out


def exact_truth(x: np.ndarray, q: np.ndarray, mask: np.ndarray | None, k: int = K,
                q_block: int = 256, r_block: int = 65_536) -> np.ndarray:
    """Exact top-k row ids (best first, -1 padded) among the rows in ``mask``: numpy, blocked."""
    rows = np.arange(len(x)) if mask is None else np.flatnonzero(mask)
    out = np.full((len(q), k), -1, dtype=np.int64)
    for qs in range(0, len(q), q_block):
        qb = q[qs:qs + q_block]
        best_s = np.full((len(qb), 0), -np.inf, dtype=np.float32)
        best_i = np.full((len(qb), 0), -1, dtype=np.int64)
        for rs in range(0, len(rows), r_block):
            ids = rows[rs:rs + r_block]
            xb = x[rs:rs + r_block] if mask is None else x[ids]
            s = qb @ xb.T
            kk = min(k, s.shape[1])
            part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
            cand_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
            cand_i = np.concatenate([best_i, ids[part]], axis=1)
            kk = min(k, cand_s.shape[1])
            top = np.argpartition(-cand_s, kk - 1, axis=1)[:, :kk]
            best_s, best_i = np.take_along_axis(cand_s, top, 1), np.take_along_axis(cand_i, top, 1)
        order = np.argsort(-best_s, axis=1, kind="stable")
        best_i = np.take_along_axis(best_i, order, 1)
        out[qs:qs + len(qb), :best_i.shape[1]] = best_i
    return out


def pad_ids(ids: Any, k: int = K) -> np.ndarray:
    """The first ``k`` of ``ids`` as an int64 row, ``-1`` padded (an answer's row numbers, for scoring)."""
    a = np.full(k, -1, dtype=np.int64)
    ids = list(ids)[:k]
    a[:len(ids)] = ids
    return a
