"""``hybridpgm train dkl|gp-lstm``: deep-kernel Gaussian processes on regression and a time series.

* ``dkl`` (Wilson et al. 2016): an MLP feature extractor under an RBF kernel,
  trained end to end on the exact marginal likelihood, full batch
  (:class:`~hybridpgm.gp.ExactMLLObjective`), on scikit-learn's bundled
  ``diabetes`` regression (standardized; a quarter held out for test).
* ``gp-lstm`` (Al-Shedivat et al. 2017): an LSTM over windows of a
  statsmodels series (``--dataset sunspots|co2|nile|elnino``, standardized on
  the training part), semi-stochastic training
  (:class:`~hybridpgm.gp.gp_lstm.SemiStochasticObjective`); the last
  ``--num-test`` windows are the test set.

Both hold out the most recent / last ``--validation`` fraction of the
training examples, stop early on its predictive NLL and keep the best weights
(:func:`hybridpgm.gp.validation.fit_validated`), then condition the GP on all
training examples.  ``--epochs`` bounds the passes over the examples trained on
(the training part less the validation fraction): ``epochs * ceil(N / batch)``
steps.  ``dkl``'s default batch (``10**6``) holds every example, so each of its
steps is a full-data step of the exact marginal likelihood and one epoch is one
step; a smaller ``--batch-size`` trains on subsets (Chen et al.'s
subset-likelihood SGD, see :class:`~hybridpgm.gp.ExactMLLObjective`).
metrics.json records the batch actually used (at most the number of examples).  Like every recipe they
write ``checkpoint.pt`` (every ``--checkpoint-every`` steps, at the end and on
SIGTERM/SIGINT) holding the early-stopping state too (best weights, best step,
patience counter): ``--resume`` continues a preempted run to the result an
uninterrupted one gives, or extends a finished one to a larger ``--epochs``
(a run that stopped early stays stopped).  The report gives test
RMSE (data units), negative log predictive density (nats per example, data
units) and the coverage of the central 95% interval; ``coverage.png`` is the
calibration plot.  The model takes and predicts standardized values: ``model.pt``'s
metadata records the standardization (:data:`STANDARDIZATION`: ``x_loc``, ``x_scale``,
``y_loc``, ``y_scale``), so that a loaded model predicts in data units,
:math:`y = y_{loc} + y_{scale} \\mu((x - x_{loc}) / x_{scale})`.
"""

from __future__ import annotations

import argparse
import functools
import math
from pathlib import Path
from typing import Any

import torch

from hybridpgm.data import load_series, make_windows
from hybridpgm.diagnostics import plot_coverage, plot_loss_curves
from hybridpgm.errors import ConfigError
from hybridpgm.gp import GPLSTM, DeepKernelGP, ExactMLLObjective
from hybridpgm.gp.gp_lstm import SemiStochasticObjective
from hybridpgm.gp.validation import fit_validated, split_tail, splittable_size
from hybridpgm.nn import mlp
from hybridpgm.recipes.common import (add_common_arguments, checkpoint_options, machine_description, positive_int,
                                      prepare_output, recipe_config, save_model, throughput, write_metrics,
                                      write_evaluation)
from hybridpgm.train.distributed import current

__all__ = ["STANDARDIZATION", "add_arguments", "evaluate", "load_regression", "run"]

#: units of the figures of this recipe's metrics.json and evaluation.json (beside :data:`~.common.UNITS`)
_UNITS = {
    "test_rmse": "data units", "test_nlpd": "nats per example, data units (lower is better)",
    "test_coverage_95": "fraction of test targets inside the central 95% interval",
    "best_validation_nll": "nats per example, standardized units",
    "best_step": "optimizer steps (the weights kept)",
    "validation": "fraction of the training examples held out for early stopping",
    "train_examples_per_s": "examples in the steps run / training wall time (validation checks included)",
}


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser, model: str) -> None:
    """Add the recipe's options to ``parser``.

    :param parser: the ``hybridpgm train <model>`` subcommand's :class:`argparse.ArgumentParser`.
    :param str model: the model name it runs as (a key of :data:`~hybridpgm.recipes.RECIPES`)."""
    if model == "dkl":
        add_common_arguments(parser, model, epochs=300, batch_size=10**6, lr=0.01, datasets=["diabetes"],
                             dataset="diabetes",
                             epochs_help="passes over the data, at most (early stopping may end sooner); with the "
                                         "default full batch one pass is one step (default 300)",
                             batch_size_help="examples per step (default 10**6: all of them, the exact "
                                             "marginal likelihood; fewer trains on subsets)")
        parser.add_argument("--hidden", type=positive_int, nargs="+", default=[32, 32],
                            help="feature extractor widths (default 32 32)")
        parser.add_argument("--num-features", type=positive_int, default=2, help="features F (default 2)")
    else:
        add_common_arguments(parser, model, epochs=20, batch_size=32, lr=0.01,
                             datasets=["co2", "elnino", "nile", "sunspots"], dataset="sunspots",
                             epochs_help="passes over the data, at most (early stopping may end sooner; default 20)")
        parser.add_argument("--window", type=positive_int, default=12, help="window length T (default 12)")
        parser.add_argument("--hidden", type=positive_int, default=16, help="LSTM width (default 16)")
        parser.add_argument("--num-features", type=positive_int, default=2, help="features F (default 2)")
        parser.add_argument("--num-test", type=positive_int, default=40, help="test windows (default 40)")
    parser.add_argument("--validation", type=_fraction, default=0.2,
                        help="fraction of training examples held out for early stopping (default 0.2)")
    parser.add_argument("--eval-every", type=positive_int, default=5, help="steps between validation checks")
    parser.add_argument("--patience", type=positive_int, default=10, help="checks without improvement to stop")


