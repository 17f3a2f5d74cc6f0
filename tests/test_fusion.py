"""Fusion of a dense and a lexical result list (vecbox.query.fusion), against hand computations."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from vecbox.errors import InvalidInputError
from vecbox.query.fusion import METHODS, FusedList, Fusion, noise_max

EMPTY = (np.empty(0, dtype=np.int64), np.empty(0))


def L(positions, scores):  # a list in the (positions, scores) form fuse takes
    return np.asarray(positions, dtype=np.int64), np.asarray(scores, dtype=np.float64)


def z(x):
    x = np.asarray(x, dtype=float)
    return (x - x.mean()) / x.std()


# ------------------------------------------------------------------------ hand-worked examples
def test_rrf_hand_worked():
    dense, lexical = L([10, 20, 30], [0.9, 0.8, 0.7]), L([30, 40], [7.0, 3.0])
    out = Fusion("rrf").fuse([dense, lexical], k=10)
    # 30: rank 3 dense + rank 1 lexical; 10: rank 1; 20 and 40: rank 2 once each (tie -> lower position).
    assert out.positions.tolist() == [30, 10, 20, 40]
    assert out.scores == pytest.approx([1 / 63 + 1 / 61, 1 / 61, 1 / 62, 1 / 62], abs=1e-15)
    assert out.details["k"] == 60 and out.details["weights"] == [1.0, 1.0]


def test_rrf_with_k_and_weights_hand_worked():
    dense, lexical = L([10, 20, 30], [0.9, 0.8, 0.7]), L([30, 40], [7.0, 3.0])
    out = Fusion.parse({"method": "rrf", "k": 1, "weights": (2.0, 1.0)}).fuse([dense, lexical], k=10)
    expected = {10: 2 / 2, 20: 2 / 3, 30: 2 / 4 + 1 / 2, 40: 1 / 3}
    assert out.positions.tolist() == [10, 30, 20, 40]  # 10 and 30 tie at 1.0 -> lower position first
    assert out.scores == pytest.approx([expected[p] for p in out.positions.tolist()], abs=1e-15)


def test_minmax_hand_worked():
    dense, lexical = L([1, 2, 3], [0.9, 0.5, 0.1]), L([3, 4], [4.0, 2.0])
    out = Fusion("minmax").fuse([dense, lexical], k=10)
    # dense -> 1, 0.5, 0; lexical -> 1, 0; a missing document gets 0; weights 0.5 each.
    expected = {1: 0.5 * 1, 2: 0.5 * 0.5, 3: 0.5 * 0 + 0.5 * 1, 4: 0.0}
    assert out.positions.tolist() == [1, 3, 2, 4]
    assert out.scores == pytest.approx([expected[p] for p in out.positions.tolist()], abs=1e-12)
    assert out.details["lists"][0]["min"] == pytest.approx(0.1) and out.details["lists"][1]["max"] == pytest.approx(4.0)


def test_3sigma_hand_worked():
    dense, lexical = L([1, 2], [3.0, 1.0]), L([2, 5], [2.0, 0.0])
    out = Fusion("3sigma").fuse([dense, lexical], k=10)
    # dense mean 2, std 1 -> (s + 1) / 6; lexical mean 1, std 1 -> (s + 2) / 6; missing -> 0.
    expected = {1: 0.5 * 4 / 6, 2: 0.5 * 2 / 6 + 0.5 * 4 / 6, 5: 0.5 * 2 / 6}
    assert out.positions.tolist() == [2, 1, 5]
    assert out.scores == pytest.approx([expected[p] for p in out.positions.tolist()], abs=1e-12)
    assert out.details["lists"][0]["low"] == pytest.approx(-1.0)


def test_zscore_hand_worked():
    dense, lexical = L([1, 2], [3.0, 1.0]), L([2, 3, 4], [4.0, 2.0, 1.0])
    out = Fusion("zscore").fuse([dense, lexical], k=10)
    # Union 1, 2, 3, 4; a document a list missed gets that list's lowest score.
    zd = z([3.0, 1.0, 1.0, 1.0])
    zl = z([1.0, 4.0, 2.0, 1.0])
    fused = 0.5 * zd + 0.5 * zl
    order = sorted(range(4), key=lambda i: (-fused[i], i))
    assert out.positions.tolist() == [i + 1 for i in order]
    assert out.scores == pytest.approx(fused[order], abs=1e-12)
    assert out.details["lists"][1]["top_z"] == pytest.approx(zl[1])


def test_default_hand_worked():
    # A flat dense list (noise-like) and a lexical list with one clear outlier, over 6 documents.
    dense = L([0, 1, 2, 3, 4, 5], [0.52, 0.51, 0.50, 0.49, 0.48, 0.47])
    lexical = L([3, 0, 1], [10.0, 1.5, 1.0])
    out = Fusion().fuse([dense, lexical], k=10)
    zd = z([0.52, 0.51, 0.50, 0.49, 0.48, 0.47])
    zl = z([1.5, 1.0, 1.0, 10.0, 1.0, 1.0])  # documents 2, 4, 5 get the lexical minimum, 1.0
    e6 = NormalDist().inv_cdf((6 - 0.375) / (6 + 0.25))  # expected max of 6 standard normals
    cd, cl = max(zd[0] - e6, 0.1), max(zl[3] - e6, 0.1)
    wd, wl = cd / (cd + cl), cl / (cd + cl)
    fused = wd * zd + wl * zl
    order = sorted(range(6), key=lambda i: (-fused[i], i))
    assert out.positions.tolist() == order
    assert out.scores == pytest.approx(fused[order], abs=1e-12)
    assert out.details["weights"] == pytest.approx([wd, wl])
    assert wl > 0.8 and out.positions[0] == 3  # the list whose top stands out leads
    assert out.details["noise_max"] == pytest.approx(e6)
    assert out.details["lists"][0]["confidence"] == pytest.approx(cd)


def test_default_floor_keeps_two_flat_lists_equal():
    dense, lexical = L([1, 2], [0.5, 0.4]), L([2, 1], [2.0, 1.0])  # z_top = 1 < e(2): both floored
    out = Fusion().fuse([dense, lexical], k=2)
    assert out.details["weights"] == pytest.approx([0.5, 0.5])
    assert out.positions.tolist() == [1, 2] and out.scores == pytest.approx([0.0, 0.0], abs=1e-12)


def test_default_user_weights_scale_confidence():
    dense, lexical = L([0, 1, 2, 3], [4.0, 1.0, 1.0, 0.0]), L([1, 0, 2, 3], [4.0, 1.0, 1.0, 0.0])
    even = Fusion().fuse([dense, lexical], k=4)
    tilted = Fusion(weights=(3.0, 1.0)).fuse([dense, lexical], k=4)
    assert even.details["weights"] == pytest.approx([0.5, 0.5])
    assert tilted.details["weights"] == pytest.approx([0.75, 0.25])
    assert tilted.positions[0] == 0 and even.positions.tolist()[:2] == [0, 1]


def test_noise_max_matches_known_values():
    # Expected maxima of n standard normals: 0.564 (n=2), 1.163 (n=5), 2.508 (n=100) exactly;
    # Blom's approximation is within 0.05.
    assert noise_max(1) == 0.0
    for n, exact in ((2, 0.5642), (5, 1.1630), (100, 2.5076)):
        assert abs(noise_max(n) - exact) < 0.05


# ------------------------------------------------------------------------------- edge cases
@pytest.mark.parametrize("method", METHODS)
def test_one_list_empty_gives_the_other_order(method):
    dense = L([7, 3, 9, 1], [0.8, -0.1, -0.2, -0.5])
    for lists in ([dense, EMPTY], [EMPTY, dense]):
        out = Fusion(method).fuse(lists, k=10)
        assert out.positions.tolist() == [7, 3, 9, 1]
        assert np.all(np.diff(out.scores) <= 0) and np.isfinite(out.scores).all()
    assert out.details["candidates"] == [0, 4]


@pytest.mark.parametrize("method", METHODS)
def test_both_empty(method):
    out = Fusion(method).fuse([EMPTY, EMPTY], k=5)
    assert isinstance(out, FusedList)
    assert out.positions.dtype == np.int64 and out.positions.size == 0 and out.scores.size == 0


@pytest.mark.parametrize("method", METHODS)
def test_length_one_and_constant_lists(method):
    cases = [
        [L([4], [0.3]), L([8], [2.0])],                     # two singletons
        [L([4], [0.3]), L([4], [2.0])],                     # the same single document
        [L([1, 2, 3], [0.5, 0.5, 0.5]), L([3, 9], [1.0, 1.0])],  # constant scores
        [L([1, 2, 3], [0.5, 0.4, 0.3]), L([5], [1.0])],    # a one-hit lexical list
    ]
    for lists in cases:
        out = Fusion(method).fuse(lists, k=10)
        union = set(np.concatenate([p for p, _ in lists]).tolist())
        assert sorted(out.positions.tolist()) == sorted(union)
        assert np.isfinite(out.scores).all() and np.all(np.diff(out.scores) <= 0)


def test_constant_list_hits_outrank_its_misses():
    # Lexical ties 3 and 9; with the dense list flat too, its hits must come first.
    dense, lexical = L([1, 3, 9, 2], [0.5, 0.5, 0.5, 0.5]), L([3, 9], [1.0, 1.0])
    for method in ("default", "zscore", "minmax", "3sigma"):
        assert Fusion(method).fuse([dense, lexical], k=4).positions.tolist()[:2] == [3, 9]


def test_one_hit_lexical_list_is_taken_seriously():
    dense = L(np.arange(100), np.linspace(0.6, 0.3, 100))
    out = Fusion().fuse([dense, L([500], [3.2])], k=5)
    assert out.positions[0] == 500 and out.details["weights"][1] > 0.5


@pytest.mark.parametrize("method", METHODS)
def test_k_larger_than_union_and_k_cut(method):
    lists = [L([1, 2], [0.2, 0.1]), L([2, 3], [5.0, 1.0])]
    assert Fusion(method).fuse(lists, k=100).positions.size == 3
    assert Fusion(method).fuse(lists, k=1).positions.size == 1


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_and_extreme_scores(method):
    dense = L([1, 2, 3, 4], [np.nan, 0.7, -np.inf, -0.9])
    lexical = L([5, 2, 6], [1e300, np.inf, -1e300])
    out = Fusion(method).fuse([dense, lexical], k=10)
    assert sorted(out.positions.tolist()) == [2, 4, 5, 6]  # non-finite entries are not results
    assert np.isfinite(out.scores).all()
    assert out.details["candidates"] == [2, 2]


def test_repeated_position_keeps_the_first():
    out = Fusion("rrf").fuse([L([5, 6, 5], [0.9, 0.8, 0.7]), EMPTY], k=10)
    assert out.positions.tolist() == [5, 6] and out.scores == pytest.approx([1 / 61, 1 / 62])


def test_negative_cosines_keep_their_order():
    dense, lexical = L([2, 0, 1], [-0.1, -0.2, -0.9]), L([0, 2, 1], [3.0, 2.9, 0.1])
    for method in METHODS:
        out = Fusion(method).fuse([dense, lexical], k=3)
        assert out.positions[-1] == 1 and np.isfinite(out.scores).all()


# ----------------------------------------------------------------------------- determinism
def test_deterministic_and_tie_break_by_position():
    rng = np.random.default_rng(7)
    dense = L(rng.permutation(50)[:30], np.sort(rng.normal(size=30))[::-1])
    lexical = L(rng.permutation(50)[:20], np.sort(rng.gamma(2.0, size=20))[::-1])
    for method in METHODS:
        a, b = Fusion(method).fuse([dense, lexical], k=25), Fusion(method).fuse([dense, lexical], k=25)
        assert np.array_equal(a.positions, b.positions) and np.array_equal(a.scores, b.scores)
    # Equal fused scores: the lower position comes first, whatever the list order.
    assert Fusion("rrf").fuse([L([5], [1.0]), L([2], [1.0])], k=2).positions.tolist() == [2, 5]
    assert Fusion("rrf").fuse([L([2], [1.0]), L([5], [1.0])], k=2).positions.tolist() == [2, 5]


def test_default_is_symmetric_in_the_lists():
    rng = np.random.default_rng(3)
    a = L(rng.permutation(80)[:40], np.sort(rng.normal(size=40))[::-1])
    b = L(rng.permutation(80)[:30], np.sort(rng.exponential(size=30))[::-1])
    ab, ba = Fusion().fuse([a, b], k=30), Fusion().fuse([b, a], k=30)
    assert np.array_equal(ab.positions, ba.positions)
    assert ab.details["weights"] == pytest.approx(ba.details["weights"][::-1])


# -------------------------------------------------------------------------------- parse
def test_parse_accepts():
    assert Fusion.parse(None) == Fusion() and Fusion().method == "default"
    assert Fusion.parse("rrf") == Fusion(method="rrf")
    assert Fusion.parse({"method": "rrf", "k": 20}) == Fusion("rrf", k=20)
    assert Fusion.parse({"weights": [1, 2]}).weights == (1.0, 2.0)
    f = Fusion("zscore")
    assert Fusion.parse(f) is f


@pytest.mark.parametrize("spec", [
    "bm25", "", 3, ["rrf"], {"method": "nope"}, {"method": "rrf", "alpha": 1},
    {"k": 0}, {"k": True}, {"k": 2.5}, {"weights": (-1.0, 1.0)}, {"weights": (0, 0)},
    {"weights": (1.0, float("nan"))}, {"weights": "ab"},
])
def test_parse_rejects(spec):
    with pytest.raises(InvalidInputError, match="fusion"):
        Fusion.parse(spec)


def test_fuse_rejects_bad_arguments():
    lists = [L([1], [1.0]), L([2], [1.0])]
    with pytest.raises(InvalidInputError, match="weights"):
        Fusion(weights=(1.0, 1.0, 1.0)).fuse(lists, k=3)
    with pytest.raises(InvalidInputError, match="positive integer"):
        Fusion().fuse(lists, k=0)
    with pytest.raises(InvalidInputError, match="positions"):
        Fusion().fuse([(np.array([1, 2]), np.array([1.0])), EMPTY], k=3)


def _same_details(a, b) -> None:
    """Equal details, floats to 1e-12 (the C z-score fusion sums in another order than numpy)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _same_details(a[key], b[key])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same_details(x, y)
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-12)
    else:
        assert a == b


