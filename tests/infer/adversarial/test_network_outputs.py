"""The networks the adversarial objectives take: tuple outputs refused by name (at construction and in the losses),
an int read as a one-dimensional shape, the dtype of a parameter-free generator's noise, the AAVAE's data dtype,
and a ``(batch,)`` code posterior for a code of width one (audit_read_adv findings 2-5 and 8)."""

import numpy as np
import pytest
import torch
from torch import nn

import hybridpgm
from hybridpgm.errors import ModelSpecError
from hybridpgm.generative.gan import MLPDiscriminator, MLPGenerator
from hybridpgm.infer.adversarial import AAVAE, ADA, GAN, InfoGAN


class Tup(nn.Module):
    """A linear layer returning ``(output, input)``."""

    def __init__(self, i: int, o: int):
        super().__init__()
        self.lin = nn.Linear(i, o)

    def forward(self, x):
        return self.lin(x), x


class TupInTraining(nn.Module):
    """A linear layer returning a tuple in training mode only (as torchvision's Inception does)."""

    def __init__(self, i: int, o: int, squeeze: bool = False):
        super().__init__()
        self.lin, self.squeeze = nn.Linear(i, o), squeeze

    def forward(self, x):
        out = self.lin(x)
        out = out.squeeze(-1) if self.squeeze else out
        return (out, out) if self.training else out


def _gen(noise_dim: int, out: int = 2) -> nn.Module:
    g = nn.Linear(noise_dim, out)
    g.noise_dim = noise_dim
    return g


def _ada_batch(n: int = 5, d: int = 4):
    return torch.randn(n, d), torch.zeros(n, dtype=torch.long), torch.randn(n, d)


@pytest.mark.parametrize("which", ["feature extractor", "domain discriminator", "classifier"])
def test_ada_tuple_returning_network_named_at_construction(which):
    nets = {"feature extractor": nn.Linear(4, 3), "domain discriminator": nn.Linear(3, 1),
            "classifier": nn.Linear(3, 2)}
    nets[which] = {"feature extractor": Tup(4, 3), "domain discriminator": Tup(3, 1), "classifier": Tup(3, 2)}[which]
    with pytest.raises(ModelSpecError, match=f"^the {which} must return one tensor, got a tuple"):
        ADA(*nets.values(), input_shape=(4,))


def test_ada_tuple_feature_extractor_named_at_first_loss_without_input_shape():
    ada = ADA(Tup(4, 3), nn.Linear(3, 1), nn.Linear(3, 2))
    with pytest.raises(ModelSpecError, match="^the feature extractor must return one tensor"):
        ada.loss("discriminator", _ada_batch())


@pytest.mark.parametrize("which", ["feature extractor", "classifier"])
def test_ada_train_mode_only_tuple_named_in_the_loss(which):
    nets = [nn.Linear(4, 3), nn.Linear(3, 1), nn.Linear(3, 2)]
    if which == "feature extractor":
        nets[0] = TupInTraining(4, 3)
    else:
        nets[2] = TupInTraining(3, 2)
    ada = ADA(*nets, input_shape=(4,))  # the eval-mode dry run passes
    with pytest.raises(ModelSpecError, match=f"^the {which} must return one tensor"):
        ada.loss("generator", _ada_batch())


def test_ada_train_mode_only_tuple_discriminator_named_in_the_loss():
    ada = ADA(nn.Linear(4, 3), TupInTraining(3, 1, squeeze=True), nn.Linear(3, 2), input_shape=(4,))
    with pytest.raises(ModelSpecError, match="^the discriminator must return one tensor"):
        ada.loss("discriminator", _ada_batch())


def test_gan_train_mode_only_tuple_discriminator_named_in_the_loss():
    gan = GAN(_gen(3), TupInTraining(2, 1, squeeze=True))
    with pytest.raises(ModelSpecError, match="^the discriminator must return one tensor"):
        gan.loss("discriminator", torch.randn(4, 2))


def test_infogan_tuple_code_posterior_named_at_construction():
    with pytest.raises(ModelSpecError, match="^the code posterior must return one tensor, got a tuple"):
        InfoGAN(_gen(6), nn.Linear(2, 1), Tup(2, 4), num_categories=3, num_continuous=1)


def test_infogan_train_mode_only_tuple_code_posterior_named_in_the_loss():
    info = InfoGAN(_gen(6), nn.Linear(2, 1), TupInTraining(2, 4), num_categories=3, num_continuous=1)
    for player in ("discriminator", "generator"):
        with pytest.raises(ModelSpecError, match="^the code posterior must return one tensor"):
            info.loss(player, torch.randn(4, 2))


# -- an int where a shape is read -------------------------------------------------------------
def test_ada_int_input_shape_is_a_one_tuple():
    ada = ADA(nn.Linear(4, 3), nn.Linear(3, 1), nn.Linear(3, 2), input_shape=4)
    assert ada.input_shape == (4,)
    assert torch.isfinite(ada.loss("generator", _ada_batch()))


