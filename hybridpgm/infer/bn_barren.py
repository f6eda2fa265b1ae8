"""The barren nodes of a Bayesian-network query, computed forward from their CPDs.

Given evidence :math:`e`, let :math:`R` be the ancestral closure of the nodes :math:`e` touches.  A node outside
:math:`R` has no observed descendant, so it is *barren* [1]: its factor and those below it sum to one, and

.. math::

    p(x \\mid e) = p(x_R \\mid e) \\prod_{v \\notin R} p(x_v \\mid x_{\\mathrm{pa}(v)}), \\qquad
    p(x_v \\mid e) = \\sum_{x_u} p(x_v \\mid x_u)\\, p(x_u \\mid e) \\quad (\\mathrm{pa}(v) = \\{u\\}).

**Samples** (:func:`draw_barren`).  :func:`~hybridpgm.infer.exact.posterior_sample` draws :math:`x_R` exactly
from one contraction over :math:`R`, then each barren node from its CPD given its drawn parents, in topological
order: forward (ancestral) sampling [2].  A barren continuous node
(:class:`~hybridpgm.graphs.cpd.LinearGaussian`) is drawn from its Gaussian the same way, so it need not be
observed.

**Marginals** (:func:`forward_nodes`, :func:`forward_marginals`).  A barren query node with at most one discrete
parent whose marginal is at hand (observed, or itself answered) gets its marginal by one product with its table,
the second identity above, instead of an indicator in the contraction.  An indicator on a barren node would give
every row's contraction a factor over the node's parents that is all ones at the answer but not known to be, so
the plan carries it (and, for a node of several parents, joins them: the moral edge the barren node would add).
A barren node of several discrete parents needs their joint posterior and stays in the contraction.

**Shapes.**  Samples are rows first, ``[N, S]`` (``N`` evidence rows, ``S`` samples per row); marginals
``[N, card]``.

**References**

[1] R. D. Shachter, *Bayes-Ball: The Rational Pastime*, 1998.

[2] M. Henrion, *Propagating uncertainty in Bayesian networks by probabilistic logic sampling*, 1988.
"""

from __future__ import annotations

import torch

from hybridpgm.graphs.cpd_gaussian import LinearGaussian, check_gaussian_parameters
from hybridpgm.graphs.plan_sampling import inverse_cdf
from hybridpgm.infer.bn_evidence import Evidence, NetworkFacts
from hybridpgm.infer.bn_factors import node_table, relevant
from hybridpgm.train.deferred_checks import read_checks_once

__all__ = ["draw_barren", "forward_marginals", "forward_nodes"]


@read_checks_once  # the Gaussians' parameters and the continuous inputs' NaN checks of every node: one host read
def draw_barren(facts: NetworkFacts, ev: Evidence, drawn: dict, nodes, num_samples: int,
                generator: torch.Generator | None = None, with_log_prob: bool = False):
    """Draw each of ``nodes`` (barren, in topological order) from its CPD given its parents' values in ``drawn``.

    Under Pyro's validation the linear Gaussians' parameters are checked once for all of them
    (:func:`~hybridpgm.graphs.cpd_gaussian.check_gaussian_parameters`) and their densities are not validated
    again per node (a drawn value is the network's own); these checks and those of the continuous inputs (no
    ``NaN``) cost one host read per call.

    :param dict drawn: node -> ``[N, S]`` values of every node the barren ones may condition on (the drawn and
        the observed ones); each drawn node is added to it (long for a discrete node, the network's float dtype
        for a continuous one).
    :param int num_samples: ``S``.
    :param generator: the source of randomness (on the network's device).
    :param bool with_log_prob: also return ``[N, S]`` :math:`\\sum_v \\log p(x_v \\mid x_{\\mathrm{pa}(v)})`
        (a log-density for the continuous nodes); else ``None``.
    """
    n, s = ev.n, num_samples
    log_q = None
    check_gaussian_parameters(facts.cpds[v] for v in nodes)
    for v in nodes:
        cpd = facts.cpds[v]
        values, rows = _inputs(cpd, ev, drawn, n, s)
        idx = ((rows,) if rows is not None else ()) + tuple(drawn[p] for p in cpd.discrete_parents)
        if facts.cards[v] is not None:
            logits = node_table(facts, v, values, prob=False)[idx]
            logits = logits.expand(n, s, logits.shape[-1])
            u = torch.rand(n, s, generator=generator, dtype=logits.dtype, device=logits.device)
            x, lp, _ = inverse_cdf(logits, u, False, with_log_prob)
        else:
            mean = cpd.mean_table(values)[idx].expand(n, s)
            scale = cpd.scale[tuple(drawn[p] for p in cpd.discrete_parents)]
            eps = torch.randn(n, s, generator=generator, dtype=mean.dtype, device=mean.device)
            x = mean + scale * eps
            lp = LinearGaussian.normal(mean, scale, value_checked=True).log_prob(x) if with_log_prob else None
        drawn[v] = x
        if with_log_prob:
            log_q = lp if log_q is None else log_q + lp
    return log_q


