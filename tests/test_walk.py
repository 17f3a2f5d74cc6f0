"""vecbox's own HNSW walk (the C extension ``vecbox.index._walk``) over FAISS's graph.

Checked against FAISS's search on the same graph (no filter: the same algorithm, so the
same answers), against exact search under filters - including a filter correlated with
the query's neighbourhood, where FAISS's beam rule collapses at the same ef - and for
its input checks.
"""

from __future__ import annotations

import numpy as np
import pytest

from vecbox.evaluation import knn_recall
from vecbox.index import ann
from vecbox.index.ann import AnnIndex, IndexParams
from vecbox.index.flat import exact_topk

faiss = pytest.importorskip("faiss")

D, K = 24, 10


def test_the_extension_is_built():
    # make test builds it (pip install -e .); without it every search silently runs FAISS's walk
    assert ann.walk_module() is not None


@pytest.fixture(scope="module")
def clustered():
    """3,000 rows in 30 tight clusters (label = cluster), 50 queries near rows."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((30, D)).astype(np.float32) * 3
    label = rng.integers(0, 30, 3000)
    x = (centres[label] + rng.standard_normal((3000, D)).astype(np.float32)).astype(np.float32)
    q = (x[rng.choice(3000, 50, replace=False)] + 0.3 * rng.standard_normal((50, D))).astype(np.float32)
    return x, label, q


@pytest.fixture(scope="module", params=["l2", "cosine"])
def index(request, clustered):
    x, _, _ = clustered
    metric = request.param
    xx = x / np.linalg.norm(x, axis=1, keepdims=True) if metric == "cosine" else x
    idx = AnnIndex.build(xx, np.arange(1, len(x) + 1), metric, IndexParams("hnsw", M=8, ef_construction=64))
    assert idx.filter_rule == "allowed"
    return idx, xx, metric


def _queries(q, metric):
    return q / np.linalg.norm(q, axis=1, keepdims=True) if metric == "cosine" else q


def test_no_filter_answers_as_faiss_does(index, clustered):
    idx, xx, metric = index
    q = _queries(clustered[2], metric)
    for ef in (10, 32):
        dist, lab = idx.search_plain(q, K, ef)
        fd, fl = idx.faiss_index.search(q, K, params=faiss.SearchParametersHNSW(efSearch=ef))
        assert (lab == fl).all(axis=1).mean() >= 0.98  # ties aside, the same walk
        np.testing.assert_allclose(dist, fd, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("two_hop", [False, True])
def test_filtered_walk_returns_only_allowed_rows_and_tracks_exact(index, clustered, two_hop):
    idx, xx, metric = index
    _, label, q = clustered
    q = _queries(q, metric)
    rng = np.random.default_rng(3)
    # two-hop needs a few allowed rows per neighbour list (the planner's TWO_HOP_MIN_ALLOWED): with M = 8
    # (16 level-0 neighbours) 2 % leaves the allowed rows in pieces, so it is tried down to 20 %
    for share in (0.5, 0.1, 0.02) if not two_hop else (0.5, 0.2):
        mask = rng.random(len(xx)) < share
        bitmap = np.packbits(mask, bitorder="little")
        scores, lab = idx.search(q, K, effort=32 if not two_hop else int(32 / share), allow=bitmap, two_hop=two_hop)
        assert mask[lab[lab >= 0]].all()
        _, truth = exact_topk(xx, q, K, metric, valid=mask)
        assert knn_recall(lab, truth) >= 0.95
        # scores are the exact similarities of the rows returned
        assert (np.diff(scores, axis=1) <= 1e-5).all()


def test_correlated_filter_beats_faiss_beam_rule_at_the_same_ef(index, clustered):
    idx, xx, metric = index
    x, label, _ = clustered
    # queries near rows of clusters 0-9, only clusters 10-29 allowed: every allowed row lies away from the query
    rng = np.random.default_rng(4)
    q = (x[rng.choice(np.flatnonzero(label < 10), 50, replace=False)] + 0.3 * rng.standard_normal((50, D)))
    q = _queries(q.astype(np.float32), metric)
    mask = label >= 10
    bitmap = np.packbits(mask, bitorder="little")
    _, truth = exact_topk(xx, q, K, metric, valid=mask)
    _, lab = idx.search(q, K, effort=32, allow=bitmap)
    sel = faiss.IDSelectorBitmap(len(xx), faiss.swig_ptr(bitmap))
    _, fl = idx.faiss_index.search(q, K, params=faiss.SearchParametersHNSW(efSearch=32, sel=sel))
    ours, theirs = knn_recall(lab, truth), knn_recall(fl, truth)
    # measured: 0.98 / 0.99 against FAISS's 0.28 / 0.27 (l2 / cosine); FAISS needs ef 128+ for 0.75
    assert ours >= 0.95 and theirs < 0.5


def test_fewer_allowed_rows_than_k_are_padded(index, clustered):
    idx, xx, metric = index
    q = _queries(clustered[2][:3], metric)
    mask = np.zeros(len(xx), bool)
    mask[[5, 700, 2999]] = True
    scores, lab = idx.search(q, K, effort=16, allow=np.packbits(mask, bitorder="little"))
    assert sorted(lab[0, :3].tolist()) == [5, 700, 2999]  # the walk reaches every allowed row
    assert (lab[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    # the two-hop walk may not reach isolated rows, but never returns a disallowed one
    _, lab2 = idx.search(q, K, effort=16, allow=np.packbits(mask, bitorder="little"), two_hop=True)
    assert set(lab2[lab2 >= 0].tolist()) <= {5, 700, 2999}
    _, none_lab = idx.search(q, K, effort=16, allow=np.zeros_like(np.packbits(mask, bitorder="little")))
    assert (none_lab == -1).all()


def test_batch_threads_give_the_single_query_answers(index, clustered):
    idx, xx, metric = index
    q = np.ascontiguousarray(_queries(clustered[2], metric))
    mask = np.random.default_rng(5).random(len(xx)) < 0.3
    bitmap = np.packbits(mask, bitorder="little")
    walker = idx.walker()
    one = np.stack([idx.search_plain(q[i:i + 1], K, 20, bitmap, reuse=True)[1][0].copy() for i in range(len(q))])
    for threads in (1, 2, 3):
        dist = np.empty((len(q), K), np.float32)
        lab = np.empty((len(q), K), np.int64)
        walker.search(q, K, 20, bitmap, dist, lab, threads, False)
        assert (lab == one).all()


def test_bad_buffers_are_errors_not_crashes(index):
    idx, xx, _ = index
    walker = idx.walker()
    q = np.zeros((2, D), np.float32)
    dist, lab = np.empty((2, K), np.float32), np.empty((2, K), np.int64)
    with pytest.raises(ValueError):  # outputs too small for 2 queries
        walker.search(q, K, 16, None, dist[:1], lab[:1], 1, False)
    with pytest.raises(ValueError):  # bitmap shorter than the graph
        walker.search(q, K, 16, np.zeros(3, np.uint8), dist, lab, 1, False)
    with pytest.raises(ValueError):
        walker.search(q, 0, 16, None, dist, lab, 1, False)
    with pytest.raises(TypeError):
        walker.search(q, K, 16)
    with pytest.raises(ValueError):  # inconsistent graph arrays
        ann.walk_module().Graph(np.zeros(10, np.float32), np.zeros(4, np.int32), np.zeros(2, np.uint64),
                                 np.zeros(5, np.int32), np.zeros(3, np.int32), 4, 0, 0, True)


def test_two_hop_walk_tracks_exact_under_a_selective_filter(index, clustered):
    # at 20 % selectivity the one-hop walk scores ~4 disallowed rows per allowed one; the two-hop
    # walk scores only allowed rows: the same recall, measured against exact
    idx, xx, metric = index
    q = _queries(clustered[2], metric)
    mask = np.random.default_rng(9).random(len(xx)) < 0.2
    bitmap = np.packbits(mask, bitorder="little")
    _, truth = exact_topk(xx, q, K, metric, valid=mask)
    _, one = idx.search(q, K, effort=16, allow=bitmap)
    _, two = idx.search(q, K, effort=48, allow=bitmap, two_hop=True)
    assert mask[two[two >= 0]].all()
    assert knn_recall(one, truth) >= 0.95 and knn_recall(two, truth) >= 0.95


def test_hits_turns_a_batch_into_hit_lists():
    from vecbox.collection import Hit

    walk = ann.walk_module()
    ids = [f"r{i}" for i in range(5)]
    dist = np.array([[4.0, 9.0], [0.25, 1.0]], np.float32)
    lab = np.array([[3, 0], [1, 4]], np.int64)
    assert walk.hits(dist, lab, ids, 0, Hit) == [[Hit("r3", 4.0), Hit("r0", 9.0)], [Hit("r1", 0.25), Hit("r4", 1.0)]]
    assert walk.hits(dist, lab, ids, 2, Hit)[0] == [Hit("r3", 2.0), Hit("r0", 3.0)]  # l2: square roots
    lab[1, 1] = -1  # fewer than k answers: the caller's general path answers
    assert walk.hits(dist, lab, ids, 0, Hit) is None
    lab[1, 1] = 5
    with pytest.raises(ValueError, match="outside the ids"):
        walk.hits(dist, lab, ids, 0, Hit)
    with pytest.raises(ValueError, match="same shape"):
        walk.hits(dist[:1], lab, ids, 0, Hit)
    with pytest.raises(ValueError, match="mode"):
        walk.hits(dist, lab, ids, 1, Hit)  # cosine needs the query norm: a batch is normalised first


def test_walk_codes_are_faiss_sq8_codes_and_decode_within_half_a_step(clustered):
    x = clustered[0]
    for ip in (True, False):
        codes, scale, offset, sq_norms = ann.walk_codes(x, ip)
        assert codes.dtype == np.uint8 and codes.shape == x.shape
        # FAISS's own decoder is the reference for what the codes mean
        sq = faiss.ScalarQuantizer(D, faiss.ScalarQuantizer.QT_8bit)
        sq.train(x)
        decoded = sq.decode(codes)
        np.testing.assert_allclose(offset + scale * codes, decoded, rtol=1e-5, atol=1e-5)
        assert (np.abs(decoded - x) <= scale / 2 + 1e-5).all()
        if ip:
            assert sq_norms is None
        else:
            np.testing.assert_allclose(sq_norms, (x.astype(np.float64) ** 2).sum(1), rtol=1e-5)


def test_code_walk_tracks_the_float_walk_and_returns_exact_distances(index, clustered):
    # the walk scores on 8-bit codes and rescores its final ef rows exactly: the same recall
    # against exact search as the walk on the float rows, and distances that are the exact ones
    idx, xx, metric = index
    walker = idx.walker()
    q = np.ascontiguousarray(_queries(clustered[2], metric))
    mask = np.random.default_rng(11).random(len(xx)) < 0.3
    bitmap = np.packbits(mask, bitorder="little")
    found = {}
    assert not idx.walks_codes  # 24 dimensions: below ann.CODES_MIN_DIM, so codes are set here
    try:
        for codes in (True, False):
            walker.set_codes(*ann.walk_codes(xx, metric != "l2")) if codes else walker.set_codes(None)
            for allow, valid in ((None, None), (bitmap, mask)):
                dist, lab = idx.search_plain(q, K, 16, allow)
                _, truth = exact_topk(xx, q, K, metric, valid=valid)
                found[codes, allow is None] = knn_recall(lab, truth)
                rows = xx[lab]
                exact = ((rows - q[:, None]) ** 2).sum(-1) if metric == "l2" else np.einsum("qkd,qd->qk", rows, q)
                np.testing.assert_allclose(dist, exact, rtol=1e-4, atol=1e-4)
                assert (np.diff(dist, axis=1) >= -1e-6 if metric == "l2" else np.diff(dist, axis=1) <= 1e-6).all()
    finally:
        walker.set_codes(None)
    for unfiltered in (True, False):
        assert found[True, unfiltered] >= 0.95
        assert found[True, unfiltered] >= found[False, unfiltered] - 0.01


def test_set_codes_checks_its_buffers(index):
    idx, xx, metric = index
    walker = idx.walker()
    codes, scale, offset, sq_norms = ann.walk_codes(xx, metric != "l2")
    try:
        with pytest.raises(ValueError, match="set_codes"):
            walker.set_codes(codes[:-1], scale, offset, sq_norms)
        with pytest.raises(ValueError, match="set_codes"):
            walker.set_codes(codes, scale[:-1], offset, sq_norms)
        if metric == "l2":  # L2 needs the rows' exact squared norms
            with pytest.raises(TypeError):
                walker.set_codes(codes, scale, offset, None)
        with pytest.raises(TypeError):
            walker.set_codes(codes)
        # a refused set_codes leaves the walk on the float rows: still right
        q = np.ascontiguousarray(_queries(xx[:5], metric))
        _, lab = idx.search_plain(q, 1, 16)
        assert lab[:, 0].tolist() == [0, 1, 2, 3, 4]
    finally:
        walker.set_codes(None)


def test_indexes_of_64_dimensions_or_more_walk_codes_and_track_exact(monkeypatch):
    rng = np.random.default_rng(12)
    centres = rng.standard_normal((20, 96)).astype(np.float32)
    x = (centres[rng.integers(0, 20, 4000)] + 0.5 * rng.standard_normal((4000, 96))).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:40] + 0.05 * rng.standard_normal((40, 96)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    idx = AnnIndex.build(x, np.arange(1, 4001), "cosine", IndexParams("hnsw", M=16))
    assert idx.walks_codes
    with_codes = idx.memory_bytes()
    monkeypatch.setattr(ann, "CODES_MIN_DIM", 97)
    assert not idx.walks_codes and with_codes - idx.memory_bytes() == 4000 * 96  # the codes are counted in RAM
    monkeypatch.undo()
    mask = rng.random(4000) < 0.2
    for allow, valid in ((None, None), (np.packbits(mask, bitorder="little"), mask)):
        scores, lab = idx.search(q, K, effort=32, allow=allow)
        _, truth = exact_topk(x, q, K, "cosine", valid=valid)
        assert knn_recall(lab, truth) >= 0.95
        np.testing.assert_allclose(scores, np.einsum("qkd,qd->qk", x[lab], q), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("filtered", [False, True])
def test_the_rescore_stops_early_with_the_answers_of_rescoring_all_ef(index, clustered, filtered):
    # a walk over codes rescores its ef candidates in code order and stops once no later one can
    # enter the k best; reference: numpy's exact distances of all ef candidates (k = ef rescores them all)
    idx, xx, metric = index
    walker = idx.walker()
    q = np.ascontiguousarray(_queries(clustered[2], metric))
    mask = np.random.default_rng(5).random(len(xx)) < 0.4
    allow = np.packbits(mask, bitorder="little") if filtered else None
    walker.set_codes(*ann.walk_codes(xx, metric != "l2"))
    try:
        for ef in (16, 48):
            dist, lab = idx.search_plain(q, K, ef, allow)
            _, cand = idx.search_plain(q, ef, ef, allow)
            for qi, row, labs, d in zip(q, cand, lab, dist):
                row = row[row >= 0]
                exact = ((xx[row] - qi) ** 2).sum(1) if metric == "l2" else -(xx[row] @ qi)
                want = row[np.argsort(exact, kind="stable")[:K]]
                assert set(labs.tolist()) == set(want.tolist())
                assert not filtered or mask[labs].all()
            rows = xx[lab]
            exact = ((rows - q[:, None]) ** 2).sum(-1) if metric == "l2" else np.einsum("qkd,qd->qk", rows, q)
            np.testing.assert_allclose(dist, exact, rtol=1e-4, atol=1e-4)
    finally:
        walker.set_codes(None)


def test_rows_read_from_a_file_answer_as_the_rows_in_memory(index, clustered, tmp_path):
    idx, xx, metric = index
    walker = idx.walker()
    q = np.ascontiguousarray(_queries(clustered[2], metric))
    path = tmp_path / "rows.bin"
    path.write_bytes(b"\x07" * 100 + np.ascontiguousarray(xx, dtype=np.float32).tobytes())  # rows at offset 100
    (tmp_path / "short.bin").write_bytes(b"\x00" * 100)
    walker.set_codes(*ann.walk_codes(xx, metric != "l2"))
    try:
        want = idx.search_plain(q, K, 32)
        with open(path, "rb") as fh:
            walker.read_rows_from(fh.fileno(), 100)
        # the graph keeps its own descriptor: closing ours changes nothing
        for got in (idx.search_plain(q, K, 32), idx.search_plain(q[:1], K, 32, reuse=True)):
            np.testing.assert_array_equal(got[1], want[1][: len(got[1])])
            np.testing.assert_allclose(got[0], want[0][: len(got[0])], rtol=1e-6)
        with open(tmp_path / "short.bin", "rb") as fh:
            walker.read_rows_from(fh.fileno(), 0)
        with pytest.raises(OSError, match="rows file"):  # a short read is an error, never rows of zeros
            idx.search_plain(q, K, 32)
        with pytest.raises(OSError, match="rows file"):
            idx.search_plain(q[:1], K, 32)
        with pytest.raises(ValueError):
            walker.read_rows_from(-1, 0)
        walker.read_rows_from(None)
        np.testing.assert_array_equal(idx.search_plain(q, K, 32)[1], want[1])
    finally:
        walker.read_rows_from(None)
        walker.set_codes(None)


# ------------------------------------------------------------------ a saved index read in place
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_a_saved_hnsw_file_is_read_in_place_as_faiss_reads_it(tmp_path, metric):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3000, 64)).astype(np.float32)
    built = AnnIndex.build(x, np.arange(1, 3001), metric, IndexParams("hnsw", M=8, ef_construction=40))
    built.save(tmp_path / "i")
    f = ann.hnsw_file(tmp_path / "i" / "index.faiss")
    ref = faiss.read_index(str(tmp_path / "i" / "index.faiss"))  # FAISS's own reader (the reference)
    h = ref.hnsw
    assert (f.d, f.ntotal, f.entry, f.max_level, f.inner_product) == (
        ref.d, ref.ntotal, h.entry_point, h.max_level, metric != "l2")
    for mine, theirs in ((f.cum, h.cum_nneighbor_per_level), (f.levels, h.levels), (f.offsets, h.offsets),
                         (f.neighbors, h.neighbors)):
        np.testing.assert_array_equal(mine, faiss.vector_to_array(theirs))
    np.testing.assert_array_equal(f.x, faiss.rev_swig_ptr(faiss.downcast_index(ref.storage).get_xb(), 3000 * 64).reshape(3000, 64))
    loaded = AnnIndex.load(tmp_path / "i")
    q = np.ascontiguousarray(x[:20] + 0.1)
    np.testing.assert_array_equal(loaded.search(q, K, effort=32)[1], built.search(q, K, effort=32)[1])
    assert loaded.faiss_index._index is None  # FAISS's index was never read
    assert loaded.faiss_index.ntotal == 3000 and loaded.faiss_index.is_trained  # read when asked for


def test_a_damaged_graph_is_walked_without_reading_outside_it(tmp_path):
    # the walk reads the graph in place without FAISS's pass over every list: ids and offsets out of
    # range (a damaged file, caught later by its checksum) must end lists, not read outside the arrays
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2000, 64)).astype(np.float32)
    AnnIndex.build(x, np.arange(1, 2001), "l2", IndexParams("hnsw", M=8, ef_construction=40)).save(tmp_path / "i")
    path = tmp_path / "i" / "index.faiss"
    f = ann.hnsw_file(path)
    file_start = f.x.ctypes.data - f.floats_at  # the map's first byte: each view's place in the file follows
    spots = {name: getattr(f, name).ctypes.data - file_start for name in ("neighbors", "offsets")}
    ids, offsets = f.neighbors.copy(), f.offsets.copy()
    del f
    ids[::3] = 2_000_000_000  # ids far out of range
    offsets[5:50] = 1 << 60  # lists that would start far outside the neighbour array
    data = bytearray(path.read_bytes())
    for name, arr in (("neighbors", ids), ("offsets", offsets)):
        data[spots[name] : spots[name] + arr.nbytes] = arr.tobytes()
    path.write_bytes(bytes(data))
    idx = AnnIndex.load(tmp_path / "i", just_saved=True)  # as if the file broke after its check
    for two_hop, allow in ((False, None), (True, np.packbits(rng.random(2000) < 0.2, bitorder="little"))):
        _, lab = idx.search(np.ascontiguousarray(x[:50]), K, effort=32, allow=allow, two_hop=two_hop)
        assert ((lab >= -1) & (lab < 2000)).all()


def test_files_that_are_not_hnsw_flat_are_left_to_faiss_and_short_ones_refused(tmp_path):
    x = np.random.default_rng(5).standard_normal((2000, 64)).astype(np.float32)
    AnnIndex.build(x, np.arange(1, 2001), "l2", IndexParams("ivf", nlist=8)).save(tmp_path / "ivf")
    assert ann.hnsw_file(tmp_path / "ivf" / "index.faiss") is None
    AnnIndex.build(x, np.arange(1, 2001), "l2", IndexParams("hnsw", M=8)).save(tmp_path / "h")
    path = tmp_path / "h" / "index.faiss"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="index.faiss"):
        ann.hnsw_file(path)


# ------------------------------------------------------------------ rescore in place
@pytest.mark.parametrize("metric", ["dot", "l2"])
def test_rescore_in_place_equals_numpy_over_pieces(metric):
    """The C rescore reads candidate rows from a matrix's pieces (mapped segments and a RAM buffer in
    a live view): its top k equals a numpy reference computed on the concatenated matrix, with -1
    candidates skipped and -inf / -1 where a query has fewer than k candidates."""
    from vecbox._rows import RowChunks
    from vecbox.index.flat import rescore

    rng = np.random.default_rng(5)
    whole = rng.standard_normal((300, 24)).astype(np.float32)
    rows = RowChunks([whole[:100], whole[100:100], whole[100:250], whole[250:]])  # an empty piece too
    q = rng.standard_normal((6, 24)).astype(np.float32)
    cand = np.stack([rng.choice(300, 40, replace=False) for _ in range(6)])
    cand[1, 5:] = -1  # five candidates only: fewer than k
    cand[2, ::3] = -1
    k = 10
    s, pos = rescore(q, cand, lambda r: np.asarray(rows[r]), k, metric, rows=rows)
    for i in range(6):
        c = cand[i][cand[i] >= 0]
        ref = whole[c] @ q[i] if metric == "dot" else 2 * whole[c] @ q[i] - (whole[c] ** 2).sum(1)
        order = np.argsort(-ref, kind="stable")[:k]
        got = pos[i][pos[i] >= 0]
        assert got.tolist() == c[order].tolist()
        np.testing.assert_allclose(s[i][: len(got)], ref[order], rtol=1e-4, atol=1e-3)
        assert np.all(np.isneginf(s[i][len(got):])) and np.all(pos[i][len(got):] == -1)
    s2, pos2 = rescore(q, cand, lambda r: np.asarray(rows[r]), k, metric)  # numpy's own path, by fetch
    assert pos2.tolist() == pos.tolist()
    np.testing.assert_allclose(s2, s, rtol=1e-4, atol=1e-3)


def test_rescore_in_place_rejects_rows_outside_the_matrix():
    walk = ann.walk_module()
    x = np.zeros((10, 4), dtype=np.float32)
    q = np.zeros((1, 4), dtype=np.float32)
    out_s, out_p = np.empty((1, 2), np.float32), np.empty((1, 2), np.int64)
    starts = np.array([0, 10], dtype=np.int64)
    with pytest.raises(IndexError, match="outside"):
        walk.rescore(q, np.array([[3, 10]], dtype=np.int64), starts, (x,), 2, False, out_s, out_p)
    with pytest.raises(ValueError, match="rows of the queries' width"):
        walk.rescore(q, np.array([[3, 4]], dtype=np.int64), np.array([0, 11], dtype=np.int64), (x,), 2, False,
                     out_s, out_p)
