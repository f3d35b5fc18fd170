"""Image–caption pairs from COCO, Karpathy, LXMERT and CSV/TSV files, and the (pixels, tokens) dataset."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from clipvil.data.image_text import (
    ImageText,
    ImageTextDataset,
    coco_caption_pairs,
    csv_pairs,
    karpathy_pairs,
    lxmert_caption_pairs,
    lxmert_image_path,
)
from clipvil.data.lxmert import load_lxmert_answer_table
from clipvil.data.validate import DataFormatError
from clipvil.encoders.images import ImageDecodeError

COCO = {
    "images": [
        {"id": 7, "file_name": "COCO_val2014_000000000007.jpg"},
        {"id": 3, "file_name": "COCO_val2014_000000000003.jpg"},
    ],
    "annotations": [
        {"image_id": 3, "id": 30, "caption": "a cat on a mat"},
        {"image_id": 7, "id": 70, "caption": "a dog in the park"},
        {"image_id": 3, "id": 31, "caption": "a sleepy cat"},
    ],
}


def test_coco_pairs_in_file_order_with_paths_and_entries(write_json: Callable[[str, Any], Path]) -> None:
    path = write_json("captions_val2014.json", COCO)
    pairs = coco_caption_pairs(path, "/data/coco/val2014")
    assert [(p.image, p.caption, p.image_key, p.entry) for p in pairs.pairs] == [
        (
            Path("/data/coco/val2014/COCO_val2014_000000000003.jpg"),
            "a cat on a mat",
            "3",
            "image 3: caption 30",
        ),
        (
            Path("/data/coco/val2014/COCO_val2014_000000000007.jpg"),
            "a dog in the park",
            "7",
            "image 7: caption 70",
        ),
        (
            Path("/data/coco/val2014/COCO_val2014_000000000003.jpg"),
            "a sleepy cat",
            "3",
            "image 3: caption 31",
        ),
    ]
    images, captions, t2i = pairs.retrieval_index()
    assert [i.name for i in images] == ["COCO_val2014_000000000003.jpg", "COCO_val2014_000000000007.jpg"]
    assert captions == ["a cat on a mat", "a dog in the park", "a sleepy cat"]
    assert t2i == [0, 1, 0]
    assert pairs.files == (path,) and len(pairs) == 3


def test_coco_errors_name_file_and_caption(write_json: Callable[[str, Any], Path]) -> None:
    bad = json.loads(json.dumps(COCO))
    bad["annotations"][1]["caption"] = "  "
    path = write_json("bad.json", bad)
    with pytest.raises(DataFormatError, match=r"bad\.json: caption 70: empty caption"):
        coco_caption_pairs(path, "/imgs")


def test_real_karpathy_test_references_are_a_5k_retrieval_set(shared_data: Path) -> None:
    """The real 5k Karpathy test references: 5000 images, 25010 captions (the official counts)."""
    gt = shared_data / "coco-caption" / "derived" / "coco_karpathy_test_gt.json"
    pairs = coco_caption_pairs(gt, "val2014")
    images, captions, t2i = pairs.retrieval_index()
    assert (len(images), len(captions)) == (5000, 25010)
    counts = np.bincount(np.asarray(t2i), minlength=5000)
    assert counts.min() >= 5 and counts.sum() == 25010
    assert images[0] == Path("val2014/COCO_val2014_000000391895.jpg")
    assert captions[1] == "A man in a red shirt and a red hat is on a motorcycle on a hill side."


def test_karpathy_split_selection(fixtures_dir: Path) -> None:
    path = fixtures_dir / "dataset_coco.json"
    test = karpathy_pairs(path, "/coco", splits=("test",))
    assert len(test) == 10  # two test images, five sentences each
    assert test.pairs[0].image == Path("/coco/val2014/COCO_val2014_000000391895.jpg")
    assert test.pairs[0].entry == "image 391895: sentences[0]"
    assert test.pairs[1].caption == "A man in a red shirt and a red hat is on a motorcycle on a hill side."
    train = karpathy_pairs(path, "/coco")  # default ("train",): restval counts as train
    assert sorted({p.image_key for p in train.pairs}) == ["262148", "458752"]
    assert {p.image.parent.name for p in train.pairs} == {"train2014", "val2014"}
    unmapped = karpathy_pairs(path, "/coco", splits=("restval",), restval_as_train=False)
    assert {p.image_key for p in unmapped.pairs} == {"262148"}
    both = karpathy_pairs(path, "/coco", splits=("val", "test"))
    assert len({p.image_key for p in both.pairs}) == 3
    with pytest.raises(ValueError, match="unknown Karpathy split 'dev'"):
        karpathy_pairs(path, "/coco", splits=("dev",))
    with pytest.raises(ValueError, match="restval_as_train=False"):
        karpathy_pairs(path, "/coco", splits=("restval",))


LXMERT = [
    {
        "img_id": "COCO_train2014_000000000042",
        "sentf": {"mscoco": ["a red circle", "a circle that is red"], "vqa": ["what colour is it?"]},
        "labelf": {"vqa": [{"red": 1.0}]},
    },
    {
        "img_id": "2345",
        "sentf": {"vg": ["a tree by a lake"], "gqa": ["is there a tree?"]},
        "labelf": {"gqa": [{"yes": 1.0}]},
    },
]


def test_lxmert_captions_only(write_json: Callable[[str, Any], Path]) -> None:
    path = write_json("mscoco_train.json", LXMERT)
    table_path = write_json(
        "all_ans.json", [{"ans": "red", "dsets": ["vqa"]}, {"ans": "yes", "dsets": ["gqa"]}]
    )
    for table in (load_lxmert_answer_table(table_path), None):
        pairs = lxmert_caption_pairs(path, "/imgs", answer_table=table)
        assert [(str(p.image), p.caption, p.entry) for p in pairs.pairs] == [
            (
                "/imgs/train2014/COCO_train2014_000000000042.jpg",
                "a red circle",
                "COCO_train2014_000000000042_mscoco_000",
            ),
            (
                "/imgs/train2014/COCO_train2014_000000000042.jpg",
                "a circle that is red",
                "COCO_train2014_000000000042_mscoco_001",
            ),
            ("/imgs/2345.jpg", "a tree by a lake", "2345_vg_000"),
        ]
    only_coco = lxmert_caption_pairs(path, "/imgs", sources=("mscoco",))
    assert len(only_coco) == 2
    flat = lxmert_caption_pairs(path, "/imgs", image_path=lambda root, i: root / f"{i}.png")
    assert flat.pairs[0].image == Path("/imgs/COCO_train2014_000000000042.png")
    assert lxmert_image_path(Path("/r"), "COCO_val2014_000000000001") == Path(
        "/r/val2014/COCO_val2014_000000000001.jpg"
    )


def test_lxmert_on_a_synthetic_world_matches_its_images(tmp_path: Path) -> None:
    from clipvil.data.synthetic import make_data

    world = make_data(tmp_path / "w", 12, seed=1, image_size=64, workers=1, progress=False)
    pairs = lxmert_caption_pairs(world.path("lxmert", "train"), world.root / "coco")
    assert len(pairs) > 0 and all(p.image.is_file() for p in pairs.pairs)


def test_tsv_with_open_clip_defaults(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text('filepath\ttitle\n/a/1.jpg\tA bus, at a station\n\n/a/2.jpg\t"quoted\ttab"\n', "utf-8")
    pairs = csv_pairs(path)
    assert [(str(p.image), p.caption, p.entry) for p in pairs.pairs] == [
        ("/a/1.jpg", "A bus, at a station", "line 2"),
        ("/a/2.jpg", "quoted\ttab", "line 4"),
    ]


def test_csv_custom_columns_separator_and_root(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text('id,caption,img\n1,"a cat, sleeping",cats/1.jpg\n2,a dog,/abs/2.jpg\n', "utf-8")
    pairs = csv_pairs(path, img_key="img", caption_key="caption", sep=",", image_root="/root")
    assert [str(p.image) for p in pairs.pairs] == ["/root/cats/1.jpg", "/abs/2.jpg"]
    assert [p.caption for p in pairs.pairs] == ["a cat, sleeping", "a dog"]
    assert pairs.pairs[0].image_key == "cats/1.jpg"


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        (
            "image\ttitle\nx.jpg\ta\n",
            {},
            r"x\.tsv: line 1: no column 'filepath' in the header \['image', 'title'\]",
        ),
        ("filepath\ttitle\nx.jpg\ta\textra\n", {}, r"x\.tsv: line 2: 3 fields for 2 columns"),
        ("filepath\ttitle\nx.jpg\ta\ny.jpg\t \n", {}, r"x\.tsv: line 3: empty 'title'"),
        ("filepath\ttitle\n\tcaption\n", {}, r"x\.tsv: line 2: empty 'filepath'"),
        ("", {}, r"x\.tsv: empty file"),
        ("filepath,title\nx.jpg,a\n", {}, r"no column 'filepath' in the header \['filepath,title'\]"),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path: Path, text: str, kwargs: dict, message: str) -> None:
    path = tmp_path / "x.tsv"
    path.write_text(text, "utf-8")
    with pytest.raises(DataFormatError, match=message):
        csv_pairs(path, **kwargs)


def test_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        csv_pairs(tmp_path / "nope.tsv")


def test_dataset_gives_open_clip_pixels_and_tokens(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    files = []
    for i, mode in enumerate(("RGB", "L")):
        img = Image.fromarray(rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)).convert(mode)
        files.append(tmp_path / f"{i}.png")
        img.save(files[-1])
    pairs = [
        ImageText(files[0], "a noisy square", "0", "line 2"),
        ImageText(files[1], "grey noise", "1", "line 3"),
    ]
    transform = open_clip.image_transform(32, is_train=False)
    tokenizer = open_clip.get_tokenizer("clipvil-vit-tiny")
    ds = ImageTextDataset(pairs, transform, tokenizer)
    assert len(ds) == 2
    pixels, tokens = ds[1]
    want = transform(Image.open(files[1]).convert("RGB"))
    torch.testing.assert_close(pixels, want)
    assert pixels.shape == (3, 32, 32) and tokens.shape == (77,)
    assert torch.equal(tokens, tokenizer(["grey noise"])[0])
    loader = torch.utils.data.DataLoader(ds, batch_size=2)
    images, texts = next(iter(loader))
    assert images.shape == (2, 3, 32, 32) and texts.shape == (2, 77)


def test_dataset_names_missing_image_and_its_entry(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text(f"filepath\ttitle\n{tmp_path / 'gone.jpg'}\ta caption\n", "utf-8")
    ds = ImageTextDataset(csv_pairs(path), lambda im: torch.zeros(1), lambda t: torch.zeros(1, 77))
    with pytest.raises(ImageDecodeError, match=r"gone\.jpg: missing file \(pair line 2 of .*t\.tsv\)"):
        ds[0]


def test_contrastive_step_and_retrieval_on_a_synthetic_world(tmp_path: Path) -> None:
    """The wiring the clip task uses: pairs -> open_clip transforms/tokenizer -> ClipLoss -> retrieval."""
    from clipvil.data.synthetic import make_data
    from clipvil.encoders import list_encoders  # registers clipvil's small open_clip configs
    from clipvil.metrics.retrieval import retrieval_recalls

    assert "clipvil-rn-tiny" in list_encoders()
    world = make_data(tmp_path / "w", 12, seed=2, image_size=64, workers=1, progress=False)
    pairs = coco_caption_pairs(world.path("captions", "train"), world.path("coco_images", "train"))
    torch.manual_seed(0)
    model, preprocess_train, preprocess_val = open_clip.create_model_and_transforms("clipvil-rn-tiny")
    tokenizer = open_clip.get_tokenizer("clipvil-rn-tiny")
    loader = torch.utils.data.DataLoader(ImageTextDataset(pairs, preprocess_train, tokenizer), batch_size=8)
    pixels, tokens = next(iter(loader))
    assert pixels.shape == (8, 3, 96, 96) and tokens.shape == (8, 77)
    img, txt, scale = model(pixels, tokens)
    loss = open_clip.ClipLoss()(img, txt, scale)
    loss.backward()
    assert torch.isfinite(loss) and model.visual.conv1.weight.grad is not None

    images, captions, t2i = pairs.retrieval_index()
    with torch.no_grad():
        img_emb = model.encode_image(
            torch.stack([preprocess_val(Image.open(p)) for p in images]), normalize=True
        )
        txt_emb = model.encode_text(tokenizer(captions), normalize=True)
    out = retrieval_recalls((img_emb @ txt_emb.T).numpy(), t2i)
    assert out["n_images"] == len(images) and out["n_texts"] == len(captions) == len(pairs)
