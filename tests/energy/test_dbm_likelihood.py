"""DBM log p(v) (hybridpgm/energy/dbm_likelihood.py): value and gradient against every state of a tiny DBM
enumerated here with plain differentiable operations; the parity of hidden layers the sum over h enumerates."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hybridpgm.energy import DBM
from hybridpgm.energy.enumerate_states import logsumexp_over_states
from hybridpgm.errors import ModelSpecError
from tests.energy.brute_force import all_states, random_dbm, single_thread  # noqa: F401

SIZES = [[3, 2, 2], [2, 3, 2, 2], [4, 3]]


def _brute_force(dbm, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r""":math:`\log \sum_h e^{-E(v,h)}` for the rows of ``v`` and :math:`\log Z`, from :math:`-E(x)` of every
    joint state, differentiable in the DBM's parameters."""
    joint = all_states(sum(dbm.sizes))  # v, the slowest units, first
    x = joint.split(dbm.sizes, -1)
    log_w = sum(x[l] @ dbm.biases[l] for l in range(len(x)))
    log_w = log_w + sum(((x[l] @ dbm.weights[l]) * x[l + 1]).sum(-1) for l in range(len(x) - 1))
    per_visible = log_w.reshape(2 ** dbm.sizes[0], -1)  # rows in all_states(V) order
    index = (v.long() * 2 ** torch.arange(v.shape[-1] - 1, -1, -1)).sum(-1)
    return torch.logsumexp(per_visible, 1)[index], torch.logsumexp(log_w, 0)


def _brute_force_log_likelihood(dbm, v: torch.Tensor) -> torch.Tensor:
    unnormalized, log_z = _brute_force(dbm, v)
    return unnormalized - log_z


def _data(dbm, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((7, dbm.sizes[0]), 0.5, dtype=torch.float64), generator=g)


