"""Command-line recipes: ``hybridpgm train <model>``.

A recipe is a module with ``add_arguments(parser, model)``, ``run(args) ->
metrics`` and, for the commands that work from a run folder,
``evaluate(saved, run_dir, args)`` and ``sample(saved, run_dir, args)``;
:data:`RECIPES` maps each model name to its recipe and a one-line
description.  Registration is explicit.  Every recipe writes the run folder
layout of :mod:`hybridpgm.recipes.common`.

The recipe modules are imported when first used (:class:`LazyRecipe`, and
``hybridpgm.recipes.vae`` ... through PEP 562), not when this package is: ``import
hybridpgm.recipes.common`` or ``hybridpgm --version`` imports no GPyTorch, which the
GP recipe needs and whose import warns under ``python -W error``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from hybridpgm._lazy import lazy_exports


class LazyRecipe:
    """A recipe module, imported on first attribute access: ``RECIPES["vae"][0].run(args)`` imports
    :mod:`hybridpgm.recipes.vae` then.  ``getattr(recipe, "sample", None)`` is ``None`` for a recipe
    without ``sample``, as for the module itself.

    :param module_name: the recipe module's full name (``"hybridpgm.recipes.vae"``).
    """

    __slots__ = ("module_name",)

    def __init__(self, module_name: str):
        self.module_name = module_name

    @property
    def module(self) -> ModuleType:
        """The recipe module, imported now if it was not yet."""
        return importlib.import_module(self.module_name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in LazyRecipe.__slots__:  # copy/pickle probes, an unset slot
            raise AttributeError(name)
        return getattr(self.module, name)

    def __reduce__(self):
        return LazyRecipe, (self.module_name,)

    def __repr__(self) -> str:
        return f"LazyRecipe({self.module_name!r})"


_MODULES = ("bayes_net", "crf", "deep_energy", "gan", "gp", "rbm", "sbn", "vae")
_RECIPE = {name: LazyRecipe(f"{__name__}.{name}") for name in _MODULES}

#: model name -> (recipe module, imported on first use; description)
RECIPES = {
    "aavae": (_RECIPE["gan"], "adversary-activated VAE (Hu et al. 2018)"),
    "bayes-net": (_RECIPE["bayes_net"], "Bayesian network (pgmpy/BIF) learned from incomplete data, exact queries"),
    "crf": (_RECIPE["crf"], "linear-chain CRF tagger on a generated HMM tagging task (Lafferty et al. 2001)"),
    "dbm": (_RECIPE["deep_energy"],
            "deep Boltzmann machine: pretraining, PCD, log Z by AIS (Salakhutdinov & Hinton 2009)"),
    "dbn": (_RECIPE["deep_energy"], "deep belief net: greedy layer-wise CD-k (Hinton et al. 2006)"),
    "dkl": (_RECIPE["gp"], "deep kernel learning: an MLP under an exact GP (Wilson et al. 2016)"),
    "gan": (_RECIPE["gan"], "generative adversarial network (Goodfellow et al. 2014) as variational EM"),
    "gp-lstm": (_RECIPE["gp"], "GP-LSTM on a statsmodels time series (Al-Shedivat et al. 2017)"),
    "infogan": (_RECIPE["gan"], "InfoGAN: a GAN with an interpretable code (Chen et al. 2016)"),
    "iwae": (_RECIPE["vae"], "VAE trained with the importance-weighted bound (Burda et al. 2016)"),
    "iwgan": (_RECIPE["gan"], "importance-weighted GAN (Hu et al. 2018)"),
    "rbm": (_RECIPE["rbm"], "restricted Boltzmann machine: CD-k / PCD, log Z by AIS"),
    "sbn": (_RECIPE["sbn"], "sigmoid belief net: wake-sleep / RWS / NVIL / VIMCO"),
    "vae": (_RECIPE["vae"], "variational autoencoder trained with the ELBO (Kingma & Welling 2014)"),
}

__all__ = ["LazyRecipe", "RECIPES"]

__getattr__, __dir__ = lazy_exports(__name__, {name: f"{__name__}.{name}" for name in _MODULES}, globals())
