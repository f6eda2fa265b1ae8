"""Padded, batched tensor form of a discrete factor graph.

:class:`FactorGraph` is what the approximate-inference algorithms
(:mod:`hybridpgm.infer.belief_propagation`, :mod:`hybridpgm.infer.mean_field`,
:mod:`hybridpgm.infer.mrf_gibbs`) consume.  It is produced by
:meth:`hybridpgm.graphs.MarkovNet.factor_graph` and is fully vectorised: every
variable is padded to the largest cardinality ``C``, all factors of the same
arity ``k >= 2`` are stacked into one tensor, and the models of a batch (many
independent models, or one model under many evidence assignments) share one
leading batch dimension ``B``.

Padding states are marked invalid in :attr:`FactorGraph.valid`; evidence is
expressed the same way (an observed variable has exactly one valid state), so
one code path handles padding, clamping and partial evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from hybridpgm.graphs.flat_index_add import flat_index, index_add_rows

__all__ = ["FactorGraph", "FactorGroup", "expected_factor", "greedy_coloring", "scatter_to_variables"]


@dataclass(eq=False)
class FactorGroup:
    """All factors of one arity ``k >= 2``.

    :ivar torch.Tensor variables: ``[F, k]`` long, the variable index of each
        factor's ``j``-th argument.
    :ivar torch.Tensor log_potentials: ``[B, F] + [C] * k`` finite
        log-potentials (entries at padding states are 0 and never used).
    """

    variables: torch.Tensor
    log_potentials: torch.Tensor

    @property
    def arity(self) -> int:
        return self.variables.shape[1]


@dataclass(eq=False)
class FactorGraph:
    """A conditioned, padded, batched discrete factor graph (a dataclass: each field is an attribute).

    :param list names: variable names, in index order.
    :param torch.Tensor cardinalities: ``[V]`` long.
    :param torch.Tensor unary: ``[B, V, C]`` finite sum of all unary
        log-potentials (0 where nothing is defined).
    :param torch.Tensor valid: ``[B, V, C]`` bool, the states a variable may take
        (excludes padding states and states ruled out by evidence).
    :param list groups: one :class:`FactorGroup` per arity ``k >= 2`` (default: none).
    :param torch.Tensor colors: ``[V]`` long, a proper colouring of the
        interaction graph (variables sharing a factor get different colours);
        used for chromatic (block) Gibbs and mean-field updates (default ``None``).
    :param torch.Size batch_shape: the batch shape ``B`` was flattened from (default ``torch.Size()``).
    """

    names: list
    cardinalities: torch.Tensor
    unary: torch.Tensor
    valid: torch.Tensor
    groups: list = field(default_factory=list)
    colors: torch.Tensor | None = None
    batch_shape: torch.Size = torch.Size()

    @property
    def num_vars(self) -> int:
        return self.unary.shape[1]

    @property
    def num_states(self) -> int:
        return self.unary.shape[2]

    @property
    def batch_size(self) -> int:
        return self.unary.shape[0]

    def masked_unary(self) -> torch.Tensor:
        """``[B, V, C]`` unary log-potentials with ``-inf`` at invalid states."""
        return self.unary.masked_fill(~self.valid, float("-inf"))

    def degrees(self) -> torch.Tensor:
        """``[V]`` number of factors of arity ``>= 2`` each variable is in."""
        deg = torch.zeros(self.num_vars, dtype=self.unary.dtype, device=self.unary.device)
        for g in self.groups:
            ones = torch.ones(g.variables.numel(), dtype=deg.dtype, device=deg.device)
            deg = deg.index_add(0, g.variables.reshape(-1), ones)
        return deg

    def unflatten(self, x: torch.Tensor) -> torch.Tensor:
        """Restore the leading batch dimension ``B`` to :attr:`batch_shape`.

        :param x: ``[B, ...]``.
        :returns: ``batch_shape + [...]``."""
        return x.reshape(self.batch_shape + x.shape[1:])


def expected_factor(table: torch.Tensor, probs: list, skip: int | None = None) -> torch.Tensor:
    """Contract a stacked factor table with per-argument distributions.

    :param torch.Tensor table: ``[B, F] + [C] * k``.
    :param list probs: ``k`` tensors ``[B, F, C]``.
    :param skip: an argument left uncontracted, or ``None`` for all.
    :returns: ``[B, F, C]`` if ``skip`` is given, else ``[B, F]``.
    """
    k = len(probs)
    letters = "ijklmnopqrstuvw"[:k]
    operands, terms = [table], ["bf" + letters]
    for j in range(k):
        if j != skip:
            operands.append(probs[j])
            terms.append("bf" + letters[j])
    out = "bf" + (letters[skip] if skip is not None else "")
    return torch.einsum(",".join(terms) + "->" + out, *operands)


def scatter_to_variables(values: torch.Tensor, variables: torch.Tensor, num_vars: int) -> torch.Tensor:
    """Sum per-(factor, argument) values into their variables.

    :param torch.Tensor values: ``[..., F, k, C]``.
    :param torch.Tensor variables: ``[F, k]`` long.
    :returns: ``[..., V, C]``: ``index_add`` along ``-2``, bit for bit, over the last two dims flattened
        (:func:`~hybridpgm.graphs.flat_index_add.index_add_rows`).
    """
    lead, C = values.shape[:-3], values.shape[-1]
    flat = values.reshape(lead + (variables.numel(), C))  # explicit: a leading size may be 0
    index = variables.reshape(-1)
    return index_add_rows(values.new_zeros(lead + (num_vars, C)), index, flat_index(index, C), flat)


def greedy_coloring(num_vars: int, scopes: list) -> list:
    """Greedy proper colouring of the interaction graph in index order.

    On a 4-connected grid listed row-major this is the checkerboard colouring.

    :param int num_vars: number of variables.
    :param list scopes: iterables of variable indices, one per factor.
    :returns: a list of ``num_vars`` colour ids.
    """
    neighbours = [set() for _ in range(num_vars)]
    for scope in scopes:
        for a in scope:
            neighbours[a].update(b for b in scope if b != a)
    colors = [-1] * num_vars
    for v in range(num_vars):
        used = {colors[u] for u in neighbours[v]}
        c = 0
        while c in used:
            c += 1
        colors[v] = c
    return colors
