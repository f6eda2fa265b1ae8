"""Shared helpers of the deep-kernel tests (tests/gp/test_deep_kernel*.py, test_exact_likelihood.py,
test_legacy_kiss_state.py, test_sv_*.py, test_grid_scaling.py): the warnings that fail them, GPyTorch's
textbook exact GP as the reference and a seeded toy regression set."""

import gpytorch
import torch


# a UserWarning or RuntimeWarning not ignored below fails the test (a later filter wins: the ignores, third-party
# warnings seen in this file, come after the errors)
DEEP_KERNEL_WARNINGS = (
    "error::UserWarning",
    "error::RuntimeWarning",
    "ignore::linear_operator.utils.warnings.NumericalWarning",  # GPyTorch's numerics: CG not converged, jitter added
    "ignore:Sparse invariant checks are implicitly disabled:UserWarning",  # torch, once per process
    # torch, at the test's float() of a loss
    "ignore:Converting a tensor with requires_grad=True to a scalar:UserWarning",
    # Pyro, at the test's direct call of a model
    "ignore:trying to observe a value outside of inference:RuntimeWarning",
)


class PlainExactGP(gpytorch.models.ExactGP):
    """GPyTorch's textbook exact GP: the reference."""

    def __init__(self, x, y, likelihood, kernel):
        super().__init__(x, y, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = kernel

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _toy(n=40, d=2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=dtype) * 2 - 1
    y = torch.sin(3 * x[:, 0]) + x[:, -1] ** 2 + 0.1 * torch.randn(n, generator=g, dtype=dtype)
    return x, y
