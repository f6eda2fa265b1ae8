import copy
import functools
import importlib.util
import sys
from pathlib import Path

import gpytorch
import pytest
import torch

import hybridpgm
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.gp import DeepKernelGP, ExactMLLObjective, SVDeepKernelGP
from hybridpgm.nn import mlp

# a UserWarning or RuntimeWarning not ignored below fails the test (a later filter wins: the ignores, third-party
# warnings seen in this file, come after the errors)
pytestmark = pytest.mark.filterwarnings(
    "error::UserWarning",
    "error::RuntimeWarning",
    "ignore::linear_operator.utils.warnings.NumericalWarning",  # GPyTorch's numerics: CG not converged, jitter added
    "ignore:Sparse invariant checks are implicitly disabled:UserWarning",  # torch, once per process
    # torch, at the test's float() of a loss
    "ignore:Converting a tensor with requires_grad=True to a scalar:UserWarning",
    # Pyro, at the test's direct call of a model
    "ignore:trying to observe a value outside of inference:RuntimeWarning",
)


class PlainExactGP(gpytorch.models.ExactGP):
    """GPyTorch's textbook exact GP: the reference."""

    def __init__(self, x, y, likelihood, kernel):
        super().__init__(x, y, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = kernel

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _toy(n=40, d=2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=dtype) * 2 - 1
    y = torch.sin(3 * x[:, 0]) + x[:, -1] ** 2 + 0.1 * torch.randn(n, generator=g, dtype=dtype)
    return x, y


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


@pytest.mark.parametrize("grid_size", [None, 64])
def test_dkl_trains_through_fit_on_the_exact_marginal_likelihood(grid_size):
    torch.manual_seed(0)
    x, y = _toy(n=200, d=3, dtype=torch.float32)
    net = mlp([3, 16, 1 if grid_size else 2], activation="tanh")
    model = DeepKernelGP(x, y, net, grid_size=grid_size)
    before = -model.marginal_log_likelihood().item()
    result = hybridpgm.fit(ExactMLLObjective(model), (x, y), batch_size=200, epochs=40, seed=0, progress=False,
                           optim=functools.partial(torch.optim.Adam, lr=0.05))
    after = -model.marginal_log_likelihood().item()
    assert after < before - 0.3
    assert result.history.loss["mll"][-1] < result.history.loss["mll"][0]
    x_test, y_test = _toy(n=100, d=3, seed=1, dtype=torch.float32)
    pred = model.predict(x_test)
    rmse = (pred.mean - y_test).pow(2).mean().sqrt()
    assert rmse < 0.5 * y_test.std()  # far better than predicting the mean


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


def _svgp_against_exact(n=256, steps=150):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, generator=g) * 2 - 1
    y = torch.sin(4 * x[:, 0]) + 0.1 * torch.randn(n, generator=g)
    exact = DeepKernelGP(x, y)
    exact.gp.covar_module.base_kernel.lengthscale = 0.3
    exact.gp.covar_module.outputscale = 1.0
    exact.likelihood.noise = 0.01
    sv = SVDeepKernelGP(num_features=1, num_data=n, inducing_points=torch.linspace(-1, 1, 30)[:, None],
                        learn_inducing=False)
    sv.covar_module.load_state_dict(exact.gp.covar_module.state_dict())
    sv.mean_module.load_state_dict(exact.gp.mean_module.state_dict())
    sv.likelihood.load_state_dict(exact.likelihood.state_dict())
    for p in [*sv.covar_module.parameters(), *sv.mean_module.parameters(), *sv.likelihood.parameters()]:
        p.requires_grad_(False)  # same hyperparameters: only q(u) is learned
    result = hybridpgm.fit(sv.objective(num_particles=8), (x, y), batch_size=64, epochs=10**6, max_steps=steps,
                           seed=0, progress=False, optim=functools.partial(torch.optim.Adam, lr=0.1))
    return exact, sv, result


