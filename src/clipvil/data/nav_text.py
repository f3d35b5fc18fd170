"""Instruction tokenizers of the navigation tasks: EnvDrop's word vocabulary (R2R) and a subword vocabulary
trained on the training instructions of one language (RxR: English, Hindi, Telugu).

Both encode an instruction as EnvDrop's `Tokenizer.encode_sentence` does:

    [<BOS>, w1, ..., wn, <EOS>, <PAD>, ...]     exactly `max_length` ids

with <PAD> = 0, <UNK> = 1, <EOS> = 2. An instruction longer than max_length is cut and its last kept id
becomes <EOS>; one with no token at all encodes to None (EnvDrop drops it from the data).

- `EnvDropTokenizer`: the vocabulary file of R2R-EnvDrop / CLIP-ViL-VLN (`train_vocab.txt`: one word per
  line, starting <PAD>, <UNK>, <EOS>), plus <BOS> appended as the last id (991 words -> 992 ids). Words are
  EnvDrop's `split_sentence`: split on runs of non-alphanumeric characters, lowercased, a run of punctuation
  broken into single characters unless it is all full stops; unknown words become <UNK>.
  `build_envdrop_vocab` makes such a file from training instructions (words seen >= min_count times).
- `SubwordTokenizer`: a WordPiece vocabulary trained with the `tokenizers` library on the training
  instructions (NFKC-normalised, lowercased; split on whitespace and punctuation, which suits Devanagari and
  Telugu script as well as Latin). CLIP-ViL's RxR code tokenised with Stanza, whose models need a
  download; a subword vocabulary trained offline needs none. Special ids: <PAD> 0, <UNK> 1, <EOS> 2, <BOS> 3.
  The trainer breaks ties between equally frequent merges in hash order, so two trainings on the same texts
  may differ slightly: a run trains its vocabulary once (rank 0) and keeps it in the run folder and in every
  checkpoint, which resume, evaluation and back-translation read.

Both are saved as plain JSON-able data (`to_artifact` / `tokenizer_from_artifact`), so a checkpoint
carries its tokenizer.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

PAD, UNK, EOS, BOS = "<PAD>", "<UNK>", "<EOS>", "<BOS>"
BASE_VOCAB = (PAD, UNK, EOS)
_SPLIT = re.compile(r"(\W+)")


class InstructionTokenizer(Protocol):
    """What the navigation tasks need from a tokenizer."""

    max_length: int
    pad_id: int
    bos_id: int
    eos_id: int

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int] | None: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def to_artifact(self) -> dict[str, Any]: ...


def split_sentence(sentence: str) -> list[str]:
    """EnvDrop's word split (see the module docstring)."""
    tokens: list[str] = []
    for word in (s.strip().lower() for s in _SPLIT.split(sentence.strip())):
        if not word:
            continue
        if all(c in string.punctuation for c in word) and not all(c == "." for c in word):
            tokens.extend(word)
        else:
            tokens.append(word)
    return tokens


def _frame(ids: list[int], max_length: int, bos: int, eos: int, pad: int) -> list[int] | None:
    """[bos] + ids + [eos], padded or cut (last kept id = eos) to max_length; None without any id."""
    if not ids:
        return None
    encoding = [bos, *ids, eos]
    if len(encoding) < max_length:
        return encoding + [pad] * (max_length - len(encoding))
    encoding = encoding[:max_length]
    encoding[-1] = eos
    return encoding


def _strip(ids: Sequence[int], bos: int, eos: int, pad: int) -> list[int]:
    """The ids between an optional leading <BOS> and the first <EOS>/<PAD>."""
    out = []
    for k, i in enumerate(int(x) for x in ids):
        if k == 0 and i == bos:
            continue
        if i in (eos, pad):
            break
        out.append(i)
    return out


