"""InfoGAN's code posterior under :func:`torch.autocast`: its output taken on in at least float32."""

import math

import torch
from torch import nn

from hybridpgm.generative.gan import MLPDiscriminator, MLPGenerator
from hybridpgm.infer.adversarial import InfoGAN

C, M = 10, 2


def _info() -> InfoGAN:
    torch.manual_seed(0)
    post = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, C + M))
    with torch.no_grad():
        post[-1].weight.mul_(30)  # confident categories: large logits, where bfloat16 loses most
    return InfoGAN(MLPGenerator(8 + C + M, 16, (32,)), MLPDiscriminator(16, (32,)), post, num_categories=C,
                   num_continuous=M)


def _inputs():
    x = torch.randn(256, 16, generator=torch.Generator().manual_seed(1))
    cat = torch.randint(0, C, (256,), generator=torch.Generator().manual_seed(2))
    cont = torch.randn(256, M, generator=torch.Generator().manual_seed(3))
    return x, cat, cont


def test_code_log_prob_under_bf16_autocast_is_the_float32_log_prob_of_the_networks_output():
    """Found by an audit: CPU autocast kept ``log_softmax`` of the bfloat16 output in bfloat16, up to 0.117 off
    per row.  Now the bfloat16 output is taken on in float32: the float32 formula on that output, exactly."""
    info, (x, cat, cont) = _info(), _inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = info.code_log_prob(x, cat, cont)
        out = info.module["code_posterior"](x)
    assert out.dtype == torch.bfloat16 and got.dtype == torch.float32
    out = out.float()
    expected = (out[:, :C].log_softmax(-1).gather(-1, cat[:, None]).squeeze(-1)
                - 0.5 * ((cont - out[:, C:]) ** 2).sum(-1) - 0.5 * M * math.log(2 * math.pi))
    assert torch.equal(got, expected)


def test_code_log_prob_under_autocast_keeps_its_gradient():
    info, (x, cat, cont) = _info(), _inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = -info.code_log_prob(x, cat, cont).mean()
    grads = torch.autograd.grad(loss, list(info.module["code_posterior"].parameters()))
    assert all(g is not None and bool(torch.isfinite(g).all()) and bool(g.ne(0).any()) for g in grads)


def test_infer_codes_under_bf16_autocast_returns_float32_probabilities_of_the_networks_output():
    info, (x, _, _) = _info(), _inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        probs, means = info.infer_codes(x)
        out = info.module["code_posterior"].eval()(x)
    assert probs.dtype == means.dtype == torch.float32
    assert torch.equal(probs, out[:, :C].float().softmax(-1)) and torch.equal(means, out[:, C:].float())


def test_a_float64_infogan_outside_autocast_stays_float64():
    info, (x, cat, cont) = _info(), _inputs()
    info.module.double()
    got = info.code_log_prob(x.double(), cat, cont.double())
    out = info.module["code_posterior"](x.double())
    expected = (out[:, :C].log_softmax(-1).gather(-1, cat[:, None]).squeeze(-1)
                - 0.5 * ((cont.double() - out[:, C:]) ** 2).sum(-1) - 0.5 * M * math.log(2 * math.pi))
    assert got.dtype == torch.float64 and torch.equal(got, expected)
