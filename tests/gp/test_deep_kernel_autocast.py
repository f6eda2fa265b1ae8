"""DeepKernelGP under mixed precision: fit's precision="bf16" and bfloat16 autocast leave the GP in its own
dtype (hybridpgm/gp/deep_kernel.py)."""

import copy

import pytest
import torch

import hybridpgm
from hybridpgm.gp import DeepKernelGP, ExactMLLObjective
from hybridpgm.nn import mlp
from tests.gp.deep_kernel_helpers import DEEP_KERNEL_WARNINGS, _toy

pytestmark = pytest.mark.filterwarnings(*DEEP_KERNEL_WARNINGS)


# ------------------------------------------------------------------ mixed precision (fit's precision="bf16")
@pytest.mark.parametrize("grid_size", [None, 64])
def test_dkl_trains_under_fit_bf16_with_the_float32_loss(grid_size):
    """Before, KISS-GP under ``fit(precision="bf16")`` failed in GPyTorch's sparse interpolation with a raw
    ``RuntimeError: Unsupported dtype BFloat16``, and the exact kernel took bfloat16 features.  Now the network
    runs under autocast and the GP in float32: the first loss (same parameters) is within 1e-3 of float32's."""
    torch.manual_seed(0)
    x, y = _toy(n=100, d=3, dtype=torch.float32)
    model = DeepKernelGP(x, y, mlp([3, 16, 1 if grid_size else 2], activation="tanh"), grid_size=grid_size)
    losses = {}
    for precision in (None, "bf16"):
        dkl = copy.deepcopy(model)
        losses[precision] = hybridpgm.fit(ExactMLLObjective(dkl), (x, y), batch_size=100, max_steps=2, seed=0,
                                          precision=precision, progress=False).history.loss["mll"]
        assert all(bool(torch.isfinite(p).all()) for p in dkl.parameters())
    assert len(losses["bf16"]) == 2 and all(map(torch.isfinite, torch.tensor(losses["bf16"])))
    assert abs(losses["bf16"][0] - losses[None][0]) < 1e-3


@pytest.mark.parametrize("grid_size", [None, 16])
def test_the_gp_runs_in_its_own_dtype_under_autocast(grid_size):
    """With the identity extractor the features are float32 under autocast too, so the GP alone decides the
    precision: its marginal likelihood and predictions under bfloat16 autocast are float32's (before, the kernel's
    products ran in bfloat16: the loss on 300 points was 8e-4 off without a grid, 2e-4 off with one)."""
    x, y = _toy(n=300, d=2, dtype=torch.float32)
    model = DeepKernelGP(x, y, grid_size=grid_size)
    objective = ExactMLLObjective(model)
    model.train()
    want = objective.loss("mll", (x, y))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = objective.loss("mll", (x, y))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want)
    x_test, _ = _toy(n=20, d=2, seed=1, dtype=torch.float32)
    want = model.predict(x_test)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = model.predict(x_test)
    assert got.mean.dtype == torch.float32
    torch.testing.assert_close(got.mean, want.mean)
    torch.testing.assert_close(got.variance, want.variance)
