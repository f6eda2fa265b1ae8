"""The exact log-likelihood of a sigmoid belief net (:mod:`hybridpgm.generative.sbn_exact`): the enumerated model,
``exact_log_likelihood`` against brute force, and the enumeration budgets.

``exact_log_likelihood`` goes through the rows in chunks within ``MAX_ENUM_ELEMENTS``.  Before, the limit counted
only the hidden layers' joint states: ``SigmoidBeliefNet([64, 20])`` with 500 rows asked torch for one
``[2**20, 500, 64]`` tensor (134 GB, a raw RuntimeError)."""

import copy
import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pyro.infer import TraceEnum_ELBO
from torch.nn import functional as F

import hybridpgm.generative.sbn as sbn_module
import hybridpgm.generative.sbn_exact as sbn_exact
from hybridpgm.errors import ConfigError
from hybridpgm.generative import SigmoidBeliefNet
from tests.generative import sbn_brute_force as bf
from tests.generative.sbn_brute_force import binary, random_sbn, single_thread  # noqa: F401


@settings(max_examples=8, deadline=None)
@given(sizes=st.lists(st.integers(1, 3), min_size=2, max_size=4), seed=st.integers(0, 1000))
def test_exact_log_likelihood_matches_brute_force(sizes, seed):
    sbn = random_sbn(sizes, seed)
    x = binary(3, sizes[0], seed)
    exact = sbn.exact_log_likelihood(x)
    assert exact.shape == (3,)
    assert torch.allclose(exact, bf.log_marginal(sbn, x), atol=1e-5)


@pytest.mark.parametrize("sizes", [[4, 3], [3, 2, 2]])
def test_exact_log_likelihood_of_a_one_row_batch(sizes):
    """Found by an audit: one row raised pyro.ops.contract's KeyError (the packed terms drop the size-1 data dim)."""
    sbn = random_sbn(sizes, 2)
    x = binary(2, sizes[0], 2)
    one = sbn.exact_log_likelihood(x[:1])
    assert one.shape == (1,)
    assert torch.allclose(one, bf.log_marginal(sbn, x[:1]), atol=1e-5)
    assert torch.allclose(one, sbn.exact_log_likelihood(x)[:1], atol=1e-6)


def test_exact_log_likelihood_normalises():
    sbn = random_sbn([3, 2, 2], 0)
    all_x = torch.tensor([[float(b) for b in f"{i:03b}"] for i in range(8)])
    total = torch.logsumexp(sbn.exact_log_likelihood(all_x), 0)
    assert abs(total.item()) < 1e-5


def test_enumerated_model_with_trace_enum_elbo():
    sbn = random_sbn([4, 3, 2], 1)
    x = binary(5, 4, 1)
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(sbn.enumerated_model, lambda x: None, x)
    assert torch.allclose(-loss, sbn.exact_log_likelihood(x).sum(), atol=1e-4)


def test_enumeration_refuses_large_layers():
    sbn = SigmoidBeliefNet([4, 20, 10])
    with pytest.raises(ConfigError, match="h1"):
        sbn.exact_log_likelihood(binary(2, 4, 0))


def test_exact_log_likelihood_of_a_wide_visible_layer():
    """Found by an audit: the enumerated model built the 2**D joint states of the visible layer too (never used),
    so a [64, 2] net (4 hidden states) raised a raw OverflowError."""
    sbn = random_sbn([64, 2], 3)
    x = binary(3, 64, 3)
    hidden = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    with torch.no_grad():
        log_prior = bf.bern(hidden, sbn.prior_logits)  # [4]
        log_lik = bf.bern(x.unsqueeze(1), sbn.decoders[0](hidden))  # [3, 4]
        expected = torch.logsumexp(log_prior + log_lik, -1)
        exact = sbn.exact_log_likelihood(x)
    assert exact.shape == (3,)
    torch.testing.assert_close(exact, expected)


def _net():
    torch.manual_seed(0)
    return SigmoidBeliefNet([5, 3, 2]).double()


