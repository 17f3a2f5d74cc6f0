"""One copy of the vectors: big segments are read in place through memory maps, not copied into RAM.

References: numpy over the concatenated rows (for the stitched matrix and the scan over it)
and exact numpy search over the data the test wrote (for collections whose rows are mapped).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vecbox import Collection
from vecbox._memory import mapped_resident
from vecbox._rows import RowChunks
from vecbox.errors import CorruptCollectionError
from vecbox.index.flat import exact_topk
from vecbox.storage import catalog, live

D = 256
BIG = live.MAP_MIN_BYTES // (4 * D) + 100  # rows of a segment the view maps


# ------------------------------------------------------------------ the stitched matrix
def test_row_chunks_slice_and_gather_like_the_concatenated_array(rng):
    pieces = [rng.standard_normal((n, 3)).astype(np.float32) for n in (5, 1, 7, 4)]
    ref = np.concatenate(pieces)
    m = RowChunks(pieces)
    assert m.shape == ref.shape and len(m) == 17 and m.nbytes == ref.nbytes
    for a in range(0, 18):
        for b in range(a, 18):
            assert np.array_equal(m[a:b], ref[a:b])
    rows = rng.integers(0, 17, 40)
    assert np.array_equal(m[rows], ref[rows]) and np.array_equal(m[np.array([-1, 0])], ref[[-1, 0]])
    mask = rng.random(17) < 0.5
    assert np.array_equal(m[mask], ref[mask]) and np.array_equal(m[::3], ref[::3])
    assert np.array_equal(m[rows.reshape(5, 8)], ref[rows.reshape(5, 8)])
    assert np.array_equal(np.asarray(m), ref)
    assert np.shares_memory(m[6:12], pieces[2])  # inside one piece: a view, no copy
    with pytest.raises(IndexError):
        m[np.array([17])]


@pytest.mark.parametrize("metric", ["dot", "l2"])
def test_exact_scan_over_pieces_equals_the_scan_over_one_array(rng, metric):
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    x[2000] = x[10]  # a tie across pieces (either order is right: compared with ties sorted by row)
    q = np.concatenate([rng.standard_normal((6, 16)).astype(np.float32), x[[10]]])
    cuts = [0, 700, 701, 2000, 3000]
    m = RowChunks([x[a:b] for a, b in zip(cuts[:-1], cuts[1:])])
    valid = rng.random(3000) < 0.8
    valid[[10, 2000]] = True
    sq = np.einsum("ij,ij->i", x, x)
    for k in (1, 10, 3000, 5000):
        for v in (None, valid):
            s_ref, i_ref = exact_topk(x, q, min(k, 3000), metric, valid=v, sq_norms=sq)
            s, i = exact_topk(m, q, min(k, 3000), metric, valid=v, sq_norms=sq)
            assert np.array_equal(_by_row_in_ties(s, i), _by_row_in_ties(s_ref, i_ref))
            assert np.allclose(s, s_ref, rtol=1e-5, atol=1e-4)


def _by_row_in_ties(s, i):
    return np.array([row[np.lexsort((row, -sc))] for sc, row in zip(s, i)])


# ------------------------------------------------------------------ collections over mapped segments
def _exact_ids(x, q, k, metric, keep):
    xs = x / np.linalg.norm(x, axis=1, keepdims=True) if metric == "cosine" else x
    qs = q / np.linalg.norm(q) if metric == "cosine" else q
    score = -((xs - qs) ** 2).sum(1) if metric == "l2" else xs @ qs
    score = np.where(keep, score, -np.inf)
    return np.argsort(-score, kind="stable")[:k]


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_big_segments_are_mapped_not_copied_and_search_exactly(tmp_path, rng, metric):
    x = rng.standard_normal((2 * BIG + 300, D)).astype(np.float32)
    ids = np.array([str(i) for i in range(len(x))])
    with Collection.create(tmp_path / "c", dim=D, metric=metric) as col:
        col.add(list(ids[:BIG]), x[:BIG], [{"g": i % 3} for i in range(BIG)])
        col.add(list(ids[BIG:2 * BIG]), x[BIG:2 * BIG], [{"g": i % 3} for i in range(BIG, 2 * BIG)])
        col.add(list(ids[2 * BIG:]), x[2 * BIG:], [{"g": i % 3} for i in range(2 * BIG, len(x))])  # small: RAM
        col.delete([ids[5], ids[BIG + 7]])
    keep = np.ones(len(x), bool)
    keep[[5, BIG + 7]] = False
    with Collection.open(tmp_path / "c") as col:
        q = rng.standard_normal(D).astype(np.float32)
        hits = col.search(q, k=10, exact=True)
        lv = col._reader.live
        assert lv.mapped_rows == 2 * BIG and isinstance(lv.x, RowChunks)
        maps = [p for _, p in lv.x.pieces() if isinstance(p, np.memmap)]
        assert len(maps) == 2 and sum(len(p) for p in maps) == 2 * BIG  # read in place: no RAM copy
        assert [h.id for h in hits] == list(ids[_exact_ids(x, q, 10, metric, keep)])
        g = np.arange(len(x)) % 3 == 1
        hits = col.search(q, k=10, where={"g": 1}, exact=True)
        assert [h.id for h in hits] == list(ids[_exact_ids(x, q, 10, metric, keep & g)])
        batch = col.search_batch(x[[1, BIG + 3, 2 * BIG + 1]], k=3, exact=True)
        assert [b[0].id for b in batch] == [ids[1], ids[BIG + 3], ids[2 * BIG + 1]]
        np.testing.assert_allclose(col.get([ids[BIG + 1]])[0].vector,
                                   x[BIG + 1] / (np.linalg.norm(x[BIG + 1]) if metric == "cosine" else 1),
                                   rtol=1e-6)
        lv.raise_if_damaged(wait=True)  # the background checksum checks pass on healthy files


def test_merges_and_compaction_re_map_the_rows(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(live, "MAP_MIN_BYTES", 0)  # every whole segment is mapped
    x = rng.standard_normal((400, 8)).astype(np.float32)
    ids = [str(i) for i in range(len(x))]
    with Collection.create(tmp_path / "c", dim=8, metric="dot") as col:
        reader = Collection.open(tmp_path / "c")
        for i in range(0, 40, 1):  # 40 single-row commits: the tiered policy merges them
            col.add([ids[i]], x[i:i + 1])
            if i % 7 == 0:
                reader.search(x[0], k=3, exact=True)  # the reader follows the merges as they happen
        col.add(ids[40:], x[40:])
        lv = reader._reader.live
        hits = reader.search(x[3], k=5, exact=True)
        assert [h.id for h in hits] == [ids[i] for i in _exact_ids(x, x[3], 5, "dot", np.ones(400, bool))]
        files = {f for f, _ in catalog.segment_files(col._conn).values()}
        assert len(lv._pieces) <= len(files)  # pieces of one merged file became one piece again
        assert set(lv._maps) <= set(catalog.segment_files(col._conn))  # merged-away files are no longer mapped
        col.delete(ids[:100])
        col.compact()
        hits = reader.search(x[300], k=5, exact=True)
        keep = np.arange(400) >= 100
        assert [h.id for h in hits] == [ids[i] for i in _exact_ids(x, x[300], 5, "dot", keep)]
        assert len(reader._reader.live._pieces) == 1 and reader._reader.live.mapped_rows == 300
        reader.close()


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-9] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_damaged_mapped_segment_is_caught_by_the_background_check(tmp_path, rng):
    x = rng.standard_normal((BIG, D)).astype(np.float32)
    with Collection.create(tmp_path / "c", dim=D) as col:
        col.add([str(i) for i in range(BIG)], x)
        (seg,) = (f for f, _ in catalog.segment_files(col._conn).values())
    _flip(tmp_path / "c" / "segments" / seg)
    with Collection.open(tmp_path / "c") as col:
        try:  # maps the file and starts its check, without reading it first: this search may finish before it
            col.search(x[0], k=3)
        except CorruptCollectionError:
            pass
        with pytest.raises(CorruptCollectionError, match="checksum"):
            col._reader.live.raise_if_damaged(wait=True)
        for _ in range(2):  # and from then on every search that reads the rows says so
            with pytest.raises(CorruptCollectionError, match="checksum"):
                col.search(x[0], k=3, exact=True)


# ------------------------------------------------------------------ the index: mapped, its codes saved
def test_a_loaded_index_maps_its_files_and_reuses_the_saved_walk_codes(tmp_path, rng):
    from vecbox.index import ann as ann_mod

    x = rng.standard_normal((3000, 64)).astype(np.float32)
    with Collection.create(tmp_path / "c", dim=64) as col:
        col.add([str(i) for i in range(len(x))], x)
        col.build_index("hnsw", M=8)
        built = col._executor.ann
        if not built.walks_codes:
            pytest.skip("the C walk is not built: no codes to save")
        want = [h.id for h in col.search(x[5], k=10)]
    (d,) = (tmp_path / "c" / "indexes").iterdir()
    assert {p.name for p in d.iterdir()} >= {"walk-codes.npy", "walk-scale.npy", "walk-offset.npy"}
    loaded = ann_mod.AnnIndex.load(d)
    assert isinstance(loaded.codes[0], np.memmap)  # read in place, not made again (~1.6 s at 10^6 rows)
    for a, b in zip(loaded.codes, built.codes):
        assert (a is None and b is None) or np.array_equal(np.asarray(a), b)
    with Collection.open(tmp_path / "c") as col:
        assert [h.id for h in col.search(x[5], k=10)] == want


@pytest.mark.parametrize("target", ["index.faiss", "walk-codes.npy"])
def test_a_damaged_index_file_checked_in_the_background_turns_searches_exact(tmp_path, rng, monkeypatch, target):
    from vecbox.index import ann as ann_mod

    x = rng.standard_normal((2000, 64)).astype(np.float32)
    with Collection.create(tmp_path / "c", dim=64) as col:
        col.add([str(i) for i in range(len(x))], x)
        col.build_index("hnsw", M=8)
    (d,) = (tmp_path / "c" / "indexes").iterdir()
    if not (d / target).exists():
        pytest.skip("the C walk is not built: no codes saved")
    _flip(d / target)
    monkeypatch.setattr(ann_mod, "CHECK_LATER_BYTES", 0)  # every file checked in the background
    with Collection.open(tmp_path / "c") as col, pytest.warns(RuntimeWarning, match="checksum"):
        col.search(x[7], k=5)  # loads the index; its check runs meanwhile (and may be done before this returns)
        for _, future in col._executor.ann.pending if col._executor.ann else ():
            future.result()
        res = col.search(x[7], k=5, explain=True)
        assert res.plan.path == "exact" and [h.id for h in res.hits] == [h.id for h in col.search(x[7], 5, exact=True)]
        assert target in col.index_info()["damaged"]


def test_index_info_reports_measured_memory(tmp_path, rng):
    x = rng.standard_normal((3000, 64)).astype(np.float32)
    with Collection.create(tmp_path / "c", dim=64) as col:
        col.add([str(i) for i in range(len(x))], x)
        mem = col.build_index("hnsw", M=8)["memory"]
        (d,) = (tmp_path / "c" / "indexes").iterdir()
        disk = sum(p.stat().st_size for p in d.iterdir())
        assert mem["disk_bytes"] == disk
        if mem["mapped_bytes"] is not None:  # Linux: /proc/self/smaps
            # the handle searches the saved files, mapped (index.faiss at least: the 3000 x 64 floats)
            assert 3000 * 64 * 4 <= mem["mapped_bytes"] <= disk + 2 * 4096 * len(list(d.iterdir()))
            assert 0 <= mem["resident_bytes"] <= mem["mapped_bytes"]
        assert mem["build_peak_bytes"] is None or mem["build_peak_bytes"] >= 0
    with Collection.open(tmp_path / "c") as col:
        assert col.index_info()["memory"]["build_peak_bytes"] == mem["build_peak_bytes"]  # saved with the index


# ------------------------------------------------------------------ an index for more rows than RAM holds as floats
def _clustered(rng, n, d, centres=64):
    c = rng.standard_normal((centres, d)).astype(np.float32) * 2
    return (c[rng.integers(0, centres, n)] + rng.standard_normal((n, d)).astype(np.float32)).astype(np.float32)


def test_ivf_pq_built_from_mapped_rows_rescored_exactly_reaches_its_target(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(live, "MAP_MIN_BYTES", 0)  # small rows (a quick PQ training), mapped all the same
    d, per = 64, 2000
    x = _clustered(rng, 3 * per + 100, d)
    x, q = x[:-100], x[-100:]  # held-out rows of the same mixture as queries
    with Collection.create(tmp_path / "c", dim=d) as col:
        for start in range(0, len(x), per):
            col.add([str(i) for i in range(start, start + per)], x[start:start + per])
        info = col.build_index("ivf", nlist=16, storage="pq", target_recall=0.9)
        assert col._reader.live.mapped_rows == len(x)  # the build read them where they lie
        assert info["storage"] == "pq" and info["pq_bytes"] == d // 8
        assert info["calibration"]["reached"] and info["memory_bytes"] < len(x) * d  # < the floats / 4
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        truth = np.argsort(-(q / np.linalg.norm(q, axis=1, keepdims=True)) @ xn.T, axis=1)[:, :10]
        got = np.array([[int(h.id) for h in col.search(v, k=10)] for v in q])
        from vecbox.evaluation import knn_recall
        assert knn_recall(got, truth) >= 0.85  # a fresh sample: near the calibrated figure
        hit = col.search(q[0], k=1)[0]  # exact scores: rescored from the floats, not the codes
        assert hit.score == pytest.approx(float(xn[int(hit.id)] @ (q[0] / np.linalg.norm(q[0]))), abs=1e-5)


def test_a_memory_budget_picks_the_storage_and_refuses_what_cannot_fit(tmp_path, rng):
    from vecbox.collection_index import parse_bytes, storage_for_budget
    from vecbox.errors import InvalidInputError

    # hand-worked: 10^6 x 384 IVF rows cost 4*384+8 (flat), 384+8 (sq8), 48+8 (pq) bytes
    assert storage_for_budget("ivf", 10**6, 384, int(1800e6)) == ("flat", None)  # 1,544 MB <= 90 % of 1,800
    assert storage_for_budget("ivf", 10**6, 384, int(1600e6)) == ("sq8", None)  # ... but not of 1,600
    assert storage_for_budget("ivf", 10**6, 384, int(500e6)) == ("sq8", None)
    assert storage_for_budget("ivf", 10**6, 384, int(100e6)) == ("pq", 48)
    assert storage_for_budget("ivf", 10**6, 384, int(30e6)) == ("pq", 12)
    with pytest.raises(InvalidInputError, match="kind='ivf'"):
        storage_for_budget("hnsw", 10**6, 384, int(100e6))
    assert parse_bytes("2 GB") == 2 << 30 and parse_bytes("300MB") == 300 << 20
    for bad in ("lots", "-1GB", 0, "8 XB"):
        with pytest.raises(InvalidInputError, match="memory_budget"):
            parse_bytes(bad)
    x = _clustered(rng, 3000, 32)
    with Collection.create(tmp_path / "c", dim=32) as col:
        col.add([str(i) for i in range(3000)], x)
        assert col.build_index("ivf", nlist=16, memory_budget=3000 * 60)["storage"] == "sq8"  # 32+8 fits, 136 not
        with pytest.raises(InvalidInputError, match="not both"):
            col.build_index("ivf", storage="pq", memory_budget="1GB")
        with pytest.raises(InvalidInputError, match="kind='ivf'"):
            col.build_index("hnsw", storage="pq")
        with pytest.raises(InvalidInputError, match="must divide"):
            col.build_index("ivf", storage="pq", pq_bytes=5)
        assert col.index_info()["storage"] == "sq8"  # refused builds left the index as it was


def _rss_file() -> int:
    """Bytes of file-backed pages resident in this process (skips the test off Linux)."""
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("RSS is read from /proc/self/status (Linux)")
    line = next(ln for ln in status.read_text().splitlines() if ln.startswith("RssFile:"))
    return int(line.split()[1]) * 1024


def _mapped_41mb(tmp_path: Path, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, RowChunks]:
    """40,000 x 256 float32 rows, saved and memory-mapped: (the rows, the map, the map in two pieces)."""
    _rss_file()
    x = rng.standard_normal((40_000, 256)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    return x, mm, RowChunks([mm[:15_000], mm[15_000:]])


def test_released_rows_leave_rss_and_read_back_the_same(tmp_path, rng):
    from vecbox._rows import release_rows

    x, _, m = _mapped_41mb(tmp_path, rng)
    before = _rss_file()
    total = float(sum(float(np.asarray(m[s:s + 5000]).sum()) for s in range(0, 40_000, 5000)))  # touch every page
    touched = _rss_file()
    release_rows(m, 0, 40_000)
    after = _rss_file()
    assert touched - before > 30e6 and touched - after > 30e6  # the pages were resident, and were let go
    assert total == pytest.approx(float(x.sum()), rel=1e-4)
    assert np.array_equal(m[123:130], x[123:130])  # and read back the same (from the page cache)
    release_rows(np.ones((3, 4), np.float32), 0, 3)  # RAM rows: nothing to release, no error


def test_rows_of_a_mapping_bigger_than_the_limit_are_let_go_after_gathers_and_scans(tmp_path, rng, monkeypatch):
    from vecbox import _rows

    x, mm, m = _mapped_41mb(tmp_path, rng)
    (tmp_path / "x.npy").read_bytes()  # in the page cache: faults map their 64 KB neighbourhood
    rows = rng.integers(0, 40_000, 2000)
    q = rng.standard_normal((3, 256)).astype(np.float32)
    ref_s, ref_i = exact_topk(x, q, 7, "dot")

    monkeypatch.setattr(_rows, "KEEP_MAPPED_BYTES", 1 << 40)  # under the limit: pages stay mapped
    before = _rss_file()
    assert np.array_equal(_rows.gather(m, rows), x[rows])
    kept = _rss_file() - before
    _rows.release_rows(m, 0, 40_000)

    monkeypatch.setattr(_rows, "KEEP_MAPPED_BYTES", 1 << 20)  # over it: what a gather or a scan maps is let go
    before = _rss_file()
    assert np.array_equal(_rows.gather(m, rows), x[rows]) and np.array_equal(_rows.gather(mm, rows), x[rows])
    after_gathers = _rss_file() - before
    s, i = exact_topk(m, q, 7, "dot")
    after_scan = _rss_file() - before
    s1, i1 = exact_topk(mm, q, 7, "dot")
    after_scan_of_one_map = _rss_file() - before
    norms = _rows.sq_norms(m)
    released = _rss_file() - before
    assert kept > 20e6 and max(after_gathers, after_scan, after_scan_of_one_map, released) < 2e6  # 2,000 scattered rows mapped most of the file; released: nothing stays
    assert np.array_equal(i, ref_i) and np.array_equal(i1, ref_i) and np.allclose(s, ref_s, rtol=1e-5)
    np.testing.assert_allclose(norms, np.einsum("ij,ij->i", x, x), rtol=1e-5)


def test_checksums_read_files_without_mapping_them(tmp_path, rng):
    import xxhash

    from vecbox._fs import file_checksum

    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("RSS is read from /proc/self/status (Linux)")

    def rss():
        line = next(ln for ln in status.read_text().splitlines() if ln.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    data = rng.integers(0, 256, 40 << 20, dtype=np.uint8).tobytes()  # 40 MB, not a multiple of the block
    path = tmp_path / "f.bin"
    path.write_bytes(data[:-7])
    before = rss()
    got = file_checksum(path), file_checksum(path, block=3 << 20)
    assert got == (xxhash.xxh3_64_intdigest(data[:-7]),) * 2
    assert rss() - before < 12 << 20  # one 8 MB buffer, not the file's 40 MB of mapped pages


def test_scattered_rows_of_a_big_mapping_are_read_without_mapping_them(tmp_path, rng, monkeypatch):
    import gc

    from vecbox import _rows

    x = rng.standard_normal((5000, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    m = RowChunks([mm[:1234], mm[1234:4000], mm[4000:]])
    monkeypatch.setattr(_rows, "KEEP_MAPPED_BYTES", 1 << 10)  # every mapping counts as big
    rows = np.array([0, 4999, 1233, 1234, 7, 7, 3999, 4000, -1])
    assert np.array_equal(_rows.gather(m, rows), x[rows])
    assert np.array_equal(_rows.gather(mm, rows), x[rows])
    assert np.array_equal(_rows.gather(mm, rows[:6].reshape(2, 3)), x[rows[:6].reshape(2, 3)])
    assert _rows._file_of(mm[1234:4000]) is not None and _rows._FDS  # read through a descriptor of the file
    with pytest.raises(IndexError):
        _rows.gather(mm, np.array([5000]))
    del m, mm
    gc.collect()
    assert not _rows._FDS  # the descriptor closes with the map


@pytest.mark.parametrize("by_pread", [False, True])
def test_a_loaded_hnsw_index_reads_its_rescored_rows_without_mapping_them(tmp_path, rng, monkeypatch, by_pread):
    # the walk over codes reads its final rows in float; read through FAISS's map of index.faiss they
    # made the whole float storage resident, read by pread they stay in the page cache only
    from vecbox.index import ann as ann_mod

    if ann_mod.walk_module() is None:
        pytest.skip("the C walk is not built")
    monkeypatch.setattr(ann_mod, "PREAD_ROWS_BYTES", 0 if by_pread else 1 << 62)
    x = _clustered(rng, 20_000, 128)  # 10 MB of floats in index.faiss
    q = x[rng.choice(len(x), 300, replace=False)] + 0.05 * rng.standard_normal((300, 128)).astype(np.float32)
    with Collection.create(tmp_path / "c", dim=128, metric="cosine") as col:
        col.add([str(i) for i in range(len(x))], x)
        col.build_index("hnsw", M=8, target_recall=None)
    (d,) = (tmp_path / "c" / "indexes").iterdir()
    with Collection.open(tmp_path / "c") as col:
        hits = [[h.id for h in col.search(v, k=10)] for v in q]
        mem = mapped_resident(d / "index.faiss")
        if mem is None:
            pytest.skip("resident pages per mapping are read from /proc/self/smaps (Linux)")
        resident = mem["resident_bytes"]
        exact = [[h.id for h in col.search(v, k=10, exact=True)] for v in q]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(hits, exact)])
    assert recall >= 0.9
    floats = x.nbytes
    if by_pread:
        assert resident < floats / 3, resident  # the graph's pages, not the rows'
    else:
        assert resident > floats / 2, resident


def test_background_checks_run_at_the_lowest_cpu_priority_and_the_process_keeps_its_own(tmp_path):
    # the checks are background work: a new handle's first search (its BLAS scan) should not share
    # two cores with them; reference: the kernel's own record of each thread's nice value
    import os
    import sys

    from vecbox import _fs

    if not sys.platform.startswith("linux"):
        pytest.skip("per-thread priorities are Linux's")
    f = tmp_path / "f.bin"
    f.write_bytes(b"x" * 1000)
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert _fs.checksum_later(f, _fs.file_checksum(f)).result() is True
    assert _fs.checksum_later(f, 1).result() is False
    stat = Path(f"/proc/self/task/{_fs._CHECKER.native_id}/stat").read_text()
    assert int(stat.rsplit(")", 1)[1].split()[16]) == 19  # field 19 of stat: nice
    assert os.getpriority(os.PRIO_PROCESS, 0) == mine  # the rest of the process is untouched
