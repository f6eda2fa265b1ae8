"""``hybridpgm train dbn|dbm``: deep belief nets and deep Boltzmann machines on binary images.

* ``dbn``: greedy layer-wise CD-k training (Hinton, Osindero & Teh 2006).
  Every stage writes its checkpoint (``checkpoint-stage<i>.pt`` for the lower
  RBMs, ``checkpoint.pt`` for the top one), so ``--resume`` continues in the
  stage a preempted run stopped in; finished stages load.  A ``--resume`` that trains a lower stage further and
  then resumes a stage above on its changed features warns, as :meth:`~hybridpgm.energy.DBN.pretrain` does
  (:mod:`hybridpgm.energy.greedy_stages`, worded with ``--overwrite``).  Reports the test reconstruction loss of
  the unrolled autoencoder (Bernoulli negative log-likelihood, nats per image) and plots
  samples (Gibbs in the top RBM, then a top-down pass).
* ``dbm``: the weight-doubling pretraining, then joint PCD training with
  mean-field positive phase (Salakhutdinov & Hinton 2009), every pretraining
  stage and the joint training checkpointed as for ``dbn``; reports
  :math:`\\log Z` by AIS and the variational lower bound on the test
  log-likelihood (nats per image).

Both train with SGD and momentum (``--lr``, ``--momentum``).  metrics.json's ``train_wall_time_s`` is the
whole training (every greedy stage or the pretraining, and the top stage); ``top_stage_train_wall_time_s`` the
top stage (the last greedy RBM of a DBN, the joint training of a DBM) alone, which ``train_examples_per_s``
divides its examples by; ``"units"`` names the model's own top stage (:func:`_units`).
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from typing import Any

import torch

from hybridpgm.data import load_dataset
from hybridpgm.diagnostics import plot_image_grid, plot_loss_curves
from hybridpgm.energy import DBM, DBN
from hybridpgm.energy.greedy_stages import GreedyStages, worded_for
from hybridpgm.infer import AIS, ContrastiveDivergence, PersistentCD
from hybridpgm.recipes.common import (add_common_arguments, checkpoint_options, machine_description,
                                      non_negative_float, positive_int, prepare_output, recipe_config, save_model,
                                      train, write_evaluation, write_metrics)
from hybridpgm.train.distributed import current

__all__ = ["add_arguments", "evaluate", "run", "sample"]

#: units of the figures of this recipe's metrics.json and evaluation.json (beside :data:`~.common.UNITS`)
_UNITS = {
    "test_reconstruction_loss": "Bernoulli NLL of the unrolled autoencoder, nats per example (lower is better)",
    "test_log_likelihood_bound": "variational lower bound, nats per example (higher is better)",
    "train_wall_time_s": "seconds, the whole training: every greedy stage (DBN) or the pretraining (DBM), and the "
                         "top stage",
    "top_stage_train_wall_time_s": "seconds, the top stage ({stage}) alone",
    "steps": "optimizer steps of the top stage ({stage})",
    "train_examples_per_s": "top-stage training examples / top_stage_train_wall_time_s",
}
#: each model's top stage, as :data:`_UNITS` names it
_TOP_STAGE = {"dbn": "the DBN's last greedy RBM", "dbm": "the DBM's joint training"}


def _units(model: str) -> dict[str, str]:
    """:data:`_UNITS` with ``model``'s (``"dbn"`` or ``"dbm"``) top stage named: a DBN's is its last greedy RBM (it
    has no joint training), a DBM's its joint PCD training."""
    return {figure: unit.format(stage=_TOP_STAGE[model]) for figure, unit in _UNITS.items()}


def add_arguments(parser: argparse.ArgumentParser, model: str) -> None:
    """Add the recipe's options to ``parser``.

    :param parser: the ``hybridpgm train <model>`` subcommand's :class:`argparse.ArgumentParser`.
    :param str model: the model name it runs as (a key of :data:`~hybridpgm.recipes.RECIPES`)."""
    add_common_arguments(parser, model, epochs=10, batch_size=20, lr=0.05, optimizer="SGD (with --momentum)")
    parser.add_argument("--hidden", type=positive_int, nargs="+", default=[100, 50],
                        help="hidden layer sizes, bottom-up (default 100 50)")
    parser.add_argument("--k", type=positive_int, default=1, help="Gibbs sweeps per step (default 1)")
    parser.add_argument("--momentum", type=non_negative_float, default=0.5, help="SGD momentum (default 0.5)")
    parser.add_argument("--gibbs-steps", type=positive_int, default=1000, help="Gibbs sweeps for samples")
    if model == "dbm":
        parser.add_argument("--chains", type=positive_int, default=100, help="persistent chains (default 100)")
        parser.add_argument("--mean-field-steps", type=positive_int, default=10, help="mean-field updates")
        parser.add_argument("--ais-chains", type=positive_int, default=100, help="AIS chains (default 100)")
        parser.add_argument("--ais-steps", type=positive_int, default=5000, help="AIS temperatures (default 5000)")


