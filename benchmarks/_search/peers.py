"""The libraries under test: one adapter each (build from the same arrays, set the search-effort knob,
search one query or a batch; ids are row numbers), and :data:`METHODS`, their keys.

vecbox HNSW and IVF (``Collection.build_index``), FAISS ``IndexHNSWFlat`` (filters as
``IDSelectorBitmap``), USearch (unfiltered only), hnswlib (``filter=`` callable), chromadb
``PersistentClient`` (``where=``) and LanceDB (IVF_RQ + scalar indexes, ``where(..., prefilter=True)``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _report as R
import numpy as np

from .data import Dataset, Filter, pad_ids
from .settings import ADD_CHUNK, EF_CONSTRUCTION, M_HNSW, SEED, K

EF_SWEEP = (10, 16, 24, 32, 48, 64, 96, 128, 256, 512)  # finer where recall crosses 0.95: a coarse grid decides cells by luck
IVF_SWEEP = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
LANCE_SWEEP = ((8, 4), (16, 4), (16, 8), (32, 8), (64, 16), (128, 32))  # (nprobes, refine_factor)


class Method:
    """One index under test: build it, set its knob, search one query / a batch (ids are row numbers)."""

    key = ""
    name = ""
    who = ""
    knob = "ef_search"
    knobs: tuple[Any, ...] = EF_SWEEP
    filtered = True
    # True when one query and a batch may take different paths (vecbox plans per call): the
    # single-query recall is then measured on its own, and a point's recall is the lower of the two
    plans_per_call = False
    # True for an integer ef-like knob: after the grid sweep it is bisected between the two grid points
    # where recall crosses TARGET_RECALL (see refine_crossing); off unless a class opts in
    refine = False

    def __init__(self, threads: int, tmp: Path, ef_construction: int = EF_CONSTRUCTION) -> None:
        self.threads, self.tmp, self.ef_construction = threads, tmp, ef_construction
        self.value: Any = None
        self.notes: list[str] = []
        self.ingest_s: float | None = None

    def build(self, ds: Dataset) -> None:
        raise NotImplementedError

    def set_knob(self, value: Any) -> None:
        self.value = value

    def search_one(self, q: np.ndarray, flt: Filter) -> np.ndarray:
        """Row numbers of the top K (``-1`` padded): :meth:`query_one` then :meth:`ids_one`."""
        return self.ids_one(self.query_one(q, flt))

    def search_batch(self, q: np.ndarray, flt: Filter) -> np.ndarray:
        return self.ids_batch(self.query_batch(q, flt))

    # The timed part is the library's own call; turning its answer (string ids, Arrow tables, hit
    # objects) into row numbers for scoring happens after the clock stops, for every library alike.
    def query_one(self, q: np.ndarray, flt: Filter) -> Any:
        raise NotImplementedError

    def ids_one(self, raw: Any) -> np.ndarray:
        return raw

    def query_batch(self, q: np.ndarray, flt: Filter) -> Any:
        return np.stack([self.search_one(v, flt) for v in q])

    def ids_batch(self, raw: Any) -> np.ndarray:
        return raw

    def plan(self, q: np.ndarray, flt: Filter) -> str | None:
        return None

    def disk_bytes(self) -> int | None:
        return None

    def _saved_size(self, name: str, save: Callable[[str], Any]) -> int:
        """Bytes of the index once ``save(path)`` writes it to a scratch file (removed again)."""
        path = self.tmp / name
        save(str(path))
        size = path.stat().st_size
        path.unlink()
        return size

    def close(self) -> None:
        pass

    def knob_label(self, value: Any) -> str:
        return f"{self.knob}={value}"


class VecboxHNSW(Method):
    key, name, who = "vecbox", "vecbox HNSW", "vecbox"
    index_kind = "hnsw"
    plans_per_call = True
    refine = True

    def build(self, ds: Dataset) -> None:
        from vecbox import Collection

        self.path = self.tmp / f"vecbox-{self.key}"
        self.col = Collection.create(self.path, dim=ds.x.shape[1], metric="cosine")
        t0 = time.perf_counter()
        for s in range(0, ds.n, ADD_CHUNK):
            e = min(s + ADD_CHUNK, ds.n)
            self.col.add([str(i) for i in range(s, e)], ds.x[s:e], metadatas=ds.metadatas(s, e))
        self.ingest_s = time.perf_counter() - t0
        with R.limit_threads(self.threads):
            self._build_index()

    def _build_index(self) -> None:
        self._note_index(self.col.build_index("hnsw", M=M_HNSW, ef_construction=self.ef_construction))

    def _note_index(self, info: Any) -> None:
        if isinstance(info, dict):
            keep = ("kind", "M", "ef_construction", "ef_search", "nlist", "nprobe", "calibrated_recall",
                    "walk_calibration", "walk_codes", "build_seconds", "memory_bytes")
            self.notes.append("`index_info()`: " + ", ".join(f"{k}={_short(info[k])}" for k in keep
                                                              if info.get(k) is not None))

    def _kw(self) -> dict[str, Any]:
        return {"ef_search": self.value}

    def query_one(self, q: np.ndarray, flt: Filter) -> Any:
        return self.col.search(q, k=K, where=flt.where, include_metadata=False, **self._kw())

    def ids_one(self, raw: Any) -> np.ndarray:
        return pad_ids(int(h.id) for h in raw)

    def query_batch(self, q: np.ndarray, flt: Filter) -> Any:
        return self.col.search_batch(q, k=K, where=flt.where, include_metadata=False, **self._kw())

    def ids_batch(self, raw: Any) -> np.ndarray:
        return np.stack([self.ids_one(hits) for hits in raw])

    def plan(self, q: np.ndarray, flt: Filter) -> str | None:
        res = self.col.search(q, k=K, where=flt.where, include_metadata=False, explain=True, **self._kw())
        p = res.plan
        extra = [f"estimate {getattr(p, 'estimate', '?')}"]
        if getattr(p, "effort", None) is not None:
            extra.append(f"effort {p.effort}")
        if getattr(p, "fallback", 0):
            extra.append(f"fallback {p.fallback}")
        return f"{p.path} ({', '.join(extra)}: {getattr(p, 'reason', '')})"

    def disk_bytes(self) -> int | None:
        return R.dir_bytes(self.path)

    def close(self) -> None:
        col = getattr(self, "col", None)
        if col is not None:
            col.close()


def _short(value: Any) -> str:
    """A value of ``index_info()`` for the notes: floats to 3 digits, dicts as (key value, ...)."""
    if isinstance(value, dict):
        return "(" + ", ".join(f"{k} {_short(v)}" for k, v in value.items()) + ")"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class VecboxIVF(VecboxHNSW):
    key, name, who = "vecbox-ivf", "vecbox IVF", "vecbox"
    knob, knobs = "nprobe", IVF_SWEEP
    refine = False  # nprobe, not ef: only the HNSW libraries' ef is bisected

    def _build_index(self) -> None:
        self._note_index(self.col.build_index("ivf"))

    def _kw(self) -> dict[str, Any]:
        return {"nprobe": self.value}


class FaissHNSW(Method):
    key, name, who = "faiss", "FAISS HNSW", "FAISS"
    refine = True

    def build(self, ds: Dataset) -> None:
        import faiss

        self.n = ds.n
        with R.limit_threads(self.threads):
            self.index = faiss.IndexHNSWFlat(ds.x.shape[1], M_HNSW, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = self.ef_construction
            self.index.add(ds.x)
        self._sel: dict[str, Any] = {}
        self._params: dict[tuple[str, Any], Any] = {}

    def _p(self, flt: Filter) -> Any:
        import faiss

        key = (flt.key, self.value)
        if key not in self._params:
            if flt.mask is None:
                self._params[key] = faiss.SearchParametersHNSW(efSearch=self.value)
            else:
                if flt.key not in self._sel:
                    bits = np.packbits(flt.mask, bitorder="little")
                    self._sel[flt.key] = (bits, faiss.IDSelectorBitmap(self.n, faiss.swig_ptr(bits)))
                self._params[key] = faiss.SearchParametersHNSW(sel=self._sel[flt.key][1], efSearch=self.value)
        return self._params[key]

    def query_one(self, q: np.ndarray, flt: Filter) -> Any:
        return self.index.search(q[None, :], K, params=self._p(flt))[1][0]

    def query_batch(self, q: np.ndarray, flt: Filter) -> Any:
        return self.index.search(q, K, params=self._p(flt))[1]

    def disk_bytes(self) -> int | None:
        import faiss

        return self._saved_size("faiss.index", lambda path: faiss.write_index(self.index, path))


class USearchHNSW(Method):
    key, name, who = "usearch", "USearch HNSW", "USearch"
    filtered = False
    refine = True

    def build(self, ds: Dataset) -> None:
        from usearch.index import Index

        self.index = Index(ndim=ds.x.shape[1], metric="cos", dtype="f32", connectivity=M_HNSW,
                           expansion_add=self.ef_construction, expansion_search=64)
        self.index.add(np.arange(ds.n, dtype=np.uint64), ds.x, threads=self.threads)

    def set_knob(self, value: Any) -> None:
        self.value = value
        self.index.expansion_search = value

    def query_one(self, q: np.ndarray, flt: Filter) -> Any:
        return self.index.search(q, K, threads=1)

    def ids_one(self, raw: Any) -> np.ndarray:
        return pad_ids(raw.keys)

    def query_batch(self, q: np.ndarray, flt: Filter) -> Any:
        return self.index.search(q, K, threads=self.threads)

    def ids_batch(self, m: Any) -> np.ndarray:
        keys = np.asarray(m.keys, dtype=np.int64).copy()
        keys[np.arange(K)[None, :] >= np.asarray(m.counts)[:, None]] = -1
        return keys

    def disk_bytes(self) -> int | None:
        return self._saved_size("usearch.index", self.index.save)


class HnswlibHNSW(Method):
    key, name, who = "hnswlib", "hnswlib", "hnswlib"
    refine = True

    def build(self, ds: Dataset) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="cosine", dim=ds.x.shape[1])
        self.index.init_index(max_elements=ds.n, ef_construction=self.ef_construction, M=M_HNSW, random_seed=SEED)
        self.index.add_items(ds.x, np.arange(ds.n), num_threads=self.threads)
        self._allowed: dict[str, Callable[[int], bool]] = {}
        self.failed_queries = 0

    def set_knob(self, value: Any) -> None:
        self.value = value
        self.index.set_ef(value)

    def _f(self, flt: Filter) -> Callable[[int], bool] | None:
        if flt.mask is None:
            return None
        if flt.key not in self._allowed:
            self._allowed[flt.key] = flt.mask.tolist().__getitem__
        return self._allowed[flt.key]

    def query_one(self, q: np.ndarray, flt: Filter) -> Any:
        try:
            return self.index.knn_query(q, k=K, num_threads=1, filter=self._f(flt))[0][0].astype(np.int64)
        except RuntimeError:  # "contiguous 2D array": fewer than k found
            self.failed_queries += 1
            return pad_ids([])

    def query_batch(self, q: np.ndarray, flt: Filter) -> Any:
        try:
            return self.index.knn_query(q, k=K, num_threads=self.threads, filter=self._f(flt))[0].astype(np.int64)
        except RuntimeError:
            return np.stack([self.search_one(v, flt) for v in q])

    def disk_bytes(self) -> int | None:
        return self._saved_size("hnswlib.index", self.index.save_index)


class ChromaHNSW(Method):
    key, name, who = "chroma", "chromadb", "chromadb"
    refine = False  # 50-1000x slower than the other HNSW libraries: it cannot win a cell, refining only costs time

    def build(self, ds: Dataset) -> None:
        import chromadb
        from chromadb.config import Settings

        self.path = self.tmp / "chroma"
        self.dim = ds.x.shape[1]
        self.client = chromadb.PersistentClient(path=str(self.path), settings=Settings(anonymized_telemetry=False))
        self.col = self.client.create_collection(
            "bench", embedding_function=None,
            configuration={"hnsw": {"space": "cosine", "max_neighbors": M_HNSW,
                                    "ef_construction": self.ef_construction, "ef_search": 64}},
        )
        batch = self.client.get_max_batch_size()
        for s in range(0, ds.n, batch):
            e = min(s + batch, ds.n)
            self.col.add(ids=[str(i) for i in range(s, e)], embeddings=ds.x[s:e], metadatas=ds.metadatas(s, e))
        self.notes.append(f"added in batches of {batch:,} (`get_max_batch_size()`)")

    def set_knob(self, value: Any) -> None:
        import chromadb
        from chromadb.config import Settings

        self.value = value
        self.col.modify(configuration={"hnsw": {"ef_search": value}})
        # the loaded index keeps the ef it was opened with (chromadb 1.5: recall did not move from ef 10 to
        # 400 until reopened), so reopen the client, and load the index before anything is timed
        self.client.clear_system_cache()
        self.client = chromadb.PersistentClient(path=str(self.path), settings=Settings(anonymized_telemetry=False))
        self.col = self.client.get_collection("bench")
        self.col.query(query_embeddings=np.zeros((1, self.dim), np.float32) + 1.0, n_results=K, include=[])

    def query_one(self, q: np.ndarray, flt: Filter) -> Any:
        return self.col.query(query_embeddings=q[None, :], n_results=K, where=flt.where, include=[])

    def ids_one(self, raw: Any) -> np.ndarray:
        return pad_ids(int(i) for i in raw["ids"][0])

    def query_batch(self, q: np.ndarray, flt: Filter) -> Any:
        return self.col.query(query_embeddings=q, n_results=K, where=flt.where, include=[])

    def ids_batch(self, raw: Any) -> np.ndarray:
        return np.stack([pad_ids(int(i) for i in ids) for ids in raw["ids"]])

    def disk_bytes(self) -> int | None:
        return R.dir_bytes(self.path)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.delete_collection("bench")
        with contextlib.suppress(Exception):
            self.client.clear_system_cache()


class LanceIVF(Method):
    key, name, who = "lance", "LanceDB IVF_RQ", "LanceDB"
    knob, knobs = "nprobes/refine", LANCE_SWEEP

    def build(self, ds: Dataset) -> None:
        import lancedb
        import pyarrow as pa
        from lancedb.index import Bitmap, BTree, IvfRq

        self.path = self.tmp / "lance"
        db = lancedb.connect(str(self.path))
        d = ds.x.shape[1]
        extra = [k for k in ds.attrs if k != "cat"]
        types = {"doc": pa.string(), "pos": pa.int64(), "num": pa.float64()}
        schema = pa.schema([("id", pa.int64()), ("vector", pa.list_(pa.float32(), d)), ("cat", pa.string())]
                           + [(k, types[k]) for k in extra])

        def batches() -> Iterator[Any]:
            for s in range(0, ds.n, ADD_CHUNK):
                e = min(s + ADD_CHUNK, ds.n)
                cols = [pa.array(np.arange(s, e, dtype=np.int64)),
                        pa.FixedSizeListArray.from_arrays(pa.array(ds.x[s:e].reshape(-1)), d),
                        pa.array([f"c{c}" for c in ds.attrs["cat"][s:e].tolist()])]
                cols += [pa.array(ds.attrs[k][s:e].tolist(), type=types[k]) for k in extra]
                yield pa.record_batch(cols, schema=schema)

        self.table = db.create_table("bench", batches(), schema=schema)
        self.table.create_index("vector", config=IvfRq(distance_type="cosine"))
        self.table.create_index("num", config=BTree())
        self.table.create_index("cat", config=Bitmap())
        self.notes.append("IVF_RQ (RaBitQ, library defaults: 1 bit, partitions by target size) + BTREE on `num`, "
                          "BITMAP on `cat`; knob = (nprobes, refine_factor)")

    def _q(self, q: Any, flt: Filter) -> Any:
        nprobes, refine = self.value
        b = self.table.search(q).distance_type("cosine").nprobes(nprobes).refine_factor(refine)
        if flt.sql is not None:
            b = b.where(flt.sql, prefilter=True)
        return b.select(["id", "_distance"]).limit(K)

    def query_one(self, q: np.ndarray, flt: Filter) -> Any:
        return self._q(q, flt).to_arrow()

    def ids_one(self, raw: Any) -> np.ndarray:
        return pad_ids(raw["id"].to_pylist())

    def query_batch(self, q: np.ndarray, flt: Filter) -> Any:
        self._batch_n = len(q)
        return self._q(list(q), flt).to_arrow()

    def ids_batch(self, t: Any) -> np.ndarray:
        q = range(self._batch_n)
        out = np.full((len(q), K), -1, dtype=np.int64)
        qi, ids = t["query_index"].to_numpy(), t["id"].to_numpy()
        for i in range(len(q)):
            got = ids[qi == i][:K]
            out[i, :len(got)] = got
        return out

    def knob_label(self, value: Any) -> str:
        return f"nprobes={value[0]}, refine={value[1]}"

    def disk_bytes(self) -> int | None:
        return R.dir_bytes(self.path)


METHODS: dict[str, type[Method]] = {
    "vecbox": VecboxHNSW, "vecbox-ivf": VecboxIVF, "faiss": FaissHNSW, "usearch": USearchHNSW,
    "hnswlib": HnswlibHNSW, "chroma": ChromaHNSW, "lance": LanceIVF,
}
