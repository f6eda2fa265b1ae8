"""Exact Bayesian-network marginals of float32 networks: probability space against log space.

Float32 networks (what a network with neural CPDs is by default) are contracted in probability space, one
batched matmul per step, like float64 ones, their row-carrying factors scaled row by row
(:func:`hybridpgm.infer.bn_contract.row_scaled`); a row whose evidence probability still falls below
:data:`hybridpgm.infer.bn_contract.PROBABILITY_FLOOR` (1e-15 in float32) is answered again in log space.
The reference is the same query in log space throughout (float32 taken out of the floor table), a
max-shifted log-sum-exp per step: what every float32 query ran before.  Both, and the float64 network's
probability-space query for scale, run in one process in interleaved rounds (the order reversed every
other round; each timing the mean of as many calls as fill ``--min-timing-s``; medians over ``--rounds``)
on the mixed and single-pattern batches of :mod:`bn_inference` (the same evidence), and a training step
(``train``: the mean :math:`-\\log p(e_n)` of the mixed batch and its gradient in every table, as learning
a network from incomplete data takes); both float32 answers (and losses and gradients) are compared with
float64's.

    python benchmarks/bn_float32.py       # -> results/bn_float32.json
    python benchmarks/bn_float32.py --networks water --device cuda --out /tmp/water32.json
"""

from __future__ import annotations

import argparse
import statistics

import torch

from bn_inference import NETWORKS, add_batch_arguments, evidence_batches
from common import interleaved_ways, prepare_torch, write_interleaved

from hybridpgm.graphs import load_network
from hybridpgm.infer import bn_contract


#: way -> (network dtype, space): float32 in probability space (the library's), float32 in log space (the
#: reference), and the float64 network, for scale
WAYS = {"probability": (torch.float32, "probability"), "log_space": (torch.float32, "log"),
        "float64": (torch.float64, "probability")}


def _learnable(bn):
    """``bn`` with every CPD's logits a parameter, as a network being trained has them."""
    for cpd in bn.cpds.values():
        cpd.logits = torch.nn.Parameter(cpd.logits.detach().clone())
    return bn


def _train_step(bn, evidence) -> dict:
    """One training step's work: :math:`-\\overline{\\log p(e_n)}` over the rows and its gradient in every
    table; the loss and the gradients, by name, to compare."""
    params = dict(bn.named_parameters())
    with torch.enable_grad():
        loss = -bn.log_evidence(evidence).mean()
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return {"loss": loss.detach().reshape(1), **{k: g for k, g in zip(params, grads) if g is not None}}


def bench_network(name: str, args, found: dict) -> dict:
    dtypes = (torch.float32, torch.float64)
    nets = {dt: load_network(name, dtype=dt).to(args.device) for dt in dtypes}
    learn = {dt: _learnable(load_network(name, dtype=dt).to(args.device)) for dt in dtypes}
    _, _, _, single, mixed = evidence_batches(nets[torch.float64], args)
    query = [v for v in nets[torch.float64].nodes if v not in single]
    current = {}
    calls = {"mixed": lambda: current["bn"].posterior(None, mixed),
             "single": lambda: current["bn"].posterior(query, single),
             "train": lambda: _train_step(current["learn"], mixed)}

    def use(way):
        dtype, space = way
        current["bn"], current["learn"] = nets[dtype], learn[dtype]
        bn_contract.PROBABILITY_FLOOR.clear()
        bn_contract.PROBABILITY_FLOOR.update(found if space == "probability" else
                                             {k: v for k, v in found.items() if k != torch.float32})

    with torch.no_grad():
        answers, times, _, per_call = interleaved_ways(calls, WAYS, use, args, args.rows, args.device)
    res = {"network": name, "nodes": len(nets[torch.float64].nodes), "rows": args.rows, "calls_per_timing": per_call}
    for kind in calls:
        prob, log, f64 = (statistics.median(times[kind, w]) for w in WAYS)
        ref = answers[kind, "float64"]
        diff = {w: max((answers[kind, w][v].double() - ref[v]).abs().max().item() for v in ref)
                for w in ("probability", "log_space")}
        res[kind] = {"float32_probability_s_per_row": prob, "float32_log_space_s_per_row": log,
                     "float64_probability_s_per_row": f64,
                     "speedup_probability_over_log_space": log / prob,
                     "ratio_float32_probability_over_float64": prob / f64,
                     "max_abs_diff_vs_float64": diff}
    return res


def main(args) -> dict:
    prepare_torch(args)
    found = dict(bn_contract.PROBABILITY_FLOOR)
    try:
        results = [bench_network(name, args, found) for name in args.networks.split(",")]
    finally:
        bn_contract.PROBABILITY_FLOOR.clear()
        bn_contract.PROBABILITY_FLOOR.update(found)
    reference = ("the same float32 queries contracted in log space throughout (float32 removed from "
                 "hybridpgm.infer.bn_contract.PROBABILITY_FLOOR): max-shifted log-sum-exp per step")
    return write_interleaved("bn_float32", args, reference, "float32 in probability space, in log space, and the "
                             "float64 network, the order reversed every other round", results)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_batch_arguments(p, NETWORKS, rounds=7)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, or auto")
    p.add_argument("--out", default=None, help="JSON path (default results/bn_float32.json)")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
