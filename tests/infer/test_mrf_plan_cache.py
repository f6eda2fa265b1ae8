"""The exact queries' structure cache (:func:`hybridpgm.infer.mrf_plan._structure`) is looked up without reading
the scopes to the host at every call.

Found by an audit: every exact query (and every ``"auto"`` choice, :func:`~hybridpgm.infer.mrf_exact.exact_is_cheap`)
keyed the cache by the structure's content, ``g.variables.tolist()`` and the hash of the nested tuple:
:math:`O(F)` host work per call (54 us on a 16x16 grid, a device sync per group on CUDA); and a structure the
``"auto"`` choice found too costly was not remembered, so its greedy order was found again at every call (2.7 s
per call on a 64x64 grid).  The scopes are now read once per ``variables`` tensor
(:class:`~hybridpgm.infer.structure_cache.StructureCache`, by identity and version), and the too-costly verdict is
kept (a later full query still searches).
"""

import dataclasses
import gc
import sys

import pytest
import torch

from hybridpgm.graphs import ising_grid
from hybridpgm.infer import mrf_exact, mrf_plan
from tests.infer.test_mrf_plan import plans_built  # noqa: F401 (a fixture)


@pytest.fixture
def scope_reads(monkeypatch):
    """Counts ``tolist`` calls on integer tensors of two dims (the groups' ``[F, k]`` variables)."""
    calls, real = [], torch.Tensor.tolist

    def spy(t):
        if t.dim() == 2 and not t.is_floating_point():
            calls.append(tuple(t.shape))
        return real(t)

    monkeypatch.setattr(torch.Tensor, "tolist", spy)
    mrf_plan._SCOPES.clear()
    return calls


def test_repeated_queries_read_the_scopes_once(scope_reads, plans_built):  # noqa: F811
    """Fails before: one read of the ``[12, 2]`` scopes per call (4 here)."""
    mrf = ising_grid(3, 3, 0.3)
    for _ in range(2):
        mrf.log_partition("exact")
        mrf_exact.exact_is_cheap(mrf.factor_graph())
    assert scope_reads == [(12, 2)] and len(plans_built) == 1


def test_a_structure_too_costly_for_auto_is_remembered_and_a_full_query_still_searches(plans_built,  # noqa: F811
                                                                                         monkeypatch):
    """Fails before: the greedy order was found again at every ``exact_is_cheap`` call."""
    monkeypatch.setattr(mrf_plan, "SEARCH_ABOVE", 100.0)
    fg = ising_grid(4, 4, 0.3).factor_graph()
    assert not mrf_exact.exact_is_cheap(fg) and not mrf_exact.exact_is_cheap(fg)
    assert [o for o, _ in plans_built] == ["greedy"]
    assert mrf_plan._structure(fg) is not None
    assert [o for o, _ in plans_built] == ["greedy", "greedy", "auto"]
    monkeypatch.setattr(mrf_plan, "SEARCH_ABOVE", 1e30)  # the verdict is compared with the limit of each call
    mrf_plan._TOO_COSTLY.clear()
    assert mrf_exact.exact_is_cheap(fg)


def test_a_scope_tensor_changed_in_place_or_a_rebuilt_net_gets_its_own_plan():
    """Guard (passes before and after): no stale plan.  The variables of a group changed in place (version bump)
    give the fold of the new scopes; a net rebuilt with the same structure shares the plan; another structure
    gets another one."""
    fg = ising_grid(1, 3, 0.2).factor_graph()
    first = mrf_plan._structure(fg)
    assert [r.tolist() for r in first.fold[0]] == [[0, 3], [1, 2]]
    variables = fg.groups[0].variables.clone()
    fg = dataclasses.replace(fg, groups=[dataclasses.replace(fg.groups[0], variables=variables)])
    assert mrf_plan._structure(fg) is first  # same content: the same plan
    variables[1] = torch.tensor([2, 1])     # in place: x_0_2 - x_0_1 now
    again = mrf_plan._structure(fg)
    assert again is not first and [r.tolist() for r in again.fold[0]] == [[0, 2], [1, 3]]
    assert mrf_plan._structure(ising_grid(1, 3, 0.5).factor_graph()) is first


