"""The float32 advice of docs/gaussian_processes.md: GPyTorch's stationary kernels form squared distances by
expansion, so short lengthscales cost float32 digits in the cross-covariance; float64 data, the documented remedy,
gives the predictive variance of a float64 Cholesky of directly formed differences, and at lengthscale 1 float32
comes within 1% of it.
"""

import pytest
import torch

from hybridpgm.gp import DeepKernelGP


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.linspace(-1, 1, 300).unsqueeze(-1)
    return x, torch.sin(3 * x.squeeze(-1)) + 0.1 * torch.randn(300, generator=g), torch.linspace(-1.2, 1.2, 50)


def _direct_variance(x, x_test, lengthscale, noise):
    """Predictive variance of y* from a float64 Cholesky of directly formed differences (outputscale 1)."""
    x, x_test = x.double().squeeze(-1), x_test.double()
    k = lambda a, b: torch.exp(-0.5 * ((a[:, None] - b[None, :]) / lengthscale) ** 2)  # noqa: E731
    chol = torch.linalg.cholesky(k(x, x) + noise * torch.eye(len(x), dtype=torch.float64))
    cross = k(x_test, x)
    return 1.0 - (cross * torch.cholesky_solve(cross.T, chol).T).sum(-1) + noise


def _model_variance(x, y, x_test, lengthscale, noise, dtype):
    model = DeepKernelGP(x.to(dtype), y.to(dtype))
    kernel = model.gp.covar_module
    kernel.base_kernel.lengthscale = lengthscale
    kernel.outputscale = 1.0
    model.likelihood.noise = noise
    return model.predict(x_test.unsqueeze(-1).to(dtype)).variance.double(), kernel.base_kernel.lengthscale.item(), \
        model.likelihood.noise.item()


@pytest.mark.parametrize("dtype, lengthscale", [(torch.float64, 1e-2), (torch.float32, 1.0)])
def test_predictive_variance_matches_a_direct_cholesky(dtype, lengthscale):
    x, y, x_test = _data()
    # the reference takes the model's own hyperparameters: GPyTorch's setters round a Python float through float32
    got, lengthscale, noise = _model_variance(x, y, x_test, lengthscale, 2e-4, dtype)
    reference = _direct_variance(x, x_test, lengthscale, noise)
    if dtype == torch.float64:
        # eps * cond(K) ~ 1e-16 * 1.2e4, times 1 / variance ~ 5e3 for the cancellation in 1 - k*^T K^-1 k*: ~6e-9
        assert torch.allclose(got, reference, rtol=2e-8, atol=0.0)
    else:
        # the docs' float32 statement at lengthscale 1: within 1% of the float64 variance (the float32 solve of a
        # kernel matrix with condition number ~1e6 gives 0.4% here)
        assert torch.allclose(got, reference, rtol=1e-2, atol=0.0)
