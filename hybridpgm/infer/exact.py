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
semiring and the same gradient trick, which back-tracks the argmax [3].
Variables that are neither observed nor queried nor ancestors of those are
*barren* and pruned (they sum to one) [4].  The contraction order comes from
``opt_einsum`` and is cached per evidence pattern (see
:class:`~hybridpgm.graphs.contraction.PlanCache`), so the same kind of query
costs only the tensor work on CPU or CUDA.  Rows may observe different
nodes: a node observed in some rows enters as a per-row indicator (one-hot or
all ones), or a soft-evidence likelihood
(:class:`~hybridpgm.infer.soft_evidence.Likelihood`); indicators on leaves are
absorbed into their tables first
(:class:`~hybridpgm.graphs.contraction.AbsorbingPlan`), and rows are grouped
by which evidence nodes *with children* they observe (:func:`~hybridpgm.infer.row_groups.row_groups`).  Float64 networks are contracted in
probability space (one ``torch.einsum`` per step; a row whose evidence
probability underflows below ``1e-250`` sends the query to log space), other
dtypes in log space with max-shifting.

**References**

[1] A. Darwiche, *A Differential Approach to Inference in Bayesian Networks*, 2003.

[2] F. Obermeyer et al., *Tensor Variable Elimination for Plated Factor Graphs*, 2019.

[3] J. Eisner, *Inside-Outside and Forward-Backward Algorithms Are Just Backprop*, 2016.

[4] R. D. Shachter, *Bayes-Ball: The Rational Pastime*, 1998.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

import torch

from hybridpgm.errors import EvidenceError
from hybridpgm.infer import row_groups as row_groups_module
from hybridpgm.infer.row_groups import row_groups
from hybridpgm.infer.soft_evidence import Likelihood, soft_log_likelihood

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.bayes_net import BayesNet

__all__ = ["BATCH", "Evidence", "Likelihood", "log_evidence", "map_assignment", "parse_evidence", "posterior"]

#: name of the batch dim over evidence rows in contraction plans
BATCH = "\x00rows"


@dataclass
class Evidence:
    """Evidence rows, validated against a network.

    :ivar int n: number of rows :math:`N`.
    :ivar bool batched: whether the caller passed tensors (results keep the ``N`` dim).
    :ivar dict observed: discrete node -> ``[N]`` long values, observed in every row.
    :ivar dict partial: discrete node -> ``[N, card]`` log-likelihood: one-hot (0 / -inf) for hard
        evidence observed in some rows (all 0 where missing), any log-likelihood for soft evidence.
    :ivar dict values: continuous nodes and context inputs -> ``[N]`` or ``[N, d]`` tensors.
    """

    n: int
    batched: bool
    dtype: torch.dtype = torch.float32
    device: torch.device | None = None
    observed: dict = field(default_factory=dict)
    partial: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    soft: set = field(default_factory=set)


def _as_index_tensor(bn: "BayesNet", name: str, v, device) -> torch.Tensor:
    states = bn.state_names.get(name)
    if isinstance(v, str) or (isinstance(v, (list, tuple)) and v and isinstance(v[0], str)):
        items = [v] if isinstance(v, str) else list(v)
        idx = []
        for s in items:
            if states is None or s not in states:
                raise EvidenceError(f"'{s}' is not a state of '{name}' (states: {states})")
            idx.append(states.index(s))
        t = torch.tensor(idx, device=device)
        return t[0] if isinstance(v, str) else t
    return torch.as_tensor(v, device=device)


