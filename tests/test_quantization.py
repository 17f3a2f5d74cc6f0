"""Quantization diagnostics: the OSP kurtosis definition, outlier dimensions, the readiness report, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from vecbox import Collection
from vecbox.analysis.quantization import (
    dimension_kurtosis,
    osp_kurtosis,
    outlier_dimensions,
    quantization_report,
    vector_kurtosis,
)
from vecbox.errors import InvalidInputError
from vecbox.io import collection_vectors


def test_vector_kurtosis_matches_the_osp_formula_by_hand():
    x = np.array([[1.0, -2.0, 3.0, 0.5]], dtype=np.float32)
    m4 = np.mean(x[0].astype(np.float64) ** 4)  # raw, uncentred fourth moment
    std = np.std(x[0].astype(np.float64), ddof=1)  # Bessel-corrected, centred
    assert vector_kurtosis(x)[0] == pytest.approx(m4 / std**4 - 3)


def test_vector_kurtosis_is_the_torch_expression_of_evaluate_kurtosis():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 384)).astype(np.float32) + 0.3
    x[:, 5] *= 25
    t = torch.from_numpy(x)
    k = (t.pow(4).mean(-1) / t.std(-1).pow(4) - 3).numpy()  # OSP evaluate_kurtosis.py, per token
    assert np.allclose(vector_kurtosis(x), k, rtol=1e-4)
    assert osp_kurtosis(x) == pytest.approx(float(torch.relu(torch.from_numpy(k)).mean()), rel=1e-4)


def test_kurtosis_of_gaussian_vectors_is_near_zero_and_of_one_spike_near_d(rng):
    g = rng.standard_normal((200, 1024))
    assert abs(float(np.mean(vector_kurtosis(g)))) < 0.2
    spike = np.zeros((1, 1024))
    spike[0, 3] = 1.0
    assert vector_kurtosis(spike)[0] == pytest.approx(1024 - 3)  # m4 = 1/d, std² = 1/d: k = d - 3


def test_dimension_kurtosis_matches_scipy(rng):
    x = rng.standard_t(5, size=(400, 12)).astype(np.float32)
    assert np.allclose(dimension_kurtosis(x), stats.kurtosis(x.astype(np.float64), axis=0, fisher=True, bias=True))
    x[:, 2] = 1.0
    assert dimension_kurtosis(x)[2] == 0.0


def test_outlier_dimensions_finds_planted_dimensions(rng):
    x = rng.standard_normal((1000, 128)).astype(np.float32)
    x[:, [17, 80]] *= [30, 60]
    assert outlier_dimensions(x).tolist() == [80, 17]
    assert outlier_dimensions(rng.standard_normal((1000, 128))).tolist() == []


def _outlier_set(rng, n=1200, d=128):
    centers = rng.standard_normal((30, d))
    x = centers[rng.integers(0, 30, n)] + 0.7 * rng.standard_normal((n, d))
    x[:, :3] = 30 * rng.standard_normal((n, 3))  # planted outlier dimensions
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_report_on_an_outlier_set_shows_rotation_helps_int4(rng):
    x = _outlier_set(rng)
    rep = quantization_report(x, codecs=("int8", "int4", "rot+int4"), sample=1000, queries=100, seed=1)
    assert rep.osp_kurtosis > 20
    assert set(rep.outlier_dimensions) == {0, 1, 2}
    est = {e.spec: e for e in rep.estimates}
    assert est["rot+int4"].recall >= est["int4"].recall + 0.10
    assert est["int8"].bytes_per_vector == 128 and est["int4"].compression == 8.0
    assert all(0 <= e.recall <= e.recall_rescored + 1e-9 <= 1 + 1e-9 for e in rep.estimates)


def test_report_recommends_the_smallest_codec_that_meets_the_target(rng):
    x = rng.standard_normal((900, 32)).astype(np.float32)
    rep = quantization_report(x, codecs=("int8", "int4", "binary"), sample=800, queries=50, target=0.95)
    ok = [e for e in rep.estimates if e.recall_rescored >= 0.95]
    assert rep.recommended == min(ok, key=lambda e: e.bytes_per_vector).spec
    assert rep.recommended in rep.reason
    strict = quantization_report(x, codecs=("binary",), sample=800, queries=50, target=1.01)
    assert strict.recommended == "binary" and "no codec reached" in strict.reason
    json.dumps(rep.as_dict())  # JSON-ready


def test_report_accepts_a_collection_and_uses_its_metric(tmp_path, rng):
    col = Collection.create(tmp_path / "c", dim=32, metric="dot")
    col.add([str(i) for i in range(400)], rng.standard_normal((400, 32)).astype(np.float32))
    rep = quantization_report(collection_vectors(col, limit=340)[1], metric=col.metric, codecs=("int8",),
                              sample=300, queries=40)
    assert rep.n_vectors == 340 and rep.sample == 300 and rep.estimates[0].recall > 0.8
    with pytest.raises(InvalidInputError, match="empty"):
        quantization_report(collection_vectors(Collection.create(tmp_path / "e", dim=4))[1], codecs=("int8",))


def test_report_rejects_tiny_inputs():
    with pytest.raises(InvalidInputError, match="at least"):
        quantization_report(np.ones((5, 8), np.float32))


def test_cli_analyze_quantization_json_and_table(tmp_path, rng, capsys):
    from vecbox.cli.codecs import analyze_quantization

    path = tmp_path / "c"
    col = Collection.create(path, dim=32)
    col.add([str(i) for i in range(300)], rng.standard_normal((300, 32)).astype(np.float32))
    col.close()
    analyze_quantization(path, sample=200, queries=30, as_json=True)
    out = json.loads(capsys.readouterr().out)
    assert out["recommended"] and {e["spec"] for e in out["estimates"]} >= {"int8", "rot+int4", "binary"}
    analyze_quantization(path, sample=200, queries=30)
    assert "recommended:" in capsys.readouterr().out
