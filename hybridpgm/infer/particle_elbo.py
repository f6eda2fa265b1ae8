"""Per-datapoint importance weights from vectorized particles.

The multi-sample objectives of this package (reweighted wake-sleep, VIMCO,
importance-sampled log-likelihoods) all need the same quantity: for each
datapoint :math:`b` of a mini-batch and each of :math:`K` particles
:math:`h_{k} \\sim q(h \\mid x_b)`, the log importance weight

.. math::

    \\log w_{k b} = \\log p(x_b, h_{k}) - \\log q(h_{k} \\mid x_b),

computed from *unscaled* log-densities.  The mini-batch scaling of a subsampled
``pyro.plate`` (:math:`N / B`) is returned separately so that it is applied
*after* the per-datapoint log-mean-exp,

.. math::

    \\mathcal L = \\frac{N}{B} \\sum_{b=1}^{B} \\log \\frac1K \\sum_{k=1}^{K} w_{k b},

which is an unbiased estimate of the full-data bound.  Scaling the weights
first (as a plain :class:`pyro.infer.RenyiELBO` or
:class:`pyro.infer.ReweightedWakeSleep` would, and why the latter refuses
mini-batches) changes the estimator.

:class:`ParticleELBO` runs the guide and the model once under an outer
``pyro.plate`` of :math:`K` particles (Pyro's ``vectorize_particles``) and
reduces each site's log-density to shape ``[K, B]``.  The probe trace that finds a
program's plate nesting without side effects lives in
:mod:`hybridpgm.infer.particle_probe` (re-exported here).
"""

from __future__ import annotations

import math
from typing import Iterable, NamedTuple

import pyro
import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import ELBO
from pyro.infer.enum import get_importance_trace
from pyro.poutine.util import site_is_subsample
from pyro.util import check_if_enumerated

from hybridpgm.checks import flag, positive_int
from hybridpgm.errors import ConfigError, ObjectiveError
from hybridpgm.handler_scope import isolated_from_handlers
# re-exported: the probe-trace helpers this module held before they moved to hybridpgm.infer.particle_probe
from hybridpgm.infer.particle_probe import (guess_plate_nesting, keeping_module_state, keeping_rng_state,
                                            nesting_overflow, probed_modules, probing, vectorized_pass)
from hybridpgm.infer.particle_plates import PARTICLE_PLATE as _PARTICLE_PLATE
from hybridpgm.infer.particle_plates import data_frame, sequential_plate
from hybridpgm.infer.particle_sequential import sequential_log_densities
from hybridpgm.options import Option

__all__ = ["LogWeights", "ParticleELBO", "check_sites_match", "guess_plate_nesting", "importance_log_likelihood",
           "keeping_module_state", "keeping_rng_state", "probing", "probed_modules"]


class LogWeights(NamedTuple):
    """Per-particle, per-datapoint log-densities of one vectorized trace pair.

    :ivar torch.Tensor log_p: :math:`\\log p(x_b, h_k)`, shape ``[K, B]``.
    :ivar torch.Tensor log_q: :math:`\\log q(h_k \\mid x_b)`, shape ``[K, B]``.
    :ivar float scale: the plate scaling (:math:`N / B` under subsampling, else 1).
    :ivar model_trace: the model's :class:`pyro.poutine.Trace`.
    :ivar guide_trace: the guide's :class:`pyro.poutine.Trace`.
    """

    log_p: torch.Tensor
    log_q: torch.Tensor
    scale: float
    model_trace: object
    guide_trace: object


def _latent_names(trace, ignore: frozenset = frozenset()) -> list[str]:
    return [name for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
            and name not in ignore and not site["infer"].get("is_auxiliary")]


