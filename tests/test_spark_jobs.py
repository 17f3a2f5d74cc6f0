"""Vector jobs on Spark (local[2]) against one-machine references.

knn_join against numpy's exact top-k (ties by id), near_duplicates against numpy + scipy,
anomaly_scores against KNNDetector, encode against TextEncoder. One module-scoped
SparkSession and tiny data: the JVM start dominates the runtime.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from vecbox.errors import DatasetError, DimensionMismatchError, InvalidInputError

pytest.importorskip("pyspark")
pytest.importorskip("pyarrow")
pytest.importorskip("pandas")


def frame(spark, ids, x, partitions=None, id_type="long"):
    rows = [(i, [float(v) for v in row]) for i, row in zip(ids, x)]
    schema = f"id {id_type}, vector array<float>"
    if partitions is None:
        return spark.createDataFrame(rows, schema)
    return spark.createDataFrame(spark.sparkContext.parallelize(rows, partitions), schema)


def exact(qids, q, cids, c, k, metric, exclude_self=False):
    """numpy's exact top-k per query, ties to the lower id: {qid: [(nid, score), ...]}."""
    q, c = np.asarray(q, np.float64), np.asarray(c, np.float64)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        c = c / np.linalg.norm(c, axis=1, keepdims=True)
    if metric == "l2":
        s = -np.sqrt(((q[:, None, :] - c[None, :, :]) ** 2).sum(-1))
    else:
        s = q @ c.T
    cids = np.asarray(cids)
    out = {}
    for i, qid in enumerate(qids):
        order = [j for j in np.lexsort((cids, -s[i])) if not (exclude_self and cids[j] == qid)][:k]
        out[qid] = [(cids[j].item(), abs(s[i, j]) if metric == "l2" else s[i, j]) for j in order]
    return out


def result(df):
    out = {}
    for r in df.orderBy("query_id", "rank").collect():
        out.setdefault(r["query_id"], []).append((r["neighbor_id"], r["score"], r["rank"]))
    return out


def assert_same(got, want, atol=1e-5):
    assert set(got) == set(want)
    for qid, lst in want.items():
        g = got[qid]
        assert [n for n, _, _ in g] == [n for n, _ in lst], qid
        np.testing.assert_allclose([s for _, s, _ in g], [s for _, s in lst], atol=atol, rtol=1e-5)
        assert [r for _, _, r in g] == list(range(1, len(lst) + 1))


def test_knn_join_exact_with_ties_duplicates_and_empty_partitions(spark):
    from vecbox.spark import knn_join

    rng = np.random.default_rng(0)
    c = rng.integers(-2, 3, size=(40, 6)).astype(np.float32)  # small integers: exact scores, many ties
    c[10:14] = c[3]  # duplicate rows
    q = rng.integers(-2, 3, size=(23, 6)).astype(np.float32)
    cids = list(range(100, 140))
    qids = list(range(23))
    corpus = frame(spark, cids, c, partitions=8).filter("id < 110 or id >= 115")  # partition 2 is empty
    assert corpus.rdd.glom().map(len).collect().count(0) == 1
    keep = [i for i, v in enumerate(cids) if not 110 <= v < 115]
    got = result(knn_join(frame(spark, qids, q), corpus, k=7, metric="dot", query_block=9))
    assert_same(got, exact(qids, q, [cids[i] for i in keep], c[keep], 7, "dot"))


@pytest.mark.parametrize("metric", ["dot", "cosine", "l2"])
def test_partition_topk_with_faiss_equals_numpy_with_ties(metric):
    pytest.importorskip("faiss")
    from vecbox.spark.knn import _numpy_topk, exact_topk

    rng = np.random.default_rng(11)
    x = rng.integers(-2, 3, size=(300, 6)).astype(np.float32)
    x[10:30] = x[3]  # 21 equal rows: ties far past k
    q = rng.integers(-2, 3, size=(60, 6)).astype(np.float32)
    own = np.full(60, -1)
    own[:20] = rng.integers(0, 300, 20)
    for skip in (None, own):
        top, vals = exact_topk(q, x, 7, metric, skip)
        want_top, want_vals = _numpy_topk(q, x, 7, metric, skip)
        assert (top == want_top).all()
        np.testing.assert_allclose(vals, want_vals, atol=1e-4)
        if skip is not None:
            assert not (top == own[:, None]).any()


