"""MarkovNet and BayesNet queries refuse torch.export by name (hybridpgm/export_refusal.py) instead of failing
deep inside with a raw torch error (GuardOnDataDependentSymNode, unhashable SymInt)."""

import warnings

import pytest
import torch

from hybridpgm.errors import UnsupportedQueryError
from hybridpgm.graphs import BayesNet, MarkovNet, cpd


def _networks():
    g = torch.Generator().manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 3})
    mrf.add_factor("ab", ["a", "b"], torch.randn(2, 3, generator=g))
    bn = BayesNet()
    bn.add("rain", cpd.Table([0.5, 0.5]))
    bn.add("wet", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["rain"]))
    return mrf, bn


QUERIES = {
    "MarkovNet.log_partition": lambda q, e: q.mrf.log_partition("exact", evidence={"a": e}),
    "MarkovNet.marginals": lambda q, e: q.mrf.marginals("bp", evidence={"a": e}, num_iters=3)["b"],
    "MarkovNet.map_assignment": lambda q, e: q.mrf.map_assignment({"a": e}, method="exact")["b"],
    "MarkovNet.log_prob": lambda q, e: q.mrf.log_prob({"a": e, "b": e}),
    "BayesNet.posterior": lambda q, e: q.bn.posterior("rain", {"wet": e}),
    "BayesNet.log_evidence": lambda q, e: q.bn.log_evidence({"wet": e}),
    "BayesNet.map": lambda q, e: q.bn.map({"wet": e})["rain"],
    "BayesNet.log_prob": lambda q, e: q.bn.log_prob({"rain": e, "wet": e}),
    "EvidenceTable.posterior": lambda q, e: q.table.posterior("rain", {"wet": e}),
    "EvidenceTable.log_evidence": lambda q, e: q.table.log_evidence({"wet": e}),
}


class _Query(torch.nn.Module):
    def __init__(self, name):
        super().__init__()
        self.mrf, self.bn = _networks()
        self.table = self.bn.compile_evidence("wet")  # built eagerly: the export traces the query only
        self.name = name

    def forward(self, e):
        return QUERIES[self.name](self, e)


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_export_is_refused_by_name(name):
    module = _Query(name)
    e = torch.tensor([0, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UnsupportedQueryError, match=rf"^{name} does not export with torch\.export.*"
                                                        r"torch\.compile.*docs/compile\.md"):
            torch.export.export(module, (e,))
    assert module(e).shape[0] == 3  # eager calls are untouched
