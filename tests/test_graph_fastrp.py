"""FastRP (vecbox.encoders.graph): hand-computed case, the paper's code, GDS, inputs, errors, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from vecbox.cli.graph import graph_app
from vecbox.encoders.graph import (
    FastRP,
    as_graph,
    degree_scale,
    gds_initial,
    load_embeddings,
    node_key,
    node_keys,
    propagate_reference,
    read_edges,
    save_embeddings,
    sparse_projection,
    transition_matrix,
)
from vecbox.errors import DatasetError, InvalidInputError
from vecbox.io import to_collection

S2 = math.sqrt(2.0)


def random_edges(rng: np.random.Generator, n: int = 40, m: int = 150, weighted: bool = False) -> np.ndarray:
    e = rng.integers(0, n, size=(m, 2))
    e = e[e[:, 0] != e[:, 1]]
    if weighted:
        return np.column_stack([e, rng.uniform(0.5, 3.0, len(e))])
    return e


# --------------------------------------------------------------------------- hand-computed
def test_hand_computed_five_node_graph():
    # Graph: 0-1, 0-2, 0-3, 3-4 (undirected). Degrees 3, 1, 1, 2, 1.
    edges = np.array([[0, 1], [0, 2], [0, 3], [3, 4]])
    g = as_graph(edges)
    m, deg = transition_matrix(g.adjacency)
    assert deg.tolist() == [3, 1, 1, 2, 1]
    # A hand-picked projection R (d = 2), beta = -1: L R = diag(1/3, 1, 1, 1/2, 1) R
    r = np.array([[1, 0], [0, 1], [0, -1], [1, 1], [-1, 0]], dtype=np.float32)
    lr = r * degree_scale(deg, -1.0)[:, None]
    np.testing.assert_allclose(lr, [[1 / 3, 0], [0, 1], [0, -1], [0.5, 0.5], [-1, 0]], rtol=1e-6)
    # N1 = M L R:  row0 = (LR1 + LR2 + LR3)/3 = (0.5, 0.5)/3 = (1/6, 1/6); row1 = row2 = LR0 = (1/3, 0);
    #              row3 = (LR0 + LR4)/2 = (-2/3, 0)/2 = (-1/3, 0); row4 = LR3 = (1/2, 1/2)
    # N2 = M N1:   row0 = (N1_1 + N1_2 + N1_3)/3 = (1/3, 0)/3 = (1/9, 0); row1 = row2 = N1_0 = (1/6, 1/6);
    #              row3 = (N1_0 + N1_4)/2 = (2/3, 2/3)/2 = (1/3, 1/3); row4 = N1_3 = (-1/3, 0)
    # Row-normalised: N1 -> (1/√2, 1/√2), (1, 0), (1, 0), (-1, 0), (1/√2, 1/√2)
    #                 N2 -> (1, 0), (1/√2, 1/√2), (1/√2, 1/√2), (1/√2, 1/√2), (-1, 0)
    # U = 1·N1 + 2·N2 (weights [1, 2]):
    u = np.array([
        [1 / S2 + 2, 1 / S2],        # 2.7071, 0.7071
        [1 + S2, S2],                # 2.4142, 1.4142
        [1 + S2, S2],
        [-1 + S2, S2],               # 0.4142, 1.4142
        [1 / S2 - 2, 1 / S2],        # -1.2929, 0.7071
    ])
    # Column 1 by hand: mean = (2·0.7071 + 3·1.4142)/5 = 1.1314, std = sqrt(0.12) = 0.3464
    # -> (0.7071 - 1.1314)/0.3464 = -1.2247 = -sqrt(3/2) and (1.4142 - 1.1314)/0.3464 = 0.8165 = sqrt(2/3)
    expected = (u - u.mean(axis=0)) / u.std(axis=0)
    np.testing.assert_allclose(expected[:, 1], [-math.sqrt(1.5), math.sqrt(2 / 3), math.sqrt(2 / 3),
                                                math.sqrt(2 / 3), -math.sqrt(1.5)], rtol=1e-9)
    got = propagate_reference(m, lr, [1.0, 2.0], normalize=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_estimator_is_the_pipeline_with_its_hashed_projection():
    edges = np.array([[0, 1], [0, 2], [0, 3], [3, 4]])
    model = FastRP(dim=6, weights=[1.0, 2.0], beta=-1.0, seed=11)
    x = model.fit_transform(edges)
    n = 5
    density = 1 / math.sqrt(n)
    r = sparse_projection(node_keys(model.nodes_), 6, density, math.sqrt(1 / density) / math.sqrt(6), 11)
    m, deg = transition_matrix(as_graph(edges).adjacency)
    np.testing.assert_allclose(x, propagate_reference(m, r * degree_scale(deg, -1.0)[:, None], [1.0, 2.0], True),
                               atol=1e-6)
    assert model.density_ == pytest.approx(density)
    assert (model.n_nodes_, model.n_edges_) == (5, 4)


def test_matches_the_papers_code_with_the_same_projection(rng):
    """The steps of GTmac/FastRP fastrp.py (scipy spdiags + sklearn normalize/scale), given our R."""
    skp = pytest.importorskip("sklearn.preprocessing")
    edges = random_edges(rng, n=60, m=300, weighted=True)
    model = FastRP(dim=16, weights=[0.0, 0.5, 1.0, 4.0], beta=-0.6, seed=5)
    x = model.fit_transform(edges)
    a = as_graph(edges).adjacency.astype(np.float64)
    n = a.shape[0]
    density = 1 / math.sqrt(n)
    components = sparse_projection(node_keys(model.nodes_), 16, density, math.sqrt(1 / density) / 4, 5).T
    components = components.astype(np.float64)
    rowsum = np.asarray(a.sum(axis=1)).ravel()
    mm = sp.spdiags(1.0 / rowsum, 0, n, n) @ a                        # M = D^-1 A
    components = components @ sp.spdiags(rowsum ** -0.6, 0, n, n)    # components_ @ diag(deg^alpha)
    cur = mm @ components.T                                           # transformer.transform(M)
    us = [cur]
    for _ in range(3):
        cur = mm @ cur
        us.append(cur)
    merged = sum(w * skp.normalize(u_, norm="l2", axis=1) for w, u_ in zip([0.0, 0.5, 1.0, 4.0], us))
    np.testing.assert_allclose(x, skp.scale(merged), atol=2e-4)


def test_projection_distribution_and_locality():
    keys = node_keys(np.arange(20000))
    density = 0.01
    r = sparse_projection(keys, 64, density, 2.5, seed=1)
    vals = np.unique(r)
    assert set(vals.tolist()) == {-2.5, 0.0, 2.5}
    nz = np.count_nonzero(r) / r.size
    assert nz == pytest.approx(density, rel=0.05)
    assert np.mean(r[r != 0] > 0) == pytest.approx(0.5, abs=0.03)
    # a row depends only on (seed, key): computing a subset, in another order, gives the same rows
    sub = np.array([19999, 3, 777])
    np.testing.assert_array_equal(sparse_projection(keys[sub], 64, density, 2.5, seed=1), r[sub])
    assert not np.array_equal(sparse_projection(keys[:50], 64, density, 2.5, seed=2), r[:50])
    # columns are independent of the width: the first 10 columns of a 64-wide row = a 10-wide row
    np.testing.assert_array_equal(sparse_projection(keys[:100], 10, 0.3, 1.0, 4),
                                  sparse_projection(keys[:100], 64, 0.3, 1.0, 4)[:, :10])


def test_node_keys_are_stable_values():
    assert node_key(7) == 7 and node_key(np.int64(7)) == 7 and node_key(7.0) == 7
    assert node_key("7") != node_key(7)
    assert node_key(("a", 1)) == node_key(("a", 1)) != node_key(("a", 2))
    # fixed value: keys never depend on the process (str hash randomisation) or the platform
    assert node_key("alice") == int.from_bytes(__import__("hashlib").blake2b(b"s:alice", digest_size=8).digest(),
                                               "little")
    np.testing.assert_array_equal(node_keys(np.array([1, -1])), np.array([1, 2**64 - 1], dtype=np.uint64))
    with pytest.raises(InvalidInputError, match="stable"):
        node_key(object())


# --------------------------------------------------------------------------- invariance
def test_order_and_label_invariance(rng):
    edges = random_edges(rng, n=50, m=200, weighted=True)
    kw = dict(dim=32, weights=[0.0, 1.0, 2.0], beta=-0.5, seed=3)
    a = FastRP(**kw)
    xa = a.fit_transform(edges)
    perm = rng.permutation(len(edges))
    shuffled = edges[perm][:, [1, 0, 2]]  # other row order, each edge written the other way round
    b = FastRP(**kw)
    xb = b.fit_transform(shuffled)
    emb_a, emb_b = a.embeddings(), b.embeddings()
    for node in emb_a:
        np.testing.assert_allclose(emb_a[node], emb_b[node], atol=1e-5)
    # the same graph given as a scipy matrix with permuted rows/columns
    g = as_graph(edges)
    p = rng.permutation(g.n_nodes)
    pm = sp.csr_matrix(g.adjacency.toarray()[np.ix_(p, p)])
    c = FastRP(**kw)
    xc = c.fit_transform(pm, nodes=g.nodes[p])
    np.testing.assert_allclose(xc, xa[p], atol=1e-5)


def test_isolated_nodes_and_gds_defaults():
    model = FastRP(dim=8, variant="gds", seed=1)
    x = model.fit_transform(np.array([[0, 1], [1, 2]]), nodes=[0, 1, 2, 99])
    assert model.weights_ == (0.0, 1.0, 1.0) and model.beta_ == 0.0
    assert model.nodes_.tolist() == [0, 1, 2, 99]
    np.testing.assert_array_equal(x[3], 0)  # no neighbours, no self influence -> zero vector
    assert model.density_ == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- GDS
def gds_naive(adj: sp.csr_matrix, x0: np.ndarray, weights: list[float], self_influence: float) -> np.ndarray:
    """Neo4j GDS FastRP.java, node by node: average weighted neighbours, normalise, add."""
    n, d = x0.shape
    emb = np.zeros((n, d))
    if self_influence:
        for u in range(n):
            norm = np.linalg.norm(x0[u])
            emb[u] += self_influence * x0[u] / (norm if norm > 1e-30 else 1.0)
    prev = x0.astype(np.float64)
    dense = adj.toarray()
    for w in weights:
        cur = np.zeros((n, d))
        for u in range(n):
            nbrs = np.flatnonzero(dense[u])
            for v in nbrs:
                cur[u] += dense[u, v] * prev[v]
            cur[u] /= max(len(nbrs), 1)
            norm = np.linalg.norm(cur[u])
            cur[u] /= norm if norm else 1.0
            emb[u] += w * cur[u]
        prev = cur
    return emb


@pytest.mark.parametrize("directed", [False, True])
def test_gds_variant_matches_a_node_by_node_version(rng, directed):
    edges = random_edges(rng, n=30, m=90, weighted=True)
    feats = rng.normal(size=(30, 3)).astype(np.float32)
    model = FastRP(dim=20, variant="gds", weights=[0.5, 1.0, 2.0], beta=-0.3, node_self_influence=0.8,
                   property_ratio=0.25, directed=directed, seed=9)
    nodes = np.arange(30)
    x = model.fit_transform(edges, nodes=nodes, features=feats)
    g = as_graph(edges, directed=directed, nodes=nodes)
    x0 = gds_initial(g.adjacency, node_keys(g.nodes), 20, -0.3, 9, 0.25, feats)
    # the first 15 coordinates: +-deg^beta*sqrt(3/15) or 0; the last 5: features projected
    deg = np.diff(g.adjacency.indptr)
    vals = np.abs(x0[:, :15]) / degree_scale(deg, -0.3)[:, None]
    np.testing.assert_allclose(vals[vals > 0], math.sqrt(3 / 15), rtol=1e-5)
    assert np.mean(vals > 0) == pytest.approx(1 / 3, abs=0.1)
    np.testing.assert_allclose(x, gds_naive(g.adjacency, x0, [0.5, 1.0, 2.0], 0.8), atol=1e-5)


def test_directed_graph_uses_out_neighbours():
    # 0 -> 1 -> 2, 0 -> 2 (weight 3): row 0 averages 1 and 2 with weights 1/4, 3/4; row 2 (a sink) is zero
    edges = np.array([[0, 1, 1.0], [1, 2, 1.0], [0, 2, 3.0]])
    g = as_graph(edges, directed=True)
    m, deg = transition_matrix(g.adjacency)
    np.testing.assert_allclose(m.toarray(), [[0, 0.25, 0.75], [0, 0, 1], [0, 0, 0]])
    assert deg.tolist() == [4.0, 1.0, 0.0]
    x = FastRP(dim=4, weights=[1.0], beta=0.0, directed=True, seed=1).fit_transform(edges)
    assert x.shape == (3, 4)


# --------------------------------------------------------------------------- inputs
def test_every_input_form_gives_the_same_embedding(tmp_path, rng):
    nx = pytest.importorskip("networkx")
    edges = np.unique(np.sort(random_edges(rng, n=25, m=60), axis=1), axis=0)  # networkx keeps no repeats
    g = as_graph(edges)
    ref_model = FastRP(dim=8, seed=2, weights=[1.0, 1.0])
    ref = ref_model.fit_transform(edges)
    ref_by_id = ref_model.embeddings()

    tsv = tmp_path / "e.tsv"
    tsv.write_text("".join(f"{u}\t{v}\n" for u, v in edges))
    csv = tmp_path / "e.csv"
    csv.write_text("source,target,weight\n" + "".join(f"{u},{v},1.0\n" for u, v in edges))
    inputs = {
        "tsv": tsv,
        "csv with header": csv,
        "tuple": (edges[:, 0], edges[:, 1]),
        "weighted array": np.column_stack([edges, np.ones(len(edges))]),
        "scipy": sp.csr_matrix(g.adjacency),
        "networkx": nx.from_edgelist(edges.tolist()),
        "edge list read": read_edges(tsv),
    }
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"src": edges[:, 0], "dst": edges[:, 1]}), tmp_path / "e.parquet")
    inputs["parquet"] = tmp_path / "e.parquet"
    for name, data in inputs.items():
        model = FastRP(dim=8, seed=2, weights=[1.0, 1.0])
        model.fit(data)
        got = model.embeddings()
        assert set(got) == set(ref_by_id), name
        for node, vec in got.items():
            np.testing.assert_allclose(vec, ref_by_id[node], atol=1e-5, err_msg=name)
    assert ref.dtype == np.float32


def test_string_ids_are_mapped_back():
    model = FastRP(dim=4, weights=[1.0], seed=0)
    x = model.fit_transform((["alice", "bob", "carol"], ["bob", "carol", "alice"]))
    assert model.nodes_.tolist() == ["alice", "bob", "carol"]
    assert x.shape == (3, 4)


def test_networkx_digraph_is_directed():
    nx = pytest.importorskip("networkx")
    dg = nx.DiGraph()
    dg.add_weighted_edges_from([("a", "b", 2.0), ("b", "c", 1.0)])
    g = as_graph(dg)
    assert g.directed and g.n_edges == 2
    assert g.adjacency[g.index(["a"])[0], g.index(["b"])[0]] == 2.0


def test_undirected_rules_duplicates_and_both_directions():
    # (0,1) twice adds up to 2; (1,2) and (2,1) with weights 1 and 5 -> the larger, 5
    g = as_graph(np.array([[0, 1, 1.0], [0, 1, 1.0], [1, 2, 1.0], [2, 1, 5.0]]))
    np.testing.assert_array_equal(g.adjacency.toarray(), [[0, 2, 0], [2, 0, 5], [0, 5, 0]])
    assert g.n_edges == 2


# --------------------------------------------------------------------------- errors
def test_bad_edge_files_give_clear_errors(tmp_path):
    missing = tmp_path / "missing_cols.csv"
    missing.write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match="no source column"):
        read_edges(missing)
    one = tmp_path / "one.tsv"
    one.write_text("1\n2\n")
    with pytest.raises(DatasetError, match="needs 'src' and 'dst'"):
        read_edges(one)
    ragged = tmp_path / "ragged.tsv"
    ragged.write_text("1\t2\n3\t4\t5\t6\n")
    with pytest.raises(DatasetError):
        read_edges(ragged)
    loops = tmp_path / "loops.tsv"
    loops.write_text("1\t2\n3\t3\n")
    with pytest.raises(InvalidInputError, match=r"1 self-loop.*3 -> 3.*self_loops='drop'"):
        FastRP(dim=4).fit(loops)
    assert FastRP(dim=4, self_loops="drop", weights=[1.0]).fit(loops).nodes_.tolist() == [1, 2, 3]
    negative = tmp_path / "neg.csv"
    negative.write_text("src,dst,weight\n1,2,0.5\n2,3,-1\n")
    with pytest.raises(InvalidInputError, match="negative or not finite.*-1"):
        FastRP(dim=4).fit(negative)
    text_weight = tmp_path / "tw.csv"
    text_weight.write_text("src,dst,weight\n1,2,heavy\n")
    with pytest.raises(DatasetError, match="not numeric"):
        read_edges(text_weight)
    with pytest.raises(DatasetError, match="does not exist"):
        read_edges(tmp_path / "nope.tsv")


@pytest.mark.parametrize("params, match", [
    ({"dim": 0}, "dim"),
    ({"weights": []}, "weights"),
    ({"weights": "0,1"}, "weights"),
    ({"weights": [1.0, float("nan")]}, "weights"),
    ({"beta": float("inf")}, "beta"),
    ({"variant": "fast"}, "variant"),
    ({"seed": -1}, "seed"),
    ({"node_self_influence": 1.0}, "variant='gds'"),
    ({"variant": "gds", "property_ratio": 1.5}, "property_ratio"),
    ({"self_loops": "ignore"}, "self_loops"),
])
def test_parameters_are_validated_in_fit(params, match):
    model = FastRP(**params)  # __init__ stores only
    with pytest.raises(InvalidInputError, match=match):
        model.fit(np.array([[0, 1], [1, 2]]))


def test_bad_array_inputs():
    with pytest.raises(InvalidInputError, match=r"shape \(m, 2\)"):
        as_graph(np.zeros((3, 4)))
    with pytest.raises(InvalidInputError, match="square"):
        as_graph(sp.csr_matrix(np.ones((2, 3))))
    with pytest.raises(InvalidInputError, match="features= needs variant='gds'"):
        FastRP(dim=4).fit(np.array([[0, 1]]), features=np.ones((2, 1)))


# --------------------------------------------------------------------------- output
def test_save_load_and_collection(tmp_path, rng):
    edges = random_edges(rng, n=20, m=50)
    model = FastRP(dim=8, weights=[1.0, 1.0], seed=4)
    x = model.fit_transform(edges)
    for name in ("emb.npy", "emb.parquet"):
        path = save_embeddings(tmp_path / name, model.nodes_, x)
        nodes, y = load_embeddings(path)
        assert nodes.tolist() == model.nodes_.tolist()
        np.testing.assert_array_equal(y, x)
    col = to_collection(tmp_path / "col", x, ids=model.nodes_)
    node = str(model.nodes_[3])
    assert len(col) == len(x)
    assert col.search(x[3], k=1)[0].id == node


# --------------------------------------------------------------------------- CLI
def test_cli_fastrp_and_eval(tmp_path):
    runner = CliRunner()
    edges = tmp_path / "edges.tsv"
    # two 6-cliques joined by one edge; labels = clique
    pairs = [(i, j) for c in (0, 6) for i in range(c, c + 6) for j in range(i + 1, c + 6)] + [(5, 6)]
    edges.write_text("".join(f"{u}\t{v}\n" for u, v in pairs))
    labels = tmp_path / "labels.tsv"
    labels.write_text("".join(f"{i}\t{'A' if i < 6 else 'B'}\n" for i in range(12)))
    out = tmp_path / "emb.npy"
    res = runner.invoke(graph_app, ["fastrp", str(edges), "--dim", "16", "--weights", "1,1", "--out", str(out),
                                    "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["nodes"] == 12 and out.exists() and out.with_suffix(".nodes.json").exists()
    res = runner.invoke(graph_app, ["eval", str(out), "--labels", str(labels), "--train-ratios", "0.5",
                                    "--shuffles", "2", "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)["results"][0]
    assert result["train_ratio"] == 0.5 and result["micro_f1"] >= 0.8
    res = runner.invoke(graph_app, ["eval", str(out), "--labels", str(labels), "--train-ratios", "0.5",
                                    "--shuffles", "1"])
    assert res.exit_code == 0 and "Macro-F1" in res.stdout
    res = runner.invoke(graph_app, ["fastrp", str(edges), "--out", str(tmp_path / "x.txt")])
    assert res.exit_code != 0 and "npy or .parquet" in str(res.exception)
