"""The model with its data removed, for the posterior predictive of :func:`~hybridpgm.diagnostics.from_pyro_svi`
and :func:`~hybridpgm.diagnostics.from_mcmc`: :func:`unconditioned` and the draw-by-draw replicates of
:func:`predict_per_draw`.

A replicate :math:`\\tilde y_s \\sim p(y \\mid \\theta_s)` comes from a run of the model with the draw
:math:`\\theta_s` held and its observed sites drawn in place of the data.  :func:`pyro.poutine.uncondition`
draws *every* observed site, the ``pyro.deterministic`` ones included, from their distribution
``Delta(value, event_dim)``.  Pyro's default ``event_dim`` is ``value.dim()``: a deterministic site inside a
plate, ``pyro.deterministic("mu2", 2 * mu)`` in ``pyro.plate("data", N)`` with an ``N``-shaped value, then has a
``Delta`` of batch shape ``()`` and event shape ``N``, which the plate broadcasts to batch shape ``N``: its
sample is ``N x N``, and so is every replicate that reads it.  :func:`unconditioned` leaves the deterministic
sites observed, at the value the model computes from the draw.  A ``Delta`` draws no random number and its
sample is its value, so where Pyro's uncondition gave the right shape this changes no value and no random
number: the replicates are the same, bit for bit.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from pyro.infer import Predictive
from pyro.poutine.uncondition_messenger import UnconditionMessenger

__all__ = ["predict_per_draw", "unconditioned"]


class UnconditionData(UnconditionMessenger):
    """:func:`pyro.poutine.uncondition` of every observed site but the ``pyro.deterministic`` ones (``infer``
    holds ``"_deterministic"``), which keep the value the model computes (see the module's notes)."""

    def _pyro_sample(self, msg) -> None:
        if not (msg["infer"] or {}).get("_deterministic"):
            super()._pyro_sample(msg)


def unconditioned(model: Callable) -> Callable:
    """``model`` with its observed sites drawn from their distributions, as :func:`pyro.poutine.uncondition`
    draws them, but its ``pyro.deterministic`` sites kept at their computed values (:class:`UnconditionData`)."""
    return UnconditionData()(model)


def predict_per_draw(model: Callable, held: dict[str, torch.Tensor], observed: Iterable[str], num_draws: int,
                     args: tuple, kwargs: dict) -> dict[str, torch.Tensor]:
    """One replicate of each observed site per draw, from one run of the :func:`unconditioned` model per draw
    (:class:`pyro.infer.Predictive`), the draws ``held``.

    :param held: site -> ``S x site_shape`` draws to hold (the latent sites, and the discrete ones drawn).
    :param observed: the observed sites to replicate (``{}`` where there are none).
    :param num_draws: :math:`S`.
    :returns: observed site -> ``S x ...`` replicates as :class:`~pyro.infer.Predictive` returns them (the
        caller reshapes them to ``S x data_shape``); ``{}`` for no observed site.
    """
    observed = list(observed)
    if not observed:
        return {}
    return Predictive(unconditioned(model), posterior_samples=held, num_samples=num_draws,
                      return_sites=observed)(*args, **kwargs)
