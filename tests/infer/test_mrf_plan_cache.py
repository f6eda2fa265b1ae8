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
