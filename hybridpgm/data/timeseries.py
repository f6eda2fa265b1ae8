"""Time series for GP work: statsmodels' bundled series, windowing, a synthetic generator.

Bundled series (shipped inside statsmodels, never downloaded; statsmodels is
imported only when a series is loaded -- ``pip install hybridpgm[timeseries]``):

* ``"sunspots"`` -- yearly mean sunspot numbers, 1700--2008 (309 values);
* ``"co2"`` -- Mauna Loa CO2 in ppm, weekly 1958--2001 averaged to months
  (526 values; the weeks with missing readings are skipped in the averages and
  the few empty months linearly interpolated);
* ``"nile"`` -- yearly Nile flow at Aswan, 1871--1970 (100 values);
* ``"elnino"`` -- monthly sea-surface temperature, 1950--2010 (732 values).

:func:`make_windows` turns a series into supervised pairs (window of ``T``
past values, value ``horizon`` steps after its end), the inputs of
:class:`~hybridpgm.gp.GPLSTM`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy
import torch

from hybridpgm.checks import as_integer, positive_int, positive_real, seed_of
from hybridpgm.errors import DataError
from hybridpgm.tensor_arguments import require_tensor

__all__ = ["SERIES", "TimeSeries", "load_series", "make_windows", "split_series", "synthetic_series"]

#: Names accepted by :func:`load_series`.
SERIES = ("co2", "elnino", "nile", "sunspots")


@dataclass(eq=False)
class TimeSeries:
    """A univariate series.

    :param name: the series' name.
    :param values: float64 tensor ``T``.
    :param times: float64 tensor ``T`` (decimal years).
    :param frequency: ``"yearly"``, ``"monthly"``, ...
    """

    name: str
    values: torch.Tensor
    times: torch.Tensor
    frequency: str

    def __len__(self) -> int:
        return self.values.shape[0]


def _statsmodels_datasets():
    try:
        import statsmodels.datasets as datasets  # lighter than statsmodels.api
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise DataError("the bundled time series come with statsmodels: pip install 'hybridpgm[timeseries]' "
                        "(or pip install statsmodels)") from err
    return datasets


def load_series(name: str) -> TimeSeries:
    """Load one of :data:`SERIES` from statsmodels' bundled data.

    :param name: the series' name, one of :data:`SERIES`.
    :raises DataError: for an unknown name, or when statsmodels is missing.
    """
    if name not in SERIES:
        raise DataError(f"unknown series {name!r}; choose from {list(SERIES)}")
    datasets = _statsmodels_datasets()
    if name == "sunspots":
        frame = datasets.sunspots.load_pandas().data
        values, times, freq = frame["SUNACTIVITY"].to_numpy(), frame["YEAR"].to_numpy(), "yearly"
    elif name == "nile":
        frame = datasets.nile.load_pandas().data
        values, times, freq = frame["volume"].to_numpy(), frame["year"].to_numpy(), "yearly"
    elif name == "elnino":
        frame = datasets.elnino.load_pandas().data
        months = frame.drop(columns="YEAR").to_numpy()
        values = months.reshape(-1)
        times = (frame["YEAR"].to_numpy()[:, None] + (numpy.arange(12)[None, :] / 12)).reshape(-1)
        freq = "monthly"
    else:  # co2: weekly with gaps -> monthly means
        weekly = datasets.co2.load_pandas().data["co2"]
        monthly = weekly.resample("MS").mean().interpolate()
        values = monthly.to_numpy()
        times = monthly.index.year.to_numpy() + (monthly.index.month.to_numpy() - 1) / 12
        freq = "monthly"
    series = TimeSeries(name, torch.from_numpy(numpy.array(values, dtype="float64")),
                        torch.from_numpy(numpy.array(times, dtype="float64")), freq)
    if not bool(torch.isfinite(series.values).all()):
        raise DataError(f"series {name!r} holds NaN/inf after loading")
    return series


def make_windows(values: torch.Tensor, window: int, horizon: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Sliding windows of a series and the value ``horizon`` steps after each.

    .. math:: x_i = (v_i, \\dots, v_{i+T-1}), \\qquad y_i = v_{i+T-1+h}.

    :param values: the series, shape ``L`` (or ``L x D`` for a multivariate
        series, whose first column is the target).
    :param int window: ``T >= 1``.
    :param int horizon: ``h >= 1``.
    :returns: ``(x, y)`` of shapes ``N x T x D`` (``D = 1`` for a vector) and
        ``N``, with ``N = L - T - h + 1``.
    :raises DataError: a non-finite series, a series of shape ``L x 0``, or a window that does not fit.
    """
    require_tensor(values, "series", arg="values")
    if values.dim() not in (1, 2):
        raise DataError(f"series has shape {tuple(values.shape)}, expected (L,) or (L, D)")
    if not bool(torch.isfinite(values).all()):
        raise DataError(f"series (shape {tuple(values.shape)}) holds {int((~torch.isfinite(values)).sum())} "
                        "NaN/inf value(s)")
    if not all(as_integer(n) is not None and n >= 1 for n in (window, horizon)):
        raise DataError(f"window and horizon must be positive integers, got window={window!r}, horizon={horizon!r}")
    if values.dim() == 2 and values.shape[1] == 0:
        raise DataError(f"series has shape {tuple(values.shape)}: no column (D = 0); the first column is the "
                        "target, so a multivariate series needs D >= 1")
    length = values.shape[0]
    if window + horizon > length:
        raise DataError(f"window {window} + horizon {horizon} is longer than the series of length {length}")
    series = values.reshape(length, -1)
    n = length - window - horizon + 1
    x = series.unfold(0, window, 1)[:n].transpose(1, 2).contiguous()  # N x T x D
    y = series[window + horizon - 1:, 0][:n].clone()
    return x, y


