"""RBM: energy, free energy, conditionals, log Z and sampling against brute-force enumeration."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridpgm.energy import RBM
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from tests.generator_contract import assert_generator_contract
from tests.keyword_checks import assert_renamed
from tests.energy.brute_force import all_states, random_rbm, rbm_joint_log_weights, single_thread, total_variation  # noqa: F401


@settings(deadline=None, max_examples=8)
@given(num_visible=st.integers(1, 5), num_hidden=st.integers(1, 5), seed=st.integers(0, 1000))
def test_free_energy_and_log_partition_match_brute_force(num_visible, num_hidden, seed):
    rbm = random_rbm(num_visible, num_hidden, seed)
    joint = rbm_joint_log_weights(rbm)
    v = all_states(num_visible)
    torch.testing.assert_close(rbm.free_energy(v), -torch.logsumexp(joint, 1).detach())
    torch.testing.assert_close(rbm.log_partition(), torch.logsumexp(joint.flatten(), 0))
    # chunked enumeration (a few states per chunk) gives the same answer
    torch.testing.assert_close(rbm.log_partition(chunk_size=3), torch.logsumexp(joint.flatten(), 0))


@pytest.mark.parametrize("num_visible,num_hidden", [(4, 3), (3, 5)])
def test_energy_matches_formula_and_likelihood_normalises(num_visible, num_hidden):
    rbm = random_rbm(num_visible, num_hidden, seed=1)
    joint = rbm_joint_log_weights(rbm)
    v, h = all_states(num_visible), all_states(num_hidden)
    vv = v.repeat_interleave(h.shape[0], 0)
    hh = h.repeat(v.shape[0], 1)
    torch.testing.assert_close(-rbm.energy(vv, hh).detach(), joint.flatten())
    total = torch.logsumexp(rbm.log_likelihood(v).detach(), 0)
    torch.testing.assert_close(total, torch.zeros((), dtype=torch.float64))


@pytest.mark.parametrize("num_visible,num_hidden", [(4, 3), (2, 6)])
def test_conditionals_match_brute_force(num_visible, num_hidden):
    rbm = random_rbm(num_visible, num_hidden, seed=2)
    joint = rbm_joint_log_weights(rbm)
    v, h = all_states(num_visible), all_states(num_hidden)
    # p(h_j = 1 | v) = sum_h h_j p(h | v)
    p_h_given_v = torch.softmax(joint, 1)
    torch.testing.assert_close(rbm.hidden(v).mean.detach(), p_h_given_v @ h)
    p_v_given_h = torch.softmax(joint, 0)
    torch.testing.assert_close(rbm.visible(h).mean.detach(), p_v_given_h.T @ v)
    # full conditional log-probabilities of whole vectors
    torch.testing.assert_close(rbm.hidden(v[:1]).log_prob(h).detach(), torch.log(p_h_given_v[0]))


def test_pseudo_log_likelihood_matches_brute_force():
    rbm = random_rbm(4, 3, seed=3)
    v = all_states(4)
    log_p = rbm.log_likelihood(v).detach()
    index = {tuple(row.tolist()): i for i, row in enumerate(v)}
    expected = []
    for row in v:
        total = 0.0
        for i in range(4):
            flipped = row.clone()
            flipped[i] = 1 - flipped[i]
            a, b = log_p[index[tuple(row.tolist())]], log_p[index[tuple(flipped.tolist())]]
            total += float(a - torch.logaddexp(a, b))
        expected.append(total)
    torch.testing.assert_close(rbm.pseudo_log_likelihood(v, exact=True), torch.tensor(expected, dtype=torch.float64))
    # the one-unit estimate is unbiased: its mean over many draws approaches the exact value
    many = rbm.pseudo_log_likelihood(v.repeat(3000, 1)).reshape(3000, -1).mean(0)
    torch.testing.assert_close(many, torch.tensor(expected, dtype=torch.float64), atol=0.15, rtol=0)


def test_gaussian_rbm_matches_numerical_integration():
    rbm = random_rbm(2, 3, seed=4, scale=0.7, visible="gaussian", sigma=0.8)
    grid = torch.linspace(-8, 8, 321, dtype=torch.float64)
    v = torch.cartesian_prod(grid, grid)
    h = all_states(3)
    log_joint = torch.stack([-rbm.energy(v, hi.expand(v.shape[0], 3)).detach() for hi in h], 1)
    # free energy: sum over h
    torch.testing.assert_close(rbm.free_energy(v[:50]).detach(), -torch.logsumexp(log_joint[:50], 1))
    # log Z: trapezoid-free Riemann sum over a wide grid (the integrand vanishes at the edges)
    cell = math.log(float(grid[1] - grid[0])) * 2
    numeric = torch.logsumexp(log_joint.flatten(), 0) + cell
    torch.testing.assert_close(rbm.log_partition(), numeric, atol=1e-6, rtol=0)
    # p(v | h) is the Gaussian of the module docstring: its mean is the weighted average of v
    weights = torch.softmax(log_joint[:, 5], 0)
    torch.testing.assert_close(rbm.visible(h[5:6]).mean[0].detach(), weights @ v, atol=1e-6, rtol=0)


def test_long_gibbs_chain_matches_exact_distribution():
    rbm = random_rbm(4, 3, seed=5)
    exact = torch.exp(rbm.log_likelihood(all_states(4)).detach())
    v = rbm.sample(1000, steps=100)
    samples = [v]
    for _ in range(49):  # keep sampling the same chains: 50,000 (correlated) states
        v = rbm.gibbs(v, 1)
        samples.append(v)
    tv = total_variation(torch.cat(samples), exact)
    print(f"total variation distance, 16-state RBM, 1000 chains x 50 sweeps: {tv:.4f}")
    assert tv < 0.03


def test_conditionals_work_inside_pyro():
    rbm = random_rbm(5, 4, seed=6)
    v = torch.ones(3, 5, dtype=torch.float64)

    def model():
        with pyro.plate("data", 3):
            h = pyro.sample("h", rbm.hidden(v))
            pyro.sample("v", rbm.visible(h), obs=v)

    trace = pyro.poutine.trace(model).get_trace()
    assert trace.nodes["h"]["value"].shape == (3, 4)
    assert trace.nodes["v"]["fn"].event_shape == (5,)


def test_transform_and_reconstruction_error():
    rbm = random_rbm(4, 3, seed=7)
    v = all_states(4)
    torch.testing.assert_close(rbm.transform(v), rbm.hidden(v).mean.detach())
    mean_v = torch.sigmoid(rbm.transform(v) @ rbm.weight.detach().T + rbm.visible_bias.detach())
    torch.testing.assert_close(rbm.reconstruction_error(v), ((v - mean_v) ** 2).sum(-1).mean())


# --------------------------------------------------------------- bad input
def test_non_binary_data_raises_unless_probabilities():
    rbm = RBM(4, 2)
    with pytest.raises(DataError, match="binary"):
        rbm.free_energy(torch.full((2, 4), 0.5))
    assert RBM(4, 2, probabilities=True).free_energy(torch.full((2, 4), 0.5)).shape == (2,)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        RBM(4, 2, probabilities=True).free_energy(torch.full((2, 4), 1.5))


@pytest.mark.parametrize("call", ["free_energy", "hidden", "transform", "log_likelihood"])
def test_shape_mismatch_raises(call):
    rbm = RBM(4, 2)
    with pytest.raises(DataError, match=r"\(\.\.\., 4\).*\(2, 5\)"):
        getattr(rbm, call)(torch.zeros(2, 5))


def test_bad_hidden_and_nan_data_raise():
    rbm = RBM(4, 2)
    with pytest.raises(DataError, match="hidden"):
        rbm.visible(torch.zeros(3, 3))
    with pytest.raises(DataError, match="NaN"):
        rbm.free_energy(torch.tensor([[0.0, 1.0, float("nan"), 0.0]]))


@pytest.mark.parametrize("method", ["log_partition", "sample", "annealing_path"])
def test_non_finite_parameters_raise(method):
    rbm = RBM(4, 2)
    with torch.no_grad():
        rbm.weight[1, 1] = float("inf")
    with pytest.raises(ModelSpecError, match="weight"):
        getattr(rbm, method)(*([3] if method == "sample" else []))


def test_bad_specs_raise():
    with pytest.raises(ModelSpecError, match="num_hidden"):
        RBM(4, 0)
    with pytest.raises(ModelSpecError, match="visible"):
        RBM(4, 2, visible="poisson")
    with pytest.raises(ModelSpecError, match="2\\*\\*40"):
        RBM(50, 40).log_partition()
    with pytest.raises(ConfigError, match="method"):
        RBM(4, 2).log_partition("magic")


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int64, torch.float16])
def test_visible_data_of_an_exactly_convertible_dtype_gives_the_float_answer(dtype):
    torch.manual_seed(0)
    rbm = RBM(5, 3, init_scale=0.5)
    v = torch.bernoulli(torch.full((4, 5), 0.5))
    for method in (rbm.free_energy, rbm.log_likelihood):
        expected = method(v)
        got = method(v.to(dtype))
        assert got.dtype == expected.dtype
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_float64_visible_data_for_a_float32_rbm_is_refused_by_name():
    with pytest.raises(DataError, match=r"RBM visible data 'v' has dtype torch.float64.*torch.float32"):
        RBM(5, 3).free_energy(torch.zeros(2, 5, dtype=torch.float64))


def _exact_log_likelihood_gradients(rbm: RBM, v: torch.Tensor) -> list[torch.Tensor]:
    """:math:`\\nabla \\sum_n \\log p(v_n)` for (weight, visible_bias, hidden_bias) by enumeration:
    the data term :math:`\\sum_n (v_n E[h|v_n]^T, v_n, E[h|v_n])` minus ``N`` times the model's expectations."""
    joint = rbm_joint_log_weights(rbm)
    p = torch.softmax(joint.flatten(), 0).reshape(joint.shape)  # p(v, h), 2**V x 2**H
    vs, hs = all_states(rbm.num_visible), all_states(rbm.num_hidden)
    model = [vs.T @ p @ hs, p.sum(1) @ vs, p.sum(0) @ hs]
    mean_h = torch.sigmoid(rbm.hidden_bias.detach() + v @ rbm.weight.detach())
    data = [v.T @ mean_h, v.sum(0), mean_h.sum(0)]
    return [d - v.shape[0] * m for d, m in zip(data, model)]


