"""The CD surrogate with its gradient written out (hybridpgm/energy/free_energy_gap.py)
against autograd through the free energy."""

import pytest
import torch

from hybridpgm.energy import RBM
from hybridpgm.energy.free_energy_gap import free_energy_gap, free_energy_gap_and_gradients


def _rbm_and_samples(batch, chains, seed=0):
    torch.manual_seed(seed)
    rbm = RBM(9, 5, init_scale=0.5)
    with torch.no_grad():
        rbm.visible_bias.normal_()
        rbm.hidden_bias.normal_()
    g = torch.Generator().manual_seed(seed + 1)
    v = torch.bernoulli(torch.full((batch, 9), 0.4), generator=g)
    v_neg = torch.bernoulli(torch.full((chains, 9), 0.6), generator=g)
    return rbm, v, v_neg


def _assert_autograd_through_the_free_energy_gives(rbm, v, v_neg, value, grads):
    """``value`` and ``grads`` (weight, visible bias, hidden bias) are autograd's through the free energy."""
    params = [rbm.weight, rbm.visible_bias, rbm.hidden_bias]
    expected = rbm.free_energy(v).mean() - rbm.free_energy(v_neg).mean()
    torch.testing.assert_close(value, expected.detach(), rtol=1e-6, atol=1e-6)
    for a, b in zip(grads, torch.autograd.grad(expected, params), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch,chains", [(7, 7), (6, 11)])
@pytest.mark.parametrize("given", ["nothing", "logits", "clamped_state cache"])
def test_value_and_gradients_equal_autograd_through_the_free_energy(batch, chains, given):
    """With the data's pre-activations recomputed, passed in, or taken from clamped_state's cache."""
    rbm, v, v_neg = _rbm_and_samples(batch, chains)
    params = [rbm.weight, rbm.visible_bias, rbm.hidden_bias]
    if given == "clamped_state cache":
        got = rbm.contrastive_gap(v, (v_neg,), rbm.clamped_state(v)[1])
    else:
        got = free_energy_gap(*params, v, v_neg, rbm.hidden_logits(v).detach() if given == "logits" else None)
    _assert_autograd_through_the_free_energy_gives(rbm, v, v_neg, got.detach(), torch.autograd.grad(got, params))


def test_the_rbm_uses_it_for_bernoulli_units_and_autograd_otherwise():
    rbm, v, v_neg = _rbm_and_samples(5, 5)
    assert rbm.contrastive_gap(v, (v_neg,)).grad_fn.name().endswith("_FreeEnergyGapBackward")
    gaussian = RBM(9, 5, visible="gaussian")
    x, x_neg = torch.randn(4, 9), torch.randn(3, 9)
    loss = gaussian.contrastive_gap(x, (x_neg,))
    assert "FreeEnergyGap" not in loss.grad_fn.name()
    torch.testing.assert_close(loss, gaussian.free_energy(x).mean() - gaussian.free_energy(x_neg).mean())


def test_clamped_state_draws_what_positive_phase_draws():
    rbm, v, _ = _rbm_and_samples(6, 6)
    torch.manual_seed(3)
    _, (v1, h1) = rbm.positive_phase(v)
    torch.manual_seed(3)
    (v2, h2), (logits, probs) = rbm.clamped_state(v)
    assert torch.equal(h1, h2) and v1 is v and v2 is v
    torch.testing.assert_close(logits, rbm.hidden_logits(v))
    torch.testing.assert_close(probs, torch.sigmoid(logits))


def test_the_gradient_scales_with_the_incoming_gradient_and_skips_frozen_parameters():
    rbm, v, v_neg = _rbm_and_samples(5, 8)
    params = [rbm.weight, rbm.visible_bias, rbm.hidden_bias]
    unit = torch.autograd.grad(free_energy_gap(*params, v, v_neg), params)
    scaled = torch.autograd.grad(-2.5 * free_energy_gap(*params, v, v_neg), params)
    for a, b in zip(scaled, unit):
        torch.testing.assert_close(a, -2.5 * b)
    rbm.weight.requires_grad_(False)
    loss = free_energy_gap(*params, v, v_neg)
    grads = torch.autograd.grad(loss, params[1:])
    for a, b in zip(grads, unit[1:]):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("batch,chains", [(7, 7), (6, 11)])
@pytest.mark.parametrize("given", ["nothing", "logits", "logits and probabilities"])
def test_the_gradients_written_out_at_once_equal_autograd_through_the_free_energy(batch, chains, given):
    rbm, v, v_neg = _rbm_and_samples(batch, chains)
    logits = rbm.hidden_logits(v).detach() if given != "nothing" else None
    probs = torch.sigmoid(logits) if given == "logits and probabilities" else None
    value, grads = free_energy_gap_and_gradients(rbm.weight, rbm.visible_bias, rbm.hidden_bias, v, v_neg, logits,
                                                 probs)
    assert value.grad_fn is None and all(g.grad_fn is None for g in grads)
    _assert_autograd_through_the_free_energy_gives(rbm, v, v_neg, value, grads)


def test_the_rbm_writes_its_gradients_out_only_where_the_closed_form_holds():
    rbm, v, v_neg = _rbm_and_samples(5, 6)
    value, grads = rbm.contrastive_gap_and_gradients(v, (v_neg,), rbm.clamped_state(v)[1])
    loss = rbm.contrastive_gap(v, (v_neg,))
    assert list(grads) == [rbm.weight, rbm.visible_bias, rbm.hidden_bias]
    for p, g in zip(grads, torch.autograd.grad(loss, list(grads))):
        torch.testing.assert_close(grads[p], g)
    torch.testing.assert_close(value, loss.detach())
    gaussian = RBM(9, 5, visible="gaussian")
    assert gaussian.contrastive_gap_and_gradients(torch.randn(4, 9), (torch.randn(3, 9),)) is None
    assert rbm.contrastive_gap_and_gradients(v[0], (v_neg[0],)) is None  # one row without its batch dim
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the RBM computes in its own dtype under autocast
        in_bf16 = rbm.contrastive_gap_and_gradients(v, (v_neg,))
    assert in_bf16 is not None
    torch.testing.assert_close(in_bf16[0], value)
    for p in grads:
        torch.testing.assert_close(in_bf16[1][p], grads[p])
