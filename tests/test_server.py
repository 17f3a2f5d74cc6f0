"""The HTTP API (``vecbox serve``): endpoint round trips against a directly opened Collection, error
statuses, the security rules (keys, names and paths, limits) and the streamed JSONL ingest.

Requests go through FastAPI's TestClient (the real app, in process); the live uvicorn server is
exercised by tests/test_client.py.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from fastapi.testclient import TestClient

from vecbox import Collection
from vecbox.server import Limits, create_app
from vecbox.server import security

DIM = 8
WORDS = ["apple", "pear", "river", "stone", "cloud", "engine", "violin", "garden", "rocket", "candle"]


def rows(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return {
        "ids": [f"d{i}" for i in range(n)],
        "vectors": x.tolist(),
        "metadatas": [{"year": 2000 + i % 7, "lang": "en" if i % 3 else "de"} for i in range(n)],
        "documents": [f"{WORDS[i % 10]} {WORDS[(i * 3) % 10]} number {i}" for i in range(n)],
    }


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "served"
    path.mkdir()
    return path


@pytest.fixture
def http(root):
    with TestClient(create_app(root)) as client:
        yield client


@pytest.fixture
def loaded(http, tmp_path):
    """A served collection "docs" and a local reference collection with the same writes."""
    data = rows(60)
    assert http.post("/collections", json={"name": "docs", "dim": DIM}).status_code == 201
    assert http.post("/collections/docs/add", json=data).json() == {"version": 1, "rows": 60, "ids": None}
    ref = Collection.create(tmp_path / "reference", dim=DIM)
    ref.add(data["ids"], np.asarray(data["vectors"]), data["metadatas"], data["documents"])
    return http, ref, data


def error(response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["type"] == kind, body
    assert "Traceback" not in response.text
    return body["error"]["message"]


def same_hits(got: list[dict], expected: list) -> None:
    assert [h["id"] for h in got] == [h.id for h in expected]
    assert [h["score"] for h in got] == pytest.approx([h.score for h in expected], abs=1e-6)
    assert [h["metadata"] for h in got] == [h.metadata for h in expected]
    assert [h["document"] for h in got] == [h.document for h in expected]


# ----------------------------------------------------------------------------- round trips
def test_create_list_info_and_health(http, root):
    assert http.get("/health").json()["status"] == "ok"
    assert http.get("/collections").json() == {"collections": []}
    created = http.post("/collections", json={"name": "a.b-c_1", "dim": 4, "metric": "l2", "lexical": False})
    assert created.status_code == 201
    assert created.json()["metric"] == "l2" and created.json()["lexical"] is None
    assert http.get("/collections").json() == {"collections": ["a.b-c_1"]}
    info = http.get("/collections/a.b-c_1").json()
    assert info["name"] == "a.b-c_1" and info["dim"] == 4 and "path" not in info  # no server paths leak
    assert Collection.open(root / "a.b-c_1").metric == "l2"  # a real collection on disk
    again = http.post("/collections", json={"name": "a.b-c_1", "dim": 4, "metric": "l2", "exist_ok": True})
    assert again.status_code == 201


def test_dense_search_get_count_ids_match_the_local_collection(loaded):
    http, ref, data = loaded
    q = np.asarray(data["vectors"][5]) + 0.1
    where = {"year": {"$gte": 2003}, "lang": "en"}
    got = http.post("/collections/docs/search", json={"vector": q.tolist(), "k": 7, "where": where}).json()
    same_hits(got["hits"], ref.search(q, k=7, where=where))
    got = http.post("/collections/docs/search", json={"vector": q.tolist(), "k": 3, "include_metadata": False})
    same_hits(got.json()["hits"], ref.search(q, k=3, include_metadata=False))
    records = http.post("/collections/docs/get", json={"ids": ["d3", "d0"]}).json()["records"]
    for rec, local in zip(records, ref.get(["d3", "d0"])):
        assert rec["id"] == local.id and rec["metadata"] == local.metadata and rec["document"] == local.document
        np.testing.assert_array_equal(np.asarray(rec["vector"], np.float32), local.vector)
    assert http.get("/collections/docs/count").json() == {"count": 60}
    assert http.get("/collections/docs/count", params={"where": json.dumps(where)}).json() == {
        "count": ref.count(where=where)}
    assert http.get("/collections/docs/ids", params={"where": json.dumps({"lang": "de"})}).json() == {
        "ids": ref.ids(where={"lang": "de"})}


def test_lexical_and_hybrid_search_with_explain_match_the_local_collection(loaded):
    http, ref, data = loaded
    q = np.asarray(data["vectors"][11])
    lex = http.post("/collections/docs/search", json={"text": "violin garden", "mode": "lexical", "k": 5}).json()
    same_hits(lex["hits"], ref.search_lexical("violin garden", k=5))
    for fusion in (None, "rrf"):
        body = {"vector": q.tolist(), "text": "violin river", "k": 6, "fusion": fusion, "explain": True,
                "where": {"lang": "en"}}
        got = http.post("/collections/docs/search", json=body).json()
        local = ref.search(q, k=6, text="violin river", fusion=fusion, explain=True, where={"lang": "en"})
        same_hits(got["hits"], local.hits)
        assert got["plan_type"] == "HybridPlan"
        assert got["plan"]["mode"] == "hybrid" and got["plan"]["rows_allowed"] == local.plan.rows_allowed
        assert [tuple(h) for h in got["plan"]["lexical_hits"]] == local.plan.lexical_hits  # floats survive JSON
    dense = http.post("/collections/docs/search", json={"vector": q.tolist(), "explain": True}).json()
    assert dense["plan_type"] == "Plan" and dense["plan"]["path"] == "exact"


def test_upsert_delete_by_ids_and_filter(loaded):
    http, ref, data = loaded
    new = np.ones((1, DIM), np.float32)
    assert http.post("/collections/docs/upsert", json={"ids": ["d1"], "vectors": new.tolist(),
                                                       "metadatas": [{"year": 1999}]}).json()["version"] == 2
    ref.upsert(["d1"], new, [{"year": 1999}])
    out = http.post("/collections/docs/delete", json={"ids": ["d2", "d4"]}).json()
    assert out == {"deleted": 2, "version": 3}
    ref.delete(["d2", "d4"])
    assert http.post("/collections/docs/delete", json={"where": {"lang": "de"}}).json()["deleted"] == \
        ref.delete(where={"lang": "de"})
    assert http.get("/collections/docs/ids").json()["ids"] == ref.ids()
    got = http.post("/collections/docs/search", json={"vector": new[0].tolist(), "k": 4}).json()
    same_hits(got["hits"], ref.search(new[0], k=4))


def test_index_build_search_and_drop(loaded):
    http, ref, data = loaded
    info = http.post("/collections/docs/index", json={"kind": "hnsw", "M": 8, "ef_search": 32}).json()["index"]
    assert info["kind"] == "hnsw" and info["rows"] == 60
    assert http.get("/collections/docs/index").json()["index"]["kind"] == "hnsw"
    q = data["vectors"][9]
    got = http.post("/collections/docs/search", json={"vector": q, "k": 5, "ef_search": 64}).json()
    assert got["hits"][0]["id"] == "d9"
    exact = http.post("/collections/docs/search", json={"vector": q, "k": 5, "exact": True}).json()
    same_hits(exact["hits"], ref.search(q, k=5, exact=True))
    assert http.delete("/collections/docs/index").json() == {"index": None}
    assert http.get("/collections/docs/index").json() == {"index": None}


def test_errors_have_their_status_and_vecbox_type(loaded, root):
    http, _, data = loaded
    error(http.get("/collections/nope"), 404, "CollectionNotFoundError")
    error(http.post("/collections", json={"name": "docs", "dim": DIM}), 409, "CollectionExistsError")
    error(http.post("/collections/docs/add", json={"ids": ["d0"], "vectors": [data["vectors"][0]]}), 409,
          "DuplicateIdError")
    error(http.post("/collections/docs/get", json={"ids": ["missing"]}), 404, "UnknownIdError")
    error(http.post("/collections/docs/search", json={"vector": [1.0, 2.0]}), 400, "DimensionMismatchError")
    error(http.post("/collections/docs/search", json={"vector": data["vectors"][0], "where": {"y": {"$bad": 1}}}),
          400, "FilterError")
    error(http.get("/collections/docs/count", params={"where": "{oops"}), 400, "InvalidInputError")
    error(http.post("/collections/docs/search", json={"text": "x", "vector": data["vectors"][0], "mode": "dense"}),
          400, "InvalidInputError")
    message = error(http.post("/collections/docs/search", json={"text": "violin"}), 400, "InvalidInputError")
    assert "without a text model" in message  # dense text search needs a model; the collection's own words
    error(http.post("/collections", json={"name": "m", "model": "/etc"}), 400, "InvalidInputError")
    error(http.get("/no/such/route"), 404, "NotFound")


def test_a_locked_collection_is_503_with_retry_after(root):
    with TestClient(create_app(root, lock_timeout=0.05)) as http:
        http.post("/collections", json={"name": "c", "dim": 2})
        other = Collection.open(root / "c")  # another process's writer, as far as the lock is concerned
        with other.write_lock():
            response = http.post("/collections/c/add", json={"ids": ["a"], "vectors": [[1.0, 0.0]]})
        other.close()
        error(response, 503, "CollectionLockedError")
        assert response.headers["retry-after"] == "1"
        assert http.post("/collections/c/add", json={"ids": ["a"], "vectors": [[1.0, 0.0]]}).status_code == 200


def test_a_damaged_collection_is_500_with_the_message(root, http):
    (root / "broken").mkdir()
    (root / "broken" / "vecbox.sqlite").write_bytes(b"not a database at all" * 100)
    message = error(http.get("/collections/broken"), 500, "CorruptCollectionError")
    assert "broken" in message


def test_an_unexpected_exception_is_a_500_without_details(root, monkeypatch):
    with TestClient(create_app(root), raise_server_exceptions=False) as http:
        http.post("/collections", json={"name": "c", "dim": 2})
        monkeypatch.setattr(Collection, "count", lambda self, where=None: 1 / 0)
        response = http.get("/collections/c/count")
    message = error(response, 500, "InternalError")
    assert "ZeroDivision" not in response.text and "in its log" in message


# ----------------------------------------------------------------------------- ingest
def jsonl(n: int, start: int = 0) -> str:
    rng = np.random.default_rng(start)
    return "".join(json.dumps({"id": f"j{i}", "vector": rng.standard_normal(DIM).tolist(),
                               "metadata": {"i": i}, "document": f"line {i}"}) + "\n" for i in range(start, start + n))


def test_streamed_ingest_commits_one_version_per_batch(http, root):
    http.post("/collections", json={"name": "c", "dim": DIM})
    text = jsonl(25)

    def chunks():  # a chunked body whose chunks split lines anywhere
        for i in range(0, len(text), 97):
            yield text[i:i + 97].encode()

    out = http.post("/collections/c/ingest", params={"batch_size": 10}, content=chunks()).json()
    assert out == {"rows": 25, "batches": 3, "versions": [1, 2, 3], "version": 3}
    col = Collection.open(root / "c")
    assert col.count() == 25 and col.version == 3
    assert col.get(["j24"])[0].metadata == {"i": 24}
    again = http.post("/collections/c/ingest", params={"upsert": "true"}, content=jsonl(5)).json()
    assert again["rows"] == 5 and col.count() == 25


def test_ingest_stops_at_a_bad_line_and_says_what_is_stored(http, root):
    http.post("/collections", json={"name": "c", "dim": DIM})
    lines = jsonl(30).splitlines(keepends=True)
    lines[23] = '{"id": "bad", "vector": [1, 2]\n'  # line 24: cut off
    response = http.post("/collections/c/ingest", params={"batch_size": 10}, content="".join(lines))
    message = error(response, 400, "InvalidInputError")
    body = response.json()["error"]
    assert body["line"] == 24 and body["committed_rows"] == 20 and body["resume_line"] == 21
    assert "line 24" in message and "not valid JSON" in message
    assert Collection.open(root / "c").count() == 20
    error(http.post("/collections/c/ingest", content=b"\n\n"), 400, "InvalidInputError")


# ----------------------------------------------------------------------------- security
KEYS = {"api_keys": ["rw-key-0123456789"], "read_only_keys": ["ro-key-0123456789"]}


@pytest.fixture
def secured(root):
    with TestClient(create_app(root, **KEYS)) as http:
        http.post("/collections", json={"name": "c", "dim": 2}, headers={"Authorization": "Bearer rw-key-0123456789"})
        yield http


def test_every_endpoint_but_health_needs_a_key(secured):
    checked = 0
    for path, operations in secured.app.openapi()["paths"].items():
        if path == "/health":
            continue
        for method in operations:
            response = secured.request(method.upper(), path.replace("{name}", "c"), json={})
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"] == "Bearer"
            checked += 1
    assert checked == 16
    assert secured.get("/health").status_code == 200


def test_wrong_key_read_only_key_and_both_headers(secured):
    error(secured.get("/collections", headers={"Authorization": "Bearer nope"}), 401, "Unauthorized")
    error(secured.get("/collections", headers={"X-API-Key": "rw-key-012345678"}), 401, "Unauthorized")  # a prefix
    assert secured.get("/collections", headers={"X-API-Key": "ro-key-0123456789"}).json() == {"collections": ["c"]}
    ro = {"Authorization": "Bearer ro-key-0123456789"}
    assert secured.post("/collections/c/search", json={"vector": [1, 0]}, headers=ro).status_code == 200
    for method, path, body in [("POST", "/collections/c/add", {"ids": ["a"], "vectors": [[1, 0]]}),
                               ("POST", "/collections/c/upsert", {"ids": ["a"], "vectors": [[1, 0]]}),
                               ("POST", "/collections/c/delete", {"where": {}}),
                               ("POST", "/collections", {"name": "d", "dim": 2}),
                               ("POST", "/collections/c/index", {}), ("DELETE", "/collections/c/index", None),
                               ("POST", "/collections/c/ingest", None)]:
        error(secured.request(method, path, json=body, headers=ro), 403, "Forbidden")
    rw = {"X-API-Key": "rw-key-0123456789"}
    assert secured.post("/collections/c/add", json={"ids": ["a"], "vectors": [[1, 0]]}, headers=rw).status_code == 200


def test_keys_are_compared_in_constant_time(monkeypatch):
    calls = []
    real = security.hmac.compare_digest
    monkeypatch.setattr(security.hmac, "compare_digest", lambda a, b: calls.append((len(a), len(b))) or real(a, b))
    keys = security.ApiKeys(["k1", "k2"], ["k3"])
    assert keys.access("k1") == "write" and keys.access("zzz") is None
    assert calls == [(32, 32)] * 6  # every key compared every time, digests of equal length
    with pytest.raises(ValueError, match="both read-write and read-only"):
        security.ApiKeys(["same"], ["same"])


@pytest.mark.parametrize("path", ["/collections/%2e%2e", "/collections/%2E%2E/count", "/collections/a%2fb",
                                  "/collections/%2Fetc%2Fpasswd", "/collections/..%5c..", "/collections/x%00"])
def test_percent_encoded_traversal_is_refused(http, path):
    error(http.get(path), 400, "PathRefusedError")


@pytest.mark.parametrize("name", ["..", ".", "/etc", "/tmp/x", "a/b", "..hidden", "a..b", ".git", "-x", "", "a" * 129,
                                  "ü", "a b", "c:\\x"])
def test_bad_names_are_refused_on_create(http, root, name):
    error(http.post("/collections", json={"name": name, "dim": 2}), 400, "PathRefusedError")
    assert list(root.iterdir()) == []


def test_symlinked_collections_are_neither_served_nor_listed(http, root, tmp_path):
    outside = Collection.create(tmp_path / "outside", dim=2)
    outside.add(["secret"], [[1.0, 0.0]])
    os.symlink(tmp_path / "outside", root / "link")
    message = error(http.get("/collections/link"), 400, "PathRefusedError")
    assert "symbolic link" in message
    error(http.post("/collections/link/search", json={"vector": [1, 0]}), 400, "PathRefusedError")
    error(http.post("/collections", json={"name": "link", "dim": 2}), 400, "PathRefusedError")
    assert http.get("/collections").json() == {"collections": []}


def test_oversized_bodies_are_413_declared_or_streamed(root):
    with TestClient(create_app(root, limits=Limits(max_body_bytes=2000, max_ingest_bytes=3000))) as http:
        http.post("/collections", json={"name": "c", "dim": DIM})
        big = {"ids": [f"x{i}" for i in range(100)], "vectors": [[0.5] * DIM] * 100}
        error(http.post("/collections/c/add", json=big), 413, "RequestTooLarge")

        def chunked():  # no Content-Length: counted as it arrives
            yield json.dumps(big).encode()

        error(http.post("/collections/c/add", content=chunked(), headers={"content-type": "application/json"}), 413,
              "RequestTooLarge")
        error(http.post("/collections/c/ingest", content=jsonl(40)), 413, "RequestTooLarge")
        assert Collection.open(root / "c").count() == 0
        # a streamed ingest cut off at the limit keeps its earlier batches: tests/test_client.py (live server)


def test_malformed_json_bad_shapes_huge_k_and_nan(loaded):
    http, _, data = loaded
    headers = {"content-type": "application/json"}
    message = error(http.post("/collections/docs/search", content=b'{"vector": [1, 2', headers=headers), 400,
                    "MalformedJSON")
    assert "not valid JSON" in message
    message = error(http.post("/collections/docs/search", json={"vector": [1] * DIM, "k": "ten", "kk": 1}), 422,
                    "InvalidRequest")
    assert "k: Input should be a valid integer" in message and "kk: unknown field" in message
    error(http.post("/collections/docs/search", json={"vector": [1] * DIM, "k": True}), 422, "InvalidRequest")
    message = error(http.post("/collections/docs/search", json={"vector": [1] * DIM, "k": 10_001}), 400,
                    "InvalidInputError")
    assert "limit of 10000" in message
    error(http.post("/collections/docs/search", json={"text": "x", "mode": "lexical", "k": 10**12}), 400,
          "InvalidInputError")
    error(http.post("/collections/docs/search", json={"vector": [1] * DIM, "ef_search": 10**9}), 400,
          "InvalidInputError")
    for token in (b"NaN", b"Infinity", b"-Infinity", b"1e400"):
        body = b'{"ids": ["n"], "vectors": [[' + token + b', 0, 0, 0, 0, 0, 0, 1]]}'
        message = error(http.post("/collections/docs/add", content=body, headers=headers), 400, "InvalidInputError")
        assert "NaN or infinite" in message
        search = b'{"vector": [' + token + b', 0, 0, 0, 0, 0, 0, 1]}'
        error(http.post("/collections/docs/search", content=search, headers=headers), 400, "InvalidInputError")
    error(http.post("/collections/docs/add", json={"ids": ["b"], "vectors": [[True] * DIM]}), 400,
          "InvalidInputError")


def test_batch_row_limit(root):
    with TestClient(create_app(root, limits=Limits(max_batch_rows=3))) as http:
        http.post("/collections", json={"name": "c", "dim": 2})
        message = error(http.post("/collections/c/add", json={"ids": list("abcd"), "vectors": [[1, 0]] * 4}), 400,
                        "InvalidInputError")
        assert "limit of 3" in message
        error(http.post("/collections/c/get", json={"ids": list("abcd")}), 400, "InvalidInputError")
        error(http.post("/collections/c/ingest", params={"batch_size": 4}, content=b"{}\n"), 400, "InvalidInputError")


# ----------------------------------------------------------------------------- text model
def test_text_collection_dense_and_hybrid_search_match_the_local_model(http, tmp_path):
    """The bundled model: texts encoded by the server (once loaded, kept) give the local collection's hits."""
    texts = ["how to read a csv file", "run a subprocess with a timeout", "parse json from a string",
             "sort a list of numbers", "open a zip archive", "send an http request"]
    ids = [f"t{i}" for i in range(len(texts))]
    assert http.post("/collections", json={"name": "t", "model": "default"}).status_code == 201
    out = http.post("/collections/t/add", json={"texts": texts[:3], "ids": ids[:3]}).json()
    assert out["version"] == 1
    line = "".join(json.dumps({"id": i, "text": t, "metadata": {"n": n}}) + "\n"
                   for n, (i, t) in enumerate(zip(ids[3:], texts[3:])))
    assert http.post("/collections/t/ingest", content=line).json()["rows"] == 3
    ref = Collection.create(tmp_path / "ref", model="default")
    ref.add_texts(texts[:3], ids[:3])
    ref.add_texts(texts[3:], ids[3:], [{"n": n} for n in range(3)])
    for mode in ("dense", "hybrid", "lexical"):
        got = http.post("/collections/t/search", json={"text": "read csv data", "mode": mode, "k": 4}).json()
        same_hits(got["hits"], ref.search_text("read csv data", k=4, mode=mode))
    generated = http.post("/collections/t/add", json={"texts": ["a new text"]}).json()["ids"]
    assert len(generated) == 1 and http.get("/collections/t/count").json()["count"] == 7


