"""Relevance maps of any grid tower for any scalar score of its GridFeatures, drawn over the image.

    heat = relevance_map(tower, pixels, content_hw, score_fn)      # [h, w] on the tower's grid, max 1
    overlay(image, heat, "a red circle", Path("out/0001.png"))
    write_index_html(Path("out"), [("0001.png", "a red circle")])

The maps come from pytorch-grad-cam (PyPI ``grad-cam``), with the tower and `score_fn` wrapped as a model
whose one output is the score, at the layer where the tower's grid is made:

| tower (clipvil.encoders) | target layer                                                             |
|--------------------------|--------------------------------------------------------------------------|
| CLIP ResNet              | ``visual.layer4``: the last convolutional map, which *is* the grid         |
| CLIP ViT                 | the patch tokens entering the grid's block (the previous block's output,  |
|                          | ``ln_pre``'s for block 0), reshaped to [W, h, w] (CLS dropped): the last  |
|                          | place where the patches reach both the pooled CLS embedding and the grid  |
| timm ResNet / open_clip  | the trunk's last feature stage (its ``feature_info[-1]`` module)         |
| timm trunks              |                                                                          |

Methods: ``"gradcam"`` (Selvaraju et al. 2017: channel weights = the spatial mean of the gradient, map =
ReLU(Σ_c w_c A_c)) — the paper's maps; ``"hirescam"`` (Draelos & Carin 2020: map = ReLU(Σ_c ∂S/∂A_c ⊙ A_c),
element-wise) — faithful to scores that depend on a few cells, which Grad-CAM's channel averaging spreads
over every cell showing the same channels. The map stays on the grid (the library's upsampling to the input
is turned off), is scaled to max 1 over the real cells, and is 0 on padded cells.

The CLIP image–text case: ``score_fn = cosine_score(text_embedding)`` (cosine of the pooled image embedding
with a text embedding from the same CLIP's text tower).
"""

from __future__ import annotations

import functools
import html
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from open_clip.modified_resnet import ModifiedResNet
from PIL import Image
from torch import nn

from clipvil.encoders.clip_towers import ClipResNetTower, ClipTimmTower, ClipViTTower
from clipvil.encoders.timm_towers import TimmGridTower
from clipvil.types import GridFeatures

ScoreFn = Callable[[GridFeatures], torch.Tensor]  # GridFeatures of one image -> a scalar tensor
Reshape = Callable[[torch.Tensor], torch.Tensor]
METHODS: tuple[str, ...] = ("gradcam", "hirescam")


@functools.cache
def _cam_class(method: str) -> type:
    """pytorch-grad-cam's class for `method`, keeping the map at the target layer's resolution (its default
    resizes to the input). Imported on first use: the package pulls in OpenCV, slow to import for a CLI."""
    from pytorch_grad_cam import GradCAM, HiResCAM

    base = {"gradcam": GradCAM, "hirescam": HiResCAM}[method]

    class OnGrid(base):  # type: ignore[misc, valid-type]
        def get_target_width_height(self, input_tensor: torch.Tensor) -> None:
            return None

    return OnGrid


_TOWERS = (ClipResNetTower, ClipViTTower, TimmGridTower, ClipTimmTower)


class _Scored(nn.Module):
    """tower + score_fn as a 'classifier' with one output [1, 1], the form pytorch-grad-cam drives."""

    def __init__(self, tower: nn.Module, content_hw: tuple[int, int] | None, score_fn: ScoreFn) -> None:
        super().__init__()
        self.tower, self.content_hw, self.score_fn = tower, content_hw, score_fn

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        # a frozen tower has no parameter that needs a gradient: the input does, so the graph reaches the layer
        pixels = pixels.detach().requires_grad_(True)  # [1, 3, H, W]
        grid = self.tower(pixels, None if self.content_hw is None else [self.content_hw], pooled=True)
        score = self.score_fn(grid)
        if score.numel() != 1:
            raise ValueError(f"relevance_map: score_fn must return a scalar, got shape {tuple(score.shape)}")
        return score.reshape(1, 1)  # [1, 1]


def _tokens_to_map(hw: tuple[int, int], batch_first: bool) -> Reshape:
    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        x = tokens if batch_first else tokens.transpose(0, 1)  # [B, 1+N, W]
        return x[:, 1:].reshape(x.shape[0], hw[0], hw[1], x.shape[-1]).permute(0, 3, 1, 2)  # [B, W, h, w]

    return reshape


def target_layer(tower: nn.Module, grid_hw: tuple[int, int]) -> tuple[nn.Module, Reshape | None]:
    """(the module whose output the map is made from, the reshape of its output to [B, C, h, w] or None)."""
    if isinstance(tower, ClipResNetTower) and isinstance(tower.visual, ModifiedResNet):
        return tower.visual.layer4, None
    if isinstance(tower, ClipViTTower):
        v = tower.visual
        if tower.block == 0:
            return v.ln_pre, _tokens_to_map(grid_hw, True)
        return v.transformer.resblocks[tower.block - 1], _tokens_to_map(grid_hw, v.transformer.batch_first)
    if isinstance(tower, TimmGridTower):
        return tower.model.get_submodule(tower.model.feature_info[-1]["module"]), None
    if isinstance(tower, ClipTimmTower):
        trunk = tower.visual.trunk
        return trunk.get_submodule(trunk.feature_info[-1]["module"]), None
    raise TypeError(f"relevance_map: no target layer known for a {type(tower).__name__} tower")