def test_sv_dkl_trains_with_minibatches_through_fit_and_matches_exact_gp():
    """Stated tolerance: on [-1, 1] the SVGP predictive mean is within 0.1 of
    the exact GP's (signal amplitude 1) and its predictive standard deviation
    within 0.02 (exact: ~0.1), with 30 inducing points and the same
    hyperparameters, after 150 Adam steps on batches of 64 of 256 points."""
    exact, sv, result = _svgp_against_exact()
    losses = result.history.loss["elbo"]
    assert result.steps == 150 and losses[-1] < losses[0]
    x_test = torch.linspace(-1, 1, 50)[:, None]
    a, b = exact.predict(x_test), sv.predict(x_test)
    assert (a.mean - b.mean).abs().max() < 0.1
    assert (a.stddev - b.stddev).abs().max() < 0.02


def test_sv_dkl_is_a_block_of_a_larger_pyro_program():
    import pyro

    x, y = _toy(n=30, d=2, dtype=torch.float32)
    sv = SVDeepKernelGP(mlp([2, 8, 2]), num_features=2, num_data=30, inducing_points=torch.randn(10, 2))

    def model(x, y):
        shift = pyro.sample("shift", pyro.distributions.Normal(0.0, 1.0))
        return sv.model(x, y - shift)

    def guide(x, y):
        pyro.sample("shift", pyro.distributions.Normal(0.0, 0.1))
        sv.guide(x, y)

    trace = pyro.poutine.trace(pyro.poutine.replay(model, pyro.poutine.trace(guide).get_trace(x, y))).get_trace(x, y)
    assert {"shift", "gp.u", "gp.f", "gp.y"} <= set(trace.nodes)
    loss = pyro.infer.Trace_ELBO().differentiable_loss(model, guide, x, y)
    loss.backward()
    assert all(p.grad is not None for p in sv.feature_extractor.parameters())


def test_sv_dkl_classification_with_grid_strategy():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, 2, generator=g) * 2 - 1
    y = (x[:, 0] * x[:, 1] > 0).float()  # XOR-like labels
    sv = SVDeepKernelGP(mlp([2, 16, 1], activation="tanh"), num_features=1, num_data=300, grid_size=32,
                        likelihood=gpytorch.likelihoods.BernoulliLikelihood())
    hybridpgm.fit(sv.objective(num_particles=1), (x, y), batch_size=100, epochs=10**6, max_steps=80, seed=0,
                  progress=False, optim=functools.partial(torch.optim.Adam, lr=0.03))
    prob = sv.predict(x).mean
    assert ((prob > 0.5).float() == y).float().mean() > 0.85


def test_sv_dkl_bad_configuration_raises():
    with pytest.raises(ModelSpecError, match="inducing_points"):
        SVDeepKernelGP(num_features=2, num_data=10, inducing_points=torch.randn(5, 3))
    with pytest.raises(ModelSpecError, match="num_data"):
        SVDeepKernelGP(num_features=1, num_data=0, inducing_points=torch.randn(5, 1))
    sv = SVDeepKernelGP(num_features=1, num_data=10, inducing_points=torch.randn(5, 1))
    sv.predict(torch.zeros(2, 1))
    with pytest.raises(DataError, match=r"expected \(N, 1\)"):
        sv.predict(torch.zeros(2, 3))


def test_inputs_must_have_an_example_dimension():
    with pytest.raises(DataError, match="at least two dimensions"):
        DeepKernelGP(torch.zeros(3), torch.zeros(3))


def _documented_dkl():
    """The benchmark's reference (``benchmarks/dkl_step.py``: GPyTorch's documented
    KISS-GP deep kernel model), so these tests also prove the benchmark compares
    like with like."""
    path = Path(__file__).resolve().parents[2] / "benchmarks"
    sys.path.insert(0, str(path))
    try:
        spec = importlib.util.spec_from_file_location("dkl_step_reference", path / "dkl_step.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path))
    return module.DocumentedDKL


def _kiss_pair(n=60, grid_size=20):
    """A KISS-GP DeepKernelGP and the plain GPyTorch model with identical weights
    (hyperparameters moved away from their defaults first), float64."""
    x, y = _toy(n=n, d=3)
    torch.manual_seed(0)
    model = DeepKernelGP(x, y, mlp([3, 16, 2], activation="tanh").double(), grid_size=grid_size).double()
    for p in model.gp.parameters():
        p.data.add_(0.3)
    ref = _documented_dkl()(x, y, gpytorch.likelihoods.GaussianLikelihood(), copy.deepcopy(model.feature_extractor),
                            2, grid_size).double()
    ref.mean_module.load_state_dict(model.gp.mean_module.state_dict())
    ref.covar_module.load_state_dict(model.gp.covar_module.state_dict())
    ref.likelihood.load_state_dict(model.likelihood.state_dict())
    return x, y, model, ref


def _loss_and_grads(loss_fn, named_params, seed=None):
    for _, p in named_params:
        p.grad = None
    if seed is not None:
        torch.manual_seed(seed)
    loss = loss_fn()
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in named_params}