def _inputs(cpd, ev: Evidence, drawn: dict, n: int, s: int):
    """``(values, rows)``: the continuous inputs to evaluate ``cpd``'s table on and the ``[N, S]`` index of its
    leading row dim (``None`` when the table has none).  Inputs given per evidence row give a table per row; an
    input drawn here (a barren continuous parent) gives one per row and sample."""
    if not cpd.is_batched:
        return None, None
    if not any(k in drawn and k not in ev.values for k in cpd.inputs):
        return ev.values, torch.arange(n, device=ev.device)[:, None]
    flat = {}
    for k in cpd.inputs:
        t = drawn.get(k, ev.values.get(k))
        if t is not None:
            t = t if k in drawn else t[:, None].expand(n, s, *t.shape[1:])
            flat[k] = t.reshape(n * s, *t.shape[2:])
    return flat, torch.arange(n * s, device=ev.device).reshape(n, s)


def forward_nodes(facts: NetworkFacts, ev: Evidence, names, order, targets) -> list:
    """The nodes of ``names`` whose marginals :func:`forward_marginals` gives, in topological ``order``: barren
    (outside the ancestral closure of ``targets``, the evidence's nodes), discrete, with at most one discrete
    parent that is observed in every row or in ``names`` (answered by the contraction or before it here), and any
    continuous parent observed."""
    closure = relevant(facts, targets)
    wanted = set(names)
    out = []
    for v in order:
        if v not in wanted or v in closure or facts.cards[v] is None:
            continue
        disc = facts.discrete[v]
        continuous = [p for p in facts.parents[v] if p not in disc]
        if len(disc) <= 1 and all(p in ev.observed or p in wanted for p in disc) and \
                all(p in ev.values for p in continuous):
            out.append(v)
    return out


def forward_marginals(facts: NetworkFacts, ev: Evidence, nodes, answered: dict) -> None:
    """Add ``[N, card]`` :math:`p(x_v \\mid e_n)` of each of ``nodes`` (from :func:`forward_nodes`) to ``answered``
    (node -> ``[N, card]`` marginals, the parents' among them): the parent's marginal times the node's table, or
    the table's row at an observed parent.  Differentiable in the tables and the parents' marginals."""
    for v in nodes:
        table = node_table(facts, v, ev.values, prob=True)  # [(N,) *discrete parent cards, card]
        batched = facts.cpds[v].is_batched
        rows = (torch.arange(ev.n, device=table.device),) if batched else ()
        (u,) = facts.discrete[v] or (None,)
        if u is None:
            p = (table if batched else table.expand(ev.n, -1)).clone()
        elif u in ev.observed:
            p = table[rows + (ev.observed[u],)]
        elif batched:
            p = torch.einsum("nu,nuv->nv", answered[u].to(table.dtype), table)
        else:
            p = answered[u].to(table.dtype) @ table
        answered[v] = p
