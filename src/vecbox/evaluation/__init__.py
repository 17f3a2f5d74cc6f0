"""Retrieval evaluation: BEIR-format data sets and trec_eval-compatible ranking metrics.

Needs only numpy and the standard library.
"""

from vecbox.evaluation.beir import BeirDataset, available_splits, load_beir
from vecbox.evaluation.metrics import (
    DEFAULT_KS,
    METRIC_NAMES,
    evaluate,
    evaluate_per_query,
    knn_recall,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

__all__ = [
    "BeirDataset",
    "load_beir",
    "available_splits",
    "DEFAULT_KS",
    "METRIC_NAMES",
    "evaluate",
    "evaluate_per_query",
    "knn_recall",
    "ndcg_at_k",
    "recall_at_k",
    "precision_at_k",
    "mrr_at_k",
]
