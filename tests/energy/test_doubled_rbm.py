"""DoubledRBM (DBM pretraining's RBM): its CD chain protocol under autocast."""

from __future__ import annotations

import pytest
import torch

from hybridpgm.energy import RBM
from hybridpgm.energy.doubled_rbm import DoubledRBM


def _gap(doubled: DoubledRBM, v: torch.Tensor, v_neg: torch.Tensor) -> torch.Tensor:
    """The CD surrogate :math:`\\overline{E(v, \\mu)} - \\overline{E(\\tilde v, \\tilde\\mu)}` that
    :class:`~hybridpgm.infer.ContrastiveDivergence` differentiates for a model without ``contrastive_gap``."""
    positive, _ = doubled.positive_phase(v)
    return positive.mean() - doubled.negative_phase((v_neg,)).mean()


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_contrastive_gap_under_autocast_matches_float32(half):
    """The energies (about -150 nats here) were computed from half-precision matrix products under autocast:
    in bfloat16 their gap read 2.643 for a float32 2.627.  The chain protocol now runs in the parameters' dtype,
    autocast or not."""
    torch.manual_seed(0)
    V, H, B = 256, 128, 50
    rbm = RBM(V, H)
    with torch.no_grad():
        rbm.weight.normal_(0, 0.3)
        rbm.hidden_bias.normal_(0, 1)
        rbm.visible_bias.normal_(0, 1)
    doubled = DoubledRBM(rbm, up=2.0, down=1.0)
    v = torch.bernoulli(torch.full((B, V), 0.4))
    v_neg = v.clone()
    flip = torch.rand(B, V) < 0.05
    v_neg[flip] = 1 - v_neg[flip]
    reference = _gap(doubled, v, v_neg)
    grads = torch.autograd.grad(reference, list(rbm.parameters()))
    with torch.autocast("cpu", dtype=half):
        low = _gap(doubled, v, v_neg)
        state = doubled.gibbs_chain((v.to(half),), 1)
        mean = doubled.hidden_mean(v.to(half))
    assert low.dtype == torch.float32 and state[0].dtype == torch.float32 and mean.dtype == torch.float32
    assert abs(low.item() - reference.item()) < 1e-3
    for g_low, g_ref in zip(torch.autograd.grad(low, list(rbm.parameters())), grads):
        torch.testing.assert_close(g_low, g_ref)
