"""DeepKernelGP (hybridpgm/gp/deep_kernel.py) against GPyTorch's exact GP and the closed-form posterior, its
construction (inputs, dtypes, devices, the extractor's state left alone) and KISS-GP against the exact kernel."""

import copy

import gpytorch
import pytest
import torch

import hybridpgm
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.gp import DeepKernelGP
from hybridpgm.nn import mlp
from tests.gp.deep_kernel_helpers import DEEP_KERNEL_WARNINGS, PlainExactGP, _toy

pytestmark = pytest.mark.filterwarnings(*DEEP_KERNEL_WARNINGS)


@pytest.mark.parametrize("kernel", ["rbf", "matern", "arc_cosine"])
def test_identity_features_reproduce_gpytorch_exact_gp(kernel):
    x, y = _toy()
    base = {"rbf": lambda: gpytorch.kernels.RBFKernel(ard_num_dims=2),
            "matern": lambda: gpytorch.kernels.MaternKernel(nu=1.5),
            "arc_cosine": lambda: hybridpgm.gp.ArcCosineKernel(2)}[kernel]()
    k = gpytorch.kernels.ScaleKernel(base)
    model = DeepKernelGP(x, y, kernel=copy.deepcopy(k)).double()
    # move the hyperparameters away from their defaults, then copy them to the reference
    for p in model.gp.parameters():
        p.data.add_(0.3)
    ref = PlainExactGP(x, y, gpytorch.likelihoods.GaussianLikelihood(), copy.deepcopy(k)).double()
    ref.load_state_dict(model.gp.state_dict())
    x_test = torch.linspace(-1.5, 1.5, 17, dtype=torch.float64)[:, None].expand(17, 2) * torch.tensor([1.0, -0.5])
    ref.eval()
    with torch.no_grad(), gpytorch.settings.fast_computations(False, False, False):
        expected = ref.likelihood(ref(x_test))
        got = model.predict(x_test)
        ref.train()
        expected_mll = gpytorch.mlls.ExactMarginalLogLikelihood(ref.likelihood, ref)(ref(x), y)
        got_mll = model.marginal_log_likelihood()
    torch.testing.assert_close(got.mean, expected.mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got.variance, expected.variance, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_mll, expected_mll, rtol=1e-10, atol=1e-10)


