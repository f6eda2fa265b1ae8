"""Which tensors a cache or a detached copy must not take (hybridpgm.tensor_tracking)."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import forward_ad
from torch.func import grad, jacfwd, jvp, vmap

from hybridpgm.tensor_tracking import carries_tangent, unversioned

X = torch.ones(3)


def _seen_inside(transform) -> tuple[bool, bool]:
    """``(unversioned(x), carries_tangent(x))`` of the input ``x`` as the function ``transform`` transforms sees it."""
    seen = []

    def f(x):
        seen.append((unversioned(x), carries_tangent(x)))
        return (x * x).sum()

    transform(f)
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize("transform, expected", [
    (lambda f: f(X), (False, False)),
    (lambda f: f(X.clone().requires_grad_()), (False, False)),  # reverse mode: requires_grad says it
    (lambda f: jvp(f, (X,), (X,)), (True, True)),
    (lambda f: jacfwd(f)(X), (True, True)),
    (lambda f: grad(f)(X), (True, True)),
    (lambda f: vmap(lambda r: f(r).unsqueeze(0))(X.unsqueeze(0)), (True, True)),
], ids=["plain", "requires_grad", "jvp", "jacfwd", "grad", "vmap"])
def test_inside_transforms(transform, expected):
    assert _seen_inside(transform) == expected


def test_inference_tensor_is_unversioned_without_a_tangent():
    with torch.inference_mode():
        t = torch.ones(2)
    assert unversioned(t) and not carries_tangent(t)


def test_forward_ad_dual_carries_a_tangent_at_its_level_only():
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(torch.ones(2), torch.ones(2))
        assert carries_tangent(dual) and not unversioned(dual)
        assert not carries_tangent(torch.ones(2))  # a plain tensor inside a dual level
    assert not carries_tangent(dual)  # the level closed: the tangent is gone
