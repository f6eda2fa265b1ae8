"""The flat message store and the fused update kernels behind :class:`~hybridpgm.infer.BeliefPropagation`.

Every factor-to-variable message of the whole graph lives in *one* tensor,
one row per edge (a factor and one of its arguments), the way PGMax stores its
messages [1].  One iteration is a fixed, short sequence of whole-graph tensor
operations, with no Python loop over factors or variables and no
device-to-host synchronisation:

1. beliefs: one ``index_add`` of every message into its variable (flat: ``index_add_rows``),
   :math:`b_v = \\theta_v + \\sum_{f \\ni v} m_{f \\to v}`;
2. variable-to-factor messages by one gather,
   :math:`n_{v \\to f} = b_v - m_{f \\to v}`;
3. factor-to-variable messages by a ``logsumexp`` (``amax`` for max-product)
   over each factor table plus the gathered incoming messages, one batched call
   per factor *arity* (a graph normally has one or two arities; :mod:`hybridpgm.infer.bp_factor_updates`);
4. normalisation and damping on the whole message tensor.

The general path's tables are centred once, before the first step: each factor's
less its maximum (:mod:`hybridpgm.graphs.mrf_centring`), a constant that the
normalised messages do not depend on, so that a table far from zero (every
entry near 65536, say) does not round the sums of step 3 at its own magnitude
(float32 marginals were off by :math:`10^{-3}` there, on chains where BP is
exact); the Bethe :math:`\\log Z` centres them itself and adds the maxima back once
(:mod:`hybridpgm.infer.bethe`).

Two layouts are used.

* :class:`FlatGraph` (general): messages ``[B, E, C]`` in log space, edges
  ordered group by group, factor by factor, argument by argument, so that a
  group's messages are a free view ``[B, F, k, C]`` of the flat tensor.
* :class:`BinaryPairwise` (fast path, all variables binary, only pairwise
  factors, no clamped states): a normalised binary message is one number, its
  log-odds :math:`d = m(1) - m(0)`, stored batch-last as ``[E, B]``.  With the
  incoming log-odds :math:`\\nu` of the other argument and the factor's table
  :math:`\\theta_{ab}` (``a`` the other argument's state, ``b`` the target's),

  .. math::

      d_{new} = (\\theta_{01} - \\theta_{00})
          + \\operatorname{softplus}(\\nu + \\theta_{11} - \\theta_{01})
          - \\operatorname{softplus}(\\nu + \\theta_{10} - \\theta_{00}),

  the same sum-product update as the general path (max-product replaces
  ``softplus(x)`` by ``relu(x)``), at a quarter of the memory traffic, and
  computed with a single ``sigmoid``/``log1p`` pair (see the class).  Without
  gradients the whole call runs as one TorchScript function
  (:mod:`hybridpgm.infer.bp_fused`).

**References**

[1] G. Zhou, A. Dedieu, N. Kumar, W. Lehrach, M. Lázaro-Gredilla, S. Kushagra,
D. George, *PGMax: Factor Graphs for Discrete Probabilistic Graphical Models
and Loopy Belief Propagation in JAX*, 2022.
"""

from __future__ import annotations

import math

import torch

from hybridpgm.graphs.factor_graph import FactorGraph
from hybridpgm.graphs.flat_index_add import flat_index, index_add_rows
from hybridpgm.graphs.mrf_centring import centred, group_states
from hybridpgm.infer.bp_factor_updates import kary_messages as _kary
from hybridpgm.infer.bp_factor_updates import logsumexp_consuming as _logsumexp_consuming  # noqa: F401 (re-exported)
from hybridpgm.infer.bp_factor_updates import pairwise_messages as _pairwise
from hybridpgm.infer.bp_factor_updates import table_scores as _scores
from hybridpgm.infer.bp_fused import binary_coefficients, damp_odds, dtype_limits, gather_others, odds_max_spread
from hybridpgm.infer.structure_cache import StructureCache

__all__ = ["BinaryPairwise", "FlatGraph", "damp_log", "odds_to_flat"]


