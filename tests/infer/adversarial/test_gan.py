"""GAN: the losses, Lemma 1 of Hu et al. (2018), and training on the ring and digits."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hybridpgm
from hybridpgm.data.toy import ring_of_gaussians
from hybridpgm.diagnostics.gan_metrics import ring_coverage
from hybridpgm.generative.gan import gan_networks
from hybridpgm.infer.adversarial import GAN, adversarial_optim
from tests.infer.adversarial.conftest import assert_finite_history, tiny_pair


def test_losses_match_the_formulas():
    torch.manual_seed(0)
    gan = GAN(*tiny_pair())
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    d_real, d_fake = gan.discriminator(real), gan.discriminator(fake)
    bce = 0.5 * (F.binary_cross_entropy_with_logits(d_real, torch.ones(6))
                 + F.binary_cross_entropy_with_logits(d_fake, torch.zeros(6)))
    assert torch.allclose(gan.discriminator_loss(real, fake), bce)
    # non-saturating generator loss: -log D(G(z))
    assert torch.allclose(gan.generator_loss(fake), F.binary_cross_entropy_with_logits(d_fake, torch.ones(6)))


def test_generator_step_uses_fresh_samples_through_the_generator():
    torch.manual_seed(0)
    gan = GAN(*tiny_pair())
    real = torch.randn(8, 2)
    torch.manual_seed(1)
    loss = gan.loss("generator", real)
    torch.manual_seed(1)
    expected = -F.logsigmoid(gan.discriminator(gan.generator(torch.randn(8, 4)))).mean()
    assert torch.allclose(loss, expected)
    grads = torch.autograd.grad(loss, list(gan.generator.parameters()))
    assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


# -- Lemma 1 (Hu et al., 2018) on 1-D Gaussians ---------------------------------------------------------------

NODES, WEIGHTS = np.polynomial.hermite_e.hermegauss(160)  # for the weight exp(-x^2/2)
NODES = torch.tensor(NODES, dtype=torch.float64)
WEIGHTS = torch.tensor(WEIGHTS / math.sqrt(2 * math.pi), dtype=torch.float64)


def normal_log_pdf(x, mean, log_scale):
    return -0.5 * ((x - mean) / log_scale.exp()) ** 2 - log_scale - 0.5 * math.log(2 * math.pi)


class AffineGenerator(nn.Module):
    """G_theta(z) = mu + sigma z, so p_g = N(mu, sigma^2)."""

    noise_dim = 1

    def __init__(self, mean, log_scale):
        super().__init__()
        self.mean = nn.Parameter(torch.tensor(mean, dtype=torch.float64))
        self.log_scale = nn.Parameter(torch.tensor(log_scale, dtype=torch.float64))

    def forward(self, z):
        return self.mean + self.log_scale.exp() * z


class OptimalDiscriminator(nn.Module):
    """The optimal discriminator for a frozen p_g0: logit log p_data(x) - log p_g0(x)."""

    def __init__(self, data, gen0):
        super().__init__()
        self.data, self.gen0 = data, gen0

    def forward(self, x):
        x = x.squeeze(-1)
        return normal_log_pdf(x, *self.data) - normal_log_pdf(x, *self.gen0)


def half_kl_minus_jsd(mean, log_scale, data_mean, data_log_scale):
    """1/2 KL(p_g || p_data) - JSD(p_g || p_data): KL in closed form, JSD by Gauss-Hermite quadrature."""
    s, sd = log_scale.exp(), data_log_scale.exp()
    kl = data_log_scale - log_scale + (s ** 2 + (mean - data_mean) ** 2) / (2 * sd ** 2) - 0.5
    xg, xd = mean + s * NODES, data_mean + sd * NODES  # reparameterized nodes of p_g, nodes of p_data

    def log_m(x):
        log_g, log_d = normal_log_pdf(x, mean, log_scale), normal_log_pdf(x, data_mean, data_log_scale)
        return torch.logaddexp(log_g, log_d) - math.log(2)
    kl_gm = (WEIGHTS * (normal_log_pdf(xg, mean, log_scale) - log_m(xg))).sum()
    kl_dm = (WEIGHTS * (normal_log_pdf(xd, data_mean, data_log_scale) - log_m(xd))).sum()
    return 0.5 * kl - 0.5 * (kl_gm + kl_dm)


@pytest.mark.parametrize("gen0,data", [((0.0, 0.0), (1.0, 0.0)), ((-0.5, -0.3), (0.8, 0.2)),
                                       ((2.0, 0.4), (0.0, -0.2)), ((0.3, -0.1), (0.3, 0.1))])
def test_lemma1_generator_gradient(gen0, data):
    """At the optimal discriminator, grad of -E_{p(y)p_theta(x|y)} log q^r(y|x) = grad [KL/2 - JSD]."""
    generator = AffineGenerator(*gen0)
    data_params = tuple(torch.tensor(v, dtype=torch.float64) for v in data)
    gen0_params = tuple(torch.tensor(v, dtype=torch.float64) for v in gen0)
    gan = GAN(generator, OptimalDiscriminator(data_params, gen0_params))
    # p(y = 0) = 1/2 and the y = 1 half does not depend on theta; the expectation over z by quadrature
    loss = 0.5 * gan.generator_loss(generator(NODES[:, None]), weights=WEIGHTS)
    lhs = torch.autograd.grad(loss, [generator.mean, generator.log_scale])
    mean, log_scale = generator.mean.detach().requires_grad_(), generator.log_scale.detach().requires_grad_()
    rhs = torch.autograd.grad(half_kl_minus_jsd(mean, log_scale, *data_params), [mean, log_scale])
    for a, b in zip(lhs, rhs):
        assert abs(float(a - b)) < 1e-10 * max(1.0, abs(float(b)))
    # the check can fail: the gradient is not that of KL/2 alone (nor of -JSD alone) unless p_g = p_data
    s = log_scale.exp()
    kl_only = torch.autograd.grad(0.5 * (data_params[1] - log_scale + (s ** 2 + (mean - data_params[0]) ** 2)
                                         / (2 * data_params[1].exp() ** 2)), [mean, log_scale])
    if gen0 != data:
        assert max(abs(float(a - b)) for a, b in zip(lhs, kl_only)) > 1e-3


# -- training ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dataset", ["ring", "digits"])
def test_trains_without_nan(dataset, ring, digits):
    torch.manual_seed(0)
    x = ring if dataset == "ring" else digits.train.x
    gen, disc = gan_networks("mlp", x.shape[1], hidden=(32,), out_activation=None if dataset == "ring" else "sigmoid")
    result = hybridpgm.fit(GAN(gen, disc, k=2), x, batch_size=64, max_steps=20, epochs=100, seed=0, progress=False,
                           device="cpu", optim=adversarial_optim())
    assert_finite_history(result)
    assert len(result.history.loss["discriminator"]) == 20


def train_on_ring(objective_cls, seed, steps=2000, **kwargs):
    torch.manual_seed(seed)
    x = ring_of_gaussians(20000, generator=torch.Generator().manual_seed(seed))
    objective = objective_cls(*gan_networks("mlp", 2), **kwargs)
    result = hybridpgm.fit(objective, x, batch_size=256, max_steps=steps, epochs=10**6, seed=seed, progress=False,
                           device="cpu", optim=adversarial_optim())
    with torch.no_grad():
        return result, ring_coverage(objective.sample(2500))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_covers_ring_modes(seed):
    result, coverage = train_on_ring(GAN, seed)
    assert_finite_history(result)
    assert coverage.modes_covered >= 6, coverage
