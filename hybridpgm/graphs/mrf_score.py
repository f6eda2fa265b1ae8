"""The unnormalised log-density of a :class:`~hybridpgm.graphs.MarkovNet` at full assignments.

.. math::

    s(x) = \\sum_f \\theta_f(x_f),

one gather per factor family (the flat index of each factor's states into its table), the values broadcast
against the tables' batch shape; :meth:`MarkovNet.score <hybridpgm.graphs.MarkovNet.score>` is this function.
:func:`factor_graph_score` reads the same sum from a compiled factor graph (what
:class:`~hybridpgm.graphs.mrf_distribution.MarkovNetDistribution` scores with).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from hybridpgm.errors import EvidenceError, ModelSpecError
from hybridpgm.graphs.factor_graph import FactorGraph
from hybridpgm.graphs.mrf_compile import assignment_states, unknown_names
from hybridpgm.precision_scope import exact_precision
from hybridpgm.tensor_arguments import described_value

__all__ = ["factor_graph_score", "score"]


def score(self, values: Mapping[str, torch.Tensor], context=None,
          tables: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """:math:`\\sum_f \\theta_f(x_f)` of the MarkovNet ``self`` at ``values``; see
    :meth:`MarkovNet.score <hybridpgm.graphs.MarkovNet.score>` (shapes, errors).

    :param tables: the families' log-potentials already evaluated (:meth:`MarkovNet.tables
        <hybridpgm.graphs.MarkovNet.tables>` of ``context``), so that a caller computing :math:`\\log Z` from the
        same tables runs the networks once; ``None`` evaluates them here.
    """
    if not self.cards:
        raise ModelSpecError("MarkovNet.score: the network has no variables; declare at least one")
    if not isinstance(values, Mapping) and not hasattr(values, "columns"):  # a DataFrame reads by its columns
        raise EvidenceError(f"MarkovNet.score: values must be a mapping name -> states (or a DataFrame), got "
                            f"{described_value(values)}; rows [N, V] in the variables' order "
                            f"{list(self.cards)}: dict(zip(mrf.cards, rows.unbind(-1))), or "
                            f"mrf.distribution().log_prob(rows)")
    missing = [v for v in self.cards if v not in values]
    if missing:
        raise EvidenceError(f"MarkovNet.score: no value for variables {missing}")
    unknown_names("MarkovNet.score", values, self.cards)
    vals = {v: assignment_states(v, values[v], c, "MarkovNet.score") for v, c in self.cards.items()}
    if tables is None:
        tables = self.tables(context)
    with exact_precision(*tables.values()) as promoted:  # at least float32 under autocast (a half sum overflows)
        tables = dict(zip(tables, promoted))
    device = next(iter(tables.values())).device if tables else None
    try:
        xs = torch.stack(torch.broadcast_tensors(*[vals[v].to(device) for v in self.cards]), -1)  # [..., V]
    except RuntimeError:
        shapes = {v: tuple(vals[v].shape) for v in self.cards}
        raise EvidenceError(f"MarkovNet.score: the values of the variables must broadcast to one batch shape, "
                            f"got shapes {shapes}") from None
    table_shapes = {n: tuple(t.shape[: t.dim() - len(self.families[n]["cards"]) - 1]) for n, t in tables.items()}
    try:
        batch_shape = torch.broadcast_shapes(*table_shapes.values())
    except RuntimeError:
        raise ModelSpecError(f"MarkovNet.score: the batch shapes of the factors' tables do not broadcast: "
                             f"{table_shapes}") from None
    try:
        torch.broadcast_shapes(xs.shape[:-1], batch_shape)
    except RuntimeError:
        shapes = {v: tuple(vals[v].shape) for v in self.cards}
        raise EvidenceError(f"MarkovNet.score: the values' batch shape {tuple(xs.shape[:-1])} (shapes {shapes}) "
                            f"does not broadcast with the tables' batch shape {tuple(batch_shape)}") from None
    if not tables:  # no factor: every assignment scores 0, in the dtype log Z of such a network has (torch's default)
        return torch.zeros(torch.broadcast_shapes(xs.shape[:-1], batch_shape), dtype=torch.get_default_dtype(),
                           device=xs.device)
    total = 0.0
    for name, t in tables.items():
        cards = self.families[name]["cards"]
        k = len(cards)
        sel = xs[..., getattr(self, self.families[name]["scope_key"])]  # [..., F, k]
        strides = torch.tensor([math.prod(cards[i + 1:]) for i in range(k)], device=sel.device)
        lin = (sel * strides).sum(-1)  # [..., F]: flat index into the table
        flat = t.flatten(-k)  # batch + (F or 1, prod(cards))
        flat = flat.expand(flat.shape[:-2] + (lin.shape[-1], flat.shape[-1]))
        shape = torch.broadcast_shapes(flat.shape[:-1], lin.shape)
        picked = flat.expand(shape + flat.shape[-1:]).gather(-1, lin.expand(shape).unsqueeze(-1))
        total = total + picked.squeeze(-1).sum(-1)
    return total



def factor_graph_score(fg: FactorGraph, x: torch.Tensor) -> torch.Tensor:
    """:math:`\\sum_f \\theta_f(x_f)` read from a compiled :class:`~hybridpgm.graphs.factor_graph.FactorGraph`:
    the unary sums ``[B, V, C]`` and every factor group's ``[B, F] + [C] * k`` tables, one gather each.

    The factor graph holds the log-potentials as they were when it was compiled, so a score read from it belongs
    with the :math:`\\log Z` of the same graph even after the potentials were updated in place (an optimizer step)
    and without a second forward pass of the networks.  Evidence is not applied (it lives in ``fg.valid``).

    :param x: ``shape + (V,)`` long states (already checked), ``shape`` broadcasting with ``fg.batch_shape``.
    :returns: ``broadcast(shape, fg.batch_shape)`` scores, in the graph's dtype.
    """
    batch, V, C = fg.batch_shape, fg.num_vars, fg.num_states
    x = x.to(fg.unary.device)
    shape = torch.broadcast_shapes(x.shape[:-1], batch)
    unary = fg.unary.reshape(batch + (V, C)).expand(shape + (V, C))
    total = unary.gather(-1, x.expand(shape + (V,)).unsqueeze(-1)).squeeze(-1).sum(-1)
    for group in fg.groups:
        k, F = group.arity, group.variables.shape[0]
        strides = C ** torch.arange(k - 1, -1, -1, device=x.device)
        lin = (x[..., group.variables.to(x.device)] * strides).sum(-1)  # shape + [F]: flat index into each table
        flat = group.log_potentials.reshape(batch + (F, C ** k)).expand(shape + (F, C ** k))
        total = total + flat.gather(-1, lin.expand(shape + (F,)).unsqueeze(-1)).squeeze(-1).sum(-1)
    return total
