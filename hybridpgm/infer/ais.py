r"""Annealed importance sampling (AIS) for log-partition functions.

Given unnormalised densities :math:`f_0, \dots, f_K` with :math:`f_0` tractable
(known :math:`Z_0`, exact samples) and :math:`f_K` the target, AIS [1] draws
:math:`x_1 \sim f_0/Z_0`, moves it with transitions :math:`T_k` that leave
:math:`f_k` invariant, and weights each of :math:`M` chains by

.. math::

    \log w^{(m)} = \sum_{k=1}^{K} \log f_k(x_k^{(m)}) - \log f_{k-1}(x_k^{(m)}),
    \qquad
    \widehat{Z} = Z_0 \frac1M \sum_m w^{(m)} ,

an unbiased estimate of :math:`Z_K` (so :math:`\log \widehat Z` is biased low,
by Jensen).  The standard error of :math:`\log\widehat Z` is the jackknife's over the chains
(:func:`~hybridpgm.infer.ais_result.jackknife_stderr`; to first order the delta-method
:math:`\operatorname{sd}(w) / (\sqrt M\, \bar w)`, which it replaced as too small for few chains), and
:meth:`AISResult.interval` widens it by Student's :math:`t` with :math:`M - 1` degrees of freedom; the effective
sample size :math:`(\sum w)^2 / \sum w^2` of the final weights diagnoses a poor schedule.

The standard error only measures the spread of this run's own weights: when
the base distribution misses a mode of the target, every chain misses it alike
and the error bar is tiny while :math:`\log\widehat Z` is many nats too low.
:func:`hybridpgm.infer.log_z.estimate_log_z` runs AIS from several starts and
flags disagreement; :mod:`hybridpgm.infer.raise_ais` bounds the log-likelihood
from the other side.

:class:`AIS` is generic: it runs on any *annealing path* (an object with
``log_z0``, ``sample0(n)`` and ``step(x, beta_prev, beta, transition)``, see
:mod:`hybridpgm.energy.annealing`) or on any model with an
``annealing_path(data)`` method (:class:`~hybridpgm.energy.RBM`,
:class:`~hybridpgm.energy.DBM`), which interpolates from a base-rate model [2].
Called with ``generator=`` (a :class:`torch.Generator`), every draw comes from it: the
path's ``sample0`` and ``step`` are passed it as the keyword ``generator`` (a path
called with a generator must take that keyword; without one they are called as before).

References:

1. R. M. Neal, "Annealed importance sampling", Statistics and Computing, 2001.
2. R. Salakhutdinov, I. Murray, "On the quantitative analysis of deep belief
   networks", ICML 2008.
3. R. Grosse, C. Maddison, R. Salakhutdinov, "Annealing between distributions
   by averaging moments", NIPS 2013 (the sigmoidal schedule).
"""

from __future__ import annotations

import math
from typing import Any, Protocol, Sequence

import torch

from hybridpgm.checks import generator_keywords, generator_or_none, positive_int
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.infer.ais_result import AISResult, jackknife_stderr  # AISResult re-exported: its former home
from hybridpgm.infer.autocast_off import autocast_off
from hybridpgm.options import Option

__all__ = ["AIS", "AISResult", "AnnealedEstimator", "AnnealingPath", "SCHEDULES", "annealing_schedule"]

#: the temperature schedules :func:`annealing_schedule` knows
SCHEDULES = ("linear", "salakhutdinov", "sigmoid")


class AnnealingPath(Protocol):
    """What :class:`AIS` needs from a model.  The keyword ``generator`` (a :class:`torch.Generator` for the
    draws, ``None`` for torch's global stream) is passed only by a call given a generator: a path without it
    runs as before, but refuses ``AIS(...)(path, generator=g)`` (:func:`path_draws`)."""

    log_z0: torch.Tensor

    def sample0(self, n: int, *, generator: torch.Generator | None = None) -> Any:
        """``n`` exact draws from :math:`f_0 / Z_0`."""
        ...

    def step(self, x: Any, beta_prev: float, beta: float, transition: bool = True, *,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, Any]:
        """:math:`\\log f_\\beta(x) - \\log f_{\\beta_{prev}}(x)` (``n``) and, if ``transition``,
        ``x`` moved by a kernel leaving :math:`f_\\beta` invariant."""
        ...


def path_draws(path: Any, generator: torch.Generator | None, what: str) -> dict:
    """The keywords of ``path``'s ``sample0`` and ``step`` calls: none without a ``generator`` (a path that
    takes no ``generator`` runs as before), ``{"generator": generator}`` with one, after refusing (before any
    draw) a path whose ``sample0`` or ``step`` takes no ``generator=`` keyword.

    :raises ConfigError: ``generator`` is neither a :class:`torch.Generator` nor ``None``
        (:func:`~hybridpgm.checks.generator_or_none`), or the path takes no generator; naming ``what``.
    """
    generator = generator_or_none(generator, f"{what} generator")
    return generator_keywords(generator, path.sample0, path.step, what=f"{what} generator")


