"""A collection's lexical settings: checked once at create / enable time, stored in its catalog."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from vecbox.errors import InvalidInputError
from vecbox.lexical.analyzer import Analyzer
from vecbox.lexical.bm25 import B, K1


def lexical_settings(spec: bool | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The stored form of ``lexical=``: ``True`` (English defaults), ``False``/``None`` (no index) or a dict.

    A dict takes the analyzer's settings (``language``, ``stopwords``, ``stem``,
    ``fold_accents``) and BM25's ``k1`` (> 0) and ``b`` (in [0, 1]).

    >>> lexical_settings({"language": "german", "k1": 1.2})["k1"]
    1.2
    >>> lexical_settings(False) is None
    True
    """
    if spec is None or spec is False:
        return None
    if spec is True:
        spec = {}
    if not isinstance(spec, Mapping):
        raise InvalidInputError(f"lexical must be True, False or a dict such as {{'language': 'english'}}; got {spec!r}")
    cfg = Analyzer.from_config(spec).to_config()
    k1, b = spec.get("k1", K1), spec.get("b", B)
    if isinstance(k1, bool) or not isinstance(k1, (int, float)) or not math.isfinite(k1) or k1 <= 0:
        raise InvalidInputError(f"lexical k1 must be a number > 0 (BM25's term-frequency saturation); got {k1!r}")
    if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b <= 1:
        raise InvalidInputError(f"lexical b must be a number in [0, 1] (BM25's length normalisation); got {b!r}")
    return {**cfg, "k1": float(k1), "b": float(b)}


__all__ = ["lexical_settings"]
