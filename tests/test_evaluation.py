"""Tests for vecbox.evaluation: the BEIR loader and the trec_eval-compatible metrics."""

from __future__ import annotations

import doctest
import json
import math
import random
import shutil
from pathlib import Path

import pytest

import vecbox.evaluation as evaluation
from vecbox.errors import DatasetError, InvalidInputError
from vecbox.evaluation import (
    BeirDataset,
    available_splits,
    evaluate,
    evaluate_per_query,
    load_beir,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from vecbox.evaluation import beir as beir_module
from vecbox.evaluation import metrics as metrics_module

TINY = Path(__file__).resolve().parent / "data" / "beir_tiny"


def shared_data(name: str) -> Path:
    """A data set under the project's shared/ folder (beside the repo); skip the test if it is absent."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / name
    if not path.is_dir():
        pytest.skip(f"shared data set {path} is not on this machine")
    return path


# D(r) = 1 / log2(r + 1), the discount of rank r.
D1, D2, D3, D4 = 1.0, 1 / math.log2(3), 1 / math.log2(4), 1 / math.log2(5)  # 1, 0.6309.., 0.5, 0.4306..


# ============================================================ metrics: by hand

# q1: graded; b and c tie at 0.9; e is relevant but never retrieved; c is judged non-relevant.
# q2: judged but absent from the run -> scores 0 everywhere, still counted in the mean.
# q3: the run holds a hit whose id is the query id ("q3"), dropped by default.
# q9: only in the run -> ignored.
TOY_QRELS = {
    "q1": {"a": 2, "b": 1, "c": 0, "e": 1},
    "q2": {"x": 1},
    "q3": {"m": 1, "n": 3},
}
TOY_RUN = {
    "q1": {"a": 0.5, "b": 0.9, "c": 0.9, "d": 0.7},
    "q3": {"n": 0.2, "m": 0.8, "z": 0.1, "q3": 5.0},
    "q9": {"a": 1.0},
}

# q1 ranking: c (0.9), b (0.9, tie -> larger id first, "c" > "b"), d (0.7), a (0.5); gains 0, 1, 0, 2.
#   DCG@1 = 0;  DCG@3 = 1*D2 = 0.63093;  DCG@5 = DCG@4 = D2 + 2*D4 = 1.49228
#   IDCG from grades [2, 1, 1]: @1 = 2;  @3 = @5 = 2 + D2 + D3 = 3.13093
#   relevant {a, b, e} -> recall@1 = 0, @3 = 1/3, @5 = 2/3;  precision@5 = 2/5 (divides by k, not 4)
#   first relevant at rank 2 -> MRR@1 = 0, MRR@3 = MRR@5 = 1/2
Q1 = {
    "ndcg@1": 0.0,
    "ndcg@3": D2 / (2 + D2 + D3),
    "ndcg@5": (D2 + 2 * D4) / (2 + D2 + D3),
    "recall@1": 0.0,
    "recall@3": 1 / 3,
    "recall@5": 2 / 3,
    "precision@1": 0.0,
    "precision@3": 1 / 3,
    "precision@5": 2 / 5,
    "mrr@1": 0.0,
    "mrr@3": 0.5,
    "mrr@5": 0.5,
}
Q2 = {key: 0.0 for key in Q1}
# q3 ranking without the identical id: m (0.8), n (0.2), z (0.1); gains 1, 3, 0.
#   DCG@1 = 1;  DCG@3 = DCG@5 = 1 + 3*D2 = 2.89279
#   IDCG from grades [3, 1]: @1 = 3;  @3 = @5 = 3 + D2 = 3.63093
#   recall (2 relevant): @1 = 1/2, @3 = @5 = 1;  precision: 1, 2/3, 2/5;  MRR = 1
Q3 = {
    "ndcg@1": 1 / 3,
    "ndcg@3": (1 + 3 * D2) / (3 + D2),
    "ndcg@5": (1 + 3 * D2) / (3 + D2),
    "recall@1": 0.5,
    "recall@3": 1.0,
    "recall@5": 1.0,
    "precision@1": 1.0,
    "precision@3": 2 / 3,
    "precision@5": 2 / 5,
    "mrr@1": 1.0,
    "mrr@3": 1.0,
    "mrr@5": 1.0,
}
# q3 keeping the identical id: q3 (5.0, not judged -> gain 0), m, n, z; gains 0, 1, 3, 0.
#   DCG@1 = 0;  DCG@3 = D2 + 3*D3 = 2.13093;  recall@1 = 0, @3 = 1;  precision@1 = 0, @3 = 2/3;  MRR = 1/2 (k >= 2)
Q3_KEEP = {
    "ndcg@1": 0.0,
    "ndcg@3": (D2 + 3 * D3) / (3 + D2),
    "ndcg@5": (D2 + 3 * D3) / (3 + D2),
    "recall@1": 0.0,
    "recall@3": 1.0,
    "recall@5": 1.0,
    "precision@1": 0.0,
    "precision@3": 2 / 3,
    "precision@5": 2 / 5,  # m and n among the 4 retrieved, divided by k = 5
    "mrr@1": 0.0,
    "mrr@3": 0.5,
    "mrr@5": 0.5,
}


def _mean(*per_query: dict[str, float]) -> dict[str, float]:
    return {key: sum(q[key] for q in per_query) / len(per_query) for key in per_query[0]}


def test_toy_run_per_query_matches_hand_computation():
    got = evaluate_per_query(TOY_RUN, TOY_QRELS, ks=(1, 3, 5))
    assert list(got) == ["q1", "q2", "q3"]  # every qrels query, none from the run only
    for qid, expected in (("q1", Q1), ("q2", Q2), ("q3", Q3)):
        assert got[qid] == pytest.approx(expected, abs=1e-9), qid


def test_toy_run_means_match_hand_computation():
    got = evaluate(TOY_RUN, TOY_QRELS, ks=(5, 1, 3, 3))  # unsorted, repeated cutoffs are fine
    expected = _mean(Q1, Q2, Q3)
    # e.g. ndcg@3 = (0.63093/3.13093 + 0 + 2.89279/3.63093) / 3 = (0.20152 + 0 + 0.79671) / 3 = 0.33274
    assert expected["ndcg@3"] == pytest.approx((0.20152 + 0 + 0.79671) / 3, abs=1e-5)
    assert got == pytest.approx(expected, abs=1e-9)
    assert list(got) == [f"{m}@{k}" for m in ("ndcg", "recall", "precision", "mrr") for k in (1, 3, 5)]


def test_ignore_identical_ids_false_keeps_the_self_hit():
    got = evaluate(TOY_RUN, TOY_QRELS, ks=(1, 3, 5), ignore_identical_ids=False)
    assert got == pytest.approx(_mean(Q1, Q2, Q3_KEEP), abs=1e-9)


def test_single_metric_functions_agree_with_hand_values():
    mean = _mean(Q1, Q2, Q3)
    for k in (1, 3, 5):
        assert ndcg_at_k(TOY_RUN, TOY_QRELS, k) == pytest.approx(mean[f"ndcg@{k}"], abs=1e-9)
        assert recall_at_k(TOY_RUN, TOY_QRELS, k) == pytest.approx(mean[f"recall@{k}"], abs=1e-9)
        assert precision_at_k(TOY_RUN, TOY_QRELS, k) == pytest.approx(mean[f"precision@{k}"], abs=1e-9)
        assert mrr_at_k(TOY_RUN, TOY_QRELS, k) == pytest.approx(mean[f"mrr@{k}"], abs=1e-9)
    keep = _mean(Q1, Q2, Q3_KEEP)
    assert mrr_at_k(TOY_RUN, TOY_QRELS, 3, ignore_identical_ids=False) == pytest.approx(keep["mrr@3"], abs=1e-9)


def test_k_larger_than_every_list():
    # q1 retrieves 4 docs, q3 3: at k = 100 nDCG, recall and MRR equal their k = 5 values;
    # precision divides by 100: q1 2/100, q2 0, q3 2/100.
    got = evaluate(TOY_RUN, TOY_QRELS, ks=100)
    five = _mean(Q1, Q2, Q3)
    assert got["ndcg@100"] == pytest.approx(five["ndcg@5"], abs=1e-9)
    assert got["recall@100"] == pytest.approx(five["recall@5"], abs=1e-9)
    assert got["mrr@100"] == pytest.approx(five["mrr@5"], abs=1e-9)
    assert got["precision@100"] == pytest.approx((2 / 100 + 0 + 2 / 100) / 3, abs=1e-9)


def test_ties_are_broken_by_doc_id_descending_whatever_the_dict_order():
    qrels = {"q": {"d1": 1}}
    # All scores equal: trec_eval order is d3, d2, d1 -> the relevant d1 is at rank 3.
    for order in (["d1", "d2", "d3"], ["d3", "d1", "d2"], ["d2", "d3", "d1"]):
        run = {"q": {d: 0.5 for d in order}}
        assert mrr_at_k(run, qrels, 10) == pytest.approx(1 / 3, abs=1e-12)
        assert recall_at_k(run, qrels, 2) == 0.0
    # String order, not numeric: "9" > "10", so "9" ranks first.
    assert mrr_at_k({"q": {"10": 1.0, "9": 1.0}}, {"q": {"10": 1}}, 10) == 0.5


def test_query_with_only_non_relevant_judgements_scores_zero_and_counts():
    run = {"q1": {"a": 1.0}, "q2": {"b": 1.0}}
    qrels = {"q1": {"a": 1}, "q2": {"b": 0, "c": -1}}
    got = evaluate(run, qrels, ks=1)
    assert got == {"ndcg@1": 0.5, "recall@1": 0.5, "precision@1": 0.5, "mrr@1": 0.5}


def test_negative_grades_count_as_zero_gain():
    # Ranking a (-1), b (1): DCG@2 = 0 + 1*D2; IDCG@2 = 1 (only b has a positive grade).
    run = {"q": {"a": 2.0, "b": 1.0}}
    qrels = {"q": {"a": -1, "b": 1}}
    assert ndcg_at_k(run, qrels, 2) == pytest.approx(D2, abs=1e-12)


def test_metrics_do_not_modify_the_run():
    run = json.loads(json.dumps(TOY_RUN))
    evaluate(run, TOY_QRELS)
    assert run == TOY_RUN


def test_perfect_run_scores_one():
    qrels = {"q1": {"a": 3, "b": 1}, "q2": {"c": 1}}
    run = {q: {d: float(g) for d, g in judged.items()} for q, judged in qrels.items()}
    got = evaluate(run, qrels, ks=(1, 2, 10))
    for k in (1, 2, 10):
        assert got[f"ndcg@{k}"] == pytest.approx(1.0, abs=1e-12)
        assert got[f"mrr@{k}"] == 1.0
    assert got["recall@2"] == 1.0


@pytest.mark.parametrize("bad_k", [0, -1, 1.5, True, "10", None])
def test_bad_k_raises_invalid_input(bad_k):
    with pytest.raises(InvalidInputError, match="k"):
        ndcg_at_k(TOY_RUN, TOY_QRELS, bad_k)
    with pytest.raises(InvalidInputError):
        evaluate(TOY_RUN, TOY_QRELS, ks=(1, bad_k))


def test_bad_metric_inputs_raise_invalid_input():
    with pytest.raises(InvalidInputError, match="ks is empty"):
        evaluate(TOY_RUN, TOY_QRELS, ks=())
    with pytest.raises(InvalidInputError, match="qrels is empty"):
        evaluate(TOY_RUN, {})
    with pytest.raises(InvalidInputError, match="NaN"):
        evaluate({"q1": {"a": float("nan")}}, TOY_QRELS)
    with pytest.raises(InvalidInputError, match="must be a number"):
        evaluate({"q1": {"a": "high"}}, TOY_QRELS)
    with pytest.raises(InvalidInputError, match="run must be a dict"):
        evaluate([("q1", {"a": 1.0})], TOY_QRELS)
    with pytest.raises(InvalidInputError, match=r"run\['q1'\] must be a dict"):
        evaluate({"q1": ["a", "b"]}, TOY_QRELS)
    # InvalidInputError is also a ValueError.
    with pytest.raises(ValueError):
        recall_at_k(TOY_RUN, TOY_QRELS, 0)


def test_numpy_scores_and_cutoffs_are_accepted():
    np = pytest.importorskip("numpy")
    run = {q: {d: np.float32(s) for d, s in docs.items()} for q, docs in TOY_RUN.items()}
    assert evaluate(run, TOY_QRELS, ks=np.array([1, 3, 5])) == pytest.approx(_mean(Q1, Q2, Q3), abs=1e-9)


# ============================================================ metrics vs pytrec_eval


def _random_case(seed: int, n_queries: int = 50, n_docs: int = 40):
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(n_docs)]
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for qi in range(n_queries):
        qid = f"q{qi}"
        judged = rng.sample(docs, rng.randint(1, 8))
        qrels[qid] = {d: rng.choice([-1, 0, 1, 1, 2, 3]) for d in judged}
        if rng.random() < 0.1:
            continue  # judged but never searched
        retrieved = rng.sample(docs, rng.randint(1, 30))
        # one decimal -> plenty of ties
        run[qid] = {d: round(rng.random(), 1) for d in retrieved}
    run["unjudged"] = {"d1": 1.0}
    return run, qrels


def _trec_order(scores: dict[str, float]) -> list[str]:
    """trec_eval's order, written independently: score descending, then doc id descending."""
    return [d for d, _ in sorted(scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluate_matches_pytrec_eval(seed):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    run, qrels = _random_case(seed)
    ks = (1, 3, 5, 10, 100)
    measures = {f"ndcg_cut.{','.join(map(str, ks))}", f"recall.{','.join(map(str, ks))}", f"P.{','.join(map(str, ks))}"}
    ref = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    # pytrec_eval reports only the queries both judged and searched; the others score 0 here.
    assert set(ref) == {q for q in qrels if q in run}

    ours = evaluate_per_query(run, qrels, ks, ignore_identical_ids=False)
    for qid in qrels:
        for k in ks:
            want = ref.get(qid, {})
            assert ours[qid][f"ndcg@{k}"] == pytest.approx(want.get(f"ndcg_cut_{k}", 0.0), abs=1e-9)
            assert ours[qid][f"recall@{k}"] == pytest.approx(want.get(f"recall_{k}", 0.0), abs=1e-9)
            assert ours[qid][f"precision@{k}"] == pytest.approx(want.get(f"P_{k}", 0.0), abs=1e-9)

    # MRR@k = recip_rank on the run cut at k.
    for k in ks:
        cut = {q: {d: run[q][d] for d in _trec_order(run[q])[:k]} for q in run}
        rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
        for qid in qrels:
            assert ours[qid][f"mrr@{k}"] == pytest.approx(rr.get(qid, {}).get("recip_rank", 0.0), abs=1e-9)

    # Means are over all judged queries.
    means = evaluate(run, qrels, ks, ignore_identical_ids=False)
    for k in ks:
        want = sum(r[f"ndcg_cut_{k}"] for r in ref.values()) / len(qrels)
        assert means[f"ndcg@{k}"] == pytest.approx(want, abs=1e-9)


def test_ignore_identical_ids_matches_pytrec_eval_on_a_cleaned_run():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    run, qrels = _random_case(7, n_queries=20)
    # Make queries also documents, and give each query a top-scoring hit on itself.
    run = {q: {**docs, q: 2.0} for q, docs in run.items()}
    cleaned = {q: {d: s for d, s in docs.items() if d != q} for q, docs in run.items()}
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(cleaned)
    ours = evaluate_per_query(run, qrels, 10)  # ignore_identical_ids=True is the default
    for qid in qrels:
        assert ours[qid]["ndcg@10"] == pytest.approx(ref.get(qid, {}).get("ndcg_cut_10", 0.0), abs=1e-9)


# ============================================================ loader: the tiny data set


TINY_CORPUS = {
    "d1": {"title": "Cats", "text": "Cats purr when content."},
    "d2": {"title": "", "text": "Dogs bark at strangers."},
    "3": {"title": "Birds", "text": "Birds can fly."},
    "d4": {"title": "", "text": "Fish swim in schools."},
    "q3": {"title": "Frogs", "text": "Do frogs croak at night?"},
}


def test_tiny_test_split_round_trips():
    ds = load_beir(TINY)
    assert isinstance(ds, BeirDataset)
    assert ds.name == "beir_tiny"
    assert ds.corpus == TINY_CORPUS
    assert list(ds.corpus) == ["d1", "d2", "3", "d4", "q3"]  # file order
    # q5 and 4 have no test judgements and are dropped; file order is kept.
    assert ds.queries == {"q1": "Which animal purrs?", "q2": "What do dogs do?", "q3": "Do frogs croak at night?"}
    assert list(ds.queries) == ["q1", "q2", "q3"]
    assert ds.qrels == {"q1": {"d1": 2, "d2": 0}, "q2": {"d2": 1}, "q3": {"d4": 1}}  # score 0 kept
    ids, texts = ds.doc_texts()
    assert ids == ["d1", "d2", "3", "d4", "q3"]
    assert texts == [
        "Cats Cats purr when content.",
        "Dogs bark at strangers.",  # empty title: no leading space
        "Birds Birds can fly.",
        "Fish swim in schools.",  # no title at all
        "Frogs Do frogs croak at night?",
    ]
    assert ds.query_texts() == (["q1", "q2", "q3"], ["Which animal purrs?", "What do dogs do?", "Do frogs croak at night?"])
    with pytest.raises(AttributeError):
        ds.name = "other"  # frozen


def test_tiny_dev_split_reads_jsonl_qrels_with_integer_ids():
    ds = load_beir(str(TINY), split="dev")
    assert ds.qrels == {"4": {"3": 1}, "q1": {"d1": 1}}
    assert list(ds.queries) == ["q1", "4"]  # queries file order, not qrels order
    assert all(isinstance(q, str) for q in ds.queries)
    assert available_splits(TINY) == ["dev", "test"]


def test_tiny_data_set_evaluates_end_to_end():
    ds = load_beir(TINY)
    run = {"q1": {"d2": 0.9, "d1": 0.8}, "q2": {"d2": 0.7}, "q3": {"q3": 1.0, "d4": 0.5}}
    # q1: d2 (grade 0), d1 (grade 2) -> nDCG@10 = 2*D2 / 2 = D2; q2: 1; q3: self-hit dropped, d4 first -> 1
    assert ndcg_at_k(run, ds.qrels, 10) == pytest.approx((D2 + 1 + 1) / 3, abs=1e-12)


@pytest.fixture
def tiny_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "tiny"
    shutil.copytree(TINY, dst)
    return dst


def test_crlf_tsv_qrels(tiny_copy: Path):
    tsv = tiny_copy / "qrels" / "test.tsv"
    tsv.write_bytes(tsv.read_bytes().replace(b"\n", b"\r\n"))
    assert b"\r\n" in tsv.read_bytes()
    ds = load_beir(tiny_copy)
    assert ds.qrels == {"q1": {"d1": 2, "d2": 0}, "q2": {"d2": 1}, "q3": {"d4": 1}}
    assert all("\r" not in d for judged in ds.qrels.values() for d in judged)


def test_crlf_jsonl_and_utf8_bom(tiny_copy: Path):
    for name in ("corpus.jsonl", "queries.jsonl"):
        f = tiny_copy / name
        f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes().replace(b"\n", b"\r\n"))
    ds = load_beir(tiny_copy)
    assert ds.corpus == TINY_CORPUS
    assert list(ds.queries) == ["q1", "q2", "q3"]


def test_root_qrels_jsonl_is_the_test_split(tiny_copy: Path):
    shutil.rmtree(tiny_copy / "qrels")
    rows = [{"query-id": "q2", "corpus-id": "d2", "score": 1}, {"query-id": 4, "corpus-id": 3, "score": 2}]
    (tiny_copy / "qrels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")  # trailing blank line
    ds = load_beir(tiny_copy)
    assert ds.qrels == {"q2": {"d2": 1}, "4": {"3": 2}}
    assert list(ds.queries) == ["q2", "4"]
    assert available_splits(tiny_copy) == ["test"]
    with pytest.raises(DatasetError, match=r"no qrels for split 'dev'.*splits found: test"):
        load_beir(tiny_copy, split="dev")


def test_identical_duplicate_qrels_rows_are_accepted(tiny_copy: Path):
    tsv = tiny_copy / "qrels" / "test.tsv"
    tsv.write_text(tsv.read_text() + "q2\td2\t1\n")
    assert load_beir(tiny_copy).qrels["q2"] == {"d2": 1}


# ============================================================ loader: malformed input


def _rewrite(path: Path, lineno: int, new_line: str) -> None:
    lines = path.read_text().splitlines()
    lines[lineno - 1] = new_line
    path.write_text("\n".join(lines) + "\n")


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + line + "\n")


# (id, how to break the copy, the pattern the DatasetError message must contain)
MALFORMED = [
    ("corpus-missing", lambda p: (p / "corpus.jsonl").unlink(), r"corpus\.jsonl is missing"),
    ("queries-missing", lambda p: (p / "queries.jsonl").unlink(), r"queries\.jsonl is missing"),
    (
        "qrels-missing",
        lambda p: shutil.rmtree(p / "qrels"),
        r"no qrels for split 'test'; expected qrels/test\.tsv or qrels/test\.jsonl or qrels\.jsonl \(no qrels found",
    ),
    (
        "corpus-not-json",
        lambda p: _rewrite(p / "corpus.jsonl", 2, '{"_id": "d2", "text": '),
        r"corpus\.jsonl, line 2: not valid JSON .*expected one JSON object per line",
    ),
    (
        "corpus-not-object",
        lambda p: _rewrite(p / "corpus.jsonl", 3, '["d3", "Birds"]'),
        r"corpus\.jsonl, line 3: expected a JSON object .* got a list",
    ),
    (
        "corpus-no-id",
        lambda p: _rewrite(p / "corpus.jsonl", 4, '{"title": "T", "text": "no id"}'),
        r"corpus\.jsonl, line 4: '_id' is missing; expected \{\"_id\"",
    ),
    (
        "corpus-float-id",
        lambda p: _rewrite(p / "corpus.jsonl", 1, '{"_id": 1.5, "text": "x"}'),
        r"corpus\.jsonl, line 1: '_id' is 1\.5",
    ),
    (
        "corpus-empty-id",
        lambda p: _rewrite(p / "corpus.jsonl", 1, '{"_id": "", "text": "x"}'),
        r"corpus\.jsonl, line 1: '_id' is ''",
    ),
    (
        "corpus-no-text",
        lambda p: _rewrite(p / "corpus.jsonl", 2, '{"_id": "d2", "title": "only a title"}'),
        r"corpus\.jsonl, line 2: 'text' is missing",
    ),
    (
        "corpus-text-not-string",
        lambda p: _rewrite(p / "corpus.jsonl", 2, '{"_id": "d2", "text": 42}'),
        r"corpus\.jsonl, line 2: 'text' is 42 \(int\), not a string",
    ),
    (
        "corpus-duplicate-id",
        lambda p: _append(p / "corpus.jsonl", '{"_id": "d1", "text": "again"}'),
        r"corpus\.jsonl, line 6: duplicate _id 'd1' \(first on line 1\)",
    ),
    ("corpus-empty", lambda p: (p / "corpus.jsonl").write_text("\n"), r"corpus\.jsonl holds no documents"),
    (
        "queries-not-json",
        lambda p: _rewrite(p / "queries.jsonl", 5, "q5\tA query nobody judged."),
        r"queries\.jsonl, line 5: not valid JSON",
    ),
    (
        "queries-no-id",
        lambda p: _rewrite(p / "queries.jsonl", 2, '{"text": "What do dogs do?"}'),
        r"queries\.jsonl, line 2: '_id' is missing",
    ),
    (
        "queries-duplicate-id",
        lambda p: _append(p / "queries.jsonl", '{"_id": "q2", "text": "again"}'),
        r"queries\.jsonl, line 6: duplicate _id 'q2'",
    ),
    (
        "tsv-bad-header",
        lambda p: _rewrite(p / "qrels" / "test.tsv", 1, "q0\td0\t1"),
        r"test\.tsv, line 1: expected the header 'query-id<TAB>corpus-id<TAB>score'; got 'q0\\td0\\t1'",
    ),
    (
        "tsv-two-fields",
        lambda p: _rewrite(p / "qrels" / "test.tsv", 3, "q1 d2 0"),
        r"test\.tsv, line 3: expected 3 tab-separated fields .* got 1",
    ),
    (
        "tsv-score-not-int",
        lambda p: _rewrite(p / "qrels" / "test.tsv", 4, "q2\td2\trelevant"),
        r"test\.tsv, line 4: score 'relevant' is not an integer",
    ),
    (
        "tsv-empty-id",
        lambda p: _rewrite(p / "qrels" / "test.tsv", 4, "q2\t\t1"),
        r"test\.tsv, line 4: empty query-id or corpus-id",
    ),
    (
        "tsv-conflicting-duplicate",
        lambda p: _append(p / "qrels" / "test.tsv", "q1\td1\t1"),
        r"test\.tsv, line 6: query 'q1' judges document 'd1' again with score 1 \(it had 2\)",
    ),
    (
        "tsv-only-header",
        lambda p: (p / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"),
        r"test\.tsv holds no judgements",
    ),
    (
        "qrels-unknown-query",
        lambda p: _append(p / "qrels" / "test.tsv", "q77\td1\t1"),
        r"test\.tsv, line 6: query-id 'q77' is not in .*queries\.jsonl",
    ),
    (
        "qrels-two-files",
        lambda p: (p / "qrels" / "test.jsonl").write_text('{"query-id": "q1", "corpus-id": "d1", "score": 1}\n'),
        r"split 'test' has several qrels files \(qrels/test\.tsv, qrels/test\.jsonl\)",
    ),
]

MALFORMED_DEV = [
    (
        "jsonl-no-score",
        lambda p: _append(p / "qrels" / "dev.jsonl", '{"query-id": "q2", "corpus-id": "d2"}'),
        r"dev\.jsonl, line 3: 'score' is missing; expected \{\"query-id\"",
    ),
    (
        "jsonl-bool-score",
        lambda p: _append(p / "qrels" / "dev.jsonl", '{"query-id": "q2", "corpus-id": "d2", "score": true}'),
        r"dev\.jsonl, line 3: score True is not an integer",
    ),
    (
        "jsonl-not-json",
        lambda p: _rewrite(p / "qrels" / "dev.jsonl", 1, "4\t3\t1"),
        r"dev\.jsonl, line 1: not valid JSON",
    ),
    (
        "jsonl-no-corpus-id",
        lambda p: _rewrite(p / "qrels" / "dev.jsonl", 2, '{"query-id": "q1", "score": 1}'),
        r"dev\.jsonl, line 2: 'corpus-id' is missing",
    ),
    (
        "jsonl-unknown-query",
        lambda p: _rewrite(p / "qrels" / "dev.jsonl", 2, '{"query-id": "nope", "corpus-id": "d1", "score": 1}'),
        r"dev\.jsonl, line 2: query-id 'nope' is not in",
    ),
]


@pytest.mark.parametrize("breaker, pattern", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_test_split_raises_dataset_error(tiny_copy: Path, breaker, pattern):
    breaker(tiny_copy)
    with pytest.raises(DatasetError, match=pattern):
        load_beir(tiny_copy)


@pytest.mark.parametrize("breaker, pattern", [c[1:] for c in MALFORMED_DEV], ids=[c[0] for c in MALFORMED_DEV])
def test_malformed_dev_split_raises_dataset_error(tiny_copy: Path, breaker, pattern):
    breaker(tiny_copy)
    with pytest.raises(DatasetError, match=pattern):
        load_beir(tiny_copy, split="dev")


def test_missing_folder_and_split(tmp_path: Path):
    with pytest.raises(DatasetError, match=r"folder .*nowhere does not exist"):
        load_beir(tmp_path / "nowhere")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(DatasetError, match="is not a folder"):
        load_beir(a_file)
    with pytest.raises(DatasetError, match=r"no qrels for split 'train'.*splits found: dev, test"):
        load_beir(TINY, split="train")
    with pytest.raises(InvalidInputError, match="split must be a non-empty string"):
        load_beir(TINY, split="")
    # DatasetError is a ValueError too.
    with pytest.raises(ValueError):
        load_beir(tmp_path / "nowhere")


# ============================================================ loader: real data sets (skipped when absent)


def test_scifact_counts():
    path = shared_data("scifact")
    ds = load_beir(path)
    assert ds.name == "scifact"
    assert len(ds.corpus) == 5183
    with open(path / "queries.jsonl", encoding="utf-8") as fh:
        assert sum(1 for line in fh if line.strip()) == 1109
    assert len(ds.queries) == 300  # only the judged test queries are kept
    assert len(ds.qrels) == 300
    assert sum(len(j) for j in ds.qrels.values()) == 339
    assert {g for j in ds.qrels.values() for g in j.values()} == {1}
    assert all(d in ds.corpus for j in ds.qrels.values() for d in j)
    ids, texts = ds.doc_texts()
    assert len(ids) == len(texts) == 5183 and all(texts)
    # A perfect run scores 1 everywhere.
    perfect = {q: {d: 1.0 for d in judged} for q, judged in ds.qrels.items()}
    scores = evaluate(perfect, ds.qrels, ks=(10, 100))
    assert scores["ndcg@10"] == pytest.approx(1.0) and scores["recall@100"] == 1.0


def test_limit_small_counts():
    ds = load_beir(shared_data("limit-small"))
    assert len(ds.corpus) == 46
    assert len(ds.queries) == 1000
    assert sum(len(j) for j in ds.qrels.values()) == 2000
    assert all(len(j) == 2 for j in ds.qrels.values())
    assert {d for j in ds.qrels.values() for d in j} == set(ds.corpus)  # every doc is relevant to some query


# ============================================================ public surface


def test_public_names_and_docstring_examples():
    for name in evaluation.__all__:
        assert hasattr(evaluation, name), name
    for module in (metrics_module, beir_module):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, f"{module.__name__}: {result.failed} doctest(s) failed"
        assert result.attempted > 0