def _dkl_losses(x, y, model, ref, seed=None):
    """``((loss, grads) of DeepKernelGP, (loss, grads) of the plain model)``, grads keyed alike."""
    ref_mll = gpytorch.mlls.ExactMarginalLogLikelihood(ref.likelihood, ref)
    ours = [("net." + n, p) for n, p in model.feature_extractor.named_parameters()] + \
        [("gp." + n, p) for n, p in model.gp.named_parameters()]
    theirs = [("net." + n, p) for n, p in ref.feature_extractor.named_parameters()] + \
        [("gp." + n, p) for n, p in ref.named_parameters() if not n.startswith("feature_extractor.")]
    return (_loss_and_grads(lambda: -model.marginal_log_likelihood(), ours, seed),
            _loss_and_grads(lambda: -ref_mll(ref(x), y), theirs, seed))


def _assert_same(got, expected, rtol):
    (loss, grads), (ref_loss, ref_grads) = got, expected
    torch.testing.assert_close(loss, ref_loss, rtol=rtol, atol=rtol)
    assert grads.keys() == ref_grads.keys() and len(grads) == 8  # 2 layers x 2 + mean, noise, scale, lengthscale
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=100 * rtol, atol=rtol, msg=name)


def test_kiss_dkl_loss_and_gradients_equal_gpytorchs_documented_model():
    """At identical weights, DeepKernelGP's training loss (KISS-GP on network
    features) is the marginal likelihood of GPyTorch's DKL example model, with the
    same gradients for the network weights and every hyperparameter: exactly
    (Cholesky, float64), and with GPyTorch's default CG / stochastic
    log-determinant given the same random probe vectors."""
    x, y, model, ref = _kiss_pair()
    model.train(), ref.train()
    with gpytorch.settings.fast_computations(False, False, False):
        _assert_same(*_dkl_losses(x, y, model, ref), rtol=1e-10)
    _assert_same(*_dkl_losses(x, y, model, ref, seed=3), rtol=1e-10)
    # and the two settings agree with each other to the stochastic estimator's accuracy
    with gpytorch.settings.fast_computations(False, False, False):
        exact = -model.marginal_log_likelihood()
    torch.manual_seed(3)
    assert abs(float(-model.marginal_log_likelihood() - exact)) < 0.05 * abs(float(exact))


@pytest.mark.parametrize("features", [1, 2])
def test_state_saved_with_the_former_kiss_kernel_layout_loads(features):
    """The default KISS-GP kernel was ScaleKernel(GridInterpolationKernel(RBF)); a
    state dict of that layout loads (strictly) into today's model, with the
    outputscale converted so that the likelihood is the same."""
    x, y = _toy(n=50, d=2)
    torch.manual_seed(0)
    net = mlp([2, 8, features], activation="tanh").double()
    former = gpytorch.kernels.ScaleKernel(gpytorch.kernels.GridInterpolationKernel(
        gpytorch.kernels.RBFKernel(ard_num_dims=features), grid_size=30, num_dims=features,
        grid_bounds=[(-1.0, 1.0)] * features))
    old = DeepKernelGP(x, y, copy.deepcopy(net), kernel=former, grid_size=30).double()
    old.gp.covar_module.outputscale = 2.5
    old.gp.covar_module.base_kernel.base_kernel.lengthscale = 0.4
    new = DeepKernelGP(x, y, copy.deepcopy(net), grid_size=30).double()
    new.load_state_dict(old.state_dict())  # strict
    assert float(new.gp.covar_module.base_kernel.outputscale) ** features == pytest.approx(2.5)
    with torch.no_grad(), gpytorch.settings.fast_computations(False, False, False):
        torch.testing.assert_close(new.marginal_log_likelihood(), old.marginal_log_likelihood(),
                                   rtol=1e-10, atol=1e-10)
        new.load_state_dict(new.state_dict())  # today's layout is left alone
        torch.testing.assert_close(new.marginal_log_likelihood(), old.marginal_log_likelihood(),
                                   rtol=1e-10, atol=1e-10)


