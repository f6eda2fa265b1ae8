"""Which torch.func transforms are active (hybridpgm.transform_scope)."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import forward_ad

from hybridpgm.errors import ConfigError
from hybridpgm.transform_scope import draws_differ_under_vmap, under_torch_func, under_vmap, vmap_reads_refused


def _seen_inside(transform) -> tuple[bool, bool]:
    """``(under_vmap(), under_torch_func())`` as read inside the function ``transform`` transforms."""
    seen = []

    def f(x):
        seen.append((under_vmap(), under_torch_func()))
        return (x * x).sum()

    transform(f)
    assert len(seen) == 1
    return seen[0]


X = torch.ones(3)

TRANSFORMS = {
    # name: (how the function runs, under_vmap, under_torch_func)
    "none": (lambda f: f(X), False, False),
    "vmap": (lambda f: torch.func.vmap(f)(torch.ones(2, 3)), True, True),
    "grad": (lambda f: torch.func.grad(f)(X), False, True),
    "vjp": (lambda f: torch.func.vjp(f, X), False, True),
    "jvp": (lambda f: torch.func.jvp(f, (X,), (X,)), False, True),
    "jacrev": (lambda f: torch.func.jacrev(f)(X), False, True),
    "vmap(grad)": (lambda f: torch.func.vmap(torch.func.grad(f))(torch.ones(2, 3)), True, True),
    "grad(vmap)": (lambda f: torch.func.grad(lambda x: torch.func.vmap(f)(x).sum())(torch.ones(2, 3)), True, True),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_each_transform_is_seen(name):
    """``under_vmap`` is true exactly where a ``vmap`` level is on the stack, at any depth (a ``grad`` around or
    inside it too); ``under_torch_func`` wherever any transform is."""
    transform, vmap, func = TRANSFORMS[name]
    assert _seen_inside(transform) == (vmap, func)


def test_plain_autograd_forward_ad_and_grad_modes_are_no_transform():
    """Only torch.func's transforms count: ``backward``, ``torch.autograd.grad``, dual tensors of
    :mod:`torch.autograd.forward_ad` and the grad modes leave both ``False``."""
    x = torch.ones(3, requires_grad=True)
    seen = []

    class Probe(torch.autograd.Function):
        @staticmethod
        def forward(v):
            return v.clone()

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        @staticmethod
        def backward(ctx, g):
            seen.append((under_vmap(), under_torch_func()))  # read while autograd runs the backward pass
            return g

    Probe.apply(x).sum().backward()
    torch.autograd.grad(Probe.apply(x).sum(), x)
    with forward_ad.dual_level():
        forward_ad.make_dual(torch.ones(3), torch.ones(3))
        seen.append((under_vmap(), under_torch_func()))
    with torch.no_grad():
        seen.append((under_vmap(), under_torch_func()))
    with torch.inference_mode():
        seen.append((under_vmap(), under_torch_func()))
    assert seen == [(False, False)] * 5


def test_a_failed_transform_leaves_no_level_behind():
    """After a transformed function raised, the stack is empty again: nothing is left 'under vmap'."""
    def fails(x):
        assert under_vmap() and under_torch_func()
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        torch.func.vmap(fails)(torch.ones(2))
    assert (under_vmap(), under_torch_func()) == (False, False)


def test_a_random_draw_refused_by_vmap_passes_through_as_torchs_error():
    """Under ``vmap``'s default ``randomness="error"`` torch refuses a draw with an error that names the fix
    (``randomness="same"``); it is not turned into the host-read ``ConfigError`` (which blamed host reads), and
    the same block with ``randomness="same"`` runs."""

    def drawn(x):
        with vmap_reads_refused("a host read"):
            return torch.rand(()) * x

    with pytest.raises(RuntimeError, match="randomness") as caught:
        torch.func.vmap(drawn)(torch.ones(3))
    assert not isinstance(caught.value, ConfigError)
    assert torch.func.vmap(drawn, randomness="same")(torch.ones(3)).shape == (3,)


@pytest.mark.parametrize("randomness, expected", [("different", True), ("same", False), ("error", False)])
def test_draws_differ_only_under_a_vmap_with_different_randomness(randomness, expected):
    seen = []

    def f(x):
        seen.append(draws_differ_under_vmap())
        return x * 2

    torch.func.vmap(f, randomness=randomness)(torch.ones(3))
    torch.func.vmap(torch.func.vmap(f, randomness="same"), randomness=randomness)(torch.ones(2, 3))  # any level
    assert seen == [expected, expected]
    assert draws_differ_under_vmap() is False