@pytest.mark.parametrize("shape", [np.array([4]), torch.tensor([4]), (np.int64(4),)], ids=["array", "tensor", "int64"])
def test_ada_input_shape_as_an_array_of_integers(shape):
    """Found by a review: ``np.array([4])`` worked before the int rule and was then refused."""
    assert ADA(nn.Linear(4, 3), nn.Linear(3, 1), nn.Linear(3, 2), input_shape=shape).input_shape == (4,)


@pytest.mark.parametrize("bad", [(4.0,), 0, (), True])
def test_ada_bad_input_shape_named(bad):
    with pytest.raises(ModelSpecError, match="ADA input_shape"):
        ADA(nn.Linear(4, 3), nn.Linear(3, 1), nn.Linear(3, 2), input_shape=bad)


def _with_in_shape(net: nn.Module, in_shape) -> nn.Module:
    net.in_shape = in_shape
    return net


def test_int_in_shape_attribute_reads_as_one_tuple():
    assert GAN(_gen(3), _with_in_shape(nn.Linear(2, 1), 2)).event_shape == (2,)
    ada = ADA(_with_in_shape(nn.Linear(4, 3), 4), _with_in_shape(nn.Linear(3, 1), 3),
              _with_in_shape(nn.Linear(3, 2), 3))
    assert ada.input_shape == (4,)
    AAVAE(hybridpgm.VAE(4, 2, (5,)), _with_in_shape(nn.Linear(4, 1), 4))


def test_int_in_shape_attribute_still_compared():
    with pytest.raises(ModelSpecError, match=r"does not match the discriminator's input shape \(3,\)"):
        GAN(_gen(3), _with_in_shape(nn.Linear(2, 1), 3))
    with pytest.raises(ModelSpecError, match="the discriminator's in_shape"):
        GAN(_gen(3), _with_in_shape(nn.Linear(2, 1), 2.0))


# -- the noise of a generator without parameters ------------------------------------------------
class Doubling(nn.Module):
    """A generator without parameters."""

    noise_dim = 2

    def forward(self, z):
        return z * 2.0


def test_parameter_free_generator_noise_in_the_discriminators_dtype():
    gan = GAN(Doubling(), nn.Linear(2, 1).double())
    assert gan.noise(3).dtype == torch.float64
    assert gan.sample(3).dtype == torch.float64
    loss = gan.loss("generator", torch.randn(4, 2, dtype=torch.float64))
    assert loss.dtype == torch.float64 and torch.isfinite(loss)


# -- AAVAE: the VAE's dtype for the data --------------------------------------------------------
class SumDiscriminator(nn.Module):
    """A discriminator without parameters."""

    def forward(self, x):
        return x.sum(-1)


def test_aavae_parameter_free_discriminator_data_take_the_vaes_dtype():
    torch.manual_seed(0)
    aavae = AAVAE(hybridpgm.VAE(4, 2, (5,)).double(), SumDiscriminator())
    x = (torch.rand(6, 4) > 0.5).long()
    assert aavae.real(x).dtype == torch.float64
    assert torch.equal(aavae.real(x), x.double())
    for player in ("discriminator", "generator"):
        assert torch.isfinite(aavae.loss(player, x))


# -- InfoGAN: a (batch,) code posterior for one code ----------------------------------------------
def test_infogan_one_code_mlp_discriminator_code_posterior():
    torch.manual_seed(0)
    posterior = MLPDiscriminator((2,), out_dim=1)
    info = InfoGAN(MLPGenerator(4, (2,)), MLPDiscriminator((2,)), posterior, num_categories=0, num_continuous=1)
    x, cont = torch.randn(5, 2), torch.rand(5, 1) * 2 - 1
    mean = posterior(x)
    assert mean.shape == (5,)
    expected = -0.5 * (cont[:, 0] - mean) ** 2 - 0.5 * torch.log(torch.tensor(2 * torch.pi))
    torch.testing.assert_close(info.code_log_prob(x, torch.zeros(5, dtype=torch.long), cont), expected)
    probs, means = info.infer_codes(x)
    assert probs.shape == (5, 0) and means.shape == (5, 1)
    assert torch.isfinite(info.loss("generator", torch.randn(4, 2)))


def test_infogan_batch_output_refused_for_a_wider_code():
    """Guard (passes on the old code too): a ``(batch,)`` output is read as one column only for a code of width
    one."""
    with pytest.raises(ModelSpecError, match=r"must return \(batch, 2\)"):
        InfoGAN(MLPGenerator(5, (2,)), MLPDiscriminator((2,)), MLPDiscriminator((2,), out_dim=1), num_categories=0,
                num_continuous=2)
