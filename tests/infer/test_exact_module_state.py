"""The exact query functions called with a network leave its networks' buffers (batch-norm running statistics) as
the :class:`~hybridpgm.graphs.BayesNet` query methods do, and give the methods' answers."""

import pytest
import torch

from hybridpgm.infer import exact, particle_probe
from tests.graphs.bn_helpers import batch_norm_net, single_thread  # noqa: F401 (autouse fixture)


def _evidence():
    g = torch.Generator().manual_seed(1)
    return {"w": torch.tensor([1, 0, 1, 1, 0]), "u": torch.randn(5, 1, generator=g) * 3 + 2}


# function(bn, ev) and the method answering the same query
QUERIES = {
    "log_evidence": (lambda bn, ev: exact.log_evidence(bn, ev), lambda bn, ev: bn.log_evidence(ev)),
    "posterior": (lambda bn, ev: exact.posterior(bn, "c", ev), lambda bn, ev: bn.posterior("c", ev)),
    "joint": (lambda bn, ev: exact.posterior(bn, ["c"], ev, joint=True),
              lambda bn, ev: bn.posterior(["c"], ev, joint=True)),
    "map_assignment": (lambda bn, ev: exact.map_assignment(bn, ev, return_log_prob=True),
                       lambda bn, ev: bn.map(ev, return_log_prob=True)),
    "posterior_sample": (
        lambda bn, ev: exact.posterior_sample(bn, 4, ev, generator=torch.Generator().manual_seed(2),
                                              return_log_prob=True)[0],
        lambda bn, ev: bn.sample(4, {"u": ev["u"]}, evidence={"w": ev["w"]},
                                 generator=torch.Generator().manual_seed(2))),
}


def _buffers(net):
    return {name: b.clone() for name, b in net.named_buffers()}


def _flat(answer):
    """The tensors of an answer (a tensor, a dict of them, or a tuple of those), in a fixed order."""
    if torch.is_tensor(answer):
        return [answer]
    if isinstance(answer, dict):
        return [t for k in sorted(answer) for t in _flat(answer[k])]
    return [t for a in answer for t in _flat(a)]


@pytest.mark.parametrize("query", sorted(QUERIES))
def test_query_functions_leave_the_running_statistics_and_answer_as_the_methods(query):
    """Old code: each function call moved ``running_mean`` and counted one more batch (0 -> 1)."""
    bn, net = batch_norm_net()
    function, method = QUERIES[query]
    ev = _evidence()
    before = _buffers(net)
    got = function(bn, ev)
    after = _buffers(net)
    assert int(after["1.num_batches_tracked"]) == 0, query
    assert all(torch.equal(before[n], after[n]) for n in before), query
    assert net.training and net[1].training
    want = method(bn, ev)
    assert all(torch.equal(b, net.get_buffer(n)) for n, b in before.items()), query
    got, want = _flat(got), _flat(want)
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and torch.allclose(g, w, rtol=1e-6, atol=1e-9), query


def test_a_query_method_copies_the_buffers_once(monkeypatch):
    """``bn.posterior`` calls :func:`exact.posterior`: the buffers are kept by one context, not one per level."""
    bn, net = batch_norm_net()
    entered = []
    keep = particle_probe.keeping_module_state

    def counting(*owners):
        entered.append(owners)
        return keep(*owners)

    monkeypatch.setattr(particle_probe, "keeping_module_state", counting)
    ev = _evidence()
    before = _buffers(net)
    bn.posterior("c", ev)
    bn.log_evidence(ev)
    bn.map(ev)
    bn.sample(3, {"u": ev["u"]}, evidence={"w": ev["w"]})
    assert len(entered) == 4
    with bn._query():  # functions nested in an open query copy nothing more; the outermost restores
        exact.posterior(bn, "c", ev)
        exact.log_evidence(bn, ev)
    assert len(entered) == 5
    exact.posterior(bn, "c", ev)  # called by itself: its own context
    assert len(entered) == 6
    assert all(torch.equal(b, net.get_buffer(n)) for n, b in before.items())


@pytest.mark.parametrize("query", ["log_evidence", "posterior", "joint"])
def test_a_training_mode_query_function_still_backpropagates(query):
    """The buffers are restored through ``.data``: the batch norm's graph (which saved them) still runs backward,
    and the gradients are the method's."""
    bn, net = batch_norm_net()
    function, method = QUERIES[query]
    ev = _evidence()
    grads = []
    for ask in (function, method):
        net.zero_grad()
        loss = sum((t * torch.arange(1, t.numel() + 1, dtype=t.dtype).reshape(t.shape)).sum()
                   for t in _flat(ask(bn, ev)))
        loss.backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    assert int(net[1].num_batches_tracked) == 0
    assert any(bool(g.abs().sum() > 0) for g in grads[0])
    for g, w in zip(*grads):
        assert torch.allclose(g, w, rtol=1e-6, atol=1e-9), query


def test_posterior_sample_with_a_generator_repeats_under_dropout_and_keeps_the_global_stream():
    """Called directly (not through bn.sample), the function seeds the networks' dropout from the generator too."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    from hybridpgm.graphs import BayesNet, cpd

    bn = BayesNet().add("c", cpd.Table([0.3, 0.7])).add("w", cpd.Neural(net, ["c"], 2, context=["u"])).train()
    ev = {"u": torch.randn(6, 1, generator=torch.Generator().manual_seed(2))}
    state = torch.get_rng_state()
    draws = [exact.posterior_sample(bn, 50, ev, generator=torch.Generator().manual_seed(3))["w"] for _ in range(2)]
    assert torch.equal(draws[0], draws[1])
    assert torch.equal(torch.get_rng_state(), state)
