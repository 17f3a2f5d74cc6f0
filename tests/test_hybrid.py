"""Hybrid search through the collection: both retrievers under one filter, fused as the fusion module says.

References: the collection's own dense and lexical lists fused by hand (RRF), exact filtered
search, and hand-made documents where one retriever alone cannot find the answer.
"""

from __future__ import annotations

import numpy as np
import pytest

from vecbox import Collection
from vecbox.errors import InvalidInputError

D = 16
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november".split()


@pytest.fixture()
def corpus(tmp_path):
    rng = np.random.default_rng(4)
    n = 300
    x = rng.standard_normal((n, D)).astype(np.float32)
    docs = [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 12)))) for _ in range(n)]
    col = Collection.create(tmp_path / "c", dim=D)
    col.add([f"d{i}" for i in range(n)], x, [{"g": i % 4} for i in range(n)], docs)
    return col, x, docs


def test_rrf_hybrid_equals_rrf_of_the_two_lists_the_collection_returns(corpus):
    col, x, _ = corpus
    q, text = x[7] + 0.3, "golf hotel kilo"
    dense = [h.id for h in col.search(q, 50, include_metadata=False)]
    lexical = [h.id for h in col.search_lexical(text, 50, include_metadata=False)]
    expected: dict[str, float] = {}
    for ranked in (dense, lexical):
        for r, i in enumerate(ranked, start=1):
            expected[i] = expected.get(i, 0.0) + 1.0 / (60 + r)
    hits = col.search(q, 10, text=text, fusion="rrf", candidates=50, include_metadata=False)
    assert [h.id for h in hits] == sorted(expected, key=lambda i: (-expected[i], int(i[1:])))[:10]
    assert [h.score for h in hits] == pytest.approx(sorted(expected.values(), reverse=True)[:10])


def test_filters_apply_to_both_retrievers_before_fusion(corpus):
    col, x, docs = corpus
    for fusion in ("default", "rrf", "minmax", "zscore", "3sigma"):
        hits = col.search(x[3], 20, text="alpha bravo", where={"g": 2}, fusion=fusion)
        assert len(hits) == 20 and all(h.metadata["g"] == 2 for h in hits)
    plan = col.search(x[3], 5, text="alpha bravo", where={"g": 2}, explain=True).plan
    allowed = {f"d{i}" for i in range(len(docs)) if i % 4 == 2}
    assert {i for i, _ in plan.dense_hits} <= allowed and {i for i, _ in plan.lexical_hits} <= allowed
    assert plan.rows_allowed == len(allowed)
    # the dense list is the exact filtered top-N
    exact = col.search(x[3], len(plan.dense_hits), where={"g": 2}, exact=True, include_metadata=False)
    assert [i for i, _ in plan.dense_hits] == [h.id for h in exact]


def test_explain_names_both_lists_and_the_fusion(corpus):
    col, x, _ = corpus
    res = col.search(x[0], 5, text="delta echo", explain=True)
    plan = res.plan
    assert plan.mode == "hybrid" and plan.dense is not None and plan.dense.path == "exact"
    assert plan.lexical["terms"] == ["delta", "echo"] and plan.lexical["matched"] > 0
    assert plan.fusion["method"] == "default" and len(plan.lexical_hits) <= 100 and len(plan.dense_hits) == 100
    assert [h.id for h in res.hits] == [h.id for h in col.search(x[0], 5, text="delta echo")]
    text = str(plan)
    assert "dense" in text and "lexical" in text and "fusion" in text
    assert col.search_text("delta echo", 3, mode="lexical", explain=True).plan.mode == "lexical"


def test_a_query_no_document_shares_a_word_with_fuses_to_the_dense_order(corpus):
    col, x, _ = corpus
    dense = [h.id for h in col.search(x[5], 10, include_metadata=False)]
    for fusion in ("default", "rrf", "minmax"):
        hybrid = [h.id for h in col.search(x[5], 10, text="zulu yankee", fusion=fusion, include_metadata=False)]
        assert hybrid == dense


def test_each_retriever_finds_what_the_other_misses(tmp_path):
    """A rare code word only BM25 can match, a paraphrase only the vectors can: hybrid returns both."""
    col = Collection.create(tmp_path / "c", dim=3)
    x = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.9, 0.1], [0, 0, 1]], np.float32)
    docs = ["error code XK-7731 in the billing module", "the billing module overview", "holiday calendar",
            "vacation days policy", "office map"]
    col.add([f"d{i}" for i in range(5)], x, documents=docs)
    q = np.array([0, 1, 0], np.float32)  # "time off": near the holiday / vacation documents only
    dense = [h.id for h in col.search(q, 2)]
    lexical = [h.id for h in col.search_lexical("time off xk 7731", 2)]
    hybrid = [h.id for h in col.search(q, 3, text="time off xk 7731")]
    assert "d0" not in dense and lexical[0] == "d0"
    assert "d0" in hybrid and "d2" in hybrid


def test_bad_hybrid_arguments_get_clear_errors(corpus):
    col, x, _ = corpus
    with pytest.raises(InvalidInputError, match="pass text="):
        col.search(x[0], 5, fusion="rrf")
    with pytest.raises(InvalidInputError, match="not funnel= or nprobe="):
        col.search(x[0], 5, text="alpha", funnel=[(8, 50), (None, 5)])
    with pytest.raises(InvalidInputError, match="fusion spec"):
        col.search(x[0], 5, text="alpha", fusion="borda")
    with pytest.raises(InvalidInputError, match="candidates must be"):
        col.search(x[0], 5, text="alpha", candidates=0)
    with pytest.raises(InvalidInputError, match="non-empty query string"):
        col.search(x[0], 5, text="  ")
    with pytest.raises(InvalidInputError, match="one query"):
        col.search(x[:2], 5, text="alpha")
    with pytest.raises(InvalidInputError, match="dimension|width|expected"):
        col.search(np.ones(D + 1), 5, text="alpha")
    with pytest.raises(InvalidInputError, match="NaN|finite"):
        col.search(np.full(D, np.nan), 5, text="alpha")


def test_hybrid_on_an_empty_collection_and_after_every_row_is_deleted(tmp_path):
    col = Collection.create(tmp_path / "c", dim=2)
    assert col.search([1.0, 0.0], 3, text="anything") == []
    col.add(["a"], [[1.0, 0.0]], documents=["anything at all"])
    assert [h.id for h in col.search([1.0, 0.0], 3, text="anything")] == ["a"]
    col.delete(["a"])
    assert col.search([1.0, 0.0], 3, text="anything") == []
    assert col.search_lexical("anything") == []
