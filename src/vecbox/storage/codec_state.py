"""A collection handle's compression codec, kept in step with the catalog.

With a codec, a collection keeps codes in RAM instead of float vectors. What
defines the codec lives in two places on disk: the catalog's ``codec`` config
(``{spec, keep_float, seed, dir}``, committed like any other change; a frozen
:class:`CodecConfig` in memory) and the
fitted codec itself under ``codecs/codec-<uuid>/`` (written before the commit
that names it). :class:`CodecState` is one handle's view of both - the config,
the loaded codec and the catalog epoch it was read at - plus the bookkeeping
around them: following codec changes other processes commit, fitting the codec
on the first batch or for a recompress, saving it, discarding a directory whose
commit failed, and reading float vectors back (stored floats, or decoded codes).

It takes no locks and opens no transactions: the collection holds the write lock
and its state lock around every call, as before this was split out of it.
"""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from pathlib import Path
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from vecbox.codecs import Codec, CodecSpec, load_codec, make_codec, parse_spec
from vecbox.errors import InvalidInputError
from vecbox.storage import catalog
from vecbox.storage.live import LiveVectors
from vecbox.storage.segments import CODEC_DIR

FIT_ROWS = 100_000  # recompress fits the new codec on at most this many live vectors (seeded sample)


@dataclass(frozen=True)
class CodecConfig:
    """A collection's codec settings, as committed in the catalog's ``codec`` config (parsed once).

    ``dir`` is the fitted codec's directory (relative to the collection), ``None`` until the
    codec is fitted on the first batch written.

    >>> cfg = CodecConfig.from_options("PCA+f32", dim=8, keep_float=True, seed=0)
    >>> cfg.spec, cfg.code_size(8), cfg.variance_ordered_floats
    ('pca+f32', 32, True)
    >>> CodecConfig.from_json(cfg.to_json()) == cfg
    True
    """

    spec: str
    keep_float: bool = True
    seed: int = 0
    dir: str | None = None
    parsed: CodecSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parsed", parse_spec(self.spec))

    @classmethod
    def from_options(cls, codec: Any, dim: int, keep_float: Any, seed: Any) -> "CodecConfig | None":
        """Validate user options (the spec must fit ``dim``); ``None`` for plain float32 vectors."""
        if not isinstance(keep_float, bool):
            raise InvalidInputError(f"keep_float must be True or False; got {keep_float!r}")
        if codec is None:
            if not keep_float:
                raise InvalidInputError("keep_float=False needs a codec (the codes are then the only copy); give codec=")
            return None
        spec = make_codec(codec, dim, seed=seed).spec  # SpecError / bad seed raise here, before anything is written
        return cls(str(spec), keep_float, int(seed))

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> "CodecConfig | None":
        """The config stored in the catalog (``None``: no codec)."""
        if not value:
            return None
        return cls(value["spec"], bool(value.get("keep_float", True)), int(value.get("seed", 0)), value.get("dir"))

    def to_json(self) -> dict[str, Any]:
        return {"spec": self.spec, "keep_float": self.keep_float, "seed": self.seed, "dir": self.dir}

    def with_dir(self, rel: str) -> "CodecConfig":
        return replace(self, dir=rel)

    def code_size(self, dim: int) -> int:
        """Bytes per vector of the codes."""
        return self.parsed.bytes_per_vector(dim)

    @property
    def variance_ordered_floats(self) -> bool:
        """The codes are float32 vectors in a PCA basis (``pca+f32``): what a funnel search can read."""
        return [(st.name, st.args) for st in self.parsed.stages] == [("pca", ()), ("f32", ())]


def keeps_floats(cfg: CodecConfig | None) -> bool:
    """Whether a collection with the codec config ``cfg`` keeps float vectors on disk."""
    return cfg is None or cfg.keep_float


