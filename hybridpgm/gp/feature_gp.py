"""Pieces shared by the deep-kernel models: the exact GP over features, the
default kernels, input checks and the prediction record."""

from __future__ import annotations

from typing import NamedTuple

import gpytorch
import torch

from hybridpgm.errors import DataError, ModelSpecError

__all__ = ["FeatureGP", "GPPrediction", "check_inputs", "check_targets", "default_kernel"]

#: KISS-GP grids with more points than this are refused (memory ~ grid points).
MAX_GRID_POINTS = 2**20


class GPPrediction(NamedTuple):
    """Predictive distribution of the targets at test inputs (shapes ``n``)."""

    mean: torch.Tensor
    variance: torch.Tensor

    @property
    def stddev(self) -> torch.Tensor:
        return self.variance.clamp_min(0).sqrt()

    def interval(self, level: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
        """Central Gaussian interval ``(lower, upper)`` of probability ``level``."""
        if not 0 < level < 1:
            raise ModelSpecError(f"interval level must lie in (0, 1), got {level}")
        z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.5 + level / 2)).item()
        return self.mean - z * self.stddev, self.mean + z * self.stddev


class FeatureGP(gpytorch.models.ExactGP):
    """An exact GP whose inputs are already features ``n x F``:
    :math:`f \\sim \\mathcal{GP}(m(h), k(h, h'))`."""

    def __init__(self, likelihood: gpytorch.likelihoods.Likelihood, mean: gpytorch.means.Mean,
                 kernel: gpytorch.kernels.Kernel):
        super().__init__(None, None, likelihood)
        self.mean_module = mean
        self.covar_module = kernel

    def forward(self, h: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        return gpytorch.distributions.MultivariateNormal(self.mean_module(h), self.covar_module(h))


def default_kernel(num_features: int, grid_size: int | None,
                   grid_bounds: tuple[float, float]) -> gpytorch.kernels.Kernel:
    """``ScaleKernel(RBF)`` with one lengthscale per feature, wrapped in a
    :class:`~gpytorch.kernels.GridInterpolationKernel` (KISS-GP) when
    ``grid_size`` is given."""
    if grid_size is None:
        return gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=num_features))
    if grid_size < 4 or grid_size ** num_features > MAX_GRID_POINTS:
        raise ModelSpecError(f"KISS-GP grid of {grid_size}^{num_features} points is not usable "
                             f"(need grid_size >= 4 and at most {MAX_GRID_POINTS} points); reduce the number "
                             "of features (KISS-GP suits 1-3) or the grid size")
    return gpytorch.kernels.ScaleKernel(gpytorch.kernels.GridInterpolationKernel(
        gpytorch.kernels.RBFKernel(ard_num_dims=num_features), grid_size=grid_size, num_dims=num_features,
        grid_bounds=[tuple(grid_bounds)] * num_features))


def check_targets(y: torch.Tensor, n: int, name: str = "train_y") -> torch.Tensor:
    """Raise :class:`DataError` unless ``y`` is a finite vector of length ``n``."""
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != n:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise DataError(f"{name} has shape {shape}, expected ({n},)")
    if not bool(torch.isfinite(y).all()):
        raise DataError(f"{name} (shape {tuple(y.shape)}) holds {int((~torch.isfinite(y)).sum())} NaN/inf value(s)")
    return y


def check_inputs(x: torch.Tensor, example_shape: tuple[int, ...] | None, name: str = "x") -> torch.Tensor:
    """Raise :class:`DataError` unless ``x`` is finite and ``N x example_shape``."""
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise DataError(f"{name} has shape {shape}, expected (N, ...) with at least two dimensions")
    if example_shape is not None and tuple(x.shape[1:]) != tuple(example_shape):
        raise DataError(f"{name} has shape {tuple(x.shape)}, expected (N, {', '.join(map(str, example_shape))})")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise DataError(f"{name} (shape {tuple(x.shape)}) holds {int((~torch.isfinite(x)).sum())} NaN/inf value(s)")
    return x
