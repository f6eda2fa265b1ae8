"""Bad or edge-case input to the directed generative models raises a named hybridpgm error, not a torch one."""

import pyro
import pytest
import torch

from hybridpgm.errors import ConfigError, DataError, DeviceError, ModelSpecError
from hybridpgm.generative import (
    VAE, ConvDiscriminator, ConvGenerator, MLPDiscriminator, MLPGenerator, SBNGibbs, SigmoidBeliefNet, gan_networks)


@pytest.fixture
def x():
    return torch.bernoulli(torch.full((4, 6), 0.5), generator=torch.Generator().manual_seed(0))


def _elbo(model, guide, *args, **kwargs):
    pyro.set_rng_seed(0)
    return pyro.infer.Trace_ELBO().differentiable_loss(model, guide, *args, **kwargs)


@pytest.mark.parametrize("build, match", [
    (lambda: VAE(6.0, 2, (8,)), r"VAE x_dim must be a positive integer, got 6.0"),
    (lambda: VAE(6, True, (8,)), r"VAE z_dim must be a positive integer, got True"),
    (lambda: VAE(6, 2, (8.0,)), r"VAE hidden\[0\] must be a positive integer, got 8.0"),
    (lambda: VAE(6, 2, 8), r"VAE hidden must be a sequence of positive integers, got 8"),
    (lambda: VAE(6, 2, (8,), min_scale=-1.0), r"VAE min_scale must be a finite number >= 0, got -1.0"),
    (lambda: SigmoidBeliefNet(6), r"SigmoidBeliefNet layer_sizes must be a sequence of positive integers, got 6"),
    (lambda: MLPGenerator((4, 2), 6), r"MLPGenerator noise_dim must be a positive integer, got \(4, 2\)"),
    (lambda: MLPGenerator(True, 6), r"MLPGenerator noise_dim must be a positive integer, got True"),
    (lambda: MLPGenerator(4, 2.0), r"MLPGenerator out_shape must be a positive integer, got 2.0"),
    (lambda: MLPGenerator(4, 6, (8.0,)), r"MLPGenerator hidden\[0\] must be a positive integer, got 8.0"),
    (lambda: MLPDiscriminator(6, out_dim=True), r"MLPDiscriminator out_dim must be a positive integer, got True"),
    (lambda: ConvGenerator(4, 8, width=0), r"ConvGenerator width must be a positive integer, got 0"),
    (lambda: ConvGenerator(4, 8, out_activation="bad"), r"unknown ConvGenerator out_activation 'bad'"),
    (lambda: ConvDiscriminator(8, out_dim=0), r"ConvDiscriminator out_dim must be a positive integer, got 0"),
    (lambda: gan_networks("conv", 63, image_shape=8), r"image_shape \(8, 8\) gives 64 pixels"),
])
def test_bad_constructor_arguments_are_model_spec_errors(build, match):
    with pytest.raises(ModelSpecError, match=match):
        build()


def test_vae_empty_batch_and_counts(x):
    vae = VAE(6, 2, (8,))
    with pytest.raises(DataError, match=r"VAE argument 'x' is an empty batch \(shape \(0, 6\)\)"):
        _elbo(vae.model, vae.guide, x[:0])
    with pytest.raises(DataError, match=r"VAE argument 'x' is an empty batch"):
        vae.direct_elbo_loss(x[:0])
    assert vae.log_likelihood(x[:0], 3).shape == (0,)
    assert vae.log_weights(x[:0], 3).shape == (3, 0)
    for n in (0, 2.5, True):
        with pytest.raises(ConfigError, match=rf"VAE num_samples \(importance samples\) must be a positive integer, "
                                              rf"got {n}"):
            vae.log_likelihood(x, n)
    with pytest.raises(ConfigError, match=r"VAE chunk_size must be a positive integer, got 0"):
        vae.log_likelihood(x, 3, chunk_size=0)
    for rows in (2.5, True, "3"):
        with pytest.raises(DataError, match=r"num_data, the number of rows to generate, must be a positive integer"):
            vae.model(None, rows)


def test_data_on_another_device_is_a_device_error(x):
    meta = x.to("meta")
    vae, sbn = VAE(6, 2, (8,)), SigmoidBeliefNet([6, 3])
    for call in (vae.reconstruct, lambda d: _elbo(vae.model, vae.guide, d), sbn.log_likelihood,
                 MLPDiscriminator(6, (8,))):
        with pytest.raises(DeviceError, match=r"is on device meta, the model's parameters on cpu"):
            call(meta)


