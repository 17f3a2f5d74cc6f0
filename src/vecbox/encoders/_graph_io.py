"""Graphs in, one sparse adjacency out: edge files, arrays, scipy matrices, networkx graphs.

:func:`as_graph` is the single gate for graph input. It returns a :class:`Graph`:
a float32 CSR adjacency whose row ``u`` holds the out-edges of node ``u`` (both
directions when the graph is undirected), plus the node ids in row order.

Rules, the same here and in :mod:`vecbox.spark.fastrp`:

- repeated edges add their weights; an undirected graph takes, for each pair,
  the larger of the two directions' weights (so a symmetric input is unchanged
  and an input that lists each edge once, ``u < v``, is mirrored);
- weights must be finite and non-negative (missing weight column: all 1); edges whose
  weight is 0 are dropped;
- self-loops are an error unless ``self_loops="drop"`` or ``"keep"``;
- node ids are kept as given (integers stay integers, text stays text) and are
  mapped back on output: the integer 5 and the string ``"5"`` are different nodes.

Label files and embeddings on disk are read and written by :mod:`vecbox.encoders._embeddings_io`.
"""

from __future__ import annotations

import csv
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from vecbox._optional import require
from vecbox.errors import DatasetError, InvalidInputError

SRC_NAMES = ("src", "source", "from", "u", "node1", "head")
DST_NAMES = ("dst", "target", "to", "v", "node2", "tail")
WEIGHT_NAMES = ("weight", "w", "value")
SELF_LOOP_POLICIES = ("error", "drop", "keep")


@dataclass(frozen=True)
class Graph:
    """A graph as FastRP sees it.

    Attributes
    ----------
    adjacency : scipy.sparse.csr_matrix, float32, shape (n, n)
        ``adjacency[u, v]`` is the weight of the edge u -> v; symmetric when undirected.
    nodes : ndarray, shape (n,)
        Node id of each row (int64 for integer ids, else object).
    directed : bool
    """

    adjacency: sp.csr_matrix
    nodes: np.ndarray
    directed: bool

    @property
    def n_nodes(self) -> int:
        return int(self.adjacency.shape[0])

    @property
    def n_edges(self) -> int:
        """Number of edges (an undirected edge counts once; a self-loop once)."""
        nnz = int(self.adjacency.nnz)
        if self.directed:
            return nnz
        loops = int(np.count_nonzero(self.adjacency.diagonal()))
        return (nnz - loops) // 2 + loops

    def index(self, ids: Iterable[Hashable], what: str = "node") -> np.ndarray:
        """Row positions of ``ids``; raises :class:`InvalidInputError` naming the first unknown id."""
        return node_index(self.nodes, ids, what=what)


@dataclass(frozen=True)
class EdgeList:
    """Columns of an edge list, as read from a file (``weight`` is None when absent)."""

    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray | None


