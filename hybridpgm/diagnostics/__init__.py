"""Diagnostics: plots (and ArviZ conversion as it lands)."""

from hybridpgm.diagnostics.plots import plot_image_grid, plot_loss_curves

__all__ = [
    "plot_image_grid",
    "plot_loss_curves",
]
