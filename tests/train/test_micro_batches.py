"""Micro-batches of fit's accumulate (hybridpgm.train.micro_batches)."""

import pytest
import torch

from hybridpgm.train.micro_batches import micro_batch_origin, split_batch


def test_split_batch_weights_sum_to_one():
    batch = (torch.arange(10), torch.arange(10) * 2)
    parts = split_batch(batch, 4)
    assert [len(m[0]) for m, _ in parts] == [3, 3, 2, 2]
    assert sum(w for _, w in parts) == pytest.approx(1.0)
    assert torch.equal(torch.cat([m[1] for m, _ in parts]), batch[1])
    assert len(split_batch(torch.arange(2), 4)) == 2  # empty micro-batches are left out


def test_micro_batch_origin_names_the_micro_batch_only_when_the_batch_was_split():
    batch = torch.arange(5)
    assert micro_batch_origin(3, "elbo", 0, split_batch(batch, 1)) == "training data, step 3, player 'elbo'"
    assert micro_batch_origin(3, "elbo", 2, split_batch(batch, 3)) == \
        "training data, step 3, player 'elbo', micro-batch 3 of 3 (1 row)"
