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
import warnings
from typing import Any, Callable, Mapping, NamedTuple

import arviz as az
import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import Predictive, infer_discrete
from pyro.poutine.util import site_is_factor, site_is_subsample

from hybridpgm.checks import positive_int
from hybridpgm.diagnostics.host_arrays import as_host_array
from hybridpgm.errors import ConfigError, DataError
from hybridpgm.infer.particle_elbo import keeping_module_state
from hybridpgm.param_store_scope import modules_own_their_params

__all__ = ["GROUPS", "from_categorical", "from_importance", "from_mcmc", "from_pyro_svi", "from_svi",
           "make_inference_data"]

_KEYWORD_STYLE = "posterior" in inspect.signature(az.from_dict).parameters


#: the ArviZ groups :func:`make_inference_data` takes: those ArviZ 0.x's ``from_dict`` takes as keywords, all of
#: which ArviZ 1.x's takes too (0.x drops any other name without a word, 1.x keeps any name)
GROUPS = ("posterior", "posterior_predictive", "predictions", "log_likelihood", "sample_stats", "prior",
          "prior_predictive", "sample_stats_prior", "observed_data", "constant_data", "predictions_constant_data",
          "warmup_posterior", "warmup_posterior_predictive", "warmup_predictions", "warmup_log_likelihood",
          "warmup_sample_stats")

#: groups whose arrays have no leading ``(chain, draw)`` dimensions (under ArviZ 1.x: those named ``*data*``)
_UNSAMPLED_GROUPS = ("observed_data", "constant_data", "predictions_constant_data")

#: ArviZ's sample dims, leading every array of the other groups
_SAMPLE_DIMS = ("chain", "draw")


def make_inference_data(groups: Mapping[str, Mapping[str, Any]], dims: Mapping[str, list[str]] | None = None,
                        coords: Mapping[str, Any] | None = None):
    """``arviz.from_dict`` for both ArviZ generations, refusing what it would silently drop or change.

    The same call gives an ``InferenceData`` under ArviZ 0.x and a ``DataTree`` under ArviZ 1.x, with the same
    groups, variables, dims and coords: ``dims`` and ``coords`` apply to the ``predictions`` groups too (ArviZ
    1.x takes those from separate ``pred_dims``/``pred_coords``, ArviZ 0.x from ``dims``), and ``warmup_*``
    groups are kept (both drop them by default).

    :param groups: group name -> variable -> array (a tensor in any dtype, ``bfloat16`` included, or an array).
        The group names are those of :data:`GROUPS` (the groups ArviZ 0.x's ``from_dict`` takes, all of which
        ArviZ 1.x takes too).  Arrays have leading dimensions ``(chain, draw)``, except in ``observed_data``,
        ``constant_data`` and ``predictions_constant_data``.  A group with no variables is left out.
    :param dims: variable -> names of its dims after ``(chain, draw)``; an axis without a name gets ArviZ's
        ``<variable>_dim_<i>``.
    :param coords: dim name -> coordinate values.
    :raises ConfigError: for a group name that is not in :data:`GROUPS` (such as a misspelt ``"posteriour"``).
    :raises DataError: for an array of a sampled group with fewer than two dims (no ``(chain, draw)``); a
        variable given more dim names than its array has dims after ``(chain, draw)``; a variable named like a
        dim of its group (``chain``, ``draw``, a name in ``dims``, ``<other>_dim_0``), which xarray would turn
        into a coordinate, losing the variable; a tensor in a dtype NumPy cannot hold.
    """
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ConfigError(f"unknown ArviZ group(s) {unknown}; make_inference_data takes {list(GROUPS)}")
    groups = {g: {k: as_host_array(v) for k, v in variables.items()} for g, variables in groups.items() if variables}
    dims = dict(dims or {})
    _check_lead_dims(groups)
    _check_dims(groups, dims)
    _check_names(groups, dims)
    if _KEYWORD_STYLE:  # ArviZ 0.x: its predictions groups take `dims` (and `coords`) when pred_dims is not given
        data = az.from_dict(**groups, dims=dims, coords=coords, save_warmup=True)
    else:  # ArviZ >= 1.0: its predictions groups take pred_dims and pred_coords only
        data = az.from_dict(groups, dims=dims, coords=coords, pred_dims=dims, pred_coords=coords, save_warmup=True)
    _check_kept(data, groups)
    return data


