"""The pose service (issue 6): the API in-process, its limits and errors, and the page in a real
headless Chromium driven by Playwright."""
import asyncio
import io
import os
import re
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
    assert set(body) >= {"people", "width", "height", "model", "latency_ms", "score", "threshold"}
    assert body["model"] == "posekit-lsp" and len(body["people"]) == 1
    person = body["people"][0]
    assert len(person["joints"]) == 14 and set(person["joints"][0]) == {"name", "x", "y", "score", "in_image"}
    direct = predictor.predict(EXAMPLE)
    got = np.array([[j["x"], j["y"]] for j in person["joints"]])
    np.testing.assert_allclose(got, direct.keypoints, atol=0.01)
    assert person["score"] == pytest.approx(direct.score, abs=1e-4) and body["score"] == person["score"]
    boxed = _post(client, Path(EXAMPLE).read_bytes(), box="10,20,100,120").json()["people"][0]
    want = predictor.predict(EXAMPLE, box=(10, 20, 100, 120)).keypoints
    np.testing.assert_allclose(np.array([[j["x"], j["y"]] for j in boxed["joints"]]), want, atol=0.01)
    assert boxed["box"] == [10, 20, 100, 120]


def test_service_endpoints(client):
    assert client.get("/healthz").json()["status"] == "ok"
    m = client.get("/v1/models").json()
    assert m["loaded"]["name"] == "posekit-lsp" and "posekit-lsp" in m["shipped"]
    pred = client.app.state.predictor  # the model's own settings, as shipped: the flip test, no refinement crop
    assert m["loaded"]["refine"] == pred.refine and m["loaded"]["flip_test"] == pred.flip_test and m["loaded"]["flip_test"]
    assert m["loaded"]["threshold"] == client.app.state.predictor.threshold
    assert m["loaded"]["precision"] == pred.precision in ("fp32", "bf16")
    assert m["loaded"]["detector_flip_test"] == pred.detector_flip_test
    assert m["loaded"]["denoise"] == 5.0 and m["loaded"]["detector_denoise"] == 5.0  # posekit-lsp's, as shipped
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
    ("truncated", 400, "truncated or corrupt JPEG"),
    ("corrupt", 400, "upload: truncated or corrupt JPEG"),
    ("huge_box", 400, "10 times larger"),
    ("empty", 400, "empty"),
    ("bomb", 413, "pixels"),
    ("bad_box", 400, "box"),
    ("box_outside", 400, "outside"),
    ("float_tiff", 415, "upload: 32-bit float pixels (PIL mode 'F') are not supported"),
])
def test_bad_inputs_get_json_errors_and_service_continues(client, case, status, fragment):
    jpg = Path(EXAMPLE).read_bytes()
    form = {}
    data = {"text": b"hello, not an image at all", "truncated": jpg[: len(jpg) // 2],
            "corrupt": jpg[:600] + b"\x00" * 4000 + b"\xff\xd9", "empty": b"",
            "bomb": _png_header_only(100_000, 100_000)}.get(case, jpg)
    if case == "float_tiff":  # a valid file of a kind posekit does not read (it said "truncated or corrupt")
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.linspace(0, 1, 40 * 60, dtype=np.float32).reshape(40, 60)).save(buf, "TIFF")
        data = buf.getvalue()
    if case == "bad_box":
        form["box"] = "1,2,3"
    if case == "box_outside":
        form["box"] = "5000,5000,20,20"
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
        self.threshold = p.threshold

    def predict(self, *a, **k):
        time.sleep(self.delay)
        return self.p.predict(*a, **k)

    def predict_all(self, *a, **k):
        time.sleep(self.delay)
        return self.p.predict_all(*a, **k)

    def predict_people(self, *a, **k):
        time.sleep(self.delay)
        return self.p.predict_people(*a, **k)


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


@pytest.fixture
def browser():
    """Headless Chromium driven by Playwright (skipped where it is not installed)."""
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium package")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
        try:
            yield b
        finally:
            b.close()


def _open(browser, url):
    """A new page at ``url``; returns (page, page errors, URLs of requests to other hosts)."""
    page = browser.new_page()
    errors, foreign = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    host = url.split("/")[2]
    page.on("request", lambda r: None if r.url.split("/")[2:3] == [host] or r.url.startswith("data:") else foreign.append(r.url))
    page.goto(url)
    return page, errors, foreign


