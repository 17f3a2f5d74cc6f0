"""Readers never fail because of a writer; files are deleted only when no snapshot can use them;
creation is atomic; evidence is quarantined, not deleted; a huge k costs no more than the rows.

Issue 18 items 1, 2, 5 and 6, each against an independent reference (the data written, a fresh
handle's answer, the file system).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from vecbox import Collection
from vecbox.errors import CollectionNotFoundError
from vecbox.storage import catalog

D = 16


def _filled(path: Path, n: int = 3000, seed: int = 0) -> tuple[Collection, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)
    col = Collection.create(path, dim=D, metric="l2")
    for start in range(0, n, 500):  # several segments
        col.add([f"r{i}" for i in range(start, start + 500)], x[start:start + 500],
                [{"g": i % 10} for i in range(start, start + 500)])
    return col, x


def test_a_reader_holding_a_snapshot_survives_compaction_and_an_index_rebuild(tmp_path):
    """Item 1, deterministic: the reader's read transaction predates the writer's compaction and rebuild."""
    path = tmp_path / "c"
    writer, x = _filled(path)
    writer.build_index("hnsw", M=8)
    writer.delete([f"r{i}" for i in range(100)])
    reader = Collection.open(path)
    old_files = {f for f, _ in catalog.segment_files(reader._conn).values()}
    with catalog.transaction(reader._conn, write=False) as conn:
        conn.execute("SELECT COUNT(*) FROM rows").fetchone()  # the snapshot is pinned from here
        writer.compact()  # rewrites every segment and rebuilds the index: both retire files
        writer.build_index("hnsw", M=8)
        assert all((path / "segments" / f).exists() for f in old_files)  # retired, not deleted: a reader needs them
        reader._refresh(conn)  # loads the old version's segments and index (once, "restore from a backup")
        assert reader._executor.index_problem() is None
        scores, pos, plan = reader._executor.run(conn, reader._reader, x[500:501], 5, reader._executor.selection.parse(None))
    assert reader._live.version < writer.version
    exact = np.argsort(((x[100:] - x[500]) ** 2).sum(1))[:5] + 100
    assert sorted(reader._live.ids[pos[0]].tolist()) == sorted(f"r{i}" for i in exact)
    # Once no reader holds an old snapshot, the next writer's clean-up deletes the retired files.
    assert [h.id for h in reader.search(x[500], 5, include_metadata=False)] == \
        [h.id for h in writer.search(x[500], 5, exact=True)]
    writer.add(["new"], x[:1])
    Collection.open(path)  # opening takes the lock and collects garbage
    on_disk = {p.name for p in (path / "segments").iterdir()}
    referenced = {f for f, _ in catalog.segment_files(writer._conn).values()}
    assert on_disk == referenced and not (old_files & on_disk)
    assert len(list((path / "indexes").iterdir())) == 1
    assert catalog.retired(writer._conn) == {}


def test_retired_files_wait_while_an_old_snapshot_is_open(tmp_path):
    path = tmp_path / "c"
    writer, _ = _filled(path, n=1000)
    reader = Collection.open(path)
    old = {f for f, _ in catalog.segment_files(writer._conn).values()}
    reader._conn.execute("BEGIN")
    reader._conn.execute("SELECT COUNT(*) FROM rows").fetchone()
    writer.compact()
    writer.add(["x"], np.ones((1, D)))
    Collection.open(path)  # collects garbage, but the reader's snapshot predates the compaction
    assert all((path / "segments" / f).exists() for f in old)
    reader._conn.execute("COMMIT")
    Collection.open(path)
    assert not any((path / "segments" / f).exists() for f in old)


def test_a_huge_k_costs_no_more_memory_than_the_rows(tmp_path):
    """Item 2: k = 10^9 with a filter that matches nothing, every row deleted, or plain."""
    col, x = _filled(tmp_path / "c", n=1000)
    tracemalloc.start()
    try:
        assert col.search(x[0], 10**9, where={"g": 99}) == []
        assert len(col.search(x[0], 10**9)) == 1000
        assert len(col.search_batch(x[:3], 10**9, include_metadata=False)[2]) == 1000
        col.build_index("hnsw", M=8)
        assert len(col.search(x[0], 10**9, include_metadata=False)) == 1000
        col.delete(where={})
        assert col.search(x[0], 10**9) == []
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 << 20, peak


CREATOR = textwrap.dedent(
    """
    import sys
    from vecbox import Collection
    print("ready", flush=True)
    Collection.create(sys.argv[1], dim=8, codec=sys.argv[2] if len(sys.argv) > 2 else None)
    print("created", flush=True)
    """
)


def test_a_kill_during_create_leaves_the_path_usable(tmp_path):
    """Item 5: SIGKILL at random moments of Collection.create; afterwards the path is absent (or empty,
    as given) - `open` says there is no collection and `create` works - or it holds a whole collection."""
    script = tmp_path / "creator.py"
    script.write_text(CREATOR)
    rng = np.random.default_rng(7)
    outcomes = {"none": 0, "whole": 0}
    # Kills are timed from the child's "ready" (after its imports) over 1.5x one whole create's duration,
    # so they land on both sides of the rename however loaded the machine is.
    probe = subprocess.Popen([sys.executable, str(script), str(tmp_path / "probe")], stdout=subprocess.PIPE)
    assert probe.stdout is not None and probe.stdout.readline().strip() == b"ready"
    t0 = time.perf_counter()
    probe.stdout.readline()
    span = 1.5 * (time.perf_counter() - t0)
    probe.wait()
    for trial in range(24):
        path = tmp_path / f"c{trial}"
        if trial % 2:
            path.mkdir()  # creating into an existing empty directory
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(float(rng.uniform(0, span)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (path / catalog.CATALOG_FILE).exists():
            outcomes["whole"] += 1
            with Collection.open(path) as col:
                assert col.dim == 8 and col.count() == 0
            assert len(Collection.create(path, dim=8, exist_ok=True)) == 0
        else:
            outcomes["none"] += 1
            assert not path.exists() or not any(path.iterdir())
            with pytest.raises(CollectionNotFoundError):
                Collection.open(path)
            col = Collection.create(path, dim=8)
            col.add(["a"], np.ones((1, 8)))
            assert col.count() == 1
    assert outcomes["none"] and outcomes["whole"], outcomes  # kills landed on both sides of the rename


def test_files_newer_than_the_last_commit_are_quarantined_not_deleted(tmp_path):
    """Item 6: a commit lost from the catalog leaves its intact segment; the next open keeps it as evidence."""
    path = tmp_path / "c"
    col, _ = _filled(path, n=500)
    extra = np.random.default_rng(3).standard_normal((10, D)).astype(np.float32)
    from vecbox.storage.segments import write_segment

    time.sleep(0.05)
    name, _ = write_segment(path, extra)  # as a commit that the catalog then lost would leave it
    with pytest.warns(RuntimeWarning, match="quarantine"):  # the writer's close (or the next open) collects
        col.close()
        again = Collection.open(path)
    kept = path / "quarantine" / "segments" / name
    assert kept.exists() and not (path / "segments" / name).exists()
    np.testing.assert_array_equal(np.load(kept), extra)
    assert again.count() == 500  # the collection itself is untouched


@pytest.mark.parametrize("codec", [None, "int8"])
def test_small_commits_merge_by_tier_and_readers_follow(tmp_path, codec):
    """Item 14: single-row adds merge into few segments (tiers of 10); a reader that held the rows before the
    merges reads the same floats after them; every row reads back bit for bit."""
    from vecbox.storage.writes import MERGE_FACTOR, tier

    path = tmp_path / "c"
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, D)).astype(np.float32)
    col = Collection.create(path, dim=D, metric="l2", codec=codec)
    col.add([f"r{i}" for i in range(50)], x[:50])  # a codec is fitted on the first batch
    reader = Collection.open(path)
    assert len(reader.get(["r0"])) == 1  # the reader's view holds the first rows, in their first segment
    for i in range(50, 300):
        col.add([f"r{i}"], x[i:i + 1])
    segs = catalog.segment_files(col._conn)
    per_tier: dict[int, int] = {}
    for _, n in segs.values():
        per_tier[tier(n)] = per_tier.get(tier(n), 0) + 1
    assert max(per_tier.values()) < MERGE_FACTOR and len(segs) <= 20, per_tier
    assert sum(n for _, n in segs.values()) == 300
    on_disk = {p.name for p in (path / "segments").iterdir()}
    assert len(on_disk) <= 2 * len(segs) + 2 * MERGE_FACTOR  # retired files wait for the reader only
    for handle in (reader, Collection.open(path)):
        got = np.stack([r.vector for r in handle.get([f"r{i}" for i in range(300)])])
        np.testing.assert_array_equal(got, x)
        hits = handle.search(x[123], 3, exact=True)
        assert hits[0].id == "r123"


def _flip(path: Path, offset_from_end: int = 7) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip", "swap"])
def test_damaged_or_swapped_segments_are_caught_by_their_checksums(tmp_path, damage):
    """Item 4: a flipped byte inside a segment's data, or two same-shape segments swapped, never reads back silently."""
    from vecbox.errors import CorruptCollectionError

    path = tmp_path / "c"
    col, x = _filled(path, n=1000)  # two segments of 500 rows
    files = sorted(f for f, _ in catalog.segment_files(col._conn).values())
    col.close()
    a, b = (path / "segments" / f for f in files[:2])
    if damage == "flip":
        _flip(a)
    else:
        tmp = a.read_bytes()
        a.write_bytes(b.read_bytes())
        b.write_bytes(tmp)
    with pytest.raises(CorruptCollectionError, match="checksum"):
        Collection.open(path).search(x[0], 3)


