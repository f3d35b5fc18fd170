"""The heads of the CLIP-ViL_p transformer (`clipvil.families.vl.transformer`), each a small module on its own.

- `MLMHead`: BERT's masked-LM head — transform (dense → activation → LayerNorm, transformers'
  ``BertPredictionHeadTransform``), then the word-embedding matrix transposed (tied by the caller) + a bias.
  Names match BERT checkpoints' ``cls.predictions.*`` (transform.dense, transform.LayerNorm, bias).
- `ITMHead`: image-text matching, pooled → Linear(H, 2); the layer is named ``seq_relationship`` as BERT's
  next-sentence head, from which LXMERT and CLIP-ViL initialise it when the checkpoint has one.
- `QAHead`: pooled → Linear(H, 2H) → GELU → LayerNorm(2H) → Linear(2H, n_answers), the answer head of the
  paper (768 → 1536 → n) and of the reference's ``BertVisualAnswerHead`` / ``VQAModel.logit_fc`` (same names,
  ``logit_fc.{0,2,3}``).
- `init_answer_head`: a fine-tuning head initialised from the pre-training QA head where the answers overlap
  (the reference's ``load_lxmert_qa`` "answer surgery").

Every head returns logits; the losses live in the tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertPredictionHeadTransform


class MLMHead(nn.Module):
    """Masked-LM logits over the vocabulary; `decoder.weight` is meant to be tied to the word embeddings."""

    def __init__(self, bert_config: BertConfig) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(bert_config)
        self.decoder = nn.Linear(bert_config.hidden_size, bert_config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(bert_config.vocab_size))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """states [..., H] → logits [..., V]."""
        return self.decoder(self.transform(states)) + self.bias  # [..., V]


class ITMHead(nn.Module):
    """Image-text matching logits [B, 2] (class 1 = the sentence describes the image) from pooled."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.seq_relationship = nn.Linear(hidden, 2)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled [B, H] → [B, 2]."""
        return self.seq_relationship(pooled)  # [B, 2]


class QAHead(nn.Module):
    """Answer logits: Linear(H, 2H) → GELU → LayerNorm(2H, eps 1e-12) → Linear(2H, n_answers)."""

    def __init__(self, hidden: int, n_answers: int, eps: float = 1e-12) -> None:
        super().__init__()
        if n_answers < 1:
            raise ValueError(f"QAHead: n_answers must be >= 1, got {n_answers}")
        self.logit_fc = nn.Sequential(
            nn.Linear(hidden, 2 * hidden),
            nn.GELU(),  # exact (erf) GELU, as the reference's GeLU
            nn.LayerNorm(2 * hidden, eps=eps),
            nn.Linear(2 * hidden, n_answers),
        )

    @property
    def n_answers(self) -> int:
        return int(self.logit_fc[3].out_features)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled [B, H] → [B, n_answers]."""
        return self.logit_fc(pooled)  # [B, A]


def init_answer_head(
    head: QAHead,
    answers: Sequence[str],
    pretrained: Mapping[str, torch.Tensor],
    pretrained_answers: Sequence[str],
    *,
    convert: Callable[[str], str] | None = None,
    zero_missing: bool = True,
) -> int:
    """Initialises `head` (answers `answers`, in label order) from a pre-trained QA head; returns how many
    answer rows were copied.

    pretrained: the pre-trained head's state dict (`QAHead.state_dict()` keys ``logit_fc.0.weight`` ...
        ``logit_fc.3.bias``); its last layer has one row per entry of `pretrained_answers`.
    convert: maps a fine-tuning answer to the pre-training table's spelling before the lookup (for LXMERT's
        table: `clipvil.data.lxmert.convert_lxmert_answer`, as the reference does); None = exact match.
    zero_missing: rows of answers the table lacks get weight 0 and bias 0, as the reference does; False keeps
        the head's current (random) rows there.

    The hidden layers (logit_fc.0, logit_fc.2) are copied whole. Shapes must agree (ValueError otherwise).
    """
    if len(answers) != head.n_answers:
        raise ValueError(f"init_answer_head: {len(answers)} answers for a head of {head.n_answers} outputs")
    own = head.state_dict()
    missing_keys = sorted(set(own) - set(pretrained))
    if missing_keys:
        raise ValueError(f"init_answer_head: the pre-trained head lacks {', '.join(missing_keys)}")
    old_w, old_b = pretrained["logit_fc.3.weight"], pretrained["logit_fc.3.bias"]  # [A0, 2H], [A0]
    if old_w.shape[0] != len(pretrained_answers):
        raise ValueError(
            f"init_answer_head: the pre-trained head has {old_w.shape[0]} outputs "
            f"for {len(pretrained_answers)} pre-training answers"
        )
    for key in ("logit_fc.0.weight", "logit_fc.0.bias", "logit_fc.2.weight", "logit_fc.2.bias"):
        if pretrained[key].shape != own[key].shape:
            raise ValueError(
                f"init_answer_head: {key} is {tuple(pretrained[key].shape)} in the pre-trained head, "
                f"{tuple(own[key].shape)} here"
            )
    if old_w.shape[1] != own["logit_fc.3.weight"].shape[1]:
        raise ValueError(
            f"init_answer_head: answer rows of width {old_w.shape[1]}, "
            f"the head's are {own['logit_fc.3.weight'].shape[1]} wide"
        )
    table = {a: i for i, a in enumerate(pretrained_answers)}
    pairs = [(i, table.get(convert(a) if convert else a)) for i, a in enumerate(answers)]
    new_rows = [i for i, j in pairs if j is not None]
    old_rows = [j for _, j in pairs if j is not None]
    weight, bias = own["logit_fc.3.weight"].clone(), own["logit_fc.3.bias"].clone()  # [A, 2H], [A]
    if zero_missing:
        weight.zero_()
        bias.zero_()
    weight[new_rows] = old_w[old_rows].to(weight.dtype)  # [n_copied, 2H]
    bias[new_rows] = old_b[old_rows].to(bias.dtype)  # [n_copied]
    state = {
        k: pretrained[k]
        for k in ("logit_fc.0.weight", "logit_fc.0.bias", "logit_fc.2.weight", "logit_fc.2.bias")
    }
    head.load_state_dict({**state, "logit_fc.3.weight": weight, "logit_fc.3.bias": bias}, strict=True)
    return len(new_rows)


__all__ = ["ITMHead", "MLMHead", "QAHead", "init_answer_head"]
