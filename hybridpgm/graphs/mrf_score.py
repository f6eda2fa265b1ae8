"""The unnormalised log-density of a :class:`~hybridpgm.graphs.MarkovNet` at full assignments.

.. math::

    s(x) = \\sum_f \\theta_f(x_f),

one gather per factor family (the flat index of each factor's states into its table), the values broadcast
against the tables' batch shape; :meth:`MarkovNet.score <hybridpgm.graphs.MarkovNet.score>` is this function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from hybridpgm.errors import EvidenceError, ModelSpecError
from hybridpgm.graphs.mrf_compile import assignment_states, unknown_names

__all__ = ["score"]


def score(self, values: Mapping[str, torch.Tensor], context=None) -> torch.Tensor:
    """:math:`\\sum_f \\theta_f(x_f)` of the MarkovNet ``self`` at ``values``; see
    :meth:`MarkovNet.score <hybridpgm.graphs.MarkovNet.score>` (shapes, errors)."""
    if not self.cards:
        raise ModelSpecError("MarkovNet.score: the network has no variables; declare at least one")
    missing = [v for v in self.cards if v not in values]
    if missing:
        raise EvidenceError(f"MarkovNet.score: no value for variables {missing}")
    unknown_names("MarkovNet.score", values, self.cards)
    vals = {v: assignment_states(v, values[v], c, "MarkovNet.score") for v, c in self.cards.items()}
    tables = self.tables(context)
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

