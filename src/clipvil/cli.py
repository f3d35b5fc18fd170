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
    p.add_argument("--resize", default=None, choices=["official", "direct-bicubic"],
                   help="fixed-size presets: official = CLIP-ViL's detectron2 mapper (shortest edge 600 / longest "
                   "<= 1000, then exactly 600x1000, both bilinear; the vqa default), direct-bicubic = one bicubic "
                   "resize")
    p.add_argument("--max-pixels", type=_positive("--max-pixels"), default=89_478_485,
                   help="refuse images with more pixels than this before decoding (decompression-bomb guard; "
                   "default 89,478,485 as PIL)")
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


def _cmd_import_views(args: argparse.Namespace) -> int:
    from clipvil.apps.import_views import run_import_views, summary_dict

    _print_json(summary_dict(run_import_views(Path(args.tsv), _out_dir("--out", args.out), args.encoder, args.batch)))
    return 0


def _add_import_views(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-views", help="import a released view-feature TSV (36 views per viewpoint) into a "
                       "feature store for the VLN task")
    p.add_argument("tsv", help="view-feature TSV (scanId, viewpointId, image_w, image_h, vfov, base64 features)")
    p.add_argument("--out", required=True, help="feature store directory (created, or resumed)")
    p.add_argument("--encoder", default=None, help="encoder label in the provenance (default: the file's stem, "
                   "e.g. CLIP-ViT-B-32-views)")
    p.add_argument("--batch", type=_positive("--batch"), default=256, help="viewpoints per store part (default 256)")
    p.set_defaults(func=_cmd_import_views)


def _cmd_make_nav_world(args: argparse.Namespace) -> int:
    from clipvil.data.synthetic.nav_world import NavWorldSpec, make_nav_world

    spec = NavWorldSpec(seed=args.seed, train_paths=args.train_paths)
    manifest = make_nav_world(_out_dir("--out", args.out), args.connectivity, spec)
    _print_json({"root": args.out, "images": manifest["images"], "counts": manifest["counts"]})
    return 0


