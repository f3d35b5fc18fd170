"""NLVR2 with the single-stream CLIP-ViL_p model: one sequence [text ; image-0 tokens ; image-1 tokens].

As the pair-wise single-stream variants of UNITER ("triplet") and VisualBERT do, both images' grid tokens
join the text in one sequence; each image's tokens get an image-index embedding (0 = left, 1 = right) added
on top of the visual embedding (row/column positions, modality vector, Linear + LayerNorm), so the model
can tell which image a cell belongs to. Both images go through the CLIP tower as one batch of 2B images.

    pixels [B, 2, 3, H, W] → visual(2B images) → GridFeatures [2B, N, C] → tokens [B, K, H] each
    [text ; left + e0 ; right + e1] → transformer.joint → pooled → QA head (2 classes: False, True)

`VLPairModel` reuses a `VLModel`'s modules under the *same names* (visual, transformer, qa), so a pre-trained
VLModel's weights load key for key; `image_embedding` is the only new parameter (BERT-initialised).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from clipvil.families.vl.transformer import VLModel
from clipvil.families.vl.visual import FrozenBatchNormTrunk
from clipvil.types import GridFeatures

PAIR_CLASSES = 2  # logits of (False, True)


def _half(grid: GridFeatures, part: int, b: int) -> GridFeatures:
    """Images [part*b, (part+1)*b) of a stacked grid."""
    sl = slice(part * b, (part + 1) * b)
    pooled = grid.pooled[sl] if grid.pooled is not None else None
    return GridFeatures(grid.feats[sl], grid.mask[sl], grid.hw, pooled)


class VLPairModel(FrozenBatchNormTrunk):
    """(two images, a sentence) → [B, 2] logits; modules named as in `VLModel` plus `image_embedding`."""

    def __init__(self, base: VLModel) -> None:
        super().__init__()
        if base.qa is None or base.qa.n_answers != PAIR_CLASSES:
            raise ValueError(f"VLPairModel: the base model needs a QA head of {PAIR_CLASSES} outputs (n_answers=2)")
        self.cfg = base.cfg
        self.transformer = base.transformer
        self.qa = base.qa
        self.image_embedding = nn.Embedding(2, self.transformer.hidden)  # [2, H]: left, right
        nn.init.normal_(self.image_embedding.weight, std=0.02)  # BERT's initializer_range
        self.visual = base.visual  # last, as in VLModel

    def forward(
        self,
        pixels: torch.Tensor,
        content_hw: Sequence[tuple[int, int]] | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        n_visual: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """pixels [B, 2, 3, H, W] (left, right); content_hw: 2B sizes, image-major ([b0 left, b0 right, ...]);
        input_ids / attention_mask [B, T]. Returns logits [B, 2]."""
        b = pixels.shape[0]
        stacked = pixels.transpose(0, 1).reshape(2 * b, *pixels.shape[2:])  # [2B, 3, H, W]: lefts, then rights
        hw = None if content_hw is None else [content_hw[2 * i + side] for side in (0, 1) for i in range(b)]
        grid = self.visual(stacked, hw)  # GridFeatures [2B, N, C]
        tr = self.transformer
        text = tr.embed_text(input_ids)  # [B, T, H]
        parts, valids, indices = [], [], []
        for side in (0, 1):
            tokens, valid, index = tr.visual_embed(_half(grid, side, b), tr.modality(), n_visual, generator)
            parts.append(tokens + self.image_embedding.weight[side].to(tokens.dtype))  # [B, K, H]
            valids.append(valid)  # [B, K]
            indices.append(index + side * grid.feats.shape[1])  # [B, K]: cells of the right image after N
        out = tr.joint(text, attention_mask, torch.cat(parts, 1), torch.cat(valids, 1), torch.cat(indices, 1))
        return self.qa(out.pooled)  # [B, 2]

    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Trainable (name, parameter) pairs: "visual" (the tower) and "transformer" (the rest)."""
        visual_ids = {id(p) for p in self.visual.parameters()}
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {"visual": [], "transformer": []}
        for name, p in self.named_parameters():
            if p.requires_grad:
                groups["visual" if id(p) in visual_ids else "transformer"].append((name, p))
        return groups


__all__ = ["PAIR_CLASSES", "VLPairModel"]