def parse_evidence(bn: "BayesNet", evidence: Mapping | None) -> Evidence:
    """Validate evidence and split it into observed / partially observed / continuous parts.

    A discrete value is a state index or state name, or a tensor of them with one
    entry per row; ``NaN`` (float tensors) or ``-1`` (integer tensors) marks a row
    where the variable is not observed.  Scalars broadcast over the rows.

    :raises EvidenceError: for an unknown name, a value out of range, or rows of different lengths.
    """
    evidence = dict(evidence or {})
    dtype, device = bn.dtype, bn.device
    known_inputs = bn.input_names
    tensors, soft = {}, {}
    for name, v in evidence.items():
        if name not in bn.cpds and name not in known_inputs:
            raise EvidenceError(f"evidence names unknown variable '{name}' (nodes: {bn.nodes})")
        if isinstance(v, Likelihood):
            soft[name] = soft_log_likelihood(bn, name, v, dtype, device)
            continue
        tensors[name] = _as_index_tensor(bn, name, v, device) if name in bn.cpds and bn.cardinality(name) \
            else torch.as_tensor(v, device=device)
    lengths = {name: t.shape[0] for name, t in tensors.items() if t.dim() > 0}
    lengths.update({name: t.shape[0] for name, t in soft.items() if t.dim() == 2})
    if len(set(lengths.values())) > 1:
        raise EvidenceError(f"evidence rows differ in length: {lengths}")
    n = next(iter(lengths.values()), 1)
    ev = Evidence(n=n, batched=bool(lengths), dtype=dtype, device=device)
    for name, log_lik in soft.items():
        ev.partial[name] = log_lik.expand(n, log_lik.shape[-1])
        ev.soft.add(name)
    for name, t in tensors.items():
        card = bn.cardinality(name) if name in bn.cpds else None
        if card is None:  # continuous node or context input
            t = t.to(dtype) if not torch.is_floating_point(t) else t
            if t.dim() == 0:
                t = t.expand(n)
            if name in bn.cpds and torch.isnan(t).any():
                raise EvidenceError(f"continuous node '{name}' has missing (NaN) evidence; exact inference "
                                    "needs every continuous node observed")
            ev.values[name] = t
            continue
        if t.dim() > 1:
            raise EvidenceError(f"evidence for '{name}' must be a scalar or [N], got shape {tuple(t.shape)}")
        if torch.is_floating_point(t):
            missing = torch.isnan(t)
            if (t[~missing] != t[~missing].round()).any():
                raise EvidenceError(f"evidence for '{name}' holds non-integer values")
            t = torch.where(missing, -1.0, t).long()
        else:
            t = t.long()
            missing = t == -1
        bad = (~missing) & ((t < 0) | (t >= card))
        if bad.any():
            raise EvidenceError(f"value {t[bad][0].item()} out of range for '{name}' (cardinality {card})")
        t = t.expand(n) if t.dim() == 0 else t
        missing = missing.expand(n) if missing.dim() == 0 else missing
        if missing.all():
            continue
        if missing.any():
            lik = torch.nn.functional.one_hot(t.clamp(min=0), card).to(dtype)
            lik = torch.where(missing[:, None], torch.ones_like(lik), lik)
            ev.partial[name] = lik.log()
        else:
            ev.observed[name] = t
    return ev


def _relevant(bn: "BayesNet", targets) -> set:
    """Ancestral closure of ``targets`` (everything else is barren and sums to 1)."""
    keep, stack = set(), list(targets)
    while stack:
        v = stack.pop()
        if v not in keep:
            keep.add(v)
            stack.extend(bn.cpds[v].parents)
    return keep


def _condition(t: torch.Tensor, dims: tuple, ev: Evidence):
    """Index the observed dims of a factor with each row's value (adds the batch dim)."""
    obs = [d for d in dims if d in ev.observed]
    if not obs:
        return t, dims
    batched = dims and dims[0] == BATCH
    rest = [d for d in dims if d not in ev.observed and d != BATCH]
    order = ([BATCH] if batched else []) + obs + rest
    t = t.permute([dims.index(d) for d in order])
    idx = tuple(ev.observed[d] for d in obs)
    if batched:
        idx = (torch.arange(ev.n, device=t.device),) + idx
    return t[idx], (BATCH, *rest)


def _factors(bn: "BayesNet", ev: Evidence, keep: set) -> tuple[list, list]:
    """Conditioned log-factors ``(tensors, dims)`` of the kept nodes plus partial evidence."""
    tensors, dims_list = [], []
    for v in bn.nodes:
        if v not in keep:
            continue
        cpd = bn.cpds[v]
        disc = cpd.discrete_parents
        if cpd.cardinality is None:
            if v not in ev.values:
                raise EvidenceError(f"continuous node '{v}' must be observed for exact inference")
            t = cpd.log_density(ev.values[v], ev.values)
            dims = (BATCH, *disc)
        else:
            t = cpd.log_table(ev.values)
            dims = ((BATCH,) if cpd.is_batched else ()) + disc + (v,)
        if dims and dims[0] == BATCH and t.shape[0] != ev.n:
            t = t.expand(ev.n, *t.shape[1:])
        t, dims = _condition(t, dims, ev)
        tensors.append(t)
        dims_list.append(dims)
    for v, lik in ev.partial.items():
        if v in keep:
            tensors.append(lik.to(ev.dtype))
            dims_list.append((BATCH, v))
    return tensors, dims_list


