"""The late-interaction head: MaxSim loss against a hand computation, training through ``train()``, the
saved directory, ``TokenEncoder`` applying the head (numpy reference), a multi-vector collection on it,
and ``vecbox train pairs --loss maxsim``.

The tiny BERT is built here from a config with a word-level vocabulary of whole words, so texts that
share words share tokens (the lexical overlap the training test is about). Torch runs one thread: the
machine is shared, and these models are far too small to gain from a second.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

from vecbox.encoders.tokens import TokenEncoder, late_head  # noqa: E402
from vecbox.errors import InvalidInputError  # noqa: E402
from vecbox.train.fit import TrainSettings, train  # noqa: E402
from vecbox.train.late import HEAD_OUTPUT, attach_head, find_head, maxsim  # noqa: E402
from vecbox.train.losses import make_loss  # noqa: E402
from vecbox.train.pairs import Pair, write_pairs  # noqa: E402

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TOPICS = "csv json hash sha256 socket http gene protein drug cancer patient blood zip archive sort date".split()
FILLER = "the a of to in is by from data file read value".split()
HIDDEN = 32
SCALE = 20.0

# Lexical overlap decides relevance: query i shares its topic word TOPICS[i] with its positive and with no
# other document. Half the positives are two words; the other half repeat the queries' filler ("the ... of
# a file"), so an untrained model's MaxSim prefers those for the short positives' queries too (4 exact
# filler matches beat 1 topic match). Training has to learn that the topic word decides.
TOY = [Pair(f"the {w} of a file", f"{w} data" if i % 2 == 0 else f"the {w} of a file is read from the value")
       for i, w in enumerate(TOPICS)]
TOY_SETTINGS = TrainSettings(loss="maxsim", batch_size=8, max_steps=64, lr=1e-3, max_seq_length=32, seed=0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_bert(path: Path, *, layers: int = 2, hidden: int = HIDDEN, seed: int = 0) -> Path:
    """A random BERT sentence-transformers model (mean pooling, normalised) with a whole-word vocabulary."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import BertConfig, BertModel, BertTokenizerFast

    raw = path.parent / f"{path.name}-raw"
    vocab = {w: i for i, w in enumerate(dict.fromkeys(SPECIAL + TOPICS + FILLER))}
    tok = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    assert tok.tokenize("Read the CSV file") == ["read", "the", "csv", "file"]  # words, not [UNK]
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=2 * hidden, max_position_embeddings=64)
    BertModel(config).save_pretrained(raw)
    tok.save_pretrained(raw)
    modules = [Transformer(str(raw), max_seq_length=32), Pooling(hidden, "mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(path))
    shutil.rmtree(raw)
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("base") / "m")


@pytest.fixture(scope="module")
def trained(base, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("late") / "model"
    result = train(base, TOY, out, TOY_SETTINGS, data="toy topic pairs")
    assert result.finished and result.steps == 64 and np.all(np.isfinite(result.losses))
    return out


def _st(path: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu", local_files_only=True).eval()  # eval: no dropout


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _lse(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))[:, 0]


def hand_maxsim(q: list[np.ndarray], d: list[np.ndarray]) -> np.ndarray:
    """S[i, j] = sum over the rows of q[i] of the max over the rows of d[j] of the dot product, in loops."""
    out = np.zeros((len(q), len(d)))
    for i, qi in enumerate(q):
        for j, dj in enumerate(d):
            out[i, j] = sum(max(float(a @ b) for b in dj) for a in qi) if len(dj) else 0.0
    return out


# ------------------------------------------------------------------ the loss
def test_maxsim_on_a_hand_worked_example():
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]])  # the third query token is padding
    d = torch.tensor([[[0.6, 0.8], [1.0, 0.0]], [[0.0, 1.0], [9.0, 9.0]], [[5.0, 5.0], [5.0, 5.0]]])
    q_mask = torch.tensor([[True, True, False]])
    d_mask = torch.tensor([[True, True], [True, False], [False, False]])  # doc 2 has no tokens
    # doc 0: max(0.6, 1) + max(0.8, 0) = 1.8; doc 1 (its [9, 9] masked): 0 + 1 = 1; doc 2: nothing, 0
    np.testing.assert_allclose(maxsim(q, q_mask, d, d_mask).numpy(), [[1.8, 1.0, 0.0]], atol=1e-6)


