r"""Sites outside the batch's plates count once per optimizer update under ``fit``'s micro-batches and ranks.

:class:`~hybridpgm.infer.SVIObjective` with ``per_example=True`` divides the loss of a batch of :math:`B` examples
by :math:`B`.  A model's terms split in two kinds: those of its examples, inside the batch's plate
(``pyro.plate("data", B)``), and global ones outside every plate of the batch's size (the prior and the guide's
entropy of a global latent: the weights of a :func:`~hybridpgm.bayesian_nn.bayesianize`\ d network, the
hyper-parameters of an autoguide), :math:`G`.  On one batch the loss is :math:`(S + G) / B`.

:func:`hybridpgm.fit` with ``accumulate = M`` computes the loss of micro-batch :math:`i` (:math:`m_i` of the
:math:`B` rows) and weights it by :math:`m_i / B`; on :math:`R` ranks it averages the gradients.  Unscaled, a
global term then counts :math:`\sum_i (m_i / B) G / m_i = M G / B` per step instead of :math:`G / B`, and
:math:`G / B` instead of :math:`G / (R B)` over :math:`R` ranks: accumulation and data parallelism trained another
model, silently (a Bayesian regression's weights 0.041 away after 3 epochs).  :class:`GlobalShare` multiplies the
scale of each global site by the micro-batch's share :math:`w_i = m_i / (B R)`
(:func:`~hybridpgm.train.update_scope.micro_batch_share`), so that the step minimises

.. math:: \frac{1}{R}\sum_r \sum_i \frac{m_i}{B} \frac{S_{r,i} + w_i G}{m_i} = \frac{S + G \sum_{r,i} w_i}{R B}
          = \frac{S + G}{R B},

the loss of one unsplit batch of :math:`R B` rows, as BayesNet's Dirichlet prior does since cb93150.  A batch that
is not split, on one process, has share 1 and is left alone (no handler: the direct path of
:class:`~hybridpgm.infer.DirectTrace_ELBO` stays open).

Which sites are global is learnt from the probe trace pair that ``per_example`` already runs
(:func:`~hybridpgm.infer.subsample_scale.check_plate_scale`), by name (:func:`sites_outside_batch_plates`):
a latent site none of whose plates has the batch's size and whose value has no dimension of that size (an
observed site outside the plates is the batch's likelihood as one event, ``pyro.factor`` of a sum over the rows:
never global; a regulariser of the parameters is a term of the update, not of the rows, and the model says so by
writing it with :func:`global_factor`, which is global: a plain ``pyro.factor`` of it counts once per micro-batch).
A global site that happens to have the batch's size (``w`` of shape ``[3]`` on a micro-batch of 3 rows, a plate
of 3 features) would meet that rule by coincidence: the probe is run again on the batch's rows twice over
(:mod:`~hybridpgm.infer.row_probe`), and a site whose value's shape and plates do not follow the rows is global
(before, it was taken for an example's and counted once per micro-batch: 0.080 off after 3 epochs); sites added
inside :func:`~hybridpgm.train.update_scope.weighted_per_update` are weighted by the model itself and left alone.
An enumerated site outside the batch's plates (a global discrete latent that
:class:`~pyro.infer.TraceEnum_ELBO` or :class:`~pyro.infer.TraceTMC_ELBO` sums out) is refused under a share other
than 1 with a :class:`~hybridpgm.errors.ConfigError` naming it: the batch's term
:math:`\log \sum_c p(c) \prod_b p(x_b \mid c)` is no sum over micro-batches, and no scale of :math:`c` makes
``accumulate`` train it (before, it counted once per micro-batch: another model, silently).  A plate that
subsamples the batch's rows (``pyro.plate("data", len(x), subsample_size=b)``: size :math:`b`, full size
:math:`B`) is the batch's plate too.

**Which objectives.**  :func:`share_scope` gives the handler to every objective with ``per_example`` whose loss is
linear in each site's log-density, so that scaling a site's terms scales its part of the loss:
:class:`~hybridpgm.infer.SVIObjective` with Pyro's ``Trace_ELBO`` family (``TraceGraph_ELBO``'s score function
:math:`\nabla_\phi \log q(\beta)` is left unscaled by Pyro, its downstream cost :math:`w_i G + \sum_{b \in i}
\ell_b` carries the share, as the micro-batch's part of :math:`G + \sum_b \ell_b` should) and
:class:`~hybridpgm.infer.NVIL` (on ``TraceGraph_ELBO``).  The importance-weighted estimators take a log-mean-exp
over particles of weights that hold the global latent's density, :math:`\log \frac1K \sum_k
\frac{p(\beta_k)}{q(\beta_k)} \prod_b \frac{p(x_b, z_{bk} \mid \beta_k)}{q(z_{bk} \mid x_b)}`: it is not a sum
over the rows, so no scale of :math:`\beta`'s terms makes the micro-batches' losses add up to the batch's (a share
inside the log-mean-exp weights :math:`(p/q)^{w_i}`, another estimator).  :class:`~hybridpgm.infer.IWAE` under
``SVIObjective`` is therefore refused with a share other than 1 (:func:`refuse_joint_weights`; an observed site
outside the plate, a ``pyro.factor``, makes one weight of the batch too:
:func:`~hybridpgm.infer.split_refusal.refuse_unsplit_estimates` refuses both before ``fit`` sets the run up),
:class:`~pyro.infer.TraceTMC_ELBO` without a global latent takes one log-mean-exp per row and splits, and VIMCO,
RWS and wake-sleep (:class:`~hybridpgm.infer.particle_elbo.ParticleELBO`, one weight per data point) refuse a site
outside the data plate at any ``accumulate``.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from hybridpgm.errors import ConfigError
from hybridpgm.train.update_scope import micro_batch_share, weighted_per_update_active

__all__ = ["GLOBAL_FACTOR", "GlobalShare", "GlobalSites", "enumerated_site_error", "global_factor",
           "refuse_joint_weights", "share_scope", "site_layout", "sites_outside_batch_plates"]

#: the ``infer`` key of a :func:`global_factor` site
GLOBAL_FACTOR = "hybridpgm_global_factor"


def global_factor(name: str, log_factor: torch.Tensor, *, has_rsample: bool | None = None) -> None:
    r"""``pyro.factor(name, log_factor)`` for a term that counts once per optimizer update, not once per example:
    a regulariser of the parameters (``global_factor("l2", -lam * w.pow(2).sum())``), a prior written as a factor.

    A ``pyro.factor`` outside the batch's plates is taken for the batch's likelihood, a sum over its rows
    (``pyro.factor("ll", log_lik(x).sum())``): :func:`hybridpgm.fit` weights micro-batch :math:`i` by
    :math:`m_i / B`, so such a factor splits over the micro-batches as its rows do, and a term :math:`G` that does not
    depend on the rows counts once per micro-batch, :math:`M G / B` per update under ``accumulate = M`` (and
    :math:`G / B` where :math:`G / (R B)` is due over :math:`R` ranks: the regulariser :math:`M` or :math:`R` times
    as strong as in one unsplit batch).  Only the model can tell the two apart: a site made here carries
    ``infer[GLOBAL_FACTOR]``, and :func:`sites_outside_batch_plates` lists it with the global latents, whose scale
    :class:`GlobalShare` multiplies by the micro-batch's share :math:`m_i / (B R)`, so that it counts once per
    update (:class:`~hybridpgm.infer.SVIObjective` and :class:`~hybridpgm.infer.NVIL` with ``per_example=True``).
    Outside ``fit``, for a batch that is not split on one process and with ``per_example=False`` it is
    ``pyro.factor`` exactly.  Under :class:`~hybridpgm.infer.IWAE` it makes the batch one importance weight, as a
    global latent does (refused under a share other than 1).

    :param str name: the site's name.
    :param log_factor: the log-density term (0-d for a term of the whole program).
    :param has_rsample: as ``pyro.factor``'s (needed in a guide only)."""
    unit = dist.Unit(log_factor, has_rsample=has_rsample)
    pyro.sample(name, unit, obs=unit.sample(), infer={"is_auxiliary": True, GLOBAL_FACTOR: True})


