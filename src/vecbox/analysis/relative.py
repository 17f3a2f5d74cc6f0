"""Compare two embedding spaces of the same items: relative representations, retrieval agreement, CKA.

Relative representations (Moschella et al., ICLR 2023) describe every item by its
cosine to a fixed set of *anchor* items: ``rel(x) = normalize(x) @ normalize(A).T``.
Two models that embed the same items differently (a rotation, a rescaling, or a
genuinely different model) give comparable relative vectors when the same anchor
*ids* are used in both spaces, which makes cross-space retrieval possible.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(300, 32))
>>> q, _ = np.linalg.qr(rng.normal(size=(32, 32)))
>>> y = 3.0 * x @ q                                   # the same space, rotated and scaled
>>> anchors = select_anchors(x, 50, method="fps", seed=0)
>>> rx, ry = relative_representation(x, x[anchors]), relative_representation(y, y[anchors])
>>> round(float(np.mean(np.sum(rx * ry, 1) / np.linalg.norm(rx, axis=1) / np.linalg.norm(ry, axis=1))), 4)
1.0
>>> round(linear_cka(x, y), 4)
1.0
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vecbox.analysis._common import check_choice, check_int, normalize, vectors
from vecbox.errors import InvalidInputError

ANCHOR_METHODS = ("uniform", "kmeans", "fps")


def select_anchors(x: Any, n_anchors: int, method: str = "uniform", *, seed: int = 0) -> np.ndarray:
    """Indices of ``n_anchors`` anchor rows of ``x`` (use the same indices in every space).

    Parameters
    ----------
    x : array (n, d)
        The space the anchors are chosen in (any of the spaces being compared).
    n_anchors : int
        Number of anchors, at most ``n``.
    method : {"uniform", "kmeans", "fps"}
        ``uniform``: a seeded random sample. ``kmeans``: k-means with ``k = n_anchors``
        on normalised vectors, then the row nearest each centroid. ``fps``: farthest
        point sampling on normalised vectors from a random start.
    seed : int

    Returns
    -------
    ndarray of int64, shape (n_anchors,)
        Distinct row indices, sorted for ``uniform`` and ``kmeans``, in selection order for ``fps``.
    """
    xv = vectors(x, "x")
    n = xv.shape[0]
    k = check_int(n_anchors, "n_anchors", 1, n)
    check_choice(method, "method", ANCHOR_METHODS)
    rng = np.random.default_rng(seed)
    if method == "uniform":
        return np.sort(rng.choice(n, k, replace=False)).astype(np.int64)
    a = normalize(xv)
    if method == "fps":
        chosen = [int(rng.integers(n))]
        d2 = np.maximum(2.0 - 2.0 * (a @ a[chosen[0]]), 0.0)
        for _ in range(k - 1):
            d2[chosen] = -1.0
            nxt = int(np.argmax(d2))
            chosen.append(nxt)
            d2 = np.minimum(d2, np.maximum(2.0 - 2.0 * (a @ a[nxt]), 0.0))
        return np.asarray(chosen, dtype=np.int64)
    centers = _kmeans(a, k, rng)
    d2 = np.maximum((centers**2).sum(1)[:, None] + 1.0 - 2.0 * centers @ a.T, 0.0)
    taken: set[int] = set()
    out = []
    for row in d2:  # nearest unused row to each centroid
        for j in np.argsort(row):
            if int(j) not in taken:
                taken.add(int(j))
                out.append(int(j))
                break
    return np.sort(np.asarray(out, dtype=np.int64))


def _kmeans(a: np.ndarray, k: int, rng: np.random.Generator, iters: int = 25) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding (small, dependency-free)."""
    n = a.shape[0]
    centers = [a[rng.integers(n)]]
    d2 = ((a - centers[0]) ** 2).sum(1)
    for _ in range(k - 1):
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1.0 / n)
        centers.append(a[rng.choice(n, p=p)])
        d2 = np.minimum(d2, ((a - centers[-1]) ** 2).sum(1))
    c = np.asarray(centers)
    for _ in range(iters):
        labels = np.argmin((c**2).sum(1)[None, :] - 2.0 * a @ c.T, axis=1)
        new = np.zeros_like(c)
        np.add.at(new, labels, a)
        counts = np.bincount(labels, minlength=k)
        empty = counts == 0
        new[~empty] /= counts[~empty, None]
        new[empty] = c[empty]
        if np.allclose(new, c):
            break
        c = new
    return c


