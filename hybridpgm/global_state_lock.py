"""One process-wide lock around the process-wide state that hybridpgm's calls borrow.

Several hybridpgm calls take a snapshot of state that belongs to the whole process, change it for a moment and
write the snapshot back:

* Pyro's effect-handler stack (``pyro.poutine.runtime._PYRO_STACK``) and its plate and enumeration allocators
  (:func:`~hybridpgm.handler_scope.outside_handlers`), and Pyro's param store
  (:func:`~hybridpgm.param_store_scope.own_param_store`).  Pyro keeps them in module globals, one per process,
  not one per thread;
* torch's default CPU generator and the CUDA generators (:func:`~hybridpgm.rng_scope.seeded_from_generator`,
  :func:`~hybridpgm.rng_scope.keeping_global_rngs`), also one per process;
* a model's training/evaluation modes and its buffers while a query borrows them
  (:func:`~hybridpgm.module_modes.keeping_modes`,
  :func:`~hybridpgm.infer.particle_probe.keeping_module_state`, :meth:`DeepKernelGP.posterior
  <hybridpgm.gp.DeepKernelGP.posterior>`).

Two threads doing so at the same time see each other's changes: one empties the handler stack under the other's
running program, clears the other's param store, or writes back a snapshot that holds the other's handlers, modes
or buffers (a trace handler left on Pyro's stack after both calls returned).  Every such region therefore runs
while holding **one** re-entrant lock (:func:`holding_global_state`), taken *before* the snapshot and released
*after* the restore.  Consequences:

* hybridpgm's calls from several threads run one at a time (a query inside a query, or inside a callback of
  :func:`hybridpgm.fit`, takes the lock again: it is re-entrant);
* :func:`hybridpgm.fit` gives the lock up between its steps (:func:`released_global_state`), so another thread's
  queries run between two steps, not only after the run; a call that seeds torch's streams for a whole run
  (``train_deep_kernel(seed=...)``) holds it for the whole run;
* the user's *own* Pyro code (a plain ``SVI.step``, ``Predictive``) running in another thread at the same time
  takes no lock and is outside hybridpgm's control: Pyro itself is not thread-safe.

The lock is cheap: one acquire per call (or per training step), none per operation.  Nothing hybridpgm runs
while holding it waits for another thread that needs it (``DataLoader`` workers are processes).  The caller's
code that runs inside a hybridpgm call must not either: a ``fit`` callback (or a network's ``forward``) that waits
for *another* thread's hybridpgm call (a thread pool evaluating in parallel) waits forever, since the call it waits
for needs the lock its own thread holds.  Such calls belong in the callback's own thread (docs: "Threads").  A process
forked while another thread held it starts with a free lock (:func:`os.register_at_fork`), held only as often as
the forking thread held it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

__all__ = ["held_depth", "holding_global_state", "others_waiting", "released_global_state"]

_LOCK = threading.RLock()
_HELD = threading.local()  # .depth: how many times this thread holds _LOCK
#: guards _QUEUE: [threads blocked on _LOCK, how many blocked threads got it so far], for the hand-over in
#: released_global_state
_HANDOVER = threading.Condition(threading.Lock())
_QUEUE = [0, 0]
#: the longest released_global_state waits for a blocked thread to take the lock (a guard, never reached in use)
_HANDOVER_TIMEOUT_S = 1.0


def held_depth() -> int:
    """How many :func:`holding_global_state` contexts are open in this thread (0: it does not hold the lock)."""
    return getattr(_HELD, "depth", 0)


def others_waiting() -> bool:
    """Whether another thread is blocked on the lock now (read without locking: a thread that starts waiting just
    after is seen at the next call)."""
    return _QUEUE[0] > 0


@contextlib.contextmanager
def holding_global_state() -> Iterator[None]:
    """Hold the process-wide lock for the body: enter it before taking a snapshot of process-wide state and leave
    it after writing the snapshot back.  Re-entrant: a thread that already holds it enters at once."""
    depth = held_depth()
    if not _LOCK.acquire(blocking=False):
        _acquire_blocked()
    try:
        _HELD.depth = depth + 1
        yield
    finally:
        _HELD.depth = depth
        _LOCK.release()


def _acquire_blocked() -> None:
    """Wait for the lock held by another thread, counted so that :func:`released_global_state` hands it over."""
    with _HANDOVER:
        _QUEUE[0] += 1
    try:
        _LOCK.acquire()
    finally:
        with _HANDOVER:
            _QUEUE[0] -= 1
            _QUEUE[1] += 1
            _HANDOVER.notify_all()


@contextlib.contextmanager
def released_global_state(down_to: int) -> Iterator[None]:
    """Give up the levels of the lock this thread holds above ``down_to`` for the body, and take them back after
    it (also by an exception): other threads' hybridpgm calls can run meanwhile, unless a caller of this thread
    still holds it (``down_to > 0``).

    When that frees the lock and another thread is blocked on it, the body waits until one such thread has
    taken it, so that a loop releasing it between steps (:func:`hybridpgm.fit`) lets the waiting calls in rather
    than taking it straight back (a plain lock is not fair).

    :param down_to: the depth (:func:`held_depth`) to release to, recorded before the levels to give up were
        taken: :func:`hybridpgm.fit` gives up what it took itself between two steps, never its caller's hold.
    """
    depth = held_depth()
    released = 0
    try:
        with _HANDOVER:
            served = _QUEUE[1]
        while depth - released > down_to:
            released += 1
            _HELD.depth = depth - released
            _LOCK.release()
        if released and depth - released == 0:
            with _HANDOVER:
                _HANDOVER.wait_for(lambda: _QUEUE[0] == 0 or _QUEUE[1] != served, timeout=_HANDOVER_TIMEOUT_S)
        yield
    finally:
        _take_back(released)
        _HELD.depth = depth


def _take_back(levels: int) -> None:
    """Take ``levels`` levels of the lock back.  A wait for it is counted like any other
    (:func:`_acquire_blocked`), so that the thread that has it hands it back in turn (two ``fit`` runs in two
    threads alternate their steps); an interrupt (a second Ctrl-C) during the wait does not leave the lock
    untaken: the levels are taken all the same, and the interrupt is raised after."""
    interrupt = None
    taken = 0
    while taken < levels:
        try:
            if taken:
                _LOCK.acquire()  # held already: at once
            elif not _LOCK.acquire(blocking=False):
                _acquire_blocked()
            taken += 1
        except BaseException as error:  # noqa: BLE001 - re-raised once the lock is held again
            interrupt = interrupt or error
    if interrupt is not None:
        raise interrupt


def _after_fork_in_child() -> None:
    """In a forked child only the forking thread lives on: a lock another thread held would never be released.
    Start from a free lock, held as often as the forking thread held the old one (its contexts release it)."""
    global _LOCK, _HANDOVER
    _LOCK = threading.RLock()
    for _ in range(held_depth()):
        _LOCK.acquire()
    _HANDOVER = threading.Condition(threading.Lock())
    _QUEUE[:] = [0, 0]


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
