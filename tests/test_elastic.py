"""Elastic inference (2D Matryoshka): TextEncoder(model, layers=n, dims=d) on a tiny BERT built from a config.

References: the first n layers run by hand (an n-layer BertModel built from the config and
given the first n layers' weights, then masked mean pooling and L2 normalisation written out
here), the model's own hidden states, and slicing + renormalising the full vectors.
"""

from __future__ import annotations

import numpy as np
import pytest

from vecbox import Collection
from vecbox.encoders._model import model_ref, parse_model_ref
from vecbox.encoders.text import TextEncoder
from vecbox.encoders.tokens import TokenEncoder
from vecbox.errors import CollectionExistsError, DimensionMismatchError, InvalidInputError

torch = pytest.importorskip("torch")

TEXTS = ["read a csv file", "hash a string with sha256", "parse command line options and arguments",
         "protein expression in human cells", "a"]
LAYERS = 4  # of the tiny model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from vecbox.train.tiny import make_tiny_model

    return str(make_tiny_model(tmp_path_factory.mktemp("tiny") / "m", layers=LAYERS, hidden=32, seed=3))


@pytest.fixture(scope="module")
def full(tiny) -> TextEncoder:
    return TextEncoder(tiny)


def _features(st_model, texts):
    prep = getattr(st_model, "preprocess", None) or st_model.tokenize
    return prep(texts)


