"""The KISS-GP grid scaling of an exact :class:`~hybridpgm.gp.DeepKernelGP` trained on mini-batches
(``fit(ExactMLLObjective(model), batch_size < N)``): the range kept for prediction covers every batch, not the last
one (audit EDGE, finding 1: a last batch of one example recorded a sliver of width 2 around its feature, and
prediction clamped every input into it)."""

import functools

import pytest
import torch

import hybridpgm
from hybridpgm.gp import GPLSTM, DeepKernelGP, ExactMLLObjective
from hybridpgm.gp.grid_scaling import ScaleToGrid
from hybridpgm.nn import mlp

# a UserWarning or RuntimeWarning not ignored below fails the test (a later filter wins: the ignores come after)
pytestmark = pytest.mark.filterwarnings(
    "error::UserWarning",
    "error::RuntimeWarning",
    "ignore::linear_operator.utils.warnings.NumericalWarning",  # GPyTorch's numerics: CG not converged, jitter added
    "ignore:Sparse invariant checks are implicitly disabled:UserWarning",  # torch, once per process
    "ignore:The input matches the stored training data:gpytorch.utils.warnings.GPInputWarning",  # predict(train x)
)


def _line(n):
    x = torch.linspace(-3, 3, n, dtype=torch.float64)[:, None]
    return x, torch.sin(2 * x[:, 0])


def _identity_net():
    net = torch.nn.Linear(1, 1).double()
    with torch.no_grad():
        net.weight.fill_(1.0), net.bias.zero_()
    return net


def _untrained(model, x, y, batch_size, shuffle=True):
    """``model`` after one epoch of ``fit`` at learning rate 0: every parameter as built, the scaling as recorded."""
    hybridpgm.fit(ExactMLLObjective(model), (x, y), epochs=1, batch_size=batch_size, shuffle=shuffle, seed=0,
                  progress=False, optim=functools.partial(torch.optim.SGD, lr=0.0))
    return model


@pytest.mark.parametrize("n, batch_size", [(41, 20), (40, 20), (41, 10)])
def test_mini_batches_at_learning_rate_0_predict_as_the_full_batch(n, batch_size):
    """N = 41, batch_size = 20 (batches of 20, 20, 1) recorded the range (-2.8, -0.8) around the last batch's one
    feature: the means differed by 1.15 from the full-batch run's on targets of amplitude 1, with equal parameters;
    N = 40 recorded the last half's range (means 0.18 apart)."""
    x, y = _line(n)
    runs = {}
    for size in (n, batch_size):
        model = DeepKernelGP(x, y, _identity_net(), grid_size=64)
        with torch.no_grad():
            model.gp.covar_module.base_kernel.base_kernel.lengthscale = 0.2
            model.likelihood.noise = 1e-2
        runs[size] = _untrained(model, x, y, size)
    full, mini = runs[n], runs[batch_size]
    assert all(torch.equal(a, b) for a, b in zip(full.parameters(), mini.parameters()))
    for model in (full, mini):
        assert (model.scale_to_bounds.min_val.item(), model.scale_to_bounds.max_val.item()) == (-3.0, 3.0)
    a, b = full.predict(x), mini.predict(x)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.variance, b.variance)


def test_gp_lstm_trained_by_the_exact_objective_on_mini_batches_keeps_the_range_of_every_batch():
    """GPLSTM is a DeepKernelGP: the same mini-batch steps recorded the last batch's range."""
    torch.manual_seed(0)
    windows = torch.randn(21, 4, 1, dtype=torch.float64)
    y = windows[:, -1, 0]
    model = GPLSTM(windows, y, hidden_size=3, num_features=1, grid_size=16)
    with torch.no_grad():
        built = (model.scale_to_bounds.min_val.clone(), model.scale_to_bounds.max_val.clone())
        model.eval()
        h = model.features(windows)
    _untrained(model.train(), windows, y, batch_size=10)  # 10 + 10 + 1
    assert (model.scale_to_bounds.min_val, model.scale_to_bounds.max_val) == built == (h.min(), h.max())