def check_sites_match(model_trace, guide_trace, what: str, ignore: frozenset = frozenset()) -> None:
    """Raise :class:`~hybridpgm.errors.ObjectiveError` unless the guide samples exactly the model's latent
    sites: a model latent the guide lacks would be drawn from its prior and its density counted in
    :math:`\\log p` (a wrong weight), a guide site the model lacks would count in :math:`\\log q` alone.
    Only site names are compared (no device-host synchronisation); guide sites marked
    ``infer={"is_auxiliary": True}`` are allowed, as in Pyro.

    :param what: the objective, as the message names it.
    :param ignore: site names to leave out (the particle plate).
    """
    model_latent = _latent_names(model_trace, ignore)
    guide_latent = _latent_names(guide_trace, ignore)
    observed = {name for name, site in model_trace.nodes.items() if site["type"] == "sample" and site["is_observed"]}
    missing = [n for n in model_latent if n not in guide_trace.nodes]
    extra = [n for n in guide_latent if n not in model_trace.nodes or n in observed]
    if missing:
        raise ObjectiveError(f"{what}: the model's latent site(s) {missing} have no counterpart in the guide "
                             f"(guide latent sites: {guide_latent}); the guide must sample every latent site")
    if extra:
        raise ObjectiveError(f"{what}: guide site(s) {extra} are not latent sites of the model "
                             f"(model latent sites: {model_latent})")


def _one_scale(scales: dict, program: str) -> tuple[float, str | None]:
    """The one scale of ``scales`` (``{scale: a site carrying it}``, a program's sites) and its site; ``(1.0,
    None)`` without sites.

    :raises ObjectiveError: several scales, naming a site of each and the ``program``."""
    if len(scales) > 1:
        listed = ", ".join(f"{name!r} {scale:g}" for scale, name in sorted(scales.items()))
        raise ObjectiveError(
            f"the {program}'s sites carry different poutine scales ({listed}); per-datapoint importance "
            "weights need one common data-plate scale"
        )
    return next(iter(scales.items())) if scales else (1.0, None)


def _site_scale(site) -> float:
    scale = site["scale"]
    if isinstance(scale, torch.Tensor):
        if scale.numel() != 1:
            raise ObjectiveError(
                f"site {site['name']!r} has a tensor poutine.scale of shape {tuple(scale.shape)}; "
                "per-datapoint importance weights support scalar scales only"
            )
        scale = scale.item()
    return float(scale)


def _plate_nesting(value, what: str) -> float | int:
    """``value`` as a ``max_plate_nesting``: a non-negative ``int``, or ``inf`` (to be guessed) for ``None``/``inf``.

    :raises ConfigError: anything else (the message names ``what``)."""
    if value is None or (isinstance(value, float) and value == float("inf")):
        return float("inf")
    return positive_int(value, what, minimum=0)


def _plate_name(value, what: str) -> str | None:
    """``value`` as the name of a data plate: ``None`` or a non-empty string.

    :raises ConfigError: anything else (the message names ``what``)."""
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{what} must be None or the data plate's name (a non-empty string), got {value!r}")
    return value