#: the entries of a run's model.pt meta that give the standardization the model was trained on (plain floats,
#: ``x_loc``/``x_scale`` a list per feature for ``dkl``); see docs/gaussian_processes.md
STANDARDIZATION = ("x_loc", "x_scale", "y_loc", "y_scale")


def load_regression(seed: int) -> dict[str, Any]:
    """scikit-learn's diabetes set, shuffled with ``seed``, standardized on the training part, in torch's default
    dtype (the dtype the model is built in).

    The standardization is returned too (:data:`STANDARDIZATION`): the training part's feature means ``x_loc``
    and standard deviations ``x_scale`` (lists of 10), the target's ``y_loc`` and ``y_scale``; the model takes
    :math:`(x - x_{loc}) / x_{scale}` and predicts :math:`(y - y_{loc}) / y_{scale}`."""
    from sklearn.datasets import load_diabetes

    raw = load_diabetes()
    g = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(raw.data, dtype=torch.get_default_dtype())
    y = torch.as_tensor(raw.target, dtype=torch.get_default_dtype())
    order = torch.randperm(x.shape[0], generator=g)
    x, y = x[order], y[order]
    n_test = x.shape[0] // 4
    x_loc, x_scale = x[n_test:].mean(0), x[n_test:].std(0)
    x = (x - x_loc) / x_scale
    loc, scale = y[n_test:].mean(), y[n_test:].std()
    return {"x_train": x[n_test:], "y_train": (y[n_test:] - loc) / scale, "x_test": x[:n_test],
            "y_test": (y[:n_test] - loc) / scale, "scale": float(scale), "x_loc": x_loc.tolist(),
            "x_scale": x_scale.tolist(), "y_loc": float(loc), "y_scale": float(scale)}


def load_windows(name: str, window: int, num_test: int, min_train: int = 1) -> dict[str, Any]:
    """Windows of a statsmodels series, standardized on the training part, in torch's default dtype (the
    GP-LSTM's); the last ``num_test`` are test.

    A series of length :math:`L` gives :math:`L - T` windows of length :math:`T` (``window``), each with the
    next value as target; the test part holds the last ``num_test`` of them, the training part the
    :math:`L - T - n_{test}` before, so :math:`n_{test} + T + m \\le L` is needed for ``min_train`` (:math:`m`)
    training windows.

    The series' values are standardized by the training part's mean and standard deviation, returned as
    ``x_loc = y_loc`` and ``x_scale = y_scale`` (:data:`STANDARDIZATION`): windows and targets alike.

    :param int min_train: training windows needed (``run`` asks for enough to split off its validation tail).
    :raises ConfigError: ``--num-test`` and ``--window`` leave fewer than ``min_train`` training windows,
        naming both and the series' length.
    """
    values = load_series(name).values.to(torch.get_default_dtype())  # the dtype the GP-LSTM is built in
    length = int(values.shape[0])
    if num_test + window + min_train > length:
        most = length - window - min_train
        hint = f"--num-test {most} or less, or a shorter --window" if most >= 1 else "a shorter --window"
        need = "no training window" if min_train == 1 else f"fewer than the {min_train} training windows needed"
        raise ConfigError(f"--num-test {num_test} with --window {window} leaves {need}: series "
                          f"{name!r} has {length} values, and --num-test + --window + {min_train} must be at most "
                          f"{length} (use {hint})")
    train_part = values[: -num_test]
    loc, scale = train_part.mean(), train_part.std()
    z = (values - loc) / scale
    x_train, y_train = make_windows(z[: -num_test], window)
    x_test, y_test = make_windows(z[-(num_test + window):], window)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test, "scale": float(scale),
            "x_loc": float(loc), "x_scale": float(scale), "y_loc": float(loc), "y_scale": float(scale)}


def _data(meta) -> dict[str, Any]:
    if meta["recipe"] == "dkl":
        return load_regression(meta["seed"])
    return load_windows(meta["dataset"], meta["window"], meta["num_test"])


