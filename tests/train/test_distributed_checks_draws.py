"""The data checksum of fit under torchrun (hybridpgm/train/distributed_checks.py, ``data_fingerprint``) of a data set
that draws as it reads.

Before: the checksum read the examples with each rank's own RNG, so a dynamically binarized data set (the README's
quickstart data) was refused as "ranks disagree on the configuration: data" on a second ``fit`` in the same
processes (``fit`` leaves each rank's RNG where its rank-mixed seed left it) or under per-rank seeds; and the three
reads used up the caller's random numbers.  The 2-rank run: /work/audit38/REVIEWB/repro_fingerprint_dynamic.py.
"""

import random

import numpy as np
import torch

from hybridpgm.data import DynamicBinarized
from hybridpgm.train.distributed_checks import data_fingerprint


class _Jitter(torch.utils.data.Dataset):
    """Rows plus Python- and NumPy-drawn noise at each read (an augmentation)."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.tensor([float(i) + random.random() + float(np.random.rand())])


def test_a_data_set_drawn_at_each_read_checksums_alike_under_any_rng_state():
    grey = torch.rand(64, 12, generator=torch.Generator().manual_seed(0))
    for dataset in (DynamicBinarized(grey), _Jitter()):
        sums = []
        for rank in (0, 1):  # the ranks' RNGs differ (per-rank seeds, or fit's rank-mixed seed of an earlier run)
            torch.manual_seed(100 + rank)
            random.seed(100 + rank)
            np.random.seed(100 + rank)
            sums.append(data_fingerprint(dataset, 2))
        assert sums[0] == sums[1]
    x = torch.arange(32.0).reshape(16, 2)  # still tells two ranks' own shards apart
    shards = [data_fingerprint(torch.utils.data.TensorDataset(x[i:i + 8]), 2) for i in (0, 8)]
    assert shards[0] != shards[1]


def test_the_checksum_uses_up_no_random_number():
    grey = torch.rand(64, 12, generator=torch.Generator().manual_seed(0))
    states = []
    for check in (False, True):
        torch.manual_seed(7)
        random.seed(7)
        np.random.seed(7)
        if check:
            data_fingerprint(DynamicBinarized(grey), 2)
        states.append((torch.rand(3).tolist(), random.random(), float(np.random.rand())))
    assert states[0] == states[1]
