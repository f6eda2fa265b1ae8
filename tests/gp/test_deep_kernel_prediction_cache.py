"""DeepKernelGP.predict / posterior keep GPyTorch's prediction strategy between calls (hybridpgm.gp.prediction_cache).

Before, every call conditioned the GP anew (``set_train_data`` drops the strategy): the training features, the
training solve and, under ``fast_pred_var``, the LOVE variance cache were recomputed on every call, about 1 s a call
at n = 4000 against 0.01 s with the caches kept (93-127x), which defeated ``fast_pred_var``.  Now the strategy is
kept and used again while nothing it depends on changed, so the answers must be, bit for bit, those of a model
that conditions from scratch (a deep copy, which keeps no strategy), after each kind of change.
"""

from __future__ import annotations

import copy
import pickle

import gpytorch
import pytest
import torch
from gpytorch.models import exact_gp

from hybridpgm.gp import DeepKernelGP, ExactMLLObjective
from hybridpgm.nn import mlp


def _data(n=60, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=torch.float64) * 2 - 1
    y = torch.sin(3 * x[:, 0]) + x[:, -1] ** 2 + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    return x, y


def _model(grid_size, x, y):
    torch.manual_seed(0)
    extractor = torch.nn.Sequential(mlp([3, 16, 2], activation="tanh"), torch.nn.BatchNorm1d(2)).double()
    return DeepKernelGP(x, y, extractor, grid_size=grid_size)


@pytest.fixture
def counts(monkeypatch):
    """How often GPyTorch builds a prediction strategy and the model computes its training features."""
    seen = {"strategies": 0, "features": 0}
    build = exact_gp.prediction_strategy

    def counting_build(*args, **kwargs):
        seen["strategies"] += 1
        return build(*args, **kwargs)

    features = DeepKernelGP.training_features

    def counting_features(self):
        seen["features"] += 1
        return features(self)

    monkeypatch.setattr(exact_gp, "prediction_strategy", counting_build)
    monkeypatch.setattr(DeepKernelGP, "training_features", counting_features)
    return seen


def _fresh(model, x_test):
    """The answer of conditioning from scratch: a deep copy keeps no strategy (and clears GPyTorch's caches)."""
    return copy.deepcopy(model).predict(x_test)


def _same(a, b):
    return torch.equal(a.mean, b.mean) and torch.equal(a.variance, b.variance)


def test_chunks_are_predicted_from_one_conditioning(counts):
    """The training solve runs once for four chunks (it ran once a chunk), and a second pass costs nothing."""
    x, y = _data()
    model = _model(16, x, y)
    x_test = _data(n=40, seed=1)[0]
    with gpytorch.settings.fast_pred_var():
        chunks = [model.predict(c) for c in x_test.split(10)]
        assert counts == {"strategies": 1, "features": 1}
        again = [model.predict(c) for c in x_test.split(10)]
        assert counts == {"strategies": 1, "features": 1}
        whole = _fresh(model, x_test)
    assert all(_same(a, b) for a, b in zip(chunks, again))
    torch.testing.assert_close(torch.cat([c.mean for c in chunks]), whole.mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.cat([c.variance for c in chunks]), whole.variance, rtol=0, atol=1e-12)


