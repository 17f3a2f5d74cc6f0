"""Two genuinely different embedding spaces that need nothing downloaded: LSA and an early-exit MiniLM."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from vecbox._optional import require
from vecbox.analysis._common import check_int
from vecbox.errors import InvalidInputError


def lsa_vectors(texts: Sequence[str], dim: int = 256, *, seed: int = 0) -> np.ndarray:
    """TF-IDF (sublinear tf, unigrams + bigrams) followed by truncated SVD: float32 ``(n, dim)``, L2-normalised.

    Latent semantic analysis - a purely lexical space, unlike a transformer's.
    """
    if isinstance(texts, str) or len(texts) < 2:
        raise InvalidInputError("lsa_vectors needs a list of at least 2 texts")
    text_mod = require("sklearn.feature_extraction.text", "analysis", "LSA vectors")
    decomp = require("sklearn.decomposition", "analysis", "LSA vectors")
    tfidf = text_mod.TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2).fit_transform(list(texts))
    dim = check_int(dim, "dim", 1, max(1, min(tfidf.shape) - 1))
    z = decomp.TruncatedSVD(n_components=dim, random_state=seed).fit_transform(tfidf)
    z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return z.astype(np.float32)


def truncated_encoder(layers: int = 3, model: str = "default") -> Any:
    """A copy of a sentence-transformers BERT-style model keeping only its first ``layers`` transformer layers.

    Pooling (mean for all-MiniLM-L6-v2) and normalisation stay as in the model,
    so ``truncated_encoder(3).encode(texts)`` embeds with an early exit after
    layer 3 - the "2D Matryoshka" view of depth. The original model is not changed.
    """
    from vecbox.encoders.text import TextEncoder

    full = TextEncoder(model).model
    auto = getattr(full[0], "auto_model", None)
    encoder = getattr(auto, "encoder", None)
    blocks = getattr(encoder, "layer", None)
    if blocks is None:
        raise InvalidInputError(f"model {model!r} has no encoder.layer list; truncation supports BERT-style models")
    layers = check_int(layers, "layers", 1, len(blocks))
    short = copy.deepcopy(full)
    short_auto = short[0].auto_model
    torch_nn = require("torch.nn", "text", "truncating a model")
    short_auto.encoder.layer = torch_nn.ModuleList(list(short_auto.encoder.layer)[:layers])
    short_auto.config.num_hidden_layers = layers
    return short
