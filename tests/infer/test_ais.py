"""AIS against exact log-partition functions of models small enough to enumerate."""

from __future__ import annotations

import math

import pytest
import torch

from hybridpgm.energy import DBM, RBM
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.infer import AIS, AISResult
from hybridpgm.infer.ais import annealing_schedule
from tests.energy.brute_force import random_dbm, single_thread  # noqa: F401
from tests.generator_contract import assert_generator_contract


def _rbm(num_visible, num_hidden, seed, weight_scale, **kwargs):
    torch.manual_seed(seed)
    rbm = RBM(num_visible, num_hidden, init_scale=weight_scale, **kwargs)
    with torch.no_grad():
        rbm.visible_bias.normal_(-0.5, 0.5)
        rbm.hidden_bias.normal_(0, 0.5)
    return rbm


def _data_like(rbm, n=500):
    """Samples of the model itself, used as 'training data' for the base rates."""
    return rbm.sample(n, steps=200)


def _check(result, exact, tol=0.2):
    diff = abs(float(result.log_z) - float(exact))
    print(f"AIS {float(result.log_z):.4f} +- {float(result.stderr):.4f} exact {float(exact):.4f} "
          f"|diff| {diff:.4f} ESS {result.ess:.1f}")
    assert diff < tol
    assert diff <= 3 * float(result.stderr)  # the reported error covers the miss


@pytest.mark.parametrize("use_data", [False, True])
def test_ais_rbm_64x16_matches_exact(use_data):
    rbm = _rbm(64, 16, seed=0, weight_scale=0.3)
    exact = rbm.log_partition()
    data = _data_like(rbm) if use_data else None
    torch.manual_seed(1)
    result = AIS(num_chains=100, num_steps=1000)(rbm, data=data)
    assert result.log_weights.shape == (100,)
    assert 1 <= result.ess <= 100
    _check(result, exact)


def test_ais_rbm_784x16_matches_exact():
    rbm = _rbm(784, 16, seed=2, weight_scale=0.1)
    exact = rbm.log_partition()
    torch.manual_seed(3)
    _check(AIS(num_chains=100, num_steps=1000)(rbm, data=_data_like(rbm)), exact)


@pytest.mark.slow
def test_ais_rbm_784x20_matches_exact():
    rbm = _rbm(784, 20, seed=4, weight_scale=0.1)
    exact = rbm.log_partition()
    torch.manual_seed(5)
    _check(AIS(num_chains=100, num_steps=3000)(rbm, data=_data_like(rbm)), exact)


def test_ais_gaussian_rbm_matches_exact():
    rbm = _rbm(10, 8, seed=6, weight_scale=0.3, visible="gaussian", sigma=1.0)
    torch.manual_seed(7)
    _check(AIS(num_chains=100, num_steps=1000)(rbm), rbm.log_partition())


@pytest.mark.parametrize("sizes", [[20, 10, 8], [12, 6, 5, 4]])
def test_ais_dbm_matches_exact(sizes):
    dbm = random_dbm(sizes, seed=8, scale=0.3).float()
    torch.manual_seed(9)
    _check(AIS(num_chains=100, num_steps=1000)(dbm), dbm.log_partition())


def test_log_z_via_model_method_and_path_object():
    rbm = _rbm(8, 4, seed=10, weight_scale=0.5)
    torch.manual_seed(11)
    a = rbm.log_partition("ais", num_chains=50, num_steps=300)
    torch.manual_seed(11)
    b = AIS(num_chains=50, num_steps=300)(rbm.annealing_path()).log_z  # a path is accepted as is
    torch.testing.assert_close(a, b)


def test_stderr_matches_spread_of_independent_runs():
    """The delta-method standard error should be of the order of the run-to-run spread."""
    rbm = _rbm(30, 10, seed=12, weight_scale=0.5)
    torch.manual_seed(13)
    runs = [AIS(num_chains=50, num_steps=100)(rbm) for _ in range(20)]
    spread = torch.stack([r.log_z for r in runs]).std()
    mean_se = torch.stack([r.stderr for r in runs]).mean()
    assert 0.4 < float(mean_se / spread) < 2.5


@pytest.mark.parametrize("kind", ["linear", "salakhutdinov", "sigmoid"])
@pytest.mark.parametrize("num_steps", [1, 2, 7, 1000])
def test_schedules_increase_from_zero_to_one(kind, num_steps):
    betas = annealing_schedule(num_steps, kind)
    assert betas.shape == (num_steps + 1,)
    assert betas[0] == 0 and betas[-1] == 1
    assert bool((betas[1:] >= betas[:-1]).all())


