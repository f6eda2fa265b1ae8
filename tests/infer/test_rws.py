import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.poutine import Trace
from pyro.poutine.util import prune_subsample_sites

import hybridpgm  # noqa: F401
from hybridpgm.errors import ConfigError, ObjectiveError
from hybridpgm.infer import RWS, ReweightedWakeSleepELBO
from hybridpgm.infer.particle_elbo import ParticleELBO
from tests.generative import sbn_brute_force as bf
from tests.generative.sbn_brute_force import binary, flat_grads, mc_check, random_sbn, single_thread  # noqa: F401


def _sliced_guide(sbn, full_trace, index):
    """The guide replaying, for a mini-batch, the particles drawn on the full batch."""
    trace = Trace()
    for name, site in prune_subsample_sites(full_trace).nodes.items():
        site = dict(site)
        if site["type"] == "sample":
            site["value"] = site["value"][:, index]
        trace.add_node(name, **site)
    return poutine.replay(sbn.guide, trace=trace)


@pytest.mark.parametrize("batch_size", [1, 2, 3])
@pyro.validation_enabled(False)  # replayed values carry the particle dim, the replayed fn does not
def test_minibatch_objective_equals_full_batch_up_to_plate_scaling(batch_size):
    sbn = random_sbn([4, 3, 2], 0)
    N, K = 6, 4
    x = binary(N, 4, 0)
    elbo = ReweightedWakeSleepELBO(num_particles=K, max_plate_nesting=1)
    with elbo.particle_plate(K, 1):
        full_trace = poutine.trace(sbn.guide).get_trace(x)
    replay_full = _sliced_guide(sbn, full_trace, torch.arange(N))
    theta_full, phi_full = elbo.losses(sbn.model, replay_full, x)
    params = list(sbn.parameters())
    grad_full = flat_grads(theta_full + phi_full, params)

    theta_sum, phi_sum, grad_sum = 0.0, 0.0, 0.0
    for start in range(0, N, batch_size):
        index = torch.arange(start, start + batch_size)
        guide = _sliced_guide(sbn, full_trace, index)
        theta, phi = elbo.losses(sbn.model, guide, x[index], num_data=N)
        weight = batch_size / N  # the plate scales the batch by N / B
        theta_sum = theta_sum + weight * theta
        phi_sum = phi_sum + weight * phi
        grad_sum = grad_sum + weight * flat_grads(theta + phi, params)
    assert torch.allclose(theta_sum, theta_full, atol=1e-5)
    assert torch.allclose(phi_sum, phi_full, atol=1e-5)
    assert torch.allclose(grad_sum, grad_full, atol=1e-5)

    # Normalizing the weights of the scaled batch jointly (what ReweightedWakeSleep does,
    # and why it refuses mini-batches) gives a different objective:
    if batch_size > 1:
        lw = elbo.log_weights(sbn.model, _sliced_guide(sbn, full_trace, torch.arange(batch_size)),
                              x[:batch_size], num_data=N)
        joint = torch.logsumexp(lw.scale * (lw.log_p - lw.log_q).sum(1), 0) - math.log(K)
        per_point = lw.scale * (torch.logsumexp(lw.log_p - lw.log_q, 0) - math.log(K)).sum()
        assert not torch.allclose(joint, per_point, atol=1e-2)


def test_theta_loss_is_the_importance_weighted_bound():
    sbn = random_sbn([3, 2, 2], 1)
    x = binary(2, 3, 1)
    elbo = ReweightedWakeSleepELBO(num_particles=2, max_plate_nesting=1)
    torch.manual_seed(0)
    batch = x.repeat(20000, 1)
    value = elbo.losses(sbn.model, sbn.guide, batch).theta / batch.shape[0]
    assert math.isclose(value.item(), -bf.iw_bound_2(sbn, x).mean().item(), abs_tol=0.03)


def test_wake_theta_gradient_is_unbiased_for_the_iw_bound():
    sbn = random_sbn([3, 2, 2], 2, scale=1.0)
    x = binary(2, 3, 2)
    objective = RWS(sbn.model, sbn.guide, num_particles=2, joint=False)
    theta = sbn.model_parameters()
    exact = flat_grads(-bf.iw_bound_2(sbn, x).mean(), theta)
    batch = x.repeat(1000, 1)
    torch.manual_seed(3)
    estimates = torch.stack([flat_grads(objective.loss("wake", batch), theta) for _ in range(20)])
    mc_check(estimates, exact)