def _random_lists(rng: np.random.Generator, n_rows: int = 500) -> list[tuple[np.ndarray, np.ndarray]]:
    dense = (rng.choice(n_rows, 100, replace=False).astype(np.int64), np.sort(rng.random(100))[::-1].copy())
    pos = rng.choice(n_rows, int(rng.integers(0, 60)), replace=False).astype(np.int64)
    return [dense, (pos, np.sort(rng.gamma(2.0, 3.0, pos.size))[::-1].copy())]


@pytest.mark.parametrize("method", METHODS)
def test_checked_lists_skip_cleaning_with_the_same_answer(method):
    """fuse(checked=True), for a retriever's own output (unique positions, finite scores), equals fuse().

    For the z-score methods the checked path is the C pass (vecbox.query._fusion): the same
    positions, scores and details as the numpy path to 1e-12.
    """
    rng = np.random.default_rng(3)
    for _ in range(30):
        lists = _random_lists(rng)
        a = Fusion(method).fuse(lists, k=10)
        b = Fusion(method).fuse(lists, k=10, checked=True)
        assert a.positions.tolist() == b.positions.tolist()
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-12, atol=1e-12)
        _same_details(a.details, b.details)


@pytest.mark.parametrize("method", ["default", "zscore"])
def test_the_c_z_fusion_matches_numpy_on_edge_cases(method):
    """Membership-only and empty lists, one list, three lists, user weights, k above the union, huge scores."""
    from vecbox.query import fusion as fusion_module

    assert fusion_module._fusion is not None, "the C extension vecbox.query._fusion is not built"
    flat = (np.array([7, 3, 9], np.int64), np.array([2.0, 2.0, 2.0]))
    cases = [
        [DENSE_EX := (np.array([1, 2, 3, 4], np.int64), np.array([0.9, 0.5, 0.4, 0.1])), flat],
        [DENSE_EX, EMPTY],
        [EMPTY, flat],
        [DENSE_EX],
        [DENSE_EX, flat, (np.array([3, 11], np.int64), np.array([5.0, -1.0]))],
        [(np.array([1, 2], np.int64), np.array([1e300, -1e300])), (np.array([2, 5], np.int64), np.array([3.0, 2.0]))],
        [flat, (np.array([7, 3, 9], np.int64), np.array([1.0, 1.0, 1.0]))],  # every union member in both: sd 0
    ]
    for lists in cases:
        for weights in (None, tuple([2.0] + [1.0] * (len(lists) - 1)), tuple([0.0] * (len(lists) - 1) + [1.0])):
            fz = Fusion(method, weights=weights)
            for k in (1, 3, 50):
                a, b = fz.fuse(lists, k), fz.fuse(lists, k, checked=True)
                assert a.positions.tolist() == b.positions.tolist(), (lists, weights, k)
                np.testing.assert_allclose(a.scores, b.scores, rtol=1e-12, atol=1e-12)
                _same_details(a.details, b.details)
    big = _random_lists(np.random.default_rng(5), n_rows=100_000)
    big = [(np.arange(5000, dtype=np.int64) * 7, np.linspace(9.0, 1.0, 5000)), big[1]]  # a union past 4,096
    a, b = Fusion(method).fuse(big, 20), Fusion(method).fuse(big, 20, checked=True)
    assert a.positions.tolist() == b.positions.tolist() and b.details["union"] > 4096
