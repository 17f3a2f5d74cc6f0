"""One data set's measured results kept as JSON (``--search-reuse``: a later run re-measures the other set only)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import _report as R
import numpy as np

from .data import Dataset, Filter

SAVED = R.cache_dir() / "bench-search"  # $VECBOX_CACHE_DIR or ~/.cache/vecbox


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def save_set(key: str, entry: dict[str, Any], funnel: dict[str, Any] | None, others_cpu: float | None) -> Path:
    """Keep one data set's measured results (JSON), so a later run can re-measure the other set only.

    ``others_cpu`` is the CPU share other processes took while it was measured: a later
    re-render reports that, not the load during the re-render.
    """
    ds = entry["ds"]
    data = {"label": entry["label"], "funnel": funnel,
            "ds": {"key": ds.key, "label": ds.label, "n": ds.n, "d": int(ds.x.shape[1]), "nq": len(ds.q),
                   "note": ds.note, "failures": ds.failures},
            "filters": [{"kind": f.kind, "target": f.target, "actual": f.actual} for f in entry["filters"]],
            "results": entry["results"], "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "others_cpu": others_cpu}
    SAVED.mkdir(parents=True, exist_ok=True)
    path = SAVED / f"{key}.json"
    path.write_text(json.dumps(_jsonable(data)), encoding="utf-8")
    return path


def load_set(key: str) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """A data set's results saved by :func:`save_set` (arrays are zero-size stand-ins of the right shape)."""
    path = SAVED / f"{key}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    d = data["ds"]
    zeros = np.zeros((1, 1), np.float32)
    ds = Dataset(d["key"], d["label"], np.broadcast_to(zeros, (d["n"], d["d"])),
                 np.broadcast_to(zeros, (d["nq"], d["d"])), {}, d["note"],
                 d["failures"] + [f"results of this set reused from the run of {data['measured']}"])
    filters = [Filter(f["kind"], f["target"], None, None, None, f["actual"]) for f in data["filters"]]
    return ({"label": data["label"], "ds": ds, "filters": filters, "results": data["results"],
             "reused_from": data["measured"], "others_cpu": data.get("others_cpu")}, data["funnel"])
