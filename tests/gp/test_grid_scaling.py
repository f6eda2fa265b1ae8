"""KISS-GP grids: scaling features into the grid (also without a range), user kernels with ``grid_size``,
and predictions at zero inputs."""

import copy
import functools

import gpytorch
import pytest
import torch

import hybridpgm
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.gp import ArcCosineKernel, DeepKernelGP, ExactMLLObjective, SVDeepKernelGP
from hybridpgm.gp.grid_scaling import ScaleToGrid
from hybridpgm.nn import mlp
from tests.gp.deep_kernel_helpers import PlainExactGP  # GPyTorch's textbook exact GP: the reference

# a UserWarning or RuntimeWarning not ignored below fails the test (a later filter wins: the ignores, third-party
# warnings seen in this file, come after the errors)
pytestmark = pytest.mark.filterwarnings(
    "error::UserWarning",
    "error::RuntimeWarning",
    "ignore::linear_operator.utils.warnings.NumericalWarning",  # GPyTorch's numerics: CG not converged, jitter added
    "ignore:Sparse invariant checks are implicitly disabled:UserWarning",  # torch, once per process
    # torch, at the test's float() of a loss
    "ignore:Converting a tensor with requires_grad=True to a scalar:UserWarning",
)

EXACT = functools.partial(gpytorch.settings.fast_computations, False, False, False)


def _toy(n=21, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g, dtype=dtype) * 2 - 1
    return x, torch.sin(3 * x[:, 0]) + 0.1 * torch.randn(n, generator=g, dtype=dtype)


def _reference(model, h):
    """GPyTorch's exact GP with ``model``'s kernel, mean and likelihood, conditioned on GP inputs ``h``."""
    ref = PlainExactGP(h, model.train_y, gpytorch.likelihoods.GaussianLikelihood(),
                       copy.deepcopy(model.gp.covar_module)).double()
    ref.load_state_dict(model.gp.state_dict())
    return ref


