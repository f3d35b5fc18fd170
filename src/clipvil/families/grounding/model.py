"""A referring-expression head on a CLIP grid: which cell holds the object, and its box.

One-stage, in the spirit of TransVG (Deng et al., ICCV 2021) with MDETR/DETR-style box losses, over the
grid instead of region proposals:

    expression: Embedding(vocab, word_dim) → LSTM(word_dim → D)                        [B, T, D]
    grid:       Linear(C → D) → LayerNorm, + Linear(2 → D) of each cell's centre (cx, cy)  [B, N, D]
    fusion:     L pre-norm Transformer encoder layers over [expression ; grid], padding masked
    cells:      Linear(D → 1) on each fused cell = cell_logits [B, N] (padded cells: the dtype's minimum)
    boxes:      MLP(D → D → 4) on each fused cell = (dx, dy, w, h) logits; the cell's box is centred at
                its own centre + max_offset · tanh(dx, dy) cells, with width / height sigmoid(w, h) of the
                image; the output box is the softmax(cell_logits)-weighted mean of the cells' boxes in
                (cx, cy, w, h), returned as normalised xyxy [B, 4] clamped to [0, 1].

Coordinates are relative to the image content: the real (unpadded) cells of a row/column span [0, 1]
(`cell_centres`), so a box normalised by the image's own width and height lines up with the grid whether
or not the input was padded. The last row/column of real cells may reach a little past the image edge
(the receptive square of a partly padded cell); that imprecision is below a cell's size.

**Loss** (the task's; `clipvil.families.grounding.loss`): cross-entropy of cell_logits against the cell that
holds the gold box's centre (`box_cell`), plus DETR's box terms on the output box: λ_L1 · L1 on normalised
(cx, cy, w, h) + λ_GIoU · (1 - GIoU) on xyxy, with DETR/TransVG's λ_L1 = 5, λ_GIoU = 2. The cell term
teaches *where*; the soft-average box keeps both terms differentiable through the cell scores.

Inputs: tokens [B, T] with 0 as trailing padding (see `clipvil.nn.text`); a GridFeatures whose mask
marks real cells (padded cells are zeroed before use, so nothing there can leak into a real output).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from clipvil.engine.models import register_model
from clipvil.nn.layers import grid_inputs
from clipvil.nn.text import QuestionEncoder, RNNKind
from clipvil.types import GridFeatures


@dataclass(frozen=True)
class GroundingConfig:
    """Architecture of the grid grounding head (vocabulary and grid width are constructor arguments)."""

    hidden: int = 256  # D: width of the fusion transformer (TransVG's visual-linguistic transformer: 256)
    layers: int = 4  # fusion encoder layers over [expression ; grid]
    heads: int = 8  # attention heads per layer; must divide hidden
    ff: int = 1024  # inner width of each layer's feed-forward block
    word_dim: int = 300  # word embedding width (GloVe-sized)
    text_rnn: RNNKind = "lstm"  # recurrent layer of the expression encoder: "lstm" or "gru"
    dropout: float = 0.1  # dropout inside the fusion layers
    max_offset: float = 1.0  # how far (in cells) a cell's box centre may move from the cell's own centre

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"GroundingConfig: hidden {self.hidden} is not divisible by heads {self.heads}")
        if self.max_offset <= 0:
            raise ValueError(f"GroundingConfig: max_offset must be > 0, got {self.max_offset}")

    @classmethod
    def preset(cls, name: str) -> GroundingConfig:
        """A named preset: 'default' (the sizes above) or 'tiny' (for tests and smoke runs)."""
        if name not in GROUNDING_PRESETS:
            raise ValueError(f"unknown grounding preset {name!r}; known: {sorted(GROUNDING_PRESETS)}")
        return GROUNDING_PRESETS[name]


GROUNDING_PRESETS: dict[str, GroundingConfig] = {
    "default": GroundingConfig(),
    "tiny": replace(GroundingConfig(), hidden=32, layers=1, heads=2, ff=64, word_dim=16, dropout=0.0),
}


@dataclass
class GroundingOutput:
    """What the head predicts for each expression."""

    cell_logits: torch.Tensor  # [B, N] score of each cell holding the object; padded cells = dtype minimum
    boxes: torch.Tensor  # [B, 4] the box, normalised xyxy (x0, y0, x1, y1) in [0, 1] of the image content


def content_extent(mask: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """[B, 2] (rows, cols) of real cells per image: the grid's real content starts at the top-left corner."""
    grid = mask.view(-1, hw[0], hw[1])  # [B, h, w]
    rows = grid.any(dim=2).sum(dim=1)  # [B]
    cols = grid.any(dim=1).sum(dim=1)  # [B]
    return torch.stack([rows, cols], dim=1).clamp(min=1)  # [B, 2]


