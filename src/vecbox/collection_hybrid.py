"""The lexical and hybrid search methods of :class:`~vecbox.collection.Collection` (a mixin).

Documents are analysed (:class:`~vecbox.lexical.Analyzer`) when they are written and their
terms committed with the rows (:mod:`vecbox.storage.terms`); a search builds the BM25
postings in RAM from those terms on first use and follows later commits incrementally.
Execution - both retrievers under one filter mask, then fusion - is :mod:`vecbox.query.hybrid`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np

from vecbox import _validation as v
from vecbox.errors import InvalidInputError
from vecbox.lexical.analyzer import Analyzer
from vecbox.lexical.settings import lexical_settings
from vecbox.query import hybrid
from vecbox.query.fusion import Fusion
from vecbox.results import Explained, Hit
from vecbox.storage import catalog, terms as terms_sql
from vecbox.storage.terms import LexicalView

DEFAULT_CANDIDATES = 100  # each retriever's list handed to fusion


class HybridMethods:
    """``search_lexical`` / hybrid parts of ``search`` and ``search_text`` / ``enable_lexical`` (mixed in)."""

    _conn: Any
    _state: Any
    _lock: Any
    _config: dict[str, Any]
    _reader: Any
    _executor: Any
    _mv: dict[str, Any] | None
    path: Any
    dim: int
    metric: str

    # ---------------------------------------------------------------- settings
    @property
    def lexical(self) -> dict[str, Any] | None:
        """The lexical index's settings (analyzer, ``k1``, ``b``), or ``None`` when the collection has none."""
        return self._config.get("lexical")

    @property
    def analyzer(self) -> Analyzer:
        """The analyzer of this collection's lexical index."""
        cfg = self._require_lexical()
        cached = getattr(self, "_analyzer", None)
        if cached is None or cached[0] != cfg:  # a dict comparison: building an Analyzer costs a stemmer
            cached = self._analyzer = (dict(cfg), Analyzer.from_config(cfg))
        return cached[1]

    def _require_lexical(self) -> dict[str, Any]:
        cfg = self.lexical
        if cfg is None:
            raise InvalidInputError(
                f"{self.path} has no lexical index (it was created with lexical=False or before vecbox had one); "
                "build it with col.enable_lexical() - it indexes the stored documents in one commit"
            )
        return cfg

    def _terms_for(self, documents: Sequence[str | None]) -> list[str | None] | None:
        """The terms to commit with these documents (``None``: no lexical index, or no documents)."""
        if self.lexical is None or all(d is None for d in documents):
            return None
        an = self.analyzer
        out: list[str | None] = []
        for d in documents:
            t = an.terms(d) if d is not None else None
            out.append(" ".join(t) if t else None)
        return out

    def enable_lexical(self, settings: bool | Mapping[str, Any] = True) -> int:
        """Build (or rebuild with new settings) the lexical index over every stored document, in one commit.

        ``settings`` as in :meth:`Collection.create` (``lexical=``). Returns the new version.

        >>> from vecbox import Collection
        >>> col = Collection.create(tmp + "/old", dim=2, lexical=False)
        >>> _ = col.add(["a", "b"], [[1.0, 0.0], [0.0, 1.0]], documents=["red apples", "green pears"])
        >>> col.enable_lexical({"language": "english"})
        2
        >>> [h.id for h in col.search_text("apple", mode="lexical")]
        ['a']
        """
        cfg = lexical_settings(settings)
        if cfg is None:
            raise InvalidInputError("enable_lexical needs settings: True or a dict such as {'language': 'english'}")
        old = self.lexical
        cfg["generation"] = int(old.get("generation", 0)) + 1 if old else 1
        analyzer = Analyzer.from_config(cfg)
        with self._lock, catalog.transaction(self._conn) as conn:
            if old is not None and {**old, "generation": 0} == {**cfg, "generation": 0}:
                return catalog.current_version(conn)
            if old is not None:
                conn.execute("DELETE FROM terms")
            todo = terms_sql.documents_without_terms(conn)
            pairs = [(rid, " ".join(t)) for rid, doc in todo if (t := analyzer.terms(doc))]
            terms_sql.insert_terms_for(conn, pairs)
            catalog.set_config(conn, "lexical", cfg)
            version = catalog.log_version(conn, "lexical", 0, 0)
        self._config["lexical"] = cfg
        return version

    # ------------------------------------------------------------------ search
    def search_lexical(self, text: str, k: int = 10, *, where: Mapping[str, Any] | None = None,
                       include_metadata: bool = True, explain: bool = False) -> "list[Hit] | Explained":
        """BM25 search over the stored documents (no vectors involved); scores are BM25 scores.

        >>> from vecbox import Collection
        >>> col = Collection.create(tmp + "/lex", dim=2)
        >>> _ = col.add(["a", "b"], [[1.0, 0.0], [0.0, 1.0]], documents=["The cat sat", "Dogs running"])
        >>> [h.id for h in col.search_lexical("dog runs")]
        ['b']
        """
        return self._lexical_or_hybrid("lexical", None, text, k, where=where, include_metadata=include_metadata,
                                       explain=explain)

    def _hybrid_search(self, query: Any, text: Any, k: int, *, funnel: Any, nprobe: Any, **options: Any
                       ) -> "list[Hit] | Explained":
        """``search(vector, text=...)``: checks the options that only dense search takes, then runs hybrid."""
        if text is None:
            raise InvalidInputError("fusion= and candidates= belong to hybrid search; pass text= as well")
        if funnel is not None or nprobe is not None:
            raise InvalidInputError("hybrid search (text=) takes ef_search= and exact=, not funnel= or nprobe=")
        q = v.as_matrix(query, d=self.dim, name="query", allow_1d=True)
        if len(q) != 1:
            raise InvalidInputError(f"search() takes one query; got {len(q)}")
        return self._lexical_or_hybrid("hybrid", q, text, k, **options)

    def _lexical_or_hybrid(self, mode: str, q: np.ndarray | None, text: Any, k: int, *,
                           where: Mapping[str, Any] | None, include_metadata: bool = True, explain: bool = False,
                           fusion: Any = None, candidates: int | None = None, ef_search: int | None = None,
                           exact: bool = False, oversample: float = 4.0) -> "list[Hit] | Explained":
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(f"a {mode} search needs a non-empty query string; got {text!r}")
        k = v.check_positive_int(k, "k")
        n_cand = v.check_positive_int(candidates, "candidates") if candidates is not None else DEFAULT_CANDIDATES
        fz = Fusion.parse(fusion) if mode == "hybrid" else None
        effort = v.check_positive_int(ef_search, "ef_search") if ef_search is not None else None
        if q is not None:
            q = v.normalise_rows(q, "queries") if self.metric == "cosine" else v.check_magnitude(q, "queries")
        ex = self._executor
        with self._state:
            flt = ex.selection.parse(where)
            # As in dense search: without metadata to fetch or a filter mask to compute, nothing needs
            # a read transaction - the commit watch says whether to refresh, and the postings' own
            # refresh skips terms of rows newer than the live view it follows.
            live = self._live  # type: ignore[attr-defined]
            need_sql = include_metadata or not flt.empty and ex.selection.cached(flt, live) is None
            with (catalog.transaction(self._conn, write=False) if need_sql else nullcontext(self._conn)) as conn:
                self._sync(conn, in_transaction=need_sql)  # type: ignore[attr-defined]
                cfg = self._require_lexical()
                query_terms = self.analyzer.terms(text)
                live = self._reader.live
                view = self._lexical_view(cfg)
                if not view.current(live):
                    view.refresh(conn, live)
                if live.n == 0:
                    empty = hybrid.HybridPlan(mode, 0, "the collection is empty", lexical={"terms": query_terms})
                    return Explained([], empty) if explain else []
                scores, pos, plan, lists = hybrid.run(conn, self._reader, ex, view, mode, q, query_terms, k, flt, fz,
                                                      n_cand, effort=effort, exact=exact, oversample=oversample)
                ids = live.ids
                if explain:
                    named = [[(ids[p], float(s)) for s, p in zip(ls.tolist(), lp.tolist())] for ls, lp in lists]
                    if mode == "hybrid":
                        plan.dense_hits, plan.lexical_hits = named[0], named[1]
                    else:
                        plan.lexical_hits = named[0]
                rows = {}
                if include_metadata and len(pos):
                    rows = catalog.fetch_rows(conn, sorted(set(live.rids[pos].tolist())))
                rids = live.rids[pos].tolist() if len(pos) else []
        if include_metadata:
            hits = [Hit(rows[r][0], float(s), rows[r][1], rows[r][2]) for r, s in zip(rids, scores.tolist())]
        else:
            hits = [Hit(ids[p], float(s)) for p, s in zip(pos.tolist(), scores.tolist())]
        return Explained(hits, plan) if explain else hits  # type: ignore[arg-type]

    def _lexical_view(self, cfg: dict[str, Any]) -> LexicalView:
        view = getattr(self, "_lexical_state", None)
        generation = cfg.get("generation", 1)
        if view is None or view[0] != generation:
            view = self._lexical_state = (generation, LexicalView(float(cfg["k1"]), float(cfg["b"])))
        return view[1]

    def _follow_lexical_config(self, conn: Any) -> None:
        """Follow a lexical index built or rebuilt by another handle (its settings are in the config table)."""
        self._config["lexical"] = catalog.config_value(conn, "lexical")


__all__ = ["DEFAULT_CANDIDATES", "HybridMethods"]
