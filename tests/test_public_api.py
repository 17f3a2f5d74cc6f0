"""The public API, pinned: the names ``vecbox`` and the subpackages users import from export.

A name added to or removed from an ``__all__`` fails here on purpose: update the list in the
same change, so that what users can import changes only deliberately.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import vecbox

TOP_LEVEL = ["Collection", "Hit", "Record", "TextEncoder", "__version__", "errors", "make_codec", "parse_spec"]

SUBPACKAGES = {
    "vecbox.codecs": [
        "Codec", "CodecSpec", "Stage", "TOKENS", "codec_from_state", "load_codec", "make_codec", "parse_spec",
    ],
    "vecbox.evaluation": [
        "BeirDataset", "DEFAULT_KS", "METRIC_NAMES", "available_splits", "evaluate", "evaluate_per_query",
        "knn_recall", "load_beir", "mrr_at_k", "ndcg_at_k", "precision_at_k", "recall_at_k",
    ],
    "vecbox.multivector": [
        "FDEConfig", "MultiVectorIndex", "TokenSets", "as_token_sets", "chamfer", "encode_documents", "encode_fde",
        "encode_queries", "fde_candidates", "maxsim_candidates", "rerank", "search", "search_exact",
        "search_single_vector", "single_vector_candidates",
    ],
    "vecbox.errors": [
        "CollectionExistsError", "CollectionLockedError", "CollectionNotFoundError", "CorruptCollectionError",
        "DatasetError", "DimensionMismatchError", "DuplicateIdError", "FilterError", "InvalidInputError",
        "MissingDependencyError", "NotFittedError", "SpecError", "UnknownIdError", "VecboxError",
    ],
}


def _resolves(module: object, names: list[str]) -> list[str]:
    """The names of ``names`` that ``module`` does not provide."""
    missing = []
    for name in names:
        try:
            getattr(module, name)
        except AttributeError:
            missing.append(name)
    return missing


def test_the_top_level_exports_exactly_these_names():
    assert sorted(vecbox.__all__) == TOP_LEVEL
    assert len(set(vecbox.__all__)) == len(vecbox.__all__)
    assert _resolves(vecbox, vecbox.__all__) == []


@pytest.mark.parametrize("name", sorted(SUBPACKAGES))
def test_each_subpackage_exports_exactly_these_names(name):
    module = importlib.import_module(name)
    assert sorted(module.__all__) == SUBPACKAGES[name]
    assert len(set(module.__all__)) == len(module.__all__)
    assert _resolves(module, module.__all__) == []


def test_every_error_is_a_vecbox_error():
    from vecbox import errors

    assert [n for n in errors.__all__ if not issubclass(getattr(errors, n), errors.VecboxError)] == []


def test_import_vecbox_loads_no_model_library():
    """``import vecbox`` (and resolving its names, TextEncoder included) loads neither torch nor
    sentence-transformers: they load when a text model is first used. Checked in a fresh interpreter."""
    code = (
        "import sys, vecbox\n"
        "heavy = ('torch', 'sentence_transformers')\n"
        "print([m for m in heavy if m in sys.modules])\n"
        "[getattr(vecbox, n) for n in vecbox.__all__]\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split("\n")[:2] == ["[]", "[]"], out.stdout + out.stderr
