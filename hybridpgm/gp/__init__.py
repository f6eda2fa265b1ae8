"""GPyTorch layers: deep kernel learning, GP-LSTM, wide-network kernels.

* :class:`DeepKernelGP` -- exact (KISS-)GP regression on network features,
  trained by :class:`ExactMLLObjective`;
* :class:`SVDeepKernelGP` -- stochastic variational DKL as a Pyro model/guide;
* :class:`GPLSTM` -- recurrent deep kernel, trained by :class:`SemiStochasticObjective`;
* :class:`ArcCosineKernel` -- the NNGP kernel of an infinitely wide ReLU network.
"""

from hybridpgm.gp.deep_kernel import DeepKernelGP, ExactMLLObjective, train_deep_kernel
from hybridpgm.gp.feature_gp import FeatureGP, GPPrediction
from hybridpgm.gp.gp_lstm import GPLSTM, Forecast, LSTMFeatures, SemiStochasticObjective
from hybridpgm.gp.gp_lstm_recipe import train_gp_lstm
from hybridpgm.gp.kernels import ArcCosineKernel
from hybridpgm.gp.sv_deep_kernel import SVDeepKernelGP
from hybridpgm.gp.validation import ValidatedFit, calibration, fit_validated

__all__ = [
    "ArcCosineKernel",
    "DeepKernelGP",
    "ExactMLLObjective",
    "FeatureGP",
    "Forecast",
    "GPLSTM",
    "GPPrediction",
    "LSTMFeatures",
    "SVDeepKernelGP",
    "SemiStochasticObjective",
    "ValidatedFit",
    "calibration",
    "fit_validated",
    "train_deep_kernel",
    "train_gp_lstm",
]