def test_rows_go_through_in_chunks_within_the_budget_and_equal_a_row_by_row_loop(monkeypatch):
    net = _net()
    x = torch.bernoulli(torch.full((500, 5), 0.4, dtype=torch.float64))
    rows = []
    enumerated = SigmoidBeliefNet._enumerated_program

    def spy(self, x, **kwargs):
        rows.append(x.shape[0])
        return enumerated(self, x, **kwargs)

    monkeypatch.setattr(SigmoidBeliefNet, "_enumerated_program", spy)
    per_row = max(2**3 * 5, 2 ** (3 + 2))  # 2**H1 * D = 40, the pair h1, h2: 32
    monkeypatch.setattr(sbn_exact, "MAX_ENUM_ELEMENTS", 7 * per_row + 3)
    chunked = net.exact_log_likelihood(x)
    assert max(rows) == 7 and sum(rows) == 500
    monkeypatch.setattr(sbn_exact, "MAX_ENUM_ELEMENTS", 2**26)
    loop = torch.cat([net.exact_log_likelihood(x[i:i + 1]) for i in range(500)])
    torch.testing.assert_close(chunked, loop, rtol=0, atol=1e-12)
    whole = net.exact_log_likelihood(x)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-12)
    # the gradients too: with several chunks each is recomputed in the backward pass
    grad_whole = torch.autograd.grad(whole.sum(), list(net.parameters()), allow_unused=True)
    monkeypatch.setattr(sbn_exact, "MAX_ENUM_ELEMENTS", 7 * per_row + 3)
    chunked = net.exact_log_likelihood(x)
    grad_chunked = torch.autograd.grad(chunked.sum(), list(net.parameters()), allow_unused=True)
    for g, h in zip(grad_chunked, grad_whole):
        assert (g is None) == (h is None)
        if g is not None:
            torch.testing.assert_close(g, h, rtol=1e-10, atol=1e-10)


def test_a_single_row_beyond_the_budget_is_refused_by_name(monkeypatch):
    net = SigmoidBeliefNet([8, 4])  # one row: 2**4 states of h1 x D=8 = 128 elements
    monkeypatch.setattr(sbn_exact, "MAX_ENUM_ELEMENTS", 100)
    with pytest.raises(ConfigError, match=r"128 elements.*D=8.*MAX_ENUM_ELEMENTS=100"):
        net.exact_log_likelihood(torch.zeros(1, 8))


def test_the_old_import_paths_name_the_same_objects():
    """The split kept ``hybridpgm.generative.sbn``'s names: the saved class path and the re-exported helpers."""
    assert SigmoidBeliefNet.__module__ == "hybridpgm.generative.sbn"
    assert issubclass(SigmoidBeliefNet, sbn_exact.SBNExactLikelihood)
    for name in ("binary_states", "bernoulli_state_logits", "MAX_ENUM_STATES", "MAX_ENUM_ELEMENTS"):
        assert getattr(sbn_module, name) is getattr(sbn_exact, name)


def test_binary_states_and_their_bernoulli_log_probabilities():
    states = sbn_exact.binary_states(2, torch.zeros(1, dtype=torch.float64))
    assert states.dtype == torch.float64
    assert states.tolist() == [[0, 0], [1, 0], [0, 1], [1, 1]]  # bit 0 first
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.5]], dtype=torch.float64)
    expected = torch.stack([bf.bern(states, row) for row in logits])  # [2 rows, 4 states]
    torch.testing.assert_close(sbn_exact.bernoulli_state_logits(logits, states), expected)


def test_the_layer_pair_budget_is_read_from_sbn_exact_at_call_time(monkeypatch):
    net = SigmoidBeliefNet([3, 2, 2])  # the pair h1, h2 has 2**4 = 16 joint states
    monkeypatch.setattr(sbn_exact, "MAX_ENUM_STATES", 15)
    with pytest.raises(ConfigError, match=r"h1 \(2 units\) needs 16 joint states \(limit 15\)"):
        net.exact_log_likelihood(torch.zeros(2, 3))
    monkeypatch.setattr(sbn_exact, "MAX_ENUM_STATES", 16)
    assert net.exact_log_likelihood(torch.zeros(2, 3)).shape == (2,)