# --------------------------------------------------------------------------- reading files
def read_edges(
    path: str | Path,
    *,
    src: str | None = None,
    dst: str | None = None,
    weight: str | None = None,
    header: bool | None = None,
    delimiter: str | None = None,
) -> EdgeList:
    """Read an edge list from a TSV, CSV or Parquet file.

    Text files may have a header row (detected when its fields are known column
    names such as ``src,dst,weight`` / ``source,target``, or are all text above a
    row of numeric ids; or forced with ``header=True``); without one, the columns
    are ``src, dst[, weight]`` in that order. Lines starting with ``#`` at the top are skipped. Integer ids are read
    as int64, anything else as text.

    Raises
    ------
    DatasetError
        The file is missing, unreadable, or lacks a source/target column.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"edge file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        columns = _read_parquet(path)
        has_header = True
    else:
        columns, has_header = _read_text(path, header=header, delimiter=delimiter)
    names = list(columns)
    if has_header:
        s = _pick(names, src, SRC_NAMES, "source", path)
        d = _pick(names, dst, DST_NAMES, "target", path)
        w = _pick(names, weight, WEIGHT_NAMES, "weight", path, required=weight is not None)
    else:
        if src or dst or weight:
            raise DatasetError(f"{path} has no header row, so src=/dst=/weight= cannot name columns; "
                               "add a header (e.g. 'src<TAB>dst<TAB>weight') or leave them out")
        if len(names) < 2:
            raise DatasetError(f"{path} has {len(names)} column(s); an edge list needs 'src' and 'dst' columns "
                               "(and optionally 'weight'), e.g. lines like '0<TAB>1'")
        if len(names) > 3:
            raise DatasetError(f"{path} has {len(names)} columns and no header; expected 2 or 3 (src, dst[, weight]). "
                               "Add a header row naming the columns")
        s, d, w = names[0], names[1], (names[2] if len(names) == 3 else None)
    wcol = None
    if w is not None:
        try:
            wcol = np.asarray(columns[w], dtype=np.float64)
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: weight column {w!r} is not numeric; weights must be numbers") from None
    return EdgeList(_ids(columns[s]), _ids(columns[d]), wcol)


def _pick(names: list[str], given: str | None, candidates: Sequence[str], role: str, path: Path,
          required: bool = True) -> str | None:
    lower = {n.lower(): n for n in names}
    if given is not None:
        if given not in names and given.lower() not in lower:
            raise DatasetError(f"{path} has no column {given!r}; its columns are {names}")
        return given if given in names else lower[given.lower()]
    for cand in candidates:
        if cand in lower:
            return lower[cand]
    if not required and role == "weight":
        return None
    raise DatasetError(
        f"{path} has columns {names} but no {role} column; name it one of {list(candidates)} "
        f"or pass {'src' if role == 'source' else 'dst'}=<column>"
    )


def _ids(col: Any) -> np.ndarray:
    arr = np.asarray(col)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f":
        if np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            return arr.astype(np.int64)
        return arr.astype(object)
    return arr.astype(object)


def _read_parquet(path: Path) -> dict[str, Any]:
    pq = require("pyarrow.parquet", "io", "reading Parquet edge lists")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise DatasetError(f"cannot read {path} as Parquet: {exc}") from None
    out = {}
    for name in table.column_names:
        col = table.column(name)
        out[name] = col.to_numpy(zero_copy_only=False) if col.null_count == 0 else _null_error(path, name, col)
    return out


def _null_error(path: Path, name: str, col: Any) -> None:
    raise DatasetError(f"{path}: column {name!r} has {col.null_count} missing value(s); fill or drop those rows")


def _sniff(path: Path, delimiter: str | None) -> tuple[int, list[str], list[str] | None, str]:
    """Comment lines to skip, the first two data rows' fields, and the delimiter."""
    skip, rows = 0, []
    with open(path, encoding="utf-8-sig") as fh:
        for line in fh:
            if not rows and (line.startswith("#") or not line.strip()):
                skip += 1
                continue
            rows.append(line.rstrip("\r\n"))
            if len(rows) == 2:
                break
    if not rows:
        raise DatasetError(f"{path} has no edges; expected lines like 'src<TAB>dst[<TAB>weight]'")
    first = rows[0]
    if delimiter is None:
        suffix = path.suffix.lower()
        delimiter = "\t" if suffix == ".tsv" else "," if suffix == ".csv" else (
            "\t" if "\t" in first else "," if "," in first else " ")
    second = rows[1].split(delimiter) if len(rows) > 1 else None
    return skip, first.split(delimiter), second, delimiter


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _looks_like_header(fields: list[str], second: list[str] | None) -> bool:
    """Known column names, or a text-only first row above a row with numeric ids."""
    known = set(SRC_NAMES + DST_NAMES + WEIGHT_NAMES)
    if any(f.strip().lower() in known for f in fields):
        return True
    if any(_is_number(f) for f in fields):
        return False
    return second is not None and any(_is_number(f) for f in second[:2])


def _read_text(path: Path, header: bool | None, delimiter: str | None) -> tuple[dict[str, Any], bool]:
    skip, fields, second, delimiter = _sniff(path, delimiter)
    if header is None:
        header = _looks_like_header(fields, second)
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError:
        return _read_text_python(path, skip, header, delimiter), header
    names = [f.strip() for f in fields] if header else [f"f{i}" for i in range(len(fields))]
    read = pacsv.ReadOptions(skip_rows=skip + (1 if header else 0), column_names=names)
    parse = pacsv.ParseOptions(delimiter=delimiter)
    try:
        table = pacsv.read_csv(path, read_options=read, parse_options=parse)
    except (pa.ArrowInvalid, ValueError) as exc:
        raise DatasetError(f"cannot parse {path}: {exc}. Every line needs the same columns "
                           f"({len(names)}, separated by {delimiter!r})") from None
    out = {}
    for name in table.column_names:
        col = table.column(name)
        if col.null_count:
            _null_error(path, name, col)
        out[name] = col.to_numpy()
    return out, header


