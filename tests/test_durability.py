"""Crash safety and concurrency with real processes: SIGKILL mid-write, a second writer, live readers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import vecbox
from vecbox import Collection
from vecbox.errors import CollectionLockedError

SRC = str(Path(vecbox.__file__).resolve().parents[1])
BATCH, DIM = 500, 32

# A writer that alternates adds of whole batches with deletes of older batches and
# prints one acknowledgement line after each commit returns.
WRITER = textwrap.dedent(
    f"""
    import sys, numpy as np
    from vecbox import Collection
    col = Collection.open(sys.argv[1], lock_timeout=30)
    b = int(sys.argv[2])
    while True:
        if b % 4 == 3:
            col.delete(where={{"batch": b - 3}}, missing_ok=True)
            print("del", b - 3, flush=True)
        else:
            x = np.random.default_rng(b).standard_normal(({BATCH}, {DIM})).astype(np.float32)
            col.add([f"{{b}}-{{i}}" for i in range({BATCH})], x, metadatas=[{{"batch": b}}] * {BATCH})
            print("add", b, flush=True)
        b += 1
    """
)


def _batches(col: Collection) -> dict[int, int]:
    counts: dict[int, int] = {}
    for i in col.ids():
        b = int(i.split("-")[0])
        counts[b] = counts.get(b, 0) + 1
    return counts


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_sigkill_at_random_points_keeps_exactly_the_committed_batches(tmp_path):
    path = tmp_path / "c"
    Collection.create(path, dim=DIM, metric="l2").close()
    rng = np.random.default_rng(7)
    expected: set[int] = set()  # batches present per acknowledged commits
    next_batch = 0
    kills = 0
    for _ in range(60):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(next_batch)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        )
        # Start-up takes a few hundred ms; kill anywhere from before the first commit to several commits in.
        time.sleep(float(rng.uniform(0.2, 0.9)))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err
        kills += 1
        # whole lines only: a kill during the acknowledgement's write may leave a line cut short (its
        # commit then counts as the one in flight, which the check below allows)
        acked = [line.split() for line in out.split("\n")[:-1] if line.strip()]
        assert all(len(a) == 2 and a[0] in ("add", "del") for a in acked), out
        for op, b in acked:
            (expected.add if op == "add" else expected.discard)(int(b))
        col = Collection.open(path)
        present = _batches(col)
        # Every batch is whole or absent, never partial.
        assert all(n == BATCH for n in present.values()), present
        # The state is the acknowledged one, or that plus the single in-flight commit.
        last = next_batch + len(acked)
        in_flight = last if last % 4 != 3 else None
        allowed = [expected, expected | {in_flight}] if in_flight is not None else [expected, expected - {last - 3}]
        assert set(present) in allowed, (sorted(present), sorted(expected), last)
        expected = set(present)
        next_batch = last + 1
        # Vectors read back are the ones written (whole batches, bit for bit).
        for b in list(present)[:2]:
            want = np.random.default_rng(b).standard_normal((BATCH, DIM)).astype(np.float32)
            got = np.stack([r.vector for r in col.get([f"{b}-{i}" for i in range(BATCH)])])
            np.testing.assert_array_equal(got, want)
        assert col.count() == BATCH * len(present)
        col.close()
    assert kills >= 50
    assert next_batch > 20  # the writers really committed work between kills
    # No garbage segments survive: every file on disk is referenced by the catalog.
    col = Collection.open(path)
    on_disk = {p.name for p in (path / "segments").iterdir()}
    referenced = {f for (f,) in col._conn.execute("SELECT file FROM segments")}
    assert on_disk == referenced


HOLDER = textwrap.dedent(
    """
    import sys, time
    from vecbox import Collection
    col = Collection.open(sys.argv[1])
    with col.write_lock():
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


def test_second_writer_waits_then_gets_a_clear_error(tmp_path):
    path = tmp_path / "c"
    Collection.create(path, dim=4).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), "30"], stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        col = Collection.open(path, lock_timeout=0.5)
        t0 = time.monotonic()
        with pytest.raises(CollectionLockedError, match="lock_timeout") as info:
            col.add(["a"], [[1, 0, 0, 0]])
        assert time.monotonic() - t0 >= 0.45  # it waited for the timeout before giving up
        assert isinstance(info.value, TimeoutError)
        assert col.count() == 0 and col.version == 0
        # Readers are never blocked by the writer's lock.
        assert col.search([1, 0, 0, 0], k=1) == []
    finally:
        holder.kill()
        holder.wait()
    # Once the holder is gone (even killed), the lock is free again.
    assert Collection.open(path, lock_timeout=5).add(["a"], [[1, 0, 0, 0]]) == 1


