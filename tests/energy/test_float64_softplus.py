"""The Boltzmann machines' exact quantities in float64 at pre-activations above 20, against brute force.

torch's ``softplus`` returns ``x`` itself above its default threshold 20, ``log1p(exp(-x))`` (2e-9 at 20) below
the value; :mod:`hybridpgm.softplus` raises the threshold to 40 in float64.  The models here put the summed-out
units' pre-activations at 20-25 (hidden biases 20 and small positive weights, or large weights of both signs
and biases 22), where that error is 1e-10 to 1e-9 per unit: the old results were off by 4e-12 to 4e-11
relative.  The references enumerate every joint state and take ``logsumexp`` of ``-E(v, h)`` (no softplus at
all) or ``torch.logaddexp(x, 0)``, both accurate to float64 rounding.  The tolerance is 1e-13 relative to the
size of the quantities that cancel (``|log Z|``, a free energy, the terms of a sum): float64's unit roundoff
1.1e-16 times the few tens of additions of terms up to 40 and the logsumexp over at most 2^12 states leaves
about 1e-15 relative (measured: 2e-16), so 1e-13 has a margin of 100 over rounding and lies 40 to 400 times
below the old error.
"""

import math

import pytest
import torch

from hybridpgm.energy import DBM, RBM
from hybridpgm.energy.annealing import DBMAnnealingPath, RBMAnnealingPath
from hybridpgm.energy.free_energy_gap import free_energy_gap, free_energy_gap_and_gradients
from tests.energy.brute_force import all_states, dbm_joint_log_weights, rbm_joint_log_weights
from tests.energy.brute_force import single_thread  # noqa: F401

REL = 1e-13


def _assert_close(got, ref, scale, what):
    err = (torch.as_tensor(got) - torch.as_tensor(ref)).abs().max().item()
    assert err <= REL * float(scale), f"{what}: error {err:.3g}, {err / float(scale):.3g} of the scale {scale:.4g}"


def _rbm(num_visible, num_hidden, kind, enumerate_hidden):
    """A float64 RBM whose summed-out units (hidden ones when the visible states are enumerated, visible ones
    when the hidden states are) have pre-activations around 20-25: ``kind="band"``: biases 20 and weights in
    [0, 0.5]; ``kind="large"``: weights of magnitude up to 4 of both signs and biases 22."""
    g = torch.Generator().manual_seed(1)
    rbm = RBM(num_visible, num_hidden).double()
    shape = (num_visible, num_hidden)
    with torch.no_grad():
        if kind == "band":
            rbm.weight.copy_(0.5 * torch.rand(shape, generator=g, dtype=torch.float64))
            high = 20.0
        else:
            sign = torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0).double()
            rbm.weight.copy_(4.0 * torch.rand(shape, generator=g, dtype=torch.float64) * sign)
            high = 22.0
        summed, other = (rbm.visible_bias, rbm.hidden_bias) if enumerate_hidden else (rbm.hidden_bias,
                                                                                      rbm.visible_bias)
        summed.fill_(high)
        other.copy_(torch.randn(other.shape, generator=g, dtype=torch.float64))
    return rbm


# (V, H, which layer log_partition enumerates): H > V enumerates the visible states through the free energy,
# H <= V the hidden ones through the softplus of the visible pre-activations
SHAPES = [(5, 6, False), (6, 4, True)]


@pytest.mark.parametrize("kind", ["band", "large"])
@pytest.mark.parametrize("num_visible, num_hidden, enumerate_hidden", SHAPES)
def test_rbm_log_partition_and_log_likelihood_match_brute_force(num_visible, num_hidden, enumerate_hidden, kind):
    rbm = _rbm(num_visible, num_hidden, kind, enumerate_hidden)
    joint = rbm_joint_log_weights(rbm)  # 2**V x 2**H
    ref_log_z = joint.logsumexp((0, 1))
    with torch.no_grad():
        log_z = rbm.log_partition()
        _assert_close(log_z, ref_log_z, ref_log_z.abs(), "log Z")
        v = all_states(num_visible)
        _assert_close(rbm.log_likelihood(v), joint.logsumexp(1) - ref_log_z, ref_log_z.abs(), "log p(v)")
        _assert_close(rbm.free_energy(v), -joint.logsumexp(1), ref_log_z.abs(), "F(v)")
        free, _ = rbm.positive_phase(v)
        _assert_close(free, -joint.logsumexp(1), ref_log_z.abs(), "positive phase F(v)")


