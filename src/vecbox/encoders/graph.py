"""FastRP graph node embeddings (very sparse random projection), on scipy.sparse in float32.

Two variants, chosen with ``variant=``:

``"reference"`` - the FastRP paper's code (Chen et al., CIKM 2019, ``GTmac/FastRP:fastrp.py``):

1. ``M = D⁻¹A`` (row-stochastic transition matrix; ``D`` = weighted out-degree);
2. ``R`` (n x d): each entry ``±sqrt(s/d)`` with probability ``1/(2s)`` each, else 0,
   with ``s = sqrt(n)`` (density ``1/sqrt(n)``, scikit-learn's ``density="auto"``);
3. ``N₁ = M · diag(deg^β) · R`` and ``Nᵢ = M · Nᵢ₋₁`` (a node of degree 0 keeps factor 1);
4. ``U = Σᵢ αᵢ · rownorm(Nᵢ)`` (``normalize=True``: each hop L2-normalised row by row,
   while the iteration itself carries the unnormalised ``Nᵢ``);
5. every column of ``U`` standardised to mean 0, variance 1 (``sklearn.preprocessing.scale``).

``"gds"`` - Neo4j Graph Data Science's FastRP: ``R`` with ``s = 3`` scaled per node by
``deg^β`` (``normalizationStrength``, unweighted degree), optional node features projected
into the last ``property_ratio · dim`` coordinates, hops ``Xᵢ = rownorm(A · Xᵢ₋₁)``
(averaged neighbours, L2-normalised in place), output ``w₀·R/‖R‖ + Σᵢ αᵢ Xᵢ``
(``w₀`` = ``node_self_influence``) and no standardisation.

The random row of a node is a pure function of ``(seed, node id)`` - a SplitMix64 stream
keyed by a 64-bit hash of the id - so an embedding does not depend on node order or on
where it is computed: :func:`vecbox.spark.fastrp` gives the same numbers on Spark.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from vecbox._validation import check_positive_int
from vecbox.encoders._embeddings_io import load_embeddings, read_labels, save_embeddings
from vecbox.encoders._graph_io import EdgeList, Graph, as_graph, from_edges, read_edges
from vecbox.errors import InvalidInputError

VARIANTS = ("reference", "gds")
DEFAULT_WEIGHTS = {"reference": (0.0, 0.0, 1.0, 6.67), "gds": (0.0, 1.0, 1.0)}
DEFAULT_BETA = {"reference": -0.64, "gds": 0.0}
GDS_SPARSITY = 3
_MASK64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_CHUNK = 1 << 16


# --------------------------------------------------------------------------- hashing
def _splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function applied to ``z + golden`` (uint64 arrays, wrapping arithmetic)."""
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _blake(tag: bytes, data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(tag + data, digest_size=8).digest(), "little")


def node_key(node: Hashable) -> int:
    """The stable 64-bit key of one node id (integers: the value itself modulo 2**64).

    Text is keyed by BLAKE2b of its UTF-8 bytes, tuples by their parts' keys, so the
    key never depends on the process (unlike ``hash()``) or the machine.

    >>> node_key(5), node_key(-1) == 2**64 - 1, node_key("a") == node_key("a")
    (5, True, True)
    """
    if isinstance(node, (bool, int, np.integer)):
        return int(node) & _MASK64
    if isinstance(node, str):
        return _blake(b"s:", node.encode("utf-8"))
    if isinstance(node, bytes):
        return _blake(b"b:", node)
    if isinstance(node, (float, np.floating)):
        return int(node) & _MASK64 if float(node).is_integer() else _blake(b"f:", repr(float(node)).encode())
    if isinstance(node, tuple):
        return _blake(b"t:", b"".join(node_key(x).to_bytes(8, "little") for x in node))
    text = repr(node)
    if " at 0x" in text:
        raise InvalidInputError(
            f"node id {text} has no stable value (its repr shows a memory address); "
            "use ints, strings or tuples of them as node ids"
        )
    return _blake(f"r:{type(node).__qualname__}:".encode(), text.encode("utf-8"))


