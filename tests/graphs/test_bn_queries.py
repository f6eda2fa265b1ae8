"""The caches of a BayesNet's exact queries across a move (hybridpgm.graphs.bn_queries).

Found by an audit: the normalised tables a query caches (hybridpgm.infer.bn_factors.node_table) hold the CPDs'
tensors and storages as they were, and a Table's memos hold its mask and prior; a move (``to``, ``double``,
``cuda`` ...) replaced those tensors, yet the cache kept the old memory until the next query of each node (never,
for a node no later query reads).  ``_apply`` drops them now, with the reverse passes' workspace."""

import pytest
import torch
from torch.multiprocessing.reductions import StorageWeakRef

from hybridpgm.graphs import BayesNet, cpd, read_bif, reverse_pass
from hybridpgm.infer.bn_evidence import network_facts
from tests.graphs.bn_helpers import bundled_bif


def _net(learnable: bool, prior=None) -> BayesNet:
    return (BayesNet().add("rain", cpd.Table([0.8, 0.2], learnable=learnable, prior=prior))
            .add("wet", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["rain"], learnable=learnable)))


def _storages(bn: BayesNet) -> list:
    return [StorageWeakRef(t.untyped_storage()) for c in bn.cpds.values() for t in (*c.parameters(), *c.buffers())
            if t.is_floating_point()]


@pytest.mark.parametrize("move", ["double", "to", "half"])
@pytest.mark.parametrize("learnable", [True, False], ids=["parameter", "buffer"])
def test_a_move_frees_the_tensors_the_query_caches_held(learnable, move):
    bn, ev = _net(learnable, prior=[2.0, 2.0]), {"wet": torch.tensor([1, 0])}
    with torch.no_grad():
        before = bn.posterior("rain", ev)  # the tables cached, holding the float32 storages
    assert network_facts(bn).tables
    old = _storages(bn)
    {"double": bn.double, "to": lambda: bn.to(torch.float64), "half": bn.half}[move]()
    assert not network_facts(bn).tables
    assert all(ref.expired() for ref in old)  # before: the cache entries (and the prior's memo) held them
    with torch.no_grad():
        after = bn.posterior("rain", ev)  # answered from the moved tables
    assert after.dtype == bn.cpds["rain"].logits.dtype != torch.float32
    torch.testing.assert_close(after.float(), before, rtol=1e-3, atol=1e-3)


def test_a_move_frees_the_reverse_passes_workspace(monkeypatch):
    monkeypatch.setattr(reverse_pass, "LARGE", 0)  # every intermediate in the workspace: this small net uses it
    bn = read_bif(bundled_bif("alarm"), dtype=torch.float32)
    torch.manual_seed(3)
    s, g = bn.sample(9), torch.Generator().manual_seed(4)
    with torch.no_grad():  # rows observed in part: the marginals by a reverse pass (as tests/infer/test_bn_contract)
        bn.posterior(None, {v: torch.where(torch.rand(9, generator=g) < 0.5, s[v], -1) for v in bn.nodes[::4]})
    assert bn.plan_cache.workspace.nbytes > 0
    bn.double()
    assert bn.plan_cache.workspace.nbytes == 0  # before: the float32 buffer stayed until a query replaced it


def test_a_move_alone_of_a_table_frees_its_memos_tensors():
    """A Table moved by itself (or by a module holding it) drops its memos of the mask and the prior."""
    table = cpd.Table([[1.0, 0.0], [0.5, 0.5]], ["a"], prior=[[2.0, 1.0], [2.0, 2.0]])
    table.log_prior()
    prior = StorageWeakRef(table.prior.untyped_storage())
    table.double()
    assert prior.expired()  # before: held by the prior's memo
    assert table.log_prior().dtype == torch.float64
