"""pyro.module's registration without its warning of frozen parameters (hybridpgm/module_registration.py)."""

import threading
import warnings

import pyro
import pytest
import torch
from pyro.nn import PyroModule, pyro_method
from torch import nn

from hybridpgm.module_registration import frozen_aware_module, register_module, registers_once
from tests.param_messages import ParamMessages

PYRO_WARNING = "was not registered in the param store"


def _net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    net[1].requires_grad_(False)  # a pretrained batch norm kept fixed, in training mode
    return net


def _param_sites(fn):
    """The ``param`` messages ``fn`` sends (name -> value), what Pyro's handlers and SVI's param capture see."""
    with pyro.settings.context(module_local_params=False), pyro.get_param_store().scope():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trace = pyro.poutine.trace(fn).get_trace()
        store = dict(pyro.get_param_store().items())
    pyro_warnings = [str(w.message) for w in caught if PYRO_WARNING in str(w.message)]
    return {n: s["value"] for n, s in trace.nodes.items() if s["type"] == "param"}, store, pyro_warnings


def test_register_module_registers_what_pyro_module_does_and_warns_of_nothing():
    """The same names and the same tensors as ``pyro.module`` (what plain SVI and checkpoints rely on); the frozen
    batch norm is neither registered nor unfrozen, and Pyro's warning (once per frozen parameter per call, advising
    ``train(False)``, which would stop the running statistics) is not given."""
    net = _net()
    theirs, their_store, their_warnings = _param_sites(lambda: pyro.module("net", net))
    ours, our_store, our_warnings = _param_sites(lambda: register_module("net", net))
    assert len(their_warnings) == 2 and our_warnings == []  # Pyro's: 1.weight and 1.bias
    assert list(ours) == list(theirs) == ["net$$$0.weight", "net$$$0.bias", "net$$$2.weight", "net$$$2.bias"]
    assert all(ours[n] is theirs[n] for n in ours) and our_store.keys() == their_store.keys()
    assert our_store["net$$$0.weight"] is net[0].weight
    assert not net[1].weight.requires_grad and not net[1].bias.requires_grad
    assert register_module("net", net) is net


class Owner(PyroModule):
    body = frozen_aware_module("body", "the network")

    def __init__(self, body, name=""):
        super().__init__(name)
        self.body = body

    def forward(self):
        return self.body(torch.ones(5, 3))


@pytest.mark.parametrize("name", ["", "owner"])
def test_frozen_aware_module_registers_under_pyro_modules_names_without_the_warning(name):
    """Read inside the owner's Pyro method, the network is registered under the name ``PyroModule.__getattr__``
    gives ``pyro.module`` (with the owner's name as prefix), its frozen part left out, without a warning; outside
    it the read registers nothing.  The state-dict keys are those of a plain attribute."""
    owner = Owner(_net(), name)
    sites, store, pyro_warnings = _param_sites(owner)
    prefix = f"{name}.body" if name else "body"
    assert list(sites) == [f"{prefix}$$${p}" for p in ("0.weight", "0.bias", "2.weight", "2.bias")]
    assert pyro_warnings == [] and store[f"{prefix}$$$2.bias"] is owner._modules["body"][2].bias
    with pyro.get_param_store().scope():
        assert owner.body is owner._modules["body"] and len(pyro.get_param_store()) == 0
    assert "body.1.running_mean" in owner.state_dict()


def test_frozen_aware_module_leaves_pyros_other_paths_as_they_were():
    """Under ``module_local_params`` Pyro's stand-in ``param`` statements (every parameter, none in the store);
    a sub-module that is a ``PyroModule`` registers its own parameters; a missing one is nn.Module's error."""
    with pyro.settings.context(module_local_params=True), pyro.get_param_store().scope():
        owner = Owner(_net())  # built under the setting, as Pyro asks
        trace = pyro.poutine.trace(owner).get_trace()
        assert len(pyro.get_param_store()) == 0
    assert [n for n, s in trace.nodes.items() if s["type"] == "param"] == [
        f"body$$${p}" for p in ("0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "2.bias")]
    inner = PyroModule[nn.Linear](3, 2)
    sites, _, _ = _param_sites(Owner(inner))
    assert sorted(sites) == ["body.bias", "body.weight"] and sites["body.weight"] is inner.weight
    del owner.body
    with pytest.raises(AttributeError, match="'Owner' object has no attribute 'body'"):
        owner.body


class Reader(PyroModule):
    """Reads its network once per "layer", directly and through a helper, as a Bayes net's model reads its CPDs."""
    body = frozen_aware_module("body", "the network")

    def __init__(self, body):
        super().__init__()
        self.body = body

    def _reads(self, times):
        return [self._helper() for _ in range(times)]

    def _helper(self):
        return self.body

    @pyro_method
    @registers_once("body")
    def once(self, times=5, nested=0, fail=False, in_thread=None):
        if nested:
            self.once(times, nested - 1)
        if in_thread is not None:
            thread = threading.Thread(target=in_thread)
            thread.start()
            thread.join()
        if fail:
            raise RuntimeError("inside")
        return self._reads(times)

    @pyro_method
    def each_read(self, times=5):
        return self._reads(times)


TRAINABLE = [f"body$$${p}" for p in ("0.weight", "0.bias", "2.weight", "2.bias")]


def _count(fn, *args, **kwargs):
    seen = ParamMessages()
    with pyro.settings.context(module_local_params=False), pyro.get_param_store().scope(), seen:
        fn(*args, **kwargs)
    return seen.names


def test_registers_once_registers_a_network_once_per_call_however_often_it_is_read():
    """Without it every read (five here, through a helper) registers each trainable parameter again; with it one
    registration on entry, a nested call adding none, the frozen batch norm left out as before; after the call
    (after an error too) the next call registers again."""
    owner = Reader(_net())
    assert _count(owner.each_read) == {n: 5 for n in TRAINABLE}
    assert _count(owner.once) == {n: 1 for n in TRAINABLE}
    assert _count(owner.once, nested=2) == {n: 1 for n in TRAINABLE}
    with pytest.raises(RuntimeError, match="inside"):
        _count(owner.once, fail=True)
    assert _count(owner.once) == {n: 1 for n in TRAINABLE}
    assert _count(owner.each_read, times=2) == {n: 2 for n in TRAINABLE}
    assert all(body is owner._modules["body"] for body in owner.once())


def test_registers_once_under_module_local_params_sends_pyros_stand_in_statements_once():
    with pyro.settings.context(module_local_params=True), pyro.get_param_store().scope():
        owner = Reader(_net())
        seen = ParamMessages()
        with seen:
            owner.once()
        assert len(pyro.get_param_store()) == 0
    assert seen.names == {f"body$$${p}": 1 for p in ("0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "2.bias")}


def test_registers_once_holds_the_registration_in_its_own_thread_only():
    """A read in another thread, during the call, is not the call's: it registers (Pyro's handler stack, one per
    process, sees it)."""
    owner = Reader(_net())
    assert _count(owner.once, times=3, in_thread=lambda: owner.each_read(times=1)) == {n: 2 for n in TRAINABLE}
