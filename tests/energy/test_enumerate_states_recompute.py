"""The chunked exact enumeration recomputes each chunk from the forward pass's tensors
(hybridpgm/energy/enumerate_states.py).

Audit (audit_grad): with several chunks each chunk is checkpointed, and the backward pass recomputed it from the
module's attributes at backward time: under :func:`torch.func.functional_call` with other parameter values (put
back when the call returns) the value was right but the gradient was not, e.g. ``RBM(4, 3)`` with its parameters
+ 0.7, ``chunk_size=2``: ``hidden_bias`` gradient ``[0.5591, 0.9475, 0.9728]`` against ``[0.9610, 0.9475,
0.9728]``; ``DBM([4, 3, 2])`` off by 0.70; an in-place edit before ``backward()`` was read the same way; and
``torch.func.grad`` raised torch's "don't yet support saved tensor hooks", and a gradient of a call made inside
a forward-mode AD level torch's ``CheckpointError``.  Each case against the same call unchunked (one chunk,
nothing recomputed), in float64.
"""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as forward_ad
from torch.autograd import gradgradcheck
from torch.func import functional_call

from tests.energy.brute_force import all_states, random_dbm, random_rbm

CASES = {
    # name: (model factory, the call, chunk size giving several chunks)
    "rbm-hidden": (lambda: random_rbm(4, 3, seed=1), lambda m, cs: m.log_partition(differentiable=True,
                                                                                    chunk_size=cs), 2),
    "rbm-visible": (lambda: random_rbm(3, 5, seed=2), lambda m, cs: m.log_partition(differentiable=True,
                                                                                     chunk_size=cs), 2),
    "rbm-gaussian": (lambda: random_rbm(4, 3, seed=3, visible="gaussian"),
                     lambda m, cs: m.log_partition(differentiable=True, chunk_size=cs), 2),
    "dbm-log-z": (lambda: random_dbm([4, 3, 2], seed=4), lambda m, cs: m.log_partition(differentiable=True,
                                                                                        chunk_size=cs), 2),
    "dbm-sum-over-h": (lambda: random_dbm([2, 2, 3, 1, 2], seed=5),
                       lambda m, cs: m.unnormalized_log_prob(all_states(2), chunk_size=cs).sum(), 3),
}


class _Call(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, call) -> None:
        super().__init__()
        self.model = model
        self.call = call

    def forward(self) -> torch.Tensor:
        return self.call(self.model)


def _functional(name: str, chunked: bool):
    """``(f, values)``: ``f(*values)`` is the case's call with the model's parameters replaced through
    :func:`functional_call` by ``values`` (the model's own + 0.7, so that they differ from what it holds)."""
    build, call, chunk = CASES[name]
    wrapper = _Call(build(), lambda m: call(m, chunk if chunked else None))
    names = [n for n, _ in wrapper.named_parameters()]
    values = tuple((p.detach() + 0.7).requires_grad_() for _, p in wrapper.named_parameters())

    def f(*tensors: torch.Tensor) -> torch.Tensor:
        return functional_call(wrapper, dict(zip(names, tensors, strict=True)), ())

    return f, values


@pytest.mark.parametrize("name", list(CASES))
def test_functional_call_gradient_is_the_unchunked_one(name):
    """Fails on the old code (the recomputation read the module's own parameters)."""
    plain, values = _functional(name, chunked=False)
    chunked, _ = _functional(name, chunked=True)
    want = torch.autograd.grad(plain(*values), values)
    got = chunked(*values)
    torch.testing.assert_close(got, plain(*values), rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(got, values), want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["rbm-hidden", "dbm-log-z"])
def test_second_derivatives_of_the_chunked_enumeration(name):
    """``gradgradcheck`` (float64 finite differences of the gradient) with chunks; fails on the old code."""
    chunked, values = _functional(name, chunked=True)
    assert gradgradcheck(chunked, values)


