"""A late-interaction (ColBERT-style) head and its MaxSim loss.

The head is a linear map from the transformer's token states to ``head_dim`` (128 by default)
dimensions, one vector per token, L2-normalised, scored with ColBERT's MaxSim::

    MaxSim(q, d) = sum over the query's tokens i of  max over the document's tokens j of  cos(q_i, d_j)

Padding and the tokenizer's special tokens ([CLS], [SEP], [PAD], <s>, </s>, <pad>) are masked on
both sides - the tokens :class:`~vecbox.encoders.tokens.TokenEncoder` drops - so training scores
exactly what retrieval will score.

It is sentence-transformers' own ``Dense`` module (identity activation, no bias) reading
``token_embeddings`` and writing :data:`HEAD_OUTPUT`, inserted right after the Transformer. Saved
with the model it is ``1_Dense/`` (``config.json`` + ``model.safetensors``), so the directory reloads
offline with plain ``SentenceTransformer(path)``, keeps its pooled sentence embedding unchanged (the
head writes its own key; Pooling still reads the transformer's states), and ``TokenEncoder(path)``
finds the head from ``modules.json`` and returns ``head_dim``-wide token vectors.

*No bias*, as ColBERT and PyLate: a bias adds one shared vector to every token, which pulls all
tokens towards one direction after normalisation and so compresses the cosines MaxSim compares;
without it the head is a pure change of basis, and the encoder's output is exactly
``normalize(H @ W.T)`` (what the tests check). *Orthogonal initialisation*: untrained, the head
keeps the base model's token geometry (exactly when ``head_dim >= hidden``; a random 128-d
subspace of it, cosines nearly kept, when narrower), so training starts from the base model's
own MaxSim instead of from noise.

>>> from vecbox.train.tiny import make_tiny_model
>>> from sentence_transformers import SentenceTransformer
>>> st = SentenceTransformer(str(make_tiny_model(tmp + "/tiny", layers=2, hidden=16)), device="cpu")
>>> loss = MaxSimLoss(st, head_dim=8)          # attaches a 16 -> 8 head to the model
>>> [type(m).__name__ for m in st], loss.head.out_features
(['Transformer', 'Dense', 'Pooling', 'Normalize'], 8)
>>> prep = st.preprocess
>>> value = loss([prep(["read a csv file", "hash a string"]), prep(["csv reader", "sha256 digest"])], None)
>>> bool(value > 0)
True
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from vecbox._optional import require
from vecbox.encoders.tokens import HEAD_INPUT, special_token_ids
from vecbox.errors import InvalidInputError

torch = require("torch", "text", "vecbox.train")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

HEAD_OUTPUT = "late_interaction_embeddings"  # the feature key the head writes (Pooling never reads it)
DEFAULT_HEAD_DIM = 128


def _dense_class() -> Any:
    try:  # sentence-transformers >= 6
        from sentence_transformers.base.modules import Dense
    except ImportError:  # older releases
        from sentence_transformers.models import Dense
    return Dense


def find_head(model: Any) -> tuple[int, Any] | None:
    """``(index, module)`` of the late-interaction head of a SentenceTransformer (a ``Dense`` reading
    ``token_embeddings``), or ``None`` when it has none.

    >>> find_head([]) is None
    True
    """
    dense = _dense_class()
    for i, module in enumerate(model):
        if isinstance(module, dense) and getattr(module, "module_input_name", None) == HEAD_INPUT:
            return i, module
    return None


def attach_head(model: Any, head_dim: int = DEFAULT_HEAD_DIM, *, seed: int = 0) -> Any:
    """The model's late-interaction head; a new ``hidden -> head_dim`` one (orthogonal, seeded, no
    bias) is inserted right after the Transformer when it has none. Returns the head.

    A model that already has a head (trained before) keeps it: training goes on from it. Asking
    for another width then is an error rather than a silent second head.

    >>> from vecbox.train.tiny import make_tiny_model
    >>> from sentence_transformers import SentenceTransformer
    >>> st = SentenceTransformer(str(make_tiny_model(tmp + "/t2", layers=1, hidden=16)), device="cpu")
    >>> attach_head(st, 8) is attach_head(st, 8), len(st)
    (True, 4)
    """
    if not isinstance(head_dim, int) or isinstance(head_dim, bool) or head_dim < 1:
        raise InvalidInputError(f"head_dim must be a positive integer (128 is ColBERT's width); got {head_dim!r}")
    found = find_head(model)
    if found is not None:
        head = found[1]
        if head.out_features != head_dim:
            raise InvalidInputError(f"this model already has a {head.out_features}-d late-interaction head; "
                                    f"pass head_dim={head.out_features} to train it further, or start from a "
                                    "model without a head")
        return head
    hidden = int(model[0].auto_model.config.hidden_size)
    weight = torch.empty(head_dim, hidden)
    nn.init.orthogonal_(weight, generator=torch.Generator().manual_seed(int(seed)))
    device = next(model[0].parameters()).device
    head = _dense_class()(hidden, head_dim, bias=False, activation_function=nn.Identity(), init_weight=weight,
                          module_input_name=HEAD_INPUT, module_output_name=HEAD_OUTPUT).to(device)
    modules = list(model)
    modules.insert(1, head)  # before Pooling: the model's pooled width (reported by its last module) is unchanged
    model._modules = OrderedDict((str(i), m) for i, m in enumerate(modules))
    return head


def token_vectors(model: Any, head: Any, features: dict[str, Any]) -> tuple[Any, Any]:
    """Normalised head vectors ``(B, L, head_dim)`` of a tokenised batch and the mask ``(B, L)`` of the
    tokens that count (not padding, not special)."""
    out = head(model[0](dict(features)))
    vectors = F.normalize(out[head.module_output_name], p=2, dim=-1)
    ids = features["input_ids"]
    special = torch.as_tensor(special_token_ids(model.tokenizer), device=ids.device)
    mask = features["attention_mask"].bool() & ~torch.isin(ids, special)
    return vectors, mask


def maxsim(q: Any, q_mask: Any, d: Any, d_mask: Any) -> Any:
    """All-pairs MaxSim ``(Bq, Bd)``: ``sum_i max_j <q_i, d_j>`` over the masked-in tokens.

    A document without tokens scores 0 (as :func:`vecbox.multivector.chamfer` does).

    >>> q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]); d = torch.tensor([[[0.6, 0.8], [1.0, 0.0]]])
    >>> round(maxsim(q, torch.tensor([[True, True]]), d, torch.tensor([[True, True]])).item(), 4)  # 1 + 0.8
    1.8
    """
    sim = torch.einsum("aik,bjk->abij", q, d)  # (query, document, query token, document token)
    sim = sim.masked_fill(~d_mask[None, :, None, :], float("-inf"))
    best = sim.amax(dim=-1)
    best = torch.where(d_mask.any(dim=-1)[None, :, None], best, torch.zeros_like(best))
    return (best * q_mask[:, None, :].to(best.dtype)).sum(dim=-1)


class MaxSimLoss(nn.Module):
    """In-batch-negatives cross-entropy on ColBERT MaxSim scores, through a late-interaction head.

    Columns as sentence-transformers' MNRL: anchors (queries), positives, then any hard-negative
    columns. Query ``i`` is scored against every positive and every negative of the batch; its own
    positive is the label::

        logits[i, j] = scale * MaxSim(q_i, d_j) / n_i        loss = mean_i CE(logits[i], i)

    ``n_i`` is the number of tokens of query ``i`` that count. Dividing by it changes no query's
    ranking but makes ``scale`` mean what it means in MNRL (20 x a cosine-sized number) whatever the
    query's length; without it a 30-token query's logits would be 30 times sharper than a 1-token one's.

    Building the loss attaches the head to ``model`` (:func:`attach_head`), so the optimiser, the
    checkpoints and ``model.save`` all see it.
    """

    def __init__(self, model: Any, *, scale: float = 20.0, head_dim: int = DEFAULT_HEAD_DIM, seed: int = 0) -> None:
        super().__init__()
        if not scale > 0:
            raise InvalidInputError(f"scale must be > 0; got {scale!r}")
        self.model = model
        self.scale = float(scale)
        self.head = attach_head(model, head_dim, seed=seed)

    def forward(self, sentence_features: Iterable[dict[str, Any]], labels: Any) -> Any:
        columns = [token_vectors(self.model, self.head, f) for f in sentence_features]
        if len(columns) < 2:
            raise InvalidInputError("MaxSimLoss needs an anchor column and a positive column")
        (q, q_mask), docs = columns[0], columns[1:]
        scores = torch.cat([maxsim(q, q_mask, d, d_mask) for d, d_mask in docs], dim=1)
        n_tokens = q_mask.sum(dim=1, keepdim=True).clamp(min=1).to(scores.dtype)
        logits = self.scale * scores / n_tokens
        target = torch.arange(q.shape[0], device=logits.device)
        return F.cross_entropy(logits, target)

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "head_dim": self.head.out_features, "head_output": self.head.module_output_name}


def late_head_card(model: Any, directory: Any) -> dict[str, Any]:
    """The model card's facts about the head of ``model`` as saved in ``directory``."""
    import json
    from pathlib import Path

    found = find_head(model)
    if found is None:
        raise InvalidInputError("this model has no late-interaction head; train it with loss='maxsim'")
    index, head = found
    entry = next((e for e in json.loads((Path(directory) / "modules.json").read_text(encoding="utf-8"))
                  if int(e["idx"]) == index), {})
    return {"module": f"{entry.get('path', '?')} (sentence-transformers Dense, safetensors + config.json)",
            "projection": f"{head.in_features} -> {head.out_features}, no bias, identity activation",
            "reads / writes": f"{HEAD_INPUT} / {head.module_output_name}",
            "token vectors": "L2-normalised; padding and special tokens ([CLS], [SEP], ...) dropped",
            "score": "MaxSim: sum over query tokens of the max cosine over document tokens",
            "training logits": "scale * MaxSim / query tokens, in-batch negatives, cross-entropy"}


__all__ = ["DEFAULT_HEAD_DIM", "HEAD_OUTPUT", "MaxSimLoss", "attach_head", "find_head", "late_head_card", "maxsim",
           "token_vectors"]
