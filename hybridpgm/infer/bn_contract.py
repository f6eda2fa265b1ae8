"""Contracting the factors of an exact Bayesian-network query, and marginals by differentiation.

With per-row query indicators :math:`\\lambda_q` attached to the factors of
:mod:`hybridpgm.infer.bn_factors`,

.. math::

    Z_n(\\lambda) = \\sum_{x} \\prod_f \\phi_f(x_f; e_n) \\prod_q \\lambda_{n,q}(x_q),
    \\qquad
    p(x_q = k, e_n) = \\frac{\\partial Z_n}{\\partial \\lambda_{n,q,k}}\\Big|_{\\lambda = 1},

so every single-variable marginal comes from one forward and one backward
pass [1, 2] (the backward pass of a contraction tree is the outward pass of a
junction tree [3]).  Float64 and float32 networks are contracted in probability
space (one batched matmul per step; on CPU, the backward pass of a contraction with
large intermediates runs by hand in the network's reused workspace,
:mod:`hybridpgm.graphs.reverse_pass`); the rows whose evidence probability falls
below the dtype's :data:`~hybridpgm.infer.bn_spaces.PROBABILITY_FLOOR` are answered again, alone, in log space
(max-shifted, as Pyro's ``torch_log`` einsum), the only space used for other dtypes (the choice of space, row
scaling and redone rows: :mod:`hybridpgm.infer.bn_spaces`).  The pairwise
order is searched once per query shape and cached in ``bn.plan_cache``.  Under :func:`torch.autocast`
(``fit(precision="bf16"/"fp16")``) the queries (:func:`log_evidence_rows`, :func:`marginals`, :func:`joint_rows`)
run with autocast off (:func:`~hybridpgm.infer.bn_exactly.exactly`): a float32 or float64 network, its
neural CPDs included, is answered in its own dtype, not in half precision.

**References**

[1] A. Darwiche, *A Differential Approach to Inference in Bayesian Networks*, 2003.

[2] F. Obermeyer et al., *Tensor Variable Elimination for Plated Factor Graphs*, 2019.

[3] J. Eisner, *Inside-Outside and Forward-Backward Algorithms Are Just Backprop*, 2016.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch

from hybridpgm.autograd_scope import with_autograd
from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import reverse_pass
from hybridpgm.graphs.tiny_ratio import power_of_two, tiny_log, tiny_ratio
from hybridpgm.infer.bn_evidence import BATCH, Evidence, network_facts
from hybridpgm.infer.bn_exactly import exactly as _exactly
from hybridpgm.infer.bn_dense import dense_free_dims, dense_joint, dense_log_evidence, dense_marginals
from hybridpgm.infer.bn_factors import factor_dims, factors
from hybridpgm.infer.bn_readoff import factor_positions, family_marginal, on_factor, read_off_operand
# defined in bn_impossible, still importable from here (__all__)
from hybridpgm.infer.bn_impossible import check_possible
# the space of a query: defined in bn_spaces, still importable from here (__all__)
from hybridpgm.infer.bn_spaces import (PROBABILITY_FLOOR, SCALED_ROWS, TINY, factor_owners, factor_shifts,
                                       row_scaled, rows_in_prob, spaces_for, use_prob, with_rows_redone,
                                       with_shift)
from hybridpgm.tensor_tracking import carries_tangent

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.bayes_net import BayesNet

__all__ = ["EXACT_MAX_BYTES", "PLAN_ROWS", "PROBABILITY_FLOOR", "ROW_CHUNK_BYTES", "SCALED_ROWS", "TINY", "check_fits",
           "check_possible", "contract", "contract_with_gradients", "factor_owners", "in_row_chunks", "marginals",
           "plan_for", "row_scaled", "rows_in_prob", "rows_per_chunk", "spaces_for", "use_prob", "with_rows_redone"]

#: the row count the contraction order is optimised for: a plan is cached per query shape and reused
#: for any number of rows, and a small nominal count keeps the order close to the per-row optimum
#: (a large one makes opt_einsum avoid early row-carrying intermediates that later steps need anyway)
PLAN_ROWS = 4

#: bytes of row-carrying intermediates one contraction may hold, per device type; a batch whose rows need
#: more is contracted in chunks of rows (:func:`rows_per_chunk`), so memory stays bounded however many rows
#: there are.  On CPU the large intermediates of a float64 query live in the network's reused workspace
#: (:mod:`hybridpgm.graphs.reverse_pass`), so larger chunks cost no fresh pages and fewer, larger contractions
#: run faster (water and barley: 256 MiB chunks ran 1.1-1.3 times faster than 64 MiB ones)
ROW_CHUNK_BYTES = {"cpu": 256 * 2**20, "cuda": 2 * 2**30}

#: bytes held per row for each element of a row-carrying intermediate, in units of the dtype's size: the
#: forward value kept for the backward pass, its gradient, and a permuted copy
_ROW_COPIES = 3

#: bytes one evidence row of an exact query's contraction may take (:func:`check_fits`); a query beyond it
#: raises :class:`~hybridpgm.errors.ModelSpecError` before contracting (a 30x30 grid network, each node a child
#: of the nodes above and to its left, needs hundreds of GiB) instead of exhausting the memory.  Raise it on a
#: machine that has the memory.
EXACT_MAX_BYTES = 4 * 2**30

_REMEDIES = ("use approximate inference instead: Gibbs sampling of bn.model (hybridpgm.infer.Gibbs with "
             "pyro.infer.MCMC), ancestral sampling (bn.sample without evidence) or SVI with a guide; query fewer "
             "nodes jointly; or raise hybridpgm.infer.bn_contract.EXACT_MAX_BYTES on a machine with the memory")


def _safe(z: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """``z`` with the rows not ``ok`` set to one: a divisor that gives those rows (redone) finite values and
    gradients."""
    return torch.where(ok, z, torch.ones_like(z))


def plan_for(bn: "BayesNet", dims_list, output, n: int, cards: dict, optimize=None,
             dtype: torch.dtype = torch.float64):
    """The cached plan contracting operands ``dims_list`` (plus the row anchor) to ``output``, after checking
    that one row of it fits :data:`EXACT_MAX_BYTES` (:func:`check_fits`).

    :param dict cards: node -> cardinality (every named dim but the row dim).
    :param optimize: ``None`` (the cache's search) or an opt_einsum optimizer name such as ``"greedy"``.
    :param dtype: the dtype the contraction runs in (its size enters the memory check).
    :raises ModelSpecError: when one row of the contraction needs more than :data:`EXACT_MAX_BYTES`, or a step
        joins more dims than a step's einsum can name (the network's treewidth is too large).
    """
    dims_list = list(dims_list) + [(BATCH,)]

    def sizes():
        s = {d: cards[d] for dims in dims_list for d in dims if d != BATCH}
        s[BATCH] = min(n, PLAN_ROWS)
        return s

    try:
        plan = bn.plan_cache.get(dims_list, output, sizes, key_extra=(n > 1,), batch_dim=BATCH, optimize=optimize)
    except NotImplementedError as e:
        raise ModelSpecError(f"{_query(len(cards), output)}: {e}; {_REMEDIES}") from None
    check_fits(plan, output, dtype, len(cards))
    return plan


def _query(num_nodes: int, output) -> str:
    """What the error messages call the query: the network's size, and a joint's nodes."""
    joint = [d for d in output if d != BATCH]
    return (f"exact inference in a Bayesian network of {num_nodes} nodes"
            + (f" (the joint posterior of {len(joint)} nodes {joint[:6]}{' ...' if len(joint) > 6 else ''})"
               if joint else ""))


def check_fits(plan, output, dtype: torch.dtype, num_nodes: int) -> None:
    """Raise :class:`ModelSpecError` when one evidence row of ``plan`` needs more than :data:`EXACT_MAX_BYTES`.

    :func:`rows_per_chunk` bounds the rows a contraction takes at once, but not below one: one row holds
    :math:`3\\, s\\, m` bytes of row-carrying intermediates (:math:`m` their elements per row, :math:`s` the
    dtype's size, kept for the backward pass with their gradients and a copy) and the largest intermediate
    without the row dim, :math:`s\\, m_0`; the check is on :math:`s \\max(3 m, m_0)`.  (A max-sum step holds
    no more than its output: :func:`~hybridpgm.graphs.contraction_steps.max_sum`.)
    """
    elements = max(_ROW_COPIES * plan.row_elements, plan.largest_free_elements)
    need = elements * dtype.itemsize
    if need > EXACT_MAX_BYTES:
        raise ModelSpecError(f"{_query(num_nodes, output)} needs intermediates of {elements:.3g} elements of "
                             f"{dtype} per evidence row ({need / 2**30:.3g} GiB), more than "
                             f"hybridpgm.infer.bn_contract.EXACT_MAX_BYTES ({EXACT_MAX_BYTES / 2**30:.3g} GiB): its "
                             f"treewidth is too large; {_REMEDIES}")


def rows_per_chunk(bn: "BayesNet", ev: Evidence, dims_list, output) -> int:
    """How many rows one contraction of ``dims_list`` (plus the row anchor) to ``output`` may take.

    :math:`\\lfloor B / (3\\, s\\, m) \\rfloor` rows (at least one) for the budget :math:`B` of
    :data:`ROW_CHUNK_BYTES`, the dtype size :math:`s` and the elements per row :math:`m` of the cached
    plan's row-carrying intermediates; ``ev.n`` when they all fit.
    """
    if ev.n <= 1:
        return ev.n
    plan = plan_for(bn, dims_list, output, ev.n, network_facts(bn).cards, dtype=ev.dtype)
    device = torch.device(ev.device) if ev.device is not None else torch.device("cpu")
    per_row = _ROW_COPIES * ev.dtype.itemsize * max(plan.row_elements, 1)
    budget = ROW_CHUNK_BYTES.get(device.type, ROW_CHUNK_BYTES["cpu"])
    return max(1, min(ev.n, budget // per_row))


def in_row_chunks(ev: Evidence, chunk: int, fn, row_ids=None):
    """``fn(sub_evidence, sub_row_ids)`` over consecutive chunks of ``chunk`` rows, results joined along rows.

    ``fn`` returns a tensor or a list of tensors with the row dim first; ``row_ids`` (the rows' positions in
    the caller's batch, for error messages) are split alike.
    """
    ids = torch.arange(ev.n, device=ev.device) if row_ids is None else row_ids
    parts = [fn(ev.subset(idx), ids[idx]) for idx in torch.arange(ev.n, device=ev.device).split(chunk)]
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return [torch.cat(p) for p in zip(*parts)]


def contract(bn, ev: Evidence, tensors, dims_list, output, semiring: str, extra=(), extra_dims=()):
    """Contract ``tensors`` (already in the semiring's space: probabilities for ``"prob"``, logs otherwise)
    plus ``extra`` operands to the dims ``output``.  In log space (``"log"``, ``"max"``) a contraction to the rows
    alone, ``(BATCH,)``, adds back the row maxima the factors took out (:func:`factor_shifts`): it is
    :math:`\\log Z_n` (:math:`\\max_x \\log p(x, e_n)`), not that of the scaled factors."""
    plan = plan_for(bn, list(dims_list) + list(extra_dims), output, ev.n, network_facts(bn).cards, dtype=ev.dtype)
    out = plan(list(tensors) + list(extra) + [_anchor(ev, tensors, semiring)], semiring)
    return with_shift(out, factor_shifts(tensors), ev.dtype) if semiring != "prob" and output == (BATCH,) else out


def _anchor(ev: Evidence, tensors, semiring: str) -> torch.Tensor:
    """The operand that carries the row dim: ``[N]`` ones (zeros in log space)."""
    ref = tensors[0] if tensors else torch.zeros((), dtype=ev.dtype, device=ev.device)
    return ref.new_ones(ev.n) if semiring == "prob" else ref.new_zeros(ev.n)


def contract_with_gradients(bn, ev: Evidence, plan, tensors, extra, wrt):
    """The probability-space contraction of :func:`contract` to ``(BATCH,)`` by ``plan`` (from
    :func:`plan_for`) and its gradients in the operands at positions ``wrt`` of ``tensors + extra``, by a
    reverse pass in ``bn``'s workspace."""
    operands = list(tensors) + list(extra) + [_anchor(ev, tensors, "prob")]
    return reverse_pass.value_and_gradients(plan, operands, wrt, bn.plan_cache.workspace)


def _dense(bn, tensors, dims, free, ev: Evidence, names, space: str, row_ids):
    """The marginals off the dense joint; in probability space ``(marginals, rows_in_prob)``, off the joint over
    the power of two of its row sums where they must be differentiable (derivatives finite at every order, the
    values the same bits: as :func:`_by_gradient`'s)."""
    joint, ok = dense_joint(tensors, dims, free, ev.n, space), None
    if space == "prob" and joint.requires_grad and torch.is_grad_enabled():
        z = joint.detach().reshape(ev.n, -1).sum(-1)
        ok = rows_in_prob(z, ev)
        joint = joint / power_of_two(_safe(z, ok)).reshape(-1, *[1] * len(free))
    outs, z = dense_marginals(joint, free, names, space)
    if space == "prob":
        ok = rows_in_prob(z, ev) if ok is None else ok
        zs = _safe(z, ok)[:, None]
        return [m / zs for m in outs], ok
    check_possible(z, "the posterior", row_ids, bn, ev)
    return outs


def _workspace_plan(bn, ev: Evidence, dims, rest):
    """The query's plan when its reverse pass should run by hand in the network's workspace: on CPU, when
    some intermediate has at least :data:`~hybridpgm.graphs.reverse_pass.LARGE` elements (fresh pages cost
    more than autograd's engine saves); ``None`` otherwise."""
    if ev.device is not None and torch.device(ev.device).type != "cpu":
        return None  # the CUDA caching allocator already reuses memory
    plan = plan_for(bn, list(dims) + [(BATCH, q) for q in rest], (BATCH,), ev.n, network_facts(bn).cards,
                    dtype=ev.dtype)
    return plan if plan.largest_row_elements * ev.n >= reverse_pass.LARGE else None


def _by_gradient(bn, facts, ev: Evidence, names, keep, tensors, dims, space: str, direct: bool, row_ids):
    """Marginals from one backward pass through the contraction; in probability space ``(marginals,
    rows_in_prob)`` (the rows not in it are to be redone in log space).

    In probability space on CPU, when the contraction has large intermediates (:func:`_workspace_plan`) and
    the answer need not itself be differentiable, the reverse pass runs by hand in the network's reused
    workspace (:func:`hybridpgm.graphs.reverse_pass.value_and_gradients`); otherwise autograd differentiates
    the contraction, as where the factors carry a forward-mode tangent (``jvp``, ``jacfwd``, a ``forward_ad`` dual;
    no ``requires_grad``: :func:`~hybridpgm.tensor_tracking.carries_tangent`), which flows through autograd's
    backward pass, nothing on its way detached (:func:`~hybridpgm.infer.bn_readoff.read_off_operand`).  Where the
    marginals must be differentiable it differentiates :math:`Z_n / s_n` instead, :math:`s_n` a power of two of the
    size of :math:`Z_n` held constant (1 for the rows to redo), and divides by that ratio (of order one): their
    derivatives are then finite at every order however small :math:`Z_n` is
    (dividing by :math:`Z_n` itself, the second derivatives divide by :math:`Z_n^2`, the third by :math:`Z_n^3`;
    :mod:`hybridpgm.graphs.tiny_ratio`), and the scaling being exact, the values are the same bits, for a few
    operations per query, not per marginal.
    """
    ok = None  # the rows answered in probability space
    own = factor_positions(facts, ev, keep, direct)
    create_graph = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    attached = create_graph or any(carries_tangent(t) for t in tensors)  # a forward-mode tangent: nothing detached
    read_off = on_factor(names, own, dims, ev, direct)
    rest = [q for q in names if q not in read_off]
    fill = torch.ones if space == "prob" else torch.zeros
    plan = _workspace_plan(bn, ev, dims, rest) if space == "prob" and not attached else None
    by_hand = plan is not None
    lams = [fill(ev.n, facts.cards[q], dtype=ev.dtype, device=ev.device, requires_grad=not by_hand) for q in rest]
    if by_hand:
        wrt = [own[q] for q in read_off] + [len(tensors) + j for j in range(len(rest))]
        z, grads = contract_with_gradients(bn, ev, plan, tensors, lams, wrt)
    else:
        wrt = [read_off_operand(tensors, own[q], create_graph) for q in read_off] + lams
        with torch.enable_grad():
            z = contract(bn, ev, tensors, dims, (BATCH,), space, lams, [(BATCH, q) for q in rest])
            if space == "log":
                check_possible(z, "the posterior", row_ids, bn, ev)
            elif attached:
                ok = rows_in_prob(z, ev)
                z = z / power_of_two(_safe(z.detach(), ok))
            grads = torch.autograd.grad(z.sum(), wrt, create_graph=create_graph) if names else ()
    # no graph where none is asked for (autograd records nothing; a tangent still flows: forward mode ignores it)
    with torch.set_grad_enabled(create_graph):
        got = {}
        for q, g in zip(read_off, grads):
            i = own[q]
            got[q] = family_marginal(g * tensors[i] if space == "prob" else g, dims[i], q)
        got.update(zip(rest, grads[len(read_off):]))
        if space == "prob":
            ok = rows_in_prob(z, ev) if ok is None else ok
            zd = _safe(z, ok)
            return [got[q] / zd[:, None] for q in names], ok
        return [got[q] for q in names]


@_exactly
def marginals(bn: "BayesNet", ev: Evidence, names: list, keep, row_ids=None, direct: bool = True,
              spaces=None) -> list:
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
    :param spaces: the spaces to try (default :func:`~hybridpgm.infer.bn_spaces.spaces_for`): rows that
        probability space cannot answer (:func:`~hybridpgm.infer.bn_spaces.rows_in_prob`) are answered again,
        alone, in log space.
    """
    facts = network_facts(bn)
    dims = factor_dims(facts, ev.observed, ev.partial, keep)
    free = dense_free_dims(dims, facts.cards, ev.n) if direct else None
    if free is None:
        taken = set(on_factor(names, factor_positions(facts, ev, keep, direct), dims, ev, direct))
        chunk = rows_per_chunk(bn, ev, dims + [(BATCH, q) for q in names if q not in taken], (BATCH,))
        if chunk < ev.n:
            return in_row_chunks(ev, chunk, lambda sub, ids: marginals(bn, sub, names, keep, ids, direct, spaces),
                                 row_ids)
    for space in spaces or spaces_for(ev):
        tensors, dims = factors(facts, ev, keep, space)
        if space == "prob":  # scaled row by row (bn_spaces), the scales unused: marginals are ratios in a row
            tensors, _ = row_scaled(tensors, dims, ev, factor_owners(facts, ev, keep))
        if free is not None:  # a tiny joint: enumerate it
            out = _dense(bn, tensors, dims, free, ev, names, space, row_ids)
        else:
            # marginals as gradients: autograd also under torch.inference_mode (the caller's, on their evidence).
            # bn and facts are bound, not passed: with_autograd walks its arguments for inference tensors, and
            # facts holds every CPD's tables and memos that grow with the target sets seen (a walk per row group:
            # 6% of asia's mixed batch, up to 2% elsewhere); _by_gradient reads only its names and cardinalities
            out = with_autograd(functools.partial(_by_gradient, bn, facts), ev, names, keep, tensors, dims, space,
                                direct, row_ids)
        if space == "log":
            return out
        out, ok = out
        if bool(ok.all()):
            return out
        if bool(ok.any()):  # the rest, and only they, in log space
            return with_rows_redone(out, ok, ev, row_ids,
                                     lambda sub, ids: marginals(bn, sub, names, keep, ids, direct, ("log",)))
    raise AssertionError("unreachable")  # pragma: no cover


@_exactly
def log_evidence_rows(bn: "BayesNet", ev: Evidence, keep, spaces=None) -> torch.Tensor:
    """``[N]`` :math:`\\log Z_n` of the relevant factors ``keep`` (``spaces`` as for :func:`marginals`).

    A row of impossible evidence is :math:`-\\infty` with a zero gradient (in log space too:
    :func:`~hybridpgm.infer.bn_dense.dense_log_evidence`, :class:`~hybridpgm.graphs.contraction_steps.LogOfSum`), so
    the gradient of any other row is the one it has alone.
    """
    facts = network_facts(bn)
    dims = factor_dims(facts, ev.observed, ev.partial, keep)
    free = dense_free_dims(dims, facts.cards, ev.n)
    if free is None:
        chunk = rows_per_chunk(bn, ev, dims, (BATCH,))
        if chunk < ev.n:
            return in_row_chunks(ev, chunk, lambda sub, _: log_evidence_rows(bn, sub, keep, spaces))
    if "prob" in (spaces or spaces_for(ev)):
        tensors, dims = factors(facts, ev, keep, "prob")
        shift, (tensors, log_c) = factor_shifts(tensors), row_scaled(tensors, dims, ev, factor_owners(facts, ev, keep))
        if free is not None:
            z = dense_joint(tensors, dims, free, ev.n, "prob").reshape(ev.n, -1).sum(-1)
        else:
            z = contract(bn, ev, tensors, dims, (BATCH,), "prob")
        ok = rows_in_prob(z, ev)
        if bool(ok.all()):
            return with_shift(tiny_log(z) + log_c, shift, ev.dtype)
        if bool(ok.any()):
            return with_rows_redone(with_shift(tiny_log(_safe(z, ok)) + log_c, shift, ev.dtype), ok, ev, None,
                                     lambda sub, _: log_evidence_rows(bn, sub, keep, ("log",)))
    tensors, dims = factors(facts, ev, keep, "log")
    if free is not None:
        return with_shift(dense_log_evidence(dense_joint(tensors, dims, free, ev.n, "log")), factor_shifts(tensors),
                          ev.dtype)
    return contract(bn, ev, tensors, dims, (BATCH,), "log")


@_exactly
def joint_rows(bn: "BayesNet", ev: Evidence, names: list, keep, spaces=None, row_ids=None) -> torch.Tensor:
    """``[N, card_1, ..., card_k]`` posterior joint of ``names`` (``spaces``, ``row_ids`` as for :func:`marginals`)."""
    facts = network_facts(bn)
    tail = [1] * len(names)
    chunk = rows_per_chunk(bn, ev, factor_dims(facts, ev.observed, ev.partial, keep), (BATCH, *names))
    if chunk < ev.n:
        return in_row_chunks(ev, chunk, lambda sub, ids: joint_rows(bn, sub, names, keep, spaces, ids), row_ids)
    if "prob" in (spaces or spaces_for(ev)):
        tensors, dims = factors(facts, ev, keep, "prob")
        p = contract(bn, ev, row_scaled(tensors, dims, ev, factor_owners(facts, ev, keep))[0], dims,
                     (BATCH, *names), "prob")
        z = p.reshape(ev.n, -1).sum(-1)
        ok = rows_in_prob(z, ev)
        joint = tiny_ratio(p, _safe(z, ok).reshape(-1, *tail))
        if bool(ok.all()):
            return joint
        if bool(ok.any()):
            return with_rows_redone(joint, ok, ev, row_ids,
                                     lambda sub, ids: joint_rows(bn, sub, names, keep, ("log",), ids))
    tensors, dims = factors(facts, ev, keep, "log")
    log_joint = contract(bn, ev, tensors, dims, (BATCH, *names), "log")
    log_z = log_joint.reshape(ev.n, -1).logsumexp(-1)
    check_possible(log_z, "the posterior", row_ids, bn, ev)
    return (log_joint - log_z.reshape(-1, *tail)).exp()