def test_wake_phi_gradient_tends_to_the_posterior_expectation():
    """Self-normalized weights: as K grows, the wake-phi gradient tends to
    -E_{p(h|x)}[grad log q(h|x)] (the gradient of KL(p(h|x) || q))."""
    sbn = random_sbn([3, 2, 2], 3, scale=1.0, guide_scale=0.5)
    x = binary(2, 3, 3)
    phi = sbn.guide_parameters()
    hs = bf.configurations(sbn)
    post = bf.posterior(sbn, x).detach()
    exact = flat_grads(-(post * bf.log_guide(sbn, x, hs)).sum(0).mean(), phi)
    objective = RWS(sbn.model, sbn.guide, num_particles=4000, joint=False)
    torch.manual_seed(4)
    estimate = torch.stack([flat_grads(objective.loss("sleep", x), phi) for _ in range(5)]).mean(0)
    assert torch.allclose(estimate, exact, atol=0.03 * exact.abs().max().item())
    small = RWS(sbn.model, sbn.guide, num_particles=1, joint=False)  # K = 1: the weights are all 1
    g1 = torch.stack([flat_grads(small.loss("sleep", x.repeat(2000, 1)), phi) for _ in range(3)]).mean(0)
    assert (g1 - exact).abs().max() > 5 * (estimate - exact).abs().max()


def test_sleep_phi_option_and_players():
    sbn = random_sbn([4, 3], 5)
    x = binary(5, 4, 5)
    both = RWS(sbn.model, sbn.guide, num_particles=3, sleep_phi=True, joint=False)
    assert set(both.players()) == {"wake", "sleep"}
    assert both.schedule == ["wake", "sleep"]
    loss = both.loss("sleep", x)
    loss.backward()
    assert all(p.grad is not None for p in sbn.guide_parameters())
    assert all(p.grad is None for p in sbn.model_parameters())
    joint = RWS(sbn.model, sbn.guide)
    assert list(joint.players()) == ["rws"] and len(joint.players()["rws"]) == len(list(sbn.parameters()))
    assert torch.isfinite(joint.loss("rws", x))
    with pytest.raises(ConfigError, match="wake_phi"):
        RWS(sbn.model, sbn.guide, wake_phi=False, sleep_phi=False)
    with pytest.raises(ConfigError, match="num_particles"):
        RWS(sbn.model, sbn.guide, num_particles=0)
    with pytest.raises(ConfigError, match="RWS has one player 'rws', got 'wake'"):
        joint.loss("wake", x)


def test_global_latent_is_refused():
    def model(x):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        pyro.sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(ObjectiveError, match="'z'"):
        ParticleELBO(2).log_weights(model, guide, torch.zeros(3))


def test_works_with_pyro_svi():
    sbn = random_sbn([4, 3], 6)
    x = binary(8, 4, 6)
    elbo = ReweightedWakeSleepELBO(num_particles=3)
    loss = elbo.loss_and_grads(sbn.model, sbn.guide, x)
    assert math.isfinite(loss)
    assert all(p.grad is not None for p in sbn.parameters())
    assert isinstance(elbo.loss(sbn.model, sbn.guide, x), float)


def test_log_weights_sum_nested_plates_per_datapoint():
    probs = torch.tensor([0.2, 0.9])

    def model(x):
        with pyro.plate("data", x.shape[0], dim=-2):
            z = pyro.sample("z", dist.Bernoulli(0.3))
            with pyro.plate("pixels", x.shape[1], dim=-1):
                pyro.sample("x", dist.Bernoulli(probs[z.long()]), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0], dim=-2):
            pyro.sample("z", dist.Bernoulli(0.6))

    x = binary(3, 4, 7)
    lw = ParticleELBO(5, max_plate_nesting=2).log_weights(model, guide, x)
    z = lw.guide_trace.nodes["z"]["value"].reshape(5, 3)  # [K, B]
    p = probs[z.long()].unsqueeze(-1)  # [K, B, 1]
    expected_p = dist.Bernoulli(0.3).log_prob(z) + dist.Bernoulli(p).log_prob(x).sum(-1)
    assert lw.log_p.shape == (5, 3) and lw.scale == 1.0
    assert torch.allclose(lw.log_p, expected_p)
    assert torch.allclose(lw.log_q, dist.Bernoulli(0.6).log_prob(z))


@pytest.mark.parametrize("joint", [True, False])
def test_guessing_the_plate_nesting_leaves_no_mark_and_no_pyro_log_line(joint):
    """RWS guessed its plate nesting with Pyro's guess: a "Guessed max_plate_nesting = 1" line on Pyro's
    logger, and one batch more counted by every batch-norm layer."""
    from tests.infer.probe_helpers import guessed, guessing_matches_given, same_state

    guessing, given, records = guessing_matches_given(
        lambda vae, nesting: RWS(vae.model, vae.guide, num_particles=3, sleep_phi=True, joint=joint,
                                 max_plate_nesting=nesting))
    assert not guessed(records) and same_state(guessing, given)


