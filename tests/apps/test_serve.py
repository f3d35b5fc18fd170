"""`clipvil serve`: every status of the API, answers equal to `clipvil predict`'s, and a bounded load test on
127.0.0.1 (concurrent clients, no errors, no mixed results)."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from serve_testlib import live_server, tiny_caption_checkpoint, tiny_grounding_checkpoint, tiny_vqa_checkpoint

from clipvil.apps.ground import predict_box
from clipvil.apps.predict import predict_caption, predict_vqa
from clipvil.apps.serve import ServeConfig, create_app, resolve_checkpoints
from clipvil.apps.serve_assets import make_samples
from clipvil.apps.serve_models import Checkpoints, ServedModels, load_models, seen_region, view_transform
from clipvil.cli import build_parser, main
from clipvil.encoders import get_preset

QUESTIONS = ("What color is the circle?", "How many shapes are there?", "Is there a red square?")
PHRASE = "the red circle"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Tiny VQA, caption and grounding checkpoints on one world, the three loaded together, and the expected
    outputs as `predict_vqa` / `predict_caption` / `predict_box` give them from the checkpoint files (one image
    a PNG, so both decoders are covered)."""
    root = tmp_path_factory.mktemp("serve")
    vqa, world = tiny_vqa_checkpoint(root)
    caption = tiny_caption_checkpoint(root, world, root / "store")
    grounding = tiny_grounding_checkpoint(root, world, root / "store")
    images = sorted((world / "coco/val2014").glob("*.jpg"))[:3]
    png = root / "as.png"
    Image.open(images[2]).save(png)
    pairs = [(images[0], QUESTIONS[0]), (images[1], QUESTIONS[1]), (png, QUESTIONS[2])]
    expected = [predict_vqa(vqa, img, q, k=3).answers for img, q in pairs]
    models = load_models(Checkpoints(vqa=vqa, caption=caption, grounding=grounding))
    return {"checkpoint": vqa, "models": models, "pairs": pairs, "expected": expected,
            "caption": predict_caption(caption, images[0]), "box": predict_box(grounding, png, PHRASE),
            "samples": make_samples(2)}


def _app(served: dict[str, Any], models: ServedModels | None = None, **limits: Any):  # -> FastAPI
    return create_app(models or served["models"], ServeConfig(**limits), samples=served["samples"])


def _image(path: Path) -> dict[str, Any]:
    return {"image": (path.name, path.read_bytes(), "image/png" if path.suffix == ".png" else "image/jpeg")}


def _pairs(answers: list[dict[str, Any]]) -> list[tuple[str, float]]:
    return [(a["answer"], a["score"]) for a in answers]


def _assert_same(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> None:
    assert [a for a, _ in got] == [a for a, _ in want]
    assert [p for _, p in got] == pytest.approx([p for _, p in want], abs=1e-6)


def test_vqa_answers_equal_clipvil_predict(served: dict[str, Any]) -> None:
    with TestClient(_app(served)) as client:
        for (image, question), want in zip(served["pairs"], served["expected"], strict=True):
            r = client.post("/api/vqa", files=_image(image), data={"question": question, "top_k": "3"})
            assert r.status_code == 200, r.text
            body = r.json()
            _assert_same(_pairs(body["answers"]), want)
            assert body["elapsed_ms"] > 0 and body["notes"] == []


def test_explain_gives_a_png_of_the_asked_answer(served: dict[str, Any]) -> None:
    (image, question), want = served["pairs"][0], served["expected"][0]
    with TestClient(_app(served)) as client:
        r = client.post("/api/explain", files=_image(image), data={"question": question})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(r.content)).format == "PNG"
        assert r.headers["x-answer"] == want[0][0]
        assert float(r.headers["x-score"]) == pytest.approx(want[0][1], abs=1e-5)
        second = want[1][0]
        r = client.post("/api/explain", files=_image(image), data={"question": question, "answer": second})
        assert r.status_code == 200 and r.headers["x-answer"] == second
        r = client.post("/api/explain", files=_image(image), data={"question": question, "answer": "zebra42"})
        assert r.status_code == 422 and "zebra42" in r.json()["detail"]