def test_single_step_ais_is_plain_importance_sampling():
    """With betas [0, 1] the weights are f_1(x)/f_0(x) for base samples x: check exactly."""
    rbm = _rbm(5, 3, seed=14, weight_scale=1.0)
    torch.manual_seed(15)
    result = AIS(num_chains=4, betas=[0.0, 1.0])(rbm)
    torch.manual_seed(15)
    path = rbm.annealing_path()
    v = path.sample0(4)
    expected = -rbm.free_energy(v).detach() - (v @ path.base + 3 * math.log(2.0))
    torch.testing.assert_close(result.log_weights, expected.double())
    assert math.isclose(float(result.log_z0), 3 * math.log(2) + 5 * math.log(2), rel_tol=1e-6)


def test_bad_arguments_raise():
    with pytest.raises(ConfigError, match="num_chains"):
        AIS(num_chains=1)
    with pytest.raises(ConfigError, match="betas"):
        AIS(betas=[0.0, 0.7, 0.5, 1.0])
    with pytest.raises(ConfigError, match="schedule"):
        AIS(schedule="cosine")
    with pytest.raises(ModelSpecError, match="annealable"):
        AIS(num_chains=2, num_steps=2)(torch.nn.Linear(2, 2))
    with pytest.raises(DataError, match=r"\(N, 8\).*\(10, 4\)"):
        AIS(num_chains=2, num_steps=2)(RBM(8, 2), data=torch.ones(10, 4))
    dbm = DBM([3, 2, 2])
    with torch.no_grad():
        dbm.biases[1][0] = float("nan")
    with pytest.raises(ModelSpecError, match="biases.1"):
        AIS(num_chains=2, num_steps=2)(dbm)


def test_training_on_binarized_digits_improves_ais_log_likelihood():
    import functools

    from hybridpgm.data import load_dataset
    from hybridpgm.infer import ContrastiveDivergence
    from hybridpgm.train import fit

    data = load_dataset("digits", binarize="static", seed=0)
    train, test = data.train.x, data.test.x
    torch.manual_seed(0)
    rbm = RBM(64, 20)
    ais = AIS(num_chains=100, num_steps=500)
    before = float(rbm.log_likelihood(test, ais(rbm, data=train).log_z).detach().mean())
    fit(ContrastiveDivergence(rbm, 1), train, epochs=5, batch_size=20, progress=False, seed=0,
        optim=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.5))
    estimate = ais(rbm, data=train)
    after = float(rbm.log_likelihood(test, estimate.log_z).detach().mean())
    exact = float(rbm.log_likelihood(test).detach().mean())
    print(f"digits test log-likelihood: untrained {before:.2f}, CD-1 {after:.2f} (exact {exact:.2f})")
    assert after > before + 10
    assert abs(after - exact) < 0.2


def test_a_bad_schedule_is_refused_even_with_explicit_betas():
    """Before: ``AIS(schedule="foo", betas=[...])`` ignored the unknown schedule silently; ``betas`` still set
    the schedule, and ``num_steps``/``schedule`` are checked whether or not they are used."""
    with pytest.raises(ConfigError, match="unknown AIS schedule 'foo'"):
        AIS(num_chains=2, schedule="foo", betas=[0.0, 1.0])
    with pytest.raises(ConfigError, match="AIS num_steps must be a positive integer, got 0"):
        AIS(num_chains=2, num_steps=0, betas=[0.0, 1.0])
    assert AIS(num_chains=2, schedule="linear", betas=[0.0, 0.5, 1.0]).betas == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("shape", [(8,), (2, 5, 8)])
def test_base_rate_data_that_is_not_n_by_v_is_refused(shape):
    """Before: one row (V,) or a 3-d batch was reshaped to N x V silently."""
    shown = str(shape).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(DataError, match=r"AIS base-rate data must have shape \(N, V\), got " + shown):
        AIS(num_chains=2, num_steps=2)(RBM(8, 2), data=torch.ones(shape))


def test_data_with_an_annealing_path_is_refused():
    """An annealing path is used as it is: data given with it (for base rates it cannot set) was ignored."""
    path = RBM(4, 2).annealing_path()
    with pytest.raises(ConfigError, match="has no annealing_path"):
        AIS(num_chains=2, num_steps=2)(path, data=torch.ones(3, 4))


@pytest.mark.parametrize("num_stderr", [-3, float("nan"), float("inf"), True, "3", None])
def test_interval_refuses_a_bad_number_of_standard_errors(num_stderr):
    """Before, AISResult.interval(-3) returned a reversed interval and NaN, True and '3' were not refused
    (LogZEstimate.interval refused them already)."""
    zero = torch.zeros((), dtype=torch.float64)
    result = AISResult(log_z=zero + 1.0, stderr=zero + 0.5, log_weights=torch.zeros(4, dtype=torch.float64),
                       log_z0=zero, num_steps=1)
    from scipy import stats

    t = stats.t.isf(stats.norm.sf(2), 3)  # 4 chains: Student's t with 3 degrees of freedom, at 2 sd's coverage
    assert result.interval(2) == pytest.approx((1.0 - 0.5 * t, 1.0 + 0.5 * t), rel=1e-12)
    assert result.interval(0.0) == (1.0, 1.0)
    with pytest.raises(ConfigError, match=f"AISResult.interval num_stderr must be a finite number >= 0, "
                                          f"got {num_stderr!r}"):
        result.interval(num_stderr)


