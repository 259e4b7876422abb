"""The pose service (issue 6): the API in-process, its limits and errors, and the page in a real
headless Chromium driven by Playwright."""
import asyncio
import io
import os
import shutil
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from posekit import Predictor  # noqa: E402
from posekit.serve import create_app  # noqa: E402

EXAMPLE = "examples/lsp_im1003.jpg"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def predictor():
    return Predictor("posekit-lsp")


@pytest.fixture(scope="module")
def client(predictor):
    return TestClient(create_app(predictor=predictor))


def _post(client, data: bytes, name="x.jpg", **form):
    return client.post("/v1/pose", files={"image": (name, data, "application/octet-stream")}, data=form)


def _ok(client):
    r = _post(client, Path(EXAMPLE).read_bytes())
    assert r.status_code == 200, r.text
    return r.json()


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header declares w x h pixels, with almost no pixel data (a decompression bomb's shape)."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_pose_endpoint_matches_the_predictor(client, predictor):
    body = _ok(client)
    assert set(body) >= {"joints", "width", "height", "model", "latency_ms"} and body["model"] == "posekit-lsp"
    assert len(body["joints"]) == 14 and set(body["joints"][0]) == {"name", "x", "y", "score"}
    direct = predictor.predict(EXAMPLE)
    got = np.array([[j["x"], j["y"]] for j in body["joints"]])
    np.testing.assert_allclose(got, direct.keypoints, atol=0.01)
    boxed = _post(client, Path(EXAMPLE).read_bytes(), box="10,20,100,120").json()
    want = predictor.predict(EXAMPLE, box=(10, 20, 100, 120)).keypoints
    np.testing.assert_allclose(np.array([[j["x"], j["y"]] for j in boxed["joints"]]), want, atol=0.01)


def test_service_endpoints(client):
    assert client.get("/healthz").json()["status"] == "ok"
    m = client.get("/v1/models").json()
    assert m["loaded"]["name"] == "posekit-lsp" and "posekit-lsp" in m["shipped"]
    sk = client.get("/v1/skeleton").json()
    assert len(sk["joints"]) == 14 and len(sk["sides"]) == 14 and sk["limbs"]
    assert "/v1/pose" in client.get("/openapi.json").json()["paths"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn." not in docs.text and "/docs-static/swagger-ui-bundle.js" in docs.text
    assert client.get("/docs-static/swagger-ui-bundle.js").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'id="overlay"' in page.text
    assert "://" not in page.text and "://" not in client.get("/static/app.js").text  # nothing from other hosts
    assert client.get("/static/app.js").status_code == 200


@pytest.mark.parametrize("case,status,fragment", [
    ("text", 415, "not an image"),
    ("truncated", 400, "truncated JPEG"),
    ("corrupt", 400, "upload: cannot decode"),
    ("huge_box", 400, "10 times larger"),
    ("empty", 400, "empty"),
    ("bomb", 413, "pixels"),
    ("bad_box", 400, "box"),
    ("box_outside", 400, "outside"),
])
def test_bad_inputs_get_json_errors_and_service_continues(client, case, status, fragment):
    jpg = Path(EXAMPLE).read_bytes()
    form = {}
    data = {"text": b"hello, not an image at all", "truncated": jpg[: len(jpg) // 2],
            "corrupt": jpg[:600] + b"\x00" * 4000 + b"\xff\xd9", "empty": b"",
            "bomb": _png_header_only(100_000, 100_000)}.get(case, jpg)
    if case == "bad_box":
        form["box"] = "1,2,3"
    if case == "box_outside":
        form["box"] = "5000,5000,10,10"
    if case == "huge_box":
        form["box"] = "0,0,1e308,1e308"
    r = _post(client, data, **form)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["status"] == status and fragment in err["message"]
    _ok(client)  # and the next normal request succeeds
    assert client.get("/healthz").json()["in_flight"] == 0  # no slot leaked by the error


def test_missing_field_and_size_limits(predictor):
    c = TestClient(create_app(predictor=predictor, max_bytes=4000, max_pixels=10_000))
    r = c.post("/v1/pose", data={"box": "1,2,3,4"})
    assert r.status_code == 422 and "image" in r.json()["error"]["message"]
    big = Path(EXAMPLE).read_bytes()
    assert len(big) > 4000
    r = _post(c, big)
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (150, 100)).save(buf, "PNG")  # small file, 15,000 pixels > 10,000
    r = _post(c, buf.getvalue())
    assert r.status_code == 413 and "15,000 pixels" in r.json()["error"]["message"]
    buf = io.BytesIO()
    Image.new("RGB", (90, 100), (120, 80, 60)).save(buf, "PNG")
    assert _post(c, buf.getvalue()).status_code == 200


class _Slow:
    """The real predictor, slowed down, to fill the queue."""

    def __init__(self, p, delay):
        self.p, self.delay = p, delay
        self.name, self.backend, self.input_size, self.flip_test = p.name, p.backend, p.input_size, p.flip_test

    def predict(self, *a, **k):
        time.sleep(self.delay)
        return self.p.predict(*a, **k)


def test_full_queue_answers_503_with_retry_after(predictor):
    import httpx

    app = create_app(predictor=_Slow(predictor, 0.4), workers=1, queue_size=1)
    data = Path(EXAMPLE).read_bytes()

    async def burst():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await asyncio.gather(*(c.post("/v1/pose", files={"image": ("a.jpg", data)}) for _ in range(5)))

    rs = asyncio.run(burst())
    codes = sorted(r.status_code for r in rs)
    assert codes.count(200) == 2 and codes.count(503) == 3  # one running + one waiting; the rest refused
    refused = [r for r in rs if r.status_code == 503]
    assert all(r.headers["retry-after"] == "1" and "busy" in r.json()["error"]["message"] for r in refused)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live_server(predictor):
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(predictor=predictor), host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    t.join(timeout=5)


def test_page_in_headless_chromium(live_server, tmp_path):
    """Upload an example in the real page, wait for the skeleton, check the table and the canvas."""
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium package")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(live_server + "/")
            page.wait_for_function("document.getElementById('model').textContent.includes('posekit-lsp')")
            page.set_input_files("#file", EXAMPLE)
            page.wait_for_function("document.querySelectorAll('#joints tbody tr').length === 14", timeout=15000)
            drawn = page.evaluate("""() => {
                const c = document.getElementById('overlay');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
                return {n, w: c.width, h: c.height};
            }""")
            names = page.eval_on_selector_all("#joints tbody tr td:first-child", "tds => tds.map(t => t.textContent)")
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get("POSEKIT_SCREENSHOT"):
                shutil.copy(shot, os.environ["POSEKIT_SCREENSHOT"])
        finally:
            browser.close()
    assert not errors, errors
    assert (drawn["w"], drawn["h"]) == (147, 171)  # the canvas took the image's own size
    assert drawn["n"] > 300  # limbs and joints were drawn on the overlay
    assert names[0] == "right_ankle" and names[-1] == "head_top"
    assert shot.stat().st_size > 10_000


def test_unexpected_errors_are_json_500(predictor):
    class Broken:
        name, backend, input_size, flip_test = "broken", "torch", 128, False

        def predict(self, *a, **k):
            raise RuntimeError("boom")

    c = TestClient(create_app(predictor=Broken()), raise_server_exceptions=False)
    r = _post(c, Path(EXAMPLE).read_bytes())
    assert r.status_code == 500 and r.json()["error"]["message"] == "internal error (RuntimeError)"
    assert c.get("/healthz").json()["in_flight"] == 0