def node_keys(nodes: Any) -> np.ndarray:
    """Stable uint64 keys of node ids (vectorised for integer arrays)."""
    arr = np.asarray(nodes) if not isinstance(nodes, np.ndarray) else nodes
    if arr.dtype.kind in "iu":
        return arr.astype(np.uint64)
    if arr.dtype.kind == "U":
        arr = arr.astype(object)
    return np.fromiter((node_key(v) for v in arr.tolist()), dtype=np.uint64, count=len(arr))


def sparse_projection(keys: np.ndarray, dim: int, density: float, value: float, seed: int,
                      stream: int = 0) -> np.ndarray:
    """Very sparse random rows, one per key: ``+value`` / ``-value`` with probability ``density/2`` each.

    Row ``i`` depends only on ``(seed, stream, keys[i])``: it is the SplitMix64 sequence
    started at ``splitmix64(keys[i] ^ splitmix64(seed ^ stream·φ))``; each 64-bit output
    gives two 32-bit uniforms, one per column. Returns float32 of shape ``(len(keys), dim)``.
    """
    keys = np.asarray(keys, dtype=np.uint64)
    n, pairs = len(keys), (dim + 1) // 2
    half = np.uint64(min(int(density / 2 * 2**32), 2**31))
    salt = _splitmix64(np.array([(int(seed) ^ (int(stream) * 0x9E3779B97F4A7C15)) & _MASK64], dtype=np.uint64))[0]
    steps = (np.arange(1, pairs + 1, dtype=np.uint64) * _GOLDEN)[None, :]
    out = np.empty((n, dim), dtype=np.float32)
    v = np.float32(value)
    for start in range(0, n, _CHUNK):
        base = _splitmix64(keys[start:start + _CHUNK] ^ salt)
        h = _splitmix64(base[:, None] + steps)  # (rows, pairs)
        u = np.empty((len(base), 2 * pairs), dtype=np.uint64)
        u[:, 0::2] = h & np.uint64(0xFFFFFFFF)
        u[:, 1::2] = h >> np.uint64(32)
        u = u[:, :dim]
        block = np.zeros(u.shape, dtype=np.float32)
        block[u < half] = v
        block[(u >= half) & (u < half + half)] = -v
        out[start:start + len(base)] = block
    return out


# --------------------------------------------------------------------------- row operations
def l2_normalize_rows(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), like ``sklearn.preprocessing.normalize``."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
    norms[norms == 0] = 1.0
    return np.divide(x, norms[:, None].astype(x.dtype), out=out)


def standardize_columns(x: np.ndarray) -> np.ndarray:
    """In place: each column to mean 0, variance 1 (population std; constant columns only centred)."""
    mean, std = column_stats(x)
    for start in range(0, len(x), _CHUNK):
        blk = x[start:start + _CHUNK]
        blk -= mean.astype(np.float32)
        blk /= std.astype(np.float32)
    return x


def column_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and population standard deviations in float64 (std ~0 -> 1, as scikit-learn)."""
    s = np.zeros(x.shape[1])
    ss = np.zeros(x.shape[1])
    for start in range(0, len(x), _CHUNK):
        blk = x[start:start + _CHUNK].astype(np.float64)
        s += blk.sum(axis=0)
        ss += np.einsum("ij,ij->j", blk, blk)
    return finish_stats(s, ss, len(x))


def finish_stats(s: np.ndarray, ss: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Means and stds from column sums ``s`` and sums of squares ``ss`` over ``n`` rows."""
    mean = s / n
    var = np.maximum(ss / n - mean * mean, 0.0)
    std = np.sqrt(var)
    std[std < 10 * np.finfo(np.float64).eps] = 1.0
    return mean, std


def degree_scale(deg: np.ndarray, beta: float) -> np.ndarray:
    """``deg ** beta`` as float32, with 1 for degree 0 (as Neo4j GDS; the paper's code divides by zero)."""
    deg = np.asarray(deg, dtype=np.float64)
    out = np.ones(len(deg))
    pos = deg > 0
    out[pos] = deg[pos] ** beta
    return out.astype(np.float32)