def _annealable(kind: str):
    if kind == "dbm":
        return random_dbm([4, 3, 2])
    if kind == "gaussian":
        return _rbm(5, 3, seed=0, weight_scale=0.5, visible="gaussian", sigma=0.7)
    return _rbm(5, 3, seed=0, weight_scale=1.0)


@pytest.mark.parametrize("with_data", [False, True])
@pytest.mark.parametrize("kind", ["rbm", "gaussian", "dbm", "path"])
def test_ais_draws_from_the_generator_given(kind, with_data):
    """``AIS(...)(model, generator=g)`` (keyword-only): the base samples and every transition draw from ``g``,
    the caller's stream untouched, ``None`` the old call (tests/energy/generator_contract.py); on a model or
    on its annealing path.  Before: no such argument."""
    model = _annealable("rbm" if kind == "path" else kind)
    data = torch.bernoulli(torch.full((6, model.annealing_path().base.numel()), 0.3),
                           generator=torch.Generator().manual_seed(9)) if with_data else None
    if kind == "path":
        model, data = model.annealing_path(data), None
    ais = AIS(num_chains=4, num_steps=5)
    assert_generator_contract(lambda **kw: ais(model, data=data, **kw).log_weights, "AIS generator")


class _PathWithoutGenerator:
    """An annealing path written before ``generator=`` (a user's): ``sample0`` and ``step`` take none."""

    def __init__(self, path):
        self.path, self.log_z0 = path, path.log_z0

    def sample0(self, n):
        return self.path.sample0(n)

    def step(self, x, beta_prev, beta, transition=True):
        return self.path.step(x, beta_prev, beta, transition)


def test_a_path_that_takes_no_generator_runs_without_one_and_is_refused_with_one():
    """A path without the keyword still runs (and draws what it drew) without a generator; with one, AIS names
    the methods before drawing anything, instead of Python's TypeError from the first call."""
    path = _annealable("rbm").annealing_path()
    ais = AIS(num_chains=4, num_steps=5)
    torch.manual_seed(3)
    expected = ais(path).log_weights
    torch.manual_seed(3)
    assert torch.equal(ais(_PathWithoutGenerator(path)).log_weights, expected)
    state = torch.get_rng_state()
    with pytest.raises(ConfigError, match=r"AIS generator: _PathWithoutGenerator.sample0, _PathWithoutGenerator.step "
                                          r"take\(s\) no generator= keyword"):
        ais(_PathWithoutGenerator(path), generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)


class _ConstantIncrements:
    """A path whose log-weight increments are float32 constants: a large first one, then many small ones."""

    log_z0 = torch.tensor(0.0)

    def __init__(self, first: float, rest: float):
        self.first, self.rest, self.calls = first, rest, 0

    def sample0(self, n):
        return torch.zeros(n)

    def step(self, x, beta_prev, beta, transition=True):
        self.calls += 1
        return torch.full_like(x, self.first if self.calls == 1 else self.rest), x


def test_ais_sums_float32_log_weight_increments_in_float64():
    """Found by a float32 audit: the running log-weight was summed in the model's dtype, so a float32 sum near
    1e3 rounded each small increment the same way (spacing 6e-5 there) and drifted with the number of steps
    (1.6 nats at 1e5 steps on a 784 x 100 RBM, 9 standard errors); the increments are now summed in float64."""
    steps, first, rest = 10_000, 1000.0, 1.2345e-4
    result = AIS(num_steps=steps, num_chains=2, schedule="linear")(_ConstantIncrements(first, rest))
    # the float32 increments, summed exactly (float64 holds every float32 and this sum to ~1e-12)
    exact = float(torch.tensor(first)) + (steps - 1) * float(torch.tensor(rest))
    assert result.log_weights.dtype == torch.float64
    assert abs(float(result.log_weights[0]) - exact) < 1e-8
    assert abs(float(result.log_z) - exact) < 1e-8


@pytest.mark.parametrize("offset", [30.0, 1000.0])
def test_ais_gaussian_rbm_with_offset_visible_units_matches_exact_without_data(offset):
    """A Gaussian RBM trained on data that was not centred has visible biases near the data's offset; the AIS base
    without data was a Gaussian of mean 0 whatever they were, and AIS came out thousands of nats low (-1099.3
    against 2633.5 at an offset of 1000) with a standard error of 1 (about 1 nat off at 30).  The base is centred on
    the model's own visible biases now."""
    rbm = _rbm(10, 6, seed=1, weight_scale=0.3, visible="gaussian", sigma=1.0).double()
    with torch.no_grad():
        rbm.visible_bias.fill_(offset)
    _check(AIS(num_chains=100, num_steps=1000)(rbm, generator=torch.Generator().manual_seed(0)), rbm.log_partition())
