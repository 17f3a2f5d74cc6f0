"""MUVERA fixed dimensional encodings, Chamfer scoring and multi-vector retrieval.

The invariants come from the reference C++ (google/graph-mining sketching/point_cloud),
see research/anchors.md §4.5; a literal point-by-point port of its loops below is the
reference the vectorised encoder is checked against.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from vecbox.errors import CorruptCollectionError, DimensionMismatchError, InvalidInputError
from vecbox.evaluation import knn_recall
from vecbox.multivector import (
    FDEConfig,
    MultiVectorIndex,
    TokenSets,
    as_token_sets,
    chamfer,
    encode_documents,
    encode_fde,
    encode_queries,
    fde_candidates,
    maxsim_candidates,
    rerank,
    search,
    search_exact,
    search_single_vector,
    single_vector_candidates,
)
from vecbox.multivector import _fde
from vecbox.multivector._fde import (
    ams_matrix,
    count_sketch,
    partition_bits,
    partition_index,
    sign_codes,
    simhash_matrix,
)


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def random_sets(rng: np.random.Generator, n: int, d: int, lo: int = 1, hi: int = 12) -> list[np.ndarray]:
    return [unit(rng.normal(size=(int(rng.integers(lo, hi)), d))) for _ in range(n)]


def topic_corpus(seed: int = 1, n_docs: int = 60, n_queries: int = 20, d: int = 32, topics: int = 12,
                 noise: float = 0.05) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Token sets drawn from a few topic directions (like real token embeddings, which cluster)."""
    rng = np.random.default_rng(seed)
    centers = unit(rng.normal(size=(topics, d)))

    def one(lo: int, hi: int) -> np.ndarray:
        n = int(rng.integers(lo, hi))
        w = rng.dirichlet(np.full(topics, 0.3))
        return unit(centers[rng.choice(topics, size=n, p=w)] + noise * rng.normal(size=(n, d)))

    return [one(10, 30) for _ in range(n_docs)], [one(3, 8) for _ in range(n_queries)]


# ----------------------------------------------------------------------------- a literal port of the reference
def reference_fde(points: np.ndarray, cfg: FDEConfig, *, query: bool) -> np.ndarray:
    """Point-by-point loops in the order of fixed_dimensional_encoding.cc (slow; tiny inputs only)."""
    d = points.shape[1]
    B, dp = cfg.partitions, cfg.block_dim(d)
    out = []
    for r in range(cfg.reps):
        g = simhash_matrix(d, cfg.ksim, cfg.seed + r)
        y = points @ ams_matrix(d, dp, cfg.seed + r) if cfg.projection == "ams" else points
        sketches = points @ g
        block = np.zeros((B, dp), dtype=np.float64)
        count = np.zeros(B, dtype=np.int64)
        for i in range(points.shape[0]):
            idx = 0
            for j in range(cfg.ksim):  # AppendToGrayCode
                idx = (idx << 1) + (int(sketches[i, j] > 0) ^ (idx & 1))
            block[idx] += y[i]
            count[idx] += 1
        if not query:
            for p in range(B):
                if count[p] > 0:
                    block[p] /= count[p]
                elif cfg.fill_empty and cfg.ksim > 0 and points.shape[0] > 0:
                    bits = p ^ (p >> 1)  # the reference's "GrayCodeToBinary"
                    best, best_dist = 0, None
                    for i in range(points.shape[0]):
                        dist = 0
                        for j in range(cfg.ksim):
                            dist += int(sketches[i, j] > 0) != ((bits >> (cfg.ksim - 1 - j)) & 1)
                        if best_dist is None or dist < best_dist:  # ties: the first point
                            best, best_dist = i, dist
                    block[p] = y[best]
        out.append(block.ravel())
    fde = np.concatenate(out)
    if cfg.final_dim is not None:
        buckets, signs = count_sketch(fde.size, cfg.final_dim, cfg.seed)
        final = np.zeros(cfg.final_dim)
        np.add.at(final, buckets, signs * fde)
        fde = final
    return fde.astype(np.float32)