def _mean_pool_normalise(h: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    m = mask.unsqueeze(-1).float()
    pooled = (h * m).sum(1) / m.sum(1)
    return torch.nn.functional.normalize(pooled, dim=1).numpy()


def _first_layers_by_hand(full: TextEncoder, n: int, texts: list[str]) -> np.ndarray:
    """An n-layer BERT built from the full model's config, holding its embeddings and first n layers."""
    from transformers import BertModel

    bert = full.full_model[0].auto_model
    config = bert.config.__class__(**{**bert.config.to_dict(), "num_hidden_layers": n})
    small = BertModel(config, add_pooling_layer=False).eval()
    missing, unexpected = small.load_state_dict(bert.state_dict(), strict=False)
    assert not missing and all(k.startswith("pooler.") or int(k.split(".")[2]) >= n for k in unexpected)
    f = _features(full.full_model, texts)
    with torch.inference_mode():
        h = small(input_ids=f["input_ids"], attention_mask=f["attention_mask"],
                  token_type_ids=f.get("token_type_ids")).last_hidden_state
    return _mean_pool_normalise(h, f["attention_mask"])


@pytest.mark.parametrize("n", [1, 2, 3])
def test_layers_equal_the_first_n_layers_run_by_hand(full, tiny, n):
    enc = TextEncoder(tiny, layers=n)
    x = enc.encode(TEXTS)
    np.testing.assert_allclose(x, _first_layers_by_hand(full, n, TEXTS), atol=1e-5)
    # and the model's own hidden state after layer n, pooled by hand
    f = _features(full.full_model, TEXTS)
    with torch.inference_mode():
        hs = full.full_model[0].auto_model(input_ids=f["input_ids"], attention_mask=f["attention_mask"],
                                           token_type_ids=f["token_type_ids"], output_hidden_states=True).hidden_states
    np.testing.assert_allclose(x, _mean_pool_normalise(hs[n], f["attention_mask"]), atol=1e-5)
    assert not np.allclose(x, full.encode(TEXTS), atol=1e-3)  # an early exit is not the full model


def test_full_depth_is_the_model_itself(full, tiny):
    enc = TextEncoder(tiny, layers=LAYERS)
    assert enc.layers is None and enc.name == full.name
    np.testing.assert_array_equal(enc.encode(TEXTS), full.encode(TEXTS))


def test_the_view_shares_weights_and_leaves_the_full_model_whole(full, tiny):
    before = full.encode(TEXTS)
    enc = TextEncoder(tiny, layers=2)
    enc._model = full.full_model  # same loaded weights
    view, whole = enc.model, full.full_model
    assert len(view[0].auto_model.encoder.layer) == 2 and len(whole[0].auto_model.encoder.layer) == LAYERS
    a = view[0].auto_model.encoder.layer[1].attention.self.query.weight
    b = whole[0].auto_model.encoder.layer[1].attention.self.query.weight
    assert a is b  # shared, not copied
    assert enc.model is view  # built once per loaded model
    np.testing.assert_array_equal(full.encode(TEXTS), before)


def test_dims_equal_slicing_and_renormalising(full, tiny):
    for layers in (None, 2):
        ref = TextEncoder(tiny, layers=layers).encode(TEXTS)[:, :8]
        ref /= np.linalg.norm(ref, axis=1, keepdims=True)
        x = TextEncoder(tiny, layers=layers, dims=8).encode(TEXTS)
        assert x.shape == (len(TEXTS), 8)
        np.testing.assert_allclose(x, ref, atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert TextEncoder(tiny, dims=8).dim == 8 and TextEncoder(tiny, dims=32).dims is None


def test_token_encoder_layers_are_the_hidden_state_of_layer_n(full, tiny):
    tok = TokenEncoder(tiny, layers=2)
    x, offsets = tok.encode(TEXTS[:2])
    f = _features(full.full_model, TEXTS[:2])
    with torch.inference_mode():
        hs = full.full_model[0].auto_model(**{k: f[k] for k in ("input_ids", "attention_mask", "token_type_ids")},
                                           output_hidden_states=True).hidden_states[2]
    keep = f["attention_mask"].bool() & ~torch.isin(f["input_ids"], torch.tensor(tok.special_ids()))
    ref = torch.nn.functional.normalize(hs[keep], dim=1).numpy()
    np.testing.assert_allclose(x, ref, atol=1e-5)
    assert offsets.tolist() == [0, int(keep[0].sum()), int(keep.sum())]
    assert TextEncoder(tiny, layers=2, dims=8).token_encoder().layers == 2


def test_settings_are_part_of_the_name_and_round_trip(tiny, tmp_path):
    enc = TextEncoder(tiny, layers=2, dims=16)
    assert enc.name == f"{tiny}@layers=2,dims=16" == model_ref(tiny, 2, 16)
    assert parse_model_ref(enc.name) == (tiny, 2, 16)
    again = TextEncoder(enc.name)
    assert (again.layers, again.dims, again.name) == (2, 16, enc.name)
    assert TextEncoder(f"{tiny}@dims=16", layers=2).name == enc.name
    assert enc.fingerprint != TextEncoder(tiny, layers=3, dims=16).fingerprint != TextEncoder(tiny).fingerprint
    # a cache shared by two settings never hands one setting's vectors to the other
    a = TextEncoder(tiny, layers=1, cache_dir=tmp_path).encode(TEXTS)
    b = TextEncoder(tiny, cache_dir=tmp_path).encode(TEXTS)
    assert not np.allclose(a, b, atol=1e-3)


@pytest.mark.parametrize("kwargs, match", [
    ({"layers": 0}, "layers must be a positive"),
    ({"layers": 5}, "has 4 transformer layers; pick layers from 1 to 4"),
    ({"layers": 2.5}, "layers"),
    ({"dims": 0}, "dims must be a positive"),
    ({"dims": 33}, "gives 32-d vectors; pick dims from 1 to 32"),
])
def test_bad_settings_are_refused(tiny, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        TextEncoder(tiny, **kwargs)


def test_conflicting_settings_are_refused(tiny):
    with pytest.raises(InvalidInputError, match="says layers=2 but layers=3"):
        TextEncoder(f"{tiny}@layers=2", layers=3)
    with pytest.raises(InvalidInputError, match="says dims=8 but dims=16"):
        TextEncoder(f"{tiny}@dims=8", dims=16)
    with pytest.raises(InvalidInputError, match="token vectors"):
        TokenEncoder(f"{tiny}@dims=8")


def test_collection_records_the_setting_and_refuses_a_query_at_another(tiny, tmp_path):
    ref = f"{tiny}@layers=2,dims=16"
    col = Collection.create(tmp_path / "c", model=ref)
    assert (col.model, col.dim) == (ref, 16)
    col.add_texts(TEXTS, ids=[str(i) for i in range(len(TEXTS))])
    np.testing.assert_allclose(col.get(["0"])[0].vector, TextEncoder(tiny, layers=2, dims=16).encode(TEXTS[:1])[0],
                               atol=1e-6)
    reopened = Collection.open(tmp_path / "c")
    assert (reopened.encoder.layers, reopened.encoder.dims) == (2, 16)  # restored from the record
    assert reopened.search_text(TEXTS[3], k=1)[0].id == "3"
    reopened.close()
    for other, why in (({"layers": 3, "dims": 16}, "layers 3, not 2"), ({"layers": 2, "dims": 8}, "dims 8, not 16"),
                       ({}, "layers all, not 2")):
        handle = Collection(tmp_path / "c", encoder=TextEncoder(tiny, **other))
        with pytest.raises(InvalidInputError, match=why):
            handle.search_text(TEXTS[3])
        handle.close()
    with pytest.raises(CollectionExistsError, match="model="):
        Collection.create(tmp_path / "c", model=f"{tiny}@layers=3,dims=16", exist_ok=True)
    with pytest.raises(DimensionMismatchError):
        col.search(TextEncoder(tiny, layers=2).encode(TEXTS[:1])[0])  # full-width query, 16-d vectors
    col.close()


def test_beir_evaluation_takes_an_elastic_model_string(tiny, tmp_path):
    """``vecbox eval beir --model 'PATH@layers=1,dims=8'`` goes through evaluate_beir and TextEncoder(model)."""
    import json

    from vecbox.jobs.beir import evaluate_beir

    (tmp_path / "qrels").mkdir()
    docs = {"d1": "read a csv file", "d2": "hash a string with sha256", "d3": "sort a list"}
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": "", "text": t}) + "\n"
                                                   for i, t in docs.items()))
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "read a csv file"}) + "\n")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    report = evaluate_beir(tmp_path, ks=(1,), cache_dir=tmp_path / "cache", model=f"{tiny}@layers=1,dims=8")
    assert report.model == f"{tiny}@layers=1,dims=8" and report.metrics["ndcg@1"] == 1.0  # the query is d1's text
