"""q_phi(y|x), its reversal, the schedule, players and the construction checks."""

import re

import pytest
import torch
from torch import nn

from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.infer.adversarial import GAN
from hybridpgm.infer.adversarial.base import check_k, log_q_from_logits, weighted_mean
from tests import generator_contract as contract
from tests.infer.adversarial.conftest import tiny_pair
from tests.keyword_checks import assert_renamed


@pytest.mark.parametrize("logit", [-50.0, -2.0, 0.0, 0.7, 50.0])
def test_log_q_matches_sigmoid(logit):
    t = torch.tensor([logit], dtype=torch.float64)
    p1 = torch.sigmoid(t)
    assert torch.allclose(log_q_from_logits(t, 1).exp(), p1, rtol=1e-12, atol=0)
    assert torch.allclose(log_q_from_logits(t, 0).exp(), torch.sigmoid(-t), rtol=1e-12, atol=0)
    assert torch.isfinite(log_q_from_logits(t, 0)).all() and torch.isfinite(log_q_from_logits(t, 1)).all()


def test_reversal_swaps_labels():
    torch.manual_seed(0)
    gan = GAN(*tiny_pair())
    x = torch.randn(7, 2)
    y = torch.randint(2, (7,)).float()
    assert torch.allclose(gan.log_qr(x, y), gan.log_q(x, 1 - y))
    assert torch.allclose(gan.log_q(x, 1).exp() + gan.log_q(x, 0).exp(), torch.ones(7))


def test_weighted_mean():
    v = torch.tensor([1.0, 2.0, 4.0])
    assert weighted_mean(v) == pytest.approx(7 / 3)
    assert weighted_mean(v, torch.tensor([0.5, 0.5, 0.0])) == pytest.approx(1.5)


@pytest.mark.parametrize("k", [0, -1, 1.5, True, "2"])
def test_bad_k_raises(k):
    with pytest.raises(ConfigError, match="k must be"):
        check_k(k)
    with pytest.raises(ConfigError, match="k must be"):
        GAN(*tiny_pair(), k=k)


@pytest.mark.parametrize("k", [1, 3])
def test_schedule_and_players(k):
    gan = GAN(*tiny_pair(), k=k)
    assert gan.schedule == ["discriminator"] * k + ["generator"]
    players = gan.players()
    ids = {name: {id(p) for p in params} for name, params in players.items()}
    assert ids["discriminator"] == {id(p) for p in gan.discriminator.parameters()}
    assert ids["generator"] == {id(p) for p in gan.generator.parameters()}
    assert ids["generator"].isdisjoint(ids["discriminator"])


def test_shape_mismatch_names_shapes():
    gen, _ = tiny_pair(dim=2)
    _, disc = tiny_pair(dim=3)
    with pytest.raises(ModelSpecError, match=r"\(2,\).*\(3,\)"):
        GAN(gen, disc)


def test_shape_mismatch_without_in_shape_attribute():
    gen, _ = tiny_pair(dim=2)
    with pytest.raises(ModelSpecError, match=r"shape \(2,\)"):
        GAN(gen, nn.Linear(5, 1), noise_dim=4)


def test_discriminator_must_return_one_logit():
    gen, _ = tiny_pair(dim=2)
    with pytest.raises(ModelSpecError, match="one logit"):
        GAN(gen, nn.Linear(2, 3))


def test_missing_noise_dim():
    with pytest.raises(ModelSpecError, match="noise_dim"):
        GAN(nn.Linear(4, 2), nn.Linear(2, 1))
    gan = GAN(nn.Linear(4, 2), nn.Linear(2, 1), noise_dim=4)  # plain modules work with noise_dim=
    assert gan.event_shape == (2,) and gan.sample(5).shape == (5, 2)


def test_bad_data_and_player():
    gan = GAN(*tiny_pair())
    with pytest.raises(DataError, match=r"\(batch, 2\).*\(4, 3\)"):
        gan.loss("generator", torch.zeros(4, 3))
    with pytest.raises(ConfigError, match="GAN has players 'discriminator' and 'generator', got 'critic'"):
        gan.loss("critic", torch.zeros(4, 2))
    assert torch.isfinite(gan.loss("discriminator", (torch.zeros(4, 2), torch.zeros(4))))  # labels ignored


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.float16])
def test_data_of_an_exactly_convertible_dtype_gives_the_float_loss(dtype):
    torch.manual_seed(0)
    gan = GAN(*tiny_pair())
    x = torch.randint(0, 3, (6, 2)).float()
    for player in ("discriminator", "generator"):
        torch.manual_seed(1)
        expected = gan.loss(player, x)
        torch.manual_seed(1)
        torch.testing.assert_close(gan.loss(player, x.to(dtype)), expected, rtol=0, atol=0)


