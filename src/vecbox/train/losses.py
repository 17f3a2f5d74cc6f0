"""Training losses: sentence-transformers' where they exist, and Starbucks, which it lacks.

``make_loss(name, model)`` builds one of

- ``"mnrl"``: in-batch negatives (plus mined hard negatives as extra columns),
  sentence-transformers' ``MultipleNegativesRankingLoss`` (scale 20, cosine);
- ``"matryoshka"``: its ``MatryoshkaLoss`` around MNRL, at every dimension of ``dims`` each step;
- ``"2dmse"``: its ``Matryoshka2dLoss`` around MNRL (2D Matryoshka, as the 2DMSE paper: one random
  prior layer and one random dimension per step, plus the last layer, with a KL term);
- ``"starbucks"``: :class:`StarbucksLoss` around MNRL: a fixed ladder of (layer, dim) pairs, every
  pair every step, each with a KL term to the full model (Starbucks, Zhuang et al. 2024);
- ``"maxsim"``: late interaction, :class:`~vecbox.train.late.MaxSimLoss`: a ``head_dim``-wide token head
  (attached to the model) trained with in-batch negatives on ColBERT MaxSim scores.

The default ladder (:func:`default_ladder`) doubles the width with each layer from 32, capped at
the model's width: for all-MiniLM-L6-v2 (6 layers, 384-d) it is
``(1, 32), (2, 64), (3, 128), (4, 256), (5, 384), (6, 384)``; the last pair is the full model.
(The paper's BERT-base ladder is ``(2, 32), (4, 64), (6, 128), (8, 256), (10, 512), (12, 768)``:
pass it as ``ladder=`` for a 12-layer model.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from vecbox._optional import require
from vecbox.errors import InvalidInputError

torch = require("torch", "text", "vecbox.train")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

LOSSES = ("mnrl", "matryoshka", "2dmse", "starbucks", "maxsim")


def default_ladder(n_layers: int, dim: int) -> tuple[tuple[int, int], ...]:
    """Starbucks sizes for a model of ``n_layers`` layers and width ``dim``: layer ``l`` at width
    ``min(dim, 32 * 2**(l - 1))``.

    >>> default_ladder(6, 384)
    ((1, 32), (2, 64), (3, 128), (4, 256), (5, 384), (6, 384))
    """
    return tuple((l, min(dim, 32 * 2 ** (l - 1))) for l in range(1, n_layers + 1))


def default_dims(dim: int) -> tuple[int, ...]:
    """Matryoshka widths: ``dim`` and its halvings down to 32 (or ``dim`` alone when smaller).

    >>> default_dims(384)
    (384, 192, 96, 48)
    """
    dims = [dim]
    while dims[-1] // 2 >= 32:
        dims.append(dims[-1] // 2)
    return tuple(dims)


def model_shape(model: Any) -> tuple[int, int]:
    """(number of transformer layers, embedding width) of a SentenceTransformer."""
    from vecbox.encoders._model import _layer_path

    node = model
    for name in _layer_path(model):
        node = node._modules[name]
    get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return len(node), int(get_dim())


def check_ladder(ladder: Iterable[Sequence[int]], n_layers: int, dim: int) -> tuple[tuple[int, int], ...]:
    """Checked ladder: (layer, dim) pairs with ``1 <= layer <= n_layers`` and ``1 <= dim <= dim``."""
    out = []
    for pair in ladder:
        if len(pair) != 2:
            raise InvalidInputError(f"ladder entries are (layer, dim) pairs; got {pair!r}")
        layer, width = int(pair[0]), int(pair[1])
        if not (1 <= layer <= n_layers and 1 <= width <= dim):
            raise InvalidInputError(f"ladder pair ({layer}, {width}) is outside this model: layers 1..{n_layers}, "
                                    f"dims 1..{dim}")
        out.append((layer, width))
    if not out:
        raise InvalidInputError("the ladder is empty; give at least one (layer, dim) pair")
    return tuple(out)


class StarbucksLoss(nn.Module):
    """Starbucks representation learning: ``loss`` at every (layer, dim) pair of a fixed ladder, every step.

    Per batch, with ``E_l`` the model's sentence embeddings after its first ``l`` layers
    (pooled and normalised as the model does) and ``L`` its depth::

        last_layer_weight * loss(E_L)
        + sum over pairs (l, d) != (L, full):  loss(normalize(E_l[:, :d]))
                                               + kl_temperature * kl_div_weight * KL(E_L[:, :d] || E_l[:, :d])

    ``KL(p || q)`` is ``F.kl_div(log_softmax(q), softmax(p), reduction="batchmean")`` over all
    the batch's texts (every column), on the un-renormalised slices, as the reference
    implementation (``ielab/Starbucks``: ``sts/starbucks_loss.py``) does: ``kl_temperature``
    multiplies the term and does not divide the logits. ``loss`` must offer
    ``compute_loss_from_embeddings`` (MNRL does). One forward pass gives every layer.
    """

    def __init__(self, model: Any, loss: Any, ladder: Iterable[Sequence[int]] | None = None, *,
                 last_layer_weight: float = 1.0, kl_div_weight: float = 1.0, kl_temperature: float = 0.3) -> None:
        super().__init__()
        if not hasattr(loss, "compute_loss_from_embeddings"):
            raise InvalidInputError(f"StarbucksLoss needs a loss with compute_loss_from_embeddings (e.g. "
                                    f"MultipleNegativesRankingLoss); got {type(loss).__name__}")
        self.model = model
        self.loss = loss
        self.n_layers, self.dim = model_shape(model)
        ladder = default_ladder(self.n_layers, self.dim) if ladder is None else ladder
        self.ladder = check_ladder(ladder, self.n_layers, self.dim)
        self.last_layer_weight = float(last_layer_weight)
        self.kl_div_weight = float(kl_div_weight)
        self.kl_temperature = float(kl_temperature)

    def layer_embeddings(self, features: dict[str, Any], layers: Iterable[int]) -> dict[int, Any]:
        """Sentence embeddings after each of ``layers`` (0 = the embedding layer), from one forward pass."""
        transformer = self.model[0]
        config = transformer.auto_model.config
        before = config.output_hidden_states
        config.output_hidden_states = True
        try:
            out = transformer(dict(features))
        finally:
            config.output_hidden_states = before
        hidden = out.pop("all_layer_embeddings")
        result = {}
        for layer in layers:
            f = {**out, "token_embeddings": hidden[layer]}
            for module in list(self.model)[1:]:
                f = module(f)
            result[layer] = f["sentence_embedding"]
        return result

    def forward(self, sentence_features: Iterable[dict[str, Any]], labels: Any) -> Any:
        needed = sorted({layer for layer, _ in self.ladder} | {self.n_layers})
        reps = [self.layer_embeddings(f, needed) for f in sentence_features]
        full = [r[self.n_layers] for r in reps]
        loss = self.last_layer_weight * self.loss.compute_loss_from_embeddings(full, labels)
        final = torch.cat(full)
        for layer, d in self.ladder:
            if (layer, d) == (self.n_layers, self.dim):
                continue  # the full model, counted above
            embs = [F.normalize(r[layer][:, :d], dim=-1) for r in reps]
            loss = loss + self.loss.compute_loss_from_embeddings(embs, labels)
            if self.kl_temperature > 0:
                here = torch.cat([r[layer] for r in reps])[:, :d]
                kl = F.kl_div(F.log_softmax(here, dim=-1), F.softmax(final[:, :d], dim=-1), reduction="batchmean")
                loss = loss + kl * self.kl_temperature * self.kl_div_weight
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        return {"loss": type(self.loss).__name__, "ladder": [list(p) for p in self.ladder],
                "last_layer_weight": self.last_layer_weight, "kl_div_weight": self.kl_div_weight,
                "kl_temperature": self.kl_temperature}


def make_loss(name: str, model: Any, *, dims: Sequence[int] | None = None,
              ladder: Iterable[Sequence[int]] | None = None, scale: float = 20.0, kl_temperature: float = 0.3,
              head_dim: int = 128, seed: int = 0) -> Any:
    """The training loss ``name`` (one of :data:`LOSSES`) for ``model``, around MNRL (``"maxsim"``: its own).

    ``dims``: the Matryoshka widths (``"matryoshka"``, ``"2dmse"``; default :func:`default_dims`);
    ``ladder``: the Starbucks (layer, dim) pairs (default :func:`default_ladder`); ``scale``: MNRL's
    inverse temperature (MaxSim's too, per query token); ``kl_temperature``: the 2DMSE / Starbucks KL
    term (0 disables it); ``head_dim``, ``seed``: width and initialisation of the late-interaction head
    ``"maxsim"`` attaches to ``model`` (one it already has is kept).
    """
    if name not in LOSSES:
        raise InvalidInputError(f"loss must be one of {', '.join(LOSSES)}; got {name!r}")
    if name == "maxsim":
        from vecbox.train.late import MaxSimLoss

        return MaxSimLoss(model, scale=scale, head_dim=head_dim, seed=seed)
    from sentence_transformers.sentence_transformer import losses as st_losses

    base = st_losses.MultipleNegativesRankingLoss(model, scale=scale)
    if name == "mnrl":
        return base
    n_layers, dim = model_shape(model)
    if name == "starbucks":
        return StarbucksLoss(model, base, ladder, kl_temperature=kl_temperature)
    widths = tuple(default_dims(dim) if dims is None else dims)
    if not widths or any(not 1 <= int(d) <= dim for d in widths):
        raise InvalidInputError(f"dims must be widths from 1 to {dim}; got {list(widths)}")
    if name == "matryoshka":
        return st_losses.MatryoshkaLoss(model, base, list(widths))
    return st_losses.Matryoshka2dLoss(model, base, list(widths), kl_temperature=kl_temperature)


__all__ = ["LOSSES", "StarbucksLoss", "check_ladder", "default_dims", "default_ladder", "make_loss", "model_shape"]
