"""The importance-weighted autoencoder bound, correct under subsampled plates.

For data points :math:`x_n` with local latents :math:`z_n` and a guide
:math:`q(z_n \\mid x_n)`, the IWAE bound [1] with :math:`K` particles is

.. math::

    \\mathcal L_K = \\sum_n \\log \\frac1K \\sum_{k=1}^K
        \\frac{p(x_n, z_n^{(k)})}{q(z_n^{(k)} \\mid x_n)},
    \\qquad z_n^{(k)} \\sim q(\\cdot \\mid x_n),

with :math:`\\mathcal L_1` the ELBO and :math:`\\mathbb E\\,\\mathcal L_K`
non-decreasing in :math:`K` and tending to :math:`\\log p(x)` [1].

The log-mean-exp is taken **per data point** (per element of the plates that
every sample site shares) and only then scaled by the plate's subsampling
factor :math:`N / B`.  Sibling plates at the same ``dim`` with the same size
count as one data index: two models of one program over the same rows, each
under its own prefixed plate (``"vae/data"`` and ``"bn/data"``), get one weight
:math:`w_n = \\prod_m w_{mn}` per row :math:`n`, the product over the models
:math:`m`.  Sites in plates that share no index (two data sets of different
sizes, or at different dims) are refused by name; a site outside every plate
(a global latent) makes the whole batch one weight.  A data plate written sequentially
(``for i in pyro.plate("data", N, subsample=idx)``, for a different number of sites per data point) gives one
weight per iteration: the sites of iteration :math:`g` in the model and in the guide (matched by the plate's
counter) are data point :math:`g`, summed over their other dims (a sequential plate inside or around a vectorized
data plate indexes something within a data point; :mod:`~hybridpgm.infer.particle_sequential`, shared with VIMCO and
RWS); a plate iterated twice in one call, or left early with ``break``, is refused.  A latent
site the guide declares in a plate named otherwise than the model's (``"rows"`` for ``"data"``) is refused by
name.  Pyro's ``RenyiELBO(alpha=0)`` instead applies the
log-mean-exp to the already scaled total, which estimates
:math:`\\log \\frac1K \\sum_k \\prod_n w_{nk}^{N/B}` -- not the IWAE bound --
as soon as a plate is subsampled.

References:

1. Y. Burda, R. Grosse, R. Salakhutdinov, *Importance Weighted Autoencoders*,
   ICLR 2016.
"""

from __future__ import annotations

import math

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import ELBO
from pyro.infer.enum import get_importance_trace
from pyro.infer.util import torch_item

from hybridpgm.checks import positive_int
from hybridpgm.errors import ObjectiveError
from hybridpgm.infer.particle_elbo import check_sites_match, guess_plate_nesting
from hybridpgm.infer.particle_probe import vectorized_pass
from hybridpgm.infer.particle_sequential import log_term, sequential_data_plates, sequential_log_densities
from hybridpgm.summary_repr import objective_text

__all__ = ["IWAE", "importance_log_weights"]

_PARTICLES = "iwae_particles"


def _sample_sites(trace):
    return [s for s in trace.nodes.values() if s["type"] == "sample" and s["name"] != _PARTICLES]


def _plates(site) -> dict:
    """The vectorized plates (other than the particles) of ``site``, as ``{(dim, size): name}``."""
    return {(f.dim, f.size): f.name for f in site["cond_indep_stack"] if f.vectorized and f.name != _PARTICLES}


def _sequential_plate(sites) -> str | None:
    """The outermost sequential plate (``for i in pyro.plate(...)``) that holds every site of ``sites`` and lies in
    no vectorized plate (:func:`~hybridpgm.infer.particle_sequential.sequential_data_plates`), or ``None``;
    ``None`` too when a vectorized data index holds every site (``for t in pyro.plate("time", T): with data:``,
    where the data plate indexes the data points and the sequential plate something within each).  Each of its
    iterations is one data point."""
    common = sequential_data_plates(sites, _PARTICLES)
    if not common:
        return None
    plates = [(site, _plates(site)) for site in sites]
    if all(here for _, here in plates) and _shared_index(plates)[0]:
        return None
    return common[0]


