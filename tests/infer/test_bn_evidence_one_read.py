"""Every evidence node's checks in one host read (hybridpgm/infer/bn_evidence.py ``parse_evidence``,
hybridpgm/infer/bn_evidence_states.py): a query's reads do not grow with its evidence nodes, and of several bad
nodes the first is named, as when each node was read on its own."""

import math

import pytest
import torch

from hybridpgm.errors import DataError, EvidenceError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer.exact import posterior_sample
from tests.graphs.bn_helpers import single_thread, star  # noqa: F401 (single_thread: autouse fixture)

NODES = ["x1", "x2", "x3", "x4", "x5", "x6"]


def _evidence(count: int) -> dict:
    """Evidence of four rows on the first ``count`` of :data:`NODES`: integer and float tensors by turns, each
    observed in some rows only (``-1`` / ``NaN`` elsewhere) or in every row."""
    rows = [[0, 1, -1, 1], [1, 1, 0, 0], [-1, 0, 1, 1], [0, 0, 1, 0], [1, -1, -1, 0], [1, 0, 0, 1]]
    out = {}
    for i, name in enumerate(NODES[:count]):
        t = torch.tensor(rows[i])
        out[name] = t if i % 2 == 0 else torch.where(t < 0, math.nan, t.double())
    return out


@pytest.mark.parametrize("query", [
    lambda bn, ev: bn.posterior("x0", ev), lambda bn, ev: bn.map(ev),
    lambda bn, ev: posterior_sample(bn, 3, ev, generator=torch.Generator().manual_seed(0))],
    ids=["posterior", "map", "posterior_sample"])
def test_the_host_reads_of_a_query_do_not_grow_with_its_evidence_nodes(host_reads, query):
    """Fails on the old code: one ``tolist`` per evidence node (2, 4 and 7 reads for the posterior of 1, 3 and 6
    nodes, the contraction's one included), on CUDA one synchronisation each."""
    bn = star()
    counts = []
    for count in (1, 3, 6):
        evidence = _evidence(count)
        query(bn, evidence)  # plans and caches made once
        host_reads.clear()
        query(bn, evidence)
        counts.append(len(host_reads))
    assert counts[0] == counts[1] == counts[2], counts


def test_the_answers_are_those_of_each_node_read_on_its_own():
    """The posterior with six nodes' evidence equals that of the evidence given one row at a time (each row's
    missing entries left out of its dict): the flags each node reads decide observed / partial alike."""
    bn = star()
    evidence = _evidence(6)
    got = bn.posterior("x0", evidence)
    for row in range(4):
        one = {name: int(t[row]) for name, t in evidence.items() if not (t[row] < 0 or torch.isnan(t[row].double()))}
        assert torch.allclose(got[row], bn.posterior("x0", one).to(got.dtype), atol=1e-6)


@pytest.mark.parametrize("first, second, message", [
    (torch.tensor([0.5, 1.0, 0.0, 1.0]), torch.tensor([0, 0, 5, 0]),
     r"evidence for 'x2' holds non-integer values: 0\.5 in row 0"),
    (torch.tensor([0, -2, 0, 1]), torch.tensor([[0], [1], [0], [1]]),
     r"value -2 out of range for 'x2' \(cardinality 2\) in row 1; only -1 means not observed"),
    (torch.tensor([0, 1, 0, 1]), torch.tensor([[0], [1], [0], [1]]), r"evidence for 'x5' must be a scalar or \[N\]"),
    (torch.tensor([0, 1, 0, 1], dtype=torch.uint8) * 3, torch.tensor([2.0, 0.0, 0.0, 0.0]),
     r"value 3 out of range for 'x2' \(cardinality 2\) in row 1; dtype torch.uint8 has no marker")])
def test_of_two_bad_nodes_the_first_is_named(first, second, message):
    """A guard: the flags are read together, yet the error is the first bad node's in the evidence's order,
    whether the second fails a check of the values or of the shape."""
    with pytest.raises(EvidenceError, match=message):
        star().posterior("x0", {"x1": torch.tensor([0, 1, 1, 0]), "x2": first, "x5": second})


