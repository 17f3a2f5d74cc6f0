"""``vecbox serve`` as a real process under faults (issue 20, item 6).

1. SIGKILL the server at random moments while clients stream ingests and add batches, 20 times,
   restarting it each time: every batch the server answered 200 for is stored, every batch is
   whole or absent, and the collection opens and verifies.
2. ``--workers 2``: two uvicorn worker processes serving one collection; several client threads
   write at once (each write succeeds or gets a clear 503 "locked, retry", never a 500) while
   readers search and count without an error; the final state is exactly the acknowledged writes.
   With the lock held by another process, a write gets a 503 after the lock timeout while
   searches go on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import vecbox
from vecbox import Collection
from vecbox.client import Client, RemoteCollection, ServerError, ServerUnavailableError
from vecbox.errors import CollectionLockedError

from ._live import free_port

pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

SRC = str(Path(vecbox.__file__).resolve().parents[1])
DIM, ROWS = 16, 40  # rows per batch (one add, or one ingest batch)
NAME = "c"


def _vectors(batch: int) -> np.ndarray:
    return np.random.default_rng(batch).standard_normal((ROWS, DIM)).astype(np.float32)


def _ids(batch: int) -> list[str]:
    return [f"{batch}-{i}" for i in range(ROWS)]


def _start(root: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """``python -m vecbox.cli serve root`` on a free port; returns once /health answers."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "vecbox.cli", "serve", str(root), "--port", str(port), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    with Client(url, timeout=5, retries=0) as probe:
        while True:
            try:
                probe.health()
                return proc, url
            except ServerUnavailableError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise RuntimeError(f"vecbox serve did not start: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.05)


def _stop(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)  # the whole group: uvicorn's workers too
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    if proc.stderr:
        proc.stderr.close()


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _batches(path: Path) -> dict[int, int]:
    counts: dict[int, int] = {}
    with Collection.open(path) as col:
        for i in col.ids():
            b = int(i.split("-")[0])
            counts[b] = counts.get(b, 0) + 1
    return counts


def test_sigkill_during_ingest_keeps_every_acknowledged_batch(tmp_path):
    path = tmp_path / NAME
    Collection.create(path, dim=DIM, metric="l2").close()
    rng = np.random.default_rng(20)
    acked: set[int] = set()  # batches the server answered 200 for
    sent: set[int] = set()  # batches sent (stored or not)
    next_batch = 0
    kills = 0
    for cycle in range(20):
        proc, url = _start(tmp_path)
        stop = threading.Event()
        lock = threading.Lock()
        failures: list[BaseException] = []

        def writer(kind: str, url: str = url, stop: threading.Event = stop, lock: threading.Lock = lock,
                   failures: list[BaseException] = failures) -> None:
            nonlocal next_batch
            with Client(url, timeout=30, retries=0) as client:
                col = RemoteCollection(client, NAME, {"dim": DIM, "metric": "l2"})  # no request: the kill may come first
                while not stop.is_set():
                    with lock:
                        first = next_batch
                        n = 3 if kind == "ingest" else 1
                        next_batch += n
                        batches = list(range(first, first + n))
                        sent.update(batches)
                    try:
                        if kind == "ingest":
                            records = ({"id": i, "vector": v, "metadata": {"batch": b}}
                                       for b in batches for i, v in zip(_ids(b), _vectors(b)))
                            out = col.ingest(records, batch_size=ROWS)
                            assert out["rows"] == ROWS * n and out["batches"] == n, out
                        else:
                            col.add(_ids(first), _vectors(first), [{"batch": first}] * ROWS)
                    except (ServerUnavailableError, ServerError) as exc:  # the kill: no answer (or a cut-off one)
                        if isinstance(exc, ServerError) and not isinstance(exc, ServerUnavailableError) \
                                and not stop.is_set():
                            failures.append(exc)
                        return
                    except BaseException as exc:  # noqa: BLE001 - reported by the test
                        failures.append(exc)
                        return
                    with lock:
                        acked.update(batches)

        threads = [threading.Thread(target=writer, args=(k,)) for k in ("ingest", "add", "add")]
        for t in threads:
            t.start()
        time.sleep(float(rng.uniform(0.05, 0.8)))
        stop.set()
        _stop(proc)  # SIGKILL, while requests are in flight
        kills += 1
        for t in threads:
            t.join(timeout=60)
        assert not failures, failures
        present = _batches(path)
        assert all(n == ROWS for n in present.values()), f"a partial batch after kill {cycle}: {present}"
        missing = acked - set(present)
        assert not missing, f"acknowledged batches lost after kill {cycle}: {sorted(missing)}"
        assert set(present) <= sent
        with Collection.open(path) as col:
            report = col.verify()
            assert report.ok, report
    assert kills == 20
    print(f"\n{kills} kills; {len(acked)} acknowledged batches ({len(acked) * ROWS} rows) all present; "
          f"{len(sent)} sent; {len(present)} stored")
    assert len(acked) >= 20, "the clients should have had writes acknowledged between the kills"
    present = _batches(path)
    with Collection.open(path) as col:
        for b in sorted(present)[:: max(1, len(present) // 5)]:  # vectors read back are the ones sent
            got = np.stack([r.vector for r in col.get(_ids(b))])
            np.testing.assert_array_equal(got, _vectors(b))
        assert col.count() == ROWS * len(present)


def test_two_workers_serve_one_collection_safely(tmp_path):
    path = tmp_path / NAME
    with Collection.create(path, dim=DIM, metric="l2") as col:
        col.add(_ids(0), _vectors(0), [{"batch": 0}] * ROWS)
        col.build_index("hnsw", M=8, ef_construction=40, target_recall=None)
    proc, url = _start(tmp_path, "--workers", "2")
    try:
        if Path("/proc/self/stat").exists():  # uvicorn's supervisor and its two worker processes
            assert len(_children(proc.pid)) >= 2, _children(proc.pid)
        acked: set[int] = {0}
        errors: list[str] = []
        locked = [0]
        lock = threading.Lock()
        reads = [0]
        stop = threading.Event()

        def writer(w: int) -> None:
            with Client(url, timeout=60, retries=0) as client:
                col = client.open(NAME)
                for j in range(15):
                    b = 1 + w * 100 + j
                    for _attempt in range(20):
                        try:
                            if j % 3 == 2:  # upserts of a batch this writer stored: same ids, same vectors
                                col.upsert(_ids(b - 1), _vectors(b - 1), [{"batch": b - 1}] * ROWS)
                            else:
                                col.add(_ids(b), _vectors(b), [{"batch": b}] * ROWS)
                                with lock:
                                    acked.add(b)
                            break
                        except CollectionLockedError as exc:  # 503: nothing was applied; retry
                            assert getattr(exc, "status", None) == 503
                            with lock:
                                locked[0] += 1
                            time.sleep(0.05)
                        except Exception as exc:  # noqa: BLE001 - reported by the test
                            errors.append(f"writer {w} batch {b}: {type(exc).__name__}: {exc}")
                            return
                    else:
                        errors.append(f"writer {w} batch {b}: locked 20 times in a row")

        def reader(r: int) -> None:
            q = np.random.default_rng(100 + r).standard_normal(DIM).astype(np.float32)
            with Client(url, timeout=60, retries=0) as client:
                col = client.open(NAME)
                last = 0
                while not stop.is_set():
                    try:
                        hits = col.search(q, k=5)
                        assert len(hits) == 5
                        n = col.count()
                        assert n % ROWS == 0, f"a partial batch visible: {n} rows"
                        ids = col.ids(where={"batch": 0})
                        assert len(ids) == ROWS
                        last = max(last, n)
                        with lock:
                            reads[0] += 3
                    except Exception as exc:  # noqa: BLE001 - reported by the test
                        errors.append(f"reader {r}: {type(exc).__name__}: {exc}")
                        return

        writers = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        readers = [threading.Thread(target=reader, args=(r,)) for r in range(2)]
        for t in readers + writers:
            t.start()
        for t in writers:
            t.join(timeout=120)
        stop.set()
        for t in readers:
            t.join(timeout=60)
        assert not errors, errors[:10]
        assert reads[0] > 0
        print(f"\n--workers 2: {len(acked) - 1} adds + upserts by 4 writers, {locked[0]} answered 503 (retried), "
              f"{reads[0]} reads by 2 readers, 0 errors")
        # A writer in another process holds the lock: a write waits its lock_timeout (10 s), then a clear 503;
        # searches go on meanwhile, and the same write succeeds once the lock is free.
        b = 999
        outcome: list[BaseException | None] = []
        with Client(url, timeout=60, retries=0) as client, Collection.open(path) as holder, holder.write_lock():
            col = client.open(NAME)

            def blocked_add() -> None:
                try:
                    col.add(_ids(b), _vectors(b), [{"batch": b}] * ROWS)
                    outcome.append(None)
                except BaseException as exc:  # noqa: BLE001 - checked below
                    outcome.append(exc)

            t = threading.Thread(target=blocked_add)
            t.start()
            searched = 0
            while t.is_alive():
                assert len(col.search(np.ones(DIM, dtype=np.float32), k=3)) == 3
                searched += 1
                time.sleep(0.05)
            t.join()
        assert isinstance(outcome[0], CollectionLockedError) and outcome[0].status == 503, outcome
        assert "lock" in str(outcome[0]) and searched > 10
        with Client(url, timeout=60, retries=0) as client:
            client.open(NAME).add(_ids(b), _vectors(b), [{"batch": b}] * ROWS)
            acked.add(b)
        print(f"a write behind another process's lock: 503 after the lock timeout; {searched} searches meanwhile")
        # Both workers answered: the final state seen through the server equals the acknowledged writes.
        with Client(url, timeout=30) as client:
            col = client.open(NAME)
            for _ in range(6):  # connections spread over the two workers
                assert set(col.ids()) == {i for b in acked for i in _ids(b)}
    finally:
        _stop(proc, signal.SIGTERM)
    assert _batches(path) == {b: ROWS for b in acked}
    with Collection.open(path) as col:
        assert col.verify().ok
        for b in sorted(acked)[::10]:
            np.testing.assert_array_equal(np.stack([r.vector for r in col.get(_ids(b))]), _vectors(b))
