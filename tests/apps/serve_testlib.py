"""Shared by the serve tests: a tiny VQA checkpoint trained on the synthetic world, and a live uvicorn server
on a free loopback port (in a thread, stopped on exit)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def tiny_world(root: Path) -> tuple[Path, Path]:
    """(a 60-image synthetic world, a store of random RN50-shaped grids of its images, "views" preset)."""
    from clipvil.apps.extract import ExtractConfig, list_images, provenance
    from clipvil.data.synthetic import make_data
    from clipvil.encoders import build_encoder
    from clipvil.features.store import GridBatch, open_for_writing, write_part

    world = root / "world"
    make_data(world, 60, seed=3, progress=False, workers=1)
    images, store = world / "coco", root / "store"
    open_for_writing(store, provenance(ExtractConfig("RN50", images, store, preset="views"), build_encoder("RN50")))
    rng = np.random.default_rng(0)
    ids = [e.id for e in list_images(images)]
    for start in range(0, len(ids), 16):
        chunk = ids[start:start + 16]
        feats = rng.standard_normal((len(chunk), 49, 2048)).astype(np.float16)
        write_part(store, [GridBatch(chunk, feats, np.ones((len(chunk), 49), bool), (7, 7), None)], [])
    return world, store


def _train(config: str, run: Path, overrides: list[str]) -> Path:
    from clipvil.engine import load_config, train

    train(load_config(REPO / "tests/configs" / config, [f"out_dir={run}", "train.eval_at_end=false", *overrides]))
    return run / "checkpoints/last.pt"


def tiny_vqa_checkpoint(root: Path) -> tuple[Path, Path]:
    """(a tiny MCAN checkpoint trained on the random grids of `tiny_world`, the world's folder). Its answers on
    real RN50 grids are arbitrary but deterministic."""
    world, store = tiny_world(root)
    return _train("vqa_tiny.yaml", root / "vqa", [f"task.data_dir={world / 'vqa'}", f"task.features={store}"]), world


def tiny_caption_checkpoint(root: Path, world: Path, store: Path) -> Path:
    """A tiny captioner (the caption recipe test's config) on the same world and store."""
    return _train("caption_tiny.yaml", root / "caption",
                  [f"task.karpathy_file={world / 'captions/dataset_coco.json'}", f"task.features={store}"])


def tiny_grounding_checkpoint(root: Path, world: Path, store: Path) -> Path:
    """A tiny grounding head (the grounding recipe test's config) on the same world and store."""
    return _train("grounding_tiny.yaml", root / "grounding", [f"task.data_root={world}", f"task.features={store}"])


@contextmanager
def live_server(app: object, timeout_s: float = 20.0) -> Iterator[str]:
    """Serves `app` with uvicorn on 127.0.0.1 at a free port; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",  # type: ignore[arg-type]
                                           timeout_keep_alive=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)
        sock.close()