@pytest.mark.parametrize("target", ["rids.npy", "index.faiss"])
def test_an_edited_index_file_is_caught_and_searches_stay_exact(tmp_path, target):
    path = tmp_path / "c"
    col, x = _filled(path, n=1000)
    col.build_index("hnsw", M=8)
    (idx,) = (path / "indexes").iterdir()
    _flip(idx / target, 9)
    again = Collection.open(path)
    with pytest.warns(RuntimeWarning, match="checksum"):
        res = again.search(x[7], 5, explain=True)
    assert res.plan.path == "exact" and [h.id for h in res.hits] == [h.id for h in again.search(x[7], 5, exact=True)]
    assert "checksum" in again.index_info()["damaged"]


# ----------------------------------------------------------------------------- verify and snapshot
def test_verify_passes_a_healthy_collection_and_names_each_kind_of_damage(tmp_path):
    path = tmp_path / "c"
    col, x = _filled(path, n=1000)
    col.build_index("hnsw", M=8)
    rep = col.verify()
    assert rep.ok, rep.problems
    assert rep.checked["segment files"] == 2 and rep.checked["rows"] == 1000 and rep.checked["index rows"] == 1000
    files = sorted(f for f, _ in catalog.segment_files(col._conn).values())
    _flip(path / "segments" / files[0])
    (path / "segments" / files[1]).unlink()
    (idx,) = (path / "indexes").iterdir()
    _flip(idx / "index.faiss", 9)
    rep = Collection.open(path).verify()
    text = "\n".join(rep.problems)
    assert not rep.ok and len(rep.problems) == 3, rep.problems
    assert "checksum" in text and "missing" in text and "build_index" in text


