"""Sequence decoding shared by every generator in clipvil: greedy, sampling (for SCST) and beam search.

A generator (the captioner, the navigation speaker) implements `IncrementalDecoder`: it turns its
context (e.g. the encoded image grid) into a decoding state, and advances that state one token at a time
with cached keys/values, so a decoding step never recomputes the prefix. The functions here drive any such
decoder over a whole batch at once; they know nothing of the model behind it.

Conventions of every function:
- `context` is whatever the decoder's `init_state` takes, for `batch_size` items. Decoding runs on the
  device of the state it returns (the first non-CPU tensor found in it, through dataclasses, tuples,
  lists and dicts; CPU when there is none).
- Output tokens never include `bos`; `eos` is included where it was produced. A row that reaches
  `max_len` tokens without `eos` stops there (truncated, no `eos`). So `max_len` counts `eos`: 16 words
  plus their `eos` need `max_len=17`.
- After a row's end its tokens are `pad` (default 0, `CaptionVocab.pad_id`) and its log-probs 0; `mask`
  is True exactly on the real tokens (eos included) and `lengths` counts them.
- Rows of several outputs per item are item-major: row `b * n + j` is output `j` of item `b`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F


@runtime_checkable
class IncrementalDecoder(Protocol):
    """A model that decodes one token at a time from a cached state (rows = batch items x expansions)."""

    def init_state(self, context: Any, expand: int) -> Any:
        """State for decoding from `context` (e.g. encoded grid memory + mask), each batch item repeated
        `expand` times consecutively (rows b*expand .. b*expand+expand-1)."""
        ...

    def step(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """tokens [M] = the last token of each row; returns log-probs [M, V] of the next token and the new
        state (cached keys/values appended)."""
        ...

    def reorder_state(self, state: Any, index: torch.Tensor) -> Any:
        """Keeps/reorders rows: row i of the new state is row index[i] of `state`; index [M']."""
        ...


@dataclass
class DecodeOutput:
    """Decoded sequences, R rows (see the module docstring for the conventions)."""

    tokens: torch.Tensor  # [R, L] long: generated ids (no bos; eos where reached), `pad` after the end
    lengths: torch.Tensor  # [R] long: real tokens per row, eos included; L = lengths.max()
    logprobs: torch.Tensor  # [R, L] float: log-prob of each token (decoding distribution); 0 after the end
    mask: torch.Tensor  # [R, L] bool: True on real tokens (position < length)
    scores: torch.Tensor  # [R] float: summed log-probs (greedy, sample) or length-penalised score (beam)
    beams: DecodeOutput | None = None  # beam_search: every kept beam, B*beam_size rows item-major, best first


def greedy_decode(
    decoder: IncrementalDecoder,
    context: Any,
    batch_size: int,
    *,
    bos: int,
    eos: int,
    max_len: int,
    pad: int = 0,
) -> DecodeOutput:
    """The most likely next token at every step (argmax chaining); R = batch_size rows."""
    _check_sizes(batch_size, max_len)

    def choose(logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lp, tok = logp.max(dim=-1)  # [A], [A]
        return tok, lp

    state = decoder.init_state(context, 1)
    return _decode_rows(decoder, state, batch_size, choose, bos=bos, eos=eos, max_len=max_len, pad=pad)


def sample_decode(
    decoder: IncrementalDecoder,
    context: Any,
    batch_size: int,
    *,
    n: int,
    temperature: float,
    bos: int,
    eos: int,
    max_len: int,
    generator: torch.Generator | None = None,
    pad: int = 0,
) -> DecodeOutput:
    """`n` samples per item from softmax(log-probs / temperature); R = batch_size * n rows, item-major.

    `logprobs` are those of the sampling distribution (the tempered one; the model's own at temperature 1)
    and keep their autograd graph when the decoder's log-probs have one, so the caller can backpropagate a
    REINFORCE loss, -(reward * logprobs * mask).sum(), through them (SCST). `generator` (on the decoding
    device) makes the draws reproducible.
    """
    _check_sizes(batch_size, max_len)
    if n < 1:
        raise ValueError(f"sample_decode: n must be >= 1, got {n}")
    if not temperature > 0:
        raise ValueError(f"sample_decode: temperature must be > 0, got {temperature}")

    def choose(logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tempered = F.log_softmax(logp.float() / temperature, dim=-1)  # [A, V]
        tok = torch.multinomial(tempered.detach().exp(), 1, generator=generator)  # [A, 1]
        return tok.squeeze(1), tempered.gather(1, tok).squeeze(1)  # [A], [A]

    state = decoder.init_state(context, n)
    return _decode_rows(decoder, state, batch_size * n, choose, bos=bos, eos=eos, max_len=max_len, pad=pad)


def _decode_rows(
    decoder: IncrementalDecoder,
    state: Any,
    rows_total: int,
    choose: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    *,
    bos: int,
    eos: int,
    max_len: int,
    pad: int,
) -> DecodeOutput:
    """Runs rows independently until each produced eos or max_len tokens; finished rows leave the state."""
    device = _first_device(state)
    rows = torch.arange(rows_total, device=device)  # [A] output row of each live decoder row
    tokens = torch.full((rows_total,), bos, dtype=torch.long, device=device)  # [A]
    lengths = torch.full((rows_total,), max_len, dtype=torch.long, device=device)  # [R]
    token_cols: list[torch.Tensor] = []
    logp_cols: list[torch.Tensor] = []
    for t in range(max_len):
        logp, state = decoder.step(tokens, state)  # [A, V]
        _check_step(logp, rows.numel(), eos)
        tok, lp = choose(logp)  # [A], [A]
        pads = torch.full((rows_total,), pad, dtype=torch.long, device=device)  # [R]
        token_cols.append(pads.index_put((rows,), tok))
        logp_cols.append(lp.new_zeros(rows_total).index_put((rows,), lp))  # differentiable scatter
        ended = tok == eos  # [A]
        lengths[rows[ended]] = t + 1
        if t == max_len - 1 or bool(ended.all()):
            break
        if bool(ended.any()):
            keep = (~ended).nonzero().squeeze(1)  # [A']
            rows, tok = rows[keep], tok[keep]
            state = decoder.reorder_state(state, keep)
        tokens = tok
    out_tokens = torch.stack(token_cols, dim=1)  # [R, L]
    logprobs = torch.stack(logp_cols, dim=1)  # [R, L]
    mask = torch.arange(out_tokens.shape[1], device=device) < lengths[:, None]  # [R, L]
    return DecodeOutput(out_tokens, lengths, logprobs, mask, logprobs.sum(dim=1))


def length_penalty_factor(length: int, alpha: float) -> float:
    """GNMT's length penalty (Wu et al. 2016, eq. 14): lp(L) = ((5 + L) / 6) ** alpha.

    A beam's score is sum(log-probs) / lp(L), with L its length counting eos; alpha = 0 gives lp = 1 (raw
    log-likelihood). This is the `wu_<alpha>` penalty of ruotianluo/self-critical.pytorch's beam search.
    """
    return ((5.0 + length) / 6.0) ** alpha


@dataclass
class _Beams:
    """Per item, K sequences padded to max_len: tokens [B, K, T], logprobs [B, K, T], lengths, scores [B, K]."""

    tokens: torch.Tensor
    logprobs: torch.Tensor
    lengths: torch.Tensor
    scores: torch.Tensor

    def best(self, k: int) -> _Beams:
        """The k highest-scoring of these sequences per item, best first."""
        order = self.scores.topk(k, dim=1).indices  # [B, k]
        return _Beams(
            _gather_beams(self.tokens, order),
            _gather_beams(self.logprobs, order),
            self.lengths.gather(1, order),
            self.scores.gather(1, order),
        )

    def cat(self, other: _Beams) -> _Beams:
        """These sequences and `other`'s side by side (dim 1)."""
        return _Beams(
            torch.cat([self.tokens, other.tokens], dim=1),
            torch.cat([self.logprobs, other.logprobs], dim=1),
            torch.cat([self.lengths, other.lengths], dim=1),
            torch.cat([self.scores, other.scores], dim=1),
        )

    def output(self, rows: slice) -> DecodeOutput:
        """Beams[:, rows] flattened item-major into a DecodeOutput trimmed to its longest row."""
        lengths = self.lengths[:, rows].flatten()  # [R]
        width = max(int(lengths.max()), 1)
        tokens = self.tokens[:, rows, :width].flatten(0, 1)  # [R, L]
        mask = torch.arange(width, device=tokens.device) < lengths[:, None]  # [R, L]
        logprobs = self.logprobs[:, rows, :width].flatten(0, 1)  # [R, L]
        return DecodeOutput(tokens, lengths, logprobs, mask, self.scores[:, rows].flatten())


def beam_search(
    decoder: IncrementalDecoder,
    context: Any,
    batch_size: int,
    *,
    beam_size: int,
    bos: int,
    eos: int,
    max_len: int,
    length_penalty: float = 0.0,
    no_repeat_trigram: bool = False,
    pad: int = 0,
) -> DecodeOutput:
    """Beam search with `beam_size` live beams per item; returns the best sequence per item (R = batch_size),
    with every kept finished beam in `.beams` (batch_size * beam_size rows, item-major, best first).

    Each step extends every live beam by every token. The `beam_size` best extensions ending in eos (scored
    by `length_penalty_factor`, alpha = `length_penalty`) merge into the item's finished list, which keeps
    its `beam_size` best; the `beam_size` best other extensions (by raw log-likelihood) stay live. At
    `max_len` every extension finishes (truncated unless it is eos). The search stops early once no live
    beam of any item can still enter its finished list (exact: log-likelihoods only fall as beams grow, so
    a live beam's best possible score is its log-likelihood over the largest lp still reachable).
    `no_repeat_trigram` forbids a token that would repeat a trigram already in the beam (fairseq's
    no_repeat_ngram_size=3). Items with fewer than `beam_size` possible sequences get -inf-scored extra rows.
    """
    _check_sizes(batch_size, max_len)
    if beam_size < 1:
        raise ValueError(f"beam_search: beam_size must be >= 1, got {beam_size}")
    b, k = batch_size, beam_size
    state = decoder.init_state(context, k)
    device = _first_device(state)
    offsets = torch.arange(b, device=device)[:, None] * k  # [B, 1] first row of each item
    alive_tokens = torch.zeros(b, k, 0, dtype=torch.long, device=device)  # [B, K, t]
    alive_logps = torch.zeros(b, k, 0, device=device)  # [B, K, t]
    alive_scores = torch.full((b, k), float("-inf"), device=device)  # [B, K] only beam 0 lives at first
    alive_scores[:, 0] = 0.0
    finished = _Beams(
        torch.full((b, k, max_len), pad, dtype=torch.long, device=device),  # tokens [B, K, max_len]
        torch.zeros(b, k, max_len, device=device),  # logprobs [B, K, max_len]
        torch.zeros(b, k, dtype=torch.long, device=device),  # lengths [B, K]
        torch.full((b, k), float("-inf"), device=device),  # scores [B, K]
    )
    every_beam = torch.arange(k, device=device).expand(b, k)  # [B, K]
    eos_tok = torch.full((b, k), eos, dtype=torch.long, device=device)  # [B, K]
    tokens = torch.full((b * k,), bos, dtype=torch.long, device=device)  # [B*K]
    for t in range(max_len):
        logp, state = decoder.step(tokens, state)  # [B*K, V]
        _check_step(logp, b * k, eos)
        vocab = logp.shape[-1]
        if no_repeat_trigram:
            logp = block_repeated_trigrams(logp, alive_tokens.flatten(0, 1))  # [B*K, V]
        logp = logp.float().view(b, k, vocab)  # [B, K, V]
        cand = alive_scores[..., None] + logp  # [B, K, V] log-likelihood of every extension
        lp = length_penalty_factor(t + 1, length_penalty)
        if t == max_len - 1:  # every extension ends here
            scores, top = cand.flatten(1).topk(k, dim=1)  # [B, K], [B, K]
            ends = _extend(
                alive_tokens, alive_logps, logp, top // vocab, top % vocab, scores / lp, max_len, pad
            )
            finished = finished.cat(ends).best(k)
            break
        ends = _extend(
            alive_tokens, alive_logps, logp, every_beam, eos_tok, cand[..., eos] / lp, max_len, pad
        )
        finished = finished.cat(ends).best(k)
        cand[..., eos] = float("-inf")
        scores, top = cand.flatten(1).topk(k, dim=1)  # [B, K], [B, K]
        beam, tok = top // vocab, top % vocab  # [B, K] source beam and new token
        alive_tokens = torch.cat([_gather_beams(alive_tokens, beam), tok[..., None]], dim=2)  # [B, K, t+1]
        new_logp = logp.flatten(1).gather(1, top)  # [B, K]
        alive_logps = torch.cat([_gather_beams(alive_logps, beam), new_logp[..., None]], dim=2)  # [B, K, t+1]
        alive_scores = scores
        state = decoder.reorder_state(state, (beam + offsets).flatten())
        tokens = tok.flatten()  # [B*K]
        reach = max(
            length_penalty_factor(t + 2, length_penalty), length_penalty_factor(max_len, length_penalty)
        )
        bound = alive_scores.max(dim=1).values / reach  # [B] best score any live beam can still reach
        if bool((finished.scores[:, -1] >= bound).all()):
            break
    out = finished.output(slice(0, 1))
    out.beams = finished.output(slice(None))
    return out


def _extend(
    tokens: torch.Tensor,
    logps: torch.Tensor,
    logp: torch.Tensor,
    beam: torch.Tensor,
    tok: torch.Tensor,
    scores: torch.Tensor,
    max_len: int,
    pad: int,
) -> _Beams:
    """Beams `beam` [B, J] of tokens/logps [B, K, t] extended by `tok` [B, J] (next-token log-probs logp
    [B, K, V]), scored `scores` [B, J], padded to max_len."""
    new_lp = _gather_beams(logp, beam).gather(2, tok[..., None])  # [B, J, 1]
    seq = torch.cat([_gather_beams(tokens, beam), tok[..., None]], dim=2)  # [B, J, t+1]
    seq_lp = torch.cat([_gather_beams(logps, beam), new_lp], dim=2)  # [B, J, t+1]
    fill = max_len - seq.shape[2]
    lengths = torch.full(beam.shape, seq.shape[2], dtype=torch.long, device=beam.device)  # [B, J]
    return _Beams(F.pad(seq, (0, fill), value=pad), F.pad(seq_lp, (0, fill)), lengths, scores)


def _gather_beams(x: torch.Tensor, beam: torch.Tensor) -> torch.Tensor:
    """x [B, K, T...] at beams `beam` [B, J] → [B, J, T...]."""
    index = beam.view(*beam.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])  # [B, J, T...]
    return x.gather(1, index)


def block_repeated_trigrams(logp: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    """logp [M, V] with -inf on every token that would complete a trigram already present in prefix [M, t].

    The candidate trigram is (prefix[-2], prefix[-1], token); it repeats trigram i when prefix[i] ==
    prefix[-2] and prefix[i+1] == prefix[-1], which bans token prefix[i+2].
    """
    if prefix.shape[1] < 3:
        return logp
    hit = (prefix[:, :-2] == prefix[:, -2:-1]) & (prefix[:, 1:-1] == prefix[:, -1:])  # [M, t-2]
    counts = torch.zeros(logp.shape, device=logp.device).scatter_add_(1, prefix[:, 2:], hit.float())  # [M, V]
    banned = counts > 0  # [M, V]
    return logp.masked_fill(banned, float("-inf"))


def _check_sizes(batch_size: int, max_len: int) -> None:
    if batch_size < 1:
        raise ValueError(f"decoding: batch_size must be >= 1, got {batch_size}")
    if max_len < 1:
        raise ValueError(f"decoding: max_len must be >= 1, got {max_len}")


def _check_step(logp: torch.Tensor, rows: int, eos: int) -> None:
    if logp.dim() != 2 or logp.shape[0] != rows:
        raise ValueError(
            f"decoder.step returned log-probs of shape {tuple(logp.shape)}, expected [{rows}, V]"
        )
    if not 0 <= eos < logp.shape[1]:
        raise ValueError(f"decoding: eos id {eos} is outside the decoder's vocabulary of {logp.shape[1]}")


def _first_device(obj: Any) -> torch.device:
    """Device of the first non-CPU tensor inside `obj` (tensor, dataclass, tuple/list, dict), else CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.device
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        children: Any = (getattr(obj, f.name) for f in dataclasses.fields(obj))
    elif isinstance(obj, Mapping):
        children = obj.values()
    elif isinstance(obj, (tuple, list)):
        children = obj
    else:
        return torch.device("cpu")
    for child in children:
        device = _first_device(child)
        if device.type != "cpu":
            return device
    return torch.device("cpu")
