"""Bayesian networks with a neural CPD, learned from incomplete data, then queried exactly.

Part 1 -- the sprinkler network (cloudy -> sprinkler, cloudy -> rain,
(sprinkler, rain) -> wet grass; J. Pearl, *Probabilistic Reasoning in
Intelligent Systems*, 1988).  Rows are sampled from the true network and
``--missing`` of the entries are hidden.  A learner with random tables for
cloudy, sprinkler and rain and a small MLP as the CPD of ``wet`` (a
:class:`~hybridpgm.graphs.cpd.Neural` CPD) is trained by
:func:`hybridpgm.fit` on :class:`pyro.infer.TraceEnum_ELBO`: the missing
entries are enumerated, so the loss is the exact negative log-likelihood of
what was observed and its gradient steps reach the EM fixed points (A. P.
Dempster, N. M. Laird, D. B. Rubin, *Maximum Likelihood from Incomplete Data
via the EM Algorithm*, 1977).  It prints the learned tables against the truth
and exact posteriors of both networks.

Part 2 -- a network imported from a BIF file (by default pgmpy's bundled
``alarm``, I. Beinlich et al., 1989): a batch of evidence rows is answered by
one tensor contraction, and the most probable explanation by another.  Then
rows that each observe a random subset of the evidence nodes are answered
twice: by the contraction (per-row indicators) and by an evidence table
compiled over those nodes (:meth:`~hybridpgm.graphs.BayesNet.compile_evidence`:
a lookup per row, or a short signed sum in its compact layout).

    python examples/bayes_net.py --num-steps 400 --num-data 5000

Part 2's bundled networks come with pgmpy (``pip install 'hybridpgm[pgmpy]'``); without it, pass a BIF file
(``--network path/to/net.bif``).
"""

from __future__ import annotations

import argparse
import functools
import time

import torch
from pyro.infer import TraceEnum_ELBO

import hybridpgm
from hybridpgm.errors import ConfigError
from hybridpgm.graphs import BayesNet, cpd, load_network
from hybridpgm.infer import SVIObjective
from hybridpgm.recipes.common import seed_int

FT = ["F", "T"]


def true_sprinkler() -> BayesNet:
    bn = BayesNet()
    bn.add("cloudy", cpd.Table([0.5, 0.5]), states=FT)
    bn.add("sprinkler", cpd.Table([[0.5, 0.5], [0.9, 0.1]], ["cloudy"]), states=FT)
    bn.add("rain", cpd.Table([[0.8, 0.2], [0.2, 0.8]], ["cloudy"]), states=FT)
    bn.add("wet", cpd.Table([[[1.0, 0.0], [0.1, 0.9]], [[0.1, 0.9], [0.01, 0.99]]], ["sprinkler", "rain"]),
           states=FT)
    return bn


def learner_sprinkler(hidden: int, seed: int) -> BayesNet:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mlp = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 2))
    bn = BayesNet()
    bn.add("cloudy", cpd.Table.random(2, generator=g), states=FT)
    bn.add("sprinkler", cpd.Table.random(2, [2], ["cloudy"], generator=g), states=FT)
    bn.add("rain", cpd.Table.random(2, [2], ["cloudy"], generator=g), states=FT)
    bn.add("wet", cpd.Neural(mlp, ["sprinkler", "rain"], 2), states=FT)
    return bn


def part1(args) -> dict:
    truth = true_sprinkler()
    torch.manual_seed(args.seed)
    full = truth.to_tensor(truth.sample(args.num_data))
    hide = torch.rand(full.shape) < args.missing
    data = full.masked_fill(hide, float("nan"))
    learner = learner_sprinkler(args.hidden, args.seed)
    objective = SVIObjective(learner.model, learner.guide, TraceEnum_ELBO(max_plate_nesting=1))
    values, mask = learner.split_missing(data)
    nll0 = -learner.log_evidence(dict(zip(learner.nodes, data.T))).mean().item()
    result = hybridpgm.fit(objective, (values, mask), max_steps=args.num_steps,
                           batch_size=args.batch_size, optim=functools.partial(torch.optim.Adam, lr=args.lr),
                           device=args.device, seed=args.seed, progress=not args.quiet)
    learner = learner.to("cpu")
    with torch.no_grad():
        ev = dict(zip(learner.nodes, data.T))
        nll = -learner.log_evidence(ev).mean().item()
        nll_true = -truth.log_evidence(ev).mean().item()
        print(f"[sprinkler] {result.steps} steps; observed-data NLL per row: start {nll0:.4f}, "
              f"learned {nll:.4f}, true network {nll_true:.4f}")
        for v in learner.nodes:
            err = (learner.cpds[v].log_table().exp() - truth.cpds[v].probs).abs().max().item()
            print(f"  max |learned - true| in p({v} | parents) = {err:.3f}")
        queries = [("rain", {"wet": "T"}), ("sprinkler", {"wet": "T", "cloudy": "T"}), ("cloudy", {"wet": "F"})]
        for q, e in queries:
            print(f"  p({q}=T | {e}): learned {learner.posterior(q, e)[1]:.3f}, true {truth.posterior(q, e)[1]:.3f}")
        mpe = learner.map({"wet": "T"})
        print("  most probable explanation of wet=T: " + ", ".join(f"{v}={FT[int(x)]}" for v, x in mpe.items()))
    return {"nll_start": nll0, "nll": nll, "nll_true": nll_true}


