"""The command line, driven as a user would (Typer's runner, and a real subprocess for error output)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import vecbox
from vecbox import Collection
from vecbox.cli import app

runner = CliRunner()
SRC = str(Path(vecbox.__file__).resolve().parents[1])


def run(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_help_lists_every_command():
    out = run("--help")
    for cmd in ("create", "ingest", "search", "info", "delete", "eval", "demo", "compact"):
        assert cmd in out


def test_create_ingest_search_info_delete_with_vectors(tmp_path, rng):
    col = tmp_path / "c"
    x = rng.standard_normal((50, 8)).astype(np.float32)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"id": i, "vec": x[i].tolist(), "year": 2000 + i % 5}) + "\n" for i in range(50)))
    run("create", col, "--dim", 8, "--metric", "dot")
    out = json.loads(run("ingest", col, rows, "--vector-field", "vec", "--batch-size", 20, "--json"))
    assert out["rows"] == 50 and out["version"] == 3  # three commits of at most 20 rows
    hits = json.loads(run("search", col, "--vector", json.dumps(x[7].tolist()), "-k", 3, "--json"))
    ref = np.argsort(-(x @ x[7]))[:3]
    assert [h["id"] for h in hits] == [str(i) for i in ref]
    assert hits[0]["metadata"] == {"year": 2000 + int(ref[0]) % 5}
    filtered = json.loads(run("search", col, "--vector", json.dumps(x[7].tolist()), "--where", '{"year": 2003}', "--json"))
    assert {h["metadata"]["year"] for h in filtered} == {2003} and len(filtered) == 10
    info = json.loads(run("info", col, "--json"))
    assert info["count"] == 50 and info["dim"] == 8
    assert "deleted 10" in run("delete", col, "--where", '{"year": 2003}')
    assert Collection.open(col).count() == 40


def test_search_lexical_and_hybrid_modes(tmp_path):
    col = tmp_path / "c"
    run("create", col, "--dim", 2)
    Collection.open(col).add(["a", "b", "c"], [[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]],
                             documents=["red apples", "green pears", "apple pie recipe"])
    lexical = json.loads(run("search", col, "apples", "--mode", "lexical", "--json"))
    assert [h["id"] for h in lexical] == ["a", "c"] and lexical[0]["document"] == "red apples"
    hybrid = json.loads(run("search", col, "pie", "--vector", "[0.0, 1.0]", "--fusion", "rrf", "--explain", "--json"))
    assert hybrid["plan"]["mode"] == "hybrid" and hybrid["plan"]["fusion"]["method"] == "rrf"
    assert {h["id"] for h in hybrid["hits"][:2]} == {"b", "c"}  # nearest vector, and the only "pie"
    out = run("search", col, "pears", "--mode", "lexical", "--explain")
    assert "lexical" in out and "pear" in out
    assert json.loads(run("info", col, "--json"))["lexical"]["language"] == "english"


def test_ingest_csv_texts(tmp_path):
    col = tmp_path / "c"
    csv_file = tmp_path / "docs.csv"
    csv_file.write_text("id,text,lang\na,how to read a csv file,en\nb,compute a sha256 digest,en\n")
    run("create", col, "--model", "default")
    run("ingest", col, csv_file, "--text-field", "text")
    hits = json.loads(run("search", col, "hash of a file", "-k", 1, "--json"))
    assert hits[0]["id"] == "b" and hits[0]["metadata"] == {"lang": "en"}


def test_ingest_parquet_vectors(tmp_path, rng):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    x = rng.standard_normal((30, 4)).astype(np.float32)
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(30)], "v": x.tolist(), "tag": ["t"] * 30}), tmp_path / "v.parquet")
    run("create", tmp_path / "c", "--dim", 4)
    run("ingest", tmp_path / "c", tmp_path / "v.parquet", "--vector-field", "v")
    got = Collection.open(tmp_path / "c").get(["p3"])[0]
    np.testing.assert_allclose(got.vector, x[3] / np.linalg.norm(x[3]), rtol=1e-6)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["info", "{tmp}/missing"], "does not exist"),
        (["search", "{tmp}/c", "--vector", "[1, 2]"], "2 columns"),
        (["search", "{tmp}/c", "--vector", "[1, 0, 0, 0]", "--where", "{bad json"], "--where is not valid JSON"),
        (["search", "{tmp}/c", "--vector", "[1, 0, 0, 0]", "--where", '{"a": {"$near": 1}}'], "$near"),
        (["delete", "{tmp}/c", "nope"], "not in the collection"),
        (["create", "{tmp}/c", "--dim", "4"], "already holds a collection"),
        (["search", "{tmp}/c", "apple", "--mode", "sparse"], "--mode must be dense, lexical or hybrid"),
        (["search", "{tmp}/c", "--vector", "[1, 0, 0, 0]", "--mode", "lexical"], "needs a QUERY text"),
        (["search", "{tmp}/c", "apple", "--mode", "lexical", "--fusion", "rrf"], "--fusion applies to hybrid"),
        (["search", "{tmp}/c", "apple", "--vector", "[1, 0, 0, 0]", "--fusion", "borda"], "fusion spec"),
    ],
)
def test_errors_are_one_readable_line(tmp_path, args, fragment):
    Collection.create(tmp_path / "c", dim=4)
    env = {**os.environ, "PYTHONPATH": SRC, "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "vecbox.cli", *[a.replace("{tmp}", str(tmp_path)) for a in args]],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert fragment in proc.stderr
    assert proc.stderr.strip().startswith("error:")


@pytest.mark.parametrize("args, fragment", [
    (["search", "{tmp}/c", "--vector", "[1,1,1,1]", "-k", "abc"], "-k"),
    (["frobnicate"], "No such command"),
    (["search", "{tmp}/c", "--vector", "[1,1,1,1]", "--nonsense"], "--nonsense"),
])
def test_usage_errors_are_one_line_and_exit_code_1(tmp_path, args, fragment):
    """Issue 18: a bad option value or an unknown command is one `error:` line saying where to look, exit 1."""
    Collection.create(tmp_path / "c", dim=4)
    env = {**os.environ, "PYTHONPATH": SRC, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "vecbox.cli", *[a.replace("{tmp}", str(tmp_path)) for a in args]],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.strip().startswith("error:")
    assert fragment in proc.stderr and "--help" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_index_calibrates_on_past_queries_from_a_npy_file(tmp_path, rng):
    col_path = tmp_path / "c"
    x = rng.standard_normal((1500, 8)).astype(np.float32)
    with Collection.create(col_path, dim=8) as col:
        col.add([str(i) for i in range(len(x))], x)
    past = tmp_path / "past.npy"
    np.save(past, x[:40] + 0.1 * rng.standard_normal((40, 8)).astype(np.float32))
    out = json.loads(run("index", col_path, "--M", 8, "--calibration-queries", past, "--json"))
    assert out["calibration"]["source"] == "supplied" and out["calibration"]["queries"] == 40
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)  # a pickle inside
    result = runner.invoke(app, ["index", str(col_path), "--calibration-queries", str(tmp_path / "objects.npy")])
    assert isinstance(result.exception, vecbox.errors.InvalidInputError)  # `vecbox` prints it as one error: line
    assert "cannot read it as a .npy array" in str(result.exception)
    with Collection.open(col_path) as col:  # the index built before is untouched
        assert col.index_info()["calibration"] == out["calibration"]


def test_index_memory_budget_picks_a_storage(tmp_path, rng):
    col_path = tmp_path / "c"
    with Collection.create(col_path, dim=16) as col:
        col.add([str(i) for i in range(2000)], rng.standard_normal((2000, 16)).astype(np.float32))
    out = json.loads(run("index", col_path, "--kind", "ivf", "--nlist", 8, "--memory-budget", "60KB", "--json"))
    assert out["storage"] == "sq8"  # 2000 x (16 + 8) bytes fit in 90 % of 60 KB; 2000 x (64 + 8) do not
