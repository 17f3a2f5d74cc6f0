"""Fine-tune a sentence-transformers model on pairs, with checkpoints that resume to the same weights.

:func:`train` runs a plain loop over sentence-transformers' model and losses
(:mod:`vecbox.train.losses`): AdamW, linear warm-up then linear decay, gradient clipping at 1.
Every random draw of a step (dropout, 2DMSE's layer/dim sampling) is seeded from ``(seed, step)``
and the data order from ``(seed, epoch)``, so a run resumed from a checkpoint computes exactly
the steps an uninterrupted run would, and ends at the same weights.

Checkpoints (``OUT/checkpoints/step-NNNNNN/``) hold the weights and the optimiser state as
safetensors plus a JSON state: no pickle anywhere, so a checkpoint directory handed over by
someone else cannot run code. Each is written to a temporary name and renamed, so a kill at any
moment leaves the previous checkpoint whole. ``train`` resumes from the newest one when called
again with the same ``OUT``, model, pairs and settings, and refuses one of another run.

The finished model is a sentence-transformers directory (``model.safetensors``, modules,
tokenizer) with a model card (``README.md``, ``vecbox_train.json``): data, loss, ladder, steps,
losses, wall time. Load it with ``TextEncoder(OUT)`` or ``Collection.create(..., model=OUT)``.
With ``loss="maxsim"`` it also holds the late-interaction head (``1_Dense/``,
:mod:`vecbox.train.late`), which ``TokenEncoder(OUT)`` applies to its token vectors.

>>> from vecbox.train.tiny import make_tiny_model
>>> from vecbox.train.pairs import Pair
>>> base = make_tiny_model(tmp + "/base", layers=2, hidden=16)
>>> pairs = [Pair("read a csv file", "csv reader of rows"), Pair("hash a string", "sha256 digest"),
...          Pair("sort a list", "sort numbers in a list"), Pair("open a socket", "network socket server")]
>>> result = train(base, pairs, tmp + "/tuned", TrainSettings(loss="starbucks", batch_size=2, epochs=1))
>>> result.finished, result.steps, (result.out / "model.safetensors").is_file()
(True, 2, True)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vecbox._optional import require
from vecbox.errors import InvalidInputError
from vecbox.train.losses import LOSSES, default_ladder, make_loss, model_shape
from vecbox.train.pairs import Pair

torch = require("torch", "text", "vecbox.train")

CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class TrainSettings:
    """What a training run does; part of every checkpoint (a resume must use the same)."""

    loss: str = "starbucks"
    batch_size: int = 32
    epochs: int = 1
    max_steps: int | None = None  # cut the run at this many steps (after epochs * batches otherwise)
    lr: float = 2e-5
    warmup: float = 0.1  # share of the steps with a rising learning rate
    weight_decay: float = 0.01
    max_seq_length: int = 128  # word pieces per text while training; the written model keeps the base's
    seed: int = 0
    checkpoint_every: int = 50
    dims: tuple[int, ...] | None = None  # Matryoshka / 2DMSE widths
    ladder: tuple[tuple[int, int], ...] | None = None  # Starbucks (layer, dim) pairs
    kl_temperature: float = 0.3
    scale: float = 20.0
    head_dim: int = 128  # "maxsim": width of the late-interaction head (ColBERT's 128)

    def check(self) -> None:
        if self.loss not in LOSSES:
            raise InvalidInputError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        for name in ("batch_size", "epochs", "max_seq_length", "checkpoint_every", "head_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be a positive integer; got {value!r}")
        if self.batch_size < 2:
            raise InvalidInputError("batch_size must be >= 2: in-batch negatives need another pair in the batch")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise InvalidInputError(f"max_steps must be a positive integer or None; got {self.max_steps!r}")
        if not (self.lr > 0 and 0 <= self.warmup < 1):
            raise InvalidInputError(f"lr must be > 0 and warmup in [0, 1); got lr={self.lr}, warmup={self.warmup}")


@dataclass
class TrainResult:
    """How a run went: ``finished`` is False when ``max_minutes`` stopped it (run again to resume)."""

    out: Path
    steps: int
    total_steps: int
    finished: bool
    resumed_from: int | None
    seconds: float
    losses: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "out": str(self.out)}


# ------------------------------------------------------------------ data order
def _batches_per_epoch(n_pairs: int, batch_size: int) -> int:
    full, rest = divmod(n_pairs, batch_size)
    return full + (1 if rest >= 2 else 0)  # a last batch of one pair has no in-batch negative: dropped


def _batch(pairs: Sequence[Pair], settings: TrainSettings, step: int) -> list[Pair]:
    """The pairs of global step ``step`` (1-based): epoch order from ``(seed, epoch)``."""
    per_epoch = _batches_per_epoch(len(pairs), settings.batch_size)
    epoch, i = divmod(step - 1, per_epoch)
    order = np.random.default_rng([settings.seed, epoch]).permutation(len(pairs))
    return [pairs[j] for j in order[i * settings.batch_size : (i + 1) * settings.batch_size]]


def _lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear warm-up over ``ceil(warmup * total)`` steps, then linear decay to 0 at ``total``."""
    w = math.ceil(warmup * total)
    if step <= w:
        return step / max(1, w)
    return max(0.0, (total - step + 1) / max(1, total - w))