def test_knn_join_cosine_self_join_string_ids(spark):
    from vecbox.spark import knn_join

    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 12)).astype(np.float32)
    ids = [f"doc{i:03d}" for i in rng.permutation(60)]
    df = frame(spark, ids, x, partitions=3, id_type="string")
    got = result(knn_join(df, df, k=5, exclude_self=True))
    want = exact(ids, x, ids, x, 5, "cosine", exclude_self=True)
    assert_same(got, want)
    assert all(qid not in [n for n, _, _ in lst] for qid, lst in got.items())


def test_knn_join_l2_and_k_beyond_corpus(spark):
    from vecbox.spark import knn_join

    rng = np.random.default_rng(2)
    c, q = rng.normal(size=(5, 8)), rng.normal(size=(9, 8))
    got = result(knn_join(frame(spark, range(9), q), frame(spark, range(50, 55), c, partitions=2), k=10,
                          metric="l2"))
    want = exact(list(range(9)), q, list(range(50, 55)), c, 10, "l2")
    assert all(len(v) == 5 for v in got.values())  # k > corpus: every corpus row, ranked
    assert_same(got, want, atol=1e-4)


@pytest.mark.parametrize("id_type", ["long", "string"])
def test_knn_join_approximate_recall(spark, id_type):
    from vecbox.evaluation.metrics import knn_recall
    from vecbox.spark import approximate_recall, knn_join

    rng = np.random.default_rng(3)
    x = (rng.normal(size=(20, 16))[rng.integers(0, 20, 600)] + 0.3 * rng.normal(size=(600, 16))).astype(np.float32)
    ids = list(range(600)) if id_type == "long" else [f"row-{i:04d}" for i in rng.permutation(600)]
    df = frame(spark, ids, x, partitions=2, id_type=id_type)
    approx = knn_join(df, df, k=10, exact=False, exclude_self=True, ef_search=64)
    got = result(approx)
    want = exact(ids, x, ids, x, 10, "cosine", exclude_self=True)
    recall = knn_recall([[ids.index(n) for n, _, _ in got[i]] for i in ids],
                        [[ids.index(n) for n, _ in want[i]] for i in ids])
    assert recall >= 0.95 and set(got) == set(ids)
    for i in ids:  # the scores are rescored exactly
        exact_score = dict(want[i])
        for n, s, _ in got[i]:
            if n in exact_score:
                assert abs(s - exact_score[n]) < 1e-5
    assert abs(approximate_recall(approx, df, df, k=10, exclude_self=True, sample=600) - recall) < 1e-9


def test_near_duplicates_equal_numpy_and_scipy(spark):
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from vecbox.spark import near_duplicates

    rng = np.random.default_rng(4)
    base = rng.normal(size=(15, 10))
    x = np.vstack([base, base[:6] + 0.01 * rng.normal(size=(6, 10)), base[:2] + 0.02 * rng.normal(size=(2, 10))])
    ids = [int(v) for v in rng.permutation(1000)[: len(x)]]
    res = near_duplicates(frame(spark, ids, x, partitions=3), threshold=0.99, query_block=7)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = u @ u.T
    a, b = np.nonzero(np.triu(s >= 0.99, k=1))
    want_pairs = {(min(ids[i], ids[j]), max(ids[i], ids[j])): s[i, j] for i, j in zip(a, b)}
    got_pairs = {(r["id_a"], r["id_b"]): r["score"] for r in res.pairs.collect()}
    assert set(got_pairs) == set(want_pairs) and len(want_pairs) >= 8
    assert max(abs(got_pairs[p] - want_pairs[p]) for p in want_pairs) < 1e-5
    _, label = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(len(x), len(x))), directed=False)
    members = {}
    for i in set(a) | set(b):
        members.setdefault(label[i], []).append(ids[i])
    want_groups = {i: (min(m), len(m)) for m in members.values() for i in m}
    got_groups = {r["id"]: (r["group"], r["size"]) for r in res.groups.collect()}
    assert got_groups == want_groups