def test_nonfinite_training_batch_raises_a_named_data_error():
    x, y = _toy(n=40, d=2, dtype=torch.float32)
    objective = ExactMLLObjective(DeepKernelGP(x, y, grid_size=16))
    bad = y.clone()
    bad[5] = float("inf")
    with pytest.raises(DataError, match=r"y \(shape \(40,\)\) holds 1 NaN/inf"):
        objective.loss("mll", (x, bad))
    bad_x = x.clone()
    bad_x[2, 1] = float("nan")
    with pytest.raises(DataError, match=r"x \(shape \(40, 2\)\) holds 1 NaN/inf"):
        objective.loss("mll", (bad_x, y))
    with pytest.raises(DataError, match=r"y has shape \(39,\), expected \(40,\)"):
        objective.loss("mll", (x, y[:-1]))


def test_nonfinite_batch_inside_fit_raises_the_data_error_not_gpytorchs():
    """Inside fit's step the data check is deferred; if the bad batch breaks
    GPyTorch before the step's host read, the named DataError still comes first."""
    from hybridpgm.train.deferred_checks import deferring_checks

    x, y = _toy(n=40, d=2, dtype=torch.float32)
    model = DeepKernelGP(x, y, grid_size=16)
    bad_x = x.clone()
    bad_x[:, 0] = float("nan")
    with deferring_checks():
        with pytest.raises(DataError, match=r"x \(shape \(40, 2\)\) holds 40 NaN/inf"):
            model.marginal_log_likelihood(bad_x, y)


class _StudentLike(gpytorch.likelihoods.StudentTLikelihood):
    """A user's subclass of a non-Gaussian likelihood."""


@pytest.mark.parametrize("likelihood", [gpytorch.likelihoods.BernoulliLikelihood,
                                        gpytorch.likelihoods.StudentTLikelihood, _StudentLike])
def test_dkl_refuses_a_non_gaussian_likelihood_naming_it_and_the_variational_model(likelihood):
    x, y = _toy(n=12)
    with pytest.raises(ModelSpecError, match=rf"DeepKernelGP likelihood is a {likelihood.__name__}\b.*"
                                             r"Gaussian.*hybridpgm\.gp\.SVDeepKernelGP"):
        DeepKernelGP(x, (y > 0).to(y.dtype), mlp([2, 4, 2]).double(), likelihood=likelihood())
    assert hybridpgm.gp.SVDeepKernelGP is SVDeepKernelGP  # the class the message points to


class _MyGaussian(gpytorch.likelihoods.GaussianLikelihood):
    """A user's subclass of the Gaussian likelihood."""