_OVERLAY = """() => {
    const c = document.getElementById('overlay'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return {n, w: c.width, h: c.height};
}"""
_IMAGE_DRAWN = """() => {
    const c = document.getElementById('image'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
}"""
_PIXEL = "([x, y]) => Array.from(document.getElementById('overlay').getContext('2d').getImageData(x, y, 1, 1).data)"
_ROWS = "document.querySelectorAll('#joints tbody tr').length"


def _upload(page, name, data: bytes):
    page.set_input_files("#file", files=[{"name": name, "mimeType": "image/jpeg", "buffer": data}])


def _status(page):
    return page.evaluate("[document.getElementById('status').textContent, document.getElementById('status').className]")


def _wait_status(page, fragment):
    page.wait_for_function(f"document.getElementById('status').textContent.includes({fragment!r})", timeout=15000)


def _assert_cleared(page):
    assert page.evaluate(_OVERLAY)["n"] == 0 and page.evaluate(_IMAGE_DRAWN) == 0
    assert page.evaluate(_ROWS) == 0


def test_page_in_headless_chromium(live_server, browser, tmp_path):
    """Upload an example in the real page, wait for the skeleton, check the table, the canvas and
    the legend; then a file the browser cannot decode clears all of it and says so."""
    from posekit.skeleton import SIDE_COLORS

    page, errors, foreign = _open(browser, live_server + "/")
    page.wait_for_function("document.getElementById('model').textContent.includes('posekit-lsp')")
    _upload(page, "lsp_im1003.jpg", Path(EXAMPLE).read_bytes())
    page.wait_for_function(f"{_ROWS} > 0 || document.getElementById('status').className === 'error'", timeout=15000)
    status = _status(page)
    drawn = page.evaluate(_OVERLAY)
    names = page.eval_on_selector_all("#joints tbody tr td:first-child", "tds => tds.map(t => t.textContent)")
    legend = page.eval_on_selector_all("#legend li", """lis => lis.map(li => [li.textContent,
        getComputedStyle(li.querySelector('.mark')).backgroundColor])""")
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("POSEKIT_SCREENSHOT"):
        shutil.copy(shot, os.environ["POSEKIT_SCREENSHOT"])

    _upload(page, "broken.jpg", b"this is not an image")
    _wait_status(page, "cannot decode")
    _assert_cleared(page)
    assert _status(page)[1] == "error" and "broken.jpg" in _status(page)[0]

    assert not errors, errors
    assert not foreign, foreign
    assert status[1] == "" and "lsp_im1003.jpg: 147×171, 1 person" in status[0], status
    assert (drawn["w"], drawn["h"]) == (147, 171)  # the canvas took the image's own size
    assert drawn["n"] > 300  # limbs and joints were drawn on the overlay
    assert len(names) == 14 and names[0] == "right_ankle" and names[-1] == "head_top"
    rgb = lambda c: "rgb({}, {}, {})".format(*c)  # noqa: E731
    assert legend[:3] == [["left", rgb(SIDE_COLORS["left"])], ["right", rgb(SIDE_COLORS["right"])],
                          ["centre", rgb(SIDE_COLORS["center"])]]
    assert legend[3][0].startswith("low confidence") and len(legend) == 4
    assert shot.stat().st_size > 10_000


def _answer(people, score=0.9, threshold=0.3):
    return {"model": "posekit-lsp", "width": 147, "height": 171, "latency_ms": 1.0, "threshold": threshold,
            "score": score, "people": people}


def _person(i, dx, low=()):
    from posekit.skeleton import JOINT_NAMES

    pose = {"head_top": (50, 10), "neck": (50, 35), "right_shoulder": (40, 45), "left_shoulder": (60, 45),
            "right_elbow": (35, 70), "left_elbow": (65, 70), "right_wrist": (32, 95), "left_wrist": (68, 95),
            "right_hip": (42, 100), "left_hip": (58, 100), "right_knee": (42, 130), "left_knee": (58, 130),
            "right_ankle": (42, 160), "left_ankle": (58, 160)}
    joints = [{"name": n, "x": pose[n][0] + dx + 0.5, "y": pose[n][1] + 0.5, "score": 0.1 if n in low else 0.9,
               "in_image": True} for n in JOINT_NAMES]
    return {"person": i, "score": 0.9, "box": [dx + 25, 5, 50, 160], "joints": joints}


