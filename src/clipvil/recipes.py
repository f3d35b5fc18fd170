"""The run recipes (`configs/<task>/<model>_<encoder>.yaml`) found through the package, in a wheel or a checkout.

`configs/` at the repository root is the one source of truth. The package reaches it as `clipvil/configs`:
in a checkout that is a symlink (`src/clipvil/configs -> ../../configs`), and a wheel carries the files
themselves there (package data `configs/**/*.yaml`, the build following the symlink). Where the symlink is
absent (a checkout without symlink support) the repository's `configs/` beside `src/` is used.

    find("configs/demo/mcan_synthetic.yaml")   # or "demo/mcan_synthetic.yaml" or "demo/mcan_synthetic"
    resolve("my_recipe.yaml")                   # an existing file as given, else a packaged recipe name
    available()                                 # ["clip/...", "demo/mcan_synthetic", "vqa/mcan_rn50", ...]

Recipes are returned as real files (their `includes:` are read relative to them); their data paths are
relative to the working directory, as for any recipe, and are meant to be overridden (`task.data_dir=...`).
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path

SUFFIX = ".yaml"


def recipes_dir() -> Path:
    """The folder holding the recipes: the package's `configs` (wheel, or checkout symlink), else the
    checkout's `configs/`; FileNotFoundError when neither exists (a wheel built without the package data)."""
    packaged = resources.files("clipvil") / "configs"
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "configs"
    if checkout.is_dir() and (checkout.parent / "src" / "clipvil").is_dir():
        return checkout
    raise FileNotFoundError(f"no recipes: neither {packaged} nor a source checkout's configs/ exists (this "
                            "installation was built without the package data configs/**/*.yaml)")


def _key(name: str) -> str:
    """"configs/vqa/mcan_rn50.yaml", "vqa/mcan_rn50.yaml" and "vqa/mcan_rn50" → "vqa/mcan_rn50"."""
    key = name.replace("\\", "/").strip("/")
    key = key.removeprefix("./").removeprefix("configs/")
    return key.removesuffix(SUFFIX)


def available() -> list[str]:
    """Every recipe by name (folder/stem), included partials (`_base` files) left out."""
    root = recipes_dir()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob(f"*{SUFFIX}")
                  if not p.name.startswith("_"))


def find(name: str) -> Path:
    """The file of a packaged recipe named like `configs/demo/mcan_synthetic.yaml` (the `configs/` prefix and
    the `.yaml` suffix optional); FileNotFoundError naming close matches otherwise."""
    key = _key(name)
    root = recipes_dir()
    path = root / f"{key}{SUFFIX}"
    if key and ".." not in key.split("/") and path.is_file():
        return path
    close = difflib.get_close_matches(key, available(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; recipes: {', '.join(available())}"
    raise FileNotFoundError(f"no recipe {name!r} in {root}{hint}")


def resolve(spec: str | Path) -> Path:
    """`spec` itself when it is an existing file, else the packaged recipe of that name (see `find`)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    return find(str(spec))


__all__ = ["available", "find", "recipes_dir", "resolve"]
