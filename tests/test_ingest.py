"""File ingest (vecbox.io.ingest_file) is never silently wrong: typed CSV columns, bad rows named by line,
bad vectors and encodings as one readable error, and a failure after committed batches says what is stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import vecbox.records
from vecbox import Collection
from vecbox.errors import DatasetError, DuplicateIdError, InvalidInputError
from vecbox.io import IngestError, ingest_file, read_records

pa = pytest.importorskip("pyarrow")


@pytest.fixture
def col(tmp_path: Path) -> Path:
    Collection.create(tmp_path / "c", dim=3, metric="dot")
    return tmp_path / "c"


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def meta(col: Path, id_: str) -> dict:
    return Collection.open(col).get([id_])[0].metadata


# 1. CSV columns are typed ---------------------------------------------------------------------------------------

def test_csv_columns_are_typed_int_float_bool_null_str(col, tmp_path):
    f = write(tmp_path / "m.csv",
              'id,v,year,score,draft,note,city\n'
              'a,"[1, 0, 0]",2023,0.5,true,,Oslo\n'
              'b,"[0, 1, 0]",2024,2,FALSE,hi,Bergen\n'
              'c,"[0, 0, 1]",2025,1e3,False,"",Oslo\n')
    out = ingest_file(col, f, vector_field="v")
    assert out["rows"] == 3
    assert meta(col, "a") == {"year": 2023, "score": 0.5, "draft": True, "note": None, "city": "Oslo"}
    b = meta(col, "b")
    assert b == {"year": 2024, "score": 2.0, "draft": False, "note": "hi", "city": "Bergen"}
    assert type(b["year"]) is int and type(b["score"]) is float and type(b["draft"]) is bool
    hits = Collection.open(col).search([1, 1, 1], k=10, where={"year": {"$gte": 2024}})
    assert sorted(h.id for h in hits) == ["b", "c"]
    assert [h.id for h in Collection.open(col).search([1, 1, 1], k=10, where={"draft": True})] == ["a"]


def test_csv_ids_and_leading_zeros_stay_strings(col, tmp_path):
    f = write(tmp_path / "z.csv", 'id,v,zip,n\n007,"[1,0,0]",02134,+5\n010,"[0,1,0]",10001,6\n')
    ingest_file(col, f, vector_field="v")
    c = Collection.open(col)
    assert sorted(c.ids()) == ["007", "010"]
    # converting "02134" or "+5" to a number would lose what the file says: the column stays text
    assert meta(col, "007") == {"zip": "02134", "n": "+5"}


def test_csv_schema_overrides_inference(col, tmp_path):
    f = write(tmp_path / "s.csv", 'id,v,zip,year,flag\na,"[1,0,0]",10001,2024,1\nb,"[0,1,0]",20002,2025,0\n')
    ingest_file(col, f, vector_field="v", schema={"zip": "str", "year": "float", "flag": "bool"})
    assert meta(col, "a") == {"zip": "10001", "year": 2024.0, "flag": True}
    assert meta(col, "b")["flag"] is False


@pytest.mark.parametrize("schema, fragment", [
    ({"nope": "int"}, "'nope' is not a column"),
    ({"year": "date"}, "'date'"),
    ({"year": "bool"}, "line 3"),            # '2024' is not true/false: named by line
    ({"id": "int"}, "ids are text"),
])
def test_csv_bad_schema_is_rejected_before_writing(col, tmp_path, schema, fragment):
    f = write(tmp_path / "s.csv", 'id,v,year\na,"[1,0,0]",true\nb,"[0,1,0]",2024\n')
    with pytest.raises(InvalidInputError, match=None) as err:
        ingest_file(col, f, vector_field="v", schema=schema)
    assert fragment in str(err.value)
    assert Collection.open(col).count() == 0


def test_schema_is_for_csv_only(col, tmp_path):
    f = write(tmp_path / "r.jsonl", '{"id": "a", "v": [1, 0, 0]}\n')
    with pytest.raises(InvalidInputError, match="schema"):
        ingest_file(col, f, vector_field="v", schema={"id": "str"})


def test_csv_inference_looks_at_the_whole_file(col, tmp_path, monkeypatch):
    import vecbox.io

    monkeypatch.setattr(vecbox.records, "CSV_BLOCK_SIZE", 1 << 10)  # many blocks; the odd value is in a late one
    rows = "".join(f'r{i},"[1,0,0]",{i}\n' for i in range(300))
    f = write(tmp_path / "late.csv", "id,v,n\n" + rows + 'last,"[0,1,0]",n/a\n')
    ingest_file(col, f, vector_field="v")
    assert meta(col, "r5") == {"n": "5"} and meta(col, "last") == {"n": "n/a"}
    f2 = write(tmp_path / "late2.csv", "id,v,n\n" + rows + 'last,"[0,1,0]",2.5\n')
    ingest_file(col, f2, vector_field="v", upsert=True)
    assert meta(col, "r5") == {"n": 5.0} and meta(col, "last") == {"n": 2.5}


def test_csv_quoted_newlines_and_bom(col, tmp_path):
    f = write(tmp_path / "q.csv", '\ufeffid,v,text\na,"[1,0,0]","two\nlines"\n\nb,"[0,1,0]",x\n')
    ingest_file(col, f, vector_field="v")
    assert meta(col, "a") == {"text": "two\nlines"} and Collection.open(col).count() == 2


def test_csv_row_longer_than_a_block(col, tmp_path, monkeypatch):
    import vecbox.io

    monkeypatch.setattr(vecbox.records, "CSV_BLOCK_SIZE", 1 << 12)
    long = "word " * 4000  # 20 kB in one cell, over several quoted lines
    f = write(tmp_path / "long.csv", f'id,v,text\na,"[1,0,0]",short\nb,"[0,1,0]","{long}\n{long}"\nc,"[0,0,1]",x\n')
    ingest_file(col, f, vector_field="v")
    assert len(meta(col, "b")["text"]) == 2 * len(long) + 1 and meta(col, "c") == {"text": "x"}


def test_readme_notes_csv_example(tmp_path):
    """README: ``vecbox create notes --model default; vecbox ingest notes notes.csv --text-field body;
    vecbox search notes "meeting about the budget" --where '{"year": {"$gte": 2024}}'``."""
    notes = write(tmp_path / "notes.csv",
                  "id,body,year\n"
                  "n1,meeting about the budget for next year,2024\n"
                  "n2,budget review meeting notes,2023\n"
                  "n3,recipe for apple pie,2025\n")
    Collection.create(tmp_path / "notes", model="default")
    ingest_file(tmp_path / "notes", notes, text_field="body")
    hits = Collection.open(tmp_path / "notes").search_text("meeting about the budget", k=5,
                                                            where={"year": {"$gte": 2024}})
    assert [h.id for h in hits][:1] == ["n1"] and {h.id for h in hits} == {"n1", "n3"}
    assert hits[0].metadata == {"year": 2024}


# 2. rows that do not match the header ------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, fields", [('c,"[0,0,1]",3,extra', 4), ("c,\"[0,0,1]\"", 2)])
def test_csv_row_with_wrong_field_count_names_the_line(col, tmp_path, bad, fields):
    f = write(tmp_path / "w.csv", f'id,v,n\na,"[1,0,0]",1\n\nb,"[0,1,\n0]",2\n{bad}\nd,"[1,1,1]",4\n')
    with pytest.raises(InvalidInputError) as err:
        ingest_file(col, f, vector_field="v")
    msg = str(err.value)
    assert "w.csv" in msg and "line 6" in msg and f"{fields} fields" in msg and "3" in msg
    assert Collection.open(col).count() == 0  # the shape is checked before anything is written


# 3. bad vectors and encodings ----------------------------------------------------------------------------------------

def test_jsonl_vector_that_is_not_json(col, tmp_path):
    f = write(tmp_path / "r.jsonl", '{"id": "a", "v": [1, 0, 0]}\n\n{"id": "b", "v": "abc"}\n')
    with pytest.raises(InvalidInputError) as err:
        ingest_file(col, f, vector_field="v")
    msg = str(err.value)
    assert "r.jsonl" in msg and "line 3" in msg and "'v'" in msg and "[0.1, 0.2" in msg
    assert type(err.value) is IngestError and err.value.__cause__ is None  # no raw JSONDecodeError


@pytest.mark.parametrize("cell, fragment", [('"[1, 2"', "not a JSON list"), ("", "empty"),
                                            ('"[1, ""x"", 3]"', "numbers"), ('"[1, 2]"', "3 numbers")])
def test_csv_bad_vector_cell(col, tmp_path, cell, fragment):
    f = write(tmp_path / "v.csv", f'id,v\na,"[1,0,0]"\nb,{cell}\n')
    with pytest.raises(InvalidInputError) as err:
        ingest_file(col, f, vector_field="v")
    msg = str(err.value)
    assert "v.csv" in msg and "line 3" in msg and fragment in msg, msg


@pytest.mark.parametrize("name, data", [
    ("l.csv", b'id,v,city\na,"[1,0,0]",Oslo\nb,"[0,1,0]",Troms\xf8\n'),
    ("l.jsonl", b'{"id": "a", "v": [1, 0, 0]}\n{"id": "b", "v": [0, 1, 0], "city": "Troms\xf8"}\n'),
    ("h.csv", b'id,v,caf\xe9\na,"[1,0,0]",1\n'),
])
def test_latin1_file_says_how_to_reencode(col, tmp_path, name, data):
    f = write(tmp_path / name, data)
    with pytest.raises(InvalidInputError) as err:
        ingest_file(col, f, vector_field="v")
    msg = str(err.value)
    line = {"l.csv": 3, "l.jsonl": 2, "h.csv": 1}[name]
    assert name in msg and f"line {line}" in msg and "UTF-8" in msg and "iconv -f latin1 -t utf-8" in msg
    assert not isinstance(err.value, UnicodeDecodeError)


def test_bad_json_line_is_still_a_dataset_error(col, tmp_path):
    f = write(tmp_path / "r.jsonl", '{"id": "a", "v": [1, 0, 0]}\n{"id": "b",\n')
    with pytest.raises(DatasetError, match="line 2"):
        ingest_file(col, f, vector_field="v")
    with pytest.raises(InvalidInputError, match="line 2"):
        list(read_records(f))


def test_empty_and_header_only_csv(col, tmp_path):
    with pytest.raises(InvalidInputError, match="empty"):
        ingest_file(col, write(tmp_path / "e.csv", ""), vector_field="v")
    with pytest.raises(DatasetError, match="no rows"):
        ingest_file(col, write(tmp_path / "h.csv", "id,v\n"), vector_field="v")


def test_csv_missing_field_and_duplicate_header(col, tmp_path):
    with pytest.raises(InvalidInputError, match="'vec' is not a column"):
        ingest_file(col, write(tmp_path / "a.csv", 'id,v\na,"[1,0,0]"\n'), vector_field="vec")
    with pytest.raises(InvalidInputError, match="'n' twice"):
        ingest_file(col, write(tmp_path / "b.csv", 'id,v,n,n\na,"[1,0,0]",1,2\n'), vector_field="v")


# 4. batch_size -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True])
def test_batch_size_must_be_a_positive_int(col, tmp_path, batch_size):
    f = write(tmp_path / "r.jsonl", '{"id": "a", "v": [1, 0, 0]}\n')
    with pytest.raises(InvalidInputError, match="batch_size"):
        ingest_file(col, f, vector_field="v", batch_size=batch_size)
    assert Collection.open(col).count() == 0


# 5. a failure after committed batches -------------------------------------------------------------------------------

def rows_jsonl(path: Path, n: int, bad: dict[int, dict] | None = None) -> Path:
    lines = []
    for i in range(n):
        row = {"id": f"r{i}", "v": [1.0, float(i), 0.0], "i": i}
        row.update((bad or {}).get(i, {}))
        lines.append(json.dumps(row))
    return write(path, "\n".join(lines) + "\n")


def test_bad_row_after_committed_batches_says_what_is_stored(col, tmp_path):
    f = rows_jsonl(tmp_path / "r.jsonl", 50, {46: {"v": "abc"}})
    with pytest.raises(IngestError) as err:
        ingest_file(col, f, vector_field="v", batch_size=20)
    e = err.value
    assert isinstance(e, InvalidInputError)
    assert e.committed_rows == 40 and e.committed_batches == 2 and e.resume_at == 40
    msg = str(e)
    assert "line 47" in msg and "40 rows (2 batches) were committed" in msg and "skip_rows=40" in msg
    assert "upsert=True" in msg
    assert Collection.open(col).count() == 40
    # fix the file and resume where it stopped
    rows_jsonl(f, 50)
    out = ingest_file(col, f, vector_field="v", batch_size=20, skip_rows=40)
    assert out["rows"] == 10 and Collection.open(col).count() == 50


def test_duplicate_id_in_a_later_batch(col, tmp_path):
    f = rows_jsonl(tmp_path / "r.jsonl", 30, {25: {"id": "r3"}})
    with pytest.raises(IngestError) as err:
        ingest_file(col, f, vector_field="v", batch_size=10)
    e = err.value
    assert e.committed_rows == 20 and isinstance(e.__cause__, DuplicateIdError)
    msg = str(e)
    assert "already stored" in msg and "rows 21-30" in msg and "20 rows (2 batches) were committed" in msg
    assert Collection.open(col).count() == 20


def test_duplicate_id_within_a_batch_names_both_lines(col, tmp_path):
    f = rows_jsonl(tmp_path / "r.jsonl", 10, {7: {"id": "r2"}})
    with pytest.raises(IngestError) as err:
        ingest_file(col, f, vector_field="v")
    msg = str(err.value)
    assert "'r2'" in msg and "line 8" in msg and "line 3" in msg and "Nothing was written" in msg
    assert err.value.committed_rows == 0


def test_first_batch_failure_says_nothing_was_written(col, tmp_path):
    f = rows_jsonl(tmp_path / "r.jsonl", 5, {1: {"v": [1, 2]}})
    with pytest.raises(IngestError) as err:
        ingest_file(col, f, vector_field="v")
    assert err.value.committed_rows == 0 and "Nothing was written" in str(err.value)
    assert "line 2" in str(err.value) and "3 numbers" in str(err.value)


def test_other_failures_after_commits_note_what_is_stored(col, tmp_path, monkeypatch):
    from vecbox.errors import CollectionLockedError

    f = rows_jsonl(tmp_path / "r.jsonl", 30)
    real_add, calls = Collection.add, []

    def add(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise CollectionLockedError("another writer holds the lock")
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "add", add)
    with pytest.raises(CollectionLockedError) as err:  # not the input's fault: its own type, with a note
        ingest_file(col, f, vector_field="v", batch_size=10)
    assert any("20 rows (2 batches) were committed" in note and "skip_rows=20" in note for note in err.value.__notes__)


def test_not_a_parquet_file(col, tmp_path):
    f = write(tmp_path / "p.parquet", "id,v\n")
    with pytest.raises(InvalidInputError, match="not a readable Parquet file"):
        ingest_file(col, f, vector_field="v")


def test_skip_rows_is_checked(col, tmp_path):
    f = rows_jsonl(tmp_path / "r.jsonl", 3)
    with pytest.raises(InvalidInputError, match="skip_rows"):
        ingest_file(col, f, vector_field="v", skip_rows=-1)
    with pytest.raises(DatasetError, match="no rows"):
        ingest_file(col, f, vector_field="v", skip_rows=3)


# 6. streaming -------------------------------------------------------------------------------------------------------

def test_csv_is_streamed_not_loaded_whole(col, tmp_path, monkeypatch):
    import pyarrow.csv

    import vecbox.io

    monkeypatch.setattr(vecbox.records, "CSV_BLOCK_SIZE", 8 << 10)  # pyarrow reads ~32 blocks ahead
    monkeypatch.setattr(pyarrow.csv, "read_csv", None)  # the whole-file reader is never used
    n = 30_000
    body = "".join(f'r{i},"[{i % 7}.5, 1.25, {i % 3}]",{i},some words to pad the line out a bit\n' for i in range(n))
    f = write(tmp_path / "big.csv", "id,v,n,text\n" + body)
    assert f.stat().st_size > 1_500_000
    peak = []
    real_add = Collection.add

    def add(self, *args, **kwargs):
        peak.append(pa.total_allocated_bytes())
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "add", add)
    out = ingest_file(col, f, vector_field="v", batch_size=5_000)
    assert out["rows"] == n and len(peak) == 6
    assert max(peak) < f.stat().st_size / 4, peak


def test_jsonl_is_read_lazily(tmp_path):
    f = write(tmp_path / "r.jsonl", '{"id": "a"}\n' + "not json\n")
    it = read_records(f)
    assert next(it) == {"id": "a"}  # the bad line is only read when reached
    with pytest.raises(InvalidInputError, match="line 2"):
        next(it)


# unchanged behaviour ------------------------------------------------------------------------------------------------

def test_parquet_and_metadata_fields(col, tmp_path):
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": [1, 2], "v": [[1.0, 0, 0], [0, 1.0, 0]], "year": [2024, 2025], "x": ["a", "b"]}),
                   tmp_path / "p.parquet")
    out = ingest_file(col, tmp_path / "p.parquet", vector_field="v", metadata_fields=["year"], batch_size=1)
    assert out["rows"] == 2 and out["version"] == 2
    assert meta(col, "2") == {"year": 2025}


def test_read_records_csv_is_typed(tmp_path):
    f = write(tmp_path / "r.csv", "id,year,city\na,2024,Oslo\n")
    assert list(read_records(f)) == [{"id": "a", "year": 2024, "city": "Oslo"}]
    assert list(read_records(f, schema={"year": "str"})) == [{"id": "a", "year": "2024", "city": "Oslo"}]
