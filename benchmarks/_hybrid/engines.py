"""Lexical engines over the same analyzer terms: vecbox, SQLite FTS5, bm25s, tantivy.

Every engine gets the documents' :class:`vecbox.lexical.Analyzer` terms; an engine that
tokenises itself (FTS5, tantivy) gets them space-joined, with a tokenizer that only splits on
white space, so all four index the very same tokens. vecbox is the exception by design: it is
handed the raw documents and analyses them inside ``col.add`` (that is its API), and its query
takes the query text (analysed inside ``search_lexical``); the analysis cost is reported apart.

Each engine: ``build(corpus)`` (timed by the caller), ``search(i, k)`` for query ``i`` returning
``[(doc id, score)]`` best first, ``disk_bytes()`` and a one-line ``crash_safety`` note: what vecbox
would have to do to keep that index exactly in step with its committed rows.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import _report as R

from .data import Corpus

Hits = list[tuple[str, float]]


class Engine:
    """One lexical index over a :class:`Corpus`."""

    key = ""
    name = ""
    crash_safety = ""
    scoring = ""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.c: Corpus | None = None
        self.build_s = 0.0  # set by the caller from build()'s result
        self.build_detail = ""  # how the build time splits, for the table
        self.notes: list[str] = []

    def build(self, c: Corpus) -> float:
        """Index ``c``'s documents; returns the seconds the build took."""
        raise NotImplementedError

    def search(self, i: int, k: int) -> Hits:
        raise NotImplementedError

    def disk_bytes(self) -> int | None:
        return None

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- vecbox
def vecbox_collection(path: Path, c: Corpus, *, lexical: bool = True) -> tuple[Any, float]:
    """A collection with ``c``'s vectors and documents (one ``add``): ``(collection, seconds of the add)``."""
    from vecbox import Collection

    col = Collection.create(path, dim=c.doc_vecs.shape[1], lexical=lexical)
    R.quiet_gc()
    t0 = time.perf_counter()
    col.add(c.doc_ids, c.doc_vecs, None, c.docs)
    return col, time.perf_counter() - t0


class VecboxLexical(Engine):
    """vecbox: terms committed in the catalog with the rows, BM25 postings rebuilt in RAM on first search."""

    key, name = "vecbox", "vecbox (terms in the catalog + RAM postings)"
    scoring = "Lucene BM25, k1 1.5, b 0.75"
    crash_safety = "none: the terms commit in the rows' own SQLite transaction; postings are rebuilt from them"

    def __init__(self, tmp: Path, repeats: int = 2) -> None:
        super().__init__(tmp)
        self.repeats = repeats
        self.col: Any = None
        self.path: Path | None = None
        self.split: dict[str, float] = {}

    def build(self, c: Corpus) -> float:
        """Best of ``repeats``: add with the lexical index minus the same add without it, plus the first search."""
        from vecbox import Collection

        self.c = c
        with_lex, without = [], []
        sizes: tuple[int, int] = (0, 0)
        for r in range(self.repeats):
            pa, pb = self.tmp / f"vecbox-lex-{r}", self.tmp / f"vecbox-nolex-{r}"
            col_b, tb = vecbox_collection(pb, c, lexical=False)
            col_b.close()
            col_a, ta = vecbox_collection(pa, c, lexical=True)
            col_a.close()
            with_lex.append(ta)
            without.append(tb)
            sizes = (R.dir_bytes(pa), R.dir_bytes(pb))
            self.path = pa
        commit_s = max(min(with_lex) - min(without), 0.0)
        self._disk = max(sizes[0] - sizes[1], 0)
        assert self.path is not None
        self.col = Collection.open(self.path)
        t0 = time.perf_counter()
        self.col.search_lexical(c.queries[0], 10, include_metadata=False)
        first = time.perf_counter() - t0
        warm = min(R.timed(lambda: self.col.search_lexical(c.queries[0], 10, include_metadata=False))[0]
                   for _ in range(5))
        postings_s = max(first - warm, 0.0)
        self.split = {"add_with_s": min(with_lex), "add_without_s": min(without), "terms_commit_s": commit_s,
                      "postings_s": postings_s, "first_search_s": first, "analyse_s": c.analyse_s}
        self.build_detail = (f"{commit_s:.2f} s analysing and committing the terms (analysis alone "
                             f"{c.analyse_s:.2f} s) + {postings_s:.2f} s postings")
        return commit_s + postings_s

    def search(self, i: int, k: int) -> Hits:
        assert self.c is not None
        return [(h.id, h.score) for h in self.col.search_lexical(self.c.queries[i], k, include_metadata=False)]

    def disk_bytes(self) -> int | None:
        return self._disk

    def close(self) -> None:
        if self.col is not None:
            self.col.close()


