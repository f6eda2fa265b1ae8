"""Which tensors a cache or a detached copy must not take (hybridpgm.tensor_tracking)."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch.autograd import forward_ad
from torch.func import grad, jacfwd, jvp, vmap

from hybridpgm.tensor_tracking import carries_tangent, held_storages, unversioned, value_key, without_graph
from tests.reused_blocks import Blocks

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


def test_held_storages_keep_the_address_a_key_read():
    """A cache entry holding them: ``.data =`` frees no storage the key's pointer was read from, so no later
    allocation (Blocks hands out a block as soon as no storage uses it) takes that address."""
    blocks = Blocks(16, count=3)
    t = blocks.tensor(torch.ones(2))
    address = t.data_ptr()
    held = held_storages([t, torch.ones(2).to_sparse()])
    assert held[0]._cdata == t.untyped_storage()._cdata and held[1] is None  # a sparse tensor has none
    t.data = blocks.tensor(torch.zeros(2))
    t.data = blocks.tensor(torch.full((2,), 3.0))  # the first block is held: the third
    assert t.data_ptr() != address and held[0].data_ptr() == address
    del held
    t.data = blocks.tensor(torch.full((2,), 4.0))  # released: the block can be handed out again
    assert t.data_ptr() == address


def test_a_pickle_of_held_storages_is_an_empty_plain_tuple_and_a_deep_copy_the_same_storages():
    """Torch cannot unpickle an untyped storage pickled by itself (held in a plain tuple, a network pickled with
    its cached tables failed to load: tests/infer/test_evidence_table_copies.py), and a pickle naming a class of
    this version could not be read by an older one (review): an empty ``tuple``.  A deep copy's key names the
    original's addresses, which it keeps reserved by holding the same storages."""
    held = held_storages([torch.ones(2)])
    data = pickle.dumps(held)
    assert b"HeldStorages" not in data and pickle.loads(data) == () and type(pickle.loads(data)) is tuple
    assert copy.deepcopy(held) is held and len(held) == 1


@pytest.mark.parametrize("replace", [
    lambda t: t.t(),  # a square table's transpose: same storage, address and version
    lambda t: t.view(torch.int32),  # the same bits read as another dtype
    lambda t: t.view(-1)[:2].view(1, 2),  # another shape at the same address
    lambda t: t.as_strided((2, 2), (0, 1)),  # the first row twice
], ids=["transpose", "dtype", "shape", "strides"])
def test_value_key_tells_views_of_the_same_storage_at_the_same_address_and_version(replace):
    """Found by an audit: caches keyed a tensor on its version and data pointer; ``t.data = t.t()`` keeps both."""
    t = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    key = value_key(t)
    t.data = replace(t.data)
    assert t.data_ptr() == key[1] and t._version == key[0]
    assert value_key(t) != key


def test_value_key_counts_in_place_writes_and_set_():
    t = torch.zeros(2)
    key = value_key(t)
    t.add_(1)
    assert value_key(t) != key and value_key(t)[1:] == key[1:]
    key = value_key(t)
    t.set_(t.untyped_storage(), 0, (2,), (1,))  # the same storage, shape and strides set again: a version
    assert value_key(t) != key and value_key(t)[1:] == key[1:]


def _graph_then_cut(x: torch.Tensor) -> torch.Tensor:
    """``sin(x + leaf)`` recorded by autograd (``leaf`` an internal zero that requires grad), then
    :func:`without_graph`."""
    leaf = torch.zeros(x.shape, dtype=x.dtype, requires_grad=True)
    with torch.enable_grad():
        y = (x + leaf).sin()
    assert y.requires_grad
    out = without_graph(y)
    assert not out.requires_grad and out.grad_fn is None
    return out


def test_without_graph_keeps_a_forward_mode_tangent_that_detach_drops():
    x, v = torch.linspace(-1, 1, 3, dtype=torch.float64), torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(jvp(_graph_then_cut, (x,), (v,))[1], x.cos() * v)
    torch.testing.assert_close(jacfwd(_graph_then_cut)(x), torch.diag(x.cos()))
    with forward_ad.dual_level():
        tangent = forward_ad.unpack_dual(_graph_then_cut(forward_ad.make_dual(x, v))).tangent
        assert forward_ad.unpack_dual(forward_ad.make_dual(x, v).sin().detach()).tangent is None  # what detach does
    torch.testing.assert_close(tangent, x.cos() * v)
    y = x.clone().requires_grad_()
    assert without_graph(y).data_ptr() == y.data_ptr()  # no tangent: a plain detach, no copy
