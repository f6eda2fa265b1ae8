"""What :meth:`DeepKernelGP.posterior` with gradients leaves on the model: no graph (it lives in the result only)."""
import copy

import gpytorch
import pytest
import torch

from hybridpgm.gp import DeepKernelGP, GPLSTM
from hybridpgm.nn import mlp

# a UserWarning or RuntimeWarning not ignored below fails the test (a later filter wins: the ignores, third-party
# warnings seen in this file, come after the errors)
pytestmark = pytest.mark.filterwarnings(
    "error::UserWarning",
    "error::RuntimeWarning",
    "ignore::linear_operator.utils.warnings.NumericalWarning",  # GPyTorch's numerics: CG not converged, jitter added
    "ignore:Sparse invariant checks are implicitly disabled:UserWarning",  # torch, once per process
    "ignore:TypedStorage is deprecated:UserWarning",  # torch, at linear_operator's sparse matrix
    "ignore:torch.sparse.SparseTensor.indices, values, shape:UserWarning",  # torch, as above
)


def _data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1
    return x, torch.sin(3 * x[:, 0]) + x[:, 1] ** 2 + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)


def _model(grid_size):
    x, y = _data()
    torch.manual_seed(0)
    return DeepKernelGP(x, y, mlp([3, 8, 2], activation="tanh").double(), grid_size=grid_size).eval()


def _graph_kept(model):
    """The tensors or operators with a graph the GP still holds after the call."""
    held = [*model.gp.train_inputs, model.gp.train_targets]
    held += [m._cached_kernel_mat for m in model.gp.modules() if hasattr(m, "_cached_kernel_mat")]
    return [t for t in held if getattr(t, "requires_grad", False)], model.gp.prediction_strategy


@pytest.mark.parametrize("grid_size", [None, 16])
def test_posterior_with_gradients_leaves_no_graph_on_the_model(grid_size):
    """Before, after ``q = model.posterior(x); q.mean.sum().backward(); del q`` the GP kept its training features
    with their graph (``grad_fn=AddmmBackward0``), the prediction strategy and, under KISS-GP, the grid matrix
    (the extractor's activations over all N training examples: about 125 MB at N = 4000 and width 1024) until
    ``condition()``; the documented next call ``model.gp(model.gp_inputs(model.features(x)))`` then raised torch's
    "Trying to backward through the graph a second time"."""
    model = _model(grid_size)
    xt = _data(5, seed=1)[0]
    q = model.posterior(xt)
    q.mean.sum().backward()
    del q
    with_graph, strategy = _graph_kept(model)
    assert with_graph == [] and strategy is None
    model.zero_grad()
    model.gp(model.gp_inputs(model.features(xt))).mean.sum().backward()  # the follow-up conditions anew
    got = [p.grad.clone() for p in model.feature_extractor.parameters()]
    model.zero_grad()
    model.condition()
    model.gp(model.gp_inputs(model.features(xt))).mean.sum().backward()
    for g, want in zip(got, (p.grad for p in model.feature_extractor.parameters())):
        assert torch.equal(g, want)  # as after condition(): the strategy from the detached training features


@pytest.mark.parametrize("grid_size", [None, 16])
def test_posterior_with_gradients_keeps_its_gradients(grid_size):
    """The returned distribution keeps its graph: its mean's and variance's gradients in the extractor's weights and
    the hyperparameters are those of conditioning with gradients by hand, bit for bit."""
    model = _model(grid_size)
    xt = _data(5, seed=1)[0]
    params = [p for p in model.parameters() if p.requires_grad]
    q = model.posterior(xt)
    got = torch.autograd.grad(q.mean.sum() + q.variance.sum(), params, allow_unused=True)
    with gpytorch.settings.detach_test_caches(False):
        model._condition(grad=True)  # what posterior does before returning
        ref = model.gp(model.gp_inputs(model.features(xt)))
    want = torch.autograd.grad(ref.mean.sum() + ref.variance.sum(), params, allow_unused=True)
    assert all(g is not None for g in got)
    for g, w in zip(got, want):
        assert torch.equal(g, w)


def test_gp_lstm_posterior_leaves_no_graph():
    """GP-LSTM inherits the posterior: nothing with a graph stays on it either."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 4, 2, generator=g, dtype=torch.float64)
    y = x.sum((1, 2)) + 0.1 * torch.randn(30, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    model = GPLSTM(x, y, hidden_size=4).double().eval()
    q = model.posterior(x[:3])
    q.mean.sum().backward()
    with_graph, strategy = _graph_kept(model)
    assert with_graph == [] and strategy is None
    model.gp(model.gp_inputs(model.features(x[:3]))).mean.sum().backward()


@pytest.mark.parametrize("grid_size", [None, 16])
def test_a_model_copies_after_posterior_with_gradients(grid_size):
    """Before (8cdffd4), the graph left on the GP made ``copy.deepcopy(model)`` raise torch's "Only Tensors created
    explicitly by the user (graph leaves) support the deepcopy protocol"; the copy predicts as the model does."""
    model = _model(grid_size)
    xt = _data(5, seed=1)[0]
    q = model.posterior(xt)
    q.mean.sum().backward()
    twin = copy.deepcopy(model)
    with torch.no_grad():
        assert torch.equal(twin.posterior(xt).mean, model.posterior(xt).mean)