def _add_make_nav_world(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-nav-world", help="generate the embedded navigation world (real connectivity graphs, "
                       "synthetic objects, 36 rendered views per viewpoint, R2R/RxR instructions)")
    p.add_argument("--out", required=True, help="output folder (reused when it holds the same world)")
    p.add_argument("--connectivity", default="../shared/data/clip-vil/connectivity",
                   help="folder of the Matterport3D connectivity graphs (default ../shared/data/clip-vil/connectivity)")
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument("--train-paths", type=_positive("--train-paths"), default=60,
                   help="training paths per train scan (default 60)")
    p.set_defaults(func=_cmd_make_nav_world)


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
    if args.checkpoint is None:  # a zero-shot task (retrieval, zeroshot_vqa) with its own task.weights
        from clipvil.apps.zero_shot import evaluate_weights

        extra = [f"task.weights={Path(args.weights).absolute()}"] if args.weights else []
        _print_json(evaluate_weights(load_config(args.config, [*args.overrides, *extra]), splits, args.out))
        return 0
    if args.weights:
        raise ValueError("--weights is for tasks evaluated without a checkpoint; give --checkpoint or --weights")
    _print_json(evaluate(load_config(args.config, args.overrides), args.checkpoint, splits, args.out))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from clipvil.apps.predict import predict_vqa

    weights = [Path(w) for w in args.weights] if args.weights else None
    if getattr(args, "expression", None) is not None:  # grounding: the box of a referring expression
        return _cmd_predict_box(args, weights)
    if args.question is None:  # a captioning checkpoint takes no question (a VQA one refuses: pass --question)
        return _cmd_predict_caption(args, weights)
    result = predict_vqa(args.checkpoint, args.image, args.question, args.top_k, weights)
    for note in result.notes:
        print(f"clipvil predict: note: {note}", file=sys.stderr)
    _print_json([{"answer": a, "score": round(p, 4)} for a, p in result.answers])
    return 0


def _cmd_predict_caption(args: argparse.Namespace, weights: list[Path] | None) -> int:
    from clipvil.apps.predict import predict_caption

    result = predict_caption(args.checkpoint, args.image, args.beam_size, weights)
    _print_json({"caption": result.caption, "score": round(result.score, 4),
                 "beams": [{"caption": c, "score": round(v, 4)} for c, v in result.beams]})
    return 0


def _cmd_predict_box(args: argparse.Namespace, weights: list[Path] | None) -> int:
    from clipvil.apps.ground import predict_box

    result = predict_box(args.checkpoint, args.image, args.expression, args.out, weights)
    for note in result.notes:
        print(f"clipvil predict: note: {note}", file=sys.stderr)
    _print_json({"expression": args.expression, "box_xywh": [round(v, 1) for v in result.box_xywh],
                 "cell_prob": round(result.cell_prob, 4), "out": args.out})
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
    p.add_argument("--checkpoint", default=None, help="a checkpoint file, e.g. <run>/checkpoints/best.pt "
                   "(omitted: the zero-shot tasks evaluate task.weights / --weights)")
    p.add_argument("--weights", default=None, help="zero-shot tasks (retrieval, zeroshot_vqa) without a "
                   "checkpoint: a CLIP weight file (OpenAI .pt archive, open_clip checkpoint); sets task.weights")
    p.add_argument("--split", action="append", default=None,
                   help="task split to evaluate; repeat for several (default: train.eval_splits)")
    p.add_argument("--out", default=None, help="results folder (default <out_dir>/eval/<checkpoint name>/)")
    p.set_defaults(func=_cmd_evaluate)
    p = sub.add_parser("predict", help="top-k answers to a question about one image (from a checkpoint alone)")
    p.add_argument("--checkpoint", required=True, help="a VQA checkpoint (any copy of <run>/checkpoints/best.pt)")
    p.add_argument("--image", required=True, help="image file (JPEG, PNG, ...)")
    p.add_argument("--question", default=None, help="the question, in English (VQA checkpoints)")
    p.add_argument("--expression", default=None, help="grounding checkpoints: a referring expression, e.g. "
                   "'the red circle'; prints its box [x, y, w, h] in pixels")
    p.add_argument("--out", default=None, help="--expression: PNG of the image with the predicted box drawn")
    p.add_argument("--top-k", type=_positive("--top-k"), default=5, help="answers to print (default 5)")
    p.add_argument("--beam-size", type=_positive("--beam-size"), default=None,
                   help="captioning checkpoints (no --question): beam width (default: the recipe's task.beam_size)")
    p.add_argument("--weights", action="append", default=None,
                   help="the encoder weight file the features were made with (repeat for a plugin of two "
                   "encoders); not needed for random weights")
    p.set_defaults(func=_cmd_predict)


def _cmd_score(args: argparse.Namespace) -> int:
    from clipvil.apps.score import GqaFiles, score

    given = {k: Path(getattr(args, k)) for k in ("choices", "all_questions", "attentions", "scene_graphs")
             if getattr(args, k)}
    gqa_files = GqaFiles(**given, map_size=args.map_size, object_features=args.object_features) if given else None
    _print_json(score(args.kind, Path(args.results), [Path(r) for r in args.references],
                      meteor=not args.no_meteor, subset=args.subset, allow_extra=args.allow_extra,
                      gqa_files=gqa_files))
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
    p.add_argument("--allow-extra", action="store_true", help="nlvr2: ignore predictions for examples not in "
                   "the annotations (whole-dev predictions scored on balanced_dev.json)")
    for flag, what in (("--choices", "<split>_choices.json: validity, plausibility"),
                       ("--all-questions", "<split>_all_questions.json (file or folder): consistency (the "
                        + "results must then answer the entailed questions too)"),
                       ("--attentions", "attention maps [{questionId, attention}]: grounding"),
                       ("--scene-graphs", "<split>_sceneGraphs.json: grounding (with --attentions)")):
        p.add_argument(flag, default=None, help=f"gqa: {what}")
    p.add_argument("--map-size", type=_positive("--map-size"), default=7,
                   help="gqa grounding: side of a spatial attention map (default 7)")
    p.add_argument("--object-features", action="store_true",
                   help="gqa grounding: attention rows are [x0, y0, x1, y1, attention] boxes")
    p.set_defaults(func=_cmd_score)


def _cmd_demo(args: argparse.Namespace) -> int:
    from clipvil.apps.demo import DemoConfig, run_demo

    run_demo(DemoConfig(out=_out_dir("--out", args.out), images=args.images, encoder=args.encoder,
                        weights=Path(args.weights) if args.weights else None, overrides=tuple(args.overrides)))
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="synthetic world → small CLIP pre-trained on its captions → grids → MCAN → VQA accuracy vs a random tower and the majority baseline")
    p.add_argument("--out", default="runs/demo", help="folder of everything the demo makes (default runs/demo)")
    p.add_argument("--images", type=_positive("--images"), default=1000, help="synthetic images (default 1000)")
    p.add_argument("--encoder", default="clipvil-vit-tiny", help="the tower: pre-trained here as a small CLIP on "
                   "the world's captions, and with random weights as the baseline (default clipvil-vit-tiny)")
    p.add_argument("--weights", default=None, help="local CLIP weight file of --encoder: used instead of "
                   "pre-training one (default: pre-train)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="optional overrides of configs/demo/mcan_synthetic.yaml")
    p.set_defaults(func=_cmd_demo)



def _cmd_export_clip(args: argparse.Namespace) -> int:
    from clipvil.apps.export_clip import export_clip

    result = export_clip(args.checkpoint, _out_dir("--out", args.out))
    _print_json({"weights": str(result.weights), "config": str(result.config) if result.config else None,
                 "encoder": result.encoder, "task": result.task, "step": result.step})
    return 0


def _add_export_clip(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-clip", help="a clip / classify run's checkpoint -> open_clip weights for "
                       "build_encoder and `clipvil extract --weights`")
    p.add_argument("--checkpoint", required=True, help="<run>/checkpoints/best.pt of a clip or classify run")
    p.add_argument("--out", required=True, help="folder for <arch>.pt + <arch>.json (open_clip's layout)")
    p.set_defaults(func=_cmd_export_clip)


def _cmd_study(args: argparse.Namespace) -> int:
    from clipvil.apps.study import run_study

    report = run_study(args.config)
    print(Path(report["files"]["markdown"]).read_text())
    _print_json(report["files"])
    return 0


def _add_study(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="one task recipe over many encoders x seeds (resumable): table + plot")
    p.add_argument("config", help="study YAML, e.g. configs/study/synthetic_vqa.yaml")
    p.set_defaults(func=_cmd_study)


def _cmd_serve(args: argparse.Namespace) -> int:
    from clipvil.apps.serve import ServeConfig, resolve_checkpoints, run_server

    opt = (lambda v: Path(v) if v else None)
    checkpoints = resolve_checkpoints(opt(args.vqa_checkpoint), opt(args.caption_checkpoint),
                                      opt(args.grounding_checkpoint), Path(args.demo_dir))
    weights = [Path(w) for w in args.weights or ()]
    if not weights and not (args.vqa_checkpoint or args.caption_checkpoint or args.grounding_checkpoint):
        weights = sorted((Path(args.demo_dir) / "clip" / "export").glob("*.pt"))  # the demo's own CLIP weights
    run_server(ServeConfig(checkpoints=checkpoints, weights=tuple(weights),
                           host=args.host, port=args.port, device=args.device, workers=args.workers,
                           queue=args.queue, timeout_s=args.timeout, max_upload_mb=args.max_upload_mb,
                           max_pixels=args.max_pixels, max_question_chars=args.max_question_chars))
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="web demo + JSON API over trained checkpoints (default: the demo's models)")
    p.add_argument("--vqa-checkpoint", default=None, help="VQA checkpoint (default: the demo's, under --demo-dir)")
    p.add_argument("--caption-checkpoint", default=None, help="captioning checkpoint")
    p.add_argument("--grounding-checkpoint", default=None, help="grounding checkpoint")
    p.add_argument("--demo-dir", default="runs/demo", help="where `clipvil demo` wrote its runs, used when no "
                   "checkpoint is given (default runs/demo)")
    p.add_argument("--weights", action="append", default=None, help="encoder weight file the features were "
                   "made with (repeatable; matched to each checkpoint by sha256); not needed for random weights")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_positive("--port"), default=8000, help="TCP port (default 8000)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--workers", type=_positive("--workers"), default=1, help="inference threads (default 1)")
    p.add_argument("--queue", type=int, default=8, help="requests that may wait for a worker; more get 503 "
                   "(default 8)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (504 after; default 30)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest image file (413; default 10)")
    p.add_argument("--max-pixels", type=_positive("--max-pixels"), default=40_000_000,
                   help="largest width x height decoded (422; default 40000000)")
    p.add_argument("--max-question-chars", type=_positive("--max-question-chars"), default=300,
                   help="longest question (422; default 300)")
    p.set_defaults(func=_cmd_serve)


