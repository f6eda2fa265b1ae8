"""A user's kernel and mean checked against the deep-kernel GPs' features when the model is built
(:mod:`hybridpgm.gp.kernel_checks`): ``ard_num_dims`` / ``active_dims`` that do not fit ``F``, batch-shaped kernels
and means, a kernel class for an instance.  Before, each was accepted and failed later with GPyTorch's own error
("Expected the input to have 5 dimensionality"), or (a batch shape) predicted ``(2, B)`` silently."""

import gpytorch
import pytest
import torch
from gpytorch.kernels import MaternKernel, RBFKernel, ScaleKernel

from hybridpgm.errors import ModelSpecError
from hybridpgm.gp import GPLSTM, DeepKernelGP, SVDeepKernelGP

# a UserWarning or RuntimeWarning not ignored below fails the test
pytestmark = pytest.mark.filterwarnings(
    "error::UserWarning",
    "error::RuntimeWarning",
    "ignore::linear_operator.utils.warnings.NumericalWarning",  # GPyTorch's numerics: CG not converged, jitter added
    "ignore:Sparse invariant checks are implicitly disabled:UserWarning",  # torch, at KISS-GP's interpolation
)


def _toy(n=20, d=3):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, d, generator=g) * 2 - 1
    return x, torch.sin(3 * x[:, 0])


@pytest.mark.parametrize("kernel, where, message", [
    (lambda: RBFKernel(ard_num_dims=5), r"kernel \(RBFKernel\)", "has ard_num_dims=5, but it is given 3 features"),
    (lambda: ScaleKernel(RBFKernel(ard_num_dims=5)), r"kernel\.base_kernel \(RBFKernel\)",
     "has ard_num_dims=5, but it is given 3 features"),
    (lambda: RBFKernel(active_dims=[0, 2], ard_num_dims=3) + MaternKernel(active_dims=[1]),
     r"kernel\.kernels\[0\] \(RBFKernel\)", r"has ard_num_dims=3, but active_dims \[0, 2\] select 2 features"),
    (lambda: RBFKernel(active_dims=[0, 3]) * MaternKernel(), r"kernel\.kernels\[0\] \(RBFKernel\)",
     r"has active_dims \[0, 3\], but it is given 3 features"),
])
def test_a_kernel_that_does_not_fit_the_features_is_refused_at_construction(kernel, where, message):
    x, y = _toy()
    with pytest.raises(ModelSpecError, match=rf"DeepKernelGP {where} {message} \(the feature extractor gives F=3 "
                                             r"features\)"):
        DeepKernelGP(x, y, kernel=kernel())


def test_a_grid_base_kernel_and_a_linear_mean_are_checked_against_the_extractors_features():
    x, y = _toy()
    net = torch.nn.Linear(3, 2)  # F = 2, not the 3 inputs
    with pytest.raises(ModelSpecError, match=r"kernel\.base_kernel \(RBFKernel\) has ard_num_dims=3, but it is "
                                             r"given 2 features \(the feature extractor gives F=2 features\)"):
        DeepKernelGP(x, y, net, kernel=ScaleKernel(RBFKernel(ard_num_dims=3)), grid_size=8)
    with pytest.raises(ModelSpecError, match=r"mean \(LinearMean\) has input_size 3, but the feature extractor "
                                             r"gives F=2 features: build it with LinearMean\(2\)"):
        DeepKernelGP(x, y, net, mean=gpytorch.means.LinearMean(3))


def test_kernels_that_fit_are_accepted_as_gpytorch_evaluates_them():
    x, y = _toy()
    for kernel in (ScaleKernel(RBFKernel(ard_num_dims=3)),
                   RBFKernel(active_dims=[0, 2], ard_num_dims=2) + MaternKernel(active_dims=[1]),
                   ScaleKernel(RBFKernel(active_dims=[1], ard_num_dims=1))):  # ScaleKernel selects the base's dims
        model = DeepKernelGP(x, y, kernel=kernel, mean=gpytorch.means.LinearMean(3))
        assert model.predict(x[:4]).mean.shape == (4,)
    grid = DeepKernelGP(x[:, :2], y, kernel=ScaleKernel(RBFKernel(ard_num_dims=2)), grid_size=8)
    assert grid.predict(x[:4, :2]).mean.shape == (4,)


