"""An evidence table pickled or deep-copied, queried on an empty batch, and its ``max_bytes`` checked
(:class:`hybridpgm.infer.EvidenceTable`)."""

import copy
import pickle

import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


def _net() -> BayesNet:
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor([0.4, 0.6], dtype=torch.float64)))
    bn.add("b", cpd.Table(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], dtype=torch.float64), ["a"]))
    bn.add("c", cpd.Table(torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]], dtype=torch.float64), ["b"]))
    return bn


@pytest.mark.parametrize("layout", ["subsets", "compact"])
@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_a_copied_table_answers_for_its_copied_network(layout, how):
    bn = _net()
    table = bn.compile_evidence(["b"], layout=layout)
    copied = pickle.loads(pickle.dumps(table)) if how == "pickle" else copy.deepcopy(table)
    ev = {"b": torch.tensor([0, 2, -1])}
    torch.testing.assert_close(copied.log_evidence(ev), bn.log_evidence(ev), rtol=1e-12, atol=1e-12)
    got, want = copied.posterior(None, ev), bn.posterior(None, ev)
    for q in want:
        torch.testing.assert_close(got[q], want[q], rtol=1e-12, atol=1e-12)
    # the copy follows its own network: changing it makes the copy stale, not the original
    with torch.no_grad():
        copied.bn.cpds["a"].logits.add_(0.5)
    with pytest.raises(ConfigError, match="changed"):
        copied.log_evidence(ev)
    torch.testing.assert_close(table.log_evidence(ev), bn.log_evidence(ev), rtol=1e-12, atol=1e-12)


def test_a_stale_table_stays_stale_when_copied():
    bn = _net()
    table = bn.compile_evidence(["b"])
    with torch.no_grad():
        bn.cpds["a"].logits.add_(0.5)
    for copied in (pickle.loads(pickle.dumps(table)), copy.deepcopy(table)):
        with pytest.raises(ConfigError, match="changed"):
            copied.log_evidence({"b": 0})


@pytest.mark.parametrize("layout", ["subsets", "compact"])
def test_an_empty_batch_gets_empty_answers(layout):
    bn = _net()
    table = bn.compile_evidence(["b"], layout=layout)
    empty = {"b": torch.tensor([], dtype=torch.long)}
    assert table.log_evidence(empty).shape == (0,)
    assert table.posterior("c", empty).shape == bn.posterior("c", empty).shape == (0, 2)
    got = table.posterior(None, empty)
    assert {q: tuple(p.shape) for q, p in got.items()} == {"a": (0, 2), "c": (0, 2)}
    assert all(p.dtype == torch.float64 for p in got.values())


@pytest.mark.parametrize("max_bytes", ["1e9", None, True, float("nan"), [1]])
def test_max_bytes_must_be_a_number(max_bytes):
    bn = _net()
    with pytest.raises(ConfigError, match="max_bytes"):
        if max_bytes is None:  # bn.compile_evidence takes None for its default: the table's own check
            from hybridpgm.infer import EvidenceTable
            EvidenceTable(bn, ["b"], max_bytes=None)
        else:
            bn.compile_evidence(["b"], max_bytes=max_bytes)
