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
from tests.keyword_checks import assert_renamed


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


@pytest.mark.slow
def test_recovers_digit_classes_better_than_chance(digits):
    """Unsupervised: the categorical code's assignments of real test digits beat chance (0.1) clearly.  A long
    statistical check (500 training steps), so ``slow``: the default run keeps InfoGAN's training through
    ``fit`` (:func:`test_trains_without_nan_on_ring`) and its information term
    (:func:`test_losses_add_the_information_term`)."""
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


class _NoParamGenerator(nn.Module):
    noise_dim = 8

    def forward(self, z):
        return z[:, :2]


def test_a_generator_without_parameters_takes_the_other_networks_dtype():
    """Before, construction raised StopIteration (the codes' dtype was read from the generator's first parameter)."""
    torch.manual_seed(0)
    disc, posterior = MLPDiscriminator(2, (4,)).double(), MLPDiscriminator(2, (4,), out_dim=5).double()
    info = InfoGAN(_NoParamGenerator(), disc, posterior, num_categories=3, num_continuous=2)
    inputs, cat, cont = info.sample_codes(4)
    assert inputs.dtype == cont.dtype == torch.float64 and info.sample(4).shape == (4, 2)
    assert torch.isfinite(info.loss("generator", torch.randn(4, 2, dtype=torch.float64)))


def test_code_log_prob_names_bad_codes():
    """Before, a category out of [0, C) raised torch's raw RuntimeError and continuous codes of another width
    broadcast silently."""
    from hybridpgm.errors import DataError
    from hybridpgm.train.deferred_checks import deferring_checks

    torch.manual_seed(0)
    info = make(cats=3, cont=2)
    x = torch.randn(4, 2)
    for bad in (3, -1):
        with pytest.raises(DataError, match=f"cat must lie in 0..2 \\(num_categories=3\\); row 2 holds {bad}"):
            info.code_log_prob(x, torch.tensor([0, 1, bad, 2]), torch.zeros(4, 2))
    with deferring_checks() as pending:  # inside fit the range check waits for the step's host read
        assert torch.isfinite(info.code_log_prob(x, torch.tensor([0, 1, 5, 2]), torch.zeros(4, 2))).all()
    assert not bool(pending.all_passed(torch.device("cpu")))
    with pytest.raises(DataError, match=r"cont must be floating codes of shape \(4, 2\).*got shape \(4, 1\)"):
        info.code_log_prob(x, torch.tensor([0, 1, 1, 2]), torch.zeros(4, 1))
    with pytest.raises(DataError, match=r"cont must be floating codes of shape \(4, 2\).*got shape \(2\,\)"):
        info.code_log_prob(x, torch.tensor([0, 1, 1, 2]), torch.zeros(2))
    with pytest.raises(DataError, match=r"cat must be 4 integer categories.*dtype torch.float32"):
        info.code_log_prob(x, torch.tensor([0.0, 1, 1, 2]), torch.zeros(4, 2))
    with pytest.raises(DataError, match=r"x must have shape \(batch, 2\), got \(4, 3\)"):
        info.code_log_prob(torch.randn(4, 3), torch.tensor([0, 1, 1, 2]), torch.zeros(4, 2))


def test_infer_codes_runs_the_code_posterior_in_eval_mode_on_checked_data():
    """Before, infer_codes ran in training mode (batch norm moved its statistics; one row raised ValueError) and
    passed data of the wrong width or dtype to the network unchecked."""
    from hybridpgm.errors import DataError

    torch.manual_seed(0)
    posterior = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.Linear(8, 5))
    info = InfoGAN(MLPGenerator(8, 2, (4,)), MLPDiscriminator(2, (4,)), posterior, num_categories=3, num_continuous=2)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(1)) * 3
    running_mean = posterior[1].running_mean.clone()
    probs, means = info.infer_codes(x)
    assert torch.equal(posterior[1].running_mean, running_mean) and posterior.training
    one_probs, one_means = info.infer_codes(x[:1])
    torch.testing.assert_close((one_probs, one_means), (probs[:1], means[:1]))
    with pytest.raises(DataError, match=r"shape \(batch, 2\).*got \(4, 3\)"):
        info.infer_codes(torch.randn(4, 3))
    with pytest.raises(DataError, match="InfoGAN data has dtype torch.float64"):
        info.infer_codes(torch.randn(4, 2, dtype=torch.float64))


@pytest.mark.parametrize("n", [-1, 2.5, "3"])
def test_bad_n_names_the_method_called(n):
    from hybridpgm.errors import ConfigError

    infogan = make()
    for call, name in [(infogan.generate, "generate"), (infogan.sample, "sample"),
                       (infogan.sample_codes, "sample_codes")]:
        with pytest.raises(ConfigError, match=rf"^InfoGAN\.{name} num_samples must be a non-negative integer"):
            call(n)


@pytest.mark.parametrize("method", ["sample_codes", "generate", "sample"])
def test_the_sample_count_is_num_samples_and_n_warns(method):
    torch.manual_seed(0)
    assert_renamed(getattr(make(), method), "n")


def test_repr_shows_the_codes_and_the_shapes():
    torch.manual_seed(0)
    assert repr(make(info_weight=0.5)) == ("InfoGAN(k=1, num_categories=4, num_continuous=2, info_weight=0.5, "
                                           "noise_dim=9, event_shape=(2,))")


def test_sample_codes_takes_a_random_number_generator():
    """``generator=`` makes the three draws a function of the generator's state and leaves torch's global stream
    alone; ``None`` draws from the global stream as before; a seed or the network in its place is refused."""
    info = make()
    torch.manual_seed(3)
    before = torch.get_rng_state()
    first = info.sample_codes(20, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), before)
    again = info.sample_codes(20, generator=torch.Generator().manual_seed(7))
    other = info.sample_codes(20, generator=torch.Generator().manual_seed(8))
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], other[0])
    torch.manual_seed(3)
    plain = info.sample_codes(20)
    torch.manual_seed(3)
    assert all(torch.equal(a, b) for a, b in zip(plain, info.sample_codes(20, generator=None)))
    for wrong in (7, info.generator):
        with pytest.raises(hybridpgm.errors.ConfigError, match="sample_codes generator"):
            info.sample_codes(4, generator=wrong)
