"""``hybridpgm train sbn``: a sigmoid belief net trained by wake-sleep, RWS, NVIL or VIMCO.

Trains on the training split (dynamically binarized) with ``--objective``, then
reports the importance-sampled test log-likelihood (``--eval-samples`` draws
from the recognition network) on the statically binarized test split, and
plots dreams and loss curves.

``--particles K`` is the number of samples per datapoint of ``rws`` and ``vimco``
(default 5; VIMCO needs at least 2); ``wake-sleep`` and ``nvil`` draw one, and
refuse ``--particles``.  metrics.json records the :math:`K` the objective trained with.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from hybridpgm.data import load_dataset, training_data
from hybridpgm.diagnostics import plot_image_grid, plot_loss_curves
from hybridpgm.errors import ConfigError
from hybridpgm.generative import SigmoidBeliefNet
from hybridpgm.infer import NVIL, RWS, VIMCO, WakeSleep
from hybridpgm.recipes.common import (add_common_arguments, machine_description, positive_int, prepare_output,
                                      recipe_config, save_model, train, write_evaluation, write_metrics)
from hybridpgm.train.distributed import current

__all__ = ["OBJECTIVES", "add_arguments", "evaluate", "run", "sample"]

#: ``--objective`` name -> builder ``(sbn, particles) -> objective``; ``wake-sleep`` and ``nvil`` ignore
#: ``particles`` (one sample per datapoint), so :func:`run` refuses ``--particles`` for them
OBJECTIVES = {
    "wake-sleep": lambda sbn, k: WakeSleep(sbn.model, sbn.guide, max_plate_nesting=1),
    "rws": lambda sbn, k: RWS(sbn.model, sbn.guide, num_particles=k, max_plate_nesting=1),
    "nvil": lambda sbn, k: NVIL(sbn.model, sbn.guide, max_plate_nesting=1),
    "vimco": lambda sbn, k: VIMCO(sbn.model, sbn.guide, num_particles=k, max_plate_nesting=1),
}

#: the objectives that take ``--particles``
_WITH_PARTICLES = ("rws", "vimco")

#: ``--particles`` when not given
DEFAULT_PARTICLES = 5

#: units of the figures of this recipe's metrics.json and evaluation.json (beside :data:`~.common.UNITS`)
_UNITS = {"eval_samples": "importance samples from the recognition network per test example"}

#: ``--objective`` -> player -> what the player's loss is (``{k}``: the particles); its ``final_train_loss``
#: unit and its curve's label in loss.png.  ``-L_K`` (the negative importance-weighted bound) and ``-ELBO``
#: are upper bounds on ``-log p(x)`` in expectation; wake-sleep's sleep loss is no bound.
_LOSS_MEANINGS = {
    "wake-sleep": {"wake": "-ELBO", "sleep": "sleep surrogate -log q(h'|x') on dreams (no bound, not comparable)"},
    "rws": {"rws": "-L_{k} (negative importance-weighted bound)"},
    "nvil": {"elbo": "-ELBO"},
    "vimco": {"elbo": "-L_{k} (negative importance-weighted bound)"},
}


def _loss_meanings(objective: str, particles: int) -> dict[str, str]:
    """Player -> what its loss is, in nats per example, for ``--objective objective`` with ``particles``."""
    return {player: f"{meaning.format(k=particles)}, nats per example"
            for player, meaning in _LOSS_MEANINGS[objective].items()}


def add_arguments(parser: argparse.ArgumentParser, model: str) -> None:
    """Add the recipe's options to ``parser``.

    :param parser: the ``hybridpgm train <model>`` subcommand's :class:`argparse.ArgumentParser`.
    :param str model: the model name it runs as (a key of :data:`~hybridpgm.recipes.RECIPES`)."""
    add_common_arguments(parser, model, epochs=10, batch_size=100)
    parser.add_argument("--objective", default="rws", choices=sorted(OBJECTIVES),
                        help="training objective (default rws)")
    parser.add_argument("--hidden", type=positive_int, nargs="+", default=[200, 200],
                        help="hidden layer sizes, bottom-up (default 200 200)")
    parser.add_argument("--particles", type=positive_int, default=None,
                        help=f"samples per datapoint K of rws and vimco (default {DEFAULT_PARTICLES}; vimco needs "
                             "K >= 2); not taken by wake-sleep and nvil")
    parser.add_argument("--eval-samples", type=positive_int, default=1000,
                        help="importance samples for the test log-likelihood (default 1000)")
    parser.add_argument("--eval-size", type=positive_int, default=None, help="evaluate on the first N test images")


def _particles(args: argparse.Namespace) -> int:
    """The :math:`K` that ``--objective`` trains with, checked before anything runs.

    :raises ConfigError: ``--particles`` given for an objective that draws one sample, or fewer than
        2 for ``vimco`` (VIMCO's own error, naming the option).
    """
    k = args.particles
    if args.objective not in _WITH_PARTICLES:
        if k is not None:
            raise ConfigError(f"--particles applies to --objective {' and '.join(_WITH_PARTICLES)}; "
                              f"{args.objective} draws one sample per datapoint (leave --particles out)")
        return 1
    k = DEFAULT_PARTICLES if k is None else k
    try:
        OBJECTIVES[args.objective](SigmoidBeliefNet([1, 1]), k)  # the objective's own check of K, up front
    except ConfigError as error:
        raise ConfigError(f"--particles {k} with --objective {args.objective}: {error}") from None
    return k


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, evaluate, write the report; return the metrics.

    :param args: the parsed command line (the options of :func:`add_arguments`)."""
    context = current()
    particles = _particles(args)
    out = prepare_output(args, f"runs/sbn-{args.objective}-{args.dataset}")
    data = load_dataset(args.dataset, binarize="dynamic", root=args.data_root, seed=args.seed)
    torch.manual_seed(args.seed)
    sbn = SigmoidBeliefNet([data.num_features, *args.hidden])
    objective = OBJECTIVES[args.objective](sbn, particles)
    config = recipe_config(args, reporting=("eval_samples", "eval_size"), particles=particles)  # the K used
    result, train_seconds, examples_per_s = train(objective, training_data(data), args, out, config=config)
    if not context.is_main:
        return {}
    sbn.eval()
    test = data.test.x[: args.eval_size].to(result.device)
    test_ll = float(torch.cat([sbn.log_likelihood(chunk, num_samples=args.eval_samples)
                               for chunk in test.split(100)]).mean())
    meanings = _loss_meanings(args.objective, particles)
    plot_loss_curves(result.history, out / "loss.png", title=f"SBN ({args.objective}) on {args.dataset}",
                     labels={player: f"{player} loss = {meaning}" for player, meaning in meanings.items()})
    plot_image_grid(sbn.sample(64).cpu(), data.image_shape, out / "samples.png", title="dreams")
    save_model(sbn.cpu(), out, args, feature_shape=[data.num_features], image_shape=list(data.image_shape),
               eval_samples=args.eval_samples, eval_size=args.eval_size)
    metrics = {
        "model": "sbn",
        "objective": args.objective,
        "dataset": args.dataset,
        "layer_sizes": sbn.layer_sizes,
        "epochs": args.epochs,
        "steps": result.steps,
        "batch_size": args.batch_size,
        "accumulate": args.accumulate,
        "precision": args.precision or "fp32",
        "particles": objective.elbo.num_particles,  # the K trained with (1 for wake-sleep and nvil)
        "seed": args.seed,
        "device": str(result.device),
        "world_size": context.world_size,
        "final_train_loss": {p: v[-1] for p, v in result.history.loss.items()},
        "lr": args.lr,
        "test_log_likelihood": test_ll,
        "eval_samples": args.eval_samples,
        "test_size": int(test.shape[0]),
        "train_wall_time_s": train_seconds,
        "train_examples_per_s": examples_per_s,
        "machine": machine_description(),
    }
    loss_units = {player: f"{meaning} (lower is better)" for player, meaning in meanings.items()}
    write_metrics(out, metrics, units={**_UNITS, "final_train_loss": loss_units})
    return metrics


def evaluate(saved, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``hybridpgm evaluate RUN``: the importance-sampled test log-likelihood again.

    :param saved: the run's :class:`~hybridpgm.serialization.SavedModel` (``RUN/model.pt``).
    :param run_dir: the run folder ``RUN``.
    :param args: the parsed ``hybridpgm evaluate`` command line."""
    meta = saved.meta
    data = load_dataset(meta["dataset"], binarize="dynamic", root=meta.get("data_root"), seed=meta["seed"])
    test = data.test.x[: meta.get("eval_size")]
    test_ll = float(torch.cat([saved.module.log_likelihood(chunk, num_samples=meta["eval_samples"])
                               for chunk in test.split(100)]).mean())
    report = {"model": "sbn", "dataset": meta["dataset"], "test_log_likelihood": test_ll,
              "eval_samples": meta["eval_samples"], "test_size": int(test.shape[0])}
    write_evaluation(report, run_dir, args, units=_UNITS)
    return report


def sample(saved, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``hybridpgm sample RUN``: dreams (ancestral samples) to ``RUN/samples-seed<S>.png``.

    :param saved: the run's :class:`~hybridpgm.serialization.SavedModel` (``RUN/model.pt``).
    :param run_dir: the run folder ``RUN``.
    :param args: the parsed ``hybridpgm sample`` command line."""
    path = Path(args.output or run_dir / f"samples-seed{args.seed}.png")
    plot_image_grid(saved.module.sample(args.num_samples).cpu(), tuple(saved.meta["image_shape"]), path,
                    title="dreams")
    return {"samples": str(path), "num_samples": args.num_samples}
