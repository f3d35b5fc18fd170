"""`clipvil ...`: parse, build, call. One small function per sub-command; the work lives in the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from clipvil.encoders.extract import ExtractConfig, run_extract, summary_dict


def _cmd_extract(args: argparse.Namespace) -> int:
    cfg = ExtractConfig(
        encoder=args.encoder, images=Path(args.images), out=Path(args.out), preset=args.preset,
        weights=Path(args.weights) if args.weights else None, batch_size=args.batch_size, workers=args.workers,
        dtype=args.dtype, pooled=args.pooled, block=args.block, strict=args.strict, device=args.device,
        progress=not args.no_progress,
    )
    summary = run_extract(cfg)
    print(json.dumps(summary_dict(summary), indent=2))
    if summary.failed:
        print(f"{summary.failed} image(s) failed; see {Path(summary.store) / 'errors.jsonl'}", file=sys.stderr)
    return 0


def _add_extract(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="extract CLIP grid features of images into an HDF5 feature store")
    p.add_argument("--encoder", required=True, help="RN50, RN101, RN50x4, RN50x16, ViT-B-32, ViT-B-16, ViT-L-14, "
                   "imagenet-rn50, or any open_clip model name")
    p.add_argument("--weights", help="local weight file (OpenAI .pt archive, open_clip .pt/.bin/.safetensors, "
                   "timm file); omitted = random weights")
    p.add_argument("--preset", default="vqa", choices=["vqa", "caption", "pretrain", "views", "native"])
    p.add_argument("--images", required=True, help="image directory (recursive) or list file")
    p.add_argument("--out", required=True, help="feature store directory (created, or resumed)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2, help="decoding processes")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    p.add_argument("--pooled", action="store_true", help="also store the pooled CLIP embedding")
    p.add_argument("--block", type=int, default=-1, help="ViT: block whose tokens are taken (-2 = penultimate)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad image")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_extract)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipvil", description="CLIP-ViL: CLIP as the visual encoder of V&L models")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_extract(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="[clipvil] %(message)s")
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"clipvil {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
