"""The groups of a :class:`pyro.infer.MCMC` run that come from its model: :func:`mcmc_data_groups` runs the model
once (each site's shape and dtype, which sites it observes and masks) and replays it on the draws for
``log_likelihood``, ``observed_data`` and ``posterior_predictive``, as
:func:`~hybridpgm.diagnostics.sampler_data.from_mcmc` documents; the ``posterior`` reports each ``obs_mask``
split's latent half ``"<node>_unobserved"`` as its node ``"<node>"``.  The replay itself is the code of
:func:`~hybridpgm.diagnostics.from_pyro_svi` (:mod:`~hybridpgm.diagnostics.pointwise_log_lik`), draw by draw or
stacked (:mod:`~hybridpgm.diagnostics.vectorized_replay`, :mod:`~hybridpgm.diagnostics.vectorized_predictive`)."""

from __future__ import annotations

import warnings
from typing import Callable, Mapping

import torch
from pyro import poutine

from hybridpgm.diagnostics.masked_data import OBSERVED, data_groups, masked_pairs, observed_where_observed
from hybridpgm.diagnostics.pointwise_log_lik import observed_shape, replay_draws
from hybridpgm.diagnostics.svi_data import _plate_nesting, _refuse_subsampling, _sort_sites
from hybridpgm.diagnostics.unconditioned import predict_per_draw
from hybridpgm.diagnostics.vectorized_predictive import predict_stacked
from hybridpgm.diagnostics.vectorized_replay import replay_stacked
from hybridpgm.errors import DataError, DiagnosticsWarning
from hybridpgm.handler_scope import isolated_from_handlers
from hybridpgm.infer.particle_probe import keeping_module_state
from hybridpgm.warning_origin import users_stacklevel

__all__ = ["mcmc_data_groups"]


def _placeholder_warning(placeholders: Mapping[str, str]) -> str:
    """The warning for observed placeholder sites (:data:`~hybridpgm.graphs.mrf_pyro_model.PLACEHOLDER`, the
    evidence of :meth:`MarkovNet.model <hybridpgm.graphs.MarkovNet.model>`) left out of the data groups: their
    names, why, and their hints (what :func:`~hybridpgm.diagnostics.from_pyro_svi` says in that case)."""
    hints = "; ".join(dict.fromkeys(placeholders.values()))
    return (f"from_mcmc leaves the observed sites {list(placeholders)} out of log_likelihood, observed_data and "
            f"posterior_predictive (az.loo will find no log likelihood): they are placeholders whose own "
            f"distribution is not the data's likelihood (its log-probability is the same for every value, the "
            f"likelihood lies in pyro.factor sites), so az.loo and posterior predictive checks on them would be "
            f"wrong; the posterior is kept (az.rhat, az.ess, az.summary). {hints}. For the posterior alone, "
            f"without this warning, pass log_likelihood=False (and no posterior_predictive)")


class _DrawnSites:
    """The sites a sampler drew, in the place of a guide's trace for
    :func:`~hybridpgm.diagnostics.svi_data._sort_sites` (which reads ``nodes``)."""

    def __init__(self, names):
        self.nodes = dict.fromkeys(names)


def _posterior_of_nodes(samples: Mapping[str, torch.Tensor], sites, pairs: Mapping[str, str],
                        model_trace) -> dict[str, torch.Tensor]:
    """``samples`` with each drawn ``obs_mask`` latent half ``"<node>_unobserved"`` replaced, in its place, by
    ``"<node>"``: the observed value where the mask is true, the draw where it is false
    (:func:`~hybridpgm.diagnostics.masked_data.observed_where_observed`), in the model's dtype."""
    out = {}
    for name, value in samples.items():
        stem = pairs.get(name)
        if stem is None or stem in samples:
            out[name] = value
            continue
        site = model_trace.nodes[name]["value"]
        flat = value.reshape((-1,) + site.shape).to(site.dtype)
        out[stem] = observed_where_observed(sites.observed[f"{stem}{OBSERVED}"], flat).reshape(value.shape[:2]
                                                                                               + site.shape)
    return out