@pytest.mark.parametrize("num_visible,num_hidden", [(4, 3), (3, 5)])
def test_log_likelihood_gradient_is_the_exact_one(num_visible, num_hidden):
    """Before, log Z was a constant in the graph: the gradient of ``log_likelihood`` was that of ``-F(v)``
    alone, and ``(-rbm.log_likelihood(x).mean()).backward()`` trained on the free energy only."""
    rbm = random_rbm(num_visible, num_hidden, seed=7)
    v = all_states(num_visible)[[1, 2, 2, -1]]
    params = [rbm.weight, rbm.visible_bias, rbm.hidden_bias]
    grads = torch.autograd.grad(rbm.log_likelihood(v).sum(), params)
    for got, want in zip(grads, _exact_log_likelihood_gradients(rbm, v)):
        torch.testing.assert_close(got, want)
    with torch.no_grad():  # no graph to build outside grad mode
        assert not rbm.log_likelihood(v).requires_grad


def test_gaussian_log_likelihood_gradient_matches_finite_differences():
    """The same for Gaussian visible units: autograd against central differences of the exact value."""
    rbm = random_rbm(2, 3, seed=4, scale=0.7, visible="gaussian", sigma=0.8)
    v = torch.tensor([[0.3, -1.2], [1.5, 0.4]], dtype=torch.float64)
    params = [rbm.weight, rbm.visible_bias, rbm.hidden_bias]
    grads = torch.autograd.grad(rbm.log_likelihood(v).sum(), params)
    eps = 1e-6
    for param, got in zip(params, grads):
        want = torch.zeros_like(param)
        for i in range(param.numel()):
            with torch.no_grad():
                flat = param.view(-1)
                flat[i] += eps
                up = rbm.log_likelihood(v).sum()
                flat[i] -= 2 * eps
                down = rbm.log_likelihood(v).sum()
                flat[i] += eps
            want.view(-1)[i] = (up - down) / (2 * eps)
        torch.testing.assert_close(got, want, atol=1e-7, rtol=0)