def test_maxsim_loss_equals_a_hand_computation(base):
    """Queries of different lengths (padding), a hard-negative column, specials masked: numpy from the
    Hugging Face model's last hidden state and the head's matrix, term by term."""
    model = _st(base)
    loss = make_loss("maxsim", model, head_dim=8, scale=SCALE)
    assert [type(m).__name__ for m in model] == ["Transformer", "Dense", "Pooling", "Normalize"]
    columns = [["the csv of a file", "hash", "read the gene data from a file"],
               ["csv data", "the hash of a value", "gene file"],
               ["json data from the file", "sha256 value", "protein of a drug"]]
    prep = getattr(model, "preprocess", None) or model.tokenize
    features = [prep(c) for c in columns]
    with torch.no_grad():
        value = float(loss(features, None))

    tok = model.tokenizer
    special = {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id}
    w = loss.head.linear.weight.detach().numpy().astype(np.float64)  # (8, HIDDEN)
    hf = model[0].auto_model
    sets = []
    for texts in columns:
        col = []
        for text in texts:  # one text at a time: no padding at all
            enc = tok([text], return_tensors="pt")
            with torch.no_grad():
                h = hf(**enc).last_hidden_state[0].numpy().astype(np.float64)
            keep = [i for i, t in enumerate(enc["input_ids"][0].tolist()) if t not in special]
            col.append(_unit(h[keep] @ w.T))
        sets.append(col)
    s = np.concatenate([hand_maxsim(sets[0], sets[1]), hand_maxsim(sets[0], sets[2])], axis=1)  # (3, 6)
    n = np.array([len(x) for x in sets[0]], dtype=np.float64)
    assert n.tolist() == [5, 1, 7]
    logits = SCALE * s / n[:, None]
    ref = float(np.mean(_lse(logits) - logits[np.arange(3), np.arange(3)]))
    assert value == pytest.approx(ref, rel=1e-5)

    model.zero_grad()
    loss(features, None).backward()  # gradients reach the head and the first transformer layer
    for g in (loss.head.linear.weight.grad, hf.encoder.layer[0].attention.self.query.weight.grad):
        assert g is not None and float(g.abs().sum()) > 0
    model.zero_grad()


def test_the_head_is_attached_once_orthogonal_and_checked(base):
    model = _st(base)
    head = attach_head(model, 128, seed=3)
    assert attach_head(model, 128) is head and len(model) == 4 and find_head(model) == (1, head)
    w = head.linear.weight.detach().numpy().astype(np.float64)  # (128, 32): orthonormal columns, an isometry
    np.testing.assert_allclose(w.T @ w, np.eye(HIDDEN), atol=1e-5)
    assert head.linear.bias is None and head.module_output_name == HEAD_OUTPUT
    assert model.get_embedding_dimension() == HIDDEN  # the pooled output is untouched
    with pytest.raises(InvalidInputError, match="already has a 128-d"):
        attach_head(model, 64)
    with pytest.raises(InvalidInputError, match="head_dim must be a positive integer"):
        attach_head(_st(base), 0)
    with pytest.raises(InvalidInputError, match="head_dim must be a positive integer"):
        TrainSettings(loss="maxsim", head_dim=0).check()


# ------------------------------------------------------------------ training and the saved directory
def _accuracy(enc: TokenEncoder) -> tuple[float, float]:
    """(top-1, pairwise) MaxSim ranking accuracy of each toy query's positive over the other positives."""
    q, qo = enc.encode([p.anchor for p in TOY], kind="query")
    d, do = enc.encode([p.positive for p in TOY])
    s = hand_maxsim([q[qo[i] : qo[i + 1]] for i in range(len(TOY))], [d[do[j] : do[j + 1]] for j in range(len(TOY))])
    off = ~np.eye(len(TOY), dtype=bool)
    return float(np.mean(s.argmax(axis=1) == np.arange(len(TOY)))), float((np.diag(s)[:, None] > s)[off].mean())


