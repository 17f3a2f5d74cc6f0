"""The lexical index: analysis and BM25 scores against bm25s, kept exact through every write, crash-safe.

References: bm25s (same analyzer tokens, Lucene BM25, k1=1.5, b=0.75) rebuilt from the live
documents alone; PyStemmer and bm25s's tokenizer for the analyzer; hand-worked numbers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import vecbox
from vecbox import Collection
from vecbox.errors import InvalidInputError
from vecbox.lexical.analyzer import Analyzer
from vecbox.lexical.bm25 import BM25Index
from vecbox.storage import terms as terms_sql

bm25s = pytest.importorskip("bm25s")
Stemmer = pytest.importorskip("Stemmer")

WORDS = ("apple banana cherry date elder fig grape honeydew kiwi lemon mango nectarine olive papaya quince "
         "raspberry strawberry tangerine ugli vanilla watermelon running runner runs ran").split()


def _docs(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 25)))) + (" the and of" if i % 3 else "")
            for i in range(n)]


def _bm25s_scores(docs: list[str], query: str) -> np.ndarray:
    """bm25s over the same analyzer's tokens: the independent reference."""
    an = Analyzer()
    ret = bm25s.BM25(k1=1.5, b=0.75)
    ret.index([an.terms(d) for d in docs], show_progress=False)
    return ret.get_scores(an.terms(query))


def test_the_analyzer_tokenises_like_bm25s_with_pystemmer():
    text = "The runners were RUNNING quickly, and it's a well-known fact: 42 cats ran!"
    ours = Analyzer().terms(text)
    tok = bm25s.tokenize([text], stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False,
                         return_ids=False)
    assert ours == list(tok[0])
    assert Analyzer(stopwords=False, stem=False).terms("A an THE") == ["an", "the"]  # one-letter words never count
    assert Analyzer(stopwords=["fact"]).terms("the fact") == ["the"]
    assert Analyzer(fold_accents=False).terms("Café") == ["café"]
    assert Analyzer().terms("Café") == ["cafe"]


def test_bad_analyzer_settings_say_what_is_accepted():
    with pytest.raises(InvalidInputError, match="no Snowball stemmer for language 'klingon'"):
        Analyzer(language="klingon")
    with pytest.raises(InvalidInputError, match="unknown lexical setting"):
        Collection.create("/nonexistent-never-created", dim=2, lexical={"langauge": "english"})
    with pytest.raises(InvalidInputError, match="k1 must be a number > 0"):
        Collection.create("/nonexistent-never-created", dim=2, lexical={"k1": 0})
    with pytest.raises(InvalidInputError, match="b must be a number in"):
        Collection.create("/nonexistent-never-created", dim=2, lexical={"b": 2})