@pytest.mark.parametrize("name", list(CASES))
def test_torch_func_grad_and_hessian_with_chunks(name):
    """``torch.func.grad`` and ``torch.func.hessian`` with chunks equal the unchunked autograd results; the old
    code raised torch's "don't yet support saved tensor hooks"."""
    plain, values = _functional(name, chunked=False)
    chunked, _ = _functional(name, chunked=True)
    detached = tuple(v.detach() for v in values)
    argnums = tuple(range(len(values)))
    want = torch.autograd.grad(plain(*values), values)
    for a, b in zip(torch.func.grad(chunked, argnums=argnums)(*detached), want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    got_h = torch.func.hessian(chunked, argnums=argnums[-1])(*detached)  # the last bias block
    want_h = torch.autograd.functional.hessian(lambda last: plain(*values[:-1], last), detached[-1])
    torch.testing.assert_close(got_h, want_h, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["rbm-hidden", "rbm-visible", "dbm-log-z", "dbm-sum-over-h"])
def test_an_in_place_edit_before_backward_changes_nothing(name):
    """The gradient is the one at the values of the forward pass; the old code recomputed the chunks from the
    edited parameters."""
    build, call, chunk = CASES[name]
    model = build()
    params = list(model.parameters())
    want = torch.autograd.grad(call(model, None), params)
    out = call(model, chunk)
    with torch.no_grad():
        for p in params:
            p.add_(0.7)
    for a, b in zip(torch.autograd.grad(out, params), want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["rbm-hidden", "dbm-sum-over-h"])
def test_forward_mode_with_chunks(name):
    """Inside a forward-AD level the tangent is the gradient's projection, and the primal's gradient, taken
    there or after the level is left, the unchunked one.  The old code raised torch's "CheckpointError: A
    different number of tensors was saved during the original forward and recomputation" for both gradients
    (checkpointing without the level's tangents, the recomputation saved fewer tensors)."""
    plain, values = _functional(name, chunked=False)
    chunked, _ = _functional(name, chunked=True)
    want = torch.autograd.grad(plain(*values), values)
    tangents = [torch.full_like(v, 0.5) for v in values]
    projected = sum((g * t).sum() for g, t in zip(want, tangents, strict=True))
    for inside in (True, False):
        with forward_ad.dual_level():
            out = chunked(*(forward_ad.make_dual(v, t) for v, t in zip(values, tangents, strict=True)))
            primal, tangent = forward_ad.unpack_dual(out)
            torch.testing.assert_close(tangent, projected, rtol=1e-10, atol=1e-12)
            if inside:
                got = torch.autograd.grad(primal, values)
        if not inside:
            got = torch.autograd.grad(primal, values)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_the_graph_keeps_no_chunk():
    """Guard of the memory bound the chunks exist for: outside the checkpoints the graph saves nothing of a
    chunk's size (``2**12`` visible states of ``RBM(12, 14)`` in chunks of 64: a chunk's states are ``64 x 12``,
    its pre-activations ``64 x 14``); what it saves is no larger than the weight (the forward pass's parameters,
    the inputs of each chunk's recomputation) or the stack of the 64 chunks' results."""
    rbm = random_rbm(12, 14, seed=6)
    sizes = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = rbm.log_partition(differentiable=True, chunk_size=64)
    assert sizes and max(sizes) <= max(rbm.weight.numel(), 2**12 // 64) < 64 * 12
    plain = rbm.log_partition(differentiable=True)
    torch.testing.assert_close(out, plain, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(out, list(rbm.parameters())),
                    torch.autograd.grad(plain, list(rbm.parameters())), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("v_requires_grad", [False, True])
def test_an_in_place_edit_of_the_clamped_data_before_backward_changes_nothing(v_requires_grad):
    """A DBM's ``v`` is held as the chunks' input (``inputs=``): the gradients, in the parameters and in ``v``, are
    those of the data of the forward pass.  Fails on the old code: the chunks were recomputed from ``v`` as it was
    at backward time (the gradient of the edited data, silently)."""
    dbm = random_dbm([2, 2, 3, 1, 2], seed=5)
    data = all_states(2)[:3]  # its rows and their flips differ (all four rows would only be permuted)
    params = list(dbm.parameters())

    def grads(v, chunk_size, edit):
        v = v.clone().requires_grad_(v_requires_grad)
        out = dbm.unnormalized_log_prob(v, chunk_size=chunk_size).sum()
        if edit:
            with torch.no_grad():
                v.copy_(1 - v)
        return torch.autograd.grad(out, params + ([v] if v_requires_grad else []))

    for got, want in zip(grads(data, 3, edit=True), grads(data, None, edit=False), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    moved = grads(1 - data, None, edit=False)  # what the edited data would give: the test can tell them apart
    assert not torch.allclose(moved[0], grads(data, None, edit=False)[0])


def test_the_data_is_not_copied_without_a_gradient():
    """``inputs`` reach ``log_f`` as they are where nothing is recomputed: no grad mode, or one chunk."""
    from hybridpgm.energy.enumerate_states import logsumexp_over_states

    data = torch.arange(3.0)
    seen = []

    def log_f(states, d):
        seen.append(d)
        return states.sum(-1) + d.sum()

    with torch.no_grad():
        logsumexp_over_states(log_f, 3, chunk_size=2, inputs=(data,))
    logsumexp_over_states(log_f, 3, inputs=(data,))
    assert len(seen) == 5 and all(d is data for d in seen)
