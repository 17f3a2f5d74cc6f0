"""The model card of a trained or merged model: ``README.md`` for people, ``vecbox_train.json`` for tools.

>>> import json, pathlib
>>> _ = write_card(tmp, title="Tuned model", sections={"Training": {"loss": "starbucks", "steps": 10}})
>>> print((pathlib.Path(tmp) / "README.md").read_text().splitlines()[0])
# Tuned model
>>> json.loads((pathlib.Path(tmp) / "vecbox_train.json").read_text())["Training"]["steps"]
10
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CARD_FILE = "vecbox_train.json"


def _cell(v: Any) -> str:
    return json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v)


def write_card(directory: str | Path, *, title: str, sections: Mapping[str, Mapping[str, Any] | str]) -> Path:
    """Write ``README.md`` (a title, then one table or paragraph per section) and the same facts as JSON.

    The card replaces the one sentence-transformers writes; the model loads as before
    (``SentenceTransformer(directory)``, ``TextEncoder(directory)``, ``Collection.create(model=directory)``).
    It records the SHA-256 of ``model.safetensors`` and of any module's own weights (a late-interaction
    head's ``1_Dense/model.safetensors``); the card's JSON also keys the encoders' caches
    (:func:`vecbox.encoders._model.model_fingerprint`), so new weights never reuse old cached vectors.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {title}", "", f"Made by vecbox ({created}). Load it with `vecbox.TextEncoder(PATH)`, "
             f"`Collection.create(..., model=PATH)` or `sentence_transformers.SentenceTransformer(PATH)`.", ""]
    for name, body in sections.items():
        lines += [f"## {name}", ""]
        if isinstance(body, str):
            lines += [body, ""]
        else:
            lines += ["| | |", "| :--- | :--- |"] + [f"| {k} | {_cell(v)} |" for k, v in body.items()] + [""]
    weights = {f.relative_to(directory).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
               for f in sorted(directory.rglob("*.safetensors")) if "checkpoints" not in f.relative_to(directory).parts}
    digest = weights.get("model.safetensors")
    if weights:
        lines += ["Weights: " + "; ".join(f"`{name}`, SHA-256 `{sha}`" for name, sha in weights.items()) + ".", ""]
    path = directory / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    facts = {"title": title, "created": created, "weights_sha256": digest, "weights": weights, **sections}
    (directory / CARD_FILE).write_text(json.dumps(facts, indent=2, default=str), encoding="utf-8")
    return path


__all__ = ["CARD_FILE", "write_card"]