def test_bm25_index_matches_bm25s_across_blocks_and_deletions():
    docs = _docs(400, seed=1)
    an = Analyzer()
    idx = BM25Index()
    for start in range(0, 400, 23):  # many small appends: several blocks, merged as they come
        idx.append(np.arange(start, min(start + 23, 400)), [an.terms(d) for d in docs[start:start + 23]])
    alive = np.ones(400, bool)
    for q in ("apple running", "quince quince fig", "zzz", "lemon mango olive papaya"):
        pos, s = idx.scores(an.terms(q), alive)
        mine = np.zeros(400)
        mine[pos] = s
        np.testing.assert_allclose(mine, _bm25s_scores(docs, q), rtol=1e-5, atol=1e-6)
    alive[::3] = False  # deleted rows leave the statistics: the scores of an index of the survivors
    keep = np.flatnonzero(alive)
    pos, s = idx.scores(an.terms("apple running"), alive)
    mine = np.zeros(400)
    mine[pos] = s
    np.testing.assert_allclose(mine[keep], _bm25s_scores([docs[i] for i in keep], "apple running"), rtol=1e-5,
                               atol=1e-6)
    assert not np.any(mine[~alive])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_n_in_c_equals_the_numpy_scores(seed):
    """BM25Index.top_n (one C pass) against BM25Index.scores (numpy) + a full sort: same rows, same scores.

    The arithmetic is the same operation for operation; only the logarithm in idf comes from the C
    library instead of numpy's own, which can differ in the last bit.
    """
    from vecbox.lexical import bm25 as bm25_module

    assert bm25_module._bm25 is not None, "the C extension vecbox.lexical._bm25 is not built"
    rng = np.random.default_rng(seed)
    docs = _docs(600, seed=seed)
    docs[5] = docs[6] = "apple apple"  # equal scores: ties go to the lower position
    an = Analyzer()
    idx = BM25Index()
    for start in range(0, 600, 37):
        idx.append(np.arange(start, min(start + 37, 600)), [an.terms(d) for d in docs[start:start + 37]])
    alive = rng.random(600) > 0.2
    allowed = rng.random(600) > 0.5
    for q in ("apple running", "apple apple fig", "zzz", "lemon mango olive papaya the", "apple"):
        terms = an.terms(q)
        for live_mask, mask in [(np.ones(600, bool), None), (alive, None), (alive, allowed)]:
            pos, sc = idx.scores(terms, live_mask, mask)
            order = np.lexsort((pos, -sc))
            for n in (1, 5, 50, 1000):
                got_s, got_p, matched = idx.top_n(terms, n, live_mask, mask)
                assert matched == len(pos)
                assert got_p.tolist() == pos[order][:n].tolist()
                np.testing.assert_allclose(got_s, sc[order][:n], rtol=1e-14, atol=0)


def test_top_n_refuses_inconsistent_postings():
    from vecbox.lexical import _bm25

    with pytest.raises(ValueError, match="differ in length"):
        _bm25.top([np.zeros(3, np.int64)], [np.ones(2, np.float32)], [0], np.ones(1), 3, np.ones(3, np.float32),
                  None, None, 3, np.empty(2), np.empty(2, np.int64))
    with pytest.raises(ValueError, match="inconsistent"):
        _bm25.top([np.array([0, -1], np.int64)], [np.ones(2, np.float32)], [0], np.ones(1), 3,
                  np.ones(3, np.float32), None, None, 3, np.empty(2), np.empty(2, np.int64))
    with pytest.raises(ValueError, match="expected items of 4 bytes"):
        _bm25.top([np.zeros(2, np.int64)], [np.ones(2, np.float64)], [0], np.ones(1), 3, np.ones(3, np.float32),
                  None, None, 3, np.empty(2), np.empty(2, np.int64))


def _lexical_ids(col: Collection, query: str, k: int = 1000, **kw) -> dict[str, float]:
    return {h.id: h.score for h in col.search_lexical(query, k, include_metadata=False, **kw)}


def _expect(live: dict[str, str], query: str) -> dict[str, float]:
    ids = list(live)
    ref = _bm25s_scores([live[i] for i in ids], query)
    return {i: float(s) for i, s in zip(ids, ref) if s > 0}


def _assert_same(got: dict[str, float], want: dict[str, float]) -> None:
    assert set(got) == set(want)
    for i in want:
        assert got[i] == pytest.approx(want[i], rel=1e-5)