def test_float64_data_for_float32_networks_is_refused_by_name():
    gan = GAN(*tiny_pair())
    with pytest.raises(DataError, match=r"GAN data has dtype torch.float64.*torch.float32"):
        gan.loss("discriminator", torch.zeros(4, 2, dtype=torch.float64))


def test_integer_scalars_pass_as_k_and_noise_dim():
    import numpy as np

    assert check_k(np.int64(2)) == 2 and type(check_k(np.int64(2))) is int
    gan = GAN(nn.Linear(4, 2), nn.Linear(2, 1), noise_dim=np.int64(4), k=np.int64(2))
    assert gan.noise_dim == 4 and gan.sample(3).shape == (3, 2)
    with pytest.raises(ModelSpecError, match="noise_dim must be a positive integer.*got True"):
        GAN(nn.Linear(1, 2), nn.Linear(2, 1), noise_dim=True)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_real_data_that_is_not_finite_is_named(bad):
    """Before, the discriminator's loss was NaN and the generator's ignored the bad row."""
    gan = GAN(*tiny_pair())
    x = torch.randn(5, 2)
    x[3, 1] = bad
    for player in ("discriminator", "generator"):
        with pytest.raises(DataError, match=r"GAN data \(shape \(5, 2\)\) holds 1 NaN/inf value\(s\), the first in "
                                            r"row 3"):
            gan.loss(player, x)


class _Generator(nn.Module):
    def __init__(self, noise_dim=6, dim=2):
        super().__init__()
        self.noise_dim, self.layer = noise_dim, nn.Linear(noise_dim, dim)

    def forward(self, z):
        return self.layer(z)


class _Head(nn.Module):
    """A head on a shared body: InfoGAN's code posterior shares the discriminator's layers (Chen et al., Sec. 6)."""

    def __init__(self, body, out):
        super().__init__()
        self.body, self.head = body, nn.Linear(4, out)

    def forward(self, x):
        out = self.head(self.body(x))
        return out.squeeze(-1) if out.shape[-1] == 1 else out


def test_parameters_shared_within_a_player_are_listed_and_stepped_once():
    """Before, the discriminator's body was listed twice (by the discriminator and by the code posterior):
    torch warned of duplicate parameters and SGD moved the shared weights by twice -lr * grad."""
    import warnings

    from hybridpgm.infer.adversarial import InfoGAN

    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(2, 4), nn.Tanh())
    info = InfoGAN(_Generator(), _Head(body, 1), _Head(body, 3), num_categories=2, num_continuous=1)
    disc = info.players()["discriminator"]
    expected = [*info.discriminator.parameters(), info.module["code_posterior"].head.weight,
                info.module["code_posterior"].head.bias]
    assert [id(p) for p in disc] == [id(p) for p in expected]  # each once, in the order first met
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "duplicate parameters" warning fails the test
        opt = torch.optim.SGD(disc, lr=0.1)
    w0 = body[0].weight.detach().clone()
    torch.manual_seed(1)
    loss = info.loss("discriminator", torch.randn(8, 2))
    opt.zero_grad()
    loss.backward(inputs=disc)
    grad = body[0].weight.grad.clone()
    assert float(grad.abs().max()) > 0
    opt.step()
    torch.testing.assert_close(body[0].weight.detach(), w0 - 0.1 * grad)


def test_a_parameter_of_both_players_is_refused_by_name():
    shared = nn.Linear(2, 2)
    gen = nn.Sequential(nn.Linear(4, 2), shared)
    disc = nn.Sequential(shared, nn.Linear(2, 1))
    gan = GAN(gen, disc, noise_dim=4)
    with pytest.raises(ConfigError, match=r"GAN: 2 parameter\(s\) belong to both the 'discriminator' and the "
                                          r"'generator' players \(generator.1.weight, generator.1.bias, "
                                          r"discriminator.0.weight, discriminator.0.bias\)"):
        gan.players()


