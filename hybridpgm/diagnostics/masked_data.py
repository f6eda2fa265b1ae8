"""Observed sites that a mask hides in part, as ArviZ data: shared by :func:`~hybridpgm.diagnostics.from_pyro_svi`
and :func:`~hybridpgm.diagnostics.from_mcmc`.

Pyro's ``pyro.sample("y", d, obs=y, obs_mask=m)`` (and a :class:`~hybridpgm.graphs.BayesNet` node with missing
entries) splits the node into an observed site ``"y_observed"`` under ``poutine.mask(m)`` and a latent site
``"y_unobserved"`` under ``poutine.mask(~m)``.  The model counts :math:`\\log p(y_n \\mid \\theta)` only where
:math:`m_n` is true; elsewhere ``y`` holds a placeholder that is no data.  ArviZ has no notion of a mask:

* ``az.loo`` and ``az.waic`` count every entry of the ``log_likelihood`` variable as a data point.  A masked
  entry given log-likelihood 0 adds 0 to ``elpd`` and ``p_loo`` but raises ``n_data_points``, inflates the
  standard error (:math:`\\sqrt{n \\operatorname{Var}_n(\\mathrm{elpd}_n)}` over all :math:`n`) and gets
  :math:`\\hat k = \\infty` (its draws are all equal), with a warning; NaN there makes ``elpd`` NaN;
* ``az.loo_pit`` and ``az.plot_ppc`` read every entry of ``observed_data`` as an observation (a NaN entry gets a
  PIT value of 0).

So the three data groups (``observed_data``, ``posterior_predictive``, ``log_likelihood``) hold the entries the
model counts, and only those (:func:`data_groups`): a site whose mask hides some of its entries becomes a variable
of the entries it counts, in row-major order along one dim, event dims after it: ``y[m]`` (torch's boolean
indexing), with ``m`` broadcast to the site's batch shape.  Where a local enumerated site shared by the
entries of a point under an inner plate makes the point the unit (a log-likelihood of size 1 along that plate,
:mod:`~hybridpgm.diagnostics.pointwise_log_lik`), ``m`` hides whole points and selects them: the variable holds the
kept points' whole slices, ``points x inner plates x event dims`` (the rows ``y[m_n]`` of ``N x F`` data, ``4 x F``
for 4 kept points, also where the feature plate is the outer dim), and the log-likelihood one entry per kept
point.  That dim is named as ArviZ names an unnamed one
(``"y_dim_0"``), as in ``posterior``, where ``"y"`` has the node's full shape: ArviZ groups are datasets of their
own, and a coordinate or dim name given for ``"y"`` would apply to both.  The variable is named
after the node (``"y"``, not Pyro's ``"y_observed"``), as a fully observed node is.  A site whose mask hides no
entry keeps its shape; one whose mask hides every entry holds no data and is left out.  The observed values keep
their dtype (no NaN: integer data stay integers).  The missing entries' values are in ``posterior``: the node
``"y"`` there holds the observed value where ``m`` is true and the drawn (imputed) one where it is false
(:func:`observed_where_observed`), in place of ``"y_unobserved"``, whose draws where ``m`` is true are masked out
of the model (noise, not posterior draws).
"""

from __future__ import annotations

from typing import Mapping

import torch

from hybridpgm.diagnostics.pointwise_log_lik import _Sites, point_mask

__all__ = ["data_groups", "masked_pairs", "observed_entries", "observed_where_observed"]

#: suffixes of Pyro's ``obs_mask`` split
OBSERVED, UNOBSERVED = "_observed", "_unobserved"


def masked_pairs(model_trace, sites: _Sites) -> dict[str, str]:
    """``"<node>_unobserved" -> "<node>"`` for each latent site that is the missing half of an ``obs_mask`` split
    (Pyro's ``pyro.sample(..., obs_mask=)``, a :class:`~hybridpgm.graphs.BayesNet`'s missing entries): its
    sibling ``"<node>_observed"`` is an observed site under a tensor mask.  Where the mask is true the latent
    half is masked out of the model, so its draws there are noise, not posterior draws."""
    pairs = {}
    for name in sites.latent + sites.discrete:
        stem = name[: -len(UNOBSERVED)] if name.endswith(UNOBSERVED) else None
        seen = sites.observed.get(f"{stem}{OBSERVED}") if stem else None
        if seen is not None and isinstance(seen["mask"], torch.Tensor):
            pairs[name] = stem
    return pairs


