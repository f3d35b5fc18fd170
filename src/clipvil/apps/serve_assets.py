"""What `clipvil serve` sends besides model outputs, all held in memory from start-up: the page (package data
under `clipvil/apps/static/`), Swagger UI's files for /docs (those PyPI ``fastapi-offline`` ships: no CDN),
and sample images drawn by the synthetic world's renderer with a question each whose answer the scene knows.

No request path is ever joined to a directory: a request names a key of these dicts or gets 404.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass
from importlib import resources

from clipvil.data.synthetic.render import render
from clipvil.data.synthetic.scene import sample_scene, stream
from clipvil.data.synthetic.spec import WorldSpec

MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}
DOCS_FILES = ("swagger-ui-bundle.js", "swagger-ui.css")


@dataclass(frozen=True)
class Asset:
    """A file served from memory."""

    body: bytes
    media_type: str


def page_assets() -> dict[str, Asset]:
    """The page's files (index.html, app.js, style.css, ...) by name, read once from the package."""
    folder = resources.files("clipvil.apps") / "static"
    out = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in MEDIA_TYPES:
            out[entry.name] = Asset(entry.read_bytes(), MEDIA_TYPES[suffix])
    if "index.html" not in out:
        raise FileNotFoundError(f"{folder}: the page's index.html is missing from the clipvil package")
    return out


def docs_assets() -> dict[str, Asset]:
    """Swagger UI 5's script and style sheet as the fastapi-offline package ships them ({} when it is not
    installed: /docs then says so). Swagger UI 4 cannot read FastAPI's OpenAPI 3.1 schema."""
    try:
        folder = resources.files("fastapi_offline") / "static"
    except ModuleNotFoundError:
        return {}
    out = {}
    for name in DOCS_FILES:
        entry = folder / name
        if entry.is_file():
            out[name] = Asset(entry.read_bytes(), MEDIA_TYPES["." + name.rsplit(".", 1)[-1]])
    return out


@dataclass(frozen=True)
class Sample:
    """A synthetic image to try, with a question and the scene's own answer."""

    name: str  # e.g. "scene-0951.jpg"
    jpeg: bytes
    question: str
    answer: str  # the scene's answer to `question`
    phrase: str  # a referring expression of the same object ("the star")


def make_samples(n: int = 4, seed: int = 0, world_images: int = 1000, difficulty: float = 0.5) -> list[Sample]:
    """`n` test-split images of the synthetic world `clipvil demo` makes (same seed and size: the demo model
    never trained on them), each asked the colour of a shape it holds exactly once."""
    spec = WorldSpec(n_images=world_images, seed=seed, difficulty=difficulty)
    sizes = spec.split_sizes()
    out: list[Sample] = []
    for image_id in range(sizes["train"] + sizes["val"] + 1, world_images + 1):
        if len(out) == n:
            break
        scene = sample_scene(spec, image_id)
        counts = Counter(o.shape for o in scene.objects)
        unique = [o for o in scene.objects if counts[o.shape] == 1]
        if not unique:
            continue
        obj = unique[len(out) % len(unique)]
        buf = io.BytesIO()
        render(scene, spec.difficulty, stream(spec.seed, image_id, "render")).save(buf, "JPEG", quality=90)
        out.append(Sample(f"scene-{image_id:04d}.jpg", buf.getvalue(), f"What color is the {obj.shape}?",
                          obj.color, f"the {obj.shape}"))
    return out
