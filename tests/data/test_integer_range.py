"""Whether integer data lie where a float holds every integer exactly (hybridpgm/data/integer_range.py): the flag
read nothing and agree with the exact range at the limits, for every integer dtype."""

import numpy as np
import pytest
import torch

from hybridpgm.data.integer_range import integer_range, outside_exact_range

DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
          *(getattr(torch, n) for n in ("uint16", "uint32", "uint64") if hasattr(torch, n))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bits", [4, 11, 24, 53])
def test_the_flag_is_the_exact_ranges_verdict_and_reads_nothing(host_reads, dtype, bits):
    """Values at :math:`\\pm 2^p` are inside, one beyond is outside, for each dtype that holds them (a uint8 or int8
    tensor beside the limit 2^24: compared in int64, not wrapped to the tensor's dtype)."""
    info = torch.iinfo(dtype) if dtype not in (torch.uint16, torch.uint32, torch.uint64) else None
    low_held = 0 if (info is None or info.min == 0) else info.min
    high_held = 2 ** 63 - 1 if info is None else info.max
    limit = 2 ** bits
    for values in ([0, 1], [limit], [-limit], [limit + 1], [-limit - 1], [3, high_held], [low_held, 2]):
        if min(values) < low_held or max(values) > high_held:
            continue
        x = torch.from_numpy(np.array(values, dtype=np.int64)).to(dtype) if dtype != torch.uint64 else \
            torch.from_numpy(np.array(values, dtype=np.uint64))
        host_reads.clear()
        flag = outside_exact_range(x, bits)
        assert host_reads == [] and flag.dtype == torch.bool and flag.dim() == 0
        low, high = integer_range(x)
        assert bool(flag) == (low < -limit or high > limit), (values, dtype, bits)


def test_uint64_values_beyond_int64_are_outside():
    huge = torch.from_numpy(np.array([3, 2 ** 64 - 1], dtype=np.uint64))
    assert bool(outside_exact_range(huge, 53)) and integer_range(huge) == (3, 2 ** 64 - 1)
