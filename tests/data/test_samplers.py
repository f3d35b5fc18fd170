"""The resumable batch sampler: sharding over ranks and accumulation, resume positions, shuffling."""

from __future__ import annotations

import itertools

import pytest

from clipvil.data.samplers import ResumableBatchSampler


def updates(sampler: ResumableBatchSampler) -> list[list[int]]:
    """The micro-batches of one epoch grouped per update (grad_accum micro-batches each)."""
    micro = list(sampler)
    a = sampler.grad_accum
    return [list(itertools.chain(*micro[i : i + a])) for i in range(0, len(micro), a)]


def test_ranks_and_micro_batches_cover_the_single_process_batch() -> None:
    single = ResumableBatchSampler(50, batch_size=8, seed=3)
    single.set_position(epoch=2, step_in_epoch=0)
    ranks = [ResumableBatchSampler(50, 8, grad_accum=2, rank=r, world_size=2, seed=3) for r in range(2)]
    for r in ranks:
        r.set_position(epoch=2, step_in_epoch=0)
    per_rank = [updates(r) for r in ranks]
    expected = updates(single)
    assert len(expected) == 50 // 8  # the partial last batch is dropped
    for step, batch in enumerate(expected):
        assert sorted(per_rank[0][step] + per_rank[1][step]) == sorted(batch)
        assert len(per_rank[0][step]) == len(per_rank[1][step]) == 4
    assert all(len(mb) == 2 for mb in ranks[0])  # micro-batch = 8 / (2 accum x 2 ranks)


def test_resume_position_gives_the_rest_of_the_epoch() -> None:
    sampler = ResumableBatchSampler(40, batch_size=4, grad_accum=2, seed=0)
    sampler.set_position(1, 0)
    full = list(sampler)
    sampler.set_position(1, 3)
    assert list(sampler) == full[3 * 2 :] and len(sampler) == len(full) - 6


def test_epochs_shuffle_differently_and_reproducibly() -> None:
    a, b = ResumableBatchSampler(30, 5, seed=1), ResumableBatchSampler(30, 5, seed=1)
    assert a.epoch_order(0) == b.epoch_order(0) != a.epoch_order(1)
    assert sorted(a.epoch_order(4)) == list(range(30))
    assert ResumableBatchSampler(30, 5, shuffle=False).epoch_order(7) == list(range(30))


def test_bad_shapes_fail() -> None:
    with pytest.raises(ValueError, match="divisible by grad_accum x world size = 3 x 1"):
        ResumableBatchSampler(30, 8, grad_accum=3)
    with pytest.raises(ValueError, match="fewer than one batch"):
        ResumableBatchSampler(3, 8)


def test_bucket_batches_are_pure_resume_mid_epoch_and_shard_like_one_process() -> None:
    from clipvil.data.samplers import BucketBatchSampler

    buckets = [i % 3 for i in range(50)]  # 17, 17, 16 items: 4 + 4 + 4 full batches of 4
    whole = BucketBatchSampler(buckets, 4, seed=7)
    assert whole.steps_per_epoch == 12
    batches = list(whole)
    assert all(len({buckets[i] for i in b}) == 1 and len(b) == 4 for b in batches)
    assert len({i for b in batches for i in b}) == 48  # no item twice in an epoch
    whole.set_position(0, 5)
    assert list(whole) == batches[5:]  # mid-epoch resume
    whole.set_position(1, 0)
    assert list(whole) != batches  # another epoch, another order
    ranks = [BucketBatchSampler(buckets, 4, grad_accum=2, rank=r, world_size=2, seed=7) for r in range(2)]
    per_rank = [list(s) for s in ranks]  # each yields 2 micro-batches of 1 per update
    for step, batch in enumerate(batches):
        chunks = [per_rank[r][2 * step + a] for a in range(2) for r in range(2)]  # chunk a*W + r
        assert sorted(i for c in chunks for i in c) == sorted(batch)
