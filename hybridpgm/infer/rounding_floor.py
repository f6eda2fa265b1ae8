"""The rounding floor of the iterative inference algorithms' convergence test.

:class:`~hybridpgm.infer.BeliefPropagation` and :class:`~hybridpgm.infer.MeanField` stop once the largest change
:math:`\\delta` of the quantity they iterate (log-messages, message log-odds, :math:`q`) at a check falls below a
threshold.  An absolute ``tol`` alone cannot be met in a low precision: recomputing a message of magnitude
:math:`m` rounds it, and where the update feeds a message back into itself (the general BP path forms
:math:`n_{v \\to f} = b_v - m_{f \\to v}` from the belief that holds :math:`m_{f \\to v}`, so even on a tree the two
directions of an edge meet through rounding; mean field's :math:`q` always does) the iteration settles on a cycle
of a few ulps instead of a fixed point.  In ``float32`` (:math:`\\epsilon \\approx 1.2 \\cdot 10^{-7}`) messages of
magnitude 50 keep moving by about :math:`8 \\cdot 10^{-6}` forever, above the default ``tol = 1e-6``, although
the estimate is as exact as ``float32`` allows (on a tree, BP's is exact).  So a check passes when

.. math::

    \\delta < \\max\\big(\\mathrm{tol},\\; c\\,\\epsilon\\,s\\big), \\qquad c = 16,

with :math:`\\epsilon` the dtype's machine epsilon and :math:`s` the largest magnitude of the quantity compared
(read with :math:`\\delta`, in the same host read; :math:`s = 1` for mean field's :math:`q \\in [0, 1]`).  In a
batch each model (row) is tested on its own :math:`\\delta_b` and :math:`s_b`, and the iteration stops when every
model passes (:func:`check_margin`): one model's large messages raise no other model's floor.

**Why** :math:`c = 16`.  One general BP update of an entry makes about fourteen roundings of values no larger
than :math:`s` (in magnitude): the belief sum and the subtraction :math:`b_v - m`, the normalisation (a
``logsumexp`` of about three roundings and a subtraction), the table addition and the ``logsumexp`` over the
table, and the final normalisation (again about four).  Each is at most half an ulp, :math:`\\epsilon s / 2`, so a
recomputed message is off by up to about :math:`7\\,\\epsilon s`, and a change :math:`\\delta` between two such
values by about :math:`14\\,\\epsilon s`: :math:`c = 16`.  Measured on random ``float32`` trees (2 to 30 states,
15 to 200 variables, log-potentials :math:`S \\cdot \\mathcal N(0, 1)`, :math:`S` from 1 to 100) the settled
change was at most :math:`8.7\\,\\epsilon s`.  The binary log-odds step makes fewer (the gathered sum, an
addition, ``sigmoid``, a product, ``log1p``) and mean field's :math:`q` a softmax and the damping mix, so the same
:math:`c` bounds them too.  A cycle above the floor (loopy BP oscillating on a strongly coupled graph moves by
orders of magnitude more) is still reported as not converged.

**Unchanged where the floor is below** ``tol``.  :math:`c\\,\\epsilon\\,s < \\mathrm{tol}` makes the test the
plain :math:`\\delta < \\mathrm{tol}`, bit for bit.  Entries beyond :func:`scale_cap`,
:math:`\\epsilon^{-1/2}`, are finite stand-ins for hard constraints (``-1e30`` for "forbidden"), whose
magnitude says nothing about the rounding of the other entries: they do not count towards :math:`s` on the
general BP path (the binary paths never hold one: their tables are within
:func:`~hybridpgm.infer.bp_fused.odds_max_spread`, far below the cap).  So :math:`s \\le \\epsilon^{-1/2}` and
the floor is at most :math:`c \\sqrt{\\epsilon}`: :math:`2.4 \\cdot 10^{-7}` in ``float64``, under the default
``tol = 1e-6``, where the test is therefore the absolute one as before.
"""

