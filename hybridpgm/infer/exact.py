"""Exact inference in a :class:`~hybridpgm.graphs.BayesNet` by one batched tensor contraction.

Given evidence :math:`e_n` for rows :math:`n = 1..N`, every query is a single
contraction of the network's log-CPD tables (conditioned on the evidence by
indexing, so observed dims disappear) plus a batch dim over the rows:

.. math::

    \\log p(e_n) = \\log \\sum_{x \\setminus e} \\prod_v p(x_v \\mid x_{\\mathrm{pa}(v)})\\big|_{e_n},
    \\qquad
    p(x_q = k \\mid e_n) = \\frac{\\partial \\log p(e_n)}{\\partial \\lambda_{q,k}}\\Big|_{\\lambda = 0},

where :math:`\\lambda_q` is a zero log-indicator attached to query variable
:math:`q` [1, 2], so all single-variable marginals come from one forward and
one backward pass.  The most probable explanation (MAP/MPE) uses the max-sum
semiring and the same gradient trick, which back-tracks the argmax [3].  Exact posterior samples come from
one contraction and backward sampling along its steps [5]
(:mod:`~hybridpgm.graphs.plan_sampling`).
Variables that are neither observed nor queried nor ancestors of those are
*barren* and pruned (they sum to one) [4]; a queried barren node with at most one parent is answered forward
from its parent's marginal (:mod:`~hybridpgm.infer.bn_barren`).  The contraction order comes from
``opt_einsum`` and is cached per query shape (see
:class:`~hybridpgm.graphs.contraction.PlanCache`), so the same kind of query
costs only the tensor work on CPU or CUDA.  Rows may observe different
nodes: a node observed in some rows enters as a per-row indicator (one-hot or
all ones), or a soft-evidence likelihood
(:class:`~hybridpgm.infer.soft_evidence.Likelihood`), so all rows share one
contraction path; indicators on leaves are absorbed into their tables first
(:class:`~hybridpgm.graphs.contraction.AbsorbingPlan`), and when a cost model
says so the rows are split by which evidence nodes *with children* they
observe (:mod:`~hybridpgm.infer.row_groups`); a batch too big for the memory budget
:data:`~hybridpgm.infer.bn_contract.ROW_CHUNK_BYTES` is contracted a chunk of rows at a time.  Float64 and float32
networks are contracted in probability space, other dtypes and rows of tiny evidence probability in log
space (:mod:`~hybridpgm.infer.bn_contract`).  A query runs the CPDs' networks in the mode they are in (in
training mode a batch norm normalises with the query batch's statistics) and leaves their buffers (running
statistics, ``num_batches_tracked``) as they were, as the :class:`~hybridpgm.graphs.BayesNet` query methods do
(the network's query context, entered once when a method calls a function here).  The modules: evidence parsing
(:mod:`~hybridpgm.infer.bn_evidence`), factors (:mod:`~hybridpgm.infer.bn_factors`),
contraction and marginals (:mod:`~hybridpgm.infer.bn_contract`), the public
queries (here).

**References**

[1] A. Darwiche, *A Differential Approach to Inference in Bayesian Networks*, 2003.

[2] F. Obermeyer et al., *Tensor Variable Elimination for Plated Factor Graphs*, 2019.

[3] J. Eisner, *Inside-Outside and Forward-Backward Algorithms Are Just Backprop*, 2016.

[4] R. D. Shachter, *Bayes-Ball: The Rational Pastime*, 1998.

[5] A. P. Dawid, *Applications of a general propagation algorithm for probabilistic expert systems*, 1992.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import torch

from hybridpgm.checks import close_match, sample_count, shown_items
from hybridpgm.errors import EvidenceError
from hybridpgm.graphs.plan_sampling import sample_plan
from hybridpgm.infer.bn_barren import draw_barren, forward_marginals, forward_nodes
from hybridpgm.infer.bn_contract import (check_possible, in_row_chunks, joint_rows, log_evidence_rows, marginals,
                                         plan_for, rows_in_prob, rows_per_chunk, use_prob, with_rows_redone)
from hybridpgm.infer.bn_evidence import BATCH, Evidence, network_facts, parse_evidence
from hybridpgm.infer.bn_factors import factor_dims, factors, relevant
from hybridpgm.infer.bn_map_rows import map_rows
from hybridpgm.infer.bn_query_scope import exact_query
from hybridpgm.infer.row_groups import choose_split, row_groups
from hybridpgm.infer.soft_evidence import Likelihood
from hybridpgm.rng_scope import seeded_from_generator

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.bayes_net import BayesNet

__all__ = ["BATCH", "Evidence", "Likelihood", "log_evidence", "map_assignment", "parse_evidence", "posterior",
           "posterior_sample"]


def _split(bn: "BayesNet", ev: Evidence, targets: set, queries=()):
    """Row groups when :func:`~hybridpgm.infer.row_groups.choose_split` finds splitting cheaper, else ``None``."""
    split = choose_split(bn, ev, targets, queries)
    return row_groups(bn, ev, targets, split_on=split) if split else None


def _stitch(parts: list, groups: list) -> torch.Tensor:
    """Rows of the groups' results ``parts`` put back in the caller's row order."""
    order = torch.cat([idx for idx, _ in groups])
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    return torch.cat(parts)[inverse]


def _query_names(facts, query) -> list[str]:
    try:
        names = [query] if isinstance(query, str) else list(query)
    except TypeError:  # not iterable: a number, say
        names = None
    if names is None or not all(isinstance(q, str) for q in names):
        raise EvidenceError(f"query must be a node name, a list of node names or None, got {query!r:.80}")
    for q in names:
        if q not in facts.cards:
            raise EvidenceError(f"query names unknown variable {q!r}{close_match(q, facts.nodes)} (nodes: "
                                f"{shown_items(facts.nodes)})")
        if facts.cards[q] is None:
            raise EvidenceError(f"query variable {q!r} is continuous; exact queries are over discrete nodes")
    repeated = sorted({q for q in names if names.count(q) > 1})
    if repeated:
        raise EvidenceError(f"query names [{shown_items(repeated)}] more than once: [{shown_items(names)}]")
    return names


def posterior_names(facts, query, observed) -> list[str]:
    """The nodes a posterior query answers: ``query`` (checked), or every discrete node not in ``observed``.

    :param observed: the nodes observed in every evidence row.
    :raises EvidenceError: for an unknown or continuous query node, or one in ``observed``.
    """
    if query is None:
        return [v for v in facts.nodes if facts.cards[v] is not None and v not in observed]
    names = _query_names(facts, query)
    for q in names:
        if q in observed:
            raise EvidenceError(f"query variable {q!r} is also observed in every evidence row")
    return names


def _empty(ev: Evidence, *shape: int) -> torch.Tensor:
    """``[0, *shape]``: the answer for evidence of no rows."""
    return torch.zeros(0, *shape, dtype=ev.dtype, device=ev.device)


def _unbatch(t: torch.Tensor, ev: Evidence) -> torch.Tensor:
    return t if ev.batched else t[0]


def _targets(facts, ev: Evidence, names=()) -> set:
    return set(names) | set(ev.observed) | set(ev.partial) | {v for v in ev.values if v in facts.cards}


@exact_query
def log_evidence(bn: "BayesNet", evidence: Mapping | None = None) -> torch.Tensor:
    """:math:`\\log p(e_n)` for each evidence row (a log-density when continuous nodes are observed).

    :returns: ``[N]`` (a scalar when no evidence value has a row dim).
    """
    ev = parse_evidence(bn, evidence)
    facts = network_facts(bn)
    if ev.n == 0:
        return _empty(ev)
    groups = _split(bn, ev, _targets(facts, ev))
    if groups is None:
        return _unbatch(log_evidence_rows(bn, ev, relevant(facts, _targets(facts, ev))), ev)
    parts = [log_evidence_rows(bn, sub, relevant(facts, _targets(facts, sub))) for _, sub in groups]
    return _unbatch(_stitch(parts, groups), ev)


@exact_query
def posterior(bn: "BayesNet", query: str | Sequence[str] | None = None, evidence: Mapping | None = None, *,
              joint: bool = False):
    """Posterior marginals :math:`p(x_q \\mid e_n)` of the query variables, for every row.

    :param query: a node name, a list of names, or ``None`` for every unobserved discrete node.
    :param evidence: name -> value(s); see :func:`~hybridpgm.infer.bn_evidence.parse_evidence`.
    :param bool joint: return the joint ``[N, card_1, ..., card_k]`` over the query
        variables (in the given order) instead of the marginals.
    :returns: ``[N, card]`` for one name, else a dict name -> ``[N, card]`` (without
        ``N`` when no evidence value has a row dim).
    :raises EvidenceError: for unknown names, out-of-range values, a query variable
        observed in every row, or evidence of probability zero.
    """
    ev = parse_evidence(bn, evidence)
    facts = network_facts(bn)
    names = posterior_names(facts, query, ev.observed)
    if ev.n == 0:
        if joint:
            return _empty(ev, *(facts.cards[q] for q in names))
        out = {q: _empty(ev, facts.cards[q]) for q in names}
        return out[query] if isinstance(query, str) else out
    if joint:
        return _unbatch(joint_rows(bn, ev, names, relevant(facts, _targets(facts, ev, names))), ev)
    forward = forward_nodes(facts, ev, names, bn.topological_order, _targets(facts, ev))
    inner = [q for q in names if q not in set(forward)]
    out = _contracted_marginals(bn, facts, ev, inner) if inner else _checked_evidence(bn, facts, ev)
    forward_marginals(facts, ev, forward, out)
    out = {q: _unbatch(out[q], ev) for q in names}
    return out[query] if isinstance(query, str) else out


def _contracted_marginals(bn: "BayesNet", facts, ev: Evidence, names: list) -> dict:
    """Node -> ``[N, card]`` posterior marginals of ``names`` by the contraction (rows split by evidence pattern
    when that is cheaper)."""
    targets = _targets(facts, ev, names)
    groups = _split(bn, ev, targets, names)
    if groups is None:
        return dict(zip(names, marginals(bn, ev, names, relevant(facts, targets))))
    parts = {q: [] for q in names}
    for idx, sub in groups:
        free = [q for q in names if q not in sub.observed]
        got = dict(zip(free, marginals(bn, sub, free, relevant(facts, _targets(facts, sub, free)), idx)))
        for q in names:
            parts[q].append(got[q] if q in got else
                            torch.nn.functional.one_hot(sub.observed[q], facts.cards[q]).to(ev.dtype))
    return {q: _stitch(parts[q], groups) for q in names}


def _checked_evidence(bn: "BayesNet", facts, ev: Evidence) -> dict:
    """``{}``, after checking that every row's evidence is possible (what the contraction checks when there is
    one): for a query answered by forward propagation alone."""
    if ev.observed or ev.partial or ev.values:
        check_possible(log_evidence_rows(bn, ev, relevant(facts, _targets(facts, ev))), "the posterior")
    return {}


@exact_query
def map_assignment(bn: "BayesNet", evidence: Mapping | None = None, *, return_log_prob: bool = False):
    """Most probable explanation: :math:`\\arg\\max_{x \\setminus e} p(x, e_n)` for every row.

    The max-sum semiring on the same contraction; the gradient with respect to
    zero log-indicators back-tracks the argmax [3].

    :returns: dict node -> ``[N]`` long state indices of every discrete node not
        observed in all rows (observed ones keep their value); with
        ``return_log_prob`` also ``[N]`` :math:`\\max_x \\log p(x, e_n)`.  In grad mode that maximum is
        differentiable in the CPDs' parameters (and soft-evidence likelihoods): its gradient is that of
        :math:`\\log p(x^*, e_n)` at the returned assignment :math:`x^*` (the max-sum contraction's gradient, as for
        a structured perceptron or max-margin loss), through the factors' entries at :math:`x^*` (a graph of
        the factors and :math:`N` entries each, not of the contraction); under ``torch.no_grad()`` it carries no
        graph.  A forward-mode tangent of the parameters (:func:`torch.func.jvp`, :func:`torch.func.jacfwd`, a
        :mod:`torch.autograd.forward_ad` dual) reaches it in either grad mode
        (:func:`~hybridpgm.infer.bn_map_rows.map_rows`).
    """
    ev = parse_evidence(bn, evidence)
    facts = network_facts(bn)
    hidden_cont = [v for v in facts.nodes if facts.cards[v] is None and v not in ev.values]
    if hidden_cont:
        raise EvidenceError(f"MAP needs every continuous node observed; missing {hidden_cont}")
    names = [v for v in facts.nodes if facts.cards[v] is not None and v not in ev.observed]
    dims = factor_dims(facts, ev.observed, ev.partial, set(facts.nodes)) + [(BATCH, q) for q in names]
    chunk = rows_per_chunk(bn, ev, dims, (BATCH,))
    graph = return_log_prob and torch.is_grad_enabled()  # False under no_grad and inference_mode
    if ev.n == 0:
        *states, best = [_empty(ev).long() for _ in names] + [_empty(ev)]
    elif chunk < ev.n:
        *states, best = in_row_chunks(ev, chunk,
                                      lambda sub, ids: map_rows(bn, facts, sub, names, ids, return_log_prob, graph))
    else:
        *states, best = map_rows(bn, facts, ev, names, None, return_log_prob, graph)
    out = {q: _unbatch(x, ev) for q, x in zip(names, states)}
    for v, t in ev.observed.items():
        out[v] = _unbatch(t.clone(), ev)
    out = {v: out[v] for v in facts.nodes if v in out}
    if return_log_prob:
        return out, _unbatch(best, ev)
    return out


@exact_query
def posterior_sample(bn: "BayesNet", num_samples: int, evidence: Mapping | None = None, *,
                     generator: torch.Generator | None = None, return_log_prob: bool = False):
    """Exact joint samples of every unobserved node given each evidence row,
    :math:`x^{(s)} \\sim p(x \\setminus e \\mid e_n)`.

    The nodes the evidence touches and their ancestors come from one contraction of the rows (the cached plan
    of :func:`log_evidence`, evidence-only leaves absorbed first; probability space where queries use it, the
    rows under the floor or underflowing in a conditional redone in log space), then backward sampling along
    its steps [5]: the variables each step summed out are drawn given those already drawn
    (:func:`~hybridpgm.graphs.plan_sampling.sample_plan`).  The other nodes are barren and are drawn forward
    from their CPDs given their parents (:mod:`~hybridpgm.infer.bn_barren`), continuous ones included.  Rows
    are split by evidence pattern as in :func:`posterior` when that is cheaper, and a batch beyond the memory
    budget is sampled a chunk of rows at a time.  Hard evidence in some rows, soft evidence
    (:class:`~hybridpgm.infer.soft_evidence.Likelihood`) and observed continuous nodes enter as in
    :func:`posterior`.

    :param int num_samples: ``S`` samples per row.
    :param generator: the source of randomness (on the network's device).  The samples are a function of its
        state alone: torch's global streams are seeded from one draw of it while the CPDs' networks run and
        restored afterwards (:func:`~hybridpgm.rng_scope.seeded_from_generator`), whatever their modes, so a
        network's own draws (dropout) come from it too and networks that do not depend on their mode give the
        same samples in training and evaluation mode.
    :param bool return_log_prob: also return :math:`\\log p(x^{(s)} \\mid e_n)` of each sample (a log-density
        when continuous nodes are drawn).
    :returns: dict node -> ``[S, N]`` for every node (long for a discrete node; observed nodes hold their
        evidence; ``[S, N, d]`` for an observed continuous value of that shape); without ``N`` when no evidence
        value has a row dim; with ``return_log_prob`` also ``[S, N]`` log-probabilities.
    :raises EvidenceError: for an unobserved continuous node that is an ancestor of the evidence, or evidence
        of probability zero (naming the rows).
    """
    num_samples = sample_count(num_samples, "posterior_sample num_samples")
    nets = [net for cpd in bn._query_restores() for net in cpd.children()] if hasattr(bn, "_query_restores") else []
    with seeded_from_generator(generator, nets):  # the networks' own draws (dropout) come from it too
        return _posterior_sample(bn, num_samples, evidence, generator, return_log_prob)


def _posterior_sample(bn: "BayesNet", num_samples: int, evidence, generator, return_log_prob: bool):
    """:func:`posterior_sample` after its checks, inside its random-stream scope."""
    ev = parse_evidence(bn, evidence)
    facts = network_facts(bn)
    order = bn.topological_order
    groups = _split(bn, ev, _targets(facts, ev)) if ev.n else None
    if ev.n == 0:
        rows = [torch.zeros(0, num_samples, *(ev.values[v].shape[1:] if v in ev.values else ()),
                            dtype=ev.dtype if facts.cards[v] is None else torch.long, device=ev.device)
                for v in facts.nodes] + [_empty(ev, num_samples)]
    elif groups is None:
        rows = _sample_rows(bn, facts, order, ev, num_samples, generator, return_log_prob, None)
    else:
        parts = [_sample_rows(bn, facts, order, sub, num_samples, generator, return_log_prob, idx)
                 for idx, sub in groups]
        rows = [_stitch(list(p), groups) for p in zip(*parts)]
    out = {v: t.transpose(0, 1) if ev.batched else t[0] for v, t in zip(facts.nodes, rows)}
    if return_log_prob:
        return out, rows[-1].T if ev.batched else rows[-1][0]
    return out


def _sample_rows(bn: "BayesNet", facts, order: list, ev: Evidence, num_samples: int, generator,
                 with_log_prob: bool, row_ids) -> list:
    """``[N, S, ...]`` samples of every node (rows first, in ``facts.nodes`` order), then with ``with_log_prob``
    ``[N, S]`` their log-probabilities: :func:`posterior_sample` for one group of rows."""
    keep = relevant(facts, _targets(facts, ev))
    names = [v for v in facts.nodes if v in keep and facts.cards[v] is not None and v not in ev.observed]

    def in_space(sub: Evidence, space: str):
        tensors, dims = factors(facts, sub, keep, space)
        plan = plan_for(bn, dims, (BATCH,), sub.n, facts.cards, dtype=sub.dtype)
        anchor = (torch.ones if space == "prob" else torch.zeros)(sub.n, dtype=sub.dtype, device=sub.device)
        got = sample_plan(plan, list(tensors) + [anchor], names, num_samples, generator, with_log_prob, space)
        return got, [got.x.transpose(0, 1)] + ([got.log_p.T] if with_log_prob else [])  # rows first

    def in_log_space(sub: Evidence, ids) -> list:
        got, rows = in_space(sub, "log")
        check_possible(got.log_z, "posterior sampling", ids, bn, sub)
        return rows

    def draw(sub: Evidence, ids) -> list:
        if not use_prob(sub):
            return in_log_space(sub, ids)
        got, rows = in_space(sub, "prob")
        ok = got.ok & rows_in_prob(got.log_z.exp(), sub)
        return rows if bool(ok.all()) else with_rows_redone(rows, ok, sub, ids, in_log_space)

    chunk = rows_per_chunk(bn, ev, factor_dims(facts, ev.observed, ev.partial, keep), (BATCH,))
    parts = in_row_chunks(ev, chunk, draw, row_ids) if chunk < ev.n else draw(ev, row_ids)
    n, s = ev.n, num_samples
    drawn = {v: parts[0][..., i] for i, v in enumerate(names)}
    drawn.update({v: t[:, None].expand(n, s).clone() for v, t in ev.observed.items()})
    drawn.update({v: t[:, None].expand(n, s, *t.shape[1:]).clone() for v, t in ev.values.items()
                  if v in facts.cards})
    with torch.no_grad():
        log_q = draw_barren(facts, ev, drawn, [v for v in order if v not in keep], s, generator, with_log_prob)
    out = [drawn[v] for v in facts.nodes]
    if with_log_prob:
        out.append(parts[1] if log_q is None else parts[1] + log_q)
    return out
