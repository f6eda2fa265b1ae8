"""Conversion of hybridpgm and Pyro results to ArviZ data.

Everything is built through ``arviz.from_dict`` so the same code gives an
``InferenceData`` under ArviZ 0.x and a ``DataTree`` under ArviZ 1.x (whose
``from_dict`` takes one dict of groups instead of keyword groups).  Arrays are
NumPy with the leading ``(chain, draw)`` dimensions ArviZ expects.

* :func:`from_pyro_svi` -- a model and guide after SVI (any guide, autoguides included): posterior draws from the
  guide (via :class:`pyro.infer.Predictive`), posterior predictive, observed
  data, and the pointwise log-likelihood for ``az.loo`` / ``az.waic``;
* :func:`from_mcmc` -- a :class:`pyro.infer.MCMC` run, chains kept (R-hat, ESS);
* :func:`from_importance` -- importance-sampling or AIS log-weights (and
  optional draws) for ESS and PSIS diagnostics;
* :func:`from_categorical` -- exact categorical posteriors (e.g. of a
  ``BayesNet``), one probability vector per query variable and evidence row.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import arviz as az
import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import Predictive
from pyro.poutine.util import site_is_subsample

from hybridpgm.checks import positive_int
from hybridpgm.errors import DataError
from hybridpgm.param_store_scope import modules_own_their_params

__all__ = ["from_categorical", "from_importance", "from_mcmc", "from_pyro_svi", "from_svi", "make_inference_data"]

_KEYWORD_STYLE = "posterior" in inspect.signature(az.from_dict).parameters


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def make_inference_data(groups: Mapping[str, Mapping[str, Any]], dims: Mapping[str, list[str]] | None = None,
                        coords: Mapping[str, Any] | None = None):
    """``arviz.from_dict`` for both ArviZ generations.

    :param groups: group name (``"posterior"``, ``"log_likelihood"``,
        ``"sample_stats"``, ``"observed_data"``, ...) -> variable -> array whose
        leading dimensions are ``(chain, draw)`` (not for ``observed_data`` and ``constant_data``).
    :param dims: variable -> names of its dims after ``(chain, draw)``.
    :raises DataError: for a variable given more dim names than its array has dims after ``(chain, draw)``.
    """
    groups = {g: {k: _numpy(v) for k, v in variables.items()} for g, variables in groups.items() if variables}
    _check_dims(groups, dims or {})
    if _KEYWORD_STYLE:  # ArviZ 0.x
        return az.from_dict(**groups, dims=dims, coords=coords)
    return az.from_dict(groups, dims=dims, coords=coords)  # ArviZ >= 1.0


#: groups whose arrays have no leading ``(chain, draw)`` dimensions
_UNSAMPLED_GROUPS = ("observed_data", "constant_data")


def _check_dims(groups: Mapping[str, Mapping[str, np.ndarray]], dims: Mapping[str, list[str]]) -> None:
    """Raise :class:`DataError` for a variable named with more dims than its array has (ArviZ raises a bare
    ``KeyError`` deep inside)."""
    for group, variables in groups.items():
        lead = 0 if group in _UNSAMPLED_GROUPS else 2
        for name, array in variables.items():
            if name in dims and len(dims[name]) > max(array.ndim - lead, 0):
                raise DataError(f"dims {list(dims[name])} name {len(dims[name])} dims of variable {name!r} in group "
                                f"{group!r}, whose array of shape {array.shape} has {max(array.ndim - lead, 0)} "
                                f"after {'(chain, draw)' if lead else 'none'}")


def _observed_sites(trace) -> dict[str, dict]:
    return {name: site for name, site in trace.nodes.items()
            if site["type"] == "sample" and site["is_observed"] and not site_is_subsample(site)}


@modules_own_their_params
def from_pyro_svi(model: Callable, guide: Callable, *args: Any, num_samples: int = 500,
                  return_sites: list[str] | None = None, **kwargs: Any):
    """ArviZ data of a Pyro model/guide pair after variational inference.

    Works with any guide: Pyro's autoguides (``AutoNormal``, ``AutoDelta``,
    ``AutoDiagonalNormal``, ...) and hand-written ones.  The posterior holds
    the *model's* latent sample sites only; a guide's auxiliary sites (such as
    ``AutoDiagonalNormal``'s joint ``_AutoDiagonalNormal_latent``) are left out.

    :param model: the Pyro model, run as ``model(*args, **kwargs)`` with its
        observed sites conditioned (``obs=``).
    :param guide: the trained guide.
    :param num_samples: posterior draws (one chain).
    :param return_sites: latent sites of the model to keep (default: all of them).
    :returns: groups ``posterior`` (``1 x S x site_shape``),
        ``posterior_predictive`` and ``log_likelihood`` (``1 x S x obs_shape``)
        per observed site, and ``observed_data``.
    :raises DataError: the model observes nothing, or ``return_sites`` names a
        site that is not a latent site of the model.
    :raises ConfigError: ``num_samples`` is not a positive integer.
    """
    num_samples = positive_int(num_samples, "from_pyro_svi num_samples")
    with torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        observed = _observed_sites(model_trace)
        if not observed:
            raise DataError("the model has no observed sample site: nothing to check against")
        model_latents = [n for n, s in model_trace.nodes.items()
                         if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)
                         and not s["infer"].get("is_auxiliary", False)]
        unknown = [n for n in (return_sites or []) if n not in model_latents]
        if unknown:
            raise DataError(f"return_sites {unknown} are not latent sample sites of the model "
                            f"(its latent sites: {model_latents})")
        latents = list(return_sites or model_latents)
        draws = Predictive(model, guide=guide, num_samples=num_samples, return_sites=latents)(*args, **kwargs)
        # Predictive pads draws with plate dims on the left: restore each site's own shape
        draws = {n: draws[n].reshape((num_samples,) + model_trace.nodes[n]["value"].shape) for n in latents}
        predictive = Predictive(poutine.uncondition(model), posterior_samples=draws,
                                return_sites=list(observed))(*args, **kwargs)
        log_lik: dict[str, list[torch.Tensor]] = {name: [] for name in observed}
        for s in range(num_samples):
            values = {name: draws[name][s] for name in latents}
            trace = poutine.trace(poutine.condition(model, data=values)).get_trace(*args, **kwargs)
            for name in observed:
                site = trace.nodes[name]
                log_lik[name].append(site["fn"].log_prob(site["value"]))
    return make_inference_data({
        "posterior": {n: draws[n].unsqueeze(0) for n in latents},
        "posterior_predictive": {n: predictive[n].reshape((1, num_samples) + observed[n]["value"].shape)
                                 for n in observed},
        "log_likelihood": {n: torch.stack(v).unsqueeze(0) for n, v in log_lik.items()},
        "observed_data": {n: site["value"] for n, site in observed.items()},
    })


#: the former name of :func:`from_pyro_svi`, kept so existing code runs
from_svi = from_pyro_svi


def from_mcmc(mcmc: pyro.infer.MCMC):
    """ArviZ data of a :class:`pyro.infer.MCMC` run (any kernel, hybridpgm's
    Gibbs included): ``posterior`` with shape ``chains x draws x site_shape``."""
    samples = mcmc.get_samples(group_by_chain=True)
    return make_inference_data({"posterior": samples})


def from_importance(log_weights: torch.Tensor, samples: Mapping[str, torch.Tensor] | None = None):
    """ArviZ data of an importance-sampling or AIS run.

    :param log_weights: ``K`` or ``K x N`` log-weights (``N`` independent
        targets, e.g. data points), kept as ``sample_stats.log_weight`` with one
        chain of ``K`` draws, ready for ``az.ess``-style and PSIS diagnostics.
    :param samples: optional draws ``name -> K x ...`` kept as ``posterior``.
    :raises DataError: for log-weights that are not floating point, not ``K`` or ``K x N`` with ``K >= 1``, or
        hold NaN or :math:`+\\infty` (:math:`-\\infty`, a zero weight, is allowed); for draws whose count is not
        ``K``.
    """
    log_weights = torch.as_tensor(log_weights)
    if log_weights.dim() not in (1, 2) or log_weights.shape[0] == 0:
        raise DataError(f"log_weights must be K or K x N with K >= 1 draws, got shape {tuple(log_weights.shape)}")
    if not log_weights.is_floating_point():
        raise DataError(f"log_weights must be floating point, got dtype {log_weights.dtype}")
    bad = torch.isnan(log_weights) | (log_weights == float("inf"))
    if bool(bad.any()):
        where = bad.nonzero().tolist()
        raise DataError(f"log_weights hold {len(where)} NaN or +inf value(s) (at {where[:5]}"
                        f"{' ...' if len(where) > 5 else ''}); a log-weight is finite, or -inf for a zero weight")
    groups = {"sample_stats": {"log_weight": log_weights.unsqueeze(0)}}
    if samples:
        k = log_weights.shape[0]
        bad = {n: tuple(v.shape) for n, v in samples.items() if v.shape[0] != k}
        if bad:
            raise DataError(f"samples must have {k} draws like the log-weights; got shapes {bad}")
        groups["posterior"] = {n: v.unsqueeze(0) for n, v in samples.items()}
    return make_inference_data(groups)


def _check_probability_rows(name: str, probs: torch.Tensor) -> None:
    """Raise :class:`DataError` unless every row of ``probs`` (``N x card``) is a probability vector."""
    if not probs.is_floating_point():
        raise DataError(f"posterior of {name!r} must hold floating-point probabilities, got dtype {probs.dtype}")
    p = probs.detach()
    bad = (torch.isnan(p) | (p < 0)).any(-1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten().tolist()
        raise DataError(f"posterior of {name!r} has negative or NaN probabilities in row(s) {rows[:10]}")
    total = p.sum(-1, dtype=torch.float64)
    off = (total - 1).abs() > torch.finfo(p.dtype).eps ** 0.5
    if bool(off.any()):
        rows = off.nonzero().flatten().tolist()
        raise DataError(f"posterior of {name!r} has rows that do not sum to one: row(s) {rows[:10]} sum to "
                        f"{[round(float(total[r]), 6) for r in rows[:3]]}")


def from_categorical(probabilities: Mapping[str, torch.Tensor]):
    """ArviZ data of exact categorical posteriors.

    :param probabilities: variable -> ``N x cardinality`` (or ``cardinality``)
        probabilities, one row per evidence row, as returned by
        ``BayesNet.posterior``.
    :returns: ``posterior`` with one chain and one draw, variable dims
        ``(row, <variable>_state)``.
    :raises DataError: for no variables, a shape that is not ``N x cardinality``, or rows that are not
        probability vectors (a non-float dtype, a negative or NaN entry, or a sum off one by more than
        :math:`\\sqrt{\\epsilon}` of the dtype).
    """
    if not probabilities:
        raise DataError("from_categorical needs at least one variable's probabilities, got none")
    posterior, dims = {}, {}
    for name, probs in probabilities.items():
        probs = torch.as_tensor(probs)
        if probs.dim() == 1:
            probs = probs.unsqueeze(0)
        if probs.dim() != 2:
            raise DataError(f"posterior of {name!r} must be N x cardinality, got shape {tuple(probs.shape)}")
        _check_probability_rows(name, probs)
        posterior[name] = probs.reshape((1, 1) + tuple(probs.shape))
        dims[name] = ["row", f"{name}_state"]
    rows = {name: p.shape[2] for name, p in posterior.items()}
    if len(set(rows.values())) > 1:
        raise DataError(f"every variable needs the same number of evidence rows; got {rows}")
    return make_inference_data({"posterior": posterior}, dims=dims)