def test_page_draws_people_no_person_and_errors(live_server, browser):
    """The page against canned /v1/pose answers: two people (one joint of low score), nobody, an
    error. Colours come from /v1/skeleton; an error clears what the previous answer drew."""
    import json

    from posekit.skeleton import PERSON_COLORS, SIDE_COLORS

    answers = []

    def fulfil(route):
        status, body = answers.pop(0)
        route.fulfill(status=status, content_type="application/json", body=json.dumps(body))

    page, errors, foreign = _open(browser, live_server + "/")
    page.route("**/v1/pose", fulfil)
    page.wait_for_function("document.getElementById('model').textContent.includes('posekit-lsp')")
    jpg = Path(EXAMPLE).read_bytes()

    answers.append((200, _answer([_person(0, -10, low=("left_knee",)), _person(1, 55)])))
    _upload(page, "two.jpg", jpg)
    page.wait_for_function(f"{_ROWS} === 28", timeout=15000)
    head = page.eval_on_selector_all("#joints thead th", "ths => ths.map(t => t.textContent)")
    first_col = page.eval_on_selector_all("#joints tbody tr td:first-child", "tds => tds.map(t => t.textContent)")
    low_rows = page.eval_on_selector_all("#joints tbody tr.low td:nth-child(2)", "tds => tds.map(t => t.textContent)")
    legend = page.eval_on_selector_all("#legend li", "lis => lis.map(li => li.textContent)")
    knee = page.evaluate(_PIXEL, [48, 130])  # person 0's low-score left knee: a hollow ring
    ring = [page.evaluate(_PIXEL, [48 + dx, 130]) for dx in (-3, -2, 2, 3)]
    shin0 = page.evaluate(_PIXEL, [32, 145])  # right knee-ankle of each person: the person's colour
    shin1 = page.evaluate(_PIXEL, [97, 145])
    hip0 = page.evaluate(_PIXEL, [32, 100])  # joints keep their side colours
    status_two = _status(page)

    answers.append((200, _answer([], score=0.12, threshold=0.3)))
    _upload(page, "nobody.jpg", jpg)
    _wait_status(page, "No person")
    status_none = _status(page)
    nobody = page.evaluate(_OVERLAY)["n"], page.evaluate(_ROWS), page.evaluate(_IMAGE_DRAWN)
    answers.append((200, _answer([], score=0.46, threshold=0.32)))  # a pose over the threshold, nobody detected
    _upload(page, "tiny.jpg", jpg)
    _wait_status(page, "tiny.jpg: No person")
    status_undetected = _status(page)
    answers.append((200, _answer([], score=0.3152, threshold=0.32)))  # under the threshold: reads as under it
    _upload(page, "close.jpg", jpg)
    _wait_status(page, "close.jpg: No person")
    status_close = _status(page)

    answers.append((200, _answer([_person(0, 0)])))
    _upload(page, "one.jpg", jpg)
    page.wait_for_function(f"{_ROWS} === 14", timeout=15000)
    answers.append((400, {"error": {"status": 400, "message": "upload: truncated JPEG"}}))
    _upload(page, "bad.jpg", jpg)
    _wait_status(page, "truncated JPEG")
    _assert_cleared(page)
    status_err = _status(page)

    assert not errors, errors
    assert not foreign, foreign
    assert head == ["person", "joint", "x", "y", "score"]
    assert first_col == ["0"] * 14 + ["1"] * 14 and low_rows == ["left_knee"]  # the answer's own "person"
    assert legend[-2:] == ["person 0", "person 1"]
    assert knee[3] == 0 and max(p[3] for p in ring) > 0  # nothing at the centre, the ring around it
    near = lambda px, rgb: px[3] > 200 and sum(abs(a - b) for a, b in zip(px[:3], rgb)) < 60  # noqa: E731
    assert near(shin0, PERSON_COLORS[0]) and near(shin1, PERSON_COLORS[1]), (shin0, shin1)
    assert near(hip0, SIDE_COLORS["right"]), hip0
    assert "2 people" in status_two[0] and status_two[1] == ""
    assert "No person found (score 0.12, threshold 0.30), round trip" in status_none[0] and status_none[1] == ""
    assert "No person found (score 0.46, threshold 0.32, but no person detected)" in status_undetected[0]
    assert "No person found (score 0.315, threshold 0.32), round trip" in status_close[0]
    assert nobody[0] == 0 and nobody[1] == 0 and nobody[2] > 0  # the image, and nothing drawn over it
    assert status_err[1] == "error" and "bad.jpg" in status_err[0]


