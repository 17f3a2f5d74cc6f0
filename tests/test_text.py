"""The text encoder and text collections, checked against sentence-transformers itself (the bundled model)."""

from __future__ import annotations

import numpy as np
import pytest

from vecbox import Collection
from vecbox.encoders.text import DEFAULT_MODEL, TextEncoder, resolve_model
from vecbox.errors import InvalidInputError

TEXTS = [
    "csv.reader: Return a reader object which will iterate over lines in the given csvfile.",
    "hashlib.sha256: Returns a sha256 hash object; optionally initialized with a string",
    "argparse.ArgumentParser: Object for parsing command line strings into Python objects.",
    "a",
    "subprocess.run: Run command with arguments and return a CompletedProcess instance. " * 5,
]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


def test_default_model_is_the_bundled_one_and_matches_sentence_transformers(encoder):
    name, path = resolve_model("default")
    assert name == DEFAULT_MODEL and (path / "config.json").is_file()
    x = encoder.encode(TEXTS)
    assert x.shape == (5, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    # Reference: the model's own encode, one text at a time (no batching, no sorting).
    ref = np.stack([encoder.model.encode([t], normalize_embeddings=True)[0] for t in TEXTS])
    np.testing.assert_allclose(x, ref, atol=2e-5)


def test_length_sorted_batches_keep_input_order(encoder):
    small = TextEncoder(batch_size=2)
    small._model = encoder.model  # share the loaded weights
    np.testing.assert_allclose(small.encode(TEXTS), encoder.encode(TEXTS), atol=2e-5)


def test_prompts_are_prefixed_per_kind(encoder):
    enc = TextEncoder(query_prompt="query: ", document_prompt="passage: ")
    enc._model = encoder.model
    q = enc.encode(["read a csv file"], kind="query")
    d = enc.encode(["read a csv file"], kind="document")
    np.testing.assert_allclose(q, encoder.encode(["query: read a csv file"]), atol=2e-5)
    np.testing.assert_allclose(d, encoder.encode(["passage: read a csv file"]), atol=2e-5)


def test_disk_cache_returns_identical_vectors(encoder, tmp_path):
    enc = TextEncoder(cache_dir=tmp_path)
    enc._model = encoder.model
    first = enc.encode(TEXTS)
    assert (tmp_path / "embeddings.sqlite").is_file()

    class Boom:  # a second call must not touch the model
        def encode(self, *a, **k):
            raise AssertionError("cache miss")

    enc._model = Boom()
    np.testing.assert_array_equal(enc.encode(TEXTS), first)


def test_semantic_neighbours_make_sense(encoder):
    x = encoder.encode(TEXTS[:3])
    q = encoder.encode(["read a csv file", "compute a sha256 digest", "parse command line options"], kind="query")
    assert (q @ x.T).argmax(axis=1).tolist() == [0, 1, 2]


def test_encoder_input_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="never downloads"):
        TextEncoder(str(tmp_path / "no-such-model"))
    enc = TextEncoder()
    with pytest.raises(InvalidInputError, match="single string"):
        enc.encode("hello")
    with pytest.raises(InvalidInputError, match="texts\\[1\\]"):
        enc.encode(["ok", 3])
    with pytest.raises(InvalidInputError, match="kind"):
        enc.encode(["ok"], kind="passage")


def test_text_collection_round_trip(tmp_path, encoder):
    col = Collection.create(tmp_path / "c", model="default")
    assert (col.dim, col.model) == (384, DEFAULT_MODEL)
    col._encoder = encoder
    col.add_texts(TEXTS[:3], ids=["csv", "sha", "argparse"], metadatas=[{"m": "csv"}, {"m": "hashlib"}, {"m": "argparse"}])
    hits = col.search_text("parse command line options", k=3)
    assert hits[0].id == "argparse" and hits[0].document == TEXTS[2]
    assert [h.id for h in col.search_text("hash digest", k=1, where={"m": {"$ne": "hashlib"}})] != ["sha"]
    reopened = Collection.open(tmp_path / "c")
    assert reopened.search_text("read a csv file", k=1)[0].id == "csv"  # the model is remembered
    with pytest.raises(InvalidInputError, match="upsert=True"):
        col.add_texts(["again"], ids=["csv"])
    with pytest.raises(InvalidInputError, match="non-empty"):
        col.search_text("  ")


def test_vector_collection_refuses_text_with_a_clear_message(tmp_path):
    col = Collection.create(tmp_path / "c", dim=8)
    with pytest.raises(InvalidInputError, match="without a text model"):
        col.search_text("hello")


def test_elastic_layers_and_dims_on_the_bundled_model(encoder):
    """layers=3, dims=128 on MiniLM: its hidden state after layer 3, mean-pooled, first 128 dims, renormalised."""
    import torch

    enc = TextEncoder(layers=3, dims=128)
    enc._model = encoder.model  # share the loaded weights
    assert (enc.name, enc.dim) == (f"{DEFAULT_MODEL}@layers=3,dims=128", 128)
    x = enc.encode(TEXTS)
    f = encoder.model.preprocess(TEXTS) if hasattr(encoder.model, "preprocess") else encoder.model.tokenize(TEXTS)
    with torch.inference_mode():
        hs = encoder.model[0].auto_model(**{k: f[k] for k in ("input_ids", "attention_mask", "token_type_ids")},
                                         output_hidden_states=True).hidden_states[3]
    m = f["attention_mask"].unsqueeze(-1).float()
    ref = ((hs * m).sum(1) / m.sum(1)).numpy()[:, :128]
    np.testing.assert_allclose(x, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=2e-5)
    with pytest.raises(InvalidInputError, match="pick layers from 1 to 6"):
        TextEncoder(layers=7)
    with pytest.raises(InvalidInputError, match="pick dims from 1 to 384"):
        TextEncoder(dims=385)
