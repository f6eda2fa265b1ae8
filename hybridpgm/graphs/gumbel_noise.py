r"""Gumbel-max noise from uniforms, bounded on both sides: shared by the samplers that draw a categorical state as
:math:`\arg\max_i (\ell_i + G_i)` (:mod:`hybridpgm.graphs.crf_sampling`, :class:`~hybridpgm.infer.ChromaticGibbs`).

With :math:`U \sim \mathcal U[0, 1)`, :math:`E = -\log U \sim \mathrm{Exp}(1)` and :math:`G = -\log E` is standard
Gumbel; :math:`\arg\max_i (\ell_i + G_i)` is a draw from :math:`\mathrm{softmax}(\ell)` [1].  :func:`torch.rand`
draws :math:`U = 0` (with probability :math:`2^{-24}` an element in float32 on a CPU, :math:`2^{-53}` in float64,
about :math:`2.4 \cdot 10^{-4}` in float16): there :math:`G = -\infty`, and a state whose possible values all
drew it (one possible value, where evidence or a smaller cardinality forbids the others) took a forbidden value,
the first of an all ``-inf`` row.  So :math:`U` is raised to ``finfo.tiny`` first, and nothing else is changed:

.. math::

    \log E = \log\big(-\log \max(U, \mathrm{tiny})\big), \qquad
    G \in [-\log(-\log(1 - 2^{-24})), -\log(-\log \mathrm{tiny})] = [-4.47, 16.6] \text{ (float32)},

:math:`[-6.56, 36.7]` in float64, finite in every floating dtype (:math:`U < 1`, so :math:`E > 0`).  A forbidden
value (``-inf``, or a clamped score far below the possible ones) then never wins.  The tails of :math:`G` beyond
are the rounding of the uniforms (probability :math:`6 \times 10^{-8}` in float32, :math:`10^{-16}` in float64,
a side).  A uniform in ``[tiny, 1)`` gives the bits it gave before; in float32, float64 and bfloat16 that is every
nonzero draw of :func:`torch.rand` (float16 also draws subnormal values below ``tiny``, raised with the zeros).

**References**

[1] E. J. Gumbel, *Statistical Theory of Extreme Values and Some Practical Applications*, 1954;
C. J. Maddison, D. Tarlow, T. Minka, *A* Sampling*, 2014.
"""

from __future__ import annotations

import torch

__all__ = ["log_exponential_"]


def log_exponential_(u: torch.Tensor) -> torch.Tensor:
    """:math:`\\log E = \\log(-\\log \\max(U, \\mathrm{tiny}))` of uniforms ``u`` in ``[0, 1)``, written into ``u``
    and returned (the Gumbel noise is its negative: ``logits - log_exponential_(u)``).

    In place, for the factory's own result (``torch.rand``): under :func:`torch.func.vmap` with
    ``randomness="different"`` these ops batch (``clamp_min_``; ``clamp_`` with two bounds has no batching rule).

    :param u: uniforms of a floating dtype, any shape; overwritten.
    :returns: ``u``, holding :math:`\\log E`, finite."""
    return u.clamp_min_(torch.finfo(u.dtype).tiny).log_().neg_().log_()
