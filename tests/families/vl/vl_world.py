"""A tiny world for the CLIP-ViL_p task tests, written in the real formats: JPEG images of two aspect ratios
(landscape 90×60 and portrait 60×90), LXMERT pre-training JSON with captions and labelled questions, the
LXMERT answer table, and a tiny-config writer (clipvil-rn-tiny tower, one MiniLM layer, 64×96 padding)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

TINY = Path(__file__).resolve().parents[2] / "configs"

ANSWERS = ["red", "blue", "two", "yes", "no", "circle"]  # all_ans.json ("two" → "2" in LXMERT's conversion)
COLORS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}


def _image(path: Path, size: tuple[int, int], color: tuple[int, int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    w, h = size
    pixels = np.full((h, w, 3), 128, dtype=np.uint8)
    pixels[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = color
    pixels = np.clip(pixels.astype(int) + rng.integers(-20, 20, pixels.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)


def write_world(root: Path, n_images: int = 12, portrait_every: int = 3) -> Path:
    """Images COCO_train2014_<id> (ids 1..n) and COCO_val2014_<id> (4 more), LXMERT files, and a Karpathy
    dataset_coco.json whose test split is the 4 val images with their 2 captions; returns root."""
    entries: dict[str, list[dict[str, Any]]] = {"train": [], "val": []}
    ids = {"train": range(1, n_images + 1), "val": range(n_images + 1, n_images + 5)}
    for split, folder in (("train", "train2014"), ("val", "val2014")):
        for i in ids[split]:
            name = f"COCO_{folder}_{i:012d}"
            color = list(COLORS)[i % 3]
            size = (60, 90) if i % portrait_every == 0 else (90, 60)  # (width, height)
            _image(root / "images" / folder / f"{name}.jpg", size, COLORS[color], i)
            entries[split].append({
                "img_id": name,
                "sentf": {"mscoco": [f"a {color} square on a grey background", f"the square is {color}"],
                          "vqa": [f"what color is the square in image {i}?", "is there a square?"]},
                "labelf": {"vqa": [{color: 1.0}, {"yes": 1.0, "no": 0.3}]},
            })
    karpathy = [{"cocoid": e["img_id"] and int(e["img_id"][-12:]), "filepath": "val2014",
                 "filename": e["img_id"] + ".jpg", "split": "test",
                 "sentences": [{"raw": f"{c} {n} {e['img_id'][-2:]}", "tokens": f"{c} {n}".split()}  # distinct
                               for n, c in zip(("left", "right"), e["sentf"]["mscoco"])]} for e in entries["val"]]
    (root / "captions").mkdir(parents=True, exist_ok=True)
    (root / "captions/dataset_coco.json").write_text(json.dumps({"images": karpathy, "dataset": "coco"}))
    lx = root / "lxmert"
    lx.mkdir(parents=True, exist_ok=True)
    (lx / "train.json").write_text(json.dumps(entries["train"]))
    (lx / "val.json").write_text(json.dumps(entries["val"]))
    (lx / "all_ans.json").write_text(json.dumps([{"ans": a, "dsets": ["vqa"]} for a in ANSWERS]))
    return root


def tiny_config(name: str) -> dict[str, Any]:
    """tests/configs/vl_<name>_tiny.yaml as a dict."""
    return yaml.safe_load((TINY / f"vl_{name}_tiny.yaml").read_text())


def pretrain_config(world: Path, out: Path, **train: Any) -> dict[str, Any]:
    """The tiny vl_pretrain recipe (a dict for `config_from_dict`) on `world`: MLM + ITM, batch 8, SGD trunk;
    `train` entries override its train section."""
    data = tiny_config("pretrain")
    data["task"].update(data_dir=str(world / "lxmert"), image_root=str(world / "images"))
    data["train"].update(train)
    data["out_dir"] = str(out)
    return data
