"""The saved row map: a new handle starts from it and reads from the catalog only what came after.

Reference: a live view built from the catalog alone (the saved map removed), and exact numpy
search over the rows the test wrote. A row map that is damaged, stale or foreign must be ignored,
never trusted: the view then equals the catalog's in every case.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from vecbox import Collection
from vecbox.storage import catalog, live, rowmap

D = 8


@pytest.fixture(autouse=True)
def _small_threshold(monkeypatch):
    monkeypatch.setattr(rowmap, "MIN_ROWS", 50)  # a refresh reading 50 rows saves the map (50,000 by default)


@pytest.fixture
def reads(monkeypatch):
    """Rows each refresh read from the catalog (the real query, counted)."""
    seen: list[int] = []
    real = catalog.rows_after

    def counted(conn, rid):
        rows = real(conn, rid)
        seen.append(len(rows))
        return rows

    monkeypatch.setattr(catalog, "rows_after", counted)
    return seen


def _view(root: Path, use_saved: bool = True) -> live.LiveVectors:
    """A fresh live view of the collection at ``root``, as a new handle's first refresh builds it."""
    hidden = root / (rowmap.FILE + ".hidden")
    if not use_saved and (root / rowmap.FILE).exists():
        (root / rowmap.FILE).rename(hidden)
    conn = catalog.connect(root)
    try:
        view = live.LiveVectors(root, D)
        with catalog.transaction(conn, write=False) as c:
            view.refresh(c)
        return view
    finally:
        conn.close()
        if hidden.exists():
            hidden.rename(root / rowmap.FILE)


def _same(a: live.LiveVectors, b: live.LiveVectors) -> None:
    assert a.version == b.version and a.n == b.n
    assert np.array_equal(a.rids, b.rids) and np.array_equal(a.alive, b.alive)
    assert a.ids.tolist() == b.ids.tolist()
    assert np.array_equal(np.asarray(a.x), np.asarray(b.x))


def _make(root: Path, x: np.ndarray, n: int) -> list[str]:
    ids = [f"doc-{i}é" for i in range(len(x))]  # non-ASCII ids travel through the NUL-joined block
    with Collection.create(root, dim=D, metric="dot") as col:
        col.add(ids[:n], x[:n])
    return ids


def test_a_new_handle_starts_from_the_saved_map_and_reads_only_later_rows(tmp_path, rng, reads):
    x = rng.standard_normal((400, D)).astype(np.float32)
    root = tmp_path / "c"
    ids = _make(root, x, 300)
    first = _view(root)  # reads 300 rows from the catalog, and saves them
    assert reads == [300] and (root / rowmap.FILE).exists()
    with Collection.open(root) as col:  # later commits: rows added, deleted and replaced
        col.add(ids[300:], x[300:])
        col.delete(ids[:10])
        col.upsert([ids[20]], x[[399]])
    reads.clear()
    second = _view(root)
    assert reads == [101]  # the 100 added and the upserted row; the first 300 came from the saved map
    _same(second, _view(root, use_saved=False))
    assert first.n == 300 and second.n == 401
    with Collection.open(root) as col:
        q = rng.standard_normal(D).astype(np.float32)
        keep = np.ones(400, bool)
        keep[:10] = False
        xs = x.copy()
        xs[20] = x[399]
        ref = np.argsort(-(xs @ q) + np.where(keep, 0, np.inf), kind="stable")[:10]
        assert [h.id for h in col.search(q, k=10, exact=True)] == [ids[i] for i in ref]


