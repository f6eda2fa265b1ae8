"""SigmoidBeliefNet.exact_log_likelihood goes through the rows in chunks within ``MAX_ENUM_ELEMENTS``.

Before, the limit counted only the hidden layers' joint states: ``SigmoidBeliefNet([64, 20])`` with 500 rows asked
torch for one ``[2**20, 500, 64]`` tensor (134 GB, a raw RuntimeError)."""

import pytest
import torch

import hybridpgm.generative.sbn as sbn_module
from hybridpgm.errors import ConfigError
from hybridpgm.generative import SigmoidBeliefNet


def _net():
    torch.manual_seed(0)
    return SigmoidBeliefNet([5, 3, 2]).double()


def test_rows_go_through_in_chunks_within_the_budget_and_equal_a_row_by_row_loop(monkeypatch):
    net = _net()
    x = torch.bernoulli(torch.full((500, 5), 0.4, dtype=torch.float64))
    rows = []
    enumerated = SigmoidBeliefNet.enumerated_model

    def spy(self, x, **kwargs):
        rows.append(x.shape[0])
        return enumerated(self, x, **kwargs)

    monkeypatch.setattr(SigmoidBeliefNet, "enumerated_model", spy)
    per_row = max(2**3 * 5, 2 ** (3 + 2))  # 2**H1 * D = 40, the pair h1, h2: 32
    monkeypatch.setattr(sbn_module, "MAX_ENUM_ELEMENTS", 7 * per_row + 3, raising=False)
    chunked = net.exact_log_likelihood(x)
    assert max(rows) == 7 and sum(rows) == 500
    monkeypatch.setattr(sbn_module, "MAX_ENUM_ELEMENTS", 2**26, raising=False)
    loop = torch.cat([net.exact_log_likelihood(x[i:i + 1]) for i in range(500)])
    torch.testing.assert_close(chunked, loop, rtol=0, atol=1e-12)
    whole = net.exact_log_likelihood(x)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-12)
    # the gradients too: with several chunks each is recomputed in the backward pass
    grad_whole = torch.autograd.grad(whole.sum(), list(net.parameters()), allow_unused=True)
    monkeypatch.setattr(sbn_module, "MAX_ENUM_ELEMENTS", 7 * per_row + 3, raising=False)
    chunked = net.exact_log_likelihood(x)
    grad_chunked = torch.autograd.grad(chunked.sum(), list(net.parameters()), allow_unused=True)
    for g, h in zip(grad_chunked, grad_whole):
        assert (g is None) == (h is None)
        if g is not None:
            torch.testing.assert_close(g, h, rtol=1e-10, atol=1e-10)


def test_a_single_row_beyond_the_budget_is_refused_by_name(monkeypatch):
    net = SigmoidBeliefNet([8, 4])  # one row: 2**4 states of h1 x D=8 = 128 elements
    monkeypatch.setattr(sbn_module, "MAX_ENUM_ELEMENTS", 100, raising=False)
    with pytest.raises(ConfigError, match=r"128 elements.*D=8.*MAX_ENUM_ELEMENTS=100"):
        net.exact_log_likelihood(torch.zeros(1, 8))
