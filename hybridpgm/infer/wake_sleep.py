"""The wake-sleep algorithm for Helmholtz machines.

Wake-sleep [1] trains a generative model :math:`p_\\theta(x, h)` and a
recognition model :math:`q_\\phi(h \\mid x)` with two alternating phases:

* **wake** -- recognise real data, :math:`h \\sim q_\\phi(h \\mid x)`, and make the
  generative model reconstruct it:

  .. math:: \\Delta\\theta \\propto \\nabla_\\theta \\log p_\\theta(x, h),

  an unbiased gradient of the ELBO with respect to :math:`\\theta`;
* **sleep** -- dream :math:`(x', h') \\sim p_\\theta(x, h)` and make the
  recognition model recover the causes of the dream:

  .. math:: \\Delta\\phi \\propto \\nabla_\\phi \\log q_\\phi(h' \\mid x'),

  which minimises :math:`\\mathrm{KL}(p_\\theta(h \\mid x) \\,\\|\\, q_\\phi(h \\mid x))`
  averaged over *dreamed* :math:`x` -- not the ELBO, and not on the data.

:class:`WakeSleepELBO` computes both surrogate losses for any Pyro model/guide
pair whose model has exactly one observed site (the guide's first argument);
:class:`WakeSleep` exposes them to :func:`hybridpgm.fit` as the players
``"wake"`` (:math:`\\theta`) and ``"sleep"`` (:math:`\\phi`).

**Reported values.**  The wake loss has the gradient of :math:`-\\log p_\\theta(x, h)` but the value of the
negative ELBO estimate :math:`-\\log p_\\theta(x, h) + \\log q_\\phi(h \\mid x)` on the same samples (the
:math:`\\log q` term is added detached), so the ``"wake"`` player records :math:`-\\text{ELBO}`, the number
NVIL and :class:`pyro.infer.Trace_ELBO` report.  :class:`WakeSleepELBO`'s joint loss (what
:meth:`pyro.infer.SVI.step` returns) has that value too, and so has :meth:`WakeSleepELBO.loss`
(:meth:`pyro.infer.SVI.evaluate_loss`).  The sleep loss's value is a surrogate with no bound meaning: a
Monte Carlo estimate of the cross-entropy :math:`\\mathbb E_{p_\\theta(x, h)}[-\\log q_\\phi(h \\mid x)]` on
dreams, not comparable with the wake loss or with any other objective's loss.

References:

1. G. E. Hinton, P. Dayan, B. J. Frey, R. M. Neal, *The wake-sleep algorithm for
   unsupervised neural networks*, Science 268, 1995.
2. P. Dayan, G. E. Hinton, R. M. Neal, R. S. Zemel, *The Helmholtz machine*,
   Neural Computation 7, 1995.
"""

from __future__ import annotations

from typing import Any, Callable

import pyro.poutine as poutine
import torch
from pyro.poutine.util import prune_subsample_sites

from hybridpgm.checks import check_player, positive_int
from hybridpgm.errors import ObjectiveError
from hybridpgm.infer.model_guide_objective import ModelGuideObjective
from hybridpgm.infer.particle_elbo import ParticleELBO
from hybridpgm.infer.particle_probe import vectorized_pass
from hybridpgm.options import Option

__all__ = ["WakeSleep", "WakeSleepELBO", "sleep_phi_loss"]

#: the title of the SBN guide (``docs/sbn.md`` in the source tree, not in a wheel), named in messages so that an
#: installed user can find the page in the documentation
_SBN_GUIDE = "Sigmoid belief nets, Helmholtz machines and the wake-sleep family"


