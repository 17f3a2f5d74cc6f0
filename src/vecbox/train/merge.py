"""Model merging on state dicts: linear, SLERP, task arithmetic, TIES.

Every function takes ``{name: tensor}`` dicts of models that share an architecture (same keys,
same shapes) and returns a new one; the inputs are not changed. Floating-point tensors are merged;
integer buffers (position ids) are copied from the first model. :func:`merge_models` does it for
sentence-transformers model directories and writes the merged model (safetensors) with a card.

- ``linear``: ``sum_i w_i * theta_i`` (weights default to equal, and are used as given).
- ``slerp``: per tensor, spherical interpolation between two models at ``t`` (0 gives the first,
  1 the second); nearly parallel tensors fall back to linear interpolation.
- ``task_arithmetic``: ``base + scaling * sum_i w_i * (theta_i - base)`` (Ilharco et al. 2023).
- ``self_positioning`` (:func:`merge_models` only): task arithmetic with weights learned on probe
  pairs (:mod:`vecbox.train.positioning`).
- ``ties``: task vectors ``tau_i = theta_i - base`` are trimmed to their ``density`` largest
  magnitudes (per tensor), each parameter's sign is elected as the sign of ``sum_i w_i tau_i``,
  and only the task vectors that agree with it are averaged (weighted), then
  ``base + scaling * merged`` (Yadav et al. 2023, TIES-Merging).

>>> import torch
>>> a, b = {"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([0.0, 1.0])}
>>> slerp(a, b, 0.5)["w"].tolist()   # on the unit circle, half way
[0.7071067690849304, 0.7071067690849304]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vecbox._optional import require
from vecbox.errors import InvalidInputError

torch = require("torch", "text", "vecbox.train")

METHODS = ("linear", "slerp", "task_arithmetic", "ties")
StateDict = Mapping[str, Any]


def _check_compatible(dicts: Sequence[StateDict]) -> None:
    if len(dicts) < 1:
        raise InvalidInputError("give at least one model to merge")
    keys = set(dicts[0])
    for i, d in enumerate(dicts[1:], 1):
        if set(d) != keys:
            diff = sorted(keys ^ set(d))[:3]
            raise InvalidInputError(f"model {i} does not share model 0's architecture: parameters {diff} are in one "
                                    "but not the other; merge only models fine-tuned from the same base")
        for k in keys:
            if tuple(d[k].shape) != tuple(dicts[0][k].shape):
                raise InvalidInputError(f"parameter {k!r} has shape {tuple(d[k].shape)} in model {i} but "
                                        f"{tuple(dicts[0][k].shape)} in model 0; merge only models of the same shape")


def _weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0 / n] * n
    w = [float(x) for x in weights]
    if len(w) != n:
        raise InvalidInputError(f"got {len(w)} weights for {n} models; give one weight per model")
    return w


def _merge(dicts: Sequence[StateDict], fn: Any) -> dict[str, Any]:
    """Apply ``fn(list of float64 tensors) -> tensor`` to every floating-point parameter."""
    out = {}
    for k, ref in dicts[0].items():
        if torch.is_floating_point(ref):
            out[k] = fn([d[k].detach().to(torch.float64) for d in dicts]).to(ref.dtype)
        else:
            out[k] = ref.clone()
    return out


def linear(dicts: Sequence[StateDict], weights: Sequence[float] | None = None) -> dict[str, Any]:
    """Weighted sum of the models' parameters (equal weights by default: their mean)."""
    _check_compatible(dicts)
    w = _weights(weights, len(dicts))
    return _merge(dicts, lambda ts: sum(wi * t for wi, t in zip(w, ts)))


def slerp(a: StateDict, b: StateDict, t: float = 0.5, *, eps: float = 1e-8) -> dict[str, Any]:
    """Spherical linear interpolation of two models, tensor by tensor (``t=0``: ``a``; ``t=1``: ``b``).

    The angle comes from the unit-normalised tensors; the interpolation applies to the tensors as
    they are, so their norms interpolate too.
    """
    _check_compatible([a, b])
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise InvalidInputError(f"t must be in [0, 1] (0: the first model, 1: the second); got {t}")

    def one(ts: list[Any]) -> Any:
        x, y = ts
        nx, ny = x.norm(), y.norm()
        if nx < eps or ny < eps:
            return (1 - t) * x + t * y
        cos = torch.clamp((x.flatten() @ y.flatten()) / (nx * ny), -1.0, 1.0)
        omega = torch.arccos(cos)
        if torch.sin(omega).abs() < 1e-6:  # (anti)parallel: the arc is undefined, the line is not
            return (1 - t) * x + t * y
        s = torch.sin(omega)
        return torch.sin((1 - t) * omega) / s * x + torch.sin(t * omega) / s * y

    return _merge([a, b], one)


def task_arithmetic(base: StateDict, models: Sequence[StateDict], weights: Sequence[float] | None = None, *,
                    scaling: float = 1.0) -> dict[str, Any]:
    """``base + scaling * sum_i w_i (theta_i - base)``; weights default to 1 each (plain task-vector sum)."""
    _check_compatible([base, *models])
    w = _weights(weights if weights is not None else [1.0] * len(models), len(models))
    return _merge([base, *models], lambda ts: ts[0] + scaling * sum(wi * (t - ts[0]) for wi, t in zip(w, ts[1:])))


