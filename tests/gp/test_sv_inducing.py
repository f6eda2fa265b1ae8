"""The inducing points an ``SVDeepKernelGP`` is built with: without ``inducing_points=`` and ``grid_size=`` (both
default ``None``) the error says that one of the two is required (it said "got NoneType")."""

import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.gp import SVDeepKernelGP


def test_neither_inducing_points_nor_grid_size_names_both_options():
    with pytest.raises(ModelSpecError, match=r"needs inducing points: pass inducing_points= .*M x 2 .* or "
                                             r"grid_size= .*got neither"):
        SVDeepKernelGP(torch.nn.Linear(3, 2), num_features=2, num_data=20)


@pytest.mark.parametrize("points, message", [
    (torch.randn(6, 3), r"inducing_points must be M x 2 \(num_features\) with M >= 1, got \(6, 3\)"),
    (torch.randn(0, 2), r"got \(0, 2\)"),
    ([[0.0, 1.0]], "got list"),
    (torch.ones(4, 2, dtype=torch.int64), "inducing_points have dtype torch.int64, expected a floating dtype"),
    (torch.tensor([[0.0, float("nan")]]), r"inducing_points \(shape \(1, 2\)\) hold 1 NaN/inf value"),
])
def test_bad_inducing_points_are_named(points, message):
    with pytest.raises(ModelSpecError, match=message):
        SVDeepKernelGP(torch.nn.Linear(3, 2), num_features=2, num_data=20, inducing_points=points)


def test_either_option_builds_the_gp():
    assert SVDeepKernelGP(num_features=2, num_data=20, inducing_points=torch.randn(6, 2)).predict(
        torch.randn(3, 2)).mean.shape == (3,)
    assert SVDeepKernelGP(num_features=2, num_data=20, grid_size=8).predict(torch.randn(3, 2)).mean.shape == (3,)
