"""``hybridpgm train crf``: a neural linear-chain CRF tagger on a generated tagging task.

The task (``--dataset hmm``) is drawn from a random sticky hidden Markov
model (seeded by ``--seed``): labels follow the chain, each emits a symbol
from a label-specific distribution that overlaps the others, so the best
possible tagger (the HMM's exact posterior, itself a linear-chain CRF) is
well below 100% accurate.  The tagger (:class:`~hybridpgm.recipes.models.CRFTagger`)
is trained on the negative conditional log-likelihood; the report gives its
test loss (nats per sequence) and token accuracy (posterior marginals and
Viterbi) beside the Bayes-optimal ones (Lafferty et al. 2001).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from hybridpgm.diagnostics import plot_loss_curves
from hybridpgm.diagnostics.plots import plot_sequence_marginals
from hybridpgm.data.hmm_tagging import hmm_posterior, random_hmm, sample_hmm
from hybridpgm.errors import ConfigError
from hybridpgm.infer.crf_likelihood import CRFLikelihood, token_accuracy
from hybridpgm.recipes.common import (add_common_arguments, machine_description, positive_int, prepare_output,
                                      recipe_config, save_model, train, write_evaluation, write_metrics)
from hybridpgm.recipes.models import CRFTagger
from hybridpgm.train.distributed import current

__all__ = ["add_arguments", "evaluate", "make_task", "run"]

#: units of the figures of this recipe's metrics.json and evaluation.json (beside :data:`~.common.UNITS`)
_UNITS = {
    "test_loss": "-log p(y|x), nats per sequence (lower is better)",
    "bayes_test_loss": "the true HMM posterior's -log p(y|x), nats per sequence",
    "test_accuracy": "fraction of tokens (posterior-marginal argmax)",
    "test_viterbi_accuracy": "fraction of tokens (Viterbi path)",
    "bayes_test_accuracy": "fraction of tokens of the Bayes-optimal tagger",
    "train_examples_per_s": "sequences / training wall time",
}


def add_arguments(parser: argparse.ArgumentParser, model: str) -> None:
    """Add the recipe's options to ``parser``.

    :param parser: the ``hybridpgm train <model>`` subcommand's :class:`argparse.ArgumentParser`.
    :param str model: the model name it runs as (a key of :data:`~hybridpgm.recipes.RECIPES`)."""
    add_common_arguments(parser, model, epochs=5, batch_size=64, lr=1e-2, datasets=["hmm"], dataset="hmm")
    parser.add_argument("--num-labels", type=positive_int, default=5, help="labels L (default 5)")
    parser.add_argument("--num-symbols", type=positive_int, default=10, help="input symbols V (default 10)")
    parser.add_argument("--hidden", type=positive_int, default=32, help="tagger width (default 32)")
    parser.add_argument("--num-train", type=positive_int, default=4000, help="training sequences (default 4000)")
    parser.add_argument("--num-test", type=positive_int, default=1000, help="test sequences (default 1000)")
    parser.add_argument("--max-len", type=positive_int, default=30, help="longest sequence (default 30)")


def make_task(num_labels: int, num_symbols: int, num_train: int, num_test: int, max_len: int, seed: int):
    """``(hmm, train, test)``: the HMM ``(log_pi, log_A, log_B)`` and two tuples
    ``(x [N, T], y [N, T], lengths [N])`` (padded with zeros past each length), lengths uniform in
    ``min_len..max_len`` with ``min_len = max(2, max_len // 3)``, capped at ``max_len`` (``max_len = 1``: every
    sequence is one token long, a tiny but valid task)."""
    g = torch.Generator().manual_seed(seed)
    hmm = random_hmm(num_labels, num_symbols, generator=g)
    min_len = min(max_len, max(2, max_len // 3))
    train = sample_hmm(hmm, num_train, min_len, max_len, generator=g)
    return hmm, train, sample_hmm(hmm, num_test, min_len, max_len, generator=g)


def _scores(tagger: CRFTagger, hmm, test) -> dict[str, float]:
    x, y, lengths = test
    with torch.no_grad():
        crf = tagger.cpu().eval()(x, lengths)
        bayes = hmm_posterior(hmm, x, lengths)
        return {"test_loss": float(-crf.log_prob(y).mean()), "bayes_test_loss": float(-bayes.log_prob(y).mean()),
                "test_accuracy": token_accuracy(crf.marginals.argmax(-1), y, lengths),
                "test_viterbi_accuracy": token_accuracy(crf.argmax(), y, lengths),
                "bayes_test_accuracy": token_accuracy(bayes.marginals.argmax(-1), y, lengths)}


def _task(args_or_meta) -> tuple:
    get = args_or_meta.get if isinstance(args_or_meta, dict) else lambda k: getattr(args_or_meta, k)
    return make_task(get("num_labels"), get("num_symbols"), get("num_train"), get("num_test"), get("max_len"),
                     get("seed"))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, evaluate, write the report; return the metrics.

    :param args: the parsed command line (the options of :func:`add_arguments`)."""
    context = current()
    out = prepare_output(args, "runs/crf-hmm")
    hmm, train_set, test_set = _task(args)
    torch.manual_seed(args.seed)
    tagger = CRFTagger(args.num_symbols, args.num_labels, args.hidden)
    # --num-test only adds test sequences, drawn after the training ones: it changes the report, not the run
    config = recipe_config(args, reporting=("num_test",))
    result, train_seconds, examples_per_s = train(CRFLikelihood(tagger), train_set, args, out, config=config)
    if not context.is_main:
        return {}
    scores = _scores(tagger, hmm, test_set)
    plot_loss_curves(result.history, out / "loss.png", title="CRF tagger", labels={"crf": "loss = -log p(y|x)"})
    x, y, lengths = (t[:1] for t in test_set)
    with torch.no_grad():
        marginals = tagger(x, lengths).marginals[0, : int(lengths[0])]
    plot_sequence_marginals(marginals, y[0, : int(lengths[0])], out / "marginals.png")
    task = {k: getattr(args, k) for k in ("num_labels", "num_symbols", "num_train", "num_test", "max_len")}
    save_model(tagger, out, args, **task)
    metrics = {"model": "crf", "dataset": "hmm", **task, "hidden": args.hidden, "epochs": args.epochs,
               "steps": result.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
               "precision": args.precision or "fp32", "device": str(result.device), "world_size": context.world_size,
               **scores,
               "train_wall_time_s": train_seconds, "train_examples_per_s": examples_per_s,
               "machine": machine_description()}
    write_metrics(out, metrics, units=_UNITS)
    return metrics


