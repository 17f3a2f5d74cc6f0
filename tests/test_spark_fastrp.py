"""FastRP on Spark (local[2]) equals the local FastRP; errors and output helpers.

One module-scoped SparkSession, tiny graphs: the JVM start dominates the runtime.
"""

from __future__ import annotations

import numpy as np
import pytest

from vecbox.encoders.graph import FastRP, load_embeddings
from vecbox.errors import InvalidInputError

pytest.importorskip("pyspark")
pytest.importorskip("pyarrow")
pytest.importorskip("pandas")


def graph(rng: np.random.Generator, n: int = 40, m: int = 120) -> np.ndarray:
    e = rng.integers(0, n, size=(m, 2))
    e = e[e[:, 0] != e[:, 1]]
    return np.column_stack([e, np.round(rng.uniform(0.5, 2.0, len(e)), 2)])


def as_dict(rows) -> dict:
    return {r["id"]: np.asarray(r["vector"], dtype=np.float32) for r in rows}


@pytest.fixture(scope="module")
def reference_result(spark):
    """Weighted, undirected, integer ids, repeated edges, a dropped self-loop, isolated nodes: reference variant."""
    from vecbox.spark import fastrp

    rng = np.random.default_rng(7)
    e = graph(rng)
    e = np.vstack([e, e[:5], [[7, 7, 1.0], [3, 500, 0.0]]])  # repeats add up; a loop; a weight-0 edge
    kw = dict(dim=24, weights=[0.0, 1.0, 1.0, 4.0], beta=-0.6, seed=13, self_loops="drop")
    df = spark.createDataFrame([(int(a), int(b), float(w)) for a, b, w in e], "src long, dst long, weight double")
    nodes_df = spark.createDataFrame([(1000,)], "id long")
    out = fastrp(df, nodes_df=nodes_df, num_blocks=3, **kw)
    local = FastRP(**kw)
    local.fit(e, nodes=[1000])
    return out, local


def test_spark_equals_local_reference(reference_result):
    out, local = reference_result
    got = as_dict(out.collect())
    want = local.embeddings()
    assert set(got) == set(want) and {1000, 500} <= set(got)
    np.testing.assert_allclose(got[500], want[500], atol=1e-5)  # no edge left: the standardised zero row
    diff = max(np.abs(got[k] - want[k]).max() for k in want)
    assert diff <= 1e-4


def test_spark_equals_local_gds_directed_string_ids(spark):
    from vecbox.spark import fastrp

    rng = np.random.default_rng(8)
    e = graph(rng, n=30, m=80)
    src = [f"n{int(a)}" for a in e[:, 0]]
    dst = [f"n{int(b)}" for b in e[:, 1]]
    kw = dict(dim=16, variant="gds", weights=[0.5, 1.0, 2.0], beta=-0.3, node_self_influence=0.5,
              directed=True, seed=21)
    df = spark.createDataFrame(list(zip(src, dst, e[:, 2].tolist())), "a string, b string, w double")
    got = as_dict(fastrp(df, src="a", dst="b", weight="w", **kw).collect())
    local = FastRP(**kw)
    local.fit((np.array(src, dtype=object), np.array(dst, dtype=object), e[:, 2]))
    want = local.embeddings()
    assert set(got) == set(want)
    assert max(np.abs(got[k] - want[k]).max() for k in want) <= 1e-4


def test_bad_edges_give_clear_errors(spark):
    from vecbox.spark import fastrp

    neg = spark.createDataFrame([(1, 2, 1.0), (2, 3, -2.0)], "src long, dst long, weight double")
    with pytest.raises(InvalidInputError, match="negative or not finite"):
        fastrp(neg, dim=4)
    loops = spark.createDataFrame([(1, 2), (3, 3)], "src long, dst long")
    with pytest.raises(InvalidInputError, match="self-loop.*self_loops='drop'"):
        fastrp(loops, dim=4)
    with pytest.raises(Exception, match="no \\['dst'\\]"):
        fastrp(spark.createDataFrame([(1, 2)], "src long, target long"), dim=4)
    with pytest.raises(InvalidInputError, match="integers or strings"):
        fastrp(spark.createDataFrame([(1.5, 2.5)], "src double, dst double"), dim=4)
    with pytest.raises(InvalidInputError, match="dim"):
        fastrp(neg, dim=0)


def test_output_to_parquet_and_collection(spark, reference_result, tmp_path):
    from vecbox.io import to_collection

    out, local = reference_result
    path = tmp_path / "emb.parquet"
    out.write.parquet(str(path))
    nodes, x = load_embeddings(path)  # Spark's Parquet directory loads like a local file
    assert x.shape == (local.n_nodes_, 24) and sorted(nodes.tolist()) == sorted(local.nodes_.tolist())
    col = to_collection(tmp_path / "col", path)
    assert len(col) == local.n_nodes_
    node = local.nodes_[0]
    assert col.search(local.embedding_[0], k=1)[0].id == str(node)


def test_read_edges_file(spark, tmp_path):
    from vecbox.spark import read_edges

    tsv = tmp_path / "e.tsv"
    tsv.write_text("# comment\n1\t2\n2\t3\n")
    df = read_edges(spark, tsv)
    assert df.columns == ["src", "dst"] and df.count() == 2
    csv = tmp_path / "e.csv"
    csv.write_text("source,target,weight\n1,2,0.5\n")
    df = read_edges(spark, csv)
    assert df.columns == ["src", "dst", "weight"] and df.first()["weight"] == 0.5


def test_spark_equals_local_and_the_paper_on_an_asymmetric_matrix(spark):
    """Issue 24's awkward input on Spark: .mat-style entries (one-way and two-way with different
    weights), self-loops (one node has nothing else), nodes with no entry; self_loops='drop'."""
    from tests.test_fastrp_reference import awkward_matrix, ref, vecbox_projection
    from vecbox.spark import fastrp

    a = awkward_matrix(np.random.default_rng(24)).tocoo()
    kw = dict(dim=16, weights=[0.0, 1.0, 6.67], beta=-0.64, seed=4, self_loops="drop")
    df = spark.createDataFrame([(int(u), int(v), float(w)) for u, v, w in zip(a.row, a.col, a.data)],
                               "src long, dst long, weight double")
    nodes_df = spark.createDataFrame([(i,) for i in range(a.shape[0])], "id long")
    got = as_dict(fastrp(df, nodes_df=nodes_df, num_blocks=2, **kw).collect())
    local = FastRP(**kw).fit(a.tocsr())
    assert sorted(got) == local.nodes_.tolist()
    x = np.stack([got[i] for i in range(a.shape[0])])
    assert np.isfinite(x).all()
    assert np.abs(x - local.embedding_).max() <= 1e-4
    expected = ref.fastrp(ref.prepare(a), vecbox_projection(local), kw["weights"], kw["beta"])
    assert np.abs(x - expected).max() <= 1e-4
    # directed, loops kept: the paper's code on the matrix exactly as given
    kw.update(directed=True, self_loops="keep")
    got = as_dict(fastrp(df, nodes_df=nodes_df, num_blocks=2, **kw).collect())
    x = np.stack([got[i] for i in range(a.shape[0])])
    expected = ref.fastrp(a.tocsr(), vecbox_projection(FastRP(**kw).fit(a.tocsr())), kw["weights"], kw["beta"])
    assert np.abs(x - expected).max() <= 1e-4
