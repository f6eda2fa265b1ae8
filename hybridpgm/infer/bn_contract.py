"""Contracting the factors of an exact Bayesian-network query, and marginals by differentiation.

With per-row query indicators :math:`\\lambda_q` attached to the factors of
:mod:`hybridpgm.infer.bn_factors`,

.. math::

    Z_n(\\lambda) = \\sum_{x} \\prod_f \\phi_f(x_f; e_n) \\prod_q \\lambda_{n,q}(x_q),
    \\qquad
    p(x_q = k, e_n) = \\frac{\\partial Z_n}{\\partial \\lambda_{n,q,k}}\\Big|_{\\lambda = 1},

so every single-variable marginal comes from one forward and one backward
pass [1, 2] (the backward pass of a contraction tree is the outward pass of a
junction tree [3]).  Float64 networks are contracted in probability space
(one ``torch.einsum`` per step); a row whose evidence probability underflows
below :data:`TINY` sends the query to log space (max-shifted, as Pyro's
``torch_log`` einsum), the only space used for other dtypes.  The pairwise
order is searched once per query shape and cached in ``bn.plan_cache``.

**References**

[1] A. Darwiche, *A Differential Approach to Inference in Bayesian Networks*, 2003.

[2] F. Obermeyer et al., *Tensor Variable Elimination for Plated Factor Graphs*, 2019.

[3] J. Eisner, *Inside-Outside and Forward-Backward Algorithms Are Just Backprop*, 2016.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hybridpgm.errors import EvidenceError
from hybridpgm.infer.bn_evidence import BATCH, Evidence, network_facts
from hybridpgm.infer.bn_dense import dense_free_dims, dense_joint, dense_marginals
from hybridpgm.infer.bn_factors import factor_dims, factors

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.bayes_net import BayesNet

__all__ = ["PLAN_ROWS", "TINY", "check_possible", "contract", "marginals", "plan_for", "use_prob"]

#: the row count the contraction order is optimised for: a plan is cached per query shape and reused
#: for any number of rows, and a small nominal count keeps the order close to the per-row optimum
#: (a large one makes opt_einsum avoid early row-carrying intermediates that later steps need anyway)
PLAN_ROWS = 4

#: below this a probability-space result is recomputed in log space (float64 only)
TINY = 1e-250


def use_prob(ev: Evidence) -> bool:
    """Probability space is exact enough and much cheaper in float64; log space otherwise."""
    return ev.dtype == torch.float64


def plan_for(bn: "BayesNet", dims_list, output, n: int, cards: dict, optimize=None):
    """The cached plan contracting operands ``dims_list`` (plus the row anchor) to ``output``.

    :param dict cards: node -> cardinality (every named dim but the row dim).
    :param optimize: ``None`` (the cache's search) or an opt_einsum optimizer name such as ``"greedy"``.
    """
    dims_list = list(dims_list) + [(BATCH,)]

    def sizes():
        s = {d: cards[d] for dims in dims_list for d in dims if d != BATCH}
        s[BATCH] = min(n, PLAN_ROWS)
        return s

    return bn.plan_cache.get(dims_list, output, sizes, key_extra=(n > 1,), batch_dim=BATCH, optimize=optimize)


def contract(bn, ev: Evidence, tensors, dims_list, output, semiring: str, extra=(), extra_dims=()):
    """Contract ``tensors`` (already in the semiring's space: probabilities for ``"prob"``, logs otherwise)
    plus ``extra`` operands to the dims ``output``."""
    ref = tensors[0] if tensors else torch.zeros((), dtype=ev.dtype, device=ev.device)
    anchor = ref.new_ones(ev.n) if semiring == "prob" else ref.new_zeros(ev.n)  # carries the row dim
    plan = plan_for(bn, list(dims_list) + list(extra_dims), output, ev.n, network_facts(bn).cards)
    return plan(list(tensors) + list(extra) + [anchor], semiring)


def check_possible(value: torch.Tensor, what: str, row_ids: torch.Tensor | None = None) -> None:
    """Raise :class:`EvidenceError` naming the rows whose ``value`` is not finite (evidence of probability 0)."""
    bad = ~torch.isfinite(value.detach()).reshape(value.shape[0], -1).all(-1) if value.dim() else None
    if bad is not None and bad.any():
        rows = bad.nonzero().flatten()
        rows = (row_ids[rows] if row_ids is not None else rows).tolist()
        shown = rows[:10]
        raise EvidenceError(f"evidence has probability zero under the model in row(s) {shown}"
                            f"{' ...' if len(rows) > 10 else ''}; {what} is undefined")


def _family_marginal(fam: torch.Tensor, dims: tuple, q: str) -> torch.Tensor:
    """``[N or 1, card]``: the family joint ``fam`` over ``dims`` summed down to ``q`` (the CPD's own dim)."""
    red = [i for i, d in enumerate(dims) if d not in (BATCH, q)]
    m = fam.sum(red) if red else fam
    return m if dims[0] == BATCH else m.unsqueeze(0)


def _dense(tensors, dims, free, ev: Evidence, names, space: str, row_ids):
    outs, z = dense_marginals(dense_joint(tensors, dims, free, ev.n, space), free, names, space)
    if space == "prob":
        return [m / z[:, None] for m in outs] if bool((z > TINY).all()) else None
    check_possible(z, "the posterior", row_ids)
    return outs


def _by_gradient(bn, facts, ev: Evidence, names, keep, tensors, dims, space: str, direct: bool, row_ids):
    """Marginals from one backward pass through the contraction (``None`` when probability space underflows)."""
    own = {v: i for i, v in enumerate(v for v in facts.nodes if v in keep)}  # the order of factors()
    create_graph = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    if direct:  # a node with a per-row likelihood reads its marginal off that [N, card] operand
        own.update({v: len(own) + j for j, v in enumerate(v for v in ev.partial if v in keep)})
    on_factor = [q for q in names if direct and (ev.n == 1 or dims[own[q]][0] == BATCH)]
    for q in on_factor:
        i = own[q]
        if not (create_graph and tensors[i].requires_grad):
            tensors[i] = tensors[i].detach().requires_grad_()
    taken = set(on_factor)
    rest = [q for q in names if q not in taken]
    fill = torch.ones if space == "prob" else torch.zeros
    lams = [fill(ev.n, facts.cards[q], dtype=ev.dtype, device=ev.device, requires_grad=True) for q in rest]
    wrt = [tensors[own[q]] for q in on_factor] + lams
    with torch.enable_grad():
        z = contract(bn, ev, tensors, dims, (BATCH,), space, lams, [(BATCH, q) for q in rest])
        if space == "prob" and not bool((z > TINY).all()):
            return None
        if space == "log":
            check_possible(z, "the posterior", row_ids)
        grads = torch.autograd.grad(z.sum(), wrt, create_graph=create_graph) if names else ()
    got = {}
    for q, g in zip(on_factor, grads):
        i = own[q]
        fam = g * (tensors[i] if create_graph else tensors[i].detach()) if space == "prob" else g
        got[q] = _family_marginal(fam, dims[i], q)
    got.update(zip(rest, grads[len(on_factor):]))
    if space == "prob":
        zd = z if create_graph else z.detach()
        return [got[q] / zd[:, None] for q in names]
    return [got[q] for q in names]


def marginals(bn: "BayesNet", ev: Evidence, names: list, keep, row_ids=None, direct: bool = True) -> list:
    """``[N, card]`` posterior marginals of ``names``: derivatives of the evidence [1].

    A query node whose own CPD factor carries the row dim (it meets evidence), or any node in a one-row
    query, reads its marginal off the gradient with respect to that factor,
    :math:`p(x_{\\mathrm{fa}(q)}, e_n) = \\phi_q \\, \\partial Z_n / \\partial \\phi_q`, summed over the
    parents; a node with evidence in some rows (or soft evidence) off its likelihood operand the same
    way; the others get a per-row indicator :math:`\\lambda_q` (an extra operand).  ``names`` must
    not be observed in every row.

    :param keep: the nodes whose factors enter (the relevant network).
    :param row_ids: the rows' positions in the caller's batch (named in errors).
    :param bool direct: read marginals off the factors where possible, or off the dense joint of a tiny
        relevant network (:mod:`~hybridpgm.infer.bn_dense`); ``False``: the contraction with indicators for all.
    """
    facts = network_facts(bn)
    free = dense_free_dims(factor_dims(facts, ev.observed, ev.partial, keep), facts.cards, ev.n) if direct else None
    for space in (("prob", "log") if use_prob(ev) else ("log",)):
        tensors, dims = factors(facts, ev, keep, space)
        if free is not None:  # a tiny joint: enumerate it
            out = _dense(tensors, dims, free, ev, names, space, row_ids)
        else:
            out = _by_gradient(bn, facts, ev, names, keep, tensors, dims, space, direct, row_ids)
        if out is not None:  # None: probability space underflowed, go to log space
            return out
    raise AssertionError("unreachable")  # pragma: no cover


def log_evidence_rows(bn: "BayesNet", ev: Evidence, keep) -> torch.Tensor:
    """``[N]`` :math:`\\log Z_n` of the relevant factors ``keep``."""
    facts = network_facts(bn)
    free = dense_free_dims(factor_dims(facts, ev.observed, ev.partial, keep), facts.cards, ev.n)
    if use_prob(ev):
        tensors, dims = factors(facts, ev, keep, "prob")
        if free is not None:
            z = dense_joint(tensors, dims, free, ev.n, "prob").reshape(ev.n, -1).sum(-1)
        else:
            z = contract(bn, ev, tensors, dims, (BATCH,), "prob")
        if bool((z > TINY).all()):
            return z.log()
    tensors, dims = factors(facts, ev, keep, "log")
    if free is not None:
        return dense_joint(tensors, dims, free, ev.n, "log").reshape(ev.n, -1).logsumexp(-1)
    return contract(bn, ev, tensors, dims, (BATCH,), "log")


def joint_rows(bn: "BayesNet", ev: Evidence, names: list, keep) -> torch.Tensor:
    """``[N, card_1, ..., card_k]`` posterior joint of ``names``."""
    facts = network_facts(bn)
    tail = [1] * len(names)
    if use_prob(ev):
        tensors, dims = factors(facts, ev, keep, "prob")
        p = contract(bn, ev, tensors, dims, (BATCH, *names), "prob")
        z = p.reshape(ev.n, -1).sum(-1)
        if bool((z > TINY).all()):
            return p / z.reshape(-1, *tail)
    tensors, dims = factors(facts, ev, keep, "log")
    log_joint = contract(bn, ev, tensors, dims, (BATCH, *names), "log")
    log_z = log_joint.reshape(ev.n, -1).logsumexp(-1)
    check_possible(log_z, "the posterior")
    return (log_joint - log_z.reshape(-1, *tail)).exp()
