"""What the web page shows of a collection: a 2-D map of a sample, one item's neighbours, field statistics.

The map is a PCA projection of a seeded sample of the live rows, computed here on the server so
the page stays a plain script: the browser gets coordinates, not vectors. Each point carries its
metadata, a short document snippet and its k-NN anomaly score *within the sample* (distance to its
k-th nearest other sampled point, :func:`vecbox.analysis.anomaly.anomaly_scores` with ``"knn"``), so
the page can colour the map by a metadata field or by how isolated a point is.

>>> from vecbox import Collection
>>> col = Collection.create(tmp + "/c", dim=3)
>>> _ = col.add(["a", "b", "c", "d"], [[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0, 1]],
...             metadatas=[{"kind": "x"}, {"kind": "x"}, {"kind": "y"}, {"kind": "z"}])
>>> m = collection_map(col, points=10)
>>> m["sampled"], len(m["x"]), m["fields"]["kind"]["kind"], m["anomaly"]
(4, 4, 'string', [None, None, None, None])
>>> [h["id"] for h in neighbours(col, "a", k=2)["hits"]]
['b', 'c']
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from vecbox.errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from vecbox.collection import Collection

#: Characters of each point's document sent with the map (the hover card shows them).
SNIPPET_CHARS = 240
#: Distinct values listed per metadata field (the filter builder's suggestions, the legend).
TOP_VALUES = 12
MAX_POINTS = 20_000
#: Fewest sampled points that get anomaly scores (``None`` below: the kNN detector needs five).
MIN_ANOMALY_POINTS = 5


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"  # lists, objects, null: shown, not offered as a colour scale


def field_summary(metadatas: list[dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
    """Per top-level metadata field: its kind, how many rows have it, its commonest values (range for numbers).

    >>> field_summary([{"year": 2020, "tag": "a"}, {"year": 2022, "tag": "a"}, None])["year"]
    {'kind': 'number', 'present': 2, 'min': 2020, 'max': 2022, 'values': [[2020, 1], [2022, 1]]}
    """
    seen: dict[str, list[Any]] = {}
    for meta in metadatas:
        for key, value in (meta or {}).items():
            seen.setdefault(key, []).append(value)
    out: dict[str, dict[str, Any]] = {}
    for key, values in sorted(seen.items()):
        kinds = Counter(_kind(v) for v in values)
        kind = kinds.most_common(1)[0][0] if len(kinds) == 1 else "mixed"
        entry: dict[str, Any] = {"kind": kind, "present": len(values)}
        if kind == "number":
            entry["min"], entry["max"] = min(values), max(values)
        hashable = Counter(v for v in values if isinstance(v, (str, int, float, bool)))
        entry["values"] = [[v, n] for v, n in sorted(hashable.items(), key=lambda kv: (-kv[1], str(kv[0])))[:TOP_VALUES]]
        out[key] = entry
    return out


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """The rows of ``x`` on their first two principal axes, and the share of variance each explains.

    Signs are fixed (each axis' largest loading is positive), so the same data gives the same picture.

    >>> xy, share = pca_2d(np.array([[0, 0, 0], [2, 0, 0], [4, 1, 0]], dtype=np.float32))
    >>> xy.shape, round(sum(share), 6)
    ((3, 2), 1.0)
    """
    centred = np.asarray(x, dtype=np.float64) - x.mean(axis=0)
    if len(centred) < 2:
        return np.zeros((len(centred), 2)), [0.0, 0.0]
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    axes *= np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])[:, None]
    xy = centred @ axes.T
    if xy.shape[1] < 2:  # one-dimensional data: a line
        xy = np.hstack([xy, np.zeros((len(xy), 2 - xy.shape[1]))])
    total = float((sv**2).sum()) or 1.0
    share = [float(s**2 / total) for s in sv[:2]] + [0.0] * (2 - len(sv[:2]))
    return xy, share


def collection_map(col: "Collection", *, points: int = 2000, seed: int = 0, k: int = 10) -> dict[str, Any]:
    """A seeded sample of up to ``points`` live rows projected to 2-D, with what the page shows per point.

    Returns ids, ``x``/``y``, metadata, document snippets, ``anomaly`` (distance to the ``k``-th
    nearest other sampled point, higher = more isolated), the field summary and the variance shares.
    """
    if isinstance(points, bool) or not isinstance(points, int) or not 1 <= points <= MAX_POINTS:
        raise InvalidInputError(f"points must be an integer from 1 to {MAX_POINTS}; got {points!r}")
    version = col.version
    ids = col.ids()
    if len(ids) > points:
        pick = np.sort(np.random.default_rng(seed).choice(len(ids), size=points, replace=False))
        ids = [ids[i] for i in pick]
    records = col.get(ids, missing_ok=True)  # a delete between the two reads drops a point, nothing else
    out: dict[str, Any] = {"version": version, "total": col.count(), "sampled": len(records),
                           "ids": [r.id for r in records], "x": [], "y": [], "anomaly": [],
                           "metadata": [r.metadata for r in records],
                           "documents": [r.document[:SNIPPET_CHARS] if r.document else None for r in records],
                           "fields": field_summary([r.metadata for r in records]), "variance": [0.0, 0.0]}
    if not records:
        return out
    x = np.stack([r.vector for r in records]).astype(np.float32)
    xy, out["variance"] = pca_2d(x)
    out["x"], out["y"] = xy[:, 0].round(5).tolist(), xy[:, 1].round(5).tolist()
    if len(records) >= MIN_ANOMALY_POINTS:
        from vecbox.analysis.anomaly import anomaly_scores

        out["anomaly"] = anomaly_scores(x, "knn", k=min(k, len(records) - 1)).round(6).tolist()
    else:  # too few points for a neighbour distance to mean anything (the detector refuses them too)
        out["anomaly"] = [None] * len(records)
    return out


def neighbours(col: "Collection", id: str, *, k: int = 10, where: "Mapping[str, Any] | None" = None) -> dict[str, Any]:
    """The ``k`` nearest other items of the stored item ``id`` (its own vector as the query), with metadata."""
    record = col.get([id])[0]  # an unknown id: the collection's own "not found" error
    hits = col.search(record.vector, k + 1, where=where, include_metadata=True)
    return {"id": id, "hits": [h._asdict() for h in hits if h.id != id][:k]}


__all__ = ["collection_map", "field_summary", "neighbours", "pca_2d"]
