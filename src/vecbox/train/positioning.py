"""Self Positioning: learn the task-arithmetic coefficients of a merge on a small probe set.

Given a base model and models fine-tuned from it, the merged weights are
``base + sum_i alpha_i * (theta_i - base)``; Self Positioning ("Improving General Text Embedding
Model: Tackling Task Conflict and Data Imbalance through Model Merging") searches the
``alpha`` by stochastic gradient descent on a probe set, the models' weights frozen. Here the
probe loss is in-batch MNRL (sentence-transformers' ``compute_loss_from_embeddings``) on probe
pairs, the model run with ``torch.func.functional_call`` on the interpolated weights, so only
``alpha`` has a gradient. Batches and their order are seeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vecbox._optional import require
from vecbox.errors import InvalidInputError
from vecbox.train.pairs import Pair

torch = require("torch", "text", "vecbox.train")


def probe_loss(model: Any, params: dict[str, Any], pairs: Sequence[Pair], loss: Any) -> Any:
    """MNRL of ``pairs`` with ``model`` run on the weights ``params`` (a differentiable function of them)."""
    feats = [model.preprocess([p.anchor for p in pairs]), model.preprocess([p.positive for p in pairs])]
    embs = [torch.func.functional_call(model, params, (f,))["sentence_embedding"] for f in feats]
    return loss.compute_loss_from_embeddings(embs, torch.empty(0))


def learn_coefficients(model: Any, base: dict[str, Any], models: Sequence[dict[str, Any]], probe: Sequence[Pair], *,
                       steps: int = 20, lr: float = 0.05, batch_size: int = 16, init: float | None = None,
                       seed: int = 0) -> tuple[list[float], list[float]]:
    """The coefficients ``alpha`` (one per model) that lower the probe MNRL of
    ``base + sum_i alpha_i (models[i] - base)``, by ``steps`` of Adam from ``init`` (default ``1/n``).

    ``model`` is a SentenceTransformer of the same architecture (its weights are not used).
    Returns ``(alpha, losses)``: the coefficients and the probe loss before each step.
    """
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    if len(models) < 1 or len(probe) < 2:
        raise InvalidInputError(f"Self Positioning needs at least one model and two probe pairs; got {len(models)} "
                                f"models and {len(probe)} pairs")
    names = [k for k, v in base.items() if torch.is_floating_point(v)]
    for i, sd in enumerate(models):
        if set(sd) != set(base) or any(sd[k].shape != base[k].shape for k in names):
            raise InvalidInputError(f"model {i} does not share the base's architecture; merge only models "
                                    "fine-tuned from that base")
    taus = [{k: (sd[k] - base[k]).detach() for k in names} for sd in models]
    alpha = torch.full((len(models),), 1.0 / len(models) if init is None else float(init), requires_grad=True)
    opt = torch.optim.Adam([alpha], lr=lr)
    loss_fn = MultipleNegativesRankingLoss(model)
    model.eval()  # no dropout: the probe loss is a function of alpha alone
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(steps):
        idx = rng.choice(len(probe), size=min(batch_size, len(probe)), replace=False)
        params = {k: base[k].detach() + sum(a * t[k] for a, t in zip(alpha, taus)) for k in names}
        value = probe_loss(model, params, [probe[i] for i in idx], loss_fn)
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(float(value.detach()))
    return [float(a) for a in alpha.detach()], losses


__all__ = ["learn_coefficients", "probe_loss"]
