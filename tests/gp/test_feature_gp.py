import gpytorch
import pytest
import torch
from linear_operator.operators import ConstantMulLinearOperator, InterpolatedLinearOperator

from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.gp.feature_gp import check_training_batch, default_kernel


@pytest.mark.parametrize("features", [1, 2])
def test_default_kiss_kernel_keeps_the_outputscale_on_the_grid(features):
    """GPyTorch's DKL layout on a fixed grid: the outputscale scales each grid
    axis's Toeplitz factor (no lazy constant multiple around the grid operator,
    whose derivative costs an extra grid product per backward pass), so the
    prior variance is outputscale ** features."""
    k = default_kernel(features, 10, (-1.0, 1.0)).double()
    assert isinstance(k, gpytorch.kernels.GridInterpolationKernel)
    assert isinstance(k.base_kernel, gpytorch.kernels.ScaleKernel)
    assert isinstance(k.base_kernel.base_kernel, gpytorch.kernels.RBFKernel)
    assert not k.grid_is_dynamic and list(k.grid_bounds) == [(-1.0, 1.0)] * features
    h = torch.rand(7, features, dtype=torch.float64) * 1.6 - 0.8
    k.base_kernel.outputscale = 3.0
    cov = k(h).evaluate_kernel()
    assert isinstance(cov, InterpolatedLinearOperator)
    assert not isinstance(cov.base_linear_op, ConstantMulLinearOperator)
    dense = cov.to_dense().detach()
    k.base_kernel.outputscale = 1.0
    torch.testing.assert_close(dense, 3.0 ** features * k(h).to_dense().detach(), rtol=1e-12, atol=1e-12)


def test_default_exact_kernel_and_bad_grids():
    k = default_kernel(3, None, (-1.0, 1.0))
    assert isinstance(k, gpytorch.kernels.ScaleKernel) and k.base_kernel.ard_num_dims == 3
    with pytest.raises(ModelSpecError, match=r"grid of 3\^2"):
        default_kernel(2, 3, (-1.0, 1.0))
    with pytest.raises(ModelSpecError, match=r"grid of 100\^4"):
        default_kernel(4, 100, (-1.0, 1.0))


def test_training_batch_check_names_the_bad_tensor():
    x, y = torch.zeros(6, 3), torch.zeros(6)
    check_training_batch(x, y, (3,))
    with pytest.raises(DataError, match=r"x has shape \(6, 3\), expected \(N, 4\)"):
        check_training_batch(x, y, (4,))
    with pytest.raises(DataError, match=r"y has shape \(5,\), expected \(6,\)"):
        check_training_batch(x, y[:5], (3,))
    bad = x.clone()
    bad[1, 2] = float("-inf")
    with pytest.raises(DataError, match=r"x \(shape \(6, 3\)\) holds 1 NaN/inf"):
        check_training_batch(bad, y, (3,))
    bad = y.clone()
    bad[:2] = float("nan")
    with pytest.raises(DataError, match=r"y \(shape \(6,\)\) holds 2 NaN/inf"):
        check_training_batch(x, bad, (3,))
    check_training_batch(torch.zeros(6, 3, dtype=torch.long), y, (3,))  # integer inputs (an embedding's indices)


def test_training_batch_check_joins_fits_host_read():
    """Inside fit's step the finiteness flag is deferred (no host read of its
    own); a failed flag raises the named error when the step reads it."""
    from hybridpgm.train.deferred_checks import deferring_checks

    y = torch.zeros(6)
    bad = torch.zeros(6, 3)
    bad[0, 0] = float("nan")
    with deferring_checks() as pending:
        check_training_batch(bad, y, (3,))  # no raise yet
        check_training_batch(torch.zeros(6, 3), y, (3,))
    assert len(pending.flags) == 2 and not bool(pending.flags[0]) and bool(pending.flags[1])
    with pytest.raises(DataError, match=r"x \(shape \(6, 3\)\) holds 1 NaN/inf"):
        pending.raise_first_failure()


@pytest.mark.parametrize("make", ["dkl", "sv"])
def test_feature_finiteness_joins_fits_host_read(make):
    """``features`` checks shapes at once and defers the NaN/inf check inside fit's step (no host read of
    its own); outside a step it still raises at once."""
    from hybridpgm.gp import DeepKernelGP, SVDeepKernelGP
    from hybridpgm.train.deferred_checks import deferring_checks

    x = torch.rand(6, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model = DeepKernelGP(x, torch.sin(3 * x[:, 0]), grid_size=8) if make == "dkl" else \
        SVDeepKernelGP(num_features=2, num_data=20, inducing_points=torch.rand(5, 2))
    bad = x.clone()
    bad[1, 0] = float("nan")
    with pytest.raises(DataError, match=r"x \(shape \(6, 2\)\) holds 1 NaN/inf"):
        model.features(bad)
    with deferring_checks() as pending:
        model.features(bad)  # no raise yet
        with pytest.raises(DataError, match=r"x has shape \(6, 3\)"):
            model.features(torch.rand(6, 3))  # shapes: at once
    assert not bool(pending.flags[0])
    with pytest.raises(DataError, match=r"x \(shape \(6, 2\)\) holds 1 NaN/inf"):
        pending.raise_first_failure()


@pytest.mark.parametrize("level", ["0.9", True, float("nan"), 1.0, 0.0, torch.tensor([0.5, 0.9])])
def test_interval_levels_are_checked_as_other_intervals(level):
    """Before, interval("0.9") raised a raw TypeError."""
    from hybridpgm.errors import ConfigError
    from hybridpgm.gp.feature_gp import GPPrediction

    prediction = GPPrediction(torch.zeros(2), torch.ones(2))
    with pytest.raises(ConfigError, match="GPPrediction.interval level must lie in"):
        prediction.interval(level)
    lower, upper = prediction.interval(0.95)
    assert torch.allclose(upper, torch.full((2,), 1.959964), atol=1e-5) and torch.equal(lower, -upper)