#: the row count the contraction order is optimised for: a plan is cached per query shape and reused
#: for any number of rows, and a small nominal count keeps the order close to the per-row optimum
#: (a large one makes opt_einsum avoid early row-carrying intermediates that later steps need anyway)
_PLAN_ROWS = 4


def _contract(bn, ev, tensors, dims_list, output, semiring, extra=(), extra_dims=()):
    """Contract log-factors ``tensors`` (exponentiated for ``semiring="prob"``) plus ``extra``
    operands already in the semiring's space, to the dims ``output``."""
    ref = tensors[0] if tensors else torch.zeros((), dtype=ev.dtype, device=ev.device)
    if semiring == "prob":
        tensors = [t.exp() for t in tensors]
        anchor = ref.new_ones(ev.n)
    else:
        anchor = ref.new_zeros(ev.n)
    operands = list(tensors) + list(extra) + [anchor]  # the anchor carries the batch dim
    dims_list = list(dims_list) + list(extra_dims) + [(BATCH,)]
    sizes = {}
    for t, dims in zip(operands, dims_list):
        sizes.update(zip(dims, t.shape))
    sizes[BATCH] = min(ev.n, _PLAN_ROWS)
    plan = bn.plan_cache.get(dims_list, output, sizes, key_extra=(ev.n > 1,), batch_dim=BATCH)
    return plan(operands, semiring)


#: split rows by inner-evidence pattern only when one row of the shared contraction costs more flops than
#: this (up to ``row_groups._MAX_GROUPS`` groups), or more than ``_SPLIT_ANY_FLOPS_PER_ROW`` (any number of
#: groups, up to one per row: each row's own indexed contraction is then cheaper than its share of the shared one)
_SPLIT_FLOPS_PER_ROW = 2e5
_SPLIT_ANY_FLOPS_PER_ROW = 1e6


def _split(bn, ev, targets, extra_dims=()):
    """``(groups, tensors, dims)``: :func:`row_groups` when splitting pays off (else ``None``), and the
    conditioned factors of the whole batch when they were built to decide."""
    groups = row_groups(bn, ev, targets, max_groups=ev.n)
    if groups is None:
        return None, None, None
    tensors, dims = _factors(bn, ev, _relevant(bn, targets))
    cost = _flops_per_row(bn, ev, tensors, dims, extra_dims)
    few = len(groups) <= row_groups_module._MAX_GROUPS
    if cost > _SPLIT_ANY_FLOPS_PER_ROW or (cost > _SPLIT_FLOPS_PER_ROW and few):
        return groups, tensors, dims
    return None, tensors, dims


def _flops_per_row(bn, ev, tensors, dims_list, extra_dims=()) -> float:
    """Flops per row of the one-contraction plan (searched once per query shape and cached)."""
    dims_list = list(dims_list) + list(extra_dims) + [(BATCH,)]
    sizes = {}
    for t, d in zip(tensors, dims_list):
        sizes.update(zip(d, t.shape))
    for d in extra_dims:
        sizes[d[1]] = bn.cardinality(d[1])
    sizes[BATCH] = min(ev.n, _PLAN_ROWS)
    plan = bn.plan_cache.get(dims_list, (BATCH,), sizes, key_extra=(ev.n > 1,), batch_dim=BATCH)
    return getattr(plan, "opt_cost", 0) / sizes[BATCH]


#: below this a probability-space result is recomputed in log space (float64 only)
_TINY = 1e-250


def _use_prob(tensors) -> bool:
    """Probability space is exact enough and much cheaper in float64; log space otherwise."""
    return bool(tensors) and all(t.dtype == torch.float64 for t in tensors)


def _check_possible(value: torch.Tensor, what: str, row_ids: torch.Tensor | None = None) -> None:
    bad = ~torch.isfinite(value.detach()).reshape(value.shape[0], -1).all(-1) if value.dim() else None
    if bad is not None and bad.any():
        rows = bad.nonzero().flatten()
        rows = (row_ids[rows] if row_ids is not None else rows).tolist()
        shown = rows[:10]
        raise EvidenceError(f"evidence has probability zero under the model in row(s) {shown}"
                            f"{' ...' if len(rows) > 10 else ''}; {what} is undefined")


