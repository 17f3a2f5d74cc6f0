"""Retrieval quality against published numbers: all-MiniLM-L6-v2 on SciFact (MTEB: nDCG@10 = 0.6451)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import shared_data
from vecbox.cli import app
from vecbox.errors import InvalidInputError
from vecbox.jobs.beir import evaluate_beir

TINY = Path(__file__).parent / "data" / "beir_tiny"


def test_evaluate_beir_on_a_tiny_hand_made_set(tmp_path):
    report = evaluate_beir(TINY, cache_dir=tmp_path)
    assert report.n_queries > 0 and report.n_docs > 0
    assert 0.0 <= report.metrics["ndcg@10"] <= 1.0
    # With a handful of documents every relevant one is inside the top 100.
    assert report.metrics["recall@100"] == pytest.approx(1.0)


def test_eval_beir_layers_and_dims_options_equal_the_elastic_model_string(tmp_path, monkeypatch):
    monkeypatch.setenv("VECBOX_CACHE_DIR", str(tmp_path))
    runner = CliRunner()
    by_flags = runner.invoke(app, ["eval", "beir", str(TINY), "--layers", "2", "--dims", "64", "--json"])
    by_name = runner.invoke(app, ["eval", "beir", str(TINY), "--model", "default@layers=2,dims=64", "--json"])
    full = runner.invoke(app, ["eval", "beir", str(TINY), "--json"])
    assert by_flags.exit_code == 0 and by_name.exit_code == 0 and full.exit_code == 0, by_flags.output
    a, b, c = (json.loads(r.output) for r in (by_flags, by_name, full))
    assert a["model"] == b["model"] and a["model"].endswith("@layers=2,dims=64") and "@" not in c["model"]
    assert a["metrics"] == b["metrics"]
    clash = runner.invoke(app, ["eval", "beir", str(TINY), "--model", "default@layers=3", "--layers", "2"])
    assert isinstance(clash.exception, InvalidInputError) and "disagrees" in str(clash.exception)


@pytest.mark.slow
def test_scifact_ndcg_at_10_matches_the_published_mteb_figure(tmp_path):
    scifact = shared_data("scifact")
    report = evaluate_beir(scifact, split="test")  # corpus embeddings cached in ~/.cache/vecbox
    assert (report.n_docs, report.n_queries) == (5183, 300)
    assert report.metrics["ndcg@10"] == pytest.approx(0.645, abs=0.005)
    # The CLI reports the same figure (the cache makes this second pass encode only the queries).
    out = CliRunner().invoke(app, ["eval", "beir", str(scifact), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["metrics"]["ndcg@10"] == pytest.approx(report.metrics["ndcg@10"], abs=1e-6)