def split_series(values: torch.Tensor, num_test: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a series into its first ``L - num_test`` and last ``num_test`` values.

    :param values: the series, shape ``L`` (or ``L x D``), split along its first dimension.
    :param num_test: the number of values of the second part.
    :returns: ``(train, test)``, views of ``values``.
    :raises DataError: ``values`` is not a tensor, or ``num_test`` is not an integer between 1 and
        ``L - 1`` (``bool`` and floats refused).
    """
    require_tensor(values, "series", arg="values")
    if values.dim() == 0:
        raise DataError(f"series has shape {tuple(values.shape)}, expected (L,) or (L, D)")
    if as_integer(num_test) is None or not 0 < num_test < values.shape[0]:
        raise DataError(f"num_test={num_test!r} must be an integer between 1 and {values.shape[0] - 1} for a series "
                        f"of length {values.shape[0]}")
    return values[:-num_test], values[-num_test:]


_SERIES_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def synthetic_series(length: int, *, period: float = 11.0, noise: float = 0.1, trend: float = 0.0,
                     seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A quasi-periodic series for scaling runs and tests:

    .. math:: v_t = \\sin(2\\pi t / p)\\,(1 + 0.3 \\sin(2\\pi t / 7p)) + \\text{trend}\\cdot t / L
        + \\epsilon_t, \\quad \\epsilon_t \\sim \\mathcal N(0, \\text{noise}^2).

    :param length: ``L``, the number of values.
    :param period: ``p``, the period of the main sine (default 11).
    :param noise: the standard deviation of the Gaussian noise (default 0.1).
    :param trend: the coefficient of the linear term ``trend * t / L`` (a rise of ``trend * (L - 1) / L`` over
        the series; default 0).
    :param seed: seeds the noise (default 0).
    :param dtype: the floating dtype of the result (default ``torch.float64``).
    :returns: a CPU tensor (whatever torch's default device) of shape ``length`` and dtype ``dtype``, computed
        in float64 and rounded once to ``dtype`` (so a 16-bit series is the float64 one rounded, not a 16-bit
        computation).
    :raises DataError: ``length`` is not a positive integer (``bool`` and floats refused), ``period`` is
        not a finite number > 0, ``noise`` not a finite number >= 0, ``trend`` not finite, or ``dtype`` not one
        of the floating dtypes ``torch.float16``, ``torch.bfloat16``, ``torch.float32``, ``torch.float64``.
    :raises ConfigError: ``seed`` is not an integer.
    """
    length = positive_int(length, "synthetic_series length", error=DataError)
    period = positive_real(period, "synthetic_series period", error=DataError)
    noise = positive_real(noise, "synthetic_series noise", error=DataError, allow_zero=True)
    if isinstance(trend, bool) or not isinstance(trend, numbers.Real) or not math.isfinite(trend):
        raise DataError(f"synthetic_series trend must be a finite number, got {trend!r}")
    if dtype not in _SERIES_DTYPES:  # an integer, bool or complex dtype: torch.randn / arange cannot make it
        raise DataError(f"synthetic_series dtype must be a floating dtype ({', '.join(map(str, _SERIES_DTYPES))}), "
                        f"got {dtype!r}")
    seed = seed_of(seed, "synthetic_series seed")
    g = torch.Generator().manual_seed(seed)
    # computed in float64 and rounded once at the end: a 16-bit time index repeats (bfloat16 counts 256, 256,
    # 258, ...) and 16-bit sines lose the signal; the noise is drawn as before in float32/float64
    t = torch.arange(length, dtype=torch.float64, device="cpu")  # host data, whatever torch's default device
    clean = torch.sin(2 * math.pi * t / period) * (1 + 0.3 * torch.sin(2 * math.pi * t / (7 * period)))
    draw_dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    eps = torch.randn(length, generator=g, dtype=draw_dtype, device="cpu").to(torch.float64)
    return (clean + trend * t / length + noise * eps).to(dtype)
