"""Collections to Parquet and back (Spark's part-file layout), and the Spark CLI without Java. No SparkSession."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from vecbox import Collection
from vecbox.cli import app
from vecbox.errors import MissingDependencyError
from vecbox.io import IngestError, ingest_file, to_parquet

pytest.importorskip("pyarrow")
runner = CliRunner()


def test_export_then_ingest_directory_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(25, 5)).astype(np.float32)
    src = Collection.create(tmp_path / "src", dim=5)
    metas = [{"year": 2000 + i, "tags": ["a", str(i)], "nested": {"n": i}} if i % 4 else None for i in range(25)]
    docs = [f"doc {i}" if i % 3 else None for i in range(25)]
    src.add([f"id{i}" for i in range(25)], x, metas, docs)
    res = runner.invoke(app, ["spark", "export", str(tmp_path / "src"), str(tmp_path / "parts"), "--batch-size", "10",
                              "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["files"] == 3
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == [f"part-0000{i}.parquet" for i in range(3)]
    Collection.create(tmp_path / "dst", dim=5)
    res = runner.invoke(app, ["ingest", str(tmp_path / "dst"), str(tmp_path / "parts"), "--vector-field", "vector",
                              "--document-field", "document", "--metadata-field", "metadata", "--batch-size", "7",
                              "--json"])
    assert res.exit_code == 0, res.output
    dst = Collection.open(tmp_path / "dst")
    assert dst.ids() == src.ids()
    for a, b in zip(src.get(src.ids()), dst.get(src.ids())):
        assert (a.metadata or None, a.document) == (b.metadata or None, b.document)
        np.testing.assert_allclose(a.vector, b.vector, atol=1e-7)
    with pytest.raises(Exception, match="not an empty directory"):
        to_parquet(tmp_path / "src", tmp_path / "parts")


def test_ingest_directory_errors_name_the_part_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = tmp_path / "parts"
    parts.mkdir()
    pq.write_table(pa.table({"id": ["a", "b"], "vector": [[1.0, 0.0], [0.0, 1.0]], "meta": ['{"y": 1}', None]}),
                   parts / "part-00000.parquet")
    pq.write_table(pa.table({"id": ["c", "d"], "vector": [[1.0, 1.0], [1.0, 2.0]], "meta": ['{"y": 2}', "[1, 2]"]}),
                   parts / "part-00001.parquet")
    (parts / "_SUCCESS").write_text("")
    Collection.create(tmp_path / "col", dim=2)
    with pytest.raises(IngestError, match="part-00001.parquet, row 2: the 'meta' value is list, not a JSON object"):
        ingest_file(tmp_path / "col", parts, vector_field="vector", metadata_field="meta", batch_size=2)
    assert len(Collection.open(tmp_path / "col")) == 2  # the first batch was committed and stays
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception, match="without .parquet files"):
        ingest_file(tmp_path / "col", empty, vector_field="vector")


def test_spark_cli_without_java_says_what_to_install(tmp_path, monkeypatch):
    import shutil

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    res = runner.invoke(app, ["spark", "anomalies", str(tmp_path / "x.parquet"), "--out", str(tmp_path / "o")])
    assert isinstance(res.exception, MissingDependencyError)  # `vecbox` prints it as one error line, exit code 1
    assert "Java runtime" in str(res.exception) and "JAVA_HOME" in str(res.exception)


def test_spark_cli_without_pyspark_names_the_extra(tmp_path, monkeypatch):
    import sys

    for name in ("pyspark", "pyspark.sql", "pyspark.sql.functions"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if it were not installed
    res = runner.invoke(app, ["spark", "dedup", str(tmp_path / "x.parquet"), "--out", str(tmp_path / "o")])
    assert isinstance(res.exception, MissingDependencyError)
    assert "pip install 'vecbox[spark]'" in str(res.exception)
