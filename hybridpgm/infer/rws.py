"""Reweighted wake-sleep that stays correct under mini-batching.

Reweighted wake-sleep [1] draws :math:`K` particles
:math:`h_{kb} \\sim q_\\phi(h \\mid x_b)` per datapoint, forms the normalized
importance weights

.. math::

    \\tilde w_{kb} = \\frac{w_{kb}}{\\sum_j w_{jb}}, \\qquad
    w_{kb} = \\frac{p_\\theta(x_b, h_{kb})}{q_\\phi(h_{kb} \\mid x_b)},

and follows

.. math::

    \\text{wake-}\\theta:\\ \\sum_k \\tilde w_{kb} \\nabla_\\theta \\log p_\\theta(x_b, h_{kb})
        = \\nabla_\\theta \\log \\tfrac1K \\textstyle\\sum_k w_{kb}, \\qquad
    \\text{wake-}\\phi:\\ \\sum_k \\tilde w_{kb} \\nabla_\\phi \\log q_\\phi(h_{kb} \\mid x_b),

optionally averaged with the sleep-:math:`\\phi` update of
:mod:`~hybridpgm.infer.wake_sleep`.  The wake-:math:`\\theta` step is an
unbiased gradient of the importance-weighted bound :math:`\\mathbb E\\,\\mathcal L_K`;
wake-:math:`\\phi` is a self-normalized (biased, consistent) estimate of the
gradient of :math:`-\\mathrm{KL}(p_\\theta(h \\mid x) \\,\\|\\, q_\\phi(h \\mid x))`.

**Mini-batches.**  Weights are normalized *per datapoint* from unscaled
log-densities (:class:`~hybridpgm.infer.particle_elbo.ParticleELBO`), and the
plate's :math:`N / B` is applied to the sum over the batch afterwards, so the
mini-batch loss is an unbiased estimate of the full-data loss.  Pyro's
:class:`pyro.infer.ReweightedWakeSleep` normalizes the weights of the whole
(scaled) batch jointly and therefore refuses mini-batches.

**Reported values.**  The losses have the gradients of the updates above; their values are these.  The
joint loss (:meth:`ReweightedWakeSleepELBO.differentiable_loss`, the ``"rws"`` player, what
:meth:`pyro.infer.SVI.step` returns) is ``theta + (phi - phi.detach())``, whose value is the negative
importance-weighted bound :math:`-\\mathcal L_K` (``theta``), the number :meth:`ReweightedWakeSleepELBO.loss`
(:meth:`pyro.infer.SVI.evaluate_loss`), VIMCO and IWAE report, and whose gradient is that of ``theta + phi``.
The :math:`\\phi` surrogate's value is no bound (see :class:`RWSLosses`); it is recorded only as the
``"sleep"`` player's loss of ``RWS(joint=False)``.  Pyro's :class:`pyro.infer.ReweightedWakeSleep` returns the
pair (wake-:math:`\\theta` loss, :math:`\\phi` loss) from both ``loss`` and ``loss_and_grads``, its first
the negative bound of the whole batch taken as one datapoint; here both return the one number
:math:`-\\mathcal L_K` (a sum of per-datapoint bounds), and :meth:`ReweightedWakeSleepELBO.losses` gives the
pair.  ``wake_phi=True, sleep_phi=True`` is Pyro's ``insomnia=0.5``.

**Vectorized particles.**  The :math:`K` particles (and the dreams) run in one pass under an outer
``pyro.plate``, so every sampled value carries a particle dim in front.  Programs with stochastic control flow
(``n = pyro.sample("n", Geometric(p))`` then ``for i in range(int(n))``, the setting of [2]) need one particle at
a time and are refused with an :class:`~hybridpgm.errors.ObjectiveError` saying so (torch's error kept as its
``__cause__``); Pyro's :class:`pyro.infer.ReweightedWakeSleep` with ``vectorize_particles=False`` runs them under
:class:`pyro.infer.SVI` (not in :func:`hybridpgm.fit`, which needs a differentiable loss).

References:

1. J. Bornschein, Y. Bengio, *Reweighted Wake-Sleep*, ICLR 2015.
2. T. A. Le, A. R. Kosiorek, N. Siddharth, Y. W. Teh, F. Wood, *Revisiting
   Reweighted Wake-Sleep for Models with Stochastic Control Flow*, UAI 2019.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import torch

from hybridpgm.checks import check_player, flag, positive_int
from hybridpgm.errors import ConfigError
from hybridpgm.infer.model_guide_objective import ModelGuideObjective
from hybridpgm.infer.particle_elbo import ParticleELBO
from hybridpgm.infer.wake_sleep import sleep_phi_loss
from hybridpgm.keyword_alias import keyword_only_soon
from hybridpgm.options import Option

__all__ = ["RWS", "RWSLosses", "ReweightedWakeSleepELBO"]


class RWSLosses(NamedTuple):
    """The two surrogate losses of reweighted wake-sleep (scalars, plate-scaled sums).

    :ivar torch.Tensor theta: :math:`-\\frac{N}{B}\\sum_b \\log \\frac1K \\sum_k w_{kb}`;
        its value is the negative importance-weighted bound :math:`-\\mathcal L_K` (its gradient reaches
        :math:`\\theta` only: :math:`\\log q` is detached).
    :ivar torch.Tensor phi: the wake-/sleep-:math:`\\phi` surrogate (gradient to :math:`\\phi` only), the
        average of those switched on: wake-:math:`\\phi`
        :math:`-\\frac{N}{B}\\sum_b \\sum_k \\tilde w_{kb} \\log q_\\phi(h_{kb} \\mid x_b)`, a self-normalized
        estimate of the cross-entropy :math:`\\mathbb E_{p_\\theta(h \\mid x)}[-\\log q_\\phi(h \\mid x)]`;
        sleep-:math:`\\phi` :math:`-\\log q_\\phi(h' \\mid x')` on dreams (:func:`sleep_phi_loss`).  Its value
        bounds nothing about :math:`\\log p(x)`: it is not comparable with ``theta`` or with other objectives.
    """

    theta: torch.Tensor
    phi: torch.Tensor

    def joint(self) -> torch.Tensor:
        """``theta + (phi - phi.detach())`` (0-d): the value of ``theta`` (:math:`-\\mathcal L_K`), the gradient
        of ``theta + phi`` (bit for bit: the detached term adds nothing to the backward pass)."""
        return self.theta + (self.phi - self.phi.detach())


class ReweightedWakeSleepELBO(ParticleELBO):
    """Mini-batch-correct reweighted wake-sleep as a Pyro ELBO.

    ``differentiable_loss`` has the gradient of ``theta + phi`` (they touch disjoint
    parameters: the guide's samples are detached and the weights in the
    :math:`\\phi` term are constants) and the value of ``theta``, the negative importance-weighted bound
    :math:`-\\mathcal L_K` (:meth:`RWSLosses.joint`), so it also drives plain
    :class:`pyro.infer.SVI`, whose ``step`` (``loss_and_grads``) and ``evaluate_loss`` (:meth:`loss`) then
    report the same quantity (equal on the same random numbers).

    :param int num_particles: :math:`K`.
    :param bool wake_phi: use the wake-:math:`\\phi` update.
    :param bool sleep_phi: use the sleep-:math:`\\phi` update (averaged with
        wake-:math:`\\phi` when both are on, as in [1]).
    :param int num_sleep_particles: dreams per datapoint (default :math:`K`).
    :param max_plate_nesting: see :class:`~hybridpgm.infer.particle_elbo.ParticleELBO`.
    :param plate_name: the data plate; see :class:`~hybridpgm.infer.particle_elbo.ParticleELBO`.
    :raises ConfigError: a particle count that is not a positive integer, ``wake_phi`` or ``sleep_phi``
        not ``True`` or ``False``, or neither of them on.
    """

    @keyword_only_soon("wake_phi", "sleep_phi", "num_sleep_particles", "max_plate_nesting", "plate_name")
    def __init__(self, num_particles: int = 5, *, wake_phi: bool = True, sleep_phi: bool = False,
                 num_sleep_particles: int | None = None, max_plate_nesting: int | None = None,
                 plate_name: str | None = None):
        super().__init__(num_particles, max_plate_nesting=max_plate_nesting, plate_name=plate_name)
        wake_phi = flag(wake_phi, f"{type(self).__name__} wake_phi")
        sleep_phi = flag(sleep_phi, f"{type(self).__name__} sleep_phi")
        if not (wake_phi or sleep_phi):
            raise ConfigError("RWS needs wake_phi=True, sleep_phi=True, or both")
        self.wake_phi = wake_phi
        self.sleep_phi = sleep_phi
        self.num_sleep_particles = num_sleep_particles

    #: the dreams per datapoint given explicitly (``None``: :attr:`num_particles`, read at each call)
    _num_sleep_particles: int | None = None

    @property
    def num_sleep_particles(self) -> int:
        """Dreams per datapoint of the sleep-:math:`\\phi` update: the value given, else :attr:`num_particles`
        as it is now (a later ``elbo.num_particles = 20`` changes both).  Assigning ``None`` follows
        :attr:`num_particles` again; anything else must be a positive integer (:class:`ConfigError`)."""
        return self.num_particles if self._num_sleep_particles is None else self._num_sleep_particles

    @num_sleep_particles.setter
    def num_sleep_particles(self, value: int | None) -> None:
        self._num_sleep_particles = None if value is None else \
            positive_int(value, f"{type(self).__name__} num_sleep_particles")

    def losses(self, model, guide, *args, **kwargs) -> RWSLosses:
        """Both surrogate losses on one set of particles (see :class:`RWSLosses`).

        :param model: the Pyro model, called as ``model(*args, **kwargs)``.
        :param guide: the Pyro guide, called alike."""
        lw = self.log_weights(model, guide, *args, **kwargs)
        log_w = lw.log_p - lw.log_q.detach()
        theta = -lw.scale * (torch.logsumexp(log_w, 0) - math.log(self.num_particles)).sum()
        terms = []
        if self.wake_phi:
            weights = torch.softmax((lw.log_p - lw.log_q).detach(), dim=0)
            terms.append(-lw.scale * (weights * lw.log_q).sum())
        if self.sleep_phi:
            terms.append(sleep_phi_loss(self, model, guide, args, kwargs, self.num_sleep_particles))
        phi = sum(terms) / len(terms)
        return RWSLosses(theta, phi)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """:meth:`RWSLosses.joint` of :meth:`losses` (0-d): the value :math:`-\\mathcal L_K` (``theta``), the
        gradient of ``theta + phi``.

        :param model: the Pyro model, called as ``model(*args, **kwargs)``.
        :param guide: the Pyro guide, called alike."""
        return self.losses(model, guide, *args, **kwargs).joint()


class RWS(ModelGuideObjective):
    """Reweighted wake-sleep as an objective of :func:`hybridpgm.fit`.

    By default there is one player, ``"rws"``, updating :math:`\\theta` and
    :math:`\\phi` from the same particles (one forward pass per step, as in
    [1]).  With ``joint=False`` the players are ``"wake"`` (the model's
    :math:`\\theta`, the wake-:math:`\\theta` loss) and ``"sleep"`` (the guide's
    :math:`\\phi`, the wake-/sleep-:math:`\\phi` loss), named as in
    :class:`~hybridpgm.infer.WakeSleep`, each with fresh particles and its own optimizer.  With all of
    :math:`\\theta` frozen (``requires_grad_(False)``), :func:`hybridpgm.fit` trains :math:`\\phi` alone: the
    ``"wake"`` loss is recorded but that player is not stepped (the joint player trains the unfrozen part).

    Recorded losses (``fit(...).history.loss``, per example by default): ``"rws"`` and ``"wake"`` record the
    negative importance-weighted bound :math:`-\\mathcal L_K` (comparable with VIMCO's and IWAE's ``"elbo"``
    loss, and an upper bound on :math:`-\\log p(x)` in expectation); ``"sleep"`` records the :math:`\\phi`
    surrogate of :class:`RWSLosses`, which is no bound and not comparable with any other objective's loss.

    :param model: the Pyro model, called as ``model(*batch)``.
    :param guide: the Pyro guide, called as ``guide(*batch)``.
    :param int num_particles: :math:`K` (5 in [1]'s experiments).
    :param bool wake_phi: see :class:`ReweightedWakeSleepELBO`.
    :param bool sleep_phi: see :class:`ReweightedWakeSleepELBO`.
    :param int num_sleep_particles: dreams per datapoint of the sleep-:math:`\\phi` update (default
        :math:`K`); see :class:`ReweightedWakeSleepELBO`.
    :param bool joint: one player instead of two.
    :param max_plate_nesting: see :class:`~hybridpgm.infer.particle_elbo.ParticleELBO`.
    :param plate_name: the data plate; see :class:`~hybridpgm.infer.particle_elbo.ParticleELBO`.
    :param options: the options of :class:`ModelGuideObjective` (``model_kwargs``, ``per_example``, ...).
    :raises ConfigError: as :class:`ReweightedWakeSleepELBO`; also ``joint`` (or ``per_example``) not
        ``True`` or ``False``.

    >>> from hybridpgm.generative import SigmoidBeliefNet
    >>> sbn = SigmoidBeliefNet([64, 32])
    >>> objective = RWS(sbn.model, sbn.guide, num_particles=5)
    >>> loss = objective.loss("rws", torch.bernoulli(torch.full((8, 64), 0.5)))
    """

    @keyword_only_soon("wake_phi", "sleep_phi")
    def __init__(self, model: Callable, guide: Callable, num_particles: int = 5, *, wake_phi: bool = True,
                 sleep_phi: bool = False, num_sleep_particles: int | None = None, joint: bool = True,
                 max_plate_nesting: int | None = None, plate_name: str | None = None, **options: Any):
        super().__init__(model, guide, **options)
        wake_phi, sleep_phi = flag(wake_phi, "RWS wake_phi"), flag(sleep_phi, "RWS sleep_phi")
        self.joint = joint
        self.elbo = ReweightedWakeSleepELBO(num_particles, wake_phi=wake_phi, sleep_phi=sleep_phi,
                                            num_sleep_particles=num_sleep_particles,
                                            max_plate_nesting=max_plate_nesting, plate_name=plate_name)

    @property
    def joint(self) -> bool:
        """One player ``"rws"`` (``True``) or ``"wake"`` and ``"sleep"``; :attr:`schedule` and :meth:`players`
        follow an assignment (``True`` or ``False``, else :class:`ConfigError`)."""
        return self._joint

    @joint.setter
    def joint(self, value: bool) -> None:
        self._joint = flag(value, "RWS joint")

    @property
    def schedule(self) -> list[str]:
        """The players in the order :func:`hybridpgm.fit` steps them, from :attr:`joint`: ``["rws"]`` or
        ``["wake", "sleep"]``."""
        return ["rws"] if self.joint else ["wake", "sleep"]

    num_particles = Option(
        lambda self, value: positive_int(value, "RWS num_particles"),
        ":math:`K`, the particles per datapoint: ``elbo.num_particles``, validated as by the constructor.",
        owner="elbo")
    num_sleep_particles = Option(
        None, "Dreams per datapoint (``elbo.num_sleep_particles``; ``None``: :attr:`num_particles`).", owner="elbo")
    wake_phi = Option(
        lambda self, value: _phi_flag(self, value, "sleep_phi"),
        "Use the wake-:math:`\\phi` update (``elbo.wake_phi``; it or :attr:`sleep_phi` must stay on).", owner="elbo")
    sleep_phi = Option(
        lambda self, value: _phi_flag(self, value, "wake_phi"),
        "Use the sleep-:math:`\\phi` update (``elbo.sleep_phi``; it or :attr:`wake_phi` must stay on).", owner="elbo")

    def players(self) -> dict[str, list[torch.nn.Parameter]]:
        """``"rws"``: :math:`\\theta` and :math:`\\phi`; with ``joint=False``, ``"wake"``: :math:`\\theta` and
        ``"sleep"``: :math:`\\phi`."""
        return {"rws": self.theta + self.phi} if self.joint else {"wake": self.theta, "sleep": self.phi}

    def settings(self) -> dict[str, Any]:
        """The ELBO's settings (:meth:`ModelGuideObjective.settings`) and ``joint``."""
        return {**super().settings(), "joint": self.joint}

    def loss(self, player: str, batch: Any) -> torch.Tensor:
        """The player's loss of :meth:`ReweightedWakeSleepELBO.losses` on ``batch`` (0-d; ``"rws"``:
        :meth:`RWSLosses.joint`, valued ``theta`` with the gradient of ``theta + phi``; ``"wake"``: ``theta``;
        ``"sleep"``: ``phi``), divided by the batch size when ``per_example``.

        :param str player: one of :meth:`players`.
        :param batch: the model's positional arguments (a tensor, or a tuple of them)."""
        check_player(player, ("rws",) if self.joint else ("wake", "sleep"), "RWS")
        args, size = self.batch_args(batch)
        self.check_per_example(args, size)  # per_example on a subsampled plate: ConfigError
        # the plate nesting, guessed on the first call, leaves the module's buffers alone (exact resume)
        self.elbo.plate_nesting(self.model, self.guide, args, self.model_kwargs, modules=(self.module,))
        losses = self.elbo.losses(self.model, self.guide, *args, **self.model_kwargs)
        loss = {"wake": losses.theta, "sleep": losses.phi, "rws": losses.joint()}[player]
        return loss / size if self.per_example else loss


def _phi_flag(objective: RWS, value: bool, other: str) -> bool:
    """``value`` for ``wake_phi`` or ``sleep_phi`` of ``objective`` checked as the constructor checks it: ``True``
    or ``False``, and not both off (the ``other`` flag is the ELBO's current one)."""
    value = flag(value, f"RWS {'wake_phi' if other == 'sleep_phi' else 'sleep_phi'}")
    if not (value or getattr(objective.elbo, other)):
        raise ConfigError("RWS needs wake_phi=True, sleep_phi=True, or both")
    return value
