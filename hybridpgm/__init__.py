"""hybridpgm: graphical models and deep networks in one Pyro program.

Importing hybridpgm switches Pyro to module-local parameters
(``pyro.settings.set(module_local_params=True)``): parameters live in their
``PyroModule``, not in the global param store, so two models side by side,
checkpoints and data parallelism see exactly the module's parameters.  To
train a hybridpgm module with plain :class:`pyro.infer.SVI` (which collects
parameters from the param store) run it inside
``pyro.settings.context(module_local_params=False)``.
"""

import pyro

pyro.settings.set(module_local_params=True)

from hybridpgm import data, errors  # noqa: E402
from hybridpgm.generative import VAE  # noqa: E402
from hybridpgm.infer import IWAE, SVIObjective  # noqa: E402
from hybridpgm.train import EarlyStopping, EvaluateEvery, FitResult, History, fit  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "EarlyStopping",
    "EvaluateEvery",
    "FitResult",
    "History",
    "IWAE",
    "SVIObjective",
    "VAE",
    "data",
    "errors",
    "fit",
]
