"""Instruction tokenizers: EnvDrop's word vocabulary against a port of its Tokenizer on the real vocabulary
file, and the subword vocabulary on Hindi and Telugu."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from clipvil.data.nav_text import (
    EnvDropTokenizer,
    SubwordTokenizer,
    build_envdrop_vocab,
    split_sentence,
    tokenizer_from_artifact,
)


def _envdrop_encode(vocab: list[str], sentence: str, max_length: int) -> list[int] | None:
    """R2R-EnvDrop's Tokenizer.split_sentence + encode_sentence (r2r_src/utils.py), ported."""
    index = {w: i for i, w in enumerate(vocab)}
    index["<BOS>"] = len(vocab)
    toks: list[str] = []
    for word in [s.strip().lower() for s in re.compile(r"(\W+)").split(sentence.strip()) if len(s.strip()) > 0]:
        if all(c in string.punctuation for c in word) and not all(c in "." for c in word):
            toks += list(word)
        else:
            toks.append(word)
    encoding = [index["<BOS>"]] + [index.get(w, index["<UNK>"]) for w in toks] + [index["<EOS>"]]
    if len(encoding) <= 2:
        return None
    if len(encoding) < max_length:
        encoding += [index["<PAD>"]] * (max_length - len(encoding))
    elif len(encoding) > max_length:
        encoding[max_length - 1] = index["<EOS>"]
    return encoding[:max_length]


SENTENCES = [
    "Walk past the dining table, turn left!! Stop at the bottom of the stairs...",
    "Go up the stairs and wait in the doorway of the bedroom.",
    "exit the room. turn right and walk down the hallway, stopping next to the large plant on the left " * 4,
    "?!",
    "  ",
]


def test_envdrop_tokenizer_matches_envdrop_on_its_vocabulary(shared_data: Path) -> None:
    path = shared_data / "clip-vil/r2r_vocab/train_vocab.txt"
    vocab = [line.strip() for line in path.read_text().splitlines()]
    tok = EnvDropTokenizer.from_file(path, max_length=80)
    assert tok.vocab_size == len(vocab) + 1 == 992 and tok.bos_id == 991 and tok.pad_id == 0
    for sentence in SENTENCES:
        assert tok.encode(sentence) == _envdrop_encode(vocab, sentence, 80), sentence
    long = tok.encode(SENTENCES[2])
    assert long is not None and len(long) == 80 and long[-1] == tok.eos_id  # cut, ending with <EOS>
    assert tok.decode(tok.encode("Turn left, stop.") or []) == "turn left , stop ."
    assert tokenizer_from_artifact(tok.to_artifact()).encode(SENTENCES[0]) == tok.encode(SENTENCES[0])


def test_build_vocab_and_bad_files(tmp_path: Path) -> None:
    words = build_envdrop_vocab(["turn left", "turn right", "turn left.", "stop"], min_count=2)
    assert words == ["<PAD>", "<UNK>", "<EOS>", "turn", "left"]  # by falling count, stops below min_count
    assert split_sentence("Don't stop!?") == ["don", "'", "t", "stop", "!", "?"]
    (tmp_path / "v.txt").write_text("the\nand\n")
    with pytest.raises(ValueError, match="v.txt: an EnvDrop vocabulary starts with"):
        EnvDropTokenizer.from_file(tmp_path / "v.txt")


def test_subword_vocabulary_in_hindi_and_telugu() -> None:
    hindi = ["बाएं मुड़िए, लाल तारा के पास से गुजरिए, नीला गोला के पास रुकिए।",
             "दाएं मुड़िए, हरा क्रॉस के पास से गुजरिए, पीला चौकोर के पास रुकिए।"] * 5
    telugu = ["ఎడమకు తిరగండి, ఎరుపు నక్షత్రం దాటి నడవండి, నీలం వృత్తం దగ్గర ఆగండి."] * 5
    tok = SubwordTokenizer.train(hindi + telugu, vocab_size=200, min_frequency=1, max_length=30)
    assert (tok.pad_id, tok.unk_id, tok.eos_id, tok.bos_id) == (0, 1, 2, 3)
    for text in (hindi[0], telugu[0]):
        ids = tok.encode(text)
        assert ids is not None and len(ids) == 30 and ids[0] == tok.bos_id and tok.unk_id not in ids
        assert tok.decode(ids).replace(" ", "") == text.replace(" ", "")  # every character comes back
    assert tokenizer_from_artifact(tok.to_artifact()).encode(telugu[0]) == tok.encode(telugu[0])
    assert tok.encode("   ") is None