def _read_text_python(path: Path, skip: int, header: bool, delimiter: str) -> dict[str, Any]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = [r for i, r in enumerate(csv.reader(fh, delimiter=delimiter)) if i >= skip and r]
    names = [f.strip() for f in rows[0]] if header else [f"f{i}" for i in range(len(rows[0]))]
    body = rows[1:] if header else rows
    for lineno, r in enumerate(body, skip + 1 + header):
        if len(r) != len(names):
            raise DatasetError(f"{path}, line {lineno}: {len(r)} fields, expected {len(names)}")
    out: dict[str, Any] = {}
    for j, name in enumerate(names):
        vals = [r[j] for r in body]
        try:
            out[name] = np.array([int(x) for x in vals], dtype=np.int64)
        except ValueError:
            try:
                out[name] = np.array([float(x) for x in vals])
            except ValueError:
                out[name] = np.array(vals, dtype=object)
    return out


# --------------------------------------------------------------------------- building graphs
def as_graph(
    data: Any,
    *,
    directed: bool = False,
    nodes: Iterable[Hashable] | None = None,
    self_loops: str = "error",
) -> Graph:
    """Build a :class:`Graph` from any supported input.

    Parameters
    ----------
    data : Graph, path, EdgeList, ndarray, tuple, scipy sparse matrix, networkx graph, or DataFrame
        - a path to a ``.tsv``/``.csv``/``.txt``/``.parquet`` edge list (see :func:`read_edges`);
        - a numpy array of shape ``(m, 2)`` or ``(m, 3)``: one edge per row, ``src, dst[, weight]``
          (wrap a dense adjacency matrix in ``scipy.sparse.csr_matrix`` instead);
        - a tuple ``(src, dst)`` or ``(src, dst, weight)`` of equal-length sequences;
        - a square scipy sparse matrix: nodes are ``0..n-1``;
        - a networkx ``Graph``/``DiGraph`` (``directed`` follows the graph; weights from the
          ``"weight"`` attribute, default 1);
        - a DataFrame-like object with ``src``/``dst`` (or ``source``/``target``) columns.
    directed : bool
        Treat edges as directed (row u aggregates u's out-neighbours). Default: undirected.
    nodes : iterable, optional
        Extra node ids (e.g. isolated nodes that appear in no edge); they get rows too.
    self_loops : {"error", "drop", "keep"}

    Examples
    --------
    >>> g = as_graph(np.array([[0, 1], [1, 2]]))
    >>> g.adjacency.toarray().tolist(), g.nodes.tolist(), g.n_edges
    ([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], [0, 1, 2], 2)
    """
    if isinstance(data, Graph):
        return data
    if self_loops not in SELF_LOOP_POLICIES:
        raise InvalidInputError(f"self_loops must be one of {SELF_LOOP_POLICIES}; got {self_loops!r}")
    if not isinstance(directed, (bool, np.bool_)):
        raise InvalidInputError(f"directed must be True or False; got {directed!r}")
    if sp.issparse(data):
        return _from_matrix(data, directed, nodes, self_loops)
    if _is_networkx(data):
        directed = bool(data.is_directed())
        order = list(data.nodes)
        src, dst, w = [], [], []
        for u, v, wt in data.edges(data="weight", default=1.0):
            src.append(u)
            dst.append(v)
            w.append(wt)
        extra = order if nodes is None else [*order, *nodes]
        return from_edges(_as_id_array(src), _as_id_array(dst), np.asarray(w, dtype=np.float64),
                          directed=directed, nodes=extra, self_loops=self_loops)
    if isinstance(data, (str, Path)):
        data = read_edges(data)
    if isinstance(data, EdgeList):
        return from_edges(data.src, data.dst, data.weight, directed=directed, nodes=nodes, self_loops=self_loops)
    if hasattr(data, "columns") and not isinstance(data, np.ndarray):
        names = [str(c) for c in data.columns]
        s = _pick(names, None, SRC_NAMES, "source", Path("<dataframe>"))
        d = _pick(names, None, DST_NAMES, "target", Path("<dataframe>"))
        w = _pick(names, None, WEIGHT_NAMES, "weight", Path("<dataframe>"), required=False)
        return from_edges(_ids(np.asarray(data[s])), _ids(np.asarray(data[d])),
                          None if w is None else np.asarray(data[w], dtype=np.float64),
                          directed=directed, nodes=nodes, self_loops=self_loops)
    if isinstance(data, tuple) and len(data) in (2, 3):
        src, dst = _as_id_array(data[0]), _as_id_array(data[1])
        w = None if len(data) == 2 else _weights(data[2])
        return from_edges(src, dst, w, directed=directed, nodes=nodes, self_loops=self_loops)
    if isinstance(data, (np.ndarray, list)):
        arr = np.asarray(data)
        if arr.ndim != 2 or arr.shape[1] not in (2, 3):
            raise InvalidInputError(
                f"an edge array must have shape (m, 2) or (m, 3) (src, dst[, weight]); got shape {arr.shape}. "
                "For a dense adjacency matrix pass scipy.sparse.csr_matrix(matrix)"
            )
        if arr.dtype.kind == "f" and arr.shape[1] == 3:
            src, dst, w = _ids(arr[:, 0]), _ids(arr[:, 1]), arr[:, 2].astype(np.float64)
        else:
            src, dst = _ids(arr[:, 0]), _ids(arr[:, 1])
            w = _weights(arr[:, 2]) if arr.shape[1] == 3 else None
        return from_edges(src, dst, w, directed=directed, nodes=nodes, self_loops=self_loops)
    raise InvalidInputError(
        f"cannot read a graph from {type(data).__name__}; pass an edge file path, an (m, 2|3) array, "
        "a (src, dst[, weight]) tuple, a square scipy.sparse matrix or a networkx graph"
    )


