"""The value wake-sleep reports (hybridpgm/infer/wake_sleep.py): the negative ELBO, with unchanged gradients.

Found by an audit: the wake loss's value was :math:`-\\mathbb E_q \\log p(x, h)` (8.1 nats per example on a tiny
SBN whose -ELBO was 4.8), and ``WakeSleepELBO.differentiable_loss`` (what ``SVI.step`` returns) was
``wake + sleep`` (752 against ``SVI.evaluate_loss``'s 305, the -L_K of ``ParticleELBO.loss``).
"""

import math

import pyro
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import Adam

from hybridpgm.infer import WakeSleep, WakeSleepELBO
from tests.generative import sbn_brute_force as bf
from tests.generative.sbn_brute_force import binary, random_sbn, single_thread  # noqa: F401


def _seeded(seed, fn):
    pyro.set_rng_seed(seed)
    return fn()


@pytest.mark.parametrize("particles", [1, 3])
def test_the_wake_value_is_the_negative_elbo_of_the_same_samples(particles):
    """The "wake" player's value, ``wake_loss``, ``differentiable_loss`` and ``loss`` equal
    -(1/K) sum_k [log p(x, h_k) - log q(h_k | x)] of the same samples (same seed), from the log-weights."""
    sbn = random_sbn([5, 3, 2], 0)
    x = binary(6, 5, 0)
    objective = WakeSleep(sbn.model, sbn.guide, num_particles=particles, num_sleep_particles=2, max_plate_nesting=1)
    elbo = objective.elbo
    with torch.no_grad():
        lw = _seeded(1, lambda: elbo.log_weights(sbn.model, sbn.guide, x))
        expected = -(lw.log_p - lw.log_q).mean(0).sum().item()
        expected_old = -lw.log_p.mean(0).sum().item()
    assert expected_old > expected + 1.0  # the old value, -E_q log p(x, h), is far from it
    assert _seeded(1, lambda: objective.loss("wake", x)).item() == pytest.approx(expected / 6, rel=1e-6, abs=0)
    assert _seeded(1, lambda: elbo.wake_loss(sbn.model, sbn.guide, x)).item() == pytest.approx(expected, rel=1e-6)
    assert _seeded(1, lambda: elbo.differentiable_loss(sbn.model, sbn.guide, x)).item() == \
        pytest.approx(expected, rel=1e-6, abs=0)
    assert _seeded(1, lambda: elbo.loss(sbn.model, sbn.guide, x)) == pytest.approx(expected, rel=1e-6, abs=0)


def test_the_wake_value_estimates_the_enumerated_elbo():
    """Averaged over many samples, the "wake" player's value per example is -ELBO, computed by enumerating the
    hidden states of a tiny SBN (independently of the library).  Before, it was -E_q log p(x, h), the entropy of
    q (about 1.7 nats here) above."""
    sbn = random_sbn([3, 2, 2], 1)
    x = binary(2, 3, 1)
    objective = WakeSleep(sbn.model, sbn.guide, max_plate_nesting=1)
    batch = x.repeat(20000, 1)
    with torch.no_grad():
        value = _seeded(0, lambda: objective.loss("wake", batch)).item()
    exact = -bf.elbo(sbn, x).mean().item()
    hs = bf.configurations(sbn)
    lq = bf.log_guide(sbn, x, hs)
    entropy = -(lq.exp() * lq).sum(0).mean().item()
    assert entropy > 0.5
    assert math.isclose(value, exact, abs_tol=0.03), (value, exact)


def test_the_gradients_are_bit_for_bit_those_of_the_old_losses():
    """A named guard (passes on the old code too): the wake loss's gradients are exactly those of
    -(1/K) sum_k log p(x, h_k) on the same samples, and ``differentiable_loss``'s those of that plus the sleep
    loss, for every parameter."""
    sbn = random_sbn([5, 3, 2], 2)
    x = binary(7, 5, 2)
    params = list(sbn.parameters())
    objective = WakeSleep(sbn.model, sbn.guide, num_particles=2, num_sleep_particles=2, max_plate_nesting=1)
    elbo = objective.elbo

    def grads(loss):
        return torch.autograd.grad(loss, params, allow_unused=True)

    def old_wake():
        return -elbo.log_weights(sbn.model, sbn.guide, x).log_p.mean(0).sum()

    def old_joint():
        return old_wake() + elbo.sleep_loss(sbn.model, sbn.guide, x)

    pairs = [(_seeded(3, lambda: grads(old_wake() / 7)), _seeded(3, lambda: grads(objective.loss("wake", x)))),
             (_seeded(4, lambda: grads(old_wake())),
              _seeded(4, lambda: grads(elbo.wake_loss(sbn.model, sbn.guide, x)))),
             (_seeded(5, lambda: grads(old_joint())),
              _seeded(5, lambda: grads(elbo.differentiable_loss(sbn.model, sbn.guide, x))))]
    for old, new in pairs:
        assert all((g is None and h is None) or torch.equal(g, h) for g, h in zip(old, new))
        assert any(g is not None for g in old)
    assert all(g is None for g, p in zip(pairs[0][0], params) if any(p is q for q in sbn.guide_parameters()))


def test_svi_step_and_evaluate_loss_return_the_same_quantity():
    """Plain Pyro SVI: ``step`` (``loss_and_grads``) and ``evaluate_loss`` (``loss``) return the same number on
    the same random numbers, the -ELBO estimate.  Before, step returned wake + sleep and evaluate_loss -L_K."""
    pyro.clear_param_store()
    sbn = random_sbn([5, 3, 2], 5)
    x = binary(8, 5, 5)
    svi = SVI(sbn.model, sbn.guide, Adam({"lr": 1e-3}), WakeSleepELBO(2, 2, max_plate_nesting=1))
    evaluated = _seeded(6, lambda: svi.evaluate_loss(x))
    stepped = _seeded(6, lambda: svi.step(x))
    assert isinstance(stepped, float) and stepped == evaluated
    pyro.clear_param_store()
