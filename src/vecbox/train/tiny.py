"""A tiny random BERT sentence-transformers model, built from a config (nothing downloaded).

For tests, doctests and trying :mod:`vecbox.train` in seconds: 4 layers of width 32 by
default, a word-level vocabulary of a few hundred entries, mean pooling, normalisation.
Its vectors mean nothing until it is trained.

>>> from vecbox.encoders.text import TextEncoder
>>> path = make_tiny_model(tmp + "/tiny")
>>> enc = TextEncoder(str(path))
>>> enc.encode(["read a csv file"]).shape
(1, 32)
"""

from __future__ import annotations

import os
from pathlib import Path

from vecbox._optional import require

_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_WORDS = """
a an the of to in on for with by from and or not is are was be it this that as at file files read write
open close csv json text string strings line lines number numbers list lists dict key keys value values
hash digest sha256 md5 parse parser command options argument arguments path directory run process time
date day sort search find match regular expression compress zip archive copy move delete network socket
http request server client url encode decode byte bytes data table row column query vector vectors model
cell cells protein gene genes disease patient patients drug drugs risk cancer blood study studies effect
increase decrease level levels high low treatment mice human expression function role response immune
""".split()
_PIECES = [*"abcdefghijklmnopqrstuvwxyz0123456789", *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"),
           *".,:;!?()[]-_/'\"=+*#@&%"]


def make_tiny_model(path: str | Path, *, layers: int = 4, hidden: int = 32, heads: int = 4, seed: int = 0,
                    max_seq_length: int = 64) -> Path:
    """Write a random ``layers``-layer BERT sentence-transformers model (mean pooling, normalised)
    to the directory ``path`` and return it; same arguments and seed = same weights."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is built here; nothing may be fetched
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    require("sentence_transformers", "text", "vecbox.train")
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import BertConfig, BertModel, BertTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    path = Path(path)
    raw = path / "_bert"
    raw.mkdir(parents=True, exist_ok=True)
    vocab = raw / "vocab.txt"
    vocab.write_text("\n".join(dict.fromkeys(_SPECIAL + _WORDS + _PIECES)) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(vocab), do_lower_case=True)  # vocab_file= is ignored by transformers 5
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=2 * hidden, max_position_embeddings=128)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    transformer = Transformer(str(raw), max_seq_length=max_seq_length)
    model = SentenceTransformer(modules=[transformer, Pooling(hidden, "mean"), Normalize()], device="cpu")
    model.save(str(path))
    for f in sorted(raw.iterdir()):
        f.unlink()
    raw.rmdir()
    return path


__all__ = ["make_tiny_model"]