def _recipe(settings: TrainSettings) -> dict[str, Any]:
    """The settings that shape a run: ``head_dim`` only for ``"maxsim"``, so runs of the other losses keep
    the fingerprint (and the checkpoints) they had before the field existed."""
    out = asdict(settings)
    if settings.loss != "maxsim":
        del out["head_dim"]
    return out


def _fingerprint(model: str, pairs: Sequence[Pair], settings: TrainSettings) -> str:
    h = hashlib.sha256(model.encode())
    h.update(json.dumps(_recipe(settings), sort_keys=True).encode())
    for p in pairs:
        h.update(json.dumps([p.anchor, p.positive, list(p.negatives)]).encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------ checkpoints
def _optimizer_tensors(opt: Any, params: list[Any]) -> dict[str, Any]:
    out = {}
    for i, p in enumerate(params):
        for key, value in opt.state.get(p, {}).items():
            out[f"{i}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return out


def _save_checkpoint(ckpt_dir: Path, step: int, model: Any, opt: Any, params: list[Any], state: dict[str, Any]) -> None:
    from safetensors.torch import save_file, save_model

    final = ckpt_dir / f"step-{step:06d}"
    tmp = ckpt_dir / f".step-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "weights.safetensors"))
    save_file({k: v.contiguous() for k, v in _optimizer_tensors(opt, params).items()}, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, final)
    for old in ckpt_dir.glob("step-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)


def _latest_checkpoint(ckpt_dir: Path) -> Path | None:
    done = sorted(p for p in ckpt_dir.glob("step-*") if (p / "state.json").is_file())
    return done[-1] if done else None


def _load_checkpoint(path: Path, model: Any, opt: Any, params: list[Any]) -> dict[str, Any]:
    from safetensors.torch import load_file, load_model

    load_model(model, str(path / "weights.safetensors"))
    tensors = load_file(str(path / "optimizer.safetensors"))
    for i, p in enumerate(params):
        entry = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.split(".", 1)[0] == str(i)}
        if entry:
            opt.state[p] = entry
    return json.loads((path / "state.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------ the loop
def train(model: str | Path, pairs: Sequence[Pair], out: str | Path, settings: TrainSettings | None = None, *,
          max_minutes: float | None = None, data: str = "", show_progress: bool = False,
          progress: Callable[[int, int, float], None] | None = None) -> TrainResult:
    """Fine-tune ``model`` (``"default"`` or a sentence-transformers directory) on ``pairs``; write it to ``out``.

    Parameters
    ----------
    model : str or Path
    pairs : list of Pair
        Anchor/positive pairs; their hard negatives (the smallest count any pair has) become
        extra columns of the loss.
    out : str or Path
        The trained model's directory; checkpoints go to ``out/checkpoints`` and are removed
        once the model is written. Calling ``train`` again with the same arguments resumes.
    settings : TrainSettings
    max_minutes : float, optional
        Wall-clock budget: after the step that crosses it, write a checkpoint and return
        (``finished=False``); call again to go on.
    data : str
        A description of the data for the model card (e.g. ``"SciFact corpus, title+ict pairs"``).
    progress : callable, optional
        Called after each step with ``(step, total_steps, loss)``.
    """
    from vecbox.encoders._model import _progress_bar, load_sentence_transformer, resolve_model
    from vecbox.train.card import write_card

    settings = settings or TrainSettings()
    settings.check()
    pairs = list(pairs)
    if _batches_per_epoch(len(pairs), settings.batch_size) == 0:
        raise InvalidInputError(f"{len(pairs)} pairs make no batch of two or more; give at least 2 pairs")
    name, model_dir = resolve_model(str(model))
    out = Path(out)
    ckpt_dir = out / CHECKPOINTS
    per_epoch = _batches_per_epoch(len(pairs), settings.batch_size)
    total = per_epoch * settings.epochs if settings.max_steps is None else settings.max_steps
    n_neg = min(len(p.negatives) for p in pairs)
    fingerprint = _fingerprint(name, pairs, settings)

    st = load_sentence_transformer(model_dir)
    inference_length = st.max_seq_length  # training truncates harder (cost); the written model keeps its own
    st.max_seq_length = settings.max_seq_length
    st.train()
    # "maxsim" attaches its head to st here, before the optimiser and any checkpoint see the parameters
    loss_fn = make_loss(settings.loss, st, dims=settings.dims, ladder=settings.ladder, scale=settings.scale,
                        kl_temperature=settings.kl_temperature, head_dim=settings.head_dim, seed=settings.seed)
    params = [p for p in st.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]  # biases and LayerNorm weights, as usual
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr)
    ordered = decay + no_decay

    start, losses, resumed = 1, [], None
    latest = _latest_checkpoint(ckpt_dir) if ckpt_dir.is_dir() else None
    if latest is not None:
        state = json.loads((latest / "state.json").read_text(encoding="utf-8"))
        if state.get("fingerprint") != fingerprint:
            raise InvalidInputError(f"{out} holds checkpoints of another run (other model, pairs or settings); "
                                    "choose another output directory, or delete its checkpoints folder to start over")
        state = _load_checkpoint(latest, st, opt, ordered)
        start, losses, resumed = int(state["step"]) + 1, list(state["losses"]), int(state["step"])

    t0 = time.perf_counter()
    bar = _progress_bar(total, start - 1, "training") if show_progress else None
    step = start - 1
    try:
        for step in range(start, total + 1):
            seed = settings.seed * 1_000_003 + step
            torch.manual_seed(seed)
            random.seed(seed)
            batch = _batch(pairs, settings, step)
            columns = [[p.anchor for p in batch], [p.positive for p in batch]]
            columns += [[p.negatives[j] for p in batch] for j in range(n_neg)]
            features = [st.preprocess(c) for c in columns]
            for g in opt.param_groups:
                g["lr"] = settings.lr * _lr_factor(step, total, settings.warmup)
            value = loss_fn(features, torch.empty(0))
            opt.zero_grad(set_to_none=True)
            value.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(round(float(value.detach()), 6))
            if progress is not None:
                progress(step, total, losses[-1])
            if bar is not None:
                bar[0].update(bar[1], completed=step, description=f"loss {losses[-1]:.3f}")
            out_of_time = max_minutes is not None and time.perf_counter() - t0 >= 60 * max_minutes
            if step < total and (step % settings.checkpoint_every == 0 or out_of_time):
                _save_checkpoint(ckpt_dir, step, st, opt, ordered,
                                 {"step": step, "losses": losses, "fingerprint": fingerprint,
                                  "settings": _recipe(settings)})
            if out_of_time and step < total:
                return TrainResult(out, step, total, False, resumed, time.perf_counter() - t0, losses)
    finally:
        if bar is not None:
            bar[0].stop()

    seconds = time.perf_counter() - t0
    st.eval()
    st.max_seq_length = inference_length
    st.save(str(out), safe_serialization=True)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    n_layers, dim = model_shape(st)
    recipe: dict[str, Any] = {"base model": name, "loss": settings.loss, "steps": total, "pairs": len(pairs),
                              "hard negatives per pair": n_neg, **_recipe(settings)}
    if settings.loss == "starbucks":
        recipe["ladder"] = [list(p) for p in (settings.ladder or default_ladder(n_layers, dim))]
    figures = {"first loss": losses[0] if losses else None,
               "mean loss, last 10 steps": round(float(np.mean(losses[-10:])), 6) if losses else None,
               "wall time of this call (s)": round(seconds, 1), "resumed from step": resumed}
    use = ("Elastic: `TextEncoder(PATH, layers=l, dims=d)` for each (l, d) of the ladder."
           if settings.loss in ("starbucks", "2dmse") else "`TextEncoder(PATH)`")
    sections: dict[str, Any] = {"Data": data or f"{len(pairs)} pairs", "Training": recipe, "Figures": figures}
    if settings.loss == "maxsim":
        from vecbox.train.late import late_head_card

        sections["Late-interaction head"] = late_head_card(st, out)
        use = (f"Late interaction: `TokenEncoder(PATH)` gives {settings.head_dim}-d token vectors through the head; "
               f"`Collection.create(DIR, model=PATH, multivector=FDEConfig(...), token_dim={settings.head_dim})` "
               "then `add_texts` / `search_text`. `TextEncoder(PATH)` still gives the transformer's pooled vectors.")
    sections["Use"] = use
    write_card(out, title="Fine-tuned by vecbox.train", sections=sections)
    return TrainResult(out, total, total, True, resumed, seconds, losses)


__all__ = ["TrainResult", "TrainSettings", "train"]
