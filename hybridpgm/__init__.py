"""hybridpgm: graphical models and deep networks in one Pyro program.

Importing hybridpgm switches Pyro to module-local parameters
(``pyro.settings.set(module_local_params=True)``): parameters live in their
``PyroModule``, not in the global param store, so two models side by side,
checkpoints and data parallelism see exactly the module's parameters.  To
train a hybridpgm module with plain :class:`pyro.infer.SVI` (which collects
parameters from the param store) run it inside
``pyro.settings.context(module_local_params=False)``.

The public API: :func:`fit` and its callbacks; the model families
(``VAE``, ``SigmoidBeliefNet``, ``BayesNet``, ``MarkovNet``,
``LinearChainCRF``, ``RBM``, ``DBN``, ``DBM``, the GP layers); and the
objectives and inference algorithms of :mod:`hybridpgm.infer`.
"""

import pyro

pyro.settings.set(module_local_params=True)

from hybridpgm import data, diagnostics, errors  # noqa: E402
from hybridpgm.energy import DBM, DBN, RBM  # noqa: E402
from hybridpgm.generative import VAE, SigmoidBeliefNet  # noqa: E402
from hybridpgm.gp import GPLSTM, DeepKernelGP, SVDeepKernelGP  # noqa: E402
from hybridpgm.graphs import BayesNet, LinearChainCRF, MarkovNet  # noqa: E402
from hybridpgm.infer import (  # noqa: E402
    AAVAE, ADA, AIS, GAN, IWAE, IWGAN, NVIL, RWS, VIMCO, ContrastiveDivergence, Gibbs, InfoGAN, PersistentCD,
    SVIObjective, WakeSleep,
)
from hybridpgm.train import EarlyStopping, EvaluateEvery, FitResult, History, fit  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "AAVAE",
    "ADA",
    "AIS",
    "BayesNet",
    "ContrastiveDivergence",
    "DBM",
    "DBN",
    "DeepKernelGP",
    "EarlyStopping",
    "EvaluateEvery",
    "FitResult",
    "GAN",
    "GPLSTM",
    "Gibbs",
    "History",
    "IWAE",
    "IWGAN",
    "InfoGAN",
    "LinearChainCRF",
    "MarkovNet",
    "NVIL",
    "PersistentCD",
    "RBM",
    "RWS",
    "SVDeepKernelGP",
    "SVIObjective",
    "SigmoidBeliefNet",
    "VAE",
    "VIMCO",
    "WakeSleep",
    "data",
    "diagnostics",
    "errors",
    "fit",
]