def annealing_schedule(num_steps: int, kind: str = "salakhutdinov", *, dtype=torch.float64) -> torch.Tensor:
    """Inverse temperatures :math:`0 = \\beta_0 < \\dots < \\beta_K = 1`, ``K + 1`` values.

    :param kind: ``"linear"``; ``"salakhutdinov"`` (piecewise linear with
        the proportions of [2]: 500 steps on [0, 0.5], 4000 on [0.5, 0.9],
        10000 on [0.9, 1]); or ``"sigmoid"`` (the sigmoidal schedule of [3]).
    :raises ConfigError: ``num_steps`` is not a positive integer (``bool`` and floats included), or an
        unknown ``kind``.
    """
    num_steps = positive_int(num_steps, "AIS num_steps")
    if kind == "linear":
        return torch.linspace(0, 1, num_steps + 1, dtype=dtype)
    if kind == "sigmoid":
        s = torch.sigmoid(torch.linspace(-4, 4, num_steps + 1, dtype=dtype))
        return (s - s[0]) / (s[-1] - s[0])
    if kind == "salakhutdinov":
        if num_steps < 3:
            return torch.linspace(0, 1, num_steps + 1, dtype=dtype)
        knots, counts = [0.0, 0.5, 0.9, 1.0], [500, 4000, 10000]
        sizes = [max(1, round(num_steps * c / sum(counts))) for c in counts]
        sizes[-1] = num_steps - sizes[0] - sizes[1]
        parts = [torch.linspace(knots[i], knots[i + 1], sizes[i] + 1, dtype=dtype)[:-1] for i in range(3)]
        return torch.cat(parts + [torch.ones(1, dtype=dtype)])
    raise ConfigError(f"unknown AIS schedule {kind!r}; use 'linear', 'salakhutdinov' or 'sigmoid'")


def check_schedule(num_steps, kind, what: str) -> None:
    """Check the arguments of :func:`annealing_schedule` without building it (an estimator given explicit
    ``betas`` still refuses a bad ``num_steps`` or ``schedule`` rather than ignoring it).

    :raises ConfigError: as :func:`annealing_schedule`, naming ``what``.
    """
    positive_int(num_steps, f"{what} num_steps")
    if not isinstance(kind, str) or kind not in SCHEDULES:
        raise ConfigError(f"unknown {what} schedule {kind!r}; use 'linear', 'salakhutdinov' or 'sigmoid'")


def check_base_data(data, what: str) -> None:
    """Refuse base-rate ``data`` that is a tensor but not ``N x V`` (a single row or a 3-d batch is not
    reshaped silently); the rest (``V``, values) is checked by the model's annealing path.

    :raises DataError: naming ``what`` and the shape.
    """
    if isinstance(data, torch.Tensor) and data.dim() != 2:
        raise DataError(f"{what} base-rate data must have shape (N, V), got {tuple(data.shape)}; "
                        f"give one row as data[None] and flatten a batch to (N, V)")


