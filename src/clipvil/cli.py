"""`clipvil ...`: parse, build, call. One small function per sub-command; the work lives in the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from clipvil.encoders.extract import ExtractConfig, run_extract, summary_dict


def _print_json(payload: object) -> None:
    print(json.dumps(payload, indent=2, default=float))


def _cmd_extract(args: argparse.Namespace) -> int:
    cfg = ExtractConfig(
        encoder=args.encoder, images=Path(args.images), out=Path(args.out), preset=args.preset,
        weights=Path(args.weights) if args.weights else None, batch_size=args.batch_size,
        forward_batch=args.forward_batch, workers=args.workers,
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
    p.add_argument("--batch-size", type=int, default=16, help="images per store part (one atomic write)")
    p.add_argument("--forward-batch", type=int, default=0, help="images per forward pass (0: auto — 2 on a CPU, "
                   "the whole part on a GPU)")
    p.add_argument("--workers", type=int, default=-1, help="decoding processes (-1: auto — inline on a small "
                   "CPU machine, parallel with a GPU)")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    p.add_argument("--pooled", action="store_true", help="also store the pooled CLIP embedding")
    p.add_argument("--block", type=int, default=-1, help="ViT: block whose tokens are taken (-2 = penultimate)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad image")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_extract)


def _cmd_make_data(args: argparse.Namespace) -> int:
    from clipvil.data.synthetic import make_data

    manifest = make_data(args.out, args.images, seed=args.seed, difficulty=args.difficulty,
                         image_size=args.image_size, workers=args.workers)
    _print_json({"root": str(manifest.root), "counts": manifest.counts})
    return 0


def _add_make_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-data", help="generate the synthetic world (images + VQA/GQA/SNLI-VE/COCO/LXMERT files)")
    p.add_argument("--out", required=True, help="output folder (reused when it holds the same world)")
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficulty", type=float, default=0.5, help="0 (easy) .. 1 (hard)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--workers", type=int, default=None, help="generator processes (default: all cores)")
    p.set_defaults(func=_cmd_make_data)


def _cmd_train(args: argparse.Namespace) -> int:
    from clipvil.train import load_config, train

    result = train(load_config(args.config, args.overrides))
    _print_json({"out_dir": str(result.out_dir), "step": result.step, "best": result.best_value,
                 "best_checkpoint": str(result.best_checkpoint), "last_eval": result.last_eval})
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from clipvil.train import evaluate, load_config

    _print_json(evaluate(load_config(args.config, args.overrides), args.checkpoint, args.split))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from clipvil.train.predict import predict_vqa

    top = predict_vqa(args.checkpoint, args.image, args.question, args.top_k, args.weights)
    _print_json([{"answer": a, "score": round(p, 4)} for a, p in top])
    return 0


def _add_training(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a task from a YAML recipe (resumes from the run's last checkpoint)")
    p.add_argument("config", help="recipe YAML, e.g. configs/vqa/mcan_rn50.yaml")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.batch_size=32")
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("evaluate", help="evaluate a checkpoint: metrics JSON + official results file")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default=None, help="task split (default: train.eval_split)")
    p.set_defaults(func=_cmd_evaluate)
    p = sub.add_parser("predict", help="top-k answers to a question about one image")
    p.add_argument("--checkpoint", required=True, help="<run>/checkpoints/best.pt")
    p.add_argument("--image", required=True)
    p.add_argument("--question", required=True)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--weights", default=None, help="the encoder weight file the features were made with")
    p.set_defaults(func=_cmd_predict)


def _cmd_score(args: argparse.Namespace) -> int:
    from clipvil.tasks import scoring

    refs = [Path(r) for r in args.references]
    need = {"vqa": 2, "gqa": 1, "snli-ve": 1, "caption": 1, "r2r": 2}[args.kind]
    if len(refs) != need:
        raise ValueError(f"score {args.kind} takes {need} reference path(s), got {len(refs)} (see --help)")
    results = Path(args.results)
    scores = {
        "vqa": lambda: scoring.score_vqa(results, refs[0], refs[1]),
        "gqa": lambda: scoring.score_gqa(results, refs[0]),
        "snli-ve": lambda: scoring.score_snli_ve(results, refs[0]),
        "caption": lambda: scoring.score_caption(results, refs[0], meteor=not args.no_meteor),
        "r2r": lambda: scoring.score_r2r(results, refs[0], refs[1]),
    }[args.kind]()
    _print_json(scores)
    return 0


def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score an official results file against references (metrics as JSON)",
                       description="references: vqa ANNOTATIONS QUESTIONS | gqa QUESTIONS | snli-ve PAIRS.jsonl | "
                       "caption COCO_CAPTIONS.json | r2r R2R_SPLIT.json CONNECTIVITY_DIR")
    p.add_argument("kind", choices=["vqa", "gqa", "snli-ve", "caption", "r2r"])
    p.add_argument("results", help="results file in the official submission format")
    p.add_argument("references", nargs="+")
    p.add_argument("--no-meteor", action="store_true", help="caption: skip METEOR (slow Java start)")
    p.set_defaults(func=_cmd_score)


def _cmd_demo(args: argparse.Namespace) -> int:
    from clipvil.train.demo import DemoConfig, run_demo

    run_demo(DemoConfig(out=Path(args.out), images=args.images, encoder=args.encoder,
                        weights=Path(args.weights) if args.weights else None, overrides=tuple(args.overrides)))
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="synthetic world → CLIP grids → MCAN → VQA accuracy vs the majority baseline")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--encoder", default="ViT-B-32")
    p.add_argument("--weights", default=None, help="local CLIP weight file (default: random weights)")
    p.add_argument("overrides", nargs="*", help="overrides of configs/demo/mcan_synthetic.yaml")
    p.set_defaults(func=_cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipvil", description="CLIP-ViL: CLIP as the visual encoder of V&L models")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_extract(sub)
    _add_make_data(sub)
    _add_training(sub)
    _add_score(sub)
    _add_demo(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="[clipvil] %(message)s")
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError, RuntimeError, FloatingPointError) as err:
        print(f"clipvil {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
