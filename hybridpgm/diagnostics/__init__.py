"""Diagnostics: ArviZ conversion, the PSIS check of variational inference, plots."""

from hybridpgm.diagnostics.check_vi import VICheck, check_vi, pareto_khat
from hybridpgm.diagnostics.gan_metrics import (
    RingCoverage,
    clustering_accuracy,
    inception_score,
    ring_coverage,
    target_accuracy,
    train_classifier,
)
from hybridpgm.diagnostics.inference_data import (from_categorical, from_importance, from_mcmc, from_svi,
                                                  make_inference_data)
from hybridpgm.diagnostics.plots import plot_coverage, plot_image_grid, plot_khat, plot_log_weights, plot_loss_curves

__all__ = [
    "RingCoverage",
    "VICheck",
    "check_vi",
    "clustering_accuracy",
    "from_categorical",
    "from_importance",
    "from_mcmc",
    "from_svi",
    "inception_score",
    "make_inference_data",
    "pareto_khat",
    "plot_coverage",
    "plot_image_grid",
    "plot_khat",
    "plot_log_weights",
    "plot_loss_curves",
    "ring_coverage",
    "target_accuracy",
    "train_classifier",
]