def test_maxsim_training_raises_ranking_accuracy(base, trained):
    """Before: the base model's tokens (what the untrained head gives: it starts as an isometry)."""
    top1_before, pair_before = _accuracy(TokenEncoder(str(base)))
    top1_after, pair_after = _accuracy(TokenEncoder(str(trained)))
    assert pair_before < 0.7 and top1_before <= 0.5  # the filler-heavy documents fool untrained MaxSim
    assert pair_after >= pair_before + 0.2 and top1_after >= top1_before + 0.3


def test_the_output_is_a_sentence_transformers_directory_with_head_and_card(base, trained):
    from vecbox.encoders.text import TextEncoder

    files = {p.relative_to(trained).as_posix() for p in trained.rglob("*") if p.is_file()}
    assert {"model.safetensors", "modules.json", "1_Dense/model.safetensors", "1_Dense/config.json", "README.md",
            "vecbox_train.json"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]
    modules = json.loads((trained / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Dense", "Pooling", "Normalize"]
    head_cfg = json.loads((trained / "1_Dense" / "config.json").read_text())
    assert head_cfg == {"in_features": HIDDEN, "out_features": 128, "bias": False,
                        "activation_function": "torch.nn.modules.linear.Identity",
                        "module_input_name": "token_embeddings", "module_output_name": HEAD_OUTPUT}
    card = json.loads((trained / "vecbox_train.json").read_text())
    assert card["Training"]["loss"] == "maxsim" and card["Training"]["head_dim"] == 128
    assert "1_Dense" in card["Late-interaction head"]["module"] and "TokenEncoder" in card["Use"]
    assert set(card["weights"]) == {"model.safetensors", "1_Dense/model.safetensors"}
    assert "maxsim" in (trained / "README.md").read_text()
    # plain sentence-transformers reloads it offline; its pooled output keeps the transformer's width
    st = _st(trained)
    assert st.encode(["read the csv file"]).shape == (1, HIDDEN) and TextEncoder(str(trained)).dim == HIDDEN
    from safetensors.numpy import load_file

    before, after = load_file(str(base / "model.safetensors")), load_file(str(trained / "model.safetensors"))
    assert any(not np.array_equal(before[k], after[k]) for k in before)  # the transformer trained too


def test_a_stopped_maxsim_run_resumes_to_the_same_weights_head_included(base, tmp_path):
    from dataclasses import replace

    from safetensors.numpy import load_file

    settings = replace(TOY_SETTINGS, max_steps=4)
    train(base, TOY, tmp_path / "full", settings)
    first = train(base, TOY, tmp_path / "cut", settings, max_minutes=0)  # stops after step 1, checkpointed
    assert not first.finished and (tmp_path / "cut" / "checkpoints" / "step-000001").is_dir()
    second = train(base, TOY, tmp_path / "cut", settings)
    assert second.finished and second.resumed_from == 1
    for name in ("model.safetensors", "1_Dense/model.safetensors"):
        a, b = load_file(str(tmp_path / "full" / name)), load_file(str(tmp_path / "cut" / name))
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), name


def test_other_losses_keep_their_checkpoint_fingerprint():
    """head_dim joined TrainSettings later: runs of the other losses must resume from older checkpoints."""
    from vecbox.train.fit import _recipe

    mnrl = TrainSettings(loss="mnrl")
    assert "head_dim" not in _recipe(mnrl) and set(asdict(mnrl)) - set(_recipe(mnrl)) == {"head_dim"}
    assert _recipe(TrainSettings(loss="maxsim", head_dim=64))["head_dim"] == 64


# ------------------------------------------------------------------ the encoder and a collection
TEXTS = ["read the csv file", "", "the gene of a protein is read from the blood data", "zip"]


def test_token_encoder_applies_the_saved_head(trained, tmp_path):
    """Token vectors = normalize(H @ W.T): H from the Hugging Face model (specials cut), W from the
    head's safetensors file, one text at a time (no padding)."""
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer, BertModel

    enc = TokenEncoder(str(trained), batch_size=2)
    assert enc.dim == 128 and late_head(trained)["out_features"] == 128 and "head=32->128" in repr(enc)
    x, offsets = enc.encode(TEXTS)
    assert x.shape == (offsets[-1], 128) and np.diff(offsets).tolist() == [4, 0, 11, 1]
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    w = load_file(str(trained / "1_Dense" / "model.safetensors"))["linear.weight"].astype(np.float64)
    tok = AutoTokenizer.from_pretrained(str(trained))
    hf = BertModel.from_pretrained(str(trained)).eval()
    shallow = TokenEncoder(str(trained), layers=1)  # elastic depth: the head reads layer 1's states
    xs, offs = shallow.encode(TEXTS)
    for i, text in enumerate(TEXTS):
        if not text:
            continue
        with torch.no_grad():
            hs = hf(**tok([text], return_tensors="pt"), output_hidden_states=True).hidden_states
        for states, got, off in ((hs[-1], x, offsets), (hs[1], xs, offs)):
            ref = _unit(states[0, 1:-1].numpy().astype(np.float64) @ w.T)
            np.testing.assert_allclose(got[off[i] : off[i + 1]], ref, atol=1e-5)
    # the head is part of the cache key: the same directory without its head must not share cached vectors
    bare = tmp_path / "bare"
    shutil.copytree(trained, bare)
    headed_fp = TokenEncoder(str(bare)).fingerprint
    mods = json.loads((bare / "modules.json").read_text())
    (bare / "modules.json").write_text(json.dumps([m for m in mods if not m["type"].endswith("Dense")]))
    plain = TokenEncoder(str(bare))
    assert plain.head is None and plain.dim == HIDDEN and plain.fingerprint != headed_fp
    # with a cache: the second encoder is served from it, without loading the model
    first = TokenEncoder(str(trained), cache_dir=tmp_path / "cache")
    first.encode(TEXTS)
    again = TokenEncoder(str(trained), cache_dir=tmp_path / "cache")
    x2, o2 = again.encode(TEXTS)
    assert again._model is None and again.dim == 128
    np.testing.assert_array_equal(o2, offsets)
    np.testing.assert_allclose(x2, x, atol=1e-6)


def test_a_multivector_collection_on_the_trained_head(trained, tmp_path):
    """Ingest through the collection's model, search: equal to brute-force Chamfer over the encoder's tokens."""
    from vecbox import Collection
    from vecbox.multivector import FDEConfig

    docs = [p.positive for p in TOY]
    col = Collection.create(tmp_path / "c", model=str(trained), multivector=FDEConfig(10, 3, 16, seed=1))
    # token_dim is taken from the model's token encoder: the head's 128, not the pooled width
    col.add_texts(docs, ids=[str(i) for i in range(len(docs))])
    assert col.count() == len(docs) and col.info()["multivector"]["token_dim"] == 128
    enc = TokenEncoder(str(trained))
    d, do = enc.encode(docs)
    q, qo = enc.encode([TOY[0].anchor, TOY[3].anchor], kind="query")
    ref = hand_maxsim([q[qo[i] : qo[i + 1]] for i in range(2)], [d[do[j] : do[j + 1]] for j in range(len(docs))])
    hits = col.search_multi((q, qo), k=5, candidates=len(docs))
    for i in range(2):
        order = np.argsort(-ref[i], kind="stable")[:5]
        assert [h.id for h in hits[i]] == [str(j) for j in order]
        np.testing.assert_allclose([h.score for h in hits[i]], ref[i][order], atol=1e-4)
    top = col.search_text(TOY[0].anchor, k=1)
    assert top[0].id == hits[0][0].id
    col.close()


# ------------------------------------------------------------------ the command line
def test_cli_train_pairs_with_loss_maxsim(base, tmp_path):
    from typer.testing import CliRunner

    from vecbox.cli import app

    data = write_pairs(TOY[:8], tmp_path / "pairs.jsonl")
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["train", "pairs", str(data), "--model", str(base), "--out", str(out),
                                      "--loss", "maxsim", "--head-dim", "16", "--batch-size", "4",
                                      "--max-seq-length", "32", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["finished"] and summary["steps"] == 2
    assert TokenEncoder(str(out)).dim == 16 and late_head(out)["in_features"] == HIDDEN
    help_text = CliRunner().invoke(app, ["train", "pairs", "--help"]).output
    assert "maxsim" in help_text and "--head-dim" in help_text