def test_a_collection_scores_like_bm25s_through_adds_deletes_upserts_and_compaction(tmp_path):
    docs = _docs(300, seed=2)
    rng = np.random.default_rng(0)
    col = Collection.create(tmp_path / "c", dim=8)
    live: dict[str, str] = {}
    for start in range(0, 300, 60):
        ids = [f"d{i}" for i in range(start, start + 60)]
        col.add(ids, rng.standard_normal((60, 8)), documents=docs[start:start + 60])
        live.update(zip(ids, docs[start:start + 60]))
    queries = ("apple running", "grape kiwi", "vanilla")
    for q in queries:
        _assert_same(_lexical_ids(col, q), _expect(live, q))
    col.delete([f"d{i}" for i in range(0, 300, 7)])
    for i in range(0, 300, 7):
        live.pop(f"d{i}")
    new_docs = {f"d{i}": "vanilla vanilla strawberry" for i in range(1, 300, 11)}
    col.upsert(list(new_docs), rng.standard_normal((len(new_docs), 8)), documents=list(new_docs.values()))
    live.update(new_docs)
    reader = Collection.open(tmp_path / "c")  # another handle follows the same commits
    for q in queries:
        _assert_same(_lexical_ids(col, q), _expect(live, q))
        _assert_same(_lexical_ids(reader, q), _expect(live, q))
    col.compact()
    col.add(["late"], rng.standard_normal((1, 8)), documents=["apple apple apple"])
    live["late"] = "apple apple apple"
    for handle in (col, reader, Collection.open(tmp_path / "c")):
        for q in queries:
            _assert_same(_lexical_ids(handle, q), _expect(live, q))
    # the terms table holds exactly the live rows' documents after compaction
    n_terms = col._conn.execute("SELECT COUNT(*) FROM terms").fetchone()[0]
    assert n_terms == len(live)


def test_filters_apply_before_ranking_so_k_allowed_hits_come_back(tmp_path):
    col = Collection.create(tmp_path / "c", dim=2)
    n = 200
    docs = ["apple " * (1 + i % 5) + "pear" for i in range(n)]
    col.add([f"d{i}" for i in range(n)], np.ones((n, 2)), [{"g": i % 10} for i in range(n)], docs)
    hits = col.search_lexical("apple", k=15, where={"g": 3})
    assert len(hits) == 15 and all(h.metadata["g"] == 3 for h in hits)
    everything = _lexical_ids(col, "apple", k=n)
    allowed = sorted((s, i) for i, s in everything.items() if int(i[1:]) % 10 == 3)
    assert [h.id for h in hits] == [i for s, i in sorted(allowed, key=lambda t: (-t[0], int(t[1][1:])))][:15]
    assert col.search_lexical("apple", where={"g": 99}) == []


def test_rows_without_documents_or_terms_are_never_returned(tmp_path):
    col = Collection.create(tmp_path / "c", dim=2)
    col.add(["a", "b", "c"], np.eye(2)[[0, 1, 0]], documents=["apple", None, "the and of"])
    assert [h.id for h in col.search_lexical("apple")] == ["a"]
    assert col.search_lexical("zebra") == []
    assert col.search_lexical("the of") == []  # only stop words: no terms, no hits
    plan = col.search_lexical("apple", explain=True).plan
    assert plan.lexical["terms"] == ["appl"] and plan.lexical["matched"] == 1


def test_lexical_settings_persist_and_enable_lexical_indexes_stored_documents(tmp_path):
    col = Collection.create(tmp_path / "g", dim=2, lexical={"language": "german", "k1": 1.2, "b": 0.5})
    col.add(["a"], [[1.0, 0.0]], documents=["Die Häuser stehen"])
    again = Collection.open(tmp_path / "g")
    assert again.lexical["language"] == "german" and again.lexical["k1"] == 1.2
    assert [h.id for h in again.search_lexical("Haus")] == ["a"]

    plain = Collection.create(tmp_path / "p", dim=2, lexical=False)
    plain.add(["a", "b"], np.eye(2), documents=["red apples", "green pears"])
    with pytest.raises(InvalidInputError, match="enable_lexical"):
        plain.search_lexical("apple")
    other = Collection.open(tmp_path / "p")
    plain.enable_lexical()
    plain.add(["c"], [[1.0, 1.0]], documents=["apple pie"])
    assert set(_lexical_ids(other, "apple")) == {"a", "c"}  # the other handle follows the new index
    plain.enable_lexical({"stem": False})  # a rebuild with other settings: "apples" no longer matches "apple"
    assert set(_lexical_ids(other, "apple")) == {"c"}
    assert plain.enable_lexical({"stem": False}) == plain.version  # same settings: nothing to do


