"""Exact Bayesian-network inference: hybridpgm's batched contraction against pgmpy's VariableElimination.

For each network (bundled with pgmpy, read by :func:`hybridpgm.graphs.load_network`),
``--evidence-frac`` of the nodes are evidence nodes with values sampled from
the network itself (so every row has positive probability).  Timed, in
interleaved rounds (one of each per round, the hybridpgm kinds in an order
that rotates from round to round so that none always runs right after
pgmpy's row; each timing the mean of as many calls as fill
``--min-timing-s``, at most ``--max-calls``; medians over ``--rounds``):

* **mixed**: ``--rows`` rows in one call where each row observes each evidence
  node with probability ``--observe-prob`` (many evidence patterns in one
  batch: evidence enters as per-row indicator vectors), all marginals;
* **single pattern**: the same rows with every evidence node observed, the
  marginals of the other nodes, in one call;
* **same patterns** (``--same-pattern-rows R``): the mixed batch's first ``R``
  rows' evidence patterns, each as a batch of ``--rows`` rows that all
  observe just that pattern (the same sampled values), all marginals; their
  mean per-row time estimates what the mixed rows would cost if every row's
  pattern had a batch of its own (a mixed row observes fewer nodes than a
  single-pattern row, so it is the like-for-like reference for the cost of
  mixing; the rows are a random sample of the batch's rows, so the mean is
  unbiased for the row-weighted cost);
* **one row**: exactly the mixed rows pgmpy answers (the first ``min(--pgmpy-rows, --rounds, --rows)``; with
  ``--pgmpy-rows 0`` the first ``min(--rounds, --rows)``), each as a one-row query with that row's observed
  evidence nodes and every other node as query (plan cached per query shape), one call answering each row once;
* **compiled**: the mixed batch answered by an evidence table over the evidence nodes
  (:meth:`hybridpgm.graphs.BayesNet.compile_evidence`: a gather per row, in the subsets layout where it fits
  ``--table-max-mib``, else the compact one; ``layout`` in the JSON), built once before the rounds
  (``compile_s``), and skipped where neither fits;
* **pgmpy**: ``VariableElimination``, one ``query([v], evidence)`` per
  unobserved node, for one mixed row per round (``--pgmpy-rows`` rounds), on pgmpy's own parse of the file with
  its CPD rows renormalised as hybridpgm's reader renormalises them (the files' rows sum to 1 within 1e-7; the
  elimination's work is unchanged), so both sides answer for the same distribution.

Reported: per-row times, ``mixed / single-pattern`` per row, pgmpy / hybridpgm
speed-ups, the first-call (plan search) times, and the largest difference
between the two answers on the rows pgmpy computed.  ``speedup_one_row_vs_pgmpy`` is pgmpy's total time on its
rows over hybridpgm's one-row time on the same rows (each pgmpy row is timed once; hybridpgm's time per row is the
median over the rounds of the mean over those rows).  Every answer is checked, and the script raises where
one disagrees beyond float64's tolerance (1e-9): the mixed batch, the evidence table and the one-row queries
against pgmpy, the evidence table against the mixed batch; and where a one-row query and pgmpy's row differ
in evidence or in the marginals answered.  Next to ``mixed /
single-pattern``, ``junction_tree_entries`` gives the same ratio for the
junction-tree size of each row's own pattern (:mod:`elimination_cost`, over
the first ``--junction-tree-rows`` mixed rows): what any exact algorithm
whose work follows the elimination cost faces, whatever its implementation.

The mixed batch records which evidence nodes the rows were split on
(:func:`hybridpgm.infer.row_groups.choose_split`; empty: one shared contraction with per-row indicators).

    python benchmarks/bn_inference.py                    # the eight networks -> results/bn_inference.json
    python benchmarks/bn_inference.py --networks barley --rows 20 --pgmpy-rows 1 \
        --out benchmarks/results/bn_inference_barley.json
    python benchmarks/bn_inference.py --device cuda --rows 100000 --pgmpy-rows 0
    python benchmarks/bn_inference.py --networks water --rows 1000 --same-pattern-rows 0 --pgmpy-rows 2 \
        --row-chunk-mib 0 --out /tmp/unchunked.json      # one contraction for all rows (peak_rss_mib)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import warnings

try:
    import resource
except ImportError:  # Windows
    resource = None

import torch

from common import add_interleaved_arguments, check_agreement, prepare_torch, timed, tolerance
from elimination_cost import mixed_over_single

from hybridpgm.errors import ConfigError
from hybridpgm.graphs import load_network

NETWORKS = "asia,alarm,child,insurance,hepar2,win95pts,water,hailfinder"


def _row_evidence(evidence, ev_nodes, i) -> dict:
    """The observed evidence of mixed row ``i`` (``-1``: not observed) as ``{node: state index}``."""
    return {v: int(evidence[v][i]) for v in ev_nodes if int(evidence[v][i]) >= 0}


def _pgmpy_row(ve, bn, evidence, ev_nodes, i, query):
    """pgmpy's marginals of ``query`` for evidence row ``i`` (``-1``: not observed); returns ``({v: tensor},
    the evidence given to pgmpy as {node: state index})``."""
    row = {v: bn.state_names[v][k] for v, k in _row_evidence(evidence, ev_nodes, i).items()}
    out = {}
    for v in query:
        if v in row:
            continue
        f = ve.query([v], evidence=row, show_progress=False)
        out[v] = torch.tensor([float(f.values[f.state_names[v].index(s)]) for s in bn.state_names[v]],
                              dtype=torch.float64)
    return out, {v: bn.state_names[v].index(s) for v, s in row.items()}


def _one_row_queries(bn, mixed, ev_nodes, n: int) -> list:
    """``(query nodes, evidence)`` of the first ``n`` mixed rows as one-row queries: the row's observed
    evidence nodes (one-row tensors) and every other node as query, what :func:`_pgmpy_row` answers."""
    out = []
    for i in range(n):
        observed = _row_evidence(mixed, ev_nodes, i)
        evidence = {v: mixed[v][i:i + 1] for v in observed}
        out.append(([v for v in bn.nodes if v not in observed], evidence))
    return out


def _one_row_answer(post: dict, v) -> torch.Tensor:
    """A one-row query's marginal of ``v`` as ``[states]`` (the row dim, present with evidence, dropped)."""
    return post[v].reshape(-1, post[v].shape[-1])[0].double().cpu()