def _shared_index(in_plates: list) -> tuple[set, dict, set]:
    """The data index of ``in_plates`` (``(site, plates)`` pairs, each site's :func:`_plates`, all non-empty):
    ``(common, names_at, observed)``, the ``(dim, size)`` keys every site lies in (one plate at a key, or sibling
    plates that each hold an observed site: a latent-only sibling makes the key no data index), the plate names
    at each key, and the names of the plates that hold an observed site."""
    observed = {name for site, here in in_plates if site.get("is_observed") for name in here.values()}
    names_at: dict = {}
    for _, here in in_plates:
        for key, name in here.items():
            names_at.setdefault(key, set()).add(name)
    common = set.intersection(*(set(here) for _, here in in_plates)) if in_plates else set()
    common = {key for key in common if len(names_at[key]) == 1 or names_at[key] <= observed}
    return common, names_at, observed


def _check_plate_names(model_sites, guide_sites) -> None:
    """Refuse a latent site that the model and the guide declare in plates of different names at one dim and size
    (model ``plate("data", B)``, guide ``plate("rows", B)``): the guide's plate, holding no observed site, would
    be taken for a global latent's and the whole batch would get one weight.

    :raises ObjectiveError: naming the site and both plates."""
    def keys(site) -> dict:
        return {(f.dim, f.size) if f.vectorized else ("sequential", f.size): f.name
                for f in site["cond_indep_stack"] if f.name != _PARTICLES}

    in_model = {site["name"]: keys(site) for site in model_sites}
    for site in guide_sites:
        model_plates = in_model.get(site["name"])
        if site["is_observed"] or model_plates is None:
            continue
        for key, name in keys(site).items():
            if key in model_plates and model_plates[key] != name:
                where = f"a sequential plate of size {key[1]}" if key[0] == "sequential" else \
                    f"dim {key[0]}, size {key[1]}"
                raise ObjectiveError(
                    f"IWAE: site {site['name']!r} lies in the model's plate {model_plates[key]!r} but in the guide's "
                    f"plate {name!r} ({where}); name the guide's plate as the model's: the importance-weighted bound "
                    "takes one weight per data point of the data plate, and would otherwise give the whole batch one")


def _data_dims(sites) -> list[int]:
    """The dims of the data index: the plates every site lies in, where sibling plates at the same ``dim`` with
    the same ``size`` that each hold an observed site (two models' ``"v1/data"`` and ``"v2/data"`` over one
    batch) count as one index.  A plate that holds only latent sites beside a data plate of the same dim and size
    (a global latent vector in a ``"components"`` plate) is no data index.

    With no such index the whole batch is one importance weight: right for a global latent outside every plate
    or in a plate of its own.

    :raises ObjectiveError: data plates (each holding an observed site) that share no index: plates of different
        sizes or dims, two data sets -- naming the plates and their sites.
    """
    plates = [(site, _plates(site)) for site in sites]
    in_plates = [(site, here) for site, here in plates if here]
    common, names_at, observed = _shared_index(in_plates)
    if in_plates and not common:
        if any(name not in observed for names in names_at.values() for name in names):
            return []  # a latent in a plate of its own (a global latent vector): one weight for the whole batch
        held: dict = {}
        for site, here in in_plates:
            outer = max(here, key=lambda key: key[0])  # the outermost (least negative dim) names the group
            names = held.setdefault((here[outer],) + outer, [])
            if site["name"] not in names:  # a latent is a site of the model and of the guide
                names.append(site["name"])
        listed = "; ".join(f"plate {plate!r} (dim {dim}, size {size}) holds {names}"
                           for (plate, dim, size), names in held.items())
        raise ObjectiveError(
            f"IWAE: no plate index is shared by every site that lies in a plate ({listed}); the importance-"
            "weighted bound takes one log-mean-exp per data point and needs one data index for the whole "
            "program: data plates at the same dim with the same size count as one (row n of each is one data "
            "point). Two models over different data: compute the bound of each model on its own and add them"
        )
    if len(in_plates) < len(plates):
        return []  # a site outside every plate (a global latent): one weight for the whole batch
    return sorted(dim for dim, _ in common)


def _common_scale(model_sites, guide_sites):
    """The plate scale every site of the model and guide shares.

    :raises ObjectiveError: a tensor scale of several elements, or two scales (naming both sites and programs)."""
    scale, first = None, None
    for program, sites in (("model", model_sites), ("guide", guide_sites)):
        for site in sites:
            s = site["scale"]
            s = float(s) if not isinstance(s, torch.Tensor) or s.numel() == 1 else s
            if not isinstance(s, float):
                raise ObjectiveError(f"the {program}'s site {site['name']!r} has a non-scalar scale; IWAE needs one "
                                     "scale per data point")
            if scale is None:
                scale, first = s, f"the {program}'s site {site['name']!r}"
            elif not math.isclose(s, scale, rel_tol=1e-6):
                raise ObjectiveError(
                    f"{first} (scale {scale:g}) and the {program}'s site {site['name']!r} (scale {s:g}) are scaled "
                    "differently; the importance-weighted bound needs every site of a data point under the same "
                    "plate scaling (global latents under a subsampled plate, or poutine.scale on some sites, break it)"
                )
    return 1.0 if scale is None else scale


