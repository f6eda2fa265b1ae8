"""The inducing points an :class:`~hybridpgm.gp.SVDeepKernelGP` is built with (:func:`check_inducing_points`).

The sparse variational GP needs its inducing inputs :math:`Z` (``M x F``, in feature space) from one of two
places: ``inducing_points=`` (initial locations, learned unless ``learn_inducing=False``; Hensman, Fusi, Lawrence,
*Gaussian Processes for Big Data*, UAI 2013) or ``grid_size=`` (a fixed KISS-GP grid of ``grid_size ** F`` points;
Wilson, Nickisch, *Kernel Interpolation for Scalable Structured Gaussian Processes*, ICML 2015).
"""

from __future__ import annotations

from typing import Any

import torch

from hybridpgm.errors import ModelSpecError

__all__ = ["check_inducing_points"]


def check_inducing_points(inducing_points: Any, num_features: int) -> torch.Tensor:
    """``inducing_points`` checked as the initial inducing points of a GP without ``grid_size``: a finite floating
    ``M x F`` tensor with ``M >= 1`` and ``F = num_features``.

    :param inducing_points: what the constructor was given.
    :param num_features: ``F``, the feature dimension.
    :returns: ``inducing_points``.
    :raises ModelSpecError: ``None`` (naming the two options, ``inducing_points=`` and ``grid_size=``), not a
        tensor or of another shape (naming the shape or type), not floating, or holding NaN/inf values."""
    if inducing_points is None:
        raise ModelSpecError(f"SVDeepKernelGP needs inducing points: pass inducing_points= (initial locations, an M x "
                             f"{num_features} (num_features) tensor, e.g. the features of M training inputs) or "
                             "grid_size= (a KISS-GP grid of inducing points per feature); got neither")
    if (not isinstance(inducing_points, torch.Tensor) or inducing_points.dim() != 2
            or inducing_points.shape[1] != num_features or inducing_points.shape[0] == 0):
        shape = (tuple(inducing_points.shape) if isinstance(inducing_points, torch.Tensor)
                 else type(inducing_points).__name__)
        raise ModelSpecError(f"inducing_points must be M x {num_features} (num_features) with M >= 1, got {shape}")
    if not inducing_points.is_floating_point():
        raise ModelSpecError(f"inducing_points have dtype {inducing_points.dtype}, expected a floating dtype "
                             "(the model's)")
    if not bool(torch.isfinite(inducing_points).all()):
        raise ModelSpecError(f"inducing_points (shape {tuple(inducing_points.shape)}) hold "
                             f"{int((~torch.isfinite(inducing_points)).sum())} NaN/inf value(s)")
    return inducing_points
