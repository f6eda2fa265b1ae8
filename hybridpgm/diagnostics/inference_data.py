"""Conversion of hybridpgm and Pyro results to ArviZ data.

Everything is built through ``arviz.from_dict`` (:func:`~hybridpgm.diagnostics.arviz_data.make_inference_data`)
so the same code gives an ``InferenceData`` under ArviZ 0.x and a ``DataTree`` under ArviZ 1.x (whose
``from_dict`` takes one dict of groups instead of keyword groups).  Arrays are
NumPy with the leading ``(chain, draw)`` dimensions ArviZ expects.  One module per source, each name
importable from here too:

* :func:`~hybridpgm.diagnostics.svi_data.from_pyro_svi` -- a model and guide after SVI (any guide,
  autoguides included): posterior draws from the guide (via :class:`pyro.infer.Predictive`), posterior
  predictive, observed data, and the pointwise log-likelihood for ``az.loo`` (and ``az.waic`` under ArviZ
  0.x; ArviZ 1.x has no ``waic``);
* :func:`~hybridpgm.diagnostics.sampler_data.from_mcmc` -- a :class:`pyro.infer.MCMC` run, chains kept
  (R-hat, ESS), with the pointwise log-likelihood, observed data and NUTS/HMC divergences;
* :func:`~hybridpgm.diagnostics.sampler_data.from_importance` -- importance-sampling or AIS log-weights (and
  optional draws): posterior draws resampled by the weights, the proposal draws and log-weights kept for PSIS;
* :func:`~hybridpgm.diagnostics.categorical_data.from_categorical` -- exact categorical posteriors (e.g. of a
  ``BayesNet``), one probability vector per query variable and evidence row;
* :func:`~hybridpgm.diagnostics.arviz_data.make_inference_data` -- any groups of arrays, checked.
"""

from __future__ import annotations

# the converters live one source per module; this module keeps the names importable from where they were
from hybridpgm.diagnostics.arviz_data import GROUPS, make_inference_data
from hybridpgm.diagnostics.categorical_data import from_categorical
from hybridpgm.diagnostics.sampler_data import from_importance, from_mcmc
from hybridpgm.diagnostics.svi_data import from_pyro_svi, from_svi

__all__ = ["GROUPS", "from_categorical", "from_importance", "from_mcmc", "from_pyro_svi", "from_svi",
           "make_inference_data"]