def _query_names(bn, query) -> list[str]:
    names = [query] if isinstance(query, str) else list(query)
    for q in names:
        if q not in bn.cpds:
            raise EvidenceError(f"query names unknown variable '{q}' (nodes: {bn.nodes})")
        if bn.cardinality(q) is None:
            raise EvidenceError(f"query variable '{q}' is continuous; exact queries are over discrete nodes")
    return names


def _unbatch(t: torch.Tensor, ev: Evidence) -> torch.Tensor:
    return t if ev.batched else t[0]


def log_evidence(bn: "BayesNet", evidence: Mapping | None = None) -> torch.Tensor:
    """:math:`\\log p(e_n)` for each evidence row (a log-density when continuous nodes are observed).

    :returns: ``[N]`` (a scalar when no evidence value has a row dim).
    """
    ev = parse_evidence(bn, evidence)
    groups, _, _ = _split(bn, ev, set(ev.observed) | set(ev.partial))
    if groups is None:
        return _unbatch(_log_evidence_rows(bn, ev), ev)
    out = None
    for idx, sub in groups:
        part = _log_evidence_rows(bn, sub)
        out = part.new_zeros(ev.n) if out is None else out
        out = out.index_copy(0, idx, part)
    return _unbatch(out, ev)


def _log_evidence_rows(bn: "BayesNet", ev: Evidence) -> torch.Tensor:
    targets = set(ev.observed) | set(ev.partial) | {v for v in ev.values if v in bn.cpds}
    tensors, dims = _factors(bn, ev, _relevant(bn, targets))
    if _use_prob(tensors):
        z = _contract(bn, ev, tensors, dims, (BATCH,), "prob")
        if bool((z > _TINY).all()):
            return z.log()
    return _contract(bn, ev, tensors, dims, (BATCH,), "log")


def posterior(bn: "BayesNet", query: str | Sequence[str] | None = None, evidence: Mapping | None = None, *,
              joint: bool = False):
    """Posterior marginals :math:`p(x_q \\mid e_n)` of the query variables, for every row.

    :param query: a node name, a list of names, or ``None`` for every unobserved discrete node.
    :param evidence: name -> value(s); see :func:`parse_evidence`.
    :param bool joint: return the joint ``[N, card_1, ..., card_k]`` over the query
        variables (in the given order) instead of the marginals.
    :returns: ``[N, card]`` for one name, else a dict name -> ``[N, card]`` (without
        ``N`` when no evidence value has a row dim).
    :raises EvidenceError: for unknown names, out-of-range values, a query variable
        observed in every row, or evidence of probability zero.
    """
    ev = parse_evidence(bn, evidence)
    if query is None:
        names = [v for v in bn.nodes if bn.cardinality(v) is not None and v not in ev.observed]
    else:
        names = _query_names(bn, query)
    for q in names:
        if q in ev.observed:
            raise EvidenceError(f"query variable '{q}' is also observed in every evidence row")
    targets = set(names) | set(ev.observed) | set(ev.partial) | {v for v in ev.values if v in bn.cpds}
    groups, tensors, dims = (None, None, None) if joint else _split(bn, ev, targets, [(BATCH, q) for q in names])
    if groups is not None:
        out = {}
        for idx, sub in groups:
            free = [q for q in names if q not in sub.observed]
            parts = dict(zip(free, _marginals(bn, sub, free, row_ids=idx)))
            for q in names:
                part = parts[q] if q in parts else torch.nn.functional.one_hot(
                    sub.observed[q], bn.cardinality(q)).to(ev.dtype)
                base = out.get(q, part.new_zeros(ev.n, bn.cardinality(q)))
                out[q] = base.index_copy(0, idx, part)
        out = {q: _unbatch(out[q], ev) for q in names}
        return out[query] if isinstance(query, str) else out
    if tensors is None:
        tensors, dims = _factors(bn, ev, _relevant(bn, targets))
    if joint:
        if _use_prob(tensors):
            p = _contract(bn, ev, tensors, dims, (BATCH, *names), "prob")
            z = p.reshape(ev.n, -1).sum(-1)
            if bool((z > _TINY).all()):
                return _unbatch(p / z.reshape(-1, *[1] * len(names)), ev)
        log_joint = _contract(bn, ev, tensors, dims, (BATCH, *names), "log")
        log_z = log_joint.reshape(ev.n, -1).logsumexp(-1)
        _check_possible(log_z, "the posterior")
        probs = (log_joint - log_z.reshape(-1, *[1] * len(names))).exp()
        return _unbatch(probs, ev)
    grads = _marginals(bn, ev, names, tensors, dims)
    out = {q: _unbatch(g, ev) for q, g in zip(names, grads)}
    return out[query] if isinstance(query, str) else out


