"""The pointwise log-likelihood of posterior draws, by replaying the model on each draw: shared by
:func:`~hybridpgm.diagnostics.from_pyro_svi` (draws from a guide) and :func:`~hybridpgm.diagnostics.from_mcmc`
(draws of a :class:`pyro.infer.MCMC` run).

For draws :math:`\\theta_1, \\ldots, \\theta_S` of the latent sites and an observed site :math:`y`,
:func:`replay_draws` runs the model conditioned on each :math:`\\theta_s` (:func:`pyro.poutine.condition`) and
returns :math:`\\log p(y_n \\mid \\theta_s)` per draw and per element :math:`n` of :math:`y`'s plates, the
``log_likelihood`` group that ``az.loo`` reads [1]: model-enumerated discrete sites the draws lack are drawn
from their conditional posterior (:func:`pyro.infer.infer_discrete`) where they are global and summed out of
:math:`y_n`'s likelihood where they are local to its plates.

The observation unit :math:`n` (an entry of the ``log_likelihood`` group, a point to ``az.loo``) is an element
of the site's plates and batch dims, its event dims part of it: given :math:`\\theta_s` the elements are
independent, which LOO needs.  That stays so where no local enumerated site is shared by several elements
(each :math:`y_{nf}` with its own :math:`c_{nf}`, or none).  Where one is (a mixture assignment :math:`c_n`
in plate "data" shared by the features :math:`y_{nf}` under an inner plate "feat"), the elements sharing it are
not independent, and the unit is the element of the plates the summed-out sites share: :math:`\\log \\sum_{c_n}
p(c_n \\mid \\theta_s) \\prod_f p(y_{nf} \\mid c_n, \\theta_s)`, with size 1 along the inner plates (an
``N x 1`` log-likelihood for ``N x F`` data; the same numbers as the model written with ``.to_event(1)``,
whose log-likelihood is ``N``).  A mask must then hide whole units: constant along the inner plates (size 1
there, or each point's entries all true or all false).  ``az.loo`` and ``az.waic`` read such a log-likelihood
(one point per unit); ``az.loo_pit`` does not, as it pairs each observed value with an entry of the
log-likelihood, and the data (``observed_data``, ``posterior_predictive``) keep their ``N x F`` values.

[1] A. Vehtari, A. Gelman, J. Gabry, *Practical Bayesian model evaluation using leave-one-out
cross-validation and WAIC*, Statistics and Computing 27, 2017.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from pyro import poutine
from pyro.distributions.util import broadcast_shape
from pyro.infer import infer_discrete

from hybridpgm.errors import DataError

__all__ = ["observed_shape", "replay_draws"]


class _Sites(NamedTuple):
    """The sample sites of one model trace, by the ArviZ group they go to."""

    latent: list[str]  #: latent sites drawn by the guide (``Predictive``)
    discrete: list[str]  #: enumerated latent sites the guide lacks, drawn by ``infer_discrete``
    deterministic: list[str]  #: ``pyro.deterministic`` sites, computed per posterior draw
    observed: dict[str, dict]  #: observed sites that hold data (no factor, no deterministic site)
    placeholders: dict[str, str]  #: observed placeholder sites (``infer={PLACEHOLDER: hint}``) -> hint


def _vectorized_frames(site: dict) -> set:
    return {frame.name for frame in site["cond_indep_stack"] if frame.vectorized}


def _enum_dims(log_prob: torch.Tensor, first_dim: int) -> set[int]:
    """The enumeration dims (``first_dim`` and left of it, negative) along which ``log_prob`` varies."""
    return {d for d in range(-log_prob.dim(), first_dim + 1) if log_prob.shape[d] > 1}


def _sharing(trace, name: str, local: list[str], first_dim: int) -> list[tuple[str, frozenset, torch.Tensor]]:
    """``(site, plates, log_prob)`` of each ``local`` enumerated site in no plate but ``name``'s that ``name``'s
    likelihood depends on, directly or through another of them (they share an enumeration dim), in the order
    of ``local``."""
    frames = _vectorized_frames(trace.nodes[name])
    candidates = [(n, frozenset(_vectorized_frames(trace.nodes[n])), trace.nodes[n]["fn"].log_prob(
        trace.nodes[n]["value"])) for n in local if _vectorized_frames(trace.nodes[n]) <= frames]
    site = trace.nodes[name]
    reached, linked = _enum_dims(site["fn"].log_prob(site["value"]), first_dim), set()
    grown = True
    while grown:
        grown = False
        for n, _, log_prob in candidates:
            if n not in linked and _enum_dims(log_prob, first_dim) & reached:
                linked.add(n)
                reached |= _enum_dims(log_prob, first_dim)
                grown = True
    return [c for c in candidates if c[0] in linked]


def _varies_along(mask: torch.Tensor, dim: int) -> bool:
    """Whether bool ``mask`` takes more than one value along ``dim`` (negative; ``False`` where it lacks it)."""
    return -dim <= mask.dim() and mask.shape[dim] > 1 and not bool((mask == mask.narrow(dim, 0, 1)).all())


def _check_mask(name: str, site: dict, folded: dict[str, int]) -> None:
    """Raise :class:`DataError` for a tensor mask of observed ``site`` that varies along a ``folded`` plate
    (name -> dim): its log-likelihood has one entry per point there, which the mask would split.  A mask
    constant along those plates (size 1 there, or each point's entries all true or all false) hides whole
    points, and :func:`point_mask` reduces it to the log-likelihood's shape."""
    mask = site["mask"]
    if not isinstance(mask, torch.Tensor):
        return
    split = [p for p, dim in folded.items() if _varies_along(mask.to(torch.bool), dim)]
    if split:
        raise DataError(f"observed site {name!r}: its mask (shape {tuple(mask.shape)}) hides some entries of a "
                        f"point along plate(s) {split}, whose entries share a local enumerated site, so its "
                        f"pointwise log-likelihood (one entry per point, that site summed out) cannot drop them; "
                        f"mask whole points, or observe the entries as separate sites")


def point_mask(mask: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Bool tensor ``mask`` broadcast to ``shape`` (a log-likelihood's), reduced first to size 1 along each dim
    where ``shape`` has size 1 and ``mask`` is constant (a mask of whole points, ``N x F``, for an ``N x 1``
    log-likelihood whose unit is the point: see the module's notes).  Along the other dims torch's broadcasting
    rules apply, and its error where they fail."""
    mask = mask.to(torch.bool)
    for dim in range(-min(mask.dim(), len(shape)), 0):
        if shape[dim] == 1 and mask.shape[dim] > 1 and not _varies_along(mask, dim):
            mask = mask.narrow(dim, 0, 1)
    return torch.broadcast_to(mask, shape)


def _summed_out_log_lik(model: Callable, values: dict, observed: dict, local: list[str], shapes: dict,
                        first_dim: int, args: tuple, kwargs: dict) -> dict[str, torch.Tensor]:
    """Per observed site ``y``, :math:`\\log p(y_n \\mid \\theta) = \\log \\sum_{c_n} p(c_n \\mid \\theta)
    p(y_n \\mid c_n, \\theta)`: the model run with ``values`` (its continuous latents :math:`\\theta` and its
    global discrete sites) and its ``local`` enumerated discrete sites enumerated in parallel.  The local sites
    in no plate but ``y``'s that ``y`` depends on (directly or through one another) are summed out of ``y``'s
    likelihood; the others sum to one and are left out.  A mixture assignment is summed out of its point's
    likelihood, as in the model, rather than fixed at a draw that has seen the point, which would make
    ``az.loo`` optimistic.

    The point :math:`n` is an element of the plates that all of those sites share.  Where ``y`` has plates
    more (an assignment :math:`c_n` shared by the features :math:`y_{nf}` of point :math:`n` under an inner
    plate), the sum is over the product, as in the model: :math:`\\log \\sum_{c_n} p(c_n \\mid \\theta)
    \\prod_f p(y_{nf} \\mid c_n, \\theta)`.  The sites are eliminated plate level by plate level, innermost
    first (a site's enumeration dim is summed out where no site of an outer level has it, then the level's own
    plates are multiplied out), as Pyro's ``TraceEnum_ELBO`` does for tree-structured plates.

    :param shapes: ``name -> shape`` of each observed site's own log-probability (no enumeration dims).
    :returns: ``name -> log-likelihood`` in that shape, with size 1 along the plates multiplied out.
    :raises DataError: where the plates of the sites summed out of ``y`` are not nested (not tree-structured),
        or ``y``'s tensor mask varies along a plate multiplied out (:func:`_check_mask`)."""
    trace = poutine.trace(poutine.enum(poutine.condition(model, data=values), first_available_dim=first_dim)
                          ).get_trace(*args, **kwargs)
    plate_dims = -1 - first_dim
    out = {}
    for name, site in observed.items():
        enumerated = trace.nodes[name]
        plates = {f.name: f.dim for f in enumerated["cond_indep_stack"] if f.vectorized}
        sharing = _sharing(trace, name, local, first_dim)
        levels = sorted({frozenset(plates)} | {p for _, p, _ in sharing}, key=len, reverse=True)
        if any(not inner < outer for outer, inner in zip(levels, levels[1:])):
            raise DataError(f"observed site {name!r} depends on local enumerated sites "
                            f"{[n for n, _, _ in sharing]} in plates {[sorted(p) for p in levels]} that are not "
                            f"nested; its pointwise log-likelihood needs tree-structured plates, as Pyro's "
                            f"TraceEnum_ELBO does")
        folded = {p: plates[p] for p in sorted(levels[0] - levels[-1])}
        _check_mask(name, site, folded)
        total = enumerated["fn"].log_prob(enumerated["value"])
        for depth, level in enumerate(levels):
            for _, here, log_prob in sharing:
                if here == level:
                    total = total + log_prob
            if depth + 1 < len(levels):  # sum out this level's own sites, multiply out its own plates
                outer = set().union(*(_enum_dims(lp, first_dim) for _, p, lp in sharing if len(p) < len(level)))
                own = sorted(_enum_dims(total, first_dim) - outer)
                total = torch.logsumexp(total, dim=own, keepdim=True) if own else total
                total = total.sum(dim=[plates[p] for p in sorted(level - levels[depth + 1])], keepdim=True)
        shape = list(shapes[name])
        for dim in folded.values():
            if -dim <= len(shape):
                shape[dim] = 1
        kept = max(plate_dims, len(shape))  # the enumeration dims lie left of the plates and the site's batch
        enum_dims = list(range(total.dim() - kept)) if total.dim() > kept else []
        summed = torch.logsumexp(total, dim=enum_dims) if enum_dims else total
        out[name] = summed.reshape(shape)
    return out


def _masked_to_zero(site: dict, log_lik: torch.Tensor) -> torch.Tensor:
    """``log_lik`` of an observed ``site`` with the entries its mask hides at 0, as the model counts them."""
    mask = site["mask"]
    if mask is None:
        return log_lik
    if not isinstance(mask, torch.Tensor):
        return log_lik if mask else torch.zeros_like(log_lik)
    return torch.where(point_mask(mask, log_lik.shape), log_lik, torch.zeros_like(log_lik))


def observed_shape(name: str, site: dict) -> torch.Size:
    """The shape of observed ``site``'s data per draw: its distribution's ``batch_shape + event_shape``, which a
    value given with fewer elements (a scalar ``obs=`` under a plate) is broadcast to, as Pyro's ``log_prob``
    and ``Predictive`` broadcast it.

    :raises DataError: for an observed value that does not broadcast to that shape, or has dims the
        distribution lacks (its posterior predictive draws would not have the data's shape).
    """
    value_shape, own = tuple(site["value"].shape), tuple(site["fn"].batch_shape + site["fn"].event_shape)
    try:  # Pyro's pure-Python broadcast: torch.broadcast_shapes imports sympy (0.35 s) on its first call
        shape = tuple(broadcast_shape(value_shape, own))
    except ValueError:
        shape = None
    if shape != own:
        raise DataError(f"observed site {name!r}: its value of shape {value_shape} does not broadcast to its "
                        f"distribution's batch + event shape {own}; put the data's dims in the distribution "
                        f"(a pyro.plate or .to_event) so that each observed element has a likelihood of its own")
    return torch.Size(own)


def replay_draws(model: Callable, draws: dict[str, torch.Tensor], sites: _Sites, model_trace, first_dim: int,
                 num_draws: int, args: tuple, kwargs: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Run ``model`` once per draw, conditioned on it: the discrete and deterministic sites' values and the
    pointwise log-likelihood of each observed site.

    :param draws: latent site -> ``S x site_shape`` draws (``sites.latent``).
    :param sites: the model's sites by group (``sites.discrete``: enumerated sites the draws lack, drawn here
        with :func:`~pyro.infer.infer_discrete` at ``temperature=1``; those inside a plate are summed out of the
        log-likelihood instead, as the model does).
    :param model_trace: a trace of the model, for each site's own shape.
    :param first_dim: the first dim free for enumeration (left of every plate).
    :returns: ``(values, log_lik)``: discrete and deterministic site -> ``S x site_shape``, and observed site ->
        ``S x log_prob_shape``, :math:`\\log p(y_n \\mid \\theta_s)`, 0 where the site's mask hides an entry
        (size 1 along the plates of the site that a local enumerated site it depends on is not in: see the
        module's notes).
    :raises DataError: as :func:`_summed_out_log_lik` does.
    """
    observed = sites.observed
    local = [n for n in sites.discrete if _vectorized_frames(model_trace.nodes[n])]
    shapes = {n: model_trace.nodes[n]["fn"].log_prob(model_trace.nodes[n]["value"]).shape for n in observed}
    values: dict[str, list[torch.Tensor]] = {n: [] for n in sites.discrete + sites.deterministic}
    log_lik: dict[str, list[torch.Tensor]] = {name: [] for name in observed}
    for s in range(num_draws):
        latents = {name: draws[name][s] for name in sites.latent}
        conditioned = poutine.condition(model, data=latents)
        if sites.discrete:
            conditioned = infer_discrete(conditioned, first_available_dim=first_dim, temperature=1)
        trace = poutine.trace(conditioned).get_trace(*args, **kwargs)
        for name in values:
            values[name].append(trace.nodes[name]["value"].reshape(model_trace.nodes[name]["value"].shape))
        if local:  # the data's own likelihood: local discrete sites summed out, as the model does
            held = {n: trace.nodes[n]["value"] for n in sites.discrete if n not in local}
            point_log_lik = _summed_out_log_lik(model, {**latents, **held}, observed, local, shapes, first_dim,
                                                args, kwargs)
        else:
            point_log_lik = {name: trace.nodes[name]["fn"].log_prob(trace.nodes[name]["value"]) for name in observed}
        for name in observed:
            log_lik[name].append(_masked_to_zero(observed[name], point_log_lik[name]))
    return ({n: torch.stack(v) for n, v in values.items()}, {n: torch.stack(v) for n, v in log_lik.items()})