def observed_where_observed(site: dict, draws: torch.Tensor) -> torch.Tensor:
    """``draws`` (``S x value_shape``) of an ``obs_mask`` split's latent half, with the observed values of its
    observed half ``site`` where that one's mask is true: the node's values in every row."""
    mask = site["mask"]
    mask = mask.reshape(mask.shape + (1,) * site["fn"].event_dim)
    return torch.where(mask, site["value"].to(draws.dtype), draws).reshape(draws.shape)


def observed_entries(site: dict, batch_shape: torch.Size) -> torch.Tensor | None:
    """The entries of an observed ``site`` that its model counts, as a bool tensor of ``batch_shape`` (its
    log-likelihood's shape, of size 1 along the plates of a point's entries where a shared enumerated site
    makes the point the unit: a mask constant along them is reduced there, :func:`point_mask`), or ``None``
    where it counts them all (no mask, a true one, or a tensor mask that hides no entry)."""
    mask = site["mask"]
    if mask is None or mask is True:
        return None
    if not isinstance(mask, torch.Tensor):
        return torch.zeros(batch_shape, dtype=torch.bool)
    counted = point_mask(mask, batch_shape)
    return None if bool(counted.all()) else counted


def _units_first(values: torch.Tensor, lead: int, unit_shape: torch.Size) -> torch.Tensor:
    """``values`` (``lead`` dims, then the data's batch and event dims) with the batch dims along which
    ``unit_shape`` (the log-likelihood's batch shape) has size 1 and the data more moved after the others, and
    those others flattened into one: ``lead x units x within_point x event``."""
    batch = values.shape[lead:lead + len(unit_shape)]
    within = [d for d in range(len(unit_shape)) if unit_shape[d] == 1 and batch[d] > 1]
    order = [d for d in range(len(unit_shape)) if d not in within] + within
    if within:
        rest = list(range(lead + len(unit_shape), values.dim()))
        values = values.permute(list(range(lead)) + [lead + d for d in order] + rest)
    return values.reshape(values.shape[:lead] + (-1,) + values.shape[lead + len(unit_shape) - len(within):])


def data_name(name: str, observed: Mapping[str, dict], pairs: Mapping[str, str]) -> str:
    """The ArviZ name of observed site ``name``: its node's for the observed half of an ``obs_mask`` split
    (``"y_observed"`` -> ``"y"``), else its own."""
    stem = name[: -len(OBSERVED)] if name.endswith(OBSERVED) else None
    if stem is not None and pairs.get(f"{stem}{UNOBSERVED}") == stem and stem not in observed:
        return stem
    return name


def data_groups(observed: Mapping[str, dict], data_shapes: Mapping[str, torch.Size],
                log_lik: Mapping[str, torch.Tensor], replicates: Mapping[str, torch.Tensor] | None,
                pairs: Mapping[str, str]) -> dict[str, dict[str, torch.Tensor]]:
    """The groups ``log_likelihood``,
    ``observed_data`` (and ``posterior_predictive`` where ``replicates`` are given) of the ``observed`` sites,
    each holding the entries its model counts (see the module's notes).

    :param data_shapes: site -> the data's ``batch_shape + event_shape``
        (:func:`~hybridpgm.diagnostics.pointwise_log_lik.observed_shape`).
    :param log_lik: site -> ``C x D x batch_shape`` pointwise log-likelihood (size 1 along the plates of a
        point's entries where the point is the unit: the data's whole slices there go with each entry).
    :param replicates: site -> ``C x D x data_shape`` replicates, or ``None``.
    :param pairs: :func:`masked_pairs` of the model.
    """
    groups = {"log_likelihood": {}, "observed_data": {}}
    if replicates is not None:
        groups["posterior_predictive"] = {}
    for name, site in observed.items():
        key = data_name(name, observed, pairs)
        data = site["value"].expand(data_shapes[name])
        lik = log_lik[name]
        lead, batch_shape = lik.shape[:2], lik.shape[2:]
        rep = None if replicates is None else replicates[name]
        counted = observed_entries(site, batch_shape)
        if counted is not None:
            if not bool(counted.any()):
                continue  # the model counts none of its entries: no data
            index = counted.reshape(-1).nonzero().squeeze(-1)
            data = _units_first(data, 0, batch_shape)[index]
            lik = lik.reshape(lead + (-1,))[..., index]
            rep = None if rep is None else _units_first(rep, 2, batch_shape)[:, :, index]
        groups["log_likelihood"][key] = lik
        groups["observed_data"][key] = data
        if rep is not None:
            groups["posterior_predictive"][key] = rep
    return groups
