"""Forced interleavings of two threads' hybridpgm calls, shared by the tests of the global-state lock
(tests/test_global_state_lock*.py, hybridpgm/global_state_lock.py): a pausing layer, the two-thread driver,
a BayesNet around a user network, and the fixtures that keep Pyro's stack and the user's param store clean."""

from __future__ import annotations

import threading
import time

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.poutine import runtime

from hybridpgm.graphs import BayesNet, cpd


GUARD_S = 60.0  # only against a hang: none of the waits below times out in a passing run


FT = ["F", "T"]


def _lock_waiters() -> int:
    """The threads blocked on hybridpgm's lock (0 for a hybridpgm without it)."""
    try:
        from hybridpgm.global_state_lock import _QUEUE
    except ImportError:
        return 0
    return _QUEUE[0]


def _until(condition) -> bool:
    deadline = time.monotonic() + GUARD_S
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


class Pause(torch.nn.Module):
    """An identity layer whose first forward in the thread named ``name`` calls the hook armed for it."""

    def __init__(self):
        super().__init__()
        self.hooks: dict[str, object] = {}

    def forward(self, x):
        hook = self.hooks.pop(threading.current_thread().name, None)
        if hook is not None:
            hook()
        return x


class Interleaving:
    """Thread A's call pauses in its first pass through ``pause_a`` until B's call is inside (or blocked on the
    lock); B's call pauses in its first pass through ``pause_b`` until A's call returned (or until
    ``b_waits_for`` is set)."""

    def __init__(self, pause_a: Pause, pause_b: Pause, b_waits_for: threading.Event | None = None):
        self.a_inside, self.b_inside, self.a_done = threading.Event(), threading.Event(), threading.Event()
        self.b_waits_for = self.a_done if b_waits_for is None else b_waits_for
        self.errors: list[str] = []
        self.results: dict[str, object] = {}
        pause_a.hooks["A"] = self._in_a
        pause_b.hooks["B"] = self._in_b

    def _in_a(self):
        self.a_inside.set()
        if not _until(lambda: self.b_inside.is_set() or _lock_waiters() > 0):
            self.errors.append("hang guard: B neither entered nor blocked")

    def _in_b(self):
        self.b_inside.set()
        if not self.b_waits_for.wait(GUARD_S):
            self.errors.append("hang guard: B waited for A in vain")

    def _run(self, name, call, before=None, after=None):
        try:
            if before is not None and not before.wait(GUARD_S):
                self.errors.append(f"hang guard: {name} never started")
                return
            self.results[name] = call()
        except Exception as e:  # what the thread raised: the test reports it
            self.errors.append(f"{name}: {type(e).__name__}: {e}")
        finally:
            if after is not None:
                after.set()

    def run(self, call_a, call_b):
        a = threading.Thread(target=self._run, args=("A", call_a, None, self.a_done), name="A")
        b = threading.Thread(target=self._run, args=("B", call_b, self.a_inside), name="B")
        a.start(), b.start()
        a.join(GUARD_S), b.join(GUARD_S)
        assert not a.is_alive() and not b.is_alive(), "hang guard: a thread did not finish"
        return self.results


def _bn(net: torch.nn.Module) -> BayesNet:
    bn = BayesNet()
    bn.add("cloudy", cpd.Table([0.5, 0.5]), states=FT)
    bn.add("rain", cpd.Table([[0.8, 0.2], [0.2, 0.8]], ["cloudy"]), states=FT)
    bn.add("wet", cpd.Neural(net, ["cloudy", "rain"], 2), states=FT)
    return bn


def _net(*middle: torch.nn.Module) -> tuple[torch.nn.Module, Pause]:
    pause = Pause()
    return torch.nn.Sequential(torch.nn.Linear(4, 8), *middle, pause, torch.nn.Tanh(), torch.nn.Linear(8, 2)), pause


@pytest.fixture(autouse=True)
def clean_pyro_stack():
    """A handler a failing scenario left on Pyro's global stack would fail the next tests too."""
    yield
    runtime._PYRO_STACK.clear()
    runtime._DIM_ALLOCATOR._stack = []


@pytest.fixture
def user_store():
    """The user's own param store, with one trained parameter; cleared again afterwards."""
    pyro.clear_param_store()
    pyro.param("user_w", torch.tensor(3.0))
    yield pyro.get_param_store()
    pyro.clear_param_store()


def _plain_pyro_works():
    def model():
        return pyro.sample("x", dist.Normal(0.0, 1.0))
    model(), model()  # a stale trace handler on the global stack: "Multiple sample sites named 'x'"


class _Regression(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.pause = Pause()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 1), self.pause)

    def model(self, x, y):
        pyro.module("reg", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(self.net(x).squeeze(-1), 1.0), obs=y)

    def guide(self, x, y):
        pass
