"""Bad settings, batches and model/guide pairs given to the inference objectives fail clearly,
with a :mod:`hybridpgm.errors` exception naming the argument or site."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from hybridpgm.energy import RBM
from hybridpgm.errors import ConfigError, DataError, ModelSpecError, ObjectiveError
from hybridpgm.generative import SigmoidBeliefNet
from hybridpgm.generative.gan import MLPDiscriminator, MLPGenerator
from hybridpgm.infer import IWAE, NVIL, SVIObjective
from hybridpgm.infer.adversarial import ADA, GAN, IWGAN, InfoGAN, adversarial_optim
from hybridpgm.infer.ais import AIS, annealing_schedule
from hybridpgm.infer.contrastive_divergence import ContrastiveDivergence, PersistentCD
from hybridpgm.infer.crf_likelihood import CRFLikelihood
from hybridpgm.infer.gibbs import Gibbs
from hybridpgm.infer.grouped_optim import GroupedOptim
from hybridpgm.infer.nvil import NVIL_ELBO
from hybridpgm.infer.particle_elbo import ParticleELBO, importance_log_likelihood
from hybridpgm.infer.raise_ais import RAISE
from hybridpgm.infer.rws import RWS, ReweightedWakeSleepELBO
from hybridpgm.infer.vimco import VIMCO, VIMCO_ELBO
from hybridpgm.infer.wake_sleep import WakeSleep, WakeSleepELBO


class _Pair(nn.Module):
    """A Gaussian model/guide pair; ``missing`` gives the model a latent ``w`` the guide lacks,
    ``extra`` gives the guide a site ``u`` the model lacks."""

    def __init__(self, missing=False, extra=False):
        super().__init__()
        self.dec, self.enc = nn.Linear(2, 2), nn.Linear(2, 2)
        self.missing, self.extra = missing, extra

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            if self.missing:
                pyro.sample("w", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(self.dec(z), 1.0).to_event(1), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.enc(x), 1.0).to_event(1))
            if self.extra:
                pyro.sample("u", dist.Normal(0.0, 1.0))


def _x():
    return torch.randn(4, 2, generator=torch.Generator().manual_seed(0))


def _binary():
    return torch.bernoulli(torch.full((4, 6), 0.5), generator=torch.Generator().manual_seed(0))


# -- particle counts and nesting: bool and float are refused, not coerced --------------------------------

@pytest.mark.parametrize("make, match", [
    (lambda: IWAE(True), "IWAE num_particles"),
    (lambda: IWAE(2, max_plate_nesting=-1), "IWAE max_plate_nesting"),
    (lambda: IWAE(2, max_plate_nesting=2.5), "IWAE max_plate_nesting"),
    (lambda: ReweightedWakeSleepELBO(2, num_sleep_particles=True), "num_sleep_particles"),
    (lambda: ReweightedWakeSleepELBO(2, max_plate_nesting=2.5), "max_plate_nesting"),
    (lambda: WakeSleepELBO(1, True), "num_sleep_particles"),
    (lambda: VIMCO_ELBO(3, max_plate_nesting=-1), "max_plate_nesting"),
    (lambda: NVIL_ELBO(None, 0), "NVIL num_particles"),
    (lambda: NVIL_ELBO(None, 2.5), "NVIL num_particles"),
    (lambda: NVIL_ELBO(None, True), "NVIL num_particles"),
    (lambda: ContrastiveDivergence(RBM(6, 3), True), "ContrastiveDivergence k"),
    (lambda: PersistentCD(RBM(6, 3), 1, True), "PersistentCD num_chains"),
    (lambda: AIS(4, True), "AIS num_steps"),
    (lambda: annealing_schedule(True), "AIS num_steps"),
    (lambda: RAISE(True, 10), "RAISE num_chains"),
    (lambda: RAISE(1, 10, batch_size=True), "RAISE batch_size"),
])
def test_counts_that_are_not_positive_integers_are_refused(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def _sbn_pair():
    sbn = SigmoidBeliefNet([6, 3])
    return sbn.model, sbn.guide


# found by an audit: these on/off options took any truthy value ("no" switched an update on, 1 or None passed)
@pytest.mark.parametrize("make, match", [
    (lambda v: RWS(*_sbn_pair(), wake_phi=v), "RWS wake_phi"),
    (lambda v: RWS(*_sbn_pair(), sleep_phi=v), "RWS sleep_phi"),
    (lambda v: RWS(*_sbn_pair(), joint=v), "RWS joint"),
    (lambda v: ReweightedWakeSleepELBO(2, wake_phi=v), "ReweightedWakeSleepELBO wake_phi"),
    (lambda v: ReweightedWakeSleepELBO(2, sleep_phi=v), "ReweightedWakeSleepELBO sleep_phi"),
    (lambda v: NVIL(*_sbn_pair(), centering=v), "NVIL centering"),
    (lambda v: NVIL(*_sbn_pair(), variance_normalization=v), "NVIL variance_normalization"),
    (lambda v: NVIL_ELBO(None, centering=v), "NVIL centering"),
    (lambda v: NVIL_ELBO(None, variance_normalization=v), "NVIL variance_normalization"),
    (lambda v: VIMCO(*_sbn_pair(), per_example=v), "VIMCO per_example"),
    (lambda v: RWS(*_sbn_pair(), per_example=v), "RWS per_example"),
    (lambda v: WakeSleep(*_sbn_pair(), per_example=v), "WakeSleep per_example"),
    (lambda v: NVIL(*_sbn_pair(), per_example=v), "NVIL per_example"),
    (lambda v: ParticleELBO(2, detach_guide=v), "ParticleELBO detach_guide"),
])
@pytest.mark.parametrize("value", ["no", 1, None])
def test_on_off_options_take_only_true_or_false(make, match, value):
    with pytest.raises(ConfigError, match=f"{match} must be True or False, got {value!r}"):
        make(value)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_samples": True}, "num_samples must be a positive integer, got True"),
    ({"num_samples": 2.5}, "num_samples must be a positive integer, got 2.5"),
    ({"num_samples": "3"}, "num_samples"),
    ({"num_samples": 4, "chunk_size": "3"}, "chunk_size"),
])
def test_importance_log_likelihood_names_a_bad_count(kwargs, match):
    sbn = SigmoidBeliefNet([6, 3])
    with pytest.raises(ConfigError, match=match):
        importance_log_likelihood(sbn.model, sbn.guide, _binary(), **kwargs)


# -- the guide must sample exactly the model's latent sites ------------------------------------------------

@pytest.mark.parametrize("loss", [
    lambda m, g, x: IWAE(2).differentiable_loss(m, g, x),
    lambda m, g, x: ReweightedWakeSleepELBO(2).differentiable_loss(m, g, x),
    lambda m, g, x: WakeSleepELBO(2).wake_loss(m, g, x),
    lambda m, g, x: VIMCO_ELBO(2).differentiable_loss(m, g, x),
    lambda m, g, x: importance_log_likelihood(m, g, x, num_samples=3),
], ids=["iwae", "rws", "wake", "vimco", "importance_log_likelihood"])
@pytest.mark.parametrize("missing, site", [(True, "'w'"), (False, "'u'")], ids=["guide_lacks_site", "extra_site"])
def test_a_guide_that_does_not_match_the_model_names_the_site(loss, missing, site):
    pair = _Pair(missing=missing, extra=not missing)
    with pytest.raises(ObjectiveError, match=site):
        loss(pair.model, pair.guide, _x())


def test_nvil_baselines_for_a_site_the_guide_does_not_sample_are_named():
    sbn = SigmoidBeliefNet([6, 3])
    objective = NVIL(sbn.model, sbn.guide, sites=["nope"])
    with pytest.raises(ObjectiveError, match="'nope'"):
        objective.loss("elbo", _binary())


@pytest.mark.parametrize("kwargs, error, match", [
    ({"sites": "h1"}, ConfigError, "sites"),
    ({"input_dim": 0}, ConfigError, "input_dim"),
    ({"input_dim": 2.5}, ConfigError, "input_dim"),
    ({"hidden_dim": -1}, ConfigError, "hidden_dim"),
    ({"decay": "a"}, ConfigError, "decay"),
])
def test_nvil_settings_are_checked(kwargs, error, match):
    sbn = SigmoidBeliefNet([6, 3])
    with pytest.raises(error, match=match):
        NVIL(sbn.model, sbn.guide, **kwargs)


def test_nvil_input_dim_that_does_not_fit_the_data_is_a_data_error():
    sbn = SigmoidBeliefNet([6, 3])
    with pytest.raises(DataError, match="input_dim=3"):
        NVIL(sbn.model, sbn.guide, input_dim=3).loss("elbo", _binary())


# -- players and batches --------------------------------------------------------------------------------

def test_svi_objective_checks_player_callables_elbo_and_batch():
    pair = _Pair()
    objective = SVIObjective(pair.model, pair.guide)
    with pytest.raises(ConfigError, match="'bogus'"):
        objective.loss("bogus", _x())
    with pytest.raises(DataError, match="empty batch"):
        objective.loss("elbo", _x()[:0])
    with pytest.raises(DataError, match="NoneType"):
        objective.loss("elbo", None)
    with pytest.raises(ConfigError, match="model must be a callable"):
        SVIObjective(None, pair.guide, module=pair)
    with pytest.raises(ConfigError, match="guide must be a callable"):
        SVIObjective(pair.model, "guide", module=pair)
    with pytest.raises(ConfigError, match="instance.*IWAE"):
        SVIObjective(pair.model, pair.guide, elbo=IWAE)
    with pytest.raises(ConfigError, match="module must be a torch.nn.Module"):
        SVIObjective(pair.model, pair.guide, module=3)


def test_model_guide_objectives_check_batches_and_model_kwargs():
    sbn = SigmoidBeliefNet([6, 3])
    objective = RWS(sbn.model, sbn.guide, 2)
    with pytest.raises(DataError, match="NoneType"):
        objective.loss("rws", None)
    pair = _Pair()
    with pytest.raises(DataError, match="empty batch"):
        RWS(pair.model, pair.guide, 2, model_parameters=pair.dec.parameters(),
            guide_parameters=pair.enc.parameters()).loss("rws", _x()[:0])
    with pytest.raises(ConfigError, match="model_kwargs"):
        RWS(sbn.model, sbn.guide, model_kwargs=3)


def test_crf_likelihood_checks_player_tagger_and_batch():
    with pytest.raises(ConfigError, match="tagger"):
        CRFLikelihood(None)
    objective = CRFLikelihood(nn.Linear(2, 2))
    x, y, lengths = torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), torch.full((2,), 3)
    with pytest.raises(ConfigError, match="'bogus'"):
        objective.loss("bogus", (x, y, lengths))
    with pytest.raises(DataError, match="at least one sequence"):
        objective.loss("crf", (x[:0], y[:0], lengths[:0]))
    with pytest.raises(DataError, match="of tensors"):
        objective.loss("crf", (1, 2, 3))


def test_contrastive_divergence_refuses_an_empty_batch():
    objective = ContrastiveDivergence(RBM(6, 3))
    with pytest.raises(DataError, match="empty batch"):
        objective.loss("model", torch.zeros(0, 6))
    with pytest.raises(DataError, match="empty tuple"):
        objective.loss("model", ())


# -- annealing schedules -------------------------------------------------------------------------------

@pytest.mark.parametrize("betas, match", [
    ([0.0, math.nan, 1.0], "finite"),
    ([[0.0, 0.5], [0.7, 1.0]], "1-d"),
    ("abc", "1-d sequence of numbers"),
])
@pytest.mark.parametrize("estimator", [lambda b: AIS(4, betas=b), lambda b: RAISE(2, betas=b)], ids=["ais", "raise"])
def test_annealing_schedules_must_be_finite_1d_sequences(estimator, betas, match):
    with pytest.raises(ConfigError, match=match):
        estimator(betas)


# -- Gibbs -------------------------------------------------------------------------------------------------

def _two_coins(x):
    a = pyro.sample("a", dist.Bernoulli(0.5))
    b = pyro.sample("b", dist.Bernoulli(0.3 + 0.4 * a))
    pyro.sample("x", dist.Normal(a + b, 1.0), obs=x)


@pytest.mark.parametrize("kwargs, match", [
    ({"blocks": ["ab"]}, "non-empty list of site names"),
    ({"blocks": "a"}, "list of lists"),
    ({"blocks": [[]]}, "non-empty list"),
    ({"blocks": [["a"], ["a"]]}, r"\['a'\] more than once"),
    ({"max_plate_nesting": -1}, "max_plate_nesting"),
    ({"max_plate_nesting": True}, "max_plate_nesting"),
])
def test_gibbs_settings_are_checked(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Gibbs(_two_coins, **kwargs)


def test_gibbs_model_must_be_callable():
    with pytest.raises(ConfigError, match="callable"):
        Gibbs(3)


def test_grouped_optim_constructor_must_be_callable():
    with pytest.raises(ConfigError, match="optim_constructor"):
        GroupedOptim(3, {"lr": 0.1})


# -- adversarial objectives ----------------------------------------------------------------------------------

def _gan_pair():
    torch.manual_seed(0)
    return MLPGenerator(3, (2,), hidden=(8,)), MLPDiscriminator((2,), hidden=(8,))


@pytest.mark.parametrize("cls", [GAN, IWGAN])
@pytest.mark.parametrize("player", ["discriminator", "generator"])
def test_gan_refuses_an_empty_batch(cls, player):
    with pytest.raises(DataError, match="empty batch"):
        cls(*_gan_pair()).loss(player, torch.zeros(0, 2))


def test_gan_refuses_an_empty_tuple():
    with pytest.raises(DataError, match="expects data of shape"):
        GAN(*_gan_pair()).loss("generator", ())


@pytest.mark.parametrize("value", [math.nan, -1.0, math.inf, "a"])
def test_infogan_info_weight_is_checked(value):
    with pytest.raises(ConfigError, match="info_weight"):
        InfoGAN(MLPGenerator(8, (2,)), MLPDiscriminator((2,)), nn.Linear(2, 4), num_categories=2,
                num_continuous=2, info_weight=value)


@pytest.mark.parametrize("kwargs, match", [({"num_categories": True}, "InfoGAN num_categories must be"),
                                           ({"num_continuous": 2.5}, "InfoGAN num_continuous must be")])
def test_infogan_code_sizes_are_integers(kwargs, match):
    with pytest.raises(ModelSpecError, match=match):
        InfoGAN(MLPGenerator(8, (2,)), MLPDiscriminator((2,)), nn.Linear(2, 4),
                **{"num_categories": 2, "num_continuous": 2, **kwargs})


def _ada(**kwargs):
    torch.manual_seed(0)
    return ADA(nn.Linear(3, 2), nn.Linear(2, 1), nn.Linear(2, 4), input_shape=(3,), **kwargs)


@pytest.mark.parametrize("value", [math.nan, -0.5])
def test_ada_adversarial_weight_is_checked(value):
    with pytest.raises(ConfigError, match="adversarial_weight"):
        _ada(adversarial_weight=value)


def test_ada_checks_label_dtype_tensors_and_empty_batches():
    ada = _ada()
    xs, xt = torch.randn(3, 3), torch.randn(3, 3)
    with pytest.raises(DataError, match="integer class indices"):
        ada.loss("generator", (xs, torch.tensor([0.0, 1.0, 2.0]), xt))
    with pytest.raises(DataError, match="three tensors"):
        ada.loss("generator", ("a", torch.tensor([0, 1, 2]), xt))
    with pytest.raises(DataError, match="empty batch"):
        ada.loss("discriminator", (xs[:0], torch.zeros(0, dtype=torch.long), xt[:0]))


def test_aavae_fake_weight_is_checked():
    from hybridpgm import VAE
    from hybridpgm.infer.adversarial import AAVAE
    with pytest.raises(ConfigError, match="fake_weight"):
        AAVAE(VAE(4, 2, hidden=(8,)), MLPDiscriminator((4,)), fake_weight=math.nan)


@pytest.mark.parametrize("kwargs, match", [({"lr": math.nan}, "lr"), ({"lr": -1.0}, "lr"),
                                           ({"beta1": 1.0}, "beta1"), ({"beta2": "a"}, "beta2")])
def test_adversarial_optim_checks_its_hyperparameters(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        adversarial_optim(**kwargs)
