"""Multi-start AIS (hybridpgm.infer.log_z) against exact log-partition functions."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import torch

from hybridpgm.energy import RBM
from hybridpgm.errors import ConfigError, DataError
from hybridpgm.infer.log_z import LogZEstimate, estimate_log_z, model_samples
from tests.energy.brute_force import random_dbm, random_rbm, single_thread  # noqa: F401
from tests.generator_contract import assert_generator_contract


def _pcd_digits_rbm(epochs=3):
    """64x16 RBM trained by PCD with the old benchmark recipe (constant lr 0.05, momentum 0.5)."""
    from hybridpgm.data import load_dataset
    from hybridpgm.infer import PersistentCD
    from hybridpgm.train import fit

    train = load_dataset("digits", binarize="static", seed=0).train.x
    torch.manual_seed(0)
    rbm = RBM(64, 16)
    objective = PersistentCD(rbm, 1, 100)
    fit(objective, train, epochs=epochs, batch_size=100, progress=False, seed=0, device="cpu",
        optim=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.5))
    return rbm.double(), train.double(), objective.chains[0].double()


def _contains_or_flags(estimate: LogZEstimate, exact: float, caught) -> None:
    lo, hi = estimate.interval()
    print(f"log Z {float(estimate.log_z):.4f} +- {float(estimate.stderr):.4f} exact {exact:.4f} "
          f"reliable {estimate.reliable} {estimate.to_dict()['starts']}")
    if estimate.reliable:
        assert lo <= exact <= hi
        assert not caught
    else:
        assert any("AIS" in str(w.message) for w in caught)


def test_pcd_trained_rbm_estimate_contains_exact_or_is_flagged():
    rbm, train, _ = _pcd_digits_rbm()
    exact = float(rbm.log_partition())
    torch.manual_seed(1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimate = estimate_log_z(rbm, train, num_steps=1000)
    assert set(estimate.starts) == {"data", "model"}
    _contains_or_flags(estimate, exact, caught)


@pytest.mark.slow
def test_pcd_trained_rbm_default_estimate_contains_exact_or_is_flagged():
    rbm, train, chains = _pcd_digits_rbm()
    exact = float(rbm.log_partition())
    for kwargs in ({}, {"chains": chains}):  # model start from fresh Gibbs chains, then PCD's own
        torch.manual_seed(2)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            estimate = estimate_log_z(rbm, train, **kwargs)
        assert estimate.starts["data"].num_steps == 10000
        _contains_or_flags(estimate, exact, caught)


@pytest.mark.slow
def test_random_rbms_stderr_covers_the_error_in_90_percent_of_seeds():
    """|log Z_hat - log Z| <= 2 standard errors (95% nominal) in at least 18 of 20 random RBMs."""
    covered = 0
    for seed in range(20):
        rbm = random_rbm(24, 12, seed=seed, scale=1.0)
        with torch.no_grad():
            rbm.visible_bias.normal_(-0.5, 0.5)
        exact = float(rbm.log_partition())
        data = rbm.sample(500, steps=200)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimate = estimate_log_z(rbm, data, num_steps=1000)
        error = abs(float(estimate.log_z) - exact)
        covered += error <= 2 * float(estimate.stderr)
        print(seed, error, float(estimate.stderr))
    assert covered >= 18


def test_dbm_estimate_contains_exact():
    dbm = random_dbm([12, 6, 5], seed=3, scale=0.5)
    exact = float(dbm.log_partition())
    torch.manual_seed(4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimate = estimate_log_z(dbm, num_chains=50, num_steps=500, sample_sweeps=100)
    assert set(estimate.starts) == {"uniform", "model"}
    _contains_or_flags(estimate, exact, caught)
    assert estimate.reliable


def test_disagreeing_starts_are_flagged_with_a_warning():
    """Two starts from very different base models, five annealing steps: they must disagree.  (With two steps one
    chain of 20 carries start 'zeros' (ESS 1.02): its jackknife error is 4.5 nats, the gap of 7 nats no longer
    significant, and the ESS check flags it instead; the delta-method error, below 1 for any weights, flagged it.)"""
    rbm = random_rbm(16, 8, seed=5, scale=2.0)
    torch.manual_seed(6)
    starts = {"zeros": torch.zeros(10, 16, dtype=torch.float64), "ones": torch.ones(10, 16, dtype=torch.float64)}
    with pytest.warns(UserWarning, match="AIS estimate of log Z for RBM is unreliable"):
        estimate = estimate_log_z(rbm, starts=starts, num_chains=20, num_steps=5)
    assert not estimate.reliable
    assert any("differ by" in r for r in estimate.reasons)
    assert float(estimate.log_z) == max(float(r.log_z) for r in estimate.starts.values())
    assert estimate.spread > 0
    assert float(estimate.stderr) >= estimate.spread / 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = estimate_log_z(rbm, starts=starts, num_chains=20, num_steps=5, warn=False)
    assert not quiet.reliable


def test_low_ess_is_flagged():
    rbm = random_rbm(16, 8, seed=7, scale=2.0)
    torch.manual_seed(8)
    with pytest.warns(UserWarning, match="ESS"):
        estimate = estimate_log_z(rbm, starts=("uniform",), num_chains=20, num_steps=1, min_ess=0.99)
    assert not estimate.reliable and estimate.spread == 0


def test_model_samples_shape_and_to_dict():
    rbm = random_rbm(6, 3, seed=9)
    data = torch.bernoulli(torch.full((20, 6), 0.5, dtype=torch.float64))
    assert model_samples(rbm, 7, sweeps=5, data=data).shape == (7, 6)
    assert model_samples(rbm, 7, sweeps=5).shape == (7, 6)
    assert model_samples(rbm, 7, sweeps=np.int64(5)).shape == (7, 6)
    estimate = estimate_log_z(rbm, data, num_chains=10, num_steps=20, sample_sweeps=5)
    report = estimate.to_dict()
    assert report["best_start"] in ("data", "model") and report["starts"]["data"]["num_chains"] == 10


def test_bad_arguments_raise():
    rbm = RBM(6, 3)
    with pytest.raises(ConfigError, match="unknown AIS start 'posterior'"):
        estimate_log_z(rbm, starts=("posterior",))
    with pytest.raises(DataError, match="start 'data' needs the training data"):
        estimate_log_z(rbm, starts=("data",))
    with pytest.raises(ConfigError, match="min_ess"):
        estimate_log_z(rbm, min_ess=2.0)
    with pytest.raises(ConfigError, match="at least one start"):
        estimate_log_z(rbm, starts=())
    with pytest.raises(ConfigError, match="sweeps"):
        model_samples(rbm, 4, sweeps=0)


def test_one_start_name_is_one_start():
    """Before: ``starts="uniform"`` was read letter by letter and refused as ``unknown AIS start 'u'``."""
    rbm = random_rbm(4, 2, seed=3)
    torch.manual_seed(4)
    one = estimate_log_z(rbm, starts="uniform", num_chains=4, num_steps=3, warn=False)
    torch.manual_seed(4)
    listed = estimate_log_z(rbm, starts=["uniform"], num_chains=4, num_steps=3, warn=False)
    assert list(one.starts) == ["uniform"] and torch.equal(one.log_z, listed.log_z)
    with pytest.raises(ConfigError, match="starts must be a start name, a sequence of them or a dict .*got int 3"):
        estimate_log_z(rbm, starts=3)


@pytest.mark.parametrize("option, value", [("min_ess", "a"), ("min_ess", True), ("min_ess", None),
                                           ("min_ess", float("nan")), ("min_ess", -0.1),
                                           ("num_stderr", "3"), ("num_stderr", True), ("num_stderr", -1.0),
                                           ("num_stderr", float("nan"))])
def test_options_that_are_not_numbers_in_range_are_named(option, value):
    """Before: ``min_ess="a"`` failed with a raw TypeError, ``min_ess=True`` was read as 1.0 and ``num_stderr``
    was not checked at all."""
    with pytest.raises(ConfigError, match=f"estimate_log_z {option} .*got {value!r}"):
        estimate_log_z(random_rbm(4, 2, seed=3), num_chains=4, num_steps=3, warn=False, **{option: value})


def test_interval_refuses_a_bad_number_of_standard_errors():
    estimate = estimate_log_z(random_rbm(4, 2, seed=3), num_chains=4, num_steps=3, sample_sweeps=2, warn=False)
    lo, hi = estimate.interval(np.int64(2))
    assert lo < hi
    with pytest.raises(ConfigError, match="interval num_stderr .*got 'x'"):
        estimate.interval("x")


@pytest.mark.parametrize("bad, match", [(lambda x: x[0], r"shape \(N, V\), got \(4,\)"),
                                        (lambda x: torch.ones(5, 3), r"shape \(N, 4\), got \(5, 3\)"),
                                        (lambda x: x[:0], "is empty"),
                                        (lambda x: torch.full((5, 4), float("nan")), "NaN")])
def test_bad_training_data_is_named_before_a_chain_starts_from_it(bad, match):
    """Found by an audit: the model chains started from rows of the data before AIS checked it, so a 1-d row,
    the wrong width or an empty tensor raised torch's own errors (cat, index, random_) instead of AIS's."""
    x = torch.bernoulli(torch.full((5, 4), 0.5), generator=torch.Generator().manual_seed(0))
    with pytest.raises(DataError, match=match):
        estimate_log_z(RBM(4, 3), bad(x), num_chains=4, num_steps=3, sample_sweeps=2, warn=False)


@pytest.mark.parametrize("value", ["no", "False", 1, None])
def test_warn_must_be_true_or_false(value):
    """Before, warn='no' (truthy) warned and warn=None silenced the warning without a word."""
    with pytest.raises(ConfigError, match=f"estimate_log_z warn must be True or False, got {value!r}"):
        estimate_log_z(random_rbm(4, 2, seed=3), num_chains=4, num_steps=3, sample_sweeps=1, warn=value)


@pytest.mark.parametrize("call, model_kind, with_data", [
    ("model_samples", "rbm", True), ("model_samples", "dbm", False),
    ("estimate_log_z", "rbm", True), ("estimate_log_z", "rbm", False), ("estimate_log_z", "dbm", True)])
def test_multi_start_ais_draws_from_the_generator_given(call, model_kind, with_data):
    """``generator=`` (keyword-only) on estimate_log_z (the "model" start's chains, then each AIS run) and on
    model_samples (the data rows, the random starts, the sweeps): every draw from it, the caller's stream
    untouched, ``None`` the old call (tests/energy/generator_contract.py).  Before: no such argument."""
    model = random_rbm(5, 3, seed=0) if model_kind == "rbm" else random_dbm([5, 3, 2])
    data = torch.bernoulli(torch.full((6, 5), 0.3, dtype=torch.float64),
                           generator=torch.Generator().manual_seed(2)) if with_data else None

    def draw(**keywords):
        if call == "model_samples":
            return model_samples(model, 6, sweeps=2, data=data, **keywords)
        estimate = estimate_log_z(model, data, num_chains=4, num_steps=5, sample_sweeps=2, warn=False, **keywords)
        return tuple(r.log_weights for r in estimate.starts.values())

    assert_generator_contract(draw, f"{call} generator")
