"""The visual side of the CLIP-ViL_p transformer (`clipvil.families.vl.transformer`).

- `sample_visual_tokens`: k of each image's real grid cells, uniformly without replacement (pre-training).
- `VisualEmbedding`: grid cells → visual tokens — learned row and column embeddings added in feature space
  (cell (r, c) of the padded grid, which is cell (r, c) of its image: content is top-left), the sampled cells
  gathered, then Linear(C → H) (+ the modality embedding) → LayerNorm → dropout. Names follow the reference
  (``visn_fc``, ``visn_layer_norm``; its ``x_position_embedding`` indexes rows, here ``row_embedding``).
- `enable_visual_checkpointing` / `freeze_batchnorm`: training options of the CLIP tower (the caller's).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any, Self

import torch
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper, checkpoint_wrapper
from transformers import BertConfig

from clipvil.nn.layers import grid_inputs
from clipvil.types import GridFeatures


def sample_visual_tokens(
    mask: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, k cells drawn uniformly without replacement among its real cells, in row-major order.

    mask [B, N] bool → (index [B, K] int64, valid [B, K] bool) with K = min(k, N); an image with fewer than
    k real cells keeps all of them and fills up with padded cells (valid False). The draw uses `generator`
    (on its own device) or torch's global generator."""
    device = generator.device if generator is not None else mask.device
    keys = torch.rand(mask.shape, generator=generator, device=device).to(mask.device)  # [B, N] in [0, 1)
    keys = keys.masked_fill(~mask, 2.0)  # padded cells sort after every real one
    index = keys.argsort(dim=1)[:, : min(k, mask.shape[1])]  # [B, K]
    index = index.sort(dim=1).values  # [B, K] row-major
    return index, mask.gather(1, index)  # [B, K], [B, K]


class VisualEmbedding(nn.Module):
    """Grid cells → visual tokens: row/column embeddings in feature space, sampling, Linear + LayerNorm."""

    def __init__(self, grid_dim: int, bert_config: BertConfig, max_rows: int, max_cols: int) -> None:
        super().__init__()
        self.row_embedding = nn.Embedding(max_rows, grid_dim)
        self.col_embedding = nn.Embedding(max_cols, grid_dim)
        self.visn_fc = nn.Linear(grid_dim, bert_config.hidden_size)
        self.visn_layer_norm = nn.LayerNorm(bert_config.hidden_size, eps=bert_config.layer_norm_eps)
        self.dropout = nn.Dropout(bert_config.hidden_dropout_prob)

    def forward(
        self,
        grid: GridFeatures,
        modality: torch.Tensor | None = None,
        n_visual: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """grid [B, N, C]; modality [H] (added before the LayerNorm) → tokens [B, K, H], valid [B, K],
        cell index [B, K]; K = N unless n_visual is given (then min(n_visual, N): sample_visual_tokens)."""
        h, w = grid.hw
        if h > self.row_embedding.num_embeddings or w > self.col_embedding.num_embeddings:
            raise ValueError(
                f"grid of {h}x{w} cells exceeds the position tables' "
                f"{self.row_embedding.num_embeddings}x{self.col_embedding.num_embeddings} "
                "(VLConfig.max_rows/max_cols)"
            )
        feats, mask = grid_inputs(grid, grid.batch_size)  # [B, N, C] (padded cells zeroed), [B, N]
        b, n, c = feats.shape
        if n_visual is None:
            index = torch.arange(n, device=feats.device).expand(b, n)  # [B, N]
            valid = mask  # [B, N]
        else:
            index, valid = sample_visual_tokens(mask, n_visual, generator)  # [B, K], [B, K]
        rows = torch.div(index, w, rounding_mode="floor")  # [B, K]
        pos = self.row_embedding(rows) + self.col_embedding(index - rows * w)  # [B, K, C]
        picked = feats.gather(1, index.unsqueeze(-1).expand(-1, -1, c))  # [B, K, C]
        x = self.visn_fc(picked.to(pos.dtype) + pos)  # [B, K, H]
        if modality is not None:
            x = x + modality  # [B, K, H]
        return self.dropout(self.visn_layer_norm(x)), valid, index  # [B, K, H], [B, K], [B, K]


@contextlib.contextmanager
def _running_stats_kept(module: nn.Module) -> Iterator[None]:
    """BatchNorm running statistics unchanged inside (momentum 0, batch counter restored): a checkpointed
    stage's recomputation must not update them a second time."""
    saved = [
        (m, m.momentum, m.num_batches_tracked.clone())
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.num_batches_tracked is not None
    ]
    for m, _, _ in saved:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, count in saved:
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


def _recompute_contexts(
    stage: nn.Module,
) -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
    return contextlib.nullcontext(), _running_stats_kept(stage)


def enable_visual_checkpointing(visual: nn.Module) -> None:
    """Activation checkpointing over the stages of the CLIP tower inside `visual`: ResNet layer1..layer4
    (each wrapped; state-dict keys unchanged, BatchNorm statistics updated once), ViT blocks (open_clip's own
    switch). ValueError for a tower of another kind."""
    for m in visual.modules():
        if isinstance(m, ModifiedResNet):
            for name in ("layer1", "layer2", "layer3", "layer4"):
                stage = getattr(m, name)
                if isinstance(stage, CheckpointWrapper):  # enabled before: keep one wrapper
                    continue
                wrapped = checkpoint_wrapper(stage, context_fn=functools.partial(_recompute_contexts, stage))
                setattr(m, name, wrapped)
            return
        if isinstance(m, VisionTransformer):
            m.set_grad_checkpointing(True)
            return
    raise ValueError(
        f"grad_checkpointing: no open_clip ModifiedResNet or VisionTransformer in {type(visual).__name__}"
    )


def freeze_batchnorm(module: nn.Module) -> None:
    """Puts every BatchNorm layer inside `module` in eval mode (running statistics used, not updated)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


class FrozenBatchNormTrunk(nn.Module):
    """Base of the models with a CLIP trunk `visual` and a config `cfg` whose `batchnorm` may be "frozen":
    train() then keeps the trunk's BatchNorm layers in eval mode (VLModel, VLPairModel)."""

    cfg: Any
    visual: nn.Module

    def train(self, mode: bool = True) -> Self:
        """As nn.Module.train; with batchnorm "frozen" the trunk's BatchNorm layers stay in eval mode."""
        super().train(mode)
        if self.cfg.batchnorm == "frozen":
            freeze_batchnorm(self.visual)
        return self


__all__ = ["FrozenBatchNormTrunk", "VisualEmbedding", "enable_visual_checkpointing", "freeze_batchnorm",
           "sample_visual_tokens"]