class CodecState:
    """The codec config and fitted codec of one collection handle (``cfg`` / ``codec`` are ``None`` without)."""

    def __init__(self, root: Path, dim: int) -> None:
        self.root = root
        self.dim = dim
        self.cfg: CodecConfig | None = None
        self.codec: Codec | None = None
        self.epoch = -1  # catalog epoch at the last sync

    @property
    def spec(self) -> str | None:
        """The canonical codec spec, or ``None`` without a codec."""
        return self.cfg.spec if self.cfg else None

    @property
    def keeps_floats(self) -> bool:
        """Whether float vectors are kept on disk (always, without a codec)."""
        return keeps_floats(self.cfg)

    def code_size(self, cfg: CodecConfig | None) -> int | None:
        """Bytes per vector of the codes under ``cfg`` (``None``: float vectors in RAM)."""
        return cfg.code_size(self.dim) if cfg else None

    def set(self, cfg: CodecConfig | None, codec: Codec | None) -> None:
        """Adopt a codec this handle has just committed (the epoch catches up at the next sync)."""
        self.cfg, self.codec = cfg, codec

    def sync(self, conn: sqlite3.Connection) -> bool:
        """Follow codec changes committed by any process (they always bump the epoch); call in a transaction.

        Returns True when the config was reloaded; the caller then checks its live
        view's code size against :meth:`code_size`.
        """
        ep = catalog.epoch(conn)
        if ep == self.epoch:
            return False
        cfg = CodecConfig.from_json(catalog.config_value(conn, "codec"))
        reloaded = cfg != self.cfg or bool(cfg and cfg.dir and self.codec is None)
        if reloaded:
            self.codec = load_codec(self.root / cfg.dir) if cfg and cfg.dir else None
            self.cfg = cfg
        self.epoch = ep
        return reloaded

    def for_write(self, x: np.ndarray) -> tuple[Codec | None, CodecConfig | None]:
        """Under the write lock, after a sync: the codec to encode ``x`` with, fitting (and saving) it on ``x`` if new.

        Returns ``(codec, new_cfg)``; ``new_cfg`` is the config to commit with the batch when the
        codec was fitted now, else ``None``.
        """
        cfg = self.cfg
        if cfg is None or cfg.dir:
            return self.codec, None
        codec = make_codec(cfg.parsed, self.dim, seed=cfg.seed)
        if len(x) < codec.min_fit_rows:
            raise InvalidInputError(
                f"the codec {cfg.spec!r} is fitted on the first batch written, which needs at least "
                f"{codec.min_fit_rows} vectors; got {len(x)}. Write a larger first batch, or create the collection "
                "without a codec and call recompress() once it holds enough vectors"
            )
        codec.fit(x)
        return codec, cfg.with_dir(self.save(codec))

    def recompress_config(self, codec: str | None, keep_float: bool | None, seed: int) -> CodecConfig | None:
        """Check a recompress's options against the current config; return the new config (``dir`` unset)."""
        current_keep = self.keeps_floats
        keep_float = current_keep if keep_float is None else keep_float
        if not isinstance(keep_float, bool):
            raise InvalidInputError(f"keep_float must be True or False; got {keep_float!r}")
        if keep_float and not current_keep or codec is None and not current_keep:
            raise InvalidInputError(
                f"{self.root} keeps codes only (keep_float=False): its original float vectors are gone, so it "
                "cannot keep floats again; recompress with keep_float=False, or re-add the source vectors"
            )
        return CodecConfig.from_options(codec, self.dim, keep_float, seed)

    def fit_new(self, cfg: CodecConfig | None, x: np.ndarray) -> tuple[Codec | None, CodecConfig | None]:
        """Fit ``cfg``'s codec on ``x`` (a seeded sample of :data:`FIT_ROWS` rows at most) and save it.

        Returns the codec and ``cfg`` with its ``dir``; ``(None, cfg)`` (nothing saved) without a codec or rows.
        """
        if cfg is None or not len(x):
            return None, cfg
        seed = cfg.seed
        codec = make_codec(cfg.parsed, self.dim, seed=seed)
        sample = x
        if len(x) > FIT_ROWS:
            sample = x[np.sort(np.random.default_rng(seed).choice(len(x), FIT_ROWS, replace=False))]
        codec.fit(sample)
        return codec, cfg.with_dir(self.save(codec))

    def save(self, codec: Codec) -> str:
        """Save a fitted codec under a new ``codecs/codec-<uuid>`` directory; return its relative path."""
        rel = f"{CODEC_DIR}/codec-{uuid.uuid4().hex}"
        codec.save(self.root / rel)
        return rel

    def discard(self, cfg: CodecConfig | None) -> None:
        """Remove the codec directory of ``cfg`` after its commit failed (never the current one's)."""
        if cfg and cfg.dir and cfg != self.cfg:
            shutil.rmtree(self.root / cfg.dir, ignore_errors=True)

    def vectors(self, live: LiveVectors, positions: np.ndarray) -> np.ndarray:
        """Float vectors of live-view rows: stored floats, or decoded codes when only codes are kept."""
        if self.keeps_floats or self.codec is None:
            return live.floats(positions)
        return self.codec.decode(live.x[positions])


__all__ = ["FIT_ROWS", "CodecConfig", "CodecState", "keeps_floats"]

