r"""Refuse, when an objective is made, a Pyro ELBO whose ``differentiable_loss`` is no loss :func:`hybridpgm.fit` can
train.

:class:`~pyro.infer.TraceTailAdaptive_ELBO` (the tail-adaptive :math:`f`-divergence of Wang, Liu and Liu, NeurIPS
2018) computes the gradient of its objective only: each particle's loss is ``float("inf")`` and
``differentiable_loss`` returns :math:`\infty + (s - \operatorname{sg}(s))` for a surrogate :math:`s`.  Plain
:class:`pyro.infer.SVI` steps on the surrogate's gradient and reports a loss of ``inf``; ``fit`` checks every step's
loss and stopped at step 0 with :class:`~hybridpgm.errors.TrainingDivergedError` (``skip_nonfinite=True`` skipped
every step: nothing trained).  It is refused with a :class:`~hybridpgm.errors.ConfigError` naming the ELBO, why,
and what to use instead.
"""

from __future__ import annotations

from typing import Any

from pyro.infer import TraceTailAdaptive_ELBO

from hybridpgm.errors import ConfigError

__all__ = ["refuse_unfit_elbo"]


def refuse_unfit_elbo(elbo: Any, objective: str) -> None:
    """Raise where ``fit`` cannot train ``elbo`` (see the module docstring); else nothing.

    :param elbo: the objective's ELBO.
    :param str objective: the objective's name for the message (``"SVIObjective"``).
    :raises ConfigError: ``elbo`` is a :class:`~pyro.infer.TraceTailAdaptive_ELBO` (or a subclass)."""
    if isinstance(elbo, TraceTailAdaptive_ELBO):
        raise ConfigError(
            f"{objective}: {type(elbo).__name__} computes only the gradient of the tail-adaptive f-divergence, not "
            "the objective itself (Pyro's differentiable_loss is inf plus a surrogate), so fit, which checks that "
            "every step's loss is finite, cannot train it (every step would be non-finite).  Train it with "
            "pyro.infer.SVI (which reports its loss as inf), or give fit an ELBO with a finite loss: "
            "RenyiELBO(alpha=..., num_particles=...) for another mass-covering divergence, IWAE, or Trace_ELBO")
