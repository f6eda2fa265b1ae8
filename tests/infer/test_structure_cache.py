"""The weak-keyed plan cache of hybridpgm.infer.structure_cache, and the queries that use it under torch.func."""

import dataclasses
import gc

import pytest
import torch
from torch.func import functional_call, grad

from hybridpgm.graphs import MarkovNet
from hybridpgm.infer import ChromaticGibbs, MeanField
from hybridpgm.infer.structure_cache import StructureCache
from tests.reused_blocks import Blocks


def test_a_plan_is_kept_while_its_tensor_is_the_same_and_dropped_when_it_changes_or_goes():
    cache, builds = StructureCache(max_entries=2), []
    index = torch.tensor([0, 1, 2])

    def build():
        builds.append(1)
        return torch.zeros(3)

    first = cache.get((index,), 3, build)
    assert cache.get((index,), 3, build) is first and len(builds) == 1
    assert cache.get((index,), 4, build) is not first and len(builds) == 2  # other plain values: another plan
    index.add_(1)  # an in-place change bumps the version: rebuilt
    cache.get((index,), 3, build)
    assert len(builds) == 3
    del index, first
    gc.collect()
    assert len(cache) == 0  # the plans went with their tensor (none holds a view of it)



def test_an_index_put_at_the_address_of_the_planned_index_is_planned_anew():
    """Found by an audit: a plan was keyed on the tensor's version counter and data pointer.  ``.data =`` moves no
    version counter and frees the old storage, so a second replacement allocated at the old address (CUDA's caching
    allocator does that at once; tests/reused_blocks.Blocks does it every time) matched, and the plan of the old
    index was returned.  The entry holds the storage it was planned from now."""
    cache, blocks = StructureCache(), Blocks(64)
    index = torch.empty(0, dtype=torch.long)
    index.data = blocks.tensor(torch.tensor([0, 1, 2]))
    assert cache.get((index,), 3, lambda: index.tolist()) == [0, 1, 2]
    index.data = blocks.tensor(torch.tensor([2, 1, 0]))  # frees the planned storage
    index.data = blocks.tensor(torch.tensor([1, 2, 0]))  # (was put at its address)
    assert cache.get((index,), 3, lambda: index.tolist()) == [1, 2, 0]  # before: [0, 1, 2]

def test_a_transposed_index_at_the_same_address_and_version_is_planned_anew():
    """Found by an audit: the key (version, data pointer, shape, device) did not tell ``index.data = index.t()`` on
    a square index -- the same storage, address, shape and version -- from the index planned."""
    cache = StructureCache()
    index = torch.tensor([[0, 1], [2, 0]])
    assert cache.get((index,), 3, lambda: index.tolist()) == [[0, 1], [2, 0]]
    index.data = index.t()
    assert cache.get((index,), 3, lambda: index.tolist()) == [[0, 2], [1, 0]]  # before: [[0, 1], [2, 0]]


def test_inference_tensors_and_transform_wrappers_are_planned_every_time_not_cached():
    """An inference tensor has no version counter; inside a torch.func transform even an index tensor may come
    wrapped, without storage: no key, so the plan is built every time (a ``data_ptr`` of the wrapper raised)."""
    cache, builds = StructureCache(), []
    with torch.inference_mode():
        index = torch.tensor([0, 1])
    cache.get((index,), None, lambda: builds.append(1))
    cache.get((index,), None, lambda: builds.append(1))
    assert len(builds) == 2 and len(cache) == 0

    def planned(x):
        cache.get((x.long(),), None, lambda: builds.append(1))
        return x.sum()

    grad(planned)(torch.tensor([0.0, 1.0]))
    assert len(builds) == 3 and len(cache) == 0


def _chain(seed: int = 0) -> MarkovNet:
    torch.manual_seed(seed)
    net = MarkovNet({f"v{j}": 2 for j in range(5)})
    net.add_factors("p", [[f"v{j}", f"v{j + 1}"] for j in range(4)], torch.randn(4, 2, 2))
    return net


@pytest.mark.parametrize("cached_first", [False, True])
def test_mean_field_under_torch_func_grad_equals_autograd(cached_first):
    """Mean field plans its colour blocks through the cache: under ``torch.func.grad`` the colours come wrapped
    and the plan is built uncached; the gradient is autograd's (torch's "Cannot access data pointer" before)."""
    net = _chain()
    if cached_first:
        net.log_partition(method="mean_field", num_iters=20, tol=0.0)
    table = net.table_potentials.p.detach().clone()
    t = table.clone().requires_grad_()
    expected = torch.autograd.grad(_log_z(net, t), t)[0]
    assert torch.allclose(grad(lambda u: _log_z(net, u))(table), expected, rtol=1e-6, atol=1e-7)


def _log_z(net: MarkovNet, table: torch.Tensor) -> torch.Tensor:
    return functional_call(_Query(net), {"net.table_potentials.p": table}, ())


class _Query(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self):
        return self.net.log_partition(method="mean_field", num_iters=20, tol=0.0).sum()


def test_gibbs_and_mean_field_on_a_factor_graph_run_under_grad():
    """Both samplers of the colour blocks run inside a transform (they raised)."""
    fg = _chain(1).factor_graph()
    grad(lambda u: MeanField(num_iters=5, tol=0.0)(dataclasses.replace(fg, unary=u)).log_z.sum())(fg.unary)

    def drawn(x):
        ChromaticGibbs(num_sweeps=2)(fg, num_chains=3, generator=torch.Generator().manual_seed(0))
        return x.sum()

    grad(drawn)(torch.ones(2))
