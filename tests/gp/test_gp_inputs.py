"""Bad and edge-case inputs to the public API of ``hybridpgm.gp``: each raises the
:mod:`hybridpgm.errors` exception that names the argument, or (empty inputs where that is
natural) gives empty results, instead of a raw torch/GPyTorch error, a silent cast or a wrong answer."""

import gpytorch
import pytest
import torch

from hybridpgm.errors import ConfigError, DataError, DeviceError, ModelSpecError
from hybridpgm.gp import (GPLSTM, ArcCosineKernel, DeepKernelGP, ExactMLLObjective, LSTMFeatures, SVDeepKernelGP,
                          SemiStochasticObjective, calibration, fit_validated, train_deep_kernel, train_gp_lstm)
from hybridpgm.gp.validation import split_tail

# a UserWarning or RuntimeWarning not ignored below fails the test (a later filter wins: the ignores, third-party
# warnings seen in this file, come after the errors)
pytestmark = pytest.mark.filterwarnings(
    "error::UserWarning",
    "error::RuntimeWarning",
    "ignore::linear_operator.utils.warnings.NumericalWarning",  # GPyTorch's numerics: CG not converged, jitter added
    "ignore:Initializing zero-element tensors is a no-op:UserWarning",  # torch, at a network of no outputs
)

# a tensor on another device than the (CPU) model, without needing a GPU
ELSEWHERE = "meta"


def _toy(n=20, d=2, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, d, generator=g, dtype=dtype) * 2 - 1
    return x, torch.sin(3 * x[:, 0])


def _windows(n=30, t=6):
    x = torch.rand(n, t, 1, generator=torch.Generator().manual_seed(0))
    return x, x[:, -1, 0]


# ------------------------------------------------------------------ DeepKernelGP

@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_dkgp_refuses_non_floating_targets(dtype):
    x, y = _toy()
    with pytest.raises(DataError, match=f"train_y has dtype {dtype}, expected a floating dtype"):
        DeepKernelGP(x, (y > 0).to(dtype))
    model = DeepKernelGP(x, y)
    with pytest.raises(DataError, match=f"y has dtype {dtype}, expected a floating dtype"):
        model.marginal_log_likelihood(x, (y > 0).to(dtype))


def test_dkgp_refuses_targets_of_another_dtype_than_the_inputs():
    x, y = _toy(dtype=torch.float64)
    with pytest.raises(DataError, match="train_y has dtype torch.float32, expected torch.float64"):
        DeepKernelGP(x, y.float())


@pytest.mark.parametrize("dtype", [torch.float64, torch.int64])
def test_dkgp_new_training_data_must_have_the_training_dtype(dtype):
    """(Test inputs follow the library's dtype rule: tests/gp/test_feature_gp_dtype_rule.py.)"""
    x, y = _toy()
    model = DeepKernelGP(x, y)
    with pytest.raises(DataError, match=f"train_x has dtype {dtype}, expected torch.float32"):
        model.set_train_data(x.to(dtype), y)


def test_dkgp_inputs_on_another_device_raise_device_error():
    x, y = _toy()
    model = DeepKernelGP(x, y)
    with pytest.raises(DeviceError, match="x is on meta, the model on cpu"):
        model.predict(torch.empty(3, 2, device=ELSEWHERE))
    with pytest.raises(DeviceError, match="x is on meta, the model on cpu"):
        model.marginal_log_likelihood(torch.empty(20, 2, device=ELSEWHERE), y)
    with pytest.raises(DeviceError, match="y is on meta, the model on cpu"):
        model.marginal_log_likelihood(x, torch.empty(20, device=ELSEWHERE))
    with pytest.raises(DeviceError, match="train_x is on meta, the model on cpu"):
        model.set_train_data(torch.empty(5, 2, device=ELSEWHERE), torch.empty(5, device=ELSEWHERE))


def test_dkgp_empty_training_data_is_refused_and_empty_predictions_are_empty():
    x, y = _toy()
    with pytest.raises(DataError, match=r"train_x has shape \(0, 2\): no training examples"):
        DeepKernelGP(x[:0], y[:0])
    model = DeepKernelGP(x, y)
    with pytest.raises(DataError, match=r"x has shape \(0, 2\): an empty batch"):
        model.marginal_log_likelihood(x[:0], y[:0])
    with pytest.raises(DataError, match=r"train_x has shape \(0, 2\): no training examples"):
        model.set_train_data(x[:0], y[:0])
    pred = model.predict(x[:0])
    assert pred.mean.shape == (0,) and pred.variance.shape == (0,)