def _bn_objectives():
    from hybridpgm.generative.gan import MLPDiscriminator, MLPGenerator
    from hybridpgm.infer.adversarial import IWGAN, InfoGAN

    return {
        "gan": lambda: GAN(MLPGenerator(4, 2, (8,), batch_norm=True), MLPDiscriminator(2, (8,))),
        "iwgan": lambda: IWGAN(MLPGenerator(4, 2, (8,), batch_norm=True), MLPDiscriminator(2, (8,)), num_samples=3),
        "infogan": lambda: InfoGAN(MLPGenerator(4 + 3 + 2, 2, (8,), batch_norm=True), MLPDiscriminator(2, (8,)),
                                   MLPDiscriminator(2, (8,), out_dim=5), num_categories=3, num_continuous=2),
    }


def _buffers(module):
    return {name: b.clone() for name, b in module.named_buffers()}


@pytest.mark.parametrize("name", ["gan", "iwgan", "infogan"])
def test_sample_in_training_mode_leaves_batch_norm_statistics(name):
    """``sample`` -- to look at or score samples, often in the training mode ``fit`` hands back -- normalises by the
    batch's statistics but does not count as a training batch: the running statistics, and so later eval-mode
    samples, stay as training left them (as ``VAE.sample``); the training losses' draw still updates them."""
    torch.manual_seed(0)
    objective = _bn_objectives()[name]()
    assert objective.generator.training
    before = _buffers(objective.generator)
    torch.manual_seed(1)
    drawn = objective.sample(64)
    after = _buffers(objective.generator)
    assert before.keys() == after.keys() and any("running_mean" in k for k in before)
    assert all(torch.equal(before[k], after[k]) for k in before), name
    assert not drawn.requires_grad
    torch.manual_seed(1)
    trained = objective.generate(64)  # the same noise: the same batch-statistics samples, differentiable
    assert trained.requires_grad and torch.equal(drawn, trained.detach())
    assert not torch.equal(_buffers(objective.generator)["net.1.running_mean"], before["net.1.running_mean"])
    moved = _buffers(objective.generator)
    objective.loss("generator", torch.randn(16, 2))  # training moves them
    assert not torch.equal(_buffers(objective.generator)["net.1.running_mean"], moved["net.1.running_mean"])


@pytest.mark.parametrize("n", [-1, 2.5, True, "3"])
def test_bad_n_names_the_method_called(n):
    """A bad ``num_samples`` is reported under the name of the method the caller used: ``generate`` (the training
    losses' draw) and ``sample`` each name themselves, not each other."""
    torch.manual_seed(0)
    gan = GAN(*tiny_pair())
    with pytest.raises(ConfigError, match=r"^GAN\.generate num_samples must be a non-negative integer"):
        gan.generate(n)
    with pytest.raises(ConfigError, match=r"^GAN\.sample num_samples must be a non-negative integer"):
        gan.sample(n)


@pytest.mark.parametrize("method", ["noise", "generate", "sample"])
def test_the_sample_count_is_num_samples_and_n_warns(method):
    """``num_samples`` as in every other family (it was ``n`` alone: ``gan.sample(num_samples=3)`` raised a
    TypeError); ``n=`` still works for a release, with a FutureWarning."""
    torch.manual_seed(0)
    assert_renamed(getattr(GAN(*tiny_pair()), method), "n")


def test_repr_shows_the_class_k_and_the_shapes():
    """It was the default ``<...GAN object at 0x...>``."""
    torch.manual_seed(0)
    assert repr(GAN(*tiny_pair(noise=4), k=2)) == "GAN(k=2, noise_dim=4, event_shape=(2,))"


def test_repr_of_a_subclass_is_bounded_and_names_its_own_settings():
    from hybridpgm.infer.adversarial import AdversarialGame

    class Game(AdversarialGame):
        _SETTINGS = ("weights",)

        def __init__(self):
            self.weights = list(range(1000))
            super().__init__(nn.ModuleDict({"discriminator": nn.Linear(2, 1)}), k=3)

    text = repr(Game())
    assert text.startswith("Game(k=3, weights=[0, 1, 2,") and text.endswith("...)") and len(text) < 80