# ------------------------------------------------------------------ the scaling itself
@pytest.mark.parametrize("bounds", [(-1.0, 1.0), (0.0, 3.0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(7, 1), (30, 2), (4, 5, 2)])
def test_batches_with_a_range_are_scaled_as_gpytorch_scales_them_bit_for_bit(bounds, dtype, shape):
    ours, theirs = ScaleToGrid(*bounds).to(dtype), gpytorch.utils.grid.ScaleToBounds(*bounds).to(dtype)
    g = torch.Generator().manual_seed(1)
    for step in range(3):
        x = (torch.randn(shape, generator=g) * (step + 1)).to(dtype)
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        out1, out2 = ours.train()(x1), theirs.train()(x2)
        assert torch.equal(out1, out2)
        weights = torch.randn(shape, generator=g).to(dtype)
        (out1 * weights).sum().backward()
        (out2 * weights).sum().backward()
        assert torch.equal(x1.grad, x2.grad)
        assert torch.equal(ours.min_val, theirs.min_val) and torch.equal(ours.max_val, theirs.max_val)
        test = (torch.randn(shape, generator=g) * 3).to(dtype)
        assert torch.equal(ours.eval()(test), theirs.eval()(test))


@pytest.mark.parametrize("bounds", [(-1.0, 1.0), (0.0, 3.0)])
@pytest.mark.parametrize("batch", [[[0.3]], [[-0.6], [-0.6], [-0.6]], [[2.5, 2.5], [2.5, 2.5]]])
def test_a_batch_without_a_range_goes_to_the_grid_centre(bounds, batch):
    """GPyTorch divides by max - min = 0 (NaN); here the batch goes to the centre of the grid's 0.95 box and
    the recorded range is the bounds' width around its value: at prediction x goes to c + 0.95 (x - v)."""
    lower, upper = bounds
    centre, half = 0.95 * lower + 0.475 * (upper - lower), (upper - lower) / 2
    x = torch.tensor(batch, dtype=torch.float64, requires_grad=True)
    v = float(x[0, 0])
    scale = ScaleToGrid(*bounds).double().train()
    out = scale(x)
    torch.testing.assert_close(out, torch.full_like(out, centre), rtol=0, atol=1e-15)
    assert torch.isnan(gpytorch.utils.grid.ScaleToBounds(*bounds).double()(x.detach())).all()  # what it fixes
    assert (scale.min_val.item(), scale.max_val.item()) == (v - half, v + half)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    test = torch.tensor([[v - 0.4], [v], [v + 0.25], [v + 10.0]], dtype=torch.float64)
    expected = (centre + 0.95 * (test - v)).clamp(0.95 * lower, 0.95 * upper)
    torch.testing.assert_close(scale.eval()(test), expected, rtol=0, atol=1e-15)


def test_a_huge_constant_batch_and_an_empty_batch_keep_the_scaling_finite():
    scale = ScaleToGrid(-1.0, 1.0).train()
    assert torch.isfinite(scale(torch.full((3, 1), 3e9))).all()  # v +- 1 rounds to v in float32
    assert scale.min_val < scale.max_val
    recorded = (scale.min_val.clone(), scale.max_val.clone())
    assert scale(torch.zeros(0, 2)).shape == (0, 2)
    assert (scale.min_val, scale.max_val) == recorded


# ------------------------------------------------------------------ exact KISS-GP (DeepKernelGP)
@pytest.mark.parametrize("n", [1, 6])
def test_kiss_gp_on_features_without_a_range_is_gpytorchs_gp_at_the_grid_centre(n):
    """One example or equal inputs: before, a raw RuntimeError (index -2**63) from GPyTorch's interpolation.
    Now the marginal likelihood is GPyTorch's exact GP with the same kernel at the grid's centre, and the
    closed form log N(y | mu, k(c, c) + noise) for one example."""
    x, y = _toy()
    x = x[:n] if n == 1 else torch.full((n, 1), 0.4, dtype=torch.float64)
    model = DeepKernelGP(x, y[:n], grid_size=32).double()
    model.gp.covar_module.base_kernel.outputscale = 1.7
    model.likelihood.noise = 0.3
    model.gp.mean_module.constant.data.fill_(0.2)
    ref = _reference(model, torch.zeros(n, 1, dtype=torch.float64))
    with EXACT():
        got = model.marginal_log_likelihood()
        loss = ExactMLLObjective(model).loss("mll", (x, y[:n]))
        ref.train()
        expected = gpytorch.mlls.ExactMarginalLogLikelihood(ref.likelihood, ref)(ref(*ref.train_inputs), y[:n])
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss, -expected, rtol=1e-12, atol=1e-12)
    if n == 1:
        k = model.gp.covar_module(torch.zeros(1, 1, dtype=torch.float64)).to_dense()[0, 0]
        noise = model.likelihood.noise[0]  # 0.3 as set through float32
        by_hand = -0.5 * (torch.log(2 * torch.pi * (k + noise)) + (y[0] - 0.2) ** 2 / (k + noise))
        torch.testing.assert_close(got, by_hand, rtol=1e-12, atol=1e-12)


def test_kiss_gp_trained_on_one_example_predicts_like_gpytorch_at_the_recorded_scaling():
    x, y = _toy()
    model = DeepKernelGP(x[:1], y[:1], grid_size=32).double()
    v = float(x[0, 0])
    test = torch.linspace(-1, 1, 9, dtype=torch.float64)[:, None]
    ref = _reference(model, torch.zeros(1, 1, dtype=torch.float64)).eval()
    with EXACT():
        got = model.predict(test)
        expected = ref.likelihood(ref((0.95 * (test - v)).clamp(-0.95, 0.95)))
    torch.testing.assert_close(got.mean, expected.mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got.variance, expected.variance, rtol=1e-10, atol=1e-10)
    assert got.mean.unique().numel() > 1  # not one value for every input


def test_fit_with_a_last_batch_of_one_example_trains():
    """N = 21, batch_size = 10: the last batch of each epoch holds one example (was a raw RuntimeError)."""
    x, y = _toy(dtype=torch.float32)
    torch.manual_seed(0)
    model = DeepKernelGP(x, y, mlp([1, 8, 1], activation="tanh"), grid_size=32)
    result = hybridpgm.fit(ExactMLLObjective(model), (x, y), batch_size=10, epochs=2, progress=False, seed=0,
                           device="cpu", optim=functools.partial(torch.optim.Adam, lr=0.01))
    assert result.history.step == [1, 2, 3, 4, 5, 6]
    assert all(torch.isfinite(torch.tensor(loss)) for loss in result.history.loss["mll"])
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert torch.isfinite(model.predict(x[:4]).mean).all()