class EnvDropTokenizer:
    """EnvDrop's word tokenizer over a vocabulary list (BOS appended as the last id)."""

    pad_id, unk_id, eos_id = 0, 1, 2

    def __init__(self, words: Sequence[str], max_length: int = 80) -> None:
        words = list(words)
        if tuple(words[:3]) != BASE_VOCAB:
            raise ValueError(f"an EnvDrop vocabulary starts with {list(BASE_VOCAB)}, got {words[:3]}")
        if len(set(words)) != len(words) or BOS in words:
            raise ValueError("an EnvDrop vocabulary lists each word once and not <BOS> (it is appended)")
        if max_length < 3:
            raise ValueError(f"max_length must be >= 3, got {max_length}")
        self.words = words + [BOS]
        self.index = {w: i for i, w in enumerate(self.words)}
        self.bos_id = len(words)
        self.max_length = max_length

    @classmethod
    def from_file(cls, path: str | Path, max_length: int = 80) -> EnvDropTokenizer:
        """From a vocabulary file (one word per line); errors name the file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such vocabulary file")
        try:
            return cls([line.strip() for line in path.read_text(encoding="utf-8").splitlines()], max_length)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int] | None:
        ids = [self.index.get(w, self.unk_id) for w in split_sentence(text)]
        return _frame(ids, self.max_length, self.bos_id, self.eos_id, self.pad_id)

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.words[i] for i in _strip(ids, self.bos_id, self.eos_id, self.pad_id))

    def to_artifact(self) -> dict[str, Any]:
        return {"kind": "envdrop", "words": self.words[:-1], "max_length": self.max_length}


def build_envdrop_vocab(texts: Iterable[str], min_count: int = 5) -> list[str]:
    """EnvDrop's build_vocab: <PAD>, <UNK>, <EOS>, then words by falling count while count >= min_count."""
    counts = Counter(w for text in texts for w in split_sentence(text))
    words = list(BASE_VOCAB)
    for word, count in counts.most_common():
        if count < min_count:
            break
        if word not in BASE_VOCAB:
            words.append(word)
    return words


class SubwordTokenizer:
    """A WordPiece vocabulary (tokenizers library) with EnvDrop's framing; see the module docstring."""

    pad_id, unk_id, eos_id, bos_id = 0, 1, 2, 3

    def __init__(self, serialized: str, max_length: int = 160) -> None:
        from tokenizers import Tokenizer

        self.serialized = serialized
        self.tokenizer = Tokenizer.from_str(serialized)
        self.max_length = max_length
        for name, want in ((PAD, 0), (UNK, 1), (EOS, 2), (BOS, 3)):
            if self.tokenizer.token_to_id(name) != want:
                raise ValueError(f"subword vocabulary: {name} must have id {want}")

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 4000, min_frequency: int = 2,
              max_length: int = 160) -> SubwordTokenizer:
        """Trains the vocabulary on `texts` (deterministic for the same texts and settings)."""
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        tok = Tokenizer(models.WordPiece(unk_token=UNK))
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                     pre_tokenizers.Punctuation()])
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=[PAD, UNK, EOS, BOS], show_progress=False)
        texts = list(texts)
        if not texts:
            raise ValueError("subword vocabulary: no training instructions")
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok.to_str(), max_length)

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size())

    def encode(self, text: str) -> list[int] | None:
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        return _frame(list(ids), self.max_length, self.bos_id, self.eos_id, self.pad_id)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(_strip(ids, self.bos_id, self.eos_id, self.pad_id))

    def to_artifact(self) -> dict[str, Any]:
        return {"kind": "subword", "tokenizer": self.serialized, "max_length": self.max_length}


def tokenizer_from_artifact(data: dict[str, Any]) -> EnvDropTokenizer | SubwordTokenizer:
    """The tokenizer `to_artifact` saved."""
    kind = data.get("kind")
    if kind == "envdrop":
        return EnvDropTokenizer(data["words"], int(data["max_length"]))
    if kind == "subword":
        return SubwordTokenizer(data["tokenizer"], int(data["max_length"]))
    raise ValueError(f"unknown instruction tokenizer kind {kind!r} (envdrop, subword)")
