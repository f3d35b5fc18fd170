"""Sub-commands around training runs: train, evaluate, predict, demo, export-clip, study, card."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clipvil.cli.common import directory_option, positive_int, print_json, weights_option


def _cmd_train(args: argparse.Namespace) -> int:
    from clipvil.engine import load_config, train

    cfg = load_config(args.config, args.overrides)
    directory_option("out_dir", cfg.out_dir)
    result = train(cfg)
    print_json({"out_dir": str(result.out_dir), "step": result.step, "best": result.best_value,
                 "best_checkpoint": str(result.best_checkpoint), "last_eval": result.last_eval})
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from clipvil.engine import evaluate, load_config

    splits = args.split if args.split is None or len(args.split) > 1 else args.split[0]
    if args.checkpoint is None:  # a zero-shot task (retrieval, zeroshot_vqa) with its own task.weights
        from clipvil.apps.zero_shot import evaluate_weights

        extra = [f"task.weights={weights_option(args.weights).absolute()}"] if args.weights else []  # type: ignore[union-attr]
        print_json(evaluate_weights(load_config(args.config, [*args.overrides, *extra]), splits, args.out))
        return 0
    if args.weights:
        raise ValueError("--weights is for tasks evaluated without a checkpoint; give --checkpoint or --weights")
    print_json(evaluate(load_config(args.config, args.overrides), args.checkpoint, splits, args.out))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from clipvil.apps.predict import predict_vqa

    weights = [weights_option(w) for w in args.weights] if args.weights else None
    if getattr(args, "expression", None) is not None:  # grounding: the box of a referring expression
        return _cmd_predict_box(args, weights)
    if args.question is None:  # a captioning checkpoint takes no question (a VQA one refuses: pass --question)
        return _cmd_predict_caption(args, weights)
    result = predict_vqa(args.checkpoint, args.image, args.question, args.top_k, weights)
    for note in result.notes:
        print(f"clipvil predict: note: {note}", file=sys.stderr)
    print_json([{"answer": a, "score": round(p, 4)} for a, p in result.answers])
    return 0


def _cmd_predict_caption(args: argparse.Namespace, weights: list[Path] | None) -> int:
    from clipvil.apps.predict import predict_caption

    result = predict_caption(args.checkpoint, args.image, args.beam_size, weights)
    print_json({"caption": result.caption, "score": round(result.score, 4),
                 "beams": [{"caption": c, "score": round(v, 4)} for c, v in result.beams]})
    return 0


def _cmd_predict_box(args: argparse.Namespace, weights: list[Path] | None) -> int:
    from clipvil.apps.ground import predict_box

    result = predict_box(args.checkpoint, args.image, args.expression, args.out, weights)
    for note in result.notes:
        print(f"clipvil predict: note: {note}", file=sys.stderr)
    print_json({"expression": args.expression, "box_xywh": [round(v, 1) for v in result.box_xywh],
                 "cell_prob": round(result.cell_prob, 4), "out": args.out})
    return 0


def add_training(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--top-k", type=positive_int("--top-k"), default=5, help="answers to print (default 5)")
    p.add_argument("--beam-size", type=positive_int("--beam-size"), default=None,
                   help="captioning checkpoints (no --question): beam width (default: the recipe's task.beam_size)")
    p.add_argument("--weights", action="append", default=None,
                   help="the encoder weight file the features were made with (repeat for a plugin of two "
                   "encoders); not needed for random weights")
    p.set_defaults(func=_cmd_predict)


def _cmd_demo(args: argparse.Namespace) -> int:
    from clipvil.apps.demo import DEMO_OVERRIDES, DemoConfig, run_demo

    run_demo(DemoConfig(out=directory_option("--out", args.out), images=args.images, encoder=args.encoder,
                        weights=args.weights, imagenet_weights=args.imagenet_weights,
                        seeds=tuple(args.seeds), jobs=args.jobs, probe=not args.no_probe, seed=args.world_seed,
                        overrides=(*DEMO_OVERRIDES, *args.overrides)))
    return 0


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="synthetic world -> grids of the shipped CLIP, ImageNet-style and random "
                       "towers -> MCAN (3 seeds each) -> VQA accuracy per question type + linear probes")
    p.add_argument("--out", default="runs/demo", help="folder of everything the demo makes (default runs/demo)")
    p.add_argument("--images", type=positive_int("--images"), default=1000, help="synthetic images (default 1000)")
    p.add_argument("--encoder", default="clipvil-vit-tiny", help="the architecture of the three towers "
                   "(default clipvil-vit-tiny; clipvil-rn-tiny also ships its towers)")
    p.add_argument("--weights", default=None, help="the CLIP row's weights: a local CLIP file of --encoder or a "
                   "shipped name (default: the shipped CLIP of --encoder)")
    p.add_argument("--imagenet-weights", default=None, help="the ImageNet-style row's weights (default: the "
                   "shipped one of --encoder; none when --weights names a foreign CLIP)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    p.add_argument("--jobs", type=positive_int("--jobs"), default=2, help="trainings at a time (default 2)")
    p.add_argument("--world-seed", type=int, default=0, help="seed of the synthetic world (default 0; another "
                   "seed checks that a result is not the world's)")
    p.add_argument("--no-probe", action="store_true", help="skip the linear probes")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="overrides of configs/demo/mcan_synthetic.yaml (after the demo's own "
                   "train.epochs=4 schedule.milestones=[3], which fit its time budget)")
    p.set_defaults(func=_cmd_demo)



def _cmd_export_clip(args: argparse.Namespace) -> int:
    from clipvil.apps.export_clip import export_clip

    result = export_clip(args.checkpoint, directory_option("--out", args.out))
    print_json({"weights": str(result.weights), "config": str(result.config) if result.config else None,
                 "encoder": result.encoder, "task": result.task, "step": result.step})
    return 0


def add_export_clip(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-clip", help="a clip / classify run's checkpoint -> open_clip weights for "
                       "build_encoder and `clipvil extract --weights`")
    p.add_argument("--checkpoint", required=True, help="<run>/checkpoints/best.pt of a clip or classify run")
    p.add_argument("--out", required=True, help="folder for <arch>.pt + <arch>.json (open_clip's layout)")
    p.set_defaults(func=_cmd_export_clip)


def _cmd_ship_tower(args: argparse.Namespace) -> int:
    from clipvil.apps.ship_tower import ship_tower

    result = ship_tower(Path(args.checkpoint), args.name, args.recipe, Path(args.corpus),
                        directory_option("--out", args.out))
    rec = result.record
    print_json({"weights": str(result.weights), "provenance": str(result.provenance), "sha256": rec["sha256"],
                "steps": rec["steps"], "val": rec["val"]})
    return 0


def add_ship_tower(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ship-tower", help="a clip / classify run on the corpus -> a reference tower (fp16 "
                       "safetensors + provenance) that loads by short name")
    p.add_argument("--checkpoint", required=True, help="<run>/checkpoints/last.pt of a clip or classify run")
    p.add_argument("--name", required=True, help="short name, e.g. clip-vit-tiny")
    p.add_argument("--recipe", required=True, help="the recipe it was trained with (recorded)")
    p.add_argument("--corpus", required=True, help="the corpus folder it was trained on (holds corpus.json)")
    p.add_argument("--out", required=True, help="folder for <name>.safetensors + <name>.json")
    p.set_defaults(func=_cmd_ship_tower)


def _cmd_study(args: argparse.Namespace) -> int:
    from clipvil import recipes
    from clipvil.apps.study import run_study

    only = [n for n in args.only.split(",") if n] if args.only else None
    report = run_study(recipes.resolve(args.config), only=only)
    print(Path(report["files"]["markdown"]).read_text())
    print_json(report["files"])
    return 0


def add_study(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="one task recipe over many encoders x seeds (resumable): table + plot")
    p.add_argument("config", help="study YAML, or a packaged study name (e.g. study/navworld_vln)")
    p.add_argument("--only", default=None, metavar="NAMES",
                   help="run only these encoders' cells (comma-separated row names); the report covers every "
                        "finished cell (two processes may take different rows of one study)")
    p.set_defaults(func=_cmd_study)


def _float_in(name: str, low: float, high: float | None = None):  # -> type= for argparse: low < x (<= high)
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not value > low or (high is not None and not value <= high):
            rule = f"in ({low:g}, {high:g}]" if high is not None else f"> {low:g}"
            raise argparse.ArgumentTypeError(f"{name} must be {rule}, got {text}")
        return value

    return parse


def _device(text: str) -> str:  # --device: cpu, cuda or cuda:N
    kind, sep, index = text.partition(":")
    if text == "cpu" or (kind == "cuda" and (not sep or index.isdigit())):
        return text
    raise argparse.ArgumentTypeError(f"--device must be cpu, cuda or cuda:N (N a device index), got {text!r}")


def _cmd_card(args: argparse.Namespace) -> int:
    import torch

    from clipvil import recipes
    from clipvil.apps.card import CardOptions, make_card, to_markdown
    from clipvil.apps.card_parts import known_gpu

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: no CUDA device is available here")
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = known_gpu(args.gpu, args.gpu_tflops, args.utilisation)
    card = make_card(recipes.resolve(args.config), args.overrides,
                     CardOptions(gpu=gpu, question_vocab=args.question_vocab, device=args.device), name=args.config)
    if args.json:
        print_json(card.to_dict())
    else:
        print(to_markdown(card), end="")
    return 0


def add_card(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("card", help="a recipe's card: parameters, FLOPs, memory, measured step time, GPU-hours, "
                       "data sizes, seeds, the paper's number (Markdown or JSON)")
    p.add_argument("config", help="recipe YAML, or a packaged recipe name (e.g. vqa/movie_mcan_rn50)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="optional overrides of the recipe")
    p.add_argument("--json", action="store_true", help="JSON instead of Markdown")
    p.add_argument("--device", type=_device, default="cpu",
                   help="where the seconds are measured: cpu (default), cuda, cuda:1 ...")
    p.add_argument("--threads", type=positive_int("--threads"), default=None,
                   help="torch CPU threads while measuring (default: torch's; 1 is robust on a busy machine)")
    p.add_argument("--gpu", default="A100", help="GPU named in the estimate (default A100): a GPU whose dense peak "
                   "the card knows (A100, H100, ...; an unknown name lists them), or any name with --gpu-tflops")
    p.add_argument("--gpu-tflops", type=_float_in("--gpu-tflops", 0.0), default=None,
                   help="its dense peak in TFLOP/s, overriding the known one (default: --gpu's, e.g. 312 for A100)")
    p.add_argument("--utilisation", type=_float_in("--utilisation", 0.0, 1.0), default=0.40,
                   help="assumed fraction of the peak, in (0, 1] (default 0.40)")
    p.add_argument("--question-vocab", type=positive_int("--question-vocab"), default=20_000,
                   help="assumed question-word vocabulary (default 20000)")
    p.set_defaults(func=_cmd_card)
