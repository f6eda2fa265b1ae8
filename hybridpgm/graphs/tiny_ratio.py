"""Quotients and logarithms of tiny positive numbers whose derivatives of every order stay finite.

An exact query divides by, or takes the log of, a sum :math:`x` that can be tiny while every answer is of order
one: a Bayesian network's evidence :math:`Z_n = p(e_n)` of :math:`10^{-200}` (kept in probability space down to
:data:`~hybridpgm.infer.bn_spaces.PROBABILITY_FLOOR`), a log-space step's max-shifted sum
(:class:`~hybridpgm.graphs.contraction_steps.LogOfSum`).  Autograd differentiates :math:`\\log x` into
:math:`g / x`, and :math:`a / x` in :math:`x` into :math:`-g\\,((a / x) / x)`; differentiating again divides by
:math:`x` once more before anything multiplies by a derivative of :math:`x` (itself of the order of :math:`x`):
a second derivative forms :math:`(g / x) / x`, which overflows to :math:`\\infty` once :math:`x^2` is under the
dtype's range (:math:`x < 10^{-154}` in float64), and the Hessian of :math:`\\log Z` comes out :math:`\\pm\\infty`
or NaN where it is about 0.1.

Here both are taken relative to :math:`s = x` held constant (detached):

.. math:: \\frac{a}{x} = \\frac{a / s}{x / s}, \\qquad \\log x = \\log\\frac{x}{s} + \\log s .

The values are the same to the last bit (:math:`x / s = 1` exactly), and so are the first derivatives in
:math:`a` and, through :math:`\\log`, in :math:`x` (:math:`(g / 1) / s`); the derivative of a quotient in
:math:`x` differs by rounding only (:math:`-(g\\,(a / s)) / s`).  Every further derivative divides by
:math:`x / s = 1` or by the constant :math:`s` once, each quotient then meeting a derivative of :math:`x`
(of its order): nothing is divided by :math:`x^2`, at any order.

Where ``x`` needs no gradient (no autograd, or a first-order backward pass: autograd off) it is the plain
quotient or log, at no extra cost.

A caller that can scale a whole computation instead (the seed of a backward pass, a joint table) divides it by
:func:`power_of_two` of the tiny sum: a scaling by a power of two is exact, so the results keep their bits.
"""

from __future__ import annotations

import torch

__all__ = ["power_of_two", "tiny_log", "tiny_ratio"]


def _differentiated(x: torch.Tensor) -> bool:
    """Whether autograd records operations on ``x`` now (on in the forward pass, and in a backward pass only with
    ``create_graph``)."""
    return x.requires_grad and torch.is_grad_enabled()


def tiny_ratio(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """:math:`a / x` (broadcast), every derivative finite wherever :math:`x > 0` is normal (module docstring).

    :param a: the numerator.
    :param x: the divisor, positive and finite where ``a / x`` is wanted (a zero gives NaN, as ``0 / 0``).
    :returns: ``a / x``, the same value as the plain division.
    """
    if not _differentiated(x):
        return a / x
    s = x.detach()
    return (a / s) / (x / s)


def tiny_log(x: torch.Tensor) -> torch.Tensor:
    """:math:`\\log x`, every derivative finite wherever :math:`x > 0` is normal (module docstring).

    :param x: positive and finite (a zero or infinity gives NaN where ``x`` requires a gradient).
    :returns: ``x.log()``, the same value.
    """
    if not _differentiated(x):
        return x.log()
    s = x.detach()
    return (x / s).log() + s.log()


def power_of_two(x: torch.Tensor) -> torch.Tensor:
    """:math:`2^{\\lfloor \\log_2 x \\rfloor}`, detached: a scale of the size of :math:`x` by which dividing is
    exact (short of the subnormal range), so that ratios of quantities divided by it are the same to the last bit.

    :param x: positive and finite.
    :returns: a tensor like ``x`` holding powers of two.
    """
    return torch.exp2(torch.floor(torch.log2(x.detach())))

