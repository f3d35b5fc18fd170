"""`clipvil serve`: the web demo — one page and a JSON API over trained checkpoints (FastAPI + uvicorn).

    clipvil serve                                   # the models `clipvil demo` trained (runs/demo/...)
    clipvil serve --vqa-checkpoint run/checkpoints/best.pt [--caption-checkpoint ...] [--grounding-checkpoint ...]

| route                 | in (multipart form)                 | out                                            |
|-----------------------|-------------------------------------|------------------------------------------------|
| `GET /`               |                                     | the page (upload or pick a sample, ask)        |
| `POST /api/vqa`       | image, question, top_k (default 5)  | {"answers": [{"answer", "score"}], "notes", ...} |
| `POST /api/explain`   | image, question, answer (optional)  | PNG: Grad-CAM of the answer over the image     |
| `POST /api/caption`   | image                               | {"caption": ...}                               |
| `POST /api/ground`    | image, phrase                       | {"box": [x, y, w, h] in image pixels, ...}     |
| `GET /api/info`       |                                     | served parts, limits, samples                  |
| `GET /healthz`        |                                     | {"status": "ok", ...}                          |
| `GET /docs`           |                                     | OpenAPI docs (Swagger UI served locally)       |

A part whose model is not served answers 404. Limits: upload size (413), pixels (422: decompression bombs),
image formats (415), question length (422), busy workers and full queue (503), per-request time (504).
Uploads are decoded in memory; no request path or name reaches the file system. Binds to 127.0.0.1 unless
--host says otherwise.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel

import clipvil
from clipvil.apps.serve_assets import Asset, Sample, docs_assets, make_samples, page_assets
from clipvil.apps.serve_http import BodyLimit, InferencePool, PoolFull, PoolTimeout
from clipvil.apps.serve_models import (
    Checkpoints,
    ExplainError,
    ServedModels,
    UnsupportedImageError,
    decode_upload,
    load_models,
)
from clipvil.common.distributed import pick_device
from clipvil.encoders.images import ImageDecodeError

log = logging.getLogger(__name__)
T = TypeVar("T")
DEMO_CHECKPOINTS = {"vqa": "run", "caption": "caption", "grounding": "grounding"}  # runs under --demo-dir
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


@dataclass
class ServeConfig:
    """What `clipvil serve` serves and its limits."""

    # the parts' checkpoint files (see resolve_checkpoints)
    checkpoints: Checkpoints = field(default_factory=Checkpoints)
    weights: tuple[Path, ...] = ()  # encoder weight files, matched to each checkpoint's provenance by sha256
    host: str = "127.0.0.1"  # bind address; anything but loopback is reachable by others
    port: int = 8000  # TCP port
    device: str = "auto"  # auto (CUDA when available), cpu, cuda or cuda:N
    workers: int = 1  # inference threads
    queue: int = 8  # requests that may wait for a worker; one more gets 503
    timeout_s: float = 30.0  # per request: waiting + running (504 after it), and reading the body (408)
    max_upload_mb: float = 10.0  # largest image file accepted (413 past it)
    max_pixels: int = 40_000_000  # largest width x height decoded (422 past it; read from the header first)
    max_question_chars: int = 300  # longest question or phrase (422 past it)
    max_top_k: int = 20  # most answers one request may ask for
    max_connections: int = 64  # open connections uvicorn accepts (503 past it)
    samples: int = 4  # synthetic sample images offered on the page

    @property
    def max_upload_bytes(self) -> int:
        """The upload limit in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)


def resolve_checkpoints(vqa: Path | None, caption: Path | None, grounding: Path | None,
                        demo_dir: Path = Path("runs/demo")) -> Checkpoints:
    """The given checkpoints; with none given, those of the demo's runs that exist (best.pt, else last.pt)."""
    if vqa or caption or grounding:
        return Checkpoints(vqa, caption, grounding)
    found: dict[str, Path] = {}
    for kind, run in DEMO_CHECKPOINTS.items():
        for name in ("best.pt", "last.pt"):
            path = demo_dir / run / "checkpoints" / name
            if path.is_file():
                found[kind] = path
                break
    if not found:
        raise FileNotFoundError(f"no model to serve: {demo_dir / 'run/checkpoints/best.pt'} does not exist (run "
                                "`clipvil demo` first) and no --vqa/--caption/--grounding-checkpoint was given")
    return Checkpoints(**found)


class Answer(BaseModel):
    answer: str
    score: float  # probability


class VqaResponse(BaseModel):
    answers: list[Answer]  # best first
    notes: list[str]  # e.g. unknown words
    elapsed_ms: float  # inference time (decode + encode + head)
    queued_ms: float  # time spent waiting for a worker


class CaptionResponse(BaseModel):
    caption: str
    score: float  # decoding score (summed log-probabilities, length-penalised for beams)
    elapsed_ms: float
    queued_ms: float