def damp_log(new: torch.Tensor, old: torch.Tensor, damping: float, it: int = 1) -> torch.Tensor:
    """:math:`\\log((1-\\alpha) e^{new} + \\alpha e^{old})` (``new`` unchanged when :math:`\\alpha = 0`)."""
    if damping <= 0:
        return new
    return torch.logaddexp(new + math.log1p(-damping), old + math.log(damping))


class FlatGraph:
    """Index structures of the general flat engine for one :class:`FactorGraph`.

    :ivar torch.Tensor edge_var: ``[E]`` long, the variable of every edge.
    :ivar list spans: ``(start, stop, F, k)`` of each factor group's edges.
    """

    def __init__(self, fg: FactorGraph):
        self.fg = fg
        self.spans, parts, start = [], [], 0
        for g in fg.groups:
            F, k = g.variables.shape
            self.spans.append((start, start + F * k, F, k))
            parts.append(g.variables.reshape(-1))
            start += F * k
        self.edge_var = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long, device=fg.unary.device)
        self.num_edges, self.edge_flat = start, flat_index(self.edge_var, fg.num_states)  # the beliefs' sums
        #: ``[B, E, C]`` the target variable's valid states: padding and states evidence rules out are not
        #: states of the variable, so messages are normalised over the others (damping mixes those alone)
        self.edge_valid = fg.valid[:, self.edge_var]
        #: its complement, formed once: under autograd each step's ``masked_fill`` saves its mask, and a fresh
        #: complement per step kept one ``[B, E, C]`` mask per step alive until backward
        self.edge_invalid = ~self.edge_valid
        #: each group's tables less each factor's detached maximum (:func:`~hybridpgm.graphs.mrf_centring.centred`),
        #: computed once: messages are normalised, so the constant changes none of them in exact arithmetic, and
        #: the ``logsumexp`` of the updates never forms table plus message at the table's magnitude
        self.tables = [centred(g.log_potentials, g.arity, group_states(fg, g.variables))[0] for g in fg.groups]

    def init(self, theta: torch.Tensor) -> torch.Tensor:
        """``[B, E, C]`` uniform (zero) log messages."""
        return theta.new_zeros((theta.shape[0], self.num_edges, theta.shape[2]))

    def beliefs(self, theta: torch.Tensor, msgs: torch.Tensor) -> torch.Tensor:
        """``[B, V, C]`` unnormalised log beliefs :math:`\\theta_v + \\sum_f m_{f \\to v}`."""
        return index_add_rows(theta, self.edge_var, self.edge_flat, msgs)

    def incoming(self, total: torch.Tensor, msgs: torch.Tensor) -> torch.Tensor:
        """``[B, E, C]`` normalised variable-to-factor log messages."""
        n = total[:, self.edge_var] - msgs
        return n - torch.logsumexp(n, dim=-1, keepdim=True)

    def factor_to_var(self, incoming: torch.Tensor, max_product: bool) -> torch.Tensor:
        """``[B, E, C]`` normalised factor-to-variable log messages from ``incoming``."""
        B, C = incoming.shape[0], incoming.shape[2]
        outs = []
        for table, (s, e, F, k) in zip(self.tables, self.spans):
            n = incoming[:, s:e].view(B, F, k, C)
            if k == 2:
                out = _pairwise(table, n, max_product)
            else:
                out = _kary(table, n, max_product)
            outs.append(out.reshape(B, F * k, C))
        if not outs:
            return incoming.new_zeros(incoming.shape)
        m = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        return m - torch.logsumexp(m.masked_fill(self.edge_invalid, float("-inf")), dim=-1, keepdim=True)

    def factor_scores(self, incoming: torch.Tensor):
        """Per group: ``[B, F, C**k]`` log factor beliefs (unnormalised, from the centred tables: each factor's
        shifted by a constant) and ``[B, F, C**k]`` tables as given (whose expectations under the beliefs are the
        Bethe energy's terms, constants included: :func:`~hybridpgm.infer.bethe.bethe_log_z` centres them).

        The scores are a fresh tensor that nothing else holds (the sum is formed in place, off autograd), so the
        caller may free it, or overwrite it where it does not require grad."""
        B, C = incoming.shape[0], incoming.shape[2]
        for g, t, (s, e, F, k) in zip(self.fg.groups, self.tables, self.spans):
            yield _scores(t, incoming[:, s:e].view(B, F, k, C)).flatten(2), g.log_potentials.flatten(2)