@pytest.mark.parametrize("grid_size", [None, 16])
@pytest.mark.parametrize("fast", [False, True])
def test_every_change_is_seen_and_answers_equal_conditioning_from_scratch(grid_size, fast, counts):
    """After each change the next call conditions anew (one more strategy) and answers as a fresh model does;
    between changes it conditions no more.  Each change moves the answers (so a stale strategy would be caught)."""
    x, y = _data()
    model = _model(grid_size, x, y)
    x_test = _data(n=7, seed=1)[0]
    objective = ExactMLLObjective(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    saved = copy.deepcopy(model.state_dict())
    previous = None

    def check(changed: bool):
        nonlocal previous
        before = counts["strategies"]
        with gpytorch.settings.fast_pred_var(fast):
            got, again = model.predict(x_test), model.predict(x_test)
            want = _fresh(model, x_test)
        assert counts["strategies"] - before == (1 if changed else 0) + 1  # + 1: the fresh copy's
        assert _same(got, again) and _same(got, want)
        if changed and previous is not None:
            assert not torch.equal(got.mean, previous.mean)
        previous = got

    check(True)
    y.mul_(2.0)  # in place: the data the model holds
    check(True)
    x[:5].add_(0.25)  # in place through a view
    check(True)
    model.train()
    optimizer.zero_grad()
    objective.loss("mll", (x, y)).backward()
    optimizer.step()  # network weights, hyperparameters, and (train mode) the grid scaling
    check(True)
    model.load_state_dict(saved)
    check(True)
    model.eval()
    with torch.no_grad():  # a hyperparameter written in place in eval mode (a grid kernel caches its matrix)
        rbf = next(m for m in model.gp.covar_module.modules() if isinstance(m, gpytorch.kernels.RBFKernel))
        rbf.raw_lengthscale.add_(0.5)
    check(True)
    model.feature_extractor[1].train()  # a mode: conditioning anew (the answers do not depend on it)
    before = counts["strategies"]
    with gpytorch.settings.fast_pred_var(fast):
        assert _same(model.predict(x_test), previous)
    assert counts["strategies"] == before + 1
    x2, y2 = _data(seed=2)
    model.set_train_data(x2, y2)
    check(True)
    check(False)


def test_settings_are_part_of_the_key(counts):
    """fast_pred_var, skip_posterior_variances, max_cholesky_size (CG and Lanczos, probes from predict's fixed
    generator) each condition anew, and the answers under each equal a fresh model's."""
    x, y = _data(n=80)
    model = _model(16, x, y)
    x_test = _data(n=5, seed=1)[0]
    contexts = [lambda: gpytorch.settings.fast_pred_var(False), gpytorch.settings.fast_pred_var,
                lambda: gpytorch.settings.skip_posterior_variances(True),
                lambda: gpytorch.settings.max_cholesky_size(10)]  # with fast_pred_var: CG and Lanczos
    answers = []
    for i, context in enumerate(contexts):
        before = counts["strategies"]
        with context(), gpytorch.settings.fast_pred_var(i in (1, 3)):
            got, again, want = model.predict(x_test), model.predict(x_test), _fresh(model, x_test)
        assert counts["strategies"] == before + 2  # this setting's strategy and the fresh copy's
        assert _same(got, again) and _same(got, want)
        answers.append(got)
    assert bool((answers[2].variance == model.likelihood.noise.detach()).all())  # the skipped variances
    assert not torch.equal(answers[0].variance, answers[1].variance)


def test_a_call_with_gradients_neither_uses_nor_replaces_the_kept_strategy(counts):
    """posterior with gradients conditions anew with the graph (its gradients are the closed form's, as before);
    the strategy predict kept, built without the graph, serves the next predict."""
    x, y = _data()
    model = _model(None, x, y)
    x_test = _data(n=4, seed=1)[0]
    first = model.predict(x_test)
    dist = model.posterior(x_test)
    assert dist.mean.requires_grad and counts["strategies"] == 2
    grads = torch.autograd.grad(dist.mean.sum(), list(model.feature_extractor.parameters()))
    assert all(bool(g.abs().sum() > 0) for g in grads)
    assert _same(model.predict(x_test), first) and counts["strategies"] == 2
    with torch.no_grad():
        plain = model.posterior(x_test)  # the caller's random streams: a strategy of its own
    assert counts["strategies"] == 3 and not plain.mean.requires_grad
    assert torch.equal(plain.mean, first.mean)  # no probes without fast_pred_var: the same answer


def test_condition_copies_and_moves_drop_the_kept_strategy(counts):
    x, y = _data()
    model = _model(16, x, y)
    x_test = _data(n=4, seed=1)[0]
    first = model.predict(x_test)
    assert model._prediction_cache is not None
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert copied._prediction_cache is None and _same(copied.predict(x_test), first)
    model.condition()  # the way to make the next call condition anew after a change the key cannot see
    assert model._prediction_cache is None
    model.predict(x_test)
    model.float()
    assert model._prediction_cache is None
    got = model.predict(x_test.float())
    assert got.mean.dtype == torch.float32
    torch.testing.assert_close(got.mean, first.mean.float())
    model.train()
    assert model._prediction_cache is None


@pytest.mark.parametrize("grid_size", [None, 16])
def test_writes_that_move_no_version_counter_are_seen(grid_size):
    """GPyTorch's setters (``likelihood.noise = ...``, ``kernel.lengthscale = ...``, ``initialize``) write through
    ``param.data.copy_``, which moves no version counter: the first key (versions only) kept the old strategy, the
    mean off by up to 1.8 against conditioning anew (review B).  The key compares the values too."""
    x, y = _data()
    model = _model(grid_size, x, y)
    x_test = _data(7, seed=1)[0]
    rbf = next(k for k in model.gp.covar_module.modules() if isinstance(k, gpytorch.kernels.RBFKernel))
    changes = [lambda: setattr(model.gp.likelihood, "noise", 0.5), lambda: setattr(rbf, "lengthscale", 0.3),
               lambda: model.gp.mean_module.initialize(constant=1.5),
               lambda: next(model.feature_extractor.parameters()).data.mul_(1.1)]
    for change in changes:
        before = model.predict(x_test)
        change()
        after, fresh = model.predict(x_test), _fresh(model, x_test)
        assert _same(after, fresh) and not _same(after, before)


def test_buffers_holding_nan_or_of_another_layout_are_compared(counts):
    """A NaN equals NaN in the key, and a sparse buffer (which torch.equal does not take) is compared too: the
    second call reuses the strategy, and an edit of either buffer is seen (review C: the sparse one raised
    NotImplementedError on the second call)."""
    x, y = _data()

    class WithBuffers(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp([3, 16, 2], activation="tanh").double()
            self.register_buffer("nan", torch.tensor([float("nan"), 1.0]))
            self.register_buffer("adjacency", torch.eye(3).to_sparse())

        def forward(self, z):
            return self.net(z) + self.nan[1] * torch.sparse.mm(self.adjacency, torch.ones(3, 1)).sum() * 0

    torch.manual_seed(0)
    model = DeepKernelGP(x, y, WithBuffers())
    x_test = _data(7, seed=1)[0]
    first = model.predict(x_test)
    assert _same(model.predict(x_test), first) and counts["strategies"] == 1
    model.feature_extractor.nan.data[1] = 2.0
    model.predict(x_test)
    assert counts["strategies"] == 2
