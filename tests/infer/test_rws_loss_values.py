"""The value RWS reports (hybridpgm/infer/rws.py): the negative importance-weighted bound, with unchanged gradients.

Found by an audit: the joint player ``"rws"`` and ``ReweightedWakeSleepELBO.differentiable_loss`` returned the
surrogate sum ``theta + phi`` (8.0 nats per example on a tiny SBN whose -L_5 was 4.45), so ``fit``'s history,
``final_train_loss`` of ``hybridpgm train sbn --objective rws`` and ``SVI.step`` were not comparable with VIMCO's,
IWAE's, or ``SVI.evaluate_loss`` of the same ELBO (which returned -L_K).
"""

import math

import pyro
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import Adam

from hybridpgm.infer import RWS, ReweightedWakeSleepELBO
from hybridpgm.infer.particle_elbo import ParticleELBO
from tests.generative import sbn_brute_force as bf
from tests.generative.sbn_brute_force import binary, random_sbn, single_thread  # noqa: F401

#: the phi updates: wake-phi alone (the default), sleep-phi alone, and both averaged
PHI = {"wake": {"wake_phi": True}, "sleep": {"wake_phi": False, "sleep_phi": True},
       "both": {"wake_phi": True, "sleep_phi": True}}


def _seeded(seed, fn):
    pyro.set_rng_seed(seed)
    return fn()


@pytest.mark.parametrize("phi", sorted(PHI))
def test_the_joint_value_is_the_negative_bound_of_the_same_particles(phi):
    """The "rws" player's value equals -L_K computed by the library's bound estimator (ParticleELBO.loss) on the
    same particles (same seed), per example; so does ``differentiable_loss``, summed.  Before: theta + phi."""
    sbn = random_sbn([5, 3, 2], 0)
    x = binary(6, 5, 0)
    objective = RWS(sbn.model, sbn.guide, num_particles=4, max_plate_nesting=1, **PHI[phi])
    bound = _seeded(1, lambda: ParticleELBO(4, max_plate_nesting=1).loss(sbn.model, sbn.guide, x))
    value = _seeded(1, lambda: objective.loss("rws", x))
    assert value.item() == pytest.approx(bound / 6, rel=1e-6, abs=0)
    joint = _seeded(1, lambda: objective.elbo.differentiable_loss(sbn.model, sbn.guide, x))
    theta, phi_loss = _seeded(1, lambda: objective.elbo.losses(sbn.model, sbn.guide, x))
    assert joint.item() == theta.item() and joint.item() == pytest.approx(bound, rel=1e-6, abs=0)
    assert abs(phi_loss.item()) > 1.0  # the old value theta + phi is far from the bound


def test_the_joint_value_estimates_the_enumerated_bound():
    """Averaged over many particles, the "rws" player's value per example is -E[L_2], computed by enumerating
    the hidden states of a tiny SBN (independently of the library).  Before, it was about 2 nats above."""
    sbn = random_sbn([3, 2, 2], 1)
    x = binary(2, 3, 1)
    objective = RWS(sbn.model, sbn.guide, num_particles=2, max_plate_nesting=1)
    batch = x.repeat(20000, 1)
    with torch.no_grad():
        value = _seeded(0, lambda: objective.loss("rws", batch)).item()
        exact = -bf.iw_bound_2(sbn, x).mean().item()
        phi = _seeded(0, lambda: objective.elbo.losses(sbn.model, sbn.guide, batch).phi).item() / batch.shape[0]
    assert math.isclose(value, exact, abs_tol=0.03), (value, exact)
    assert phi > 0.5  # what the old value added


