"""The result of :class:`~hybridpgm.infer.AIS`: the estimate of :math:`\\log Z`, its standard error and the final
log-weights, with their effective sample size.

The effective sample size :math:`(\\sum_m w_m)^2 / \\sum_m w_m^2` of the ``M`` final weights is a pass over every
log-weight (two ``logsumexp``: 0.4 s for :math:`10^7` float64 chains on one CPU core).  :attr:`AISResult.ess`
computes it once and keeps it while :attr:`~AISResult.log_weights` is the same tensor, unchanged (its version
counter, data pointer, shape, strides and dtype, its storage held: :func:`~hybridpgm.tensor_tracking.held_storages`;
a pickle or copy of the result keeps none of it), so the ``repr`` a notebook shows on every display of the result
costs that pass once, and its scalars are read from the device in one host read
(:func:`~hybridpgm.summary_repr.numbers_text`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hybridpgm.checks import positive_real
from hybridpgm.portable_result import PortableResult
from hybridpgm.summary_repr import array_text, numbers_text
from hybridpgm.tensor_tracking import held_storages, unversioned

__all__ = ["AISResult"]


@dataclass(eq=False)
class AISResult(PortableResult):
    """Result of :class:`~hybridpgm.infer.AIS` (a dataclass: each field is an attribute).

    :param log_z: the estimate of :math:`\\log Z` (scalar tensor).
    :param stderr: its delta-method standard error (scalar tensor).
    :param log_weights: the ``num_chains`` final log importance weights (without :math:`\\log Z_0`).
    :param log_z0: :math:`\\log Z_0` of the base distribution.
    :param num_steps: number of intermediate distributions :math:`K`.
    """

    log_z: torch.Tensor
    stderr: torch.Tensor
    log_weights: torch.Tensor
    log_z0: torch.Tensor
    num_steps: int

    @property
    def ess(self) -> float:
        """Effective sample size :math:`(\\sum w)^2/\\sum w^2` of the final weights; computed once and kept while
        :attr:`log_weights` is the same tensor, unchanged (see the module docstring)."""
        return float(self._ess())

    def _ess(self) -> torch.Tensor:
        """:attr:`ess` as a 0-d tensor on the log-weights' device (no host read), kept as the module docstring
        says; computed every time for a tensor without a version counter (an inference tensor, a
        :mod:`torch.func` one)."""
        lw = self.log_weights
        if not isinstance(lw, torch.Tensor) or unversioned(lw):
            return _ess_of(lw)
        # the shape, strides and dtype too: ``lw.data = lw.data[:k]`` keeps the version and the data pointer
        key = (lw._version, lw.data_ptr(), lw.shape, lw.stride(), lw.dtype)
        kept = self.__dict__.get("_ess_kept")
        if kept is None or kept[0] is not lw or kept[1] != key:
            kept = self.__dict__["_ess_kept"] = (lw, key, _ess_of(lw).detach(), held_storages((lw,)))
        return kept[2]

    def __getstate__(self) -> dict:
        """The fields without the kept ESS: its key holds this process's addresses and the version counter of the
        log-weights, which a pickled (or copied) tensor does not keep, so a copy could match it with other
        values; a copy computes its own."""
        state = dict(self.__dict__)
        state.pop("_ess_kept", None)
        return state

    def interval(self, num_stderr: float = 3.0) -> tuple[float, float]:
        """``log_z -/+ num_stderr * stderr``.

        :param float num_stderr: the half-width in standard errors (default ``3.0``).
        :raises ConfigError: ``num_stderr`` that is not a finite real number ``>= 0`` (``bool``, strings and NaN
            are refused, not coerced).
        """
        num_stderr = positive_real(num_stderr, "AISResult.interval num_stderr", allow_zero=True)
        return float(self.log_z - num_stderr * self.stderr), float(self.log_z + num_stderr * self.stderr)

    def __repr__(self) -> str:
        """A summary of constant size, whatever the number of chains (the dataclass ``repr`` printed every final
        log-weight): the estimate and its standard error, :math:`\\log Z_0`, the steps, the log-weights' shape
        and dtype, and the :attr:`ess` of the chains (computed at the first ``repr``, then kept); the four
        numbers read from the device in one host read."""
        try:
            ess = self._ess()
        except Exception:  # a repr never raises: no tensor, an empty one, a meta one
            ess = None
        log_z, stderr, log_z0, ess_text = numbers_text([self.log_z, self.stderr, self.log_z0, ess], [6, 4, 6, 4])
        if not isinstance(ess, torch.Tensor) or ess.dim() != 0 or ess.device.type == "meta":
            ess_text = "?"  # log-weights that give no one number
        return (f"AISResult(log_z={log_z}, stderr={stderr}, log_z0={log_z0}, num_steps={self.num_steps!r}, "
                f"log_weights={array_text(self.log_weights)}, ess={ess_text})")


def _ess_of(lw: torch.Tensor) -> torch.Tensor:
    """:math:`\\exp(2 \\operatorname{logsumexp}(lw) - \\operatorname{logsumexp}(2 lw))`, a 0-d tensor."""
    return torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0))
