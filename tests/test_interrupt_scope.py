"""An interrupted call leaves no grad mode, autocast nesting or Pyro plate dimension behind
(hybridpgm/interrupt_scope.py)."""

from __future__ import annotations

import functools

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.poutine import runtime

import hybridpgm
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.interrupt_scope import restored_on_error, runtime_state
from hybridpgm.precision_scope import exact_precision
from tests.graphs.bn_helpers import neural_child_net, neural_child_training


def _autocast_level() -> int:
    level = torch.autocast_increment_nesting() - 1
    torch.autocast_decrement_nesting()
    return level


def _bf16_linear_sees_a_weight_update() -> bool:
    """Whether a second bf16 autocast region computes with a Linear's current weight (torch reuses the bf16 copy
    of a weight cached in the first region unless autocast's nesting level returned to 0 between them)."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(2, 1)
    x = torch.ones(1, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        before = layer(x).float().item()
    with torch.no_grad():
        layer.weight.add_(1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        after = layer(x).float().item()
    return abs(after - before - 2.0) < 0.1


def _interrupting_exit(monkeypatch):
    """``exact_precision.__exit__`` interrupted before it undoes its inner ``autocast(enabled=False)`` (what a
    Ctrl-C at that line did)."""
    def interrupted(self, *exc):
        raise KeyboardInterrupt("Ctrl-C")
    monkeypatch.setattr(exact_precision, "__exit__", interrupted)


def test_a_leaked_inner_autocast_scope_is_undone_and_its_cache_cleared():
    assert _bf16_linear_sees_a_weight_update()
    start = runtime_state()
    with pytest.raises(KeyboardInterrupt):
        with restored_on_error():
            torch.set_grad_enabled(False)
            torch.autocast("cpu", enabled=False).__enter__()  # never exited
            torch.autocast("cpu", dtype=torch.float16).__enter__()
            raise KeyboardInterrupt
    assert _autocast_level() == start.autocast_level == 0 and torch.is_grad_enabled()
    assert not torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == start.autocast[0][2]
    assert _bf16_linear_sees_a_weight_update()


def test_an_interrupted_bf16_fit_leaves_autocast_as_it_was(monkeypatch):
    """An audit's Ctrl-C at one line of ``exact_precision.__exit__`` during ``fit(precision="bf16")`` left
    autocast's nesting level at 1 (every later bf16 region reused stale half-precision weights).  This injection,
    at the whole ``__exit__``, is undone by the autocast scopes around it even without ``fit``'s guard: a guard."""
    objective, data = neural_child_training(neural_child_net())
    _interrupting_exit(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        hybridpgm.fit(objective, data, batch_size=3, max_steps=1, precision="bf16",
                      progress=False)
    monkeypatch.undo()
    assert _autocast_level() == 0 and not torch.is_autocast_enabled("cpu") and torch.is_grad_enabled()
    assert _bf16_linear_sees_a_weight_update()


def test_an_interrupted_query_in_the_caller_s_autocast_region_leaves_it_as_it_was(monkeypatch):
    bn = neural_child_net()
    _interrupting_exit(monkeypatch)
    with pytest.raises(KeyboardInterrupt), torch.autocast("cpu", dtype=torch.bfloat16):
        bn.log_evidence({"w": torch.tensor([0, 1])})
    monkeypatch.undo()
    assert _autocast_level() == 0 and not torch.is_autocast_enabled("cpu")
    assert _bf16_linear_sees_a_weight_update()


class _PlateLeft(hybridpgm.train.Callback):
    """A callback interrupted inside a plate it entered (a Ctrl-C as ``pyro.plate`` exits keeps its dimension)."""

    def on_step_end(self, info):
        pyro.plate("data", 3).__enter__()
        raise KeyboardInterrupt("Ctrl-C")


def test_an_interrupted_fit_frees_the_plate_dimensions_it_held():
    """Before, every later fit of a model with a plate named "data" raised ``ValueError: duplicate plate``."""
    def model(x):
        loc = pyro.param("loc", torch.zeros(()))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(loc, 1.0), obs=x)

    class Objective(hybridpgm.SVIObjective):
        pass

    module = pyro.nn.PyroModule()
    module.loc = torch.nn.Parameter(torch.zeros(()))

    def program(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(module.loc, 1.0), obs=x)

    fit = functools.partial(hybridpgm.fit, Objective(program, lambda x: None, module=module), torch.randn(6),
                            batch_size=3, max_steps=2, progress=False)
    with pytest.raises(KeyboardInterrupt):
        fit(callbacks=[_PlateLeft()])
    assert runtime._DIM_ALLOCATOR._stack == [] and len(runtime._PYRO_STACK) == 0
    assert fit().steps == 2
    del model


def test_a_failing_query_leaves_another_thread_s_pyro_program_alone():
    """Review C: the first version wrote Pyro's process-wide handler stack and plate allocator back wholesale when
    a query raised, so a BayesNet query failing in one thread emptied the stack of a Pyro program running in
    another (its sample escaped the trace and the plate, whose exit then raised ``IndexError``)."""
    import collections.abc
    import threading

    from pyro import poutine

    from hybridpgm.errors import EvidenceError

    bn = BayesNet()
    bn.add("c", cpd.Table([0.3, 0.7]))
    reading, entered, done = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    class SlowEvidence(collections.abc.Mapping):  # read while the other thread is inside its plate
        def __iter__(self):
            reading.set()
            entered.wait(10)
            return iter(["not a node"])

        def __len__(self):
            return 1

        def __getitem__(self, key):
            return torch.tensor([0])

    def query():
        try:
            bn.posterior("c", SlowEvidence())
        except EvidenceError as error:
            seen["query"] = type(error).__name__
        finally:
            done.set()

    def program():
        reading.wait(10)
        with poutine.trace() as tr, pyro.plate("data", 3):
            entered.set()
            done.wait(10)
            seen["dims"] = list(runtime._DIM_ALLOCATOR._stack)
            pyro.sample("z", dist.Normal(0.0, 1.0))
        seen["z"] = tuple(tr.trace.nodes["z"]["value"].shape)

    threads = [threading.Thread(target=query), threading.Thread(target=program)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen == {"query": "EvidenceError", "dims": ["data"], "z": (3,)}
