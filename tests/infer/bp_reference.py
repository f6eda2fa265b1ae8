"""The per-group, per-argument loopy BP that the flat engine replaced, kept verbatim as a test oracle.

The flat engine of :mod:`hybridpgm.infer.bp_engine` must reproduce its messages,
marginals and Bethe log Z to round-off on loopy graphs, where no closed form exists.
"""

from __future__ import annotations

import math

import torch

from hybridpgm.graphs.factor_graph import FactorGraph, scatter_to_variables
from hybridpgm.infer.belief_propagation import BPResult


def _entropy_term(p, log_p, mask):
    return p * log_p.masked_fill(~mask, 0.0)


class ReferenceBP:
    """The pre-engine BP (a Python loop over factor groups and arguments), kept as a reference."""

    def __init__(self, num_iters: int = 50, damping: float = 0.0, tol: float = 1e-6,
                 max_product: bool = False):
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
        return log_z, marginals, assignment, converged, it

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
