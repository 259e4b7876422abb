"""The pose service: ``POST /v1/pose``, ``GET /healthz``, ``GET /v1/models``, ``GET /v1/skeleton``,
OpenAPI at ``/docs``, and a web page at ``/`` (static files served by posekit itself, no CDN).

Inference runs in a small thread pool, off the event loop. Requests waiting for it are bounded:
when ``workers + queue_size`` are already in flight, the answer is ``503`` with ``Retry-After``
instead of an unbounded wait. Every error is a JSON body ``{"error": {"status", "message"}}``:
413 for an upload over ``max_bytes`` or an image whose declared size is over ``max_pixels`` (a
decompression bomb is refused before it is decoded), 415 for data that is not an image, 400 for a
truncated or corrupt image or a bad box, 422 for a missing field."""
from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from posekit import __version__
from posekit.errors import PosekitError
from posekit.skeleton import JOINT_NAMES, LIMBS, side

STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 50_000_000


class ApiError(Exception):
    """An error answer: HTTP ``status``, a one-line ``message``, extra ``headers``."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _error(status: int, message: str, headers: dict | None = None, **extra) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message, **extra}}, status_code=status, headers=headers)


STATUS_OF_IMAGE_ERROR = {"empty": 400, "not_image": 415, "too_large": 413, "too_small": 400, "corrupt": 400}


def check_image_bytes(data: bytes, max_pixels: int):
    """Decode an upload through posekit's one image door (:func:`posekit.data.images.decode_image`):
    not an image 415, a declared size over ``max_pixels`` 413 (from the header, before decoding),
    empty, too small, truncated or corrupt 400. Returns the RGB array."""
    from posekit.data.images import ImageError, decode_image

    try:
        return decode_image(data, "upload", max_pixels)
    except ImageError as e:
        raise ApiError(STATUS_OF_IMAGE_ERROR.get(e.kind, 400), str(e)) from None
    except PosekitError as e:
        raise ApiError(400, str(e)) from None


def serve_threads(workers: int) -> int:
    """Torch intra-op threads per inference worker, so that workers x threads never exceeds the
    CPU cores: the batch-1 policy (:func:`posekit.predict.default_threads`), capped by cores / workers."""
    from posekit.predict import default_threads

    return max(1, min(default_threads(1), (os.cpu_count() or 1) // max(1, workers)))


class Service:
    """The state of one service: the predictor, its thread pool, and the requests in flight
    (bounded by ``workers + queue_size``)."""

    def __init__(self, pred, workers: int, queue_size: int, max_bytes: int, max_pixels: int):
        self.pred, self.max_bytes, self.max_pixels = pred, max_bytes, max_pixels
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="posekit-infer")
        self.lock = threading.Lock()
        self.state = {"in_flight": 0, "served": 0, "refused": 0}
        self.capacity = workers + queue_size

    def admit(self) -> None:
        """Take a slot, or refuse with 503 when every slot is taken."""
        with self.lock:
            if self.state["in_flight"] >= self.capacity:
                self.state["refused"] += 1
                raise ApiError(503, f"busy: {self.capacity} requests already in flight; retry shortly",
                               {"Retry-After": "1"})
            self.state["in_flight"] += 1

    def release(self, _fut=None) -> None:  # when the work itself ends, even if the client has gone
        with self.lock:
            self.state["in_flight"] -= 1

    async def run(self, work):
        """``work()`` on the pool, off the event loop, holding a slot until it ends."""
        self.admit()
        try:
            fut = self.pool.submit(work)
        except RuntimeError:  # the pool is shutting down
            self.release()
            raise ApiError(503, "the service is shutting down", {"Retry-After": "5"}) from None
        fut.add_done_callback(self.release)
        try:
            result = await asyncio.wrap_future(fut)
        except PosekitError as e:  # e.g. a box outside the image
            raise ApiError(400, str(e)) from None
        self.state["served"] += 1
        return result


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_req: Request, e: ApiError):
        return _error(e.status, e.message, e.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, e: RequestValidationError):
        missing = [".".join(str(p) for p in err.get("loc", [])[1:]) for err in e.errors()]
        return _error(422, f"invalid or missing field(s): {', '.join(missing) or 'request'}",
                      detail=[{"loc": list(err.get("loc", [])), "msg": err.get("msg")} for err in e.errors()])

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, e: Exception):  # still a JSON answer; the server goes on
        import logging

        logging.getLogger("posekit.serve").exception("unexpected error")
        return _error(500, f"internal error ({type(e).__name__})")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, e: StarletteHTTPException):
        return _error(e.status_code, str(e.detail), getattr(e, "headers", None))


def skeleton_answer() -> dict:
    """Joint names, limbs (joint index pairs), each joint's side, and the drawing palette:
    ``colors`` by side and ``person_colors`` as ``#rrggbb``, ``low_score`` the joint score under
    which a joint is drawn as low confidence."""
    from posekit.skeleton import LOW_JOINT_SCORE, PERSON_COLORS, SIDE_COLORS

    def hex_(rgb) -> str:
        return "#%02x%02x%02x" % tuple(rgb)

    return {"joints": list(JOINT_NAMES), "limbs": [list(limb) for limb in LIMBS],
            "sides": [side(i) for i in range(len(JOINT_NAMES))],
            "colors": {k: hex_(v) for k, v in SIDE_COLORS.items()},
            "person_colors": [hex_(c) for c in PERSON_COLORS], "low_score": LOW_JOINT_SCORE}


def _info_routes(app: FastAPI, svc: Service) -> None:
    pred = svc.pred

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict:
        return {"status": "ok", "model": pred.name, "backend": pred.backend, "in_flight": svc.state["in_flight"],
                "capacity": svc.capacity, "served": svc.state["served"], "refused": svc.state["refused"]}

    @app.get("/v1/models", tags=["pose"])
    def models() -> dict:
        from posekit.checkpoint import shipped_models

        return {"loaded": {"name": pred.name, "backend": pred.backend, "input_size": pred.input_size,
                           "flip_test": pred.flip_test, "refine": pred.refine, "threshold": pred.threshold,
                           "box_margins": pred.box_margins, "detector_flip_test": pred.detector_flip_test,
                           "precision": pred.precision, "denoise": pred.infer.denoise,
                           "detector_denoise": None if pred.detector is None else pred.detector.settings.denoise},
                "shipped": shipped_models()}

    app.get("/v1/skeleton", tags=["pose"])(skeleton_answer)


def _pose_route(app: FastAPI, svc: Service) -> None:
    from posekit.inference import parse_box, reported_poses

    @app.post("/v1/pose", tags=["pose"])
    async def pose(image: UploadFile = File(..., description="the photo (JPEG, PNG, ...)"),
                   box: str | None = Form(None, description="optional person box 'x,y,w,h' in pixels"),
                   people: str = Form("all", description="all: every person found; one: the best person")) -> dict:
        """The people in ``image`` and their 14 joints each (original pixels, a confidence each)."""
        if people not in ("all", "one"):
            raise ApiError(400, f"people must be 'all' or 'one', got {people!r}")
        t0 = time.perf_counter()
        data = await image.read(svc.max_bytes + 1)
        if len(data) > svc.max_bytes:
            raise ApiError(413, f"upload is over the {svc.max_bytes:,}-byte limit")
        try:
            b = parse_box(box) if box else None
        except PosekitError as e:
            raise ApiError(400, str(e)) from None
        def work():
            rgb = check_image_bytes(data, svc.max_pixels)
            return rgb.shape, reported_poses(svc.pred, rgb, people, b)

        shape, poses = await svc.run(work)
        return pose_answer(shape, poses, svc.pred, time.perf_counter() - t0)


def _page_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    def docs():
        # Swagger UI 5 (reads OpenAPI 3.1) from the fastapi-offline package, served here: no CDN
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(openapi_url=app.openapi_url, title="posekit API",
                                   swagger_js_url="/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-static/swagger-ui.css",
                                   swagger_favicon_url="/favicon.ico",
                                   swagger_ui_parameters={"validatorUrl": None})  # no badge from another host

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon")

    import fastapi_offline

    app.mount("/docs-static", StaticFiles(directory=Path(fastapi_offline.__file__).parent / "static"), name="docs-static")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def create_app(model: str = "posekit-lsp", backend: str = "torch", max_bytes: int = DEFAULT_MAX_BYTES,
               max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 1, queue_size: int = 8, predictor=None,
               **infer) -> FastAPI:
    """The FastAPI app. ``predictor`` (a :class:`posekit.Predictor`) is built from ``model``,
    ``backend`` and the ``infer`` overrides (e.g. ``refine``, ``person_threshold``) unless given.

    Raises PosekitError for more ``workers`` than CPU cores (they would wait on each other)."""
    from posekit.predict import Predictor

    cores = os.cpu_count() or 1
    if workers > cores:
        raise PosekitError(f"--workers {workers}: more inference workers than the {cores} CPU cores would make "
                           f"them wait on each other; use at most {cores}")
    pred = predictor if predictor is not None else Predictor(model, backend=backend, threads=serve_threads(workers),
                                                             **infer)
    svc = Service(pred, workers, queue_size, max_bytes, max_pixels)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        svc.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="posekit", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Human pose estimation: 14 Leeds Sports Pose joints for each person in an image.")
    app.state.predictor, app.state.pool = pred, svc.pool
    _error_handlers(app)

    @app.middleware("http")
    async def _limit_body(request: Request, call_next):
        n = request.headers.get("content-length")
        if request.url.path == "/v1/pose" and n is not None and n.isdigit() and int(n) > max_bytes + 64 * 1024:
            return _error(413, f"upload of {int(n):,} bytes is over the {max_bytes:,}-byte limit")
        return await call_next(request)

    _info_routes(app, svc)
    _pose_route(app, svc)
    _page_routes(app)
    return app


def pose_answer(shape, poses: list, pred, seconds: float) -> dict:
    """The JSON answer of ``/v1/pose`` from the poses reported
    (:func:`posekit.inference.reported_poses`): the image size, the model, the person threshold,
    ``people`` (the people found, in the detector's order, highest detection score first, each
    with its index, score, box, box score and 14 joints; empty when nobody is there) and
    ``score``: the highest score among ``people``; with nobody found, the score of the one-person
    answer (the best candidate posed; it may reach the threshold when no person was detected)."""
    people = []
    for p in poses:
        if p.found:
            d = p.to_dict()
            people.append({k: d[k] for k in ("person", "score", "box", "box_score", "joints")})
    score = max(p["score"] for p in people) if people else round(float(max(p.score for p in poses)), 4)
    return {"model": pred.name, "width": int(shape[1]), "height": int(shape[0]), "score": score,
            "threshold": pred.threshold, "people": people, "latency_ms": round(seconds * 1e3, 2)}


def bind_socket(host: str, port: int):
    """A TCP socket bound to ``host``:``port`` (0: any free port), as uvicorn binds one. Raises
    PosekitError (one line) for a host that does not resolve or a port already in use."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise PosekitError(f"--host {host}: not an address of this machine") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise PosekitError(f"{host}:{port}: cannot listen there ({e.strerror}); "
                           "choose another --port or stop the program using it") from None
    return sock


def run(host: str = "127.0.0.1", port: int = 8000, **kw) -> None:
    """Serve :func:`create_app`'s app (``kw``) on ``host``:``port``; port 0: any free port, the one
    chosen printed in the first line."""
    import uvicorn

    app = create_app(**kw)
    sock = bind_socket(host, port)
    port = sock.getsockname()[1]
    print(f"posekit serve: http://{host}:{port}/  (API docs at /docs; model {app.state.predictor.name}; "
          "Ctrl-C to stop)", flush=True)
    with sock:
        uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info")).run(sockets=[sock])