class GroundingResponse(BaseModel):
    box: list[float]  # [x, y, w, h] in pixels of the uploaded image
    score: float  # probability of the most likely grid cell
    notes: list[str]  # e.g. unknown words
    image_size: list[int]  # [width, height]
    elapsed_ms: float
    queued_ms: float


_ERRORS: tuple[tuple[type[Exception], int], ...] = (
    (PoolFull, 503), (PoolTimeout, 504), (UnsupportedImageError, 415), (ImageDecodeError, 422),
    (ExplainError, 422), (ValueError, 422),
)
_DOCUMENTED = {413: {"description": "upload too large"}, 415: {"description": "not an accepted image"},
               422: {"description": "bad question, image too large, corrupt image"},
               503: {"description": "busy: workers and queue full"}, 504: {"description": "timed out"}}


_IMAGE = File(..., description="an image file: JPEG, PNG, WebP, GIF or BMP")


def _asset(asset: Asset, **headers: str) -> Response:
    return Response(asset.body, media_type=asset.media_type, headers=headers or None)


def create_app(models: ServedModels, cfg: ServeConfig, samples: list[Sample] | None = None) -> FastAPI:
    """The FastAPI app over loaded models (tests build one around a TestClient; `run_server` serves it)."""
    pool = InferencePool(cfg.workers, cfg.queue)

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        yield
        pool.shutdown()

    app = FastAPI(title="clipvil serve", version=clipvil.__version__, docs_url=None, redoc_url=None,
                  lifespan=lifespan, description="CLIP-ViL models: VQA answers, Grad-CAM maps, captions, boxes.")
    app.state.pool, app.state.models, app.state.config = pool, models, cfg
    app.add_middleware(BodyLimit, max_bytes=cfg.max_upload_bytes + 64 * 1024, timeout_s=cfg.timeout_s)
    _add_api(app, models, cfg, pool)
    _add_pages(app, models, cfg, pool, make_samples(cfg.samples) if samples is None else samples)
    return app


async def _run(pool: InferencePool, cfg: ServeConfig, job: Callable[[], T]) -> tuple[T, float, float]:
    """(job() run on the pool, its milliseconds of work, its milliseconds waiting); errors -> HTTP statuses."""
    t0 = time.perf_counter()
    timing: dict[str, float] = {}

    def timed() -> T:
        start = time.perf_counter()
        timing["queued"] = (start - t0) * 1000
        try:
            return job()
        finally:
            timing["elapsed"] = (time.perf_counter() - start) * 1000

    try:
        result = await pool.run(timed, timeout=cfg.timeout_s)
    except Exception as err:
        for kind, status in _ERRORS:
            if isinstance(err, kind):
                headers = {"Retry-After": "1"} if status == 503 else None
                raise HTTPException(status, str(err), headers=headers) from None
        raise
    return result, round(timing["elapsed"], 2), round(timing["queued"], 2)


async def _image_bytes(image: UploadFile, cfg: ServeConfig) -> bytes:
    """The uploaded file's bytes: 415 when declared as something other than an image, 413 past the limit."""
    declared = (image.content_type or "").split(";")[0].strip().lower()
    if declared and not declared.startswith("image/") and declared != "application/octet-stream":
        raise HTTPException(415, f"not an image upload (Content-Type {declared})")
    data = await image.read(cfg.max_upload_bytes + 1)
    if len(data) > cfg.max_upload_bytes:
        raise HTTPException(413, f"image too large (limit {cfg.max_upload_bytes} bytes)")
    return data


def _need(part: T | None, kind: str) -> T:
    if part is None:
        raise HTTPException(404, f"no {kind} model is served (start clipvil serve with --{kind}-checkpoint)")
    return part