@isolated_from_handlers
def mcmc_data_groups(model: Callable, samples: Mapping[str, torch.Tensor], args: tuple, kwargs: dict,
                     posterior_predictive: bool = False, replay: bool = True, parallel: bool = False
                     ) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """``(posterior, groups)``: the ``posterior`` group of ``C x D`` MCMC ``samples`` of ``model(*args,
    **kwargs)``, each ``obs_mask`` split reported as its node (:func:`_posterior_of_nodes`), and, with
    ``replay``, its ``log_likelihood`` and ``observed_data`` (and ``posterior_predictive``), of the entries the
    model counts (:func:`~hybridpgm.diagnostics.masked_data.data_groups`; none for a model that observes no
    data); with ``parallel``, the log-likelihood and the replicates from one stacked run each where the draws stack
    (:func:`~hybridpgm.diagnostics.vectorized_replay.replay_stacked`,
    :func:`~hybridpgm.diagnostics.vectorized_predictive.predict_stacked`).

    :param model: the kernel's model.
    :param samples: ``name -> C x D x site_shape`` draws (:meth:`~pyro.infer.MCMC.get_samples` by chain).
    :param args: the model's positional arguments.
    :param kwargs: its keyword arguments.
    :param posterior_predictive: add ``posterior_predictive`` (one replicate per draw).
    :param replay: replay the model for the data groups (``False``: the ``posterior`` alone, ``groups`` empty).
    :param parallel: replay all draws in one stacked run where they stack.
    :raises DataError: a latent site of the model that the samples lack (with ``replay``).
    :warns DiagnosticsWarning: (with ``replay``) observed placeholder sites, left out of the groups."""
    chains, draws = next(iter(samples.values())).shape[:2]
    with torch.no_grad(), keeping_module_state(model):
        model_trace = poutine.trace(model).get_trace(*args, **kwargs)  # each site's own shape and dtype
        _refuse_subsampling(model_trace)
        sites = _sort_sites(model_trace, _DrawnSites(samples))
        pairs = masked_pairs(model_trace, sites)
        posterior = _posterior_of_nodes(samples, sites, pairs, model_trace)
        if not replay:
            return posterior, {}
        if sites.placeholders:
            warnings.warn(_placeholder_warning(sites.placeholders), DiagnosticsWarning, stacklevel=users_stacklevel())
        if not sites.observed:
            return posterior, {}
        undrawn = [n for n in sites.latent if n not in samples]
        if undrawn:
            raise DataError(f"from_mcmc: the latent site(s) {undrawn} of the model are not in the MCMC samples "
                            f"(sampled sites: {list(samples)}), so the log-likelihood of a draw is undefined; "
                            f"pass log_likelihood=False")
        shapes = {n: model_trace.nodes[n]["value"].shape for n in sites.latent}
        flat = {n: samples[n].reshape((chains * draws,) + shapes[n]).to(model_trace.nodes[n]["value"].dtype)
                for n in sites.latent}  # Gibbs returns discrete draws as floats; the model takes its own dtype
        nesting = _plate_nesting(model_trace)
        stacked = replay_stacked(model, flat, sites, model_trace, nesting, chains * draws, args,
                                 kwargs) if parallel else None
        per_draw, log_lik = stacked or replay_draws(model, flat, sites, model_trace, -1 - nesting, chains * draws,
                                                    args, kwargs)
        data_shapes = {n: observed_shape(n, site) for n, site in sites.observed.items()}
        replicates = None
        if posterior_predictive:
            drawn = predict_stacked(model, flat, sites, model_trace, nesting, chains * draws, data_shapes, args,
                                    kwargs) if stacked is not None else None
            if drawn is None:
                held = {**flat, **{n: per_draw[n] for n in sites.discrete}}
                drawn = predict_per_draw(model, held, sites.observed, chains * draws, args, kwargs)
            replicates = {n: drawn[n].reshape((chains, draws) + data_shapes[n]) for n in sites.observed}
        groups = data_groups(sites.observed, data_shapes,
                             {n: v.reshape((chains, draws) + v.shape[1:]) for n, v in log_lik.items()}, replicates,
                             pairs)
    return posterior, groups