def check_betas(betas, what: str) -> torch.Tensor:
    """An explicit annealing schedule as a 1-d float64 tensor: finite, non-decreasing, from 0 to 1
    (a value check on the host, done once when an estimator is built).

    :raises ConfigError: anything else, naming ``what``.
    """
    try:
        tensor = torch.as_tensor(betas, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ConfigError(f"{what} betas must be a 1-d sequence of numbers, got {betas!r}") from e
    if tensor.dim() != 1 or tensor.numel() < 2:
        raise ConfigError(f"{what} betas must be a 1-d sequence of at least two values, got shape "
                          f"{tuple(tensor.shape)}")
    if not bool(torch.isfinite(tensor).all()):
        raise ConfigError(f"{what} betas must be finite, got {tensor.tolist()}")
    if tensor[0] != 0 or tensor[-1] != 1 or bool((tensor[1:] < tensor[:-1]).any()):
        raise ConfigError(f"{what} betas must increase from 0 to 1 (at least two values), got {tensor.tolist()}")
    return tensor


class AnnealedEstimator:
    """The options shared by :class:`AIS` and :class:`~hybridpgm.infer.raise_ais.RAISE`: the chain count and the
    temperature schedule, attributes checked when set as the constructor checks them.

    The schedule lives in :attr:`betas`; :attr:`num_steps` and :attr:`schedule` describe it, and setting either
    rebuilds it (:func:`annealing_schedule`).  Where the constructor was given ``betas`` (or :attr:`betas` was set),
    those are the schedule: :attr:`schedule` is ``None`` and setting :attr:`num_steps` or :attr:`schedule` raises
    (set :attr:`betas` instead), rather than leave the given values silently in place.
    """

    #: the estimator as messages name it
    _what = "AIS"

    def _use_schedule(self, num_steps: Any, schedule: Any, betas: Any = None) -> None:
        """Check ``num_steps`` and ``schedule`` (:func:`check_schedule`) and make ``betas`` (checked), or else the
        named schedule of ``num_steps`` steps, the estimator's schedule."""
        check_schedule(num_steps, schedule, self._what)
        given = betas is not None
        betas = check_betas(betas if given else annealing_schedule(num_steps, schedule), self._what)
        self.__dict__["betas"], self._schedule = betas.tolist(), None if given else schedule

    @property
    def betas(self) -> list[float]:
        """The inverse temperatures :math:`0 = \\beta_0 \\le \\dots \\le \\beta_K = 1` (``K + 1`` floats).  Setting it
        checks the values (:func:`check_betas`; :class:`~hybridpgm.errors.ConfigError`) and makes them the schedule
        (:attr:`schedule` becomes ``None``)."""
        return self.__dict__["betas"]  # where the plain attribute of earlier releases was (their pickles load)

    @betas.setter
    def betas(self, value: Sequence[float] | torch.Tensor) -> None:
        self.__dict__["betas"], self._schedule = check_betas(value, self._what).tolist(), None

    @property
    def num_steps(self) -> int:
        """The number :math:`K` of intermediate distributions, ``len(betas) - 1``.  Setting it rebuilds the named
        :attr:`schedule` with that many steps.

        :raises ConfigError: (on assignment) a value that is not a positive integer, or an estimator whose schedule
            was given as ``betas`` (set :attr:`betas` instead)."""
        return len(self.betas) - 1

    @num_steps.setter
    def num_steps(self, value: int) -> None:
        self._use_schedule(value, self._named("num_steps"))

    @property
    def schedule(self) -> str | None:
        """The name of the schedule (one of :data:`SCHEDULES`), or ``None`` where ``betas`` were given.  Setting it
        rebuilds the schedule with :attr:`num_steps` steps.

        :raises ConfigError: (on assignment) a name not in :data:`SCHEDULES`, or an estimator whose schedule was
            given as ``betas`` (set :attr:`betas` instead)."""
        return self._schedule

    @schedule.setter
    def schedule(self, value: str) -> None:
        if "betas" not in self.__dict__:  # before the constructor (a subclass setting it first): it builds the betas
            check_schedule(1, value, self._what)
            self._schedule = value
            return
        self._named("schedule")
        self._use_schedule(self.num_steps, value)

    def _named(self, option: str) -> str:
        """The name of the schedule, which setting ``option`` rebuilds; a :class:`~hybridpgm.errors.ConfigError`
        where the schedule was given as ``betas`` (nothing to rebuild: the given values would silently stay).
        Before the constructor has run (a subclass setting ``option`` first), the constructor's default name."""
        if "_schedule" not in self.__dict__:
            return "salakhutdinov"
        if self._schedule is None:
            raise ConfigError(f"{self._what} {option} cannot be set: the schedule was given as betas "
                              f"({self.num_steps} steps); set {self._what}.betas instead")
        return self._schedule

    def __setstate__(self, state: dict) -> None:
        """Load a pickled estimator.  One pickled by an earlier release (no schedule name recorded) gets the name of
        its schedule where its ``betas`` are one of :data:`SCHEDULES` to float64 rounding (relative ``1e-12``: the
        sigmoid schedule's last bits differ between CPUs, whose vectorised ``exp`` kernels differ), else ``None``
        (given ``betas``).

        :param state: the pickled ``__dict__``."""
        self.__dict__.update(state)
        if "_schedule" not in state:
            steps, betas = len(state["betas"]) - 1, state["betas"]
            named = [kind for kind in SCHEDULES if steps >= 1 and all(
                math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
                for a, b in zip(annealing_schedule(steps, kind).tolist(), betas))]
            self._schedule = named[0] if named else None


class AIS(AnnealedEstimator):
    """Annealed importance sampling estimator of :math:`\\log Z`.

    :param int num_chains: independent AIS runs :math:`M`.
    :param int num_steps: intermediate distributions :math:`K` (unused if ``betas`` is given, but checked).
    :param str schedule: see :func:`annealing_schedule` (unused if ``betas`` is given, but checked).
    :param betas: an explicit increasing sequence from 0 to 1; it sets the schedule.
    :raises ConfigError: ``num_chains`` is not an integer >= 2, ``num_steps`` is not a positive integer,
        ``schedule`` is not one of :data:`SCHEDULES` (whether or not ``betas`` is given), or ``betas`` is not
        a finite 1-d sequence increasing from 0 to 1 (see :func:`check_betas`).  The options are attributes:
        ``num_chains`` (:class:`~hybridpgm.options.Option`), :attr:`num_steps`,
        :attr:`schedule` and :attr:`betas` (:class:`AnnealedEstimator`); assigning one raises the same.

    >>> from hybridpgm.energy import RBM
    >>> result = AIS(num_chains=16, num_steps=100)(RBM(6, 3))
    >>> result.log_z.shape, result.log_weights.shape
    (torch.Size([]), torch.Size([16]))
    """

    num_chains = Option(lambda self, value: positive_int(value, "AIS num_chains", minimum=2))

    def __init__(self, num_chains: int = 100, num_steps: int = 10000, schedule: str = "salakhutdinov",
                 betas: Sequence[float] | torch.Tensor | None = None):
        self.num_chains = num_chains
        self._use_schedule(num_steps, schedule, betas)

    def path(self, model: Any, data: torch.Tensor | None = None) -> AnnealingPath:
        """The annealing path of ``model``: ``model.annealing_path(data)``, or ``model`` itself when it is a path
        (``sample0``, ``step`` and ``log_z0``).

        :param model: an RBM, DBM or other model with ``annealing_path(data)``, or an :class:`AnnealingPath`.
        :param data: optional ``N x V`` training data for the path's base rates.
        :raises ModelSpecError: ``model`` is neither."""
        if hasattr(model, "annealing_path"):
            return model.annealing_path(data)
        if hasattr(model, "step") and hasattr(model, "sample0") and hasattr(model, "log_z0"):
            return model
        raise ModelSpecError(
            f"{type(model).__name__} is not annealable: it needs an annealing_path(data) method "
            "or the AnnealingPath members log_z0, sample0 and step"
        )

    @torch.no_grad()
    @autocast_off
    def __call__(self, model: Any, data: torch.Tensor | None = None, *,
                 generator: torch.Generator | None = None) -> AISResult:
        """Estimate :math:`\\log Z` of ``model`` (or of an annealing path).

        Under :func:`torch.autocast` it runs with autocast off, in the model's dtype
        (:func:`~hybridpgm.infer.autocast_off.autocast_off`): the same estimate as outside it.

        :param data: optional ``N x V`` training data; sets the base-rate model's
            visible biases to the data's log-odds [2], which makes AIS far more accurate.
            Only for a model with ``annealing_path``: an annealing path is used as it is.
        :param generator: a :class:`torch.Generator` for the draws (the base samples and every transition; on
            the model's device); ``None`` draws from torch's global stream.
        :raises DataError: ``data`` that is not ``N x V`` (the message gives the shape), or that the model
            refuses (another ``V``, NaN, values outside ``[0, 1]`` for Bernoulli units).
        :raises ConfigError: ``data`` given with an annealing path (it has no base rates to set); ``generator``
            neither a :class:`torch.Generator` nor ``None``, or given for a path whose ``sample0`` or ``step``
            takes no ``generator`` keyword.
        :raises ModelSpecError: a model that is not annealable, or non-finite log-weights.
        """
        check_base_data(data, "AIS")
        if data is not None and not hasattr(model, "annealing_path"):
            raise ConfigError(f"AIS data sets a model's base rates, but {type(model).__name__} has no "
                              f"annealing_path(data); an annealing path is used as it is, call AIS without data")
        path = self.path(model, data)
        draws = path_draws(path, generator, "AIS")
        x = path.sample0(self.num_chains, **draws)
        log_w = None
        betas = self.betas
        last = len(betas) - 1
        for k in range(1, len(betas)):
            inc, x = path.step(x, betas[k - 1], betas[k], transition=k < last, **draws)
            # summed in float64 whatever the model's dtype: a float32 running sum of ~1e3 rounds each of the
            # many small, nearly equal increments the same way, an error growing with the number of steps
            log_w = inc.to(torch.float64) if log_w is None else log_w + inc
        if not bool(torch.isfinite(log_w).all()):
            raise ModelSpecError(f"AIS produced non-finite log-weights for {type(model).__name__}")
        log_mean = torch.logsumexp(log_w, 0) - math.log(self.num_chains)
        log_z0 = torch.as_tensor(path.log_z0, dtype=torch.float64, device=log_w.device)
        stderr = jackknife_stderr(log_w)
        return AISResult(log_z=log_z0 + log_mean, stderr=stderr, log_weights=log_w, log_z0=log_z0,
                         num_steps=last)
