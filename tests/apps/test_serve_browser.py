"""The page in a real browser: Debian's headless Chromium driven by Playwright uploads an image, asks a
question and waits for the answers and the Grad-CAM heatmap (against a live server on 127.0.0.1).

Needs /usr/bin/chromium (`apt-get install -y chromium`; Playwright cannot download its own browser here)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from serve_testlib import live_server, tiny_caption_checkpoint, tiny_grounding_checkpoint, tiny_vqa_checkpoint

from clipvil.apps.serve import ServeConfig, create_app
from clipvil.apps.serve_assets import make_samples
from clipvil.apps.serve_models import Checkpoints, load_models
from clipvil.encoders.images import load_image

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def drive_page(url: str, image: Path, question: str, screenshot: Path, profile: Path,
               phrase: str | None = None) -> dict[str, object]:
    """Uploads `image`, asks `question` (and grounds `phrase` when the server has a grounding model), waits for
    the answers, the heatmap, the caption and the box of the parts served, saves a screenshot; returns what
    the page shows (and any request that went elsewhere than the loopback server, any script error)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # a fresh --user-data-dir: Playwright passes the profile folder itself with a persistent context
        browser = pw.chromium.launch_persistent_context(str(profile), executable_path=str(CHROMIUM),
                                                        headless=True, args=CHROMIUM_ARGS,
                                                        viewport={"width": 1100, "height": 700})
        try:
            page = browser.new_page()
            outside: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(url) or r.url.startswith(("blob:", "data:"))
                    else outside.append(r.url))
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/")
            page.wait_for_selector("#samples button img")
            page.set_input_files("#file", str(image))
            page.fill("#question", question)
            if phrase is not None:
                page.fill("#phrase", phrase)
            page.click("#ask")
            page.wait_for_selector("#answers li", timeout=30_000)
            page.wait_for_function("() => { const h = document.getElementById('heatmap');"
                                   " return !h.hidden && h.complete && h.naturalWidth > 0; }", timeout=30_000)
            if page.is_visible("#caption-part"):
                page.wait_for_function("() => !['', '…'].includes(document.getElementById('caption')"
                                       ".textContent)", timeout=30_000)
            if phrase is not None:
                page.wait_for_selector("#boxes", state="visible", timeout=30_000)
            page.wait_for_function("() => document.getElementById('status').textContent === 'done'",
                                   timeout=30_000)
            page.screenshot(path=str(screenshot), full_page=True)
            docs = browser.new_page()  # the API docs render from the server's own copy of Swagger UI
            docs.on("request", lambda r: None if r.url.startswith((url, "data:")) else outside.append(r.url))
            docs.goto(url + "/docs")
            docs.wait_for_selector(".opblock-summary-path", timeout=30_000)
            return {"docs_paths": docs.locator(".opblock-summary-path").all_inner_texts(),
                    "answers": page.locator("#answers li strong").all_inner_texts(),
                    "heatmap_width": page.eval_on_selector("#heatmap", "h => h.naturalWidth"),
                    "heatmap_answer": page.eval_on_selector("#heatmap", "h => h.dataset.answer"),
                    "vqa_time": page.inner_text("#vqa-time"), "explain_time": page.inner_text("#explain-time"),
                    "status": page.inner_text("#status"), "caption": page.inner_text("#caption"),
                    "grounding": page.inner_text("#grounding"),
                    "outside": outside, "errors": errors}
        finally:
            browser.close()


def test_page_answers_and_draws_the_heatmap(tmp_path: Path) -> None:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    root = tmp_path / "model"
    vqa, world = tiny_vqa_checkpoint(root)
    caption = tiny_caption_checkpoint(root, world, root / "store")
    grounding = tiny_grounding_checkpoint(root, world, root / "store")
    image = min((world / "coco/val2014").glob("*.jpg"))
    models = load_models(Checkpoints(vqa=vqa, caption=caption, grounding=grounding))
    app = create_app(models, ServeConfig(), samples=make_samples(3))
    picture = load_image(image)
    want = [a for a, _ in models.vqa.answer(picture, "What color is the circle?", 5).answers]
    want_box = models.grounding.ground(picture, "the red circle").box_xywh  # type: ignore[union-attr]
    with live_server(app) as url:
        shown = drive_page(url, image, "What color is the circle?", tmp_path / "serve.png", tmp_path / "profile",
                           phrase="the red circle")
    assert shown["errors"] == [] and shown["outside"] == [], json.dumps(shown)
    assert shown["answers"] == want
    assert shown["heatmap_answer"] == want[0] and int(shown["heatmap_width"]) > 100  # type: ignore[call-overload]
    assert "ms model" in str(shown["vqa_time"]) and "ms model" in str(shown["explain_time"])
    assert shown["caption"] == models.caption.caption(picture).caption  # type: ignore[union-attr]
    assert f"[{', '.join(str(math.floor(v + 0.5)) for v in want_box)}]" in str(shown["grounding"])  # JS Math.round
    assert shown["status"] == "done"
    assert {"/api/vqa", "/api/explain", "/api/caption", "/api/ground"} <= set(shown["docs_paths"])  # type: ignore[arg-type]
    assert (tmp_path / "serve.png").stat().st_size > 10_000