@pytest.mark.parametrize("kind", ["band", "large"])
def test_rbm_exact_pseudo_log_likelihood_matches_brute_force(kind):
    rbm = _rbm(5, 6, kind, enumerate_hidden=False)
    v = all_states(5)
    log_f = rbm_joint_log_weights(rbm).logsumexp(1)  # log p(v) + log Z, 2**V
    index = {tuple(int(b) for b in row.tolist()): i for i, row in enumerate(v)}
    ref = torch.zeros(v.shape[0], dtype=torch.float64)
    for i in range(5):
        flipped = v.clone()
        flipped[:, i] = 1 - flipped[:, i]
        partner = log_f[[index[tuple(int(b) for b in row.tolist())] for row in flipped]]
        ref += log_f - torch.logaddexp(log_f, partner)
    got = rbm.pseudo_log_likelihood(v, exact=True)
    _assert_close(got, ref, log_f.abs().max(), "exact pseudo-log-likelihood")


def _free_energy_reference(rbm, v):
    return -v @ rbm.visible_bias.detach() - torch.logaddexp(rbm.hidden_logits(v).detach(), torch.tensor(0.0,
                                                            dtype=torch.float64)).sum(-1)


def test_contrastive_gap_value_matches_free_energies():
    """The large-weight RBM: its pre-activations differ between examples, so the old per-example errors
    (2e-10 of 1e-9) do not cancel in the difference of the two means."""
    rbm = _rbm(5, 6, "large", enumerate_hidden=False)
    g = torch.Generator().manual_seed(3)
    v = torch.bernoulli(torch.full((7, 5), 0.5, dtype=torch.float64), generator=g)
    v_neg = torch.bernoulli(torch.full((9, 5), 0.5, dtype=torch.float64), generator=g)
    ref = _free_energy_reference(rbm, v).mean() - _free_energy_reference(rbm, v_neg).mean()
    scale = _free_energy_reference(rbm, torch.cat([v, v_neg])).abs().max()
    params = (rbm.weight, rbm.visible_bias, rbm.hidden_bias)
    _assert_close(free_energy_gap(*params, v, v_neg).detach(), ref, scale, "free_energy_gap")
    _assert_close(free_energy_gap_and_gradients(*params, v, v_neg)[0], ref, scale, "free_energy_gap_and_gradients")
    _assert_close(rbm.contrastive_gap(v, (v_neg,)).detach(), ref, scale, "RBM.contrastive_gap")
    plain = torch.func.vmap(lambda w: free_energy_gap(w, *params[1:], v, v_neg))(params[0].detach()[None])
    _assert_close(plain[0], ref, scale, "free_energy_gap under vmap")


def _band_dbm(sizes):
    """A float64 DBM with biases 20 and weights in [0, 0.5]: every unit's pre-activation lies in 20-25."""
    g = torch.Generator().manual_seed(2)
    dbm = DBM(sizes).double()
    with torch.no_grad():
        for w in dbm.weights:
            w.copy_(0.5 * torch.rand(w.shape, generator=g, dtype=torch.float64))
        for b in dbm.biases:
            b.fill_(20.0)
    return dbm