def test_a_continuous_nodes_checks_keep_their_place_in_the_order():
    """A guard: a continuous node's missing value (read with the discrete nodes' flags) and its dtype (refused
    without a read) are named before a later discrete node's error, after an earlier one's."""
    bn = BayesNet().add("a", cpd.Table([0.5, 0.5])).add("y", cpd.LinearGaussian([0.0, 1.0], None, 1.0, ["a"]))
    bn.add("b", cpd.Table([[0.3, 0.7], [0.6, 0.4]], ["a"]))
    bad_b = torch.tensor([0, 7])
    with pytest.raises(EvidenceError, match=r"continuous node 'y' has missing \(NaN\) evidence"):
        bn.posterior("a", {"y": torch.tensor([0.5, math.nan]), "b": bad_b})
    with pytest.raises(EvidenceError, match=r"value 7 out of range for 'b'"):
        bn.posterior("a", {"b": bad_b, "y": torch.tensor([0.5, math.nan])})
    with pytest.raises(DataError, match=r"evidence for the continuous node 'y' has dtype torch.float64"):
        bn.posterior("a", {"y": torch.tensor([0.5, 1.0], dtype=torch.float64), "b": bad_b})
    with pytest.raises(EvidenceError, match=r"value 7 out of range for 'b'"):
        bn.posterior("a", {"b": bad_b, "y": torch.tensor([0.5, 1.0], dtype=torch.float64)})


def _gaussians(k: int = 6) -> BayesNet:
    """``a`` and its continuous children ``y0..y{k-1}``, then a discrete child ``b``."""
    bn = BayesNet().add("a", cpd.Table([0.5, 0.5]))
    for i in range(k):
        bn.add(f"y{i}", cpd.LinearGaussian([0.0, 1.0 + i], None, 1.0, ["a"]))
    return bn.add("b", cpd.Table([[0.3, 0.7], [0.6, 0.4]], ["a"]))


def test_the_range_checks_of_integer_evidence_on_continuous_nodes_join_the_one_read(host_reads):
    """Fails on the old code: integer evidence on a continuous node had its range (within +-2^24 for float32)
    read per node, its minimum and its maximum one by one (4, 8 and 14 reads in all for 1, 3 and 6 nodes), on CUDA
    one synchronisation each; now its flag joins the evidence's one read.  (torch's own argument checks of the
    nodes' ``Normal``, made under validation, are switched off here: they are torch's, not the evidence's.)"""
    torch.distributions.Distribution.set_default_validate_args(False)  # restored by tests/conftest.py
    bn = _gaussians()
    counts = []
    for count in (1, 3, 6):
        evidence = {"b": torch.tensor([0, 1, -1]), **{f"y{i}": torch.tensor([1, -2, 3]) for i in range(count)}}
        bn.posterior("a", evidence)
        host_reads.clear()
        bn.posterior("a", evidence)
        counts.append(len(host_reads))
    assert counts[0] == counts[1] == counts[2], counts
    floats = {"b": torch.tensor([0, 1, -1]), **{f"y{i}": torch.tensor([1.0, -2.0, 3.0]) for i in range(6)}}
    ints = {"b": torch.tensor([0, 1, -1]), **{f"y{i}": torch.tensor([1, -2, 3]) for i in range(6)}}
    torch.testing.assert_close(bn.posterior("a", ints), bn.posterior("a", floats), rtol=0, atol=0)


def test_a_continuous_nodes_integer_range_keeps_its_place_in_the_order():
    """A guard: integers outside float32's exact range on a continuous node are named (with their range) after an
    earlier discrete node's error and before a later one's, before the node's own shape, and a context-free
    network's integers within the range are converted exactly."""
    bn = _gaussians(2)
    big, bad_b = torch.tensor([1, 2 ** 24 + 1]), torch.tensor([0, 7])
    message = (r"evidence for the continuous node 'y1' has dtype torch.int64 with values in \[1, 16777217\], "
               r"outside the range of integers torch.float32")
    with pytest.raises(DataError, match=message):
        bn.posterior("a", {"y0": torch.tensor([1, 2]), "y1": big, "b": bad_b})
    with pytest.raises(EvidenceError, match=r"value 7 out of range for 'b'"):
        bn.posterior("a", {"b": bad_b, "y1": big})
    with pytest.raises(DataError, match=message):
        bn.posterior("a", {"y1": big[:, None]})
    with pytest.raises(EvidenceError, match=r"continuous node 'y0' has missing \(NaN\) evidence"):
        bn.posterior("a", {"y0": torch.tensor([0.5, math.nan]), "y1": big})
    got = bn.posterior("a", {"y0": torch.tensor([2 ** 24, -(2 ** 24)])})
    torch.testing.assert_close(got, bn.posterior("a", {"y0": torch.tensor([2.0 ** 24, -(2.0 ** 24)])}))