def sleep_phi_loss(estimator: ParticleELBO, model, guide, args, kwargs, num_particles: int = 1) -> torch.Tensor:
    """Sleep-phase loss :math:`-\\sum \\log q_\\phi(h' \\mid x')` on dreams from the model.

    The model is run with its observed site unconditioned
    (``poutine.uncondition``), so it dreams a batch of the same size as the
    real one (``num_particles`` dreams per datapoint); the guide is then
    replayed on the dreamed latents with the dreamed observation as its first
    argument.  The loss carries the data plate's scale and is divided by
    ``num_particles``.

    :raises ObjectiveError: when the model does not have exactly one observed
        site (a sequential data plate, one observed site per iteration, is named), or the guide samples a site the
        model does not have, or the programs use a sampled value as one number (stochastic control flow: the
        dreams run in one vectorized pass).
    """
    nesting = estimator.plate_nesting(model, guide, args, kwargs)
    wrap = estimator.particle_plate(num_particles, nesting)
    with vectorized_pass(type(estimator).__name__, num_particles, nesting), poutine.block():
        model_trace = poutine.trace(wrap(poutine.uncondition(model))).get_trace(*args, **kwargs)
    model_trace.detach_()
    observed = [name for name, site in model_trace.nodes.items()
                if site["type"] == "sample" and site["infer"].get("was_observed")]
    if len(observed) != 1:
        loops = sorted({f.name for name in observed for f in model_trace.nodes[name]["cond_indep_stack"]
                        if not f.vectorized})
        raise ObjectiveError(
            f"the sleep phase needs a model with exactly one observed site (passed to the guide as its "
            f"first argument); found {observed}" + (
                f", one per iteration of the sequential plate(s) {loops} (for i in pyro.plate(...)): the sleep "
                "phase passes one observed value to the guide, so it needs the observations in one site (a "
                "vectorized plate, with pyro.plate(...):); the wake phases take such a program (RWS with "
                "sleep_phi=False)" if loops else "")
        )
    dream = model_trace.nodes[observed[0]]["value"]
    guide_args = (dream,) + tuple(args[1:])
    with vectorized_pass(type(estimator).__name__, num_particles, nesting):
        guide_trace = poutine.trace(poutine.replay(wrap(guide), trace=model_trace)).get_trace(*guide_args, **kwargs)
    _check_guide_plates(model_trace, guide_trace, observed[0], dream)
    guide_trace = prune_subsample_sites(guide_trace)
    latent = {n for n, s in model_trace.nodes.items() if s["type"] == "sample" and n not in observed}
    missing = [n for n, s in guide_trace.nodes.items()
               if s["type"] == "sample" and not s["is_observed"] and n not in latent]
    auxiliary = [n for n in missing if guide_trace.nodes[n]["infer"].get("is_auxiliary")]
    if auxiliary:  # a Pyro autoguide's unconstrained latents: drawn afresh, not replayed from the dreams
        raise ObjectiveError(f"the sleep phase cannot score the guide's auxiliary site(s) {auxiliary} (a Pyro "
                             "autoguide's, such as AutoNormal's): it replays the guide on the model's dreams, which "
                             "hold only the model's latent sites; use a guide that samples the model's latent sites "
                             "themselves (or RWS with wake_phi only)")
    if missing:
        raise ObjectiveError(f"guide sites {missing} have no counterpart among the model's latent sites "
                             f"{sorted(latent)}")
    guide_trace.compute_log_prob()
    return -guide_trace.log_prob_sum() / num_particles


def _plate_sizes(trace) -> dict[str, tuple[int, int]]:
    """``{plate name: (full size, subsample size)}`` over the vectorised plates of ``trace``'s sample sites."""
    sizes = {}
    for site in trace.nodes.values():
        if site["type"] == "sample":
            for frame in site["cond_indep_stack"]:
                if frame.vectorized:
                    sizes[frame.name] = (frame.size if frame.full_size is None else frame.full_size, frame.size)
    return sizes


def _check_guide_plates(model_trace, guide_trace, observed: str, dream: torch.Tensor) -> None:
    """Refuse a guide whose plate is not the size of the model's plate of the same name on the dreams.

    The guide gets the dreams with the sleep particles in front, :math:`[K, B, \\dots]` (even for
    :math:`K = 1`).  A guide that sizes its data plate by ``x.shape[0]`` makes a plate of size :math:`K`
    over the :math:`B` replayed rows, which Pyro takes for a subsample of scale :math:`K / B`: the sleep
    loss would come out :math:`B / K` times too small, silently.

    :raises ObjectiveError: naming the plate, the guide's size, the dreams' rows and the fix."""
    model_sizes = _plate_sizes(model_trace)
    for name, (size, _) in _plate_sizes(guide_trace).items():
        if name not in model_sizes or model_sizes[name][0] == size:
            continue
        full, rows = model_sizes[name]
        drawn = "" if rows == full else f", {rows} of them in this batch"
        raise ObjectiveError(
            f"the sleep phase's guide has plate {name!r} of size {size}, but the model's plate {name!r} holds "
            f"{full} rows of the dreams of {observed!r} (shape {tuple(dream.shape)}{drawn}): the "
            f"guide gets the dreams as its first argument x with the sleep particles in front ([K, B, ...], even "
            f"for K = 1), so a plate sized by x.shape[0] takes the B rows for a subsample and scales the sleep loss "
            f"by {size}/{full}; size the guide's plate by x.shape[-2] (the guide must accept [..., B, D] inputs: "
            f"see \"Objectives\" in the guide \"{_SBN_GUIDE}\", docs/sbn.md in the source tree)")


