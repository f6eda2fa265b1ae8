"""Per-colour gather plans for chromatic updates of a :class:`~hybridpgm.graphs.factor_graph.FactorGraph`.

A chromatic (block) update of colour :math:`c` needs the conditional logits

.. math::

    \\ell_v(s) = \\theta_v(s) + \\sum_{f \\ni v} \\theta_f(s, x_{f \\setminus v}),
    \\qquad v \\in V_c = \\{v : \\mathrm{colour}(v) = c\\},

of the colour's variables only, and each term involves only the factors that touch :math:`V_c`. A
:class:`ColourBlock` lists, once per graph structure, those (factor, argument) incidences, so
:func:`block_logits` computes :math:`\\ell_v` for :math:`v \\in V_c` from exactly them. Over all colours every
incidence is visited once: a sweep costs :math:`O(N B \\sum_f k_f C)` whatever the number of colours (a fully
connected pairwise net needs one colour per variable; recomputing every conditional per colour made its sweep
:math:`O(V^3)`).

The result is bit-for-bit the rows :math:`V_c` of
:meth:`ChromaticGibbs.conditional_logits <hybridpgm.infer.mrf_gibbs.ChromaticGibbs.conditional_logits>`: the same
table entries are gathered, and the messages into each variable are summed by ``index_add`` in the same order
(factor-major, then argument, as the flattened ``variables [F, k]``), onto the same unary row, group by group.  The
sums run over the last two dimensions flattened (:func:`~hybridpgm.graphs.flat_index_add.index_add_rows`, 5 to 22
times faster on CPU than along the variables, the same bits), with a flat index planned with the block.

Mean field (:class:`~hybridpgm.infer.MeanField`) uses the same blocks: :func:`block_tables` gathers each factor's
table once per call into per-(colour, argument) views, and :func:`block_field` contracts them with the current
:math:`q` into the mean-field logits of the colour's variables only, again bit-for-bit the colour's rows of the
full recomputation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hybridpgm.graphs.factor_graph import FactorGraph, expected_factor
from hybridpgm.graphs.flat_index_add import flat_index, index_add_rows
from hybridpgm.infer.structure_cache import StructureCache

__all__ = ["ColourBlock", "GroupIncidences", "block_field", "block_logits", "block_tables", "colour_blocks"]


@dataclass(frozen=True, eq=False)
class GroupIncidences:
    """The incidences of one :class:`~hybridpgm.graphs.factor_graph.FactorGroup` (arity ``k``) into a colour.

    :ivar list rows: per argument ``j``, ``[1, 1, P_j]`` long, the factors whose ``j``-th argument has the colour
        (ascending).
    :ivar list others: per argument ``j``, a tuple of ``k - 1`` tensors ``[P_j]``, the variables of those factors'
        other arguments ``i != j`` in argument order (the states that index the table).
    :ivar torch.Tensor order: ``[P]`` long, ``P = sum_j P_j``: position ``p`` of the flattened (factor-major)
        incidence order is row ``order[p]`` of the messages concatenated over ``j``.
    :ivar torch.Tensor local: ``[P]`` long, the receiving variable's position in :attr:`ColourBlock.variables`, in
        flattened incidence order.
    :ivar torch.Tensor flat: ``[P * C]`` long, :func:`~hybridpgm.graphs.flat_index_add.flat_index` of ``local``
        for the graph's ``C`` states: where the messages are summed.
    """

    rows: list
    others: list
    order: torch.Tensor
    local: torch.Tensor
    flat: torch.Tensor


@dataclass(frozen=True, eq=False)
class ColourBlock:
    """One colour class.

    :ivar torch.Tensor variables: ``[V_c]`` long, the colour's variables (ascending).
    :ivar list groups: one :class:`GroupIncidences` per factor group, in ``fg.groups`` order.
    """

    variables: torch.Tensor
    groups: list


def colour_blocks(fg: FactorGraph, colors: torch.Tensor | None = None) -> list[ColourBlock]:
    """The blocks of the colours 0 to ``max(colors)``.

    A colour with no variable gets an empty block (kept so that the blocks line up with the colour ids). Cost
    :math:`O(V \\log V + I \\log I)` for :math:`I` factor-variable incidences, plus a few small tensor ops per
    colour and group (and host reads: the number of colours, the incidences of each): made once per structure,
    cached by the identity of ``colors`` and of the groups' ``variables`` and by the number of states
    (:class:`~hybridpgm.infer.structure_cache.StructureCache`), which a :class:`~hybridpgm.graphs.MarkovNet`
    keeps from query to query.

    :param FactorGraph fg: the graph.
    :param torch.Tensor colors: ``[V]`` the colour ids to plan for; ``None`` takes ``fg.colors``, or one colour per
        variable where that is ``None`` too.
    :returns: ``max(colors) + 1`` blocks.
    """
    device = fg.unary.device
    if colors is None:
        colors = fg.colors if fg.colors is not None else torch.arange(fg.num_vars, device=device)
    if colors.device != device or colors.dtype != torch.long:
        colors = colors.to(device=device, dtype=torch.long)
    return _PLANS.get((colors, *(g.variables for g in fg.groups)), (fg.num_vars, fg.num_states, str(device)),
                      lambda: _plan(fg, colors))


#: the plans of :func:`colour_blocks`, keyed by the colouring and the groups' variable indices: a
#: :class:`~hybridpgm.graphs.MarkovNet` keeps both tensors from query to query
#: (:func:`~hybridpgm.graphs.mrf_compile.compile_factor_graph`), so a query plans once per structure
_PLANS = StructureCache(max_entries=16)


def _plan(fg: FactorGraph, colors: torch.Tensor) -> list[ColourBlock]:
    """:func:`colour_blocks` of ``colors`` (long, on the graph's device), built."""
    device = colors.device
    num_colors = int(colors.max()) + 1
    bounds_of = _bounds(num_colors, device)
    sorted_colors, var_order = torch.sort(colors, stable=True)
    var_bounds = bounds_of(sorted_colors)
    local_of_var = torch.zeros(fg.num_vars, dtype=torch.long, device=device)
    variables = []
    for c in range(num_colors):
        vs = var_order[var_bounds[c]:var_bounds[c + 1]]
        local_of_var[vs] = torch.arange(vs.numel(), device=device)
        variables.append(vs)
    per_group = []  # per group, per colour: GroupIncidences
    for g in fg.groups:
        F, k = g.variables.shape
        flat_vars = g.variables.reshape(-1)
        sorted_inc, inc_order = torch.sort(colors[flat_vars], stable=True)
        inc_bounds = bounds_of(sorted_inc)
        blocks = []
        for c in range(num_colors):
            pos = inc_order[inc_bounds[c]:inc_bounds[c + 1]]  # flat incidence positions, ascending
            f, j = pos // k, pos % k
            rows, others, parts = [], [], []
            for a in range(k):
                at = (j == a).nonzero().reshape(-1)
                r = f[at]
                rows.append(r.view(1, 1, -1))
                others.append(tuple(g.variables[r, i] for i in range(k) if i != a))
                parts.append(at)
            order = torch.argsort(torch.cat(parts))
            local = local_of_var[flat_vars[pos]]
            blocks.append(GroupIncidences(rows, others, order, local, flat_index(local, fg.num_states)))
        per_group.append(blocks)
    return [ColourBlock(variables[c], [blocks[c] for blocks in per_group]) for c in range(num_colors)]


def block_logits(fg: FactorGraph, theta: torch.Tensor, block: ColourBlock, x: torch.Tensor) -> torch.Tensor:
    """``[N, B, V_c, C]`` logits of :math:`p(x_v \\mid x_{-v})` for the block's variables at state ``x``.

    :param FactorGraph fg: the graph the block was planned on.
    :param torch.Tensor theta: ``[B, V, C]`` :meth:`~hybridpgm.graphs.factor_graph.FactorGraph.masked_unary`.
    :param ColourBlock block: from :func:`colour_blocks` of ``fg``.
    :param torch.Tensor x: ``[N, B, V]`` long states.
    :returns: bit-for-bit the rows ``block.variables`` of the full conditional logits.
    """
    N, B = x.shape[:2]
    size = block.variables.numel()
    logits = theta[:, block.variables].expand(N, -1, -1, -1)
    b_idx = torch.arange(B, device=x.device).view(1, B, 1)
    for g, inc in zip(fg.groups, block.groups):
        k = g.variables.shape[1]
        parts = []
        for j in range(k):
            states = iter([x[:, :, v] for v in inc.others[j]])  # [N, B, P_j] each
            index = (b_idx, inc.rows[j]) + tuple(slice(None) if i == j else next(states) for i in range(k))
            parts.append(g.log_potentials[index])  # [N, B, P_j, C]
        msgs = torch.cat(parts, dim=2)[:, :, inc.order]  # [N, B, P, C], flattened incidence order
        zeros = torch.zeros((N, B, size, theta.shape[-1]), dtype=logits.dtype, device=logits.device)
        logits = logits + index_add_rows(zeros, inc.local, inc.flat, msgs)
    return logits


def block_tables(fg: FactorGraph, blocks: list) -> list:
    """Per block, per factor group, the ``k`` tables ``[B, P_j] + [C] * k`` of the factors in ``rows[j]``.

    One gather per group (of :math:`\\sum_f k_f C^{k_f}` entries per model), split into views: made once per call,
    so an unrolled loop that reads them every sweep back-propagates into one gather (a gather per sweep would
    back-propagate a zero tensor of the whole table per colour and argument, :math:`O(\\#\\text{colours})` the
    table per sweep).

    :param FactorGraph fg: the graph the blocks were planned on.
    :param list blocks: :class:`ColourBlock` s of ``fg``.
    :returns: ``tables[c][g][j]``, block ``c``, group ``g``, argument ``j``.
    """
    tables = [[] for _ in blocks]
    for gi, g in enumerate(fg.groups):
        rows = [r.reshape(-1) for b in blocks for r in b.groups[gi].rows]
        chunks = g.log_potentials.index_select(1, torch.cat(rows)).split([r.numel() for r in rows], dim=1)
        for c in range(len(blocks)):
            tables[c].append(chunks[c * g.arity:(c + 1) * g.arity])
    return tables


def block_field(theta: torch.Tensor, block: ColourBlock, tables: list, q: torch.Tensor) -> torch.Tensor:
    """``[B, V_c, C]`` mean-field logits of the block's variables given the factors ``q [B, V, C]``.

    .. math::

        \\ell_v(s) = \\theta_v(s) + \\sum_{f \\ni v} \\mathbb E_{q_{f \\setminus v}}[\\theta_f(s, x_{f \\setminus v})],
        \\qquad v \\in V_c,

    from the factors touching :math:`V_c` only: :math:`O(B \\sum_{f \\cap V_c \\ne \\emptyset} C^{k_f})`.

    :param torch.Tensor theta: ``[B, V_c, C]`` the rows ``block.variables`` of
        :meth:`~hybridpgm.graphs.factor_graph.FactorGraph.masked_unary`.
    :param ColourBlock block: from :func:`colour_blocks`.
    :param list tables: ``block_tables(fg, blocks)[c]`` of this block.
    :param torch.Tensor q: ``[B, V, C]`` the current factors :math:`q_v`.
    :returns: bit-for-bit the rows ``block.variables`` of :meth:`MeanField._field
        <hybridpgm.infer.mean_field.MeanField._field>` (the same contraction per factor, as
        :func:`~hybridpgm.graphs.factor_graph.expected_factor` on the factor's rows, and the messages summed into
        each variable in the same order, onto the same unary row, group by group), as far as the kernels give a
        row the same result however many rows they contract at once (they do on CPU; the tests check it).
    """
    field = theta
    for inc, tabs in zip(block.groups, tables):
        k = len(tabs)
        msgs = []
        for j in range(k):
            others = iter(inc.others[j])
            probs = [None if i == j else q[:, next(others)] for i in range(k)]  # [B, P_j, C]; j is not read
            msgs.append(expected_factor(tabs[j], probs, skip=j))               # [B, P_j, C]
        msgs = torch.cat(msgs, dim=1)[:, inc.order]                            # [B, P, C], incidence order
        field = field + index_add_rows(torch.zeros_like(field), inc.local, inc.flat, msgs)
    return field


def _bounds(num_colors: int, device):
    """``sorted -> [num_colors + 1]`` start of each colour ``0 .. num_colors - 1`` in a sorted colour list."""
    targets = torch.arange(num_colors + 1, device=device)
    return lambda sorted_colors: torch.searchsorted(sorted_colors, targets).tolist()