def test_a_given_log_z_is_used_as_it_is():
    """A number is a constant (the gradient is that of ``-F(v)``); a differentiable log Z carries its gradient,
    also when it is enumerated in several chunks (each recomputed in the backward pass)."""
    rbm = random_rbm(4, 3, seed=7)
    v = all_states(4)[[1, 2, 2, -1]]
    params = [rbm.weight, rbm.visible_bias, rbm.hidden_bias]
    constant = torch.autograd.grad(rbm.log_likelihood(v, float(rbm.log_partition())).sum(), params)
    for got, want in zip(constant, torch.autograd.grad(-rbm.free_energy(v).sum(), params)):
        torch.testing.assert_close(got, want)
    chunked = rbm.log_partition(differentiable=True, chunk_size=3)
    for got, want in zip(torch.autograd.grad(rbm.log_likelihood(v, chunked).sum(), params),
                         _exact_log_likelihood_gradients(rbm, v)):
        torch.testing.assert_close(got, want)


# ------------------------------------------------------------------ mixed precision (fit's precision="bf16")


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_random_visible_takes_num_samples_and_num_warns(visible):
    """``num_samples`` as ``RBM.sample`` (it was ``num``); ``num=`` still works for a release, with a warning."""
    assert_renamed(RBM(5, 3, visible=visible).random_visible, "num")


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int8, torch.int64])
def test_the_chain_protocol_converts_bool_and_integer_states_as_free_energy_does(dtype):
    """positive_phase, clamped_state and contrastive_gap read 0/1 states of any integer dtype (or bool) exactly,
    as free_energy, transform and gibbs do.  Before: torch's raw 'mat1 and mat2 must have the same dtype, but
    got Bool and Float' (``_in_dtype`` converted only float16/bfloat16)."""
    torch.manual_seed(0)
    rbm = RBM(6, 4)
    v = torch.rand(8, 6) > 0.5
    v_neg = torch.rand(5, 6) > 0.5
    given, as_float = v.to(dtype), v.float()
    torch.manual_seed(1)
    free, (state_v, h) = rbm.positive_phase(given)
    torch.manual_seed(1)
    expected_free, (_, expected_h) = rbm.positive_phase(as_float)
    assert state_v.dtype == torch.float32 and torch.equal(state_v, as_float)
    assert torch.equal(free, expected_free) and torch.equal(h, expected_h)
    torch.manual_seed(1)
    (state_v, h), (logits, probs) = rbm.clamped_state(given)
    torch.manual_seed(1)
    _, (expected_logits, _) = rbm.clamped_state(as_float)
    assert torch.equal(state_v, as_float) and torch.equal(logits, expected_logits)
    assert torch.equal(rbm.contrastive_gap(given, (v_neg.to(dtype),)), rbm.contrastive_gap(as_float, (v_neg.float(),)))