class ParticleELBO(ELBO):
    """Base class of the multi-sample objectives: vectorized particles reduced
    to per-datapoint log-weights.

    Every sample site of the model and guide must lie in one data plate (a
    ``pyro.plate`` over datapoints, possibly subsampled); sites may also lie in
    plates nested inside it, whose log-densities are summed per datapoint.  A sequential data plate
    (``for i in pyro.plate(...)``) gives one datapoint per iteration (:mod:`~hybridpgm.infer.particle_plates`,
    :mod:`~hybridpgm.infer.particle_sequential`), the log-weights of the vectorized plate on the same particles.
    The :math:`K` particles are drawn in one pass under an outermost
    ``pyro.plate`` at ``dim = -(max_plate_nesting + 1)``.

    :param int num_particles: the number :math:`K` of particles per datapoint.
    :param max_plate_nesting: the number of nested plates in the model and
        guide; guessed by one trace on the first call when ``None``.
    :param str plate_name: name of the data plate (a non-empty string); by default (``None``) the outermost
        plate that encloses every sample site.
    :param bool detach_guide: detach the sampled latent values, so gradients
        reach :math:`\\phi` only through :math:`\\log q` (score-function
        estimators and the wake/sleep updates).
    :raises ConfigError: ``num_particles`` is not a positive integer, ``max_plate_nesting``
        not a non-negative one, ``plate_name`` neither ``None`` nor a non-empty string, or ``detach_guide`` not
        ``True`` or ``False``.

    ``max_plate_nesting`` and ``plate_name`` are read at each call and may be assigned later
    (:class:`~hybridpgm.options.Option`): an assignment is checked as the constructor checks the argument.

    Every objective built on it raises :class:`~hybridpgm.errors.ObjectiveError`, naming the sites, when
    the guide lacks a latent site of the model or samples one the model does not have.
    """

    max_plate_nesting = Option(lambda elbo, value: _plate_nesting(value, f"{type(elbo).__name__} max_plate_nesting"),
                               """The number of nested plates, read at each call (the particle plate goes left of
        them); ``inf`` until guessed on the first call.  Assigning ``None`` (or ``inf``) has the next call guess it.

        :raises ConfigError: (on assignment) neither ``None``, ``inf`` nor a non-negative integer.""")
    plate_name = Option(lambda elbo, value: _plate_name(value, f"{type(elbo).__name__} plate_name"), """The data
        plate's name (``None``: the outermost plate enclosing every sample site), read at each call.

        :raises ConfigError: (on assignment) neither ``None`` nor a non-empty string.""")

    def __init__(self, num_particles: int = 1, max_plate_nesting: int | None = None,
                 plate_name: str | None = None, detach_guide: bool = True):
        num_particles = positive_int(num_particles, f"{type(self).__name__} num_particles")
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)  # checked by the option
        self.plate_name = plate_name
        self.detach_guide = flag(detach_guide, f"{type(self).__name__} detach_guide")

    def plate_nesting(self, model, guide, args, kwargs, modules: Iterable[torch.nn.Module] = ()) -> int:
        """``max_plate_nesting`` (without the particle plate), guessed once by :func:`guess_plate_nesting`:
        a resumed run guesses again, so the guess uses up no random numbers and leaves the buffers of the
        modules behind ``model`` and ``guide`` (and of ``modules``) alone, and it logs nothing.

        :param model: the Pyro model, traced as ``model(*args, **kwargs)`` by the guess (when one is made).
        :param guide: the Pyro guide, traced likewise.
        :param tuple args: the programs' positional arguments.
        :param dict kwargs: their keyword arguments.
        :param modules: further modules the programs use (an objective's ``module``).
        """
        if self.max_plate_nesting == float("inf"):
            self._guess_max_plate_nesting(model, guide, args, kwargs, modules)
        return int(self.max_plate_nesting)

    def _guess_max_plate_nesting(self, model, guide, args, kwargs, modules: Iterable[torch.nn.Module] = ()):
        """hybridpgm's guess (:func:`guess_plate_nesting`) in place of Pyro's, which logs and draws."""
        self.max_plate_nesting = guess_plate_nesting(model, guide, args, kwargs, modules)

    def particle_plate(self, num_particles: int, nesting: int):
        """The outermost plate over particles.

        :param int num_particles: its size :math:`K`.
        :param int nesting: the programs' ``max_plate_nesting`` without it (:meth:`plate_nesting`): the plate
            takes the dim ``-(nesting + 1)``, left of theirs.
        :returns: a :class:`pyro.plate` named ``"num_particles_vectorized"``."""
        return pyro.plate(_PARTICLE_PLATE, num_particles, dim=-(nesting + 1))

    def _get_trace(self, model, guide, args, kwargs):
        nesting = self.plate_nesting(model, guide, args, kwargs)
        wrap = self.particle_plate(self.num_particles, nesting)
        with vectorized_pass(type(self).__name__, self.num_particles, nesting):
            model_trace, guide_trace = get_importance_trace(
                "flat", nesting + 1, wrap(model), wrap(guide), args, kwargs, detach=self.detach_guide
            )
        check_if_enumerated(guide_trace)
        check_sites_match(model_trace, guide_trace, type(self).__name__, frozenset({_PARTICLE_PLATE}))
        return model_trace, guide_trace

    def _reduce(self, trace, frame, num_particles: int, program: str = "model"):
        """Sum each site's unscaled (masked) log-density to shape ``[K, B]``.

        :returns: ``(total, scale, site)``: the ``[K, B]`` sum, the sites' common poutine scale and a site that
            carries it (``None`` without sites).
        :raises ObjectiveError: a site outside the data plate ``frame``, in more dims than ``max_plate_nesting``
            and the particle plate allow, or sites of different scales (naming them and the ``program``)."""
        total = 0.0
        scales: dict = {}
        n = int(self.max_plate_nesting) + 1
        for site in trace.nodes.values():
            if site["type"] != "sample":
                continue
            if not any(f.name == frame.name and f.dim == frame.dim for f in site["cond_indep_stack"]):
                raise ObjectiveError(
                    f"sample site {site['name']!r} is outside the data plate {frame.name!r}; "
                    "per-datapoint importance weights need every sample site inside it"
                )
            scales.setdefault(_site_scale(site), site["name"])
            lp = scale_and_mask(site["unscaled_log_prob"], 1.0, site["mask"])
            if not isinstance(lp, torch.Tensor):
                continue
            if lp.dim() > n:  # a plate deeper than the nesting went left of the particle plate (shapes only)
                raise nesting_overflow(type(self).__name__, site["name"], n - 1, tuple(lp.shape))
            lp = lp.reshape((1,) * (n - lp.dim()) + tuple(lp.shape))
            lp = lp.movedim(n + frame.dim, -1)
            if lp.dim() > 2:
                lp = lp.sum(dim=tuple(range(1, lp.dim() - 1)))
            total = total + lp.expand(num_particles, frame.size)
        if not isinstance(total, torch.Tensor):
            _one_scale(scales, program)  # different scales are named first
            raise ObjectiveError(f"the {program}'s trace has no sample sites with a log-density")
        return (total, *_one_scale(scales, program))

    def _sequential(self, model_trace, guide_trace, plate: str):
        """:meth:`_reduce` of both programs for the sequential data plate ``plate``: ``[K, G]`` per program, one
        column per iteration (:func:`~hybridpgm.infer.particle_sequential.sequential_log_densities`).

        :returns: ``((log_p, scale, site), (log_q, scale, site))``.
        :raises ObjectiveError: as :func:`~hybridpgm.infer.particle_sequential.sequential_log_densities`, or sites
            of different scales in one program."""
        sites = [[site for site in trace.nodes.values() if site["type"] == "sample"]
                 for trace in (model_trace, guide_trace)]
        scales = []
        for program, listed in zip(("model", "guide"), sites):
            found: dict = {}
            for site in listed:
                found.setdefault(_site_scale(site), site["name"])
            scales.append(_one_scale(found, program))
        log_p, log_q = sequential_log_densities(*sites, plate, self.num_particles, int(self.max_plate_nesting) + 1,
                                                type(self).__name__)
        return (log_p, *scales[0]), (log_q, *scales[1])

    def log_weights(self, model, guide, *args, **kwargs) -> LogWeights:
        """Draw ``num_particles`` particles per datapoint and return their
        unscaled log-densities (see :class:`LogWeights`).

        :param model: the Pyro model, run as ``model(*args, **kwargs)`` under the particle plate, replaying the
            guide's latent values.
        :param guide: the Pyro guide, run likewise; it must sample exactly the model's latent sites.
        :raises ObjectiveError: the guide does not sample exactly the model's latent sites, no site lies in a plate
            or one lies outside the data plate (or the data plate named is a sequential plate inside a vectorized
            one), the iterations of a sequential data plate cannot be datapoints one to one
            (:func:`~hybridpgm.infer.particle_sequential.sequential_log_densities`), a site lies in more plate dims
            than ``max_plate_nesting`` allows (a later batch entered a deeper plate: pass it), the sites carry a
            tensor scale or different scales (model and guide included), or the programs use a sampled value as
            one number (stochastic control flow: the particles run in one vectorized pass)."""
        model_trace, guide_trace = self._get_trace(model, guide, args, kwargs)
        plate = sequential_plate((model_trace, guide_trace), self.plate_name)
        if plate is None:
            frame = data_frame((model_trace, guide_trace), self.plate_name)
            plate = frame.name
            log_p, scale_p, site_p = self._reduce(model_trace, frame, self.num_particles, "model")
            log_q, scale_q, site_q = self._reduce(guide_trace, frame, self.num_particles, "guide")
        else:
            (log_p, scale_p, site_p), (log_q, scale_q, site_q) = self._sequential(model_trace, guide_trace, plate)
        if scale_p != scale_q:
            raise ObjectiveError(
                f"model and guide scale the data plate {plate!r} differently: the model's site {site_p!r} "
                f"{scale_p:g}, the guide's site {site_q!r} {scale_q:g}"
            )
        return LogWeights(log_p, log_q, scale_p, model_trace, guide_trace)

    def loss(self, model, guide, *args, **kwargs) -> float:
        """Negative importance-weighted bound :math:`-\\mathcal L` (a float), without gradients.

        :param model: the Pyro model, as in :meth:`log_weights` (with ``*args, **kwargs``).
        :param guide: the Pyro guide, as in :meth:`log_weights`."""
        with torch.no_grad():
            lw = self.log_weights(model, guide, *args, **kwargs)
            bound = torch.logsumexp(lw.log_p - lw.log_q, 0) - math.log(self.num_particles)
            return -(lw.scale * bound.sum()).item()

    def differentiable_loss(self, model, guide, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """Back-propagate :meth:`differentiable_loss` and return its value.

        :param model: the Pyro model, given to :meth:`differentiable_loss` with ``*args, **kwargs``.
        :param guide: the Pyro guide, likewise."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()


@torch.no_grad()
@isolated_from_handlers
def importance_log_likelihood(model, guide, *args, num_samples: int = 1000, chunk_size: int = 100,
                              plate_name: str | None = None, max_plate_nesting: int | None = None, **kwargs):
    """Importance-sampled :math:`\\log p(x_b)` per datapoint, with the guide as proposal:

    .. math::

        \\log \\hat p(x_b) = \\log \\frac1S \\sum_{s=1}^{S} \\frac{p(x_b, h_s)}{q(h_s \\mid x_b)},
        \\qquad h_s \\sim q(h \\mid x_b).

    A stochastic lower bound in expectation that tightens to :math:`\\log p(x_b)`
    as :math:`S` grows [1].  Particles are drawn in chunks of ``chunk_size`` to
    bound memory.  ``model`` and ``guide`` run as programs of their own
    (:func:`~hybridpgm.handler_scope.isolated_from_handlers`): no handler of the caller (a trace, ``scale``,
    ``condition``, an outer ``pyro.plate``) sees or alters their sites.

    :param int num_samples: :math:`S`.
    :param int chunk_size: particles per vectorized pass.
    :returns: tensor of shape ``[B]``.
    :raises ConfigError: ``num_samples`` or ``chunk_size`` is not a positive integer.
    :raises ObjectiveError: the guide does not sample exactly the model's latent sites.

    References:

    1. Y. Burda, R. Grosse, R. Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016.
    """
    num_samples = positive_int(num_samples, "importance_log_likelihood num_samples")
    chunk_size = positive_int(chunk_size, "importance_log_likelihood chunk_size")
    acc = None
    done = 0
    nesting = max_plate_nesting
    while done < num_samples:
        k = min(chunk_size, num_samples - done)
        estimator = ParticleELBO(k, max_plate_nesting=nesting, plate_name=plate_name)
        with pyro.poutine.block():  # kept inside the isolation: BayesNet.guide lets a blocked (probe) run through
            lw = estimator.log_weights(model, guide, *args, **kwargs)
        nesting = int(estimator.max_plate_nesting)  # reuse the guess
        chunk = torch.logsumexp(lw.log_p - lw.log_q, 0)
        acc = chunk if acc is None else torch.logaddexp(acc, chunk)
        done += k
    return acc - math.log(num_samples)
