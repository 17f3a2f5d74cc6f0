"""``vecbox train pairs | mine | merge`` driven as a user would (Typer's runner), on a tiny BERT."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

pytest.importorskip("sentence_transformers")

from vecbox.cli import app  # noqa: E402

runner = CliRunner()
DOCS = [
    {"_id": f"d{i}", "title": title, "text": text} for i, (title, text) in enumerate([
        ("Reading CSV files", "The csv module reads rows. Each row is a list of strings."),
        ("Hashing strings", "Use hashlib for digests. SHA256 is a good default choice."),
        ("Sorting lists", "Sorted returns a new list. The sort method sorts in place."),
        ("Network sockets", "A socket opens a connection. A server accepts clients."),
    ])
]


def run_json(*args):
    result = runner.invoke(app, [str(a) for a in args] + ["--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from vecbox.train.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "m", layers=2, hidden=16, seed=0)


def test_train_pairs_from_a_corpus_then_merge(tiny, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    out = tmp_path / "tuned"
    summary = run_json("train", "pairs", corpus, "--model", tiny, "--out", out, "--loss", "starbucks",
                       "--ladder", "1:8,2:16", "--batch-size", 4, "--max-seq-length", 32, "--seed", 1)
    assert summary["finished"] and summary["pairs"] == 8 and summary["steps"] == 2  # 4 title + 4 ict pairs
    assert (out / "model.safetensors").is_file()
    card = json.loads((out / "vecbox_train.json").read_text())
    assert card["Training"]["ladder"] == [[1, 8], [2, 16]] and "ict" in card["Data"]
    merged = run_json("train", "merge", tiny, out, "--method", "slerp", "--t", 0.5, "--out", tmp_path / "m")
    assert merged["method"] == "slerp" and (tmp_path / "m" / "model.safetensors").is_file()
    ties = run_json("train", "merge", out, tmp_path / "m", "--method", "ties", "--base", tiny, "--out", tmp_path / "t")
    assert ties["out"] == str(tmp_path / "t")
    sp = run_json("train", "merge", out, tmp_path / "m", "--method", "self_positioning", "--base", tiny, "--probe", corpus,
                  "--steps", 3, "--out", tmp_path / "sp")
    assert len(sp["learned"]["weights"]) == 2 and (tmp_path / "sp" / "model.safetensors").is_file()


def test_train_mine_writes_pairs_with_negatives(tmp_path):
    from vecbox import Collection

    col = Collection.create(tmp_path / "c", model="default")
    col.add_texts([d["text"] for d in DOCS], ids=[d["_id"] for d in DOCS])
    col.close()
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    summary = run_json("train", "mine", tmp_path / "c", corpus, "--out", tmp_path / "mined.jsonl", "--kinds", "title",
                       "--negatives", 2, "--candidates", 4)
    assert summary["pairs"] == 4 and summary["negatives"] == 8
    rows = [json.loads(line) for line in (tmp_path / "mined.jsonl").read_text().splitlines()]
    assert all(len(r["negatives"]) == 2 and r["positive"] not in r["negatives"] for r in rows)
    # no pairs given: inverse-cloze pairs from the collection's own documents
    own = run_json("train", "mine", tmp_path / "c", "--out", tmp_path / "own.jsonl", "--kinds", "ict", "--candidates", 4)
    assert own["pairs"] == 4 and own["negatives"] == 4
    rows = [json.loads(line) for line in (tmp_path / "own.jsonl").read_text().splitlines()]
    assert {r["doc_id"] for r in rows} == {d["_id"] for d in DOCS}


def test_train_errors_are_vecbox_errors(tiny, tmp_path):
    """The runner hands the exception back; ``vecbox.cli.main`` prints such errors as one line (test_cli.py)."""
    from vecbox.errors import DatasetError, InvalidInputError

    def fails(*args):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 1
        return result.exception

    err = fails("train", "pairs", tmp_path / "missing.jsonl", "--model", tiny, "--out", tmp_path / "o")
    assert isinstance(err, DatasetError) and "does not exist" in str(err)
    err = fails("train", "merge", tiny, tiny, "--method", "ties", "--out", tmp_path / "o")
    assert isinstance(err, InvalidInputError) and "base model" in str(err)
    (tmp_path / "c.jsonl").write_text(json.dumps(DOCS[0]) + "\n" + json.dumps(DOCS[1]) + "\n")
    err = fails("train", "pairs", tmp_path / "c.jsonl", "--model", tiny, "--ladder", "1-32", "--out", tmp_path / "o")
    assert isinstance(err, InvalidInputError) and "layer:dim" in str(err)
