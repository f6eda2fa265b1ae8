"""Exact Bayesian-network queries refuse, by name, a contraction whose one evidence row exceeds the memory limit.

Before: no guard at all; a 30x30 grid network raised a raw allocation RuntimeError after 44 s, a 40x40 one the
builtin NotImplementedError of a step joining 55 dims, a joint posterior over 36 nodes an allocation error."""

import pytest
import torch

import hybridpgm.infer.bn_contract as bn_contract
from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import BayesNet, cpd


def grid_network(size: int) -> BayesNet:
    """A ``size x size`` grid of binary nodes, each a child of the nodes above and to its left (treewidth
    about ``size``)."""
    torch.manual_seed(0)
    bn = BayesNet()
    for r in range(size):
        for c in range(size):
            parents = ([f"x{r - 1}_{c}"] if r else []) + ([f"x{r}_{c - 1}"] if c else [])
            bn.add(f"x{r}_{c}", cpd.Table(torch.softmax(torch.randn(*([2] * len(parents)), 2), -1), parents))
    return bn


def bottom_row(size: int, rows: int = 3) -> dict:
    return {f"x{size - 1}_{c}": torch.arange(rows) % 2 for c in range(size)}


QUERIES = {
    "log_evidence": lambda bn, ev: bn.log_evidence(ev),
    "posterior": lambda bn, ev: bn.posterior(None, ev),
    "map": lambda bn, ev: bn.map(ev),
    "joint": lambda bn, ev: bn.posterior(["x0_0", "x0_1", "x1_0"], ev, joint=True),
    "sample": lambda bn, ev: bn.sample(5, evidence=ev, generator=torch.Generator().manual_seed(0)),
}


@pytest.mark.parametrize("query", sorted(QUERIES))
def test_a_query_beyond_the_limit_raises_model_spec_error(monkeypatch, query):
    bn, ev = grid_network(5), bottom_row(5)
    QUERIES[query](bn, ev)  # fits the default limit
    monkeypatch.setattr(bn_contract, "EXACT_MAX_BYTES", 256)
    bn.plan_cache.clear()
    with pytest.raises(ModelSpecError, match=r"EXACT_MAX_BYTES \(2\.38e-07 GiB\)") as info:
        QUERIES[query](bn, ev)
    message = str(info.value)
    assert "elements of torch.float" in message and "per evidence row" in message
    assert "Gibbs" in message and "bn.sample" in message and "Bayesian network of 25 nodes" in message


def test_the_limit_is_per_row_so_many_rows_are_chunked_not_refused(monkeypatch):
    """One row's contraction fits; a thousand rows are contracted in chunks (ROW_CHUNK_BYTES), not refused."""
    bn, ev = grid_network(5), bottom_row(5, rows=1000)
    expected = bn.log_evidence(ev)
    plan = bn_contract.plan_for(bn, _dims(bn, ev), (bn_contract.BATCH,), 1000, _cards(bn))
    one_row = max(3 * plan.row_elements, plan.largest_free_elements) * torch.float32.itemsize  # a float32 network
    monkeypatch.setattr(bn_contract, "EXACT_MAX_BYTES", one_row)
    monkeypatch.setattr(bn_contract, "ROW_CHUNK_BYTES", {"cpu": 10 * one_row})
    bn.plan_cache.clear()
    torch.testing.assert_close(bn.log_evidence(ev), expected)
    monkeypatch.setattr(bn_contract, "EXACT_MAX_BYTES", one_row - 1)
    bn.plan_cache.clear()
    with pytest.raises(ModelSpecError, match="per evidence row"):
        bn.log_evidence(ev)


def _dims(bn, ev):
    from hybridpgm.infer.bn_evidence import network_facts, parse_evidence
    from hybridpgm.infer.bn_factors import factor_dims

    facts, parsed = network_facts(bn), parse_evidence(bn, ev)
    return factor_dims(facts, parsed.observed, parsed.partial, set(facts.nodes))


def _cards(bn):
    from hybridpgm.infer.bn_evidence import network_facts

    return network_facts(bn).cards


def test_a_joint_over_too_many_nodes_for_one_step_raises_model_spec_error():
    """60 independent roots: their joint posterior is one step over 61 dims, more than a step's einsum can name
    (before: the builtin NotImplementedError)."""
    bn = BayesNet()
    for i in range(60):
        bn.add(f"r{i}", cpd.Table([0.5, 0.5]))
    with pytest.raises(ModelSpecError, match=r"joint posterior of 60 nodes .*joins 61 dims .*Gibbs"):
        bn.posterior([f"r{i}" for i in range(60)], {}, joint=True)


def test_the_split_choice_survives_a_structure_no_plan_can_contract(monkeypatch):
    """choose_split estimates the cost of contractions it might run; one whose plan cannot be built (a step over
    more dims than an einsum names) costs infinitely much rather than raising the builtin NotImplementedError
    (the query's own plan_for raises ModelSpecError if it comes to that)."""
    from hybridpgm.infer import row_groups
    from hybridpgm.infer.exact import parse_evidence

    def unplannable(*args, **kwargs):
        raise NotImplementedError("a contraction step joins 61 dims (treewidth too large)")

    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]))
    bn.add("b", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["a"]))
    bn.add("c", cpd.Table([[0.5, 0.5], [0.1, 0.9]], ["b"]))
    ev = parse_evidence(bn, {"b": torch.tensor([0, -1, 1, -1] * 100)})
    monkeypatch.setattr(row_groups, "AbsorbingPlan", unplannable)
    assert row_groups.choose_split(bn, ev, set(bn.nodes), ("a", "b", "c")) == []