def importance_log_weights(model, guide, *args, num_particles: int, max_plate_nesting: int | None = None,
                           **kwargs) -> tuple[torch.Tensor, float]:
    """Per-data-point importance log-weights of ``model`` against ``guide``.

    :param num_particles: :math:`K`, drawn in one vectorized pass (an outermost
        ``pyro.plate`` at ``dim = -(max_plate_nesting + 1)``).
    :returns: ``(log_w, scale)`` where ``log_w`` has shape
        ``K x local_shape`` (``local_shape`` is the shape of the plates all sites
        share, e.g. ``B`` for one data plate, or for sibling plates at one dim
        of the same size ``B``, or for a sequential data plate of ``B`` iterations; ``()`` when a site lies
        outside every plate) holding
        :math:`\\log p(x_n, z_n^{(k)}) - \\log q(z_n^{(k)} \\mid x_n)` unscaled,
        and ``scale`` the plate subsampling factor shared by every site.
    :raises ObjectiveError: the guide lacks a latent site of the model or samples one the model does not
        have, a guide site is not reparameterizable, the sites are scaled differently, the sites that lie
        in plates share no plate index (sibling plates of different sizes or at different dims), the model and
        the guide declare a latent site in plates of different names (at one dim and size), a site lies in more
        plate dims than ``max_plate_nesting`` allows (a later batch entered a deeper plate: pass it), a sequential
        data plate's iterations do not match one to one between the programs, are more or fewer than its size
        (iterated twice, or left early with ``break``) or hold no observed site of the model
        (:func:`~hybridpgm.infer.particle_sequential.sequential_log_densities`), or the programs use a sampled
        value as one number (stochastic control flow: the particles run vectorized).
    """
    if max_plate_nesting is None:
        max_plate_nesting = guess_plate_nesting(model, guide, args, kwargs)
    particle_dim = -(max_plate_nesting + 1)
    wrap = pyro.plate(_PARTICLES, num_particles, dim=particle_dim)
    with vectorized_pass("IWAE", num_particles, max_plate_nesting):
        model_trace, guide_trace = get_importance_trace("flat", max_plate_nesting + 1, wrap(model), wrap(guide),
                                                        args, kwargs)
    check_sites_match(model_trace, guide_trace, "IWAE", frozenset({_PARTICLES}))
    model_sites, guide_sites = _sample_sites(model_trace), _sample_sites(guide_trace)
    for site in guide_sites:
        if not site["fn"].has_rsample and not site["is_observed"]:
            raise ObjectiveError(
                f"guide site {site['name']!r} ({type(site['fn']).__name__}) is not reparameterizable; "
                "IWAE needs reparameterized latents: use hybridpgm.infer.RWS or a continuous relaxation"
            )
    _check_plate_names(model_sites, guide_sites)
    scale = _common_scale(model_sites, guide_sites)
    full = particle_dim * -1
    sequential = _sequential_plate(model_sites + guide_sites)
    if sequential is not None:
        log_p, log_q = sequential_log_densities(model_sites, guide_sites, sequential, num_particles, full, "IWAE")
        return log_p - log_q, scale
    data_dims = _data_dims(model_sites + guide_sites)
    keep = {particle_dim} | set(data_dims)
    log_w = None
    for sign, sites in ((1.0, model_sites), (-1.0, guide_sites)):
        for site in sites:
            term = log_term(site, full, "IWAE")
            if term is None:
                continue
            drop = [d for d in range(-full, 0) if d not in keep and term.shape[d] != 1]
            if drop:
                term = term.sum(dim=drop, keepdim=True)
            log_w = sign * term if log_w is None else log_w + sign * term
    if log_w is None:
        raise ObjectiveError("the model and guide have no sample sites")
    log_w = log_w.reshape((1,) * (full - log_w.dim()) + log_w.shape)
    log_w = log_w.expand(num_particles, *log_w.shape[1:])
    kept = sorted(keep)
    squeeze = [d for d in range(-full, 0) if d not in kept]
    if squeeze:
        log_w = log_w.sum(dim=squeeze)  # only size-1 dims remain there
    return log_w, scale