def test_sbn_batches_and_options(x):
    sbn = SigmoidBeliefNet([6, 3, 2])
    with pytest.raises(DataError, match=r"SigmoidBeliefNet site 'x' got an empty batch"):
        _elbo(sbn.model, sbn.guide, x[:0])
    assert sbn.log_likelihood(x[:0], 3).shape == (0,)
    assert sbn.exact_log_likelihood(x[:0]).shape == (0,)
    # any batch shape is taken (tests/generative/test_sbn_batch_shapes.py); a wrong width names the caller's shape
    with pytest.raises(DataError, match=r"SigmoidBeliefNet.log_likelihood: x has shape \(2, 4, 5\), expected "
                                        r"\(\.\.\., 6\)"):
        sbn.log_likelihood(x[:, :5].expand(2, 4, 5), 3)
    for bad in (0, 2.5, -1, True):
        with pytest.raises(ConfigError, match=rf"SigmoidBeliefNet.model batch_size must be a positive integer, "
                                              rf"got {bad}"):
            sbn.model(None, batch_size=bad)
    with pytest.raises(DataError, match=r"num_data must be an int \(the full data size\), got float"):
        sbn.model(x, num_data=5.5)
    with pytest.raises(DataError, match=r"SigmoidBeliefNet got a tensor of shape \(4,\).*as num_data"):
        sbn.model(x, num_data=torch.arange(4))
    for t in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match=rf"SigmoidBeliefNet temperature must be a finite number > 0, got {t}"):
            sbn.guide(x, temperature=t)


def test_sbn_refuses_an_x_labels_batch_by_name(x):
    """An objective unpacks a batch (x, labels) into model(x, labels): a DataError, not a TypeError."""
    sbn = SigmoidBeliefNet([6, 3])
    labels = torch.arange(4)
    for method in ("model", "guide"):
        with pytest.raises(DataError, match=rf"SigmoidBeliefNet.{method}\(x, \.\.\.\) got 1 positional argument\(s\) "
                                            r"after x, the first a tensor of shape \(4,\) and dtype torch.int64: "
                                            r"was the batch an \(x, labels\) tuple\?"):
            getattr(sbn, method)(x, labels)
    with pytest.raises(DataError, match=r"the first the int 100: .*keywords \(batch_size=\.\.\., num_data=\.\.\."):
        sbn.model(x, 100)  # num_data given by position
    assert torch.isfinite(_elbo(sbn.model, sbn.guide, x, num_data=100))


def test_sbn_gibbs_settings_and_states(x):
    gibbs = SBNGibbs(SigmoidBeliefNet([6, 3, 2]))
    for kwargs, match in [({"num_samples": 2.5}, r"num_samples must be a positive integer, got 2.5"),
                          ({"warmup": True}, r"warmup must be an integer >= 0, got True"),
                          ({"num_chains": 1.5}, r"num_chains must be a positive integer, got 1.5"),
                          ({"thin": 1.5}, r"thin must be a positive integer, got 1.5"),
                          ({"seed": 1.5}, r"seed must be an integer, got 1.5")]:
        with pytest.raises(ConfigError, match=r"SBNGibbs.sample " + match):
            gibbs.sample(x, **{"num_samples": 2, "warmup": 1, **kwargs})
    hs = [torch.zeros(4, 3), torch.zeros(4, 2)]
    for layer, unit, match in [(0, 0, r"layer must be a positive integer, got 0"), (3, 0, r"layer must be in 1..2"),
                               (1, 3, r"unit must be in 0..2 for layer h1, got 3"),
                               (1, -1, r"unit must be an integer >= 0, got -1")]:
        with pytest.raises(ConfigError, match=r"SBNGibbs.full_conditional " + match):
            gibbs.full_conditional(x, hs, layer, unit)
    with pytest.raises(DataError, match=r"SBNGibbs.sweep: hs\[0\] \(layer h1\) must have shape \[\.\.\., B, 3\]"):
        gibbs.sweep(x, [torch.zeros(4, 4), torch.zeros(4, 2)])
    with pytest.raises(DataError, match=r"SBNGibbs.full_conditional: hs must be a list of 2 hidden states"):
        gibbs.full_conditional(x, hs[:1], 1, 0)


def test_gan_networks_check_their_inputs():
    gen, disc = MLPGenerator(4, 6, (8,)), MLPDiscriminator(6, (8,))
    with pytest.raises(DataError, match=r"MLPGenerator noise 'z' must have shape \(batch, 4\), got \(3, 5\)"):
        gen(torch.randn(3, 5))
    with pytest.raises(DataError, match=r"MLPDiscriminator input 'x' has dtype torch.float64, the network computes "
                                        r"in torch.float32"):
        disc(torch.randn(3, 6, dtype=torch.float64))
    assert disc(torch.randn(0, 6)).shape == (0,)
    conv_gen, conv_disc = ConvGenerator(4, 8, 4).eval(), ConvDiscriminator(8, 4)
    with pytest.raises(DataError, match=r"ConvDiscriminator input 'x' must have shape \(batch, 64\), got \(3, 128\)"):
        conv_disc(torch.randn(3, 128))  # used to be read as 6 images
    x = torch.rand(2, 3, 64)
    torch.testing.assert_close(conv_disc(x), conv_disc(x.reshape(6, 64)).reshape(2, 3))
    assert conv_disc(x[0, 0]).shape == ()
    assert conv_gen(torch.randn(2, 3, 4)).shape == (2, 3, 64)
