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
(read with :math:`\\delta`, in the same host read; :math:`s = 1` for mean field's :math:`q \\in [0, 1]`).

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

import torch

__all__ = ["ROUNDING_ULPS", "rounding_floor", "scale_cap"]

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
