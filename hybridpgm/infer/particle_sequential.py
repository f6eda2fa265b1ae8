"""Importance weights over a sequential data plate: one weight per iteration of ``for i in pyro.plate(...)``.

A data plate written as a loop (``for i in pyro.plate("data", N, subsample=idx)``, for data points with different
numbers of sites) has no tensor dim: Pyro marks each site of iteration :math:`g` with the plate's frame and a
counter instead.  The multi-sample objectives (:class:`~hybridpgm.infer.IWAE`, and VIMCO, RWS and wake-sleep
through :class:`~hybridpgm.infer.particle_elbo.ParticleELBO`) group the sites by that counter: the sites of
iteration :math:`g` in the model and in the guide are data point :math:`g`, and

.. math::

    \\log p(x_g, z_g^{(k)}) = \\sum_{s \\in g} \\log p_s, \\qquad
    \\log q(z_g^{(k)} \\mid x_g) = \\sum_{s \\in g} \\log q_s,

each site's log-density summed over its other dims (a plate inside the iteration indexes something within the
data point), ``[K, G]`` for :math:`K` particles and the :math:`G` iterations of the plate -- the same numbers as
the vectorized program ``with pyro.plate("data", N, subsample=idx):`` gives, row for row.

Pyro's counter is the only mark an iteration leaves, so the grouping is refused (an
:class:`~hybridpgm.errors.ObjectiveError` naming the plate and the counts) where the counters cannot be data points
one to one: the guide's iterations are not the model's shifted by one offset (a plate object the programs share, or
reuse across calls, counts on; the offset its latent sites show is undone), the sites span more iterations than the
plate's size (the plate iterated twice), fewer iterations than its size hold sites (a loop left early with
``break``, or left and entered again: the plate's :math:`N / B` would scale fewer data points, or one data point
would be two weights), or an iteration holds no observed site of the model (a data point's latents and its data in
two iterations, as a second loop over the plate after a ``break`` leaves, or observations shifted by one iteration;
an observation skipped because it is missing looks the same from the counters, so a missing observation is masked,
not skipped: its site sampled under ``poutine.mask(mask=False)`` with any placeholder value, which weighs the data
point's latents alone, as the vectorized program with that entry masked does). A program that leaves the loop and
enters it again with as many iterations in all as the plate's size, each with an observed site, is not told from one
loop: iterate a sequential data plate once, sampling each data point's latents and observations in its iteration.
"""

from __future__ import annotations

import torch
from pyro.distributions.util import scale_and_mask

from hybridpgm.errors import ObjectiveError
from hybridpgm.infer.particle_probe import nesting_overflow

__all__ = ["log_term", "sequential_data_plates", "sequential_log_densities"]


def sequential_data_plates(sites, particles: str) -> list[str]:
    """The sequential plates (``for i in pyro.plate(...)``) that hold every site of ``sites`` and lie in no
    vectorized plate, outermost first (a sequential plate inside a vectorized data plate indexes something within
    a data point); each may be the data plate.

    :param sites: the sample sites of the model's and the guide's traces.
    :param str particles: the name of the particle plate, left out."""
    common = None
    for site in sites:
        if common == []:
            break  # a vectorized program: its first site lies in no sequential plate (or in one inside a vectorized)
        names = []
        for frame in site["cond_indep_stack"]:  # outermost first
            if frame.name == particles:
                continue
            if frame.vectorized:
                break
            names.append(frame.name)
        common = names if common is None else [name for name in common if name in names]
    return common or []


def log_term(site, full: int, what: str) -> torch.Tensor | None:
    """``site``'s unscaled, masked log-density as a tensor of ``full`` dims (particles first), or ``None``.

    :param int full: the plate nesting with the particle plate.
    :param str what: the objective, as a refusal names it.
    :raises ObjectiveError: it has more dims (a plate deeper than ``max_plate_nesting``; shapes only)."""
    term = scale_and_mask(site["unscaled_log_prob"], 1.0, site["mask"])
    if not isinstance(term, torch.Tensor):
        return None
    if term.dim() > full:
        raise nesting_overflow(what, site["name"], full - 1, tuple(term.shape))
    return term.reshape((1,) * (full - term.dim()) + term.shape)


def _counter(site, plate: str) -> tuple[int, int]:
    """``(counter, size)`` of ``site``'s frame of the sequential plate ``plate``."""
    frame = next(f for f in site["cond_indep_stack"] if f.name == plate and not f.vectorized)
    return frame.counter, frame.size


