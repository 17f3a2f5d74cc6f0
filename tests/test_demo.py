"""The main job: semantic search over the standard library's docstrings."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from vecbox import Collection
from vecbox.demo.job import HYBRID, run_demo
from vecbox.demo.stdlib_docs import harvest_stdlib_docs

EXPECTED = {
    "read a csv file": ("csv.",),
    "compute a sha256 digest of a file": ("hashlib.",),
    "parse command line options": ("argparse.", "getopt.", "optparse."),
    "run a subprocess with a timeout": ("subprocess.",),
}


@pytest.fixture(scope="module")
def docs():
    return harvest_stdlib_docs()


def test_demo_questions_find_the_right_modules(tmp_path, docs):
    """A collection of the real docstrings of a dozen modules answers the demo's questions sensibly."""
    keep = {"csv", "hashlib", "argparse", "getopt", "optparse", "subprocess", "json", "os", "shutil", "zipfile",
            "pathlib", "tempfile", "sqlite3", "re", "logging", "smtplib", "email", "datetime", "time"}
    subset = [d for d in docs if d.metadata["package"] in keep]
    assert len(subset) > 500
    col = Collection.create(tmp_path / "c", model="default")
    col.add_texts([d.text for d in subset], ids=[d.id for d in subset], metadatas=[d.metadata for d in subset])
    for question, prefixes in EXPECTED.items():
        top = [h.id for h in col.search_text(question, k=3)]
        assert any(t.startswith(prefixes) for t in top), (question, top)
    hits = col.search_text("join two path components", k=5, where={"package": "os"})
    assert hits and all(h.metadata["package"] == "os" for h in hits)
    assert "os.path.join" in [h.id for h in hits]
    # the demo's hybrid query: BM25 matches the standard's number, which the vectors barely see
    dense = [h.id for h in col.search_text(HYBRID, k=5)]
    hybrid = [h.id for h in col.search_text(HYBRID, k=5, mode="hybrid")]
    assert dense[0].startswith("datetime.") and hybrid[0] == "email.utils.format_datetime"
    assert "email.utils.formatdate" in hybrid and "email.utils.formatdate" not in dense


def test_demo_runs_end_to_end_and_reuses_its_collection(tmp_path):
    out = io.StringIO()
    console = Console(file=out, width=120)
    first = run_demo(tmp_path / "demo", max_texts=200, console=console)
    assert first.n_texts == 200 and first.built_now == 200 and first.texts_per_s > 0
    assert set(first.answers) >= {"read a csv file", "run a subprocess with a timeout"}
    assert all(len(hits) == 5 for hits in first.answers.values())
    filtered = first.answers["join two path components"]
    assert all(h.metadata["package"] == "os" for h in filtered)
    text = out.getvalue()
    assert "texts/s" in text and "query latency" in text and "dense vs hybrid" in text
    second = run_demo(tmp_path / "demo", max_texts=200, console=Console(file=io.StringIO()))
    assert second.built_now == 0 and second.n_texts == 200
    assert [h.id for h in second.answers["read a csv file"]] == [h.id for h in first.answers["read a csv file"]]