def relevance_map(
    tower: nn.Module,
    pixels: torch.Tensor,
    content_hw: tuple[int, int] | None,
    score_fn: ScoreFn,
    method: str = "gradcam",
) -> np.ndarray:
    """[h, w] float32 relevance of each grid cell to `score_fn(tower(pixels))`, in [0, 1] (max 1 unless
    nothing is relevant), 0 on padded cells.

    tower: any tower of `clipvil.encoders.build_encoder` (frozen or not; its train/eval mode is restored).
    pixels: [1, 3, H, W], normalised with the tower's mean/std; content_hw: the real (unpadded) (h, w) pixels
    from the top-left, or None when nothing is padded. score_fn gets the GridFeatures of that one image
    (pooled included) and returns a scalar tensor. method: "gradcam" or "hirescam" (module docstring).
    """
    if pixels.dim() != 4 or pixels.shape[0] != 1 or pixels.shape[1] != 3:
        raise ValueError(f"relevance_map: pixels must be [1, 3, H, W], got {tuple(pixels.shape)}")
    if method not in METHODS:
        raise ValueError(f"relevance_map: unknown method {method!r}; known: {sorted(METHODS)}")
    if not isinstance(tower, _TOWERS):
        raise TypeError(f"relevance_map: no target layer known for a {type(tower).__name__} tower")
    grid_hw = (pixels.shape[2] // tower.stride, pixels.shape[3] // tower.stride)
    layer, reshape = target_layer(tower, grid_hw)
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    was_training = tower.training
    cam = _cam_class(method)(model=_Scored(tower, content_hw, score_fn), target_layers=[layer],
                             reshape_transform=reshape)
    try:
        heat = cam(input_tensor=pixels, targets=[ClassifierOutputTarget(0)])[0]  # [h, w]
    finally:
        cam.activations_and_grads.release()
        tower.train(was_training)
    if heat.shape != grid_hw:
        raise RuntimeError(f"relevance_map: map of shape {heat.shape} for a {grid_hw} grid")
    if content_hw is not None:
        rows, cols = (-(-content_hw[0] // tower.stride), -(-content_hw[1] // tower.stride))
        real = np.zeros(grid_hw, dtype=bool)
        real[:rows, :cols] = True
        heat = np.where(real, heat, 0.0)
    top = float(heat.max())
    return (heat / top if top > 0 else heat).astype(np.float32)


def crop_to_content(heat: np.ndarray, content_hw: tuple[int, int], stride: int) -> np.ndarray:
    """The real cells of a padded input's map (the top-left block that covers content_hw pixels)."""
    return heat[: -(-content_hw[0] // stride), : -(-content_hw[1] // stride)]


def cosine_score(text_embedding: torch.Tensor) -> ScoreFn:
    """score_fn for an image–text pair: cosine of the pooled image embedding with `text_embedding` [D]."""
    text = text_embedding.detach().flatten()

    def score(grid: GridFeatures) -> torch.Tensor:
        if grid.pooled is None:
            raise ValueError("cosine_score: the tower gave no pooled embedding")
        image = grid.pooled[0]  # [D]
        return torch.nn.functional.cosine_similarity(image, text.to(image), dim=0)

    return score


def overlay(
    image: Image.Image,
    heat: np.ndarray,
    title: str,
    out: Path,
    boxes_xywh: Sequence[Sequence[float]] = (),
    alpha: float = 0.5,
) -> Path:
    """Writes a PNG of `image` with `heat` (any [h, w] spanning the whole image, upsampled bilinearly) over it,
    `title` above, and each box of `boxes_xywh` (pixels of `image`) outlined; returns `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"overlay: heat must be [h, w], got shape {heat.shape}")
    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    scale = 4.0 / max(height, width)
    fig, ax = plt.subplots(figsize=(max(2.0, width * scale), max(2.0, height * scale) + 0.4), dpi=100)
    try:
        ax.imshow(rgb)
        ax.imshow(heat, cmap="jet", alpha=alpha, extent=(0, width, height, 0), interpolation="bilinear",
                  vmin=0.0, vmax=max(float(heat.max()), 1e-12))
        for x, y, w, h in boxes_xywh:
            ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="lime", linewidth=2))
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_title(title, fontsize=9, wrap=True)
        ax.axis("off")
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return out


def write_index_html(folder: Path, items: Sequence[tuple[str, str]], title: str = "clipvil explain") -> Path:
    """Writes folder/index.html showing each (PNG file name relative to `folder`, caption); returns its path."""
    folder = Path(folder)
    cells = "\n".join(
        f'<figure><img src="{html.escape(name, quote=True)}" alt="{html.escape(caption, quote=True)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for name, caption in items
    )
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif} figure{display:inline-block;margin:8px;vertical-align:top}"
        " img{max-width:320px}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{cells}\n</body></html>\n"
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
