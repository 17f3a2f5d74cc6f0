"""``vecbox.client.Client`` against a live ``uvicorn`` server on a free loopback port.

Every answer is checked against the same operation on a local Collection holding the same
writes: hits, records (numpy vectors), counts, errors (the same vecbox classes). Also: keys,
retries of reads (not writes) on connection errors, a streamed ingest cut off at the body limit,
and raw ``..`` paths on the wire.
"""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

import vecbox.client as client_module
from vecbox import Collection
from vecbox.client import AuthenticationError, Client, RemoteCollection, RequestRejectedError, ServerUnavailableError
from vecbox.errors import CollectionNotFoundError, DuplicateIdError, FilterError, InvalidInputError, UnknownIdError
from vecbox.query.hybrid import HybridPlan
from vecbox.query.planner import Plan
from vecbox.results import Explained, Hit, Record
from vecbox.server import Limits, create_app

from ._live import free_port, start_server, stop_server

DIM = 8
RW, RO = "rw-test-key-123456", "ro-test-key-123456"
INGEST_LIMIT = 20_000
WORDS = ["apple", "pear", "river", "stone", "cloud", "engine", "violin", "garden", "rocket", "candle"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("served")


@pytest.fixture(scope="module")
def app(root):
    return create_app(root, api_keys=[RW], read_only_keys=[RO], limits=Limits(max_ingest_bytes=INGEST_LIMIT))


@pytest.fixture(scope="module")
def url(app):
    port = free_port()
    server, thread = start_server(app, port)
    yield f"http://127.0.0.1:{port}"
    stop_server(server, thread)


@pytest.fixture
def client(url):
    with Client(url, api_key=RW, timeout=30) as c:
        yield c


def data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    ids = [f"d{i}" for i in range(n)]
    metas = [{"year": 2000 + i % 7, "lang": "en" if i % 3 else "de"} for i in range(n)]
    docs = [f"{WORDS[i % 10]} {WORDS[(i * 3) % 10]} number {i}" for i in range(n)]
    return ids, x, metas, docs


@pytest.fixture
def pair(client, tmp_path, request):
    """A remote collection and a local one with the same writes."""
    name = request.node.name.replace("[", "-").replace("]", "")[:100]
    remote = client.create(name, dim=DIM)
    local = Collection.create(tmp_path / "local", dim=DIM)
    ids, x, metas, docs = data(80)
    assert remote.add(ids, x, metas, docs) == local.add(ids, x, metas, docs) == 1
    return remote, local, x


def test_dense_lexical_and_hybrid_hits_equal_the_local_collection(pair):
    remote, local, x = pair
    q = x[7] + 0.05
    where = {"year": {"$in": [2001, 2003, 2005]}}
    for kwargs in ({}, {"where": where}, {"include_metadata": False}, {"exact": True, "k": 3}):
        got = remote.search(q, **kwargs)
        assert got == local.search(q, **kwargs)
        assert all(isinstance(h, Hit) for h in got)
    assert remote.search_lexical("violin garden", k=6) == local.search_lexical("violin garden", k=6)
    assert remote.search_text("rocket", mode="lexical", where={"lang": "en"}) == \
        local.search_text("rocket", mode="lexical", where={"lang": "en"})
    for fusion in (None, "rrf", {"method": "rrf", "k": 20}):
        assert remote.search(q, k=5, text="stone cloud", fusion=fusion) == \
            local.search(q, k=5, text="stone cloud", fusion=fusion)


def test_explain_returns_the_plan_objects(pair):
    remote, local, x = pair
    out = remote.search(x[0], k=3, explain=True, where={"lang": "de"})
    ref = local.search(x[0], k=3, explain=True, where={"lang": "de"})
    assert isinstance(out, Explained) and isinstance(out.plan, Plan)
    assert out.hits == ref.hits and out.plan == ref.plan and str(out.plan) == str(ref.plan)
    out = remote.search(x[0], k=3, text="pear", explain=True)
    ref = local.search(x[0], k=3, text="pear", explain=True)
    assert isinstance(out.plan, HybridPlan) and isinstance(out.plan.dense, Plan)
    assert out.hits == ref.hits and out.plan.lexical_hits == ref.plan.lexical_hits
    assert out.plan.fusion == ref.plan.fusion and str(out.plan) == str(ref.plan)


def test_get_count_ids_upsert_delete_and_info(pair):
    remote, local, x = pair
    got = remote.get(["d5", "d1"])
    for rec, ref in zip(got, local.get(["d5", "d1"])):
        assert isinstance(rec, Record) and rec.vector.dtype == np.float32
        np.testing.assert_array_equal(rec.vector, ref.vector)
        assert (rec.id, rec.metadata, rec.document) == (ref.id, ref.metadata, ref.document)
    assert [r.id for r in remote.get(["d2", "zz"], missing_ok=True)] == ["d2"]
    assert remote.count() == len(remote) == 80
    assert remote.count(where={"lang": "de"}) == local.count(where={"lang": "de"})
    assert remote.ids(where={"year": 2002}) == local.ids(where={"year": 2002})
    v = np.full((2, DIM), 0.5, np.float32)
    assert remote.upsert(["d0", "new"], v, [{"k": 1}, None]) == local.upsert(["d0", "new"], v, [{"k": 1}, None])
    assert remote.delete(["d3"]) == local.delete(["d3"]) == 1
    assert remote.delete(where={"year": 2004}) == local.delete(where={"year": 2004})
    assert remote.ids() == local.ids() and remote.version == local.version
    assert remote.search(v[0], k=4) == local.search(v[0], k=4)
    info = remote.info()
    assert (info["dim"], info["count"], info["version"]) == (DIM, local.count(), local.version)


def test_index_round_trip(pair):
    remote, local, x = pair
    info = remote.build_index("hnsw", M=8, ef_search=32)
    assert info["kind"] == "hnsw" and remote.index_info()["rows"] == 80
    assert remote.search(x[3], k=5, exact=True) == local.search(x[3], k=5, exact=True)
    remote.drop_index()
    assert remote.index_info() is None


def test_server_errors_are_the_local_errors(pair, client, url):
    remote, local, x = pair
    with pytest.raises(CollectionNotFoundError, match="no collection 'nope'"):
        client.open("nope")
    with pytest.raises(DuplicateIdError):
        remote.add(["d1"], x[:1])
    with pytest.raises(UnknownIdError):
        remote.get(["missing"])
    with pytest.raises(FilterError):
        remote.count(where={"a": {"$regex": "x"}})
    with pytest.raises(InvalidInputError, match="NaN or infinite"):  # sent as NaN; refused by the server
        remote.search(np.full(DIM, np.nan))
    with pytest.raises(InvalidInputError, match="limit of 10000"):
        remote.search(x[0], k=10**6)
    with pytest.raises(RequestRejectedError) as bad_name:
        client.create("../escape", dim=2)
    assert bad_name.value.status == 400
    assert remote.count() == 80  # nothing was written by any of these


def test_keys_missing_wrong_and_read_only(pair, url):
    remote, _, x = pair
    for key in (None, "wrong-key"):
        with Client(url, api_key=key) as anonymous, pytest.raises(AuthenticationError) as err:
            anonymous.collections()
        assert err.value.status == 401
    with Client(url, api_key=RO) as reader:
        col = reader.open(remote.name)
        assert col.search(x[0], k=2) == remote.search(x[0], k=2)
        with pytest.raises(AuthenticationError, match="read-only") as err:
            col.add(["ro"], x[:1])
        assert err.value.status == 403
    assert Client(url).health()["status"] == "ok"  # no key needed


def test_ingest_streams_records_in_batches(client, root):
    col = client.create("ingested", dim=DIM)
    ids, x, metas, docs = data(25, seed=3)

    def records():  # a generator: sent as it is produced
        for i in range(25):
            yield {"id": ids[i], "vector": x[i], "metadata": metas[i], "document": docs[i]}

    out = col.ingest(records(), batch_size=10)
    assert out == {"rows": 25, "batches": 3, "versions": [1, 2, 3], "version": 3}
    local = Collection.open(root / "ingested")
    np.testing.assert_array_equal(local.get(["d24"])[0].vector, col.get(["d24"])[0].vector)


def test_a_streamed_ingest_cut_off_at_the_limit_keeps_its_earlier_batches(client, root, monkeypatch):
    monkeypatch.setattr(client_module, "INGEST_CHUNK_BYTES", 1)  # one chunk per record
    col = client.create("cut-off", dim=DIM)
    ids, x, _, _ = data(400, seed=4)
    served = Collection.open(root / "cut-off")

    def records():
        for i in range(400):
            if i == 5:  # the first batch is committed before anything else is sent: no race on chunking
                deadline = time.monotonic() + 30
                while served.count() < 5 and time.monotonic() < deadline:
                    time.sleep(0.02)
            yield {"id": ids[i], "vector": x[i]}

    with pytest.raises(RequestRejectedError, match="larger than this server's limit") as err:
        col.ingest(records(), batch_size=5)
    assert err.value.status == 413
    stored = served.count()
    assert stored >= 5 and stored % 5 == 0 and stored * 150 < INGEST_LIMIT + 2000
    assert f"({stored:,} rows" in str(err.value)


def test_reads_retry_on_connection_errors_and_writes_do_not(monkeypatch, root):
    app = create_app(root, api_keys=[RW], read_only_keys=[RO])
    port = free_port()  # nothing listens here (yet)
    pauses = []
    monkeypatch.setattr(client_module, "_sleep", pauses.append)
    with Client(f"http://127.0.0.1:{port}", api_key=RW, retries=2, backoff=0.1) as down:
        with pytest.raises(ServerUnavailableError, match="after 3 attempts") as err:
            down.collections()
        assert isinstance(err.value, ConnectionError) and pauses == [0.1, 0.2]
        remote = RemoteCollection(down, "c", {"dim": DIM, "metric": "cosine"})
        with pytest.raises(ServerUnavailableError, match="writes are not retried"):
            remote.add(["a"], np.ones((1, DIM)))
        assert len(pauses) == 2

    started = []

    def start_on_first_pause(seconds: float) -> None:
        pauses.append(seconds)
        if not started:
            started.append(start_server(app, port))

    monkeypatch.setattr(client_module, "_sleep", start_on_first_pause)
    try:
        with Client(f"http://127.0.0.1:{port}", api_key=RW, retries=3, backoff=0.1) as late:
            assert isinstance(late.collections(), list)  # the first attempt failed, the retry found the server
        assert len(pauses) == 3 and len(started) == 1
    finally:
        for server, thread in started:
            stop_server(server, thread)


@pytest.mark.parametrize("raw_path", ["/collections/..", "/collections/../../etc/passwd", "/collections/%2e%2e",
                                      "/collections/..%2fetc"])
def test_raw_dot_dot_paths_on_the_wire_are_refused(url, raw_path):
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"GET {raw_path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {RW}\r\nConnection: close\r\n\r\n"
                  .encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 404), answer
    assert b'"error"' in answer and b"root:" not in answer


def test_text_search_through_the_client_matches_the_local_model(client, tmp_path):
    """The bundled model, loaded once by the server: dense, lexical and hybrid text search."""
    texts = ["how to read a csv file", "run a subprocess with a timeout", "parse json from a string",
             "sort a list of numbers", "open a zip archive"]
    ids = [f"t{i}" for i in range(len(texts))]
    remote = client.create("texts", model="default")
    local = Collection.create(tmp_path / "texts", model="default")
    assert remote.add_texts(texts, ids, commit_every=3) == local.add_texts(texts, ids, commit_every=3) == 2
    for mode in ("dense", "lexical", "hybrid"):
        got = remote.search_text("load a csv", k=3, mode=mode)
        ref = local.search_text("load a csv", k=3, mode=mode)
        assert [h.id for h in got] == [h.id for h in ref]
        assert [h.score for h in got] == pytest.approx([h.score for h in ref], abs=1e-5)