def test_second_writer_that_waits_long_enough_succeeds(tmp_path):
    path = tmp_path / "c"
    Collection.create(path, dim=4).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), "1.0"], stdout=subprocess.PIPE, text=True, env=_env()
    )
    assert holder.stdout.readline().strip() == "locked"
    col = Collection.open(path, lock_timeout=20)
    assert col.add(["a"], [[1, 0, 0, 0]]) == 1
    holder.wait()
    assert holder.returncode == 0


def test_readers_see_whole_versions_while_a_writer_commits(tmp_path):
    path = tmp_path / "c"
    Collection.create(path, dim=DIM).close()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, env=_env(),
    )
    seen: list[int] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            col = Collection.open(path)
            q = np.ones(DIM, dtype=np.float32)
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                hits = col.search(q, k=100_000)
                per_batch: dict[str, int] = {}
                for h in hits:
                    per_batch[h.id.split("-")[0]] = per_batch.get(h.id.split("-")[0], 0) + 1
                assert all(n == BATCH for n in per_batch.values()), per_batch
                seen.append(len(hits))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.kill()
    writer.wait()
    assert not errors, errors[0]
    assert len(set(seen)) > 2  # the readers really observed the collection changing


MV_WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from vecbox import Collection
    col = Collection.open(sys.argv[1], lock_timeout=30)
    b = int(sys.argv[2])
    while True:
        rng = np.random.default_rng(b)
        sets = [rng.standard_normal((int(rng.integers(1, 9)), 16)).astype(np.float32) for _ in range(200)]
        col.add_multi([f"{b}-{i}" for i in range(200)], sets)
        print("add", b, flush=True)
        b += 1
    """
)


def test_sigkill_during_multivector_writes_keeps_tokens_and_rows_together(tmp_path):
    from vecbox.multivector import FDEConfig

    path = tmp_path / "mv"
    Collection.create(path, multivector=FDEConfig(4, 2, 8, seed=0), token_dim=16).close()
    rng = np.random.default_rng(3)
    acked: set[int] = set()
    unacked: set[int] = set()  # batches committed by a writer killed before it printed "add"
    nxt = 0
    for _ in range(15):
        proc = subprocess.Popen([sys.executable, "-c", MV_WRITER, str(path), str(nxt)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=_env())
        time.sleep(float(rng.uniform(0.3, 1.2)))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        acked |= {int(line.split()[1]) for line in out.splitlines() if line.strip()}
        col = Collection.open(path)
        present = _batches(col)
        # at most one batch per writer may be committed but not acknowledged (a kill between the two)
        new_unacked = set(present) - acked - unacked
        assert set(present) >= acked and len(new_unacked) <= 1, (sorted(present), sorted(acked), sorted(unacked))
        unacked |= new_unacked
        assert all(c == 200 for c in present.values())
        nxt = max(present, default=nxt - 1) + 1
    if not present:  # a loaded machine: no writer reached its first commit before its kill; let one commit
        proc = subprocess.Popen([sys.executable, "-c", MV_WRITER, str(path), str(nxt)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=_env())
        assert proc.stdout.readline().startswith("add"), proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        present = _batches(Collection.open(path))
        assert present and all(c == 200 for c in present.values())
    # every stored item's tokens read back bit for bit
    from vecbox.storage import catalog
    from vecbox.storage.tokens import TokenFiles

    col = Collection.open(path)
    token_files = TokenFiles(path, 16)
    for b in sorted(present)[:3]:
        r = np.random.default_rng(b)
        sets = [r.standard_normal((int(r.integers(1, 9)), 16)).astype(np.float32) for _ in range(200)]
        where = catalog.locate_tokens(col._conn, [f"{b}-{i}" for i in range(200)])
        for i in (0, 57, 199):
            np.testing.assert_array_equal(token_files.get(*where[f"{b}-{i}"]), sets[i])
    assert len(col.search_multi(sets[:2], 3, candidates=20)[0]) == 3
    files = {p.name for p in (path / "segments").iterdir()}
    referenced = {f for (f,) in col._conn.execute("SELECT file FROM segments")} | {
        f for (f,) in col._conn.execute("SELECT DISTINCT file FROM tokens")}
    assert files == referenced  # no garbage left by the killed writers
