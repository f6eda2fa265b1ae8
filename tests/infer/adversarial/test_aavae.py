"""AAVAE: the VAE's ELBO through Pyro, the q^r weights, checks, training."""

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

import hybridpgm
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.generative.gan import MLPDiscriminator
from hybridpgm.infer.adversarial import AAVAE, adversarial_optim
from tests import generator_contract as contract
from tests.infer.adversarial.conftest import assert_finite_history
from tests.keyword_checks import assert_renamed


def make(x_dim=6, **kwargs):
    torch.manual_seed(0)
    return AAVAE(hybridpgm.VAE(x_dim, z_dim=2, hidden=(8,)), MLPDiscriminator(x_dim, (8,)), **kwargs)


def binary(n=5, d=6, seed=0):
    return torch.bernoulli(torch.full((n, d), 0.5), generator=torch.Generator().manual_seed(seed))


def test_elbo_is_the_pyro_elbo():
    aavae = make()
    x = binary()
    pyro.set_rng_seed(1)
    ours = aavae.elbo(x).sum()
    pyro.set_rng_seed(1)
    theirs = -Trace_ELBO().differentiable_loss(aavae.vae.model, aavae.vae.guide, x)
    assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("normalize", [True, False])
def test_weights_are_reversed_posterior(normalize):
    aavae = make(normalize_weights=normalize)
    x = binary(7)
    w = aavae.weights(x)
    q_real = torch.sigmoid(aavae.discriminator(x))  # q^r(0|x) = q(1|x)
    expected = q_real / q_real.mean() if normalize else q_real
    assert torch.allclose(w, expected, atol=1e-6) and not w.requires_grad


def test_generator_loss_is_weighted_elbo():
    aavae = make(fake_weight=0.0, normalize_weights=False)
    x = binary(7)
    pyro.set_rng_seed(2)
    loss = aavae.loss("generator", x)
    pyro.set_rng_seed(2)
    expected = -(torch.sigmoid(aavae.discriminator(x)).detach() * aavae.elbo(x)).mean()
    assert torch.allclose(loss, expected, atol=1e-6)


def test_players():
    aavae = make()
    players = {k: {id(p) for p in v} for k, v in aavae.players().items()}
    assert players["generator"] == {id(p) for p in aavae.vae.parameters()}
    assert players["discriminator"] == {id(p) for p in aavae.discriminator.parameters()}
    assert aavae.schedule == ["discriminator", "generator"]


def test_bad_configuration_and_data():
    with pytest.raises(ModelSpecError, match=r"\(6,\).*\(5,\)"):
        AAVAE(hybridpgm.VAE(6, z_dim=2, hidden=(8,)), MLPDiscriminator(5))
    with pytest.raises(ModelSpecError, match="hybridpgm.VAE"):
        AAVAE(torch.nn.Linear(3, 3), MLPDiscriminator(3))
    with pytest.raises(DataError, match=r"\(batch, 6\)"):
        make().loss("generator", torch.zeros(3, 4))


def test_trains_without_nan_on_digits():
    from hybridpgm.data import load_dataset, training_data

    data = load_dataset("digits", binarize="static")
    torch.manual_seed(0)
    aavae = AAVAE(hybridpgm.VAE(64, z_dim=4, hidden=(32,)), MLPDiscriminator(64, (32,)))
    result = hybridpgm.fit(aavae, training_data(data), batch_size=64, max_steps=20, epochs=100, seed=0, progress=False,
                           device="cpu", optim=adversarial_optim())
    assert_finite_history(result)


def test_trains_without_nan_on_ring(ring):
    torch.manual_seed(0)
    aavae = AAVAE(hybridpgm.VAE(2, z_dim=2, hidden=(16,), likelihood="gaussian"), MLPDiscriminator(2, (16,)), k=2)
    result = hybridpgm.fit(aavae, ring, batch_size=64, max_steps=20, epochs=100, seed=0, progress=False, device="cpu",
                           optim=adversarial_optim())
    assert_finite_history(result)


def test_trains_a_float64_vae():
    torch.manual_seed(0)
    aavae = AAVAE(hybridpgm.VAE(4, z_dim=2, hidden=(5,)).double(), MLPDiscriminator(4, (5,)).double())
    assert aavae.sample(3).dtype == torch.float64
    x = torch.bernoulli(torch.full((8, 4), 0.5), generator=torch.Generator().manual_seed(0)).double()
    result = hybridpgm.fit(aavae, x, epochs=2, batch_size=4, optim=adversarial_optim(), progress=False,
                           device="cpu", seed=0)
    assert_finite_history(result)


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int64])
def test_data_of_an_exactly_convertible_dtype_gives_the_float_loss(dtype):
    """Before, AAVAE passed bool/uint8 data unconverted to the discriminator, which refused them (the VAE and
    the GAN accept them through fit)."""
    aavae = make()
    x = binary(7)
    for player in ("discriminator", "generator"):
        pyro.set_rng_seed(3)
        expected = aavae.loss(player, x)
        pyro.set_rng_seed(3)
        torch.testing.assert_close(aavae.loss(player, x.to(dtype)), expected, rtol=0, atol=0)
    result = hybridpgm.fit(aavae, x.to(dtype), batch_size=7, max_steps=1, progress=False, seed=0, device="cpu")
    assert_finite_history(result)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_data_that_is_not_finite_or_empty_is_named(bad):
    """Before, NaN data gave a NaN loss."""
    aavae = make()
    x = binary(5)
    x[2, 3] = bad
    for player in ("discriminator", "generator"):
        with pytest.raises(DataError, match=r"AAVAE data \(shape \(5, 6\)\) holds 1 NaN/inf value\(s\), the first "
                                            r"in row 2"):
            aavae.loss(player, x)
    with pytest.raises(DataError, match=r"AAVAE got an empty batch \(shape \(0, 6\)\)"):
        aavae.loss("generator", torch.zeros(0, 6))
    with pytest.raises(DataError, match=r"AAVAE data has dtype torch.float64.*torch.float32"):
        aavae.loss("discriminator", binary(5).double())


