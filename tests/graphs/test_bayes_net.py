"""BayesNet: declaration checks, the Pyro model, sampling, learning from incomplete data."""

import math

import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import brute_joint, random_bn, single_thread  # noqa: F401 (autouse fixture)
from tests.graphs.bn_chain import TRUE, _chain, _with_missing


def test_declaration_errors_name_the_node():
    bn = BayesNet().add("a", cpd.Table([[0.5, 0.5]] * 2, ["c"]))
    bn.add("b", cpd.Table([[0.5, 0.5]] * 2, ["a"]))
    with pytest.raises(ModelSpecError, match="cycle"):
        bn.add("c", cpd.Table([[0.5, 0.5]] * 2, ["b"]))
    assert "c" not in bn.nodes  # the failed declaration left no trace
    with pytest.raises(ModelSpecError, match="'a' has unknown parent"):
        bn.check()
    with pytest.raises(ModelSpecError, match="'b' is already declared"):
        bn.add("b", cpd.Table([0.5, 0.5]))
    with pytest.raises(ModelSpecError, match="own parent"):
        BayesNet().add("x", cpd.Table([[0.5, 0.5]] * 2, ["x"]))
    good = BayesNet().add("r", cpd.Table([0.2, 0.3, 0.5]))
    with pytest.raises(ModelSpecError, match="'w'.*cardinality 3"):
        good.add("w", cpd.Table([[0.5, 0.5]] * 2, ["r"]))
    with pytest.raises(ModelSpecError, match="'s'.*state names"):
        good.add("s", cpd.Table([0.5, 0.5]), states=["x", "y", "z"])
    with pytest.raises(ModelSpecError, match="'\\.'"):
        good.add("a.b", cpd.Table([0.5, 0.5]))
    with pytest.raises(ModelSpecError, match="expected a CPD"):
        good.add("t", [0.5, 0.5])


def test_forward_references_and_topological_order():
    bn = BayesNet({"c": cpd.Table(TRUE["c"], ["b"]), "b": cpd.Table(TRUE["b"], ["a"]),
                   "a": cpd.Table(TRUE["a"])})
    assert bn.nodes == ["c", "b", "a"] and bn.topological_order == ["a", "b", "c"]
    assert bn.edges == [("b", "c"), ("a", "b")] and bn.child_nodes("a") == ["b"]


def test_sample_frequencies_match_exact_marginals():
    bn = _chain()
    torch.manual_seed(0)
    n = 20000
    s = bn.sample(n)
    for v in bn.nodes:
        p = bn.posterior(v).detach()
        freq = torch.bincount(s[v], minlength=len(p)).double() / n
        assert torch.all((freq - p.double()).abs() < 4 * torch.sqrt(p * (1 - p) / n) + 1e-3), v


def test_log_prob_is_the_product_of_cpds():
    bn = _chain()
    x = {"a": torch.tensor([0, 1]), "b": torch.tensor([2, 0]), "c": torch.tensor([1, 0])}
    ref = torch.stack([TRUE["a"][x["a"]], TRUE["b"][x["a"], x["b"]], TRUE["c"][x["b"], x["c"]]]).log().sum(0)
    torch.testing.assert_close(bn.log_prob(x), ref)
    # a tensor in node order works as well
    torch.testing.assert_close(bn.log_prob(torch.stack([x["a"], x["b"], x["c"]], -1)), ref)
    rows, logp = brute_joint(random_bn(0, 4))
    torch.testing.assert_close(logp.exp().sum(), torch.tensor(1.0, dtype=logp.dtype))


@pytest.mark.parametrize("missing", [float("nan"), -1], ids=["nan", "minus-one"])
@pytest.mark.parametrize("rows", ["every", "some"])
def test_log_prob_refuses_rows_with_missing_entries(missing, rows):
    """Before, a missing entry became a latent site that the plain trace sampled: log_prob returned the
    score of a random completion (or a raw KeyError when only some rows had one)."""
    dtype = torch.float64 if missing != -1 else torch.long
    x = torch.tensor([[0, 2, 1], [1, 0, 0]], dtype=dtype)
    x[0 if rows == "some" else slice(None), 1] = missing
    with pytest.raises(DataError, match=r"complete rows; columns \['b'\] have missing entries"):
        _chain().log_prob(x)


