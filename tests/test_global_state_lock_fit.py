"""fit under hybridpgm's global-state lock (hybridpgm/global_state_lock.py): a fit while another thread queries,
a query inside a fit callback, and two fits in two threads that alternate their steps."""

from __future__ import annotations

import threading

import torch
from pyro.poutine import runtime

import hybridpgm
from tests.thread_interleaving import Interleaving, _Regression, _bn, _net, _plain_pyro_works
from tests import thread_interleaving
from tests.thread_interleaving import clean_pyro_stack  # noqa: F401  (an autouse fixture)

user_store = thread_interleaving.user_store  # the fixture, for the tests below


# ---------------------------------------------------------------------------------------------- finding 2


class _StepLog:
    def __init__(self, first_step_over: threading.Event):
        self.steps, self.first_step_over = [], first_step_over

    def on_step_end(self, info):
        self.steps.append(info.step)
        self.first_step_over.set()


def test_fit_runs_while_another_thread_queries(user_store):
    """A query in another thread while fit's step is running: fit ran to its end (the query emptied the handler
    stack under fit's ELBO trace), the query ran between two steps (not after the run), both right."""
    from hybridpgm.infer import SVIObjective

    torch.manual_seed(0)
    reg = _Regression()
    x = torch.randn(32, 3)
    data = (x, x @ torch.tensor([1.0, -2.0, 0.5]))
    (net_b, pause_b) = _net()
    bn_b = _bn(net_b)
    rows = torch.tensor([[0, 1, 1], [1, 0, 0]])
    ref_b = bn_b.log_prob(rows).detach()
    first_step_over = threading.Event()
    log = _StepLog(first_step_over)
    run = Interleaving(reg.pause, pause_b, b_waits_for=first_step_over)
    steps_seen_by_b = []
    armed_b = pause_b.hooks["B"]

    def in_b():
        steps_seen_by_b.append(len(log.steps))
        armed_b()
    pause_b.hooks["B"] = in_b

    def fit():
        try:
            return hybridpgm.fit(SVIObjective(reg.model, reg.guide, module=reg), data, max_steps=5,
                                 batch_size=32, seed=0, progress=False, callbacks=[log])
        finally:
            first_step_over.set()  # also when fit raised in its first step
    out = run.run(fit, lambda: bn_b.log_prob(rows).detach())
    assert run.errors == []
    assert out["A"].steps == 5 and log.steps == [1, 2, 3, 4, 5]
    assert torch.equal(out["B"], ref_b)
    assert steps_seen_by_b == [1]  # between the first and the second step
    assert runtime._PYRO_STACK == []
    assert list(user_store.keys()) == ["user_w"]
    _plain_pyro_works()


def test_query_inside_a_fit_callback():
    """Re-entrant: a callback of fit runs a query while fit holds the lock."""
    from hybridpgm.infer import SVIObjective

    torch.manual_seed(0)
    reg = _Regression()
    x = torch.randn(16, 3)
    (net_b, _) = _net()
    bn_b = _bn(net_b)
    rows = torch.tensor([[0, 1, 1]])
    ref_b = bn_b.log_prob(rows).detach()
    seen = []

    class Query:
        def on_step_end(self, info):
            seen.append(bn_b.log_prob(rows).detach())

    hybridpgm.fit(SVIObjective(reg.model, reg.guide, module=reg), (x, x.sum(-1)), max_steps=2, batch_size=16,
                  seed=0, progress=False, callbacks=[Query()])
    assert len(seen) == 2 and all(torch.equal(s, ref_b) for s in seen)


def test_two_fits_in_two_threads_alternate_their_steps():
    """The review of the first version found the re-acquire after a hand-over uncounted: the fit that handed the
    lock over waited for the whole of the other run (steps A x5, B x100, A x145)."""
    from hybridpgm.train import Callback

    order, lock = [], threading.Lock()

    class Record(Callback):
        def __init__(self, name):
            self.name = name

        def on_step_end(self, info):
            with lock:
                order.append(self.name)

    from hybridpgm.infer import SVIObjective

    def run(name):
        reg = _Regression()
        x = torch.randn(32, 3, generator=torch.Generator().manual_seed(0))
        hybridpgm.fit(SVIObjective(reg.model, reg.guide, module=reg), (x, x.sum(-1)), max_steps=40, batch_size=32,
                      seed=0, progress=False, callbacks=[Record(name)])

    threads = [threading.Thread(target=run, args=(name,)) for name in "AB"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads) and sorted(order) == ["A"] * 40 + ["B"] * 40
    # once both run, the steps interleave (the hand-over is not strictly alternating: a thread that has just had
    # the lock back may miss the other's next boundary); before, the run had 2 switches (A.., B x40, A..)
    switches = sum(a != b for a, b in zip(order, order[1:]))
    assert switches >= 10, order