def _is_networkx(obj: Any) -> bool:
    return type(obj).__module__.startswith("networkx") and hasattr(obj, "is_directed")


def _as_id_array(seq: Any) -> np.ndarray:
    arr = np.asarray(seq) if not isinstance(seq, np.ndarray) else seq
    if arr.ndim != 1:
        arr = np.empty(len(seq), dtype=object)
        arr[:] = list(seq)
    if arr.dtype.kind in "iuf":
        return _ids(arr)
    out = np.empty(len(arr), dtype=object)
    out[:] = list(seq)
    return out


def _weights(w: Any) -> np.ndarray:
    try:
        return np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError("edge weights must be numbers") from None


def _check_weights(w: np.ndarray) -> None:
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidInputError(
            f"{int(bad.sum())} edge weight(s) are negative or not finite (first: edge {i} has weight {float(w[i])!r}); "
            "FastRP needs finite weights >= 0 - fix or drop those edges"
        )


def _loop_error(n_loops: int, example: Any) -> InvalidInputError:
    example = example.item() if isinstance(example, np.generic) else example
    return InvalidInputError(
        f"the graph has {n_loops} self-loop(s) (first: {example!r} -> {example!r}); FastRP expects none. "
        "Remove them or pass self_loops='drop' (or 'keep' to let a node count itself as a neighbour)"
    )


