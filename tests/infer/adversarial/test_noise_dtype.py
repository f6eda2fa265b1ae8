"""The dtype and device of the noise, and of the data, for networks without parameters: one rule
(:func:`hybridpgm.infer.adversarial.dry_run.floating_like`), the first floating parameter, else the first floating
buffer, of the network that takes them.

Before, a parameter-free generator computing with a fixed float64 map (a buffer) was given noise in the
discriminator's dtype: construction failed in the generator's matmul ("the generator cannot take noise"), and
InfoGAN's codes took the discriminator's dtype as well."""

import pytest
import torch
from torch import nn

from hybridpgm.errors import ModelSpecError
from hybridpgm.generative.gan import MLPDiscriminator
from hybridpgm.infer.adversarial import ADA, GAN, IWGAN, InfoGAN


class FixedMap(nn.Module):
    """A generator without parameters: ``z @ W`` with ``W`` a fixed buffer of ``dtype``, its samples returned in
    ``out_dtype``."""

    def __init__(self, noise_dim=3, out=2, dtype=torch.float64, out_dtype=None):
        super().__init__()
        self.noise_dim, self.out_dtype = noise_dim, out_dtype or dtype
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))  # a non-floating buffer first: skipped
        self.register_buffer("w", torch.randn(noise_dim, out, generator=torch.Generator().manual_seed(0)).to(dtype))

    def forward(self, z):
        return (z @ self.w).to(self.out_dtype)


PAIRS = [(torch.float64, torch.float32), (torch.float32, torch.float64)]


@pytest.mark.parametrize("cls", [GAN, IWGAN])
@pytest.mark.parametrize("buffer_dtype, disc_dtype", PAIRS)
def test_noise_takes_a_parameter_free_generators_buffer_dtype(cls, buffer_dtype, disc_dtype):
    torch.manual_seed(0)
    gan = cls(FixedMap(dtype=buffer_dtype, out_dtype=disc_dtype), MLPDiscriminator(2, (8,)).to(disc_dtype))
    assert gan.noise(3).dtype == buffer_dtype
    assert gan.sample(3).dtype == disc_dtype
    data = torch.randn(8, 2, dtype=disc_dtype)
    for player in ("discriminator", "generator"):  # fit refuses a generator player without parameters
        loss = gan.loss(player, data)
        assert loss.dtype == disc_dtype and torch.isfinite(loss)
    gan.loss("discriminator", data).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in gan.discriminator.parameters())


@pytest.mark.parametrize("buffer_dtype, disc_dtype", PAIRS)
def test_a_sample_dtype_the_discriminator_refuses_is_named_as_such(buffer_dtype, disc_dtype):
    """The generator takes its noise; the mismatch is between its samples and the discriminator, and is named so
    (before: 'the generator cannot take noise')."""
    with pytest.raises(ModelSpecError, match=f"the discriminator cannot take the generator's output of shape "
                                             f"\\(2,\\) and dtype {buffer_dtype}"):
        GAN(FixedMap(dtype=buffer_dtype), MLPDiscriminator(2, (8,)).to(disc_dtype))


def test_infogan_codes_take_a_parameter_free_generators_buffer_dtype():
    torch.manual_seed(0)
    disc, posterior = MLPDiscriminator(2, (4,)), MLPDiscriminator(2, (4,), out_dim=5)
    info = InfoGAN(FixedMap(noise_dim=8, out_dtype=torch.float32), disc, posterior, num_categories=3,
                   num_continuous=2)
    inputs, cat, cont = info.sample_codes(4)
    assert inputs.dtype == cont.dtype == torch.float64 and cat.dtype == torch.int64
    for player in ("discriminator", "generator"):
        assert torch.isfinite(info.loss(player, torch.randn(4, 2)))


def test_ada_data_take_a_parameter_free_extractors_buffer_dtype():
    """A fixed float64 projection as the feature extractor: float32 data are widened to float64 for it (before,
    they were given the discriminator's float32 and failed in the projection)."""
    torch.manual_seed(0)
    projection = FixedMap(noise_dim=5, out=4, dtype=torch.float64, out_dtype=torch.float32)
    ada = ADA(projection, nn.Linear(4, 1), nn.Linear(4, 3))
    g = torch.Generator().manual_seed(1)
    xs, ys, xt = torch.randn(6, 5, generator=g), torch.randint(3, (6,), generator=g), torch.randn(6, 5, generator=g)
    assert ada.checked_data(xs).dtype == torch.float64
    for player in ("discriminator", "generator"):
        assert torch.isfinite(ada.loss(player, (xs, ys, xt)))


def test_the_rule_reads_parameters_before_buffers_and_modules_in_order():
    """Guard of the rule itself: within a network its first floating parameter wins over its buffers (a batch
    norm's), a parameter-free network's floating buffer over the next network's parameters, non-floating buffers
    never count, and no floating tensor at all leaves torch's defaults."""
    from hybridpgm.infer.adversarial.dry_run import floating_like

    net = nn.Sequential(nn.BatchNorm1d(3).double(), nn.Linear(3, 2))  # buffers float64, first parameter float64
    net[0].weight.data = net[0].weight.data.float()
    assert floating_like(net)["dtype"] == torch.float32
    assert floating_like(FixedMap(), nn.Linear(2, 1))["dtype"] == torch.float64
    counter = nn.Module()
    counter.register_buffer("n", torch.zeros(2, dtype=torch.int64))
    assert floating_like(counter, nn.Linear(2, 1).double())["dtype"] == torch.float64
    assert floating_like(counter, nn.Identity()) == {}


class Float32Samples(nn.Module):
    """A float64 generator (with parameters) whose samples are float32."""

    noise_dim = 8

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(8, 2).double()

    def forward(self, z):
        return self.net(z).float()


def test_infogan_code_posterior_is_checked_on_the_samples_dtype_not_the_noises():
    """Before, the code posterior's dry run fed it zeros of the codes' (the generator's) dtype, float64 here,
    although it reads the float32 samples and data: construction failed."""
    torch.manual_seed(0)
    info = InfoGAN(Float32Samples(), MLPDiscriminator(2, (4,)), MLPDiscriminator(2, (4,), out_dim=5),
                   num_categories=3, num_continuous=2)
    assert info.sample_codes(4)[0].dtype == torch.float64 and info.sample(4).dtype == torch.float32
    for player in ("discriminator", "generator"):
        assert torch.isfinite(info.loss(player, torch.randn(4, 2)))
