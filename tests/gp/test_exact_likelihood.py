"""The likelihoods DeepKernelGP takes and refuses, by class name (hybridpgm/gp/exact_likelihood.py)."""

import copy

import gpytorch
import pytest
import torch

import hybridpgm
from hybridpgm.errors import ModelSpecError
from hybridpgm.gp import DeepKernelGP, SVDeepKernelGP
from hybridpgm.nn import mlp
from tests.gp.deep_kernel_helpers import DEEP_KERNEL_WARNINGS, PlainExactGP, _toy

pytestmark = pytest.mark.filterwarnings(*DEEP_KERNEL_WARNINGS)


class _StudentLike(gpytorch.likelihoods.StudentTLikelihood):
    """A user's subclass of a non-Gaussian likelihood."""


@pytest.mark.parametrize("likelihood", [gpytorch.likelihoods.BernoulliLikelihood,
                                        gpytorch.likelihoods.StudentTLikelihood, _StudentLike])
def test_dkl_refuses_a_non_gaussian_likelihood_naming_it_and_the_variational_model(likelihood):
    x, y = _toy(n=12)
    with pytest.raises(ModelSpecError, match=rf"DeepKernelGP likelihood is a {likelihood.__name__}\b.*"
                                             r"Gaussian.*hybridpgm\.gp\.SVDeepKernelGP"):
        DeepKernelGP(x, (y > 0).to(y.dtype), mlp([2, 4, 2]).double(), likelihood=likelihood())
    assert hybridpgm.gp.SVDeepKernelGP is SVDeepKernelGP  # the class the message points to


class _MyGaussian(gpytorch.likelihoods.GaussianLikelihood):
    """A user's subclass of the Gaussian likelihood."""


@pytest.mark.parametrize("make", [lambda n: _MyGaussian()], ids=["subclass"])
def test_dkl_takes_gaussian_likelihood_subclasses_with_gpytorchs_exact_marginal_likelihood(make):
    x, y = _toy(n=20)
    model = DeepKernelGP(x, y, likelihood=make(20)).double()
    ref = PlainExactGP(x, y, make(20), copy.deepcopy(model.gp.covar_module)).double()
    ref.likelihood.load_state_dict(model.likelihood.state_dict())
    ref.mean_module.load_state_dict(model.gp.mean_module.state_dict())
    ref.train()
    expected = gpytorch.mlls.ExactMarginalLogLikelihood(ref.likelihood, ref)(ref(x), y)
    got = model.marginal_log_likelihood()
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    got.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    with gpytorch.settings.fast_pred_var(False):
        prediction = model.predict(x[:5])
    assert prediction.mean.shape == prediction.variance.shape == (5,)
    assert torch.isfinite(prediction.mean).all() and bool((prediction.variance > 0).all())


# ------------------------------------------------------------------ audit 11
@pytest.mark.parametrize("make", [
    lambda n: gpytorch.likelihoods.FixedNoiseGaussianLikelihood(noise=torch.full((n,), 0.05, dtype=torch.float64)),
    lambda n: gpytorch.likelihoods.FixedNoiseGaussianLikelihood(noise=torch.full((n,), 0.05, dtype=torch.float64),
                                                               learn_additional_noise=True),
    lambda n: gpytorch.likelihoods.DirichletClassificationLikelihood(torch.arange(n) % 2, dtype=torch.float64),
], ids=["fixed_noise", "fixed_noise_learned", "dirichlet"])
def test_dkl_refuses_a_likelihood_with_per_example_noise_naming_it(make):
    """GPyTorch added the N training noises to test batches of N points and none otherwise (and none at all after
    set_train_data with another N): such likelihoods are refused, by class name."""
    x, y = _toy(n=20)
    likelihood = make(20)
    with pytest.raises(ModelSpecError, match=rf"DeepKernelGP likelihood is a {type(likelihood).__name__}\b.*"
                                             r"per example.*GaussianLikelihood"):
        DeepKernelGP(x, y, likelihood=likelihood)


def test_dkl_refuses_a_multitask_likelihood_as_single_output_not_as_per_example_noise():
    """A ``MultitaskGaussianLikelihood`` was refused as a likelihood "whose noise is per example (noise model
    NoneType)": its noise is per task, and the reason is that DeepKernelGP has one output per example."""
    x, y = _toy(n=20)
    likelihood = gpytorch.likelihoods.MultitaskGaussianLikelihood(num_tasks=2).double()
    with pytest.raises(ModelSpecError, match=r"MultitaskGaussianLikelihood, a likelihood of several outputs.*"
                                             r"single-output") as caught:
        DeepKernelGP(x, y, likelihood=likelihood)
    assert "NoneType" not in str(caught.value) and "noise is per example" not in str(caught.value)
