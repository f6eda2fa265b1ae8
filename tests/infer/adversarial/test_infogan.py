"""InfoGAN: the code posterior's log-density, construction checks, and class recovery on digits."""

import numpy as np
import pytest
import torch
from torch import nn

import hybridpgm
from hybridpgm.diagnostics.gan_metrics import clustering_accuracy
from hybridpgm.errors import ModelSpecError
from hybridpgm.generative.gan import MLPDiscriminator, MLPGenerator
from hybridpgm.infer.adversarial import InfoGAN, adversarial_optim
from tests.infer.adversarial.conftest import assert_finite_history


def make(dim=2, noise=3, cats=4, cont=2, hidden=(16,), **kwargs):
    return InfoGAN(MLPGenerator(noise + cats + cont, dim, hidden), MLPDiscriminator(dim, hidden),
                   MLPDiscriminator(dim, hidden, out_dim=cats + cont), num_categories=cats, num_continuous=cont,
                   **kwargs)


def test_sample_codes_layout():
    torch.manual_seed(0)
    info = make()
    inputs, cat, cont = info.sample_codes(50)
    assert inputs.shape == (50, 9) and cat.shape == (50,) and cont.shape == (50, 2)
    assert torch.equal(inputs[:, 3:7].argmax(-1), cat) and torch.equal(inputs[:, 3:7].sum(-1), torch.ones(50))
    assert torch.equal(inputs[:, 7:], cont) and bool((cont.abs() <= 1).all())


def test_code_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    info = make()
    x = torch.randn(5, 2)
    _, cat, cont = info.sample_codes(5)
    out = info.module["code_posterior"](x)
    expected = (torch.distributions.Categorical(logits=out[:, :4]).log_prob(cat)
                + torch.distributions.Normal(out[:, 4:], 1.0).log_prob(cont).sum(-1))
    assert torch.allclose(info.code_log_prob(x, cat, cont), expected, atol=1e-6)


def test_players_put_code_posterior_with_discriminator():
    info = make()
    players = {k: {id(p) for p in v} for k, v in info.players().items()}
    assert {id(p) for p in info.module["code_posterior"].parameters()} <= players["discriminator"]
    assert players["generator"] == {id(p) for p in info.generator.parameters()}


def test_losses_add_the_information_term():
    torch.manual_seed(0)
    info = make(info_weight=1.0)
    real = torch.randn(6, 2)
    torch.manual_seed(1)
    full = info.loss("generator", real)
    info.info_weight = 0.0
    torch.manual_seed(1)
    gan_part = info.loss("generator", real)
    torch.manual_seed(1)
    inputs, cat, cont = info.sample_codes(6)
    expected = -info.code_log_prob(info.generator(inputs), cat, cont).mean()
    assert torch.allclose(full - gan_part, expected, atol=1e-6)


def test_bad_configuration():
    with pytest.raises(ModelSpecError, match="num_categories \\+ num_continuous"):
        InfoGAN(MLPGenerator(9, 2), MLPDiscriminator(2), MLPDiscriminator(2, out_dim=5), num_categories=4,
                num_continuous=2)
    with pytest.raises(ModelSpecError, match="exceed the code"):
        InfoGAN(MLPGenerator(6, 2), MLPDiscriminator(2), MLPDiscriminator(2, out_dim=6), num_categories=4,
                num_continuous=2)
    with pytest.raises(ModelSpecError, match="exceed the code"):
        InfoGAN(MLPGenerator(6, 2), MLPDiscriminator(2), MLPDiscriminator(2, out_dim=6), num_categories=4,
                num_continuous=2, noise_dim=np.int64(6))
    with pytest.raises(ModelSpecError, match="need a code|needs a code"):
        InfoGAN(MLPGenerator(6, 2), MLPDiscriminator(2), nn.Linear(2, 1), num_categories=0, num_continuous=0)


def test_recovers_digit_classes_better_than_chance(digits):
    """Unsupervised: the categorical code's assignments of real test digits beat chance (0.1) clearly."""
    torch.manual_seed(0)
    info = InfoGAN(MLPGenerator(16 + 12, 64, (128, 128), out_activation="sigmoid"), MLPDiscriminator(64, (128,)),
                   MLPDiscriminator(64, (128,), out_dim=12), num_categories=10, num_continuous=2)
    result = hybridpgm.fit(info, digits.train.x, batch_size=64, max_steps=500, epochs=10**6, seed=0, progress=False,
                           device="cpu", optim=adversarial_optim())
    assert_finite_history(result)
    probs, _ = info.infer_codes(digits.test.x)
    assert clustering_accuracy(probs.argmax(-1), digits.test.y) > 0.2


def test_trains_without_nan_on_ring(ring):
    torch.manual_seed(0)
    info = make(dim=2, cats=8, hidden=(32,))
    result = hybridpgm.fit(info, ring, batch_size=64, max_steps=20, epochs=100, seed=0, progress=False, device="cpu",
                           optim=adversarial_optim())
    assert_finite_history(result)