# ------------------------------------------------------------------ SV-DKL on a grid
def test_sv_dkl_on_a_grid_trains_with_a_batch_of_one_example():
    """N = 65, batch_size = 32: the last batch holds one example (was a raw RuntimeError from the grid)."""
    torch.manual_seed(0)
    x = torch.rand(65, 1) * 2 - 1
    y = torch.sin(3 * x[:, 0])
    sv = SVDeepKernelGP(None, num_features=1, num_data=65, grid_size=16)
    result = hybridpgm.fit(sv.objective(), (x, y), batch_size=32, epochs=1, progress=False, seed=0, device="cpu")
    assert result.history.step == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(loss)) for loss in result.history.loss["elbo"])
    assert all(torch.isfinite(p).all() for p in sv.parameters())


def test_sv_dkl_q_f_of_one_example_is_the_variational_strategy_at_the_grid_centre():
    x, _ = _toy()
    sv = SVDeepKernelGP(None, num_features=1, num_data=21, grid_size=16).double().train()
    with torch.no_grad():
        sv.variational_strategy._variational_distribution.variational_mean.normal_(
            generator=torch.Generator().manual_seed(0))
    got = sv(x[:1])
    expected = sv.variational_strategy(torch.zeros(1, 1, dtype=torch.float64))
    assert torch.isfinite(got.mean).all() and torch.isfinite(got.variance).all()
    torch.testing.assert_close(got.mean, expected.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got.variance, expected.variance, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ predict at zero inputs
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_predict_at_zero_inputs_gives_empty_results_with_a_grid(dtype):
    """The docstrings promise it; under KISS-GP it was a raw IndexError from GPyTorch's interpolation."""
    x, y = _toy(dtype=dtype)
    exact = DeepKernelGP(x, y).predict(x[:0])
    for model in (DeepKernelGP(x, y, grid_size=32), DeepKernelGP(x, y, mlp([1, 4, 2]).to(dtype), grid_size=16),
                  SVDeepKernelGP(None, num_features=1, num_data=21, grid_size=16).to(dtype)):
        model.to(dtype)
        for pred in (model.predict(x[:0]), model.predict(x[:0])):
            for got, want in ((pred.mean, exact.mean), (pred.variance, exact.variance)):
                assert got.shape == want.shape == (0,) and got.dtype == want.dtype == dtype
        assert model.predict(x[:3]).mean.shape == (3,)
    with pytest.raises(DataError, match=r"x has shape \(0, 2\), expected \(N, 1\)"):
        DeepKernelGP(x, y, grid_size=32).predict(torch.zeros(0, 2, dtype=dtype))


# ------------------------------------------------------------------ a kernel with grid_size
def test_a_kernel_given_with_grid_size_becomes_the_base_kernel_of_the_grid():
    """Before, kernel= with grid_size= skipped KISS-GP yet scaled the inputs into the grid bounds. Now it is the
    base kernel of the grid: with GPyTorch's default kernel given explicitly, the model is the default one."""
    x, y = _toy(n=30)
    x = x * 5  # a range the scaling changes
    torch.manual_seed(0)
    net = mlp([1, 8, 2], activation="tanh").double()
    given = DeepKernelGP(x, y, copy.deepcopy(net), grid_size=24, kernel=gpytorch.kernels.ScaleKernel(
        gpytorch.kernels.RBFKernel(ard_num_dims=2))).double()
    default = DeepKernelGP(x, y, copy.deepcopy(net), grid_size=24).double()
    kernel = given.gp.covar_module
    assert isinstance(kernel, gpytorch.kernels.GridInterpolationKernel) and kernel.grid_sizes == [24, 24]
    assert isinstance(kernel.base_kernel, gpytorch.kernels.ScaleKernel)
    assert set(given.state_dict()) == set(default.state_dict())
    given.load_state_dict(default.state_dict())
    with EXACT():
        assert torch.equal(given.marginal_log_likelihood(), default.marginal_log_likelihood())
        assert torch.equal(given.predict(x[:5]).mean, default.predict(x[:5]).mean)
    matern = DeepKernelGP(x, y, kernel=gpytorch.kernels.MaternKernel(nu=2.5), grid_size=32).double()
    assert isinstance(matern.gp.covar_module.base_kernel, gpytorch.kernels.MaternKernel)
    assert matern.predict(x[:2]).mean.shape == (2,)


def test_a_kernel_the_grid_cannot_take_is_a_named_model_spec_error():
    x, y = _toy()
    for kernel in (ArcCosineKernel(1), gpytorch.kernels.LinearKernel()):
        with pytest.raises(ModelSpecError, match=rf"kernel {type(kernel).__name__} is not stationary, so "
                                                 r"grid_size=16 cannot interpolate"):
            DeepKernelGP(x, y, kernel=kernel, grid_size=16)
    other_grid = gpytorch.kernels.GridInterpolationKernel(gpytorch.kernels.RBFKernel(), grid_size=20, num_dims=1,
                                                          grid_bounds=[(-1.0, 1.0)])
    with pytest.raises(ModelSpecError, match=r"kernel holds a GridInterpolationKernel with grid sizes \[20\] .* "
                                             r"grid_size=16 and grid_bounds=\(-1.0, 1.0\)"):
        DeepKernelGP(x, y, kernel=other_grid, grid_size=16)
    dynamic = gpytorch.kernels.GridInterpolationKernel(gpytorch.kernels.RBFKernel(), grid_size=16, num_dims=1)
    with pytest.raises(ModelSpecError, match="kernel holds a GridInterpolationKernel"):
        DeepKernelGP(x, y, kernel=dynamic, grid_size=16)
    for bad in ("16", 2, 2.5):
        with pytest.raises(ModelSpecError, match="grid_size"):
            DeepKernelGP(x, y, kernel=gpytorch.kernels.RBFKernel(), grid_size=bad)
    same_grid = gpytorch.kernels.GridInterpolationKernel(gpytorch.kernels.RBFKernel(), grid_size=16, num_dims=1,
                                                         grid_bounds=[(-1.0, 1.0)])
    assert DeepKernelGP(x, y, kernel=same_grid, grid_size=16).gp.covar_module is same_grid  # used as given
    assert DeepKernelGP(x, y, kernel=ArcCosineKernel(1)).predict(x[:2]).mean.shape == (2,)  # no grid: fine


# ------------------------------------------------------------------ the grid scaling is part of the trained model
def _prior_correlation(model, a, b):
    """The prior correlation the conditioned model uses between features ``a`` and ``b``."""
    with torch.no_grad():
        model.condition()
        K = model.gp.covar_module(model.gp_inputs(torch.tensor([[a], [b]], dtype=torch.float64))).to_dense()
        same = model.prior(torch.tensor([[a], [b]], dtype=torch.float64)).covariance_matrix
    model.train()
    torch.testing.assert_close(same, K, rtol=0, atol=0)
    return float(K[0, 1] / K[0, 0].sqrt() / K[1, 1].sqrt())


def test_conditioning_on_other_data_keeps_the_kiss_grid_scaling(tmp_path):
    """condition() re-recorded the grid scaling from the training features every call: set_train_data (and
    fit_validated's refit) silently changed the kernel (prior correlation of features 0 and 0.5: 0.164 -> 0.930)."""
    x_fit = torch.linspace(-1, 1, 9, dtype=torch.float64)[:, None]
    x_new = torch.linspace(1.25, 9, 10, dtype=torch.float64)[:, None]
    model = DeepKernelGP(x_fit, torch.sin(2 * x_fit[:, 0]), grid_size=200)
    with torch.no_grad():
        model.gp.covar_module.base_kernel.base_kernel.lengthscale = 0.25
    model.predict(x_fit[:3])
    before = _prior_correlation(model, 0.0, 0.5)
    x_all = torch.cat([x_fit, x_new])
    model.set_train_data(x_all, torch.sin(2 * x_all[:, 0]))
    prediction = model.predict(x_fit[:3])
    assert _prior_correlation(model, 0.0, 0.5) == before
    # the scaling recorded when the model was built, from its training features
    assert (model.scale_to_bounds.min_val, model.scale_to_bounds.max_val) == (x_fit.min(), x_fit.max())
    # a feature outside the recorded range is clamped to it: the GP sees it at the edge
    with torch.no_grad():
        model.eval()
        assert model.gp_inputs(torch.tensor([[9.0]], dtype=torch.float64)).item() == pytest.approx(0.95)
    loaded = hybridpgm.load(hybridpgm.save(model, tmp_path / "kiss.pt"))
    assert _prior_correlation(loaded, 0.0, 0.5) == before
    again = loaded.predict(x_fit[:3])
    assert torch.equal(again.mean, prediction.mean) and torch.equal(again.variance, prediction.variance)


def test_training_steps_record_the_grid_scaling_and_the_refit_keeps_it():
    x, y = _toy(n=30)
    torch.manual_seed(0)
    model = DeepKernelGP(x, y, mlp([1, 4, 1], activation="tanh").double(), grid_size=32)
    hybridpgm.fit(ExactMLLObjective(model), (x, y), batch_size=30, epochs=3, progress=False, seed=0,
                  device="cpu", optim=functools.partial(torch.optim.Adam, lr=0.05))
    recorded = (model.scale_to_bounds.min_val.clone(), model.scale_to_bounds.max_val.clone())
    model.predict(x[:2])
    model.set_train_data(x * 3, y)  # features of another range
    model.predict(x[:2])
    assert (model.scale_to_bounds.min_val, model.scale_to_bounds.max_val) == recorded


def test_running_grid_scaling_records_the_range_of_all_batches():
    from hybridpgm.gp.grid_scaling import RunningScaleToGrid

    scale = RunningScaleToGrid(-1.0, 1.0).double().train()
    batches = [torch.tensor([[0.2], [0.5]]), torch.tensor([[-1.5], [0.0]]), torch.tensor([[0.3]])]
    first = scale(batches[0].double())
    torch.testing.assert_close(first, ScaleToGrid(-1.0, 1.0).double().train()(batches[0].double()))
    for b in batches[1:]:
        scale(b.double())
    assert (scale.min_val.item(), scale.max_val.item()) == (-1.5, 0.5)  # not the last batch's (0.3 +- 1)
    torch.testing.assert_close(scale.eval()(torch.tensor([[-1.5], [0.5], [7.0]], dtype=torch.float64)),
                               torch.tensor([[-0.95], [0.95], [0.95]], dtype=torch.float64))
    legacy = {k: v for k, v in scale.state_dict().items() if k != "recorded"}  # saved before the flag existed
    fresh = RunningScaleToGrid(-1.0, 1.0).double()
    fresh.load_state_dict(legacy)
    assert bool(fresh.recorded) and fresh.min_val.item() == -1.5


@pytest.mark.parametrize("shuffle, drop_last", [(True, False), (False, False), (True, True)])
def test_sv_dkl_on_a_grid_predicts_with_the_range_of_all_batches_not_the_last(shuffle, drop_last, tmp_path):
    """The eval scaling was the LAST mini-batch's: with a last batch of one example (N = 41, batch_size = 10) the
    predictions at the training points had an RMSE of 0.85 (0.04 with the data's range)."""
    x = torch.linspace(-2, 2, 41)[:, None]
    y = torch.sin(2 * x[:, 0])
    torch.manual_seed(1)
    sv = SVDeepKernelGP(None, num_features=1, num_data=41, grid_size=32)
    hybridpgm.fit(sv.objective(), (x, y), batch_size=10, epochs=60, shuffle=shuffle, drop_last=drop_last,
                  optim=functools.partial(torch.optim.Adam, lr=0.05), progress=False, seed=0)
    if not drop_last:
        assert (sv.scale_to_bounds.min_val.item(), sv.scale_to_bounds.max_val.item()) == (-2.0, 2.0)
    rmse = ((sv.predict(x).mean - y) ** 2).mean().sqrt()
    assert rmse < 0.15
    loaded = hybridpgm.load(hybridpgm.save(sv, tmp_path / "sv.pt"))
    assert torch.equal(loaded.predict(x).mean, sv.predict(x).mean)
