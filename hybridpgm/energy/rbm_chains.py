r"""The chain protocol of contrastive divergence for a :class:`~hybridpgm.energy.rbm.RBM`, as a mixin of it.

:class:`~hybridpgm.infer.ContrastiveDivergence` and :class:`~hybridpgm.infer.PersistentCD` train an energy
model through five members: the positive phase :math:`F(v)` on the data with a chain state clamped to it
(:meth:`RBMChains.positive_phase`, :meth:`RBMChains.clamped_state`), chains started and run
(:meth:`RBMChains.init_chains`, :meth:`RBMChains.gibbs_chain`), and the surrogate whose gradient is the CD/PCD
update,

.. math::

    \mathcal L(\theta) = \frac1B \sum_b F_\theta(v_b) - \frac1B \sum_b F_\theta(\tilde v_b),

with :math:`\tilde v` the chains' visible states after :math:`k` Gibbs sweeps (held fixed) [1, 2]
(:meth:`RBMChains.contrastive_gap`; for Bernoulli units on ``B x V`` data its gradient is written out,
:mod:`hybridpgm.energy.free_energy_gap`).  All of it runs in the parameters' dtype with autocast off
(:func:`without_autocast`).

References:

1. G. E. Hinton, "Training products of experts by minimizing contrastive
   divergence", Neural Computation, 2002.
2. T. Tieleman, "Training restricted Boltzmann machines using approximations to the
   likelihood gradient", ICML 2008.
"""

from __future__ import annotations

import contextlib

import torch

from hybridpgm.checks import generator_keywords, generator_or_none, positive_int
from hybridpgm.energy.free_energy_gap import free_energy_gap, free_energy_gap_and_gradients
from hybridpgm.energy.sampling import bernoulli
from hybridpgm.softplus import softplus

__all__ = ["RBMChains", "without_autocast"]


def _logits_and_probs(cache) -> tuple:
    """``(logits, probs)`` of :meth:`RBM.clamped_state`'s cache, given whole, as the logits alone, or absent."""
    return cache if isinstance(cache, tuple) else (cache, None)