class IWAE(ELBO):
    """Importance-weighted bound as a Pyro ELBO (also works with plain
    ``pyro.infer.SVI`` and with :class:`~hybridpgm.infer.SVIObjective`).

    The bound is computed with one vectorized pass of ``num_particles``
    particles; every latent site of the guide must be reparameterizable.

    :param int num_particles: :math:`K \\geq 1`; ``K = 1`` is the ELBO.
    :param max_plate_nesting: the model's plate nesting; guessed by one trace
        when ``None`` (see :meth:`plate_nesting`).
    :raises ConfigError: ``num_particles`` is not a positive integer (``bool`` and floats included), or
        ``max_plate_nesting`` is not ``None`` or a non-negative integer.
    """

    def __init__(self, num_particles: int = 5, max_plate_nesting: int | None = None):
        num_particles = positive_int(num_particles, "IWAE num_particles")
        if max_plate_nesting is not None:
            max_plate_nesting = positive_int(max_plate_nesting, "IWAE max_plate_nesting", minimum=0)
        super().__init__(num_particles=num_particles, vectorize_particles=True,
                         max_plate_nesting=float("inf") if max_plate_nesting is None else max_plate_nesting)
        self._nesting = max_plate_nesting

    def __repr__(self) -> str:
        """``IWAE(num_particles=5, max_plate_nesting=None)``: the particles and the plate nesting (``None`` until
        :meth:`plate_nesting` guessed it)."""
        return objective_text(self, {"num_particles": getattr(self, "num_particles", "?"),
                                     "max_plate_nesting": getattr(self, "_nesting", "?")})

    def _get_trace(self, model, guide, args, kwargs):
        return get_importance_trace("flat", self.max_plate_nesting, model, guide, args, kwargs)

    def plate_nesting(self, model, guide, args, kwargs, modules=()) -> int:
        """The model's plate nesting (without the particle plate), guessed once by
        :func:`~hybridpgm.infer.particle_probe.guess_plate_nesting` when not given: without Pyro's log line,
        without using up random numbers, and leaving the buffers of the modules behind ``model`` and
        ``guide`` (and of ``modules``, e.g. an objective's ``module``) as they were -- a resumed run
        guesses again, and a batch-norm layer must not count that probe as a training batch.

        :param model: the Pyro model.
        :param guide: its guide.
        :param tuple args: the positional arguments the programs are called with.
        :param dict kwargs: the keyword arguments the programs are called with.
        :param modules: further :class:`torch.nn.Module` s the programs use.
        """
        if self._nesting is None:
            self._nesting = guess_plate_nesting(model, guide, args, kwargs, modules)
        return self._nesting

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """:math:`-\\mathcal L_K`, differentiable in the model's and guide's parameters (0-d).

        :param model: the Pyro model, called as ``model(*args, **kwargs)``.
        :param guide: the Pyro guide, called alike (every latent site reparameterizable)."""
        nesting = self.plate_nesting(model, guide, args, kwargs)
        log_w, scale = importance_log_weights(model, guide, *args, num_particles=self.num_particles,
                                              max_plate_nesting=nesting, **kwargs)
        per_point = torch.logsumexp(log_w, dim=0) - math.log(self.num_particles)
        return -scale * per_point.sum()

    def loss(self, model, guide, *args, **kwargs) -> float:
        """:math:`-\\mathcal L_K` as a float, without gradients.

        :param model: the Pyro model, called as ``model(*args, **kwargs)``.
        :param guide: the Pyro guide, called alike."""
        with torch.no_grad():
            return torch_item(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """:math:`-\\mathcal L_K` as a float, after back-propagating it into the ``pyro.param`` sites the
        programs read (what :class:`pyro.infer.SVI` calls; no backward pass when none requires gradients).

        :param model: the Pyro model, called as ``model(*args, **kwargs)``.
        :param guide: the Pyro guide, called alike."""
        with poutine.trace(param_only=True) as param_capture:
            loss = self.differentiable_loss(model, guide, *args, **kwargs)
        params = [site["value"].unconstrained() for site in param_capture.trace.nodes.values()]
        params = [p for p in params if p.requires_grad]
        if params:
            loss.backward()
        return torch_item(loss)
