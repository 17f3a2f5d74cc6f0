"""``MultiVectorIndex``: an in-memory MUVERA index (document tokens + their FDEs), saved as .npy + JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from vecbox._validation import check_positive_int
from vecbox.errors import CorruptCollectionError, InvalidInputError
from vecbox.multivector._chamfer import _maxsim_candidates, _top_k
from vecbox.multivector._config import FDEConfig
from vecbox.multivector._fde import encode_documents, encode_queries
from vecbox.multivector._ragged import TokenSets, as_token_sets
from vecbox.multivector._search import _fde_candidates, search_exact

FORMAT = "vecbox.multivector/1"
_FILES = ("tokens.npy", "offsets.npy", "fdes.npy")


class MultiVectorIndex:
    """Documents as token sets, searched by MUVERA: FDE MIPS for candidates, exact Chamfer rerank.

    Documents are numbered 0, 1, ... in the order they are added. Not thread-safe for
    concurrent ``add``; concurrent ``search`` calls are fine.

    Parameters
    ----------
    config : FDEConfig
        How documents and queries are encoded (``fill_empty`` applies to documents).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> docs = [rng.normal(size=(6, 16)).astype(np.float32) for _ in range(40)]
    >>> index = MultiVectorIndex(FDEConfig(reps=8, ksim=3))
    >>> index.add(docs).tolist()[:3], len(index)
    ([0, 1, 2], 40)
    >>> scores, idx = index.search([docs[3][:2]], k=2, candidates=10)
    >>> int(idx[0, 0])
    3
    """

    def __init__(self, config: FDEConfig) -> None:
        if not isinstance(config, FDEConfig):
            raise InvalidInputError(f"config must be an FDEConfig; got {type(config).__name__}")
        self.config = config
        self.d: int | None = None
        self._tokens: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []
        self._fdes: list[np.ndarray] = []
        self._cache: tuple[TokenSets, np.ndarray] | None = None
        self._ann: Any = None  # optional AnnIndex over the FDEs (build_ann)

    @classmethod
    def from_encoded(
        cls, config: FDEConfig, token_sets: Any, fdes: np.ndarray, *, offsets: Any = None
    ) -> MultiVectorIndex:
        """An index over documents whose FDEs were computed already (``encode_documents(token_sets, config)``).

        The arrays are used as given (not copied): a caller that stores tokens and FDEs
        (e.g. memory-mapped segments) searches them without re-encoding.
        """
        index = cls(config)
        ts = as_token_sets(token_sets, offsets, name="token_sets")
        f = np.asarray(fdes)
        if f.ndim != 2 or f.shape != (ts.n, config.output_dim(ts.d)) or f.dtype != np.float32:
            raise InvalidInputError(
                f"fdes must be float32 of shape ({ts.n}, {config.output_dim(ts.d)}) for these documents and config; "
                f"got {f.dtype} {f.shape}. Compute them with encode_documents(token_sets, config)."
            )
        index.d = ts.d
        index._tokens, index._counts, index._fdes = [ts.x], [ts.counts], [f]
        index._cache = (ts, f)
        return index

    # ------------------------------------------------------------------ data
    def __len__(self) -> int:
        return int(sum(c.shape[0] for c in self._counts))

    def add(self, token_sets: Any, *, offsets: Any = None) -> np.ndarray:
        """Encode and append documents; returns their indices (int64)."""
        ts = as_token_sets(token_sets, offsets, d=self.d, name="token_sets")
        fdes = encode_documents(ts, self.config)
        start = len(self)
        self.d = ts.d
        self._tokens.append(np.array(ts.x, dtype=np.float32, copy=True))
        self._counts.append(ts.counts.astype(np.int64))
        self._fdes.append(fdes)
        self._cache = None
        self._ann = None  # the FDE graph no longer covers every document; build_ann() again
        return np.arange(start, start + ts.n, dtype=np.int64)

    @property
    def documents(self) -> TokenSets:
        """All document tokens as one ragged batch."""
        return self._consolidated()[0]

    @property
    def fdes(self) -> np.ndarray:
        """Document FDEs, ``(len(self), config.output_dim(d))`` float32."""
        return self._consolidated()[1]

    def _consolidated(self) -> tuple[TokenSets, np.ndarray]:
        if self._cache is None:
            if not self._counts:
                raise InvalidInputError("the index is empty; add documents first")
            x = self._tokens[0] if len(self._tokens) == 1 else np.concatenate(self._tokens)
            counts = np.concatenate(self._counts)
            offsets = np.zeros(counts.shape[0] + 1, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:])
            f = self._fdes[0] if len(self._fdes) == 1 else np.concatenate(self._fdes)
            self._tokens, self._counts, self._fdes = [x], [counts], [f]
            self._cache = (TokenSets(x, offsets), f)
        return self._cache

    @property
    def nbytes(self) -> dict[str, int]:
        """Bytes held: token vectors, offsets, FDEs."""
        ts, f = self._consolidated()
        return {"tokens": int(ts.x.nbytes), "offsets": int(ts.offsets.nbytes), "fdes": int(f.nbytes)}

    # ------------------------------------------------------------------ search
    def search(self, queries: Any, *, k: int = 10, candidates: int = 100) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` documents per query: ``candidates`` by FDE inner product, reranked by exact Chamfer.

        Returns ``(scores, idx)``, each ``(n_queries, k)``; scores are Chamfer, higher is better.
        """
        k = check_positive_int(k, "k")
        candidates = check_positive_int(candidates, "candidates")
        if candidates < k:
            raise InvalidInputError(f"candidates ({candidates}) must be >= k ({k}); the rerank keeps k of them")
        ts, f = self._consolidated()
        qs = as_token_sets(queries, d=self.d, name="queries")
        qf = encode_queries(qs, self.config)
        if self._ann is not None:  # approximate MIPS over the FDEs, then the same exact rerank
            _, cand = self._ann.search(qf, min(candidates, len(self)), effort=max(self._ann.params.ef_search, candidates))
        else:
            cand = _fde_candidates(qf, f, candidates)
        return _top_k(_maxsim_candidates(qs, ts, cand), cand, k)

    def build_ann(self, *, M: int = 32, ef_construction: int = 200, ef_search: int = 64) -> "MultiVectorIndex":
        """Index the FDEs with an HNSW graph (FAISS, inner product), so candidate search is sublinear.

        :meth:`search` then asks the graph for ``candidates`` documents (with ``ef_search`` at least
        ``candidates``) instead of scanning every FDE. Adding documents drops the graph.
        """
        from vecbox.index.ann import AnnIndex, IndexParams

        f = self.fdes
        params = IndexParams("hnsw", M=M, ef_construction=ef_construction, ef_search=ef_search)
        self._ann = AnnIndex.build(np.ascontiguousarray(f), np.arange(len(f)), "dot", params)
        return self

    def search_exact(self, queries: Any, *, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force Chamfer over every document (the reference for :meth:`search`)."""
        return search_exact(queries, self.documents, k=k)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``index.json`` + ``tokens.npy``, ``offsets.npy``, ``fdes.npy`` into directory ``path``.

        The JSON manifest is written last, so a directory without it is an interrupted save.
        """
        ts, f = self._consolidated()
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        manifest = root / "index.json"
        if manifest.exists():
            manifest.unlink()
        for name, arr in zip(_FILES, (ts.x, ts.offsets, f)):
            np.save(root / name, np.ascontiguousarray(arr), allow_pickle=False)
        meta = {"format": FORMAT, "config": self.config.to_dict(), "d": self.d, "n_documents": ts.n,
                "n_tokens": int(ts.x.shape[0]), "fde_dim": int(f.shape[1])}
        tmp = root / "index.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, manifest)
        return root

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = False) -> MultiVectorIndex:
        """Read an index written by :meth:`save` (``mmap=True`` maps the arrays read-only)."""
        root = Path(path)
        manifest = root / "index.json"
        if not manifest.is_file():
            raise CorruptCollectionError(
                f"{root} has no index.json; it is not a saved MultiVectorIndex (or the save was interrupted)"
            )
        try:
            meta = json.loads(manifest.read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT:
                raise CorruptCollectionError(f"{manifest}: format {meta.get('format')!r}, expected {FORMAT!r}")
            config = FDEConfig.from_dict(meta["config"])
            x, offsets, f = (np.load(root / n, mmap_mode="r" if mmap else None, allow_pickle=False) for n in _FILES)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptCollectionError(f"cannot read the MultiVectorIndex in {root}: {exc}") from exc
        d = int(meta["d"])
        ok = (
            x.ndim == 2 and x.shape == (meta["n_tokens"], d) and x.dtype == np.float32
            and offsets.shape == (meta["n_documents"] + 1,) and offsets.dtype == np.int64
            and int(offsets[0]) == 0 and int(offsets[-1]) == x.shape[0]
            and f.shape == (meta["n_documents"], config.output_dim(d)) and f.dtype == np.float32
        )
        if not ok:
            raise CorruptCollectionError(
                f"the arrays in {root} do not match index.json (shapes or dtypes); re-create the index"
            )
        index = cls(config)
        index.d = d
        index._tokens, index._counts, index._fdes = [x], [np.diff(np.asarray(offsets))], [f]
        index._cache = (TokenSets(x, np.asarray(offsets)), f)
        return index

    def __repr__(self) -> str:
        return f"MultiVectorIndex({self.config!r}, n_documents={len(self)}, d={self.d})"
