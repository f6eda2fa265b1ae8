"""hybridpgm.softplus: log(1 + e^x) to the precision of the input's dtype.

References: Python floats (``x + log1p(exp(-x))`` for ``x > 0``, one rounding of a sum whose small part is
computed to full relative precision), mpmath at 50 digits where it is installed, and ``torch.logaddexp(x, 0)``.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from hybridpgm.softplus import DEFAULT_THRESHOLD, FLOAT64_THRESHOLD, softplus, softplus_threshold

EPS64 = torch.finfo(torch.float64).eps


def _python_softplus(x: float) -> float:
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


def _grid() -> torch.Tensor:
    """Pre-activations around and above both thresholds, and some ordinary ones."""
    return torch.cat([torch.linspace(-45.0, 45.0, 3601, dtype=torch.float64),
                      torch.tensor([19.999, 20.0, 20.001, 20.5, 21.0, 25.0, 30.0, 33.0, 36.0, 39.99, 40.0, 40.01,
                                    50.0, 100.0, 700.0, 1e5], dtype=torch.float64)])


def _assert_within_an_ulp(got: torch.Tensor, ref: torch.Tensor) -> None:
    """|got - ref| within one float64 ulp of max(|ref|, 1) (2 eps relative): the rounding of the result."""
    scale = ref.abs().clamp_min(1.0)
    err = ((got - ref).abs() / scale).max().item()
    assert err <= 2 * EPS64, f"relative error {err:.3g}, more than an ulp (2 eps)"


def test_thresholds_by_dtype():
    assert softplus_threshold(torch.float64) == FLOAT64_THRESHOLD == 40.0
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        assert softplus_threshold(dtype) == DEFAULT_THRESHOLD == 20.0


def test_the_thresholds_satisfy_the_bound_of_the_docstring():
    """e^{-t} <= u t / 2 (u the unit roundoff): returning x above t is the correctly rounded softplus."""
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        t = softplus_threshold(dtype)
        u = torch.finfo(dtype).eps / 2
        assert math.exp(-t) <= u * t / 2, dtype
    assert math.exp(-20.0) > EPS64 / 2 * 20.0 / 2  # torch's default 20 is not enough in float64


def test_float64_matches_python_floats_to_an_ulp():
    """Fails with torch's default threshold 20: at x = 20.5 it returns x, 1.25e-9 below the value."""
    x = _grid()
    ref = torch.tensor([_python_softplus(v) for v in x.tolist()], dtype=torch.float64)
    _assert_within_an_ulp(softplus(x), ref)
    _assert_within_an_ulp(softplus(x), torch.logaddexp(x, torch.zeros_like(x)))


def test_float64_matches_mpmath_to_an_ulp():
    mpmath = pytest.importorskip("mpmath")
    x = _grid()
    with mpmath.workdps(50):
        ref = torch.tensor([float(mpmath.log1p(mpmath.exp(mpmath.mpf(v)))) for v in x.tolist()],
                           dtype=torch.float64)
    _assert_within_an_ulp(softplus(x), ref)


def test_float64_gradient_is_the_sigmoid():
    x = _grid()[:-4].requires_grad_()  # up to 50: the sigmoid is 1 in float64 from about 37
    (grad,) = torch.autograd.grad(softplus(x).sum(), x)
    ref = torch.sigmoid(x.detach())
    assert (grad - ref).abs().max().item() <= EPS64


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_guard_lower_precision_is_bit_identical_to_torch_default(dtype):
    """Guard (passes before and after the change): float32 / float16 / bfloat16 keep torch's default, the
    same kernel with the same threshold, bit for bit, values and gradients."""
    x = torch.linspace(-60.0, 60.0, 4801).to(dtype)
    x = torch.cat([x, torch.tensor([19.99, 20.0, 20.01, 25.0, 1e4]).to(dtype)]).requires_grad_()
    got, ref = softplus(x), F.softplus(x)
    assert got.dtype == dtype and torch.equal(got, ref)
    assert torch.equal(torch.autograd.grad(got.sum(), x)[0], torch.autograd.grad(ref.sum(), x)[0])


def test_shape_and_dtype_kept():
    x = torch.randn(3, 4, 5, dtype=torch.float64) * 30
    out = softplus(x)
    assert out.shape == x.shape and out.dtype == torch.float64
