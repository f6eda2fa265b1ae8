"""SVDeepKernelGP (hybridpgm/gp/sv_deep_kernel.py) trained through fit: against the exact GP with mini-batches,
and classification on a KISS grid."""

import functools

import gpytorch
import pytest
import torch

import hybridpgm
from hybridpgm.gp import DeepKernelGP, SVDeepKernelGP
from hybridpgm.nn import mlp
from tests.gp.deep_kernel_helpers import DEEP_KERNEL_WARNINGS

pytestmark = pytest.mark.filterwarnings(*DEEP_KERNEL_WARNINGS)


def _svgp_against_exact(n=256, steps=150):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, generator=g) * 2 - 1
    y = torch.sin(4 * x[:, 0]) + 0.1 * torch.randn(n, generator=g)
    exact = DeepKernelGP(x, y)
    exact.gp.covar_module.base_kernel.lengthscale = 0.3
    exact.gp.covar_module.outputscale = 1.0
    exact.likelihood.noise = 0.01
    sv = SVDeepKernelGP(num_features=1, num_data=n, inducing_points=torch.linspace(-1, 1, 30)[:, None],
                        learn_inducing=False)
    sv.covar_module.load_state_dict(exact.gp.covar_module.state_dict())
    sv.mean_module.load_state_dict(exact.gp.mean_module.state_dict())
    sv.likelihood.load_state_dict(exact.likelihood.state_dict())
    for p in [*sv.covar_module.parameters(), *sv.mean_module.parameters(), *sv.likelihood.parameters()]:
        p.requires_grad_(False)  # same hyperparameters: only q(u) is learned
    result = hybridpgm.fit(sv.objective(num_particles=8), (x, y), batch_size=64, epochs=10**6, max_steps=steps,
                           seed=0, progress=False, optim=functools.partial(torch.optim.Adam, lr=0.1))
    return exact, sv, result


def test_sv_dkl_trains_with_minibatches_through_fit_and_matches_exact_gp():
    """Stated tolerance: on [-1, 1] the SVGP predictive mean is within 0.1 of
    the exact GP's (signal amplitude 1) and its predictive standard deviation
    within 0.02 (exact: ~0.1), with 30 inducing points and the same
    hyperparameters, after 150 Adam steps on batches of 64 of 256 points."""
    exact, sv, result = _svgp_against_exact()
    losses = result.history.loss["elbo"]
    assert result.steps == 150 and losses[-1] < losses[0]
    x_test = torch.linspace(-1, 1, 50)[:, None]
    a, b = exact.predict(x_test), sv.predict(x_test)
    assert (a.mean - b.mean).abs().max() < 0.1
    assert (a.stddev - b.stddev).abs().max() < 0.02


def test_sv_dkl_classification_with_grid_strategy():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, 2, generator=g) * 2 - 1
    y = (x[:, 0] * x[:, 1] > 0).float()  # XOR-like labels
    sv = SVDeepKernelGP(mlp([2, 16, 1], activation="tanh"), num_features=1, num_data=300, grid_size=32,
                        likelihood=gpytorch.likelihoods.BernoulliLikelihood())
    hybridpgm.fit(sv.objective(num_particles=1), (x, y), batch_size=100, epochs=10**6, max_steps=80, seed=0,
                  progress=False, optim=functools.partial(torch.optim.Adam, lr=0.03))
    prob = sv.predict(x).mean
    assert ((prob > 0.5).float() == y).float().mean() > 0.85
