"""`clipvil explain`: Grad-CAM of a trained VQA head's answer through the tower, CLIP image–text maps, folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from clipvil.apps.explain_cmd import (
    explain,
    explain_image,
    load_clip_pair,
    load_vqa_head,
    text_scorer,
    vqa_scorer,
)
from clipvil.apps.predict import predict_caption, predict_vqa
from clipvil.cli import main
from clipvil.encoders import get_preset, load_image, prepare

REPO = Path(__file__).resolve().parents[2]
QUESTION = "What color is the circle?"


def _image(explain_heads: dict[str, Path], k: int = 0) -> Path:
    return sorted((explain_heads["world"] / "coco/val2014").glob("*.jpg"))[k]


def test_resnet_map_is_gradcam_of_the_answer_logit_through_the_tower(explain_heads: dict, tmp_path: Path) -> None:
    """Grad-CAM written out here: the top answer's logit of the head over the tower's grid of the image, its
    gradient with respect to layer4 (the grid), channel weights = spatial mean, ReLU, min-max scaled."""
    head = load_vqa_head(explain_heads["clipvil-rn-tiny"])
    tower, model = head.tower, head.predictor.model
    img = load_image(_image(explain_heads))
    prepared = prepare(img, get_preset("native"), tower.mean, tower.std, tower.native_size)
    pixels = prepared.pixels[None].clone().requires_grad_(True)
    grid = tower(pixels, [prepared.content_hw])
    tokens = torch.tensor([head.predictor.encode(QUESTION)[0]])
    logits = model(grid, tokens)[0]
    k = int(logits.argmax())
    grads = torch.autograd.grad(logits[k], grid.feats)[0][0]  # [N, C]
    cam = torch.relu(grid.feats[0].detach() @ grads.mean(0)).reshape(3, 3).numpy()
    cam = cam - cam.min()
    expected = cam / cam.max()
    assert len(np.unique(expected)) > 3
    out = tmp_path / "map.png"
    result = explain_image(vqa_scorer(head, QUESTION), _image(explain_heads), out)
    np.testing.assert_allclose(result.heat, expected, rtol=1e-4, atol=1e-5)
    assert result.label == head.predictor.answers.label2ans[k]
    assert result.score == pytest.approx(float(logits[k].detach()), rel=1e-5)
    # the same top answer as `clipvil predict`, which encodes the image its own way
    top = predict_vqa(explain_heads["clipvil-rn-tiny"], _image(explain_heads), QUESTION, k=1).answers[0][0]
    assert top == result.label
    assert out.is_file() and Image.open(out).format == "PNG"
    assert result.label in result.title and "score" in result.title


def test_vit_map_and_a_chosen_answer(explain_heads: dict, tmp_path: Path) -> None:
    head = load_vqa_head(explain_heads["clipvil-vit-tiny"])
    answers = head.predictor.answers.label2ans
    result = explain_image(vqa_scorer(head, QUESTION, answer=answers[1]), _image(explain_heads), tmp_path / "v.png")
    assert result.heat.shape == (8, 8) and result.heat.max() == pytest.approx(1.0)
    assert len(np.unique(result.heat)) > 8  # a map with structure over the patch tokens
    assert result.label == answers[1]
    with pytest.raises(KeyError, match="is not one of the head's"):
        vqa_scorer(head, QUESTION, answer="no such answer")


def test_clip_pair_score_is_open_clips_own_cosine(explain_heads: dict, tmp_path: Path) -> None:
    """With a weight file, the score is the cosine open_clip's full model gives for the image and the text."""
    torch.manual_seed(5)
    model = open_clip.create_model("clipvil-rn-tiny", pretrained=None)
    weights = tmp_path / "clip.pt"
    torch.save({"state_dict": model.state_dict()}, weights)
    pair = load_clip_pair("clipvil-rn-tiny", weights)
    text = "the red circle"
    result = explain_image(text_scorer(pair, text), _image(explain_heads), tmp_path / "t.png")
    img = load_image(_image(explain_heads))
    pixels = prepare(img, get_preset("native"), pair.tower.mean, pair.tower.std, 96).pixels[None]
    model.eval()
    with torch.no_grad():
        a = model.encode_image(pixels)[0]
        b = model.encode_text(open_clip.get_tokenizer("clipvil-rn-tiny")([text]))[0]
    assert result.score == pytest.approx(float(torch.nn.functional.cosine_similarity(a, b, dim=0)), abs=1e-4)
    assert "RANDOM" not in result.title
    random_pair = explain_image(text_scorer(load_clip_pair("clipvil-rn-tiny"), text), _image(explain_heads), None)
    assert "RANDOM weights" in random_pair.title and random_pair.heat.shape == (3, 3)


def test_caption_map_explains_the_models_own_caption(explain_heads: dict, tmp_path: Path) -> None:
    """The score is the teacher-forced log-probability of the greedy caption: the same number greedy decoding
    (incremental, with caches) gives it."""
    result = explain(out=tmp_path / "c.png", image=_image(explain_heads), checkpoint=explain_heads["caption"])[0]
    greedy = predict_caption(explain_heads["caption"], _image(explain_heads), beam_size=1)
    assert result.label and result.label == greedy.caption and result.score == pytest.approx(greedy.score, rel=1e-4)
    assert result.heat.shape == (3, 3) and (tmp_path / "c.png").is_file()
    with pytest.raises(ValueError, match="takes no --question"):
        explain(out=tmp_path / "d.png", image=_image(explain_heads), checkpoint=explain_heads["caption"],
                question=QUESTION)


def test_folder_mode_writes_one_png_per_image_and_an_index(explain_heads: dict, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k in range(3):
        (folder / f"im{k}.jpg").write_bytes(_image(explain_heads, k).read_bytes())
    out = tmp_path / "maps"
    assert main(["explain", "--checkpoint", str(explain_heads["clipvil-rn-tiny"]), "--images", str(folder),
                 "--question", QUESTION, "--out", str(out)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(p.name for p in out.glob("*.png")) == ["im0.png", "im1.png", "im2.png"]
    page = (out / "index.html").read_text()
    assert all(f'src="im{k}.png"' in page for k in range(3)) and all(r["label"] in page for r in rows)


def test_user_errors_are_one_line(explain_heads: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="has no text tower"):
        load_clip_pair("imagenet-rn50")
    with pytest.raises(ValueError, match="give one of --image FILE or --images DIR"):
        explain(out=tmp_path / "x.png", checkpoint=explain_heads["clipvil-rn-tiny"], question=QUESTION)
    assert main(["explain", "--image", str(_image(explain_heads)), "--out", str(tmp_path / "y.png")]) == 2
    assert "give --checkpoint CKPT --question Q" in capsys.readouterr().err