def test_normalized_weights_make_the_loss_not_decomposable():
    """Before, AAVAE(normalize_weights=True) divided the weights by their mean over whatever (micro-)batch it got
    but did not say so: fit(accumulate=2) silently trained another update."""
    from hybridpgm.errors import ConfigError

    assert make(normalize_weights=True).decomposable is False
    assert make(normalize_weights=False).decomposable is True
    x = binary(8)
    with pytest.raises(ConfigError, match="AAVAE is not decomposable.*accumulate=2"):
        hybridpgm.fit(make(normalize_weights=True), x, batch_size=8, max_steps=1, accumulate=2, progress=False,
                      seed=0, device="cpu")
    result = hybridpgm.fit(make(normalize_weights=False), x, batch_size=8, max_steps=1, accumulate=2, progress=False,
                           seed=0, device="cpu")
    assert_finite_history(result)


@pytest.mark.parametrize("value", ["no", "False", None, 0, 1])
def test_normalize_weights_must_be_a_bool(value):
    """Before, any truthy value ("no" included) normalized the weights."""
    from hybridpgm.errors import ConfigError

    with pytest.raises(ConfigError, match=f"AAVAE normalize_weights must be True or False, got {value!r}"):
        make(normalize_weights=value)


class _ThreeLogits(torch.nn.Module):
    def forward(self, x):
        return x[:, :3]


def test_the_discriminator_is_dry_run_at_construction():
    """Before, a discriminator of another width (without in_shape), dtype, or output shape failed only at the first
    loss, with a raw matmul error (or not at all)."""
    vae = hybridpgm.VAE(3, z_dim=2, hidden=(4,))
    with pytest.raises(ModelSpecError, match=r"discriminator cannot take the VAE's data of shape \(3,\) and dtype "
                                             r"torch.float32"):
        AAVAE(vae, torch.nn.Linear(5, 1))
    with pytest.raises(ModelSpecError, match="VAE computes in torch.float64, the discriminator in torch.float32"):
        AAVAE(hybridpgm.VAE(3, z_dim=2, hidden=(4,)).double(), MLPDiscriminator(3, (4,)))
    with pytest.raises(ModelSpecError, match=r"one logit per example.*got \(2, 3\) for a batch of 2"):
        AAVAE(vae, _ThreeLogits())
    disc = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))
    running_mean = disc[1].running_mean.clone()
    AAVAE(vae, disc)  # the dry run leaves batch norm's statistics and the modules' modes as they were
    assert disc.training and torch.equal(disc[1].running_mean, running_mean)


@pytest.mark.parametrize("n", [-1, 2.5, "3"])
def test_bad_n_names_aavae_sample(n):
    from hybridpgm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^AAVAE\.sample num_samples must be a non-negative integer"):
        make().sample(n)


def test_the_sample_count_is_num_samples_and_n_warns():
    assert_renamed(make().sample, "n")


def test_repr_shows_the_weights_and_the_data_dimension():
    assert repr(make(k=2, fake_weight=0.5)) == "AAVAE(k=2, fake_weight=0.5, normalize_weights=True, x_dim=6)"


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_sample_takes_a_generator_and_passes_it_to_the_vae(likelihood):
    """``sample(generator=)`` (it took none): the VAE's draws come from the generator."""
    torch.manual_seed(0)
    aavae = AAVAE(hybridpgm.VAE(6, z_dim=2, hidden=(8,), likelihood=likelihood), MLPDiscriminator(6, (8,)))

    def call(**kw):
        return aavae.sample(4, **kw)

    contract.assert_generator_contract(call, "AAVAE.sample generator")


def test_a_vae_like_model_whose_sample_takes_no_generator_still_samples():
    """Guard (passes before and after): the duck-typed VAE's ``sample(n, mean=False)`` is called as before when no
    generator is given."""

    class _Plain(torch.nn.Module):
        def __init__(self, vae):
            super().__init__()
            self.inner, self.x_dim = vae, vae.x_dim
            self.model, self.guide = vae.model, vae.guide

        def sample(self, num_samples, mean=True):
            return self.inner.sample(num_samples, mean=mean)

    torch.manual_seed(0)
    aavae = AAVAE(_Plain(hybridpgm.VAE(6, z_dim=2, hidden=(8,))), MLPDiscriminator(6, (8,)))
    assert aavae.sample(3).shape == (3, 6)
