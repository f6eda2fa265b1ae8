"""The flat message store and the fused update kernels behind :class:`~hybridpgm.infer.BeliefPropagation`.

Every factor-to-variable message of the whole graph lives in *one* tensor,
one row per edge (a factor and one of its arguments), the way PGMax stores its
messages [1].  One iteration is a fixed, short sequence of whole-graph tensor
operations, with no Python loop over factors or variables and no
device-to-host synchronisation:

1. beliefs: ``index_add`` of every message into its variable,
   :math:`b_v = \\theta_v + \\sum_{f \\ni v} m_{f \\to v}`;
2. variable-to-factor messages by one gather,
   :math:`n_{v \\to f} = b_v - m_{f \\to v}`;
3. factor-to-variable messages by a ``logsumexp`` (``amax`` for max-product)
   over each factor table plus the gathered incoming messages, one batched call
   per factor *arity* (a graph normally has one or two arities);
4. normalisation and damping on the whole message tensor.

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
  ``softplus(x)`` by ``relu(x)``), at a quarter of the memory traffic.

**References**

[1] G. Zhou, A. Dedieu, N. Kumar, W. Lehrach, M. Lázaro-Gredilla, S. Kushagra,
D. George, *PGMax: Factor Graphs for Discrete Probabilistic Graphical Models
and Loopy Belief Propagation in JAX*, 2022.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch

from hybridpgm.graphs.factor_graph import FactorGraph

__all__ = ["BinaryPairwise", "FlatGraph", "damp_log"]


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
        dev = fg.unary.device
        self.edge_var = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long, device=dev)
        self.num_edges = start

    def init(self, theta: torch.Tensor) -> torch.Tensor:
        """``[B, E, C]`` uniform (zero) log messages."""
        return theta.new_zeros((theta.shape[0], self.num_edges, theta.shape[2]))

    def beliefs(self, theta: torch.Tensor, msgs: torch.Tensor) -> torch.Tensor:
        """``[B, V, C]`` unnormalised log beliefs :math:`\\theta_v + \\sum_f m_{f \\to v}`."""
        return theta.index_add(1, self.edge_var, msgs)

    def incoming(self, total: torch.Tensor, msgs: torch.Tensor) -> torch.Tensor:
        """``[B, E, C]`` normalised variable-to-factor log messages."""
        n = total[:, self.edge_var] - msgs
        return n - torch.logsumexp(n, dim=-1, keepdim=True)

    def factor_to_var(self, incoming: torch.Tensor, max_product: bool) -> torch.Tensor:
        """``[B, E, C]`` normalised factor-to-variable log messages from ``incoming``."""
        B, C = incoming.shape[0], incoming.shape[2]
        outs = []
        for g, (s, e, F, k) in zip(self.fg.groups, self.spans):
            n = incoming[:, s:e].view(B, F, k, C)
            if k == 2:
                out = _pairwise(g.log_potentials, n, max_product)
            else:
                out = _kary(g.log_potentials, n, max_product)
            outs.append(out.reshape(B, F * k, C))
        if not outs:
            return incoming.new_zeros(incoming.shape)
        m = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        return m - torch.logsumexp(m, dim=-1, keepdim=True)

    def factor_scores(self, incoming: torch.Tensor):
        """Per group: ``[B, F, C**k]`` log factor beliefs (unnormalised) and ``[B, F, C**k]`` tables."""
        B, C = incoming.shape[0], incoming.shape[2]
        for g, (s, e, F, k) in zip(self.fg.groups, self.spans):
            n = incoming[:, s:e].view(B, F, k, C)
            t = g.log_potentials
            for i in range(k):
                shape = [1] * k
                shape[i] = C
                t = t + n[:, :, i].reshape((B, F) + tuple(shape))
            yield t.flatten(2), g.log_potentials.flatten(2)


def _reduce(x: torch.Tensor, dims, max_product: bool) -> torch.Tensor:
    return x.amax(dim=dims) if max_product else torch.logsumexp(x, dim=dims)


def _pairwise(table: torch.Tensor, n: torch.Tensor, max_product: bool) -> torch.Tensor:
    """``table [B,F,C,C]``, ``n [B,F,2,C]`` -> messages to both arguments ``[B,F,2,C]``."""
    to0 = _reduce(table + n[:, :, 1, None, :], -1, max_product)
    to1 = _reduce(table + n[:, :, 0, :, None], -2, max_product)
    return torch.stack((to0, to1), dim=2)


def _kary(table: torch.Tensor, n: torch.Tensor, max_product: bool) -> torch.Tensor:
    """``table [B,F]+[C]*k``, ``n [B,F,k,C]`` -> ``[B,F,k,C]`` (one reduction per argument)."""
    B, F, k, C = n.shape
    views = []
    for i in range(k):
        shape = [1] * k
        shape[i] = C
        views.append(n[:, :, i].reshape((B, F) + tuple(shape)))
    outs = []
    for j in range(k):
        s = table
        for i in range(k):
            if i != j:
                s = s + views[i]
        outs.append(_reduce(s, tuple(2 + i for i in range(k) if i != j), max_product))
    return torch.stack(outs, dim=2)


class BinaryPairwise:
    """The log-odds fast path: binary variables, pairwise factors, nothing clamped.

    Edges are ordered ``[all first arguments; all second arguments]``.  The
    incoming log-odds of edge ``s`` (from the factor's other variable
    :math:`u`) is linear in the messages,
    :math:`\\nu_s = h_u + \\sum_{t \\to u,\\, t \\ne \\bar s} d_t` (:math:`\\bar s` the
    factor's own message to :math:`u`): a sparse product, computed as one
    ``embedding_bag`` sum over the rows of the CSR pattern.  The loop state is
    the shifted message :math:`d' = d - c_0`, whose constant parts fold into one
    bias, so a step is four kernels: ``embedding_bag``, ``add``, ``softplus``,
    ``sub``.  The pattern depends only on the graph and is cached per
    ``variables`` tensor.

    :ivar torch.Tensor edge_var: ``[2F]`` long, the variable each message goes to.
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
        self.edge_var, other_var, self.cols, self.offsets = _structure(g.variables, fg.num_vars)
        # theta_ab (a: the other argument's state, b: the target's) of the message to x0 is
        # t[b, a], to x1 it is t[a, b]; every coefficient is a fixed linear map of the table.
        t = g.log_potentials.reshape(-1, F, 4)                           # [B,F,4]: t00 t01 t10 t11
        coef = torch.matmul(t, _COEF.to(t.dtype).to(t.device))           # [B,F,6]
        coef = coef.permute(2, 1, 0).reshape(3, 2 * F, -1)              # [3 (c0,c1,c2), 2F, B]
        self.c0 = coef[0]
        theta = fg.unary
        self.h = torch.matmul(theta, _ODDS.to(theta.dtype).to(theta.device)).t().contiguous()   # [V,B]
        hb = self.h.index_select(0, other_var) + self._gather_sum(self.c0)
        self.bias = hb + coef[1:]                                        # [2,2F,B]
        finfo = torch.finfo(theta.dtype)
        self._threshold = 20.0 if finfo.bits <= 32 else 40.0

    def _gather_sum(self, d: torch.Tensor) -> torch.Tensor:
        """``[2F, B]``: for each edge, the sum of ``d`` over the other messages into the factor's other variable."""
        return torch.nn.functional.embedding_bag(self.cols, d, self.offsets, mode="sum")

    def init(self) -> torch.Tensor:
        """Shifted state :math:`d' = -c_0` of the zero messages."""
        return -self.c0

    def step(self, d: torch.Tensor) -> torch.Tensor:
        """One flooding update of the shifted log-odds messages ``d' [2F, B]`` (undamped)."""
        x = self._gather_sum(d) + self.bias                              # [2,2F,B]
        a = torch.relu(x) if self.max_product else torch.nn.functional.softplus(x, threshold=self._threshold)
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
        new, old = self.messages(new), self.messages(old)
        a = math.log1p(-damping)
        b = math.log(damping) + math.log1p(damping ** (it - 1))
        ls = torch.nn.functional.logsigmoid
        up = torch.logaddexp(ls(new) + a, ls(old) + b)
        down = torch.logaddexp(ls(-new) + a, ls(-old) + b)
        return up - down - self.c0

    def to_flat(self, d: torch.Tensor) -> torch.Tensor:
        """``[B, E, 2]`` normalised log messages in :class:`FlatGraph`'s edge order."""
        d = self.messages(d)
        ls = torch.nn.functional.logsigmoid
        m = torch.stack((ls(-d), ls(d)), dim=-1)                         # [2F,B,2]
        F = self.F
        # [arg, F, B, 2] -> [B, F, arg, 2] -> [B, 2F, 2] (factor-major, argument-minor)
        return m.view(2, F, -1, 2).permute(2, 1, 0, 3).reshape(-1, 2 * F, 2)


# rows t00, t01, t10, t11; columns (c0, c1, c2) x (to x0, to x1) with
# c0 = th01 - th00, c1 = th11 - th01, c2 = th10 - th00 and th_ab = t[b, a] (to x0), t[a, b] (to x1)
_COEF = torch.tensor([[-1.0, -1.0, 0.0, 0.0, -1.0, -1.0],
                      [0.0, 1.0, 0.0, -1.0, 1.0, 0.0],
                      [1.0, 0.0, -1.0, 0.0, 0.0, 1.0],
                      [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]])
_ODDS = torch.tensor([-1.0, 1.0])

#: graph structure of the binary fast path, keyed by the identity and version of ``variables``
_STRUCTURES: OrderedDict = OrderedDict()
_MAX_STRUCTURES = 8


def _structure(variables: torch.Tensor, num_vars: int):
    """``(edge_var, other_var, cols, offsets)`` of a pairwise factor list ``[F, 2]``.

    Row ``s`` of the CSR pattern (``cols[offsets[s]:offsets[s+1]]``) lists the
    edges into edge ``s``'s other variable, except the factor's own.
    """
    key = (variables.data_ptr(), variables._version, tuple(variables.shape), str(variables.device), num_vars)
    hit = _STRUCTURES.get(key)
    if hit is not None and hit[0] is variables:
        _STRUCTURES.move_to_end(key)
        return hit[1]
    F = variables.shape[0]
    dev = variables.device
    edge_var = variables.t().reshape(-1)                                  # [2F]
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
    offsets = (torch.cumsum(n_in - 1, 0) - (n_in - 1)).contiguous()
    out = (edge_var, other_var, cols, offsets)
    _STRUCTURES[key] = (variables, out)
    if len(_STRUCTURES) > _MAX_STRUCTURES:
        _STRUCTURES.popitem(last=False)
    return out
