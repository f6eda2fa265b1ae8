"""hybridpgm/train/player_step.py's clear_optimizer_gradients: fit's step clears the gradients without torch's
zero_grad overhead where that is torch's own, and calls an optimizer's own zero_grad, and torch's under a profiler;
the parameters are bitwise those of zero_grad."""

import functools

import torch

import hybridpgm
import hybridpgm.train.player_step as player_step
from hybridpgm.energy import RBM
from hybridpgm.infer import ContrastiveDivergence


def _fit(optim=functools.partial(torch.optim.SGD, lr=0.05), steps=4):
    torch.manual_seed(0)
    rbm = RBM(6, 3)
    x = torch.bernoulli(torch.full((40, 6), 0.4), generator=torch.Generator().manual_seed(0))
    hybridpgm.fit(ContrastiveDivergence(rbm), x, max_steps=steps, batch_size=10, device="cpu", seed=0,
                  progress=False, optim=optim)
    return rbm


def _ranges(monkeypatch):
    names = []
    original = torch.autograd.profiler.record_function.__init__

    def recording(self, name, *args, **kwargs):
        names.append(name)
        original(self, name, *args, **kwargs)

    monkeypatch.setattr(torch.autograd.profiler.record_function, "__init__", recording)
    return names


def test_a_torch_optimizer_is_cleared_without_zero_grad(monkeypatch):
    names = _ranges(monkeypatch)
    _fit()
    assert not [n for n in names if "zero_grad" in n]  # one range a step before
    assert len([n for n in names if n.startswith("Optimizer.step#SGD")]) == 4  # the steps themselves


def test_an_optimizers_own_zero_grad_is_called():
    calls = []

    class Own(torch.optim.SGD):
        def zero_grad(self, set_to_none=True):
            calls.append(set_to_none)
            super().zero_grad(set_to_none)

    _fit(functools.partial(Own, lr=0.05))
    assert calls[:4] == [True] * 4


def test_under_a_profiler_the_zero_grad_range_is_kept():
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        _fit(steps=2)
    assert sum(e.name == "Optimizer.zero_grad#SGD.zero_grad" for e in prof.events()) >= 2


def test_the_gradients_are_none_after_clearing():
    params = [torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))]
    optimizer = torch.optim.Adam([{"params": params[:1]}, {"params": params[1:], "lr": 0.1}])
    for p in params:
        p.grad = torch.ones_like(p)
    player_step.clear_optimizer_gradients(optimizer)
    assert all(p.grad is None for p in params)


def test_parameters_are_bitwise_those_of_zero_grad(monkeypatch):
    adam = functools.partial(torch.optim.Adam, lr=0.05)
    fast = _fit(adam, steps=8)
    monkeypatch.setattr(player_step, "clear_optimizer_gradients", lambda o: o.zero_grad(set_to_none=True))
    slow = _fit(adam, steps=8)
    for a, b in zip(fast.parameters(), slow.parameters()):
        assert torch.equal(a, b)