def _marginals(bn: "BayesNet", ev: Evidence, names: list, tensors=None, dims=None, row_ids=None) -> list:
    """``[N, card]`` posterior marginals of ``names``: derivatives of the evidence w.r.t. indicators."""
    if tensors is None:
        targets = set(names) | set(ev.observed) | set(ev.partial)
        tensors, dims = _factors(bn, ev, _relevant(bn, targets))
    grad_mode = torch.is_grad_enabled()
    create_graph = grad_mode and any(t.requires_grad for t in tensors)
    dtype, device = ev.dtype, ev.device
    q_dims = [(BATCH, q) for q in names]
    grads = None
    if _use_prob(tensors):  # Z = sum_x prod_f phi_f * prod_q lambda_q: dZ/dlambda_q = p(x_q, e)
        ones = [torch.ones(ev.n, bn.cardinality(q), dtype=dtype, device=device, requires_grad=True) for q in names]
        with torch.enable_grad():
            z = _contract(bn, ev, tensors, dims, (BATCH,), "prob", ones, q_dims)
            if bool((z > _TINY).all()):
                grads = torch.autograd.grad(z.sum(), ones, create_graph=create_graph) if names else ()
                grads = [g / (z if create_graph else z.detach())[:, None] for g in grads]
    if grads is None:  # log space: the derivative of log Z gives the normalised marginals directly
        zeros = [torch.zeros(ev.n, bn.cardinality(q), dtype=dtype, device=device, requires_grad=True)
                 for q in names]
        with torch.enable_grad():
            log_z = _contract(bn, ev, tensors, dims, (BATCH,), "log", zeros, q_dims)
            _check_possible(log_z, "the posterior", row_ids)
            grads = torch.autograd.grad(log_z.sum(), zeros, create_graph=create_graph) if names else ()
    return list(grads)


def map_assignment(bn: "BayesNet", evidence: Mapping | None = None, *, return_log_prob: bool = False):
    """Most probable explanation: :math:`\\arg\\max_{x \\setminus e} p(x, e_n)` for every row.

    :returns: dict node -> ``[N]`` long state indices of every discrete node not
        observed in all rows (observed ones keep their value); with
        ``return_log_prob`` also ``[N]`` :math:`\\max_x \\log p(x, e_n)`.
    """
    ev = parse_evidence(bn, evidence)
    hidden_cont = [v for v in bn.nodes if bn.cardinality(v) is None and v not in ev.values]
    if hidden_cont:
        raise EvidenceError(f"MAP needs every continuous node observed; missing {hidden_cont}")
    names = [v for v in bn.nodes if bn.cardinality(v) is not None and v not in ev.observed]
    tensors, dims = _factors(bn, ev, set(bn.nodes))
    dtype, device = ev.dtype, ev.device
    indicators = [torch.zeros(ev.n, bn.cardinality(q), dtype=dtype, device=device, requires_grad=True)
                  for q in names]
    with torch.enable_grad():
        best = _contract(bn, ev, [t.detach() for t in tensors], dims, (BATCH,), "max", indicators,
                         [(BATCH, q) for q in names])
        _check_possible(best, "the MAP assignment")
        grads = torch.autograd.grad(best.sum(), indicators) if names else ()
    out = {q: _unbatch(g.argmax(-1), ev) for q, g in zip(names, grads)}
    for v, t in ev.observed.items():
        out[v] = _unbatch(t, ev)
    out = {v: out[v] for v in bn.nodes if v in out}
    if return_log_prob:
        return out, _unbatch(best.detach(), ev)
    return out

