"""An objective's written-out gradients taken by fit instead of autograd's (hybridpgm/train/written_gradients.py):
the same parameters as autograd's, a mismatch named, a loss overridden below them back-propagated, no class kept
alive by the per-class check."""

import functools

import pytest
import torch

from hybridpgm import fit
from tests.train.helpers import LinearRegression, regression_data

SGD = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_fit_takes_written_out_gradients_and_lands_where_autograd_does(monkeypatch, accumulate):
    """An RBM trained by CD-1 through ``fit``: by default on the gradients the RBM writes out
    (``loss_and_gradients``); with a hook on a parameter, on autograd's, the hook firing.  Same seed,
    same draws, the same parameters after the epoch."""
    from hybridpgm.energy import RBM
    from hybridpgm.infer import ContrastiveDivergence

    written = []
    original = RBM.contrastive_gap_and_gradients
    monkeypatch.setattr(RBM, "contrastive_gap_and_gradients",
                        lambda self, *a, **k: written.append(1) or original(self, *a, **k))
    data = torch.bernoulli(torch.full((48, 7), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(0))

    def train(hook):
        torch.manual_seed(0)
        rbm = RBM(7, 5, init_scale=0.3).double()
        fired = []
        if hook:
            rbm.weight.register_hook(lambda g: fired.append(1))
        written.clear()
        fit(ContrastiveDivergence(rbm, 1), data, epochs=2, batch_size=12, accumulate=accumulate, optim=SGD,
            progress=False, seed=0)
        return rbm, len(written), len(fired)

    direct, direct_calls, _ = train(hook=False)
    hooked, hooked_calls, fired = train(hook=True)
    assert direct_calls == 8 * accumulate and hooked_calls == 0 and fired == 8 * accumulate
    for a, b in zip(direct.parameters(), hooked.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert not torch.equal(direct.weight, RBM(7, 5).double().weight)


class WrittenOutRegression(LinearRegression):
    """Least squares with its gradients written out; ``spoil`` breaks them on purpose."""

    def __init__(self, spoil=None):
        super().__init__()
        self.spoil = spoil

    def loss_and_gradients(self, player, batch):
        x, y = batch
        weight, bias = self.module.weight, self.module.bias
        with torch.no_grad():
            r = 2 * (x @ weight.T + bias - y) / y.numel()
            grads = {weight: r.T @ x, bias: r.sum(0)}
            loss = (r ** 2).sum() * y.numel() / 4
        if self.spoil == "shape":
            grads[bias] = grads[bias].expand(2).clone()
        elif self.spoil == "dtype":
            grads[weight] = grads[weight].double()
        elif self.spoil == "outsider":
            grads[torch.nn.Parameter(torch.zeros(1))] = torch.zeros(1)
        return loss, grads


def test_written_out_least_squares_trains_as_autograd_does():
    x, y = regression_data()
    direct, autograd = WrittenOutRegression(), LinearRegression()
    for objective in (direct, autograd):
        fit(objective, (x, y), epochs=3, batch_size=16, accumulate=2, optim=SGD, progress=False, seed=0)
    for a, b in zip(direct.module.parameters(), autograd.module.parameters()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("spoil,message", [("shape", r"shape \(2,\).*for parameter 'bias' of shape \(1,\)"),
                                           ("dtype", "torch.float64 on cpu for parameter 'weight' of shape"),
                                           ("outsider", "1 parameter\\(s\\) outside player 'fit'")])
def test_written_out_gradients_that_do_not_fit_the_player_are_an_error(spoil, message):
    from hybridpgm.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        fit(WrittenOutRegression(spoil), regression_data(), epochs=1, batch_size=16, optim=SGD, progress=False)


def test_a_loss_overridden_below_the_written_out_gradients_goes_through_autograd():
    """A subclass that adds a penalty to ``loss`` only: its gradients are not the written-out ones, so
    ``fit`` must back-propagate its ``loss`` (the penalty shrinks the weights far below those of plain
    CD from the same start); an instance attribute ``loss`` likewise."""
    from hybridpgm.energy import RBM
    from hybridpgm.infer import ContrastiveDivergence
    from hybridpgm.train.player_step import _writes_its_loss_gradients

    class Penalised(ContrastiveDivergence):
        def loss(self, player, batch):
            return super().loss(player, batch) + (self.model.weight ** 2).sum()  # W shrinks by 0.8 a step

    class Declared(Penalised):  # a subclass that says its loss_and_gradients goes with the loss it inherits
        loss_and_gradients = ContrastiveDivergence.loss_and_gradients

    data = torch.bernoulli(torch.full((20, 6), 0.5), generator=torch.Generator().manual_seed(0))
    norms = {}
    for make in (Penalised, ContrastiveDivergence):
        torch.manual_seed(0)
        rbm = RBM(6, 4, init_scale=0.5)
        fit(make(rbm, 1), data, epochs=2, batch_size=10, optim=functools.partial(torch.optim.SGD, lr=0.1),
            progress=False, seed=0)
        norms[make] = rbm.weight.detach().abs().sum()
    assert norms[Penalised] < 0.6 * norms[ContrastiveDivergence]  # 0.8 ** 4 = 0.41 of the start
    assert not _writes_its_loss_gradients(Penalised(rbm, 1))
    assert _writes_its_loss_gradients(ContrastiveDivergence(rbm, 1)) and _writes_its_loss_gradients(Declared(rbm, 1))
    plain = ContrastiveDivergence(rbm, 1)
    plain.loss = lambda player, batch: ContrastiveDivergence.loss(plain, player, batch)
    assert not _writes_its_loss_gradients(plain)


def test_fit_keeps_no_objective_class_alive():
    """Before, ``functools.lru_cache(maxsize=None)`` on the per-class check of written-out gradients kept every
    objective class ``fit`` had seen (and its closure and globals) for the life of the process: a notebook cell
    that defines and fits an objective, re-run, kept one class per run."""
    import gc
    import weakref

    from hybridpgm.train.player_step import _writes_its_loss_gradients

    refs = []
    for _ in range(3):  # the cell, re-run
        class CellObjective(LinearRegression):
            pass

        objective = CellObjective()
        fit(objective, regression_data(), epochs=1, batch_size=16, progress=False, seed=0)
        assert not _writes_its_loss_gradients(objective)  # the cached answer is the right one
        refs.append(weakref.ref(CellObjective))
        del CellObjective, objective
    gc.collect()
    assert [ref() for ref in refs] == [None, None, None]