@pytest.mark.parametrize("phi", sorted(PHI))
def test_the_gradients_are_bit_for_bit_those_of_theta_plus_phi(phi):
    """A named guard (passes on the old code too): the joint loss's gradients, and the "rws" player's, are
    exactly those of the old loss ``theta + phi`` on the same particles, for every parameter."""
    sbn = random_sbn([5, 3, 2], 2)
    x = binary(7, 5, 2)
    params = list(sbn.parameters())
    objective = RWS(sbn.model, sbn.guide, num_particles=3, max_plate_nesting=1, **PHI[phi])

    def grads(loss):
        return torch.autograd.grad(loss, params, allow_unused=True)

    old = _seeded(3, lambda: grads(sum(objective.elbo.losses(sbn.model, sbn.guide, x))))
    new = _seeded(3, lambda: grads(objective.elbo.differentiable_loss(sbn.model, sbn.guide, x)))
    old_player = _seeded(4, lambda: grads(sum(objective.elbo.losses(sbn.model, sbn.guide, x)) / 7))
    new_player = _seeded(4, lambda: grads(objective.loss("rws", x)))
    for a, b in ((old, new), (old_player, new_player)):
        assert all((g is None and h is None) or torch.equal(g, h) for g, h in zip(a, b))
        assert sum(g is not None for g in a) == len(params)  # theta and phi both reached


@pytest.mark.parametrize("phi", sorted(PHI))
def test_svi_step_and_evaluate_loss_return_the_same_quantity(phi):
    """Plain Pyro SVI: ``step`` (``loss_and_grads``) and ``evaluate_loss`` (``loss``) return the same number on
    the same random numbers, -L_K.  Before, step returned theta + phi (512 against 285 on the audit's SBN)."""
    pyro.clear_param_store()
    sbn = random_sbn([5, 3, 2], 5)
    x = binary(8, 5, 5)
    svi = SVI(sbn.model, sbn.guide, Adam({"lr": 1e-3}), ReweightedWakeSleepELBO(3, max_plate_nesting=1, **PHI[phi]))
    evaluated = _seeded(6, lambda: svi.evaluate_loss(x))
    stepped = _seeded(6, lambda: svi.step(x))
    assert isinstance(stepped, float) and stepped == evaluated
    pyro.clear_param_store()


def test_the_separate_players_record_theta_and_the_phi_surrogate():
    """A named guard: with ``joint=False`` the "wake" player records theta (-L_K) and the "sleep" player the phi
    surrogate (no bound), as the docstrings say."""
    sbn = random_sbn([5, 3], 6)
    x = binary(4, 5, 6)
    objective = RWS(sbn.model, sbn.guide, num_particles=3, joint=False, max_plate_nesting=1)
    theta, phi = _seeded(7, lambda: objective.elbo.losses(sbn.model, sbn.guide, x))
    assert _seeded(7, lambda: objective.loss("wake", x)).item() == (theta / 4).item()
    assert _seeded(7, lambda: objective.loss("sleep", x)).item() == (phi / 4).item()


def test_both_phi_updates_are_averaged_not_summed():
    """With ``wake_phi`` and ``sleep_phi`` both on, the :math:`\\phi` loss is the mean of the wake- and the
    sleep-:math:`\\phi` losses on the same random numbers (Pyro's ``ReweightedWakeSleep(insomnia=0.5)``, [1] of
    rws.py), value and guide gradient.  Summing them (a mutation that survived the suite) doubles the guide's step.
    The three runs draw the same particles: every mode draws the wake particles first, the dreams after."""
    sbn = random_sbn([5, 3, 2], 8)
    x = binary(6, 5, 8)
    guide_params = list(sbn.guide_parameters())

    def phi_of(mode):
        elbo = ReweightedWakeSleepELBO(num_particles=3, max_plate_nesting=1, **PHI[mode])
        phi = _seeded(9, lambda: elbo.losses(sbn.model, sbn.guide, x)).phi
        grads = torch.autograd.grad(phi, guide_params, allow_unused=True)
        return phi, torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                               for g, p in zip(grads, guide_params)])

    (wake, wake_grad), (sleep, sleep_grad), (both, both_grad) = (phi_of(m) for m in ("wake", "sleep", "both"))
    assert abs(wake.item() - sleep.item()) > 0.1  # the two terms differ, so the mean is no coincidence
    assert both.item() == pytest.approx((wake.item() + sleep.item()) / 2, rel=1e-6, abs=0)
    assert torch.allclose(both_grad, (wake_grad + sleep_grad) / 2, rtol=1e-5, atol=1e-6)
    assert both_grad.abs().max() > 0.1
