"""Sub-commands that make or score data: extract, make-data, import-views, make-nav-world, score."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clipvil.cli.common import directory_option, positive_int, print_json, weights_option


def _cmd_extract(args: argparse.Namespace) -> int:
    from clipvil.apps.extract import ExtractConfig, run_extract, summary_dict

    cfg = ExtractConfig(
        encoder=args.encoder, images=Path(args.images), out=directory_option("--out", args.out), preset=args.preset,
        weights=weights_option(args.weights), batch_size=args.batch_size,
        forward_batch=args.forward_batch, workers=args.workers,
        dtype=args.dtype, pooled=args.pooled, block=args.block, strict=args.strict, device=args.device,
        progress=not args.no_progress, resize=args.resize, max_pixels=args.max_pixels,
    )
    summary = run_extract(cfg)
    print(json.dumps(summary_dict(summary), indent=2))
    if summary.retried:
        print(f"{summary.retried} image(s) that had failed before were retried", file=sys.stderr)
    if summary.failures_remaining:
        print(f"{summary.failures_remaining} image(s) still fail; see {Path(summary.store) / 'errors.jsonl'} "
              "(a rerun retries them)", file=sys.stderr)
    return 0


def add_extract(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--batch-size", type=positive_int("--batch-size"), default=16,
                   help="images per store part (one atomic write; default 16)")
    p.add_argument("--forward-batch", type=int, default=0, help="images per forward pass (0: auto — 2 on a CPU, "
                   "the whole part on a GPU)")
    p.add_argument("--workers", type=int, default=-1, help="decoding processes (-1: auto — inline on a small "
                   "CPU machine, parallel with a GPU)")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="stored precision")
    p.add_argument("--pooled", action="store_true", help="also store the pooled CLIP embedding")
    p.add_argument("--block", type=int, default=-1, help="ViT: block whose tokens are taken (-1: the last, "
                   "after the final LayerNorm; -2 = penultimate)")
    p.add_argument("--resize", default=None, choices=["official", "direct-bicubic"],
                   help="fixed-size presets: official = CLIP-ViL's detectron2 mapper (shortest edge 600 / longest "
                   "<= 1000, then exactly 600x1000, both bilinear; the vqa default), direct-bicubic = one bicubic "
                   "resize")
    p.add_argument("--max-pixels", type=positive_int("--max-pixels"), default=89_478_485,
                   help="refuse images with more pixels than this before decoding (decompression-bomb guard; "
                   "default 89,478,485 as PIL)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad image")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_extract)


def _cmd_make_data(args: argparse.Namespace) -> int:
    from clipvil.data.synthetic import make_data

    manifest = make_data(directory_option("--out", args.out), args.images, seed=args.seed, difficulty=args.difficulty,
                         image_size=args.image_size, workers=args.workers)
    print_json({"root": str(manifest.root), "counts": manifest.counts})
    return 0


def add_make_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-data", help="generate the synthetic world (images + VQA/GQA/SNLI-VE/COCO/LXMERT files)")
    p.add_argument("--out", required=True, help="output folder (reused when it holds the same world)")
    p.add_argument("--images", type=positive_int("--images"), default=5000, help="number of images (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument("--difficulty", type=float, default=0.5, help="0 (easy) .. 1 (hard), default 0.5")
    p.add_argument("--image-size", type=positive_int("--image-size"), default=224, help="pixels (default 224)")
    p.add_argument("--workers", type=int, default=None, help="generator processes (default: all cores)")
    p.set_defaults(func=_cmd_make_data)


def _cmd_make_corpus(args: argparse.Namespace) -> int:
    from clipvil.data.synthetic.corpus import CorpusSpec, make_corpus

    spec = CorpusSpec(n_images=args.images, val_images=args.val_images, seed=args.seed, size=args.size,
                      shard_size=args.shard_size)
    manifest = make_corpus(directory_option("--out", args.out), spec, workers=args.workers,
                           progress=not args.no_progress)
    print_json({"root": args.out, "splits": manifest["splits"], "classes": len(manifest["classes"]),
                "caption_styles": manifest["caption_styles"], "seconds": manifest["seconds_last_run"]})
    return 0


def add_make_corpus(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-corpus", help="generate the pre-training corpus (\"the web\"): image-caption pairs "
                       "as WebDataset shards, distinct from the downstream worlds")
    p.add_argument("--out", required=True, help="output folder (finished shards are kept: a rerun resumes)")
    p.add_argument("--images", type=positive_int("--images"), default=102_000,
                   help="train + val images (default 102000)")
    p.add_argument("--val-images", type=positive_int("--val-images"), default=2000,
                   help="images of the val split (default 2000)")
    p.add_argument("--seed", type=int, default=1000, help="corpus seed (default 1000)")
    p.add_argument("--size", type=positive_int("--size"), default=160, help="image side in pixels (default 160)")
    p.add_argument("--shard-size", type=positive_int("--shard-size"), default=1000,
                   help="samples per shard (default 1000)")
    p.add_argument("--workers", type=positive_int("--workers"), default=None,
                   help="generator processes (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_make_corpus)


def _cmd_import_views(args: argparse.Namespace) -> int:
    from clipvil.apps.import_views import run_import_views, summary_dict

    out = directory_option("--out", args.out)
    print_json(summary_dict(run_import_views(Path(args.tsv), out, args.encoder, args.batch)))
    return 0


def add_import_views(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-views", help="import a released view-feature TSV (36 views per viewpoint) into a "
                       "feature store for the VLN task")
    p.add_argument("tsv", help="view-feature TSV (scanId, viewpointId, image_w, image_h, vfov, base64 features)")
    p.add_argument("--out", required=True, help="feature store directory (created, or resumed)")
    p.add_argument("--encoder", default=None, help="encoder label in the provenance (default: the file's stem, "
                   "e.g. CLIP-ViT-B-32-views)")
    p.add_argument("--batch", type=positive_int("--batch"), default=256, help="viewpoints per store part (default 256)")
    p.set_defaults(func=_cmd_import_views)


def _cmd_make_nav_world(args: argparse.Namespace) -> int:
    from clipvil.data.synthetic.nav_world import NavWorldSpec, make_nav_world

    spec = NavWorldSpec(seed=args.seed, train_paths=args.train_paths)
    manifest = make_nav_world(directory_option("--out", args.out), args.connectivity, spec)
    print_json({"root": args.out, "images": manifest["images"], "counts": manifest["counts"]})
    return 0


def add_make_nav_world(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-nav-world", help="generate the embedded navigation world (real connectivity graphs, "
                       "synthetic objects, 36 rendered views per viewpoint, R2R/RxR instructions)")
    p.add_argument("--out", required=True, help="output folder (reused when it holds the same world)")
    p.add_argument("--connectivity", default="../shared/data/clip-vil/connectivity",
                   help="folder of the Matterport3D connectivity graphs (default ../shared/data/clip-vil/connectivity)")
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument("--train-paths", type=positive_int("--train-paths"), default=60,
                   help="training paths per train scan (default 60)")
    p.set_defaults(func=_cmd_make_nav_world)


def _cmd_score(args: argparse.Namespace) -> int:
    from clipvil.apps.score import GqaFiles, score

    given = {k: Path(getattr(args, k)) for k in ("choices", "all_questions", "attentions", "scene_graphs")
             if getattr(args, k)}
    gqa_files = GqaFiles(**given, map_size=args.map_size, object_features=args.object_features) if given else None
    print_json(score(args.kind, Path(args.results), [Path(r) for r in args.references],
                      meteor=not args.no_meteor, subset=args.subset, allow_extra=args.allow_extra,
                      gqa_files=gqa_files))
    return 0


def add_score(sub: argparse._SubParsersAction) -> None:
    from clipvil.apps.score import REFERENCES

    p = sub.add_parser("score", help="score an official results file against references (metrics as JSON)",
                       description="references: " + " | ".join(f"{k} {v}" for k, v in REFERENCES.items()))
    p.add_argument("kind", choices=sorted(REFERENCES), help="which benchmark")
    p.add_argument("results", help="results file in the official submission format")
    p.add_argument("references", nargs="+", help="reference file(s), see above")
    p.add_argument("--no-meteor", action="store_true", help="caption: skip METEOR (slow Java start)")
    p.add_argument("--subset", action="store_true",
                   help="score only the questions/images the results cover (default: all must be answered)")
    p.add_argument("--allow-extra", action="store_true", help="nlvr2: ignore predictions for examples not in "
                   "the annotations (whole-dev predictions scored on balanced_dev.json)")
    for flag, what in (("--choices", "<split>_choices.json: validity, plausibility"),
                       ("--all-questions", "<split>_all_questions.json (file or folder): consistency (the "
                        + "results must then answer the entailed questions too)"),
                       ("--attentions", "attention maps [{questionId, attention}]: grounding"),
                       ("--scene-graphs", "<split>_sceneGraphs.json: grounding (with --attentions)")):
        p.add_argument(flag, default=None, help=f"gqa: {what}")
    p.add_argument("--map-size", type=positive_int("--map-size"), default=7,
                   help="gqa grounding: side of a spatial attention map (default 7)")
    p.add_argument("--object-features", action="store_true",
                   help="gqa grounding: attention rows are [x0, y0, x1, y1, attention] boxes")
    p.set_defaults(func=_cmd_score)
