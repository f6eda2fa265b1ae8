"""State saved with the former default KISS-GP kernel loads into today's DeepKernelGP
(hybridpgm/gp/legacy_kiss_state.py)."""

import copy

import gpytorch
import pytest
import torch

from hybridpgm.gp import DeepKernelGP
from hybridpgm.nn import mlp
from tests.gp.deep_kernel_helpers import DEEP_KERNEL_WARNINGS, _toy

pytestmark = pytest.mark.filterwarnings(*DEEP_KERNEL_WARNINGS)


@pytest.mark.parametrize("features", [1, 2])
def test_state_saved_with_the_former_kiss_kernel_layout_loads(features):
    """The default KISS-GP kernel was ScaleKernel(GridInterpolationKernel(RBF)); a
    state dict of that layout loads (strictly) into today's model, with the
    outputscale converted so that the likelihood is the same."""
    x, y = _toy(n=50, d=2)
    torch.manual_seed(0)
    net = mlp([2, 8, features], activation="tanh").double()
    former = gpytorch.kernels.ScaleKernel(gpytorch.kernels.GridInterpolationKernel(
        gpytorch.kernels.RBFKernel(ard_num_dims=features), grid_size=30, num_dims=features,
        grid_bounds=[(-1.0, 1.0)] * features))
    old = DeepKernelGP(x, y, copy.deepcopy(net), kernel=former, grid_size=30).double()
    old.gp.covar_module.outputscale = 2.5
    old.gp.covar_module.base_kernel.base_kernel.lengthscale = 0.4
    new = DeepKernelGP(x, y, copy.deepcopy(net), grid_size=30).double()
    new.load_state_dict(old.state_dict())  # strict
    assert float(new.gp.covar_module.base_kernel.outputscale) ** features == pytest.approx(2.5)
    with torch.no_grad(), gpytorch.settings.fast_computations(False, False, False):
        torch.testing.assert_close(new.marginal_log_likelihood(), old.marginal_log_likelihood(),
                                   rtol=1e-10, atol=1e-10)
        new.load_state_dict(new.state_dict())  # today's layout is left alone
        torch.testing.assert_close(new.marginal_log_likelihood(), old.marginal_log_likelihood(),
                                   rtol=1e-10, atol=1e-10)
