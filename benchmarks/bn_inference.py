"""Exact Bayesian-network inference: hybridpgm's batched contraction against pgmpy's VariableElimination.

For each network (bundled with pgmpy, read by :func:`hybridpgm.graphs.load_network`),
``--evidence-frac`` of the nodes get evidence sampled from the network itself
(so every row has positive probability), and the posterior marginals of all
other nodes are computed

* by hybridpgm for ``--rows`` evidence rows in one call (batched),
* by hybridpgm one row per call (``--single-rows`` calls),
* by pgmpy's ``VariableElimination``, one ``query([v], evidence)`` per
  non-evidence node, for ``--pgmpy-rows`` rows (its per-row time does not
  depend on the batch).

Reported per evidence row (all of its marginals): the times, the ratios
pgmpy / hybridpgm, and the largest absolute difference between the two answers
on the rows pgmpy computed.  The contraction plan is searched on the first call
of each evidence pattern (timed separately as ``plan_s``) and reused.

    python benchmarks/bn_inference.py --networks asia,alarm,child --rows 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings

import torch

from hybridpgm.graphs import load_network

NETWORKS = "asia,alarm,child,insurance,hepar2,win95pts"


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _timeit(fn, repeats, device):
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return min(times), out


def bench_network(name: str, args) -> dict:
    from pgmpy.inference import VariableElimination
    from pgmpy.utils import get_example_model

    device = args.device
    bn = load_network(name).to(device)
    g = torch.Generator().manual_seed(args.seed)
    k = max(1, round(args.evidence_frac * len(bn.nodes)))
    ev_nodes = [bn.nodes[i] for i in torch.randperm(len(bn.nodes), generator=g)[:k].tolist()]
    torch.manual_seed(args.seed)
    sample = bn.sample(args.rows)
    evidence = {v: sample[v] for v in ev_nodes}
    query = [v for v in bn.nodes if v not in ev_nodes]
    with torch.no_grad():
        t0 = time.perf_counter()
        bn.posterior(None, evidence)  # plan search for the batched pattern
        plan_s = time.perf_counter() - t0
        batched_s, post = _timeit(lambda: bn.posterior(None, evidence), args.repeats, device)
        one = lambda i: bn.posterior(None, {v: evidence[v][i:i + 1] for v in ev_nodes})  # noqa: E731
        one(0)  # plan search for the one-row pattern
        single = []
        for i in range(args.single_rows):
            _sync(device)
            t = time.perf_counter()
            one(i)
            _sync(device)
            single.append(time.perf_counter() - t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_example_model(name)  # pgmpy's own parse of the same file
    ve = VariableElimination(model)
    max_diff = 0.0
    t = time.perf_counter()
    for i in range(args.pgmpy_rows):
        row = {v: bn.state_names[v][int(evidence[v][i])] for v in ev_nodes}
        for v in query:
            f = ve.query([v], evidence=row, show_progress=False)
            ref = torch.tensor([float(f.values[f.state_names[v].index(s)]) for s in bn.state_names[v]],
                               dtype=torch.float64)
            max_diff = max(max_diff, (post[v][i].double().cpu() - ref).abs().max().item())
    pgmpy_row = (time.perf_counter() - t) / args.pgmpy_rows
    ours_batched_row = batched_s / args.rows
    ours_single_row = statistics.median(single)
    return {
        "network": name,
        "nodes": len(bn.nodes),
        "evidence_nodes": len(ev_nodes),
        "query_nodes": len(query),
        "rows_batched": args.rows,
        "plan_s": plan_s,
        "hybridpgm_batched_s_per_row": ours_batched_row,
        "hybridpgm_single_s_per_row": ours_single_row,
        "pgmpy_s_per_row": pgmpy_row,
        "pgmpy_s_per_marginal": pgmpy_row / len(query),
        "speedup_batched": pgmpy_row / ours_batched_row,
        "speedup_single": pgmpy_row / ours_single_row,
        "max_abs_diff": max_diff,
    }


def machine() -> dict:
    import pgmpy

    return {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "pgmpy": pgmpy.__version__,
            "python": platform.python_version(),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}


def main(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    results = []
    print(f"{'network':>10} {'nodes':>5} {'plan s':>7} {'batched/row':>12} {'1-row':>10} {'pgmpy/row':>10} "
          f"{'x batched':>10} {'x 1-row':>8} {'max diff':>9}")
    for name in args.networks.split(","):
        r = bench_network(name, args)
        results.append(r)
        print(f"{name:>10} {r['nodes']:>5} {r['plan_s']:7.2f} {1e6 * r['hybridpgm_batched_s_per_row']:10.1f}us "
              f"{1e3 * r['hybridpgm_single_s_per_row']:8.2f}ms {1e3 * r['pgmpy_s_per_row']:8.1f}ms "
              f"{r['speedup_batched']:10.0f} {r['speedup_single']:8.1f} {r['max_abs_diff']:9.1e}", flush=True)
    out = {"benchmark": "bn_inference", "reference": "pgmpy VariableElimination (one query per marginal)",
           "machine": machine(), "device": args.device, "args": vars(args), "results": results}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {args.out}")
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--networks", default=NETWORKS)
    p.add_argument("--rows", type=int, default=1000, help="evidence rows answered in one batched call")
    p.add_argument("--single-rows", type=int, default=20, help="one-row calls timed")
    p.add_argument("--pgmpy-rows", type=int, default=5, help="rows answered (and timed) with pgmpy")
    p.add_argument("--evidence-frac", type=float, default=0.2)
    p.add_argument("--repeats", type=int, default=3, help="batched timing: best of this many")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "bn_inference.json"))
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
