"""Building SVDeepKernelGP (hybridpgm/gp/sv_deep_kernel.py): bad configurations refused, and the GP parts on the
inducing points' device and dtype."""

import pytest
import torch

from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.gp import SVDeepKernelGP
from hybridpgm.nn import mlp
from tests.gp.deep_kernel_helpers import DEEP_KERNEL_WARNINGS, _toy

pytestmark = pytest.mark.filterwarnings(*DEEP_KERNEL_WARNINGS)


def test_sv_dkl_bad_configuration_raises():
    with pytest.raises(ModelSpecError, match="inducing_points"):
        SVDeepKernelGP(num_features=2, num_data=10, inducing_points=torch.randn(5, 3))
    with pytest.raises(ModelSpecError, match="num_data"):
        SVDeepKernelGP(num_features=1, num_data=0, inducing_points=torch.randn(5, 1))
    sv = SVDeepKernelGP(num_features=1, num_data=10, inducing_points=torch.randn(5, 1))
    sv.predict(torch.zeros(2, 1))
    with pytest.raises(DataError, match=r"expected \(N, 1\)"):
        sv.predict(torch.zeros(2, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="builds a model on CUDA")
def test_sv_dkl_from_cuda_inducing_points_is_on_cuda():
    """The variational distribution, kernel, mean and likelihood go where the inducing points are."""
    x, _ = _toy(n=30, d=2, dtype=torch.float32)
    torch.manual_seed(0)
    sv = SVDeepKernelGP(mlp([2, 8, 2]).cuda(), num_features=2, num_data=30, inducing_points=torch.randn(10, 2).cuda())
    assert {p.device.type for p in sv.parameters()} == {"cuda"}
    assert sv.predict(x[:4].cuda()).mean.device.type == "cuda"


def test_sv_dkl_from_float64_inducing_points_computes_in_float64():
    """Before, only the inducing points were float64: q(u), the mean, the kernel and the likelihood stayed
    float32, so predict() and the loss failed with a raw dtype error.  The GP parts take the inducing points'
    dtype (as DeepKernelGP's take its features'): the same model as one built in float32 then .double()."""
    torch.manual_seed(0)
    z = torch.randn(6, 2)  # float32 values, so the float64 copy and the float32 build agree exactly
    x, y = _toy(n=12, d=2, dtype=torch.float64)
    sv = SVDeepKernelGP(num_features=2, num_data=12, inducing_points=z.double())
    reference = SVDeepKernelGP(num_features=2, num_data=12, inducing_points=z).double()
    assert {p.dtype for p in sv.parameters()} == {torch.float64}
    assert {b.dtype for b in sv.buffers() if b.is_floating_point()} == {torch.float64}
    torch.manual_seed(1)  # q(u) is initialised (with noise) from the prior at the first call
    got = sv.predict(x)
    torch.manual_seed(1)
    expected = reference.predict(x)
    assert got.mean.dtype == got.variance.dtype == torch.float64
    torch.testing.assert_close(got.mean, expected.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got.variance, expected.variance, rtol=1e-12, atol=1e-12)
    loss = sv.objective(num_particles=2).loss("elbo", (x, y))
    assert loss.dtype == torch.float64 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in sv.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.dtype == torch.float64 and torch.isfinite(g).all() for g in grads)
