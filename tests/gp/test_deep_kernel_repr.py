"""The repr of DeepKernelGP and GPLSTM (hybridpgm/gp/deep_kernel.py ``__repr__``, hybridpgm/summary_repr.py
``module_text``): each module written once.

Carried audit item: the likelihood is a child of the model, of its GP and of its marginal likelihood, and the GP a
child of the marginal likelihood too: torch's module repr wrote the likelihood four times and the whole GP
(kernel, mean and likelihood) twice."""

import gpytorch
import pytest
import torch

from hybridpgm.gp import DeepKernelGP, GPLSTM


def _models():
    torch.manual_seed(0)
    x, y = torch.randn(20, 3), torch.randn(20)
    windows = torch.randn(20, 4, 1)
    return {"DeepKernelGP": DeepKernelGP(x, y, torch.nn.Linear(3, 2)),
            "KISS-GP": DeepKernelGP(x, y, torch.nn.Linear(3, 2), grid_size=8),
            "GPLSTM": GPLSTM(windows, torch.randn(20), hidden_size=4)}


@pytest.mark.parametrize("name", ["DeepKernelGP", "KISS-GP", "GPLSTM"])
def test_the_likelihood_and_the_gp_are_written_once(name):
    """Fails on the old code: 'GaussianLikelihood(' four times, 'FeatureGP(' twice."""
    model = _models()[name]
    text = repr(model)
    assert text.count("GaussianLikelihood(") == 1 and text.count("HomoskedasticNoise(") == 1
    assert text.count("FeatureGP(") == 1 and text.count("RBFKernel(") == 1
    assert "  (likelihood): GaussianLikelihood, as gp.likelihood\n" in text
    assert "    (model): FeatureGP, as gp\n" in text
    assert text.startswith(f"{type(model).__name__}(\n  (feature_extractor): ")
    assert repr(model.gp) in text.replace("\n  ", "\n")  # the GP in full, at its place, as torch writes it


def test_a_given_likelihood_is_written_once_too():
    likelihood = gpytorch.likelihoods.GaussianLikelihood(noise_constraint=gpytorch.constraints.GreaterThan(1e-3))
    model = DeepKernelGP(torch.randn(10, 2), torch.randn(10), likelihood=likelihood)
    assert repr(model).count("GreaterThan(1.000E-03)") == 1
