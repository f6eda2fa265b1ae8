"""Loopy belief propagation as ``K`` unrolled, differentiable message-passing steps.

Sum-product messages on the factor graph, in log space [1]:

.. math::

    n_{v \\to f}(x_v) &= \\theta_v(x_v) + \\sum_{g \\ni v, g \\ne f} m_{g \\to v}(x_v), \\\\
    m_{f \\to v}(x_v) &= \\log \\sum_{x_f \\setminus x_v} \\exp\\Big(\\theta_f(x_f)
        + \\sum_{u \\in f, u \\ne v} n_{u \\to f}(x_u)\\Big),

updated in parallel ("flooding") with damping
:math:`m \\leftarrow \\log((1-\\alpha) e^{m_{new}} + \\alpha e^{m_{old}})`.
Max-product replaces the log-sum-exp by a max and gives MAP assignments.
The log-partition estimate is the negative Bethe free energy [2]

.. math::

    \\log Z_{Bethe} = \\sum_f \\mathbb E_{b_f}[\\theta_f] + \\sum_v \\mathbb E_{b_v}[\\theta_v]
      + \\sum_f H(b_f) + \\sum_v (1 - d_v) H(b_v),

which is exact on trees (and BP converges there in diameter-many steps).
Every step is an ordinary torch operation, so gradients flow from the beliefs
or :math:`\\log Z_{Bethe}` back into the potentials through all ``K`` steps
("unrolled inference as a computation graph", [3]).

**References**

[1] J. Pearl, *Probabilistic Reasoning in Intelligent Systems*, 1988.

[2] J. S. Yedidia, W. T. Freeman, Y. Weiss, *Constructing Free-Energy
Approximations and Generalized Belief Propagation Algorithms*, 2005.

[3] J. Domke, *Learning Graphical Model Parameters with Approximate Marginal
Inference*, 2013.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from hybridpgm.errors import ConfigError
from hybridpgm.graphs.factor_graph import FactorGraph, scatter_to_variables

__all__ = ["BPResult", "BeliefPropagation"]


@dataclass
class BPResult:
    """Output of :class:`BeliefPropagation` (batch flattened to ``B``).

    :ivar torch.Tensor log_z: ``[B]`` Bethe estimate of :math:`\\log Z`
        (``None`` for max-product).
    :ivar torch.Tensor marginals: ``[B, V, C]`` variable beliefs (max-marginals,
        normalised, for max-product).
    :ivar torch.Tensor assignment: ``[B, V]`` argmax of the beliefs.
    :ivar bool converged: whether the largest message change fell below ``tol``.
    :ivar int num_iters: steps run.
    """

    log_z: torch.Tensor | None
    marginals: torch.Tensor
    assignment: torch.Tensor
    converged: bool
    num_iters: int


def _entropy_term(p: torch.Tensor, log_p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # p * log p with 0 log 0 = 0, gradient-safe (no 0 * -inf anywhere)
    return p * log_p.masked_fill(~mask, 0.0)


class BeliefPropagation:
    """Damped loopy sum-product (or max-product) belief propagation.

    :param int num_iters: number ``K`` of unrolled parallel message updates.
    :param float damping: :math:`\\alpha \\in [0, 1)`.
    :param float tol: stop early once the largest change of any message (in
        log space) is below ``tol``; ``0`` runs all ``K`` steps.
    :param bool max_product: run max-product (MAP) instead of sum-product.

    >>> mrf = ising_grid(8, 8, coupling=0.3, field=torch.randn(64))  # doctest: +SKIP
    >>> res = BeliefPropagation(num_iters=50)(mrf.factor_graph())   # doctest: +SKIP
    """

    def __init__(self, num_iters: int = 50, damping: float = 0.0, tol: float = 1e-6,
                 max_product: bool = False):
        if num_iters < 1:
            raise ConfigError(f"BeliefPropagation: num_iters must be >= 1, got {num_iters}")
        if not 0.0 <= damping < 1.0:
            raise ConfigError(f"BeliefPropagation: damping must be in [0, 1), got {damping}")
        self.num_iters = num_iters
        self.damping = damping
        self.tol = tol
        self.max_product = max_product

    # -- the two message updates -------------------------------------------------
    def _factor_to_var(self, table: torch.Tensor, incoming: torch.Tensor) -> torch.Tensor:
        """``table [B,F,C..C]``, ``incoming [B,F,k,C]`` var->factor -> ``[B,F,k,C]``."""
        k = incoming.shape[2]
        out = []
        for j in range(k):
            s = table
            for i in range(k):
                if i != j:
                    shape = [1] * k
                    shape[i] = -1
                    s = s + incoming[:, :, i].reshape(incoming.shape[:2] + tuple(shape))
            dims = tuple(2 + i for i in range(k) if i != j)
            out.append(s.amax(dim=dims) if self.max_product else torch.logsumexp(s, dim=dims))
        return torch.stack(out, dim=2)

    @staticmethod
    def _normalise(m: torch.Tensor) -> torch.Tensor:
        return m - torch.logsumexp(m, dim=-1, keepdim=True)

    def _var_to_factor(self, fg, theta, msgs):
        total = theta
        for g, m in zip(fg.groups, msgs):
            total = total + scatter_to_variables(m, g.variables, fg.num_vars)
        out = [total[:, g.variables] - m for g, m in zip(fg.groups, msgs)]
        return total, [self._normalise(n) for n in out]

    def __call__(self, fg: FactorGraph) -> BPResult:
        """Run BP on ``fg`` and return a :class:`BPResult`."""
        theta = fg.masked_unary()
        B, C = fg.batch_size, fg.num_states
        msgs = [theta.new_zeros((B,) + tuple(g.variables.shape) + (C,)) for g in fg.groups]
        log_a, log_1ma = (math.log(self.damping) if self.damping > 0 else None,
                          math.log1p(-self.damping))
        converged, it = False, 0
        for it in range(1, self.num_iters + 1):
            _, incoming = self._var_to_factor(fg, theta, msgs)
            new = []
            for g, n, m_old in zip(fg.groups, incoming, msgs):
                m = self._normalise(self._factor_to_var(g.log_potentials, n))
                if log_a is not None:
                    m = torch.logaddexp(m + log_1ma, m_old + log_a)
                new.append(m)
            delta = max((float((a - b).detach().abs().max()) for a, b in zip(new, msgs)), default=0.0)
            msgs = new
            if delta < self.tol:
                converged = True
                break
        total, incoming = self._var_to_factor(fg, theta, msgs)
        log_b = torch.log_softmax(total, dim=-1)
        marginals = log_b.exp()
        assignment = total.argmax(dim=-1)
        log_z = None if self.max_product else self._bethe(fg, theta, log_b, incoming)
        return BPResult(log_z, marginals, assignment, converged, it)

    @staticmethod
    def _bethe(fg, theta, log_b, incoming) -> torch.Tensor:
        """Negative Bethe free energy at the current beliefs, ``[B]``."""
        valid = fg.valid
        b = log_b.exp()
        unary = fg.unary.masked_fill(~valid, 0.0)
        deg = fg.degrees()
        ent_v = -_entropy_term(b, log_b, valid).sum(-1)  # [B, V]
        log_z = (b * unary).sum((-1, -2)) + ((1.0 - deg) * ent_v).sum(-1)
        for g, n in zip(fg.groups, incoming):
            k = g.arity
            s = g.log_potentials
            for i in range(k):
                shape = [1] * k
                shape[i] = -1
                s = s + n[:, :, i].reshape(n.shape[:2] + tuple(shape))
            flat = s.flatten(2)
            log_bf = torch.log_softmax(flat, dim=-1)
            bf = log_bf.exp()
            ok = torch.isfinite(flat)
            energy = (bf * g.log_potentials.flatten(2)).sum(-1)
            ent_f = -_entropy_term(bf, log_bf, ok).sum(-1)
            log_z = log_z + (energy + ent_f).sum(-1)
        return log_z