def test_dkgp_inputs_without_features_are_refused():
    _, y = _toy()
    with pytest.raises(DataError, match=r"train_x has shape \(20, 0\): examples without features"):
        DeepKernelGP(torch.zeros(20, 0), y)
    with pytest.raises(ModelSpecError, match=r"feature extractor maps \(2, 2\) to \(2, 0\): no features"):
        DeepKernelGP(*_toy(), torch.nn.Linear(2, 0))


@pytest.mark.parametrize("grid_size", [4.5, 8.0, True, "8"])
def test_grid_size_must_be_an_integer(grid_size):
    x, y = _toy(d=1)
    with pytest.raises(ModelSpecError, match=r"grid_size .* must be an integer >= 4, got"):
        DeepKernelGP(x, y, grid_size=grid_size)
    with pytest.raises(ModelSpecError, match=r"grid_size .* must be an integer >= 4, got"):
        SVDeepKernelGP(num_features=1, num_data=20, grid_size=grid_size)


@pytest.mark.parametrize("bounds", [(1.0, -1.0), (0.0, 0.0), (float("nan"), 1.0), (0.0, 1.0, 2.0)])
def test_grid_bounds_must_be_an_increasing_finite_pair(bounds):
    x, y = _toy(d=1)
    with pytest.raises(ModelSpecError, match=r"grid_bounds must be \(lower, upper\) with finite lower < upper"):
        DeepKernelGP(x, y, grid_size=16, grid_bounds=bounds)
    with pytest.raises(ModelSpecError, match=r"grid_bounds must be \(lower, upper\) with finite lower < upper"):
        SVDeepKernelGP(num_features=1, num_data=20, grid_size=8, grid_bounds=bounds)


@pytest.mark.parametrize("arg", ["kernel", "mean", "likelihood"])
def test_dkgp_components_must_be_gpytorch_modules(arg):
    with pytest.raises(ModelSpecError, match=f"DeepKernelGP {arg} must be a gpytorch"):
        DeepKernelGP(*_toy(), **{arg: "rbf"})


def test_exact_mll_objective_names_a_bad_batch_or_player():
    x, y = _toy()
    objective = ExactMLLObjective(DeepKernelGP(x, y))
    with pytest.raises(DataError, match=r"ExactMLLObjective batches are \(x, y\), got a tuple of 1"):
        objective.loss("mll", (x,))
    with pytest.raises(ConfigError, match="ExactMLLObjective has one player 'mll', got 'elbo'"):
        objective.loss("elbo", (x, y))


# ---------------------------------------------------------------- SVDeepKernelGP

def _sv(**kwargs):
    return SVDeepKernelGP(**{"num_features": 2, "num_data": 20, "inducing_points": torch.rand(5, 2), **kwargs})


@pytest.mark.parametrize("arg, value", [("num_data", 2.5), ("num_data", True), ("num_data", "10"),
                                        ("num_features", 0), ("num_features", 2.0)])
def test_sv_dkl_sizes_must_be_positive_integers(arg, value):
    with pytest.raises(ModelSpecError, match=f"SVDeepKernelGP {arg}.* must be a positive integer, got {value!r}"):
        _sv(**{arg: value})


@pytest.mark.parametrize("points, message", [
    (torch.rand(0, 2), r"M x 2 \(num_features\) with M >= 1, got \(0, 2\)"),
    ([[0.0, 0.0]], r"M x 2 \(num_features\) with M >= 1, got list"),
    (torch.ones(5, 2, dtype=torch.int64), "dtype torch.int64, expected a floating dtype"),
    (torch.full((5, 2), float("nan")), r"\(shape \(5, 2\)\) hold 10 NaN/inf"),
])
def test_sv_dkl_inducing_points_are_checked(points, message):
    with pytest.raises(ModelSpecError, match=message):
        _sv(inducing_points=points)