def test_sv_and_gp_lstm_kernels_are_checked_against_their_num_features():
    with pytest.raises(ModelSpecError, match=r"SVDeepKernelGP kernel \(RBFKernel\) has ard_num_dims=5, but it is "
                                             r"given 3 features \(num_features=3\)"):
        SVDeepKernelGP(torch.nn.Linear(2, 3), num_features=3, num_data=30, inducing_points=torch.randn(8, 3),
                       kernel=RBFKernel(ard_num_dims=5))
    x = torch.randn(20, 5, 1, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ModelSpecError, match=r"GPLSTM kernel \(RBFKernel\) has ard_num_dims=5, but it is given 2 "
                                             r"features \(the feature extractor gives F=2 features\)"):
        GPLSTM(x, x[:, -1, 0], hidden_size=4, num_features=2, kernel=RBFKernel(ard_num_dims=5))


@pytest.mark.parametrize("part, where", [
    ({"kernel": ScaleKernel(RBFKernel(batch_shape=torch.Size([2])), batch_shape=torch.Size([2]))},
     r"kernel\.base_kernel \(RBFKernel\)"),
    ({"kernel": ScaleKernel(RBFKernel(batch_shape=torch.Size([2])))}, r"kernel\.base_kernel \(RBFKernel\)"),
    ({"kernel": RBFKernel() + MaternKernel(batch_shape=torch.Size([2]))}, r"kernel\.kernels\[1\] \(MaternKernel\)"),
    ({"mean": gpytorch.means.ConstantMean(batch_shape=torch.Size([2]))}, r"mean \(ConstantMean\)"),
    ({"mean": gpytorch.means.LinearMean(3, batch_shape=torch.Size([2]))}, r"mean \(LinearMean\)"),
])
def test_a_batch_shaped_kernel_or_mean_is_refused_by_the_single_output_gps(part, where):
    # before, DeepKernelGP predicted (2, B) and its marginal likelihood was (2,)
    x, y = _toy()
    with pytest.raises(ModelSpecError, match=rf"DeepKernelGP {where} has batch_shape \(2,\), which makes a batch of "
                                             "GPs of that shape: DeepKernelGP is a single-output GP"):
        DeepKernelGP(x, y, **part)
    with pytest.raises(ModelSpecError, match=rf"SVDeepKernelGP {where} has batch_shape \(2,\)"):
        SVDeepKernelGP(num_features=3, num_data=20, inducing_points=torch.randn(8, 3), **part)


@pytest.mark.parametrize("arg, cls", [("kernel", RBFKernel), ("mean", gpytorch.means.ConstantMean),
                                      ("likelihood", gpytorch.likelihoods.GaussianLikelihood)])
def test_a_gpytorch_class_given_for_an_instance_is_named(arg, cls):
    # before: "DeepKernelGP kernel must be a gpytorch.kernels.kernel.Kernel, got type"
    with pytest.raises(ModelSpecError, match=rf"DeepKernelGP {arg} is the class {cls.__name__}, not an instance: "
                                             rf"pass {cls.__name__}\(\.\.\.\)"):
        DeepKernelGP(*_toy(), **{arg: cls})
    with pytest.raises(ModelSpecError, match=r"DeepKernelGP kernel must be a gpytorch\.kernels\.kernel\.Kernel, "
                                             r"got the class Linear"):
        DeepKernelGP(*_toy(), kernel=torch.nn.Linear)


def test_a_kernel_whose_own_default_is_one_lengthscale_is_not_advised_to_drop_ard_num_dims():
    """Review: ``SpectralMixtureKernel`` defaults ``ard_num_dims`` to 1, so "or without ard_num_dims" was advice
    that gave the same refusal again."""
    x, y = _toy()
    with pytest.raises(ModelSpecError) as refused:
        DeepKernelGP(x, y, kernel=gpytorch.kernels.SpectralMixtureKernel(num_mixtures=2))
    assert "has ard_num_dims=1, but it is given 3 features" in str(refused.value)
    assert str(refused.value).endswith("build it with ard_num_dims=3 (one lengthscale per feature)")