def test_docs_render_in_headless_chromium(live_server, browser):
    """Swagger UI (served by posekit, no CDN) renders the OpenAPI 3.1 document."""
    page, errors, foreign = _open(browser, live_server + "/docs")
    page.locator(".opblock-summary-path", has_text="/v1/pose").first.wait_for(timeout=20000)
    text = page.inner_text("body")
    assert "/v1/pose" in text and "/v1/skeleton" in text
    assert "Unable to render" not in text
    assert not foreign, foreign
    assert not errors, errors


def test_favicon_docs_assets_and_palette(client):
    from posekit.skeleton import LOW_JOINT_SCORE, PERSON_COLORS, SIDE_COLORS

    r = client.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"] == "image/x-icon"
    assert r.content[:4] == b"\x00\x00\x01\x00" and len(r.content) < 5000
    assert 'href="/favicon.ico"' in client.get("/").text
    docs = client.get("/docs").text
    assert "cdn." not in docs and "://" not in docs and 'href="/favicon.ico"' in docs
    for f in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert client.get("/docs-static/" + f).status_code == 200
    sk = client.get("/v1/skeleton").json()
    assert sk["colors"] == {k: "#%02x%02x%02x" % v for k, v in SIDE_COLORS.items()}
    assert sk["colors"]["left"] == "#1e90ff"
    assert sk["person_colors"] == ["#%02x%02x%02x" % c for c in PERSON_COLORS]
    assert sk["low_score"] == LOW_JOINT_SCORE == 0.3
    js = client.get("/static/app.js").text
    assert re.search(r"#[0-9a-fA-F]{6}\b", js) is None and "rgb(" not in js  # the page hard-codes no colour


def test_unexpected_errors_are_json_500(predictor):
    class Broken:
        name, backend, input_size, flip_test = "broken", "torch", 128, False

        def predict(self, *a, **k):
            raise RuntimeError("boom")

        predict_all = predict

    c = TestClient(create_app(predictor=Broken()), raise_server_exceptions=False)
    r = _post(c, Path(EXAMPLE).read_bytes())
    assert r.status_code == 500 and r.json()["error"]["message"] == "internal error (RuntimeError)"
    assert c.get("/healthz").json()["in_flight"] == 0


class _Crowd:
    """A stand-in Predictor with a detector: ``found`` pose scores in the detector's order (all
    over the threshold); with none, ``predict`` answers the best candidate, not found."""

    name, backend, input_size, flip_test, refine, threshold, detector = "stub", "torch", 128, False, None, 0.3, object()

    def __init__(self, found, guess=0.46):
        self.found, self.guess = found, guess

    def _pose(self, score, found, person=0):
        from posekit.inference import Pose

        kp = np.tile([[20.0, 30.0]], (14, 1))
        return Pose(kp, np.full(14, score), 147, 171, score=score, found=found, box=(5.0, 5.0, 60.0, 90.0),
                    box_score=0.8 - 0.1 * person, person=person)

    def predict_all(self, rgb):
        return [self._pose(s, True, i) for i, s in enumerate(self.found)]

    def predict(self, rgb, box=None):
        return self.predict_all(rgb)[0] if self.found else self._pose(self.guess, False)

    def predict_people(self, rgb):
        return self.predict_all(rgb), self.predict(rgb)


def test_answer_score_is_the_best_person_score_and_nobody_is_the_best_candidate():
    """``score`` is the highest score among the people (not the detector's first pick); with
    nobody found it is the score of the one-person answer, the same for people=all and one."""
    jpg = Path(EXAMPLE).read_bytes()
    body = _post(TestClient(create_app(predictor=_Crowd([0.5, 0.9, 0.7]))), jpg).json()
    assert [p["score"] for p in body["people"]] == [0.5, 0.9, 0.7] and body["score"] == 0.9
    assert [p["person"] for p in body["people"]] == [0, 1, 2]
    nobody = TestClient(create_app(predictor=_Crowd([])))
    for people in ("all", "one"):
        body = _post(nobody, jpg, people=people).json()
        assert body["people"] == [] and body["score"] == 0.46 and body["threshold"] == 0.3