def test_a_game_without_its_discriminator_is_refused_at_construction_by_name():
    """A module without a ``"discriminator"`` entry failed with a bare ``KeyError: 'discriminator'``, and a name of
    ``discriminator_modules`` that is not in the module with a bare ``KeyError`` only when ``players()`` ran."""
    from hybridpgm.infer.adversarial import AdversarialGame, AdversarialObjective

    with pytest.raises(ModelSpecError, match=r"^AdversarialGame: its module has no network named 'discriminator' "
                                             r"\(it holds 'critic', 'generator'\): 'discriminator' gives the logits"):
        AdversarialGame(nn.ModuleDict({"critic": nn.Linear(2, 1), "generator": nn.Linear(1, 2)}))
    with pytest.raises(ModelSpecError, match=r"^AdversarialGame: its module has no network named 'posterior' "
                                             r"\(it holds 'discriminator'\)"):
        AdversarialGame(nn.ModuleDict({"discriminator": nn.Linear(2, 1)}), discriminator_modules=["posterior"])
    with pytest.raises(ModelSpecError, match=r"^AdversarialObjective: its module has no network named 'head' "
                                             r"\(it holds 'generator', 'discriminator', 'extra'\)"):
        AdversarialObjective(*tiny_pair(), modules={"extra": nn.Linear(2, 2)}, discriminator_modules=["head"])
    game = AdversarialGame(nn.ModuleDict({"discriminator": nn.Linear(2, 1), "head": nn.Linear(2, 1)}),
                           discriminator_modules=["head"])
    assert [len(game.players()[p]) for p in ("discriminator", "generator")] == [4, 0]


# -- sample(generator=): the random-number generator, not the network -------------------------------------------
class _OwnNoiseGAN(GAN):
    """A subclass that draws its own noise in ``generate(self, n)`` (uniform, by torch's global stream)."""

    def generate(self, n):
        return self.generator(torch.rand(n, self.noise_dim) * 2 - 1)


def _sampling_objectives():
    from hybridpgm.generative.gan import MLPDiscriminator
    from hybridpgm.infer.adversarial import IWGAN, InfoGAN

    dropout_net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))  # in training mode
    return {
        "gan": lambda: GAN(*tiny_pair()),
        "iwgan": lambda: IWGAN(*tiny_pair(), num_samples=3),
        "infogan": lambda: InfoGAN(*tiny_pair(noise=4 + 3 + 2), MLPDiscriminator(2, (8,), out_dim=5),
                                   num_categories=3, num_continuous=2),
        "dropout generator": lambda: GAN(dropout_net, tiny_pair()[1], noise_dim=4),
        "subclass generate": lambda: _OwnNoiseGAN(*tiny_pair()),
    }


def _sample_call(name):
    torch.manual_seed(0)
    objective = _sampling_objectives()[name]()
    return objective, (lambda **kw: objective.sample(5, **kw))


@pytest.mark.parametrize("name", list(_sampling_objectives()))
def test_sample_with_a_generator_is_a_function_of_its_state(name):
    """``sample(generator=)`` (it took none): the noise and codes (``noise``, InfoGAN's ``sample_codes``, a
    subclass's own ``generate``) and a training-mode network's dropout draw from torch's global streams seeded from
    the generator, restored afterwards."""
    objective, call = _sample_call(name)
    contract.assert_generator_contract(call, f"{type(objective).__name__}.sample generator")


@pytest.mark.parametrize("name", list(_sampling_objectives()))
def test_the_generator_network_as_generator_is_refused_by_name(name):
    """``generator`` is also the name of the network attribute: passing the network where the
    random-number generator is asked for is a ConfigError that says which is meant."""
    objective, call = _sample_call(name)
    what = f"{type(objective).__name__}.sample generator (the random-number generator, not the network)"
    with pytest.raises(ConfigError, match=rf"^{re.escape(what)} must be a torch\.Generator or None, got "
                                          rf"{type(objective.generator).__name__}"):
        objective.sample(5, generator=objective.generator)


_OWN_GENERATE = ("subclass generate",)  # its generate(self, n) takes no generator


@pytest.mark.parametrize("method", ["noise", "generate"])
@pytest.mark.parametrize("name", [n for n in _sampling_objectives() if n not in _OWN_GENERATE])
def test_noise_and_generate_with_a_generator_are_a_function_of_its_state(name, method):
    """Found by an audit of the samplers: ``noise`` and ``generate`` took no ``generator=`` while ``sample`` did;
    they take it now, with ``sample``'s scope, and ``generate`` with a generator draws ``sample``'s samples."""
    objective, _ = _sample_call(name)
    call = lambda **kw: getattr(objective, method)(5, **kw)  # noqa: E731 - the contract's call
    contract.assert_generator_contract(call, f"{type(objective).__name__}.{method} generator (the random-number "
                                             f"generator, not the network)")
    generated = objective.generate(5, generator=torch.Generator().manual_seed(3))
    assert generated.requires_grad  # the training losses' draw: differentiable
    assert torch.equal(generated.detach(), objective.sample(5, generator=torch.Generator().manual_seed(3)))
