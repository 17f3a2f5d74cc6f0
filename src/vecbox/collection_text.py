"""The text and multi-vector methods of :class:`~vecbox.collection.Collection` (a mixin).

Text goes through the collection's model (:mod:`vecbox.encoders.text`, loaded on first use);
multi-vector items are token sets stored beside their MUVERA FDE (:mod:`vecbox.multivector`,
the token files of :mod:`vecbox.storage.tokens`). Both end in the collection's ordinary
write and search paths.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from vecbox import _validation as v
from vecbox.errors import DuplicateIdError, InvalidInputError
from vecbox.results import Explained, Hit
from vecbox.storage import catalog
from vecbox.storage.tokens import TokenFiles

if TYPE_CHECKING:
    from vecbox.encoders.text import TextEncoder
    from vecbox.multivector import FDEConfig


class TextMethods:
    """``add_texts`` / ``search_text`` / ``add_multi`` / ``search_multi`` (mixed into the Collection)."""

    _conn: Any
    _state: Any
    _mv: dict[str, Any] | None
    _encoder: Any
    _token_files: TokenFiles | None
    model: str | None
    path: Any

    # ------------------------------------------------------------- multi-vector
    def _fde_config(self) -> "FDEConfig":
        from vecbox.multivector import FDEConfig

        if self._mv is None:
            raise InvalidInputError(
                f"{self.path} is not a multi-vector collection; create one with "
                "Collection.create(path, multivector=FDEConfig(...), token_dim=...)"
            )
        return FDEConfig.from_dict(self._mv["fde"])

    def add_multi(
        self,
        ids: Sequence[str],
        token_sets: Any,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        documents: Sequence[str | None] | None = None,
        *,
        upsert: bool = False,
    ) -> int:
        """Add items that are sets of token vectors, in one atomic commit; return the new version.

        ``token_sets`` is a list of ``(n_i, token_dim)`` arrays or the ragged ``(x, offsets)``
        pair :class:`~vecbox.encoders.tokens.TokenEncoder` returns. The tokens are stored as
        given; each item's vector is its MUVERA document FDE.

        >>> from vecbox import Collection
        >>> from vecbox.multivector import FDEConfig
        >>> col = Collection.create(tmp + "/mv", multivector=FDEConfig(reps=4, ksim=2), token_dim=8)
        >>> col.add_multi(["a", "b"], [np.ones((3, 8)), np.eye(8)[:5]])
        1
        >>> q = np.array([[1.0, -1.0, 0, 0, 0, 0, 0, 0]])  # Chamfer: 1 against "b", 0 against "a"
        >>> [(h.id, round(h.score, 3)) for h in col.search_multi([q], k=2)[0]]
        [('b', 1.0), ('a', 0.0)]
        """
        from vecbox.multivector import as_token_sets, encode_documents

        cfg = self._fde_config()
        ts = as_token_sets(token_sets, d=int(self._mv["token_dim"]), name="token_sets")  # type: ignore[index]
        if not np.all(np.isfinite(ts.x)):
            raise InvalidInputError("token_sets contain NaN or infinite values; clean them before adding")
        return self._write("upsert" if upsert else "add", ids, encode_documents(ts, cfg), metadatas, documents,
                           token_sets=ts)

    def search_multi(
        self, queries: Any, k: int = 10, *, candidates: int = 100, where: Mapping[str, Any] | None = None,
        include_metadata: bool = True, ef_search: int | None = None,
    ) -> list[list[Hit]]:
        """Late-interaction search: FDE candidates (exact or ANN, filtered), then exact Chamfer rerank.

        ``queries`` are token sets (one ``(n_i, token_dim)`` array per query, or ``(x, offsets)``).
        Scores are Chamfer similarities ``sum_q max_p <q, p>``, best first.
        """
        from vecbox.multivector import as_token_sets, encode_queries, rerank

        cfg = self._fde_config()
        k = v.check_positive_int(k, "k")
        candidates = v.check_positive_int(candidates, "candidates")
        if candidates < k:
            raise InvalidInputError(f"candidates ({candidates}) must be >= k ({k}); the rerank keeps k of them")
        qs = as_token_sets(queries, d=int(self._mv["token_dim"]), name="queries")  # type: ignore[index]
        cand = self.search_batch(encode_queries(qs, cfg), candidates, where=where, include_metadata=False,
                                 ef_search=ef_search)
        wanted = sorted({h.id for hits in cand for h in hits})
        with self._state, catalog.transaction(self._conn, write=False) as conn:
            located = catalog.locate_tokens(conn, wanted)
            if self._token_files is None:
                self._token_files = TokenFiles(self.path, int(self._mv["token_dim"]))  # type: ignore[index]
            self._token_files.retain({loc[0] for loc in located.values()} | catalog.token_files(conn))
            mats = {i: self._token_files.get(*loc) for i, loc in located.items()}
            out: list[list[tuple[str, float]]] = []
            for qi, hits in enumerate(cand):
                ids = [h.id for h in hits if h.id in mats]
                if not ids:
                    out.append([])
                    continue
                s, idx = rerank([qs[qi]], [mats[i] for i in ids], np.arange(len(ids))[None, :], min(k, len(ids)))
                out.append([(ids[j], float(sc)) for j, sc in zip(idx[0].tolist(), s[0].tolist()) if j >= 0])
            rows = {}
            if include_metadata:
                found = catalog.live_rids_for_ids(conn, sorted({i for r in out for i, _ in r}))
                rows = {row[0]: row for row in catalog.fetch_rows(conn, list(found.values())).values()}
        return [[Hit(i, s, *(rows[i][1:] if i in rows else (None, None))) for i, s in r] for r in out]

    # -------------------------------------------------------------------- text
    @property
    def encoder(self) -> "TextEncoder":
        """The text encoder of this collection's model (loaded on first use)."""
        if self._encoder is None:
            if self.model is None:
                raise InvalidInputError(
                    f"{self.path} was created without a text model; create it with model='default' "
                    "(or a sentence-transformers path) to use add_texts/search_text, or add vectors directly"
                )
            from vecbox.encoders.text import TextEncoder

            self._encoder = TextEncoder(self.model)
        elif self.model is not None and hasattr(self._encoder, "check_matches"):  # one handed in: same model,
            self._encoder.check_matches(self.model, f"collection {self.path}")  # same layers/dims as the vectors
        return self._encoder

    def add_texts(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        upsert: bool = False,
        commit_every: int = 10_000,
        show_progress: bool = False,
    ) -> int:
        """Encode texts with the collection's model and store them (text kept as the document).

        Each chunk of ``commit_every`` texts is one atomic commit. Returns the last version.
        """
        texts = v.check_documents(texts, len(texts))  # type: ignore[arg-type]
        if not texts or any(t is None for t in texts):
            raise InvalidInputError("texts must be a non-empty list of strings")
        commit_every = v.check_positive_int(commit_every, "commit_every")
        id_list = v.check_ids(ids, n=len(texts)) if ids is not None else [uuid.uuid4().hex for _ in texts]
        metas = list(metadatas) if metadatas is not None else [None] * len(texts)
        if len(metas) != len(texts):
            raise InvalidInputError(f"got {len(metas)} metadata entries for {len(texts)} texts")
        v.check_metadatas(metas, len(texts))
        if not upsert:  # fail before spending minutes on encoding
            existing = catalog.live_rids_for_ids(self._conn, id_list)
            if existing:
                raise DuplicateIdError(
                    f"{len(existing)} of these ids are already stored (first: {next(iter(existing))!r}); "
                    "pass upsert=True to replace them"
                )
        version = self.version
        write = self.upsert if upsert else self.add
        for start in range(0, len(texts), commit_every):
            sl = slice(start, start + commit_every)
            if self._mv is not None:  # multi-vector: token vectors per text
                tok = self.encoder.token_encoder().encode(texts[sl], kind="document", show_progress=show_progress)
                version = self.add_multi(id_list[sl], tok, metas[sl], texts[sl], upsert=upsert)
                continue
            x = self.encoder.encode(texts[sl], kind="document", show_progress=show_progress)  # type: ignore[arg-type]
            version = write(id_list[sl], x, metas[sl], texts[sl])
        return version

    def search_text(
        self, text: str, k: int = 10, *, mode: str = "dense", where: Mapping[str, Any] | None = None,
        oversample: float = 4.0, fusion: Any = None, candidates: int | None = None, explain: bool = False,
        include_metadata: bool = True,
    ) -> "list[Hit] | Explained":
        """Search with a text query: ``mode="dense"`` (the model's embedding), ``"lexical"`` (BM25) or ``"hybrid"``.

        Hybrid fuses the dense and the BM25 top ``candidates`` (default 100), both under
        ``where`` (``fusion``: see :meth:`search`). Lexical needs no model.
        """
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(f"search_text needs a non-empty string; got {text!r}")
        if mode not in ("dense", "lexical", "hybrid"):
            raise InvalidInputError(f"mode must be 'dense', 'lexical' or 'hybrid'; got {mode!r}")
        if mode == "lexical":
            return self.search_lexical(text, k, where=where, include_metadata=include_metadata,  # type: ignore[attr-defined]
                                       explain=explain)
        if self._mv is not None:
            if mode == "hybrid" or explain:
                raise InvalidInputError("multi-vector collections search text densely only (mode='dense', no explain)")
            return self.search_multi(self.encoder.token_encoder().encode([text], kind="query"), k, where=where)[0]
        q = self.encoder.encode([text], kind="query")[0]
        if mode == "hybrid":
            return self.search(q, k, where=where, oversample=oversample, text=text, fusion=fusion,  # type: ignore[attr-defined]
                               candidates=candidates, explain=explain, include_metadata=include_metadata)
        return self.search(q, k, where=where, oversample=oversample, explain=explain,  # type: ignore[attr-defined]
                           include_metadata=include_metadata)


__all__ = ["TextMethods"]