def sites_outside_batch_plates(traces: Iterable[poutine.Trace], batch: int,
                               doubled: Callable[[], tuple[poutine.Trace, ...] | None] | None = None
                               ) -> frozenset[str]:
    """The names of the latent sample sites of ``traces`` none of whose plates has ``batch`` elements and whose
    value has no dimension of ``batch`` elements (global sites: one term per batch, not per example), and, given
    ``doubled``, those that the rule takes for the rows' but that keep their value's shape and their plates
    (:func:`site_layout`) on the batch's rows twice over: a global latent of as many elements as the batch has rows
    (``w`` of shape ``[3]`` on a micro-batch of 3 rows, a plate of 3 features; :mod:`~hybridpgm.infer.row_probe`).

    An observed site is never global (but a :func:`global_factor`): outside a plate it is the batch's likelihood
    as one event (``.to_event`` over the rows, ``pyro.factor`` of their sum), whose share fit's weights
    :math:`m_i / B` already give; a latent
    with a dimension of the batch's size outside the plates (``z`` of shape ``(B, d)`` under ``.to_event(2)``) is
    the rows' too.  (Scaled by the share, either counted :math:`m_i / B` times too little.)  An enumerated site
    outside the plates is listed too: :class:`GlobalShare` refuses it (its sum over values is taken over the whole
    batch, :math:`\\log \\sum_c p(c) \\prod_b p(x_b \\mid c)`, which does not split over micro-batches).

    A plate whose full size is the batch's (one that subsamples the rows it is given) is the batch's plate.

    :param traces: a guide trace and a model trace (probe traces of one batch).
    :param int batch: :math:`B`, the batch's number of examples.
    :param doubled: a function giving the same programs' traces on the batch with each row twice
        (:func:`~hybridpgm.infer.row_probe.probe_doubled`; ``None`` where they fail), called once, on the first
        site the size rule takes for the rows'; ``None``: the size rule alone.
    """
    names, factors = set(), set()
    others: tuple[poutine.Trace, ...] | None = None
    for trace in traces:
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site) or \
                    site["is_observed"] and not (site["infer"] or {}).get(GLOBAL_FACTOR):
                continue  # a plate's own site; an observed one (the batch's likelihood as one event, pyro.factor)
            if site["is_observed"]:
                factors.add(name)
            if all(batch not in (_size(frame.size), _size(frame.full_size)) for frame in site["cond_indep_stack"]) \
                    and batch not in tuple(getattr(site["value"], "shape", ())):  # not a latent of the rows
                names.add(name)
                continue
            if others is None:
                others = (doubled() if doubled is not None else None) or ()
            if any(_same_layout(site, other.nodes.get(name)) for other in others):  # its size is a coincidence
                names.add(name)
    return GlobalSites(names, factors & names)