@pytest.mark.parametrize("sizes", SIZES)
def test_log_likelihood_and_its_gradient_match_brute_force(sizes):
    """``log_likelihood`` ran under ``no_grad`` with a constant log Z: ``.backward()`` raised torch's
    'element 0 of tensors does not require grad'."""
    dbm = random_dbm(sizes, seed=1)
    v = _data(dbm)
    params = list(dbm.parameters())
    got = dbm.log_likelihood(v)
    want = _brute_force_log_likelihood(dbm, v)
    torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-12, atol=1e-12)
    assert got.requires_grad
    grads = torch.autograd.grad(got.mean(), params)
    expected = torch.autograd.grad(want.mean(), params)
    assert max(float(g.abs().max()) for g in expected) > 1e-3  # not vacuous
    for a, b in zip(grads, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_maximum_likelihood_backward_fills_every_parameters_gradient():
    """``(-dbm.log_likelihood(x).mean()).backward()`` as documented, against brute force."""
    dbm = random_dbm([2, 3, 2, 2], seed=2)
    v = _data(dbm, seed=3)
    (-dbm.log_likelihood(v).mean()).backward()
    expected = torch.autograd.grad(-_brute_force_log_likelihood(dbm, v).mean(), list(dbm.parameters()))
    for p, b in zip(dbm.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, b, rtol=1e-10, atol=1e-12)


def test_the_chunked_sum_over_the_hidden_layers_has_the_same_gradient():
    """``unnormalized_log_prob`` in several chunks (each recomputed in the backward pass) against brute force."""
    dbm = random_dbm([2, 2, 3, 1, 2], seed=4)
    v = _data(dbm, seed=5)
    params = list(dbm.parameters())
    chunked = dbm.unnormalized_log_prob(v, chunk_size=3)  # 2**5 even hidden states in 11 chunks
    want = _brute_force(dbm, v)[0]
    torch.testing.assert_close(chunked.detach(), want.detach(), rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(chunked.sum(), params)
    for a, b in zip(grads, torch.autograd.grad(want.sum(), params), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_a_given_constant_log_z_leaves_the_gradient_of_the_unnormalized_part():
    """A known log Z (a number, or a tensor without a graph) is a constant, as documented."""
    dbm = random_dbm([3, 2, 2], seed=6)
    v = _data(dbm, seed=7)
    params = list(dbm.parameters())
    log_z = dbm.log_partition().detach()
    got = torch.autograd.grad(dbm.log_likelihood(v, log_z).sum(), params)
    want = torch.autograd.grad(_brute_force(dbm, v)[0].sum(), params)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    with_graph = dbm.log_likelihood(v, dbm.log_partition(differentiable=True))
    expected = torch.autograd.grad(_brute_force_log_likelihood(dbm, v).sum(), params)
    for a, b in zip(torch.autograd.grad(with_graph.sum(), params), expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_no_grad_gives_the_same_value_without_a_graph():
    """Guard (passes before and after): outside grad mode the value is the same and carries no graph."""
    dbm = random_dbm([3, 2, 2], seed=8)
    v = _data(dbm, seed=9)
    with torch.no_grad():
        got = dbm.log_likelihood(v)
    assert not got.requires_grad
    torch.testing.assert_close(got, _brute_force_log_likelihood(dbm, v).detach(), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- the parity of the hidden layers enumerated
# With v clamped, the sum over h enumerates the even hidden layers (the odd ones summed out) or the odd hidden
# layers (the even ones summed out), whichever is smaller.  Tolerances: both are sums of at most 2**9 terms in
# float64 of magnitude below ~30, so rounding leaves ~1e-14; measured 6e-16 relative on 200 random models.  (At
# logits above 20 torch's softplus returns the logit itself, 2e-9 off: the models here keep them smaller.)

def _sum_over_h(dbm, v: torch.Tensor) -> torch.Tensor:
    r""":math:`\log \sum_h e^{-E(v,h)}` for each row of ``v`` (values in [0, 1]) over every joint hidden state,
    differentiable in ``v`` and the parameters."""
    hidden = all_states(sum(dbm.sizes[1:])).split(dbm.sizes[1:], -1)
    x = [v.unsqueeze(1)] + [h.unsqueeze(0) for h in hidden]  # batch x states
    log_w = sum(x[l] @ dbm.biases[l] for l in range(len(x)))
    log_w = log_w + sum(((x[l] @ dbm.weights[l]) * x[l + 1]).sum(-1) for l in range(len(x) - 1))
    return torch.logsumexp(log_w, 1)


def _random_models(count: int, seed: int):
    """``count`` float64 DBMs of 2 or 3 hidden layers of 1 to 3 units, 1 to 3 visible units."""
    g = torch.Generator().manual_seed(seed)
    for i in range(count):
        sizes = [int(n) for n in torch.randint(1, 4, (3 + i % 2,), generator=g)]
        dbm = random_dbm(sizes, seed=seed + i, scale=[0.5, 1.0, 2.0][i % 3])
        dbm.probabilities = True
        yield dbm


@pytest.mark.parametrize("keep", [0, 1])
def test_each_forced_parity_matches_brute_force_with_its_gradient(keep):
    """Enumerating the even (``keep=0``) or the odd (``keep=1``) hidden layers, in one chunk and in chunks of 2,
    gives the brute-force value and gradient (parameters and ``v``) on random models (the odd parity did not
    exist: ``_sum_over_hidden`` is new)."""
    for dbm in _random_models(16, seed=10 + keep):
        g = torch.Generator().manual_seed(keep)
        v = torch.rand(5, dbm.sizes[0], dtype=torch.float64, generator=g).requires_grad_()
        inputs = list(dbm.parameters()) + [v]
        want = _sum_over_h(dbm, v)
        expected = torch.autograd.grad(want.sum(), inputs)
        for chunk in (None, 2):
            got = dbm._sum_over_hidden(v, chunk, "test", keep=keep)
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
            for a, b in zip(torch.autograd.grad(got.sum(), inputs), expected, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        assert dbm._sum_over_hidden(v[:0], None, "test", keep=keep).shape == (0,)


def test_the_two_parities_agree():
    """Where both are feasible the parities agree to rounding (see the tolerance note above)."""
    for dbm in _random_models(12, seed=40):
        v = all_states(dbm.sizes[0])
        even, odd = (dbm._sum_over_hidden(v, None, "test", keep=k) for k in (0, 1))
        torch.testing.assert_close(even, odd, rtol=1e-12, atol=1e-12)


def test_the_smaller_hidden_set_is_enumerated():
    """``unnormalized_log_prob`` enumerates the smaller hidden set, counted through the enumerator's
    ``num_units``: the old code always enumerated the even hidden layers, 4 units of ``[2, 1, 4, 1]``."""
    import hybridpgm.energy.dbm_likelihood as module

    seen = []

    def counting(log_f, num_units, **kwargs):
        seen.append(num_units)
        return logsumexp_over_states(log_f, num_units, **kwargs)

    dbm = random_dbm([2, 1, 4, 1], seed=3)
    v = all_states(2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "logsumexp_over_states", counting)
        got = dbm.unnormalized_log_prob(v)
    assert seen == [2]  # H1 + H3, not H2 = 4
    torch.testing.assert_close(got, _brute_force(dbm, v)[0], rtol=1e-12, atol=1e-12)


def test_a_wide_even_hidden_layer_enumerates_the_odd_one():
    """``DBM([2, 1, 31])``: ``log_partition`` worked (1 odd unit) but ``log_likelihood(v)``,
    ``log_likelihood(v, log_z)`` and ``unnormalized_log_prob(v)`` raised 'would enumerate 2**31 states ... use
    method='ais''.  Against the sum over h1 written out (H2 summed out) and sum_v p(v) = 1, with gradients."""
    dbm = random_dbm([2, 1, 31], seed=5)
    v = all_states(2)
    params = list(dbm.parameters())
    w0, w1 = dbm.weights
    b0, b1, b2 = dbm.biases
    h1 = torch.tensor([[0.0], [1.0]], dtype=torch.float64).unsqueeze(1)  # 2 x 1 x 1
    log_w = v @ b0 + ((v @ w0) * h1).sum(-1) + h1 @ b1 + F.softplus(b2 + h1 @ w1).sum(-1)
    want = torch.logsumexp(log_w, 0)
    got = dbm.unnormalized_log_prob(v)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(got.sum(), params), torch.autograd.grad(want.sum(), params), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    log_p = dbm.log_likelihood(v)
    torch.testing.assert_close(torch.logsumexp(log_p, 0), torch.zeros((), dtype=torch.float64), rtol=0, atol=1e-12)
    log_z = dbm.log_partition()
    torch.testing.assert_close(dbm.log_likelihood(v, log_z=log_z), log_p.detach(), rtol=1e-12, atol=1e-12)


def test_too_wide_models_name_the_call_and_what_works():
    """Both hidden parities over 30 units: the message named no call and advised ``method='ais'``, which
    neither call takes; without ``log_z`` a too large log Z advised the same from ``log_likelihood``."""
    both = DBM([2, 31, 31])
    v = torch.zeros(1, 2)
    for call, fn in (("DBM.unnormalized_log_prob", both.unnormalized_log_prob),
                     ("DBM.log_likelihood", lambda x: both.log_likelihood(x, log_z=0.0))):
        with pytest.raises(ModelSpecError, match=rf"^{call}: .*H2\+H4\+\.\.\. = 31 units .*H1\+H3\+\.\.\. = 31 "
                                                 r"units.*log_likelihood_bound\(v, log_z\)") as info:
            fn(v)
        assert "method=" not in str(info.value)
    wide_z = DBM([31, 31, 1])  # log Z: 32 even or 31 odd units; the sum over h: 1 unit
    x = torch.zeros(2, 31)
    assert wide_z.log_likelihood(x, log_z=0.0).shape == (2,)
    for call, fn in (("DBM.log_likelihood", wide_z.log_likelihood),
                     ("DBM.log_likelihood_bound", wide_z.log_likelihood_bound)):
        with pytest.raises(ModelSpecError, match=rf"^{call} without log_z: .*2\*\*31 states.*pass log_z"):
            fn(x)