def test_the_kept_range_covers_every_training_batch_as_the_network_moves():
    """With the network training (its features drift), the range kept is at least the union of the ranges of the
    features of every training batch, each as its step saw it (the last batch had one example here: its range
    alone was kept), and the model saved and loaded predicts the same."""
    x, y = _line(41)
    torch.manual_seed(0)
    model = DeepKernelGP(x, y, mlp([1, 8, 1], activation="tanh").double(), grid_size=32)
    seen = []
    model.feature_extractor.register_forward_hook(
        lambda module, args, out: seen.append((out.min().item(), out.max().item())) if module.training else None)
    hybridpgm.fit(ExactMLLObjective(model), (x, y), batch_size=20, epochs=4, progress=False, seed=0,
                  optim=functools.partial(torch.optim.Adam, lr=0.05))
    assert len(seen) == 12  # 3 steps an epoch (20 + 20 + 1), the extractor in train mode only there
    low, high = model.scale_to_bounds.min_val.item(), model.scale_to_bounds.max_val.item()
    assert low <= min(a for a, _ in seen) and high >= max(b for _, b in seen)


def test_a_full_batch_step_records_its_own_range_and_a_mini_batch_step_widens_it():
    """The rule of :meth:`DeepKernelGP.gp_inputs` in train mode: a batch with as many rows as the training data
    records its own range (full-batch training: unchanged, the range may shrink), one with fewer rows the union
    of the recorded range and its own."""
    x, y = _line(9)
    model = DeepKernelGP(x, y, grid_size=16)  # the identity: the features are x
    assert (model.scale_to_bounds.min_val.item(), model.scale_to_bounds.max_val.item()) == (-3.0, 3.0)
    model.marginal_log_likelihood(x[:3] * 2, y[:3])  # features -6 .. -3: widened to (-6, 3)
    assert (model.scale_to_bounds.min_val.item(), model.scale_to_bounds.max_val.item()) == (-6.0, 3.0)
    model.marginal_log_likelihood(x[4:5], y[4:5])  # one example inside the range: kept
    assert (model.scale_to_bounds.min_val.item(), model.scale_to_bounds.max_val.item()) == (-6.0, 3.0)
    model.marginal_log_likelihood(x / 2, y)  # the whole training data's size: its own range
    assert (model.scale_to_bounds.min_val.item(), model.scale_to_bounds.max_val.item()) == (-1.5, 1.5)
    model.eval().marginal_log_likelihood(x[:2] * 9, y[:2])  # eval mode records nothing
    assert (model.scale_to_bounds.min_val.item(), model.scale_to_bounds.max_val.item()) == (-1.5, 1.5)


def test_widen_maps_a_batch_with_the_union_and_keeps_the_saved_state_gpytorchs():
    scale = ScaleToGrid(-1.0, 1.0).double().train()
    first = torch.tensor([[0.2], [0.5]], dtype=torch.float64)
    assert torch.equal(scale(first, widen=False), ScaleToGrid(-1.0, 1.0).double().train()(first))
    batch = torch.tensor([[-1.5], [0.0]], dtype=torch.float64, requires_grad=True)
    out = scale(batch, widen=True)
    assert (scale.min_val.item(), scale.max_val.item()) == (-1.5, 0.5)
    torch.testing.assert_close(out, scale.eval()(batch), rtol=0, atol=0)  # as prediction maps it
    # the batch's minimum sets the range: the gradient flows through it, as through GPyTorch's batch range
    (grad,) = torch.autograd.grad(out[1, 0], batch)
    assert grad[0, 0] != 0
    one = scale.train()(torch.tensor([[0.3]], dtype=torch.float64), widen=True)  # one example: inside, kept
    assert (scale.min_val.item(), scale.max_val.item()) == (-1.5, 0.5) and one.item() == pytest.approx(0.95 * 0.8)
    assert set(scale.state_dict()) == {"min_val", "max_val"}  # no new buffer: old checkpoints load, new ones too


def test_saved_model_after_mini_batch_training_predicts_the_same(tmp_path):
    x, y = _line(21)
    model = _untrained(DeepKernelGP(x, y, _identity_net(), grid_size=16), x, y, batch_size=10)
    loaded = hybridpgm.load(hybridpgm.save(model, tmp_path / "kiss.pt"))
    assert (loaded.scale_to_bounds.min_val, loaded.scale_to_bounds.max_val) == (
        model.scale_to_bounds.min_val, model.scale_to_bounds.max_val)
    assert torch.equal(loaded.predict(x).mean, model.predict(x).mean)
