"""Each training loss's value on one batch, against the same quantity worked out by hand in numpy.

The model is a tiny random BERT (4 layers, 32-d) built from a config; the hand computation starts
from its hidden states (``output_hidden_states``), pools and normalises them itself, and writes
MNRL, Matryoshka, 2D Matryoshka and Starbucks out term by term.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

from vecbox.errors import InvalidInputError  # noqa: E402
from vecbox.train.losses import StarbucksLoss, default_ladder, make_loss  # noqa: E402

ANCHORS = ["read a csv file", "hash a string with sha256", "protein expression in human cells"]
POSITIVES = ["csv reader for lines of a file", "sha256 digest of bytes", "gene expression of cancer cells"]
SCALE = 20.0
T = 0.3


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from sentence_transformers import SentenceTransformer

    from vecbox.train.tiny import make_tiny_model

    path = make_tiny_model(tmp_path_factory.mktemp("tiny") / "m", layers=4, hidden=32, seed=7)
    return SentenceTransformer(str(path), device="cpu", local_files_only=True).eval()  # eval: no dropout


def _features(model, texts):
    prep = getattr(model, "preprocess", None) or model.tokenize
    return prep(texts)


@pytest.fixture(scope="module")
def batch(model):
    return [_features(model, ANCHORS), _features(model, POSITIVES)]


@pytest.fixture(scope="module")
def layers(model, batch):
    """E[l] = (anchors, positives) sentence embeddings after l layers, pooled and normalised by hand (float64)."""
    out = {}
    per_col = []
    for f in batch:
        with torch.no_grad():
            hs = model[0].auto_model(input_ids=f["input_ids"], attention_mask=f["attention_mask"],
                                     token_type_ids=f["token_type_ids"], output_hidden_states=True).hidden_states
        m = f["attention_mask"].numpy().astype(np.float64)[:, :, None]
        per_col.append([(h.numpy().astype(np.float64) * m).sum(1) / m.sum(1) for h in hs])
    for layer in range(5):
        a, p = per_col[0][layer], per_col[1][layer]
        out[layer] = (_unit(a), _unit(p))
    return out


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _lse(x, axis=1):
    m = x.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def mnrl(a, p):
    s = SCALE * _unit(a) @ _unit(p).T
    return float(np.mean(_lse(s) - np.diag(s)))


def kl_batchmean(layer_logits, final_logits):
    """F.kl_div(log_softmax(layer), softmax(final), 'batchmean') = sum q (log q - log p) / rows."""
    logp = layer_logits - _lse(layer_logits)[:, None]
    logq = final_logits - _lse(final_logits)[:, None]
    return float((np.exp(logq) * (logq - logp)).sum() / layer_logits.shape[0])


def _value(loss, batch):
    with torch.no_grad():
        return float(loss(batch, None))


def test_mnrl_is_in_batch_softmax_cross_entropy(model, batch, layers):
    a, p = layers[4]
    assert _value(make_loss("mnrl", model), batch) == pytest.approx(mnrl(a, p), rel=1e-5)


def test_matryoshka_sums_mnrl_over_truncated_renormalised_widths(model, batch, layers):
    a, p = layers[4]
    dims = (32, 16, 8)
    ref = sum(mnrl(a[:, :d], p[:, :d]) for d in dims)
    assert _value(make_loss("matryoshka", model, dims=dims), batch) == pytest.approx(ref, rel=1e-5)


def test_2dmse_adds_every_prior_layer_and_the_kl_term(model, batch, layers):
    dims = (32, 8)
    loss = make_loss("2dmse", model, dims=dims, kl_temperature=T)
    loss.n_layers_per_step, loss.loss.n_dims_per_step = -1, -1  # every layer and width: no random draw

    def mat(layer):
        a, p = layers[layer]
        return sum(mnrl(a[:, :d], p[:, :d]) for d in dims)

    final = np.concatenate(layers[4]) / T
    ref = mat(4)
    for layer in range(4):  # hidden states 0 (embeddings) .. 3: uniform weights, averaged, plus KL * T
        ref += mat(layer) / 4 + kl_batchmean(np.concatenate(layers[layer]) / T, final) * T
    assert _value(loss, batch) == pytest.approx(ref, rel=1e-5)


def test_starbucks_is_every_ladder_pair_every_step_plus_kl_to_the_full_model(model, batch, layers):
    ladder = ((1, 8), (2, 16), (3, 16), (4, 32))
    loss = make_loss("starbucks", model, ladder=ladder, kl_temperature=T)
    assert isinstance(loss, StarbucksLoss) and loss.ladder == ladder
    final = np.concatenate(layers[4])
    ref = mnrl(*layers[4])  # (4, 32) is the full model: counted once, weight 1
    for layer, d in ladder[:-1]:
        a, p = layers[layer]
        ref += mnrl(a[:, :d], p[:, :d])
        ref += T * kl_batchmean(np.concatenate(layers[layer])[:, :d], final[:, :d])  # no division by T
    assert _value(loss, batch) == pytest.approx(ref, rel=1e-5)
    # without the KL term: the ladder's MNRL terms alone
    plain = make_loss("starbucks", model, ladder=ladder, kl_temperature=0)
    assert _value(plain, batch) == pytest.approx(
        mnrl(*layers[4]) + sum(mnrl(layers[l][0][:, :d], layers[l][1][:, :d]) for l, d in ladder[:-1]), rel=1e-5)


def test_starbucks_gradients_reach_the_early_layers(model, batch):
    loss = make_loss("starbucks", model, ladder=((1, 8), (4, 32)))
    model.zero_grad()
    loss(batch, None).backward()
    g = model[0].auto_model.encoder.layer[0].attention.self.query.weight.grad
    assert g is not None and float(g.abs().sum()) > 0
    model.zero_grad()


def test_default_ladder_and_bad_settings(model):
    assert default_ladder(6, 384) == ((1, 32), (2, 64), (3, 128), (4, 256), (5, 384), (6, 384))
    assert make_loss("starbucks", model).ladder == ((1, 32), (2, 32), (3, 32), (4, 32))
    with pytest.raises(InvalidInputError, match="outside this model"):
        make_loss("starbucks", model, ladder=((5, 8),))
    with pytest.raises(InvalidInputError, match="loss must be one of"):
        make_loss("triplet", model)
    with pytest.raises(InvalidInputError, match="dims must be widths"):
        make_loss("matryoshka", model, dims=(64,))


def test_the_tiny_model_tokenizes_words_of_its_vocabulary(model):
    # transformers 5 ignores BertTokenizerFast(vocab_file=...): every word became [UNK] and the tiny
    # models saw inputs that differed only in length
    tok = model.tokenizer
    assert tok.vocab_size > 200
    assert tok.tokenize("read a csv file") == ["read", "a", "csv", "file"]
    assert tok.unk_token not in tok.tokenize("hash the protein vectors")
