import functools
import math
import re
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch

import hybridpgm
from hybridpgm.errors import ConfigError, DataError, ObjectiveError
from hybridpgm.generative import SigmoidBeliefNet
from hybridpgm.infer import NVIL, RWS, VIMCO, WakeSleep, WakeSleepELBO
from tests.generative import sbn_brute_force as bf
from tests.generative.sbn_brute_force import (  # noqa: F401
    all_binary,
    binary,
    flat_grads,
    mc_check,
    random_sbn,
    single_thread,
)


def test_wake_gradient_is_the_elbo_gradient_in_theta():
    sbn = random_sbn([3, 2, 2], 0, scale=1.0)
    x = binary(2, 3, 0)
    objective = WakeSleep(sbn.model, sbn.guide, num_particles=4)
    theta = sbn.model_parameters()
    exact = flat_grads(-bf.elbo(sbn, x).mean(), theta)
    batch = x.repeat(500, 1)
    torch.manual_seed(1)
    estimates = torch.stack([flat_grads(objective.loss("wake", batch), theta) for _ in range(20)])
    mc_check(estimates, exact)


def test_sleep_gradient_is_unbiased_for_the_dream_kl():
    """E[sleep gradient] = -sum_{x,h} p(x, h) grad log q(h | x), by enumerating x and h."""
    sbn = random_sbn([3, 2, 2], 1, scale=1.0)
    phi = sbn.guide_parameters()
    xs = all_binary(3)
    hs = bf.configurations(sbn)
    joint = bf.log_joint(sbn, xs, hs).exp().detach()  # [S, 8]
    exact = flat_grads(-(joint * bf.log_guide(sbn, xs, hs)).sum(), phi)
    objective = WakeSleep(sbn.model, sbn.guide, num_sleep_particles=2)
    batch = torch.zeros(1000, 3)  # only its size matters to the sleep phase
    torch.manual_seed(2)
    estimates = torch.stack([flat_grads(objective.loss("sleep", batch), phi) for _ in range(20)])
    mc_check(estimates, exact)


def test_players_touch_disjoint_parameters():
    sbn = random_sbn([5, 3, 2], 3)
    x = binary(4, 5, 3)
    objective = WakeSleep(sbn.model, sbn.guide)
    assert objective.schedule == ["wake", "sleep"]
    players = objective.players()
    for player, mine in players.items():
        sbn.zero_grad(set_to_none=True)
        objective.loss(player, x).backward()
        others = [p for name, ps in players.items() if name != player for p in ps]
        assert all(p.grad is not None for p in mine)
        assert all(p.grad is None for p in others)
    with pytest.raises(ConfigError, match="players"):
        objective.loss("elbo", x)


