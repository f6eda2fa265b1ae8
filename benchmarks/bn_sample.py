"""Exact posterior samples of a Bayesian network given evidence, against plain Pyro's ``infer_discrete``.

``BayesNet.sample(S, evidence=...)`` (:func:`hybridpgm.infer.exact.posterior_sample`: one contraction of the
evidence rows over the nodes they touch and those nodes' ancestors on a cached plan, backward sampling along its
steps, then the barren nodes drawn forward from their CPDs) against **plain Pyro**:
``pyro.infer.infer_discrete(bn.model, first_available_dim=-2, temperature=1)`` on the data the samples are for
(each evidence row repeated once per sample; missing entries ``-1``, which ``bn.model`` enumerates), what a
Pyro user writes for posterior samples (imputations) of an enumerated model.  Two kinds per network
(evidence from ``bn_inference.evidence_batches``: ``--evidence-frac`` of the nodes, values sampled from the
network):

* **one row**: ``--samples`` samples given one row that observes every evidence node;
* **imputation**: ``--row-samples`` samples for each of ``--rows`` rows that observe each evidence node with
  probability ``--observe-prob`` (mixed patterns).

Interleaved rounds in one process (``common.interleaved_ways``: the order reversed every other round, each
timing the mean of as many calls as fill ``--min-timing-s``, medians over ``--rounds``), one torch thread,
float64 networks; times per sample.  Each way's samples are checked against ``bn.posterior``: the largest
``|sum of (one-hot - p)| / sqrt(sum of p (1 - p))`` over every unobserved node and state, summed over rows and
samples, is written as ``max_z``, and the script raises (``common.check_agreement``) when any such count strays
beyond its Bernstein bound (:func:`count_bounds`, written as ``max_error_over_bound``, at most 1): a way that does
not sample the posterior would make the speed-up compare different work.

    python benchmarks/bn_sample.py            # -> results/bn_sample.json
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch
from pyro.infer import infer_discrete

from bn_inference import add_batch_arguments, evidence_batches
from common import check_agreement, interleaved_ways, prepare_torch, write_interleaved

from hybridpgm.graphs import load_network

WAYS = ("hybridpgm", "plain_pyro")


def plain_pyro_sample(bn, evidence: dict, samples: int) -> dict:
    """node -> ``[samples * N]`` (sample-major): ``infer_discrete`` on ``bn.model`` with each of the ``N``
    evidence rows repeated ``samples`` times (``-1`` for a missing entry)."""
    data = {v: x.reshape(-1).repeat(samples) for v, x in evidence.items()}
    return infer_discrete(bn.model, first_available_dim=-2, temperature=1)(data)


#: the probability that exact samples fail :func:`check_samples` (all the states of a network together)
FALSE_ALARM = 1e-6


def count_errors(bn, samples: dict, evidence: dict, rows: int, per_row: int) -> dict:
    """node -> ``(error, variance)``, each ``[card]``: per state of every node of ``bn.posterior``, the sampled
    count minus its expectation and the count's variance (counts summed over rows and samples; samples laid out
    ``[per_row, rows]``)."""
    post = bn.posterior(None, {v: x.reshape(rows) for v, x in evidence.items()})
    out = {}
    for v, p in post.items():
        p = p.reshape(rows, -1).detach().double()
        x = samples[v].reshape(per_row, rows)
        hit = torch.nn.functional.one_hot(x, p.shape[-1]).double().sum(0)  # [rows, card]
        out[v] = (hit - per_row * p).sum(0), (per_row * p * (1 - p)).sum(0)
    return out


def max_z(bn, samples: dict, evidence: dict, rows: int, per_row: int) -> float:
    """The largest standardised error of the sampled state counts against the posterior marginals, per unobserved
    node and state (counts summed over rows and samples; samples laid out ``[per_row, rows]``)."""
    worst = 0.0
    for error, var in count_errors(bn, samples, evidence, rows, per_row).values():
        ok = var > 0
        if ok.any():
            worst = max(worst, float((error[ok].abs() / var[ok].sqrt()).max()))
    return worst


def count_bounds(var: torch.Tensor, tests: int) -> torch.Tensor:
    """Bounds on ``|count - E count|`` of states whose counts have variances ``var``, crossed by any of ``tests``
    states together with probability below :data:`FALSE_ALARM`.

    A count is a sum of independent indicators (exact samples, independent rows), each within 1 of its mean; by
    Bernstein's inequality it strays by ``t`` with probability at most ``2 exp(-t^2 / (2 (var + t / 3)))``, at
    every sample size (a fixed ``max_z`` bound rests on the normal approximation, which fails for the few samples
    of a tiny run and for rare states).  With that set to ``FALSE_ALARM / tests`` (a union bound),
    ``t = L / 3 + sqrt(L^2 / 9 + 2 L var)``, ``L = log(2 tests / FALSE_ALARM)`` (as ``mrf_sample`` bounds its
    frequencies).
    """
    L = math.log(2 * tests / FALSE_ALARM)
    return L / 3 + (L * L / 9 + 2 * L * var.clamp(min=0)).sqrt()


def check_samples(label: str, bn, answers: dict, evidence: dict, rows: int, per_row: int) -> dict:
    """``way -> max |count - E count| / bound`` (:func:`count_bounds`) over the nodes and states of
    ``bn.posterior``, each at most 1 (``common.check_agreement`` raises ``RuntimeError`` naming ``label`` and the
    way otherwise)."""
    errors = {w: count_errors(bn, samples, evidence, rows, per_row) for w, samples in answers.items()}
    tests = sum(error.numel() for way in errors.values() for error, _ in way.values())
    out = {}
    for way, per_node in errors.items():
        worst = max(float((error.abs() / count_bounds(var, tests)).max()) for error, var in per_node.values())
        out[way] = check_agreement(f"{label}: {way}'s samples against bn.posterior, max |count - expected| / "
                                   f"Bernstein bound", worst, 1.0)
    return out


def bench_network(name: str, args) -> dict:
    bn = load_network(name).to(device=args.device, dtype=torch.float64)
    ev_nodes, _, _, single, mixed = evidence_batches(bn, args)
    one = {v: x[:1] for v, x in single.items()}
    kinds = {"one_row": (one, 1, args.samples), "imputation": (mixed, args.rows, args.row_samples)}
    res = {"network": name, "nodes": len(bn.nodes), "evidence_nodes": len(ev_nodes)}
    for kind, (evidence, rows, per_row) in kinds.items():
        current = {}

        def run(evidence=evidence, per_row=per_row):
            if current["way"] == "plain_pyro":
                return plain_pyro_sample(bn, evidence, per_row)
            return bn.sample(per_row, evidence=evidence)

        with torch.no_grad():
            answers, times, _, per_call = interleaved_ways({kind: run}, {w: w for w in WAYS},
                                                           lambda w: current.update(way=w), args, rows * per_row,
                                                           args.device)
        med = {w: statistics.median(times[kind, w]) for w in WAYS}
        res[kind] = {"rows": rows, "samples_per_row": per_row, "calls_per_timing": per_call[kind],
                     **{f"{w}_s_per_sample": med[w] for w in WAYS},
                     "speedup_vs_plain_pyro": med["plain_pyro"] / med["hybridpgm"],
                     "max_z": {w: max_z(bn, answers[kind, w], evidence, rows, per_row) for w in WAYS},
                     "max_error_over_bound": check_samples(f"{name} {kind}", bn, {w: answers[kind, w] for w in WAYS},
                                                           evidence, rows, per_row)}
    print(name, {k: round(res[k]["speedup_vs_plain_pyro"], 2) for k in kinds},
          {k: res[k]["max_z"] for k in kinds})
    return res


def main(args) -> dict:
    prepare_torch(args)
    results = [bench_network(name, args) for name in args.networks.split(",")]
    reference = {"plain_pyro": "pyro.infer.infer_discrete(bn.model, first_available_dim=-2, temperature=1) on "
                               "each evidence row repeated once per sample (missing entries enumerated)"}
    return write_interleaved("bn_sample", args, reference, "hybridpgm and plain Pyro, the order reversed every "
                             "other round; seconds per sample", results)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_batch_arguments(p, "asia,child,insurance,alarm", 5)
    p.add_argument("--samples", type=int, default=1000, help="samples given the one-row evidence")
    p.add_argument("--row-samples", type=int, default=10, help="samples per row of the imputation batch")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, or auto")
    p.add_argument("--out", default=None, help="JSON path (default results/bn_sample.json)")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