def test_a_handle_opened_at_the_saved_version_reads_no_rows(tmp_path, rng, reads):
    x = rng.standard_normal((120, D)).astype(np.float32)
    root = tmp_path / "c"
    _make(root, x, 120)
    _view(root)
    reads.clear()
    view = _view(root)
    assert reads == [0]
    _same(view, _view(root, use_saved=False))


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty"])
def test_a_damaged_saved_map_is_ignored(tmp_path, rng, damage, reads):
    x = rng.standard_normal((200, D)).astype(np.float32)
    root = tmp_path / "c"
    _make(root, x, 200)
    _view(root)
    path = root / rowmap.FILE
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    path.write_bytes({"flip": bytes(data), "truncate": bytes(data[: len(data) // 2]),
                      "garbage": b"not a row map" * 100, "empty": b""}[damage])
    reads.clear()
    view = _view(root)
    assert reads == [200]  # everything read from the catalog again
    assert view.ids.tolist() == _view(root, use_saved=False).ids.tolist()
    assert np.array_equal(np.asarray(view.x), x)


def test_a_map_from_before_a_merge_or_a_compaction_is_not_used(tmp_path, rng, reads, monkeypatch):
    x = rng.standard_normal((300, D)).astype(np.float32)
    root = tmp_path / "c"
    ids = _make(root, x, 10)
    monkeypatch.setattr(rowmap, "MIN_ROWS", 10)
    _view(root)
    with Collection.open(root) as col:
        before = set(catalog.segment_files(col._conn))
        for i in range(10, 110):  # many small commits: the tiered policy merges segments, rows move
            col.add([ids[i]], x[i : i + 1])
        merged = not before <= set(catalog.segment_files(col._conn))
    reads.clear()
    view = _view(root)
    assert merged and reads == [110]  # the first segment was merged away: its saved positions are void
    _same(view, _view(root, use_saved=False))
    with Collection.open(root) as col:
        col.delete(ids[:50])
        col.compact()  # a new epoch: rows renumbered
        col.add(ids[110:], x[110:])
    view = _view(root)
    _same(view, _view(root, use_saved=False))
    assert view.ids.tolist() == ids[50:] and np.array_equal(np.asarray(view.x), x[50:])


def test_a_map_newer_than_the_catalog_is_not_used(tmp_path, rng, reads):
    x = rng.standard_normal((300, D)).astype(np.float32)
    root = tmp_path / "c"
    ids = _make(root, x, 100)
    with Collection.open(root) as col:
        col.snapshot(tmp_path / "old")  # the catalog at 100 rows
        col.add(ids[100:], x[100:])
    _view(root)  # saves the map at 300 rows
    shutil.copy(root / rowmap.FILE, tmp_path / "old" / rowmap.FILE)
    reads.clear()
    view = _view(tmp_path / "old")
    assert reads == [100] and view.ids.tolist() == ids[:100]


def test_building_an_index_saves_the_map_for_the_next_handle(tmp_path, rng, reads):
    x = rng.standard_normal((300, D)).astype(np.float32)
    ids = [str(i) for i in range(300)]
    root = tmp_path / "c"
    with Collection.create(root, dim=D, metric="cosine") as col:
        for s in range(0, 300, 30):  # commits of 30 rows: under the 50-row threshold, nothing is saved
            col.add(ids[s : s + 30], x[s : s + 30])
        assert not (root / rowmap.FILE).exists()
        col.build_index("ivf", nlist=4, nprobe=4)
    reads.clear()
    with Collection.open(root) as col:
        hits = col.search(x[7], k=3)
        assert reads == [0] and hits[0].id == "7"  # every row came from the saved map


def test_a_temporary_map_left_by_a_dead_writer_is_removed_by_the_next_save(tmp_path, rng):
    import os
    import time

    x = rng.standard_normal((120, D)).astype(np.float32)
    root = tmp_path / "c"
    _make(root, x, 120)
    old, fresh = root / "tmp-rowmap-dead.bin", root / "tmp-rowmap-writing.bin"
    old.write_bytes(b"half a row map")
    fresh.write_bytes(b"another writer's, being written")
    os.utime(old, (time.time() - 2 * rowmap.ABANDONED_AFTER,) * 2)
    view = _view(root)  # reads 120 rows: saves the map
    assert (root / rowmap.FILE).exists() and not old.exists() and fresh.exists()
    assert view.ids.tolist() == [f"doc-{i}é" for i in range(120)]