def _offset(model_sites, guide_sites, plate: str, what: str) -> int:
    """The shift of the guide's counters onto the model's, shown by the latent sites both sample.

    :raises ObjectiveError: more than one shift, or guide sites but none of the model's latents."""
    in_model = {site["name"]: _counter(site, plate)[0] for site in model_sites}
    shared = {site["name"]: (in_model[site["name"]], _counter(site, plate)[0]) for site in guide_sites
              if site["name"] in in_model}
    offsets = {m - g for m, g in shared.values()}
    if len(offsets) > 1 or (guide_sites and not offsets):
        seen = "; ".join(f"{name!r}: the model's {m}, the guide's {g}" for name, (m, g) in list(shared.items())[:3])
        raise ObjectiveError(
            f"{what}: the model's and the guide's iterations of the sequential plate {plate!r} do not match one to "
            f"one (the iteration counters of the latent sites, {seen or 'none shared'}, differ by more than one "
            "offset); sample each data point's latents in the same iteration of the plate in both programs")
    return offsets.pop() if offsets else 0


def _check_iterations(groups: dict, observed: set, counts: tuple[int, int], plate: str, size: int, what: str):
    """Refuse counters that are not the plate's ``size`` iterations, each with an observed site of the model.

    :param groups: ``{counter: [model terms, guide terms]}``.
    :param observed: the counters holding an observed site of the model.
    :param counts: the iterations with sites of the model and of the guide."""
    first, last = min(groups), max(groups)
    if last - first + 1 > size:
        raise ObjectiveError(
            f"{what}: the sites of the sequential plate {plate!r} (size {size}) span {last - first + 1} of its "
            "iterations: the plate was iterated more than once in one call (Pyro's counter goes on counting, so a "
            "second `for i in plate` would make each data point two weights and the bound invalid); iterate it "
            "once, sampling each data point's latents and observations in the same iteration")
    if len(groups) != size:
        raise ObjectiveError(
            f"{what}: {len(groups)} of the {size} iterations of the sequential data plate {plate!r} hold sites (the "
            f"model's {counts[0]}, the guide's {counts[1]}): each iteration is one data point and the plate's scale "
            f"counts {size} of them; a loop that breaks early makes a bound of fewer data points, and one left and "
            "entered again (Pyro's counter goes on counting) splits a data point into two weights -- iterate the "
            "plate once, to its end, with sites in every iteration (mask a missing observation with poutine.mask "
            "rather than skip its site)")
    empty = [g - first for g in sorted(groups) if g not in observed]
    if empty:
        raise ObjectiveError(
            f"{what}: iteration(s) {empty[:5]} of the sequential data plate {plate!r} (size {size}) hold no observed "
            "site of the model: each iteration is one data point, with its latents and its data (an iteration "
            "without data is what a second loop over the plate after a `break`, or observations shifted by an "
            "iteration, leave); sample each data point's latents and observations in its iteration, and mask a "
            "missing observation rather than skip it (sample its site under poutine.mask(mask=False) with any "
            "placeholder value)")


def sequential_log_densities(model_sites, guide_sites, plate: str, num_particles: int, full: int,
                             what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log_p, log_q)``, each ``[K, G]``: the model's and the guide's log-densities of the :math:`G` data points
    of the sequential data plate ``plate`` (its iterations, matched by the plate frame's counter in the two
    programs), unscaled, each site's summed over its other dims.

    A plate object the programs reuse counts on across calls (and across the model and the guide where they share
    it): the guide's counters are shifted onto the model's by the offset its latent sites show, which must be one.

    :param model_sites: the model's sample sites (every one in ``plate``).
    :param guide_sites: the guide's.
    :param str plate: the sequential data plate (:func:`sequential_data_plates`).
    :param int num_particles: :math:`K`.
    :param int full: the plate nesting with the particle plate.
    :param str what: the objective, as a refusal names it.
    :raises ObjectiveError: naming the plate (and the counts), when the iterations cannot be data points one to
        one: the guide's counters differ from the model's by more than one offset (or the guide has sites in the
        plate but none of the model's latents), the sites span more iterations than the plate's size, fewer
        iterations than its size hold sites, or one holds no observed site of the model (see the module's
        docstring); and when a site lies in more plate dims than ``full`` allows."""
    offset = _offset(model_sites, guide_sites, plate, what)
    groups: dict[int, list] = {}
    observed, sizes, counts = set(), set(), []
    for side, shift, sites in ((0, 0, model_sites), (1, offset, guide_sites)):
        seen = set()
        for site in sites:
            count, size = _counter(site, plate)
            count += shift
            sizes.add(size)
            seen.add(count)
            if side == 0 and site["is_observed"]:
                observed.add(count)
            term = log_term(site, full, what)
            if term is not None:
                term = term.sum(dim=tuple(range(1, full))) if full > 1 else term
                groups.setdefault(count, ([], []))[side].append(term)
            else:
                groups.setdefault(count, ([], []))
        counts.append(len(seen))
    ref = next((t for terms in groups.values() for side in terms for t in side), None)
    if ref is None:
        raise ObjectiveError(f"{what}: the model and guide have no sample sites")
    _check_iterations(groups, observed, tuple(counts), plate, min(sizes), what)
    stacked = []
    for side in (0, 1):
        stacked.append(torch.stack([sum(groups[g][side]).expand(num_particles) if groups[g][side]
                                    else ref.new_zeros(num_particles) for g in sorted(groups)], dim=-1))
    return stacked[0], stacked[1]