class WakeSleepELBO(ParticleELBO):
    """Surrogate losses of wake-sleep as a Pyro ELBO.

    ``differentiable_loss`` has the gradient of ``wake + sleep``; the two terms touch
    disjoint parameters (the wake term detaches the guide's samples and :math:`\\log q`, the sleep
    term the model's dreams), so one backward pass gives both updates and the
    class also works with plain :class:`pyro.infer.SVI`.  Its value is the wake loss's, the negative ELBO
    estimate (``wake + (sleep - sleep.detach())``), and :meth:`loss` returns the same quantity, so
    ``SVI.step`` (``loss_and_grads``) and ``SVI.evaluate_loss`` report one number (equal on the same random
    numbers).  Each is :math:`-\\frac{N}{B}\\sum_b \\frac1K \\sum_k \\log w_{kb}`: with ``num_particles``
    :math:`K > 1` the ELBO averaged over :math:`K` samples, not the bound :math:`\\mathcal L_K` that
    :class:`~hybridpgm.infer.particle_elbo.ParticleELBO`'s ``loss`` computes.

    :param int num_particles: wake samples per datapoint.
    :param int num_sleep_particles: dreams per datapoint.
    :param max_plate_nesting: see :class:`~hybridpgm.infer.particle_elbo.ParticleELBO`.
    :param plate_name: the data plate; see :class:`~hybridpgm.infer.particle_elbo.ParticleELBO`.
    :raises ConfigError: a particle count that is not a positive integer.
    """

    def __init__(self, num_particles: int = 1, num_sleep_particles: int = 1, max_plate_nesting: int | None = None,
                 plate_name: str | None = None):
        super().__init__(num_particles, max_plate_nesting=max_plate_nesting, plate_name=plate_name)
        self.num_sleep_particles = positive_int(num_sleep_particles, "WakeSleepELBO num_sleep_particles")

    def wake_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """Wake loss (0-d): the gradient of :math:`-\\frac{N}{B}\\sum_b \\frac1K \\sum_k \\log p_\\theta(x_b,
        h_{kb})` with :math:`h \\sim q_\\phi` detached (to :math:`\\theta` only), and the value of the negative
        ELBO estimate :math:`-\\frac{N}{B}\\sum_b \\frac1K \\sum_k [\\log p_\\theta(x_b, h_{kb}) - \\log
        q_\\phi(h_{kb} \\mid x_b)]` on the same samples (the :math:`\\log q` term enters detached).

        :param model: the Pyro model, called as ``model(*args, **kwargs)``.
        :param guide: the Pyro guide, called alike."""
        lw = self.log_weights(model, guide, *args, **kwargs)
        surrogate = -lw.scale * lw.log_p.mean(0).sum()
        return _negative_elbo(lw).detach() + (surrogate - surrogate.detach())

    def loss(self, model, guide, *args, **kwargs) -> float:
        """The value of :meth:`differentiable_loss` without its graph or the sleep phase: the negative ELBO
        estimate :math:`-\\frac{N}{B}\\sum_b \\frac1K \\sum_k \\log w_{kb}` (a float; what
        :meth:`pyro.infer.SVI.evaluate_loss` returns).

        :param model: the Pyro model, called as ``model(*args, **kwargs)``.
        :param guide: the Pyro guide, called alike."""
        with torch.no_grad():
            return _negative_elbo(self.log_weights(model, guide, *args, **kwargs)).item()

    def sleep_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The sleep loss of :func:`sleep_phi_loss` on ``num_sleep_particles`` dreams per datapoint (0-d).

        :param model: the Pyro model, called as ``model(*args, **kwargs)`` (its observed site unconditioned).
        :param guide: the Pyro guide, replayed on the dreams."""
        return sleep_phi_loss(self, model, guide, args, kwargs, self.num_sleep_particles)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """:meth:`wake_loss` ``+`` :meth:`sleep_loss` in gradient (one backward pass gives both updates), the
        wake loss (the negative ELBO estimate) in value: ``wake + (sleep - sleep.detach())`` (0-d).

        :param model: the Pyro model, called as ``model(*args, **kwargs)``.
        :param guide: the Pyro guide, called alike."""
        wake = self.wake_loss(model, guide, *args, **kwargs)
        sleep = self.sleep_loss(model, guide, *args, **kwargs)
        return wake + (sleep - sleep.detach())


def _negative_elbo(lw) -> torch.Tensor:
    """:math:`-\\frac{N}{B}\\sum_b \\frac1K \\sum_k (\\log p_{kb} - \\log q_{kb})` of
    :class:`~hybridpgm.infer.particle_elbo.LogWeights` ``lw`` (0-d, with the graph of both terms)."""
    return -lw.scale * (lw.log_p - lw.log_q).mean(0).sum()


class WakeSleep(ModelGuideObjective):
    """Classic wake-sleep as an objective of :func:`hybridpgm.fit`.

    Players: ``"wake"`` (the model's parameters :math:`\\theta`, loss
    :meth:`WakeSleepELBO.wake_loss`) then ``"sleep"`` (the guide's parameters
    :math:`\\phi`, loss :meth:`WakeSleepELBO.sleep_loss`), each divided by the
    batch size when ``per_example`` (see :class:`ModelGuideObjective`).  The ``"wake"`` player records the
    negative ELBO (comparable with NVIL's ``"elbo"`` loss); the ``"sleep"`` player records the sleep
    surrogate :math:`-\\log q_\\phi(h' \\mid x')` on dreams, which bounds nothing and is not comparable with
    any other objective's loss.

    :param model: the Pyro model, called as ``model(*batch)``.
    :param guide: the Pyro guide, called as ``guide(*batch)``.
    :param int num_particles: wake samples per datapoint (default ``1``).
    :param int num_sleep_particles: dreams per datapoint (default ``1``).
    :param max_plate_nesting: as for :class:`~hybridpgm.infer.particle_elbo.ParticleELBO` (``None``: guessed).
    :param str plate_name: the data plate, as for :class:`~hybridpgm.infer.particle_elbo.ParticleELBO`.
    :param options: the options of :class:`ModelGuideObjective` (``model_kwargs``, ``per_example``, ...).
    :raises ConfigError: as :class:`WakeSleepELBO` and :class:`ModelGuideObjective`.

    With all of :math:`\\theta` frozen (``requires_grad_(False)``), :func:`hybridpgm.fit` trains the recognition
    network alone: it computes the ``"wake"`` loss for the history but does not step that player
    (:meth:`~hybridpgm.train.player_step.Player.update`), and the sleep phase dreams from the fixed model.

    >>> from hybridpgm.generative import SigmoidBeliefNet
    >>> sbn = SigmoidBeliefNet([64, 32, 16])
    >>> objective = WakeSleep(sbn.model, sbn.guide)
    >>> sorted(objective.players())
    ['sleep', 'wake']
    """

    schedule = ["wake", "sleep"]

    def __init__(self, model: Callable, guide: Callable, num_particles: int = 1, num_sleep_particles: int = 1, *,
                 max_plate_nesting: int | None = None, plate_name: str | None = None, **options: Any):
        super().__init__(model, guide, **options)
        self.elbo = WakeSleepELBO(num_particles, num_sleep_particles, max_plate_nesting=max_plate_nesting,
                                  plate_name=plate_name)

    num_particles = Option(
        lambda self, value: positive_int(value, "WakeSleep num_particles"),
        "Wake samples per datapoint: ``elbo.num_particles``, validated as by the constructor.", owner="elbo")
    num_sleep_particles = Option(
        lambda self, value: positive_int(value, "WakeSleep num_sleep_particles"),
        "Dreams per datapoint: ``elbo.num_sleep_particles``, validated as by the constructor.", owner="elbo")

    def players(self) -> dict[str, list[torch.nn.Parameter]]:
        """``"wake"``: the model's parameters :math:`\\theta`; ``"sleep"``: the guide's :math:`\\phi`."""
        return {"wake": self.theta, "sleep": self.phi}

    def loss(self, player: str, batch: Any) -> torch.Tensor:
        """The player's loss on ``batch`` (0-d), divided by the batch size when ``per_example``.

        :param str player: ``"wake"`` (:meth:`WakeSleepELBO.wake_loss`) or ``"sleep"``
            (:meth:`WakeSleepELBO.sleep_loss`).
        :param batch: the model's positional arguments (a tensor, or a tuple of them)."""
        check_player(player, ("wake", "sleep"), "WakeSleep")
        args, size = self.batch_args(batch)
        self.check_per_example(args, size)  # per_example on a subsampled plate: ConfigError
        # the plate nesting, guessed on the first call, leaves the module's buffers alone (exact resume)
        self.elbo.plate_nesting(self.model, self.guide, args, self.model_kwargs, modules=(self.module,))
        if player == "wake":
            loss = self.elbo.wake_loss(self.model, self.guide, *args, **self.model_kwargs)
        else:
            loss = self.elbo.sleep_loss(self.model, self.guide, *args, **self.model_kwargs)
        return loss / size if self.per_example else loss
