r""":math:`\operatorname{softplus}(x) = \log(1 + e^x)` to the precision of ``x``'s dtype.

torch's :func:`torch.nn.functional.softplus` returns :math:`x` itself above ``threshold`` (default 20).  For
:math:`x > t` the true value is

.. math::

    \operatorname{softplus}(x) = x + \log(1 + e^{-x}), \qquad 0 < \log(1 + e^{-x}) < e^{-x} < e^{-t},

so returning :math:`x` is the correctly rounded result exactly when :math:`e^{-x}` is below half a unit in the
last place of :math:`x`.  With :math:`u` the unit roundoff of the dtype (:math:`2^{-p}`, :math:`p` significand
bits), half an ulp of :math:`x` is :math:`u \cdot 2^{\lfloor \log_2 x \rfloor} > u x / 2`, and :math:`e^{-x}`
falls while :math:`u x / 2` grows, so a threshold :math:`t` with

.. math::

    e^{-t} \le u t / 2

makes every :math:`x > t` exact.  Below :math:`t` torch evaluates :math:`\log(1 + e^x)` (``log1p(exp(x))``),
accurate to about an ulp while :math:`e^t` is finite.

* ``float32`` (:math:`u = 2^{-24} \approx 6.0 \cdot 10^{-8}`): :math:`t = 20` gives
  :math:`e^{-20} \approx 2.1 \cdot 10^{-9} \le u \cdot 20 / 2 \approx 6.0 \cdot 10^{-7}` (a margin of 290);
  ``float16`` (:math:`u = 2^{-11}`) and ``bfloat16`` (:math:`u = 2^{-8}`) have more room still (torch computes
  them in ``float32`` internally, so :math:`e^{20}` does not overflow).  These keep torch's default 20: the same
  kernel with the same argument, bit-identical results.
* ``float64`` (:math:`u = 2^{-53} \approx 1.1 \cdot 10^{-16}`): at :math:`t = 20` the error
  :math:`e^{-20} \approx 2.1 \cdot 10^{-9}` is :math:`10^{6}` times the rounding of :math:`x`, a relative error
  of :math:`10^{-10}` in each term of an exact :math:`\log Z` or :math:`\log p(v)`.  The bound
  :math:`e^{-t} \le u t / 2` holds from :math:`t \approx 33.3`; :math:`t = 40` gives
  :math:`e^{-40} \approx 4.2 \cdot 10^{-18} \le u \cdot 40 / 2 \approx 2.2 \cdot 10^{-15}` (a margin of 500),
  with :math:`e^{40} \approx 2.4 \cdot 10^{17}` far from overflow.  Belief propagation's two-branch step takes
  its threshold from here too (:func:`hybridpgm.infer.bp_fused.dtype_limits`).

Every softplus that is part of an exact quantity or a likelihood (free energies, :math:`\log Z`,
:math:`\log p(v)`, pseudo-log-likelihoods, annealing increments, Bernoulli log-probabilities) goes through
:func:`softplus`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["softplus", "softplus_threshold", "DEFAULT_THRESHOLD", "FLOAT64_THRESHOLD"]

#: torch's default threshold, exact for ``float32``, ``float16`` and ``bfloat16`` (module docstring).
DEFAULT_THRESHOLD = 20.0

#: The ``float64`` threshold: :math:`e^{-40} \approx 4.2 \cdot 10^{-18}` lies below half an ulp of any
#: :math:`x > 40` (module docstring).
FLOAT64_THRESHOLD = 40.0

_THRESHOLDS = {torch.float64: FLOAT64_THRESHOLD}


def softplus_threshold(dtype: torch.dtype) -> float:
    """The threshold above which :func:`softplus` returns :math:`x` in ``dtype``: :data:`FLOAT64_THRESHOLD` for
    ``torch.float64``, :data:`DEFAULT_THRESHOLD` (torch's default) for any other dtype.

    :param dtype: the dtype of the input."""
    return _THRESHOLDS.get(dtype, DEFAULT_THRESHOLD)


def softplus(x: torch.Tensor) -> torch.Tensor:
    r""":math:`\log(1 + e^x)` elementwise, correctly rounded above the threshold in ``x``'s dtype: torch's
    :func:`torch.nn.functional.softplus` with ``threshold`` from :func:`softplus_threshold` (same kernel and
    gradient; bit-identical to the default call for every dtype but ``float64``).

    :param x: any shape, a floating dtype.
    :returns: the shape and dtype of ``x``."""
    return F.softplus(x, 1.0, _THRESHOLDS.get(x.dtype, DEFAULT_THRESHOLD))
