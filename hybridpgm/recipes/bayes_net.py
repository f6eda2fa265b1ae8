"""``hybridpgm train bayes-net``: learn a Bayesian network's tables from incomplete data.

The true network is a BIF network bundled with pgmpy (``--network``, default
``asia``; any ``.bif`` path works, recorded as an absolute path so that
``hybridpgm evaluate`` finds it from any working directory).  Rows are
sampled from it (``--num-data`` for training, ``--num-test`` held out) and a
fraction ``--missing`` of the entries hidden.  A network of the same structure with random tables learns
from the incomplete rows by gradient steps on the exact marginal likelihood
of the observed entries (the missing ones enumerated in parallel by
:class:`pyro.infer.TraceEnum_ELBO`; the fixed points of EM, Dempster et al. 1977).

Report: the held-out log-likelihood of the observed entries (nats per row)
of the learned, the initial and the true network; and query accuracy against
exact answers: on held-out rows, a third of the nodes observed, every other
node's exact posterior under the learned network against the one under the
true network (how often their most probable states agree, and the mean total
variation distance between them).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch
from pyro.infer import TraceEnum_ELBO

from hybridpgm.diagnostics import plot_loss_curves
from hybridpgm.errors import DataError
from hybridpgm.graphs import BayesNet, cpd, load_network
from hybridpgm.infer import SVIObjective
from hybridpgm.recipes.common import (add_common_arguments, machine_description, positive_int, prepare_output,
                                      recipe_config, save_model, train, write_evaluation, write_metrics)
from hybridpgm.train.atomic_write import write_text_atomically
from hybridpgm.train.distributed import current

__all__ = ["add_arguments", "evaluate", "learner_for", "run", "sample"]


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser, model: str) -> None:
    """Add the recipe's options to ``parser``.

    :param parser: the ``hybridpgm train <model>`` subcommand's :class:`argparse.ArgumentParser`.
    :param str model: the model name it runs as (a key of :data:`~hybridpgm.recipes.RECIPES`)."""
    add_common_arguments(parser, model, epochs=20, batch_size=500, lr=0.05, datasets=["bif"], dataset="bif")
    parser.add_argument("--network", default="asia", help="pgmpy network name or .bif path (default asia)")
    parser.add_argument("--num-data", type=positive_int, default=5000, help="training rows (default 5000)")
    parser.add_argument("--num-test", type=positive_int, default=1000, help="held-out rows (default 1000)")
    parser.add_argument("--missing", type=_fraction, default=0.3, help="fraction of hidden entries (default 0.3)")


def learner_for(truth: BayesNet, generator: torch.Generator) -> BayesNet:
    """The structure of ``truth`` with tables drawn from :math:`\\mathrm{Dir}(\\mathbf 1)`."""
    learner = BayesNet()
    for v in truth.nodes:
        parents = list(truth.cpds[v].parents)
        table = cpd.Table.random(truth.cpds[v].cardinality, [truth.cpds[p].cardinality for p in parents], parents,
                                 generator=generator)
        learner.add(v, table, states=truth.state_names.get(v))
    return learner.check()


def _rows(truth: BayesNet, n: int, missing: float, generator: torch.Generator) -> torch.Tensor:
    full = truth.to_tensor(truth.sample(n)).float()
    return full.masked_fill(torch.rand(full.shape, generator=generator) < missing, float("nan"))


def _held_out(bn: BayesNet, rows: torch.Tensor) -> float:
    with torch.no_grad():
        return float(bn.log_evidence(dict(zip(bn.nodes, rows.T))).mean())


def _query_scores(learned: BayesNet, truth: BayesNet, rows: torch.Tensor, seed: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(seed)
    nodes = truth.nodes
    observed = [nodes[i] for i in torch.randperm(len(nodes), generator=g)[: max(1, len(nodes) // 3)].tolist()]
    complete = ~torch.isnan(rows[:, [nodes.index(v) for v in observed]]).any(-1)
    evidence = {v: rows[complete, nodes.index(v)].long() for v in observed}
    agree, tv, count = 0.0, 0.0, 0
    with torch.no_grad():
        for q in (v for v in nodes if v not in observed):
            mine, exact = learned.posterior(q, evidence), truth.posterior(q, evidence)
            agree += float((mine.argmax(-1) == exact.argmax(-1)).float().sum())
            tv += float(0.5 * (mine.double() - exact.double()).abs().sum(-1).sum())
            count += exact.shape[0]
    return {"query_accuracy": agree / max(count, 1), "query_total_variation": tv / max(count, 1),
            "queries": count, "query_evidence_nodes": observed}


def _true_network(network: str) -> BayesNet:
    """The network ``--network`` names (:func:`~hybridpgm.graphs.load_network`).

    :raises DataError: it cannot be read, or has continuous nodes.
    """
    truth = load_network(network)
    if any(getattr(truth.cpds[v], "cardinality", None) is None for v in truth.nodes):
        raise DataError(f"network {network!r} has continuous nodes; bayes-net needs a discrete BIF network")
    return truth


def _recorded_network(network: str) -> str:
    """What a run records for ``--network``: the absolute path of a BIF file (``load_network`` reads ``network``
    as a path exactly when it is a regular file, once it has loaded), so that ``hybridpgm evaluate RUN`` finds
    it from any working directory; a bundled name as given."""
    return os.path.abspath(network) if os.path.isfile(network) else network


def _setup(meta, truth: BayesNet | None = None) -> tuple[BayesNet, torch.Tensor, torch.Tensor]:
    truth = _true_network(meta["network"]) if truth is None else truth
    torch.manual_seed(meta["seed"])
    g = torch.Generator().manual_seed(meta["seed"])
    return truth, _rows(truth, meta["num_data"], meta["missing"], g), _rows(truth, meta["num_test"], meta["missing"], g)


#: the units of the figures of metrics.json and evaluation.json
_UNITS = {
    "test_log_likelihood": "log p(observed entries) of held-out rows, nats per row (higher is better)",
    "initial_test_log_likelihood": "the same, before training",
    "true_network_test_log_likelihood": "the same under the true network (the ceiling, in expectation)",
    "query_accuracy": "fraction of held-out queries whose most probable state matches the exact answer",
    "query_total_variation": "mean total variation distance to the exact posterior",
    "queries": "(held-out row, query node) pairs scored"}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Sample, learn, evaluate, write the report; return the metrics.

    :param args: the parsed command line (the options of :func:`add_arguments`)."""
    context = current()
    truth = _true_network(args.network)  # before --out is created: a folder --out asia must not hide asia
    network = _recorded_network(args.network)
    out = prepare_output(args, f"runs/bayes-net-{Path(args.network).stem}")
    meta = {k: getattr(args, k) for k in ("network", "num_data", "num_test", "missing", "seed")}
    meta["network"] = network
    truth, train_rows, test_rows = _setup(meta, truth)
    learner = learner_for(truth, torch.Generator().manual_seed(args.seed + 1))
    initial = _held_out(learner, test_rows)
    objective = SVIObjective(learner.model, learner.guide, TraceEnum_ELBO(max_plate_nesting=1))
    # --num-test only adds held-out rows, drawn after the training ones: it changes the report, not the run
    config = recipe_config(args, reporting=("num_test",), network=network)
    result, train_seconds, examples_per_s = train(objective, learner.split_missing(train_rows), args, out,
                                                  config=config)
    if not context.is_main:
        return {}
    learner = learner.cpu().eval()
    scores = {"test_log_likelihood": _held_out(learner, test_rows),
              "initial_test_log_likelihood": initial,
              "true_network_test_log_likelihood": _held_out(truth, test_rows),
              **_query_scores(learner, truth, test_rows, args.seed)}
    plot_loss_curves(result.history, out / "loss.png", title=f"learning {args.network} from incomplete rows",
                     labels={"elbo": "loss = -log p(observed entries), nats per row"})
    save_model(learner, out, args, **{k: v for k, v in meta.items() if k != "seed"})
    metrics = {"model": "bayes-net", **meta, "nodes": len(truth.nodes), "epochs": args.epochs,
               "steps": result.steps, "batch_size": args.batch_size, "lr": args.lr,
               "precision": args.precision or "fp32", "device": str(result.device),
               "world_size": context.world_size, **scores, "train_wall_time_s": train_seconds,
               "train_examples_per_s": examples_per_s, "machine": machine_description()}
    write_metrics(out, metrics, units=_UNITS)
    return metrics


