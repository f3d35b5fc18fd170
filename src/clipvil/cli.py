"""`clipvil ...`: parse, build, call. One small function per sub-command; the work lives in the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import clipvil


def _print_json(payload: object) -> None:
    print(json.dumps(payload, indent=2, default=float))


def _positive(name: str):  # -> a type= callable for argparse naming the option in its error
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be >= 1, got {value}")
        return value

    return parse


def _out_dir(option: str, path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{option} {path}: exists and is not a directory")
    return out


def _cmd_extract(args: argparse.Namespace) -> int:
    from clipvil.apps.extract import ExtractConfig, run_extract, summary_dict

    cfg = ExtractConfig(
        encoder=args.encoder, images=Path(args.images), out=_out_dir("--out", args.out), preset=args.preset,
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
                   "imagenet-rn50, or any open_clip model name (e.g. ViT-B-32-quickgelu)")
    p.add_argument("--weights", help="local weight file (OpenAI .pt archive, open_clip .pt/.bin/.safetensors, "
                   "timm file); omitted = random weights")
    p.add_argument("--preset", default="vqa", choices=["vqa", "caption", "pretrain", "views", "native"],
                   help="input preset: vqa = 600x1000 (18x31 grid, the paper's VQA runs), caption = 448x448, "
                   "pretrain = shorter side 384 / longer <= 640 padded, views = 224 center crop, native = the "
                   "model's own size (default: vqa)")
    p.add_argument("--images", required=True, help="image directory (recursive) or a list file of paths")
    p.add_argument("--out", required=True, help="feature store directory (created, or resumed)")
    p.add_argument("--batch-size", type=_positive("--batch-size"), default=16,
                   help="images per store part (one atomic write; default 16)")
    p.add_argument("--forward-batch", type=int, default=0, help="images per forward pass (0: auto — 2 on a CPU, "
                   "the whole part on a GPU)")
    p.add_argument("--workers", type=int, default=-1, help="decoding processes (-1: auto — inline on a small "
                   "CPU machine, parallel with a GPU)")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="stored precision")
    p.add_argument("--pooled", action="store_true", help="also store the pooled CLIP embedding")
    p.add_argument("--block", type=int, default=-1, help="ViT: block whose tokens are taken (-1: the last, "
                   "after the final LayerNorm; -2 = penultimate)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad image")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_extract)


def _cmd_make_data(args: argparse.Namespace) -> int:
    from clipvil.data.synthetic import make_data

    manifest = make_data(_out_dir("--out", args.out), args.images, seed=args.seed, difficulty=args.difficulty,
                         image_size=args.image_size, workers=args.workers)
    _print_json({"root": str(manifest.root), "counts": manifest.counts})
    return 0


def _add_make_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-data", help="generate the synthetic world (images + VQA/GQA/SNLI-VE/COCO/LXMERT files)")
    p.add_argument("--out", required=True, help="output folder (reused when it holds the same world)")
    p.add_argument("--images", type=_positive("--images"), default=5000, help="number of images (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument("--difficulty", type=float, default=0.5, help="0 (easy) .. 1 (hard), default 0.5")
    p.add_argument("--image-size", type=_positive("--image-size"), default=224, help="pixels (default 224)")
    p.add_argument("--workers", type=int, default=None, help="generator processes (default: all cores)")
    p.set_defaults(func=_cmd_make_data)


def _cmd_train(args: argparse.Namespace) -> int:
    from clipvil.train import load_config, train

    cfg = load_config(args.config, args.overrides)
    _out_dir("out_dir", cfg.out_dir)
    result = train(cfg)
    _print_json({"out_dir": str(result.out_dir), "step": result.step, "best": result.best_value,
                 "best_checkpoint": str(result.best_checkpoint), "last_eval": result.last_eval})
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from clipvil.train import evaluate, load_config

    splits = args.split if args.split is None or len(args.split) > 1 else args.split[0]
    _print_json(evaluate(load_config(args.config, args.overrides), args.checkpoint, splits, args.out))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from clipvil.apps.predict import predict_vqa

    weights = [Path(w) for w in args.weights] if args.weights else None
    result = predict_vqa(args.checkpoint, args.image, args.question, args.top_k, weights)
    for note in result.notes:
        print(f"clipvil predict: note: {note}", file=sys.stderr)
    _print_json([{"answer": a, "score": round(p, 4)} for a, p in result.answers])
    return 0


def _add_training(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a task from a YAML recipe (resumes from the run's last checkpoint)")
    p.add_argument("config", help="recipe YAML, e.g. configs/vqa/mcan_rn50.yaml")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="optional overrides of the recipe, e.g. train.batch_size=32 optim.lr=5e-5")
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("evaluate", help="evaluate a checkpoint: metrics JSON + official results file per split")
    p.add_argument("config", help="the recipe (or the run's saved config.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="optional overrides of the recipe")
    p.add_argument("--checkpoint", required=True, help="a checkpoint file, e.g. <run>/checkpoints/best.pt")
    p.add_argument("--split", action="append", default=None,
                   help="task split to evaluate; repeat for several (default: train.eval_splits)")
    p.add_argument("--out", default=None, help="results folder (default <out_dir>/eval/<checkpoint name>/)")
    p.set_defaults(func=_cmd_evaluate)
    p = sub.add_parser("predict", help="top-k answers to a question about one image (from a checkpoint alone)")
    p.add_argument("--checkpoint", required=True, help="a VQA checkpoint (any copy of <run>/checkpoints/best.pt)")
    p.add_argument("--image", required=True, help="image file (JPEG, PNG, ...)")
    p.add_argument("--question", required=True, help="the question, in English")
    p.add_argument("--top-k", type=_positive("--top-k"), default=5, help="answers to print (default 5)")
    p.add_argument("--weights", action="append", default=None,
                   help="the encoder weight file the features were made with (repeat for a plugin of two "
                   "encoders); not needed for random weights")
    p.set_defaults(func=_cmd_predict)


def _cmd_score(args: argparse.Namespace) -> int:
    from clipvil.apps.score import score

    _print_json(score(args.kind, Path(args.results), [Path(r) for r in args.references],
                      meteor=not args.no_meteor, subset=args.subset))
    return 0


def _add_score(sub: argparse._SubParsersAction) -> None:
    from clipvil.apps.score import REFERENCES

    p = sub.add_parser("score", help="score an official results file against references (metrics as JSON)",
                       description="references: " + " | ".join(f"{k} {v}" for k, v in REFERENCES.items()))
    p.add_argument("kind", choices=sorted(REFERENCES), help="which benchmark")
    p.add_argument("results", help="results file in the official submission format")
    p.add_argument("references", nargs="+", help="reference file(s), see above")
    p.add_argument("--no-meteor", action="store_true", help="caption: skip METEOR (slow Java start)")
    p.add_argument("--subset", action="store_true",
                   help="score only the questions/images the results cover (default: all must be answered)")
    p.set_defaults(func=_cmd_score)


def _cmd_demo(args: argparse.Namespace) -> int:
    from clipvil.apps.demo import DemoConfig, run_demo

    run_demo(DemoConfig(out=_out_dir("--out", args.out), images=args.images, encoder=args.encoder,
                        weights=Path(args.weights) if args.weights else None, overrides=tuple(args.overrides)))
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="synthetic world → CLIP grids → MCAN → VQA accuracy vs the majority baseline")
    p.add_argument("--out", default="runs/demo", help="folder of everything the demo makes (default runs/demo)")
    p.add_argument("--images", type=_positive("--images"), default=1000, help="synthetic images (default 1000)")
    p.add_argument("--encoder", default="ViT-B-32", help="CLIP tower (default ViT-B-32)")
    p.add_argument("--weights", default=None, help="local CLIP weight file (default: random weights)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="optional overrides of configs/demo/mcan_synthetic.yaml")
    p.set_defaults(func=_cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipvil", description="CLIP-ViL: CLIP as the visual encoder of V&L models")
    parser.add_argument("--version", action="version", version=f"clipvil {clipvil.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_extract(sub)
    _add_make_data(sub)
    _add_training(sub)
    _add_score(sub)
    _add_demo(sub)
    return parser


# a user's mistake (bad file, option, config, data): one line, no traceback
USER_ERRORS = (ValueError, KeyError, OSError, RuntimeError, FloatingPointError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="[clipvil] %(message)s")
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"clipvil {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