def _scores(model, data) -> dict[str, float]:
    with torch.no_grad():
        pred = model.predict(data["x_test"])
    mean, sd, y, scale = pred.mean, pred.stddev.clamp_min(1e-6), data["y_test"], data["scale"]
    z = 1.959963984540054
    return {"test_rmse": float(((mean - y) ** 2).mean().sqrt()) * scale,
            "test_nlpd": float(-torch.distributions.Normal(mean, sd).log_prob(y).mean()) + math.log(scale),
            "test_coverage_95": float(((y - mean).abs() <= z * sd).float().mean())}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train with early stopping, evaluate, write the report; return the metrics.

    :param args: the parsed command line (the options of :func:`add_arguments`)."""
    import time

    context = current()
    out = prepare_output(args, f"runs/{args.model}-{args.dataset}")
    meta = {"recipe": args.model, "seed": args.seed, "dataset": args.dataset,
            **({} if args.model == "dkl" else {"window": args.window, "num_test": args.num_test})}
    if args.model == "dkl":
        data = _data(meta)
    else:
        data = load_windows(args.dataset, args.window, args.num_test, min_train=splittable_size(args.validation))
    x, y = data["x_train"], data["y_train"]
    x_fit, y_fit, x_val, y_val = split_tail(x, y, args.validation)
    torch.manual_seed(args.seed)
    if args.model == "dkl":
        model = DeepKernelGP(x_fit, y_fit, mlp([x.shape[-1], *args.hidden, args.num_features]))
        objective, train_data = ExactMLLObjective(model), (x_fit, y_fit)
    else:
        model = GPLSTM(x_fit, y_fit, hidden_size=args.hidden, num_features=args.num_features)
        objective = SemiStochasticObjective(model)
        train_data = objective.dataset()
    batch_size = min(args.batch_size, x_fit.shape[0])  # what a step takes: fit's batches hold at most N
    max_steps = args.epochs * math.ceil(x_fit.shape[0] / batch_size)  # --epochs passes over the data
    # the validation split, its checks and the patience define where training stops: all compared on resume
    config = recipe_config(args)
    options, steps_before = checkpoint_options(args, out, config=config)  # it holds early stopping's state too
    started = time.perf_counter()
    validated = fit_validated(objective, train_data, x_val, y_val, max_steps=max_steps, eval_every=args.eval_every,
                              patience=args.patience, refit=(x, y), batch_size=args.batch_size, seed=args.seed,
                              device=args.device, optim=functools.partial(torch.optim.Adam, lr=args.lr),
                              accumulate=args.accumulate, precision=args.precision,
                              progress=not args.no_progress, **options)
    seconds = time.perf_counter() - started
    if not context.is_main:
        return {}
    model = model.cpu().eval()
    scores = _scores(model, data)
    with torch.no_grad():
        pred = model.predict(data["x_test"])
    plot_loss_curves(validated.history.history, out / "loss.png", title=f"{args.model} on {args.dataset}",
                     labels={"mll": "loss = -log marginal likelihood per example",
                             "gp": "gp loss = -log marginal likelihood per example",
                             "network": "network loss (same quantity)"})
    plot_coverage(data["y_test"], pred.mean, pred.stddev, out / "coverage.png", title="test interval calibration")
    save_model(model, out, args, **{k: v for k, v in meta.items() if k not in ("recipe", "seed", "dataset")},
               **{k: data[k] for k in STANDARDIZATION})  # to predict in data units from model.pt alone
    steps = validated.steps
    metrics = {"model": args.model, "dataset": args.dataset, "steps": steps, "best_step": validated.best_step,
               "stopped_early": validated.stopped_early, "best_validation_nll": validated.best_validation_nll,
               "epochs": args.epochs, "max_steps": max_steps, "lr": args.lr, "batch_size": batch_size,
               "accumulate": args.accumulate, "precision": args.precision or "fp32", "seed": args.seed,
               "device": str(validated.history.device), "hidden": args.hidden, "num_features": args.num_features,
               "validation": args.validation, "eval_every": args.eval_every, "patience": args.patience,
               **{k: getattr(args, k) for k in ("window", "num_test") if hasattr(args, k)},
               "train_size": int(x.shape[0]), "test_size": int(data["x_test"].shape[0]), **scores,
               "train_wall_time_s": seconds,
               # the short last batch of each epoch counted as what it holds (not a full batch_size)
               "train_examples_per_s": throughput(validated.history, int(x_fit.shape[0]), batch_size, steps_before,
                                                  seconds),
               "machine": machine_description()}
    write_metrics(out, metrics, units=_UNITS)
    return metrics


def evaluate(saved, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``hybridpgm evaluate RUN``: the test figures again from ``RUN/model.pt``.

    :param saved: the run's :class:`~hybridpgm.serialization.SavedModel` (``RUN/model.pt``).
    :param run_dir: the run folder ``RUN``.
    :param args: the parsed ``hybridpgm evaluate`` command line."""
    report = {"model": saved.meta["recipe"], "dataset": saved.meta["dataset"],
              **_scores(saved.module, _data(saved.meta))}
    write_evaluation(report, run_dir, args, units=_UNITS)
    return report