def _trim(tau: Any, density: float) -> Any:
    """Keep the ``density`` share of ``tau``'s entries with the largest magnitudes; zero the rest."""
    if density >= 1.0:
        return tau
    k = int(round(density * tau.numel()))
    if k <= 0:
        return torch.zeros_like(tau)
    flat = tau.flatten()
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.abs().topk(k).indices] = True
    return torch.where(keep, flat, torch.zeros_like(flat)).reshape(tau.shape)


def ties(base: StateDict, models: Sequence[StateDict], weights: Sequence[float] | None = None, *,
         density: float = 0.2, scaling: float = 1.0) -> dict[str, Any]:
    """TIES-Merging: trim each task vector to its top ``density`` magnitudes, elect each parameter's sign
    (the sign of the weighted sum), average the agreeing task vectors (weighted), add to ``base``."""
    _check_compatible([base, *models])
    if not 0.0 < float(density) <= 1.0:
        raise InvalidInputError(f"density must be in (0, 1] (the share of each task vector kept); got {density}")
    w = _weights(weights if weights is not None else [1.0] * len(models), len(models))

    def one(ts: list[Any]) -> Any:
        taus = torch.stack([wi * _trim(t - ts[0], density) for wi, t in zip(w, ts[1:])])
        sign = torch.sign(taus.sum(0))
        agree = (torch.sign(taus) == sign) & (taus != 0)
        wsum = (agree * torch.tensor(w, dtype=taus.dtype).reshape(-1, *[1] * (taus.ndim - 1))).sum(0)
        merged = torch.where(wsum > 0, (taus * agree).sum(0) / wsum.clamp_min(1e-12), torch.zeros_like(sign))
        return ts[0] + scaling * merged

    return _merge([base, *models], one)


def merge_state_dicts(method: str, models: Sequence[StateDict], *, base: StateDict | None = None,
                      weights: Sequence[float] | None = None, t: float = 0.5, density: float = 0.2,
                      scaling: float = 1.0) -> dict[str, Any]:
    """Dispatch to one of :data:`METHODS` (``base`` is required by task arithmetic and TIES)."""
    if method not in METHODS:
        raise InvalidInputError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if method == "linear":
        return linear(models, weights)
    if method == "slerp":
        if len(models) != 2:
            raise InvalidInputError(f"slerp merges exactly two models; got {len(models)}")
        return slerp(models[0], models[1], t)
    if base is None:
        raise InvalidInputError(f"{method} needs the base model the others were fine-tuned from (base=...)")
    if method == "task_arithmetic":
        return task_arithmetic(base, models, weights, scaling=scaling)
    return ties(base, models, weights, density=density, scaling=scaling)


def merge_models(models: Sequence[str | Path], out: str | Path, *, method: str = "linear",
                 base: str | Path | None = None, weights: Sequence[float] | None = None, t: float = 0.5,
                 density: float = 0.2, scaling: float = 1.0, probe: Sequence[Any] | None = None,
                 steps: int = 20, seed: int = 0) -> Path:
    """Merge sentence-transformers model directories (or ``"default"``) into a new one at ``out``.

    ``method="self_positioning"`` learns the task-arithmetic weights on ``probe`` pairs
    (:mod:`vecbox.train.positioning`, ``steps`` of Adam, seeded) and needs ``base``. The result has
    the first model's modules and tokenizer, merged weights (safetensors) and a model card naming
    the method and its inputs. Returns ``out``.
    """
    from vecbox.encoders._model import load_sentence_transformer, resolve_model
    from vecbox.train.card import write_card

    if len(models) < 1:
        raise InvalidInputError("give at least one model to merge")
    dirs = [resolve_model(str(m))[1] for m in models]
    loaded = [load_sentence_transformer(d) for d in dirs]
    base_sd = load_sentence_transformer(resolve_model(str(base))[1]).state_dict() if base is not None else None
    learned = None
    if method == "self_positioning":
        from vecbox.train.positioning import learn_coefficients

        if base_sd is None or not probe:
            raise InvalidInputError("self_positioning needs the base model (base=...) and probe pairs (probe=...)")
        weights, curve = learn_coefficients(loaded[0], base_sd, [m.state_dict() for m in loaded], list(probe),
                                            steps=steps, seed=seed)
        learned = {"weights": [round(w, 6) for w in weights], "probe loss first/last": [curve[0], curve[-1]]
                   if curve else None, "probe pairs": len(probe), "steps": steps}
        method_used = "task_arithmetic"
    else:
        method_used = method
    merged = merge_state_dicts(method_used, [m.state_dict() for m in loaded], base=base_sd, weights=weights, t=t,
                               density=density, scaling=scaling)
    target = loaded[0]
    target.load_state_dict(merged)
    out = Path(out)
    target.save(str(out), safe_serialization=True)
    params = {"method": method, "models": [str(d) for d in dirs], "base": None if base is None else str(base),
              "weights": None if weights is None else list(weights)}
    params.update({"t": t} if method == "slerp" else {})
    params.update({"density": density} if method == "ties" else {})
    params.update({"scaling": scaling} if method in ("ties", "task_arithmetic") else {})
    params.update({"learned": learned} if learned else {})
    write_card(out, title="Merged model", sections={"Merge": params})
    return out


__all__ = ["METHODS", "linear", "merge_models", "merge_state_dicts", "slerp", "task_arithmetic", "ties"]
