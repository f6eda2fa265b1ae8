r"""Training a deep-kernel GP without overfitting: a held-out validation tail,
early stopping on its negative log predictive density, and a calibration report.

A deep kernel can fit the training targets by shrinking the noise variance
while the network memorises the inputs: the marginal likelihood keeps rising,
held-out intervals collapse (on a short noisy series, 95% intervals that cover
0.58 of the test points after 300 steps).  The remedy is the usual one: hold
out the *last* ``validation`` fraction of the training examples (the most
recent windows of a series, so the validation set lies in the future of the
training set), score the predictive density on it every ``eval_every`` steps
(:class:`~hybridpgm.train.EvaluateEvery`), stop when it has not improved for
``patience`` evaluations (:class:`~hybridpgm.train.EarlyStopping`), and restore
the best weights.  The GP is then conditioned on training *and* validation
data (hyperparameters, network and, under KISS-GP, the grid scaling recorded in
training fixed: the kernel does not change), so predictions use the newest values.

A preempted run loses nothing: with ``checkpoint=path`` the early-stopping
state (the evaluations so far, the best validation NLL, its step and weights,
the patience counter) is saved in :func:`hybridpgm.fit`'s checkpoint and
restored on resume (see :mod:`hybridpgm.train.callbacks`), so a resumed run
ends with the same weights, best step and history as one never interrupted,
and resuming a run that had stopped early returns its final answer again.

:func:`calibration` reports the coverage of central predictive intervals: a
calibrated model covers about 50%, 80% and 95% of held-out targets with its
50%, 80% and 95% intervals.
"""

from __future__ import annotations

import collections.abc
import copy
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from hybridpgm.checks import positive_int, unit_fraction
from hybridpgm.errors import ConfigError, DataError
from hybridpgm.tensor_arguments import require_tensor
from hybridpgm.train.callbacks import Callback, EarlyStopping, EvaluateEvery

__all__ = ["ValidatedFit", "calibration", "fit_validated", "split_tail", "validation_nll"]

LEVELS = (0.5, 0.8, 0.95)


