"""ArviZ data of sampler runs: a :class:`pyro.infer.MCMC` run (:func:`from_mcmc`) and importance-sampling or
AIS log-weights with optional draws (:func:`from_importance`)."""

from __future__ import annotations

from typing import Mapping

import pyro
import torch

from hybridpgm.checks import torch_readable
from hybridpgm.diagnostics.arviz_data import make_inference_data
from hybridpgm.errors import DataError

__all__ = ["from_importance", "from_mcmc"]


def from_mcmc(mcmc: pyro.infer.MCMC):
    """ArviZ data of a :class:`pyro.infer.MCMC` run (any kernel, hybridpgm's
    Gibbs included): ``posterior`` with shape ``chains x draws x site_shape``.

    :param mcmc: the :class:`pyro.infer.MCMC` object, after :meth:`~pyro.infer.MCMC.run`.
    :raises DataError: for anything but an MCMC object (such as the dict of :meth:`~pyro.infer.MCMC.get_samples`:
        pass it to :func:`make_inference_data` as ``{"posterior": ...}`` with ``chain x draw`` leading dims), or
        an MCMC that has not run (no samples).
    """
    if not isinstance(mcmc, pyro.infer.MCMC):
        raise DataError(f"from_mcmc takes a pyro.infer.MCMC run, got {type(mcmc).__name__}; for a dict of samples "
                        f"name -> chains x draws x ... use make_inference_data({{'posterior': samples}})")
    samples = mcmc.get_samples(group_by_chain=True)
    if not samples:
        raise DataError("the MCMC holds no samples: call mcmc.run(...) before from_mcmc")
    return make_inference_data({"posterior": samples})


def from_importance(log_weights: torch.Tensor, samples: Mapping[str, torch.Tensor] | None = None):
    """ArviZ data of an importance-sampling or AIS run.

    :param log_weights: ``K`` or ``K x N`` log-weights (``N`` independent
        targets, e.g. data points), kept as ``sample_stats.log_weight`` with one
        chain of ``K`` draws, ready for ``az.ess``-style and PSIS diagnostics.
    :param samples: optional draws ``name -> K x ...`` (tensors, arrays or lists) kept as ``posterior``.
    :raises DataError: for log-weights that are not floating point, not ``K`` or ``K x N`` with ``K >= 1``, or
        hold NaN or :math:`+\\infty` (:math:`-\\infty`, a zero weight, is allowed); for draws whose count is not
        ``K``, or that are not numbers.
    """
    log_weights = torch.as_tensor(torch_readable(log_weights))
    if log_weights.dim() not in (1, 2) or log_weights.shape[0] == 0:
        raise DataError(f"log_weights must be K or K x N with K >= 1 draws, got shape {tuple(log_weights.shape)}")
    if not log_weights.is_floating_point():
        raise DataError(f"log_weights must be floating point, got dtype {log_weights.dtype}")
    bad = torch.isnan(log_weights) | (log_weights == float("inf"))
    if bool(bad.any()):
        where = bad.nonzero().tolist()
        raise DataError(f"log_weights hold {len(where)} NaN or +inf value(s) (at {where[:5]}"
                        f"{' ...' if len(where) > 5 else ''}); a log-weight is finite, or -inf for a zero weight")
    groups = {"sample_stats": {"log_weight": log_weights.unsqueeze(0)}}
    if samples:
        k = log_weights.shape[0]
        try:  # arrays and lists too, as the log-weights
            samples = {n: torch.as_tensor(torch_readable(v)) for n, v in samples.items()}
        except (TypeError, ValueError, RuntimeError) as error:
            raise DataError(f"samples must be tensors or arrays of numbers ({error})") from None
        bad = {n: tuple(v.shape) for n, v in samples.items() if v.dim() == 0 or v.shape[0] != k}
        if bad:
            raise DataError(f"samples must have {k} draws like the log-weights; got shapes {bad}")
        groups["posterior"] = {n: v.unsqueeze(0) for n, v in samples.items()}
    return make_inference_data(groups)
