"""Greedy, sampling and beam search against hand-made decoders whose next-token law is a known table.

Two toy decoders implement `IncrementalDecoder`:
- `TableDecoder`: log P(next | previous token) from a per-item table [V, V] (a first-order chain);
- `PrefixDecoder`: log P(next | whole prefix) drawn from a generator seeded by (item, prefix), so every
  prefix has its own distribution and no two sequences tie.
Expected values come from plain-Python enumeration of every sequence, argmax chaining by hand and a
plain-Python beam search written here.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections import Counter

import pytest
import torch

from clipvil.nn.decoding import (
    DecodeOutput,
    IncrementalDecoder,
    beam_search,
    block_repeated_trigrams,
    greedy_decode,
    length_penalty_factor,
    sample_decode,
)

PAD, BOS, EOS = 0, 1, 2


class TableDecoder:
    """context: log-prob tables [B, V, V] (row = previous token); state: (tables [M, V, V], prefix [M, t])."""

    def init_state(self, context: torch.Tensor, expand: int) -> tuple[torch.Tensor, torch.Tensor]:
        tables = context.repeat_interleave(expand, dim=0)  # [M, V, V]
        return tables, torch.zeros(tables.shape[0], 0, dtype=torch.long)

    def step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        tables, prefix = state
        logp = tables[torch.arange(tables.shape[0]), tokens]  # [M, V]
        return logp, (tables, torch.cat([prefix, tokens[:, None]], dim=1))

    def reorder_state(self, state: tuple[torch.Tensor, torch.Tensor], index: torch.Tensor):
        return state[0][index], state[1][index]


class PrefixDecoder:
    """context: item ids [B]; log P(next | bos + prefix) is a fixed random law per (item, prefix)."""

    def __init__(self, vocab: int, spread: float = 2.0) -> None:
        self.vocab, self.spread, self.calls = vocab, spread, 0

    def law(self, item: int, prefix: tuple[int, ...]) -> torch.Tensor:
        seed = zlib.crc32(repr((item, prefix)).encode())
        logits = torch.randn(self.vocab, generator=torch.Generator().manual_seed(seed)) * self.spread
        return torch.log_softmax(logits.double(), dim=0).float()  # [V]

    def init_state(self, context: torch.Tensor, expand: int) -> tuple[torch.Tensor, torch.Tensor]:
        items = context.repeat_interleave(expand)  # [M]
        return items, torch.zeros(items.shape[0], 0, dtype=torch.long)

    def step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        items, prefix = state
        prefix = torch.cat([prefix, tokens[:, None]], dim=1)  # [M, t+1]
        self.calls += 1
        rows = [self.law(int(i), tuple(p.tolist())) for i, p in zip(items, prefix)]
        return torch.stack(rows), (items, prefix)

    def reorder_state(self, state: tuple[torch.Tensor, torch.Tensor], index: torch.Tensor):
        return state[0][index], state[1][index]


def _all_sequences(law, max_len: int, vocab: int, no_repeat: bool = False):
    """Every finishable sequence (eos-ended up to max_len tokens, or max_len tokens without eos) with its
    log-likelihood; `law(prefix)` gives next-token log-probs after bos + prefix."""
    out = []
    for length in range(1, max_len + 1):
        for seq in itertools.product(range(vocab), repeat=length):
            if EOS in seq[:-1] or (length < max_len and seq[-1] != EOS):
                continue
            if no_repeat and _has_repeated_trigram(seq):
                continue
            score = sum(float(law((BOS, *seq[:t]))[w]) for t, w in enumerate(seq))
            out.append((seq, score))
    return out


def _has_repeated_trigram(seq: tuple[int, ...]) -> bool:
    grams = [seq[i : i + 3] for i in range(len(seq) - 2)]
    return len(grams) != len(set(grams))


def _ranked(seqs, alpha: float):
    scored = [(seq, s / length_penalty_factor(len(seq), alpha)) for seq, s in seqs]
    return sorted(scored, key=lambda x: -x[1])


def _rows(out: DecodeOutput) -> list[tuple[int, ...]]:
    return [tuple(row[:n].tolist()) for row, n in zip(out.tokens, out.lengths)]


def _random_tables(batch: int, vocab: int, seed: int, spread: float = 2.0) -> torch.Tensor:
    logits = torch.randn(batch, vocab, vocab, generator=torch.Generator().manual_seed(seed)) * spread
    return torch.log_softmax(logits, dim=-1)  # [B, V, V]


def test_toy_decoders_follow_the_protocol() -> None:
    assert isinstance(TableDecoder(), IncrementalDecoder)
    assert isinstance(PrefixDecoder(4), IncrementalDecoder)


def test_greedy_is_argmax_chaining() -> None:
    tables = _random_tables(3, 6, seed=1)
    tables[0, 4] = torch.log_softmax(torch.tensor([0.0, 0, 9, 0, 0, 0]), 0)  # item 0 ends after a 4
    tables[0, BOS] = torch.log_softmax(torch.tensor([0.0, 0, 0, 0, 9, 0]), 0)  # ... and starts with it
    out = greedy_decode(TableDecoder(), tables, 3, bos=BOS, eos=EOS, max_len=7, pad=9)
    for b in range(3):
        prev, seq, lps = BOS, [], []
        for _ in range(7):
            w = int(tables[b, prev].argmax())
            seq.append(w)
            lps.append(float(tables[b, prev, w]))
            prev = w
            if w == EOS:
                break
        n = len(seq)
        assert out.lengths[b] == n
        assert out.tokens[b, :n].tolist() == seq
        assert out.tokens[b, n:].tolist() == [9] * (out.tokens.shape[1] - n)
        assert out.mask[b].tolist() == [True] * n + [False] * (out.tokens.shape[1] - n)
        torch.testing.assert_close(out.logprobs[b, :n], torch.tensor(lps))
        assert out.logprobs[b, n:].abs().sum() == 0
        assert out.scores[b].item() == pytest.approx(sum(lps), abs=1e-5)
    assert out.tokens[0, :2].tolist() == [4, EOS]
    assert out.tokens.shape[1] == int(out.lengths.max())


@pytest.mark.parametrize("alpha", [0.0, 1.5])
def test_exhaustive_beam_finds_the_brute_force_best(alpha: float) -> None:
    vocab, max_len = 5, 4
    k = (vocab - 1) ** (max_len - 1)  # every live prefix fits: the search is exhaustive
    dec = PrefixDecoder(vocab)
    out = beam_search(
        dec, torch.tensor([6, 0, 1]), 3, beam_size=k, bos=BOS, eos=EOS, max_len=max_len, length_penalty=alpha
    )
    for b, item in enumerate((6, 0, 1)):
        ranked = _ranked(_all_sequences(lambda p, item=item: dec.law(item, p), max_len, vocab), alpha)
        assert _rows(out)[b] == ranked[0][0]
        assert out.scores[b].item() == pytest.approx(ranked[0][1], abs=1e-4)
        beams = _rows(out.beams)[b * k : (b + 1) * k]
        assert beams == [seq for seq, _ in ranked[:k]]  # every kept beam, best first
        torch.testing.assert_close(
            out.beams.scores[b * k : (b + 1) * k], torch.tensor([s for _, s in ranked[:k]]), atol=1e-4, rtol=0
        )


def test_length_penalty_changes_the_winner() -> None:
    """The settings above do exercise the penalty: the best sequence of item 6 is longer with alpha 1.5."""
    dec = PrefixDecoder(5)
    seqs = _all_sequences(lambda p: dec.law(6, p), 4, 5)
    plain, penalised = _ranked(seqs, 0.0)[0][0], _ranked(seqs, 1.5)[0][0]
    assert len(penalised) > len(plain)
    out = beam_search(
        dec, torch.tensor([6]), 1, beam_size=64, bos=BOS, eos=EOS, max_len=4, length_penalty=1.5
    )
    assert _rows(out)[0] == penalised


def _reference_beam(law, vocab: int, k: int, max_len: int, alpha: float):
    """Plain beam search: extend every live beam by every token; eos extensions finish (length-penalised),
    the k best other extensions stay live; at max_len every extension finishes; keep the k best finished."""
    alive, finished = [((), 0.0)], []
    for t in range(max_len):
        ext = [(seq + (w,), s + float(law((BOS, *seq))[w])) for seq, s in alive for w in range(vocab)]
        lp = length_penalty_factor(t + 1, alpha)
        if t == max_len - 1:
            finished += [(seq, s / lp) for seq, s in ext]
            break
        finished += [(seq, s / lp) for seq, s in ext if seq[-1] == EOS]
        alive = sorted((e for e in ext if e[0][-1] != EOS), key=lambda e: -e[1])[:k]
    return sorted(finished, key=lambda e: -e[1])[:k]


@pytest.mark.parametrize(("k", "alpha"), [(1, 0.0), (2, 0.0), (3, 1.0)])
def test_small_beams_match_a_plain_beam_search(k: int, alpha: float) -> None:
    vocab, max_len = 6, 6
    dec = PrefixDecoder(vocab, spread=1.0)
    out = beam_search(
        dec, torch.tensor([3, 4]), 2, beam_size=k, bos=BOS, eos=EOS, max_len=max_len, length_penalty=alpha
    )
    for b, item in enumerate((3, 4)):
        expected = _reference_beam(lambda p, item=item: dec.law(item, p), vocab, k, max_len, alpha)
        assert _rows(out.beams)[b * k : (b + 1) * k] == [seq for seq, _ in expected]
        got = out.beams.scores[b * k : (b + 1) * k]
        torch.testing.assert_close(got, torch.tensor([s for _, s in expected]), atol=1e-4, rtol=0)


def test_beam_two_beats_greedy_where_it_should() -> None:
    """bos → A (0.5) or B (0.4); after A every token is 0.2; after B eos is 0.95: B eos (0.38) wins."""
    v = 5  # pad, bos, eos, A=3, B=4
    table = torch.full((v, v), 1e-6)
    table[BOS, 3], table[BOS, 4], table[BOS, EOS] = 0.5, 0.4, 0.1
    table[3] = 0.2
    table[4, EOS], table[4, 3] = 0.95, 0.05
    logp = (table / table.sum(1, keepdim=True)).log()[None]  # [1, V, V]
    greedy = greedy_decode(TableDecoder(), logp, 1, bos=BOS, eos=EOS, max_len=2)
    beam = beam_search(TableDecoder(), logp, 1, beam_size=2, bos=BOS, eos=EOS, max_len=2)
    assert greedy.tokens[0, 0] == 3
    assert _rows(beam) == [(4, EOS)]
    assert beam.scores[0].item() == pytest.approx(math.log(0.4 * 0.95 / (1 + 4e-6)), abs=1e-5)
    assert beam.logprobs[0].exp().tolist() == pytest.approx([0.4, 0.95], abs=1e-5)


def test_block_repeated_trigrams_by_hand() -> None:
    logp = torch.zeros(3, 6)
    prefix = torch.tensor([[3, 4, 3, 4], [3, 4, 5, 3], [5, 5, 5, 5]])
    out = block_repeated_trigrams(logp, prefix)
    assert torch.isinf(out[0]).nonzero().flatten().tolist() == [3]  # (3, 4, 3) would repeat
    assert not torch.isinf(out[1]).any()  # (5, 3, ·) never seen
    assert torch.isinf(out[2]).nonzero().flatten().tolist() == [5]  # (5, 5, 5) would repeat
    assert block_repeated_trigrams(logp, prefix[:, :2]) is logp


def test_no_repeat_trigram_blocks_a_repeat() -> None:
    v, max_len = 5, 6
    table = torch.full((v, v), 0.02)
    table[BOS, 3] = table[3, 4] = table[4, 3] = 0.9  # a 3 4 3 4 ... cycle
    logp = (table / table.sum(1, keepdim=True)).log()[None]  # [1, V, V]
    free = beam_search(TableDecoder(), logp, 1, beam_size=2, bos=BOS, eos=EOS, max_len=max_len)
    assert _rows(free) == [(3, 4, 3, 4, 3, 4)]
    blocked = beam_search(
        TableDecoder(), logp, 1, beam_size=256, bos=BOS, eos=EOS, max_len=max_len, no_repeat_trigram=True
    )
    assert not _has_repeated_trigram(_rows(blocked)[0])
    seqs = _all_sequences(lambda p: logp[0, p[-1]], max_len, v, no_repeat=True)
    assert _rows(blocked)[0] == _ranked(seqs, 0.0)[0][0]


def test_sampling_at_low_temperature_is_greedy() -> None:
    tables = _random_tables(3, 7, seed=2)
    greedy = greedy_decode(TableDecoder(), tables, 3, bos=BOS, eos=EOS, max_len=8)
    gen = torch.Generator().manual_seed(0)
    cold = sample_decode(
        TableDecoder(), tables, 3, n=4, temperature=1e-3, bos=BOS, eos=EOS, max_len=8, generator=gen
    )
    assert cold.tokens.shape[0] == 12
    for b in range(3):  # rows b*4 .. b*4+3 are item b's
        for j in range(4):
            assert _rows(cold)[b * 4 + j] == _rows(greedy)[b]


def test_sample_frequencies_match_the_table() -> None:
    tables = _random_tables(2, 5, seed=3, spread=1.0)
    gen = torch.Generator().manual_seed(0)
    n = 4000
    out = sample_decode(
        TableDecoder(), tables, 2, n=n, temperature=1.0, bos=BOS, eos=EOS, max_len=2, generator=gen
    )
    for b in range(2):
        rows = out.tokens[b * n : (b + 1) * n]  # [n, L]
        first = Counter(rows[:, 0].tolist())
        for w in range(5):
            assert first[w] / n == pytest.approx(float(tables[b, BOS, w].exp()), abs=0.03)
        prev = max((w for w in range(5) if w != EOS), key=lambda w: first[w])  # most frequent non-eos start
        second = Counter(rows[rows[:, 0] == prev, 1].tolist())
        total = sum(second.values())
        for w in range(5):
            assert second[w] / total == pytest.approx(float(tables[b, prev, w].exp()), abs=0.06)
        ended = rows[:, 0] == EOS
        assert (out.lengths[b * n : (b + 1) * n] == torch.where(ended, 1, 2)).all()
        assert (rows[ended, 1] == PAD).all()


def test_sample_logprobs_carry_the_gradient_of_the_tempered_law() -> None:
    weights = torch.randn(6, 6, generator=torch.Generator().manual_seed(4)).requires_grad_()

    class Trainable(TableDecoder):
        def step(self, tokens, state):
            _, state = super().step(tokens, state)
            return torch.log_softmax(weights[tokens], dim=-1), state

    gen = torch.Generator().manual_seed(1)
    out = sample_decode(
        Trainable(), torch.zeros(2, 6, 6), 2, n=3, temperature=2.0, bos=BOS, eos=EOS, max_len=5, generator=gen
    )
    by_hand = []
    for seq in _rows(out):
        prev = (BOS, *seq[:-1])
        by_hand += [torch.log_softmax(weights[p] / 2.0, dim=-1)[w] for p, w in zip(prev, seq)]
    expected = torch.stack(by_hand)
    torch.testing.assert_close(out.logprobs[out.mask], expected)
    (grad_ours,) = torch.autograd.grad(out.logprobs.sum(), weights)
    (grad_hand,) = torch.autograd.grad(expected.sum(), weights)
    torch.testing.assert_close(grad_ours, grad_hand)


def test_batch_items_are_independent() -> None:
    dec = PrefixDecoder(6, spread=1.0)
    items = torch.tensor([5, 6, 7])
    greedy = greedy_decode(dec, items, 3, bos=BOS, eos=EOS, max_len=6)
    beam = beam_search(dec, items, 3, beam_size=3, bos=BOS, eos=EOS, max_len=6, length_penalty=0.6)
    for b in range(3):
        one = items[b : b + 1]
        g1 = greedy_decode(dec, one, 1, bos=BOS, eos=EOS, max_len=6)
        assert _rows(g1)[0] == _rows(greedy)[b]
        b1 = beam_search(dec, one, 1, beam_size=3, bos=BOS, eos=EOS, max_len=6, length_penalty=0.6)
        assert _rows(b1.beams) == _rows(beam.beams)[b * 3 : (b + 1) * 3]
        torch.testing.assert_close(b1.beams.scores, beam.beams.scores[b * 3 : (b + 1) * 3])


def test_early_stop_saves_steps_without_changing_the_result() -> None:
    """A law that ends almost surely after one token: beam search stops long before max_len."""
    table = torch.full((5, 5), -12.0)
    table[:, EOS] = 0.0
    logp = torch.log_softmax(table, dim=-1)[None]  # [1, V, V]
    calls = []

    class Counting(TableDecoder):
        def step(self, tokens, state):
            calls.append(1)
            return super().step(tokens, state)

    out = beam_search(Counting(), logp, 1, beam_size=2, bos=BOS, eos=EOS, max_len=30)
    assert _rows(out) == [(EOS,)]
    assert len(calls) < 5


def test_early_stop_respects_the_length_penalty() -> None:
    """bos → eos 0.55 or A 0.45, A → eos 0.9: with alpha 3, (A, eos) scores log(0.405) / (7/6)^3 = -0.57 and
    beats (eos,) at log(0.55) = -0.60, although A's raw log-likelihood already trails eos after one step."""
    v = 4  # pad, bos, eos, A=3
    table = torch.full((v, v), 1e-9)
    table[BOS, EOS], table[BOS, 3] = 0.55, 0.45
    table[3, EOS], table[3, 3] = 0.9, 0.1
    logp = (table / table.sum(1, keepdim=True)).log()[None]  # [1, V, V]
    out = beam_search(TableDecoder(), logp, 1, beam_size=1, bos=BOS, eos=EOS, max_len=5, length_penalty=3.0)
    assert _rows(out) == [(3, EOS)]
    assert out.scores[0].item() == pytest.approx(math.log(0.45 * 0.9) / (7 / 6) ** 3, abs=1e-6)
    expected = _reference_beam(lambda p: logp[0, p[-1]], v, 1, 5, 3.0)
    assert _rows(out) == [expected[0][0]]


def test_bad_arguments_are_named() -> None:
    tables = _random_tables(1, 4, seed=0)
    with pytest.raises(ValueError, match="eos id 7 is outside the decoder's vocabulary of 4"):
        greedy_decode(TableDecoder(), tables, 1, bos=BOS, eos=7, max_len=3)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        sample_decode(TableDecoder(), tables, 1, n=1, temperature=0.0, bos=BOS, eos=EOS, max_len=3)
    with pytest.raises(ValueError, match="beam_size must be >= 1"):
        beam_search(TableDecoder(), tables, 1, beam_size=0, bos=BOS, eos=EOS, max_len=3)

    class OneRow(TableDecoder):
        def step(self, tokens, state):
            return tables[0, :1], state

    with pytest.raises(ValueError, match=r"log-probs of shape \(1, 4\), expected \[2, V\]"):
        greedy_decode(OneRow(), tables, 2, bos=BOS, eos=EOS, max_len=3)
