"""The processes of ``benchmarks/reliability.py``, in a module of their own: ``spawn`` re-imports them by name,
which works for this module (``benchmarks/`` is on the path) and not for a benchmark file that
``run_all.py`` loads under another name."""

from __future__ import annotations

import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

DIM = 64
SEED = 18


def _writer(path: str, stop_at: float, out: Any) -> None:
    from vecbox import Collection

    rng = np.random.default_rng(SEED)
    col = Collection.open(path, lock_timeout=60)
    ops: Counter[str] = Counter()
    next_id = 10_000
    while time.time() < stop_at:
        r = rng.random()
        if r < 0.45:
            n = int(rng.integers(20, 200))
            col.add([f"n{next_id + i}" for i in range(n)], rng.standard_normal((n, DIM)),
                    [{"g": int(g)} for g in rng.integers(0, 10, n)])
            next_id += n
            ops["add"] += 1
        elif r < 0.65:
            ids = [f"s{int(i)}" for i in rng.integers(0, 5000, 50)]
            col.upsert(sorted(set(ids)), rng.standard_normal((len(set(ids)), DIM)),
                       [{"g": 1}] * len(set(ids)))
            ops["upsert"] += 1
        elif r < 0.85:
            col.delete(sorted({f"s{int(i)}" for i in rng.integers(0, 5000, 30)}), missing_ok=True)
            ops["delete"] += 1
        elif r < 0.95:
            col.compact()
            ops["compact"] += 1
        else:
            col.build_index("hnsw", M=8, ef_construction=40, target_recall=None, ef_search=32)
            ops["build_index"] += 1
    out.put(("writer", dict(ops)))


def _reader(path: str, stop_at: float, seed: int, out: Any) -> None:
    from vecbox import Collection

    rng = np.random.default_rng(seed)
    col = Collection.open(path)
    reads, errors = 0, Counter()
    first: dict[str, str] = {}
    while time.time() < stop_at:
        q = rng.standard_normal(DIM).astype(np.float32)
        try:
            kind = reads % 6
            if kind == 0:
                col.search(q, 10)
            elif kind == 1:
                col.search(q, 10, where={"g": int(rng.integers(0, 10))}, include_metadata=False)
            elif kind == 2:
                col.search_batch(rng.standard_normal((8, DIM)), 5, where={"g": {"$in": [1, 2, 3]}})
            elif kind == 3:
                col.search(q, 10, include_metadata=False)
            elif kind == 4:
                col.get(sorted({f"s{int(i)}" for i in rng.integers(0, 5000, 5)}), missing_ok=True)
            else:
                col.count({"g": 1})
        except Exception as exc:  # counted, not raised: the point is to see every failure
            key = f"{type(exc).__name__}: {str(exc)[:160]}"
            errors[key] += 1
            first.setdefault(key, traceback.format_exc(limit=6))
        reads += 1
    out.put(("reader", {"reads": reads, "errors": dict(errors), "tracebacks": first}))


def _small_reader(path: str, stop: Any, out: Any) -> None:
    from vecbox import Collection

    col = Collection.open(path)
    rng = np.random.default_rng(1)
    reads, errors, wal_max = 0, 0, 0
    wal = Path(path) / "vecbox.sqlite-wal"
    while not stop.is_set():
        try:
            col.search(rng.standard_normal(DIM), 5)
        except Exception:
            errors += 1
        reads += 1
        if reads % 20 == 0 and wal.exists():
            wal_max = max(wal_max, wal.stat().st_size)
    out.put({"reads": reads, "errors": errors, "wal_max": wal_max})
