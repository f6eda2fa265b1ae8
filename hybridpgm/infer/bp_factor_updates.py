"""The factor-to-variable reductions of the general flat BP engine (:class:`~hybridpgm.infer.bp_engine.FlatGraph`,
step 3 of :mod:`hybridpgm.infer.bp_engine`), also used by max-product decoding
(:mod:`hybridpgm.infer.max_product_decoding`).

For a factor of arity :math:`k` with log table :math:`\\theta_f` and normalised incoming log messages
:math:`n_{i \\to f}`, the message to argument :math:`j` is

.. math::

    m_{f \\to j}(x_j) = \\operatorname{logsumexp}_{x_{-j}} \\Big(\\theta_f(x) + \\sum_{i \\ne j} n_{i \\to f}(x_i)\\Big)

(``amax`` in place of ``logsumexp`` for max-product), one batched call per factor arity: :func:`pairwise_messages` for
:math:`k = 2`, :func:`kary_messages` otherwise.  The sums of table and messages are formed once, table-sized, and where
neither autograd nor a forward-mode tangent needs them (:func:`_consumable`) they are added to and reduced in
their own memory (:func:`_plus`, :func:`logsumexp_consuming`): the same numbers, bit for bit, with one
table-sized temporary fewer per reduction.
"""

from __future__ import annotations

import math

import torch

from hybridpgm.tensor_tracking import carries_tangent

__all__ = ["kary_messages", "logsumexp_consuming", "pairwise_messages", "table_scores"]


def _argument_views(n: torch.Tensor) -> list[torch.Tensor]:
    """``n [B,F,k,C]`` -> ``k`` views, argument ``i``'s ``[B,F] + [1]*k`` with ``C`` at entry dim ``i``."""
    B, F, k, C = n.shape
    views = []
    for i in range(k):
        shape = [1] * k
        shape[i] = C
        views.append(n[:, :, i].reshape((B, F) + tuple(shape)))
    return views


def _consumable(x: torch.Tensor) -> bool:
    """Whether a fresh ``x`` may be overwritten: neither autograd nor forward mode may need it."""
    return not x.requires_grad and not carries_tangent(x)


def _plus(s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``s + v`` for a fresh ``s`` of the full shape: in place where ``s`` is :func:`_consumable` (the same
    numbers, one table-sized tensor fewer), out of place where autograd may need ``s``."""
    return s.add_(v) if _consumable(s) else s + v


def table_scores(table: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """``table + sum_i n_i`` broadcast over the entries, ``[B,F]+[C]*k``: a fresh tensor.

    :param table: ``[B,F]+[C]*k`` (or broadcastable) log factor tables.
    :param n: ``[B,F,k,C]`` incoming log messages, argument ``i``'s along the table's entry dim ``i``."""
    first, *rest = _argument_views(n)
    s = table + first
    for v in rest:
        s = _plus(s, v)
    return s


def logsumexp_consuming(x: torch.Tensor, dims) -> torch.Tensor:
    """``torch.logsumexp(x, dims)`` in ``x``'s own memory, which it overwrites (``x`` must not require grad).

    The steps of ``torch.logsumexp`` (the maxima, those of magnitude :math:`\\infty` set to 0, then
    :math:`\\log \\sum e^{x - \\max} + \\max`), each in place, in the same order on the same layout: the
    same numbers bit for bit (checked against ``torch.logsumexp`` in the tests, ``-inf``, ``+inf`` and huge
    entries included), without its ``x``-sized temporary ``x - max``.

    :param x: a fresh tensor nothing else needs (no autograd graph, no forward-mode tangent).
    :param dims: the dim or dims reduced.
    """
    m = x.amax(dim=dims, keepdim=True)
    m.masked_fill_(m.abs() == math.inf, 0.0)
    out = x.sub_(m).exp_().sum(dim=dims)
    return out.log_().add_(m.squeeze(dims))


def _reduce(x: torch.Tensor, dims, max_product: bool) -> torch.Tensor:
    """The max or log-sum-exp of a fresh ``x`` over ``dims`` (``x`` consumed where it is :func:`_consumable`)."""
    if max_product:
        return x.amax(dim=dims)
    return logsumexp_consuming(x, dims) if _consumable(x) else torch.logsumexp(x, dim=dims)


def pairwise_messages(table: torch.Tensor, n: torch.Tensor, max_product: bool) -> torch.Tensor:
    """``table [B,F,C,C]``, ``n [B,F,2,C]`` -> messages to both arguments ``[B,F,2,C]`` (unnormalised).

    :param table: ``[B,F,C,C]`` log tables, ``table[..., a, b]`` for the first argument in state ``a``.
    :param n: ``[B,F,2,C]`` incoming log messages of the two arguments.
    :param max_product: ``amax`` in place of ``logsumexp``."""
    to0 = _reduce(table + n[:, :, 1, None, :], -1, max_product)
    to1 = _reduce(table + n[:, :, 0, :, None], -2, max_product)
    return torch.stack((to0, to1), dim=2)


def kary_messages(table: torch.Tensor, n: torch.Tensor, max_product: bool) -> torch.Tensor:
    """``table [B,F]+[C]*k``, ``n [B,F,k,C]`` -> ``[B,F,k,C]`` (one reduction per argument, unnormalised).

    :param table: ``[B,F]+[C]*k`` log tables.
    :param n: ``[B,F,k,C]`` incoming log messages of the ``k`` arguments.
    :param max_product: ``amax`` in place of ``logsumexp``."""
    k = n.shape[2]
    views = _argument_views(n)
    outs = []
    for j in range(k):
        s = None
        for i in range(k):
            if i != j:
                s = table + views[i] if s is None else _plus(s, views[i])
        outs.append(_reduce(s, tuple(2 + i for i in range(k) if i != j), max_product))
    return torch.stack(outs, dim=2)
