"""Concurrent queries under hybridpgm's global-state lock leave the modes, buffers and streams they borrow
(hybridpgm/global_state_lock.py): a deep kernel's training mode, batch-norm statistics, seeded sampling."""

from __future__ import annotations


import torch

from tests.thread_interleaving import Interleaving, Pause, _bn, _net
from tests.thread_interleaving import clean_pyro_stack  # noqa: F401  (an autouse fixture)


# ---------------------------------------------------------------------------------------------- finding 3


def test_concurrent_deep_kernel_queries_keep_training_mode():
    """DeepKernelGP.posterior and .predict from two threads on one model in training mode: both right (the
    other call's eval() and set_train_data dropped the prediction strategy: ``'NoneType' object has no attribute
    'exact_prediction'``), and the model is left in training mode (the last restore wrote back eval())."""
    from hybridpgm.gp import DeepKernelGP

    torch.manual_seed(0)
    pause = Pause()
    x = torch.randn(20, 3)
    dkl = DeepKernelGP(x, x.sum(-1).sin(), torch.nn.Sequential(torch.nn.Linear(3, 2), pause))
    dkl.train()
    x_a, x_b = torch.randn(4, 3), torch.randn(5, 3)
    with torch.no_grad():
        ref_a = dkl.posterior(x_a).mean
    ref_b = dkl.predict(x_b).mean
    assert dkl.training and dkl.gp.training
    run = Interleaving(pause, pause)

    def call_a():
        with torch.no_grad():
            return dkl.posterior(x_a).mean
    out = run.run(call_a, lambda: dkl.predict(x_b).mean)
    assert run.errors == []
    assert torch.allclose(out["A"], ref_a) and torch.allclose(out["B"], ref_b)
    assert all(m.training for m in dkl.modules())


# ---------------------------------------------------------------------------------------------- finding 4


def test_concurrent_posteriors_leave_batch_norm_statistics():
    """Two BayesNet.posterior calls on one network whose neural CPD (a batch norm) is in training mode: the
    running statistics are left as they were (each call restored a copy the other had already changed)."""
    torch.manual_seed(0)
    norm = torch.nn.BatchNorm1d(8)
    net, pause = _net(norm)
    bn = _bn(net)
    bn.train()
    ev_a, ev_b = {"wet": torch.tensor([1, 0, 1])}, {"wet": torch.tensor([0, 0, 1, 1])}
    mean0, count0 = norm.running_mean.clone(), norm.num_batches_tracked.clone()
    ref_a = bn.posterior(["cloudy"], ev_a)["cloudy"].detach()
    ref_b = bn.posterior(["cloudy"], ev_b)["cloudy"].detach()
    run = Interleaving(pause, pause)  # one network: each thread pauses in its own first pass
    out = run.run(lambda: bn.posterior(["cloudy"], ev_a)["cloudy"].detach(),
                  lambda: bn.posterior(["cloudy"], ev_b)["cloudy"].detach())
    assert run.errors == []
    assert torch.allclose(out["A"], ref_a) and torch.allclose(out["B"], ref_b)
    assert torch.equal(norm.running_mean, mean0) and torch.equal(norm.num_batches_tracked, count0)


# ---------------------------------------------------------------------------------------------- finding 5


def test_concurrent_sampling_with_generators_is_reproducible():
    """BayesNet.sample(generator=g) with a dropout network in training mode, two threads with their own
    generators: the samples are those of the same calls made one after the other, and the caller's torch
    stream does not move (each call seeded torch's global stream from its generator and restored it)."""
    torch.manual_seed(0)
    pause = Pause()
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), pause, torch.nn.Dropout(0.5), torch.nn.Tanh(),
                              torch.nn.Linear(16, 2))
    bn = _bn(net)
    bn.train()
    ev = {"wet": torch.tensor([1, 0, 1, 1, 0, 1, 0, 0])}

    def call(seed):
        out = bn.sample(50, evidence=ev, generator=torch.Generator().manual_seed(seed))
        return torch.stack([out[v] for v in ("cloudy", "rain")])
    ref_a, ref_b = call(1), call(2)
    run = Interleaving(pause, pause)
    state = torch.get_rng_state()
    out = run.run(lambda: call(1), lambda: call(2))
    assert run.errors == []
    assert torch.equal(out["A"], ref_a) and torch.equal(out["B"], ref_b)
    assert torch.equal(torch.get_rng_state(), state)
