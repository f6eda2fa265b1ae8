"""Exact queries on a tiny relevant network by its dense joint (enumeration), skipping the contraction.

When the unobserved variables of the relevant network span only a few
states per row (:data:`DENSE_MAX`; asia has :math:`2^6` with two nodes
observed), the joint

.. math:: J_n(x) = \\prod_f \\phi_f(x_f; e_n), \\qquad Z_n = \\sum_x J_n(x), \\qquad
          p(x_q = k \\mid e_n) = \\frac{1}{Z_n}\\sum_{x : x_q = k} J_n(x)

is cheaper to build outright, as a broadcast product of the factors ``[N, c_1, ..., c_m]``,
than to contract pairwise and differentiate: a handful of tensor operations
instead of two passes of small einsums, which is what a one-row query on a
small network costs.  The answers are the same numbers (the tests compare them
with the contraction); gradients flow through the product as usual.  Log space
uses sums and a log-sum-exp instead (:func:`dense_log_evidence`: a row whose states are all impossible
gives :math:`\\log Z_n = -\\infty` with a zero gradient, so it leaves the gradients of the other rows of its
batch as they are alone).
"""

from __future__ import annotations

import functools
import math

import torch

from hybridpgm.graphs.contraction_steps import shifted_logsumexp
from hybridpgm.infer.bn_evidence import BATCH
from hybridpgm.tensor_tracking import kept_by_a_cache

__all__ = ["DENSE_MAX", "DENSE_TOTAL", "dense_free_dims", "dense_joint", "dense_log_evidence", "dense_marginals"]

#: the largest number of joint states per row answered by the dense joint
DENSE_MAX = 256

#: and the largest number of joint entries over all rows
DENSE_TOTAL = 1 << 18


def dense_free_dims(dims_list, cards: dict, n: int) -> tuple | None:
    """The free (non-row) dims of the factors when their joint is small enough to build, else ``None``
    (also when there is no factor)."""
    if not dims_list:
        return None
    free = []
    for dims in dims_list:
        for d in dims:
            if d != BATCH and d not in free:
                free.append(d)
    size = math.prod(cards[d] for d in free)
    if size > DENSE_MAX or size * n > DENSE_TOTAL:
        return None
    return tuple(free)


def dense_joint(tensors, dims_list, free: tuple, n: int, space: str) -> torch.Tensor:
    """``[N, c_1, ..., c_m]``: the product (``"prob"``) or sum (``"log"``) of the factors over ``free``."""
    axes = {d: i + 1 for i, d in enumerate(free)}
    axes[BATCH] = 0
    joint = None
    for t, dims in zip(tensors, dims_list):
        order = sorted(range(len(dims)), key=lambda i: axes[dims[i]])
        if order != list(range(len(dims))):
            t = t.permute(order)
        shape = [1] * (len(free) + 1)
        for i in order:
            shape[axes[dims[i]]] = t.shape[order.index(i)]
        t = t.reshape(shape)
        joint = t if joint is None else (joint * t if space == "prob" else joint + t)
    return joint.expand(n, *joint.shape[1:]) if joint.shape[0] != n else joint


def dense_log_evidence(joint: torch.Tensor) -> torch.Tensor:
    """``[N]`` :math:`\\log Z_n = \\log \\sum_x e^{J_n(x)}` of a log-space joint ``[N, c_1, ..., c_m]`` from
    :func:`dense_joint`.

    Shifted by each row's detached maximum
    (:func:`~hybridpgm.graphs.underflow_redo.shifted_logsumexp`): a row of impossible evidence (every
    :math:`J_n(x) = -\\infty`) is :math:`-\\infty` with a zero gradient.  ``torch.logsumexp``'s backward pass
    gives NaN there, even under a zero upstream gradient, and NaN times the zero weight of that row spreads
    into the gradients of the tables every row shares.
    """
    return shifted_logsumexp(joint.reshape(joint.shape[0], -1))


def dense_marginals(joint: torch.Tensor, free: tuple, names, space: str):
    """``(marginals [N, card] of names, Z or log Z [N])`` of a joint from :func:`dense_joint`."""
    n = joint.shape[0]
    if space == "prob":
        return _sum_to_each(joint, free, names), joint.reshape(n, -1).sum(-1)
    log_z = dense_log_evidence(joint)
    # normalise once, then sum: a logsumexp over states that are all impossible would give NaN gradients
    post = (joint - log_z.reshape(n, *[1] * len(free))).exp()
    return _sum_to_each(post, free, names), log_z


def _sum_to_each(table: torch.Tensor, free: tuple, names) -> list:
    """``[N, card]`` sums of ``table`` (``[N, *cards of free]``) over all axes but each name's.

    All of them in one matrix product, :math:`J\\,M` with the 0/1 matrix
    :math:`M_{x,(q,k)} = [x_q = k]` (``[S, sum of the names' cards]`` for the :math:`S` joint states):
    one kernel instead of one multi-axis reduction per name.  A table without a row dim (expanded
    over the rows) is summed once.
    """
    n, cards = table.shape[0], tuple(table.shape[1:])
    axes = tuple(free.index(q) for q in names)
    if not axes:
        return []
    rows = table[:1] if n > 1 and table.stride(0) == 0 else table
    sums = rows.reshape(rows.shape[0], -1) @ _marginaliser(cards, axes, table.dtype, table.device)
    if rows.shape[0] != n:
        sums = sums.expand(n, -1)
    return list(sums.split([cards[a] for a in axes], dim=1))


@functools.lru_cache(maxsize=64)
def _marginaliser(cards: tuple, axes: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``[prod(cards), sum(cards[a] for a in axes)]``: column ``(a, k)`` is 1 where axis ``a`` is in state ``k``.

    Built outside :func:`torch.inference_mode` even when called under it: the cached matrix is used by later
    queries that autograd records, which cannot save an inference tensor."""
    with kept_by_a_cache():
        state = torch.arange(math.prod(cards), device=device)
        strides = [math.prod(cards[i + 1:]) for i in range(len(cards))]
        return torch.cat([torch.nn.functional.one_hot((state // strides[a]) % cards[a], cards[a]) for a in axes],
                         dim=1).to(dtype)
