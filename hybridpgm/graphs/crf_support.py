"""The support of a :class:`~hybridpgm.graphs.LinearChainCRF`: label sequences, too many to enumerate.

A CRF over ``T`` positions and ``L`` labels is a distribution over the :math:`L^T` label sequences (``0..L-1``
at every position, padding included), so Pyro cannot enumerate it as it enumerates a ``Categorical``: a site
marked ``infer={"enumerate": "parallel"}`` (or ``"sequential"``) would need :math:`L^T` entries along one
enumeration dim.  :class:`CRFSupport` says so: ``has_enumerate_support`` is ``False`` (so
``config_enumerate`` leaves such sites alone) and :meth:`~CRFSupport.enumerate_support`, which Pyro's
enumeration calls for a marked site, raises a :class:`~hybridpgm.errors.ModelSpecError` naming the sizes and
what to use instead, where torch's base class raised a bare ``NotImplementedError``.

Labels are categories, not numbers: the mean and the variance of their indices (what torch's ``mean`` and
``variance`` would be) mean nothing, and :attr:`~CRFSupport.mean` and :attr:`~CRFSupport.variance` raise
:class:`~hybridpgm.errors.UnsupportedQueryError` (a ``NotImplementedError``, as torch's base class raised) naming
what answers the question instead: the marginals :math:`p(y_t = l)` and the Viterbi labelling (``mode``).
"""

from __future__ import annotations

import math

from torch.distributions import constraints

from hybridpgm.errors import ModelSpecError, UnsupportedQueryError

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

    @property
    def mean(self):
        """Refused: labels are categories (see the module).

        :raises UnsupportedQueryError: always, naming ``crf.marginals`` (``batch_shape + (T, L)`` :math:`p(y_t =
            l)`, whose expectations are those of any function of one label) and ``crf.mode`` / ``crf.argmax()``."""
        raise UnsupportedQueryError(self._no_moment("mean"))

    @property
    def variance(self):
        """Refused, as :attr:`mean`.

        :raises UnsupportedQueryError: always, naming what to use instead, as :attr:`mean`."""
        raise UnsupportedQueryError(self._no_moment("variance"))

    def _no_moment(self, what: str) -> str:
        T, L = self.unary.shape[-2:]
        return (f"LinearChainCRF has no {what}: its values are sequences of {T} labels in 0..{L - 1}, categories "
                f"whose indices have no meaningful {what}. Use crf.marginals (batch_shape + (T, L) probabilities "
                f"p(y_t = l); the expectation of any function f of one label is (crf.marginals * f).sum(-1)), "
                f"crf.pairwise_marginals for pairs of neighbours, or crf.mode / crf.argmax() (Viterbi) for the "
                f"most probable labelling")
