"""MRF / CRF inference: speed and accuracy against named references.

1. Loopy BP (:class:`hybridpgm.infer.BeliefPropagation`, ``K`` flooding steps,
   a batch of independent random Ising grids) against pgmpy's
   ``BeliefPropagation`` on the same model.  pgmpy's is *exact* (junction
   tree), so it also gives the reference marginals for the error of loopy BP;
   it is run in a child process with a time limit and reported as unfinished
   when it does not finish.
2. Exact tensor contraction (``MarkovNet.log_partition("exact")``) against
   brute-force enumeration on small grids.
3. The vectorised CRF forward algorithm (:class:`hybridpgm.graphs.LinearChainCRF`)
   against a straightforward per-sequence, per-step loop, for ``log Z`` and for
   ``log Z`` + marginals (backward pass).

    python benchmarks/mrf_inference.py                                   # full
    python benchmarks/mrf_inference.py --grid-sizes 8 16 --batch 8 --pgmpy-timeout 20   # quick

The PGMax comparison of loopy BP is ``bp_vs_pgmax.py``; pytorch-crf's is ``crf_speed.py``.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import time
import warnings

import torch

from hybridpgm.graphs import LinearChainCRF, ising_grid
from hybridpgm.graphs.grids import grid_edges
from hybridpgm.infer import BeliefPropagation

from common import median_ms, write_result


def random_ising(n: int, batch: int, seed: int, coupling: float = 0.3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    J = coupling * torch.randn(batch, len(grid_edges(n, n)), generator=g, dtype=dtype)
    h = 0.5 * torch.randn(batch, n * n, generator=g, dtype=dtype)
    return J, h


_DEVICE = torch.device("cpu")


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        if _DEVICE.type == "cuda":
            torch.cuda.synchronize(_DEVICE)
        t0 = time.perf_counter()
        out = fn()
        if _DEVICE.type == "cuda":
            torch.cuda.synchronize(_DEVICE)
        times.append(time.perf_counter() - t0)
    return out, times


# -- pgmpy reference (child process) -----------------------------------------------
def _pgmpy_worker(n, J, h, queue):
    try:
        queue.put(_pgmpy_run(n, J, h))
    except Exception as e:  # report instead of hanging until the timeout
        queue.put((None, f"{type(e).__name__}: {e}"))


def _pgmpy_run(n, J, h):
    warnings.filterwarnings("ignore")
    import numpy as np
    from pgmpy.factors.discrete import DiscreteFactor
    from pgmpy.inference import BeliefPropagation as PgmpyBP
    try:
        from pgmpy.models import DiscreteMarkovNetwork as MarkovNetwork
    except ImportError:  # older pgmpy
        from pgmpy.models import MarkovNetwork

    names = [f"x_{r}_{c}" for r in range(n) for c in range(n)]
    spin = np.array([-1.0, 1.0])
    t0 = time.perf_counter()
    model = MarkovNetwork()
    model.add_nodes_from(names)
    factors = []
    for (a, b), j in zip(grid_edges(n, n), J):
        model.add_edge(names[a], names[b])
        factors.append(DiscreteFactor([names[a], names[b]], [2, 2], np.exp(j * np.outer(spin, spin)).ravel()))
    for name, hi in zip(names, h):
        factors.append(DiscreteFactor([name], [2], np.exp(hi * spin)))
    model.add_factors(*factors)
    bp = PgmpyBP(model)
    bp.calibrate()
    res = bp.query(variables=names, joint=False, show_progress=False)
    elapsed = time.perf_counter() - t0
    marg = np.stack([res[v].normalize(inplace=False).values for v in names])
    return elapsed, marg


def run_pgmpy(n, J, h, timeout):
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_pgmpy_worker, args=(n, J.tolist(), h.tolist(), queue))
    proc.start()
    try:
        elapsed, marg = queue.get(timeout=timeout)
    except Exception:
        elapsed, marg = None, f"did not finish within {timeout}s"

    proc.join(1)
    if proc.is_alive():
        proc.kill()
        proc.join()
    return elapsed, marg


def bench_bp(args):
    rows = []
    for n in args.grid_sizes:
        J, h = random_ising(n, args.batch, args.seed)
        fg = ising_grid(n, n, J.to(args.device), h.to(args.device)).factor_graph()
        fg1 = ising_grid(n, n, J[0].to(args.device), h[0].to(args.device)).factor_graph()
        bp = BeliefPropagation(num_iters=args.bp_iters, damping=0.0, tol=0.0)
        bp(fg1)  # warm-up
        res, t_batch = timed(lambda: bp(fg), args.repeats)
        res1, t_one = timed(lambda: bp(fg1), args.repeats)
        tol_bp = BeliefPropagation(num_iters=10 * args.bp_iters, tol=1e-6)
        conv = tol_bp(fg1)
        row = {"grid": f"{n}x{n}", "num_vars": n * n, "batch": args.batch, "bp_iters": args.bp_iters,
               "hybridpgm_batch_ms": median_ms(t_batch),
               "hybridpgm_per_model_ms": median_ms(t_batch) / args.batch,
               "hybridpgm_single_model_ms": median_ms(t_one),
               "converged_within_tol_1e-6_after_iters": conv.num_iters if conv.converged else None}
        if n <= args.pgmpy_max_size:
            elapsed, marg = run_pgmpy(n, J[0], h[0], args.pgmpy_timeout)
        else:
            elapsed, marg = None, f"not run (grid side > --pgmpy-max-size {args.pgmpy_max_size})"
        if elapsed is None:
            row["pgmpy"] = marg
        else:
            ours = res1.marginals[0].cpu().numpy()
            row.update({"pgmpy_single_model_ms": 1000 * elapsed,
                        "ratio_pgmpy_over_hybridpgm_single": 1000 * elapsed / median_ms(t_one),
                        "ratio_pgmpy_over_hybridpgm_per_model_batched":
                            1000 * elapsed / (median_ms(t_batch) / args.batch),
                        "loopy_bp_max_marginal_error_vs_exact": float(abs(ours - marg).max()),
                        "loopy_bp_mean_marginal_error_vs_exact": float(abs(ours - marg).mean())})
        print(row)
        rows.append(row)
    return rows


def bench_exact(args):
    rows = []
    for n in args.exact_sizes:
        J, h = random_ising(n, 1, args.seed + 1)
        mrf = ising_grid(n, n, J[0], h[0])
        log_z, t_exact = timed(lambda: mrf.log_partition("exact"), args.repeats)

        def brute():
            rows_ = torch.tensor(list(itertools.product([0, 1], repeat=n * n)))
            return torch.logsumexp(mrf.score({v: rows_[:, i] for i, v in enumerate(mrf.variables)}), 0)

        ref, t_brute = timed(brute, 1)
        row = {"grid": f"{n}x{n}", "exact_ms": median_ms(t_exact), "brute_force_ms": median_ms(t_brute),
               "ratio_brute_over_exact": median_ms(t_brute) / median_ms(t_exact),
               "abs_error_log_z": float(abs(log_z - ref))}
        print(row)
        rows.append(row)
    return rows


def crf_loop_log_z(unary, trans, start, end):
    """Reference: one sequence at a time, one step at a time."""
    out = []
    for b in range(unary.shape[0]):
        alpha = start + unary[b, 0]
        for t in range(1, unary.shape[1]):
            alpha = torch.logsumexp(alpha[:, None] + trans, dim=0) + unary[b, t]
        out.append(torch.logsumexp(alpha + end, 0))
    return torch.stack(out)


def bench_crf(args):
    rows = []
    g = torch.Generator().manual_seed(args.seed)
    for T, L in itertools.product(args.crf_lengths, args.crf_labels):
        unary = torch.randn(args.crf_batch, T, L, generator=g).to(args.device)
        trans, start, end = (torch.randn(L, L, generator=g).to(args.device),
                             torch.randn(L, generator=g).to(args.device),
                             torch.randn(L, generator=g).to(args.device))
        ours, t_ours = timed(lambda: LinearChainCRF(unary, trans, start, end).log_partition, args.repeats)
        ref, t_loop = timed(lambda: crf_loop_log_z(unary, trans, start, end), max(1, args.repeats // 2))

        def ours_grad():
            return LinearChainCRF(unary, trans, start, end).marginals

        def loop_grad():
            u = unary.clone().requires_grad_()
            (m,) = torch.autograd.grad(crf_loop_log_z(u, trans, start, end).sum(), u)
            return m

        m_ours, t_ours_g = timed(ours_grad, args.repeats)
        m_loop, t_loop_g = timed(loop_grad, max(1, args.repeats // 2))
        row = {"batch": args.crf_batch, "T": T, "L": L,
               "hybridpgm_log_z_ms": median_ms(t_ours), "loop_log_z_ms": median_ms(t_loop),
               "ratio_loop_over_hybridpgm_log_z": median_ms(t_loop) / median_ms(t_ours),
               "hybridpgm_marginals_ms": median_ms(t_ours_g), "loop_marginals_ms": median_ms(t_loop_g),
               "ratio_loop_over_hybridpgm_marginals": median_ms(t_loop_g) / median_ms(t_ours_g),
               "max_abs_error_log_z": float((ours - ref).abs().max()),
               "max_abs_error_marginals": float((m_ours - m_loop).abs().max())}
        print(row)
        rows.append(row)
    return rows


def main(args):
    global _DEVICE
    _DEVICE = torch.device(args.device)
    torch.manual_seed(args.seed)
    payload = {"command_args": vars(args),
               "reference_bp": "pgmpy.inference.BeliefPropagation (junction tree, exact), one model",
               "reference_exact": "brute-force enumeration of all 2^(n*n) states",
               "reference_crf": "per-sequence, per-step Python loop (log-sum-exp recursion)"}
    payload["bp"] = bench_bp(args)
    payload["exact"] = bench_exact(args)
    payload["crf"] = bench_crf(args)
    write_result("mrf_inference", payload, args.out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid-sizes", type=int, nargs="+", default=[4, 5, 6, 8, 16, 32, 64])
    p.add_argument("--batch", type=int, default=64, help="independent Ising models per BP run")
    p.add_argument("--bp-iters", type=int, default=50)
    p.add_argument("--pgmpy-timeout", type=float, default=120.0)
    p.add_argument("--pgmpy-max-size", type=int, default=16, help="largest grid side given to pgmpy")
    p.add_argument("--exact-sizes", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--crf-batch", type=int, default=64)
    p.add_argument("--crf-lengths", type=int, nargs="+", default=[20, 100])
    p.add_argument("--crf-labels", type=int, nargs="+", default=[5, 20])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="BP and CRF device (pgmpy and brute force run on the CPU)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/mrf_inference.json)")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