def test_anomaly_scores_equal_knn_detector(spark):
    from vecbox.analysis.anomaly import anomaly_scores as local_scores
    from vecbox.spark import anomaly_scores

    rng = np.random.default_rng(5)
    x = np.vstack([rng.normal(size=(80, 8)), rng.normal(5.0, 1.0, size=(4, 8))]).astype(np.float32)
    ids = list(range(500, 584))
    df = frame(spark, ids, x, partitions=3)
    got = {r["id"]: r["score"] for r in anomaly_scores(df, k=4).collect()}
    np.testing.assert_allclose([got[i] for i in ids], local_scores(x, "knn", k=4), rtol=1e-4, atol=1e-4)
    assert np.argsort([got[i] for i in ids])[-4:].min() >= 80  # the planted outliers score highest
    mean = {r["id"]: r["score"] for r in anomaly_scores(df, k=4, method="mean").collect()}
    d = np.sqrt(((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1)) + np.diag(np.full(len(x), np.inf))
    np.testing.assert_allclose([mean[i] for i in ids], np.sort(d, axis=1)[:, :4].mean(axis=1), rtol=1e-4)


def test_bad_input_names_the_column(spark):
    from vecbox.spark import anomaly_scores, knn_join, near_duplicates

    good = frame(spark, [1, 2], [[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(DatasetError, match="no column 'emb'"):
        knn_join(good, good, k=1, vector_col="emb")
    ragged = spark.createDataFrame([(1, [1.0, 0.0]), (2, [1.0])], "id long, vector array<float>")
    with pytest.raises(DimensionMismatchError, match="'vector'.*1 to 2 numbers"):
        knn_join(good, ragged, k=1)
    nan = spark.createDataFrame([(1, [1.0, 0.0]), (7, [float("nan"), 1.0])], "id long, vec array<double>")
    with pytest.raises(InvalidInputError, match="'vec'.*NaN or infinity.*id 7"):
        near_duplicates(nan, 0.9, vector_col="vec")
    wide = frame(spark, [1], [[1.0, 0.0, 0.0]])
    with pytest.raises(DimensionMismatchError, match="3 numbers.*have 2"):
        knn_join(good, wide, k=1)
    with pytest.raises(InvalidInputError, match="'id'.*double"):
        knn_join(spark.createDataFrame([(1.5, [1.0])], "id double, vector array<float>"), good, k=1)
    with pytest.raises(InvalidInputError, match="ids of the queries must be unique"):
        knn_join(frame(spark, [1, 1], [[1.0, 0.0], [0.0, 1.0]]), good, k=1)
    with pytest.raises(InvalidInputError, match="need at least 3 rows"):
        anomaly_scores(good, k=2)
    with pytest.raises(InvalidInputError, match="metric"):
        knn_join(good, good, k=1, metric="hamming")


def test_encode_equals_text_encoder(spark):
    pytest.importorskip("sentence_transformers")
    from vecbox.encoders.text import TextEncoder
    from vecbox.spark import encode

    texts = ["read a csv file", "the cat sat on the mat", None, "vector search with filters on one machine",
             "Spark runs batch jobs", "x", "a much longer sentence about encoding many documents in parallel"]
    df = spark.createDataFrame(spark.sparkContext.parallelize(list(enumerate(texts)), 2), "id long, text string")
    elastic = {"layers", "dims"} <= set(inspect.signature(TextEncoder.__init__).parameters)
    out = encode(df, "text")
    if elastic:  # a second model setting in the same job: each worker caches one encoder per setting
        out = encode(out, "text", layers=3, dims=128, output_col="small")
    rows = {r["id"]: r for r in out.collect()}
    assert rows[2]["vector"] is None
    keep = [i for i, t in enumerate(texts) if t is not None]
    kept = [texts[i] for i in keep]
    for column, enc in [("vector", TextEncoder())] + ([("small", TextEncoder(layers=3, dims=128))] if elastic else []):
        want = enc.encode(kept)
        got = np.array([rows[i][column] for i in keep], dtype=np.float32)
        assert got.shape == want.shape and np.abs(got - want).max() <= 1e-5, column
    with pytest.raises(InvalidInputError, match="no column 'body'"):
        encode(df, "body")


def test_encode_elastic_options_are_forwarded_only_when_given():
    from vecbox.encoders.text import TextEncoder
    from vecbox.spark.encode import elastic_options

    accepted = inspect.signature(TextEncoder.__init__).parameters
    assert elastic_options(None, None) == {}
    if "layers" in accepted and "dims" in accepted:
        assert elastic_options(3, None) == {"layers": 3} and elastic_options(None, 128) == {"dims": 128}
    else:  # a TextEncoder without elastic inference: a clear error, not a TypeError
        with pytest.raises(InvalidInputError, match="need a TextEncoder with elastic inference"):
            elastic_options(3, 128)


def test_spark_parquet_into_a_collection(spark, tmp_path):
    from vecbox.collection import Collection
    from vecbox.io import ingest_file

    rng = np.random.default_rng(6)
    x = rng.normal(size=(30, 4)).astype(np.float32)
    rows = [(f"r{i}", x[i].tolist(), f"text {i}", i % 3) for i in range(30)]
    df = spark.createDataFrame(spark.sparkContext.parallelize(rows, 3), "id string, vector array<float>, doc string, "
                                                                          "year int")
    out = tmp_path / "parts"
    df.write.parquet(str(out))
    col = Collection.create(tmp_path / "col", dim=4)
    res = ingest_file(tmp_path / "col", out, vector_field="vector", document_field="doc", batch_size=7)
    assert res["rows"] == 30 and len(col) == 30
    rec = col.get(["r5"])[0]
    assert rec.document == "text 5" and rec.metadata == {"year": 2}
    np.testing.assert_allclose(rec.vector, x[5] / np.linalg.norm(x[5]), atol=1e-6)


def test_cli_knn_dedup_anomalies(spark, tmp_path):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from vecbox.cli import app

    rng = np.random.default_rng(7)
    x = rng.normal(size=(30, 6)).astype(np.float32)
    x[29] = x[3] * 2.0  # a cosine duplicate of row 3
    data = tmp_path / "vectors.parquet"
    pq.write_table(pa.table({"key": pa.array([f"k{i:02d}" for i in range(30)]),
                             "emb": pa.array(x.tolist(), pa.list_(pa.float32()))}), data)
    common = ["--id-col", "key", "--vector-col", "emb", "--master", "local[2]", "--json"]

    def run(*args):
        res = CliRunner().invoke(app, [str(a) for a in args])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)

    out = run("spark", "knn", data, "--out", tmp_path / "knn", "-k", 3, *common)
    assert out["rows"] == 90 and out["exact"] is True
    got = spark.read.parquet(str(tmp_path / "knn")).filter("query_id = 'k03' and rank = 1").first()
    assert got["neighbor_id"] == "k29" and abs(got["score"] - 1.0) < 1e-6
    out = run("spark", "dedup", data, "--out", tmp_path / "dup", "--threshold", 0.999, *common)
    assert out["pairs"] == 1 and out["largest"] == [{"group": "k03", "size": 2}]
    out = run("spark", "anomalies", data, "--out", tmp_path / "an", "-k", 2, "--top", 1, *common)
    assert out["rows"] == 30 and out["top"][0]["id"] in ("k03", "k29")  # the far-out copy and its source
    res = CliRunner().invoke(app, ["spark", "knn", str(data), "--out", str(tmp_path / "bad"), "--master", "local[2]"])
    assert isinstance(res.exception, DatasetError) and "no column 'id'" in str(res.exception)
