"""The 36 view features of each viewpoint, from a clipvil feature store, as NavEnv's lookup.

Two store layouts are read (told apart by the store's provenance):

- "viewpoint" (`clipvil import-views FILE.tsv`, the released view-feature TSVs): one item per viewpoint,
  id "<scan>/<viewpoint>", a grid of 36 cells with hw (3, 12) (row = elevation level -30/0/+30 deg, column =
  heading index, so the cell index is the view index of clipvil.data.nav_env), mask all True.
- "image" (`clipvil extract --preset views --pooled --dtype float32` over `<scan>/<viewpoint>/<i>.jpg`
  folders): one item per view image, id "<scan>/<viewpoint>/<i>", i = 0..35; the pooled CLIP embedding
  (what CLIP-ViL's precompute script keeps: `encode_image`) of views 0..35 is stacked into [36, D].

Features are float32 arrays [36, D]. Stores written in float16 are refused unless allowed: CLIP-ViL loaded
CLIP in fp16 and its features did not match the released fp32 ones. With `preload` (default when the store
fits in `preload_max_gb`), every viewpoint is read once into memory; otherwise viewpoints are read on demand
and the most recent `cache_size` kept.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from clipvil.data.nav_env import N_VIEWS
from clipvil.features.store import FeatureStore

log = logging.getLogger(__name__)
VIEWPOINT_LAYOUT = "viewpoint"  # provenance["layout"] of stores written by `clipvil import-views`
VIEW_HW = (3, 12)  # grid of a viewpoint item: elevation levels x headings
_CHUNK = 256  # viewpoints read per store call when preloading

Key = tuple[str, str]


class ViewFeatures(Mapping[Key, np.ndarray]):
    """{(scan, viewpoint): float32 [36, D]} over a feature store (see the module docstring)."""

    def __init__(self, root: str | Path, expect: Mapping[str, str] | None = None, *, preload: bool | None = None,
                 preload_max_gb: float = 4.0, allow_float16: bool = False, cache_size: int = 4096) -> None:
        self.store = FeatureStore(root)
        self.root = Path(root)
        prov = self.store.provenance
        for key, want in (expect or {}).items():
            if want and str(prov.get(key)) != str(want):
                raise ValueError(f"{self.root}: view features were made with {key} {prov.get(key)!r}, the recipe "
                                 f"asks for {want!r} (task.feature_{key})")
        if prov.get("dtype") == "float16" and not allow_float16:
            raise ValueError(f"{self.root}: view features stored in float16; navigation expects float32 (extract "
                             "with --dtype float32, or set task.allow_float16_features)")
        self.layout = VIEWPOINT_LAYOUT if prov.get("layout") == VIEWPOINT_LAYOUT else "image"
        if self.layout == "image" and not prov.get("pooled"):
            raise ValueError(f"{self.root}: an image store without pooled embeddings; extract the views with "
                             "--preset views --pooled")
        self._index = self._group_ids(self.store.ids)
        self.dim = self._width()
        self._cache: OrderedDict[Key, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._all_loaded = False
        if preload or (preload is None and self.nbytes <= preload_max_gb * 2**30):
            self._preload()

    @property
    def provenance(self) -> dict[str, Any]:
        """The store's provenance plus the layout read and the view feature width."""
        return {**self.store.provenance, "layout": self.layout, "view_dim": self.dim}

    @property
    def nbytes(self) -> int:
        """Memory the [36, D] float32 arrays of every viewpoint take."""
        return len(self._index) * N_VIEWS * self.dim * 4

    def _group_ids(self, ids: Iterable[str]) -> dict[Key, list[str]]:
        """Store ids per viewpoint: one id ("viewpoint") or the view ids by view index ("image")."""
        out: dict[Key, list[str]] = {}
        if self.layout == VIEWPOINT_LAYOUT:
            for i in ids:
                scan, _, vp = i.partition("/")
                out[(scan, vp)] = [i]
            return out
        views: dict[Key, dict[int, str]] = {}
        for i in ids:
            head, _, view = i.rpartition("/")
            scan, _, vp = head.partition("/")
            if view.isdigit() and vp and int(view) < N_VIEWS:
                views.setdefault((scan, vp), {})[int(view)] = i
        for key, by_view in views.items():
            out[key] = [by_view.get(v, "") for v in range(N_VIEWS)]
        return out

    def _width(self) -> int:
        if not self.store.groups:
            raise ValueError(f"{self.root}: the feature store is empty")
        group = self.store.groups[0]
        if self.layout == VIEWPOINT_LAYOUT:
            if group.cells != N_VIEWS:
                raise ValueError(f"{self.root}: viewpoint items hold {group.cells} views, expected {N_VIEWS}")
            return group.dim
        return group.pooled

    def missing_views(self, key: Key) -> list[int]:
        """View indices of a viewpoint that the store lacks (all 36 for an unknown viewpoint)."""
        ids = self._index.get(key)
        if ids is None:
            return list(range(N_VIEWS))
        return [v for v, i in enumerate(ids) if not i]

    def missing(self, keys: Iterable[Key]) -> list[Key]:
        """The viewpoints without a complete set of views, sorted."""
        return sorted({k for k in keys if self.missing_views(k)})

    def _read(self, keys: list[Key]) -> list[np.ndarray]:
        for key in keys:
            gaps = self.missing_views(key)
            if gaps:
                what = "no features" if len(gaps) == N_VIEWS else f"no features for views {gaps[:6]}"
                raise KeyError(f"{self.root}: {what} of scan {key[0]}, viewpoint {key[1]}")
        ids = [i for k in keys for i in self._index[k]]
        grid = self.store.grids(ids)
        if self.layout == VIEWPOINT_LAYOUT:
            feats = grid.feats.float().numpy()  # [n, 36, D]
        else:
            assert grid.pooled is not None
            feats = grid.pooled.float().numpy().reshape(len(keys), N_VIEWS, -1)  # [n, 36, D]
        return [np.ascontiguousarray(f, dtype=np.float32) for f in feats]

    def _preload(self) -> None:
        keys = sorted(k for k in self._index if not self.missing_views(k))
        self._cache_size = max(self._cache_size, len(keys))
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            self._cache.update(zip(chunk, self._read(chunk)))
        self._all_loaded = True
        log.info("view features of %d viewpoints preloaded (%.2f GB)", len(keys), self.nbytes / 2**30)

    def __getitem__(self, key: Key) -> np.ndarray:
        found = self._cache.get(key)
        if found is not None:
            if not self._all_loaded:
                self._cache.move_to_end(key)
            return found
        value = self._read([key])[0]
        self._cache[key] = value
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and key in self._index and not self.missing_views(key)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Key]:
        return iter(sorted(self._index))

    def __len__(self) -> int:
        return len(self._index)
