"""hybridpgm's calls from several threads: one process-wide lock around Pyro's handler stack and param store,
torch's streams and the modes and buffers a query borrows (:mod:`hybridpgm.global_state_lock`).

Each scenario forces the interleaving that broke: thread A's call stops inside its own region (in a user
network's forward) until thread B's call is inside its region too -- or, with the lock, blocked on it -- and B's
call stays inside until A's call has returned.  Without the lock B's region thus opens and closes around A's
exit, exactly the order that wrote back the wrong snapshots; with it B runs after A.  No result depends on
timing: every wait is a hang guard, asserted on.
"""

from __future__ import annotations

import threading

import pytest
import torch
from pyro.poutine import runtime

from tests.thread_interleaving import GUARD_S, Interleaving, _bn, _lock_waiters, _net, _plain_pyro_works, _until
from tests import thread_interleaving
from tests.thread_interleaving import clean_pyro_stack  # noqa: F401  (an autouse fixture)

user_store = thread_interleaving.user_store  # the fixture, for the tests below


# ---------------------------------------------------------------------------------------------- finding 1


def test_concurrent_log_prob_keeps_handler_stack_and_user_store(user_store):
    """Two BayesNet.log_prob calls overlapping: both right, Pyro's handler stack empty afterwards (it held the
    other thread's trace handler), the user's param store intact (it was replaced by a query's scope)."""
    torch.manual_seed(0)
    (net_a, pause_a), (net_b, pause_b) = _net(), _net()
    bn_a, bn_b = _bn(net_a), _bn(net_b)
    rows = torch.tensor([[0, 1, 1], [1, 0, 0], [1, 1, 1]])
    ref_a, ref_b = bn_a.log_prob(rows).detach(), bn_b.log_prob(rows).detach()
    run = Interleaving(pause_a, pause_b)
    out = run.run(lambda: bn_a.log_prob(rows).detach(), lambda: bn_b.log_prob(rows).detach())
    assert run.errors == []
    assert torch.equal(out["A"], ref_a) and torch.equal(out["B"], ref_b)
    assert runtime._PYRO_STACK == []
    assert runtime._DIM_ALLOCATOR._stack == []
    assert list(user_store.keys()) == ["user_w"] and user_store["user_w"].item() == 3.0
    _plain_pyro_works()


def test_nested_queries_take_the_lock_again():
    """Re-entrant: a query run inside another query's user network (same thread) works."""
    torch.manual_seed(0)
    (net_a, pause_a), (net_b, _) = _net(), _net()
    bn_a, bn_b = _bn(net_a), _bn(net_b)
    rows = torch.tensor([[0, 1, 1], [1, 0, 0]])
    ref_b = bn_b.log_prob(rows).detach()
    inner = []
    pause_a.hooks[threading.current_thread().name] = lambda: inner.append(bn_b.log_prob(rows).detach())
    bn_a.log_prob(rows)
    assert len(inner) == 1 and torch.equal(inner[0], ref_b)
    assert runtime._PYRO_STACK == []


# ---------------------------------------------------------------------------------------------- the lock itself


def test_released_global_state_keeps_a_callers_hold():
    """released_global_state(down_to) gives up only the levels above ``down_to``: with a caller's hold left, no
    other thread gets the lock; with none, one blocked thread gets it before the body ends."""
    from hybridpgm.global_state_lock import held_depth, holding_global_state, released_global_state

    got = []

    def try_take():
        with holding_global_state():
            got.append(held_depth())

    with holding_global_state():
        with holding_global_state():
            other = threading.Thread(target=try_take)
            other.start()
            assert _until(lambda: _lock_waiters() == 1)
            with released_global_state(1):  # the outer hold stays: the other thread waits on
                assert held_depth() == 1 and got == []
            assert held_depth() == 2
        with released_global_state(0):  # all given up: the waiting thread had the lock before the body
            assert got == [1] and held_depth() == 0
        assert held_depth() == 1
    other.join(GUARD_S)
    assert not other.is_alive() and held_depth() == 0


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_child_forked_while_another_thread_holds_the_lock_can_take_it():
    """A process forked (a DataLoader worker, multiprocessing's fork) while another thread held the lock: the
    child's hybridpgm calls take it (the holder does not exist in the child)."""
    import os

    from hybridpgm.global_state_lock import holding_global_state

    inside, leave = threading.Event(), threading.Event()

    def hold():
        with holding_global_state():
            inside.set()
            leave.wait(GUARD_S)
    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(GUARD_S)
    try:
        pid = os.fork()
        if pid == 0:  # the child: exit status 0 only if it took the lock
            code = 1
            try:
                from hybridpgm import global_state_lock
                if global_state_lock._LOCK.acquire(timeout=GUARD_S):
                    with holding_global_state():
                        code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        leave.set()
        holder.join(GUARD_S)
    assert os.waitstatus_to_exitcode(status) == 0
