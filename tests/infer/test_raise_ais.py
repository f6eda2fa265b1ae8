"""RAISE (reverse annealing) against exact enumeration, and the AIS/RAISE sandwich."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch

from hybridpgm.energy import DBM, RBM
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.infer import RAISE, estimate_log_z, log_likelihood_bounds
from tests.energy.brute_force import all_states, random_rbm, single_thread  # noqa: F401
from tests.generator_contract import assert_generator_contract


def _kernel(rbm: RBM, base: torch.Tensor, beta: float) -> torch.Tensor:
    """Exact block-Gibbs kernel T_beta(v' | v) on the visible units, ``2**V x 2**V`` (rows: v)."""
    v, h = all_states(rbm.num_visible), all_states(rbm.num_hidden)
    w, b, c = rbm.weight.detach(), rbm.visible_bias.detach(), rbm.hidden_bias.detach()
    p_h = torch.sigmoid(beta * (v @ w + c))  # 2^V x H
    h_given_v = torch.exp(h @ torch.log(p_h).T + (1 - h) @ torch.log1p(-p_h).T).T  # 2^V x 2^H
    p_v = torch.sigmoid((1 - beta) * base + beta * (h @ w.T + b))  # 2^H x V
    v_given_h = torch.exp(v @ torch.log(p_v).T + (1 - v) @ torch.log1p(-p_v).T).T  # 2^H x 2^V
    return h_given_v @ v_given_h


def test_raise_is_unbiased_for_the_annealing_model():
    """E[p_hat(v)] = p_fwd(v) = sum p_0(v_0) T_1(v_1|v_0) T_2(v|v_1), enumerated on a 4x2 RBM."""
    rbm = random_rbm(4, 2, seed=0, scale=1.5)
    data = torch.tensor([[1.0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 1, 0]], dtype=torch.float64)
    betas = [0.0, 0.4, 1.0]
    path = rbm.annealing_path(data)
    v = all_states(4)
    p0 = torch.exp(v @ path.base - torch.nn.functional.softplus(path.base).sum())
    p_fwd = p0 @ _kernel(rbm, path.base, betas[1]) @ _kernel(rbm, path.base, betas[2])
    torch.testing.assert_close(p_fwd.sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.manual_seed(1)
    m = 4000
    result = RAISE(num_chains=m, betas=betas)(rbm, v, data=data)
    weights = torch.exp(-rbm.free_energy(v).detach().unsqueeze(1) - path.log_z0 + result.log_weights)  # 16 x m
    mean, se = weights.mean(1), weights.std(1) / m**0.5
    print(torch.stack([p_fwd, mean, se], 1))
    assert bool(((mean - p_fwd).abs() <= 4 * se + 1e-12).all())
    torch.testing.assert_close(result.log_likelihood, torch.log(mean), rtol=0, atol=1e-9)
    # the annealing model is not the RBM: a 2-step path is far from it
    exact = torch.exp(rbm.log_likelihood(v).detach())
    assert float((p_fwd - exact).abs().max()) > 0.01


def _pcd_digits_rbm():
    from hybridpgm.data import load_dataset
    from hybridpgm.infer import PersistentCD
    from hybridpgm.train import fit

    data = load_dataset("digits", binarize="static", seed=0)
    torch.manual_seed(0)
    rbm = RBM(64, 16)
    fit(PersistentCD(rbm, 1, 100), data.train.x, epochs=3, batch_size=100, progress=False, seed=0, device="cpu",
        optim=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.5))
    return rbm.double(), data.train.x.double(), data.test.x.double()


def test_sandwich_raise_below_and_ais_above_exact_log_likelihood():
    """On an enumerable PCD-trained RBM: RAISE's log-likelihood (its log Z the upper estimate)
    below the exact mean test log-likelihood, AIS's (its log Z the lower estimate) above it."""
    rbm, train, test = _pcd_digits_rbm()
    test = test[:100]
    exact_log_z = float(rbm.log_partition())
    exact = float(rbm.log_likelihood(test, exact_log_z).detach().mean())
    torch.manual_seed(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bounds = log_likelihood_bounds(rbm, test, train, raise_=RAISE(num_chains=4, num_steps=100),
                                       num_chains=50, num_steps=100)
    print(f"RAISE {bounds.lower:.4f} <= exact {exact:.4f} <= AIS {bounds.upper:.4f}; {bounds.to_dict()}")
    assert bounds.lower < exact < bounds.upper
    assert float(bounds.raise_result.log_z.mean()) > exact_log_z > bounds.log_z.interval()[0]
    assert bounds.upper - bounds.lower < 2.0  # a useful sandwich, not a vacuous one
    assert bounds.to_dict()["num_test"] == 100


def test_raise_approaches_exact_with_more_steps():
    rbm, train, test = _pcd_digits_rbm()
    test = test[:50]
    exact = float(rbm.log_likelihood(test).detach().mean())
    gaps = []
    for steps in (10, 1000):
        torch.manual_seed(3)
        result = RAISE(num_chains=2, num_steps=steps)(rbm, test, data=train)
        gaps.append(exact - float(result.log_likelihood.mean()))
    print(gaps)
    assert gaps[0] > 0 and abs(gaps[1]) < 0.25 * gaps[0]
    assert abs(gaps[1]) < 0.1


def test_bad_arguments_raise():
    with pytest.raises(ConfigError, match="num_chains"):
        RAISE(num_chains=0)
    with pytest.raises(ConfigError, match="batch_size"):
        RAISE(batch_size=0)
    with pytest.raises(ConfigError, match="betas"):
        RAISE(betas=[0.0, 0.8, 0.5, 1.0])
    with pytest.raises(ModelSpecError, match="DBM"):
        RAISE(num_steps=2)(DBM([4, 3, 2]), torch.ones(2, 4))
    with pytest.raises(DataError, match=r"\(\.\.\., 6\)"):
        RAISE(num_steps=2)(RBM(6, 2), torch.ones(2, 4))


def test_log_likelihood_bounds_accepts_a_precomputed_log_z():
    rbm = random_rbm(8, 4, seed=4)
    data = torch.bernoulli(torch.full((30, 8), 0.4, dtype=torch.float64))
    torch.manual_seed(5)
    log_z = estimate_log_z(rbm, data, num_chains=20, num_steps=50, sample_sweeps=10)
    bounds = log_likelihood_bounds(rbm, data[:5], data, log_z=log_z, raise_=RAISE(num_steps=20, batch_size=2))
    assert bounds.log_z is log_z and bounds.raise_result.log_likelihood.shape == (5,)
    report = bounds.to_dict()
    assert report["raise_steps"] == 20 and report["ais"]["log_z"] == float(log_z.log_z)


@pytest.mark.parametrize("shape", [(), (2, 3), (0,)])
def test_test_points_of_any_batch_shape_give_results_of_that_shape(shape):
    """RBM.check_visible takes v of shape (..., V); before, one point (V,) or a 3-d batch failed inside torch
    with a raw RuntimeError.  The answers are those of the same points given as N x V rows."""
    rbm = random_rbm(5, 3, seed=6)
    v = torch.bernoulli(torch.full(shape + (5,), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(7))
    estimator = RAISE(num_chains=3, num_steps=4, batch_size=4)
    torch.manual_seed(8)
    got = estimator(rbm, v)
    torch.manual_seed(8)
    rows = estimator(rbm, v.reshape(-1, 5))
    assert got.log_likelihood.shape == got.log_z.shape == shape and got.log_weights.shape == shape + (3,)
    assert torch.equal(got.log_likelihood.reshape(-1), rows.log_likelihood)
    assert torch.equal(got.log_weights.reshape(-1, 3), rows.log_weights)


def test_bounds_report_counts_the_points_of_a_multi_dimensional_batch():
    rbm = random_rbm(4, 2, seed=9)
    data = torch.bernoulli(torch.full((2, 3, 4), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bounds = log_likelihood_bounds(rbm, data, raise_=RAISE(num_chains=2, num_steps=5), num_chains=4,
                                       num_steps=5, sample_sweeps=2)
    assert bounds.to_dict()["num_test"] == 6 and bounds.to_dict()["raise_chains"] == 2


def test_a_schedule_or_base_data_that_would_be_ignored_or_reshaped_is_refused():
    """Before: ``schedule="foo"`` with ``betas`` was ignored, and 1-d or 3-d base-rate data were reshaped."""
    with pytest.raises(ConfigError, match="unknown RAISE schedule 'foo'"):
        RAISE(schedule="foo", betas=[0.0, 1.0])
    for data in (torch.ones(4), torch.ones(2, 3, 4)):
        with pytest.raises(DataError, match=r"RAISE base-rate data must have shape \(N, V\), got " +
                           str(tuple(data.shape)).replace("(", r"\(").replace(")", r"\)")):
            RAISE(num_steps=2)(RBM(4, 2), torch.ones(2, 4), data=data)


@pytest.mark.parametrize("value", ["3", True, -1.0, float("nan")])
def test_num_stderr_that_is_not_a_number_is_named(value):
    log_z = estimate_log_z(random_rbm(4, 2, seed=1), num_chains=4, num_steps=3, sample_sweeps=2, warn=False)
    with pytest.raises(ConfigError, match=f"log_likelihood_bounds num_stderr .*got {value!r}"):
        log_likelihood_bounds(random_rbm(4, 2, seed=1), torch.ones(2, 4), log_z=log_z, num_stderr=value)


def test_the_stderr_of_one_point_is_a_zero_of_the_estimates_dtype_and_device():
    """With one test point the standard error was torch.zeros(()): float32 on the CPU whatever the estimates'
    dtype (float64) and device."""
    rbm = random_rbm(5, 3, seed=6)
    torch.manual_seed(0)
    result = RAISE(num_chains=3, num_steps=4)(rbm, torch.ones(5, dtype=torch.float64))
    se = result.test_set_stderr  # the between-point spread, called ``stderr`` before
    assert se.dtype == result.log_likelihood.dtype == torch.float64 and se == 0
    assert se.device == result.log_likelihood.device
    assert result.mc_stderr.dtype == torch.float64 and result.mc_stderr.device == result.log_likelihood.device


@pytest.mark.parametrize("num_stderr", [0.0, 1.0, 3.0])
def test_upper_is_log_z_lowered_by_num_stderr_standard_errors_as_documented(num_stderr):
    """``LikelihoodBounds.upper`` said ``log Z - 3 se`` whatever ``num_stderr`` was; the bound uses
    ``num_stderr`` (3 by default) and the docstring now says so."""
    from hybridpgm.infer.raise_ais import LikelihoodBounds

    rbm = random_rbm(4, 2, seed=1)
    log_z = estimate_log_z(rbm, num_chains=4, num_steps=3, sample_sweeps=2, warn=False)
    torch.manual_seed(0)
    bounds = log_likelihood_bounds(rbm, torch.ones(2, 4), log_z=log_z, raise_=RAISE(num_chains=2, num_steps=3),
                                   num_stderr=num_stderr)
    assert bounds.upper == pytest.approx(bounds.estimate + num_stderr * float(log_z.stderr), rel=1e-12, abs=1e-12)
    doc = LikelihoodBounds.__doc__
    upper = doc[doc.index(":param upper:"):doc.index(":param estimate:")]
    assert "num_stderr" in upper and "3\\,\\mathrm{se}" not in upper


def _bounds_draws(bounds) -> tuple[torch.Tensor, ...]:
    """What :func:`log_likelihood_bounds` drew: each AIS start's weights and RAISE's."""
    return tuple(r.log_weights for r in bounds.log_z.starts.values()) + (bounds.raise_result.log_weights,)


@pytest.mark.parametrize("call", ["raise", "raise_with_data", "bounds", "bounds_given_log_z"])
def test_raise_and_the_bounds_draw_from_the_generator_given(call):
    """``generator=`` (keyword-only) on RAISE's call and on log_likelihood_bounds (its multi-start AIS, then
    RAISE): every draw from it, the caller's stream untouched, ``None`` the old call
    (tests/energy/generator_contract.py).  Before: no such argument."""
    rbm = random_rbm(5, 3, seed=0)
    v = torch.bernoulli(torch.full((3, 5), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    data = torch.bernoulli(torch.full((6, 5), 0.3, dtype=torch.float64), generator=torch.Generator().manual_seed(2))
    raise_ = RAISE(num_chains=2, num_steps=5)
    options = dict(num_chains=4, num_steps=5, sample_sweeps=2, warn=False)
    log_z = estimate_log_z(rbm, data, **options) if call == "bounds_given_log_z" else None

    def draw(**keywords):
        if call.startswith("raise"):
            return raise_(rbm, v, data=data if call == "raise_with_data" else None, **keywords).log_weights
        if log_z is None:
            return _bounds_draws(log_likelihood_bounds(rbm, v, data, raise_=raise_, **options, **keywords))
        return log_likelihood_bounds(rbm, v, data, log_z=log_z, raise_=raise_, **keywords).raise_result.log_weights

    assert_generator_contract(draw, "RAISE generator" if call.startswith("raise") else
                              "log_likelihood_bounds generator")


def test_a_path_of_the_documented_protocol_alone_runs_under_raise():
    """Found by an audit: RAISE read ``path.dtype``, which the annealing-path protocol (``log_z0``, ``sample0``,
    ``step``) does not list, so a path of exactly that protocol ran under AIS and raised AttributeError here."""

    from tests.infer.test_ais import _PathWithoutGenerator  # log_z0, sample0 and step: the protocol, no dtype

    class ProtocolRBM(RBM):
        def annealing_path(self, data=None):
            return _PathWithoutGenerator(super().annealing_path(data))

    torch.manual_seed(0)
    model, v = ProtocolRBM(6, 3), torch.bernoulli(torch.full((4, 6), 0.5))
    plain = RBM(6, 3)
    plain.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    got = RAISE(num_chains=5, num_steps=10)(model, v).log_likelihood
    torch.manual_seed(1)
    assert torch.equal(got, RAISE(num_chains=5, num_steps=10)(plain, v).log_likelihood)
