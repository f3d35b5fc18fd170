"""Where a task's grids come from: one feature store, several stores searched as one (train + val + Visual
Genome), or two encoders' stores concatenated channel-wise (the "plugin": CLIP + ImageNet grids).

    source = GridSource([store_a], extra=[vg_store], expect={"encoder": "RN50", "preset": "vqa"})
    grid = source.grids(["train2014/COCO_train2014_000000000009", ...])   # GridFeatures [B, N, C]

Stores are read lazily (HDF5 rows on demand); `preload` reads them into memory when they fit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from clipvil.features.store import FeatureStore
from clipvil.types import GridFeatures

log = logging.getLogger(__name__)

# provenance fields that must agree between stores searched as one
_SAME = ("encoder", "preset", "dim", "layer", "weights_sha256")


def _nbytes(store: FeatureStore) -> int:
    size = getattr(store, "nbytes", None)
    if size is not None:
        return int(size)
    return sum(p.stat().st_size for p in store.parts)  # compressed on-disk size: a lower bound


class GridSource:
    """Grids by image key from one or more feature stores (see the module docstring)."""

    def __init__(
        self,
        plugin: Sequence[str | Path],
        extra: Sequence[str | Path] = (),
        expect: dict[str, str] | None = None,
        preload: bool | None = None,
        preload_max_gb: float = 4.0,
    ) -> None:
        if not plugin:
            raise ValueError("task.features: name at least one feature store")
        if len(plugin) > 1 and extra:
            raise ValueError("task.features lists several stores (the plugin) and task.extra_features is set: "
                             "use one or the other")
        self.stores = [FeatureStore(p) for p in plugin]  # concatenated channel-wise
        self.extra = [FeatureStore(p) for p in extra]  # searched after stores[0]
        for store in self.stores + self.extra:
            _check_expected(store, expect or {})
        for store in self.extra:
            _check_same(self.stores[0], store)
        total = sum(_nbytes(s) for s in self.stores + self.extra)
        if preload or (preload is None and total <= preload_max_gb * 2**30):
            for store in self.stores + self.extra:
                store.preload()
            log.info("feature stores preloaded into memory (%.2f GB)", total / 2**30)
        else:
            log.info("feature stores read lazily from disk (%.2f GB; task.preload_features=true to preload)",
                     total / 2**30)

    @property
    def provenance(self) -> dict[str, Any]:
        """The first store's provenance; with the plugin, `plugin` lists every store's and `dim` is the sum."""
        first = dict(self.stores[0].provenance)
        if len(self.stores) > 1:
            first["plugin"] = [s.provenance for s in self.stores]
            first["dim"] = self.dim
        return first

    @property
    def dim(self) -> int:
        """Channel width of the grids this source gives."""
        return sum(int(s.provenance["dim"]) for s in self.stores)

    def __contains__(self, key: object) -> bool:
        if len(self.stores) > 1:
            return all(key in s for s in self.stores)
        return key in self.stores[0] or any(key in s for s in self.extra)

    def missing(self, keys: Sequence[str]) -> list[str]:
        """The keys no store holds, sorted."""
        return sorted({k for k in keys if k not in self})

    def _lookup(self, key: str) -> FeatureStore:
        for store in (self.stores[0], *self.extra):
            if key in store:
                return store
        raise KeyError(f"{self.stores[0].root}: no features for image {key!r}")

    def grids(self, keys: Sequence[str], dtype: torch.dtype = torch.float32) -> GridFeatures:
        """A batch of grids (one grid shape per batch)."""
        if len(self.stores) == 1:
            items = [self._lookup(k).get(k) for k in keys]
            return _stack(items, dtype, self.stores[0].root)
        parts = [_stack([s.get(k) for k in keys], dtype, s.root) for s in self.stores]
        return concat_grids(parts)


def _stack(items: list[Any], dtype: torch.dtype, root: Path) -> GridFeatures:
    shapes = {it.hw for it in items}
    if len(shapes) != 1:
        raise ValueError(f"{root}: a batch mixes grid shapes {sorted(shapes)}; group batches by shape")
    feats = torch.from_numpy(np.stack([it.feats for it in items])).to(dtype)  # [B, N, C]
    mask = torch.from_numpy(np.stack([it.mask for it in items])).bool()  # [B, N]
    pooled = None
    if all(it.pooled is not None for it in items):
        pooled = torch.from_numpy(np.stack([it.pooled for it in items])).to(dtype)  # [B, D]
    return GridFeatures(feats, mask, items[0].hw, pooled)


def concat_grids(parts: Sequence[GridFeatures]) -> GridFeatures:
    """Channel-wise concatenation of several encoders' grids of the same images (the plugin).

    Grids of another size are bilinearly resized to the first one's (h, w) and their masks resized by
    nearest neighbour; a cell is real only where every part's cell is real. Pooled embeddings are
    concatenated when every part has one."""
    first = parts[0]
    feats, masks, pooled = [first.feats], [first.mask], [first.pooled]
    for part in parts[1:]:
        if part.batch_size != first.batch_size:
            raise ValueError(f"plugin grids of {part.batch_size} vs {first.batch_size} images")
        if part.hw != first.hw:
            part = _resize(part, first.hw)
        feats.append(part.feats.to(first.feats.dtype))
        masks.append(part.mask)
        pooled.append(part.pooled)
    mask = torch.stack(masks).all(dim=0)  # [B, N]
    both = torch.cat(feats, dim=-1) * mask.unsqueeze(-1)  # [B, N, C1 + C2] (padded cells zeroed)
    joined = torch.cat(pooled, dim=-1) if all(p is not None for p in pooled) else None  # [B, D1 + D2]
    return GridFeatures(both, mask, first.hw, joined)


def _resize(grid: GridFeatures, hw: tuple[int, int]) -> GridFeatures:
    b = grid.feats.shape[0]
    fmap = F.interpolate(grid.as_map().float(), size=hw, mode="bilinear", align_corners=False)  # [B, C, h, w]
    mask_map = grid.mask.reshape(b, 1, *grid.hw).float()  # [B, 1, h0, w0]
    mask = F.interpolate(mask_map, size=hw, mode="nearest").reshape(b, -1) > 0.5  # [B, h*w]
    feats = fmap.flatten(2).transpose(1, 2).to(grid.feats.dtype)  # [B, h*w, C]
    pooled = grid.pooled
    return GridFeatures(feats, mask, hw, pooled)


def _check_expected(store: FeatureStore, expect: dict[str, str]) -> None:
    for key, want in expect.items():
        have = store.provenance.get(key)
        if want and str(have) != str(want):
            raise ValueError(f"{store.root}: features were made with {key} {have!r}, the recipe asks for "
                             f"{want!r} (task.feature_{key})")


def _check_same(first: FeatureStore, other: FeatureStore) -> None:
    for key in _SAME:
        a, b = first.provenance.get(key), other.provenance.get(key)
        if a != b:
            raise ValueError(f"{other.root}: {key} {b!r} differs from {first.root}'s {a!r}; stores searched "
                             "as one must hold features of the same encoder and preset")