def test_the_chain_protocol_refuses_states_it_would_round_naming_them():
    """float64 states for a float32 RBM: the DataError of check_visible's rule, not torch's raw dtype error."""
    rbm = RBM(6, 4)
    v = (torch.rand(3, 6) > 0.5).double()
    with pytest.raises(DataError, match=r"RBM chain state has dtype torch.float64, the model computes in "
                                        r"torch.float32"):
        rbm.positive_phase(v)
    with pytest.raises(DataError, match="RBM chain state has dtype torch.float64"):
        rbm.contrastive_gap(v.float(), (v,))


def _rbm_for_draws(visible: str) -> RBM:
    if visible == "gaussian":
        torch.manual_seed(0)
        return RBM(5, 3, visible="gaussian", sigma=0.7, init_scale=0.5).double()
    return random_rbm(5, 3, seed=0)


_RBM_DRAWS = {
    "sample": (lambda rbm, **kw: rbm.sample(4, steps=3, **kw), "RBM.sample generator"),
    "sample_from_init": (lambda rbm, **kw: rbm.sample(4, steps=3, init=torch.ones(4, 5, dtype=torch.float64), **kw),
                         "RBM.sample generator"),
    "gibbs": (lambda rbm, **kw: rbm.gibbs(torch.ones(4, 5, dtype=torch.float64), steps=2, **kw),
              "RBM.gibbs generator"),
    "random_visible": (lambda rbm, **kw: rbm.random_visible(6, **kw), "RBM.random_visible generator"),
}


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("method", list(_RBM_DRAWS))
def test_rbm_samplers_draw_from_the_generator_given(method, visible):
    """``generator=`` (keyword-only) on RBM.sample, gibbs and random_visible: every draw from it, the caller's
    stream untouched, ``None`` the old call (tests/energy/generator_contract.py).  Before: no such argument."""
    rbm = _rbm_for_draws(visible)
    draw, what = _RBM_DRAWS[method]
    assert_generator_contract(lambda **kw: draw(rbm, **kw), what)


def test_a_loaded_sigma_that_is_not_positive_is_refused_by_name():
    """Found by an audit: a Gaussian RBM's ``sigma`` buffer loaded by ``load_state_dict`` was checked nowhere
    (the constructor checks its own), so ``log Z`` came out NaN silently; ``check_parameters`` names it now."""
    rbm = RBM(3, 2, visible="gaussian")
    state = rbm.state_dict()
    state["sigma"] = torch.tensor([1.0, 0.0, 2.0])
    rbm.load_state_dict(state)
    for call in (lambda: rbm.log_partition("exact"), lambda: rbm.sample(2, steps=1)):
        with pytest.raises(ModelSpecError, match=r"RBM buffer 'sigma' .* must hold finite positive numbers, got "
                                                 r"\[1.0, 0.0, 2.0\]"):
            call()
