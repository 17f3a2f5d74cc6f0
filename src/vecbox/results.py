"""What searches and reads return: :class:`Hit`, :class:`Explained`, :class:`Record`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from vecbox.query.planner import Plan


class Hit(NamedTuple):
    """One search result (a named tuple: cheap to make, since searches return many).

    ``score`` is the cosine similarity (cosine, in [-1, 1]) or the inner product
    (dot) - higher is more similar - or the Euclidean distance (l2) - lower is
    more similar. Hits are always ordered best first.
    """

    id: str
    score: float
    metadata: dict[str, Any] | None = None
    document: str | None = None


@dataclass(frozen=True)
class Explained:
    """What ``search(..., explain=True)`` returns: the hits and the :class:`~vecbox.query.planner.Plan` that ran."""

    hits: Any
    plan: Plan


@dataclass(frozen=True)
class Record:
    """One stored item, as returned by :meth:`Collection.get` (vectors are normalised under cosine)."""

    id: str
    vector: np.ndarray
    metadata: dict[str, Any] | None
    document: str | None


__all__ = ["Explained", "Hit", "Record"]
