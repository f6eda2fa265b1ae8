"""log q(y|x) from the discriminator's logits under torch.autocast: the networks in 16 bits, the log-probabilities,
weights and losses in float32 (hybridpgm.infer.adversarial.domain_log_q)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hybridpgm.infer.adversarial import GAN, IWGAN
from hybridpgm.infer.adversarial.base import log_q_from_logits
from hybridpgm.infer.adversarial.domain_log_q import log_sigmoid, softmax_weights
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture: one intra-op thread)
from tests.infer.adversarial.conftest import tiny_pair


class _Sixteen(nn.Module):
    """``net`` run under CPU autocast in ``dtype``, its output cast to float32: the reference's networks."""

    def __init__(self, net: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.net, self.dtype = net, dtype

    def forward(self, x):
        with torch.autocast("cpu", dtype=self.dtype):
            return self.net(x).float()


def _confident_game(make):
    """A game whose discriminator gives logits of tens (its last layer scaled by 30)."""
    torch.manual_seed(0)
    gen, disc = tiny_pair(dim=16, noise=8, hidden=(32,))
    with torch.no_grad():
        [m for m in disc.modules() if isinstance(m, nn.Linear)][-1].weight.mul_(30)
    return make(gen, disc)


def _losses(game, x, dtype=None):
    """Both players' losses (seeded draws) and the gradients of the discriminator's last layer and the generator's
    first, under CPU autocast in ``dtype`` (none with ``None``)."""
    out = []
    for player in ("discriminator", "generator"):
        torch.manual_seed(0)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = game.loss(player, x)
        params = [p for p in game.module.parameters() if p.requires_grad]
        out.append((loss, torch.autograd.grad(loss, params, allow_unused=True)))
    return out


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("make", [GAN, lambda g, d: IWGAN(g, d, num_samples=3)], ids=["gan", "iwgan"])
def test_adversarial_losses_under_autocast_are_the_float32_losses_of_the_16_bit_logits(dtype, make):
    """Found by an audit: ``log_q_from_logits`` and IWGAN's ``logsigmoid`` and ``softmax`` ran in the logits'
    16-bit dtype under autocast: a bfloat16 discriminator loss of 1.5547 where the same bfloat16 logits give 1.5522
    in float32, and the loss itself came back in bfloat16.  The reference runs each network under autocast and
    takes its output on in float32."""
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(1)) + 2
    game = _confident_game(make)
    got = _losses(game, x, dtype)
    gen, disc = game.generator, game.discriminator
    game.generator, game.discriminator = _Sixteen(gen, dtype), _Sixteen(disc, dtype)
    try:
        ref = _losses(game, x)
    finally:
        game.generator, game.discriminator = gen, disc
    for (loss, grads), (ref_loss, ref_grads) in zip(got, ref):
        assert loss.dtype == torch.float32
        torch.testing.assert_close(loss, ref_loss)
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_log_q_sigmoid_and_weights_of_16_bit_logits_under_autocast_are_computed_in_float32(dtype):
    logits = (torch.linspace(-40, 40, 12).reshape(3, 4) + 1 / 3).to(dtype)
    wide = logits.float()
    with torch.autocast("cpu", dtype=dtype):
        got = (log_q_from_logits(logits, 1), log_q_from_logits(logits, 0), log_sigmoid(logits),
               softmax_weights(logits, dim=0))
    want = (F.logsigmoid(wide), F.logsigmoid(-wide), F.logsigmoid(wide), wide.softmax(0))
    for g, w in zip(got, want):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, w, rtol=1e-6, atol=0)


def test_log_q_outside_autocast_keeps_the_logits_dtype():
    """A float64 discriminator stays float64 (under autocast too) and a bfloat16 model computes in bfloat16."""
    logits = torch.tensor([-30.0, 0.25, 30.0], dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert log_q_from_logits(logits, 1).dtype == torch.float64
        torch.testing.assert_close(log_q_from_logits(logits, 0), F.logsigmoid(-logits), rtol=1e-15, atol=0)
    assert log_q_from_logits(logits.bfloat16(), 1).dtype == torch.bfloat16
    assert softmax_weights(logits.bfloat16()).dtype == torch.bfloat16


def test_a_fractional_python_label_is_taken_in_the_logits_dtype_as_before():
    """Only the labels 0 and 1 stay Python numbers (exact in any dtype); a smoothed label such as 0.9 is a tensor
    of the logits' dtype, as it was before labels were kept as numbers (review: 0.9 kept as a Python double moved a
    bfloat16 log q by up to 0.5 near 100, and a float32 one by 1.4e-6)."""
    logits = (torch.linspace(-100, 100, 7)).to(torch.bfloat16)
    for y in (0.9, 0.1):
        want = log_q_from_logits(logits, torch.tensor(y, dtype=torch.bfloat16))
        assert torch.equal(log_q_from_logits(logits, y), want)
    assert torch.equal(log_q_from_logits(logits, 1), log_q_from_logits(logits, torch.tensor(1.0)))