def _add_api(app: FastAPI, models: ServedModels, cfg: ServeConfig, pool: InferencePool) -> None:
    """The model routes: /api/vqa, /api/explain, /api/caption, /api/ground."""
    chars = cfg.max_question_chars

    @app.post("/api/vqa", response_model=VqaResponse, responses=_DOCUMENTED)  # type: ignore[arg-type]
    async def vqa(image: UploadFile = _IMAGE, question: str = Form(..., min_length=1, max_length=chars),
                  top_k: int = Form(5, ge=1, le=cfg.max_top_k)) -> VqaResponse:
        """The top answers to a question about an image, with their probabilities."""
        part, data = _need(models.vqa, "vqa"), await _image_bytes(image, cfg)
        out, ms, queued = await _run(pool, cfg, lambda: part.answer(decode_upload(data, cfg.max_pixels), question,
                                                                    top_k))
        return VqaResponse(answers=[Answer(answer=a, score=p) for a, p in out.answers], notes=out.notes,
                           elapsed_ms=ms, queued_ms=queued)

    @app.post("/api/explain", response_class=Response, responses={200: {"content": {"image/png": {}}},
                                                                   **_DOCUMENTED})  # type: ignore[dict-item]
    async def explain(image: UploadFile = _IMAGE, question: str = Form(..., min_length=1, max_length=chars),
                      answer: str | None = Form(None, max_length=chars)) -> Response:
        """A Grad-CAM map of an answer (default: the top one) over the part of the image the model saw."""
        part, data = _need(models.vqa, "vqa"), await _image_bytes(image, cfg)
        out, ms, queued = await _run(pool, cfg, lambda: part.explain(decode_upload(data, cfg.max_pixels),
                                                                     question, answer))
        return Response(out.png, media_type="image/png",
                        headers={"X-Answer": quote(out.answer), "X-Score": f"{out.score:.6f}",
                                 "X-Elapsed-Ms": f"{ms:.2f}", "X-Queued-Ms": f"{queued:.2f}"})

    @app.post("/api/caption", response_model=CaptionResponse, responses=_DOCUMENTED)  # type: ignore[arg-type]
    async def caption(image: UploadFile = _IMAGE) -> CaptionResponse:
        """A caption of the image."""
        part, data = _need(models.caption, "caption"), await _image_bytes(image, cfg)
        out, ms, queued = await _run(pool, cfg, lambda: part.caption(decode_upload(data, cfg.max_pixels)))
        return CaptionResponse(caption=out.caption, score=out.score, elapsed_ms=ms, queued_ms=queued)

    @app.post("/api/ground", response_model=GroundingResponse, responses=_DOCUMENTED)  # type: ignore[arg-type]
    async def ground(image: UploadFile = _IMAGE,
                     phrase: str = Form(..., min_length=1, max_length=chars)) -> GroundingResponse:
        """The box of a referring expression in the image."""
        part, data = _need(models.grounding, "grounding"), await _image_bytes(image, cfg)

        def job() -> tuple[Any, tuple[int, int]]:
            img = decode_upload(data, cfg.max_pixels)
            return part.ground(img, phrase), img.size

        (out, size), ms, queued = await _run(pool, cfg, job)
        return GroundingResponse(box=list(out.box_xywh), score=out.cell_prob, notes=out.notes,
                                 image_size=list(size), elapsed_ms=ms, queued_ms=queued)


def _add_pages(app: FastAPI, models: ServedModels, cfg: ServeConfig, pool: InferencePool,
               samples: list[Sample]) -> None:
    """Everything else, from memory: /healthz, /api/info, samples, the page, /docs. A request path only ever
    names a key of an in-memory dict (404 otherwise)."""
    page, docs, shown = page_assets(), docs_assets(), {s.name: s for s in samples}

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness, the served parts and the pool's load."""
        return {"status": "ok", "parts": models.parts(), "busy": pool.taken,
                "capacity": pool.workers + pool.queue}

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        """What the page needs: the served parts, the limits and the samples."""
        return {"version": clipvil.__version__, "parts": models.parts(),
                "limits": {"max_upload_bytes": cfg.max_upload_bytes, "max_pixels": cfg.max_pixels,
                           "max_question_chars": cfg.max_question_chars, "max_top_k": cfg.max_top_k},
                "samples": [{"name": s.name, "url": f"/api/samples/{s.name}", "question": s.question,
                             "answer": s.answer, "phrase": s.phrase} for s in shown.values()]}

    @app.get("/api/samples/{name}", response_class=Response)
    async def sample(name: str) -> Response:
        """A sample image (JPEG)."""
        if name not in shown:
            raise HTTPException(404, "no such sample")
        return Response(shown[name].jpeg, media_type="image/jpeg")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> Response:
        return _asset(page["index.html"], **{"Content-Security-Policy": PAGE_CSP})

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in page:
            raise HTTPException(404, "not found")
        return _asset(page[name])

    @app.get("/docs-assets/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        if name not in docs:
            raise HTTPException(404, "not found")
        return _asset(docs[name])

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> Response:
        if len(docs) < 2:
            return JSONResponse({"detail": "install fastapi-offline for /docs; the schema is at "
                                 "/openapi.json"}, 404)
        return get_swagger_ui_html(openapi_url="/openapi.json", title="clipvil serve — API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="data:,")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_server(cfg: ServeConfig) -> None:
    """Loads the models and serves until interrupted."""
    import uvicorn

    models = load_models(cfg.checkpoints, cfg.weights, pick_device(cfg.device))
    app = create_app(models, cfg)
    served = ", ".join(f"{k} ({getattr(models, k).checkpoint})" for k, on in models.parts().items() if on)
    if not is_loopback(cfg.host):
        log.warning("serving on %s: anyone who can reach this address can use the models", cfg.host)
    print(f"clipvil serve: http://{cfg.host}:{cfg.port}/ — {served}; API docs at /docs", flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info", timeout_keep_alive=5,
                limit_concurrency=cfg.max_connections)
