"""Generators and discriminators of hybridpgm.generative.gan: shapes, checks, pairing with the objectives."""

import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.generative.gan import ConvDiscriminator, ConvGenerator, MLPDiscriminator, MLPGenerator, gan_networks
from hybridpgm.infer.adversarial import GAN


@pytest.mark.parametrize("out_shape", [(2,), (64,), (3, 4)])
def test_mlp_shapes(out_shape):
    gen, disc = MLPGenerator(5, out_shape, (8,)), MLPDiscriminator(out_shape, (8,))
    x = gen(torch.randn(7, 5))
    assert x.shape == (7, *out_shape) and disc(x).shape == (7,)
    assert gen.noise_dim == 5 and gen.out_shape == disc.in_shape == tuple(out_shape)
    assert MLPDiscriminator(out_shape, (8,), out_dim=3)(x).shape == (7, 3)


def test_sigmoid_output_in_unit_interval():
    x = MLPGenerator(5, 64, (8,), out_activation="sigmoid")(10 * torch.randn(50, 5))
    assert bool(((x >= 0) & (x <= 1)).all())


@pytest.mark.parametrize("image_shape", [(8, 8), (28, 28), 8])
def test_conv_shapes(image_shape):
    gen, disc = ConvGenerator(6, image_shape, width=4), ConvDiscriminator(image_shape, width=4)
    pixels = gen.out_shape[0]
    assert pixels == (64 if image_shape in [(8, 8), 8] else 784)
    x = gen(torch.randn(3, 6))
    assert x.shape == (3, pixels) and bool(((x >= 0) & (x <= 1)).all()) and disc(x).shape == (3,)
    GAN(gen, disc)  # the objective accepts the pair


@pytest.mark.parametrize("bad", [(10, 10), (7, 8), (8, 8, 8)])
def test_conv_rejects_bad_image_shape(bad):
    with pytest.raises(ModelSpecError, match="divisible by 4"):
        ConvGenerator(4, bad)
    with pytest.raises(ModelSpecError, match="divisible by 4"):
        ConvDiscriminator(bad)


@pytest.mark.parametrize("bad", [0, (0,), (2, -1)])
def test_bad_shapes(bad):
    with pytest.raises(ModelSpecError):
        MLPGenerator(4, bad)
    with pytest.raises(ModelSpecError):
        MLPDiscriminator(bad)


def test_gan_networks():
    gen, disc = gan_networks("mlp", 2, noise_dim=3, hidden=(8,))
    assert GAN(gen, disc).event_shape == (2,)
    gen, disc = gan_networks("conv", 64, image_shape=(8, 8), width=4)
    assert GAN(gen, disc).event_shape == (64,)
    with pytest.raises(ModelSpecError, match="784 pixels"):
        gan_networks("conv", 64, image_shape=(28, 28))
    with pytest.raises(ModelSpecError, match="image_shape"):
        gan_networks("conv", 64)
    with pytest.raises(ModelSpecError, match="'mlp' or 'conv'"):
        gan_networks("rnn", 2)
    with pytest.raises(ModelSpecError, match=r"\(2,\).*\(3,\)"):
        GAN(gan_networks("mlp", 2)[0], gan_networks("mlp", 3)[1])


@pytest.mark.parametrize("rows", [5, 8])  # 8 = the hidden width: BatchNorm1d read it as channels, silently
def test_batch_norm_generator_takes_several_batch_dimensions_as_one_batch_of_rows(rows):
    """Noise ``S x B x noise_dim`` (a particle plate, Predictive) gives, in train and eval mode, the samples of
    the flattened ``S*B x noise_dim`` noise, and the batch statistics are those of all ``S*B`` rows."""
    import copy

    torch.manual_seed(0)
    gen = MLPGenerator(3, (2, 2), hidden=(8,), batch_norm=True)
    ref = copy.deepcopy(gen)
    z = torch.randn(4, rows, 3)
    flat = z.reshape(4 * rows, 3)
    seen = []
    hook = gen.net[1].register_forward_hook(lambda module, args, out: seen.append(out))
    got = gen(z)  # train mode: batch statistics, running statistics updated
    hook.remove()
    assert got.shape == (4, rows, 2, 2)
    # normalised over all rows: mean 0 and (biased) variance 1 per hidden unit, over S and B together
    (normed,) = seen
    assert normed.shape == (4 * rows, 8)
    torch.testing.assert_close(normed.mean(0), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(normed.var(0, unbiased=False), torch.ones(8), atol=1e-3, rtol=0)
    torch.testing.assert_close(got, ref(flat).reshape(4, rows, 2, 2))
    bn = gen.net[1]
    assert isinstance(bn, torch.nn.BatchNorm1d)
    with torch.no_grad():
        h = gen.net[0](flat)  # the pre-normalisation activations of all S*B rows
    torch.testing.assert_close(bn.running_mean, 0.1 * h.mean(0))
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * h.var(0, unbiased=True))
    torch.testing.assert_close(bn.running_mean, ref.net[1].running_mean)

    gen.eval(), ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(gen(z), ref(flat).reshape(4, rows, 2, 2))
        torch.testing.assert_close(gen(z[0, 0]), ref(flat[:1])[0])  # one noise vector, no batch dimension


def test_batch_norm_generator_names_a_training_batch_of_one_row():
    """A last incomplete batch of one row in fit reaches the generator as noise of one row; BatchNorm1d cannot
    take its statistics (torch's ValueError named no model and no step)."""
    import hybridpgm
    from hybridpgm.errors import ConfigError

    gen = MLPGenerator(2, 2, hidden=(8,), batch_norm=True)
    x = torch.randn(5, 2)
    with pytest.raises(ConfigError, match=r"MLPGenerator\(batch_norm=True\) got noise of one row "
                                          r"\(training data, step 0, .*drop_last=True"):
        hybridpgm.fit(GAN(gen, MLPDiscriminator(2, hidden=(8,))), x, epochs=1, batch_size=1, shuffle=False,
                      progress=False, seed=0)
    # an epoch's last batch of one: refused at step 0 by fit (hybridpgm/train/one_row_batches.py), at step 1 before
    with pytest.raises(ConfigError, match=r"fit: the data's 5 examples in batches of batch_size=4 end each epoch "
                                          r"with a batch of 1 row, but batch norm layer 'generator\.net\.1'"):
        hybridpgm.fit(GAN(gen, MLPDiscriminator(2, hidden=(8,))), x, epochs=1, batch_size=4, shuffle=False,
                      progress=False, seed=0)
    gen.eval()  # the running statistics serve a single row
    assert gen(torch.randn(1, 2)).shape == (1, 2)


def test_a_conv_generator_names_noise_of_one_row_in_training_mode():
    """Before, BatchNorm's own ValueError ('Expected more than 1 value per channel when training')."""
    from hybridpgm.errors import ConfigError

    gen = ConvGenerator(3, (8, 8))
    with pytest.raises(ConfigError, match=r"ConvGenerator got noise of one row \(shape \(1, 3\)\)"):
        gen(torch.randn(1, 3))
    assert gen.eval()(torch.randn(1, 3)).shape == (1, 64)