class BinaryPairwise:
    """The log-odds fast path: binary variables, pairwise factors, nothing clamped.

    Edges are ordered ``[all first arguments; all second arguments]``.  The
    incoming log-odds of edge ``s`` (from the factor's other variable
    :math:`u`) is linear in the messages,
    :math:`\\nu_s = h_u + \\sum_{t \\to u,\\, t \\ne \\bar s} d_t` (:math:`\\bar s` the
    factor's own message to :math:`u`): a sparse product, computed as one
    ``embedding_bag`` sum over the rows of the CSR pattern.  The loop state is
    the shifted message :math:`d' = d - c_0`, whose constant parts fold into
    the biases :math:`\\beta_{1,2} = h_u + \\sum_t c_{0,t} + c_{1,2}`.  The
    pattern depends only on the graph and is cached per ``variables`` tensor (weakly: see :func:`_structure`).

    **Sum-product in one transcendental pair.**  With
    :math:`x_i = \\nu' + \\beta_i` and :math:`\\Delta = \\beta_1 - \\beta_2 = c_1 - c_2`
    (the factor's interaction, :math:`4J` for an Ising coupling),
    :math:`d'_{new} = \\operatorname{softplus}(x_1) - \\operatorname{softplus}(x_2)
    = \\log\\frac{1 + e^{x_2 + \\Delta}}{1 + e^{x_2}}`, i.e.

    .. math::

        d'_{new} = \\log\\big(1 + (e^{\\Delta} - 1)\\,\\sigma(x_2)\\big) \\;(\\Delta \\ge 0),
        \\qquad
        d'_{new} = -\\log\\big(1 + (e^{-\\Delta} - 1)\\,\\sigma(x_1)\\big) \\;(\\Delta < 0),

    one ``sigmoid`` and one ``log1p`` instead of two ``softplus``: half the
    transcendental work and memory traffic (1.3x to 2x faster per step,
    measured).  The branch is chosen per factor so that the ``log1p`` argument
    is never below zero (no cancellation when :math:`e^{\\Delta} - 1` is near
    :math:`-1`), as :math:`d' = s \\log(1 + k\\,\\sigma(x))` with
    :math:`s = \\operatorname{sign}\\Delta` (``copysign``, so :math:`s = \\pm 1`),
    :math:`k = e^{s\\Delta} - 1` and :math:`x = \\nu' + \\beta_2 + \\min(\\Delta, 0)`;
    :math:`|\\Delta|` is formed as :math:`s\\Delta` with :math:`s` a constant, so
    gradients are right even at :math:`\\Delta = 0` (where ``abs`` would give 0).
    :math:`\\Delta` is the same for both directions of a factor, so ``k`` and
    ``s`` are ``[F, B]`` and the step works on ``[2, F, B]`` views.
    Where :math:`e^{|\\Delta|}` would overflow the dtype (couplings beyond about
    22 in float32), and for max-product (where ``relu`` is cheap), the step is
    the two-branch form :math:`f(x_1) - f(x_2)` with :math:`f` = ``softplus`` or
    ``relu``.  The coefficients come from
    :func:`~hybridpgm.infer.bp_fused.binary_coefficients`, shared with the
    scripted no-grad forward pass.

    :ivar torch.Tensor edge_var: ``[2F]`` long, the variable each message goes to.
    :ivar bool odds_form: whether the one-pair sum-product form is used.
    :ivar bool precise: whether the tables and fields are within
        :func:`~hybridpgm.infer.bp_fused.odds_max_spread` (else :class:`~hybridpgm.infer.BeliefPropagation`
        runs the general path: huge finite penalties lose their neighbours' finite parts in one log-odds number).
    :ivar torch.Tensor bias: ``[2, F, B]`` :math:`\\beta` of the selected branch
        (odds form) or ``[2, 2F, B]`` :math:`(\\beta_1, \\beta_2)`.
    :ivar torch.Tensor scale: ``[F, B]`` :math:`e^{|\\Delta|} - 1` (odds form).
    :ivar torch.Tensor sign: ``[F, B]`` :math:`\\operatorname{sign}\\Delta` as ``+-1`` (odds form).
    """

    @staticmethod
    def applies(fg: FactorGraph) -> bool:
        """Whether ``fg`` qualifies (one host check, outside the loop)."""
        return (fg.num_states == 2 and len(fg.groups) == 1 and fg.groups[0].arity == 2
                and bool(fg.valid.all()))

    def __init__(self, fg: FactorGraph, max_product: bool = False):
        (g,) = fg.groups
        self.fg, self.max_product = fg, max_product
        F = g.variables.shape[0]
        self.F = F
        self.edge_var, other_var, self.cols, self.offsets, self.pad = _structure(g.variables, fg.num_vars)
        self.threshold, limit = dtype_limits(fg.unary.dtype)
        self.c0, self.h, self.bias, self.scale, self.sign, self.odds_form, self.precise = binary_coefficients(
            g.log_potentials, fg.unary, other_var, self.cols, self.offsets, F, max_product, limit,
            odds_max_spread(fg.unary.dtype))
        self.shape = (2 * F, max(self.h.shape[1], self.c0.shape[1]))

    def _gather_sum(self, d: torch.Tensor) -> torch.Tensor:
        """``[2F, B]``: for each edge, the sum of ``d`` over the other messages into the factor's other variable."""
        return gather_others(d, self.cols, self.offsets, self.pad)

    def init(self) -> torch.Tensor:
        """Shifted state :math:`d' = -c_0` of the zero messages, ``[2F, B]`` (a fresh tensor)."""
        return (-self.c0).expand(self.shape).contiguous()

    def step(self, d: torch.Tensor) -> torch.Tensor:
        """One flooding update of the shifted log-odds messages ``d' [2F, B]`` (undamped)."""
        g = self._gather_sum(d)
        if self.odds_form:
            x = g.view(2, self.F, -1) + self.bias
            return (self.sign * torch.log1p(self.scale * torch.sigmoid(x))).view(self.shape)
        x = g + self.bias
        a = torch.relu(x) if self.max_product else torch.nn.functional.softplus(x, threshold=self.threshold)
        return a[0] - a[1]

    def messages(self, d: torch.Tensor) -> torch.Tensor:
        """``[2F, B]`` log-odds messages :math:`d = d' + c_0`."""
        return d + self.c0

    def beliefs(self, d: torch.Tensor) -> torch.Tensor:
        """``[V, B]`` belief log-odds from the shifted state."""
        return self.h.index_add(0, self.edge_var, self.messages(d))

    def damp(self, new: torch.Tensor, old: torch.Tensor, damping: float, it: int = 1) -> torch.Tensor:
        """Damping :math:`\\mu \\leftarrow (1-\\alpha)\\mu_{new} + \\alpha\\mu_{old}` in log-odds form.

        The messages start at :math:`\\mu = (1, 1)` (zero log messages, as in the
        general path), and damping keeps a total mass of :math:`1 + \\alpha^{k}`
        after step ``k``; the log-odds drop that mass, so step ``it`` weighs the
        old message by :math:`\\alpha (1 + \\alpha^{it-1})` to match the general
        path exactly.
        """
        if damping <= 0:
            return new
        return damp_odds(new, old, self.c0, damping, it)

    def probabilities(self, L: torch.Tensor) -> torch.Tensor:
        """``[B, V, 2]`` marginals :math:`(\\sigma(-L), \\sigma(L))` of the belief log-odds ``L [V, B]``."""
        Lt = L.t().unsqueeze(-1)
        return torch.sigmoid(torch.cat([-Lt, Lt], -1))

    def to_flat(self, d: torch.Tensor) -> torch.Tensor:
        """``[B, E, 2]`` normalised log messages in :class:`FlatGraph`'s edge order, from the shifted state."""
        return odds_to_flat(self.messages(d), self.F)