# --------------------------------------------------------------------------- the estimator
class FastRP:
    """FastRP node embeddings, scikit-learn style.

    Parameters
    ----------
    dim : int
        Embedding width ``d``.
    weights : sequence of float, optional
        Iteration weights ``α₁…α_q`` (one per hop). Default: ``(0, 0, 1, 6.67)`` for
        ``"reference"`` (the paper's BlogCatalog setting) and ``(0, 1, 1)`` for ``"gds"``.
    beta : float, optional
        Degree exponent ``β`` (GDS: ``normalizationStrength``). Default ``-0.64`` / ``0``.
    seed : int
        Seed of the random projection (0 <= seed < 2**64).
    variant : {"reference", "gds"}
    normalize : bool
        Reference variant: L2-normalise each hop's rows before weighting them (the paper's
        ``normalization=True``). GDS always normalises.
    node_self_influence : float
        GDS only: weight of each node's own (normalised) random vector in the output.
    property_ratio : float
        GDS only: share of the ``dim`` coordinates reserved for projected node features
        (needs ``features=`` in :meth:`fit`).
    directed : bool
        Read edge lists as directed (each node aggregates its out-neighbours).
    self_loops : {"error", "drop", "keep"}
        What to do with edges u -> u.

    Attributes
    ----------
    embedding_ : ndarray, float32, shape (n_nodes, dim)
    nodes_ : ndarray, shape (n_nodes,)
        Node id of each row of ``embedding_``.
    weights_, beta_, density_ : the values used
    n_nodes_, n_edges_ : int

    Examples
    --------
    >>> import numpy as np
    >>> edges = np.array([[0, 1], [1, 2], [2, 0], [2, 3]])
    >>> model = FastRP(dim=8, weights=[1.0, 1.0], beta=0.0, seed=7)
    >>> model.fit_transform(edges).shape, model.nodes_.tolist()
    ((4, 8), [0, 1, 2, 3])
    """

    def __init__(
        self,
        dim: int = 128,
        *,
        weights: Sequence[float] | None = None,
        beta: float | None = None,
        seed: int = 0,
        variant: str = "reference",
        normalize: bool = True,
        node_self_influence: float = 0.0,
        property_ratio: float = 0.0,
        directed: bool = False,
        self_loops: str = "error",
    ) -> None:
        self.dim = dim
        self.weights = weights
        self.beta = beta
        self.seed = seed
        self.variant = variant
        self.normalize = normalize
        self.node_self_influence = node_self_influence
        self.property_ratio = property_ratio
        self.directed = directed
        self.self_loops = self_loops

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters (scikit-learn's contract)."""
        names = ("dim", "weights", "beta", "seed", "variant", "normalize", "node_self_influence",
                 "property_ratio", "directed", "self_loops")
        return {k: getattr(self, k) for k in names}

    def set_params(self, **params: Any) -> "FastRP":
        for k, v in params.items():
            if k not in self.get_params():
                raise InvalidInputError(f"FastRP has no parameter {k!r}; valid: {sorted(self.get_params())}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"FastRP({args})"

    def fit(self, graph: Any, *, nodes: Iterable[Hashable] | None = None,
            features: Any = None) -> "FastRP":
        """Compute the embeddings of every node of ``graph`` (see :func:`as_graph` for inputs).

        ``nodes`` adds ids absent from the edges (isolated nodes). ``features`` (GDS only)
        is a mapping ``{node: vector}`` or an array with one row per node when the
        node ids are ``0..n-1``.
        """
        p = resolve_params(self.get_params())
        g = as_graph(graph, directed=p["directed"], nodes=nodes, self_loops=p["self_loops"])
        feats = None
        if features is not None:
            if p["variant"] != "gds":
                raise InvalidInputError("features= needs variant='gds' (the paper's FastRP uses structure only)")
            feats = _feature_matrix(features, g)
        if feats is None and p["property_ratio"] > 0:
            raise InvalidInputError("property_ratio > 0 needs features=; pass node features or set property_ratio=0")
        keys = node_keys(g.nodes)
        if p["variant"] == "reference":
            x, density = fastrp_reference(g.adjacency, keys, p["dim"], p["weights"], p["beta"], p["seed"],
                                          normalize=p["normalize"])
        else:
            x, density = fastrp_gds(g.adjacency, keys, p["dim"], p["weights"], p["beta"], p["seed"],
                                    node_self_influence=p["node_self_influence"],
                                    property_ratio=p["property_ratio"], features=feats)
        self.embedding_ = x
        self.nodes_ = g.nodes
        self.n_nodes_ = g.n_nodes
        self.n_edges_ = g.n_edges
        self.weights_ = tuple(p["weights"])
        self.beta_ = p["beta"]
        self.density_ = density
        return self

    def fit_transform(self, graph: Any, *, nodes: Iterable[Hashable] | None = None,
                      features: Any = None) -> np.ndarray:
        """:meth:`fit`, then return ``embedding_`` (float32, one row per entry of ``nodes_``)."""
        return self.fit(graph, nodes=nodes, features=features).embedding_

    def embeddings(self) -> dict[Hashable, np.ndarray]:
        """``{node id: vector}`` (a convenience for small graphs)."""
        if not hasattr(self, "embedding_"):
            raise InvalidInputError("this FastRP is not fitted yet; call fit(graph) first")
        return dict(zip(self.nodes_.tolist(), self.embedding_))


def resolve_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate FastRP parameters and fill the variant's defaults (shared with the Spark version)."""
    variant = params.get("variant", "reference")
    if variant not in VARIANTS:
        raise InvalidInputError(f"variant must be one of {VARIANTS}; got {variant!r}")
    dim = check_positive_int(params.get("dim"), "dim")
    weights = params.get("weights")
    weights = DEFAULT_WEIGHTS[variant] if weights is None else weights
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Iterable):
        raise InvalidInputError(f"weights must be a list of numbers (one per hop), e.g. [0, 0, 1, 6.67]; got {weights!r}")
    weights = list(weights)
    if not weights or not all(_finite(w) for w in weights):
        raise InvalidInputError(f"weights must be a non-empty list of finite numbers (one per hop); got {weights!r}")
    beta = DEFAULT_BETA[variant] if params.get("beta") is None else params["beta"]
    if not _finite(beta):
        raise InvalidInputError(f"beta must be a finite number (degree exponent, e.g. -0.64); got {beta!r}")
    seed = params.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**64:
        raise InvalidInputError(f"seed must be an integer in [0, 2**64); got {seed!r}")
    for flag in ("normalize", "directed"):
        if not isinstance(params.get(flag, False), (bool, np.bool_)):
            raise InvalidInputError(f"{flag} must be True or False; got {params[flag]!r}")
    self_influence = params.get("node_self_influence", 0.0)
    if not _finite(self_influence):
        raise InvalidInputError(f"node_self_influence must be a finite number; got {self_influence!r}")
    ratio = params.get("property_ratio", 0.0)
    if not _finite(ratio) or not 0 <= ratio < 1:
        raise InvalidInputError(f"property_ratio must be in [0, 1); got {ratio!r}")
    if variant == "reference" and (self_influence != 0 or ratio != 0):
        raise InvalidInputError("node_self_influence and property_ratio are GDS options; pass variant='gds'")
    if ratio > 0 and int(dim * ratio) < 1:
        raise InvalidInputError(f"property_ratio={ratio} of dim={dim} leaves no coordinate for features; raise either")
    return {"dim": dim, "weights": [float(w) for w in weights], "beta": float(beta), "seed": int(seed),
            "variant": variant, "normalize": bool(params.get("normalize", True)),
            "node_self_influence": float(self_influence), "property_ratio": float(ratio),
            "directed": bool(params.get("directed", False)), "self_loops": params.get("self_loops", "error")}


def _finite(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(v)


def _feature_matrix(features: Any, g: Graph) -> np.ndarray:
    if isinstance(features, Mapping):
        rows = g.index(features.keys(), what="node in features")
        vals = np.asarray([np.asarray(v, dtype=np.float32).reshape(-1) for v in features.values()])
        out = np.zeros((g.n_nodes, vals.shape[1]), dtype=np.float32)
        out[rows] = vals
    else:
        out = np.asarray(features, dtype=np.float32)
        if out.ndim == 1:
            out = out[:, None]
        if out.shape[0] != g.n_nodes or not (g.nodes.dtype.kind == "i" and np.array_equal(g.nodes, np.arange(g.n_nodes))):
            raise InvalidInputError(
                f"features has {out.shape[0]} rows for {g.n_nodes} nodes; an array needs node ids 0..n-1 "
                "and one row per node - otherwise pass a dict {node: vector}"
            )
    if not np.isfinite(out).all():
        raise InvalidInputError("features contain NaN or infinite values; fill them first")
    return out


# --------------------------------------------------------------------------- the two algorithms
def transition_matrix(adj: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """``D⁻¹A`` (rows of out-degree 0 stay zero) and the weighted out-degrees."""
    deg = np.asarray(adj.sum(axis=1, dtype=np.float64)).ravel()
    inv = np.zeros_like(deg)
    inv[deg > 0] = 1.0 / deg[deg > 0]
    m = adj.copy()
    m.data = (m.data * np.repeat(inv, np.diff(m.indptr))).astype(np.float32)
    return m, deg


def fastrp_reference(adj: sp.csr_matrix, keys: np.ndarray, dim: int, weights: Sequence[float], beta: float,
                     seed: int, normalize: bool = True) -> tuple[np.ndarray, float]:
    """The paper's FastRP on a CSR adjacency; returns (embeddings, projection density)."""
    n = adj.shape[0]
    density = 1.0 / math.sqrt(n)
    m, deg = transition_matrix(adj)
    x = sparse_projection(keys, dim, density, math.sqrt(1.0 / density) / math.sqrt(dim), seed)
    x *= degree_scale(deg, beta)[:, None]
    return propagate_reference(m, x, weights, normalize), density


def propagate_reference(m: sp.csr_matrix, x: np.ndarray, weights: Sequence[float], normalize: bool) -> np.ndarray:
    """``standardize(Σ αᵢ rownorm(Mⁱ x))``; ``x`` is ``diag(deg^β) R``."""
    acc = np.zeros_like(x)
    for alpha in weights:
        x = m @ x
        if alpha != 0:
            for start in range(0, len(x), _CHUNK):
                blk = x[start:start + _CHUNK]
                acc[start:start + _CHUNK] += np.float32(alpha) * (l2_normalize_rows(blk) if normalize else blk)
    return standardize_columns(acc)


def fastrp_gds(adj: sp.csr_matrix, keys: np.ndarray, dim: int, weights: Sequence[float], beta: float, seed: int,
               node_self_influence: float = 0.0, property_ratio: float = 0.0,
               features: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Neo4j GDS's FastRP on a CSR adjacency; returns (embeddings, projection density)."""
    x0 = gds_initial(adj, keys, dim, beta, seed, property_ratio, features)
    acc = np.zeros_like(x0)
    if node_self_influence != 0:
        acc += np.float32(node_self_influence) * l2_normalize_rows(x0)
    x = x0
    for alpha in weights:
        x = l2_normalize_rows(adj @ x)
        if alpha != 0:
            acc += np.float32(alpha) * x
    return acc, 1.0 / GDS_SPARSITY


def gds_initial(adj: sp.csr_matrix, keys: np.ndarray, dim: int, beta: float, seed: int,
                property_ratio: float = 0.0, features: np.ndarray | None = None) -> np.ndarray:
    """GDS initial vectors: ``deg^β · r`` in the first ``dim - p`` coordinates, ``features · P`` in the last ``p``."""
    prop_dim = int(dim * property_ratio) if features is not None else 0
    base = dim - prop_dim
    deg = np.diff(adj.indptr)  # number of (out-)relationships, as graph.degree() in GDS
    x0 = np.zeros((len(keys), dim), dtype=np.float32)
    r = sparse_projection(keys, base, 1.0 / GDS_SPARSITY, math.sqrt(GDS_SPARSITY) / math.sqrt(base), seed)
    x0[:, :base] = r * degree_scale(deg, beta)[:, None]
    if prop_dim:
        fkeys = np.arange(features.shape[1], dtype=np.uint64)
        p = sparse_projection(fkeys, prop_dim, 1.0 / GDS_SPARSITY, math.sqrt(GDS_SPARSITY) / math.sqrt(prop_dim),
                              seed, stream=1)
        x0[:, base:] = features @ p
    return x0


__all__ = [
    "FastRP",
    "Graph",
    "EdgeList",
    "as_graph",
    "from_edges",
    "read_edges",
    "read_labels",
    "save_embeddings",
    "load_embeddings",
    "node_key",
    "node_keys",
    "sparse_projection",
    "resolve_params",
]
