"""The support of a :class:`~hybridpgm.graphs.LinearChainCRF`: label sequences, too many to enumerate.

A CRF over ``T`` positions and ``L`` labels is a distribution over the :math:`L^T` label sequences (``0..L-1``
at every position, padding included), so Pyro cannot enumerate it as it enumerates a ``Categorical``: a site
marked ``infer={"enumerate": "parallel"}`` (or ``"sequential"``) would need :math:`L^T` entries along one
enumeration dim.  :class:`CRFSupport` says so: ``has_enumerate_support`` is ``False`` (so
``config_enumerate`` leaves such sites alone) and :meth:`~CRFSupport.enumerate_support`, which Pyro's
enumeration calls for a marked site, raises a :class:`~hybridpgm.errors.ModelSpecError` naming the sizes and
what to use instead, where torch's base class raised a bare ``NotImplementedError``.
"""

from __future__ import annotations

import math

from torch.distributions import constraints

from hybridpgm.errors import ModelSpecError

__all__ = ["CRFSupport"]


def _count(labels: int, steps: int) -> str:
    """``L^T`` written out (``3^5 = 243``), or as a power of ten once it has more than 12 digits."""
    digits = steps * math.log10(labels) if labels > 1 else 0.0
    return f"{labels}^{steps} = {labels ** steps}" if digits <= 12 else f"{labels}^{steps} (about 1e{int(digits)})"


class CRFSupport:
    """Mixin of :class:`~hybridpgm.graphs.LinearChainCRF` for its support; it reads ``num_labels``, ``unary``
    (``batch_shape + (T, L)``) and ``batch_shape``."""

    has_enumerate_support = False

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        """``0..L-1`` at each of the ``T`` positions (event dim 1), whatever the lengths."""
        return constraints.independent(constraints.integer_interval(0, self.num_labels - 1), 1)

    def enumerate_support(self, expand: bool = True):
        """Refuse to enumerate the :math:`L^T` label sequences; Pyro calls this for a site marked
        ``infer={"enumerate": ...}`` (``TraceEnum_ELBO``, ``infer_discrete``, ``poutine.enum``).

        :param expand: torch's argument (expand the values over the batch shape); nothing is built either way.
        :raises ModelSpecError: always, naming :math:`L^T` and the batch shape, with what to use instead: the
            exact marginals, the labels sampled in a guide (a score-function estimator), or Monte Carlo
            enumeration (``infer={"enumerate": "parallel", "num_samples": S}`` under ``TraceTMC_ELBO``)."""
        T = self.unary.shape[-2]
        raise ModelSpecError(
            f"LinearChainCRF cannot be enumerated (a Pyro site marked infer={{'enumerate': ...}}): its support is "
            f"every label sequence, {_count(self.num_labels, T)} per sequence of {T} positions (batch shape "
            f"{tuple(self.batch_shape)}), which would need that many entries along one enumeration dim. Instead "
            f"use the exact marginals (crf.marginals, crf.pairwise_marginals, crf.log_partition) where the rest of "
            f"the model reads the labels position by position; sample the labels in a guide (Pyro's ELBOs take a "
            f"score-function estimator for a discrete guide site); or draw S sequences in place of the enumeration "
            f"with infer={{'enumerate': 'parallel', 'num_samples': S}} under pyro.infer.TraceTMC_ELBO")
