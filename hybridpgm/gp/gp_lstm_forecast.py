"""Multi-step forecasts of a :class:`~hybridpgm.gp.gp_lstm.GPLSTM` by sampled paths, and their result
:class:`Forecast`.

Each path feeds its own sampled value back into its window, :math:`y_{t+1} \\sim p(y \\mid x_t)`,
:math:`x_{t+1} = (x_t[1:], y_{t+1})`, so the spread of the paths carries the uncertainty of earlier steps forward;
the forecast's mean and central interval are the paths' mean and quantiles at each step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch

from hybridpgm.errors import ConfigError
from hybridpgm.module_modes import keeping_modes
from hybridpgm.portable_result import PortableResult
from hybridpgm.rng_scope import fixed_rng
from hybridpgm.summary_repr import array_text

if TYPE_CHECKING:
    from hybridpgm.gp.gp_lstm import GPLSTM

__all__ = ["Forecast", "require_spread", "sampled_paths"]


class Forecast(NamedTuple):
    """Multi-step forecast, as :meth:`GPLSTM.forecast <hybridpgm.gp.gp_lstm.GPLSTM.forecast>` gives it.

    ``to``, ``cpu`` and ``to_dict`` are :class:`~hybridpgm.portable_result.PortableResult`'s (a NamedTuple takes
    no base class).

    :param mean: the mean of the sampled paths at each step, ``steps``.
    :param lower: the ``(1 - level) / 2`` quantile of the sampled paths at each step, ``steps``.
    :param upper: the ``1 - (1 - level) / 2`` quantile of the sampled paths at each step, ``steps``.
    :param samples: the sampled paths, ``num_samples x steps``.
    """

    mean: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    samples: torch.Tensor

    to = PortableResult.to
    cpu = PortableResult.cpu
    to_dict = PortableResult.to_dict

    def __repr__(self) -> str:
        """A summary of constant size, whatever the steps and paths (the tuple's ``repr`` printed every sampled
        path): each tensor's shape and dtype."""
        return (f"Forecast(mean={array_text(self.mean)}, lower={array_text(self.lower)}, "
                f"upper={array_text(self.upper)}, samples={array_text(self.samples)})")


def require_spread(num_samples: int) -> None:
    """Refuse fewer than two paths for a forecast's interval.

    :param num_samples: the number of paths asked for (a non-negative int).
    :raises ConfigError: ``num_samples`` below 2: no path leaves the interval undefined, and one has no spread (its
        interval would be the path itself, ``lower = mean = upper``)."""
    if num_samples < 2:
        raise ConfigError(f"GPLSTM.forecast num_samples must be at least 2, got {num_samples}: "
                          + ("the interval of zero paths is undefined" if num_samples == 0 else
                             "one path has no spread, so its interval would be the path itself (lower = mean = "
                             "upper)"))


def sampled_paths(model: "GPLSTM", context: torch.Tensor, steps: int, num_samples: int, level: float, *,
                  generator: torch.Generator | None) -> Forecast:
    """The :class:`Forecast` of ``num_samples`` paths ``steps`` ahead of ``context``: :meth:`GPLSTM.forecast
    <hybridpgm.gp.gp_lstm.GPLSTM.forecast>` after its checks, which this does not repeat.

    Each step's predictive is the model's (its features, then the GP's predictive under the caller's GPyTorch
    settings), with GPyTorch's own random estimates under :func:`~hybridpgm.rng_scope.fixed_rng`; the model runs
    conditioned and in evaluation mode, its modes restored after.

    :param model: a GPLSTM of univariate windows and ``horizon=1``.
    :param context: the last ``T`` values, ``T x 1``, checked (dtype, device, finite).
    :param steps: the horizon, at least 1.
    :param num_samples: the number of paths, at least 2.
    :param level: the probability of the central interval, in ``(0, 1)``.
    :param generator: a CPU :class:`torch.Generator` for the noise (drawn on the CPU, then moved), or ``None``
        for torch's global stream.
    :raises ConfigError: ``num_samples`` below 2 (:func:`require_spread`).
    """
    require_spread(num_samples)
    with keeping_modes(model), torch.no_grad():
        model.condition()
        paths = context.expand(num_samples, *context.shape).clone()
        draws = []
        for _ in range(steps):
            with fixed_rng(model.train_x.device), model._gp_precision(model.features(paths)) as (h, _):
                y = model.likelihood(model.gp(model.gp_inputs(h)))
                mean, variance = y.mean, y.variance  # computed here (GPyTorch evaluates lazily)
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
            draw = mean + variance.clamp_min(0).sqrt() * noise
            draws.append(draw)
            paths = torch.cat([paths[:, 1:], draw.reshape(-1, 1, 1)], dim=1)
    samples = torch.stack(draws, dim=-1)
    alpha = (1 - level) / 2
    quantiles = torch.quantile(samples, torch.tensor([alpha, 1 - alpha], dtype=samples.dtype,
                                                     device=samples.device), dim=0)
    return Forecast(samples.mean(0), quantiles[0], quantiles[1], samples)
