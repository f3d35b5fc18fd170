"""`clipvil localise`: how well each tower's Grad-CAM maps point at the object a question or caption names.

    clipvil localise --world data/synthetic --split val --limit 200 --out runs/localise \\
        --vqa "RN50 random=runs/vqa/RN50/checkpoints/best.pt" --vqa "ViT-B-32 random=runs/vqa/ViT/best.pt" \\
        --clip "RN50 CLIP=RN50,weights/RN50.pt"

Probes are (image, object box, a question that names the object alone, a caption of it). From a synthetic
world (`--world`): every object a description singles out ("the large circle") becomes "What color is the
large circle?" (or "What shape is the red object?" when it names a colour and no shape) with the caption
"the large circle". From COCO (`--instances instances.json --images DIR`): every
category that occurs exactly once in an image: "What color is the <category>?" and "a photo of a <category>".

Each tower is either a VQA head (``--vqa LABEL=CHECKPOINT[,WEIGHTS]``: the map of its top answer's logit,
gradients through the tower the head's grids came from — any tower: CLIP ResNet/ViT, ImageNet ResNet, random
or not) or a CLIP pair (``--clip LABEL=ENCODER[,WEIGHTS]``: the map of the image–caption cosine). Scores per
tower (`clipvil.metrics.localisation`): the pointing game (% of maps whose maximum lies in the box) and the
mean share of the map's energy inside the box; the "chance" row is a uniform map's (the mean box area share,
which is also a random point's pointing accuracy). Writes localisation.json, localisation.md and
localisation.png (bars per tower, chance as a dashed line).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipvil.apps.explain_cmd import (
    Scorer,
    explain_image,
    load_clip_pair,
    load_vqa_head,
    text_scorer,
    vqa_scorer,
)
from clipvil.common.atomic import atomic_write, atomic_write_json
from clipvil.data.refer import read_synthetic_refs
from clipvil.data.synthetic.scene import COLORS, SHAPES
from clipvil.data.validate import get_field, load_json
from clipvil.encoders.registry import tower_family
from clipvil.metrics.localisation import energy_in_box, pointing_game

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Probe:
    """An image, the box of one object in it, and a question and a caption naming that object alone."""

    image: Path
    box_xywh: tuple[float, float, float, float]
    question: str
    caption: str


@dataclass(frozen=True)
class TowerSpec:
    """One row of the table: a VQA head (kind "vqa", source = checkpoint) or a CLIP pair (kind "clip",
    source = encoder name), with an optional weight file."""

    label: str
    kind: str  # "vqa" | "clip"
    source: str
    weights: Path | None = None


def parse_tower(kind: str, text: str) -> TowerSpec:
    """'LABEL=SOURCE[,WEIGHTS]' → TowerSpec (the form of --vqa / --clip)."""
    label, sep, rest = text.partition("=")
    if not sep or not label.strip() or not rest.strip():
        raise ValueError(f"--{kind} {text!r}: expected LABEL=SOURCE[,WEIGHTS]")
    source, _, weights = rest.partition(",")
    return TowerSpec(label.strip(), kind, source.strip(), Path(weights.strip()) if weights.strip() else None)


def _question(words: list[str]) -> str:
    """A question about the object `words` ("large circle") names alone, asking what it does not say."""
    phrase = " ".join(words)
    if not any(w in COLORS for w in words):
        return f"What color is the {phrase}?"
    if not any(w in SHAPES for w in words):
        return f"What shape is the {phrase}?"
    return f"What color is the {phrase}?"


def synthetic_probes(world: Path, split: str = "val", limit: int = 0) -> list[Probe]:
    """One probe per object of `split` that a description singles out (the shortest description)."""
    refs = read_synthetic_refs(world, splits=[split])
    probes = []
    for ref in refs:
        words = ref.sentences[0].split()[1:]  # "the large circle" → ["large", "circle"]
        probes.append(Probe(Path(world) / ref.file_name, ref.box_xywh, _question(words), ref.sentences[0]))
    return probes[:limit] if limit else probes


def coco_probes(instances: Path, images: Path, limit: int = 0) -> list[Probe]:
    """One probe per (image, category met exactly once in it) of a COCO instances file (crowd boxes left out)."""
    data = load_json(instances)
    names = {c["id"]: c["name"] for c in get_field(data, "categories", instances, None, list)}
    files = {im["id"]: im["file_name"] for im in get_field(data, "images", instances, None, list)}
    by_image: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for a in get_field(data, "annotations", instances, None, list):
        if not a.get("iscrowd", 0):
            by_image.setdefault((a["image_id"], a["category_id"]), []).append(a)
    probes = []
    for (image_id, cat), anns in sorted(by_image.items()):
        if len(anns) == 1 and image_id in files:
            name = names.get(cat, str(cat))
            probes.append(Probe(Path(images) / files[image_id], tuple(float(v) for v in anns[0]["bbox"]),  # type: ignore[arg-type]
                                f"What color is the {name}?", f"a photo of a {name}"))
    return probes[:limit] if limit else probes


def _scorers(spec: TowerSpec) -> tuple[Any, str]:
    """(what makes a Scorer per probe, the tower's encoder name)."""
    if spec.kind == "vqa":
        head = load_vqa_head(Path(spec.source), spec.weights)
        return (lambda p: vqa_scorer(head, p.question)), head.tower.name
    pair = load_clip_pair(spec.source, spec.weights)
    return (lambda p: text_scorer(pair, p.caption)), pair.tower.name


def score_tower(spec: TowerSpec, probes: Sequence[Probe], method: str = "gradcam", tolerance: float = 0.0,
                examples: Path | None = None, n_examples: int = 0) -> dict[str, Any]:
    """{pointing, energy (%), n, encoder, family, kind, weights} of one tower over the probes; the first
    `n_examples` maps are drawn into `examples` (with the object's box)."""
    make, encoder = _scorers(spec)
    hits, shares = [], []
    for k, probe in enumerate(probes):
        scorer: Scorer = make(probe)
        out = examples / f"{_slug(spec.label)}_{k:03d}.png" if examples is not None and k < n_examples else None
        result = explain_image(scorer, probe.image, out, method, [probe.box_xywh])
        x, y, w, h = result.region
        box = (probe.box_xywh[0] - x, probe.box_xywh[1] - y, probe.box_xywh[2], probe.box_xywh[3])
        hw = (max(1, round(h)), max(1, round(w)))
        hits.append(pointing_game(result.heat, box, hw, tolerance))
        shares.append(energy_in_box(result.heat, box, hw))
    return {"pointing": 100.0 * float(np.mean(hits)), "energy": 100.0 * float(np.mean(shares)), "n": len(hits),
            "encoder": encoder, "family": tower_family(encoder), "kind": spec.kind, "source": spec.source,
            "weights": str(spec.weights) if spec.weights else "random"}


def chance(probes: Sequence[Probe]) -> dict[str, float]:
    """A uniform map's scores: the mean share of the image the box covers (energy, and a random point's hits)."""
    from PIL import Image

    shares = []
    for p in probes:
        with Image.open(p.image) as im:
            shares.append(min(1.0, p.box_xywh[2] * p.box_xywh[3] / (im.width * im.height)))
    share = 100.0 * float(np.mean(shares))
    return {"pointing": share, "energy": share, "n": len(shares)}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_") or "tower"


def markdown_table(rows: dict[str, dict[str, Any]], base: dict[str, float], method: str) -> str:
    """The table of localisation.md."""
    lines = ["| tower | encoder | family | weights | scored by | pointing % | energy in box % | n |",
             "|---|---|---|---|---|---:|---:|---:|"]
    for label, r in rows.items():
        scored = "VQA head, top answer" if r["kind"] == "vqa" else "CLIP image-text cosine"
        lines.append(f"| {label} | {r['encoder']} | {r['family']} | {Path(r['weights']).name} | {scored} "
                     f"| {r['pointing']:.1f} | {r['energy']:.1f} | {r['n']} |")
    lines.append(f"| chance (uniform map) | | | | | {base['pointing']:.1f} | {base['energy']:.1f} | {base['n']} |")
    return f"Localisation of {method} maps (pointing game; share of the map's energy inside the box)\n\n" + \
        "\n".join(lines) + "\n"


def bar_plot(rows: dict[str, dict[str, Any]], base: dict[str, float], out: Path) -> Path:
    """localisation.png: pointing and energy bars per tower, chance as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(rows)
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(labels) + 2), 3.2), dpi=100)
    try:
        ax.bar(x - 0.2, [rows[k]["pointing"] for k in labels], 0.4, label="pointing game %")
        ax.bar(x + 0.2, [rows[k]["energy"] for k in labels], 0.4, label="energy in box %")
        ax.axhline(base["energy"], color="gray", linestyle="--", linewidth=1, label="chance (uniform map)")
        ax.set_xticks(x, labels, rotation=15, fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_ylabel("%")
        ax.legend(fontsize=7)
        ax.set_title("Grad-CAM localisation per tower", fontsize=9)
        fig.tight_layout()
        atomic_write(out, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
    return out


def run_localise(towers: Sequence[TowerSpec], probes: Sequence[Probe], out_dir: Path, method: str = "gradcam",
                 tolerance: float = 0.0, n_examples: int = 2) -> dict[str, Any]:
    """Scores every tower over the probes and writes localisation.{json,md,png} (+ example maps) in out_dir."""
    if not towers:
        raise ValueError("localise: name at least one tower (--vqa LABEL=CKPT or --clip LABEL=ENCODER)")
    if not probes:
        raise ValueError("localise: no probes (no object that a question can name alone)")
    labels = [t.label for t in towers]
    if len(set(labels)) != len(labels):
        raise ValueError(f"localise: tower labels must differ, got {labels}")
    out_dir = Path(out_dir)
    rows = {}
    for spec in towers:
        log.info("localise: %s (%d probes)", spec.label, len(probes))
        with torch.random.fork_rng(devices=[]):
            rows[spec.label] = score_tower(spec, probes, method, tolerance, out_dir / "examples", n_examples)
    base = chance(probes)
    result = {"method": method, "tolerance_px": tolerance, "towers": rows, "chance": base, "n_probes": len(probes)}
    atomic_write_json(out_dir / "localisation.json", result, indent=2)
    (out_dir / "localisation.md").write_text(markdown_table(rows, base, method))
    bar_plot(rows, base, out_dir / "localisation.png")
    return result


def describe(result: dict[str, Any]) -> str:
    """A one-line JSON summary per tower (for the command's output)."""
    return json.dumps({k: {m: round(v[m], 2) for m in ("pointing", "energy")} for k, v in result["towers"].items()}
                      | {"chance": {m: round(result["chance"][m], 2) for m in ("pointing", "energy")}})