@pytest.mark.parametrize("kwargs, message", [
    ({"beta": -1.0}, "beta .* must be a finite number >= 0, got -1.0"),
    ({"beta": float("nan")}, "beta .* must be a finite number >= 0, got nan"),
    ({"name_prefix": 3}, "name_prefix must be a non-empty string, got 3"),
])
def test_sv_dkl_options_are_checked(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        _sv(**kwargs)


def test_sv_dkl_inputs_of_another_dtype_or_device():
    sv = _sv()
    with pytest.raises(DataError, match="x has dtype torch.float64, the model computes in torch.float32"):
        sv.predict(torch.rand(3, 2, dtype=torch.float64))
    with pytest.raises(DeviceError, match="x is on meta, the model on cpu"):
        sv.predict(torch.empty(3, 2, device=ELSEWHERE))


@pytest.mark.parametrize("y_shape", [(5,), (20, 1)])
def test_sv_dkl_targets_must_match_the_inputs(y_shape):
    x = torch.rand(20, 2)
    objective = _sv().objective(num_particles=2)
    with pytest.raises(DataError, match=rf"y has shape \({y_shape[0]},{' 1' if len(y_shape) == 2 else ''}\), "
                                        r"expected \(20,\)"):
        objective.loss("elbo", (x, torch.zeros(y_shape)))


@pytest.mark.parametrize("num_particles", [0, 2.5, True])
def test_sv_dkl_num_particles_must_be_a_positive_integer(num_particles):
    with pytest.raises(ConfigError, match="num_particles must be"):
        _sv().objective(num_particles=num_particles)


# ------------------------------------------------------------------------ GP-LSTM

@pytest.mark.parametrize("arg, value", [("hidden_size", 0), ("hidden_size", 2.5), ("hidden_size", True),
                                        ("num_features", 0), ("num_layers", 0), ("num_layers", 2.0)])
def test_gp_lstm_sizes_must_be_positive_integers(arg, value):
    with pytest.raises(ModelSpecError, match=f"LSTMFeatures {arg} must be a positive integer, got {value!r}"):
        GPLSTM(*_windows(), **{arg: value})


def test_gp_lstm_windows_must_be_floating_with_values():
    x, y = _windows()
    with pytest.raises(DataError, match="GPLSTM train_x has dtype torch.int64, expected floating windows"):
        GPLSTM(x.long(), y)
    with pytest.raises(DataError, match=r"GPLSTM train_x has shape \(30, 6, 0\), expected windows .* D >= 1"):
        GPLSTM(x[:, :, :0], y)
    with pytest.raises(DataError, match="LSTM windows have dtype torch.float64, the network computes in torch.float32"):
        LSTMFeatures(1)(x.double())


@pytest.fixture(scope="module")
def gp_lstm():
    torch.manual_seed(0)
    return GPLSTM(*_windows(), hidden_size=4)


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 2.5}, "steps must be a non-negative integer, got 2.5"),
    ({"steps": True}, "steps must be a non-negative integer, got True"),
    ({"num_samples": 0}, "num_samples must be at least 2, got 0: the interval of zero paths"),
    ({"num_samples": 2.5}, "num_samples must be a non-negative integer, got 2.5"),
    ({"level": 1.5}, r"level must lie in \(0, 1\), got 1.5"),
    ({"level": 0}, r"level must lie in \(0, 1\), got 0"),
])
def test_forecast_options_are_checked(gp_lstm, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        gp_lstm.forecast(torch.rand(6), **{"steps": 3, "num_samples": 10, **kwargs})


def test_forecast_context_is_checked_and_zero_steps_give_empty_paths(gp_lstm):
    with pytest.raises(DataError, match=r"forecast context must be a tensor of shape \(6,\), got list"):
        gp_lstm.forecast([0.1] * 6, 3)
    with pytest.raises(DataError, match="forecast context has dtype torch.float64, expected torch.float32"):
        gp_lstm.forecast(torch.rand(6, dtype=torch.float64), 3)
    with pytest.raises(DeviceError, match="forecast context is on meta, the model on cpu"):
        gp_lstm.forecast(torch.empty(6, device=ELSEWHERE), 3)
    out = gp_lstm.forecast(torch.rand(6), 0, num_samples=7)
    assert out.mean.shape == out.lower.shape == out.upper.shape == (0,)
    assert out.samples.shape == (7, 0)


def test_semi_stochastic_batches_are_checked(gp_lstm):
    objective = SemiStochasticObjective(gp_lstm)
    x, y, _ = objective.dataset()
    with pytest.raises(DataError, match=r"batches are \(x, y, index\) from objective.dataset\(\), got a tuple of 2"):
        objective.loss("network", (x, y))
    with pytest.raises(DataError, match=r"batch index has shape \(2,\) and dtype torch.float32, expected integer"):
        objective.loss("network", (x[:2], y[:2], torch.tensor([0.0, 1.0])))


@pytest.mark.parametrize("lr", [-1.0, 0.0, float("inf"), "0.01"])
def test_recipes_check_the_learning_rate(lr):
    with pytest.raises(ConfigError, match=f"lr must be a finite number > 0, got {lr!r}"):
        train_deep_kernel(*_toy(40), lr=lr, max_steps=2)
    with pytest.raises(ConfigError, match=f"lr must be a finite number > 0, got {lr!r}"):
        train_gp_lstm(*_windows(), lr=lr, max_steps=2)


# --------------------------------------------------------------------- validation

def test_split_tail_names_bad_arguments():
    x, y = _toy()
    with pytest.raises(DataError, match=r"x is a list of length 20, not a torch\.Tensor: pass torch\.tensor\(x\)"):
        split_tail(x.tolist(), y)
    with pytest.raises(DataError, match=r"y has shape \(\), expected a tensor"):
        split_tail(x, y[0])
    with pytest.raises(ConfigError, match="validation fraction must lie in"):
        split_tail(x, y, "0.2")


@pytest.mark.parametrize("mean, sd, y, message", [
    (torch.zeros(0), torch.zeros(0), torch.zeros(0), r"no points \(shape \(0,\)\)"),
    (torch.zeros(3), torch.full((3,), float("nan")), torch.zeros(3), r"sd \(shape \(3,\)\) holds 3 NaN/inf"),
    (torch.zeros(3), torch.ones(3), torch.tensor([0.0, float("nan"), 0.0]), r"y \(shape \(3,\)\) holds 1 NaN/inf"),
    (torch.zeros(3), -torch.ones(3), torch.zeros(3), "sd .* holds 3 negative value"),
    ([0.0], [1.0], [0.0], "mean must be a tensor, got list"),
])
def test_calibration_refuses_data_it_cannot_score(mean, sd, y, message):
    with pytest.raises(DataError, match=message):
        calibration(mean, sd, y)


def test_calibration_levels_are_checked():
    args = torch.zeros(3), torch.ones(3), torch.zeros(3)
    with pytest.raises(ConfigError, match="levels must be a sequence"):
        calibration(*args, levels=0.5)
    with pytest.raises(ConfigError, match="give 'coverage_95' twice"):
        calibration(*args, levels=(0.95, 0.951))


def _objective():
    x, y = _toy(30)
    return ExactMLLObjective(DeepKernelGP(x, y)), (x, y)


@pytest.mark.parametrize("x_val, y_val, message", [
    (torch.rand(10, 2), torch.rand(9), r"validation y has shape \(9,\), expected \(10,\)"),
    (torch.rand(10, 3), torch.rand(10), r"validation x has shape \(10, 3\), expected \(N, 2\)"),
    (torch.rand(0, 2), torch.rand(0), r"validation x has shape \(0, 2\): no examples"),
    (torch.rand(10, 2), torch.full((10,), float("nan")), r"validation y \(shape \(10,\)\) holds 10 NaN/inf"),
    (torch.rand(10, 2, dtype=torch.float64), torch.rand(10), "validation x has dtype torch.float64"),
])
def test_fit_validated_checks_the_validation_data_before_training(x_val, y_val, message):
    objective, data = _objective()
    before = {k: v.clone() for k, v in objective.module.state_dict().items()}
    with pytest.raises(DataError, match=message):
        fit_validated(objective, data, x_val, y_val, max_steps=2, eval_every=1, batch_size=30)
    after = objective.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no step ran


def test_fit_validated_checks_refit_and_max_steps_before_training():
    objective, (x, y) = _objective()
    x_val, y_val = torch.rand(10, 2), torch.rand(10)
    with pytest.raises(DataError, match=r"refit y has shape \(5,\), expected \(40,\)"):
        fit_validated(objective, (x, y), x_val, y_val, max_steps=2, batch_size=30,
                      refit=(torch.cat([x, x_val]), y[:5]))
    with pytest.raises(ConfigError, match=r"refit must be a pair \(x, y\), got a Tensor"):
        fit_validated(objective, (x, y), x_val, y_val, max_steps=2, batch_size=30, refit=x)
    with pytest.raises(ConfigError, match="max_steps must be a positive integer, got True"):
        fit_validated(objective, (x, y), x_val, y_val, max_steps=True, batch_size=30)


# ------------------------------------------------------------------ ArcCosineKernel

@pytest.mark.parametrize("kwargs, message", [
    ({"num_layers": True}, "num_layers must be an integer >= 0, got True"),
    ({"weight_variance": float("inf")}, "positive and finite, got weight_variance=inf"),
    ({"weight_variance": "1"}, "positive and finite, got weight_variance='1'"),
    ({"bias_variance": True}, "positive and finite, got .*bias_variance=True"),
])
def test_arc_cosine_configuration_is_checked(kwargs, message):
    with pytest.raises(ModelSpecError, match=message):
        ArcCosineKernel(**kwargs)


@pytest.mark.parametrize("name, value", [("weight_variance", -1.0), ("bias_variance", 0.0)])
def test_arc_cosine_variance_setters_refuse_non_positive_values(name, value):
    k = ArcCosineKernel()
    with pytest.raises(ModelSpecError, match=f"ArcCosineKernel {name} must be positive and finite, got {value}"):
        setattr(k, name, value)
    with pytest.raises(ModelSpecError, match=f"ArcCosineKernel {name} must be positive and finite"):
        k.initialize(**{name: value})
    assert torch.isfinite(getattr(k, name)).all()


def test_arc_cosine_inputs_without_features_are_refused():
    with pytest.raises(DataError, match=r"inputs of shape \(3, 0\) have no features"):
        ArcCosineKernel()(torch.rand(3, 0)).to_dense()
    assert ArcCosineKernel()(torch.rand(0, 2)).to_dense().shape == (0, 0)


def test_gpytorch_modules_are_accepted():
    """The checks let GPyTorch's own components through (a regression guard for the type checks)."""
    x, y = _toy()
    model = DeepKernelGP(x, y, kernel=gpytorch.kernels.ScaleKernel(ArcCosineKernel(1)),
                         mean=gpytorch.means.ZeroMean(), likelihood=gpytorch.likelihoods.GaussianLikelihood())
    assert model.predict(x[:3]).mean.shape == (3,)



@pytest.mark.parametrize("model_dtype, y_dtype", [(torch.float32, torch.float64), (torch.float64, torch.float32),
                                                  (torch.float32, torch.float16)])
def test_sv_dkl_targets_of_another_floating_dtype_are_refused(model_dtype, y_dtype):
    """They were taken silently (the bound computed in the promoted dtype); DeepKernelGP refuses them too."""
    x = torch.rand(20, 2, dtype=model_dtype)
    sv = _sv().to(model_dtype)
    with pytest.raises(DataError, match=f"y has dtype {y_dtype}, the model computes in {model_dtype}; convert y"):
        sv.objective(num_particles=2).loss("elbo", (x, torch.zeros(20, dtype=y_dtype)))
    sv.objective(num_particles=2).loss("elbo", (x, torch.zeros(20, dtype=model_dtype)))  # its own dtype is fine


# ------------------------------------------------------------------ 16-bit training data
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gps_refuse_16_bit_training_data_and_point_at_fit_precision(dtype):
    """A GPLSTM or DeepKernelGP built from 16-bit data put its GP in 16 bits; predict, forecast and the marginal
    likelihood then raised torch's raw ``NotImplementedError: "cholesky_cpu" not implemented for 'Half'``."""
    x, y = _windows()
    message = rf"train_x has dtype {dtype}: the GP would compute in it.*precision=\"bf16\""
    with pytest.raises(DataError, match=message):
        GPLSTM(x.to(dtype), y.to(dtype), hidden_size=3)
    x, y = _toy()
    with pytest.raises(DataError, match=message):
        DeepKernelGP(x.to(dtype), y.to(dtype))


def test_dkgp_refuses_an_extractor_with_16_bit_features():
    """Integer inputs through a 16-bit embedding: the features, not the data, are 16-bit (a ModelSpecError)."""
    codes = torch.arange(10) % 4
    embedding = torch.nn.Embedding(4, 2).to(torch.bfloat16)
    with pytest.raises(ModelSpecError, match="the feature extractor's output has dtype torch.bfloat16"):
        DeepKernelGP(codes[:, None], torch.rand(10), torch.nn.Sequential(embedding, torch.nn.Flatten()))