@pytest.mark.parametrize("bad", [-2, -7])
def test_only_minus_one_marks_a_missing_integer_entry(bad):
    """The docs name -1 (integer) and NaN (float) as missing; other negative integers are bad values.
    Before, the model and split_missing took any negative integer for a missing entry."""
    bn = _chain()
    data = torch.tensor([[0, 1, 0], [1, bad, 1]])
    values, mask = bn.split_missing(data)
    assert mask.tolist() == [[True, True, True], [True, True, True]]
    with pytest.raises(DataError, match="column 'b' holds a value outside 0..2"):
        TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(bn.model, bn.guide, data)
    minus_one = bn.split_missing(torch.tensor([[0, -1, 0]]))[1]
    assert minus_one.tolist() == [[True, False, True]]


def test_the_model_refuses_data_of_no_rows():
    """Before, Pyro's plate raised a bare ZeroDivisionError ('size cannot be zero')."""
    with pytest.raises(DataError, match="BayesNet.model got data of 0 rows"):
        TraceEnum_ELBO(max_plate_nesting=1).loss(_chain().model, _chain().guide, torch.zeros(0, 3, dtype=torch.long))


def test_trace_enum_elbo_is_exact_marginal_likelihood_with_missing_data():
    bn = random_bn(1, 5)
    torch.manual_seed(0)
    data = _with_missing(bn.to_tensor(bn.sample(50)), 0.3, seed=0)
    data[:, 2] = float("nan")  # one node entirely latent
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(bn.model, bn.guide, data)
    evidence = {v: data[:, i] for i, v in enumerate(bn.nodes)}
    torch.testing.assert_close(loss, -bn.log_evidence(evidence).sum())


def test_bad_data_raises_data_error():
    bn = _chain()
    with pytest.raises(DataError, match=r"\[N, 3\]"):
        bn.model(torch.zeros(4, 2))
    with pytest.raises(DataError, match="'b'"):
        bn.model({"b": torch.tensor([0, 3])})
    with pytest.raises(DataError, match="'q'"):
        bn.model({"q": torch.tensor([0])})


def test_pgmpy_round_trip():
    pytest.importorskip("pgmpy")
    bn = _chain(**{})
    bn.state_names["a"] = ["lo", "hi"]
    back = BayesNet.from_pgmpy(bn.to_pgmpy())
    assert back.nodes == bn.nodes and back.edges == bn.edges
    for v in bn.nodes:
        torch.testing.assert_close(back.cpds[v].probs.float(), bn.cpds[v].probs.detach().float())
    assert back.state_names["a"] == ["lo", "hi"]
    assert math.isclose(float(back.posterior("a", {"c": 1})[1]), float(bn.posterior("a", {"c": 1})[1]),
                        rel_tol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("learnable", [True, False])
def test_posterior_under_no_grad_does_not_require_grad(dtype, learnable):
    bn = BayesNet().add("a", cpd.Table(torch.tensor([0.3, 0.7], dtype=dtype), learnable=learnable))
    bn.add("b", cpd.Table(torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=dtype), ["a"], learnable=learnable))
    expected = torch.tensor([0.3 * 0.1, 0.7 * 0.8], dtype=dtype) / (0.3 * 0.1 + 0.7 * 0.8)
    with torch.no_grad():
        post = bn.posterior("a", {"b": 1})
        every = bn.posterior(evidence={"b": 1})
    assert not post.requires_grad and not every["a"].requires_grad
    torch.testing.assert_close(torch.as_tensor(post.numpy()), expected)
    # with gradients on, they flow to learnable tables only
    assert bn.posterior("a", {"b": 1}).requires_grad == learnable


def test_names_that_clash_with_the_sites_of_model_are_refused_by_name():
    """Before, Pyro's raw duplicate-site RuntimeError came out of ``model`` (a node ``data``: at once; a node
    ``a_prior`` next to a node ``a`` with a prior, or ``a_observed`` next to a column ``a`` with missing entries:
    only when ``model`` ran)."""
    from pyro import poutine

    with pytest.raises(ModelSpecError, match="node name 'data' is the name of the plate"):
        BayesNet().add("data", cpd.Table([0.5, 0.5]))
    with_prior = BayesNet().add("a", cpd.Table.uniform(2, prior=torch.ones(2))).add("a_prior", cpd.Table([0.5, 0.5]))
    with pytest.raises(ModelSpecError, match="node 'a_prior' has the name of the Pyro site 'a_prior' of node 'a'"):
        poutine.trace(with_prior.model).get_trace(torch.tensor([[0, 1]]))
    net = BayesNet().add("a", cpd.Table([0.5, 0.5])).add("a_observed", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["a"]))
    trace = poutine.trace(net.model).get_trace(torch.tensor([[0, 1], [1, 1]]))  # complete data: no derived site
    assert {"a", "a_observed"} <= set(trace.nodes)
    with pytest.raises(ModelSpecError, match="'a_observed' of node 'a' \\(its sites for a column with missing"):
        poutine.trace(net.model).get_trace(torch.tensor([[0, 1], [-1, 1]]))


