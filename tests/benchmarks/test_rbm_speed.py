"""The RBM speed benchmark's two hand-written references compute the same CD-1 update."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from rbm_speed import HandWrittenCD1, HandWrittenCD1WithOptimizer  # noqa: E402


def test_the_optimizer_reference_applies_the_written_out_update():
    x = (torch.rand(50, 20, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    written, optimized = HandWrittenCD1(x, 7, 10, 0.1, 0), HandWrittenCD1WithOptimizer(x, 7, 10, 0.1, 0)
    start = written.w.clone()
    for step in range(3):  # the same random draws for both
        torch.manual_seed(step)
        written()
        torch.manual_seed(step)
        optimized()
    assert not torch.equal(written.w, start)  # the steps moved the weights
    for mine, theirs in zip((written.w, written.b, written.c), optimized.params):
        torch.testing.assert_close(mine, theirs.detach(), rtol=0, atol=1e-6)
