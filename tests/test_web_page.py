"""The web page at ``/`` and the two endpoints it relies on (``/map``, ``/neighbors``).

The endpoints are checked against independent references: the map against scikit-learn's PCA and
a brute-force k-th-neighbour distance, the neighbours against an exact numpy scan. The page itself
runs in headless Chromium (Debian's ``chromium``, driven by Playwright for Python) against a live
uvicorn server: it asks for the API key, draws the map, searches (hybrid with the bundled model,
lexical, filtered by the filter builder), shows a point's neighbours on a click, colours the map by
a field and by anomaly score, and leaves a screenshot in ``$VECBOX_TEST_ARTIFACTS`` (default
``test-artifacts/``). Only the browser test skips, and only when no Chromium is installed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from vecbox import Collection
from vecbox.server import create_app

from ._live import live_server

KEY = "page-test-key-123456"
TOPICS = ["files", "json", "network", "dates", "text"]
TEXTS = {
    "files": ["open a file and read its lines", "copy a directory tree recursively", "delete a file if it exists",
              "walk a directory and list every path", "write bytes to a temporary file", "check a file's size on disk"],
    "json": ["parse a JSON string into a dict", "serialise a dict as JSON with indentation",
             "load JSON from a file", "pretty print nested JSON objects", "encode dates in JSON output",
             "validate a JSON document against a schema"],
    "network": ["open a TCP socket to a server", "send an HTTP GET request", "download a web page with urllib",
                "resolve a host name to an address", "serve files over HTTP on a port", "set a timeout on a socket"],
    "dates": ["parse an RFC 2822 date", "format a date as ISO 8601", "add days to a datetime",
              "convert a timestamp to UTC", "compute the weekday of a date", "measure elapsed time"],
    "text": ["split a string on whitespace", "replace every match of a regular expression", "wrap text to 72 columns",
             "remove accents from unicode text", "count the words in a paragraph", "compare two strings ignoring case"],
}
DOCS = [(f"{topic}-{i}", text, topic) for topic, texts in TEXTS.items() for i, text in enumerate(texts)]


# ----------------------------------------------------------------------------------------- the endpoints
@pytest.fixture(scope="module")
def vectors_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("vectors")
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((3, 16)) * 3
    x = np.vstack([centres[i % 3] + rng.standard_normal(16) for i in range(90)] + [np.full(16, 25.0)])
    col = Collection.create(root / "points", dim=16, metric="l2")
    col.add([f"p{i}" for i in range(91)], x.astype(np.float32),
            metadatas=[{"cluster": i % 3, "odd": bool(i % 2)} for i in range(90)] + [{"cluster": -1, "odd": True}],
            documents=[f"point {i}" for i in range(91)])
    col.close()
    return root, x.astype(np.float32)


def test_map_is_the_pca_of_the_sample_with_knn_anomaly_scores(vectors_root):
    from sklearn.decomposition import PCA

    root, x = vectors_root
    http = TestClient(create_app(root, api_keys=[KEY]))
    assert http.get("/collections/points/map").status_code == 401  # data: behind the key
    m = http.get("/collections/points/map", headers={"X-API-Key": KEY}).json()
    assert m["sampled"] == m["total"] == 91 and m["ids"] == [f"p{i}" for i in range(91)]
    ref = PCA(n_components=2).fit(x)
    xy = ref.transform(x)
    for axis, coords in enumerate((m["x"], m["y"])):  # equal up to each axis' sign
        sign = np.sign(np.dot(coords, xy[:, axis]))
        np.testing.assert_allclose(np.asarray(coords) * sign, xy[:, axis], atol=1e-3)
    np.testing.assert_allclose(m["variance"], ref.explained_variance_ratio_, rtol=1e-4)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))  # brute force: the 10th other point's distance
    np.fill_diagonal(d, np.inf)
    np.testing.assert_allclose(m["anomaly"], np.sort(d, axis=1)[:, 9], rtol=1e-4)
    assert int(np.argmax(m["anomaly"])) == 90  # the far-away point is the most anomalous
    assert m["fields"]["cluster"]["kind"] == "number" and m["fields"]["odd"]["kind"] == "bool"
    assert m["documents"][3] == "point 3" and m["metadata"][90] == {"cluster": -1, "odd": True}


def test_map_samples_with_a_seed_and_refuses_bad_sizes(vectors_root):
    root, _ = vectors_root
    http = TestClient(create_app(root))
    a = http.get("/collections/points/map?points=20&seed=3").json()
    b = http.get("/collections/points/map?points=20&seed=3").json()
    c = http.get("/collections/points/map?points=20&seed=4").json()
    assert a["sampled"] == 20 and a["total"] == 91 and a["ids"] == b["ids"] != c["ids"]
    assert len(set(a["ids"])) == 20 and a["x"] == b["x"]
    for bad in ("0", "20001", "abc"):
        res = http.get(f"/collections/points/map?points={bad}")
        assert res.status_code in (400, 422) and "points" in res.json()["error"]["message"]


def test_neighbours_are_the_exact_nearest_other_items(vectors_root):
    root, x = vectors_root
    http = TestClient(create_app(root))
    d = ((x - x[5]) ** 2).sum(1)
    d[5] = np.inf
    expected = [f"p{i}" for i in np.argsort(d, kind="stable")[:7]]
    res = http.get("/collections/points/neighbors", params={"id": "p5", "k": 7}).json()
    assert res["id"] == "p5" and [h["id"] for h in res["hits"]] == expected
    assert res["hits"][0]["metadata"] == {"cluster": int(expected[0][1:]) % 3, "odd": bool(int(expected[0][1:]) % 2)}
    odd = http.get("/collections/points/neighbors", params={"id": "p5", "k": 5, "where": '{"odd": true}'}).json()
    keep = [i for i in np.argsort(d, kind="stable") if i % 2 == 1 or i == 90][:5]
    assert [h["id"] for h in odd["hits"]] == [f"p{i}" for i in keep]
    missing = http.get("/collections/points/neighbors", params={"id": "nope"})
    assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]
    bad = http.get("/collections/points/neighbors", params={"id": "p5", "where": "{oops"})
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]


def test_the_page_and_its_files_need_no_key_and_hold_no_data(vectors_root):
    root, _ = vectors_root
    http = TestClient(create_app(root, api_keys=[KEY]))
    page = http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/page/vecbox.js">' in page.text and "p5" not in page.text
    assert "class VecboxApi" in http.get("/page/vecbox.js").text
    assert http.get("/page/vecbox.css").status_code == 200
    assert http.get("/page/../app.py").status_code == 404
    assert "/" not in http.get("/openapi.json").json()["paths"]  # the page is not part of the API


# ----------------------------------------------------------------------------------------- the browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on this machine: `apt-get install chromium` (Debian) to run the page test")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    col = Collection.create(root / "snippets", model="default", lexical={"language": "english"})
    col.add_texts([d[1] for d in DOCS], ids=[d[0] for d in DOCS],
                  metadatas=[{"topic": d[2], "n": i} for i, d in enumerate(DOCS)])
    with live_server(create_app(root, api_keys=[KEY])) as url:
        yield url, col
    col.close()


@pytest.fixture(scope="module")
def page(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        tab = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.goto(served[0] + "/")
        yield tab
        browser.close()
    assert errors == [], f"the page threw: {errors}"


def _ids(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "nodes => nodes.map(n => n.dataset.id || n.getAttribute('data-id'))")


@needs_chromium
def test_page_search_map_neighbours_in_chromium(served, page):
    from playwright.sync_api import expect

    url, col = served
    # no key yet: the page says what to do
    expect(page.locator("#status")).to_contain_text("API key")
    page.fill("#api-key", KEY)
    page.press("#api-key", "Enter")
    page.locator("#api-key").dispatch_event("change")
    expect(page.locator("#points circle")).to_have_count(len(DOCS), timeout=60_000)
    expect(page.locator("#stats")).to_contain_text("all-MiniLM-L6-v2")

    # type a query, see the collection's own hybrid hits, in order, with metadata
    query = "read a JSON file"
    page.fill("#query", query)
    page.press("#query", "Enter")
    expect(page.locator("#hits li.hit").first).to_be_visible(timeout=60_000)
    expected = [h.id for h in col.search_text(query, 10, mode="hybrid")]
    assert _ids(page, "#hits li.hit") == expected
    assert "json-2" in expected[:3]  # "load JSON from a file"
    expect(page.locator(f"#hits li.hit[data-id=json-2]")).to_contain_text("topic: json")

    # lexical mode and a filter built in the page: the same answers as the collection's own
    page.select_option("#mode", "lexical")
    page.click("#add-filter")
    row = page.locator(".filter-row").last
    row.locator(".field").fill("topic")
    row.locator(".op").select_option("$ne")
    row.locator(".value").fill("json")
    row.locator(".value").dispatch_event("change")
    expect(page.locator("#where-json")).to_have_text('{"topic":{"$ne":"json"}}')
    expected = [h.id for h in col.search_lexical("file", 10, where={"topic": {"$ne": "json"}})]
    page.fill("#query", "file")
    page.press("#query", "Enter")
    expect(page.locator("#hits-head")).to_contain_text("lexical")
    page.wait_for_function("n => document.querySelectorAll('#hits li.hit').length === n", arg=len(expected))
    assert _ids(page, "#hits li.hit") == expected and not any(i.startswith("json") for i in expected)
    expect(page.locator("#points circle.dim")).to_have_count(len(TEXTS["json"]))  # the map greys out the rest
    page.click("#clear-filter")
    expect(page.locator("#points circle.dim")).to_have_count(0)

    # hover a point: its card; click it: its exact neighbours, listed and linked on the map
    point = page.locator('#points circle[data-id="dates-0"]')
    point.hover()
    expect(page.locator("#tip")).to_contain_text("parse an RFC 2822 date")
    point.click()
    expect(page.locator("#neighbours-of")).to_contain_text("dates-0")
    expect(page.locator("#neighbours li.hit")).to_have_count(10)
    vectors = np.stack([r.vector for r in col.get([d[0] for d in DOCS])])
    me = [d[0] for d in DOCS].index("dates-0")
    sims = vectors @ vectors[me]
    sims[me] = -np.inf
    assert _ids(page, "#neighbours li.hit") == [DOCS[i][0] for i in np.argsort(-sims, kind="stable")[:10]]
    expect(page.locator("#links line")).to_have_count(10)

    # colour by a metadata field (a legend of its values), then by anomaly score (a ramp)
    page.select_option("#color-by", "topic")
    expect(page.locator("#legend")).to_contain_text("dates")
    fills = set(page.eval_on_selector_all("#points circle", "ns => ns.map(n => n.getAttribute('fill'))"))
    assert len(fills) == len(TOPICS)
    page.select_option("#color-by", "@anomaly")
    expect(page.locator("#legend")).to_contain_text("more isolated")

    out = Path(os.environ.get("VECBOX_TEST_ARTIFACTS", "test-artifacts"))
    out.mkdir(parents=True, exist_ok=True)
    page.select_option("#color-by", "topic")
    point.click()
    shot = page.screenshot(path=str(out / "web-page.png"), full_page=True)
    assert len(shot) > 10_000 and (out / "web-page.png").stat().st_size == len(shot)
