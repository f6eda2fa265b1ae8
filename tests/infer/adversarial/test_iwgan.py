"""IWGAN: importance weights q^r/q, the K = 1 reduction to the GAN, training."""

import pytest
import torch
import torch.nn.functional as F

import hybridpgm
from hybridpgm.errors import ConfigError
from hybridpgm.generative.gan import gan_networks
from hybridpgm.infer.adversarial import GAN, IWGAN, adversarial_optim
from tests.infer.adversarial.conftest import assert_finite_history, tiny_pair
from tests.infer.adversarial.test_gan import train_on_ring


@pytest.mark.parametrize("player", ["discriminator", "generator"])
@pytest.mark.parametrize("weight_discriminator", [True, False])
def test_one_sample_is_the_gan(player, weight_discriminator):
    torch.manual_seed(0)
    gen, disc = tiny_pair()
    gan, iwgan = GAN(gen, disc), IWGAN(gen, disc, num_samples=1, weight_discriminator=weight_discriminator)
    real = torch.randn(9, 2)
    torch.manual_seed(3)
    a = gan.loss(player, real)
    torch.manual_seed(3)
    b = iwgan.loss(player, real)
    assert torch.allclose(a, b, atol=1e-6)


def test_weights_are_normalized_ratios_of_reversed_to_plain_posterior():
    torch.manual_seed(0)
    iwgan = IWGAN(*tiny_pair(), num_samples=5)
    x = iwgan.grouped_samples(3).detach()
    logits = iwgan.logits(x).reshape(5, 3)
    ratio = (iwgan.log_qr(x, 0) - iwgan.log_q(x, 0)).exp().reshape(5, 3)  # q^r(0|x) / q(0|x)
    expected = ratio / ratio.sum(0, keepdim=True)
    assert torch.allclose(iwgan.normalized_weights(logits), expected, atol=1e-6)


def test_generator_gradient_is_weighted_sum_with_constant_weights():
    torch.manual_seed(0)
    iwgan = IWGAN(*tiny_pair(), num_samples=4)
    real = torch.randn(3, 2)
    torch.manual_seed(5)
    loss = iwgan.loss("generator", real)
    grads = torch.autograd.grad(loss, list(iwgan.generator.parameters()))
    torch.manual_seed(5)
    logits = iwgan.logits(iwgan.generator(torch.randn(12, 4))).reshape(4, 3)
    w = torch.softmax(logits, 0).detach()
    manual = -(w * F.logsigmoid(logits)).sum(0).mean()
    expected = torch.autograd.grad(manual, list(iwgan.generator.parameters()), retain_graph=True)
    for a, b in zip(grads, expected):
        assert torch.allclose(a, b, atol=1e-6)
    # and it differs from an unweighted mean over the K samples
    plain = torch.autograd.grad(-F.logsigmoid(logits).mean(), list(iwgan.generator.parameters()))
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, plain))


@pytest.mark.parametrize("num_samples", [0, -2, 2.5])
def test_bad_num_samples(num_samples):
    with pytest.raises(ConfigError, match="num_samples"):
        IWGAN(*tiny_pair(), num_samples=num_samples)


@pytest.mark.parametrize("dataset", ["ring", "digits"])
def test_trains_without_nan(dataset, ring, digits):
    torch.manual_seed(0)
    x = ring if dataset == "ring" else digits.train.x
    gen, disc = gan_networks("mlp", x.shape[1], hidden=(32,), out_activation=None if dataset == "ring" else "sigmoid")
    result = hybridpgm.fit(IWGAN(gen, disc), x, batch_size=64, max_steps=20, epochs=100, seed=0, progress=False,
                           device="cpu", optim=adversarial_optim())
    assert_finite_history(result)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_covers_ring_modes(seed):
    result, coverage = train_on_ring(IWGAN, seed)
    assert_finite_history(result)
    assert coverage.modes_covered >= 6, coverage


@pytest.mark.parametrize("value", ["no", "False", None, 0, 1])
def test_weight_discriminator_must_be_a_bool(value):
    """Before, any truthy value switched the weighting on ("no" included), any falsy one off."""
    gen, disc = tiny_pair()
    with pytest.raises(ConfigError, match=f"IWGAN weight_discriminator must be True or False, got {value!r}"):
        IWGAN(gen, disc, weight_discriminator=value)


def test_repr_shows_the_importance_samples_and_the_shapes():
    torch.manual_seed(0)
    text = repr(IWGAN(*tiny_pair(noise=4), num_samples=5, weight_discriminator=False))
    assert text == "IWGAN(k=1, num_samples=5, weight_discriminator=False, noise_dim=4, event_shape=(2,))"


def test_grouped_samples_counts_groups_as_num_groups_and_warns_on_the_old_keyword():
    """``grouped_samples`` takes ``num_groups`` (its old keyword ``n=`` warns, the same draw), and refuses a count
    below one by name."""
    iwgan = IWGAN(*tiny_pair(), num_samples=4)
    torch.manual_seed(2)
    new = iwgan.grouped_samples(num_groups=3)
    torch.manual_seed(2)
    with pytest.warns(FutureWarning, match="num_groups"):
        old = iwgan.grouped_samples(n=3)
    assert new.shape[0] == 12 and torch.equal(new, old)
    with pytest.raises(ConfigError, match="num_groups"):
        iwgan.grouped_samples(0)