def from_edges(
    src: np.ndarray,
    dst: np.ndarray,
    weight: np.ndarray | None = None,
    *,
    directed: bool = False,
    nodes: Iterable[Hashable] | None = None,
    self_loops: str = "error",
) -> Graph:
    """Build a :class:`Graph` from edge columns (see :func:`as_graph` for the rules)."""
    if len(src) != len(dst):
        raise InvalidInputError(f"src has {len(src)} entries but dst has {len(dst)}; pass one of each per edge")
    if weight is not None:
        weight = np.asarray(weight, dtype=np.float64)
        if len(weight) != len(src):
            raise InvalidInputError(f"got {len(weight)} weights for {len(src)} edges; pass one weight per edge")
        _check_weights(weight)
    extra = None if nodes is None else _as_id_array(list(nodes))
    node_ids, codes = _factorize([src, dst] + ([extra] if extra is not None else []))
    n = len(node_ids)
    if n == 0:
        raise InvalidInputError("the graph has no nodes; pass at least one edge")
    rows, cols = codes[0], codes[1]
    loops = rows == cols
    if loops.any():
        if self_loops == "error":
            raise _loop_error(int(loops.sum()), node_ids[rows[np.flatnonzero(loops)[0]]])
        if self_loops == "drop":
            keep = ~loops
            rows, cols = rows[keep], cols[keep]
            weight = None if weight is None else weight[keep]
    data = np.ones(len(rows), dtype=np.float32) if weight is None else weight.astype(np.float32)
    adj = sp.csr_matrix((data, (rows, cols)), shape=(n, n), dtype=np.float32)  # duplicates add up
    if not directed:
        adj = adj.maximum(adj.T.tocsr()).tocsr()
    adj.sum_duplicates()
    adj.eliminate_zeros()
    adj.sort_indices()
    return Graph(adj, node_ids, bool(directed))


def _from_matrix(m: Any, directed: bool, nodes: Iterable[Hashable] | None, self_loops: str) -> Graph:
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise InvalidInputError(f"an adjacency matrix must be square; got shape {m.shape}")
    adj = sp.csr_matrix(m, dtype=np.float32)
    adj.sum_duplicates()
    if adj.nnz:
        _check_weights(adj.data.astype(np.float64))
    node_ids = np.arange(adj.shape[0], dtype=np.int64)
    if nodes is not None:
        given = _as_id_array(list(nodes))
        if len(given) != adj.shape[0]:
            raise InvalidInputError(f"nodes has {len(given)} ids for a {adj.shape[0]}x{adj.shape[0]} matrix; "
                                    "pass one id per row")
        node_ids = given
    diag = adj.diagonal()
    if np.any(diag != 0):
        if self_loops == "error":
            raise _loop_error(int(np.count_nonzero(diag)), node_ids[int(np.flatnonzero(diag)[0])])
        if self_loops == "drop":
            adj.setdiag(0)
            adj.eliminate_zeros()
    if not directed:
        adj = adj.maximum(adj.T.tocsr()).tocsr()
    adj.eliminate_zeros()
    adj.sort_indices()
    return Graph(adj, node_ids, bool(directed))


def _factorize(parts: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Unique node ids (sorted for integer ids, else first-appearance order) and each part's codes."""
    if all(p.dtype.kind in "iu" for p in parts):
        allv = np.concatenate([p.astype(np.int64, copy=False) for p in parts])
        uniq, inv = np.unique(allv, return_inverse=True)
        out, start = [], 0
        for p in parts:
            out.append(inv[start:start + len(p)].astype(np.int64))
            start += len(p)
        return uniq, out
    index: dict[Any, int] = {}
    out = []
    for p in parts:
        codes = np.empty(len(p), dtype=np.int64)
        for i, v in enumerate(p.tolist()):
            j = index.get(v)
            if j is None:
                j = index.setdefault(v, len(index))
            codes[i] = j
        out.append(codes)
    ids = np.empty(len(index), dtype=object)
    ids[:] = list(index)
    return ids, out


def node_index(nodes: np.ndarray, ids: Iterable[Hashable], what: str = "node") -> np.ndarray:
    """Positions of ``ids`` in ``nodes``; integer-like text ids match integer nodes and vice versa."""
    ids = list(ids)
    lookup = {v: i for i, v in enumerate(nodes.tolist())}
    out = np.empty(len(ids), dtype=np.int64)
    text = None
    for k, v in enumerate(ids):
        v = v.item() if isinstance(v, np.generic) else v
        j = lookup.get(v)
        if j is None:
            if text is None:
                text = {str(n): i for i, n in enumerate(nodes.tolist())}
            j = text.get(str(v))
        if j is None:
            raise InvalidInputError(
                f"unknown {what} {v!r}: it is not one of the graph's {len(nodes):,} nodes "
                f"(e.g. {nodes[:3].tolist()}); check that the ids refer to the same graph"
            )
        out[k] = j
    return out
