"""State saved with the former default KISS-GP kernel of :class:`~hybridpgm.gp.DeepKernelGP`, converted to
today's layout on load.

The default KISS-GP kernel was ``ScaleKernel(GridInterpolationKernel(RBF))``; it is now GPyTorch's DKL layout,
``GridInterpolationKernel(ScaleKernel(RBF))`` (:func:`~hybridpgm.gp.feature_gp.default_kernel`).
:func:`convert_legacy_kiss_state` rewrites a ``state_dict`` of the former layout so that it loads into the
present one with the same covariance.
"""

from __future__ import annotations

import gpytorch

__all__ = ["convert_legacy_kiss_state"]


def convert_legacy_kiss_state(state_dict: dict, prefix: str, scale: gpytorch.kernels.ScaleKernel,
                              num_features: int) -> None:
    """Convert, in place, the entries of the former default KISS-GP kernel,
    ``ScaleKernel(GridInterpolationKernel(RBF))``, to the layout of
    ``GridInterpolationKernel(ScaleKernel(RBF))`` (``scale`` is its
    ``ScaleKernel``): the grid moves one level up, the outputscale one level
    down and becomes its ``num_features``-th root (the inner outputscale enters
    once per grid axis, see :func:`~hybridpgm.gp.feature_gp.default_kernel`),
    so the loaded model has the same covariance."""
    constraint = scale.raw_outputscale_constraint
    for owner in (prefix + "gp.covar_module.", prefix + "mll.model.covar_module."):
        if owner + "raw_outputscale" not in state_dict:
            continue  # today's layout
        inner = owner + "base_kernel."
        raw = state_dict.pop(owner + "raw_outputscale")
        state_dict[inner + "raw_outputscale"] = constraint.inverse_transform(
            constraint.transform(raw) ** (1.0 / num_features))
        for leaf in ("raw_outputscale_constraint.lower_bound", "raw_outputscale_constraint.upper_bound"):
            if owner + leaf in state_dict:
                state_dict[inner + leaf] = state_dict.pop(owner + leaf)
        for key in [k for k in state_dict if k.startswith(inner)]:
            leaf = key[len(inner):]
            if leaf.startswith("grid_") or leaf == "has_initialized_grid":
                state_dict[owner + leaf] = state_dict.pop(key)