from __future__ import annotations

import functools
import math
from typing import List, Optional

import torch

__all__ = ["ROUNDING_ULPS", "cached_tol_above", "check_margin", "column_amax", "rounding_floor", "scale_cap",
           "step_margin", "tol_above"]

#: :math:`c`: a check passes below :math:`c\,\epsilon\,s` whatever ``tol`` (see the module docstring)
ROUNDING_ULPS = 16


def rounding_floor(dtype: torch.dtype) -> float:
    """:math:`c\\,\\epsilon` of ``dtype``: the floor per unit of scale (``float32``: :math:`1.9 \\cdot 10^{-6}`,
    ``float64``: :math:`3.6 \\cdot 10^{-15}`)."""
    return ROUNDING_ULPS * torch.finfo(dtype).eps


def scale_cap(dtype: torch.dtype) -> float:
    """:math:`\\epsilon^{-1/2}` of ``dtype`` (``float32``: 2896, ``float64``: :math:`6.7 \\cdot 10^{7}`): entries of
    a larger magnitude (finite stand-ins for hard constraints) do not count towards the scale :math:`s`."""
    return torch.finfo(dtype).eps ** -0.5


def tol_above(tol: float, dtype: torch.dtype) -> float:
    """The smallest value of ``dtype`` not below ``tol``: for ``x`` of that dtype, ``x < tol_above(tol)`` exactly when
    ``x < tol`` (``float32``: ``1e-6`` is not a ``float32``; its nearest one, ``9.99999997e-07``, is below it, so
    comparing in ``float32`` with ``tol`` rounded would refuse a change the test in Python floats passes).

    :param float tol: the tolerance.
    :param torch.dtype dtype: the messages' dtype.
    """
    r = torch.tensor([tol], dtype=torch.float64).to(dtype)
    if float(r) < tol:
        r = torch.nextafter(r, torch.full_like(r, math.inf))
    return float(r)


