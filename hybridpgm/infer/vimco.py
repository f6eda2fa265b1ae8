"""VIMCO: the importance-weighted bound for discrete latents, with multi-sample baselines.

The importance-weighted bound [2] with :math:`K` particles per datapoint,

.. math:: \\mathcal L_K(x) = \\log \\hat I, \\qquad \\hat I = \\frac1K \\sum_{k=1}^K w_k, \\qquad
          w_k = \\frac{p_\\theta(x, h_k)}{q_\\phi(h_k \\mid x)},

cannot be differentiated through discrete :math:`h_k` (so
:class:`~hybridpgm.infer.IWAE` refuses them).  VIMCO [1] estimates its
gradient with the score function, giving each particle the learning signal
:math:`\\mathcal L_K - \\mathcal L_K^{(-k)}`, where the leave-one-out baseline
:math:`\\mathcal L_K^{(-k)}` replaces :math:`w_k` by the geometric mean of the
other weights:

.. math::

    \\nabla \\mathcal L_K \\approx \\sum_k \\left(\\mathcal L_K - \\mathcal L_K^{(-k)}\\right)
        \\nabla \\log q_\\phi(h_k \\mid x) + \\sum_k \\tilde w_k \\nabla \\log w_k,
    \\qquad \\log w_k^{(-k)} := \\frac1{K-1} \\sum_{j \\ne k} \\log w_j.

The baseline of particle :math:`k` depends only on the other particles, so the
estimator is unbiased for :math:`\\nabla\\,\\mathbb E[\\mathcal L_K]`; no
networks are learned.  Per-datapoint weights make it mini-batch correct
(:class:`~hybridpgm.infer.particle_elbo.ParticleELBO`).

The :math:`K` particles run in one pass under an outer ``pyro.plate`` (every sampled value carries a particle
dim in front): a program with stochastic control flow (``for i in range(int(n))`` on a sampled ``n``, a branch on
a sampled value) needs one particle at a time and is refused with an :class:`~hybridpgm.errors.ObjectiveError`
saying so (torch's error kept as its ``__cause__``).

References:

1. A. Mnih, D. J. Rezende, *Variational inference for Monte Carlo objectives*, ICML 2016.
2. Y. Burda, R. Grosse, R. Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from hybridpgm.checks import as_integer, check_player
from hybridpgm.errors import ConfigError
from hybridpgm.infer.model_guide_objective import ModelGuideObjective
from hybridpgm.infer.particle_elbo import ParticleELBO
from hybridpgm.options import Option

__all__ = ["VIMCO", "VIMCO_ELBO"]


def leave_one_out_bounds(log_w: torch.Tensor) -> torch.Tensor:
    """:math:`\\mathcal L_K^{(-k)}` for every particle :math:`k`.

    :param log_w: ``[K, ...]`` log-weights (``K >= 2``).
    :returns: ``[K, ...]``.
    """
    K = log_w.shape[0]
    geo = (log_w.sum(0, keepdim=True) - log_w) / (K - 1)  # [K, ...]: mean of the others
    m = log_w.unsqueeze(0).expand(K, *log_w.shape).clone()  # [k, j, ...]
    idx = torch.arange(K, device=log_w.device)
    m[idx, idx] = geo
    return torch.logsumexp(m, dim=1) - math.log(K)


def vimco_particles(num_particles: Any) -> int:
    """``num_particles`` as an ``int`` :math:`K \\geq 2` (integer scalars, NumPy's too, pass; bool and floats do not).

    :raises ConfigError: anything else (the leave-one-out baselines need two particles)."""
    n = as_integer(num_particles)
    if n is None or n < 2:
        raise ConfigError(f"VIMCO needs num_particles >= 2 for its leave-one-out baselines, got {num_particles!r}")
    return n


class VIMCO_ELBO(ParticleELBO):
    """VIMCO surrogate as a Pyro ELBO; ``differentiable_loss`` has the value
    :math:`-\\frac{N}{B}\\sum_b \\mathcal L_K(x_b)` and the VIMCO gradient.

    :param int num_particles: :math:`K \\geq 2`.
    :param max_plate_nesting: see :class:`~hybridpgm.infer.particle_elbo.ParticleELBO`.
    :param plate_name: the data plate; see :class:`~hybridpgm.infer.particle_elbo.ParticleELBO`.
    :raises ConfigError: ``num_particles`` is not an integer >= 2.
    """

    def __init__(self, num_particles: int = 5, max_plate_nesting: int | None = None, plate_name: str | None = None):
        super().__init__(vimco_particles(num_particles), max_plate_nesting=max_plate_nesting, plate_name=plate_name)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The VIMCO surrogate (0-d; value and gradient as in the class docstring).

        :param model: the Pyro model, called as ``model(*args, **kwargs)``.
        :param guide: the Pyro guide, called alike."""
        lw = self.log_weights(model, guide, *args, **kwargs)
        log_w = lw.log_p - lw.log_q  # samples detached: gradients only through the densities
        bound = torch.logsumexp(log_w, 0) - math.log(self.num_particles)  # [B]
        signal = (bound.unsqueeze(0) - leave_one_out_bounds(log_w)).detach()  # [K, B]
        surrogate = (signal * lw.log_q).sum()
        return -lw.scale * (bound.sum() + surrogate - surrogate.detach())


class VIMCO(ModelGuideObjective):
    """VIMCO as an objective of :func:`hybridpgm.fit`, one player ``"elbo"``.

    :param model: the Pyro model, called as ``model(*batch)``.
    :param guide: its guide, called the same way.
    :param int num_particles: :math:`K \\geq 2`.
    :param max_plate_nesting: see :class:`~hybridpgm.infer.particle_elbo.ParticleELBO`.
    :param plate_name: the data plate; see :class:`~hybridpgm.infer.particle_elbo.ParticleELBO`.
    :param options: the further options of :class:`~hybridpgm.infer.model_guide_objective.ModelGuideObjective`
        (``model_parameters``, ``guide_parameters``, ``model_kwargs``, ``module``, ``per_example``).
    :raises ConfigError: as :class:`VIMCO_ELBO` and :class:`~hybridpgm.infer.model_guide_objective.ModelGuideObjective`.
    """

    schedule = ["elbo"]

    def __init__(self, model: Callable, guide: Callable, num_particles: int = 5, *,
                 max_plate_nesting: int | None = None, plate_name: str | None = None, **options: Any):
        super().__init__(model, guide, **options)
        self.elbo = VIMCO_ELBO(num_particles, max_plate_nesting=max_plate_nesting, plate_name=plate_name)

    num_particles = Option(
        lambda self, value: vimco_particles(value),
        ":math:`K \\geq 2`, the particles per datapoint: ``elbo.num_particles``, validated as by the constructor.",
        owner="elbo")

    def players(self) -> dict[str, list[torch.nn.Parameter]]:
        """``"elbo"``: the model's and the guide's parameters."""
        return {"elbo": self.theta + self.phi}

    def loss(self, player: str, batch: Any) -> torch.Tensor:
        """:meth:`VIMCO_ELBO.differentiable_loss` on ``batch`` (0-d), divided by the batch size when ``per_example``.

        :param str player: ``"elbo"``.
        :param batch: the model's positional arguments (a tensor, or a tuple of them)."""
        check_player(player, ("elbo",), "VIMCO")
        args, size = self.batch_args(batch)
        self.check_per_example(args, size)  # per_example on a subsampled plate: ConfigError
        # the plate nesting, guessed on the first call, leaves the module's buffers alone (exact resume)
        self.elbo.plate_nesting(self.model, self.guide, args, self.model_kwargs, modules=(self.module,))
        loss = self.elbo.differentiable_loss(self.model, self.guide, *args, **self.model_kwargs)
        return loss / size if self.per_example else loss
