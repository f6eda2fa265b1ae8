"""LinearGaussian CPDs under :func:`torch.autocast`: the weighted sum of the continuous parents stays float32."""

import pytest
import torch
from pyro.infer import Trace_ELBO

from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


def _net_and_data():
    """``z0, z1, z2 ~ N(100, 1)``, ``d`` uniform, ``x | d, z ~ N(w_d . z + b_d, 0.01^2)``: means near 300, where
    one bfloat16 unit is 2 (two hundred standard deviations of ``x``)."""
    bn = BayesNet()
    for i in range(3):
        bn.add(f"z{i}", cpd.LinearGaussian(100.0, None, 1.0))
    bn.add("d", cpd.Table([0.5, 0.5]))
    bn.add("x", cpd.LinearGaussian([0.0, 1.0], [[1.0, 1.0, 1.0], [1.0, -1.0, 1.0]], [0.01, 0.01],
                                   ["d", "z0", "z1", "z2"]))
    g = torch.Generator().manual_seed(0)
    zs = [100 + torch.randn(64, generator=g) for _ in range(3)]
    d = torch.randint(0, 2, (64,), generator=g)
    x = torch.where(d == 0, zs[0] + zs[1] + zs[2], 1 + zs[0] - zs[1] + zs[2]) + 0.01 * torch.randn(64, generator=g)
    return bn, {"z0": zs[0], "z1": zs[1], "z2": zs[2], "d": d, "x": x}


def _loss_and_grad(bn, cols, dtype):
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        loss = Trace_ELBO().differentiable_loss(bn.model, lambda *a, **k: None, cols)
        log_prob = bn.log_prob(cols)
    grads = torch.autograd.grad(loss, [bn.cpds["x"].log_scale, bn.cpds["x"].weight])
    return loss, log_prob, grads


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_linear_gaussian_loss_and_gradient_under_autocast_equal_float32(dtype):
    """Found by an audit: autocast ran ``mean_table``'s einsum as a 16-bit matmul, so the means near 300 were
    rounded by up to 1 (bfloat16): the model's Trace_ELBO loss was 87185.7 in bfloat16 and 1666.7 in float16 for
    97.85 in float32, the gradient of ``x.log_scale`` [-156143, -18016] for [11.8, 5.09], and ``log_prob`` as far
    off (``log_evidence``, computed exactly, was right)."""
    bn, cols = _net_and_data()
    ref_loss, ref_log_prob, ref_grads = _loss_and_grad(bn, cols, None)
    loss, log_prob, grads = _loss_and_grad(bn, cols, dtype)
    assert loss.dtype == log_prob.dtype == torch.float32
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(log_prob, ref_log_prob)
    for g, ref in zip(grads, ref_grads):
        torch.testing.assert_close(g, ref)
    with torch.autocast("cpu", dtype=dtype):
        mean = bn.cpds["x"].mean_table(cols)
    assert mean.dtype == torch.float32 and mean.shape == (64, 2)
    torch.testing.assert_close(mean, bn.cpds["x"].mean_table(cols))


def test_a_float64_linear_gaussian_stays_float64_under_autocast():
    c = cpd.LinearGaussian(torch.tensor([0.5, -1.0], dtype=torch.float64), [[1.0 / 3], [2.0 / 3]], 1.0,
                           ["d", "z"])
    BayesNet().add("d", cpd.Table([0.5, 0.5])).add("z", cpd.LinearGaussian(torch.tensor(0.0, dtype=torch.float64))) \
        .add("x", c)
    z = torch.tensor([1e3 + 1.0 / 7, -2.0], dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mean = c.mean_table({"z": z})
    assert mean.dtype == torch.float64
    torch.testing.assert_close(mean, c.bias + z[:, None] * c.weight[:, 0], rtol=1e-15, atol=0)
