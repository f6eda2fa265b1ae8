"""A call given its own ``generator`` leaves NumPy's and Python's global streams to the other threads
(hybridpgm/rng_scope.py: seeded_from_generator, seeded_globally_from).

Before, these scopes saved NumPy's and Python's global states on entry and put them back on exit, though the code
they run (networks, Pyro programs) draws nothing from them: a thread drawing from them during the call was
rewound when the call ended and drew the same numbers again.  torch's global stream is still seeded and restored
(the networks' dropout draws from it): that is documented in docs/pyro_native.md "Threads"."""

import random
import threading

import numpy as np
import pytest
import torch
from torch import nn

from hybridpgm import GAN, VAE
from hybridpgm.bayesian_nn import mc_dropout_predict
from hybridpgm.rng_scope import seeded_from_generator, seeded_globally_from


class _OtherThread:
    """Another thread's NumPy and Python draws, made while the call runs (from inside it, so at a known point)."""

    def __init__(self):
        self.draws = []

    def draw_now(self):
        thread = threading.Thread(target=lambda: self.draws.append((np.random.rand(), random.random())))
        thread.start()
        thread.join()


def _expected(n):
    np.random.seed(0), random.seed(0)
    return [(np.random.rand(), random.random()) for _ in range(n)]


class _Drawing(nn.Module):
    """A network whose forward pass lets the other thread draw (and which has a dropout, for MC dropout)."""

    def __init__(self, other, width=3):
        super().__init__()
        self.other, self.drop = other, nn.Dropout(0.5)
        self.linear = nn.Linear(width, width)

    def forward(self, x):
        self.other.draw_now()
        return self.drop(self.linear(x))


def _with_scope(scope, other):
    net = _Drawing(other)
    with scope(net):
        net(torch.ones(2, 3))


CALLS = {
    "seeded_from_generator": lambda other: _with_scope(
        lambda net: seeded_from_generator(torch.Generator().manual_seed(1), [net]), other),
    "seeded_globally_from": lambda other: _with_scope(
        lambda net: seeded_globally_from(torch.Generator().manual_seed(1)), other),
    "mc_dropout_predict": lambda other: mc_dropout_predict(_Drawing(other), torch.ones(2, 3), num_samples=2,
                                                           generator=torch.Generator().manual_seed(1)),
    "VAE.sample": lambda other: _vae(other).sample(2, generator=torch.Generator().manual_seed(1)),
    "GAN.sample": lambda other: GAN(_Drawing(other), nn.Linear(3, 1), noise_dim=3).sample(
        2, generator=torch.Generator().manual_seed(1)),
}


def _vae(other):
    vae = VAE(4, z_dim=2, hidden=[3])
    vae.decoder.register_forward_pre_hook(lambda module, inputs: other.draw_now())
    return vae


@pytest.mark.parametrize("call", list(CALLS))
def test_another_threads_numpy_and_python_draws_during_a_generator_call_are_not_rewound(call):
    """Before: the draw after the call repeated one made during it (the scope put the streams back)."""
    other = _OtherThread()
    expected = _expected(3)
    np.random.seed(0), random.seed(0)
    other.draw_now()  # the other thread's first draw, before the call
    CALLS[call](other)  # its second draw(s), during the call
    other.draw_now()  # and the next one, after it
    assert len(other.draws) >= 3
    assert other.draws[:2] == expected[:2]
    # the stream goes on where the draws during the call left it: no number repeats
    np.random.seed(0), random.seed(0)
    assert other.draws == [(np.random.rand(), random.random()) for _ in other.draws]


def test_the_generator_calls_still_repeat_and_keep_the_callers_torch_stream():
    """What the scopes are for is unchanged: the draws are a function of the generator and torch's global stream
    is put back (a network draws from it)."""
    other = _OtherThread()
    net, x = _Drawing(other), torch.ones(50, 3)
    torch.manual_seed(3)
    before = torch.get_rng_state()
    outputs = []
    for scope in (seeded_from_generator, lambda g, _: seeded_globally_from(g)):
        for _ in range(2):
            with scope(torch.Generator().manual_seed(1), [net]):
                outputs.append(net(x))
            assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[2], outputs[3])
