"""When the exact MRF contraction runs in probability space (:mod:`hybridpgm.infer.mrf_operands`)."""

import math
from unittest import mock

import pytest
import torch

from hybridpgm.infer import bn_contract, mrf_operands


@pytest.mark.parametrize("log_states,dtype,want", [
    (4 * math.log(2), torch.float64, 1e-250),
    (4 * math.log(2), torch.float32, 1e-15),
    (200.0, torch.float64, math.exp(200.0) * torch.finfo(torch.float64).tiny / torch.finfo(torch.float64).eps),
    (64 * math.log(2), torch.float32, 2.0 ** 64 * torch.finfo(torch.float32).tiny / torch.finfo(torch.float32).eps),
    (230 * math.log(2), torch.float32, 2.0 ** 230 * torch.finfo(torch.float32).tiny / torch.finfo(torch.float32).eps),
    (231 * math.log(2), torch.float32, math.inf),  # 2^231 tiny / eps = 2^128: past float32's range
    (4 * math.log(2), torch.bfloat16, math.inf),
])
def test_floor_rises_with_the_joint_states(log_states, dtype, want):
    got = mrf_operands.probability_floor(dtype, log_states)
    assert got == want if math.isinf(want) else math.isclose(got, want, rel_tol=1e-12)


@pytest.mark.parametrize("dtype,log_states,floors,want", [
    (torch.float64, 400 * math.log(2), None, torch.float64),
    (torch.float32, 53 * math.log(2), None, torch.float32),  # S = 2^53 < 1e16
    (torch.float32, 54 * math.log(2), None, torch.float64),
    (torch.float32, 54 * math.log(2), {torch.float32: 1e-15}, None),
    (torch.bfloat16, 4 * math.log(2), None, None),
])
def test_the_probability_dtype(dtype, log_states, floors, want):
    with mock.patch.dict(bn_contract.PROBABILITY_FLOOR, floors or {}, clear=floors is not None):
        assert mrf_operands.probability_dtype(dtype, log_states) == want