def calibration(mean: torch.Tensor, sd: torch.Tensor, y: torch.Tensor,
                levels: Sequence[float] = LEVELS) -> dict[str, float]:
    """Fraction of ``y`` inside the central ``level`` interval of :math:`\\mathcal N(\\text{mean}, \\text{sd}^2)`.

    :param mean: predictive means, ``N``.
    :param sd: predictive standard deviations, ``N``.
    :param y: targets, ``N``.
    :param levels: the interval probabilities, each in ``(0, 1)`` (default :data:`LEVELS`: 0.5, 0.8, 0.95).
    :returns: ``{"coverage_50": ..., "coverage_80": ..., "coverage_95": ...}`` (keys from ``levels``).
    :raises DataError: tensors of different shapes, none at all (no points: no coverage), NaN/inf values
        or a negative ``sd``.
    :raises ConfigError: ``levels`` that are not distinct numbers in ``(0, 1)`` (two levels that round to one
        percentage would share a key).
    """
    for name, t in (("mean", mean), ("sd", sd), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise DataError(f"calibration {name} must be a tensor, got {type(t).__name__}")
    if mean.shape != sd.shape or mean.shape != y.shape:
        raise DataError(f"calibration needs mean, sd and y of one shape, got {tuple(mean.shape)}, "
                        f"{tuple(sd.shape)}, {tuple(y.shape)}")
    if mean.numel() == 0:
        raise DataError(f"calibration got no points (shape {tuple(mean.shape)}): coverage is undefined")
    for name, t in (("mean", mean), ("sd", sd), ("y", y)):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise DataError(f"calibration {name} (shape {tuple(t.shape)}) holds "
                            f"{int((~torch.isfinite(t)).sum())} NaN/inf value(s)")
    if bool((sd < 0).any()):
        raise DataError(f"calibration sd (shape {tuple(sd.shape)}) holds {int((sd < 0).sum())} negative value(s); "
                        "standard deviations are >= 0")
    if isinstance(levels, (str, bytes)) or not isinstance(levels, collections.abc.Iterable):
        raise ConfigError(f"calibration levels must be a sequence of numbers in (0, 1), got {levels!r}")
    out = {}
    normal = torch.distributions.Normal(0.0, 1.0)
    for level in levels:
        unit_fraction(level, "calibration levels")
        key = f"coverage_{round(100 * level)}"
        if key in out:
            raise ConfigError(f"calibration levels {list(levels)!r} give {key!r} twice; pass distinct percentages")
        z = float(normal.icdf(torch.tensor(0.5 + level / 2, dtype=torch.float64)))
        inside = (y - mean).abs() <= z * sd
        out[key] = float(inside.float().mean())
    return out


def split_tail(x: torch.Tensor, y: torch.Tensor, fraction: float = 0.2,
               min_size: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_fit, y_fit, x_val, y_val)``: the last ``fraction`` of the examples held out (order kept).

    :raises ConfigError: ``fraction`` not a number in ``(0, 1)``.
    :raises DataError: ``x`` or ``y`` not a tensor with an example dimension, different numbers of examples,
        or fewer than ``min_size`` examples on either side (naming the fewest examples that split,
        :func:`splittable_size`).
    """
    unit_fraction(fraction, "validation fraction")
    for name, t in (("x", x), ("y", y)):
        require_tensor(t, name)
        if t.dim() == 0:
            raise DataError(f"{name} has shape {tuple(t.shape)}, expected a tensor with the examples along dimension 0")
    n = x.shape[0]
    if y.shape[0] != n:
        raise DataError(f"x has {n} examples but y has {y.shape[0]}")
    n_val = max(1, round(n * fraction))
    if n_val < min_size or n - n_val < min_size:
        raise DataError(f"{n} examples cannot be split into training and a validation tail of {n_val} "
                        f"(each side needs at least {min_size}): a validation fraction of {fraction} needs at least "
                        f"{splittable_size(fraction, min_size)} examples")
    return x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:]


def splittable_size(fraction: float, min_size: int = 5) -> int:
    """The fewest examples :func:`split_tail` can split with this ``fraction`` and ``min_size``.

    The smallest :math:`n` with :math:`\\max(1, \\operatorname{round}(n f)) \\ge m` and
    :math:`n - \\max(1, \\operatorname{round}(n f)) \\ge m`.

    :raises ConfigError: ``fraction`` not a number in ``(0, 1)``.
    """
    unit_fraction(fraction, "validation fraction")
    n = 2 * min_size
    while not min_size <= max(1, round(n * fraction)) <= n - min_size:
        n += 1
    return n


def validation_nll(model: Any, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean negative log predictive density of ``y`` at ``x`` under ``model.predict`` (a
    :class:`~hybridpgm.gp.DeepKernelGP`), conditioned on the model's training data."""
    pred = model.predict(x.to(_reference(model).device))
    sd = pred.variance.clamp_min(1e-12).sqrt()
    return float(-torch.distributions.Normal(pred.mean, sd).log_prob(y.to(pred.mean)).mean())


def _reference(model: Any) -> torch.Tensor:
    """The tensor on whose device held-out data are scored: an exact GP's training inputs, else (a variational
    :class:`~hybridpgm.gp.SVDeepKernelGP`, which holds no data) its first floating-point parameter."""
    train_x = getattr(model, "train_x", None)
    if isinstance(train_x, torch.Tensor):
        return train_x
    return next(p for p in model.parameters() if p.is_floating_point())


def _check_held_out(model: Any, x: Any, y: Any, what: str) -> None:
    """Check ``(x, y)`` held out for, or conditioned on by, a GP ``model`` before any training step runs: ``x`` of
    the training inputs' dtype where the model holds them (an integer-input GP included), else, when floating, of
    the model's floating-point dtype (a variational GP's integer inputs go to its feature extractor as they are);
    ``y`` of the training targets' dtype, else of the model's floating-point dtype."""
    from hybridpgm.gp.feature_gp import check_inputs, check_targets

    # no device check: validation_nll and the refit move the data to the model's device
    train_x, train_y = getattr(model, "train_x", None), getattr(model, "train_y", None)
    floating = isinstance(x, torch.Tensor) and x.is_floating_point()
    check_inputs(x, model.example_shape, f"{what} x", dtype=train_x.dtype if isinstance(train_x, torch.Tensor)
                 else _reference(model).dtype if floating else None)
    if x.shape[0] == 0:
        raise DataError(f"{what} x has shape {tuple(x.shape)}: no examples")
    check_targets(y, x.shape[0], f"{what} y",
                  dtype=train_y.dtype if isinstance(train_y, torch.Tensor) else _reference(model).dtype)


class _KeepBest(Callback):
    """Copy the module's state whenever the monitored metric reaches a new minimum.

    Its own state (:meth:`state_dict`) holds the best value (``None`` before the first
    evaluation: checkpoints hold finite numbers only), its step, the evaluations seen and
    the copied weights (under ``"module"``), so it resumes from a checkpoint.
    """

    def __init__(self, monitor: str):
        self.monitor, self.best, self.state, self.step, self._seen = monitor, float("inf"), None, 0, 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best if math.isfinite(self.best) else None, "step": self.step, "seen": self._seen,
                "module": self.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float("inf") if state["best"] is None else float(state["best"])
        self.step, self._seen, self.state = int(state["step"]), int(state["seen"]), state["module"]

    def on_step_end(self, info) -> None:
        points = info.history.metrics.get(self.monitor, [])
        if len(points) > self._seen:
            self._seen = len(points)
            step, value = points[-1]
            if value < self.best:
                self.best, self.step = value, step
                self.state = copy.deepcopy(info.objective.module.state_dict())

    on_fit_end = on_step_end


@dataclass
class ValidatedFit:
    """Result of :func:`fit_validated`.

    :param best_step: the step whose weights were kept.
    :param best_validation_nll: its validation NLL (nats per point, data units of ``y``).
    :param steps: steps run before stopping.
    :param stopped_early: whether :class:`~hybridpgm.train.EarlyStopping` ended the run.
    :param history: the :class:`~hybridpgm.train.FitResult` of the run.
    """

    best_step: int
    best_validation_nll: float
    steps: int
    stopped_early: bool
    history: Any = field(repr=False)


def fit_validated(objective: Any, data: Any, x_val: torch.Tensor, y_val: torch.Tensor, *, max_steps: int = 300,
                  eval_every: int = 5, patience: int = 10, refit: tuple[torch.Tensor, torch.Tensor] | None = None,
                  score: Callable[[Any], float] | None = None, checkpoint: Any = None, resume: bool | str = "auto",
                  overwrite: bool = False, **fit_kwargs: Any) -> ValidatedFit:
    """Train a deep-kernel GP ``objective`` with early stopping on held-out ``(x_val, y_val)``.

    Every ``eval_every`` steps the validation NLL is logged as ``"validation_nll"``; the run
    stops after ``patience`` evaluations without improvement (or ``max_steps``), the best
    weights are restored, and with ``refit=(x, y)`` the GP is conditioned on those data (with the kernel as
    trained: see :meth:`~hybridpgm.gp.DeepKernelGP.set_train_data`).

    :param objective: e.g. :class:`~hybridpgm.gp.SemiStochasticObjective` or
        :class:`~hybridpgm.gp.ExactMLLObjective`; its ``module`` has ``predict``.
    :param data: what :func:`hybridpgm.fit` trains on.
    :param x_val: held-out inputs ``V x ...``, of the training data's example shape and dtype.
    :param y_val: held-out targets ``V``.
    :param max_steps: at most this many steps (a positive integer, default 300).
    :param eval_every: steps between two validation checks (default 5).
    :param patience: validation checks without improvement that end the run early (default 10).
    :param refit: ``(x, y)`` to condition the GP on after the best weights are restored (e.g. the training and
        held-out data together), or ``None`` (the default) to keep its training data.
    :param score: ``score(module) -> float`` to minimise on the validation data (default
        :func:`validation_nll` of ``module.predict``), for models that are not GPs (a baseline LSTM).
    :param checkpoint: path of :func:`hybridpgm.fit`'s checkpoint; it also holds the early-stopping
        state (best weights, best step, patience counter), so a preempted run resumes exactly.
    :param resume: :func:`hybridpgm.fit`'s ``resume`` (``"auto"``, ``"require"``, ``"never"``).  A
        resumed run that had stopped early trains no further and returns the same result.
    :param overwrite: start afresh, deleting an existing ``checkpoint``.
    :param fit_kwargs: passed to :func:`hybridpgm.fit` (``batch_size``, ``optim``, ``seed``, ``device``,
        ``checkpoint_every``...).
    :raises CheckpointError: the checkpoint belongs to another run (see :mod:`hybridpgm.train.resume`).
    :raises ConfigError: ``max_steps`` not a positive integer, ``refit`` not a pair ``(x, y)``, or ``refit`` for a
        model that holds no training data (an :class:`~hybridpgm.gp.SVDeepKernelGP`).
    :raises DataError: (before any step) without ``score``, ``x_val``/``y_val`` that are empty, non-finite or of
        another example shape, dtype or length than the model's training data; likewise ``refit``.
    """
    from hybridpgm.train.trainer import fit

    max_steps = positive_int(max_steps, "max_steps")
    model = objective.module
    if score is None:
        _check_held_out(model, x_val, y_val, "validation")
    if refit is not None:
        if not isinstance(refit, (tuple, list)) or len(refit) != 2:
            raise ConfigError(f"refit must be a pair (x, y), got a {type(refit).__name__}"
                              + (f" of {len(refit)} elements" if isinstance(refit, (tuple, list)) else ""))
        if not callable(getattr(model, "set_train_data", None)):
            raise ConfigError(f"refit conditions an exact GP on new data; {type(model).__name__} holds no training "
                              "data to replace (its variational posterior is trained on the data itself)")
        _check_held_out(model, refit[0], refit[1], "refit")
    if score is None:
        score = functools.partial(validation_nll, x=x_val, y=y_val)
    evaluate = EvaluateEvery(eval_every, lambda obj: score(obj.module), "validation_nll")
    stopper = EarlyStopping("validation_nll", patience=patience)
    keep = _KeepBest("validation_nll")
    callbacks = [evaluate, stopper, keep, *fit_kwargs.pop("callbacks", ())]
    fit_kwargs.setdefault("progress", False)
    result = fit(objective, data, epochs=fit_kwargs.pop("epochs", None), max_steps=max_steps,
                 callbacks=callbacks, checkpoint=checkpoint, resume=resume, overwrite=overwrite, **fit_kwargs)
    if keep.state is not None:
        model.load_state_dict(keep.state)
    steps = result.history.step[-1] if result.history.step else 0
    if refit is not None:
        model.set_train_data(refit[0].to(model.train_x.device), refit[1].to(model.train_y.device))
    return ValidatedFit(best_step=keep.step, best_validation_nll=keep.best, steps=steps,
                        stopped_early=result.stopped_early, history=result)

