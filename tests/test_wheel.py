"""The wheel works on its own: built from a copy of the tree, installed into a fresh virtual environment, run
from a folder outside the source tree — `clipvil --version`, the packaged recipes (`clipvil.recipes`), the
tiny encoder configs, `clipvil make-data`, `clipvil extract` and a tiny `clipvil train` of the packaged demo
recipe.

The fresh environment has no pip and no packages of its own: the wheel is installed into it with this
interpreter's pip (`pip --python`, `--no-deps --no-index`), and only afterwards a `.pth` line appends the
project venv's site-packages for torch & co (nothing is downloaded). That line adds a plain path — the
venv's own `.pth` files (its editable clipvil) are not run — and it comes after the new environment's
site-packages, so `import clipvil` is the wheel's: the test checks it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, env=env)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def build_wheel(root: Path, tmp: Path) -> Path:
    """A wheel of the tree at `root`, built from a copy (no build/ or egg-info left in `root`)."""
    src = tmp / "tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(root / "src", src / "src", symlinks=True, ignore=ignore)  # keeps src/clipvil/configs a link
    shutil.copytree(root / "configs", src / "configs", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(root / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src), "-w",
          str(tmp / "dist")], cwd=tmp)
    (wheel,) = (tmp / "dist").glob("clipvil-*.whl")
    return wheel


def install(wheel: Path, tmp: Path) -> Path:
    """A fresh venv holding the wheel, with the project venv's site-packages appended; returns its bin/."""
    env_dir = tmp / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], cwd=tmp)
    python = env_dir / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
          str(wheel)], cwd=tmp)
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).strip()
    (Path(site) / "_project_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir / "bin"


def test_wheel_installs_and_runs_outside_the_tree(tmp_path: Path) -> None:
    wheel = build_wheel(REPO, tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "clipvil/configs/demo/mcan_synthetic.yaml" in names, (
        "the wheel has no recipes: pyproject.toml's [tool.setuptools.package-data] needs \"configs/**/*.yaml\"")
    assert "clipvil/encoders/model_configs/clipvil-rn-tiny.json" in names
    bindir = install(wheel, tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    assert _run([str(bindir / "clipvil"), "--version"], work, env).strip() == "clipvil 0.1.0"
    probe = ("import json, clipvil, clipvil.recipes as r; "
             "print(json.dumps([clipvil.__file__, str(r.find('configs/demo/mcan_synthetic.yaml'))]))")
    where = json.loads(_run([str(bindir / "python"), "-c", probe], work, env))
    site = str(bindir.parent)
    assert all(p.startswith(site) for p in where), f"not the installed wheel: {where}"
    clipvil = str(bindir / "clipvil")
    _run([clipvil, "make-data", "--out", "world", "--images", "16", "--workers", "1"], work, env)
    _run([clipvil, "extract", "--encoder", "clipvil-rn-tiny", "--preset", "views", "--images", "world/coco",
          "--out", "feats", "--no-progress"], work, env)
    result = json.loads(_run([clipvil, "train", where[1], "task.data_dir=world/vqa", "task.features=feats",
                              "out_dir=run", "train.epochs=1", "train.batch_size=8", "train.progress=false",
                              "train.tensorboard=false"], work, env))
    assert result["step"] >= 1 and (work / "run/checkpoints/last.pt").is_file()
    assert os.path.isfile(work / "run/logs/train.jsonl")