def without_autocast(device: torch.device):
    """Autocast switched off on ``device``'s type where it is on (a no-op context otherwise).  The CD/PCD
    surrogate :math:`\\overline{F(v)} - \\overline{F(\\tilde v)}` is a small difference of two large means
    (:math:`|F| \\approx 35` for 64 visible units): in bfloat16 it reads ``-0.5`` for a float32 ``-0.3164``, and
    bfloat16 products with float32 reductions still leave it ``3e-3`` off and the hidden-bias gradient ``12%`` off.
    So the RBM's CD/PCD step runs in the parameters' dtype under ``fit(precision="bf16"|"fp16")``."""
    if torch.is_autocast_enabled(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


class RBMChains:
    """The contrastive-divergence chain protocol of an :class:`~hybridpgm.energy.rbm.RBM` (a mixin: it uses the
    RBM's parameters, conditionals and Gibbs sampler)."""

    def positive_phase(self, v: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Differentiable positive-phase energy :math:`F(v)` (``batch``) and a chain
        state clamped to the data, ``(v, h ~ p(h|v))``, sharing one matrix product
        (in the parameters' dtype, autocast or not).

        :param v: the data ``batch x V`` (any leading shape), not checked here (the objectives of contrastive
            divergence check it, with ``check_data=True``); a half-precision ``v`` is converted up, another dtype
            by the rule of :meth:`check_visible` (``bool`` and integers exactly; a wider float, ``float64`` for a
            ``float32`` model, raises :class:`~hybridpgm.errors.DataError`)."""
        with without_autocast(v.device):
            v = self._in_dtype(v)
            logits = self.hidden_logits(v)
            free = -self._visible_term(v) - softplus(logits).sum(-1)
            with torch.no_grad():
                h = bernoulli(torch.sigmoid(logits))
        return free, (v, h)

    @torch.no_grad()
    def clamped_state(self, v: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, torch.Tensor]]:
        """The chain state clamped to the data, ``(v, h ~ p(h|v))``, and the cache
        ``(logits, probs)``: the hidden pre-activations ``B x H`` and the probabilities
        :math:`\\sigma(\\text{logits})` it was drawn from (no gradient; the same draw as
        :meth:`positive_phase`), for :meth:`contrastive_gap`; in the parameters' dtype, autocast or not.

        :param v: the data ``batch x V``, as for :meth:`positive_phase` (not checked; converted to the parameters'
            dtype)."""
        with without_autocast(v.device):
            v = self._in_dtype(v)
            logits = self.hidden_logits(v)
            probs = torch.sigmoid(logits)
            return (v, bernoulli(probs)), (logits, probs)

    def contrastive_gap(self, v: torch.Tensor, negative: tuple[torch.Tensor, ...],
                        cache: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The CD/PCD surrogate :math:`\\overline{F(v)} - \\overline{F(\\tilde v)}` (0-d), differentiable
        in the parameters; for Bernoulli units on ``B x V`` data its gradient is
        written out (:func:`~hybridpgm.energy.free_energy_gap.free_energy_gap`).  Computed in the
        parameters' dtype with autocast off (under ``fit(precision="bf16")`` too: a bfloat16 gap of free
        energies :math:`\\approx -35` is quantised to steps of :math:`0.125`); low-precision arguments are
        converted up.

        :param v: the data ``B x V`` (not checked; converted to the parameters' dtype as by
            :meth:`positive_phase`).
        :param negative: the chain state after the Gibbs sweeps (:meth:`gibbs_chain`'s ``(v,)``); only its first
            item, the chains' visible states ``S x V`` (``S`` need not be ``B``), is read.
        :param cache: :meth:`clamped_state`'s ``(logits, probs)`` for this ``v`` (or the logits alone), if at hand:
            the surrogate then reuses them (not checked against ``v``); ``None`` (default; what
            :class:`~hybridpgm.infer.PersistentCD` passes) recomputes them.  Unused where the gradient is not
            written out (Gaussian units, or ``v`` or the chains not two-dimensional: plain free energies, which
            autograd differentiates).
        """
        with without_autocast(v.device):
            v, v_neg = self._in_dtype(v), self._in_dtype(negative[0])
            if not self._gap_in_closed_form(v, v_neg):
                return self._free_energy(v).mean() - self._free_energy(v_neg).mean()
            logits, probs = map(self._in_dtype, _logits_and_probs(cache))
            return free_energy_gap(self.weight, self.visible_bias, self.hidden_bias, v, v_neg, logits, probs)

    def contrastive_gap_and_gradients(self, v: torch.Tensor, negative: tuple[torch.Tensor, ...],
                                      cache: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None):
        """:meth:`contrastive_gap`'s value and gradients at once, without autograd, where they are written
        out (Bernoulli units, ``B x V`` data; else ``None``), in the parameters' dtype with autocast off:
        ``(value, {parameter: gradient})``
        (:func:`~hybridpgm.energy.free_energy_gap.free_energy_gap_and_gradients`).  Arguments as for
        :meth:`contrastive_gap`.

        :param v: the data ``B x V``, as for :meth:`contrastive_gap`.
        :param negative: the chain state after the Gibbs sweeps, as for :meth:`contrastive_gap`.
        :param cache: :meth:`clamped_state`'s ``(logits, probs)``, the logits alone, or ``None`` (default:
            recomputed), as for :meth:`contrastive_gap`."""
        with without_autocast(v.device):
            v, v_neg = self._in_dtype(v), self._in_dtype(negative[0])
            if not self._gap_in_closed_form(v, v_neg):
                return None
            params = (self.weight, self.visible_bias, self.hidden_bias)
            logits, probs = map(self._in_dtype, _logits_and_probs(cache))
            value, grads = free_energy_gap_and_gradients(*params, v, v_neg, logits, probs)
        return value, dict(zip(params, grads))

    def _gap_in_closed_form(self, v: torch.Tensor, v_neg: torch.Tensor) -> bool:
        """Whether the surrogate's gradient is written out: Bernoulli units, ``B x V`` rows."""
        return not (self.gaussian or v.dim() != 2 or v_neg.dim() != 2)

    def negative_phase(self, state: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Free energy of the chains' visible states (``batch``), in the parameters' dtype, autocast or not.

        :param state: the chain state (a tuple, as :meth:`init_chains` and :meth:`gibbs_chain` give); only its
            first item, the visible states ``batch x V``, is read (not checked; converted to the parameters' dtype
            as by :meth:`positive_phase`)."""
        with without_autocast(state[0].device):
            return self._free_energy(self._in_dtype(state[0]))

    def init_chains(self, num_chains: int, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """``(v,)``: ``num_chains`` random start states (:meth:`~hybridpgm.energy.RBM.random_visible`).

        :param int num_chains: the number of chains, a non-negative integer (checked by
            :meth:`~hybridpgm.energy.RBM.random_visible`, which raises :class:`~hybridpgm.errors.ConfigError`
            otherwise); ``v`` is ``num_chains x V``, fair coins (Bernoulli) or :math:`\\mathcal N(b, \\sigma^2)`
            (Gaussian).
        :param generator: a :class:`torch.Generator` for the draws; ``None`` draws from torch's global stream
            (the objectives of contrastive divergence pass none: their chains draw from the stream
            :func:`hybridpgm.fit` seeds).
        :raises ConfigError: ``generator`` is neither a :class:`torch.Generator` nor ``None``."""
        draws = generator_keywords(generator, self.random_visible, what=f"{type(self).__name__}.init_chains generator")
        return (self.random_visible(num_chains, **draws),)

    def gibbs_chain(self, state: tuple[torch.Tensor, ...], steps: int, *,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """``steps`` block-Gibbs sweeps from ``state`` (in the parameters' dtype, autocast or not).

        :param state: ``(v,)`` or ``(v, h)``, as :meth:`init_chains`, :meth:`clamped_state` and
            :meth:`positive_phase` give: visible states ``batch x V`` and, optionally, a hidden sample
            ``batch x H`` from :math:`p(h \\mid v)`, which the first sweep uses instead of drawing one (not
            checked; converted to the parameters' dtype as by :meth:`positive_phase`).  The result is ``(v,)``.
        :param int steps: the number of sweeps, a non-negative integer (``0`` returns the visible states as they
            are), as for :meth:`DBM.gibbs_chain <hybridpgm.energy.DBM.gibbs_chain>`.
        :param generator: a :class:`torch.Generator` for the draws (on the parameters' device); ``None`` draws
            from torch's global stream.
        :raises ConfigError: ``steps`` is not a non-negative integer, or ``generator`` is neither a
            :class:`torch.Generator` nor ``None``."""
        steps = positive_int(steps, f"{type(self).__name__}.gibbs_chain steps", minimum=0)
        generator = generator_or_none(generator, "RBM.gibbs_chain generator")
        with without_autocast(state[0].device):
            h = self._in_dtype(state[1]) if len(state) > 1 else None
            return (self._gibbs(self._in_dtype(state[0]), steps, h, generator),)