def _check_lead_dims(groups: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Raise :class:`DataError` for an array of a sampled group without ``(chain, draw)`` dims (ArviZ 0.x
    silently reads a ``K`` array as one chain of ``K`` draws, ArviZ 1.x raises a bare ``ValueError``)."""
    for group, variables in groups.items():
        if group in _UNSAMPLED_GROUPS:
            continue
        for name, array in variables.items():
            if array.ndim < 2:
                raise DataError(f"variable {name!r} in group {group!r} has shape {array.shape}; the arrays of a "
                                f"sampled group lead with (chain, draw) dims: for one chain of K draws pass shape "
                                f"(1, K, ...)")


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


def _group_dims(group: str, variables: Mapping[str, np.ndarray], dims: Mapping[str, list[str]]) -> dict[str, str]:
    """Every dim name the variables of ``group`` may get -> the variable that brings it.  An unnamed axis is
    ``<variable>_dim_<i>``, where ArviZ 0.x counts ``i`` over the axes after ``(chain, draw)`` and ArviZ 1.x
    over the unnamed ones: both names are listed."""
    lead = 0 if group in _UNSAMPLED_GROUPS else 2
    out = {} if group in _UNSAMPLED_GROUPS else {d: "(every variable)" for d in _SAMPLE_DIMS}
    for name, array in variables.items():
        given = list(dims.get(name, []))
        for i in range(array.ndim - lead):
            if i < len(given) and given[i] is not None:
                out.setdefault(given[i], name)
            else:
                unnamed = sum(1 for d in given[:i] if d is None) + max(i - len(given), 0)
                out.setdefault(f"{name}_dim_{i}", name)
                out.setdefault(f"{name}_dim_{unnamed}", name)
    return out


def _check_names(groups: Mapping[str, Mapping[str, np.ndarray]], dims: Mapping[str, list[str]]) -> None:
    """Raise :class:`DataError` for a variable named like a dim of its group: xarray makes it that dim's
    coordinate, and the variable is lost without a word."""
    for group, variables in groups.items():
        group_dims = _group_dims(group, variables, dims)
        for name in variables:
            if name in group_dims:
                owner = group_dims[name]
                what = "ArviZ's sample dim" if owner == "(every variable)" else f"a dim of variable {owner!r}"
                raise DataError(f"variable {name!r} in group {group!r} has the name of {what}, {name!r}; xarray "
                                f"would make it that dim's coordinate and lose the variable: rename the variable "
                                f"or the dim")


def _check_kept(data, groups: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Raise :class:`DataError` if ArviZ left out a group or variable it was given (a safety net behind the
    checks above)."""
    for group, variables in groups.items():
        try:
            kept = set(data[group].data_vars)
        except KeyError:
            kept = set()
        lost = [name for name in variables if name not in kept]
        if lost:
            raise DataError(f"ArviZ dropped variable(s) {lost} of group {group!r} (shapes "
                            f"{ {n: variables[n].shape for n in lost} }); rename them")


class _Sites(NamedTuple):
    """The sample sites of one model trace, by the ArviZ group they go to."""

    latent: list[str]  #: latent sites drawn by the guide (``Predictive``)
    discrete: list[str]  #: enumerated latent sites the guide lacks, drawn by ``infer_discrete``
    deterministic: list[str]  #: ``pyro.deterministic`` sites, computed per posterior draw
    observed: dict[str, dict]  #: observed sites that hold data (no factor, no deterministic site)


def _sort_sites(model_trace, guide_trace) -> _Sites:
    latent, discrete, sequential, deterministic, observed = [], [], [], [], {}
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if site["infer"].get("_deterministic"):
            deterministic.append(name)
        elif site["is_observed"]:
            if not site_is_factor(site) and not site["infer"].get("is_auxiliary", False):
                observed[name] = site
        elif site["infer"].get("is_auxiliary", False):
            continue
        elif name in guide_trace.nodes or site["infer"].get("enumerate") is None:
            latent.append(name)
        elif site["infer"]["enumerate"] == "parallel":
            discrete.append(name)
        else:
            sequential.append(name)
    if sequential:
        raise ConfigError(f"from_pyro_svi draws the model-enumerated sites that the guide lacks from their "
                          f"posterior with infer_discrete, which needs parallel enumeration; sites {sequential} are "
                          f"enumerated {model_trace.nodes[sequential[0]]['infer']['enumerate']!r}: mark them "
                          f"infer={{'enumerate': 'parallel'}} or sample them in the guide")
    return _Sites(latent, discrete, deterministic, observed)


def _refuse_subsampling(*traces) -> None:
    """Raise :class:`DataError` for a plate that runs on fewer rows than its size: each trace would hold other
    rows, so draws, log-likelihoods and observed data would not line up."""
    for trace in traces:
        for name, site in trace.nodes.items():
            if site_is_subsample(site) and site["fn"].size >= 0 and len(site["value"]) < site["fn"].size:
                raise DataError(f"from_pyro_svi needs every row, but plate {name!r} subsamples "
                                f"{len(site['value'])} of its {site['fn'].size} rows, so each draw would hold other "
                                f"rows; pass the full data, with pyro.plate({name!r}, {site['fn'].size}) without "
                                f"subsample_size (or subsample=torch.arange({site['fn'].size}))")


def _vectorized_frames(site: dict) -> set:
    return {frame.name for frame in site["cond_indep_stack"] if frame.vectorized}


def _summed_out_log_lik(model: Callable, values: dict, observed: dict, local: list[str], shapes: dict,
                        first_dim: int, args: tuple, kwargs: dict) -> dict[str, torch.Tensor]:
    """Per observed site ``y``, :math:`\\log p(y_n \\mid \\theta) = \\log \\sum_{c_n} p(c_n \\mid \\theta)
    p(y_n \\mid c_n, \\theta)`: the model run with ``values`` (its continuous latents :math:`\\theta` and its
    global discrete sites) and its ``local`` enumerated discrete sites enumerated in parallel; the local sites
    in no plate but ``y``'s are summed out of ``y``'s log-likelihood (the others sum to one).  A mixture
    assignment is summed out of its point's likelihood, as in the model, rather than fixed at a draw that has
    seen the point, which would make ``az.loo`` optimistic.

    :param shapes: ``name -> shape`` of each observed site's own log-probability (no enumeration dims).
    :returns: ``name -> log-likelihood`` in that shape."""
    trace = poutine.trace(poutine.enum(poutine.condition(model, data=values), first_available_dim=first_dim)
                          ).get_trace(*args, **kwargs)
    plate_dims = -1 - first_dim
    out = {}
    for name, site in observed.items():
        frames = _vectorized_frames(site)
        enumerated = trace.nodes[name]
        total = enumerated["fn"].log_prob(enumerated["value"])
        for n in local:
            if _vectorized_frames(trace.nodes[n]) <= frames:
                total = total + trace.nodes[n]["fn"].log_prob(trace.nodes[n]["value"])
        shape = shapes[name]
        kept = max(plate_dims, len(shape))  # the enumeration dims lie left of the plates and the site's batch
        enum_dims = list(range(total.dim() - kept)) if total.dim() > kept else []
        summed = torch.logsumexp(total, dim=enum_dims) if enum_dims else total
        out[name] = summed.reshape(shape)
    return out


def _plate_nesting(*traces) -> int:
    dims = [frame.dim for trace in traces for site in trace.nodes.values() if site["type"] == "sample"
            for frame in site["cond_indep_stack"] if frame.vectorized]
    return -min(dims) if dims else 0


@modules_own_their_params
def from_pyro_svi(model: Callable, guide: Callable, *args: Any, num_samples: int = 500,
                  return_sites: list[str] | None = None, **kwargs: Any):
    """ArviZ data of a Pyro model/guide pair after variational inference.

    Works with any guide: Pyro's autoguides (``AutoNormal``, ``AutoDelta``,
    ``AutoDiagonalNormal``, ...) and hand-written ones.  The groups hold:

    * ``posterior`` (``1 x S x site_shape``): the *model's* latent sample sites, drawn from the guide; a guide's
      auxiliary sites (such as ``AutoDiagonalNormal``'s joint ``_AutoDiagonalNormal_latent``) are left out.  A
      discrete site that the model enumerates (``infer={"enumerate": "parallel"}``) and the guide does not sample
      is drawn from its conditional posterior given each draw of the other latents, with
      :func:`pyro.infer.infer_discrete` (``temperature=1``).  The ``pyro.deterministic`` sites are here too, their
      values computed from each draw;
    * ``posterior_predictive`` and ``log_likelihood`` (``1 x S x obs_shape``), and ``observed_data``: one
      variable per observed site that holds data.  ``pyro.deterministic`` and ``pyro.factor`` sites (observed
      sites to Pyro) are not data and are left out, so ``az.loo`` and ``az.waic`` see the data only.  The
      log-likelihood of a draw is :math:`\\log p(y_n \\mid \\theta_s)`: an enumerated discrete site local to
      the data's plates (a mixture assignment) is summed out of it, as in the model, while a global one is held
      at its draw, as the continuous latents are.

    :param model: the Pyro model, run as ``model(*args, **kwargs)`` with its
        observed sites conditioned (``obs=``) on the full data.
    :param guide: the trained guide.
    :param num_samples: posterior draws (one chain).
    :param return_sites: latent and deterministic sites of the model to keep in ``posterior`` (default: all of
        them); every latent site is drawn either way.
    :raises DataError: the model observes no data (``pyro.factor`` and ``pyro.deterministic`` sites do not
        count), ``return_sites`` names a site that is not a latent or deterministic site of the model, or a plate
        subsamples its rows (``subsample_size=``, or a ``subsample=`` shorter than the plate): the rows would
        differ from draw to draw; a site is named like a dim of its ArviZ group (``chain``, ``draw``: see
        :func:`make_inference_data`).
    :raises ConfigError: ``num_samples`` is not a positive integer, or a model-enumerated site that the guide
        lacks is enumerated sequentially (:func:`~pyro.infer.infer_discrete` needs ``"parallel"``).
    :warns UserWarning: when the pointwise log-likelihood is the same in every draw (a point-estimate guide such
        as ``AutoDelta``): PSIS, hence ``az.loo`` and ``az.waic``'s diagnostics, needs draws that vary.
    """
    num_samples = positive_int(num_samples, "from_pyro_svi num_samples")
    with torch.no_grad(), keeping_module_state(model, guide):  # a diagnostic leaves the model's buffers alone
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        _refuse_subsampling(model_trace, guide_trace)
        sites = _sort_sites(model_trace, guide_trace)
        observed = sites.observed
        if not observed:
            raise DataError("the model has no observed sample site: nothing to check against "
                            "(pyro.factor and pyro.deterministic sites hold no data)")
        returnable = [n for n in model_trace.nodes if n in sites.latent + sites.discrete + sites.deterministic]
        unknown = [n for n in (return_sites or []) if n not in returnable]
        if unknown:
            raise DataError(f"return_sites {unknown} are not latent or deterministic sample sites of the model "
                            f"(its latent and deterministic sites: {returnable})")
        draws = Predictive(model, guide=guide, num_samples=num_samples,
                           return_sites=sites.latent)(*args, **kwargs) if sites.latent else {}
        # Predictive pads draws with plate dims on the left: restore each site's own shape
        draws = {n: draws[n].reshape((num_samples,) + model_trace.nodes[n]["value"].shape) for n in sites.latent}
        per_draw: dict[str, list[torch.Tensor]] = {n: [] for n in sites.discrete + sites.deterministic}
        log_lik: dict[str, list[torch.Tensor]] = {name: [] for name in observed}
        first_dim = -1 - _plate_nesting(model_trace, guide_trace)  # infer_discrete's enumeration dims go left of it
        local = [n for n in sites.discrete if _vectorized_frames(model_trace.nodes[n])]
        shapes = {n: model_trace.nodes[n]["fn"].log_prob(model_trace.nodes[n]["value"]).shape for n in observed}
        for s in range(num_samples):
            latents = {name: draws[name][s] for name in sites.latent}
            conditioned = poutine.condition(model, data=latents)
            if sites.discrete:
                conditioned = infer_discrete(conditioned, first_available_dim=first_dim, temperature=1)
            trace = poutine.trace(conditioned).get_trace(*args, **kwargs)
            for name in per_draw:
                per_draw[name].append(trace.nodes[name]["value"].reshape(model_trace.nodes[name]["value"].shape))
            if local:  # the data's own likelihood: local discrete sites summed out, as the model does
                held = {n: trace.nodes[n]["value"] for n in sites.discrete if n not in local}
                point_log_lik = _summed_out_log_lik(model, {**latents, **held}, observed, local, shapes,
                                                    first_dim, args, kwargs)
            else:
                point_log_lik = {name: trace.nodes[name]["fn"].log_prob(trace.nodes[name]["value"])
                                 for name in observed}
            for name in observed:
                log_lik[name].append(point_log_lik[name])
        draws.update({n: torch.stack(v) for n, v in per_draw.items()})
        log_lik = {n: torch.stack(v) for n, v in log_lik.items()}
        if num_samples > 1 and all(bool((v == v[:1]).all()) for v in log_lik.values()):
            warnings.warn("from_pyro_svi: every posterior draw has the same pointwise log-likelihood (a point-estimate "
                          "guide such as AutoDelta?); az.loo and az.waic need draws that vary: ArviZ 0.x reports "
                          "k-hat = inf at every point, ArviZ 1.x raises 'All tail values are the same'",
                          UserWarning, stacklevel=3)
        predictive = Predictive(poutine.uncondition(model), num_samples=num_samples,
                                posterior_samples={n: draws[n] for n in sites.latent + sites.discrete},
                                return_sites=list(observed))(*args, **kwargs)
    return make_inference_data({
        "posterior": {n: draws[n].unsqueeze(0) for n in (return_sites or returnable)},
        "posterior_predictive": {n: predictive[n].reshape((1, num_samples) + observed[n]["value"].shape)
                                 for n in observed},
        "log_likelihood": {n: v.unsqueeze(0) for n, v in log_lik.items()},
        "observed_data": {n: site["value"] for n, site in observed.items()},
    })


#: the former name of :func:`from_pyro_svi`, kept so existing code runs
from_svi = from_pyro_svi


def from_mcmc(mcmc: pyro.infer.MCMC):
    """ArviZ data of a :class:`pyro.infer.MCMC` run (any kernel, hybridpgm's
    Gibbs included): ``posterior`` with shape ``chains x draws x site_shape``.

    :param mcmc: the :class:`pyro.infer.MCMC` object, after :meth:`~pyro.infer.MCMC.run`.
    :raises DataError: for anything but an MCMC object (such as the dict of :meth:`~pyro.infer.MCMC.get_samples`:
        pass it to :func:`make_inference_data` as ``{"posterior": ...}`` with ``chain x draw`` leading dims), or
        an MCMC that has not run (no samples).
    """
    if not isinstance(mcmc, pyro.infer.MCMC):
        raise DataError(f"from_mcmc takes a pyro.infer.MCMC run, got {type(mcmc).__name__}; for a dict of samples "
                        f"name -> chains x draws x ... use make_inference_data({{'posterior': samples}})")
    samples = mcmc.get_samples(group_by_chain=True)
    if not samples:
        raise DataError("the MCMC holds no samples: call mcmc.run(...) before from_mcmc")
    return make_inference_data({"posterior": samples})


def from_importance(log_weights: torch.Tensor, samples: Mapping[str, torch.Tensor] | None = None):
    """ArviZ data of an importance-sampling or AIS run.

    :param log_weights: ``K`` or ``K x N`` log-weights (``N`` independent
        targets, e.g. data points), kept as ``sample_stats.log_weight`` with one
        chain of ``K`` draws, ready for ``az.ess``-style and PSIS diagnostics.
    :param samples: optional draws ``name -> K x ...`` (tensors, arrays or lists) kept as ``posterior``.
    :raises DataError: for log-weights that are not floating point, not ``K`` or ``K x N`` with ``K >= 1``, or
        hold NaN or :math:`+\\infty` (:math:`-\\infty`, a zero weight, is allowed); for draws whose count is not
        ``K``, or that are not numbers.
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
        try:  # arrays and lists too, as the log-weights
            samples = {n: torch.as_tensor(v) for n, v in samples.items()}
        except (TypeError, ValueError, RuntimeError) as error:
            raise DataError(f"samples must be tensors or arrays of numbers ({error})") from None
        bad = {n: tuple(v.shape) for n, v in samples.items() if v.dim() == 0 or v.shape[0] != k}
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
        ``(row, <variable>_state)``.  A dim name that is also a variable's name (a node named ``row``, or nodes
        ``x`` and ``x_state``) gets underscores appended until it is free (``row_``, ``x_state_``), so no
        variable becomes a coordinate and is lost.
    :raises DataError: for no variables, a variable named ``chain`` or ``draw`` (ArviZ's sample dims), a shape
        that is not ``N x cardinality``, or rows that are not probability vectors (a non-float dtype, a negative
        or NaN entry, or a sum off one by more than :math:`\\sqrt{\\epsilon}` of the dtype).
    """
    if not probabilities:
        raise DataError("from_categorical needs at least one variable's probabilities, got none")
    posterior = {}
    for name, probs in probabilities.items():
        probs = torch.as_tensor(probs)
        if probs.dim() == 1:
            probs = probs.unsqueeze(0)
        if probs.dim() != 2:
            raise DataError(f"posterior of {name!r} must be N x cardinality, got shape {tuple(probs.shape)}")
        _check_probability_rows(name, probs)
        posterior[name] = probs.reshape((1, 1) + tuple(probs.shape))
    rows = {name: p.shape[2] for name, p in posterior.items()}
    if len(set(rows.values())) > 1:
        raise DataError(f"every variable needs the same number of evidence rows; got {rows}")
    taken = set(posterior)
    row = _free_name("row", taken)
    dims = {}
    for name in posterior:
        dims[name] = [row, _free_name(f"{name}_state", taken | {row})]
        taken.add(dims[name][1])
    return make_inference_data({"posterior": posterior}, dims=dims)


def _free_name(name: str, taken: set) -> str:
    """``name``, with underscores appended until it is not in ``taken``."""
    while name in taken:
        name += "_"
    return name
