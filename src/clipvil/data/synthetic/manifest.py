"""manifest.json: what a synthetic world directory holds (its spec, counts and file paths).

It is written last, so its presence marks a complete directory; the spec in it decides whether a new
request may reuse the directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipvil.common.atomic import atomic_write_text
from clipvil.data.synthetic import layout
from clipvil.data.synthetic.spec import SPLITS, WorldSpec

FORMAT = "clipvil-synthetic-world"


def file_table(splits: list[str]) -> dict[str, str]:
    """Every file and image folder of a world with these (non-empty) splits, by 'kind/split' key."""
    files: dict[str, str] = {}
    for s in splits:
        files[f"coco_images/{s}"] = str(Path(layout.coco_image(s, 1)).parent)
        files[f"scenes/{s}"] = layout.scenes_file(s)
        files[f"vqa_questions/{s}"] = layout.vqa_questions(s)
        if s != "test":
            files[f"vqa_annotations/{s}"] = layout.vqa_annotations(s)
            files[f"lxmert/{s}"] = layout.lxmert(s)
        files[f"gqa_questions/{s}"] = layout.gqa_questions(s)
        files[f"snli_ve/{s}"] = layout.snli_ve(s)
        files[f"captions/{s}"] = layout.coco_captions(s)
    files["gqa_images"] = str(Path(layout.gqa_image(1)).parent)
    files["flickr30k_images"] = str(Path(layout.flickr_image(1)).parent)
    files["karpathy"] = layout.KARPATHY
    files["lxmert_answers"] = layout.LXMERT_ANSWERS
    return files


@dataclass
class Manifest:
    """A generated world: `path(kind, split)` gives absolute paths, e.g. path('vqa_questions', 'train')."""

    root: Path  # the world's directory (not stored: the directory may be moved)
    spec: WorldSpec
    counts: dict[
        str, dict[str, int]
    ]  # split -> {images, vqa_questions, gqa_questions, captions, snli_ve_pairs}
    files: dict[str, str] = field(default_factory=dict)  # 'kind/split' or 'kind' -> path relative to root

    @property
    def splits(self) -> list[str]:
        """The splits that have images, in train / val / test order."""
        return [s for s in SPLITS if self.counts.get(s, {}).get("images", 0) > 0]

    def path(self, kind: str, split: str | None = None) -> Path:
        key = kind if split is None else f"{kind}/{split}"
        if key not in self.files:
            raise KeyError(f"{self.root / layout.MANIFEST}: no file {key!r}; have {sorted(self.files)}")
        return self.root / self.files[key]

    def missing(self) -> list[str]:
        """Listed files or folders that are not on disk."""
        return [rel for rel in self.files.values() if not (self.root / rel).exists()]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "spec": self.spec.to_json(), "counts": self.counts, "files": self.files}

    def save(self) -> None:
        """Write manifest.json atomically (it marks the directory complete)."""
        atomic_write_text(self.root / layout.MANIFEST, json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, root: str | Path) -> Manifest:
        """Read `root`/manifest.json; a clear error when it is not one of ours."""
        root = Path(root)
        where = root / layout.MANIFEST
        try:
            data = json.loads(where.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{where}: cannot read a synthetic world manifest ({err})") from err
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{where}: not a clipvil synthetic world manifest (format != {FORMAT!r})")
        missing = [k for k in ("spec", "counts", "files") if k not in data]
        if missing:
            raise ValueError(f"{where}: manifest lacks {missing}")
        return cls(
            root=root,
            spec=WorldSpec.from_json(data["spec"], str(where)),
            counts=data["counts"],
            files=data["files"],
        )