def _split_on(bn, evidence) -> list:
    """The evidence nodes the mixed batch's rows are split on (empty: one contraction for all rows)."""
    from hybridpgm.infer.exact import _targets, parse_evidence
    from hybridpgm.infer.bn_evidence import network_facts
    from hybridpgm.infer.row_groups import choose_split

    ev = parse_evidence(bn, evidence)
    facts = network_facts(bn)
    names = [v for v in bn.nodes if v not in ev.observed]
    return choose_split(bn, ev, _targets(facts, ev, names), names)


def evidence_batches(bn, args) -> tuple:
    """The benchmark's evidence: ``(evidence nodes, sampled rows, [rows, nodes] observed mask, the
    single-pattern batch, the mixed batch)`` for ``--evidence-frac``, ``--rows``, ``--observe-prob``, ``--seed``."""
    g = torch.Generator().manual_seed(args.seed)
    k = max(1, round(args.evidence_frac * len(bn.nodes)))
    ev_nodes = [bn.nodes[i] for i in torch.randperm(len(bn.nodes), generator=g)[:k].tolist()]
    torch.manual_seed(args.seed)
    sample = bn.sample(args.rows)
    single = {v: sample[v] for v in ev_nodes}
    seen = torch.rand(args.rows, k, generator=g) < args.observe_prob
    mixed = {v: torch.where(seen[:, j].to(sample[v].device), sample[v], torch.full_like(sample[v], -1))
             for j, v in enumerate(ev_nodes)}
    return ev_nodes, sample, seen, single, mixed


