"""A seeded PPI-like graph: the stand-in for the protein-protein interaction network (not available offline).

The PPI graph used by node2vec and FastRP has 3,890 nodes, ~38k undirected edges, 50
overlapping labels and self-loops, and comes as a ``.mat`` adjacency. This generator keeps
those traits and adds the ones issue 24 asks to exercise:

- 3,890 nodes, 50 labels; each node belongs to 1 + Poisson(1.5) label communities;
- edges mostly inside a shared community, endpoints drawn with heavy-tailed node activity
  (hubs), plus uniform background edges; ~19 neighbours per node on average;
- the adjacency is **asymmetric**: a third of the edges are stored in one direction only, the
  rest in both with *different* weights (1, 2 or 3 each way);
- ~10 % of the nodes carry a **self-loop**; 12 nodes get no edge: 8 of them keep a self-loop
  (isolated once loops are dropped), 4 have no entry at all;
- each node's label set is its communities with 15 % of the labels swapped for random ones
  (so the task is not trivial).

It is *not* PPI: absolute F1 values are not comparable to the paper's PPI numbers; it serves
to compare two implementations on a graph with PPI's awkward properties.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

N_NODES, N_LABELS = 3890, 50


def ppi_like(seed: int = 24, n: int = N_NODES, n_labels: int = N_LABELS, avg_degree: float = 19.0,
             p_background: float = 0.25) -> tuple[sp.csr_matrix, np.ndarray]:
    """``(A, Y)``: an asymmetric weighted (n, n) CSR adjacency with self-loops, and a 0/1 (n, n_labels) label matrix."""
    rng = np.random.default_rng(seed)
    k = 1 + rng.poisson(1.5, n)
    members = [rng.choice(n_labels, size=min(int(c), n_labels), replace=False) for c in k]
    activity = rng.pareto(2.0, n) + 1.0  # heavy-tailed: a few hubs
    isolated = rng.choice(n, 12, replace=False)
    activity[isolated] = 0.0
    by_label: list[list[int]] = [[] for _ in range(n_labels)]
    for v, labs in enumerate(members):
        for lab in labs:
            by_label[lab].append(v)
    m = int(n * avg_degree / 2)
    m_in = int(m * (1 - p_background))
    src, dst = [], []
    sizes = np.array([len(b) for b in by_label], dtype=float)
    for lab, count in enumerate(rng.multinomial(m_in, sizes / sizes.sum())):
        pool = np.asarray(by_label[lab])
        if count == 0 or activity[pool].sum() == 0:
            continue
        p = activity[pool] / activity[pool].sum()
        src.extend(rng.choice(pool, size=count, p=p))
        dst.extend(rng.choice(pool, size=count, p=p))
    p_all = activity / activity.sum()
    src.extend(rng.choice(n, size=m - m_in, p=p_all))
    dst.extend(rng.choice(n, size=m - m_in, p=p_all))
    src, dst = np.asarray(src), np.asarray(dst)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    w_uv = rng.integers(1, 4, len(src)).astype(float)
    w_vu = rng.integers(1, 4, len(src)).astype(float)
    both = rng.random(len(src)) < 2 / 3
    loops = np.union1d(rng.choice(np.setdiff1d(np.arange(n), isolated), n // 10, replace=False), isolated[:8])
    rows = np.concatenate([src, dst[both], loops])
    cols = np.concatenate([dst, src[both], loops])
    vals = np.concatenate([w_uv, w_vu[both], rng.integers(1, 4, len(loops)).astype(float)])
    a = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))  # repeated pairs add up, as in a .mat built by sparse()
    y = np.zeros((n, n_labels), dtype=np.int64)
    for v, labs in enumerate(members):
        labs = labs.copy()
        swap = rng.random(len(labs)) < 0.15
        labs[swap] = rng.integers(0, n_labels, int(swap.sum()))
        y[v, labs] = 1
    return a, y
