"""Exact log-partition function and marginals of a discrete MRF by tensor contraction.

The log-partition function

.. math::

    \\log Z = \\log \\sum_x \\exp\\Big(\\sum_v \\theta_v(x_v) + \\sum_f \\theta_f(x_f)\\Big)

is one log-sum-product einsum over all factors; the contraction order is
chosen by ``opt_einsum`` and the log-space kernel is Pyro's
``pyro.ops.einsum.torch_log`` (via :func:`pyro.ops.einsum.contract`), so the
cost is exponential only in the treewidth of the elimination order found.
Exact samples come from sequential conditioning: :math:`x_1 \\sim p(x_1)`,
:math:`x_2 \\sim p(x_2 \\mid x_1)`, ... (one contraction per variable).
Marginals are the gradient of :math:`\\log Z` with respect to the unary
log-potentials [1] (computed with ``create_graph`` so they stay differentiable).

**References**

[1] M. J. Wainwright, M. I. Jordan, *Graphical Models, Exponential Families,
and Variational Inference*, 2008.
"""

from __future__ import annotations

import opt_einsum
import torch
from pyro.ops.einsum import contract

from hybridpgm.graphs.factor_graph import FactorGraph, FactorGroup

__all__ = ["exact_log_partition", "exact_marginals", "exact_sample"]

_BACKEND = "pyro.ops.einsum.torch_log"


def _log_partition(fg: FactorGraph, unary: torch.Tensor) -> torch.Tensor:
    sym = opt_einsum.get_symbol
    batch = sym(fg.num_vars)  # one symbol past the variables
    terms, operands = [], []
    masked = unary.masked_fill(~fg.valid, float("-inf"))
    for v in range(fg.num_vars):
        terms.append(batch + sym(v))
        operands.append(masked[:, v])
    for group in fg.groups:
        scopes = group.variables.tolist()
        for f, scope in enumerate(scopes):
            terms.append(batch + "".join(sym(v) for v in scope))
            operands.append(group.log_potentials[:, f])
    equation = ",".join(terms) + "->" + batch
    return contract(equation, *operands, backend=_BACKEND)


def exact_log_partition(fg: FactorGraph) -> torch.Tensor:
    """Exact :math:`\\log Z` (restricted to the valid states, i.e. given evidence).

    :param FactorGraph fg: the model, batch size ``B``.
    :returns: ``[B]`` log-partition values.
    """
    return _log_partition(fg, fg.unary)


def exact_marginals(fg: FactorGraph) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact :math:`\\log Z` and single-variable marginals.

    :math:`p(x_v = c) = \\partial \\log Z / \\partial \\theta_v(c)`.

    :param FactorGraph fg: the model, batch size ``B``.
    :returns: ``(log_z [B], marginals [B, V, C])`` with zeros at invalid states.
    """
    delta = torch.zeros_like(fg.unary, requires_grad=True)
    with torch.enable_grad():
        log_z = _log_partition(fg, fg.unary + delta)
        create_graph = log_z.requires_grad and any(
            t.requires_grad for t in [fg.unary] + [g.log_potentials for g in fg.groups]
        )
        (marg,) = torch.autograd.grad(log_z.sum(), delta, create_graph=create_graph)
    if not create_graph:
        log_z = log_z.detach()
    return log_z, marg


def exact_sample(fg: FactorGraph, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Independent exact samples by sequential conditioning (``V`` contractions).

    :param FactorGraph fg: the model, batch size ``B``.
    :param int num_samples: ``N``.
    :returns: ``[N, B, V]`` long.
    """
    N, B, V, C = num_samples, fg.batch_size, fg.num_vars, fg.num_states

    def rep(t):  # [B, ...] -> [N * B, ...]
        return t.detach().unsqueeze(0).expand((N,) + t.shape).reshape((N * B,) + t.shape[1:])

    groups = [FactorGroup(g.variables, rep(g.log_potentials)) for g in fg.groups]
    cond = FactorGraph(fg.names, fg.cardinalities, rep(fg.unary), rep(fg.valid).clone(), groups, fg.colors)
    out = torch.zeros(N * B, V, dtype=torch.long, device=fg.unary.device)
    with torch.no_grad():
        for v in range(V):
            _, marg = exact_marginals(cond)
            x = torch.multinomial(marg[:, v], 1, generator=generator).squeeze(-1)
            out[:, v] = x
            cond.valid[:, v] = torch.nn.functional.one_hot(x, C).bool()
    return out.reshape(N, B, V)