def bench_network(name: str, args) -> dict:
    """Interleaved rounds of: mixed-pattern batch, single-pattern batch, one-row query, pgmpy rows."""
    device = args.device
    bn = load_network(name).to(device)
    ev_nodes, sample, seen, single, mixed = evidence_batches(bn, args)
    patterns = len({tuple(r) for r in seen.tolist()})
    elimination = None
    if args.junction_tree_rows > 0:
        elimination = mixed_over_single({v: bn.parents(v) for v in bn.nodes},
                                        {v: bn.cardinality(v) for v in bn.nodes}, ev_nodes,
                                        seen[:args.junction_tree_rows].tolist())
    query = [v for v in bn.nodes if v not in ev_nodes]
    same = [{v: sample[v] for j, v in enumerate(ev_nodes) if seen[i, j]}
            for i in range(min(args.same_pattern_rows, args.rows))]
    # the rows pgmpy answers, one per round; the one-row kind times hybridpgm on exactly these rows
    n_pgmpy = max(0, min(args.pgmpy_rows, args.rounds, args.rows))
    one_rows = _one_row_queries(bn, mixed, ev_nodes, n_pgmpy or min(args.rounds, args.rows))
    ve = None
    if n_pgmpy > 0:
        from pgmpy.inference import VariableElimination
        from pgmpy.utils import get_example_model

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = get_example_model(name)  # pgmpy's own parse of the same file
        for cpd in model.get_cpds():  # rows renormalised, as read_bif does: the same distribution on both sides
            cpd.normalize(inplace=True)
        ve = VariableElimination(model)

    kinds = {"mixed": lambda: bn.posterior(None, mixed), "single": lambda: bn.posterior(query, single),
             "one_row": lambda: [bn.posterior(q, e) for q, e in one_rows]}
    per_call = {"mixed": args.rows, "single": args.rows, "one_row": len(one_rows)}
    table, compiled = None, {}
    try:
        compile_s, table = timed(lambda: bn.compile_evidence(ev_nodes, max_bytes=int(args.table_max_mib * 2**20)),
                                 device)
        compiled = {"compile_s": compile_s, "table_mib": table.nbytes / 2**20, "layout": table.layout,
                    "evidence_configurations": table.configurations}
        kinds["compiled"] = lambda: table.posterior(None, mixed)
        per_call["compiled"] = args.rows
    except ConfigError as error:  # the table would not fit: recorded, not timed
        compiled = {"skipped": str(error)}
    if same:
        kinds["same_patterns"] = lambda: [bn.posterior(None, e) for e in same]
        per_call["same_patterns"] = args.rows * len(same)
    first, calls = {}, {}
    with torch.no_grad():  # first calls: plan search per query shape, kept in the JSON
        for kind, fn in kinds.items():
            first[f"{kind}_s"], out = timed(fn, device)
            if kind == "mixed":
                post_mixed = out
            if kind == "compiled":
                post_compiled = out
            if kind == "one_row":
                post_one = out
        for kind, fn in kinds.items():  # a second, warm call sets how many calls fill one timing
            calls[kind] = max(1, min(args.max_calls, math.ceil(args.min_timing_s / timed(fn, device)[0])))
    times = {kind: [] for kind in kinds}
    t_pgmpy, max_diff, max_diff_compiled, max_diff_one = [], 0.0, 0.0, 0.0
    tol = tolerance(next(iter(post_mixed.values())).dtype)  # float64 tables: 1e-9 (absolute: marginals are at most 1)
    names = list(kinds)
    for r in range(args.rounds):  # interleaved, the order rotating so no kind always follows pgmpy
        with torch.no_grad():
            for kind in names[r % len(names):] + names[:r % len(names)]:
                fn, n_calls = kinds[kind], calls[kind]
                dt = timed(lambda: [fn() for _ in range(n_calls)], device)[0]
                times[kind].append(dt / n_calls / per_call[kind])
        if r < n_pgmpy:
            dt, (ref, pgmpy_evidence) = timed(lambda: _pgmpy_row(ve, bn, mixed, ev_nodes, r, bn.nodes), device)
            t_pgmpy.append(dt)
            ours_evidence = {v: int(t[0]) for v, t in one_rows[r][1].items()}
            if pgmpy_evidence != ours_evidence or sorted(ref) != sorted(post_one[r]):
                raise RuntimeError(f"{name} row {r}: the one-row query and pgmpy answer different queries: "
                                   f"{len(post_one[r])} marginals given {ours_evidence} against pgmpy's "
                                   f"{len(ref)} given {pgmpy_evidence}")
            for v, p in ref.items():
                max_diff = max(max_diff, (post_mixed[v][r].double().cpu() - p).abs().max().item())
                max_diff_one = max(max_diff_one, (_one_row_answer(post_one[r], v) - p).abs().max().item())
                if table is not None:
                    diff = (post_compiled[v][r].double().cpu() - p).abs().max().item()
                    max_diff_compiled = max(max_diff_compiled, diff)
            check_agreement(f"{name}: max |mixed batch - pgmpy| marginal (rows 0-{r})", max_diff, tol)
            check_agreement(f"{name}: max |one-row query - pgmpy| marginal (rows 0-{r})", max_diff_one, tol)
            if table is not None:
                check_agreement(f"{name}: max |evidence table - pgmpy| marginal (rows 0-{r})", max_diff_compiled,
                                tol)
    t_mixed, t_single, t_one, t_same = (times.get(k, []) for k in ("mixed", "single", "one_row", "same_patterns"))
    med = statistics.median
    res = {
        "network": name, "nodes": len(bn.nodes), "evidence_nodes": len(ev_nodes),
        "rows_batched": args.rows, "distinct_evidence_patterns": patterns, "rounds": args.rounds,
        "mixed_split_on": _split_on(bn, mixed),
        "first_call_s": first, "calls_per_timing": calls,
        "hybridpgm_mixed_s_per_row": med(t_mixed),
        "hybridpgm_single_pattern_s_per_row": med(t_single),
        "one_row_rows": len(one_rows),
        "one_row_marginals": [len(q) for q, _ in one_rows],
        "hybridpgm_one_row_s": med(t_one),
        "ratio_mixed_over_single_per_row": med(t_mixed) / med(t_single),
    }
    if elimination is not None:
        res["junction_tree_entries"] = {"rows": min(args.rows, args.junction_tree_rows), **elimination}
    if t_same:
        res.update({"same_pattern_rows_sampled": len(same),
                    "hybridpgm_same_patterns_s_per_row": med(t_same),
                    "ratio_mixed_over_same_patterns_per_row": med(t_mixed) / med(t_same)})
    t_compiled = times.get("compiled", [])
    res["compiled"] = compiled
    if t_compiled:
        res.update({"hybridpgm_compiled_s_per_row": med(t_compiled),
                    "ratio_compiled_over_single_per_row": med(t_compiled) / med(t_single),
                    "max_abs_diff_compiled_vs_mixed": check_agreement(
                        f"{name}: max |evidence table - mixed batch| marginal",
                        max((post_compiled[v] - post_mixed[v]).abs().max().item() for v in post_mixed), tol)})
    if t_pgmpy and len(t_pgmpy) != len(one_rows):
        raise RuntimeError(f"{name}: pgmpy answered {len(t_pgmpy)} rows, the one-row kind {len(one_rows)}")
    if t_pgmpy:
        # the one-row kind answers exactly pgmpy's rows once each per call, so its time per row is the mean
        # over those rows: the same work as pgmpy's mean over them (each pgmpy row is timed once)
        res.update({"pgmpy_rows_timed": len(t_pgmpy), "pgmpy_s_per_row": med(t_pgmpy),
                    "pgmpy_mean_s_per_row": statistics.fmean(t_pgmpy),
                    "speedup_mixed_vs_pgmpy": med(t_pgmpy) / med(t_mixed),
                    "speedup_one_row_vs_pgmpy": statistics.fmean(t_pgmpy) / med(t_one),
                    "max_abs_diff_vs_pgmpy": max_diff, "max_abs_diff_one_row_vs_pgmpy": max_diff_one,
                    "tolerance_abs": tol})
        if t_compiled:
            res.update({"speedup_compiled_vs_pgmpy": med(t_pgmpy) / med(t_compiled),
                        "max_abs_diff_compiled_vs_pgmpy": max_diff_compiled})
    return res


