"""The one-dtype check of exact queries covers every CPD: a table beside a ``Neural`` CPD whose network is of
another dtype (or a ``LinearGaussian`` of another dtype) is refused with a ``ModelSpecError`` naming a node of each.

Before, the check read the tables only: such a network crashed soft evidence on many nodes and posterior samples
with torch's raw "expected scalar type Double but found Float", and answered other queries in a dtype that
depended on the query."""

import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer.soft_evidence import Likelihood
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)

SOFT = {f"s{i}": Likelihood(torch.tensor([0.25, 0.5])) for i in range(10)}


def _star(tables: torch.dtype, net: torch.dtype):
    """``c -> s0..s9``: tables of dtype ``tables``, ``s9`` a Neural CPD whose network is of dtype ``net``."""
    torch.manual_seed(0)
    bn = BayesNet()
    bn.add("c", cpd.Table(torch.tensor([0.5, 0.5], dtype=tables)))
    for i in range(9):
        bn.add(f"s{i}", cpd.Table(torch.tensor([[0.25, 0.75], [0.5, 0.5]], dtype=tables), ["c"]))
    bn.add("s9", cpd.Neural(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)).to(net),
                            ["c"], 2))
    return bn


QUERIES = {
    "soft posterior": lambda bn: bn.posterior("c", SOFT),
    "soft log_evidence": lambda bn: bn.log_evidence(SOFT),
    "posterior": lambda bn: bn.posterior("c", {"s9": torch.tensor([0, 1])}),
    "prior marginal": lambda bn: bn.posterior("c"),
    "map": lambda bn: bn.map({"s9": 1}),
    "sample": lambda bn: bn.sample(3, evidence={"s0": torch.tensor([0, 1])}),
    "compile_evidence": lambda bn: bn.compile_evidence(["s9"]),
}


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("tables,net", [(torch.float32, torch.float64), (torch.float64, torch.float32)])
def test_a_neural_cpd_of_another_dtype_than_the_tables_is_refused(tables, net, query):
    bn = _star(tables, net)
    refused = (rf"CPDs of this network are of two dtypes: {tables} \(node 'c'\) and {net} \(node 's9', a Neural "
               rf"CPD \(its tensor 'net.0.weight'\)\); a query computes in one dtype.  Convert the network "
               rf"\(bn.to\({tables}\) or bn.to\({net}\)\)")
    with pytest.raises(ModelSpecError, match=refused):
        QUERIES[query](bn)
    QUERIES[query](bn.to(net))  # the way out the message names


def test_the_neural_cpd_first_is_named_first():
    bn = BayesNet()
    bn.add("c", cpd.Neural(torch.nn.Linear(0, 2).double(), [], 2))
    bn.add("s", cpd.Table([[0.25, 0.75], [0.5, 0.5]], ["c"]))
    with pytest.raises(ModelSpecError, match=r"torch.float64 \(node 'c', a Neural CPD \(its tensor 'net.weight'\)\) "
                                             r"and torch.float32 \(node 's'\)"):
        bn.posterior("c", {"s": Likelihood(torch.tensor([0.25, 0.5]))})


def test_a_network_converted_after_a_query_is_seen():
    """The check keeps the maps that hold each CPD's tensor: a network converted in place later is read again."""
    bn = _star(torch.float64, torch.float64)
    bn.posterior("c", SOFT)
    bn.cpds["s9"].net.float()
    with pytest.raises(ModelSpecError, match=r"torch.float64 \(node 'c'\) and torch.float32 \(node 's9'"):
        bn.posterior("c", SOFT)
    bn.cpds["s9"].net.double()
    bn.posterior("c", SOFT)


def test_a_linear_gaussian_of_another_dtype_is_refused():
    bn = BayesNet()
    bn.add("c", cpd.Table([0.5, 0.5]))
    bn.add("x", cpd.LinearGaussian(torch.zeros(2, dtype=torch.float64), None, torch.ones(2, dtype=torch.float64),
                                   ["c"]))
    with pytest.raises(ModelSpecError, match=r"torch.float32 \(node 'c'\) and torch.float64 \(node 'x', a "
                                             r"LinearGaussian CPD \(its tensor 'bias'\)\)"):
        bn.posterior("c", {"x": 0.3})
    torch.testing.assert_close(bn.double().posterior("c", {"x": 0.3}), torch.tensor([0.5, 0.5], dtype=torch.float64),
                               rtol=0, atol=0)


def test_one_dtype_networks_answer_as_before():
    """Guard (passes before the fix too): a network of one dtype, tables and networks alike, is answered."""
    for dtype in (torch.float32, torch.float64):
        bn = _star(dtype, dtype)
        assert bn.posterior("c", SOFT).dtype == dtype
        assert bn.sample(3, evidence={"s9": 1})["c"].shape == (3,)


def test_a_neural_cpd_without_floating_tensors_is_of_the_default_dtype():
    """A Neural CPD whose network holds no floating tensor and reads no continuous input (nn.Identity) computes in
    torch's default dtype, which bn.to() does not change: beside float64 tables it is refused, by the queries and
    by the model, with the ways out that work.  Before, its input stayed int64 and every query failed with torch's
    raw "not implemented for 'Long'"."""
    from pyro.infer import TraceEnum_ELBO

    bn = BayesNet().add("c", cpd.Table([0.5, 0.5])).add("w", cpd.Neural(torch.nn.Identity(), ["c"], 2))
    torch.testing.assert_close(bn.posterior("c", {"w": 1}).detach(), torch.tensor([1.0, torch.e]) / (1 + torch.e))
    bn.double()
    refused = (r"torch.float64 \(node 'c'\) and torch.float32 \(node 'w', a Neural CPD whose network holds no "
               r"floating tensor and reads no continuous input, so it computes in torch's default dtype\); a query "
               r"computes in one dtype.  Convert the network to torch's default dtype \(bn.to\(torch.float32\)\), or "
               r"give that Neural CPD's network a floating tensor")
    for run in (lambda: bn.posterior("c", {"w": 1}), lambda: bn.sample(2, evidence={"w": 1}),
                lambda: TraceEnum_ELBO(max_plate_nesting=1).loss(bn.model, bn.guide, torch.tensor([[0, 1]]))):
        with pytest.raises(ModelSpecError, match=refused):
            run()
    bn.cpds["w"].net.register_buffer("anchor", torch.zeros(0, dtype=torch.float64))  # a floating tensor: float64
    assert bn.posterior("c", {"w": 1}).dtype == torch.float64
    bn.float()
    del bn.cpds["w"].net.anchor
    assert bn.posterior("c", {"w": 1}).dtype == torch.float32  # the first way out: the default dtype


def test_a_neural_cpd_with_only_buffers_is_of_their_dtype():
    """A fixed network holding its weights as buffers is of their dtype, as LinearGaussian's buffers are: float64
    buffers beside float32 tables are refused naming the buffer, and bn.double() answers."""
    net = torch.nn.Linear(2, 2)
    fixed = torch.nn.Module()
    fixed.register_buffer("w", net.weight.detach().double())
    fixed.forward = lambda x: x @ fixed.w.T
    bn = BayesNet().add("c", cpd.Table([0.5, 0.5])).add("w", cpd.Neural(fixed, ["c"], 2))
    with pytest.raises(ModelSpecError, match=r"torch.float32 \(node 'c'\) and torch.float64 \(node 'w', a Neural "
                                             r"CPD \(its tensor 'net.w'\)\)"):
        bn.posterior("c", {"w": 1})
    assert bn.double().posterior("c", {"w": 1}).dtype == torch.float64
