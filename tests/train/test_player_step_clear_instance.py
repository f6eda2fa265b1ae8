"""hybridpgm/train/player_step.py's clear_optimizer_gradients calls a ``zero_grad`` set on the optimizer instance
(REVIEWA, session 42: 06ffca8 looked at the class only and skipped such a wrapper, which 169fb6c's
``optimizer.zero_grad(set_to_none=True)`` called at every step)."""

import functools

import torch

import hybridpgm
from hybridpgm.energy import RBM
from hybridpgm.infer import ContrastiveDivergence
from hybridpgm.train.player_step import clear_optimizer_gradients


def test_a_zero_grad_patched_onto_the_instance_is_called():
    p = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([p], lr=0.1)
    calls = []
    plain = optimizer.zero_grad
    optimizer.zero_grad = lambda set_to_none=True: (calls.append(set_to_none), plain(set_to_none))
    p.grad = torch.ones(2)
    clear_optimizer_gradients(optimizer)
    assert calls == [True] and p.grad is None


def test_fit_calls_it_at_every_step():
    calls = []

    def patched(params):
        optimizer = torch.optim.SGD(params, lr=0.05)
        plain = optimizer.zero_grad
        optimizer.zero_grad = functools.partial(lambda f, set_to_none=True: (calls.append(set_to_none),
                                                                             f(set_to_none)), plain)
        return optimizer

    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((40, 6), 0.4), generator=torch.Generator().manual_seed(0))
    hybridpgm.fit(ContrastiveDivergence(RBM(6, 3)), x, max_steps=4, batch_size=10, device="cpu", seed=0,
                  progress=False, optim=patched)
    assert calls[:4] == [True] * 4