@pytest.mark.parametrize("make", [lambda n: _MyGaussian()], ids=["subclass"])
def test_dkl_takes_gaussian_likelihood_subclasses_with_gpytorchs_exact_marginal_likelihood(make):
    x, y = _toy(n=20)
    model = DeepKernelGP(x, y, likelihood=make(20)).double()
    ref = PlainExactGP(x, y, make(20), copy.deepcopy(model.gp.covar_module)).double()
    ref.likelihood.load_state_dict(model.likelihood.state_dict())
    ref.mean_module.load_state_dict(model.gp.mean_module.state_dict())
    ref.train()
    expected = gpytorch.mlls.ExactMarginalLogLikelihood(ref.likelihood, ref)(ref(x), y)
    got = model.marginal_log_likelihood()
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    got.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    with gpytorch.settings.fast_pred_var(False):
        prediction = model.predict(x[:5])
    assert prediction.mean.shape == prediction.variance.shape == (5,)
    assert torch.isfinite(prediction.mean).all() and bool((prediction.variance > 0).all())


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="builds a model on CUDA")
def test_sv_dkl_from_cuda_inducing_points_is_on_cuda():
    """The variational distribution, kernel, mean and likelihood go where the inducing points are."""
    x, _ = _toy(n=30, d=2, dtype=torch.float32)
    torch.manual_seed(0)
    sv = SVDeepKernelGP(mlp([2, 8, 2]).cuda(), num_features=2, num_data=30, inducing_points=torch.randn(10, 2).cuda())
    assert {p.device.type for p in sv.parameters()} == {"cuda"}
    assert sv.predict(x[:4].cuda()).mean.device.type == "cuda"


@pytest.mark.parametrize("grid_size", [None, 16])
def test_float64_features_give_float64_hyperparameters(grid_size):
    """Before, the default kernel, mean and likelihood stayed float32 under float64 data: a lengthscale set
    to 0.7 was stored as 0.699999988 and predictions moved by about 1e-8."""
    torch.manual_seed(0)
    x = torch.rand(20, 2, dtype=torch.float64)
    model = DeepKernelGP(x, torch.sin(x[:, 0]), grid_size=grid_size)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert model.predict(x[:3]).mean.dtype == torch.float64


def test_sv_dkl_from_float64_inducing_points_computes_in_float64():
    """Before, only the inducing points were float64: q(u), the mean, the kernel and the likelihood stayed
    float32, so predict() and the loss failed with a raw dtype error.  The GP parts take the inducing points'
    dtype (as DeepKernelGP's take its features'): the same model as one built in float32 then .double()."""
    torch.manual_seed(0)
    z = torch.randn(6, 2)  # float32 values, so the float64 copy and the float32 build agree exactly
    x, y = _toy(n=12, d=2, dtype=torch.float64)
    sv = SVDeepKernelGP(num_features=2, num_data=12, inducing_points=z.double())
    reference = SVDeepKernelGP(num_features=2, num_data=12, inducing_points=z).double()
    assert {p.dtype for p in sv.parameters()} == {torch.float64}
    assert {b.dtype for b in sv.buffers() if b.is_floating_point()} == {torch.float64}
    torch.manual_seed(1)  # q(u) is initialised (with noise) from the prior at the first call
    got = sv.predict(x)
    torch.manual_seed(1)
    expected = reference.predict(x)
    assert got.mean.dtype == got.variance.dtype == torch.float64
    torch.testing.assert_close(got.mean, expected.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got.variance, expected.variance, rtol=1e-12, atol=1e-12)
    loss = sv.objective(num_particles=2).loss("elbo", (x, y))
    assert loss.dtype == torch.float64 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in sv.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.dtype == torch.float64 and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("grid_size", [None, 8])
def test_sv_dkl_elbo_on_an_empty_batch_raises_a_named_data_error(grid_size):
    """Before, GPyTorch raised a raw IndexError (grid interpolation) or ZeroDivisionError (the likelihood's
    N / B scale); predict() on no examples still gives empty results."""
    sv = SVDeepKernelGP(num_features=2, num_data=8, grid_size=grid_size,
                        inducing_points=None if grid_size else torch.randn(4, 2))
    x, y = torch.zeros(0, 2), torch.zeros(0)
    empty = r"x has shape \(0, 2\): an empty batch"
    with pytest.raises(DataError, match=empty):
        sv.objective(num_particles=2).loss("elbo", (x, y))
    with pytest.raises(DataError, match=empty):
        sv.model(x, y)
    with pytest.raises(DataError, match=empty):
        sv.guide(x, y)
    with pytest.raises(DataError, match=r"x has shape \(0, 3\), expected \(N, 2\)"):  # its shape still checked
        sv.guide(torch.zeros(0, 3), y)
    prediction = sv.predict(x)
    assert prediction.mean.shape == prediction.variance.shape == (0,)
    loss = sv.objective(num_particles=2).loss("elbo", (torch.rand(3, 2), torch.zeros(3)))  # a batch still trains
    assert torch.isfinite(loss)