def odds_to_flat(d: torch.Tensor, F: int) -> torch.Tensor:
    """``[B, 2F, 2]`` normalised log messages (factor-major, argument-minor) from log-odds ``d [2F, B]``."""
    ls = torch.nn.functional.logsigmoid
    m = torch.stack((ls(-d), ls(d)), dim=-1)                             # [2F,B,2]
    # [arg, F, B, 2] -> [B, F, arg, 2] -> [B, 2F, 2] (factor-major, argument-minor)
    return m.view(2, F, -1, 2).permute(2, 1, 0, 3).reshape(-1, 2 * F, 2)


#: graph structure of the binary fast path, keyed by the ``variables`` tensor (a
#: :class:`~hybridpgm.graphs.MarkovNet`'s scope buffer) and the number of variables: see
#: :class:`~hybridpgm.infer.structure_cache.StructureCache`
_STRUCTURES = StructureCache(max_entries=8)


def _structure(variables: torch.Tensor, num_vars: int):
    """``(edge_var, other_var, cols, offsets, pad)`` of a pairwise factor list ``[F, 2]``.

    Row ``s`` of the CSR pattern (``cols[offsets[s]:offsets[s+1]]``, ``offsets``
    of length ``2F + 1``: the ``include_last_offset`` form of ``embedding_bag``,
    which spares the kernel a copy of the offsets on every call) lists the
    edges into edge ``s``'s other variable, except the factor's own.  Cached
    per ``variables`` tensor (identity and version, held by a weak reference:
    the entry is dropped when the tensor is freed); an inference-mode tensor
    has no version counter and is not cached.
    """
    return _STRUCTURES.get((variables,), num_vars, lambda: _build_structure(variables, num_vars))


