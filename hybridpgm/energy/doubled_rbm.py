r"""An RBM with scaled (doubled) conditionals, for the greedy pretraining of a DBM.

Layer-wise pretraining of a deep Boltzmann machine [1] trains each RBM with
its bottom-up and/or top-down input doubled, to make up for the input from the
missing neighbouring layer:

.. math::

    p(h_j = 1 \mid v) = \sigma(c_j + s_{up}\, v^\top W_{:j}),\qquad
    p(v_i = 1 \mid h) = \sigma(b_i + s_{down}\, W_{i:} h),

with :math:`s_{up} = 2` except for the top RBM and :math:`s_{down} = 2` except
for the bottom one.  With copies of the doubled layer tied, this is the RBM
with replicated units of [1]; its CD gradient :math:`v\mu^\top - \tilde v
\tilde\mu^\top` is obtained from the surrogate :math:`E(v, \operatorname{sg}[\mu])`
with :math:`\mu = p(h = 1 \mid v)`.

The chain protocol runs in the RBM parameters' dtype with autocast off, as the RBM's own does (its
``without_autocast``): under ``fit(precision="bf16")`` the CD surrogate
:math:`\overline{E(v, \mu)} - \overline{E(\tilde v, \tilde\mu)}`, a small difference of two energies of tens
of nats, would otherwise be rounded to the bfloat16 grid (``-0.5`` for a float32 ``-0.316``).

References:

1. R. Salakhutdinov, G. Hinton, "Deep Boltzmann machines", AISTATS 2009.
"""

from __future__ import annotations

import torch
from torch import nn

from hybridpgm.checks import positive_real
from hybridpgm.energy.rbm import RBM
from hybridpgm.energy.rbm_chains import without_autocast
from hybridpgm.energy.sampling import bernoulli
from hybridpgm.errors import ModelSpecError

__all__ = ["DoubledRBM"]


class DoubledRBM(nn.Module):
    """Wraps an :class:`~hybridpgm.energy.RBM` (Bernoulli) with scales ``up`` and ``down``;
    has the chain protocol of :class:`~hybridpgm.infer.ContrastiveDivergence`.

    :param rbm: the RBM whose parameters are trained.
    :param float up: scale of the bottom-up input :math:`v^\\top W`.
    :param float down: scale of the top-down input :math:`W h`.
    :raises ModelSpecError: ``rbm`` is not an :class:`~hybridpgm.energy.RBM` with Bernoulli visible units.
    :raises ConfigError: ``up`` or ``down`` is not a finite positive number.
    """

    def __init__(self, rbm: nn.Module, up: float = 2.0, down: float = 1.0):
        super().__init__()
        if not isinstance(rbm, RBM) or rbm.gaussian:
            kind = f"an RBM with {rbm.visible_type} visible units" if isinstance(rbm, RBM) else type(rbm).__name__
            raise ModelSpecError(f"DoubledRBM needs an RBM with Bernoulli visible units, got {kind}")
        up, down = positive_real(up, "DoubledRBM up"), positive_real(down, "DoubledRBM down")
        self.rbm, self.up, self.down = rbm, up, down

    def check_visible(self, v: torch.Tensor, name: str = "v") -> torch.Tensor:
        return self.rbm.check_visible(v, name)

    def hidden_mean(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`\\sigma(c + s_{up} v^\\top W)`, ``batch x H`` (in the parameters' dtype, autocast or not)."""
        r = self.rbm
        with without_autocast(v.device):
            return torch.sigmoid(self.up * (r._in_dtype(v) @ r.weight) + r.hidden_bias)

    def _energy_at(self, v: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        r = self.rbm
        return -((v @ r.weight) * mu).sum(-1) - v @ r.visible_bias - mu @ r.hidden_bias

    def positive_phase(self, v: torch.Tensor):
        """The surrogate energy :math:`E(v, \\operatorname{sg}[\\mu])` (``batch``) and the chain state
        ``(v, h ~ p(h|v))``, in the parameters' dtype with autocast off."""
        with without_autocast(v.device):
            v = self.rbm._in_dtype(v)
            with torch.no_grad():
                mu = self.hidden_mean(v)
                h = bernoulli(mu)
            return self._energy_at(v, mu), (v, h)

    def negative_phase(self, state):
        """The surrogate energy of the chains' visible states (``batch``), in the parameters' dtype with
        autocast off."""
        with without_autocast(state[0].device):
            v = self.rbm._in_dtype(state[0])
            with torch.no_grad():
                mu = self.hidden_mean(v)
            return self._energy_at(v, mu)

    def init_chains(self, num_chains: int):
        return self.rbm.init_chains(num_chains)

    @torch.no_grad()
    def gibbs_chain(self, state, steps: int):
        """``steps`` doubled block-Gibbs sweeps from ``state`` (in the parameters' dtype, autocast or not)."""
        r = self.rbm
        with without_autocast(state[0].device):
            v = r._in_dtype(state[0])
            h = r._in_dtype(state[1]) if len(state) > 1 else None
            for _ in range(steps):
                if h is None:
                    h = bernoulli(self.hidden_mean(v))
                v = bernoulli(torch.sigmoid(self.down * (h @ r.weight.T) + r.visible_bias))
                h = None
            return (v,)