def _cmd_explain(args: argparse.Namespace) -> int:
    from clipvil.apps.explain_cmd import explain, summary

    opt = {k: Path(getattr(args, k)) if getattr(args, k) else None for k in ("image", "images", "checkpoint", "weights")}
    _print_json(summary(explain(out=Path(args.out), question=args.question, answer=args.answer, encoder=args.encoder,
                                text=args.text, method=args.method, preset=args.preset, **opt)))
    return 0


def _add_explain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="Grad-CAM map of a VQA head's answer (or a CLIP image-text match) over an image")
    p.add_argument("--image", default=None, help="one image file (--out: the PNG)")
    p.add_argument("--images", default=None, help="a folder of images (--out: a folder of PNGs + index.html)")
    p.add_argument("--out", required=True, help="PNG file (--image) or folder (--images)")
    p.add_argument("--checkpoint", default=None, help="a VQA checkpoint (maps the logit of its top answer) or a "
                   "captioning one (the log-prob of its own caption, or of --text)")
    p.add_argument("--question", default=None, help="with --checkpoint: the question")
    p.add_argument("--answer", default=None, help="with --checkpoint: map this answer's logit instead of the top one")
    p.add_argument("--encoder", default=None, help="with --text: the CLIP model (RN50, ViT-B-32, ...)")
    p.add_argument("--text", default=None, help="with --encoder: map the image-text cosine of this text")
    p.add_argument("--weights", default=None, help="the encoder weight file (--checkpoint: the one its features "
                   "were made with; --encoder: the CLIP file, text tower included); omitted = random weights")
    p.add_argument("--method", default="gradcam", choices=["gradcam", "hirescam"], help="default gradcam")
    p.add_argument("--preset", default="native", help="with --encoder: input preset (default native: CLIP's own)")
    p.set_defaults(func=_cmd_explain)


