"""The constructor options of :class:`~hybridpgm.gp.sv_deep_kernel.SVDeepKernelGP` as attributes, each kept in one
place and in step with what :func:`hybridpgm.save` records (:class:`hybridpgm.options.Option`).

* ``num_data`` (:math:`N`) lives in the likelihood, whose ``sample_target`` reads it for the :math:`N / B` scale of
  the data plate; the objective's :math:`1 / N` reads it too;
* ``name_prefix`` names the Pyro sites: ``<prefix>.u`` (sampled by the GP, from the model's value) and
  ``<prefix>.f`` / ``<prefix>.y`` (sampled by the likelihood, from its own ``name_prefix``): setting the model's
  sets the likelihood's, so that the three sites are renamed together;
* ``beta``, the weight of the KL term, read at each call (a KL anneal from 0 sets it between steps);
* ``num_features`` is fixed: it decides the shapes of the inducing points and of the kernel.

Assigning one of the first three runs the constructor's check (a refused value raises the constructor's exception
and leaves the old value) and records the value, so that :func:`hybridpgm.load` rebuilds the GP with it.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from hybridpgm.checks import PYRO_MODULE_SEPARATOR, positive_int, positive_real
from hybridpgm.errors import ConfigError, ModelSpecError
from hybridpgm.gp.sv_objective import MaskSite
from hybridpgm.options import PARAMETERS_BUILT, Option

__all__ = ["SVOptions"]


def _name_prefix(gp: Any, value: Any) -> str:
    """``value`` checked as the GP's ``name_prefix`` (also its ``pyro.module`` name), and given to the likelihood."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"SVDeepKernelGP name_prefix must be a non-empty string, got {value!r}")
    if PYRO_MODULE_SEPARATOR in value:  # pyro.module(name_prefix, gp) would assert at the first step
        raise ConfigError(f"SVDeepKernelGP name_prefix={value!r:.60} holds '$$$', Pyro's separator between a module's "
                          f"name and its parameters' names; use another separator (e.g. '_')")
    likelihood = gp.__dict__.get("_modules", {}).get("likelihood")  # none yet in the constructor, which copies it
    if likelihood is not None:
        likelihood.name_prefix = value
    return value


class SVOptions:
    """The options of an :class:`~hybridpgm.gp.sv_deep_kernel.SVDeepKernelGP` kept as attributes (a mixin; see the
    module docstring)."""

    num_features = Option(fixed=PARAMETERS_BUILT, doc="""``F``, the feature dimension (fixed: it decides the shapes
        of the inducing points and of the kernel).""")
    name_prefix = Option(_name_prefix, """Prefix of the Pyro sites (``<prefix>.u``,
        ``<prefix>.f``, ``<prefix>.y``).  Assigning checks the value as the constructor does, sets the likelihood's
        ``name_prefix`` (its ``f`` and ``y`` sites) too, and :func:`hybridpgm.save` records it.

        :raises ConfigError: (on assignment) a value that is not a non-empty string, or one holding ``"$$$"`` (Pyro's
            separator between a module's name and its parameters' names).""")
    beta = Option(
        lambda gp, value: positive_real(value, "SVDeepKernelGP beta (the KL weight)", allow_zero=True),
        """Weight of the KL term (1 is exact variational inference, 0 drops it), read at each call.  Assigning checks
        the value as the constructor does and :func:`hybridpgm.save` records it.

        :raises ConfigError: (on assignment) a value that is not a finite number ``>= 0``.""")

    num_data = Option(
        lambda gp, value: positive_int(value, "SVDeepKernelGP num_data (training examples)", error=ModelSpecError),
        """``N``, the number of training examples, kept in one place: the likelihood's ``num_data``, which
        GPyTorch's ``sample_target`` reads for the ``N / B`` scale of the data plate and the objective's loss for
        its ``1 / N``.  Setting it checks the value and updates both, and the constructor argument
        :func:`hybridpgm.save` records.

        :raises ModelSpecError: (on assignment) a value that is not a positive integer.""", owner="likelihood")

    @contextlib.contextmanager
    def _kl_weight(self) -> Iterator[float]:
        """The ``beta`` to give GPyTorch's ``pyro_model``/``pyro_guide``: :attr:`beta`, or for ``beta = 0`` a scale
        of 1 with the ``<prefix>.u`` site masked (its KL term dropped; ``poutine.scale`` refuses 0)."""
        if self.beta != 0:
            yield self.beta
            return
        with MaskSite(f"{self.name_prefix}.u"):
            yield 1.0