def relative_representation(x: Any, anchors: Any, *, normalize_output: bool = False) -> np.ndarray:
    """Cosine of every row of ``x`` to every anchor: float64 ``(n, n_anchors)``, entries in [-1, 1].

    ``anchors`` are vectors in the same space as ``x`` (usually ``x[select_anchors(...)]``).
    ``normalize_output=True`` L2-normalises each relative vector (useful before training on them).
    """
    xv = vectors(x, "x")
    av = vectors(anchors, "anchors", d=xv.shape[1])
    rel = normalize(xv) @ normalize(av).T
    return normalize(rel) if normalize_output else rel


def linear_cka(x: Any, y: Any) -> float:
    """Linear centred kernel alignment (Kornblith et al. 2019) of two spaces of the same items, in [0, 1].

    Invariant to rotations and isotropic scaling of either space; the widths may differ.
    """
    xv = vectors(x, "x").astype(np.float64)
    yv = vectors(y, "y").astype(np.float64)
    if xv.shape[0] != yv.shape[0]:
        raise InvalidInputError(f"x has {xv.shape[0]} rows and y has {yv.shape[0]}; CKA compares the same items in two spaces")
    xc, yc = xv - xv.mean(0), yv - yv.mean(0)
    cross = np.linalg.norm(yc.T @ xc) ** 2
    denom = np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)
    return float(cross / denom) if denom > 0 else 0.0


