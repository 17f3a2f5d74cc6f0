"""The training loop on a tiny BERT: the model directory it writes, and resume after a kill -9 / a time budget
reproducing the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import asdict

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

from vecbox.errors import InvalidInputError  # noqa: E402
from vecbox.train.fit import TrainSettings, train  # noqa: E402
from vecbox.train.pairs import Pair, write_pairs  # noqa: E402

TEXTS = [("read a csv file", "csv reader of rows and lines"), ("hash a string", "sha256 digest of bytes"),
         ("sort a list", "sort numbers in a list"), ("open a socket", "network socket server"),
         ("parse json", "json text to a dict"), ("zip files", "compress files into an archive"),
         ("gene expression", "expression of genes in human cells"), ("drug risk", "risk of a drug for patients"),
         ("http request", "request a url from a server"), ("date and time", "time of day and date"),
         ("search a directory", "find files in a directory path"), ("copy a file", "copy and move files")]
PAIRS = [Pair(a, p) for a, p in TEXTS]
SETTINGS = TrainSettings(loss="2dmse", batch_size=4, epochs=2, checkpoint_every=2, lr=1e-3, seed=5,
                         dims=(16, 8), max_seq_length=32)  # 3 batches an epoch: 6 steps


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from vecbox.train.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("base") / "m", layers=2, hidden=16, seed=0)


@pytest.fixture(scope="module")
def uninterrupted(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "model"
    result = train(base, PAIRS, out, SETTINGS)
    assert result.finished and result.steps == 6 and result.resumed_from is None
    return out


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def _assert_same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_the_output_is_a_safetensors_model_directory_with_a_card(base, uninterrupted):
    from vecbox.encoders.text import TextEncoder

    files = {p.name for p in uninterrupted.rglob("*") if p.is_file()}
    assert {"model.safetensors", "modules.json", "README.md", "vecbox_train.json"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]
    assert not (uninterrupted / "checkpoints").exists()
    card = json.loads((uninterrupted / "vecbox_train.json").read_text())
    assert card["Training"]["loss"] == "2dmse" and card["Training"]["steps"] == 6
    assert TextEncoder(str(uninterrupted)).model.max_seq_length == TextEncoder(str(base)).model.max_seq_length == 64
    assert "2dmse" in (uninterrupted / "README.md").read_text()
    before, after = _weights(base), _weights(uninterrupted)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained
    x = TextEncoder(str(uninterrupted), layers=1, dims=8).encode(["read a csv file"])
    assert x.shape == (1, 8)
    from vecbox import Collection

    col = Collection.create(uninterrupted.parent / "col", model=f"{uninterrupted}@layers=1,dims=8")
    col.add_texts(["read a csv file", "sha256 digest"], ids=["a", "b"])
    assert col.dim == 8 and col.search_text("read a csv file", k=1)[0].id == "a"
    col.close()


def test_resume_after_kill_reproduces_the_uninterrupted_weights(base, uninterrupted, tmp_path):
    out = tmp_path / "model"
    pairs_file = write_pairs(PAIRS, tmp_path / "pairs.jsonl")
    script = textwrap.dedent(f"""
        import json, os, signal
        from vecbox.train.fit import TrainSettings, train
        from vecbox.train.pairs import read_pairs

        def progress(step, total, loss):
            if step == 5:  # after the step-4 checkpoint, in the middle of the run
                os.kill(os.getpid(), signal.SIGKILL)

        settings = TrainSettings(**{{k: tuple(v) if isinstance(v, list) else v
                                     for k, v in json.loads({json.dumps(json.dumps(asdict(SETTINGS)))}).items()}})
        train({str(base)!r}, read_pairs({str(pairs_file)!r}), {str(out)!r}, settings, progress=progress)
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-000004"]
    assert not (out / "model.safetensors").exists()
    result = train(base, PAIRS, out, SETTINGS)
    assert result.finished and result.resumed_from == 4 and result.steps == 6
    _assert_same_weights(out, uninterrupted)


def test_a_time_budget_stops_and_the_next_call_resumes(base, uninterrupted, tmp_path):
    out = tmp_path / "model"
    first = train(base, PAIRS, out, SETTINGS, max_minutes=0)  # stops after its first step
    assert not first.finished and first.steps == 1 and (out / "checkpoints" / "step-000001").is_dir()
    with pytest.raises(InvalidInputError, match="another run"):
        train(base, PAIRS, out, TrainSettings(**{**asdict(SETTINGS), "seed": 6}))
    second = train(base, PAIRS, out, SETTINGS)
    assert second.finished and second.resumed_from == 1
    assert second.losses[:1] == first.losses
    _assert_same_weights(out, uninterrupted)


def test_starbucks_with_hard_negatives_trains(base, tmp_path):
    pairs = [Pair(a, p, (TEXTS[(i + 3) % len(TEXTS)][1],)) for i, (a, p) in enumerate(TEXTS)]
    result = train(base, pairs, tmp_path / "sb", TrainSettings(loss="starbucks", batch_size=6, epochs=1,
                                                                ladder=((1, 8), (2, 16)), max_seq_length=32))
    assert result.finished and result.steps == 2 and np.all(np.isfinite(result.losses))
    card = json.loads((tmp_path / "sb" / "vecbox_train.json").read_text())
    assert card["Training"]["ladder"] == [[1, 8], [2, 16]] and card["Training"]["hard negatives per pair"] == 1


def test_training_again_in_place_changes_the_cache_key(base, tmp_path):
    """Same directory, same file sizes, new weights: cached vectors of the old weights must not be reused."""
    import shutil

    from vecbox.encoders.text import TextEncoder

    short = TrainSettings(loss="mnrl", batch_size=4, max_steps=1, max_seq_length=16)
    out = tmp_path / "m"
    train(base, PAIRS, out, short)
    first = TextEncoder(str(out), cache_dir=tmp_path / "cache")
    before, fp = first.encode(["read a csv file"]), first.fingerprint
    shutil.rmtree(out)
    train(base, PAIRS, out, TrainSettings(**{**asdict(short), "seed": 1}))
    again = TextEncoder(str(out), cache_dir=tmp_path / "cache")
    assert again.fingerprint != fp
    assert not np.allclose(again.encode(["read a csv file"]), before)


def test_bad_settings_are_refused(base, tmp_path):
    with pytest.raises(InvalidInputError, match="batch_size must be >= 2"):
        train(base, PAIRS, tmp_path / "x", TrainSettings(batch_size=1))
    with pytest.raises(InvalidInputError, match="loss must be one of"):
        train(base, PAIRS, tmp_path / "x", TrainSettings(loss="triplet"))
    with pytest.raises(InvalidInputError, match="no batch"):
        train(base, PAIRS[:1], tmp_path / "x", TrainSettings(batch_size=2))