def machine() -> dict:
    try:
        import pgmpy
        pgmpy_version = pgmpy.__version__
    except ImportError:
        pgmpy_version = None
    from hybridpgm.recipes.common import machine_description

    described = machine_description()  # once: it reads /proc/cpuinfo
    cpu = {k: described[k] for k in ("cpu_model", "cpu_capability")}
    return {"platform": platform.platform(), "processor": platform.processor(), **cpu, "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "pgmpy": pgmpy_version,
            "python": platform.python_version(),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if resource else None,
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def main(args) -> dict:
    prepare_torch(args)
    if args.row_chunk_mib is not None:
        from hybridpgm.infer import bn_contract

        budget = int(args.row_chunk_mib * 2**20) if args.row_chunk_mib > 0 else 2**62
        bn_contract.ROW_CHUNK_BYTES = {kind: budget for kind in bn_contract.ROW_CHUNK_BYTES}
    results = []
    for name in args.networks.split(","):
        r = bench_network(name, args)
        results.append(r)
        print(json.dumps(r), flush=True)
    out = {"benchmark": "bn_inference",
           "reference": "pgmpy VariableElimination (one query per marginal; CPD rows renormalised as read_bif does)",
           "protocol": "interleaved rounds: mixed batch, single-pattern batch, one-row queries of pgmpy's rows, "
                       "same-pattern batches, the mixed batch from the evidence table (their order rotating from "
                       "round to round), then one pgmpy row; each timing the "
                       "mean of calls_per_timing calls; medians; ratios from the same run",
           "machine": machine(), "device": args.device, "args": vars(args), "results": results}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {args.out}")
    return out


def add_batch_arguments(p: argparse.ArgumentParser, networks: str, rounds: int) -> None:
    """The options the BN query benchmarks share: the networks, the batches of :func:`evidence_batches`, the
    interleaved timing (``common.interleaved_ways``), the seed and the torch threads."""
    p.add_argument("--networks", default=networks)
    p.add_argument("--rows", type=int, default=100, help="evidence rows answered in one batched call")
    p.add_argument("--evidence-frac", type=float, default=0.2)
    p.add_argument("--observe-prob", type=float, default=0.5,
                   help="mixed batch: each evidence node is observed in a row with this probability")
    add_interleaved_arguments(p, rounds)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_batch_arguments(p, NETWORKS, rounds=5)
    p.add_argument("--pgmpy-rows", type=int, default=5, help="rows answered (and timed) with pgmpy, one per round")
    p.add_argument("--same-pattern-rows", type=int, default=8,
                   help="rows of the mixed batch whose patterns are each timed as a batch of their own "
                        "(the like-for-like reference of the mixed batch; 0: skip)")
    p.add_argument("--junction-tree-rows", type=int, default=100,
                   help="mixed rows whose patterns' junction-tree sizes are averaged (a few seconds per hundred "
                        "patterns on the larger networks; 0: skip)")
    p.add_argument("--table-max-mib", type=float, default=256.0,
                   help="the largest evidence table built for the compiled kind (MiB); larger ones are skipped")
    p.add_argument("--device", default="cpu")
    p.add_argument("--row-chunk-mib", type=float, default=None,
                   help="memory budget of one contraction's row-carrying intermediates, MiB (default: the "
                        "library's, hybridpgm.infer.bn_contract.ROW_CHUNK_BYTES; 0: no chunks)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "bn_inference.json"))
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