def _deep_size(value) -> int:
    """Bytes of ``value`` and of everything inside its tuples (what a cache key keeps alive)."""
    if isinstance(value, tuple):
        return sys.getsizeof(value) + sum(_deep_size(v) for v in value)
    return sys.getsizeof(value)


@pytest.mark.parametrize("side", [10, 20])
def test_a_too_costly_verdict_keeps_a_key_of_constant_size_after_the_network_is_gone(monkeypatch, side):
    """Found by an audit (LONGRUN): the keys held every factor's scope as Python ints, 6.5 MiB per structure at
    160x160, kept (64 of them) after the networks were deleted.  Fails before: 25 KiB at 10x10, 103 KiB at 20x20.
    Now a digest: the same few hundred bytes whatever the size."""
    monkeypatch.setattr(mrf_plan, "SEARCH_ABOVE", 100.0)
    mrf_plan._STRUCTURES.clear()
    mrf_plan._TOO_COSTLY.clear()
    mrf = ising_grid(side, side, 0.3)
    assert not mrf_exact.exact_is_cheap(mrf.factor_graph())
    del mrf
    gc.collect()
    (key,) = mrf_plan._TOO_COSTLY
    assert _deep_size(key) < 1024


def test_the_structures_kept_are_bounded_by_their_operands_too(monkeypatch):
    """Found by an audit (LONGRUN): the structures were bounded by count alone, while a plan keeps about 1.5 KiB
    per operand (21 MiB for a 4x2000 grid, 64 kept).  Fails before: all four chains kept.  The least recently used
    go first; a structure over the limit alone is still kept (the newest)."""
    monkeypatch.setattr(mrf_plan, "_MAX_OPERANDS", 60, raising=False)
    mrf_plan._STRUCTURES.clear()
    chains = [ising_grid(1, n, 0.3).factor_graph() for n in (21, 22, 23, 24)]  # 20 to 23 pair factors each
    first = [mrf_plan._structure(fg) for fg in chains]
    assert [len(s.plan.steps) + 1 for s in first] == [20, 21, 22, 23]  # operands: one step fewer
    assert list(mrf_plan._STRUCTURES.values()) == first[2:]  # 45 operands; one more chain would pass 60
    assert mrf_plan._structure(chains[2]) is first[2]  # a hit: the same plan, now the most recent
    mrf_plan._structure(ising_grid(1, 80, 0.3).factor_graph())
    assert len(mrf_plan._STRUCTURES) == 1 and len(next(iter(mrf_plan._STRUCTURES.values())).plan.steps) == 78


def test_the_digest_tells_structures_apart_by_shape_cards_and_values_not_by_index_dtype():
    """Guard of the digest (new): it covers each group's shape (a ``[2, 2]`` scope and a ``[1, 4]`` one of the same
    numbers differ), the cardinalities and the values; an ``int32`` index gives the plan of the ``int64`` one, as
    equal Python ints did."""
    fg = ising_grid(2, 2, 0.3).factor_graph()
    first = mrf_plan._structure(fg)
    variables = fg.groups[0].variables
    same = dataclasses.replace(fg, groups=[dataclasses.replace(fg.groups[0], variables=variables.int())])
    assert mrf_plan._structure(same) is first
    digest = mrf_plan._digest("scopes", [torch.tensor([[0, 1], [2, 3]])])
    assert digest != mrf_plan._digest("scopes", [torch.tensor([[0, 1, 2, 3]])])
    assert digest != mrf_plan._digest("scopes", [torch.tensor([[0, 1], [3, 2]])])
    three = dataclasses.replace(fg, cardinalities=fg.cardinalities + torch.tensor([0, 0, 0, 1]))
    assert mrf_plan._key(three) != mrf_plan._key(fg)