def _topk(q: np.ndarray, db: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest cosines of each row of q among the rows of db (normalised inputs)."""
    out = np.empty((q.shape[0], k), dtype=np.int64)
    for s in range(0, q.shape[0], 2048):
        sims = q[s:s + 2048] @ db.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1, kind="stable")
        out[s:s + 2048] = np.take_along_axis(part, order, 1)
    return out


def retrieval_agreement(x: Any, y: Any, k: int = 5) -> dict[str, float]:
    """Cross-space retrieval between two representations of the same items (same width), as in relreps.

    For each item ``w``: ``target`` = top-k neighbours of ``y_w`` among the rows of ``y``;
    ``actual`` = top-k neighbours of ``x_w`` searched among the rows of ``y`` (cosine).

    Returns
    -------
    dict
        ``jaccard``: mean |target ∩ actual| / |target ∪ actual|, in [0, 1];
        ``mrr``: mean 1 / rank of ``w`` itself in ``actual`` (0 if absent), in [0, 1];
        ``cosine``: mean cos(x_w, y_w), in [-1, 1]. Higher = the spaces agree more.
    """
    xv, yv = vectors(x, "x"), vectors(y, "y")
    if xv.shape != yv.shape:
        raise InvalidInputError(
            f"x has shape {xv.shape} and y {yv.shape}; retrieval agreement needs the same items in spaces of one width "
            "(compare relative representations built on the same anchors when the widths differ)"
        )
    n = xv.shape[0]
    k = check_int(k, "k", 1, n)
    a, b = normalize(xv), normalize(yv)
    target, actual = _topk(b, b, k), _topk(a, b, k)
    inter = np.array([np.intersect1d(t, s, assume_unique=True).size for t, s in zip(target, actual)])
    jaccard = inter / (2 * k - inter)
    hit = actual == np.arange(n)[:, None]
    rr = np.where(hit.any(1), 1.0 / (hit.argmax(1) + 1), 0.0)
    return {"jaccard": float(jaccard.mean()), "mrr": float(rr.mean()), "cosine": float(np.sum(a * b, 1).mean())}


def compare_spaces(x: Any, y: Any, *, n_anchors: int = 300, anchors: str = "uniform", k: int = 5,
                   center: bool = False, seed: int = 0) -> dict[str, Any]:
    """Compare two embedding spaces of the same items (row i of ``x`` and of ``y`` is one item).

    Reports linear CKA, cross-space retrieval on the absolute vectors (when the
    widths are equal) and on relative representations over the same anchor ids,
    in both directions.

    ``center=True`` subtracts each space's mean vector first. Cosines in an
    anisotropic space (all vectors in a narrow cone, e.g. early transformer
    layers) are all close to 1, so its relative vectors barely differ; centring
    removes the common direction and keeps the invariance to rotation and scaling.

    Returns
    -------
    dict
        ``n``, ``d_x``, ``d_y``, ``n_anchors``, ``anchors``, ``k``, ``cka``,
        ``absolute`` (dict or None), ``relative_xy`` and ``relative_yx`` (dicts
        of ``jaccard``/``mrr``/``cosine``), ``anchor_ids`` (list of int).
    """
    xv, yv = vectors(x, "x"), vectors(y, "y")
    if xv.shape[0] != yv.shape[0]:
        raise InvalidInputError(f"x has {xv.shape[0]} rows and y has {yv.shape[0]}; pass the same items in both spaces")
    if center:
        xv, yv = xv - xv.mean(axis=0), yv - yv.mean(axis=0)
    n_anchors = min(check_int(n_anchors, "n_anchors"), xv.shape[0])
    ids = select_anchors(xv, n_anchors, anchors, seed=seed)
    rx, ry = relative_representation(xv, xv[ids]), relative_representation(yv, yv[ids])
    return {
        "n": int(xv.shape[0]),
        "d_x": int(xv.shape[1]),
        "d_y": int(yv.shape[1]),
        "n_anchors": int(n_anchors),
        "anchors": anchors,
        "k": int(k),
        "center": bool(center),
        "cka": linear_cka(xv, yv),
        "absolute": retrieval_agreement(xv, yv, k) if xv.shape[1] == yv.shape[1] else None,
        "relative_xy": retrieval_agreement(rx, ry, k),
        "relative_yx": retrieval_agreement(ry, rx, k),
        "anchor_ids": ids.tolist(),
    }


def align_by_ids(ids_a: list[str], xa: Any, ids_b: list[str], xb: Any) -> tuple[np.ndarray, np.ndarray]:
    """Rows of two spaces restricted to their common ids, in the order of ``ids_a``.

    >>> a, b = align_by_ids(["x", "y"], [[1.0], [2.0]], ["y", "z", "x"], [[20.0], [30.0], [10.0]])
    >>> a.ravel().tolist(), b.ravel().tolist()
    ([1.0, 2.0], [10.0, 20.0])
    """
    xa_, xb_ = vectors(xa, "first"), vectors(xb, "second")
    pos_b = {id_: i for i, id_ in enumerate(ids_b)}
    common = [(i, pos_b[id_]) for i, id_ in enumerate(ids_a) if id_ in pos_b]
    if len(common) < 2:
        raise InvalidInputError(
            f"the two inputs share {len(common)} ids; compare needs the same items in both (matching ids or row order)"
        )
    ia, ib = (np.asarray(t, dtype=np.int64) for t in zip(*common))
    return xa_[ia], xb_[ib]


from vecbox.analysis._spaces import lsa_vectors, truncated_encoder  # noqa: E402  (re-exported helpers)

__all__ = [
    "ANCHOR_METHODS",
    "select_anchors",
    "relative_representation",
    "linear_cka",
    "retrieval_agreement",
    "compare_spaces",
    "align_by_ids",
    "lsa_vectors",
    "truncated_encoder",
]