def _as_trained(truth: BayesNet, learned: BayesNet, network: str) -> BayesNet:
    """The true network (``evaluate --network``) checked to be the trained one's: the same nodes, each with the
    same parents, cardinality and state names in the same order (the held-out rows and queries are coded by state
    index), and declared in the trained network's node order (the rows' columns follow it), whatever order the
    file lists them in.

    :raises DataError: naming the network and the first node that differs.
    """
    if set(truth.nodes) != set(learned.nodes):
        raise DataError(f"network {network!r} has nodes {sorted(truth.nodes)}, the trained network "
                        f"{sorted(learned.nodes)}; give the network the run was trained on")
    for v in learned.nodes:
        got = (sorted(truth.parents(v)), truth.cardinality(v))
        want = (sorted(learned.parents(v)), learned.cardinality(v))
        if got != want:
            raise DataError(f"network {network!r}: node {v!r} has parents {got[0]} and {got[1]} states, in the "
                            f"trained network parents {want[0]} and {want[1]} states; give the network the run was "
                            "trained on")
    for v in learned.nodes:  # after the structure: a differing structure is the more telling message
        got_states, want_states = truth.state_names.get(v), learned.state_names.get(v)
        if got_states is not None and want_states is not None and list(got_states) != list(want_states):
            raise DataError(f"network {network!r}: node {v!r} has the states {list(got_states)}, the trained network "
                            f"{list(want_states)} (in this order: rows and queries are coded by state index); give "
                            "the network the run was trained on")
    if list(truth.nodes) == list(learned.nodes):
        return truth
    ordered = BayesNet()
    for v in learned.nodes:
        ordered.add(v, truth.cpds[v], states=truth.state_names.get(v))
    return ordered.check()