def _build_structure(variables: torch.Tensor, num_vars: int):
    F = variables.shape[0]
    dev = variables.device
    edge_var = variables.t().reshape(-1)                                  # [2F]
    if edge_var._base is not None:  # a view (F <= 1): it would keep ``variables`` alive from the cache
        edge_var = edge_var.clone()
    other_var = variables.flip(1).t().reshape(-1)                         # [2F]
    E = 2 * F
    slot = torch.arange(E, device=dev)
    swap = (slot + F) % E                                                 # the factor's message to other_var
    order = torch.argsort(edge_var, stable=True)                          # slots grouped by target variable
    counts = torch.bincount(edge_var, minlength=num_vars)
    first = torch.cumsum(counts, 0) - counts                              # first sorted position per variable
    n_in = counts[other_var]                                              # messages into the other variable
    rows = torch.repeat_interleave(slot, n_in)
    row_start = torch.cumsum(n_in, 0) - n_in
    pos = torch.arange(rows.numel(), device=dev) - row_start[rows]
    cols = order[first[other_var][rows] + pos]
    cols = cols[cols != swap[rows]].contiguous()
    lengths = n_in - 1
    offsets = torch.cat((lengths.new_zeros(1), torch.cumsum(lengths, 0)))   # [2F + 1], last offset included
    # the padded [W, E] form for batch 1, where it costs at most half again the entries
    W = int(lengths.max()) if E else 0
    pad = cols.new_zeros(0)
    if 0 < W and W * E <= 1.5 * cols.numel():
        row = torch.repeat_interleave(slot, lengths)
        pad = torch.full((W, E), E, dtype=torch.long, device=dev)
        pad[torch.arange(cols.numel(), device=dev) - offsets[row], row] = cols
        pad = pad.reshape(-1)
    return edge_var, other_var, cols, offsets, pad