def test_enumerated_model_trains_under_plain_svi_and_jit_and_exact_ll_leaves_the_store_empty():
    """enumerated_model reads the net's parameters through Pyro (a pyro_method), so plain SVI trains them,
    jitted or not; exact_log_likelihood keeps them out of the caller's global param store."""
    import warnings

    import pyro
    from pyro.infer import SVI, JitTraceEnum_ELBO

    x = torch.randint(0, 2, (6, 5), generator=torch.Generator().manual_seed(1)).float()
    losses = {}
    for elbo in (TraceEnum_ELBO, JitTraceEnum_ELBO):
        pyro.clear_param_store()
        torch.manual_seed(0)
        sbn = SigmoidBeliefNet([5, 3])
        before = sbn.prior_logits.detach().clone()
        svi = SVI(sbn.enumerated_model, lambda x: None, pyro.optim.Adam({"lr": 0.05}), elbo(max_plate_nesting=1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            losses[elbo] = [svi.step(x) for _ in range(5)]
        assert not torch.equal(sbn.prior_logits.detach(), before)
        assert losses[elbo][-1] < losses[elbo][0]
    assert losses[JitTraceEnum_ELBO] == pytest.approx(losses[TraceEnum_ELBO], rel=1e-5)
    pyro.clear_param_store()
    sbn.exact_log_likelihood(x)
    assert list(pyro.get_param_store().keys()) == []


# --- underflow: terms that peak on different hidden states (audit16, degenerate finding 1) ---------------------
#
# ``exact_log_likelihood`` contracted with Pyro's ``pyro.ops.contract``, whose log-space einsum shifts each term by
# its own maximum: where the prior and the likelihood peak on different hidden states the shifted sum underflowed
# (-inf for a finite log p(x)) and its ``safe_log`` clamped d log(s)/ds at 1/eps (a gradient of 0.019 for 1.0).
# The reference below is brute force written from the definitions, in float64, for the *same* parameter values
# (a float32 net's parameters are cast up exactly), independent of the library's enumeration and contraction.


def _bern64(value, logits):
    """log Bernoulli(value; sigmoid(logits)) summed over the last dim (float64 inputs)."""
    return (value * F.logsigmoid(logits) + (1 - value) * F.logsigmoid(-logits)).sum(-1)


def _brute_log_marginal(net64, x64):
    """``[B]`` float64 brute force: one ``logsumexp`` over every joint hidden state ``h`` of :math:`\\log p(x, h)`."""
    sizes = net64.layer_sizes[1:]
    flat = torch.tensor(list(itertools.product([0.0, 1.0], repeat=sum(sizes))), dtype=torch.float64)
    hs = list(flat.split(sizes, dim=-1))  # hs[l - 1]: [S, H_l], every joint state of all layers
    log_joint = _bern64(hs[-1], net64.prior_logits)  # [S]
    for l in range(net64.num_layers, 1, -1):
        log_joint = log_joint + _bern64(hs[l - 2], net64.decoders[l - 1](hs[l - 1]))
    log_joint = log_joint + _bern64(x64[:, None, :], net64.decoders[0](hs[0])[None])  # [B, S]
    return torch.logsumexp(log_joint, -1)


def _reference(net, x):
    """The float64 brute force of ``net`` on ``x``: value ``[B]`` and the gradient of its sum with respect to every
    parameter (``torch.autograd.grad``; in ``net.parameters()`` order)."""
    net64 = copy.deepcopy(net).double()
    value = _brute_log_marginal(net64, x.double())
    params = list(net64.parameters())
    grads = torch.autograd.grad(value.sum(), params, allow_unused=True)
    return value.detach(), [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def _library(net, x):
    """``exact_log_likelihood`` of ``net`` on ``x`` and the gradient of its sum, cast to float64 for comparison."""
    value = net.exact_log_likelihood(x)
    params = list(net.parameters())
    grads = torch.autograd.grad(value.sum(), params, allow_unused=True)
    return value.detach().double(), [(torch.zeros_like(p) if g is None else g).double() for g, p in zip(grads, params)]


def _logit_scale(net64):
    """The largest :math:`|a|` over every logit the enumeration forms (prior, and each decoder at every state)."""
    with torch.no_grad():
        scale = net64.prior_logits.abs().max()
        for l in range(net64.num_layers):
            states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=net64.layer_sizes[l + 1])),
                                  dtype=torch.float64)
            scale = torch.maximum(scale, net64.decoders[l](states).abs().max())
    return float(scale)


def _value_atol(net, dtype):
    """Rounding bound of one :math:`\\log p(x)`: it is a sum of :math:`n = D + \\sum_l H_l` Bernoulli terms,
    each at most the largest logit :math:`A` in size and rounded (logit, log-sigmoid, sum) at a few ulps in the
    net's dtype, so :math:`8\\,n\\,\\epsilon\\,\\max(A, 1)`; the log-sum-exp over states adds a few ulps more."""
    n = sum(net.layer_sizes)
    return 8 * n * torch.finfo(dtype).eps * max(_logit_scale(copy.deepcopy(net).double()), 1.0)


