"""The shape checks of the sample sites of a model sampled by :class:`~hybridpgm.infer.gibbs.Gibbs`.

:class:`~hybridpgm.infer.gibbs.Gibbs` computes a block's full conditional from one run of the model with the
block's sites enumerated in parallel (at dims left of the ``max_plate_nesting`` plate dims) and every other site
conditioned.  Each site's log-density :math:`\\log p(s \\mid \\mathrm{pa}(s))` then has shape
``[*enum, *plates]``, and the conditional of the element :math:`i` of a block in plate :math:`P` sums the terms
of element :math:`i`,

.. math::

    \\log p(z_{B,i} = k \\mid z_{-B}, x) = \\sum_{s \\ni i} \\log p(s \\mid \\mathrm{pa}(s))[k, i] + c,

which is the full conditional only if every site that reads :math:`z_B` is inside :math:`P` and reads element
:math:`i` alone (Pyro's plate semantics: the elements of a plate are conditionally independent [1]).  A site
outside :math:`P` that reads the block -- ``y ~ Normal(z.sum(-1), 1)``, a count or sum observation -- couples the
elements: enumerating all of them at once scores the joint state "every element is :math:`k`", not one element's
conditional.  The checks here refuse such a site by shapes alone, with no host read:

* :func:`check_site_shape_in_sweep`: the site's log-density fits its plates (:func:`pyro.util.check_site_shape`,
  as :class:`pyro.infer.TraceEnum_ELBO` checks it): a reduction over the plate (``z.sum(-1)``) moves the
  enumeration dim into the plate dims;
* :func:`check_block_plates`: a site whose log-density varies along an enumeration dim of the block lies inside
  every plate of the block (``z.sum(-1, keepdim=True)`` keeps the shapes right, and Pyro lets it through).

Model code must be enumeration-safe, as for Pyro's enumeration: ``z.sum()`` without a dim sums over the
enumeration dim too, which no shape shows.

[1] Pyro, *Tensor shapes in Pyro* and *Inference with discrete latent variables* (the enumeration tutorial).
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.util import check_site_shape

from hybridpgm.errors import ModelSpecError

__all__ = ["check_batch_dims_in_plates", "check_block_plates", "check_full_plate", "check_same_rows",
           "check_site_shape_in_sweep", "site_kind"]

_ADVICE = ("sample the elements as separate sites (a sequential plate, `for i in pyro.plate(...)`), or move the "
           "site into the plate if it reads one element only")


def site_kind(site) -> str:
    """How a message names a sample site: ``latent``, ``observed`` or ``factor`` (a :func:`pyro.factor`)."""
    if not site["is_observed"]:
        return "latent"
    return "factor" if isinstance(site["fn"], dist.Unit) else "observed"


def _site_batch_shape(name: str, site) -> tuple[int, ...]:
    """The batch shape of a sample site's ``log_prob``: its value's batch dims broadcast with its distribution's
    ``batch_shape`` (an observed value may broadcast against the distribution, either way)."""
    fn, value = site["fn"], site["value"]
    event_dim = getattr(fn, "event_dim", 0)
    shapes = [torch.Size(getattr(fn, "batch_shape", ()))]
    if torch.is_tensor(value):
        shapes.append(value.shape[:max(value.dim() - event_dim, 0)])
    try:
        return tuple(torch.broadcast_shapes(*shapes))
    except RuntimeError:
        raise ModelSpecError(f"Gibbs: {site_kind(site)} site '{name}' has a value of shape "
                             f"{tuple(value.shape)} that does not broadcast with its distribution's batch shape "
                             f"{tuple(fn.batch_shape)} (event dim {event_dim})") from None


def check_batch_dims_in_plates(name: str, site) -> None:
    """Every non-singleton batch dim of a sample site (latent, observed or :func:`pyro.factor`) must belong to a
    ``pyro.plate``: the full conditional is computed per plate element, and a batch dim that no plate declares
    would be mistaken for the enumeration dims (for an observed site: each latent state would be scored against
    one data point only, a silently wrong posterior).

    :raises ModelSpecError: naming the site, its batch shape, the dim and its size."""
    shape = _site_batch_shape(name, site)
    plate_dims = frozenset(f.dim for f in site["cond_indep_stack"] if f.vectorized)
    kind = site_kind(site)
    for i, size in enumerate(shape):
        dim = i - len(shape)
        if size > 1 and dim not in plate_dims:
            hint = {"latent": "(its elements are then resampled together), or sample one scalar site per element",
                    "observed": "(its elements are then independent data points), or declare the dims of one "
                                "data point with `.to_event(...)`",
                    "factor": "(its elements are then independent terms), or sum the terms into one scalar "
                              "factor"}[kind]
            raise ModelSpecError(
                f"Gibbs: {kind} site '{name}' has batch shape {shape}, but its dim {dim} (size {size}) belongs to "
                f"no pyro.plate; declare that batch dim with `with pyro.plate('{name}_plate', {size}, dim={dim}):` "
                f"around the site {hint}")


def check_full_plate(name: str, site) -> None:
    """A plate's subsample site (``pyro.plate(name, N, subsample_size=B)`` or ``subsample=idx``) must keep the
    whole plate, every row once, as Pyro's HMC/NUTS require of ``subsample_size``: Pyro scales each term of a
    subsampled plate by :math:`N / B`, so a local site's conditional would be tempered to :math:`p^{N/B}` and a
    global one's drawn from a rescaled subsample, neither the posterior (a :class:`pyro.poutine.scale` the model
    asks for itself is kept: the chain then targets the scaled density, as Pyro's MCMC kernels do).  Indices
    ``idx`` of the full size :math:`N` keep the plate only as a permutation of :math:`0..N-1`: one that repeats
    rows (a bootstrap draw ``torch.randint(N, (N,))``) counts them twice and leaves others out, at scale 1.

    Called once, when the chain is set up: the indices are read on the host there (one read per plate).

    :raises ModelSpecError: naming the plate and its sizes, or the repeated and missing rows."""
    fn, idx = site["fn"], site["value"]
    size = fn.size
    count = fn.subsample_size if idx is None else len(idx)
    if count != size:
        what = f"subsamples {count} of its {size} elements" if count < size else \
            f"is given {count} subsample= indices for its {size} elements"
        raise ModelSpecError(f"Gibbs: plate '{name}' {what}; a Gibbs chain needs the whole plate, every row once "
                             f"(its terms would be scaled by {size}/{count}, tempering the conditionals), as "
                             f"Pyro's HMC/NUTS do: drop subsample_size/subsample")
    idx = torch.as_tensor(idx)  # the user's indices, or Pyro's torch.arange(size) for a plate of its full size
    if idx.dtype in (torch.bool, torch.uint8) or idx.is_floating_point() or idx.is_complex() or idx.dim() != 1:
        raise ModelSpecError(f"Gibbs: plate '{name}' is given subsample= of dtype {idx.dtype} and shape "
                             f"{tuple(idx.shape)}; a plate's subsample is a 1-d tensor of integer row indices")
    counts = torch.bincount(idx.detach().to("cpu", torch.int64).clamp(-1, size) + 1, minlength=size + 2)[1:-1]
    outside = idx.numel() - int(counts.sum())
    repeated, missing = (counts > 1).nonzero().flatten(), (counts == 0).nonzero().flatten()
    if outside or missing.numel():
        raise ModelSpecError(
            f"Gibbs: plate '{name}' is given subsample= indices of its full size {size} that are not a "
            f"permutation of 0..{size - 1}: {repeated.numel()} row(s) repeated (e.g. {repeated[:3].tolist()}), "
            f"{missing.numel()} missing (e.g. {missing[:3].tolist()})"
            f"{f', {outside} outside 0..{size - 1}' if outside else ''}; Pyro scores them at scale 1, so the chain "
            f"would target the posterior of the repeated rows counted twice and the missing ones left out: give "
            f"each row once (or drop subsample=)")


def check_same_rows(name: str, site, rows: torch.Tensor, latent: list) -> None:
    """The subsample indices of a plate holding latent sites are, in every run of the model, those the chain was set
    up with (:func:`check_full_plate` checked them then).  The chain keeps a plated latent site's value by position:
    element ``j`` is the state of the row the plate's ``j``-th index names, so indices drawn afresh by the model
    (``pyro.plate("data", N, subsample=torch.randperm(N))`` inside it) would pair each kept state with another
    row at every run, a chain over no posterior.  (A plate of observed sites only may reorder its rows at will:
    their log-density is a sum over the rows.)

    Called at every model run of a sweep (one comparison, a host read, per such plate).

    :param site: the plate's subsample site in this run (``None`` where the run has no such plate).
    :param rows: a copy of its indices at :meth:`~hybridpgm.infer.gibbs.Gibbs.setup` (a copy: indices reshuffled in
        place, ``perm.copy_(torch.randperm(N))``, are new indices too).
    :param latent: the latent sites in the plate, for the message.
    :raises ModelSpecError: naming the plate, its latent sites and the fix (draw the permutation once, outside)."""
    value = None if site is None else site["value"]
    if torch.is_tensor(value) and value.shape == rows.shape and value.device == rows.device \
            and bool(torch.equal(value, rows)):
        return
    raise ModelSpecError(
        f"Gibbs: plate '{name}' holds the latent site(s) {latent} and is given other subsample= indices in this "
        f"run of the model than when the chain was set up (does the model draw them afresh, e.g. "
        f"subsample=torch.randperm(N) inside it?): the chain keeps each element of a plated latent site by its "
        f"position in the plate, so new indices would pair its state with another row at every run; draw the "
        f"permutation once, outside the model, and pass it in (or drop subsample=: every row, in order)")


def _plates_text(plates: dict) -> str:
    return ", ".join(f"'{name}' (dim {dim}, size {size})" for dim, (name, size) in sorted(plates.items()))


def check_site_shape_in_sweep(name: str, site, block, mpn: int, plates: dict) -> None:
    """A site's log-density, while ``block`` is enumerated left of the ``mpn`` plate dims, fits the site's plates
    (:func:`pyro.util.check_site_shape`): a site reducing the block over one of its plates (``z.sum(-1)``) has
    the block's enumeration dim among its plate dims.

    :param plates: the block's plates of more than one element, ``{dim: (name, size)}``.
    :raises ModelSpecError: naming the site, its log-density's shape, the block and its plates."""
    try:
        check_site_shape(site, mpn)
    except ValueError as e:
        reason = str(e).split("\n")[0:2]
        raise ModelSpecError(
            f"Gibbs: {site_kind(site)} site '{name}' has a log-density of shape {tuple(site['log_prob'].shape)} that "
            f"does not fit its plates while block {list(block)} is enumerated left of the {mpn} plate dim(s) "
            f"(Pyro: {' '.join(s.strip() for s in reason)}): the site reads the block across "
            f"{'its plate(s) ' + _plates_text(plates) if plates else 'a plate'} (e.g. sums over it), so the "
            f"elements are not conditionally independent and cannot be resampled at once; {_ADVICE}") from None


def check_block_plates(name: str, site, block, enum_dims, plates: dict) -> None:
    """A site whose log-density varies along an enumeration dim of ``block`` (it reads the block) lies in every
    plate of the block with more than one element: a site outside one (``z.sum(-1, keepdim=True)``) would add
    its term, computed with every element in the same state, to each element's conditional.

    :param enum_dims: the dims (negative) at which the block's sites are enumerated.
    :param plates: the block's plates of more than one element, ``{dim: (name, size)}``.
    :raises ModelSpecError: naming the site, the block and the plate(s) the site lies outside."""
    if not plates:
        return
    shape = site["log_prob"].shape
    if not any(len(shape) >= -d and shape[d] > 1 for d in enum_dims):
        return  # does not read the block (or the block has one state)
    inside = {f.dim for f in site["cond_indep_stack"] if f.vectorized}
    outside = {dim: p for dim, p in plates.items() if dim not in inside}
    if outside:
        raise ModelSpecError(
            f"Gibbs: {site_kind(site)} site '{name}' reads block {list(block)} but lies outside the block's "
            f"plate(s) {_plates_text(outside)}: its term depends on all the elements at once (e.g. a sum over the "
            f"plate), so they are not conditionally independent and cannot be resampled at once; {_ADVICE}")