class GlobalSites(frozenset):
    """The names of a model's global sites (a :class:`frozenset`), with ``factors``: those of them made by
    :func:`global_factor` (observed sites), for :func:`refuse_joint_weights`'s message."""

    def __new__(cls, names: Iterable[str] = (), factors: Iterable[str] = ()) -> "GlobalSites":
        sites = super().__new__(cls, names)
        sites.factors = frozenset(factors)
        return sites


def site_layout(site: dict) -> tuple:
    """What of a sample site follows the batch's rows: its plates (name, size, full size) and its value's shape.

    :param dict site: a sample site of a Pyro trace."""
    plates = tuple((frame.name, _size(frame.size), _size(frame.full_size)) for frame in site["cond_indep_stack"])
    return plates, tuple(getattr(site["value"], "shape", ()))


def _same_layout(site: dict, other: dict | None) -> bool:
    """Whether ``other`` (the site of that name on the rows twice over) is a sample site of ``site``'s layout."""
    return other is not None and other["type"] == "sample" and site_layout(other) == site_layout(site)


def _size(size) -> int | None:
    """A plate's size as an ``int`` (a one-element tensor under the JIT), ``None`` where it has none."""
    if isinstance(size, torch.Tensor):
        return int(size.item()) if size.numel() == 1 else None
    return size


