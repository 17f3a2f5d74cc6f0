"""Ranking metrics with the definitions of ``trec_eval`` / ``pytrec_eval`` (as used by BEIR and MTEB).

Inputs
------
A *run* maps a query id to ``{doc_id: score}`` (higher is better); *qrels* map a
query id to ``{doc_id: grade}`` (integers; ``grade > 0`` means relevant, ``0`` or
negative means judged non-relevant).

Conventions (each one matches ``trec_eval``; where BEIR differs it says so)
-------------------------------------------------------------------------
* **Ranking.** A query's documents are sorted by score, descending; equal scores
  are ordered by document id, *descending* (plain string comparison). This is
  ``trec_eval``'s tie-break, so metrics do not depend on dict order.
* **Identical ids.** With ``ignore_identical_ids=True`` (the default, as in BEIR's
  ``EvaluateRetrieval.evaluate``) a hit whose doc id equals its query id is
  dropped before ranking; this matters for corpora where queries are also
  documents (ArguAna, Quora, CQADupStack).
* **nDCG@k** (``ndcg_cut.k``): gain = the grade itself (linear, negatives count as
  0), discount ``1 / log2(rank + 1)`` with ranks starting at 1. The ideal DCG
  uses every positive grade of the query's qrels, sorted descending and cut at
  ``k``, so relevant documents missing from the run still count.
* **Recall@k** (``recall.k``): relevant documents in the top ``k`` divided by
  the number of relevant documents in the qrels.
* **Precision@k** (``P.k``): relevant documents in the top ``k`` divided by
  ``k`` (also when fewer than ``k`` documents were retrieved).
* **MRR@k**: ``1 / rank`` of the first relevant document within the top ``k``,
  0 if there is none (``recip_rank`` on the run cut at ``k``).
* **Averaging.** The mean is taken over *every query in the qrels* (like
  ``trec_eval -c``): a query with no results in the run scores 0, and so does a
  query whose qrels hold no relevant document. Queries that appear only in the
  run are ignored. BEIR instead averages over the queries present in both the
  run and the qrels; the two agree when every judged query was searched, which
  is the normal case.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from vecbox._validation import check_positive_int
from vecbox.errors import InvalidInputError

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]

#: Metric families computed by :func:`evaluate`, in output order.
METRIC_NAMES = ("ndcg", "recall", "precision", "mrr")

DEFAULT_KS = (1, 3, 5, 10, 100)


# --------------------------------------------------------------------- helpers


def _check_ks(ks: int | Iterable[int]) -> list[int]:
    """Return the cutoffs as a sorted list of unique ints >= 1."""
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, bool):
        ks = (ks,)
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Iterable):
        raise InvalidInputError(f"ks must be a positive integer or a sequence of them; got {ks!r}")
    out = sorted({check_positive_int(k, "each k in ks") for k in ks})
    if not out:
        raise InvalidInputError("ks is empty; pass at least one cutoff, e.g. ks=(10,)")
    return out


def _check_inputs(run: Run, qrels: Qrels) -> None:
    if not isinstance(run, Mapping):
        raise InvalidInputError(f"run must be a dict {{query_id: {{doc_id: score}}}}; got {type(run).__name__}")
    if not isinstance(qrels, Mapping):
        raise InvalidInputError(f"qrels must be a dict {{query_id: {{doc_id: grade}}}}; got {type(qrels).__name__}")
    if len(qrels) == 0:
        raise InvalidInputError("qrels is empty; there is no query to average over")
    for qid, judged in qrels.items():
        if not isinstance(judged, Mapping):
            raise InvalidInputError(
                f"qrels[{qid!r}] must be a dict {{doc_id: grade}}; got {type(judged).__name__}"
            )


def _ranked(query_id: str, scores: Mapping[str, float], depth: int, ignore_identical_ids: bool) -> list[str]:
    """The top ``depth`` doc ids of one query: score descending, then doc id descending."""
    if not isinstance(scores, Mapping):
        raise InvalidInputError(
            f"run[{query_id!r}] must be a dict {{doc_id: score}}; got {type(scores).__name__}"
        )
    items = []
    for doc_id, score in scores.items():
        if ignore_identical_ids and doc_id == query_id:
            continue
        try:
            s = float(score)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"run[{query_id!r}][{doc_id!r}] must be a number; got {score!r}"
            ) from None
        if math.isnan(s):
            raise InvalidInputError(f"run[{query_id!r}][{doc_id!r}] is NaN; scores must be comparable numbers")
        items.append((s, doc_id))
    # (score, doc_id) pairs are unique, so nlargest is a full deterministic order.
    return [doc_id for _, doc_id in heapq.nlargest(depth, items)]


def _discounts(n: int) -> np.ndarray:
    """``1 / log2(rank + 1)`` for ranks 1..n."""
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def _query_scores(
    ranked: list[str], judged: Mapping[str, int], ks: list[int]
) -> dict[str, float]:
    """All metrics of one query at every cutoff in ``ks`` (``ranked`` holds at least the top max(ks))."""
    gains = np.array([max(float(judged.get(d, 0)), 0.0) for d in ranked], dtype=np.float64)
    is_rel = gains > 0
    n_rel = sum(1 for g in judged.values() if g > 0)
    ideal = np.array(sorted((float(g) for g in judged.values() if g > 0), reverse=True), dtype=np.float64)

    kmax = ks[-1]
    dcg = np.cumsum(gains * _discounts(len(gains)))
    idcg = np.cumsum(ideal[:kmax] * _discounts(min(len(ideal), kmax)))
    hits = np.cumsum(is_rel)
    first = int(np.argmax(is_rel)) + 1 if is_rel.any() else 0  # 1-based rank of the first relevant doc

    out: dict[str, float] = {}
    for k in ks:
        n = min(k, len(ranked))
        dcg_k = float(dcg[n - 1]) if n else 0.0
        idcg_k = float(idcg[min(k, len(idcg)) - 1]) if len(idcg) else 0.0
        hits_k = int(hits[n - 1]) if n else 0
        out[f"ndcg@{k}"] = dcg_k / idcg_k if idcg_k > 0 else 0.0
        out[f"recall@{k}"] = hits_k / n_rel if n_rel else 0.0
        out[f"precision@{k}"] = hits_k / k
        out[f"mrr@{k}"] = 1.0 / first if 0 < first <= k else 0.0
    return out


# ------------------------------------------------------------------ public API


def evaluate_per_query(
    run: Run,
    qrels: Qrels,
    ks: int | Iterable[int] = DEFAULT_KS,
    *,
    ignore_identical_ids: bool = True,
) -> dict[str, dict[str, float]]:
    """Score every query of ``qrels``: ``{query_id: {"ndcg@10": ..., ...}}``.

    Parameters
    ----------
    run : dict of str to dict of str to float
        ``{query_id: {doc_id: score}}``; higher scores rank first.
    qrels : dict of str to dict of str to int
        ``{query_id: {doc_id: grade}}``; ``grade > 0`` is relevant.
    ks : int or iterable of int
        Cutoffs, each >= 1.
    ignore_identical_ids : bool
        Drop hits whose doc id equals the query id (BEIR's default).

    Returns
    -------
    dict of str to dict of str to float
        One entry per query of ``qrels`` (in qrels order), with the keys
        ``ndcg@k``, ``recall@k``, ``precision@k`` and ``mrr@k`` for each ``k``.
        Queries missing from ``run`` score 0.

    Raises
    ------
    InvalidInputError
        If a ``k`` is not a positive integer, ``qrels`` is empty, or a score is
        not a number.

    Examples
    --------
    >>> run = {"q1": {"d1": 0.9, "d2": 0.8}}
    >>> qrels = {"q1": {"d2": 1}, "q2": {"d3": 1}}
    >>> per_query = evaluate_per_query(run, qrels, ks=[1, 2])
    >>> per_query["q1"]["mrr@2"], per_query["q2"]["mrr@2"]
    (0.5, 0.0)
    """
    _check_inputs(run, qrels)
    cutoffs = _check_ks(ks)
    out: dict[str, dict[str, float]] = {}
    for qid, judged in qrels.items():
        ranked = _ranked(qid, run.get(qid, {}), cutoffs[-1], ignore_identical_ids)
        out[qid] = _query_scores(ranked, judged, cutoffs)
    return out


def evaluate(
    run: Run,
    qrels: Qrels,
    ks: int | Iterable[int] = DEFAULT_KS,
    *,
    ignore_identical_ids: bool = True,
) -> dict[str, float]:
    """Mean nDCG, recall, precision and MRR at each cutoff, over the queries of ``qrels``.

    Parameters
    ----------
    run : dict of str to dict of str to float
        ``{query_id: {doc_id: score}}``; higher scores rank first, ties are
        broken by doc id descending (as ``trec_eval`` does).
    qrels : dict of str to dict of str to int
        ``{query_id: {doc_id: grade}}``; ``grade > 0`` is relevant.
    ks : int or iterable of int
        Cutoffs, each >= 1. Default ``(1, 3, 5, 10, 100)``.
    ignore_identical_ids : bool
        Drop hits whose doc id equals the query id before ranking (BEIR's
        default, for corpora where queries are also documents).

    Returns
    -------
    dict of str to float
        Keys ``"ndcg@k"``, ``"recall@k"``, ``"precision@k"``, ``"mrr@k"`` for
        every ``k`` in ascending order, each the mean over all queries in
        ``qrels`` (queries missing from the run count as 0; queries only in
        the run are ignored). Values are not rounded.

    Raises
    ------
    InvalidInputError
        If a ``k`` is not a positive integer, ``qrels`` is empty, or a score is
        not a number.

    Examples
    --------
    >>> run = {"q1": {"d1": 0.9, "d2": 0.8, "d3": 0.1}, "q2": {"d4": 0.5}}
    >>> qrels = {"q1": {"d2": 1, "d3": 1}, "q2": {"d4": 2}}
    >>> scores = evaluate(run, qrels, ks=(1, 3))
    >>> scores["recall@1"], scores["recall@3"], scores["mrr@3"]
    (0.5, 1.0, 0.75)
    >>> round(scores["ndcg@3"], 4)  # q1: (1/log2(3) + 1/log2(4)) / (1 + 1/log2(3)) = 0.6934; q2: 1
    0.8467
    """
    per_query = evaluate_per_query(run, qrels, ks, ignore_identical_ids=ignore_identical_ids)
    cutoffs = _check_ks(ks)
    keys = [f"{name}@{k}" for name in METRIC_NAMES for k in cutoffs]
    n = len(per_query)
    return {key: math.fsum(scores[key] for scores in per_query.values()) / n for key in keys}


def _single(metric: str, run: Run, qrels: Qrels, k: int, ignore_identical_ids: bool) -> float:
    k = check_positive_int(k, "k")
    return evaluate(run, qrels, (k,), ignore_identical_ids=ignore_identical_ids)[f"{metric}@{k}"]


def ndcg_at_k(run: Run, qrels: Qrels, k: int, *, ignore_identical_ids: bool = True) -> float:
    """Mean nDCG@k over the queries of ``qrels`` (``trec_eval``'s ``ndcg_cut.k``).

    Gain is the relevance grade (linear), discount ``1 / log2(rank + 1)``; the
    ideal ranking sorts the query's positive grades descending. See
    :func:`evaluate` for ranking, tie-breaking and averaging rules.

    Parameters
    ----------
    run : dict of str to dict of str to float
        ``{query_id: {doc_id: score}}``.
    qrels : dict of str to dict of str to int
        ``{query_id: {doc_id: grade}}``.
    k : int
        Cutoff, >= 1.
    ignore_identical_ids : bool
        Drop hits whose doc id equals the query id.

    Returns
    -------
    float
        The mean nDCG@k, in [0, 1].

    Examples
    --------
    >>> run = {"q1": {"d1": 0.9, "d2": 0.8}}
    >>> qrels = {"q1": {"d2": 1}}
    >>> ndcg_at_k(run, qrels, k=2)  # 1 / log2(3)
    0.6309297535714575
    """
    return _single("ndcg", run, qrels, k, ignore_identical_ids)


def recall_at_k(run: Run, qrels: Qrels, k: int, *, ignore_identical_ids: bool = True) -> float:
    """Mean recall@k: relevant documents in the top ``k`` over all relevant documents.

    Parameters
    ----------
    run : dict of str to dict of str to float
        ``{query_id: {doc_id: score}}``.
    qrels : dict of str to dict of str to int
        ``{query_id: {doc_id: grade}}``; ``grade > 0`` is relevant.
    k : int
        Cutoff, >= 1.
    ignore_identical_ids : bool
        Drop hits whose doc id equals the query id.

    Returns
    -------
    float
        The mean recall@k over the queries of ``qrels``, in [0, 1].

    Examples
    --------
    >>> run = {"q1": {"d1": 0.9, "d2": 0.8}}
    >>> qrels = {"q1": {"d2": 1, "d7": 1}}
    >>> recall_at_k(run, qrels, k=1), recall_at_k(run, qrels, k=2)
    (0.0, 0.5)
    """
    return _single("recall", run, qrels, k, ignore_identical_ids)


def precision_at_k(run: Run, qrels: Qrels, k: int, *, ignore_identical_ids: bool = True) -> float:
    """Mean precision@k: relevant documents in the top ``k``, divided by ``k``.

    As in ``trec_eval``, the divisor is ``k`` even when fewer than ``k``
    documents were retrieved.

    Parameters
    ----------
    run : dict of str to dict of str to float
        ``{query_id: {doc_id: score}}``.
    qrels : dict of str to dict of str to int
        ``{query_id: {doc_id: grade}}``; ``grade > 0`` is relevant.
    k : int
        Cutoff, >= 1.
    ignore_identical_ids : bool
        Drop hits whose doc id equals the query id.

    Returns
    -------
    float
        The mean precision@k over the queries of ``qrels``, in [0, 1].

    Examples
    --------
    >>> run = {"q1": {"d1": 0.9, "d2": 0.8}}
    >>> qrels = {"q1": {"d2": 1}}
    >>> precision_at_k(run, qrels, k=2), precision_at_k(run, qrels, k=4)
    (0.5, 0.25)
    """
    return _single("precision", run, qrels, k, ignore_identical_ids)


def mrr_at_k(run: Run, qrels: Qrels, k: int, *, ignore_identical_ids: bool = True) -> float:
    """Mean reciprocal rank of the first relevant document within the top ``k``.

    Parameters
    ----------
    run : dict of str to dict of str to float
        ``{query_id: {doc_id: score}}``.
    qrels : dict of str to dict of str to int
        ``{query_id: {doc_id: grade}}``; ``grade > 0`` is relevant.
    k : int
        Cutoff, >= 1.
    ignore_identical_ids : bool
        Drop hits whose doc id equals the query id.

    Returns
    -------
    float
        The mean MRR@k over the queries of ``qrels``, in [0, 1].

    Examples
    --------
    >>> run = {"q1": {"d1": 0.9, "d2": 0.8}, "q2": {"d3": 0.3}}
    >>> qrels = {"q1": {"d2": 1}, "q2": {"d3": 1}}
    >>> mrr_at_k(run, qrels, k=10)  # (1/2 + 1/1) / 2
    0.75
    >>> mrr_at_k(run, qrels, k=1)  # (0 + 1) / 2
    0.5
    """
    return _single("mrr", run, qrels, k, ignore_identical_ids)


# ------------------------------------------------------------------ k-NN recall


def knn_recall(found: Any, truth: Any, k: int | None = None, *, per_query: bool = False) -> "float | np.ndarray":
    """Recall of approximate nearest neighbours against the exact ones: ``|found ∩ truth| / |truth|``.

    ``found`` and ``truth`` are per-query sequences of ids (rows of an integer array, or
    lists of any hashable ids). Negative integers are padding (no hit) and never count;
    ``k`` cuts both lists first. A query with an empty truth scores 1. Returns the mean,
    or the per-query values with ``per_query=True``.

    This is the one recall@k of the library: ANN calibration, codec reports, tests and
    benchmarks all use it.

    >>> knn_recall(np.array([[1, 2, 3], [4, 5, -1]]), np.array([[1, 2, 9], [4, 5, 6]]))
    0.6666666666666666
    >>> knn_recall([["a", "b"]], [["b", "c"]], per_query=True).tolist()
    [0.5]
    """
    if len(found) != len(truth):
        raise InvalidInputError(f"knn_recall: {len(found)} result rows for {len(truth)} queries")
    out = np.empty(len(truth))
    for i, (f, t) in enumerate(zip(found, truth)):
        f = f.tolist() if isinstance(f, np.ndarray) else list(f)
        t = t.tolist() if isinstance(t, np.ndarray) else list(t)
        if k is not None:
            f, t = f[:k], t[:k]
        ts = {x for x in t if not (isinstance(x, int) and x < 0)}
        out[i] = 1.0 if not ts else len(ts.intersection(f)) / len(ts)
    return out if per_query else float(out.mean()) if len(out) else 1.0


__all__ = [
    "knn_recall",
    "DEFAULT_KS",
    "METRIC_NAMES",
    "evaluate",
    "evaluate_per_query",
    "ndcg_at_k",
    "recall_at_k",
    "precision_at_k",
    "mrr_at_k",
]