@pytest.mark.parametrize("sizes", [[4, 3, 3], [3, 4, 2], [2, 3, 2, 3]])
def test_dbm_log_partition_and_log_likelihood_match_brute_force(sizes):
    dbm = _band_dbm(sizes)
    joint = dbm_joint_log_weights(dbm)
    dims = tuple(range(len(sizes)))
    ref_log_z = joint.logsumexp(dims)
    ref_unnormalized = joint.logsumexp(dims[1:])  # log sum_h e^{-E(v, h)}, 2**V
    v = all_states(sizes[0])
    with torch.no_grad():
        _assert_close(dbm.log_partition(), ref_log_z, ref_log_z.abs(), "DBM log Z")
        _assert_close(dbm.unnormalized_log_prob(v), ref_unnormalized, ref_log_z.abs(), "DBM unnormalized log p")
        _assert_close(dbm.log_likelihood(v), ref_unnormalized - ref_log_z, ref_log_z.abs(), "DBM log p(v)")


def test_rbm_annealing_path_matches_logaddexp():
    rbm = _rbm(5, 6, "band", enumerate_hidden=False)
    path = RBMAnnealingPath(rbm)
    path.base = torch.linspace(20.0, 30.0, 5, dtype=torch.float64)
    ref_z0 = torch.logaddexp(path.base, torch.tensor(0.0, dtype=torch.float64)).sum() + 6 * math.log(2.0)
    _assert_close(path.log_z0, ref_z0, ref_z0.abs(), "RBM log Z_A")
    v = all_states(5)
    a = rbm.hidden_logits(v).detach()
    zero = torch.tensor(0.0, dtype=torch.float64)
    for beta_prev, beta in [(0.9, 1.0), (0.95, 0.99)]:
        inc, _ = path.step(v, beta_prev, beta, transition=False)
        visible = (beta - beta_prev) * (v @ (rbm.visible_bias.detach() - path.base))
        ref = visible + (torch.logaddexp(beta * a, zero) - torch.logaddexp(beta_prev * a, zero)).sum(-1)
        _assert_close(inc, ref, (beta * a).abs().sum(-1).max(), f"RBM increment {beta_prev} -> {beta}")


def test_dbm_annealing_path_matches_logaddexp():
    dbm = _band_dbm([4, 3, 3])
    path = DBMAnnealingPath(dbm)
    path.base = torch.linspace(20.0, 30.0, 4, dtype=torch.float64)
    ref_z0 = torch.logaddexp(path.base, torch.tensor(0.0, dtype=torch.float64)).sum() + 6 * math.log(2.0)
    _assert_close(path.log_z0, ref_z0, ref_z0.abs(), "DBM log Z_A")
    g = torch.Generator().manual_seed(4)
    x = [torch.bernoulli(torch.full((8, n), 0.5, dtype=torch.float64), generator=g) for n in dbm.sizes]
    a = dbm.layer_logits(x, 1).detach()
    zero = torch.tensor(0.0, dtype=torch.float64)
    beta_prev, beta = 0.9, 1.0
    inc, _ = path.step(x, beta_prev, beta, transition=False)
    linear = x[0] @ (dbm.biases[0].detach() - path.base) + x[2] @ dbm.biases[2].detach()
    ref = (beta - beta_prev) * linear + (torch.logaddexp(beta * a, zero) - torch.logaddexp(beta_prev * a, zero)).sum(-1)
    _assert_close(inc, ref, (beta * a).abs().sum(-1).max(), "DBM increment")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_guard_rbm_low_precision_free_energy_is_torch_default_softplus(dtype):
    """Guard (passes before and after the change): float32/float16 keep torch's default threshold, bit for
    bit (``float16`` runs the free energy's softplus on float16 pre-activations)."""
    torch.manual_seed(0)
    rbm = RBM(5, 6, init_scale=4.0).to(dtype)
    with torch.no_grad():
        rbm.hidden_bias.fill_(20.0)
    v = all_states(5).to(dtype)
    with torch.no_grad():
        old = -(v @ rbm.visible_bias) - torch.nn.functional.softplus(rbm.hidden_logits(v)).sum(-1)
        assert torch.equal(rbm.free_energy(v), old)