def cell_centres(mask: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(centres [B, N, 2] as normalised (cx, cy), cell sizes [B, 2] as normalised (w, h)) of every cell;
    the real cells of each image span [0, 1] in both directions (padded cells lie beyond 1)."""
    extent = content_extent(mask, hw).to(torch.float32)  # [B, 2] (rows, cols)
    r = torch.arange(hw[0], device=mask.device, dtype=torch.float32).repeat_interleave(hw[1])  # [N]
    c = torch.arange(hw[1], device=mask.device, dtype=torch.float32).repeat(hw[0])  # [N]
    size = torch.stack([1.0 / extent[:, 1], 1.0 / extent[:, 0]], dim=1)  # [B, 2] (w, h)
    centres = torch.stack([(c + 0.5)[None] * size[:, :1], (r + 0.5)[None] * size[:, 1:]], dim=-1)  # [B, N, 2]
    return centres, size


def box_cell(boxes_xyxy: torch.Tensor, mask: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """[B] index (row-major) of the real cell that holds each normalised xyxy box's centre."""
    extent = content_extent(mask, hw)  # [B, 2] (rows, cols)
    cx = (boxes_xyxy[:, 0] + boxes_xyxy[:, 2]) / 2  # [B]
    cy = (boxes_xyxy[:, 1] + boxes_xyxy[:, 3]) / 2  # [B]
    col = (cx * extent[:, 1]).floor().long().clamp(min=0).minimum(extent[:, 1] - 1)  # [B]
    row = (cy * extent[:, 0]).floor().long().clamp(min=0).minimum(extent[:, 0] - 1)  # [B]
    return row * hw[1] + col  # [B]


class GridGrounding(nn.Module):
    """Expression + grid → (cell_logits [B, N], box [B, 4] normalised xyxy)."""

    def __init__(self, cfg: GroundingConfig, *, grid_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden
        self.text = QuestionEncoder(vocab_size, cfg.word_dim, d, cfg.text_rnn)
        self.visual_proj = nn.Linear(grid_dim, d)
        self.visual_norm = nn.LayerNorm(d)
        self.pos_proj = nn.Linear(2, d)
        self.type_embed = nn.Embedding(2, d)  # 0: expression token, 1: grid cell
        layer = nn.TransformerEncoderLayer(
            d, cfg.heads, cfg.ff, cfg.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.fusion = nn.TransformerEncoder(layer, cfg.layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        self.cell_score = nn.Linear(d, 1)
        self.box_head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 4))

    def forward(self, grid: GridFeatures, tokens: torch.Tensor) -> GroundingOutput:
        """grid: GridFeatures [B, N, C] (+ mask); tokens [B, T] (0 = trailing padding) → GroundingOutput."""
        words, tmask = self.text(tokens)  # [B, T, D], [B, T]
        feats, gmask = grid_inputs(grid, tokens.shape[0])  # [B, N, C], [B, N]
        centres, size = cell_centres(gmask, grid.hw)  # [B, N, 2], [B, 2]
        v = self.visual_norm(self.visual_proj(feats)) + self.pos_proj(centres.to(feats.dtype))  # [B, N, D]
        x = torch.cat([words + self.type_embed.weight[0], v + self.type_embed.weight[1]], dim=1)  # [B, T+N, D]
        keep = torch.cat([tmask, gmask], dim=1)  # [B, T+N]
        x = self.fusion(x, src_key_padding_mask=~keep)  # [B, T+N, D]
        cells = x[:, tokens.shape[1]:]  # [B, N, D]
        logits = self.cell_score(cells).squeeze(-1)  # [B, N]
        logits = logits.masked_fill(~gmask, torch.finfo(logits.dtype).min)  # [B, N]
        raw = self.box_head(cells)  # [B, N, 4]
        size = size.to(raw.dtype)[:, None, :]  # [B, 1, 2]
        centre = centres.to(raw.dtype) + self.cfg.max_offset * torch.tanh(raw[..., :2]) * size  # [B, N, 2]
        cell_boxes = torch.cat([centre, torch.sigmoid(raw[..., 2:])], dim=-1)  # [B, N, 4] cx, cy, w, h
        weights = torch.softmax(logits, dim=1)  # [B, N], 0 on padded cells
        cxcywh = torch.einsum("bn,bnk->bk", weights, cell_boxes)  # [B, 4]
        half = cxcywh[:, 2:] / 2  # [B, 2]
        boxes = torch.cat([cxcywh[:, :2] - half, cxcywh[:, :2] + half], dim=1).clamp(0.0, 1.0)  # [B, 4]
        return GroundingOutput(logits, boxes)


# grounding family: builder(cfg, *, grid_dim, vocab_size); forward(GridFeatures, tokens [B, T]) -> GroundingOutput
register_model("grid_grounding", family="grounding", config_cls=GroundingConfig, builder=GridGrounding)