def test_rws_two_players_with_theta_frozen_train_the_recognition_network_alone():
    """Found by an audit: RWS(joint=False) with all of theta frozen (docs/sbn.md: to train the recognition network
    alone) stopped at the first step with a ConfigError blaming no_grad or detaching; RWS(joint=True) trained."""
    from tests.infer.test_wake_sleep import check_frozen_theta_trains_phi_alone

    check_frozen_theta_trains_phi_alone(lambda sbn: RWS(sbn.model, sbn.guide, num_particles=3, joint=False))
    check_frozen_theta_trains_phi_alone(lambda sbn: RWS(sbn.model, sbn.guide, num_particles=3, sleep_phi=True,
                                                        joint=False))


def test_options_assigned_after_construction_take_effect_with_the_constructors_checks():
    """Before, ``rws.num_particles = 7`` made a new attribute nothing read (the ELBO kept 3), and so did
    ``wake_phi``/``sleep_phi``/``num_sleep_particles``; now each is the ELBO's, validated."""
    sbn = random_sbn([4, 2], 0)
    x = binary(3, 4, 0)
    objective = RWS(sbn.model, sbn.guide, num_particles=3)
    objective.num_particles = 7
    assert objective.elbo.num_particles == 7 and objective.settings()["num_particles"] == 7
    assert objective.elbo.log_weights(sbn.model, sbn.guide, x).log_p.shape == (7, 3)
    objective.sleep_phi = True
    objective.wake_phi = False
    assert (objective.elbo.wake_phi, objective.elbo.sleep_phi) == (False, True)
    assert objective.num_sleep_particles == 7
    objective.num_sleep_particles = 2
    assert objective.elbo.num_sleep_particles == 2
    for name, value, match in (("num_particles", 0, "num_particles"), ("sleep_phi", False, "or both"),
                               ("wake_phi", "no", "wake_phi"), ("num_sleep_particles", 1.5, "num_sleep_particles")):
        with pytest.raises(ConfigError, match=match):
            setattr(objective, name, value)
    assert (objective.num_particles, objective.wake_phi, objective.sleep_phi, objective.num_sleep_particles) == \
        (7, False, True, 2)


def test_num_sleep_particles_follows_num_particles_unless_given():
    """Before, the default (K) was copied at construction: ``elbo.num_particles = 20`` left 3 dreams."""
    elbo = ReweightedWakeSleepELBO(3, sleep_phi=True)
    elbo.num_particles = 20
    assert elbo.num_sleep_particles == 20
    given = ReweightedWakeSleepELBO(3, sleep_phi=True, num_sleep_particles=4)
    given.num_particles = 20
    assert given.num_sleep_particles == 4
    given.num_sleep_particles = None
    assert given.num_sleep_particles == 20
    with pytest.raises(ConfigError, match="num_sleep_particles"):
        given.num_sleep_particles = 0


def test_joint_assigned_later_changes_the_schedule_and_fit_runs():
    """Before, ``rws.joint = False`` changed players() but not the stored schedule: fit refused with
    "schedule names unknown players ['rws']".  The schedule is now computed from ``joint``."""
    sbn = random_sbn([4, 2], 1)
    objective = RWS(sbn.model, sbn.guide, num_particles=3)
    objective.joint = False
    assert objective.schedule == ["wake", "sleep"] and sorted(objective.players()) == ["sleep", "wake"]
    history = hybridpgm.fit(objective, binary(8, 4, 1), epochs=1, batch_size=4, progress=False, seed=0)
    assert history is not None
    objective.joint = True
    assert objective.schedule == ["rws"]
    with pytest.raises(ConfigError, match="joint"):
        objective.joint = "no"
    with pytest.raises(AttributeError):
        objective.schedule = ["rws"]


def test_theta_leaves_the_guide_alone_so_the_guide_learns_from_phi_alone():
    """``theta`` detaches :math:`\\log q`: its gradient in the guide's parameters is zero, and the guide's
    gradient of ``differentiable_loss`` (what ``SVI``/``fit`` step) is exactly that of the wake-:math:`\\phi`
    loss on the same particles.  Without the detach (a mutation that survived the suite), theta's guide gradient
    is minus the wake-:math:`\\phi` one and the guide gets a zero gradient: it never learns."""
    sbn = random_sbn([5, 3, 2], 11)
    x = binary(6, 5, 11)
    elbo = ReweightedWakeSleepELBO(num_particles=4, max_plate_nesting=1)
    guide_params = list(sbn.guide_parameters())

    def seeded(fn):
        pyro.set_rng_seed(12)
        return fn()

    theta, phi = seeded(lambda: elbo.losses(sbn.model, sbn.guide, x))
    theta_grads = torch.autograd.grad(theta, guide_params, allow_unused=True)
    assert all(g is None or not g.any() for g in theta_grads)
    phi_grad = flat_grads(phi, guide_params)
    joint_grad = flat_grads(seeded(lambda: elbo.differentiable_loss(sbn.model, sbn.guide, x)), guide_params)
    assert phi_grad.abs().max() > 0.1  # the guide does get a gradient
    assert torch.equal(joint_grad, phi_grad)