def _cmd_localise(args: argparse.Namespace) -> int:
    from clipvil.apps.localise import coco_probes, describe, parse_tower, run_localise, synthetic_probes

    if bool(args.world) == bool(args.instances):
        raise ValueError("give --world DIR (synthetic scenes) or --instances FILE --coco-images DIR")
    if args.instances and not args.coco_images:
        raise ValueError("--instances needs --coco-images (the folder of its images)")
    probes = synthetic_probes(Path(args.world), args.split, args.limit) if args.world else \
        coco_probes(Path(args.instances), Path(args.coco_images), args.limit)
    towers = [parse_tower("vqa", t) for t in args.vqa or []] + [parse_tower("clip", t) for t in args.clip or []]
    result = run_localise(towers, probes, _out_dir("--out", args.out), args.method, args.tolerance, args.examples)
    print(describe(result))
    return 0


def _add_localise(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("localise", help="pointing game + energy in the box of each tower's Grad-CAM maps")
    p.add_argument("--world", default=None, help="a synthetic world (its scenes' boxes)")
    p.add_argument("--split", default="val", help="--world: split of the probes (default val)")
    p.add_argument("--instances", default=None, help="a COCO instances JSON (categories met once per image)")
    p.add_argument("--coco-images", default=None, help="--instances: the folder of its images")
    p.add_argument("--vqa", action="append", help="LABEL=CHECKPOINT[,WEIGHTS]: a VQA head over a tower (repeat)")
    p.add_argument("--clip", action="append", help="LABEL=ENCODER[,WEIGHTS]: a CLIP pair, caption cosine (repeat)")
    p.add_argument("--limit", type=int, default=0, help="first N probes only (0: all)")
    p.add_argument("--method", default="gradcam", choices=["gradcam", "hirescam"], help="default gradcam")
    p.add_argument("--tolerance", type=float, default=0.0, help="pointing game tolerance in pixels (default 0)")
    p.add_argument("--examples", type=int, default=2, help="example maps drawn per tower (default 2)")
    p.add_argument("--out", required=True, help="folder for localisation.json / .md / .png and examples/")
    p.set_defaults(func=_cmd_localise)


def _cmd_card(args: argparse.Namespace) -> int:
    from clipvil import recipes
    from clipvil.apps.card import CardOptions, Gpu, make_card, to_markdown

    gpu = Gpu(args.gpu, args.gpu_tflops * 1e12, args.utilisation)
    card = make_card(recipes.resolve(args.config), args.overrides,
                     CardOptions(gpu=gpu, question_vocab=args.question_vocab))
    if args.json:
        _print_json(card.to_dict())
    else:
        print(to_markdown(card), end="")
    return 0


def _add_card(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("card", help="a recipe's card: parameters, FLOPs, memory, measured step time, GPU-hours, "
                       "data sizes, seeds, the paper's number (Markdown or JSON)")
    p.add_argument("config", help="recipe YAML, or a packaged recipe name (e.g. vqa/movie_mcan_rn50)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="optional overrides of the recipe")
    p.add_argument("--json", action="store_true", help="JSON instead of Markdown")
    p.add_argument("--gpu", default="A100", help="GPU named in the estimate (default A100)")
    p.add_argument("--gpu-tflops", type=float, default=312.0,
                   help="its dense bf16 peak in TFLOP/s (default 312, the A100's)")
    p.add_argument("--utilisation", type=float, default=0.40, help="assumed fraction of the peak (default 0.40)")
    p.add_argument("--question-vocab", type=_positive("--question-vocab"), default=20_000,
                   help="assumed question-word vocabulary (default 20000)")
    p.set_defaults(func=_cmd_card)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipvil", description="CLIP-ViL: CLIP as the visual encoder of V&L models")
    parser.add_argument("--version", action="version", version=f"clipvil {clipvil.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_extract(sub)
    _add_make_data(sub)
    _add_import_views(sub)
    _add_make_nav_world(sub)
    _add_training(sub)
    _add_score(sub)
    _add_demo(sub)
    _add_card(sub)
    _add_export_clip(sub)
    _add_study(sub)
    _add_serve(sub)
    _add_explain(sub)
    _add_localise(sub)
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
