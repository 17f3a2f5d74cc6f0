"""Token encoder: one vector per token, for multi-vector (late-interaction) retrieval.

The output of a batch of texts is a *ragged* matrix in the layout vecbox uses for
multi-vector data everywhere (``vecbox.multivector``, collection segments):

- ``x``: float32 ``(N, d)``, the token vectors of every text, concatenated in input order;
- ``offsets``: int64 ``(n + 1,)``, text ``i`` owns rows ``x[offsets[i]:offsets[i + 1]]``.

Vectors are the last layer of the transformer (before pooling), L2-normalised (``normalize=True``);
padding and the special tokens the tokenizer adds ([CLS]/[SEP]/[PAD], <s>/</s>/<pad>)
are dropped, so a text of t word pieces yields t vectors (after truncation to the
model's ``max_seq_length``). [UNK] pieces stand for real input and are kept. An empty
text yields no vectors (``offsets[i] == offsets[i + 1]``).

A model with a *late-interaction head* (:mod:`vecbox.train.late`: a sentence-transformers ``Dense``
that reads ``token_embeddings``, listed in the directory's ``modules.json``) gets its token vectors
through the head: ``normalize(H @ W.T)`` instead of ``normalize(H)``, ``head_dim`` wide. The head is
found from the directory's files, without loading weights, so ``dim`` and the cache key are known
before the model is; the head's width and file are part of :attr:`TokenEncoder.fingerprint`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vecbox.encoders._model import DEFAULT_MODEL, SentenceModel, model_fingerprint
from vecbox.encoders.cache import TokenCache
from vecbox.errors import InvalidInputError

HEAD_INPUT = "token_embeddings"  # a Dense reading this key (not the pooled sentence_embedding) is a token head


def special_token_ids(tokenizer: Any) -> np.ndarray:
    """Token ids that carry no text: the tokenizer's CLS/SEP/PAD/BOS/EOS (not UNK, not MASK).

    Shared with :mod:`vecbox.train.late`, so training masks exactly the tokens encoding drops.

    >>> class Tok: cls_token_id, sep_token_id, pad_token_id = 101, 102, 0
    >>> special_token_ids(Tok()).tolist()
    [0, 101, 102]
    """
    ids = {getattr(tokenizer, f"{name}_token_id", None) for name in ("cls", "sep", "pad", "bos", "eos")}
    return np.array(sorted(i for i in ids if i is not None), dtype=np.int64)


def late_head(model_dir: Path) -> dict[str, Any] | None:
    """The late-interaction head of a sentence-transformers directory, read from its files (no weights
    loaded): ``{"index", "path", "in_features", "out_features", "output", ...}``, or ``None``.

    The head is the first module of ``modules.json`` whose type is a ``Dense`` (sentence-transformers'
    or PyLate's) and whose ``config.json`` reads ``token_embeddings``.

    >>> late_head(Path(tmp)) is None   # no modules.json: no head
    True
    """
    modules = Path(model_dir) / "modules.json"
    if not modules.is_file():
        return None
    for entry in json.loads(modules.read_text(encoding="utf-8")):
        if str(entry.get("type", "")).rsplit(".", 1)[-1] != "Dense":
            continue
        cfg_file = Path(model_dir) / entry.get("path", "") / "config.json"
        if not cfg_file.is_file():
            continue
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
        if cfg.get("module_input_name") == HEAD_INPUT:
            return {**cfg, "index": int(entry["idx"]), "path": entry.get("path", ""),
                    "output": cfg.get("module_output_name") or HEAD_INPUT}
    return None


class TokenEncoder(SentenceModel):
    """Encode texts into per-token vectors with a sentence-transformers model.

    Parameters
    ----------
    model : str
        ``"default"`` (bundled all-MiniLM-L6-v2) or a local sentence-transformers model directory.
        A directory with a late-interaction head (trained by ``vecbox train pairs --loss maxsim``)
        gives the head's vectors (128-d by default) instead of the transformer's states.
    batch_size : int
        Texts per forward pass (texts are length-sorted first, so padding is small).
    normalize : bool
        L2-normalise every token vector (the default; Chamfer/MaxSim then sums cosines).
    query_prompt, document_prompt : str
        Prefixes for instruction-tuned models; the prompt's tokens are part of the output.
    cache_dir : str or Path, optional
        Keep every text's token matrix on disk (``<cache_dir>/tokens.sqlite``), keyed by
        model fingerprint, prompt and text hash.
    device : str
        Torch device; ``"cpu"`` by default.
    layers : int, optional
        Token vectors of the first ``layers`` transformer layers instead of the last (elastic
        depth, as :class:`~vecbox.encoders.text.TextEncoder`'s ``layers``); part of :attr:`name`.

    Examples
    --------
    >>> enc = TokenEncoder()
    >>> x, offsets = enc.encode(["read a csv file", "hello"])   # read, a, cs, ##v, file | hello
    >>> x.shape, offsets.tolist()
    ((6, 384), [0, 5, 6])

    With a :class:`~vecbox.encoders.text.TextEncoder` at hand, ``text_encoder.token_encoder()``
    gives this encoder on the same weights.
    """

    def __init__(
        self,
        model: str = "default",
        *,
        batch_size: int = 32,
        normalize: bool = True,
        query_prompt: str = "",
        document_prompt: str = "",
        cache_dir: str | Path | None = None,
        device: str = "cpu",
        layers: int | None = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, normalize=normalize, query_prompt=query_prompt,
                         document_prompt=document_prompt, cache_dir=cache_dir, device=device, layers=layers)
        if self._dims_setting is not None:
            raise InvalidInputError(f"model {model!r} sets dims, which applies to pooled vectors; token vectors "
                                    "keep the transformer's width - drop the dims part")
        self.head = late_head(self.model_dir) if self.base_name != DEFAULT_MODEL else None

    # ------------------------------------------------------------------ model

    @property
    def dim(self) -> int:
        """Width of the token vectors: the late-interaction head's, else the transformer's hidden size."""
        if self._dim is None:
            if self.head is not None:
                self._dim = int(self.head["out_features"])  # known without loading the weights
            elif self.base_name == DEFAULT_MODEL:
                self._dim = 384
            else:
                self._dim = int(self.model[0].auto_model.config.hidden_size)
        return self._dim

    @property
    def fingerprint(self) -> str:
        """Identifies the model's weights and the token policy (the head included), for cache keys."""
        policy = "tokens:last-layer:l2:drop-special" if self.normalize else "tokens:last-layer:raw:drop-special"
        if self.head is not None:  # models without a head keep their old keys (and their caches)
            policy += f":head={self.head['path']}:{self.head['in_features']}->{self.head['out_features']}"
        return model_fingerprint(self.name, self.model_dir, policy)

    def special_ids(self) -> np.ndarray:
        """Token ids that are dropped: the tokenizer's CLS/SEP/PAD/BOS/EOS (not UNK, not MASK)."""
        return special_token_ids(self.model.tokenizer)

    # ------------------------------------------------------------------ encode
    def encode(
        self,
        texts: Sequence[str],
        kind: Literal["document", "query"] = "document",
        *,
        show_progress: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Encode texts into token vectors.

        Parameters
        ----------
        texts : list of str
        kind : {"document", "query"}
            Picks the prompt (``document_prompt`` or ``query_prompt``).
        show_progress : bool
            Show a progress bar.
        progress : callable, optional
            Called with the number of texts finished after each batch.

        Returns
        -------
        x : ndarray (N, dim) float32
            Unit-norm token vectors of all texts, concatenated in input order.
        offsets : ndarray (len(texts) + 1,) int64
            Text ``i`` owns ``x[offsets[i]:offsets[i + 1]]``.

        Raises
        ------
        InvalidInputError
            ``texts`` is a single string or holds a non-string, or ``kind`` is unknown.
        """
        texts, prompt = self._prepare(texts, kind)
        keys, hits = self._cached(texts, prompt, tokens=True)
        pieces: list[np.ndarray | None] = [hits.get(key) for key in keys] if keys else [None] * len(texts)
        todo = [i for i in range(len(texts)) if pieces[i] is None]
        special = self.special_ids() if todo else None

        def step(idx: list[int]) -> None:
            mats = self._forward([prompt + texts[i] for i in idx], special)  # type: ignore[arg-type]
            for i, mat in zip(idx, mats):
                pieces[i] = mat
            if keys:
                self._cache.put_many([keys[i] for i in idx], mats)  # type: ignore[union-attr]

        self._in_batches(texts, todo, step, show_progress=show_progress, progress=progress)
        counts = np.array([p.shape[0] for p in pieces], dtype=np.int64)  # type: ignore[union-attr]
        offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32), offsets
        x = np.concatenate(pieces, axis=0).astype(np.float32, copy=False)  # type: ignore[arg-type]
        return np.ascontiguousarray(x), offsets

    def _forward(self, batch: list[str], special: np.ndarray) -> list[np.ndarray]:
        """Token matrices (special tokens and padding dropped, rows unit-norm) of one batch."""
        import torch

        model = self.model
        prep = getattr(model, "preprocess", None) or model.tokenize  # sentence-transformers >= 6 / older
        features = prep(batch)
        features = {k: (v.to(model.device) if isinstance(v, torch.Tensor) else v) for k, v in features.items()}
        with torch.inference_mode():
            out = model[0](features)  # the transformer module: last hidden state, before pooling
            key = "token_embeddings"
            if self.head is not None:  # the late-interaction head: a per-token linear map of those states
                out = model[self.head["index"]](out)
                key = self.head["output"]
        emb = out[key].float().cpu().numpy()
        ids = features["input_ids"].cpu().numpy()
        keep = features["attention_mask"].cpu().numpy().astype(bool) & ~np.isin(ids, special)
        counts = keep.sum(axis=1)
        rows = emb[keep]  # (sum(counts), d), text by text
        if self.normalize:
            rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), np.float32(1e-12))
        bounds = np.concatenate([[0], np.cumsum(counts)])
        return [np.ascontiguousarray(rows[bounds[j] : bounds[j + 1]]) for j in range(len(batch))]

    def __repr__(self) -> str:
        head = "" if self.head is None else f", head={self.head['in_features']}->{self.head['out_features']}"
        return f"TokenEncoder({self.name!r}, batch_size={self.batch_size}, normalize={self.normalize}{head})"


__all__ = ["HEAD_INPUT", "TokenEncoder", "TokenCache", "late_head", "special_token_ids"]
