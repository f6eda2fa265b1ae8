"""ArviZ data of a Pyro model and guide after variational inference: :func:`from_pyro_svi`.

Posterior draws come from the guide through :class:`pyro.infer.Predictive`, model-enumerated discrete sites the
guide lacks from :func:`pyro.infer.infer_discrete`, and the pointwise log-likelihood (with local discrete sites
summed out) is ready for ``az.loo`` (and ``az.waic`` under ArviZ 0.x; ArviZ 1.x has no ``waic``) where the
model's latents are global (it warns where a latent is local to the data, as a VAE's).  The per-draw replay of the
model is :func:`~hybridpgm.diagnostics.pointwise_log_lik.replay_draws`, shared with
:func:`~hybridpgm.diagnostics.from_mcmc`.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import pyro.poutine as poutine
import torch
from pyro.infer import Predictive
from pyro.infer.inspect import get_dependencies
from pyro.poutine.util import site_is_factor, site_is_subsample

from hybridpgm.checks import flag, generator_or_none, positive_int
from hybridpgm.diagnostics.arviz_data import make_inference_data
from hybridpgm.diagnostics.masked_data import OBSERVED, data_groups, masked_pairs, observed_where_observed
from hybridpgm.diagnostics.pointwise_log_lik import _Sites, _vectorized_frames, observed_shape, replay_draws
from hybridpgm.diagnostics.unconditioned import predict_per_draw
from hybridpgm.diagnostics.vectorized_predictive import predict_stacked
from hybridpgm.diagnostics.vectorized_replay import draws_no_random_numbers, replay_vectorized
from hybridpgm.errors import ConfigError, DataError, DiagnosticsWarning
from hybridpgm.graphs.mrf_pyro_model import PLACEHOLDER
from hybridpgm.handler_scope import DiscreteSitesDrawnExactly, isolated_from_handlers
from hybridpgm.infer.particle_elbo import keeping_module_state
from hybridpgm.infer.particle_probe import keeping_rng_state
from hybridpgm.param_store_scope import modules_own_their_params
from hybridpgm.rng_scope import seeded_globally_from
from hybridpgm.warning_origin import users_stacklevel

__all__ = ["from_pyro_svi", "from_svi"]


def _placeholder_warning(placeholders: dict[str, str]) -> str:
    """The warning for observed placeholder sites left out of the data groups: their names and their hints."""
    hints = "; ".join(dict.fromkeys(placeholders.values()))
    return (f"from_pyro_svi leaves the observed sites {list(placeholders)} out of posterior_predictive, "
            f"log_likelihood and observed_data: they are placeholders whose own distribution is not the data's "
            f"likelihood (its log-probability is the same for every value, the likelihood lies in pyro.factor "
            f"sites), so az.loo/az.waic and posterior predictive checks on them would be wrong. {hints}")


def _one_draw_warning(what: str) -> str:
    """The :class:`DiagnosticsWarning` text for ArviZ data of a single posterior draw (``what``: the call)."""
    return (f"{what}: one posterior draw; ArviZ's az.loo raises a bare IndexError on it, and az.waic, az.ess and "
            f"az.rhat have no spread to estimate from (p_waic 0, ESS nan): draw more")


def _sort_sites(model_trace, guide_trace) -> _Sites:
    latent, discrete, sequential, deterministic, observed, placeholders = [], [], [], [], {}, {}
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if site["infer"].get("_deterministic"):
            deterministic.append(name)
        elif site["is_observed"]:
            if site["infer"].get(PLACEHOLDER):
                placeholders[name] = str(site["infer"][PLACEHOLDER])
            elif not site_is_factor(site) and not site["infer"].get("is_auxiliary", False):
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
    return _Sites(latent, discrete, deterministic, observed, placeholders)


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


def _local_to_the_data(model_trace, sites: _Sites, local: list[str], readers=None) -> list[str]:
    """The latent sites held at their draw in the pointwise log-likelihood (the guide's latents and the global
    enumerated sites; the local enumerated ones are summed out of it) that lie inside every plate of some observed
    site -- one latent per data point, as an amortized VAE's :math:`z_n` or a hierarchical model's group-free
    :math:`z_n` -- (``[]`` when there is none).  Then :math:`\\log p(y_n \\mid z_{n,s}, \\ldots)` with
    :math:`z_{n,s} \\sim q(z_n \\mid y_n)` has seen :math:`y_n` through its own latent, and PSIS-LOO cannot leave
    :math:`y_n` out, whether or not global latents are held too (review B measured ``az.loo`` 1.2-1.7 nats high on
    a model with a global mean and local :math:`z_n`, against the closed-form leave-one-out value).

    The missing half of an ``obs_mask`` split (``"y_unobserved"``) is drawn only where its own observed half is
    masked out, so it has seen none of that half's points; it counts only for the observed sites that read it
    (``z ~ N(y, 1)``): ``readers()`` names them (:func:`_readers`; ``None``: every other observed site in its
    plates counts)."""
    held = [n for n in sites.latent + sites.discrete if n not in local]
    pairs = masked_pairs(model_trace, sites)
    data_plates = {name: frames for name, frames in zip(sites.observed, map(_vectorized_frames,
                                                                             sites.observed.values())) if frames}
    if not held or not data_plates:
        return []

    found = {}

    def counted(n: str, name: str) -> bool:
        if n not in pairs:
            return True
        if name == f"{pairs[n]}{OBSERVED}":  # its own observed half: masked out wherever it is drawn
            return False
        if "reads" not in found:
            found["reads"] = readers() if readers is not None else None
        return found["reads"] is None or name in found["reads"].get(n, ())

    def inside(n: str) -> bool:
        return any(plates <= _vectorized_frames(model_trace.nodes[n]) for name, plates in data_plates.items()
                   if counted(n, name))

    return [n for n in held if inside(n)]


def _readers(model: Callable, args: tuple, kwargs: dict) -> dict[str, set] | None:
    """Latent site -> the sites whose density reads it, from Pyro's provenance tracking
    (:func:`pyro.infer.inspect.get_dependencies`: one run of the model, its random numbers put back), or ``None``
    where that run fails."""
    try:
        with keeping_rng_state():
            dependencies = get_dependencies(model, args, kwargs)["prior_dependencies"]
    except Exception:  # noqa: BLE001 -- a model provenance tracking cannot run: count every site (the warning stays)
        return None
    reads: dict[str, set] = {}
    for site, upstream in dependencies.items():
        for latent in upstream:
            if latent != site:
                reads.setdefault(latent, set()).add(site)
    return reads


def _local_latents_warning(held: list[str], observed: list[str]) -> str:
    """The warning for a model with latents local to the data: its ``az.loo``/``az.waic`` mislead."""
    return (f"from_pyro_svi: the latent site(s) {held} lie inside the data plate of {observed}, one per data "
            f"point, so each draw of the pointwise log-likelihood has seen its own point: az.loo and az.waic on the "
            f"log_likelihood group are not leave-one-out estimates (typically optimistic), also next to global "
            f"latents. loo/waic are for models whose latents are all global; for latents local to the data (an "
            f"amortized VAE's) use check_vi, whose PSIS log p(x) is the per-point log-likelihood")


def _plate_nesting(*traces) -> int:
    dims = [frame.dim for trace in traces for site in trace.nodes.values() if site["type"] == "sample"
            for frame in site["cond_indep_stack"] if frame.vectorized]
    return -min(dims) if dims else 0


def _posterior_draws(model: Callable, guide: Callable, sites: _Sites, model_trace, nesting: int, num_samples: int,
                     parallel: bool, args: tuple, kwargs: dict) -> tuple[dict[str, torch.Tensor], tuple | None]:
    """``(draws, replayed)``: the latent sites' ``S x site_shape`` draws, and with ``parallel`` where the model
    given its latents draws no random number, its :func:`replay_draws` done in one run for all draws
    (:func:`~hybridpgm.diagnostics.vectorized_replay.replay_vectorized`; ``None`` otherwise, or where the draws
    do not stack: the caller replays draw by draw).

    The guide runs once per draw (:class:`pyro.infer.Predictive`).  Then ``Predictive(model, guide=guide)`` would
    run the model once per draw conditioned on the guide's draws; where every latent is the guide's and the model
    draws no random number given them, those runs return the guide's draws unchanged and are skipped (the runs
    Predictive makes before its draws, which draw from the prior, are kept, so a seed gives the same draws and
    replicates as the full run did)."""
    guide_draws = Predictive(guide, num_samples=num_samples)(*args, **kwargs) if sites.latent else {}
    own = {n: model_trace.nodes[n]["value"].shape for n in sites.latent}
    fast, first = False, None
    if not sites.discrete and all(n in guide_draws for n in sites.latent):
        # Predictive pads draws with plate dims on the left: each site's own shape
        draws = {n: guide_draws[n].reshape((num_samples,) + own[n]) for n in sites.latent}
        fast, first = draws_no_random_numbers(lambda: replay_draws(
            model, {n: v[:1] for n, v in draws.items()}, sites, model_trace, -1 - nesting, 1, args, kwargs))
    if fast:
        if sites.latent:
            Predictive(model, posterior_samples={n: v[:1] for n, v in guide_draws.items()},
                       return_sites=sites.latent)(*args, **kwargs)
        if not parallel:
            return draws, None
        return draws, replay_vectorized(model, draws, sites, model_trace, nesting, num_samples, first, args, kwargs)
    draws = Predictive(model, posterior_samples=guide_draws, num_samples=num_samples,
                       return_sites=sites.latent)(*args, **kwargs) if sites.latent else {}
    return {n: draws[n].reshape((num_samples,) + own[n]) for n in sites.latent}, None


@isolated_from_handlers
@modules_own_their_params
def from_pyro_svi(model: Callable, guide: Callable, *args: Any, num_samples: int = 500,
                  return_sites: list[str] | None = None, parallel: bool = False,
                  generator: torch.Generator | None = None, **kwargs: Any):
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
      sites to Pyro) are not data and are left out, so ``az.loo`` (and ArviZ 0.x's ``az.waic``) see the data
      only.  An observed value with fewer elements than its distribution (a scalar ``obs=`` under a
      ``pyro.plate``) is broadcast to the distribution's ``batch_shape + event_shape``, as Pyro broadcasts it,
      so the three groups have one entry per plate element.  The
      log-likelihood of a draw is :math:`\\log p(y_n \\mid \\theta_s)`: an enumerated discrete site local to
      the data's plates (a mixture assignment) is summed out of it, as in the model, while a global one is held
      at its draw, as the continuous latents are.  Where such a site is shared by the elements of an inner plate
      (the features :math:`y_{nf}` of point :math:`n`), the unit is the point: an ``N x 1`` log-likelihood for
      ``N x F`` data, the numbers of the model written with ``.to_event(1)`` (see the notes of
      :mod:`~hybridpgm.diagnostics.pointwise_log_lik`).  An observed *placeholder* site, marked
      ``infer={"hybridpgm_placeholder": hint}`` (:data:`~hybridpgm.graphs.mrf_pyro_model.PLACEHOLDER`) -- each
      variable of :meth:`MarkovNet.model <hybridpgm.graphs.MarkovNet.model>`, a uniform ``Categorical`` whose
      likelihood lies in ``pyro.factor`` sites -- is left out of these three groups with a ``UserWarning`` naming
      it (its own log-likelihood would be :math:`-\\log c` in every row and draw, its predictive uniform); the
      posterior keeps the latent sites, drawn with the factors counted.  For ArviZ diagnostics of a Markov
      network, observe its variables as one site, ``pyro.sample(name, mrf.distribution(context=...), obs=y)``.

    A site observed only in some entries -- Pyro's ``pyro.sample(name, d, obs=y, obs_mask=m)``, which splits it
    into an observed ``"<name>_observed"`` masked by ``m`` and a latent ``"<name>_unobserved"`` masked by ``~m``,
    and a :class:`~hybridpgm.graphs.BayesNet`'s node with missing entries -- is reported as the node: the
    posterior variable ``"<name>"`` holds the drawn values where ``m`` is false and the observed value where it
    is true (the latent half's draws there are masked out of the model: noise, not posterior draws), in place of
    ``"<name>_unobserved"`` (Pyro's ``obs_mask`` already records ``"<name>"`` as a deterministic site; it is
    kept, and ``"<name>_unobserved"`` left out).  Its ``observed_data``, ``log_likelihood`` and
    ``posterior_predictive`` are named ``"<name>"`` too and hold the entries the model counts only, ``y[m]``
    (:func:`~hybridpgm.diagnostics.masked_data.data_groups`: ArviZ counts every entry as a data point), as for
    any observed site under a tensor ``poutine.mask``, which keeps its own name.  An empty guide such as
    :meth:`BayesNet.guide <hybridpgm.graphs.BayesNet.guide>` is right here,
    since the missing entries are drawn from their exact posterior (it runs under
    :class:`~hybridpgm.handler_scope.DiscreteSitesDrawnExactly`).

    The guide runs once per draw, and the model twice per draw: once for the log-likelihood and deterministic
    sites, once for the replicates (where the model given its latents draws no random number, the run that
    would only hand back the guide's draws is skipped), whose ``pyro.deterministic`` sites keep the values the
    model computes (:func:`~hybridpgm.diagnostics.unconditioned.unconditioned`).  With ``parallel=True`` the
    log-likelihood and deterministic sites of all draws come from one run with the draws stacked along an outer plate
    (:func:`~hybridpgm.diagnostics.vectorized_replay.replay_vectorized`), as ``pyro.infer.Predictive(...,
    parallel=True)`` runs a model, and so do the replicates, from one run of the unconditioned model
    (:func:`~hybridpgm.diagnostics.vectorized_predictive.predict_stacked`): the model must then treat a latent's
    leading dims as batch dims, never reducing or reading across them.  A model that raises, returns other
    shapes, or differs from the draw-by-draw replay at one of the checked draws (the first, the last, those
    holding each latent's smallest and largest entry, and a few picked at random by a generator of their own:
    :func:`~hybridpgm.diagnostics.vectorized_replay.checked_rows`, at most 16 model runs) is replayed draw by
    draw instead; a model that mixes the draws in a way none of those draws shows gives wrong numbers there,
    which is why it is not the default.  The stacked replicates have the draw-by-draw replicates' distribution
    but not their values (one sampler call for all draws takes torch's stream in another order); where the
    stacked runs are refused, the replicates are the default's, value for value.  A model with an enumerated
    discrete site the guide lacks is replayed draw by draw.

    The model and guide run as programs of their own (:func:`~hybridpgm.handler_scope.isolated_from_handlers`):
    no handler of the caller sees or alters their sites.

    :param model: the Pyro model, run as ``model(*args, **kwargs)`` with its
        observed sites conditioned (``obs=``) on the full data.
    :param guide: the trained guide.
    :param num_samples: posterior draws (one chain).
    :param return_sites: latent and deterministic sites of the model to keep in ``posterior`` (default: all of
        them); every latent site is drawn either way.
    :param parallel: replay the model on all draws in one vectorized run, for the log-likelihood and for the
        replicates (see above; ``False``: draw by draw).
    :param generator: a :class:`torch.Generator` (on any device) for the draws, keyword-only like the options
        above (so ``generator`` is not passed on to the model); ``None`` (the default) draws from torch's global
        streams.  The guide's and model's sample statements take no generator: they run with torch's global
        streams seeded from one draw of it and restored afterwards
        (:func:`~hybridpgm.rng_scope.seeded_globally_from`), so the draws and replicates are a function of its
        state and the caller's streams do not move.
    :raises DataError: the model observes no data (``pyro.factor`` and ``pyro.deterministic`` sites do not
        count; a model that observes only placeholder sites gets the warning and a ``posterior`` alone),
        ``return_sites`` names a site that is not a latent or deterministic site of the model, or a plate
        subsamples its rows (``subsample_size=``, or a ``subsample=`` shorter than the plate): the rows would
        differ from draw to draw; a site is named like a dim of its ArviZ group (``chain``, ``draw``: see
        :func:`make_inference_data`); an observed value that does not broadcast to its distribution's shape
        (:func:`~hybridpgm.diagnostics.pointwise_log_lik.observed_shape`).
    :raises ConfigError: ``num_samples`` is not a positive integer, a model-enumerated site that the guide
        lacks is enumerated sequentially (:func:`~pyro.infer.infer_discrete` needs ``"parallel"``), or
        ``generator`` is neither a :class:`torch.Generator` nor ``None``.
    :warns DiagnosticsWarning: (a :class:`UserWarning`) naming the observed placeholder sites left out (see
        above), and pointing to ``mrf.distribution(...)``; for ``num_samples=1`` (one draw: ``az.loo`` raises
        ArviZ's ``IndexError`` on it, and ``az.waic``, ``az.ess`` and ``az.rhat`` have nothing to estimate from);
        when the pointwise log-likelihood is the same in every draw (a point-estimate
        guide such as ``AutoDelta``): PSIS, hence ``az.loo`` and ``az.waic``'s diagnostics, needs draws that vary;
        and when a latent site held in the log-likelihood lies inside every plate of an observed site (one
        latent per data point, as an amortized VAE's :math:`z_n`; enumerated sites summed out do not count), with
        or without global latents beside it: each draw :math:`z_{n,s} \\sim q(z_n \\mid y_n)` has seen
        :math:`y_n`, so ``az.loo`` and ``az.waic`` are not leave-one-out estimates. They are for models whose
        latents are all global; for local ones use :func:`~hybridpgm.diagnostics.check_vi`, whose PSIS
        :math:`\\log p(x_n)` is the per-point number.
    """
    num_samples = positive_int(num_samples, "from_pyro_svi num_samples")
    generator = generator_or_none(generator, "from_pyro_svi generator")
    if num_samples == 1:
        warnings.warn(_one_draw_warning("from_pyro_svi"), DiagnosticsWarning, stacklevel=users_stacklevel())
    # a diagnostic leaves the model's buffers alone; the missing entries that the guide lacks are drawn exactly here
    with torch.no_grad(), keeping_module_state(model, guide), DiscreteSitesDrawnExactly(), \
            seeded_globally_from(generator):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        _refuse_subsampling(model_trace, guide_trace)
        sites = _sort_sites(model_trace, guide_trace)
        observed = sites.observed
        if sites.placeholders:
            warnings.warn(_placeholder_warning(sites.placeholders), DiagnosticsWarning, stacklevel=users_stacklevel())
        if not observed and not sites.placeholders:
            raise DataError("the model has no observed sample site: nothing to check against "
                            "(pyro.factor and pyro.deterministic sites hold no data)")
        pairs = masked_pairs(model_trace, sites)
        returnable = [pairs.get(n, n) for n in model_trace.nodes
                      if n in sites.latent + sites.discrete + sites.deterministic]
        returnable = list(dict.fromkeys(returnable))  # Pyro's obs_mask has a deterministic site of the node's name
        unknown = [n for n in (return_sites or []) if n not in returnable]
        if unknown:
            split = [f"{n!r} (the missing entries of {pairs[n]!r}: ask for {pairs[n]!r})" for n in unknown
                     if n in pairs]
            raise DataError(f"return_sites {unknown} are not latent or deterministic sample sites of the model "
                            f"(its latent and deterministic sites: {returnable})"
                            + (f"; {', '.join(split)}" if split else ""))
        nesting = _plate_nesting(model_trace, guide_trace)
        first_dim = -1 - nesting  # infer_discrete's enumeration dims go left of it
        draws, replayed = _posterior_draws(model, guide, sites, model_trace, nesting, num_samples,
                                           flag(parallel, "from_pyro_svi parallel"), args, kwargs)
        local = [n for n in sites.discrete if _vectorized_frames(model_trace.nodes[n])]
        local_latents = _local_to_the_data(model_trace, sites, local, lambda: _readers(model, args, kwargs))
        if local_latents:
            warnings.warn(_local_latents_warning(local_latents, list(observed)), DiagnosticsWarning,
                          stacklevel=users_stacklevel())
        data_shapes = {n: observed_shape(n, site) for n, site in observed.items()}  # a scalar obs: one per element
        per_draw, log_lik = replayed or replay_draws(model, draws, sites, model_trace, first_dim, num_samples, args,
                                                     kwargs)
        draws.update(per_draw)
        if num_samples > 1 and log_lik and all(bool((v == v[:1]).all()) for v in log_lik.values()):
            warnings.warn("from_pyro_svi: every posterior draw has the same pointwise log-likelihood (a point-estimate "
                          "guide such as AutoDelta, or a model whose latents are all summed out of it?); az.loo and "
                          "az.waic need draws that vary: ArviZ 0.x reports k-hat = inf at every point, ArviZ 1.x "
                          "raises 'All tail values are the same'",
                          DiagnosticsWarning, stacklevel=users_stacklevel())
        predictive = predict_stacked(model, draws, sites, model_trace, nesting, num_samples, data_shapes, args,
                                     kwargs) if replayed is not None else None
        if predictive is None:
            predictive = predict_per_draw(model, {n: draws[n] for n in sites.latent + sites.discrete}, observed,
                                          num_samples, args, kwargs)
        for name, stem in pairs.items():  # the node's values: observed where observed, drawn where missing
            combined = observed_where_observed(observed[f"{stem}_observed"], draws.pop(name))
            draws.setdefault(stem, combined)
    data = data_groups(observed, data_shapes, {n: v.unsqueeze(0) for n, v in log_lik.items()},
                       {n: predictive[n].reshape((1, num_samples) + data_shapes[n]) for n in observed}, pairs)
    return make_inference_data({"posterior": {n: draws[n].unsqueeze(0) for n in (return_sites or returnable)},
                                **data})


#: the former name of :func:`from_pyro_svi`, kept so existing code runs
from_svi = from_pyro_svi