class GlobalShare(Messenger):
    """Multiply the scale of the named sample sites by ``share`` (see the module docstring); entered around the
    ELBO's call, so that it handles the model's and the guide's sites alike.

    :raises ConfigError: a named site is enumerated (by :class:`~pyro.infer.TraceEnum_ELBO`'s or
        :class:`~pyro.infer.TraceTMC_ELBO`'s handler, inside this one): summed out over the whole batch.

    :param names: the global sites (:func:`sites_outside_batch_plates`).
    :param float share: the micro-batch's share of the update, :math:`m_i / (B R)`.
    """

    def __init__(self, names: frozenset[str], share: float) -> None:
        super().__init__()
        self.names, self.share = names, share

    def _process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg["name"] in self.names and not weighted_per_update_active():
            if "_enumerate_dim" in (msg.get("infer") or {}):  # summed out by Pyro's enumeration (run inside)
                raise enumerated_site_error(msg["name"], self.share)
            msg["scale"] = self.share * msg["scale"]


def enumerated_site_error(name: str, share: float) -> ConfigError:
    """The refusal of the enumerated global site ``name`` under a micro-batch of share ``share`` (raised by
    :class:`GlobalShare` at the step, and by :func:`~hybridpgm.infer.split_refusal.refuse_unsplit_estimates`
    before ``fit`` sets the run up)."""
    return ConfigError(
        f"the enumerated site {name!r} lies outside the batch's plate: its sum over its values is "
        "taken over the whole batch (log sum_c p(c) prod_b p(x_b | c)), which does not split over fit's "
        f"micro-batches (this one's share of the update: {share:g}, under accumulate > 1 or several "
        "ranks), so accumulate would train another model.  Use accumulate=1 on one process, or sample "
        "the site in the guide instead of enumerating it")


def share_scope(sites: frozenset[str] | None) -> contextlib.AbstractContextManager:
    """:class:`GlobalShare` of ``sites`` with the share of the micro-batch :func:`hybridpgm.fit` is running
    (:func:`~hybridpgm.train.update_scope.micro_batch_share`) when there are such sites and that share is not 1;
    else no handler (a batch that is not split, on one process, and calls outside ``fit`` keep the direct path:
    bit for bit the loss without this module).  For the objectives with ``per_example=True``; with
    ``per_example=False`` the loss is a full-data estimate and fit's weights :math:`m_i / B` already count a global
    term once per update.

    :param sites: the global sites (:func:`sites_outside_batch_plates`), ``None`` before the first probe."""
    share = micro_batch_share()
    if share is None or share == 1.0 or not sites:
        return contextlib.nullcontext()
    return GlobalShare(sites, share)


def refuse_joint_weights(scope: contextlib.AbstractContextManager, objective: str, estimator: str, *,
                         kind: str | None = None) -> None:
    """Refuse to share global sites out over micro-batches for an ``estimator`` whose importance weights hold them
    (see the module docstring: the batch's bound is no sum over its micro-batches).

    :param scope: what :func:`share_scope` returned (refused when it is a :class:`GlobalShare`).
    :param str objective: the objective's name, ``estimator`` its estimator's, for the message.
    :param str kind: what the sites are, for the message (``"site(s)"`` where some are observed: a ``pyro.factor``,
        a :func:`global_factor`); by default ``"site(s)"`` where ``scope``'s names hold a :func:`global_factor`
        (:class:`GlobalSites`), else ``"latent site(s)"``.
    :raises ConfigError: naming the global sites, the share and the fixes."""
    if not isinstance(scope, GlobalShare):
        return
    if kind is None:
        kind = "site(s)" if getattr(scope.names, "factors", None) else "latent site(s)"
    raise ConfigError(
        f"{objective} with {estimator}: the {kind} {sorted(scope.names)} lie outside the batch's plate, so "
        "the importance weights of the bound are taken over the whole batch (global and local latents jointly), "
        f"and the bound of a batch is no sum of the bounds of its parts: fit's micro-batch (share {scope.share:g} "
        "of the update, accumulate > 1 or several ranks) cannot train the bound of the unsplit batch.  Use "
        "accumulate=1 on one process, or an ELBO that splits over the rows (Trace_ELBO, the bound "
        "IWAE(num_particles=1) computes)")