def test_bad_lexical_queries_get_clear_errors(tmp_path):
    col = Collection.create(tmp_path / "c", dim=2)
    col.add(["a"], [[1.0, 0.0]], documents=["apple"])
    for bad in ("", "   ", None, 3):
        with pytest.raises(InvalidInputError, match="non-empty"):
            col.search_lexical(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="k must be"):
        col.search_lexical("apple", k=0)
    with pytest.raises(InvalidInputError, match="mode must be"):
        col.search_text("apple", mode="sparse")
    with pytest.raises(InvalidInputError):
        col.search_lexical("apple", where={"$bogus": 1})


SRC = str(Path(vecbox.__file__).resolve().parents[1])
LEX_BATCH = 100

# Adds batches whose documents carry a batch word and a row word, upserts and deletes older
# rows, compacts now and then; acknowledges each commit on stdout.
LEX_WRITER = textwrap.dedent(
    f"""
    import sys, numpy as np
    from vecbox import Collection
    col = Collection.open(sys.argv[1], lock_timeout=30)
    b = int(sys.argv[2])
    while True:
        if b % 5 == 4:
            col.compact()
        elif b % 5 == 3:
            col.upsert([f"{{b - 3}}-{{i}}" for i in range(0, {LEX_BATCH}, 2)], np.ones(({LEX_BATCH} // 2, 4)),
                       documents=[f"upserted b{{b - 3}}x r{{b - 3}}x{{i}}" for i in range(0, {LEX_BATCH}, 2)])
            col.delete([f"{{b - 3}}-{{i}}" for i in range(1, {LEX_BATCH}, 4)], missing_ok=True)
        else:
            x = np.random.default_rng(b).standard_normal(({LEX_BATCH}, 4))
            col.add([f"{{b}}-{{i}}" for i in range({LEX_BATCH})], x,
                    documents=[f"batch b{{b}}x row r{{b}}x{{i}} common" for i in range({LEX_BATCH})])
        print("ok", b, flush=True)
        b += 1
    """
)


@pytest.mark.filterwarnings("ignore:.*newer than the latest commit")
def test_sigkill_at_any_moment_leaves_the_lexical_index_equal_to_the_committed_rows(tmp_path):
    """Issue 19's crash test: after each of >= 50 kills the terms are exactly those of the committed rows."""
    path = tmp_path / "c"
    Collection.create(path, dim=4).close()
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rng = np.random.default_rng(3)
    b, kills = 0, 0
    for _ in range(50):
        proc = subprocess.Popen([sys.executable, "-c", LEX_WRITER, str(path), str(b)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        time.sleep(float(rng.uniform(0.3, 1.0)))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err
        kills += 1
        b += len(out.splitlines()) + 1  # acknowledged steps, and the one that may have been in flight
        with Collection.open(path) as col:
            records = {r.id: r.document for r in col.get(col.ids())} if col.count() else {}
            conn = col._conn
            live_rids = {rid for (rid,) in conn.execute("SELECT rid FROM rows WHERE deleted IS NULL")}
            term_rids = {rid for rid, _ in terms_sql.terms_after(conn, 0)}
            assert live_rids <= term_rids  # every live document has its terms (dead ones wait for compaction)
            assert term_rids <= {rid for (rid,) in conn.execute("SELECT rid FROM rows")}  # and no orphan terms
            common = _lexical_ids(col, "common", k=100_000)
            assert set(common) == {i for i, d in records.items() if "common" in d}
            for i in list(records)[:: max(1, len(records) // 20)]:  # a row's own word finds that row alone
                word = records[i].split()[3 if records[i].startswith("batch") else 2]
                assert set(_lexical_ids(col, word)) == {i}
    assert kills >= 50 and b > 60
