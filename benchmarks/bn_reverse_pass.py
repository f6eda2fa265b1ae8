"""Exact Bayesian-network marginals: the hand-written reverse pass in a reused workspace against autograd.

Marginals are the gradient of the contraction (:mod:`hybridpgm.infer.bn_contract`).
On CPU, a probability-space contraction with an intermediate of at least
:data:`hybridpgm.graphs.reverse_pass.LARGE` elements runs its reverse pass by
hand and keeps its large intermediates in one buffer between queries
(:mod:`hybridpgm.graphs.reverse_pass`), in row chunks of up to
:data:`hybridpgm.infer.bn_contract.ROW_CHUNK_BYTES`; the reference is the same
query with that threshold out of reach, so that ``torch.autograd.grad``
differentiates the same cached plan and every tensor is allocated afresh, in
the chunks autograd runs fastest in (``--autograd-chunk-mib``, 64 MiB: the
library's budget before the workspace; larger chunks are slower there).  Both run in one
process, in interleaved rounds (the order alternating; each timing the mean of
as many calls as fill ``--min-timing-s``; medians over ``--rounds``), on the
mixed and single-pattern batches of :mod:`bn_inference` (the same evidence),
with the answers compared.  Also recorded: the minor page faults per call
(``getrusage``: pages the kernel mapped and zeroed) and the workspace's size.

    python benchmarks/bn_reverse_pass.py       # -> results/bn_reverse_pass.json
    python benchmarks/bn_reverse_pass.py --networks water --rounds 15 --out /tmp/water.json
"""

from __future__ import annotations

import argparse
import statistics

import torch

from bn_inference import NETWORKS, add_batch_arguments, evidence_batches
from common import interleaved_ways, prepare_torch, write_interleaved

from hybridpgm.graphs import load_network, reverse_pass
from hybridpgm.infer import bn_contract

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None

_AUTOGRAD = 2**62  # a threshold no contraction reaches: autograd for every query


def _use(way) -> None:
    reverse_pass.LARGE, bn_contract.ROW_CHUNK_BYTES = way


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource else 0


def bench_network(name: str, args, hand_written: tuple) -> dict:
    """Both ways on one network; ``hand_written`` is the library's ``(LARGE, ROW_CHUNK_BYTES)``."""
    bn = load_network(name)
    _, _, _, single, mixed = evidence_batches(bn, args)
    query = [v for v in bn.nodes if v not in single]
    kinds = {"mixed": lambda: bn.posterior(None, mixed), "single": lambda: bn.posterior(query, single)}
    ways = {"hand_written": hand_written,
            "autograd": (_AUTOGRAD, {**hand_written[1], "cpu": int(args.autograd_chunk_mib * 2**20)})}
    with torch.no_grad():
        answers, times, faults, calls = interleaved_ways(kinds, ways, _use, args, args.rows, count=_faults)
    res = {"network": name, "nodes": len(bn.nodes), "rows": args.rows, "calls_per_timing": calls,
           "workspace_mib": bn.plan_cache.workspace.nbytes / 2**20}
    for kind in kinds:
        hand, auto = (statistics.median(times[kind, w]) for w in ways)
        diff = max((answers[kind, "hand_written"][v] - answers[kind, "autograd"][v]).abs().max().item()
                   for v in answers[kind, "autograd"])
        res[kind] = {"hand_written_s_per_row": hand, "autograd_s_per_row": auto,
                     "speedup_hand_written_over_autograd": auto / hand,
                     "minor_faults_per_call": {w: statistics.median(faults[kind, w]) for w in ways},
                     "max_abs_diff": diff}
    return res


def main(args) -> dict:
    prepare_torch(args)
    found = (reverse_pass.LARGE, bn_contract.ROW_CHUNK_BYTES)
    try:
        results = [bench_network(name, args, found) for name in args.networks.split(",")]
    finally:
        _use(found)
    reference = ("the same queries differentiated by torch.autograd.grad through the same cached plan "
                 "(hybridpgm.graphs.reverse_pass.LARGE out of reach), in row chunks of --autograd-chunk-mib")
    return write_interleaved("bn_reverse_pass", args, reference, "hand-written pass and autograd alternating first",
                             results)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_batch_arguments(p, NETWORKS + ",barley", rounds=9)
    p.add_argument("--autograd-chunk-mib", type=float, default=64.0,
                   help="the reference's row-chunk budget (MiB): autograd allocates afresh, "
                        "and is slower in larger chunks")
    p.add_argument("--device", default="cpu", choices=["cpu"],
                   help="CPU only: on CUDA, whose caching allocator reuses memory, queries always use autograd")
    p.add_argument("--out", default=None, help="JSON path (default results/bn_reverse_pass.json)")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