# ----------------------------------------------------------------------------- vecbox serve
def test_serve_refuses_a_remote_host_without_allow_remote(root, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from vecbox.cli import app

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("must not start"))
    result = CliRunner().invoke(app, ["serve", str(root), "--host", "0.0.0.0"])
    assert isinstance(result.exception, ValueError) and "--allow-remote" in str(result.exception)


def test_serve_warns_without_keys_and_takes_keys_from_the_environment(root, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from vecbox.cli import app
    from vecbox.server.app import ENV_KEYS, ENV_LIMITS, ENV_READ_ONLY_KEYS, ENV_ROOT, app_from_env

    for var in (ENV_ROOT, ENV_LIMITS, ENV_KEYS, ENV_READ_ONLY_KEYS):  # serve --workers sets them: restored after
        monkeypatch.setenv(var, "")
    started = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **options: started.append((target, options)))
    result = CliRunner().invoke(app, ["serve", str(root), "--host", "0.0.0.0", "--allow-remote", "--port", "9"])
    assert result.exit_code == 0, result.output
    assert "warning" in result.output + result.stderr and "no API key" in result.output + result.stderr
    assert started[0][1] == {"host": "0.0.0.0", "port": 9}

    monkeypatch.setenv("VECBOX_API_KEYS", "env-key-1,env-key-2")
    monkeypatch.setenv("VECBOX_READ_ONLY_KEYS", "env-ro")
    result = CliRunner().invoke(app, ["serve", str(root), "--api-key", "flag-key", "--max-k", "50"])
    assert result.exit_code == 0 and "warning" not in result.output + result.stderr
    with TestClient(started[1][0]) as http:
        assert http.get("/collections").status_code == 401
        for key in ("flag-key", "env-key-2", "env-ro"):
            assert http.get("/collections", headers={"X-API-Key": key}).status_code == 200
        assert http.post("/collections", json={"name": "c", "dim": 2}, headers={"X-API-Key": "env-ro"}).status_code \
            == 403

    result = CliRunner().invoke(app, ["serve", str(root), "--workers", "2", "--max-k", "50"])
    assert result.exit_code == 0, result.output
    target, options = started[2]
    assert target == "vecbox.server.app:app_from_env" and options["factory"] and options["workers"] == 2
    with TestClient(app_from_env()) as http:  # what each worker process builds, from the environment
        assert http.get("/collections", headers={"X-API-Key": "env-key-1"}).json() == {"collections": []}
        assert http.get("/collections").status_code == 401
        http.post("/collections", json={"name": "c", "dim": 2}, headers={"X-API-Key": "env-key-1"})
        message = error(http.post("/collections/c/search", json={"vector": [1, 0], "k": 51},
                                  headers={"X-API-Key": "env-key-1"}), 400, "InvalidInputError")
        assert "limit of 50" in message