def _reconstruction_nll(dbn: DBN, x: torch.Tensor) -> float:
    with torch.no_grad():
        logits = dbn.to_autoencoder().to(x.device)(x)
        return float(torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1).mean())


def _dbm_scores(dbm: DBM, train_x, test_x, chains: int, steps: int) -> dict[str, float]:
    with torch.no_grad():
        ais = AIS(num_chains=chains, num_steps=steps)(dbm, data=train_x)
        bound = float(dbm.log_likelihood_bound(test_x, ais.log_z).mean())
    return {"log_z": float(ais.log_z), "log_z_stderr": float(ais.stderr), "ais_ess": float(ais.ess),
            "test_log_likelihood_bound": bound}


#: how a ``--resume`` retrains the stages above one that trained further (:func:`~.greedy_stages.worded_for`)
_RETRAIN = ("delete the checkpoints of the stages above (checkpoint-stage<i>.pt, checkpoint.pt) from --out before "
            "--resume, or train with --overwrite instead of --resume (every stage afresh)")


def _greedy_dbn(model: DBN, x: torch.Tensor, ckpt: list[dict[str, Any]], out: Path, k: int,
                stage: dict[str, Any]) -> tuple[ContrastiveDivergence, torch.Tensor]:
    """Train the DBN's RBMs below the top one in turn (each by CD-``k`` on the probabilities of the layer below,
    with its checkpoint options ``ckpt[i]`` and the ``stage`` options of :func:`hybridpgm.fit`), through
    :class:`~hybridpgm.energy.greedy_stages.GreedyStages`, which warns where a stage, or the top one
    (``out/checkpoint.pt``, trained by the caller), resumes its checkpoint on features that changed in this run.

    :returns: the top RBM's objective and its data (the top hidden probabilities of the stages below).
    """
    shared = {key: value for key, value in ckpt[0].items() if key != "checkpoint"} if ckpt else {"resume": False}
    stages = GreedyStages([*(options["checkpoint"] for options in ckpt), out / "checkpoint.pt"], len(model.rbms),
                          "DBN", shared)
    for layer, (rbm, options) in enumerate(zip(model.rbms[:-1], ckpt)):
        stages.fit(layer, ContrastiveDivergence(rbm, k), x, **stage, **options)
        with torch.no_grad():
            x = torch.sigmoid(rbm.hidden_logits(x.to(rbm.weight.device))).cpu()
    stages.check_resume(len(model.rbms) - 1, record=True)  # the top stage, which common.train fits
    return ContrastiveDivergence(model.rbms[-1], k), x, stages


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, evaluate, write the report; return the metrics.

    :param args: the parsed command line (the options of :func:`add_arguments`)."""
    context = current()
    stages = len(args.hidden) if args.model == "dbm" else len(args.hidden) - 1  # greedy stages before the last
    out = prepare_output(args, f"runs/{args.model}-{args.dataset}",
                         "checkpoint-stage0.pt" if stages else "checkpoint.pt")
    data = load_dataset(args.dataset, binarize="static", root=args.data_root, seed=args.seed)
    torch.manual_seed(args.seed)
    sizes = [data.num_features, *args.hidden]
    sgd = functools.partial(torch.optim.SGD, lr=args.lr, momentum=args.momentum)
    stage = dict(epochs=args.epochs, batch_size=args.batch_size, accumulate=args.accumulate, precision=args.precision,
                 optim=sgd, device=args.device, seed=args.seed, progress=not args.no_progress)
    train_x = data.train.x
    # every stage records the whole run's configuration; samples and the AIS estimate change the report only
    config = recipe_config(args, reporting=("gibbs_steps", "ais_chains", "ais_steps"))
    # every greedy stage has its checkpoint; under --resume the first exists (prepare_output), the
    # later ones may not (the run was preempted before them) and start afresh
    ckpt = [checkpoint_options(args, out, f"checkpoint-stage{i}.pt", require=False, config=config)[0]
            for i in range(stages)]
    started = time.perf_counter()  # the whole training: the greedy stages / the pretraining, then the top stage
    # a stage resumed on the features of a stage below that trained further warns, naming this command's flags
    with worded_for(f"train {args.model} --resume", _RETRAIN):
        if args.model == "dbn":
            model = DBN(sizes)
            objective, x, greedy = _greedy_dbn(model, train_x, ckpt, out, args.k, stage)
        else:
            model = DBM(sizes, mean_field_steps=args.mean_field_steps)
            options = {k: v for k, v in ckpt[0].items() if k != "checkpoint"}
            model.pretrain(train_x, k=args.k, checkpoints=[o["checkpoint"] for o in ckpt], **stage, **options)
            objective, x = PersistentCD(model, args.k, args.chains), train_x
    result, train_seconds, examples_per_s = train(objective, x, args, out, optim=sgd,
                                                  require_checkpoint=not stages, config=config)
    if args.model == "dbn":
        greedy.record(len(model.rbms) - 1)  # the top stage finished on the features below it now
    total_seconds = time.perf_counter() - started
    if not context.is_main:
        return {}
    model = model.to(result.device).eval()
    test = data.test.x.to(result.device)
    if args.model == "dbn":
        scores = {"test_reconstruction_loss": _reconstruction_nll(model, test)}
        meta = {}
    else:
        scores = _dbm_scores(model, train_x.to(result.device), test, args.ais_chains, args.ais_steps)
        meta = {"ais_chains": args.ais_chains, "ais_steps": args.ais_steps}
        scores.update(meta)  # the AIS settings the log Z estimate used
    with torch.no_grad():
        samples = model.sample(64, steps=args.gibbs_steps).cpu()
    plot_loss_curves(result.history, out / "loss.png", title=f"{args.model} on {args.dataset} (top stage)")
    plot_image_grid(samples, data.image_shape, out / "samples.png", title=f"{args.model} samples")
    save_model(model.cpu(), out, args, feature_shape=[data.num_features], image_shape=list(data.image_shape),
               gibbs_steps=args.gibbs_steps, **meta)
    metrics = {
        "model": args.model, "dataset": args.dataset, "layer_sizes": sizes, "epochs": args.epochs,
        "steps": result.steps, "batch_size": args.batch_size, "lr": args.lr, "optimizer": "SGD",
        "momentum": args.momentum, "k": args.k, "seed": args.seed, "precision": args.precision or "fp32",
        **({"chains": args.chains, "mean_field_steps": args.mean_field_steps} if args.model == "dbm" else {}),
        "device": str(result.device),
        "world_size": context.world_size, **scores,
        "train_wall_time_s": total_seconds, "top_stage_train_wall_time_s": train_seconds,
        "train_examples_per_s": examples_per_s, "machine": machine_description(),
    }
    write_metrics(out, metrics, units=_units(args.model))
    return metrics


def evaluate(saved, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``hybridpgm evaluate RUN``: the test figures again from ``RUN/model.pt``.

    :param saved: the run's :class:`~hybridpgm.serialization.SavedModel` (``RUN/model.pt``).
    :param run_dir: the run folder ``RUN``.
    :param args: the parsed ``hybridpgm evaluate`` command line."""
    meta, model = saved.meta, saved.module
    data = load_dataset(meta["dataset"], binarize="static", root=meta.get("data_root"), seed=meta["seed"])
    if isinstance(model, DBN):
        report = {"test_reconstruction_loss": _reconstruction_nll(model, data.test.x)}
    else:
        report = _dbm_scores(model, data.train.x, data.test.x, meta["ais_chains"], meta["ais_steps"])
        report.update(ais_chains=meta["ais_chains"], ais_steps=meta["ais_steps"])  # the run's, or those passed
    report = {"model": meta["recipe"], "dataset": meta["dataset"], **report}
    write_evaluation(report, run_dir, args, units=_units("dbn" if isinstance(model, DBN) else "dbm"))
    return report


def sample(saved, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``hybridpgm sample RUN``: samples to ``RUN/samples-seed<S>.png``.

    :param saved: the run's :class:`~hybridpgm.serialization.SavedModel` (``RUN/model.pt``).
    :param run_dir: the run folder ``RUN``.
    :param args: the parsed ``hybridpgm sample`` command line."""
    path = Path(args.output or run_dir / f"samples-seed{args.seed}.png")
    with torch.no_grad():
        images = saved.module.sample(args.num_samples, steps=saved.meta["gibbs_steps"]).cpu()
    plot_image_grid(images, tuple(saved.meta["image_shape"]), path, title=f"{saved.meta['recipe']} samples")
    return {"samples": str(path), "num_samples": args.num_samples}
