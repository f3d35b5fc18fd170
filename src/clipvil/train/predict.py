"""Answering one question about one image with a trained VQA run: image → encoder → grid → head → top-k.

The run directory holds everything needed: config.yaml (task settings), the vocabularies, the checkpoint,
and the feature store's provenance names the encoder, its weights' sha256 and the preset the head was
trained on — so the image is encoded exactly as the training grids were.
"""

from __future__ import annotations

from pathlib import Path

import torch

from clipvil.encoders import build_encoder, get_preset, load_image, prepare
from clipvil.encoders.weights import WeightsError, sha256_file
from clipvil.train import checkpoint as ckpt
from clipvil.train.config import load_config
from clipvil.train.distributed import pick_device
from clipvil.train.evaluation import build_model, build_task


def predict_vqa(
    checkpoint: str | Path, image: str | Path, question: str, k: int = 5, weights: str | Path | None = None
) -> list[tuple[str, float]]:
    """Top-k (answer, probability) for `question` about `image`, from a run's checkpoint
    (<run>/checkpoints/best.pt or last.pt). `weights`: the encoder's weight file when it was not random."""
    checkpoint = Path(checkpoint)
    run_dir = checkpoint.parent.parent
    cfg = load_config(run_dir / "config.yaml")
    device = pick_device("auto")
    task = build_task(cfg, device)
    model = build_model(task, cfg.train.seed, device)
    ckpt.load_model_state(model, ckpt.load_checkpoint(checkpoint, map_location=device)["model"], checkpoint)
    model.eval()
    prov = task.store.provenance  # type: ignore[attr-defined]
    if not str(prov["weights_sha256"]).startswith("random") and weights is None:
        raise WeightsError(f"{task.store.root}: features were made with weights sha256 "  # type: ignore[attr-defined]
                           f"{prov['weights_sha256'][:12]}…; pass the same file with --weights")
    if weights is not None and sha256_file(weights) != prov["weights_sha256"]:
        raise WeightsError(f"{weights}: not the weight file the training features were made with")
    encoder = build_encoder(prov["encoder"], weights, block=int(prov.get("block", -1)))
    encoder.to(device)  # type: ignore[attr-defined]
    prepared = prepare(load_image(image), get_preset(prov["preset"]), encoder.mean, encoder.std, encoder.native_size)
    with torch.inference_mode():
        grid = encoder(prepared.pixels[None].to(device), [prepared.content_hw])
        tokens = torch.tensor([task.questions.encode(question)], device=device)  # type: ignore[attr-defined]
        return task.predict(model, {"grid": grid, "tokens": tokens}, k)[0]  # type: ignore[attr-defined]