def test_wake_sleep_elbo_with_svi_and_errors():
    sbn = random_sbn([4, 2], 4)
    x = binary(3, 4, 4)
    elbo = WakeSleepELBO()
    assert torch.isfinite(elbo.differentiable_loss(sbn.model, sbn.guide, x))
    with pytest.raises(ConfigError, match="num_sleep_particles"):
        WakeSleepELBO(num_sleep_particles=0)

    def two_observations(x):
        with pyro.plate("data", x.shape[0]):
            h = pyro.sample("h", dist.Bernoulli(0.5))
            pyro.sample("a", dist.Normal(h, 1.0), obs=x)
            pyro.sample("b", dist.Normal(h, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("h", dist.Bernoulli(0.5))

    with pytest.raises(ObjectiveError, match="exactly one observed site"):
        elbo.sleep_loss(two_observations, guide, torch.zeros(3))


def test_parameters_must_be_identifiable():
    with pytest.raises(ConfigError, match="model_parameters"):
        WakeSleep(lambda x: None, lambda x: None, module=torch.nn.Linear(1, 1))


OBJECTIVES = {
    "wake_sleep": lambda sbn: WakeSleep(sbn.model, sbn.guide),
    "rws": lambda sbn: RWS(sbn.model, sbn.guide, num_particles=5),
    "nvil": lambda sbn: NVIL(sbn.model, sbn.guide, hidden_dim=20),
    "vimco": lambda sbn: VIMCO(sbn.model, sbn.guide, num_particles=5),
}


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_training_improves_digits_log_likelihood(name):
    data = hybridpgm.data.load_dataset("digits", binarize="static", seed=0)
    test = data.test.x[:100]
    torch.manual_seed(0)
    sbn = SigmoidBeliefNet([64, 16])
    before = sbn.log_likelihood(test, num_samples=50).mean().item()
    hybridpgm.fit(OBJECTIVES[name](sbn), data.train.x, batch_size=64, epochs=10, max_steps=20, seed=0,
                  optim=functools.partial(torch.optim.Adam, lr=0.03), progress=False, device="cpu")
    torch.manual_seed(1)
    after = sbn.log_likelihood(test, num_samples=50).mean().item()
    assert after > before + 5.0, (before, after)


def test_model_and_guide_from_different_modules():
    generative, recognition = random_sbn([4, 3], 5), random_sbn([4, 3], 6)
    objective = WakeSleep(generative.model, recognition.guide)
    assert {id(p) for p in objective.players()["wake"]} == {id(p) for p in generative.parameters()}
    assert {id(p) for p in objective.players()["sleep"]} == {id(p) for p in recognition.parameters()}
    assert isinstance(objective.module, torch.nn.ModuleList) and len(objective.module) == 2
    with pytest.raises(ConfigError, match="both"):
        WakeSleep(generative.model, generative.guide, model_parameters=list(generative.parameters()))


@pytest.mark.parametrize("batch_norm", [False, True])
def test_wake_sleep_trains_hybridpgms_vae(batch_norm):
    """The sleep phase hands the VAE guide a dream with a particle dimension [1, B, D]; the VAE names its
    own parameter groups (decoder: wake, encoder: sleep)."""
    torch.manual_seed(0)
    vae = hybridpgm.VAE(6, 2, [8], batch_norm=batch_norm)
    objective = WakeSleep(vae.model, vae.guide, num_sleep_particles=2)
    assert {id(p) for p in objective.players()["wake"]} == {id(p) for p in vae.decoder.parameters()}
    assert {id(p) for p in objective.players()["sleep"]} == {id(p) for p in vae.encoder.parameters()}
    before = [p.detach().clone() for p in vae.parameters()]
    x = torch.bernoulli(torch.full((10, 6), 0.3), generator=torch.Generator().manual_seed(0))
    result = hybridpgm.fit(objective, x, epochs=3, batch_size=5, progress=False, device="cpu", seed=0,
                           optim=functools.partial(torch.optim.Adam, lr=1e-2))
    for player in ("wake", "sleep"):
        losses = result.history.loss[player]
        assert len(losses) == 6 and all(math.isfinite(v) for v in losses), (player, losses)
    assert all(not torch.equal(b, p) for b, p in zip(before, vae.parameters()) if b.dim() == 2)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_an_x_labels_batch_is_a_named_data_error_for_every_sbn_objective(name):
    sbn = random_sbn([4, 3], 7)
    objective = OBJECTIVES[name](sbn)
    batch = (binary(5, 4, 7), torch.arange(5))
    for player in objective.players():
        with pytest.raises(DataError, match=r"SigmoidBeliefNet.(guide|model)\(x, \.\.\.\) got 1 positional "
                                            r"argument\(s\) after x.*\(x, labels\) tuple"):
            objective.loss(player, batch)
    with pytest.raises(DataError, match=r"SigmoidBeliefNet.(guide|model)\(x, \.\.\.\) got 1 positional argument"):
        WakeSleepELBO().sleep_loss(sbn.model, sbn.guide, *batch)


def test_guessing_the_plate_nesting_leaves_no_mark_and_no_pyro_log_line():
    """WakeSleep guessed its plate nesting with Pyro's guess: a "Guessed max_plate_nesting = 1" line on
    Pyro's logger, and one batch more counted by every batch-norm layer."""
    from tests.infer.probe_helpers import guessed, guessing_matches_given, same_state

    guessing, given, records = guessing_matches_given(
        lambda vae, nesting: WakeSleep(vae.model, vae.guide, num_particles=2, max_plate_nesting=nesting))
    assert not guessed(records) and same_state(guessing, given)


def test_a_resumed_batch_norm_run_ends_with_the_buffers_of_an_uninterrupted_one(tmp_path):
    from tests.infer.probe_helpers import same_state, whole_and_resumed

    whole, resumed = whole_and_resumed(lambda vae: WakeSleep(vae.model, vae.guide), tmp_path)
    assert same_state(whole, resumed)


class _ShapeZeroGuideSBN(torch.nn.Module):
    """A one-layer SBN whose guide sizes its data plate by ``x.shape[0]`` (``rows_dim=0``) or, as docs/sbn.md
    asks, by ``x.shape[-2]`` (``rows_dim=-2``)."""

    def __init__(self, rows_dim):
        super().__init__()
        torch.manual_seed(0)
        self.rows_dim = rows_dim
        self.prior = torch.nn.Parameter(torch.zeros(3))
        self.dec, self.enc = torch.nn.Linear(3, 6), torch.nn.Linear(6, 3)

    def model_parameters(self):
        return [self.prior, *self.dec.parameters()]

    def guide_parameters(self):
        return list(self.enc.parameters())

    def model(self, x):
        with pyro.plate("data", x.shape[-2], dim=-1):
            h = pyro.sample("h", dist.Bernoulli(logits=self.prior).expand([x.shape[-2], 3]).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.dec(h)).to_event(1), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[self.rows_dim], dim=-1):
            pyro.sample("h", dist.Bernoulli(logits=self.enc(x)).to_event(1))


@pytest.mark.parametrize("make", [lambda m, g: WakeSleep(m, g),
                                  lambda m, g: RWS(m, g, num_particles=2, sleep_phi=True, joint=False)],
                         ids=["WakeSleep", "RWS-sleep_phi"])
def test_a_guide_plate_sized_by_shape_0_is_refused_in_the_sleep_phase(make):
    """The sleep phase hands the guide dreams [K, B, D] (K = 1 too): a plate of x.shape[0] = 1 over the B
    replayed rows was taken for a subsample of scale 1/B, so the sleep loss came out B times too small,
    silently."""
    x = torch.bernoulli(torch.full((8, 6), 0.4), generator=torch.Generator().manual_seed(0))
    wrong = _ShapeZeroGuideSBN(0)
    with pytest.raises(ObjectiveError) as caught:
        make(wrong.model, wrong.guide).loss("sleep", x)
    message = str(caught.value)
    k = int(re.search(r"plate 'data' of size (\d+),", message).group(1))  # the sleep particles in front
    assert f"holds 8 rows of the dreams of 'x' (shape ({k}, 8, 6))" in message and f"by {k}/8" in message
    assert "x.shape[-2]" in message
    right = _ShapeZeroGuideSBN(-2)
    pyro.set_rng_seed(0)
    loss = make(right.model, right.guide).loss("sleep", x)
    # per example, -log q of a dream's 3 Bernoulli units near 1/2 (about 3 log 2; 1/8 of it with the old scale)
    assert 3 * math.log(2) / 2 < float(loss.detach()) < 3 * math.log(2) * 2


def test_the_refusal_of_a_plate_of_shape_0_names_the_sbn_guide_by_its_title_and_section():
    """A wheel ships no docs/: the message named only ``docs/sbn.md``.  It names the guide's title and section
    (the headings of docs/sbn.md, read here) and the path in the source tree."""
    x = torch.bernoulli(torch.full((8, 6), 0.4), generator=torch.Generator().manual_seed(0))
    wrong = _ShapeZeroGuideSBN(0)
    with pytest.raises(ObjectiveError) as caught:
        WakeSleep(wrong.model, wrong.guide).loss("sleep", x)
    guide = (Path(__file__).resolve().parents[2] / "docs" / "sbn.md").read_text().splitlines()
    title = guide[0].removeprefix("# ")
    assert guide[0].startswith("# ") and "## Objectives" in guide
    assert f'see "Objectives" in the guide "{title}", docs/sbn.md in the source tree' in str(caught.value)


def _train_phi(make, *, freeze_theta, steps=6):
    """Train the objective ``make(sbn)`` of a fixed SBN with fit, the wake player under SGD with lr 0 and the sleep
    player under Adam; with ``freeze_theta`` all of theta is frozen by ``requires_grad_(False)`` instead.  Returns
    the SBN's theta and phi before and after, and the history."""
    sbn = random_sbn([5, 3, 2], 3, scale=1.0)
    if freeze_theta:
        for p in sbn.model_parameters():
            p.requires_grad_(False)
    before = [p.detach().clone() for p in sbn.model_parameters() + sbn.guide_parameters()]
    optim = {"wake": functools.partial(torch.optim.SGD, lr=0.0),
             "sleep": functools.partial(torch.optim.Adam, lr=0.05)}
    result = hybridpgm.fit(make(sbn), binary(48, 5, 0), batch_size=16, max_steps=steps, seed=0, optim=optim,
                           accumulate=2, progress=False, device="cpu")
    return sbn, before, result


def check_frozen_theta_trains_phi_alone(make):
    """Shared by the WakeSleep and RWS(joint=False) tests: with theta frozen, fit trains phi (it moves), leaves
    theta bit-identical, and phi ends exactly where a run with theta trainable but a learning rate of 0 for its
    player ends.  That reference is independent of the frozen path: its wake player back-propagates and steps
    (with a zero step), and its losses draw the same random numbers, so the sleep player sees the same dreams;
    the two runs agree bit for bit, losses of both players included."""
    frozen, before, result = _train_phi(make, freeze_theta=True)
    reference, _, reference_result = _train_phi(make, freeze_theta=False)
    theta, phi = frozen.model_parameters(), frozen.guide_parameters()
    assert all(not p.requires_grad for p in theta)  # still frozen
    assert all(torch.equal(p, b) for p, b in zip(theta, before))  # unmoved
    assert any(not torch.equal(p, b) for p, b in zip(phi, before[len(theta):]))  # phi trained
    assert all(torch.equal(p, q) for p, q in zip(phi, reference.guide_parameters()))
    assert all(torch.equal(p, q) for p, q in zip(theta, reference.model_parameters()))
    assert result.steps == 6 and result.history.loss == reference_result.history.loss  # the wake loss is recorded
    assert len(result.history.loss["wake"]) == 6 and all(math.isfinite(v) for v in result.history.loss["wake"])
    assert result.optimizers["wake"].state == {}  # the frozen player was never stepped


def test_wake_sleep_with_theta_frozen_trains_the_recognition_network_alone():
    """Found by an audit: docs/sbn.md says all of theta may be frozen to train the recognition network alone, but
    fit stopped at the first step with a ConfigError blaming no_grad or detaching (the wake player, all of whose
    parameters were frozen, gave a loss without a gradient)."""
    check_frozen_theta_trains_phi_alone(lambda sbn: WakeSleep(sbn.model, sbn.guide, num_particles=2))


def test_a_wake_sleep_net_frozen_whole_is_refused_naming_the_frozen_players():
    """docs/sbn.md: a net frozen whole is refused by fit with a ConfigError (before, its message blamed no_grad)."""
    sbn = random_sbn([5, 3], 0)
    sbn.requires_grad_(False)
    with pytest.raises(ConfigError, match=r"every parameter of every player of WakeSleep \(wake, sleep\) is frozen"):
        hybridpgm.fit(WakeSleep(sbn.model, sbn.guide), binary(8, 5, 0), batch_size=8, max_steps=1, seed=0,
                      progress=False, device="cpu")


def test_particle_counts_assigned_later_are_the_elbos_and_validated():
    """Before, ``ws.num_particles = 4`` made a new attribute; the ELBO kept its count."""
    sbn = SigmoidBeliefNet([4, 2])
    objective = WakeSleep(sbn.model, sbn.guide)
    objective.num_particles, objective.num_sleep_particles = 4, 3
    assert (objective.elbo.num_particles, objective.elbo.num_sleep_particles) == (4, 3)
    for name in ("num_particles", "num_sleep_particles"):
        with pytest.raises(ConfigError, match=name):
            setattr(objective, name, 0)
    assert (objective.num_particles, objective.num_sleep_particles) == (4, 3)
