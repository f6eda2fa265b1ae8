"""Annealed estimators run with :func:`torch.autocast` off.

AIS (:class:`~hybridpgm.infer.AIS`), RAISE (:class:`~hybridpgm.infer.raise_ais.RAISE`) and the estimates built on
them (:func:`~hybridpgm.infer.log_z.estimate_log_z`, :func:`~hybridpgm.infer.raise_ais.log_likelihood_bounds`)
sum :math:`K` small increments :math:`(\\beta_k - \\beta_{k-1})(\\log f^*(x) - \\log f_0(x))` of the model's
energies.  Under autocast (``fit(precision="bf16")``, or a user's ``torch.autocast`` block) the model's products
ran in bfloat16, whose rounding of energies of a few tens (a unit in the last place of :math:`0.125` to
:math:`0.25`) does not average out over the steps: an RBM of 64 visible and 16 hidden units estimated
:math:`\\log Z = 65.83 \\pm 0.06` from 2000 steps for an exact :math:`65.67` (float32: :math:`65.66 \\pm 0.03`),
above the true value that AIS, a stochastic lower bound, should not exceed.  :func:`autocast_off` runs them with
autocast off for every device type where it is on, so they compute in the model's own dtype, as outside autocast.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from hybridpgm.precision_scope import autocast_states, autocast_switched

__all__ = ["autocast_off"]


def autocast_off(fn: Callable) -> Callable:
    """``fn`` run with autocast off for the device types where it is on at the call (and as they were after it).

    Outside autocast the call costs one :func:`~hybridpgm.precision_scope.autocast_states` read (no host
    synchronisation) and runs ``fn`` unchanged.

    :param fn: the function or method to wrap.
    :returns: the wrapper (:func:`functools.wraps` of ``fn``).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        states = autocast_states()
        if not states:
            return fn(*args, **kwargs)
        with autocast_switched(states, enabled=False):
            return fn(*args, **kwargs)

    return wrapper