# ------------------------------------------------------------------ audit 11
@pytest.mark.parametrize("make", [
    lambda n: gpytorch.likelihoods.FixedNoiseGaussianLikelihood(noise=torch.full((n,), 0.05, dtype=torch.float64)),
    lambda n: gpytorch.likelihoods.FixedNoiseGaussianLikelihood(noise=torch.full((n,), 0.05, dtype=torch.float64),
                                                               learn_additional_noise=True),
    lambda n: gpytorch.likelihoods.DirichletClassificationLikelihood(torch.arange(n) % 2, dtype=torch.float64),
], ids=["fixed_noise", "fixed_noise_learned", "dirichlet"])
def test_dkl_refuses_a_likelihood_with_per_example_noise_naming_it(make):
    """GPyTorch added the N training noises to test batches of N points and none otherwise (and none at all after
    set_train_data with another N): such likelihoods are refused, by class name."""
    x, y = _toy(n=20)
    likelihood = make(20)
    with pytest.raises(ModelSpecError, match=rf"DeepKernelGP likelihood is a {type(likelihood).__name__}\b.*"
                                             r"per example.*GaussianLikelihood"):
        DeepKernelGP(x, y, likelihood=likelihood)


def test_posterior_gradients_are_the_closed_form_gradients():
    """The training features were computed without gradients and GPyTorch detached its test caches: the
    gradients of posterior(x).mean in the network weights and the hyperparameters were partial."""
    x, y = _toy(n=12)
    xt = _toy(n=3, seed=1)[0]
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 2).double()
    model = DeepKernelGP(x, y, net)
    with torch.no_grad():
        model.likelihood.noise = 0.05

    def closed_form():
        h, ht = net(x), net(xt)
        ls, scale = model.gp.covar_module.base_kernel.lengthscale, model.gp.covar_module.outputscale
        k = lambda a, b: scale * torch.exp(-0.5 * (((a[:, None] - b[None]) / ls) ** 2).sum(-1))  # noqa: E731
        K = k(h, h) + model.likelihood.noise * torch.eye(12, dtype=torch.float64)
        c = model.gp.mean_module.constant
        mean = c + k(ht, h) @ torch.linalg.solve(K, y - c)
        cov = k(ht, ht) - k(ht, h) @ torch.linalg.solve(K, k(h, ht))
        return mean, cov.diagonal()

    params = [p for p in model.parameters() if p.requires_grad]
    want_mean, want_var = closed_form()
    got = model.posterior(xt)
    for a, b in ((got.mean, want_mean), (got.variance, want_var)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
        grads = torch.autograd.grad(a.sum(), params, allow_unused=True, retain_graph=True)
        refs = torch.autograd.grad(b.sum(), params, allow_unused=True, retain_graph=True)
        for p, g, r in zip(params, grads, refs):
            g = torch.zeros_like(p) if g is None else g
            r = torch.zeros_like(p) if r is None else r
            torch.testing.assert_close(g, r, rtol=1e-7, atol=1e-9)
    with torch.no_grad():  # predict: no graph
        assert not model.posterior(xt).mean.requires_grad


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


def test_mll_and_predict_above_max_cholesky_size_are_fixed_and_leave_the_global_rng_alone():
    """Above max_cholesky_size GPyTorch's CG/Lanczos estimates drew probes from the global RNG: two calls of
    marginal_log_likelihood differed and each moved the caller's stream."""
    import gpytorch

    x, y = _toy(n=60)
    model = DeepKernelGP(x, y)
    torch.manual_seed(5)
    rng = torch.get_rng_state()
    with torch.no_grad(), gpytorch.settings.max_cholesky_size(10):
        a, b = model.marginal_log_likelihood(), model.marginal_log_likelihood()
        with gpytorch.settings.fast_pred_var():
            p, q = model.predict(x[:7]), model.predict(x[:7])
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(a, b) and torch.equal(p.variance, q.variance) and torch.equal(p.mean, q.mean)
    with torch.no_grad(), gpytorch.settings.max_cholesky_size(60):  # the exact value, by Cholesky
        exact = model.marginal_log_likelihood()
    with torch.no_grad():
        K = model.gp.covar_module(x).to_dense() + model.likelihood.noise * torch.eye(60, dtype=x.dtype)
        ref = torch.distributions.MultivariateNormal(model.gp.mean_module(x), K).log_prob(y) / 60
    torch.testing.assert_close(exact, ref + model.marginal_log_likelihood().new_zeros(()), rtol=1e-10, atol=1e-10)


def test_sv_dkl_bernoulli_takes_bool_labels_as_zero_one_and_refuses_integers():
    """Bool labels reached torch's bool subtraction (a raw RuntimeError)."""
    import pyro

    torch.manual_seed(0)
    x = torch.randn(20, 2)
    labels = x[:, 0] > 0
    sv = SVDeepKernelGP(None, num_features=2, num_data=20, inducing_points=torch.randn(5, 2),
                        likelihood=gpytorch.likelihoods.BernoulliLikelihood())
    elbo = pyro.infer.Trace_ELBO(num_particles=1)
    elbo.differentiable_loss(sv.model, sv.guide, x, labels.float())  # the first call registers the parameters
    losses = []
    for y in (labels, labels.float()):
        pyro.set_rng_seed(0)
        losses.append(elbo.differentiable_loss(sv.model, sv.guide, x, y))
    assert torch.equal(losses[0], losses[1])
    with pytest.raises(DataError, match=r"y has dtype torch.int64.*BernoulliLikelihood"):
        sv.model(x, labels.long())
    result = hybridpgm.fit(sv.objective(), (x, labels), batch_size=10, epochs=1, progress=False, seed=0)
    assert result.history.step == [1, 2]


def test_mll_in_train_mode_draws_a_fresh_dropout_mask_from_the_callers_stream():
    """marginal_log_likelihood seeded torch's global generator with 0 around the feature extractor as well as
    GPyTorch's probes: a dropout extractor in train mode had the same mask on every call, whatever the seed."""
    import pyro

    x, y = _toy(n=30, d=4, dtype=torch.float32)
    torch.manual_seed(0)
    masks = []
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    net[1].register_forward_hook(lambda module, inputs, out: masks.append(out == 0))
    model = DeepKernelGP(x, y, net)
    model.train()
    values = []
    for seed in (0, 1, 0):
        pyro.set_rng_seed(seed)
        values.append(model.marginal_log_likelihood().detach())
    assert not torch.equal(masks[-3], masks[-2]) and not torch.equal(values[0], values[1])
    assert torch.equal(masks[-3], masks[-1]) and torch.equal(values[0], values[2])  # the caller's stream decides
    model.eval()  # no dropout: a fixed function of the model and the data, whatever the caller's stream
    pyro.set_rng_seed(0)
    a = model.marginal_log_likelihood()
    pyro.set_rng_seed(1)
    assert torch.equal(a, model.marginal_log_likelihood())


# ------------------------------------------------------------------ mixed precision (fit's precision="bf16")
@pytest.mark.parametrize("grid_size", [None, 64])
def test_dkl_trains_under_fit_bf16_with_the_float32_loss(grid_size):
    """Before, KISS-GP under ``fit(precision="bf16")`` failed in GPyTorch's sparse interpolation with a raw
    ``RuntimeError: Unsupported dtype BFloat16``, and the exact kernel took bfloat16 features.  Now the network
    runs under autocast and the GP in float32: the first loss (same parameters) is within 1e-3 of float32's."""
    torch.manual_seed(0)
    x, y = _toy(n=100, d=3, dtype=torch.float32)
    model = DeepKernelGP(x, y, mlp([3, 16, 1 if grid_size else 2], activation="tanh"), grid_size=grid_size)
    losses = {}
    for precision in (None, "bf16"):
        dkl = copy.deepcopy(model)
        losses[precision] = hybridpgm.fit(ExactMLLObjective(dkl), (x, y), batch_size=100, max_steps=2, seed=0,
                                          precision=precision, progress=False).history.loss["mll"]
        assert all(bool(torch.isfinite(p).all()) for p in dkl.parameters())
    assert len(losses["bf16"]) == 2 and all(map(torch.isfinite, torch.tensor(losses["bf16"])))
    assert abs(losses["bf16"][0] - losses[None][0]) < 1e-3


@pytest.mark.parametrize("grid_size", [None, 16])
def test_the_gp_runs_in_its_own_dtype_under_autocast(grid_size):
    """With the identity extractor the features are float32 under autocast too, so the GP alone decides the
    precision: its marginal likelihood and predictions under bfloat16 autocast are float32's (before, the kernel's
    products ran in bfloat16: the loss on 300 points was 8e-4 off without a grid, 2e-4 off with one)."""
    x, y = _toy(n=300, d=2, dtype=torch.float32)
    model = DeepKernelGP(x, y, grid_size=grid_size)
    objective = ExactMLLObjective(model)
    model.train()
    want = objective.loss("mll", (x, y))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = objective.loss("mll", (x, y))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want)
    x_test, _ = _toy(n=20, d=2, seed=1, dtype=torch.float32)
    want = model.predict(x_test)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = model.predict(x_test)
    assert got.mean.dtype == torch.float32
    torch.testing.assert_close(got.mean, want.mean)
    torch.testing.assert_close(got.variance, want.variance)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_posterior_with_gradients_keeps_no_prediction_strategy_and_its_gradients(mode, monkeypatch):
    """Before, each ``posterior`` call with gradients on left its prediction strategy (and the ``O(n^2)`` factors
    of the training covariance) alive for good: GPyTorch hooks the strategy on its cache's ``grad_fn``, a cycle
    :mod:`gc` cannot collect; 10 calls kept 10 strategies (26 MiB a call at n = 1500).  The model keeps none
    either (in eval mode it kept the last call's, with its graph, until ``condition()``)."""
    import gc

    from gpytorch.models.exact_prediction_strategies import DefaultPredictionStrategy

    from hybridpgm.gp import deep_kernel

    def strategies():
        gc.collect()
        return sum(isinstance(o, DefaultPredictionStrategy) for o in gc.get_objects())

    x, y = _toy(n=30)
    xt = _toy(n=3, seed=1)[0]
    torch.manual_seed(0)
    model = DeepKernelGP(x, y, mlp([2, 8, 2], activation="tanh").double())
    model.train(mode == "train")
    params = [p for p in model.parameters() if p.requires_grad]
    before = strategies()
    for _ in range(10):
        model.posterior(xt)  # the result discarded, nothing back-propagated
    assert strategies() == before and model.gp.prediction_strategy is None

    first = model.posterior(xt)
    model.posterior(xt)  # conditioning again leaves the first distribution's graph intact
    grads = torch.autograd.grad(first.mean.sum() + first.variance.sum(), params, allow_unused=True)
    assert model.training == (mode == "train")
    monkeypatch.setattr(deep_kernel, "release_test_caches", lambda gp: None)  # the caches kept, as before
    kept = model.posterior(xt)
    refs = torch.autograd.grad(kept.mean.sum() + kept.variance.sum(), params, allow_unused=True)
    assert all(g is not None and r is not None for g, r in zip(grads, refs))  # every weight, every hyperparameter
    for g, r in zip(grads, refs):
        assert torch.isfinite(g).all() and torch.equal(g, r)


def test_dkl_refuses_a_multitask_likelihood_as_single_output_not_as_per_example_noise():
    """A ``MultitaskGaussianLikelihood`` was refused as a likelihood "whose noise is per example (noise model
    NoneType)": its noise is per task, and the reason is that DeepKernelGP has one output per example."""
    x, y = _toy(n=20)
    likelihood = gpytorch.likelihoods.MultitaskGaussianLikelihood(num_tasks=2).double()
    with pytest.raises(ModelSpecError, match=r"MultitaskGaussianLikelihood, a likelihood of several outputs.*"
                                             r"single-output") as caught:
        DeepKernelGP(x, y, likelihood=likelihood)
    assert "NoneType" not in str(caught.value) and "noise is per example" not in str(caught.value)