# --------------------------------------------------------------------------- SQLite FTS5
def _fts5_match(terms: list[str]) -> str:
    """An FTS5 query: the OR of the terms, each quoted (repeats kept, like the other engines' queries)."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


class Fts5(Engine):
    """SQLite FTS5: a plain ``fts5(terms)`` virtual table in its own database file."""

    key, name = "fts5", "SQLite FTS5"
    scoring = "FTS5 bm25(): fixed k1 1.2, b 0.75, IDF ln((N - df + 0.5) / (df + 0.5)) floored at 1e-6"
    crash_safety = "none if inside the catalog: the table commits in the rows' SQLite transaction"

    def build(self, c: Corpus) -> float:
        self.c = c
        self.path = self.tmp / "fts5.sqlite"
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        # unicode61 splits on anything but letters and digits; "_" is a word character for the analyzer too
        self.conn.execute("CREATE VIRTUAL TABLE t USING fts5(terms, tokenize = \"unicode61 tokenchars '_'\")")
        rows = [(j + 1, " ".join(t)) for j, t in enumerate(c.doc_terms)]
        R.quiet_gc()
        t0 = time.perf_counter()
        self.conn.execute("BEGIN")
        self.conn.executemany("INSERT INTO t(rowid, terms) VALUES (?, ?)", rows)
        self.conn.execute("COMMIT")
        seconds = time.perf_counter() - t0
        self.notes.append("tokenizer `unicode61 tokenchars '_'` (splits the space-joined terms back into the same "
                          "tokens); query: the OR of the quoted terms, `ORDER BY bm25(t)`")
        return seconds

    def search(self, i: int, k: int) -> Hits:
        assert self.c is not None
        terms = self.c.q_terms[i]
        if not terms:
            return []
        rows = self.conn.execute("SELECT rowid, bm25(t) FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT ?",
                                 (_fts5_match(terms), k)).fetchall()
        ids = self.c.doc_ids
        return [(ids[r - 1], -s) for r, s in rows]  # bm25() is negated: lower is better

    def disk_bytes(self) -> int | None:
        return R.dir_bytes(self.path)

    def close(self) -> None:
        self.conn.close()


# --------------------------------------------------------------------------- bm25s
class Bm25s(Engine):
    """bm25s: a static sparse matrix of precomputed BM25 weights (the reference scorer)."""

    key, name = "bm25s", "bm25s"
    scoring = "Lucene BM25, k1 1.5, b 0.75"
    crash_safety = "static index: rebuild after every commit, or a derived cache stamped with the version"

    def build(self, c: Corpus) -> float:
        import bm25s

        self.c = c
        R.quiet_gc()
        t0 = time.perf_counter()
        self.ret = bm25s.BM25(k1=1.5, b=0.75)
        self.ret.index(c.doc_terms, show_progress=False)
        seconds = time.perf_counter() - t0
        self.saved = self.tmp / "bm25s"
        self.ret.save(self.saved, show_progress=False)  # numpy arrays + JSON vocabulary, no pickle
        self.notes.append("`BM25(k1=1.5, b=0.75).index(terms)`, `retrieve([terms], k, n_threads=1)`; "
                          "disk = its `save()` (the index lives in RAM)")
        return seconds

    def search(self, i: int, k: int) -> Hits:
        assert self.c is not None
        k = min(k, self.c.n_docs)
        docs, scores = self.ret.retrieve([self.c.q_terms[i]], k=k, n_threads=1, show_progress=False)
        ids = self.c.doc_ids
        return [(ids[int(j)], float(s)) for j, s in zip(docs[0], scores[0]) if s > 0]

    def disk_bytes(self) -> int | None:
        return R.dir_bytes(self.saved)


# --------------------------------------------------------------------------- tantivy
class Tantivy(Engine):
    """tantivy (Rust, Lucene-like): an index directory with a whitespace-tokenised field, frequencies only."""

    key, name = "tantivy", "tantivy"
    scoring = "BM25, k1 1.2, b 0.75 (Lucene IDF)"
    crash_safety = "a second store with its own commit: two-phase commit with the catalog, or replay on open"

    def build(self, c: Corpus) -> float:
        import tantivy

        self.c = c
        sb = tantivy.SchemaBuilder()
        sb.add_integer_field("rid", stored=False, indexed=False, fast=True)
        sb.add_text_field("terms", stored=False, tokenizer_name="whitespace", index_option="freq")
        self.schema = sb.build()
        self.path = self.tmp / "tantivy"
        self.path.mkdir()
        R.quiet_gc()
        t0 = time.perf_counter()
        self.index = tantivy.Index(self.schema, path=str(self.path))
        writer = self.index.writer(heap_size=256_000_000, num_threads=1)
        for j, t in enumerate(c.doc_terms):
            writer.add_document(tantivy.Document(rid=j, terms=" ".join(t)))
        writer.commit()
        writer.wait_merging_threads()
        self.index.reload()
        seconds = time.perf_counter() - t0
        self.searcher = self.index.searcher()
        self.notes.append("text field with the `whitespace` tokenizer, `index_option='freq'`, one writer thread; "
                          "query: a boolean query of one SHOULD term query per term; ids from an i64 fast field")
        return seconds

    def search(self, i: int, k: int) -> Hits:
        import tantivy

        assert self.c is not None
        terms = self.c.q_terms[i]
        if not terms:
            return []
        q = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(self.schema, "terms", t)) for t in terms])
        hits = self.searcher.search(q, k, count=False).hits
        rids = self.searcher.fast_field_values("rid", [a for _, a in hits])
        ids = self.c.doc_ids
        return [(ids[int(r)], float(s)) for (s, _), r in zip(hits, rids)]

    def disk_bytes(self) -> int | None:
        return R.dir_bytes(self.path)


ENGINES: dict[str, type[Engine]] = {"vecbox": VecboxLexical, "fts5": Fts5, "bm25s": Bm25s, "tantivy": Tantivy}


def available(key: str) -> str | None:
    """Why an engine cannot run here (its package is missing), or None."""
    module = {"bm25s": "bm25s", "tantivy": "tantivy"}.get(key)
    if module is None:
        return None
    try:
        __import__(module)
    except ImportError:
        return f"{module} not installed"
    return None


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("nan")


__all__ = ["ENGINES", "Engine", "Hits", "available", "rate", "vecbox_collection"]
