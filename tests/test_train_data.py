"""Training data: unsupervised pairs from a corpus file, and hard-negative mining from a collection."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vecbox import Collection
from vecbox.errors import DatasetError, InvalidInputError
from vecbox.train.mining import mine_hard_negatives, mine_negatives, positive_aware_filter
from vecbox.train.pairs import Doc, Pair, make_pairs, read_corpus, read_pairs, sentences, write_pairs

DOCS = [
    {"_id": "d1", "title": "Reading CSV files", "text": "The csv module reads rows. Each row is a list of strings."},
    {"_id": "d2", "title": "Hashing strings", "text": "Use hashlib for digests. SHA256 is a good default. MD5 is not."},
    {"_id": "d3", "title": "", "text": "A single sentence without a title."},
]


def _unit_at(cos: float) -> list[float]:
    return [cos, math.sqrt(1 - cos * cos)]


# ---------------------------------------------------------------- pairs
@pytest.mark.parametrize("fmt", ["beir", "jsonl", "csv", "parquet"])
def test_read_corpus_from_every_format(tmp_path, fmt):
    if fmt == "beir":
        (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DOCS))
        path = tmp_path
    elif fmt == "jsonl":
        path = tmp_path / "c.jsonl"
        path.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    else:
        pa = pytest.importorskip("pyarrow")
        table = pa.table({"id": [d["_id"] for d in DOCS], "title": [d["title"] for d in DOCS],
                          "text": [d["text"] for d in DOCS]})
        path = tmp_path / f"c.{fmt}"
        if fmt == "csv":
            import pyarrow.csv as pcsv

            pcsv.write_csv(table, path)
        else:
            import pyarrow.parquet as pq

            pq.write_table(table, path)
    docs = read_corpus(path)
    assert [d.id for d in docs] == ["d1", "d2", "d3"]
    assert docs[1] == Doc("d2", "Hashing strings", DOCS[1]["text"])


def test_read_corpus_errors(tmp_path):
    (tmp_path / "c.jsonl").write_text(json.dumps({"_id": "x", "body": "no text column"}) + "\n")
    with pytest.raises(DatasetError, match="no 'text' column"):
        read_corpus(tmp_path / "c.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="without corpus.jsonl"):
        read_corpus(tmp_path / "empty")


def test_title_and_inverse_cloze_pairs():
    docs = [Doc(d["_id"], d["title"], d["text"]) for d in DOCS]
    titles = make_pairs(docs, kinds=("title",))
    assert [(p.anchor, p.positive, p.doc_id) for p in titles] == [(d.title, d.text, d.id) for d in docs[:2]]
    ict = make_pairs(docs, kinds=("ict",), seed=3)
    assert [p.doc_id for p in ict] == ["d1", "d2"]  # d3 has one sentence: no pair
    for p, d in zip(ict, docs):
        sents = sentences(d.text)
        assert p.anchor in sents and p.anchor not in p.positive  # the sentence is taken out of its context
        assert p.positive == " ".join(s for s in sents if s != p.anchor)
    assert make_pairs(docs, seed=3) == make_pairs(docs, seed=3)  # seeded
    assert len(make_pairs(docs, max_pairs=2, seed=1)) == 2
    with pytest.raises(InvalidInputError, match="kinds"):
        make_pairs(docs, kinds=("cloze",))


def test_pairs_round_trip_through_jsonl(tmp_path):
    pairs = [Pair("q", "p", ("n1", "n2"), "d1"), Pair("q2", "p2")]
    assert read_pairs(write_pairs(pairs, tmp_path / "p.jsonl")) == pairs
    (tmp_path / "bad.jsonl").write_text(json.dumps({"query": "q"}) + "\n")
    with pytest.raises(DatasetError, match="anchor"):
        read_pairs(tmp_path / "bad.jsonl")


# ---------------------------------------------------------------- mining
def test_positive_aware_filter_by_hand():
    s = np.array([0.95, 0.86, 0.85, 0.5])
    assert positive_aware_filter(s, 0.9).tolist() == [False, False, True, True]  # below 0.95 * 0.9 = 0.855
    assert positive_aware_filter(s, 0.9, margin=0.1).tolist() == [False, False, False, True]  # and below 0.8
    assert positive_aware_filter(s, 0.9, ratio=1.0).tolist() == [False, True, True, True]  # below the positive


@pytest.fixture
def scored(tmp_path):
    """A cosine collection where the query [1, 0] scores each item at the cosine in its name."""
    col = Collection.create(tmp_path / "c", dim=2)
    items = {"pos": 0.9, "fn": 0.95, "close": 0.86, "hard": 0.85, "easy": 0.5, "far": -0.2}
    col.add(list(items), np.array([_unit_at(c) for c in items.values()], np.float32),
            documents=[f"doc {k}" for k in items])
    return col


def test_mining_drops_the_positive_and_probable_false_negatives(scored):
    q, p = np.array([[1.0, 0.0]]), np.array([_unit_at(0.9)])
    hits = mine_negatives(scored, q, p, ["pos"], n_negatives=2, candidates=6)
    assert [h.id for h in hits[0]] == ["hard", "easy"]
    assert hits[0][0].score == pytest.approx(0.85, abs=1e-6)
    assert [h.id for h in mine_negatives(scored, q, p, ["pos"], n_negatives=2, margin=0.1)[0]] == ["easy", "far"]
    assert [h.id for h in mine_negatives(scored, q, p, ["pos"], n_negatives=1, ratio=1.0)[0]] == ["close"]
    with pytest.raises(InvalidInputError, match="ratio"):
        mine_negatives(scored, q, p, ["pos"], ratio=1.5)
    with pytest.raises(InvalidInputError, match="candidates"):
        mine_negatives(scored, q, p, ["pos"], n_negatives=5, candidates=2)
    with pytest.raises(InvalidInputError, match="one of each"):
        mine_negatives(scored, q, p, ["pos", "x"])


def test_mine_hard_negatives_from_a_text_collection(tmp_path):
    pytest.importorskip("sentence_transformers")
    from vecbox.encoders.text import TextEncoder

    model = "default"  # the bundled MiniLM: a random tiny model scores every pair alike
    docs = [Doc(d["_id"], d["title"], d["text"]) for d in DOCS] + [
        Doc(f"x{i}", "", t) for i, t in enumerate(["zip archives compress files.", "a socket opens a network line.",
                                                   "sort a list of numbers.", "parse json text into a dict."])]
    col = Collection.create(tmp_path / "c", model=model)
    col.add_texts([d.text for d in docs], ids=[d.id for d in docs])
    pairs = make_pairs(docs, kinds=("title",))
    mined = mine_hard_negatives(col, pairs, n_negatives=2, candidates=7)
    enc = col.encoder
    for pair, m in zip(pairs, mined):
        assert (m.anchor, m.positive, m.doc_id) == (pair.anchor, pair.positive, pair.doc_id)
        assert len(m.negatives) == 2 and pair.positive not in m.negatives
        q, pos, negs = enc.encode([m.anchor]), enc.encode([m.positive]), enc.encode(list(m.negatives))
        assert np.all(negs @ q[0] < 0.95 * float(pos[0] @ q[0]) + 1e-6)  # the filter held
    with pytest.raises(InvalidInputError, match="layers"):
        mine_hard_negatives(col, pairs, encoder=TextEncoder(model, layers=1))