def column_amax(x: torch.Tensor) -> torch.Tensor:
    """``[M]`` maxima of the columns of a contiguous ``[N, M]`` tensor (a NaN makes its column's NaN).

    Narrow columns are reduced as slabs of ``k`` rows laid side by side (``[N / k, k M]``, at least 256 wide) and
    then over the ``k``: torch's CPU reduction over dim 0 of a narrow matrix runs 10 to 50 times slower than over
    a wide one (``[16128, 16]``: 1.5 ms against 30 microseconds, measured), the same maxima.

    :param torch.Tensor x: ``[N, M]`` (a non-contiguous one is copied).
    """
    N, M = x.shape[0], x.shape[1]
    k = min(N, 256 // M) if M < 256 else 1
    if k <= 1:
        return x.amax(0)
    m = (N // k) * k
    out = x[:m].reshape(N // k, k * M).amax(0).view(k, M).amax(0)
    if m < N:
        out = torch.maximum(out, x[m:].amax(0))
    return out


def check_margin(new: torch.Tensor, change: torch.Tensor, dim: int, tol: float, floor: float,
                 cap: Optional[float] = None) -> float:
    """The convergence test of every model (batch row) at once, in one host read.

    For each model :math:`b` (the index along the axis other than ``dim``), with :math:`\\delta_b` its largest
    change and :math:`s_b` its largest message magnitude,

    .. math::

        \\max_b \\big(\\delta_b - \\max(\\mathrm{tol},\\, \\mathrm{floor} \\cdot s_b)\\big),

    which is negative exactly when every model passes its own test :math:`\\delta_b < \\max(\\mathrm{tol},
    c\\,\\epsilon\\,s_b)` (:mod:`~hybridpgm.infer.rounding_floor`).  Each model's threshold comes from its own
    scale: a model with large messages (a strongly coupled one) raises no other model's floor.  One model: two
    whole-tensor ``aminmax`` and the test on the host in Python floats (the kernels of the test over the whole
    batch this replaces).  Several:
    the maxima per model, the thresholds and the differences on the device in the messages' dtype, exact: ``tol``
    is a value of that dtype (:func:`tol_above`) and ``floor`` = :math:`16\\,\\epsilon` a power of two (so
    ``floor * s_b`` is exact, unless it falls below the dtype's smallest normal number, where ``tol`` decides), and a
    difference of two floats has the sign of the exact one.  So a model's test in a batch decides as its test alone.
    A NaN change (a NaN message, or ``inf - inf``) makes the result NaN, which no test passes.

    :param torch.Tensor new: ``[M, N]`` (``dim=1``) or ``[N, M]`` (``dim=0``): the messages after the step, ``M``
        models of ``N`` entries each.
    :param torch.Tensor change: the same shape: ``new`` minus the messages before the step; overwritten (its
        absolute value) where ``M > 1``.
    :param int dim: the axis of a model's entries (reduced); the other one indexes the models.
    :param float tol: the absolute tolerance (``> 0``); for several models a value of ``new``'s dtype,
        :func:`tol_above` (for one model the test is on the host in Python floats: either gives the same).
    :param float floor: :math:`c\\,\\epsilon` of the dtype (:func:`~hybridpgm.infer.rounding_floor.rounding_floor`).
    :param cap: ``None`` (:math:`s_b` is the largest :math:`|new|` of the model), or entries of :math:`|new|`
        beyond it (finite stand-ins for hard constraints, :func:`~hybridpgm.infer.rounding_floor.scale_cap`) left
        out of :math:`s_b`.
    :returns: the largest margin as a Python float; ``-inf`` where there is nothing to compare (no model, or
        models without messages), which passes.
    """
    if new.numel() == 0:
        return -math.inf
    if new.shape[1 - dim] == 1:  # one model: whole-tensor reductions, the test in Python floats
        lo, hi = torch.aminmax(change)
        if cap is None:
            slo, shi = torch.aminmax(new)
            stats = torch.stack([lo, hi, slo, shi])
        else:
            mag = new.abs()
            top = mag.masked_fill(mag > cap, 0.0).amax()
            stats = torch.stack([lo, hi, top, top])
        v: List[float] = stats.tolist()
        size = max(v[3], -v[2])
        delta = v[1] if v[1] >= -v[0] else -v[0]                     # NaN (both ends are NaN then) stays NaN
        return delta - max(tol, floor * size)
    mag = new.abs()
    if cap is not None:
        mag.masked_fill_(mag > cap, 0.0)
    change = change.abs_()
    if dim == 0:
        delta, size = column_amax(change), column_amax(mag)
    else:
        delta, size = change.amax(1), mag.amax(1)
    return float((delta - torch.clamp_min(size * floor, tol)).amax())


@functools.lru_cache(maxsize=64)
def cached_tol_above(tol: float, dtype: torch.dtype) -> float:
    """:func:`tol_above`, remembered (it makes a tensor: ~10 microseconds a call)."""
    return tol_above(tol, dtype)


def step_margin(new: torch.Tensor, old: torch.Tensor, tol: float, floor: float, cap: float | None) -> float:
    """:func:`check_margin` of the step ``old -> new``, one host read: negative when
    every model passes its own test (``tol``: :func:`tol_above` of the dtype).  ``cap``
    given: the general path's ``[B, E, C]`` messages, one row of ``E * C`` entries per model (``old`` may have a
    batch of 1 where ``new`` has ``B``); ``None``: the binary path's ``[2F, B]`` log-odds, a column per model (the
    same numbers as the scripted loop)."""
    change = new - old
    if cap is None or not change.numel():  # nothing to compare: check_margin's -inf (a 0-element [B, -1] is no shape)
        return check_margin(new, change, 0, tol, floor)
    rows = change.shape[0]
    return check_margin(new.expand(change.shape).reshape(rows, -1), change.reshape(rows, -1), 1, tol, floor, cap)