def test_caption_and_box_equal_clipvil_predict(served: dict[str, Any]) -> None:
    models = served["models"]
    assert models.caption.makers[0].tower is models.vqa.makers[0].tower  # one RN50 for the three parts
    with TestClient(_app(served)) as client:
        r = client.post("/api/caption", files=_image(served["pairs"][0][0]))
        assert r.status_code == 200, r.text
        want = served["caption"]
        assert r.json()["caption"] == want.caption and r.json()["score"] == pytest.approx(want.score, abs=1e-5)
        png = served["pairs"][2][0]
        r = client.post("/api/ground", files=_image(png), data={"phrase": PHRASE})
        assert r.status_code == 200, r.text
        body, want_box = r.json(), served["box"]
        assert body["box"] == pytest.approx(list(want_box.box_xywh), abs=1e-3)
        assert body["score"] == pytest.approx(want_box.cell_prob, abs=1e-6)
        assert body["image_size"] == list(Image.open(png).size)
        r = client.post("/api/ground", files=_image(png), data={"phrase": "xyzzy plugh"})
        assert r.status_code == 422 and "vocabulary" in r.json()["detail"]


def test_health_docs_and_schema_are_local(served: dict[str, Any]) -> None:
    with TestClient(_app(served)) as client:
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and health["parts"] == {"vqa": True, "caption": True,
                                                                 "grounding": True}
        docs = client.get("/docs")
        assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
        assert "cdn." not in docs.text and "https://" not in docs.text
        js = client.get("/docs-assets/swagger-ui-bundle.js")
        assert js.status_code == 200 and len(js.content) > 100_000
        paths = client.get("/openapi.json").json()["paths"]
        assert {"/api/vqa", "/api/caption", "/api/explain", "/api/ground", "/healthz"} <= set(paths)


def test_page_and_samples_come_from_memory_only(served: dict[str, Any]) -> None:
    with TestClient(_app(served)) as client:
        page = client.get("/")
        assert page.status_code == 200 and "/static/app.js" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/static/app.js").status_code == 200
        assert page.headers["x-content-type-options"] == "nosniff"
        for probe in ("/static/../serve.py", "/static/..%2Fserve.py", "/static/%2e%2e%2f%2e%2e%2fcli.py",
                      "/api/samples/..%2F..%2F..%2Fetc%2Fpasswd", "/static/", "/docs-assets/index.html"):
            assert client.get(probe).status_code == 404, probe
        samples = client.get("/api/info").json()["samples"]
        assert len(samples) == 2
        for s in samples:
            img = Image.open(io.BytesIO(client.get(s["url"]).content))
            assert img.format == "JPEG" and img.size == (224, 224)
            assert s["question"].startswith("What color is the ") and s["answer"]