# ----------------------------------------------------------------------------- config
def test_config_defaults_and_validation() -> None:
    assert FDEConfig(20, 5, 16).projection == "ams"
    assert FDEConfig(20, 5).projection == "identity"
    assert FDEConfig(20, 5, 16).output_dim(384) == 20 * 32 * 16
    assert FDEConfig(20, 5, 16, final_dim=1000).output_dim(384) == 1000
    cfg = FDEConfig(3, 2, 8, fill_empty=False, final_dim=64, seed=9)
    assert FDEConfig.from_dict(json.loads(cfg.to_json())) == cfg
    for bad in (dict(reps=0, ksim=1), dict(reps=1, ksim=31), dict(reps=1, ksim=-1), dict(reps=1.5, ksim=1),
                dict(reps=1, ksim=1, dproj=0), dict(reps=1, ksim=1, projection="dense"),
                dict(reps=1, ksim=1, projection="ams"), dict(reps=1, ksim=1, final_dim=0),
                dict(reps=1, ksim=1, seed=-1), dict(reps=True, ksim=1), dict(reps=1, ksim=1, fill_empty=1)):
        with pytest.raises(InvalidInputError, match="FDEConfig"):
            FDEConfig(**bad)
    with pytest.raises(DimensionMismatchError, match="projection='ams'"):
        FDEConfig(1, 1, 16, projection="identity").output_dim(384)
    with pytest.raises(InvalidInputError, match="unknown FDEConfig field"):
        FDEConfig.from_dict({"reps": 1, "ksim": 1, "k": 3})


# ----------------------------------------------------------------------------- §4.5 invariants
@pytest.mark.parametrize(
    "cfg", [FDEConfig(3, 4), FDEConfig(2, 3, 8), FDEConfig(1, 0), FDEConfig(4, 2, 5, final_dim=77)]
)
def test_fde_length(rng: np.random.Generator, cfg: FDEConfig) -> None:
    docs = random_sets(rng, 7, 24)
    expected = cfg.final_dim or cfg.reps * 2**cfg.ksim * (cfg.dproj or 24)
    assert encode_documents(docs, cfg).shape == (7, expected)
    assert encode_queries(docs, cfg).shape == (7, expected)
    assert cfg.output_dim(24) == expected


def test_ksim0_identity_is_query_sum_dot_document_mean(rng: np.random.Generator) -> None:
    cfg = FDEConfig(reps=1, ksim=0)
    queries, docs = random_sets(rng, 5, 16), random_sets(rng, 9, 16)
    got = encode_queries(queries, cfg) @ encode_documents(docs, cfg).T
    want = np.array([[float((q @ p.mean(axis=0)).sum()) for p in docs] for q in queries])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_queries_refuse_fill(rng: np.random.Generator) -> None:
    q = random_sets(rng, 3, 8)
    with pytest.raises(InvalidInputError, match="never fill"):
        encode_fde(q, FDEConfig(2, 3), kind="query", fill_empty=True)
    # the config's fill_empty is for documents: a query FDE of one token has one non-zero block
    f = encode_queries([q[0][:1]], FDEConfig(2, 3, fill_empty=True)).reshape(2, 8, 8)
    assert ((f != 0).any(axis=-1).sum(axis=-1) == 1).all()


def test_seeded_determinism(rng: np.random.Generator) -> None:
    docs = random_sets(rng, 10, 16)
    a = encode_documents(docs, FDEConfig(4, 3, 8, final_dim=100, seed=5))
    b = encode_documents(docs, FDEConfig(4, 3, 8, final_dim=100, seed=5))
    c = encode_documents(docs, FDEConfig(4, 3, 8, final_dim=100, seed=6))
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("ksim", [1, 3, 5, 8])
def test_every_point_is_at_hamming_distance_zero_from_its_partition(rng: np.random.Generator, ksim: int) -> None:
    x = rng.normal(size=(2000, 16)).astype(np.float32)
    g = simhash_matrix(16, ksim, 3)
    part = partition_index(x, g)
    assert part.min() >= 0 and part.max() < 2**ksim
    assert np.array_equal(partition_bits(part), sign_codes(x, g))  # popcount(bits(x) ^ (p ^ p>>1)) == 0
    # and the partition index is the reference's Gray-code fold, point by point
    bits = (x @ g) > 0
    for i in range(0, 2000, 97):
        idx = 0
        for b in bits[i]:
            idx = (idx << 1) + (int(b) ^ (idx & 1))
        assert part[i] == idx


