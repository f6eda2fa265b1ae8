"""Which operand of an exact Bayesian-network query each marginal is read off, and reading it.

:func:`~hybridpgm.infer.bn_contract.marginals` takes the posterior marginals as derivatives of the evidence
:math:`Z_n` [1].  A query node :math:`q` whose own CPD factor :math:`\\phi_q` carries the row dim (it meets
evidence), or any node of a one-row query, needs no extra operand: its family joint is
:math:`p(x_{\\mathrm{fa}(q)}, e_n) = \\phi_q\\, \\partial Z_n / \\partial \\phi_q`, summed over the parents
(:func:`family_marginal`); a node with evidence in some rows (or soft evidence) is read off its ``[N, card]``
likelihood operand the same way.  The other query nodes get per-row indicator operands :math:`\\lambda_q`.

**References**

[1] A. Darwiche, *A Differential Approach to Inference in Bayesian Networks*, 2003.
"""

from __future__ import annotations

import torch

from hybridpgm.infer.bn_evidence import BATCH, Evidence
from hybridpgm.tensor_tracking import carries_tangent
from hybridpgm.transform_scope import under_torch_func

__all__ = ["factor_positions", "family_marginal", "on_factor", "read_off_operand"]


def factor_positions(facts, ev: Evidence, keep, direct: bool) -> dict:
    """Node -> position of the operand its marginal is read off (its CPD factor, or its likelihood).

    :param facts: the network's :func:`~hybridpgm.infer.bn_evidence.network_facts`.
    :param ev: the query's evidence.
    :param keep: the nodes whose factors enter (the relevant network), in the order of
        :func:`~hybridpgm.infer.bn_factors.factors`.
    :param bool direct: also the nodes with a per-row likelihood operand (the query reads marginals off factors).
    """
    own = {v: i for i, v in enumerate(v for v in facts.nodes if v in keep)}  # the order of factors()
    if direct:  # a node with a per-row likelihood reads its marginal off that [N, card] operand
        own.update({v: len(own) + j for j, v in enumerate(v for v in ev.partial if v in keep)})
    return own


def on_factor(names, own: dict, dims, ev: Evidence, direct: bool) -> list:
    """The query nodes whose marginals are read off a factor (the others get indicator operands).

    :param names: the query nodes.
    :param dict own: :func:`factor_positions`.
    :param dims: the operands' dims.
    :param ev: the query's evidence.
    :param bool direct: read marginals off factors at all.
    """
    return [q for q in names if direct and (ev.n == 1 or dims[own[q]][0] == BATCH)]


def family_marginal(fam: torch.Tensor, dims: tuple, q: str) -> torch.Tensor:
    """``[N or 1, card]``: the family joint ``fam`` over ``dims`` summed down to ``q`` (the CPD's own dim).

    :param fam: the factor times the gradient of :math:`Z_n` in it.
    :param tuple dims: ``fam``'s dims.
    :param str q: the query node.
    """
    red = [i for i, d in enumerate(dims) if d not in (BATCH, q)]
    m = fam.sum(red) if red else fam
    return m if dims[0] == BATCH else m.unsqueeze(0)


def read_off_operand(tensors: list, i: int, create_graph: bool) -> torch.Tensor:
    """The tensor to differentiate :math:`Z_n` in for the operand ``tensors[i]`` a marginal is read off, which
    replaces the operand in ``tensors`` where needed: the operand itself where the answer is differentiable
    (``create_graph``) and it requires grad; else a detached copy that requires grad; but a zero leaf added to the
    operand where it carries a forward-mode tangent (:func:`~hybridpgm.tensor_tracking.carries_tangent`: a detached
    copy would drop the tangent's share in :math:`Z_n` and in its gradient), and where the query runs under a
    :mod:`torch.func` transform (``grad``, ``jacrev``, ``jacfwd``, ``hessian``, ``vmap``), which refuses
    ``requires_grad_`` on any tensor, one that depends on no transformed input too (an operand of a one-row query
    whose CPD is not among the parameters differentiated in).

    The transform is told by torch's refusal, not asked of its interpreter stack up front, so that the plain path
    pays nothing for it.

    :param list tensors: the query's operands, changed in place.
    :param int i: the operand's position (:func:`factor_positions`).
    :param bool create_graph: whether the marginals keep their graph.
    :returns: the leaf to pass to :func:`torch.autograd.grad`."""
    t = tensors[i]
    if create_graph and t.requires_grad:
        return t
    if carries_tangent(t):
        return _zero_leaf_added(tensors, i)
    try:
        tensors[i] = t.detach().requires_grad_()
    except RuntimeError:  # "requires_grad_() ... inside of a function being transformed"
        if not under_torch_func():
            raise
        return _zero_leaf_added(tensors, i)
    return tensors[i]


def _zero_leaf_added(tensors: list, i: int) -> torch.Tensor:
    """A zero leaf that requires grad, added to ``tensors[i]`` in its place: the gradient of :math:`Z_n` in it is
    the gradient in the operand, whose graph and tangent :math:`Z_n` keeps."""
    t = tensors[i]
    leaf = torch.zeros(t.shape, dtype=t.dtype, device=t.device, requires_grad=True)
    tensors[i] = t + leaf
    return leaf