def _noise_png(side: int) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_uploads_over_the_limit_get_413(served: dict[str, Any]) -> None:
    q = {"question": QUESTIONS[0]}
    with TestClient(_app(served, max_upload_mb=0.01)) as client:  # 10 KiB image; body limit 10 + 64 KiB
        big = _noise_png(160)  # ~77 KB: past the body limit (told by Content-Length)
        assert len(big) > 74 * 1024
        assert client.post("/api/vqa", files={"image": ("a.png", big, "image/png")}, data=q).status_code == 413
        medium = _noise_png(64)  # ~12 KB: under the body limit, over the image limit
        assert 10 * 1024 < len(medium) < 64 * 1024
        r = client.post("/api/vqa", files={"image": ("a.png", medium, "image/png")}, data=q)
        assert r.status_code == 413 and "image too large" in r.json()["detail"]

        def chunks():  # no Content-Length: counted while streaming
            for _ in range(100):
                yield b"x" * 1024

        r = client.post("/api/vqa", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
        assert r.status_code == 413


def test_decompression_bombs_and_corrupt_images_get_422(served: dict[str, Any]) -> None:
    bomb = io.BytesIO()
    Image.new("1", (8000, 8000)).save(bomb, "PNG")  # 64 megapixels in a few kB
    assert len(bomb.getvalue()) < 100_000
    good = served["pairs"][0][0].read_bytes()
    q = {"question": QUESTIONS[0]}
    with TestClient(_app(served)) as client:
        r = client.post("/api/vqa", files={"image": ("b.png", bomb.getvalue(), "image/png")}, data=q)
        assert r.status_code == 422 and "64000000 pixels" in r.json()["detail"]
        r = client.post("/api/vqa", files={"image": ("t.jpg", good[: len(good) // 2], "image/jpeg")}, data=q)
        assert r.status_code == 422 and "truncated" in r.json()["detail"]
    with TestClient(_app(served, max_pixels=224 * 224 - 1)) as client:
        r = client.post("/api/vqa", files={"image": ("g.jpg", good, "image/jpeg")}, data=q)
        assert r.status_code == 422 and "too large" in r.json()["detail"]


def test_only_images_are_accepted_415(served: dict[str, Any]) -> None:
    good = served["pairs"][0][0].read_bytes()
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"  # PIL knows EPS; we refuse it
    q = {"question": QUESTIONS[0]}
    with TestClient(_app(served)) as client:
        for name, data, kind in (("x.png", b"hello, not an image", "image/png"), ("x.jpg", good, "text/plain"),
                                 ("x.eps", eps, "application/octet-stream"), ("e.png", b"", "image/png")):
            r = client.post("/api/vqa", files={"image": (name, data, kind)}, data=q)
            assert r.status_code == 415, (name, r.text)


def test_bad_questions_and_fields_get_422(served: dict[str, Any]) -> None:
    image = served["pairs"][0][0]
    with TestClient(_app(served, max_question_chars=40)) as client:
        for fields in ({"question": ""}, {"question": "what " * 10}, {"question": "xyzzy plugh?"},
                       {"question": "   "}, {"question": QUESTIONS[0], "top_k": "0"},
                       {"question": QUESTIONS[0], "top_k": "21"}):
            r = client.post("/api/vqa", files=_image(image), data=fields)
            assert r.status_code == 422, (fields, r.text)
        assert client.post("/api/vqa", data={"question": QUESTIONS[0]}).status_code == 422  # no image


def test_parts_not_served_are_404(served: dict[str, Any]) -> None:
    image = served["pairs"][0][0]
    with TestClient(_app(served, ServedModels(vqa=served["models"].vqa))) as client:
        assert client.get("/api/info").json()["parts"] == {"vqa": True, "caption": False, "grounding": False}
        r = client.post("/api/caption", files=_image(image))
        assert r.status_code == 404 and "--caption-checkpoint" in r.json()["detail"]
        r = client.post("/api/ground", files=_image(image), data={"phrase": "the red circle"})
        assert r.status_code == 404


def test_full_queue_gets_503_and_slow_requests_504(served: dict[str, Any]) -> None:
    image, question = served["pairs"][0]
    release = threading.Event()
    app = _app(served, workers=1, queue=0)
    with TestClient(app) as client:
        app.state.pool.submit(release.wait, 10)  # the only worker is busy, no room to wait
        r = client.post("/api/vqa", files=_image(image), data={"question": question})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        release.set()
        _wait_idle(app)
        assert client.post("/api/vqa", files=_image(image), data={"question": question}).status_code == 200
    release.clear()
    app = _app(served, workers=1, queue=1, timeout_s=0.3)
    with TestClient(app) as client:
        app.state.pool.submit(release.wait, 10)
        t0 = time.perf_counter()
        r = client.post("/api/vqa", files=_image(image), data={"question": question})
        assert r.status_code == 504 and time.perf_counter() - t0 < 5
        release.set()
        _wait_idle(app)


def _wait_idle(app: Any) -> None:
    deadline = time.monotonic() + 10
    while app.state.pool.taken and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.state.pool.taken == 0


def test_concurrent_clients_on_loopback_get_their_own_answers(served: dict[str, Any]) -> None:
    """4 clients x 6 requests over the 3 pairs (each client starts at another pair) and a fifth asking for
    Grad-CAM maps, 2 workers: every reply is 200 and equals predict's answers for its own image and question."""
    pairs, expected = served["pairs"], served["expected"]
    assert len({want[0][1] for want in expected}) == len(expected)  # the pairs' answers tell them apart
    bodies = [(p.read_bytes(), "image/png" if p.suffix == ".png" else "image/jpeg", q) for p, q in pairs]
    n_clients, n_requests = 4, 6

    def client_run(c: int) -> list[tuple[int, int, list[tuple[str, float]]]]:
        out = []
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in range(n_requests):
                k = (c + i) % len(bodies)
                data, kind, question = bodies[k]
                r = http.post("/api/vqa", files={"image": ("i", data, kind)}, data={"question": question,
                                                                                      "top_k": "3"})
                out.append((k, r.status_code, _pairs(r.json()["answers"]) if r.status_code == 200 else []))
        return out

    def explain_run() -> list[str]:  # Grad-CAM hooks a tower at the same time: it must not touch the others
        with httpx.Client(base_url=url, timeout=60) as http:
            data, kind, question = bodies[0]
            return [http.post("/api/explain", files={"image": ("i", data, kind)},
                              data={"question": question}).headers.get("x-answer", "") for _ in range(2)]

    app = _app(served, workers=2, queue=8)
    with live_server(app) as url, ThreadPoolExecutor(n_clients + 1) as clients:
        explained = clients.submit(explain_run)
        results = [row for rows in clients.map(client_run, range(n_clients)) for row in rows]
        assert explained.result() == [expected[0][0][0]] * 2
        assert httpx.get(f"{url}/healthz").json()["busy"] == 0
    assert len(results) == n_clients * n_requests
    for k, status, got in results:
        assert status == 200
        _assert_same(got, expected[k])


def test_view_transform_by_hand() -> None:
    views = get_preset("views")  # shorter side to 224, centre crop 224 x 224
    # 300 x 200 image: scale 1.12 -> 336 x 224, crop from x = 56: the model sees x 50..250 of the image
    assert view_transform(views, (300, 200), (224, 224)) == pytest.approx((56.0, 0.0, 1.12, 1.12))
    assert seen_region(views, (300, 200), (224, 224), (224, 224)) == (50, 0, 250, 200)
    # a 600 x 1000 "vqa" input makes an 18 x 31 grid at stride 32: the map covers 576 x 992 of those pixels,
    # i.e. rows 0..576 * 400/600 = 384 and columns 0..992 * 500/1000 = 496 of a 500 x 400 image
    assert seen_region(get_preset("vqa"), (500, 400), (600, 1000), (576, 992)) == (0, 0, 496, 384)


def test_checkpoints_default_to_the_demo_and_errors_are_one_line(tmp_path: Path, served: dict[str, Any],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(FileNotFoundError, match="clipvil demo"):
        resolve_checkpoints(None, None, None, tmp_path)
    best = tmp_path / "run/checkpoints/best.pt"
    best.parent.mkdir(parents=True)
    best.write_bytes(b"")
    assert resolve_checkpoints(None, None, None, tmp_path) == Checkpoints(vqa=best)
    other = tmp_path / "other.pt"
    assert resolve_checkpoints(None, other, None, tmp_path) == Checkpoints(caption=other)
    assert main(["serve", "--demo-dir", str(tmp_path / "nothing")]) == 2
    assert "clipvil demo" in capsys.readouterr().err
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.vqa_checkpoint) == ("127.0.0.1", 8000, None)
    assert ServeConfig().host == "127.0.0.1"
    with pytest.raises(ValueError, match="not a 'caption' one"):
        load_models(Checkpoints(caption=served["checkpoint"]))