def test_prediction_matches_closed_form_posterior():
    x, y = _toy(n=25)
    model = DeepKernelGP(x, y).double()
    x_test = torch.rand(7, 2, dtype=torch.float64)
    with torch.no_grad():
        k = model.gp.covar_module
        noise = model.likelihood.noise
        c = model.gp.mean_module.constant
        kxx = k(x).to_dense() + noise * torch.eye(25, dtype=torch.float64)
        ksx = k(x_test, x).to_dense()
        mean = c + ksx @ torch.linalg.solve(kxx, y - c)
        var = k(x_test, diag=True) - (ksx * torch.linalg.solve(kxx, ksx.T).T).sum(-1) + noise
    pred = model.predict(x_test)
    torch.testing.assert_close(pred.mean, mean, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(pred.variance, var, rtol=1e-8, atol=1e-8)
    lower, upper = pred.interval(0.95)
    torch.testing.assert_close((upper - lower) / 2, 1.959963984540054 * var.sqrt(), rtol=1e-6, atol=1e-8)


def test_kiss_gp_approximates_the_exact_kernel():
    x, y = _toy(n=300, d=1)
    exact = DeepKernelGP(x, y).double()
    kiss = DeepKernelGP(x, y, grid_size=200, grid_bounds=(-1.0, 1.0)).double()
    # same hyperparameters: the grid model sees the inputs scaled affinely
    # into 0.95 * [-1, 1] (ScaleToBounds over the training features)
    factor = 1.9 / float(x.max() - x.min())
    exact.gp.covar_module.base_kernel.lengthscale = 0.3
    kiss.gp.covar_module.base_kernel.base_kernel.lengthscale = 0.3 * factor
    x_test = torch.linspace(-0.9, 0.9, 31, dtype=torch.float64)[:, None]
    a, b = exact.predict(x_test), kiss.predict(x_test)
    assert (a.mean - b.mean).abs().max() < 0.02
    assert (a.stddev - b.stddev).abs().max() < 0.02


def test_bad_input_raises_named_errors():
    x, y = _toy()
    bad_y = y.clone()
    bad_y[3] = float("nan")
    with pytest.raises(DataError, match="train_y.*NaN"):
        DeepKernelGP(x, bad_y)
    with pytest.raises(DataError, match=r"expected \(40,\)"):
        DeepKernelGP(x, y[:-1])
    model = DeepKernelGP(x, y).double()
    with pytest.raises(DataError, match=r"expected \(N, 2\)"):
        model.predict(torch.zeros(3, 5, dtype=torch.float64))
    with pytest.raises(DataError, match="feature extractor cannot take"):
        DeepKernelGP(x, y, torch.nn.Linear(5, 2).double())
    with pytest.raises(ModelSpecError, match="grid"):
        DeepKernelGP(x, y, mlp([2, 8]).double(), grid_size=100)


def test_inputs_must_have_an_example_dimension():
    with pytest.raises(DataError, match="at least two dimensions"):
        DeepKernelGP(torch.zeros(3), torch.zeros(3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="builds models on CUDA")
@pytest.mark.parametrize("grid_size", [None, 16])
def test_a_model_built_from_cuda_tensors_is_on_cuda(grid_size):
    """Found in a CUDA audit: the default kernel, mean and likelihood were built on the CPU beside CUDA training
    data, so predicting before a fit (which moves the whole model) mixed devices."""
    x, y = _toy(n=30, d=2, dtype=torch.float32)
    torch.manual_seed(0)
    net = mlp([2, 8, 1])
    on_cpu = DeepKernelGP(x, y, copy.deepcopy(net), grid_size=grid_size)
    model = DeepKernelGP(x.cuda(), y.cuda(), net.cuda(), grid_size=grid_size)
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    assert {b.device.type for b in model.buffers()} == {"cuda"}
    got, expected = model.predict(x[:5].cuda()), on_cpu.predict(x[:5])
    assert got.mean.device.type == "cuda" and torch.allclose(got.mean.cpu(), expected.mean, atol=1e-4)


@pytest.mark.parametrize("grid_size", [None, 16])
def test_float64_features_give_float64_hyperparameters(grid_size):
    """Before, the default kernel, mean and likelihood stayed float32 under float64 data: a lengthscale set
    to 0.7 was stored as 0.699999988 and predictions moved by about 1e-8."""
    torch.manual_seed(0)
    x = torch.rand(20, 2, dtype=torch.float64)
    model = DeepKernelGP(x, torch.sin(x[:, 0]), grid_size=grid_size)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert model.predict(x[:3]).mean.dtype == torch.float64


def test_building_a_dkl_leaves_batch_norm_statistics_modes_and_the_global_rng_alone():
    """Building ran the extractor on train_x[:2] in training mode: batch-norm running statistics moved and dropout
    drew from the global RNG."""
    torch.manual_seed(0)
    x, y = torch.randn(20, 3) * 5 + 10, torch.randn(20)
    for grid_size in (None, 16):
        net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.Dropout(0.5),
                                  torch.nn.Linear(8, 1))
        buffers = {k: v.clone() for k, v in net.state_dict().items()}
        torch.manual_seed(123)
        rng = torch.get_rng_state()
        DeepKernelGP(x, y, net, grid_size=grid_size)
        assert torch.equal(torch.get_rng_state(), rng)
        assert all(torch.equal(net.state_dict()[k], v) for k, v in buffers.items())
        assert all(m.training for m in net.modules())  # the extractor's modes as they were


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_inputs_without_an_extractor_are_a_named_data_error(dtype):
    """Was a raw TypeError from the GP's .to(dtype=int64)."""
    x, y = torch.randint(0, 2, (10, 2)).to(dtype), torch.randn(10)
    with pytest.raises(DataError, match=rf"train_x has dtype {dtype}.*feature extractor.*nn.Embedding.*\.float\(\)"):
        DeepKernelGP(x, y)

    class Embed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.e = torch.nn.Embedding(2, 2)

        def forward(self, x):
            return self.e(x.long()).sum(1)

    model = DeepKernelGP(x, y, Embed())  # an extractor that takes them
    assert model.predict(x[:2]).mean.shape == (2,)