def part2(args) -> None:
    bn = load_network(args.network)
    bn.to(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(args.seed)
    rows = bn.sample(args.num_queries)
    ev_nodes = [bn.nodes[i] for i in torch.randperm(len(bn.nodes))[: max(1, len(bn.nodes) // 5)]]
    evidence = {v: rows[v] for v in ev_nodes}
    with torch.no_grad():
        bn.posterior(None, evidence)  # first call: finds and caches the contraction plan
        start = time.perf_counter()
        post = bn.posterior(None, evidence)
        took = time.perf_counter() - start
        mpe = bn.map(evidence)
    q = next(v for v in bn.nodes if v not in evidence)
    print(f"[{args.network}] {len(bn.nodes)} nodes; evidence on {ev_nodes}")
    print(f"  {args.num_queries} rows x {len(post)} marginals in {1e3 * took:.1f} ms "
          f"({1e6 * took / args.num_queries:.1f} us per row)")
    print(f"  p({q} | row 0) = {dict(zip(bn.state_names[q], post[q][0].tolist()))}")
    first = ", ".join(f"{v}: {bn.state_names[v][int(x[0])]}" for v, x in list(mpe.items())[:6])
    print(f"  MAP of row 0: {{{first}, ...}}")
    mixed_patterns(bn, evidence)


def mixed_patterns(bn: BayesNet, evidence: dict) -> None:
    """Rows observing random subsets of the evidence nodes: the contraction against an evidence table."""
    hidden = {v: torch.rand(x.shape, device=x.device) < 0.5 for v, x in evidence.items()}
    mixed = {v: torch.where(hidden[v], -1, x) for v, x in evidence.items()}
    try:
        start = time.perf_counter()
        table = bn.compile_evidence(list(evidence))
        built = time.perf_counter() - start
    except ConfigError as error:  # too many joint evidence configurations for a table
        print(f"  no evidence table: {error}")
        return
    with torch.no_grad():
        bn.posterior(None, mixed)  # first call: finds and caches the plans of this query shape
        start = time.perf_counter()
        post = bn.posterior(None, mixed)
        contracted = time.perf_counter() - start
    start = time.perf_counter()
    looked_up = table.posterior(None, mixed)
    lookup = time.perf_counter() - start
    diff = max((post[v] - looked_up[v]).abs().max().item() for v in post)
    n = next(iter(mixed.values())).shape[0]
    print(f"  mixed patterns, {n} rows: contraction {1e6 * contracted / n:.1f} us per row; "
          f"{table} built in {built:.2f} s, {1e6 * lookup / n:.1f} us per row; max difference {diff:.1e}")


def main(args) -> dict:
    out = part1(args)
    if args.network:
        part2(args)
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # the first paragraph
    p.add_argument("--num-steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seed", type=seed_int, default=0, help="random seed, in [0, 2**32 - 1]")
    p.add_argument("--device", default="auto")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--num-data", type=int, default=5000, help="rows sampled from the true sprinkler network")
    p.add_argument("--missing", type=float, default=0.3, help="fraction of entries hidden")
    p.add_argument("--hidden", type=int, default=16, help="hidden units of the neural CPD")
    p.add_argument("--network", default="alarm", help="BIF path or pgmpy network name; '' to skip part 2")
    p.add_argument("--num-queries", type=int, default=1000, help="evidence rows for the imported network")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
