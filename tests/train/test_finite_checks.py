"""The finiteness tests of losses, gradients and parameters (hybridpgm/train/finite_checks.py)."""

import math

import pytest
import torch

from hybridpgm.errors import TrainingDivergedError
from hybridpgm.train.chunked_finite import CHUNK
from hybridpgm.train.finite_checks import _all_finite, _sums, check_finite_parameters
from tests.train.helpers import cpu_allocations


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), None])
def test_all_finite_sees_every_non_finite_value(bad):
    tensors = [torch.randn(3, 4), torch.empty(0), torch.randn(5, dtype=torch.float64)]
    if bad is not None:
        tensors[2][3] = bad
    assert bool(_all_finite(tensors, torch.device("cpu"))) is (bad is None)
    assert bool(_all_finite([torch.tensor(1e300, dtype=torch.float64), torch.ones(2)], torch.device("cpu")))


def test_parameters_whose_sum_overflows_are_finite_and_a_nan_among_them_is_found():
    """The one-sum screen of check_finite_parameters cannot tell huge finite values from an overflow:
    the exact check decides."""
    module = torch.nn.Linear(4, 3)
    with torch.no_grad():
        module.weight.fill_(3e38)
    check_finite_parameters(module, {}, step=5, checkpoint=None)
    with torch.no_grad():
        module.bias[1] = float("nan")
    with pytest.raises(TrainingDivergedError, match=r"parameters \['bias'\].*after step 5"):
        check_finite_parameters(module, {}, step=5, checkpoint=None)


def test_a_float16_tensors_sum_widens_a_chunk_at_a_time():
    """Fails on the old code: ``t.sum(dtype=torch.float32)`` of a float16 ``t`` on a CPU allocated a float32 copy of
    the whole tensor (16 MiB for this 8 MiB one: 2x its memory) inside ``aten::sum``.  Now no allocation exceeds one
    float32 chunk (:data:`~hybridpgm.train.chunked_finite.CHUNK` entries), whatever the tensor's size."""
    t = torch.ones(4 * CHUNK + 3, dtype=torch.float16)
    sizes = cpu_allocations(lambda: _sums([t]))
    assert sizes and max(sizes) <= 4 * CHUNK, (max(sizes), 4 * CHUNK)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_the_chunked_sums_of_half_precision_tensors_are_exact_and_see_nan_and_inf(dtype, layout):
    """A guard: the chunks' float32 sums add up to the float64 sum (to float32's rounding), a sum far beyond
    float16's 65504 is finite (no overflow read as a non-finite value), and a NaN or an infinity in the last chunk
    makes the sum non-finite, as does +inf beside -inf."""
    base = torch.full((2 * CHUNK + 5, 2), 60000.0 if dtype == torch.float16 else 3.0e4, dtype=dtype)
    base[::7] = -17.0
    t = base if layout == "contiguous" else base[:, 0]
    (s,) = _sums([t])
    assert s.dtype == torch.float32 and math.isfinite(s.item()) and s.item() > 65504
    torch.testing.assert_close(s.double(), t.double().sum(), rtol=1e-6, atol=0)
    for bad in (math.nan, math.inf, -math.inf):
        u = t.clone()
        u[-1] = bad
        (s,) = _sums([u])
        assert (math.isnan(s.item()) if math.isnan(bad) else s.item() == bad)
    u = t.clone()
    u[0], u[-1] = math.inf, -math.inf
    assert math.isnan(_sums([u])[0].item())
