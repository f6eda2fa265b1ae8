"""Linear-chain CRF training step: hybridpgm's ``LinearChainCRF`` against pytorch-crf, interleaved.

One step = the mean negative log-likelihood of a batch of gold label
sequences (forward algorithm + gold-path score) and its backward pass into the
unary scores and the transition / start / end parameters, on both sides with
the same random tensors.  pytorch-crf (``torchcrf.CRF``, 0.7.2) is installed
into its own directory (``--crf-dir``, added to ``sys.path``) when it is not
importable; it runs in this process on the same device and thread count.
Rounds alternate A, B, A, B; medians; the ratio is hybridpgm / pytorch-crf
(below 1: hybridpgm faster).  Both sides' losses and gradients are checked against the same step in
float64 (pytorch-crf's, on copies of the tensors): each must lie within the rounding bound of a forward
recursion in the timed dtype, eps * T * L relative (T steps, each a log-sum-exp over L terms), else the
script raises.  Comparing the two float32 answers with each other instead would charge one side's
rounding to the other: at 16x512x20 pytorch-crf's float32 gradient is 1.7e-4 off float64, ours 1.6e-6.

    python benchmarks/crf_speed.py --shapes 64x50x20 16x512x20 --rounds 7
    python benchmarks/crf_speed.py --device cuda --shapes 256x512x50
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from hybridpgm.graphs import LinearChainCRF

from common import check_agreement, prepare_torch, relative_error, timed, tolerance, write_result

DEFAULT_DIR = Path(os.environ.get("PYTORCH_CRF_DIR", Path.home() / ".cache" / "hybridpgm" / "pytorch-crf"))


def import_torchcrf(target: Path):
    """``torchcrf.CRF``, installed with pip into ``target`` (no dependencies) when absent."""
    try:
        from torchcrf import CRF
        return CRF
    except ImportError:
        pass
    if not (target / "torchcrf").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                        "pytorch-crf==0.7.2"], check=True)
    sys.path.insert(0, str(target))
    from torchcrf import CRF
    return CRF


def bench_shape(B: int, T: int, L: int, args, CRF) -> dict:
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(args.seed + T + L)
    unary = torch.randn(B, T, L, generator=g).to(device)
    tags = torch.randint(0, L, (B, T), generator=g).to(device)
    ref = CRF(L, batch_first=True).to(device)
    trans = ref.transitions.detach().clone().requires_grad_()
    start = ref.start_transitions.detach().clone().requires_grad_()
    end = ref.end_transitions.detach().clone().requires_grad_()
    u_ours = unary.clone().requires_grad_()
    u_ref = unary.clone().requires_grad_()

    def ours():
        crf = LinearChainCRF(u_ours, trans, start, end)
        loss = -crf.log_prob(tags).mean()
        grads = torch.autograd.grad(loss, (u_ours, trans))
        return loss, grads

    def theirs():
        loss = -ref(u_ref, tags, reduction="mean")
        grads = torch.autograd.grad(loss, (u_ref, ref.transitions))
        return loss, grads

    (_, (l_a, g_a)), (_, (l_b, g_b)) = timed(ours, device), timed(theirs, device)  # warm-up, and the answers
    ref64 = copy.deepcopy(ref).double()
    u64 = unary.double().requires_grad_()
    l_64 = -ref64(u64, tags, reduction="mean")
    g_64 = torch.autograd.grad(l_64, (u64, ref64.transitions))
    t_a, t_b = [], []
    for _ in range(args.rounds):
        t_a.append(timed(ours, device)[0])
        t_b.append(timed(theirs, device)[0])
    row = {"B": B, "T": T, "L": L, "device": str(device), "rounds": args.rounds,
           "hybridpgm_ms": 1000 * statistics.median(t_a), "pytorch_crf_ms": 1000 * statistics.median(t_b),
           "abs_diff_loss": float((l_a - l_b).abs()),
           "max_abs_diff_grad_unary": float((g_a[0] - g_b[0]).abs().max()),
           "max_abs_diff_grad_transition": float((g_a[1] - g_b[1]).abs().max())}
    # both sides must compute the float64 step's loss and gradients up to their dtype's rounding: an error
    # beyond the recursion's rounding bound means a side answers another question, and the ratio means nothing
    tol = max(tolerance(unary.dtype), torch.finfo(unary.dtype).eps * T * L)
    row["tolerance_relative"] = tol
    for side, (loss, grads) in (("hybridpgm", (l_a, g_a)), ("pytorch_crf", (l_b, g_b))):
        for quantity, a, b in (("loss", loss, l_64), ("grad_unary", grads[0], g_64[0]),
                               ("grad_transition", grads[1], g_64[1])):
            row[f"relative_error_{side}_{quantity}_vs_float64"] = check_agreement(
                f"relative error of {side}'s {quantity} against the float64 step ({B}x{T}x{L})",
                relative_error(a.detach(), b.detach()), tol)
    row["ratio_hybridpgm_over_pytorch_crf"] = row["hybridpgm_ms"] / row["pytorch_crf_ms"]
    print(row, flush=True)
    return row


def main(args) -> Path:
    prepare_torch(args)
    CRF = import_torchcrf(Path(args.crf_dir))
    rows = []
    for shape in args.shapes:
        B, T, L = (int(x) for x in shape.split("x"))
        rows.append(bench_shape(B, T, L, args, CRF))
    payload = {"command_args": vars(args), "reference": "pytorch-crf 0.7.2 (torchcrf.CRF), same process",
               "step": "mean NLL of gold sequences + backward into unary and transitions",
               "ratio": "hybridpgm median / pytorch-crf median, interleaved (< 1: hybridpgm faster)",
               "load_average": os.getloadavg(), "rows": rows}
    return write_result("crf_speed", payload, args.out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="+", default=["64x50x20", "16x512x20"], help="BxTxL")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    p.add_argument("--crf-dir", default=str(DEFAULT_DIR))
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/crf_speed.json)")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