@pytest.mark.parametrize("cfg", [FDEConfig(5, 4), FDEConfig(5, 5, 8), FDEConfig(3, 6, 4)])
def test_no_empty_blocks_with_fill(rng: np.random.Generator, cfg: FDEConfig) -> None:
    docs = random_sets(rng, 20, 12, lo=1, hi=5)  # few points, many partitions: most blocks need filling
    f = encode_documents(docs, cfg).reshape(20, cfg.reps, cfg.partitions, -1)
    assert (f != 0).any(axis=-1).all()
    unfilled = encode_documents(docs, FDEConfig(cfg.reps, cfg.ksim, cfg.dproj, fill_empty=False))
    assert not (unfilled.reshape(f.shape) != 0).any(axis=-1).all()


@pytest.mark.parametrize(
    "cfg",
    [FDEConfig(3, 3), FDEConfig(2, 4, 6, seed=11), FDEConfig(2, 5, 4, fill_empty=False), FDEConfig(3, 2, 4, final_dim=40),
     FDEConfig(1, 0, fill_empty=True)],
)
def test_matches_literal_port_of_the_reference(rng: np.random.Generator, cfg: FDEConfig) -> None:
    docs = random_sets(rng, 12, 10, lo=1, hi=9) + [np.zeros((0, 10), np.float32)]
    docs_f = encode_documents(docs, cfg)
    query_f = encode_queries(docs, cfg)
    for i, p in enumerate(docs):
        np.testing.assert_allclose(docs_f[i], reference_fde(p, cfg, query=False), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(query_f[i], reference_fde(p, cfg, query=True), rtol=1e-5, atol=1e-5)
    assert not docs_f[-1].any()  # an item without tokens encodes to zeros


def test_fill_picks_the_nearest_point_and_breaks_ties_by_order() -> None:
    # ksim=2 with the identity hyperplanes of the first two coordinates: the sign bits are readable.
    cfg = FDEConfig(1, 2, fill_empty=True, seed=0)
    g = simhash_matrix(2, 2, cfg.seed)
    pts = np.array([[1.0, 1.0], [-1.0, -1.0], [0.5, 2.0]], dtype=np.float32) @ np.linalg.inv(g)
    pts = pts.astype(np.float32)  # sketches: (+,+), (-,-), (+,+)
    f = encode_documents([pts], cfg).reshape(4, 2)
    part = partition_index(pts, g)  # bits 11 -> p=2, bits 00 -> p=0
    assert part.tolist() == [2, 0, 2]
    np.testing.assert_allclose(f[2], (pts[0] + pts[2]) / 2, rtol=1e-6)
    np.testing.assert_allclose(f[0], pts[1], rtol=1e-6)
    # p=1 stands for bits 01 and p=3 for bits 10: both at distance 1 from points 0, 1 and 2 -> the first one
    np.testing.assert_allclose(f[1], pts[0], rtol=1e-6)
    np.testing.assert_allclose(f[3], pts[0], rtol=1e-6)


def test_chunked_encoding_equals_one_pass(rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = random_sets(rng, 30, 12)
    cfg = FDEConfig(3, 3, 4, final_dim=50)
    whole = encode_documents(docs, cfg)
    monkeypatch.setattr(_fde, "_TOKENS_PER_CHUNK", 7)
    monkeypatch.setattr(_fde, "_FILL_BUDGET", 8)
    np.testing.assert_allclose(encode_documents(docs, cfg), whole, rtol=1e-6, atol=1e-6)


def test_final_projection_is_a_count_sketch_of_the_full_fde(rng: np.random.Generator) -> None:
    docs = random_sets(rng, 6, 12)
    full = encode_documents(docs, FDEConfig(3, 3, 4, seed=2))
    proj = encode_documents(docs, FDEConfig(3, 3, 4, final_dim=33, seed=2))
    buckets, signs = count_sketch(full.shape[1], 33, 2)
    want = np.zeros((6, 33))
    for j in range(full.shape[1]):
        want[:, buckets[j]] += signs[j] * full[:, j]
    np.testing.assert_allclose(proj, want, rtol=1e-5, atol=1e-5)


def test_fde_inner_products_track_chamfer() -> None:
    docs, queries = topic_corpus(seed=1)
    exact = chamfer(queries, docs).ravel()
    for cfg in (FDEConfig(20, 5, 16), FDEConfig(20, 5)):
        approx = (encode_queries(queries, cfg) @ encode_documents(docs, cfg).T).ravel()
        rho = spearmanr(exact, approx)[0]
        assert rho >= 0.9, (cfg, rho)


def test_matches_muvera_python_without_fill(rng: np.random.Generator) -> None:
    """Same seeds, same random matrices as the `muvera-python` port; fill differs (the port's Gray decode)."""
    muvera = pytest.importorskip("muvera")
    docs = random_sets(rng, 15, 16)
    peer = muvera.Muvera(num_repetitions=3, num_simhash_projections=3, dimension=16, projection_type="ams_sketch",
                         projection_dimension=4, fill_empty_partitions=False, seed=42)
    cfg = FDEConfig(3, 3, 4, fill_empty=False, seed=42)
    np.testing.assert_allclose(encode_documents(docs, cfg), peer.encode_documents(docs), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(encode_queries(docs, cfg), peer.encode_queries(docs), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- ragged input
def test_list_and_concatenated_inputs_agree(rng: np.random.Generator) -> None:
    docs = random_sets(rng, 8, 6) + [np.zeros((0, 6), np.float32)]
    ts = as_token_sets(docs)
    cfg = FDEConfig(2, 2, 3)
    a = encode_documents(docs, cfg)
    np.testing.assert_array_equal(a, encode_documents((ts.x, ts.offsets), cfg))
    np.testing.assert_array_equal(a, encode_documents(ts.x, cfg, offsets=ts.offsets))
    np.testing.assert_array_equal(a, encode_documents(ts, cfg))
    sub = ts.take(np.array([3, 8, 0, 3]))
    assert sub.counts.tolist() == [docs[3].shape[0], 0, docs[0].shape[0], docs[3].shape[0]]
    np.testing.assert_array_equal(sub[2], docs[0])


def test_ragged_input_errors_say_what_to_do(rng: np.random.Generator) -> None:
    x = rng.normal(size=(5, 4)).astype(np.float32)
    with pytest.raises(InvalidInputError, match="offsets"):
        as_token_sets(x)
    with pytest.raises(InvalidInputError, match="end at the number of rows"):
        as_token_sets(x, [0, 2, 4])
    with pytest.raises(InvalidInputError, match="never decrease"):
        as_token_sets(x, [0, 3, 2, 5])
    with pytest.raises(InvalidInputError, match="integer"):
        as_token_sets(x, [0.0, 5.0])
    with pytest.raises(InvalidInputError, match="2-D"):
        as_token_sets([x, x[0]])
    with pytest.raises(DimensionMismatchError):
        as_token_sets([x, x[:, :3]])
    with pytest.raises(InvalidInputError, match="NaN"):
        as_token_sets([np.full((2, 4), np.nan)])
    with pytest.raises(DimensionMismatchError, match="same model"):
        chamfer([x], [x[:, :3]])


# ----------------------------------------------------------------------------- Chamfer and rerank
def test_chamfer_hand_computed() -> None:
    q = [np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.6, 0.8]])]
    p = [np.array([[0.6, 0.8], [1.0, 0.0]]), np.array([[0.0, -1.0]]), np.zeros((0, 2))]
    # q0: max(0.6, 1.0) + max(0.8, 0.0) = 1.8 ; q0 vs p1: 0.0 + -1.0 ; q1 vs p0: max(1.0, 0.6) ; q1 vs p1: -0.8
    want = [[1.8, -1.0, 0.0], [1.0, -0.8, 0.0]]
    np.testing.assert_allclose(chamfer(q, p), want, atol=1e-6)


def test_chamfer_blocks_match_a_naive_loop(rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    from vecbox.multivector import _chamfer

    queries, docs = random_sets(rng, 7, 8), random_sets(rng, 40, 8)
    docs[5] = np.zeros((0, 8), np.float32)
    naive = np.array([[(q @ p.T).max(axis=1).sum() if p.size else 0.0 for p in docs] for q in queries])
    np.testing.assert_allclose(chamfer(queries, docs), naive, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(_chamfer, "_SCORE_BUDGET", 50)
    monkeypatch.setattr(_chamfer, "_QUERY_TOKENS", 9)
    np.testing.assert_allclose(chamfer(queries, docs), naive, rtol=1e-5, atol=1e-5)
    cand = np.array([[4, 5, -1, 39]] * 7)
    got = maxsim_candidates(queries, docs, cand)
    np.testing.assert_allclose(got[:, [0, 1, 3]], naive[:, [4, 5, 39]], rtol=1e-5, atol=1e-5)
    assert np.isneginf(got[:, 2]).all()


def test_rerank_pads_when_there_are_fewer_candidates_than_k(rng: np.random.Generator) -> None:
    queries, docs = random_sets(rng, 2, 4), random_sets(rng, 5, 4)
    s, i = rerank(queries, docs, np.array([[1, 3], [2, -1]]), k=3)
    assert i.shape == (2, 3) and i[0, 2] == -1 and i[1, 1] == -1 and np.isneginf(s[1, 1:]).all()
    assert set(i[0, :2].tolist()) == {1, 3}
    with pytest.raises(InvalidInputError, match="document indices"):
        rerank(queries, docs, np.array([[7], [0]]), k=1)


# ----------------------------------------------------------------------------- retrieval
def test_fde_retrieval_recall_against_brute_force_chamfer() -> None:
    docs, queries = topic_corpus(seed=3, n_docs=400, n_queries=30)
    cfg = FDEConfig(20, 4, 16, seed=1)
    doc_fdes = encode_documents(docs, cfg)
    _, exact = search_exact(queries, docs, k=10)
    _, got = search(queries, docs, doc_fdes, cfg, k=10, candidates=100)
    recall = knn_recall(got, exact)
    assert recall >= 0.9, recall
    # the first-stage candidates alone: more candidates, more recall
    qf = encode_queries(queries, cfg)
    r = [knn_recall(fde_candidates(qf, doc_fdes, n), exact) for n in (10, 40, 100)]
    assert r[0] <= r[1] <= r[2]


def test_single_vector_heuristic(rng: np.random.Generator) -> None:
    docs, queries = topic_corpus(seed=4, n_docs=80, n_queries=6)
    lists = single_vector_candidates(queries, docs, k_token=3)
    ts = as_token_sets(docs)
    for q, cand in zip(queries, lists):
        nearest = np.argmax(q @ ts.x.T, axis=1)
        owners = np.searchsorted(ts.offsets, nearest, side="right") - 1
        assert set(owners.tolist()) <= set(cand.tolist())
        assert len(cand) == len(set(cand.tolist())) <= q.shape[0] * 3
    # with every document token as a neighbour, the heuristic is exact
    s_sv, _ = search_single_vector(queries, docs, k=5, k_token=ts.x.shape[0])
    s_ex, _ = search_exact(queries, docs, k=5)
    np.testing.assert_allclose(s_sv, s_ex, rtol=1e-6)


def test_search_validates_arguments(rng: np.random.Generator) -> None:
    docs = random_sets(rng, 5, 4)
    cfg = FDEConfig(2, 2)
    f = encode_documents(docs, cfg)
    with pytest.raises(InvalidInputError, match="candidates"):
        search(docs[:1], docs, f, cfg, k=5, candidates=3)
    with pytest.raises(InvalidInputError, match="rows"):
        search(docs[:1], docs, f[:3], cfg, k=1, candidates=3)
    with pytest.raises(DimensionMismatchError):
        fde_candidates(f[:, :5], f, 2)


# ----------------------------------------------------------------------------- index
def test_index_add_search_save_load(tmp_path, rng: np.random.Generator) -> None:
    docs, queries = topic_corpus(seed=5, n_docs=120, n_queries=8)
    cfg = FDEConfig(10, 3, 8, seed=4)
    index = MultiVectorIndex(cfg)
    assert index.add(docs[:50]).tolist() == list(range(50))
    ts = as_token_sets(docs[50:])
    assert index.add((ts.x, ts.offsets)).tolist() == list(range(50, 120))
    np.testing.assert_allclose(index.fdes, encode_documents(docs, cfg), rtol=1e-6, atol=1e-6)
    s, i = index.search(queries, k=5, candidates=30)
    assert i.shape == (8, 5)
    np.testing.assert_array_equal(index.search_exact(queries, k=5)[1][:, 0], search_exact(queries, docs, k=1)[1][:, 0])
    index.save(tmp_path / "mv")
    assert sorted(p.name for p in (tmp_path / "mv").iterdir()) == ["fdes.npy", "index.json", "offsets.npy", "tokens.npy"]
    for mmap in (False, True):
        loaded = MultiVectorIndex.load(tmp_path / "mv", mmap=mmap)
        assert loaded.config == cfg and len(loaded) == 120 and isinstance(loaded.documents, TokenSets)
        s2, i2 = loaded.search(queries, k=5, candidates=30)
        np.testing.assert_array_equal(i2, i)
        np.testing.assert_allclose(s2, s, rtol=1e-6)
    with pytest.raises(DimensionMismatchError):
        index.add([np.ones((2, 5), np.float32)])
    (tmp_path / "mv" / "index.json").unlink()
    with pytest.raises(CorruptCollectionError, match="index.json"):
        MultiVectorIndex.load(tmp_path / "mv")
    with pytest.raises(InvalidInputError, match="empty"):
        MultiVectorIndex(cfg).search(queries)


def test_index_from_encoded_arrays(rng: np.random.Generator) -> None:
    """What a collection does: it stores the ragged tokens and the FDEs, and searches them without re-encoding."""
    docs, queries = topic_corpus(seed=6, n_docs=50, n_queries=4)
    cfg = FDEConfig(8, 3, 8)
    ts = as_token_sets(docs)
    fdes = encode_documents((ts.x, ts.offsets), cfg)
    index = MultiVectorIndex.from_encoded(cfg, ts.x, fdes, offsets=ts.offsets)
    assert index.fdes is fdes and len(index) == 50
    np.testing.assert_array_equal(index.search(queries, k=3, candidates=10)[1],
                                  search(queries, docs, fdes, cfg, k=3, candidates=10)[1])
    with pytest.raises(InvalidInputError, match="encode_documents"):
        MultiVectorIndex.from_encoded(cfg, ts, fdes[:, :10])


def test_hnsw_over_fdes_keeps_the_recall_of_exact_mips() -> None:
    docs, queries = topic_corpus(seed=3, n_docs=400, n_queries=30)
    index = MultiVectorIndex(FDEConfig(20, 4, 16, seed=1))
    index.add(docs)
    _, exact = index.search_exact(queries, k=10)
    _, flat = index.search(queries, k=10, candidates=100)
    _, graph = index.build_ann(M=16).search(queries, k=10, candidates=100)
    rec = lambda got: knn_recall(got, exact)
    assert rec(graph) >= rec(flat) - 0.02 and rec(graph) >= 0.9
    index.add(docs[:1])  # new documents drop the graph: results stay exact-MIPS based
    assert index._ann is None
