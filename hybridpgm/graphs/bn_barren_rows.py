"""The barren rows of the enumerated sites of :meth:`BayesNet.model <hybridpgm.graphs.BayesNet.model>`: they get
no gradient.

In a row of the data, a missing discrete node :math:`v` all of whose descendants are missing too is *barren*:
under enumeration (:class:`pyro.infer.TraceEnum_ELBO` and the other routes that sum the missing entries out) the
factors of :math:`v` and of its descendants :math:`D` sum to one,

.. math:: \\sum_{x_v, x_D} p(x_v \\mid x_{\\mathrm{pa}(v)}) \\prod_{u \\in D} p(x_u \\mid x_{\\mathrm{pa}(u)}) = 1,

whatever the parameters and the values of the other nodes, so they add exactly 0 to the row's log-likelihood and to
its gradient.  Computed, the sum is 1 only to rounding, and its gradient is rounding noise (of order
:math:`10^{-8}` in float32) that Adam, which divides each step by the gradient's running RMS, turns into steps of
the full learning rate: a float32 table trained on rows with nothing observed drifted (0.3 -> 0.235 in 200 steps
of ``lr=0.01``) where its exact gradient is 0.

:class:`BarrenRows` says, for one run of the model, in which rows each enumerated site is barren, and
:class:`SummedCategorical` (that site's distribution) takes those rows' log-probabilities detached: their values,
hence every loss, query and sample, keep their bits; their gradient is exactly 0.  A site of a column with some
entries observed (``"<v>_unobserved"``) is barren also in the rows where :math:`v` is observed, whose value it does
not give.  A node counts as summed out only where Pyro's enumeration gave its site every value (the model's
recorder of enumerated sites): a value replayed from a guide or conditioned (as under Gibbs) is one draw, whose
factor :math:`\\log p(x_v \\mid x_{\\mathrm{pa}(v)})` depends on the table (an ELBO's term), so it keeps its gradient
and its ancestors are not barren.  The rows are judged when a ``log_prob`` is taken, after the model has run:
without a host read, from the masks of the observed entries (``False`` or ``True`` for a whole batch, an ``[N]``
bool tensor where the rows differ).
"""

from __future__ import annotations

import functools
from typing import Mapping, Sequence

import pyro.distributions as dist
import torch

from hybridpgm.graphs.bn_checks import _Enumerated

__all__ = ["BarrenRows", "SummedCategorical"]


class SummedCategorical(dist.Categorical):
    """The :class:`~pyro.distributions.Categorical` of a missing node's site in :meth:`BayesNet.model
    <hybridpgm.graphs.BayesNet.model>`: its ``log_prob`` is the Categorical's, detached in the rows that
    :class:`BarrenRows` finds barren (asked when it is taken; ``False``: none, ``True``: every row, else an
    ``[N]`` bool tensor).  Built by :meth:`BarrenRows.site`; anything else is the Categorical's."""

    #: () -> the barren rows (``False``, ``True`` or ``[N]`` bool); ``None``: none
    _barren_rows = None

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(SummedCategorical, _instance)
        new._barren_rows = self._barren_rows
        return super().expand(batch_shape, _instance=new)

    def log_prob(self, value):
        """The Categorical's ``log_prob`` of ``value``, detached in the barren rows (same values, no gradient).

        :param value: states, shaped as for :class:`~pyro.distributions.Categorical` (its enumerated support
            too).
        :returns: the log-probabilities, of the Categorical's shape.
        """
        out = super().log_prob(value)
        rows = False if self._barren_rows is None else self._barren_rows()
        if rows is False:
            return out
        if rows is True:  # a 0-d condition: the result still requires grad (a loss of barren rows alone is
            rows = out.new_ones((), dtype=torch.bool)  # differentiable, its gradient 0, as Pyro's ELBOs ask)
        return torch.where(rows, out.detach(), out)


class BarrenRows:
    """Which rows of each enumerated site of one run of :meth:`BayesNet.model <hybridpgm.graphs.BayesNet.model>`
    are barren (the node and all its descendants summed out there).

    :param Mapping children: node -> the nodes listing it as a parent.
    :param Sequence order: the nodes in topological order.
    :param dict observed: :meth:`~hybridpgm.graphs.bn_data.BayesNetData._observed_columns` of the data: node ->
        ``(values, observed)``, ``observed`` ``None`` (every row), ``False`` (none) or ``[N]`` bool; a node
        without a column is missing everywhere.
    :param checks: the model's checks of impossible rows (:meth:`~hybridpgm.graphs.bn_checks.BayesNetChecks.
        _zero_checks`), whose recorder of enumerated sites this one shares; ``None``: a recorder of its own.
    :param str prefix: the model's site prefix.
    :ivar recorder: the recorder of enumerated sites, to enter around the model's sites.
    :ivar bool complete: set by the model once every site has run; before, no row is barren.
    """

    def __init__(self, children: Mapping[str, Sequence[str]], order: Sequence[str], observed: dict, checks,
                 prefix: str) -> None:
        self.recorder = _Enumerated() if checks is None else checks
        self.complete = False
        self._children, self._order, self._observed, self._prefix = children, order, observed, prefix
        self._below: dict | None = None  # node -> rows where every child is barren (computed once complete)

    def site(self, fn: dist.Categorical, v: str) -> SummedCategorical:
        """``fn``, the Categorical of node ``v``'s missing rows, as a :class:`SummedCategorical` of the same
        parameters (a view, not normalised again: its values keep their bits).

        :param fn: the node's Categorical.
        :param str v: the node.
        :returns: the site's distribution.
        """
        out = fn.expand(fn.batch_shape, _instance=SummedCategorical.__new__(SummedCategorical))
        out._barren_rows = functools.partial(self.rows, v)
        return out

    def rows(self, v: str):
        """The rows in which the latent site of node ``v`` is barren: every child barren there, or (for
        ``"<v>_unobserved"``) ``v`` observed there; ``False`` where the site was not enumerated or the model has not
        finished.

        :param str v: the node.
        :returns: ``False``, ``True`` or an ``[N]`` bool tensor.
        """
        if not self.complete:
            return False
        seen = self._seen(v)
        if self._site(v, seen) not in self.recorder.names:
            return False
        below = self._barren_below()[v]
        return below if seen is False else _or(seen, below)

    def _seen(self, v: str):
        return self._observed.get(v, (None, False))[1]

    def _site(self, v: str, seen) -> str:
        return self._prefix + v if seen is False else f"{self._prefix}{v}_unobserved"

    def _barren_below(self) -> dict:
        """node -> the rows in which every child of the node is barren, for all nodes, in one pass up the order."""
        if self._below is None:
            names, barren, below = self.recorder.names, {}, {}
            for u in reversed(self._order):
                rows = True
                for c in self._children.get(u, ()):
                    rows = _and(rows, barren[c])
                below[u] = rows
                seen = self._seen(u)  # None: observed in every row (a continuous column too)
                summed = seen is not None and self._site(u, seen) in names
                barren[u] = _and(rows, True if seen is False else ~seen) if summed else False
            self._below = below
        return self._below


def _and(a, b):
    """``a & b`` of row masks (``False``, ``True`` or bool tensors), without an op where one is a constant."""
    if a is False or b is False:
        return False
    return b if a is True else a if b is True else a & b


def _or(a, b):
    """``a | b`` of row masks (``False``, ``True`` or bool tensors), without an op where one is a constant."""
    if a is True or b is True:
        return True
    return b if a is False else a if b is False else a | b
