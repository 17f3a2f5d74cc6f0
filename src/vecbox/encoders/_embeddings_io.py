"""Node labels and embeddings on disk: label files in, embedding files in and out.

- :func:`read_labels` reads ``node<TAB>label`` pairs (the input of node classification);
- :func:`save_embeddings` / :func:`load_embeddings` write and read ``(nodes, x)`` as
  ``.npy`` (plus a ``<stem>.nodes.json`` of ids) or Parquet (``id``, ``vector``), the
  layout :func:`vecbox.spark.fastrp` writes too.

Node ids follow the rules of :mod:`vecbox.encoders._graph_io` (integers stay integers,
text stays text).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vecbox._optional import require
from vecbox.encoders._graph_io import _as_id_array
from vecbox.errors import DatasetError, InvalidInputError


# --------------------------------------------------------------------------- labels
def read_labels(path: str | Path, unlabeled: Sequence[str] = ("-1",)) -> list[tuple[Any, str]]:
    """Read ``node<TAB>label`` pairs (one pair per line; a node may have several lines).

    Integer-like node ids are returned as int. Labels in ``unlabeled`` (the
    Planetoid convention ``-1``) mean "no label" and are skipped. A header line
    ``node<TAB>label`` is allowed.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"label file {path} does not exist")
    pairs: list[tuple[Any, str]] = []
    with open(path, encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split("\t") if "\t" in line else line.split(",") if "," in line else line.split()
            if len(fields) != 2:
                raise DatasetError(f"{path}, line {lineno}: expected 'node<TAB>label', got {line!r}")
            node, label = fields[0].strip(), fields[1].strip()
            if lineno == 1 and node.lower() in ("node", "id", "node_id") and label.lower() in ("label", "labels", "class"):
                continue
            if label in unlabeled:
                continue
            try:
                pairs.append((int(node), label))
            except ValueError:
                pairs.append((node, label))
    if not pairs:
        raise DatasetError(f"{path} has no labels; expected lines like '0<TAB>label'")
    return pairs


# --------------------------------------------------------------------------- embeddings
def _id_list(nodes: np.ndarray) -> list[Any]:
    vals = nodes.tolist()
    return [v if isinstance(v, (int, str)) and not isinstance(v, bool) else str(v) for v in vals]


def save_embeddings(path: str | Path, nodes: np.ndarray, x: np.ndarray) -> Path:
    """Write embeddings as ``.npy`` (plus ``<stem>.nodes.json`` with the ids) or ``.parquet`` (``id``, ``vector``).

    Ids that are neither int nor str are written as ``str(id)``. The Parquet layout is the
    one :func:`vecbox.spark.fastrp` writes, so both load with :func:`load_embeddings`.
    """
    import json

    path = Path(path)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if len(nodes) != len(x):
        raise InvalidInputError(f"got {len(nodes)} node ids for {len(x)} vectors; pass one id per row")
    ids = _id_list(np.asarray(nodes))
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        np.save(path, x, allow_pickle=False)
        path.with_suffix(".nodes.json").write_text(json.dumps(ids), encoding="utf-8")
    elif suffix in (".parquet", ".pq"):
        pa = require("pyarrow", "io", "writing Parquet")
        pq = require("pyarrow.parquet", "io", "writing Parquet")
        id_type = pa.int64() if all(isinstance(v, int) for v in ids) else pa.string()
        id_col = pa.array(ids if id_type == pa.int64() else [str(v) for v in ids], type=id_type)
        vec = pa.ListArray.from_arrays(pa.array(np.arange(0, x.size + 1, x.shape[1], dtype=np.int32)),
                                       pa.array(x.reshape(-1)))
        pq.write_table(pa.table({"id": id_col, "vector": vec}), path)
    else:
        raise InvalidInputError(f"cannot tell the format of {path}; use a .npy or .parquet file name")
    return path


def load_embeddings(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``(nodes, x)`` written by :func:`save_embeddings` or by Spark (a Parquet file or directory).

    A ``.npy`` file without its ``.nodes.json`` companion gets ids ``0..n-1``.
    """
    import json

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"embedding file {path} does not exist")
    if path.suffix.lower() == ".npy":
        x = np.load(path, allow_pickle=False)
        if x.ndim != 2:
            raise DatasetError(f"{path} holds an array of shape {x.shape}; expected (n_nodes, dim)")
        side = path.with_suffix(".nodes.json")
        ids = json.loads(side.read_text(encoding="utf-8")) if side.exists() else list(range(len(x)))
        if len(ids) != len(x):
            raise DatasetError(f"{side} lists {len(ids)} ids for {len(x)} vectors in {path}; rewrite both together")
        return _as_id_array(ids), np.ascontiguousarray(x, dtype=np.float32)
    pq = require("pyarrow.parquet", "io", "reading Parquet")
    try:
        table = pq.read_table(path, columns=["id", "vector"])
    except Exception as exc:
        raise DatasetError(f"cannot read embeddings from {path} (expected Parquet with 'id' and 'vector' columns): "
                           f"{exc}") from None
    vec = table.column("vector").combine_chunks()
    flat = vec.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    n = len(vec)
    if n == 0 or flat.size % n:
        raise DatasetError(f"{path}: vectors have different lengths or there are none")
    return _as_id_array(table.column("id").to_pylist()), flat.reshape(n, flat.size // n)
