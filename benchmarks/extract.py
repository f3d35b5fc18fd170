"""Grid-extraction throughput: clipvil's batched store writer vs the official code's per-image path.

Side by side in one run, on the same images, for RN50 and ViT-B/32 at 448x448 (the captioning preset):
- official: one image at a time, fp32, no batching, decode/resize in the main thread, features saved per
  image (np.save + np.savez_compressed, as CLIP-ViL's clip_prepro_feats.py does);
- clipvil: `run_extract` (DataLoader decoding workers, batches, one HDF5 part per batch, fp16 store).
Also the achieved GFLOP/s of our path against a matmul peak measured in the same run.

    .venv/bin/python benchmarks/extract.py --images 48 --out benchmarks/results/extract.json
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import count_flops, matmul_peak_gflops, write_json
from clipvil.apps.extract import ExtractConfig, run_extract
from clipvil.encoders import build_encoder, get_preset, prepare

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_images(folder: Path, n: int) -> list[Path]:
    """n image files copied round-robin from the real images in ../shared/data."""
    sources = sorted(SHARED.glob("allennlp-models/images/*/*.jpg")) + [SHARED / "hf-tests-samples/000000039769.png"]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        src = sources[i % len(sources)]
        dst = folder / f"img{i:05d}{src.suffix}"
        shutil.copy(src, dst)
        out.append(dst)
    return out


def official_path(name: str, files: list[Path], out_dir: Path) -> float:
    """Seconds for the official per-image loop: decode, resize, normalise, forward one image, save two files."""
    enc = build_encoder(name)
    preset = get_preset("caption")
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with torch.no_grad():
        for f in files:
            img = Image.open(f).convert("RGB")
            x = prepare(img, preset, enc.mean, enc.std).pixels[None]  # [1, 3, 448, 448]
            grid = enc(x, pooled=True)  # the official RN path also ran the attention pool (fc features)
            np.save(out_dir / f"{f.stem}_fc.npy", grid.pooled[0].numpy())
            np.savez_compressed(out_dir / f"{f.stem}_att.npz", feat=grid.feats[0].reshape(14, 14, -1).numpy())
    return time.perf_counter() - start


def ours(name: str, image_dir: Path, out: Path, batch: int, workers: int) -> float:
    """Seconds of clipvil's extraction loop (decode, forward, store), model construction excluded as above."""
    cfg = ExtractConfig(encoder=name, images=image_dir, out=out, preset="caption", batch_size=batch,
                        workers=workers, progress=False)
    summary = run_extract(cfg)
    assert summary.failed == 0
    return summary.seconds


def flops_per_image(name: str) -> int:
    enc = build_encoder(name)
    x = torch.randn(2, 3, 448, 448)
    with torch.inference_mode():
        return count_flops(lambda: enc(x)) // 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=-1, help="decoding processes (-1: clipvil's auto choice)")
    ap.add_argument("--encoders", nargs="+", default=["RN50", "ViT-B-32"])
    ap.add_argument("--out", default="benchmarks/results/extract.json")
    args = ap.parse_args()
    peak = matmul_peak_gflops()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = make_images(Path(tmp) / "images", args.images)
        for name in args.encoders:
            ours(name, Path(tmp) / "images", Path(tmp) / f"warm-{name}", args.batch, args.workers)  # warm-up
            t_off = official_path(name, files, Path(tmp) / f"official-{name}")
            t_ours = ours(name, Path(tmp) / "images", Path(tmp) / f"store-{name}", args.batch, args.workers)
            fl = flops_per_image(name)
            ips_ours, ips_off = args.images / t_ours, args.images / t_off
            results[name] = {
                "official_images_per_s": round(ips_off, 3), "clipvil_images_per_s": round(ips_ours, 3),
                "speedup": round(ips_ours / ips_off, 2), "gflop_per_image": round(fl / 1e9, 2),
                "clipvil_gflops": round(ips_ours * fl / 1e9, 1),
                "fraction_of_matmul_peak": round(ips_ours * fl / 1e9 / peak, 3),
            }
    write_json(args.out, {"benchmark": "extract", "input": "448x448 (caption preset)", "images": args.images,
                          "batch": args.batch, "workers": args.workers, "matmul_peak_gflops": round(peak, 1),
                          "results": results})


if __name__ == "__main__":
    main()