def test_a_body_that_is_not_a_json_object_says_so(loaded):
    http, _, _ = loaded
    for content, ctype in ((b'{"vector": [1, 0]}', "text/plain"), (b"[1, 2]", "application/json"),
                           (b"", "application/json")):
        message = error(http.post("/collections/docs/search", content=content, headers={"content-type": ctype}),
                        422, "InvalidRequest")
        assert "must be one JSON object" in message


def test_a_burst_of_first_requests_opens_a_collection_once(tmp_path, monkeypatch):
    """16 threads asking for the same unopened collection share one handle (one open, one index load)."""
    import threading

    import vecbox.collection as collection_module
    from vecbox.server.registry import Registry

    col = Collection.create(tmp_path / "c", dim=4)
    col.add([str(i) for i in range(300)], np.random.default_rng(0).standard_normal((300, 4)))
    col.build_index("hnsw")
    col.close()
    opened = []
    real_init = collection_module.Collection.__init__

    def counting_init(self, *args, **kwargs):  # the real constructor, counted
        opened.append(args[0] if args else kwargs.get("path"))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(collection_module.Collection, "__init__", counting_init)
    registry = Registry(tmp_path)
    start, entries = threading.Barrier(16), []

    def first_request():
        start.wait()
        entries.append(registry.get("c"))

    threads = [threading.Thread(target=first_request) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(entries) == 16 and len({id(e) for e in entries}) == 1
        assert len(opened) == 1, opened
        assert [h.id for h in entries[0].reader.search(np.ones(4), 1)] == [
            h.id for h in Collection.open(tmp_path / "c").search(np.ones(4), 1)]
    finally:
        registry.close()