def _near_deterministic_net(sizes, dtype, seed=0, scale=1e4):
    """The audit's near-deterministic SBN: every parameter :math:`N(0, \\text{scale}^2)`."""
    torch.manual_seed(seed)
    net = SigmoidBeliefNet(sizes).to(dtype)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return net


def _rare_latent_net(dtype, prior):
    """The audit's rare-latent SBN ``[16, 2]``: prior logits ``prior`` on both units; the first unit alone turns
    every pixel on (decoder logits +6 with it, -6 without).  For ``x`` = all ones the data are explained only by
    :math:`h_1 = 1`, which the prior calls rare, so :math:`p(h_1 = 1 \\mid x) \\approx 1` and
    :math:`\\partial \\log p(x) / \\partial a_1 \\approx 1 - \\sigma(a_1) \\approx 1`."""
    net = SigmoidBeliefNet([16, 2]).to(dtype)
    with torch.no_grad():
        net.prior_logits.fill_(prior)
        net.decoders[0].weight.zero_()
        net.decoders[0].weight[:, 0] = 12.0
        net.decoders[0].bias.fill_(-6.0)
    return net


def _assert_gradients_close(got, want, dtype):
    """Gradients are posterior-weighted sums of :math:`x - \\sigma(a)` and :math:`h - \\sigma(a)` (each in
    [-1, 1]) over the rows; the posterior weights and sigmoids carry a relative error of a few ulps of the net's
    dtype, so an entry may be off by :math:`64\\,\\epsilon` times its size (and as much absolutely)."""
    tol = 64 * torch.finfo(dtype).eps
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("sizes", [[3, 1], [3, 2, 2]])
def test_a_near_deterministic_net_matches_brute_force_in_value_and_gradient(sizes, dtype):
    """Parameters of order 1e4 (every conditional almost 0 or 1): the prior and the likelihood of most x peak on
    different hidden states.  Pyro's contraction gave -inf for 5 of the 8 rows of the [3, 1] net in float64
    (brute force: -16430 ... -4217)."""
    net = _near_deterministic_net(sizes, dtype)
    x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=sizes[0])), dtype=dtype)
    value, grads = _library(net, x)
    want, want_grads = _reference(net, x)
    assert torch.isfinite(value).all(), value
    torch.testing.assert_close(value, want, rtol=0, atol=_value_atol(net, dtype))
    _assert_gradients_close(grads, want_grads, dtype)
    # one row at a time: the scalar contraction (pack_tensors drops the size-1 data dim)
    rows = torch.cat([net.exact_log_likelihood(x[i:i + 1]).detach().double() for i in range(x.shape[0])])
    torch.testing.assert_close(rows, want, rtol=0, atol=_value_atol(net, dtype))


@pytest.mark.parametrize(("dtype", "prior"), [(torch.float64, -40.0), (torch.float32, -20.0)])
def test_data_explained_only_by_a_rare_latent_state_get_the_exact_gradient(dtype, prior):
    """Prior logits -40 (float64) or -20 (float32): a gap past the dtype's eps between where the prior and the
    likelihood peak.  The value was right, but Pyro's ``safe_log`` clamp gave d log p(x) / d prior_logits[0] =
    0.0191 (float64) and 0.0173 (float32) for brute force's 1.0."""
    net = _rare_latent_net(dtype, prior)
    x = torch.ones(1, 16, dtype=dtype)
    value, grads = _library(net, x)
    want, want_grads = _reference(net, x)
    torch.testing.assert_close(value, want, rtol=0, atol=_value_atol(net, dtype))
    assert abs(grads[0][0].item() - 1.0) < 64 * torch.finfo(dtype).eps, grads[0]
    _assert_gradients_close(grads, want_grads, dtype)


def test_underflowing_rows_in_several_chunks_match_brute_force(monkeypatch):
    """The same near-deterministic rows through the chunked path (each chunk recomputed in the backward pass):
    the exact redo inside a checkpointed chunk gives the brute-force values and gradients too."""
    net = _near_deterministic_net([3, 2, 2], torch.float64)
    x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=torch.float64)
    per_row = max(2**2 * 3, 2 ** (2 + 2))  # 2**H1 * D = 12, the pair h1, h2: 16
    monkeypatch.setattr(sbn_exact, "MAX_ENUM_ELEMENTS", 3 * per_row)  # chunks of 3 rows: 3 + 3 + 2
    value, grads = _library(net, x)
    want, want_grads = _reference(net, x)
    torch.testing.assert_close(value, want, rtol=0, atol=_value_atol(net, torch.float64))
    _assert_gradients_close(grads, want_grads, torch.float64)