def evaluate(saved, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``hybridpgm evaluate RUN``: regenerate the held-out rows from the run's seed and score again (the true
    network from ``--network`` where given, checked to have the trained network's structure; ``--num-data``
    training rows drawn, then ``--num-test`` held out: the run's, capped or passed,
    :mod:`~hybridpgm.recipes.run_counts`).

    :param saved: the run's :class:`~hybridpgm.serialization.SavedModel` (``RUN/model.pt``).
    :param run_dir: the run folder ``RUN``.
    :param args: the parsed ``hybridpgm evaluate`` command line."""
    truth = _as_trained(_true_network(saved.meta["network"]), saved.module, saved.meta["network"])
    truth, _, test_rows = _setup(saved.meta, truth)
    report = {"model": "bayes-net", "network": saved.meta["network"],
              "test_log_likelihood": _held_out(saved.module, test_rows),
              **_query_scores(saved.module, truth, test_rows, saved.meta["seed"])}
    write_evaluation(report, run_dir, args, units=_UNITS)
    return report


def sample(saved, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``hybridpgm sample RUN``: ancestral samples as CSV (state names) to ``RUN/samples-seed<S>.csv``.

    :param saved: the run's :class:`~hybridpgm.serialization.SavedModel` (``RUN/model.pt``).
    :param run_dir: the run folder ``RUN``.
    :param args: the parsed ``hybridpgm sample`` command line."""
    bn = saved.module
    path = Path(args.output or run_dir / f"samples-seed{args.seed}.csv")
    draws = bn.sample(args.num_samples)
    lines = [",".join(bn.nodes)]
    for i in range(args.num_samples):
        lines.append(",".join(str(bn.state_names[v][int(draws[v][i])]) if v in bn.state_names
                              else str(int(draws[v][i])) for v in bn.nodes))
    write_text_atomically(path, "\n".join(lines) + "\n", "samples file")
    return {"samples": str(path), "num_samples": args.num_samples}
