"""Tests of the standard-library docstring harvester behind ``vecbox demo``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vecbox.demo.stdlib_docs import MAX_TEXT_CHARS, DocText, _truncate, harvest_stdlib_docs
from vecbox.errors import InvalidInputError

KINDS = {"module", "class", "function", "method"}
EXCLUDED = {"tkinter", "idlelib", "antigravity", "this", "turtle", "turtledemo", "lib2to3"}
# Modules the child imports that the parent must not gain by harvesting.
SIDE_EFFECT_MODULES = {
    "tkinter",
    "antigravity",
    "turtle",
    "this",
    "idlelib",
    "curses",
    "readline",
    "sqlite3",
    "asyncio",
    "multiprocessing",
    "xml.etree.ElementTree",
}


@pytest.fixture(scope="module")
def harvest() -> list[DocText]:
    return harvest_stdlib_docs()


@pytest.fixture(scope="module")
def by_id(harvest: list[DocText]) -> dict[str, DocText]:
    return {doc.id: doc for doc in harvest}


def test_harvest_is_large_and_well_formed(harvest: list[DocText]) -> None:
    assert len(harvest) >= 2000
    ids = [doc.id for doc in harvest]
    assert len(set(ids)) == len(ids)
    for doc in harvest:
        assert isinstance(doc, DocText)
        assert doc.text.strip()
        assert len(doc.text) <= MAX_TEXT_CHARS
        assert doc.text == " ".join(doc.text.split())  # whitespace-collapsed
        assert set(doc.metadata) == {"module", "package", "kind", "name"}
        assert doc.metadata["kind"] in KINDS
        assert doc.metadata["name"] == doc.id
        assert doc.metadata["package"] == doc.metadata["module"].split(".")[0]
        if doc.metadata["kind"] == "module":
            assert doc.id == doc.metadata["module"]
            assert doc.text.startswith(f"module {doc.id}: ")
        else:
            assert doc.id.startswith(doc.metadata["module"] + ".")
            assert doc.text.startswith(doc.id)
    assert {doc.metadata["kind"] for doc in harvest} == KINDS


def test_sorted_by_module_then_name(harvest: list[DocText]) -> None:
    keys = [(d.metadata["module"], d.metadata["kind"] != "module", d.id) for d in harvest]
    assert keys == sorted(keys)


@pytest.mark.parametrize(
    ("doc_id", "module", "kind"),
    [
        ("csv.reader", "csv", "function"),
        ("hashlib.sha256", "hashlib", "function"),
        ("hashlib.file_digest", "hashlib", "function"),
        ("subprocess.run", "subprocess", "function"),
        ("argparse.ArgumentParser", "argparse", "class"),
        ("argparse.ArgumentParser.add_argument", "argparse", "method"),
        ("os.path.join", "os.path", "function"),
        ("os.open", "os", "function"),
        ("json.loads", "json", "function"),
        ("json", "json", "module"),
        ("io.open", "io", "function"),
        ("asyncio.run", "asyncio", "function"),
        ("unittest.TestCase", "unittest", "class"),
        ("collections.abc.Mapping", "collections.abc", "class"),
        ("xml.etree.ElementTree.parse", "xml.etree.ElementTree", "function"),
        ("builtins.len", "builtins", "function"),
    ],
)
def test_known_entries(by_id: dict[str, DocText], doc_id: str, module: str, kind: str) -> None:
    doc = by_id[doc_id]
    assert doc.metadata == {
        "module": module,
        "package": module.split(".")[0],
        "kind": kind,
        "name": doc_id,
    }


def test_known_texts(by_id: dict[str, DocText]) -> None:
    assert by_id["os.path.join"].text.startswith("os.path.join(a, *p): Join two or more")
    assert by_id["subprocess.run"].text.startswith("subprocess.run(*popenargs,")
    assert "Run command with arguments" in by_id["subprocess.run"].text
    assert by_id["csv.reader"].text.startswith("csv.reader: ")  # C function, no signature
    assert "sha256" in by_id["hashlib.sha256"].text


def test_reexports_and_private_modules_are_not_counted_twice(
    by_id: dict[str, DocText], harvest: list[DocText]
) -> None:
    # Attributed to the public module that documents them, once.
    for alias in ("posixpath.join", "genericpath.exists", "_csv.reader", "asyncio.runners.run",
                  "unittest.case.TestCase", "secrets.compare_digest", "os.path.os"):
        assert alias not in by_id
    assert "os.path.exists" in by_id
    modules = {doc.metadata["module"] for doc in harvest}
    assert not [m for m in modules if m.startswith("_") and m != "__future__"]
    # Module-level function kept, the identical method docstring dropped.
    assert "random.randint" in by_id
    assert "random.Random.randint" not in by_id


def test_excluded_modules_absent(harvest: list[DocText]) -> None:
    packages = {doc.metadata["package"] for doc in harvest}
    assert not packages & EXCLUDED
    assert not any(doc.id.split(".")[0] in EXCLUDED for doc in harvest)
    assert not [d.id for d in harvest if d.metadata["module"].startswith("sre_")]


def test_identical_docstrings_deduplicated_within_module(harvest: list[DocText]) -> None:
    seen: set[tuple[str, str]] = set()
    for doc in harvest:
        body = doc.text.split(": ", 1)[1] if ": " in doc.text else doc.text
        if len(body) < MAX_TEXT_CHARS - 200:  # truncated texts may share a prefix
            key = (doc.metadata["module"], body)
            assert key not in seen, doc.id
            seen.add(key)


def test_deterministic_and_isolated(harvest: list[DocText]) -> None:
    watched = {name for name in SIDE_EFFECT_MODULES if name not in sys.modules}
    again = harvest_stdlib_docs()
    assert again == harvest
    assert not watched & set(sys.modules)


def test_max_texts_takes_an_evenly_spread_subset(harvest: list[DocText]) -> None:
    subset = harvest_stdlib_docs(max_texts=100)
    n = len(harvest)
    assert subset == [harvest[i * n // 100] for i in range(100)]
    assert len({d.metadata["package"] for d in subset}) > 30  # spread, not just "a..."
    assert harvest_stdlib_docs(max_texts=0) == []
    assert harvest_stdlib_docs(max_texts=10**9) == harvest


@pytest.mark.parametrize("bad", [-1, 2.5, "10", True])
def test_max_texts_validated(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        harvest_stdlib_docs(max_texts=bad)  # type: ignore[arg-type]


def test_timeout_raises_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="took more than"):
        harvest_stdlib_docs(timeout=0.001)


def test_module_entry_point_prints_json() -> None:
    src = Path(__file__).resolve().parents[1] / "src"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "vecbox.demo.stdlib_docs", "--json"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=120,
        check=True,
    )
    records = json.loads(done.stdout)
    assert len(records) >= 2000
    assert {"id", "text", "metadata"} == set(records[0])
    assert any(r["id"] == "subprocess.run" for r in records)


def test_truncate_on_word_boundary() -> None:
    text = "word " * 400
    cut = _truncate(text.strip(), limit=100)
    assert len(cut) <= 100
    assert cut.endswith("word...")
    assert _truncate("short", limit=100) == "short"
    assert len(_truncate("x" * 500, limit=100)) == 100
