"""The probe-trace helpers (hybridpgm/infer/particle_probe.py): module buffers restored in place, modules found
behind methods, wrappers and partials, the random state kept."""

import functools

import pyro.poutine as poutine
import pytest
import torch

from hybridpgm.infer import particle_probe
from tests.infer.probe_helpers import batch_norm_vae


class _Counter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("empty", None)

    def forward(self, x):
        self.count += 1
        return x


def test_module_state_is_restored_in_place_even_when_the_body_raises():
    counter = _Counter()
    count = counter.count
    with pytest.raises(RuntimeError, match="boom"):
        with particle_probe.keeping_module_state(counter):
            counter(1.0)
            counter.count = torch.full((), 7.0)  # replaced by another tensor
            counter.register_buffer("lazy", torch.ones(2))  # a buffer made in the body stays
            raise RuntimeError("boom")
    assert counter.count is count and count.item() == 0 and counter.empty is None
    assert torch.equal(counter.lazy, torch.ones(2))


def test_untouched_buffers_keep_their_autograd_version():
    counter = _Counter()
    version = counter.count._version
    with particle_probe.keeping_module_state(counter):
        pass
    assert counter.count._version == version


def test_restored_buffers_keep_their_autograd_version_so_a_loss_from_the_body_backpropagates():
    """The restore bumped the versions of changed buffers: a batch norm in training mode saves its running
    statistics for backward, so a loss computed in the body (a train-mode BayesNet or MarkovNet query) failed
    "modified by an inplace operation"."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with particle_probe.keeping_module_state(net):
        loss = net(torch.randn(5, 2)).square().sum()
    loss.backward()
    assert net[0].weight.grad is not None and bool(net[0].weight.grad.abs().sum() > 0)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_a_train_mode_query_through_a_batch_norm_potential_backpropagates():
    from hybridpgm.graphs import BayesNet, MarkovNet, cpd

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.BatchNorm1d(4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]))
    bn.add("c", cpd.Neural(net, ["a"], 3))
    bn.train()
    bn.log_evidence({"c": torch.tensor([0, 2, 1, 1])}).sum().backward()
    assert bool(net[0].weight.grad.abs().sum() > 0)
    pot = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.Unflatten(-1, (3, 2)))
    mrf = MarkovNet({"v": 3, "w": 2})
    mrf.add_factor("vw", ["v", "w"], pot)
    mrf.train()
    running = pot[1].running_mean.clone()
    mrf.marginals(context=torch.randn(5, 4))["v"][..., 0].sum().backward()
    assert bool(pot[0].weight.grad.abs().sum() > 0) and torch.equal(pot[1].running_mean, running)


def test_modules_are_found_behind_methods_wrappers_and_partials():
    vae, counter, other = batch_norm_vae(), _Counter(), _Counter()
    wrapped = poutine.scale(vae.model, 2.0)
    partial = functools.partial(counter.forward)
    assert particle_probe.probed_modules(wrapped, vae.guide, partial, other, None, lambda x: x) == [vae, counter, other]
    assert particle_probe.probed_modules(vae.model, vae, vae.guide) == [vae]


def test_probing_keeps_the_random_state_and_the_buffers_of_a_wrapped_module():
    counter = _Counter()
    torch.manual_seed(0)
    with particle_probe.probing(poutine.block(counter)):
        counter(torch.rand(2))
    after = torch.rand(2)
    torch.manual_seed(0)
    assert counter.count.item() == 0 and torch.equal(after, torch.rand(2))


def test_every_buffer_comes_back_when_an_interrupt_arrives_during_the_restore(monkeypatch):
    """The restore stopped at the first exception (a Ctrl-C while copying a buffer back): the buffers after it
    kept the values the body gave them.  Now all are restored and the exception follows."""
    net = torch.nn.Sequential(torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    real_copy = torch.Tensor.copy_
    armed = [False]

    def copy_then_ctrl_c(self, *args, **kwargs):
        if armed[0]:
            armed[0] = False
            raise KeyboardInterrupt("Ctrl-C")
        return real_copy(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "copy_", copy_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt, match="Ctrl-C"):
        with particle_probe.keeping_module_state(net):
            net(torch.randn(5, 3, generator=torch.Generator().manual_seed(0)))
            armed[0] = True
    monkeypatch.undo()
    assert not armed[0]
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
