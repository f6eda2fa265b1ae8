"""The weights a bayesianized network's forward reads (hybridpgm/bayesian_nn_reads.py), and the regressor under
vectorized plates drawing those only, in their order.  Before, every weight site was drawn under vectorized plates
(in registration order) while the draws in turn draw the weights the forward reads: a layer it never calls gave
sites the guide lacks ("Found vars in model but not guide") and a wrong ELBO."""

import warnings

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive
from torch import nn

from hybridpgm.bayesian_nn import BayesianRegressor, bayesianize
from hybridpgm.bayesian_nn_plates import _sites, _weight_shape
from hybridpgm.bayesian_nn_reads import weights_read
from hybridpgm.errors import ModelSpecError
from tests.bayesian_nn_particles import vectorized_and_in_turn


class _Reordered(nn.Module):
    """Registers ``a``, ``unused``, ``b``, ``c``; reads ``b``, then ``c``'s bias before its weight, then ``a``
    (the read order is neither the registration order nor the order torch uses the tensors in)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 1)
        self.unused = nn.Linear(2, 50)
        self.b = nn.Linear(2, 4)
        self.c = nn.Linear(4, 4)

    def forward(self, x):
        h = torch.tanh(self.b(x))
        h = torch.tanh(self.c.bias + h @ self.c.weight.T)
        return self.a(h)


READ = ["net.b.weight", "net.b.bias", "net.c.bias", "net.c.weight", "net.a.weight", "net.a.bias"]


def _sample_sites(trace):
    return [n for n, s in trace.nodes.items() if s["type"] == "sample" and n.startswith("net.")]


def test_the_sites_under_a_plate_are_those_the_draws_in_turn_read_in_their_order():
    torch.manual_seed(0)
    model = BayesianRegressor(_Reordered(), num_data=5)
    x = torch.randn(5, 2)
    assert _sample_sites(poutine.trace(model).get_trace(x)) == READ
    with pyro.plate("draws", 3, dim=-2):
        trace = poutine.trace(model).get_trace(x)
    assert _sample_sites(trace) == READ  # before: a, unused, b, c in registration order
    assert trace.nodes["_RETURN"]["value"].shape == (3, 5)
    for i in range(3):
        alone = poutine.condition(model, {n: trace.nodes[n]["value"][i, 0] for n in READ})(x)
        torch.testing.assert_close(trace.nodes["_RETURN"]["value"][i], alone)


def test_seeded_draws_under_a_plate_of_one_are_the_draws_in_turn():
    """The same sites in the same order draw the same numbers from one seed (no dropout between them)."""
    torch.manual_seed(0)
    model = BayesianRegressor(_Reordered(), num_data=5)
    x = torch.randn(5, 2)
    pyro.set_rng_seed(4)
    alone = poutine.trace(model).get_trace(x)
    pyro.set_rng_seed(4)
    with pyro.plate("draws", 1, dim=-2):
        vectorized = poutine.trace(model).get_trace(x)
    for name in READ + ["y"]:
        torch.testing.assert_close(vectorized.nodes[name]["value"].reshape(alone.nodes[name]["value"].shape),
                                   alone.nodes[name]["value"], rtol=0, atol=0)
    torch.testing.assert_close(vectorized.nodes["_RETURN"]["value"][0], alone.nodes["_RETURN"]["value"])


def test_vectorized_particles_of_a_network_with_an_unused_layer_are_the_particles_in_turn():
    """The reproducer of review B: Linear(2, 1) used, Linear(2, 50) not.  Before: 'Found vars in model but not
    guide' and the unused layer's prior log-densities in the loss (440.0 against 228.8 in turn)."""

    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 1)
            self.aux = nn.Linear(2, 50)

        def forward(self, x):
            return self.lin(x)

    torch.manual_seed(0)
    model = BayesianRegressor(Unused(), num_data=5)
    x, y = torch.randn(5, 2), torch.randn(5)
    names = ["net.lin.weight", "net.lin.bias"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, in_turn, traces = vectorized_and_in_turn(model, x, y, names)
    assert all(_sample_sites(trace) == names for trace in traces)
    assert loss == pytest.approx(in_turn, rel=1e-5)


class _Branches(nn.Module):
    """Reads ``left`` or ``right`` by the sign of ``x``, holds a tensor that is no buffer, a buffer it reassigns,
    and a dropout."""

    def __init__(self):
        super().__init__()
        self.left, self.right = nn.Linear(2, 1), nn.Linear(2, 1)
        self.shift = torch.tensor([0.5, -0.5])
        self.register_buffer("calls", torch.zeros(()))
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        self.calls += 1
        layer = self.left if bool(x.sum() > 0) else self.right
        return layer(self.drop(x + self.shift))


def test_reads_on_the_data_leave_the_random_streams_and_the_buffers():
    torch.manual_seed(0)
    net = bayesianize(_Branches())
    sites = _sites(net)
    shapes = [_weight_shape(layer, name) for _, layer, name in sites]
    calls = net.calls
    state = torch.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [p for p, _, _ in weights_read(net, torch.ones(3, 2), sites, shapes)] == ["left.weight", "left.bias"]
        assert [p for p, _, _ in weights_read(net, -torch.ones(3, 2), sites, shapes)] == ["right.weight",
                                                                                          "right.bias"]
    assert torch.equal(torch.get_rng_state(), state)
    assert net.calls is calls and float(calls) == 0.0 and net._buffers["calls"] is calls
    assert all("calls" not in layer.__dict__ for layer in net.modules())
    model = BayesianRegressor(_Branches(), num_data=3)
    with pyro.plate("draws", 4, dim=-2):
        trace = poutine.trace(model).get_trace(-torch.ones(3, 2))
    assert _sample_sites(trace) == ["net.right.weight", "net.right.bias"]
    assert trace.nodes["_RETURN"]["value"].shape == (4, 3)


def test_a_forward_reading_no_weight_gives_its_output_for_every_draw():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 1)

        def forward(self, x):
            return x[:, :1] * 2.0

    model = BayesianRegressor(Constant(), num_data=5)
    x = torch.randn(5, 2)
    with pyro.plate("draws", 3, dim=-2):
        trace = poutine.trace(model).get_trace(x)
    assert _sample_sites(trace) == []
    torch.testing.assert_close(trace.nodes["_RETURN"]["value"], (x[:, 0] * 2.0).expand(3, 5))


def test_parallel_predictive_of_a_network_with_an_unused_layer():
    torch.manual_seed(0)
    model = BayesianRegressor(_Reordered(), num_data=5)
    x = torch.randn(5, 2)
    g = torch.Generator().manual_seed(1)
    draws = {n: torch.randn((4,) + tuple(poutine.trace(model).get_trace(x).nodes[n]["value"].shape), generator=g)
             for n in READ}
    parallel = Predictive(model, posterior_samples=draws, return_sites=["_RETURN"], parallel=True)(x)["_RETURN"]
    sequential = Predictive(model, posterior_samples=draws, return_sites=["_RETURN"])(x)["_RETURN"]
    torch.testing.assert_close(parallel, sequential)
    # the vectorized trace (what arviz.from_pyro reads): the posterior's sites and the likelihood, in the order of
    # the draws in turn (before: the unused layer's weights too, drawn from the prior)
    trace = Predictive(model, posterior_samples=draws).get_vectorized_trace(x)
    assert [n for n, site in trace.nodes.items() if site["type"] == "sample"] == READ + ["data", "y"]


@pytest.mark.parametrize("layer, cell", [(nn.LSTM(2, 3), "LSTMCell"), (nn.GRU(2, 3), "GRUCell"),
                                         (nn.RNN(2, 3), "RNNCell")])
def test_bayesianize_refuses_a_recurrent_layer_by_name(layer, cell):
    """Before: torch's raw AttributeError "'PyroLSTM' object has no attribute '_flat_weights'"."""
    kind = type(layer).__name__
    with pytest.raises(ModelSpecError, match=rf"the {kind} given is a recurrent layer.*flat list.*nn\.{cell}"):
        bayesianize(layer)
    with pytest.raises(ModelSpecError, match=rf"the layer '1' \({kind}\) of Sequential is a recurrent layer"):
        BayesianRegressor(nn.Sequential(nn.Linear(2, 2), layer), num_data=4)
