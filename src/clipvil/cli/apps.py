"""Sub-commands that show a model: serve, explain, localise."""

from __future__ import annotations

import argparse
from pathlib import Path

from clipvil.cli.common import directory_option, positive_int, print_json, weights_option


def _cmd_serve(args: argparse.Namespace) -> int:
    from clipvil.apps.serve import ServeConfig, resolve_checkpoints, run_server

    opt = (lambda v: Path(v) if v else None)
    checkpoints = resolve_checkpoints(opt(args.vqa_checkpoint), opt(args.caption_checkpoint),
                                      opt(args.grounding_checkpoint), Path(args.demo_dir))
    from clipvil.encoders.shipped import shipped_names

    weights = [weights_option(w) for w in args.weights or ()]
    if not weights and not (args.vqa_checkpoint or args.caption_checkpoint or args.grounding_checkpoint):
        weights = [weights_option(n) for n in shipped_names()]  # the demo's towers
    run_server(ServeConfig(checkpoints=checkpoints, weights=tuple(weights),
                           host=args.host, port=args.port, device=args.device, workers=args.workers,
                           queue=args.queue, timeout_s=args.timeout, max_upload_mb=args.max_upload_mb,
                           max_pixels=args.max_pixels, max_question_chars=args.max_question_chars))
    return 0


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="web demo + JSON API over trained checkpoints (default: the demo's models)")
    p.add_argument("--vqa-checkpoint", default=None, help="VQA checkpoint (default: the demo's, under --demo-dir)")
    p.add_argument("--caption-checkpoint", default=None, help="captioning checkpoint")
    p.add_argument("--grounding-checkpoint", default=None, help="grounding checkpoint")
    p.add_argument("--demo-dir", default="runs/demo", help="where `clipvil demo` wrote its runs, used when no "
                   "checkpoint is given (default runs/demo)")
    p.add_argument("--weights", action="append", default=None, help="encoder weight file (or shipped tower name) "
                   "the features were made with (repeatable; matched to each checkpoint by sha256); default with no "
                   "checkpoint: the shipped towers; not needed for random weights")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=positive_int("--port"), default=8000, help="TCP port (default 8000)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--workers", type=positive_int("--workers"), default=1, help="inference threads (default 1)")
    p.add_argument("--queue", type=int, default=8, help="requests that may wait for a worker; more get 503 "
                   "(default 8)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (504 after; default 30)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest image file (413; default 10)")
    p.add_argument("--max-pixels", type=positive_int("--max-pixels"), default=40_000_000,
                   help="largest width x height decoded (422; default 40000000)")
    p.add_argument("--max-question-chars", type=positive_int("--max-question-chars"), default=300,
                   help="longest question (422; default 300)")
    p.set_defaults(func=_cmd_serve)


def _cmd_explain(args: argparse.Namespace) -> int:
    from clipvil.apps.explain_cmd import explain, summary

    opt = {k: Path(getattr(args, k)) if getattr(args, k) else None for k in ("image", "images", "checkpoint")}
    opt["weights"] = weights_option(args.weights)
    print_json(summary(explain(out=Path(args.out), question=args.question, answer=args.answer, encoder=args.encoder,
                                text=args.text, method=args.method, preset=args.preset, **opt)))
    return 0


def add_explain(sub: argparse._SubParsersAction) -> None:
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
    out = directory_option("--out", args.out)
    result = run_localise(towers, probes, out, args.method, args.tolerance, args.examples)
    print(describe(result))
    return 0


def add_localise(sub: argparse._SubParsersAction) -> None:
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