def test_verify_reports_a_damaged_sqlite_page(tmp_path):
    path = tmp_path / "c"
    col, _ = _filled(path, n=2000)
    col.close()
    db = path / catalog.CATALOG_FILE
    data = bytearray(db.read_bytes())
    page = 4096
    for k in range(1, 5):  # scramble the headers of b-tree pages 2-5 (SQLite has no page checksums of its own)
        for i in range(k * page, k * page + 8):
            data[i] ^= 0x5A
    db.write_bytes(bytes(data))
    from vecbox.errors import CorruptCollectionError

    try:
        rep = Collection.open(path).verify()
    except CorruptCollectionError as exc:  # the damage may already stop the open: a vecbox error either way
        assert "backup" in str(exc) or "damaged" in str(exc)
    else:
        assert not rep.ok and ("SQLite" in rep.problems[0] or "catalog" in rep.problems[0])


WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from vecbox import Collection
    col = Collection.open(sys.argv[1], lock_timeout=60)
    rng = np.random.default_rng(99)  # not _filled's seed: no row equals another
    i = 0
    while True:
        col.add([f"w{i}-{j}" for j in range(50)], rng.standard_normal((50, 16)))
        if i % 7 == 6:
            col.compact()
        i += 1
    """
)


def test_a_snapshot_taken_under_a_busy_writer_opens_and_answers_as_its_version_did(tmp_path):
    path = tmp_path / "c"
    col, x = _filled(path, n=1000)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(path)])
    try:
        time.sleep(2.0)
        snaps = [col.snapshot(tmp_path / f"snap{i}") for i in range(3)]
    finally:
        proc.kill()
        proc.wait()
    for snap in snaps:
        assert snap.verify().ok
        ids = snap.ids()
        assert len(ids) == snap.count() and len(ids) >= 1000 and len(ids) % 50 == 0  # whole batches only
        got = np.stack([r.vector for r in snap.get([f"r{i}" for i in range(0, 1000, 97)])])
        np.testing.assert_array_equal(got, x[0:1000:97])
        # answers as a fresh exact scan of its own vectors does
        vecs = np.stack([r.vector for r in snap.get(ids)])
        q = x[3]
        want = [ids[i] for i in np.argsort(((vecs - q) ** 2).sum(1), kind="stable")[:5]]
        assert [h.id for h in snap.search(q, 5)] == want
    assert not list(tmp_path.glob(".snap*"))


SNAPPER = textwrap.dedent(
    """
    import sys
    from vecbox import Collection
    Collection.open(sys.argv[1]).snapshot(sys.argv[2])
    """
)


def test_a_kill_during_snapshot_leaves_no_half_copy(tmp_path):
    path = tmp_path / "c"
    _filled(path, n=3000)[0].close()
    script = tmp_path / "snapper.py"
    script.write_text(SNAPPER)
    rng = np.random.default_rng(4)
    whole = 0
    for trial in range(12):
        dest = tmp_path / f"s{trial}"
        proc = subprocess.Popen([sys.executable, str(script), str(path), str(dest)])
        time.sleep(float(rng.uniform(0.1, 1.0)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if dest.exists():
            whole += 1
            with Collection.open(dest) as snap:
                assert snap.count() == 3000 and snap.verify().ok
        else:
            with pytest.raises(CollectionNotFoundError):
                Collection.open(dest)
    assert Collection.open(path).verify().ok  # the source is untouched


def test_cli_verify_and_snapshot(tmp_path):
    from typer.testing import CliRunner

    from vecbox.cli import app

    path = tmp_path / "c"
    col, _ = _filled(path, n=500)
    runner = CliRunner()
    res = runner.invoke(app, ["verify", str(path), "--json"])
    assert res.exit_code == 0 and '"ok": true' in res.output
    res = runner.invoke(app, ["snapshot", str(path), str(tmp_path / "copy")])
    assert res.exit_code == 0 and "version" in res.output
    assert Collection.open(tmp_path / "copy").count() == 500
    seg = next((path / "segments").iterdir())
    _flip(seg)
    res = runner.invoke(app, ["verify", str(path)])
    assert res.exit_code == 1 and "checksum" in res.output


def test_multivector_compaction_keeps_only_the_survivors_tokens(tmp_path):
    """Item 11: 1 of 500 items survives; compaction leaves its tokens only (same values), and a long-lived
    reader drops its maps of the compacted-away token files."""
    from vecbox.multivector import FDEConfig

    path = tmp_path / "mv"
    rng = np.random.default_rng(5)
    sets = [rng.standard_normal((int(rng.integers(20, 40)), 8)).astype(np.float32) for _ in range(500)]
    col = Collection.create(path, multivector=FDEConfig(reps=2, ksim=2), token_dim=8)
    for start in range(0, 500, 100):
        col.add_multi([str(i) for i in range(start, start + 100)], sets[start:start + 100])
    reader = Collection.open(path)
    reader.search_multi([sets[7]], 1)  # maps token files
    col.delete([str(i) for i in range(500) if i != 7])
    col.compact()
    token_bytes = sum(p.stat().st_size for p in (path / "segments").iterdir()
                      if p.name in catalog.token_files(col._conn))
    assert token_bytes < 128 + sets[7].nbytes * 2, token_bytes
    hit = reader.search_multi([sets[7]], 1)[0][0]
    assert hit.id == "7" and np.isclose(hit.score, float((sets[7] @ sets[7].T).max(1).sum()), rtol=1e-5)
    assert set(reader._token_files._maps) <= catalog.token_files(col._conn)


def test_a_numeric_filter_on_a_string_only_field_is_explained_and_warned(tmp_path):
    """Item 13: {"year": {"$gte": 2024}} against years stored as "2024" matches nothing - and says why."""
    col = Collection.create(tmp_path / "c", dim=2)
    col.add(["a", "b"], [[1.0, 0.0], [0.0, 1.0]], [{"year": "2024"}, {"year": "2023"}])
    with pytest.warns(RuntimeWarning, match="holds strings and no numbers"):
        plan = col.explain([1.0, 0.0], k=2, where={"year": {"$gte": 2024}})
    assert plan.estimate == 0 and "holds strings and no numbers" in plan.estimate_source
    with _no_warning():
        assert col.explain([1.0, 0.0], k=2, where={"year": {"$gte": "2024"}}).estimate == 1


class _no_warning:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings(record=True)
        self.got = self._w.__enter__()
        warnings.simplefilter("always")

    def __exit__(self, *exc):
        self._w.__exit__(*exc)
        assert not [w for w in self.got if "holds strings" in str(w.message)]


def test_vectors_that_overflow_float32_are_rejected_and_tiny_ones_accepted(tmp_path):
    """Item 7 and 15: an l2 row of 1e20 would vanish from its own query; a 1e-30 cosine row is not 'all zeros'."""
    from vecbox.errors import InvalidInputError

    l2 = Collection.create(tmp_path / "l2", dim=2, metric="l2")
    with pytest.raises(InvalidInputError, match="too large for float32"):
        l2.add(["big"], [[1e20, 0.0]])
    cos = Collection.create(tmp_path / "cos", dim=2)
    cos.add(["tiny", "huge"], [[1e-30, 1e-30], [3e38, 0.0]])
    assert np.allclose(cos.get(["tiny"])[0].vector, [0.70710677, 0.70710677])
    assert cos.search([1.0, 0.0], 1)[0].id == "huge"


def test_the_wal_stays_bounded_while_readers_never_pause(tmp_path, monkeypatch):
    """Item 14's WAL target at unit scale: small commits under readers that search without pause. SQLite's own
    passive checkpoint lets the WAL grow while readers hold old frames; the writer's truncating checkpoint keeps
    it under the threshold (lowered here to 64 KiB) plus a few commits, and no row or reader is lost."""
    import threading

    limit = 64 << 10
    monkeypatch.setattr(catalog, "WAL_TRUNCATE_AT", limit)
    path = tmp_path / "c"
    rng = np.random.default_rng(5)
    x = rng.standard_normal((400, D)).astype(np.float32)
    col = Collection.create(path, dim=D, metric="l2")
    col.add(["r0"], x[:1])
    stop, sizes, errors = threading.Event(), [], []
    wal = path / (catalog.CATALOG_FILE + "-wal")

    handles = [Collection.open(path) for _ in range(2)]
    for handle in handles:  # first searches in this thread: lazy imports never run in two threads at once
        handle.search(x[0], 5)

    def read(handle: Collection) -> None:
        try:
            while not stop.is_set():
                try:
                    handle.search(x[0], 5)
                    sizes.append(wal.stat().st_size if wal.exists() else 0)
                except Exception as exc:  # noqa: BLE001 - any failure is the finding
                    errors.append(repr(exc))
        finally:
            handle.close()

    threads = [threading.Thread(target=read, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    for i in range(1, 400):
        col.add([f"r{i}"], x[i:i + 1], [{"i": i}])
    sizes.append(wal.stat().st_size)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert len(sizes) > 50  # the readers really were reading between the commits
    assert max(sizes) <= limit + (limit // 4) + (256 << 10), max(sizes)  # threshold, one retry step, a merge's frames
    fresh = Collection.open(path)
    assert fresh.count() == 400
    np.testing.assert_array_equal(np.stack([r.vector for r in fresh.get([f"r{i}" for i in range(400)])]), x)
