"""`clipvil probe`: what a tower's grids know — linear probes of the scene attributes from a feature store.

For each store (one tower's grids of a synthetic world made by `make-data`), a ridge-regression probe reads the
whole flattened grid [N*C] (standardised with train statistics) and predicts, per image:

- shape: which of the 6 shapes are present (multi-label; mean average precision over the shapes),
- colour: which of the 8 colours are present (multi-label; mean average precision),
- count: how many objects (2..6; accuracy, %),
- position: which cells of a 3x3 grid hold an object's centre (multi-label; mean average precision).

A linear probe is the standard reading of representation quality (CLIP's own paper, Table 10): a tower whose
grids separate these attributes linearly hands the VQA head what "what colour", "how many" and "is there"
ask about. The probe is fitted in its dual (kernel) form, so its cost depends on the number of images, not the
grid size; the ridge strength is chosen on the world's val split and the score reported on its test split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipvil.data.synthetic import layout
from clipvil.data.synthetic.scene import COLORS, SHAPES
from clipvil.data.synthetic.spec import COCO_SPLIT
from clipvil.families.clip.classify import average_precision
from clipvil.features.store import FeatureStore

ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "count", "position")
MULTI_LABEL = ("shape", "colour", "position")
COUNTS = tuple(range(2, 7))
RIDGE_GRID = (1e-2, 1e-1, 1.0, 10.0, 100.0)  # multiples of the mean kernel diagonal


@dataclass(frozen=True)
class ProbeData:
    """One split's grids and targets."""

    x: np.ndarray  # [n, N*C] float64 flattened grids
    targets: dict[str, np.ndarray]  # shape/colour/position: [n, K] 0/1; count: [n] class index


def scene_targets(scene: dict[str, Any]) -> dict[str, Any]:
    """The probe's targets of one scene record (scenes/scenes_<split>.json)."""
    objs = scene["objects"]
    shapes = np.array([float(any(o["shape"] == s for o in objs)) for s in SHAPES])  # [6]
    colours = np.array([float(any(o["color"] == c for o in objs)) for c in COLORS])  # [8]
    cells = np.zeros(9)  # [9]
    for o in objs:
        cells[3 * min(2, int(3 * o["y"] / scene["height"])) + min(2, int(3 * o["x"] / scene["width"]))] = 1.0
    return {"shape": shapes, "colour": colours, "count": COUNTS.index(min(max(len(objs), 2), 6)),
            "position": cells}


def load_split(world: Path, store: FeatureStore, split: str) -> ProbeData:
    """The grids and targets of one world split (errors name the store and the missing image)."""
    scenes = json.loads((world / layout.scenes_file(split)).read_text())["scenes"]
    keys = [f"{COCO_SPLIT[split]}/{layout.coco_name(split, int(s['image_id']))}" for s in scenes]
    missing = [k for k in keys if k not in store]
    if missing:
        raise KeyError(f"{store.root}: no features for {missing[0]} ({len(missing)} of {split} missing); extract "
                       f"{world / 'coco'} first")
    grids = store.grids(keys)
    x = (grids.feats * grids.mask[..., None]).flatten(1).double().numpy()  # [n, N*C]
    rows = [scene_targets(s) for s in scenes]
    targets = {a: np.stack([r[a] for r in rows]) if a in MULTI_LABEL else np.array([r[a] for r in rows])
               for a in ATTRIBUTES}
    return ProbeData(x, targets)


def _one_hot(y: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((len(y), k))  # [n, k]
    out[np.arange(len(y)), y] = 1.0
    return out


def _score(attr: str, pred: np.ndarray, target: np.ndarray) -> float:
    if attr in MULTI_LABEL:
        return float(np.nanmean([average_precision(pred[:, k], target[:, k]) for k in range(target.shape[1])]))
    return 100.0 * float((pred.argmax(1) == target).mean())


def probe(train: ProbeData, val: ProbeData, test: ProbeData) -> dict[str, float]:
    """Test-split scores of the ridge probes (strength chosen on val), one per attribute."""
    mean, std = train.x.mean(0), train.x.std(0) + 1e-6  # [D]
    xs = [(d.x - mean) / std for d in (train, val, test)]
    k_train = torch.from_numpy(xs[0] @ xs[0].T)  # [n, n]
    k_val, k_test = xs[1] @ xs[0].T, xs[2] @ xs[0].T  # [n_val, n], [n_test, n]
    scale = float(np.mean(np.diag(k_train.numpy())))
    out: dict[str, float] = {}
    for attr in ATTRIBUTES:
        y = train.targets[attr]
        y = y if y.ndim == 2 else _one_hot(y, len(COUNTS))  # [n, K]
        y = y - y.mean(0)
        best: tuple[float, float] | None = None
        for ridge in RIDGE_GRID:
            system = k_train + ridge * scale * torch.eye(len(y), dtype=torch.float64)  # [n, n]
            alpha = torch.linalg.solve(system, torch.from_numpy(y)).numpy()  # [n, K]
            val_score = _score(attr, k_val @ alpha, val.targets[attr])
            if best is None or val_score > best[0]:
                best = (val_score, _score(attr, k_test @ alpha, test.targets[attr]))
        assert best is not None
        out[attr] = round(best[1], 2)
    return out


def probe_stores(world: Path, stores: dict[str, Path]) -> dict[str, dict[str, float]]:
    """{name: {attribute: test score}} for each named store of `world`."""
    result = {}
    for name, root in stores.items():
        store = FeatureStore(root)
        try:
            result[name] = probe(*(load_split(world, store, s) for s in ("train", "val", "test")))
        finally:
            store.close()
    return result


def format_probe_table(result: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per tower, one column per attribute (mAP; count: accuracy)."""
    head = f"{'tower':<22}" + "".join(f"{a:>10}" for a in ATTRIBUTES)
    lines = [head] + [f"{name:<22}" + "".join(f"{scores[a]:>10.2f}" for a in ATTRIBUTES)
                      for name, scores in result.items()]
    return "\n".join(lines)


__all__ = ["ATTRIBUTES", "format_probe_table", "probe", "probe_stores", "scene_targets"]