def _check_sizes(tagger: CRFTagger, meta: dict[str, Any], run_dir: Path) -> None:
    """Refuse a run whose recorded ``--num-symbols``/``--num-labels`` are not its tagger's: they size the HMM
    drawn (``L x L`` and ``L x V`` tables), and a model file can come from elsewhere.

    :raises ConfigError: naming the run, the recorded value and the tagger's.
    """
    for name, size in (("num_symbols", tagger.embed.num_embeddings), ("num_labels", tagger.out.out_features)):
        value = meta.get(name)
        if type(value) is not int or value != size:
            raise ConfigError(f"the run {str(run_dir)!r} records {name} {value!r}, but its tagger has {size}; "
                              "its model.pt was changed or written elsewhere")


def evaluate(saved, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``hybridpgm evaluate RUN``: regenerate the task from the run's seed and score the tagger (the task's
    sizes are the run's, ``--num-train``, ``--num-test`` and ``--max-len`` capped or passed,
    :mod:`~hybridpgm.recipes.run_counts`).

    :param saved: the run's :class:`~hybridpgm.serialization.SavedModel` (``RUN/model.pt``).
    :param run_dir: the run folder ``RUN``.
    :param args: the parsed ``hybridpgm evaluate`` command line.
    :raises ConfigError: the recorded vocabulary or label count is not the tagger's."""
    _check_sizes(saved.module, saved.meta, run_dir)
    hmm, _, test_set = _task(saved.meta)
    report = {"model": "crf", "dataset": "hmm", **_scores(saved.module, hmm, test_set)}
    write_evaluation(report, run_dir, args, units=_UNITS)
    return report