def test_a_refused_add_leaves_every_cpd_as_it_was():
    """Binding the new node (and the children it completes) set their node and parent cardinalities before a
    later check refused the call; the refused call kept those bindings to a node that is not in the net."""
    x = cpd.Table([[0.5, 0.5]] * 2, ["d"])                    # fits d of cardinality 2: bound first
    y = cpd.Table([[0.5, 0.5]] * 3, ["d"])                    # fits d of cardinality 3: refuses d
    d = cpd.Table([0.4, 0.6])
    bn = BayesNet().add("x", x).add("y", y)
    with pytest.raises(ModelSpecError, match="adding node 'd' .*conflicts with its child: node 'y'"):
        bn.add("d", d)
    assert bn.nodes == ["x", "y"]
    assert [(c.node, c.parent_cards) for c in (x, y, d)] == [(None, {})] * 3
    bad = cpd.Table([[0.5, 0.5]] * 3, ["x"])                  # x has cardinality 2
    with pytest.raises(ModelSpecError, match="node 'z': table dim 0 has size 3"):
        bn.add("z", bad)
    assert (bad.node, bad.parent_cards) == (None, {}) and bn.nodes == ["x", "y"]
    ok = BayesNet().add("x", x).add("d", d)                   # the CPDs serve a corrected net
    assert (x.node, x.parent_cards, d.node) == ("x", {"d": 2}, "d")
    assert torch.allclose(ok.log_prob({"x": torch.tensor([1]), "d": torch.tensor([0])}), torch.tensor([0.2]).log())


def test_a_query_on_tables_of_two_dtypes_is_refused_naming_both_nodes():
    """Probabilities given as NumPy float64 numbers make a float64 table next to float32 ones; such a network
    answered some queries by promotion and crashed others with torch's raw "expected scalar type Double but found
    Float" (soft evidence on eight or more nodes).  Building it so and converting it before querying is fine."""
    import numpy as np

    from hybridpgm.infer.exact import Likelihood

    a, b = np.float64(0.25), np.float64(0.5)
    bn = BayesNet()
    bn.add("c", cpd.Table([0.5, 0.5]))
    for i in range(10):
        bn.add(f"s{i}", cpd.Table([[a, 1 - a], [b, 1 - b]], ["c"]))
    soft = {f"s{i}": Likelihood(torch.tensor([0.25, 0.5], dtype=torch.float64)) for i in range(10)}
    refused = r"tables of this network are of two dtypes: torch.float32 \(node 'c'\) and torch.float64 \(node 's0'\)"
    for query in (lambda: bn.posterior("c", soft), lambda: bn.posterior("c", {"s0": 1}), lambda: bn.map({"s0": 1}),
                  lambda: bn.log_evidence({"s0": 1}), lambda: bn.sample(3, evidence={"s0": 1})):
        with pytest.raises(ModelSpecError, match=refused):
            query()
    bn = bn.double()  # the way out the message names (c's two equal entries keep equal logits)
    # enumeration: p(c) * prod_i sum_s p(s | c) l(s)
    per_c = torch.tensor([0.25 * 0.25 + 0.75 * 0.5, 0.5 * 0.25 + 0.5 * 0.5], dtype=torch.float64) ** 10
    torch.testing.assert_close(bn.posterior("c", soft), per_c / per_c.sum(), rtol=1e-12, atol=0)
    bn.cpds["s3"].float()  # one table converted after a query: seen (the check reads the tables' maps each query)
    with pytest.raises(ModelSpecError, match=r"torch.float64 \(node 'c'\) and torch.float32 \(node 's3'\)"):
        bn.posterior("c", soft)
    bn.cpds["s3"].double()
    bn.posterior("c", soft)
    bn.cpds["s3"].logits = torch.nn.Parameter(bn.cpds["s3"].logits.detach())  # a buffer made a parameter (review C)
    # answered (it raised KeyError): s3's logits went through float32 above, so to float32's precision only
    torch.testing.assert_close(bn.posterior("c", soft), per_c / per_c.sum(), rtol=1e-6, atol=0)
