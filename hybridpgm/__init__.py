"""hybridpgm: graphical models and deep networks in one Pyro program.

Importing hybridpgm changes no global state: no Pyro setting, nothing in the
param store, no matplotlib backend, no torch default.  Every model is an
ordinary Pyro program under Pyro's defaults (plain :class:`pyro.infer.SVI`
trains it); :func:`fit` gives each run a param-store scope of its own, so two
models side by side never share parameters.

The public API: :func:`fit` and its callbacks; the model families
(``VAE``, ``SigmoidBeliefNet``, ``BayesNet``, ``MarkovNet``,
``LinearChainCRF``, ``RBM``, ``DBN``, ``DBM``, the GP layers); and the
objectives and inference algorithms of :mod:`hybridpgm.infer`.
"""

from hybridpgm._lazy import lazy_exports

_NAMES = {
    **{name: "hybridpgm.energy" for name in ("DBM", "DBN", "RBM")},
    **{name: "hybridpgm.generative" for name in ("VAE", "SigmoidBeliefNet")},
    **{name: "hybridpgm.gp" for name in ("GPLSTM", "DeepKernelGP", "SVDeepKernelGP")},
    **{name: "hybridpgm.graphs" for name in ("BayesNet", "LinearChainCRF", "MarkovNet")},
    **{name: "hybridpgm.infer" for name in (
        "AAVAE", "ADA", "AIS", "GAN", "IWAE", "IWGAN", "NVIL", "RWS", "VIMCO", "ContrastiveDivergence", "Gibbs",
        "InfoGAN", "PersistentCD", "SVIObjective", "WakeSleep")},
    **{name: "hybridpgm.serialization" for name in ("load", "save")},
    **{name: "hybridpgm.train" for name in ("EarlyStopping", "EvaluateEvery", "FitResult", "History", "fit")},
    **{name: f"hybridpgm.{name}" for name in ("data", "diagnostics", "errors")},
    # the other public subpackages and modules: ``import hybridpgm`` then ``hybridpgm.infer.GroupedAdam`` works
    # (in a fresh notebook too), each imported on first use
    **{name: f"hybridpgm.{name}" for name in ("bayesian_nn", "energy", "generative", "gp", "graphs", "infer", "nn",
                                              "recipes", "serialization", "train", "transform_scope")},
}
__getattr__, __dir__ = lazy_exports(__name__, _NAMES, globals())

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
    "load",
    "save",
]
