"""Factors of exact BN queries: barren pruning, dims without tensors, and the cached tables."""

import torch

from hybridpgm.infer.bn_evidence import network_facts, parse_evidence
from hybridpgm.infer.bn_factors import factor_dims, factors, relevant
from tests.graphs.bn_helpers import random_bn, sprinkler


def test_relevant_is_the_ancestral_closure():
    bn = sprinkler()
    facts = network_facts(bn)
    assert relevant(facts, {"sprinkler"}) == {"rain", "sprinkler"}
    assert relevant(facts, {"wet"}) == {"rain", "sprinkler", "wet"}
    assert relevant(facts, {"rain"}) == {"rain"}


def test_factor_dims_equal_the_dims_of_the_built_factors():
    bn = random_bn(7, 6)
    facts = network_facts(bn)
    torch.manual_seed(0)
    s = bn.sample(4)
    for evidence in ({}, {"x5": s["x5"]}, {"x5": s["x5"], "x2": torch.tensor([0, -1, 1, -1])},
                     {"x1": s["x1"], "x3": torch.tensor([-1, 0, 0, -1]), "x4": s["x4"]}):
        ev = parse_evidence(bn, evidence)
        keep = relevant(facts, set(bn.nodes))
        tensors, dims = factors(facts, ev, keep, "log")
        assert factor_dims(facts, set(ev.observed), list(ev.partial), keep) == dims
        for t, d in zip(tensors, dims):
            assert t.dim() == len(d)
        probs, _ = factors(facts, ev, keep, "prob")
        for t, p in zip(tensors, probs):
            torch.testing.assert_close(t.exp(), p)


def test_cached_table_follows_in_place_updates():
    bn = sprinkler()
    facts = network_facts(bn)
    keep = relevant(facts, {"rain"})
    ev = parse_evidence(bn, {})
    with torch.no_grad():
        first, _ = factors(facts, ev, keep, "prob")
        again, _ = factors(facts, ev, keep, "prob")
        assert again[0] is first[0]  # normalised once, reused
        before = bn.posterior("rain", {"wet": 1}).clone()
        bn.cpds["rain"].logits.copy_(torch.tensor([0.5, 0.5]).log())  # an optimizer step, in place
        updated, _ = factors(facts, ev, keep, "prob")
        torch.testing.assert_close(updated[0], torch.tensor([0.5, 0.5]))
        assert not torch.allclose(bn.posterior("rain", {"wet": 1}), before)


def test_learnable_tables_are_not_cached_when_gradients_are_on():
    bn = sprinkler()
    facts = network_facts(bn)
    tensors, _ = factors(facts, parse_evidence(bn, {}), relevant(facts, {"rain"}), "log")
    assert tensors[0].requires_grad  # sprinkler's tables are learnable parameters


def test_cached_table_follows_a_move_to_another_dtype():
    bn = sprinkler()
    with torch.no_grad():
        before = bn.posterior("rain", {"wet": 1})
        bn.to(torch.float64)  # parameters keep their identity, their data is replaced
        after = bn.posterior("rain", {"wet": 1})
    assert before.dtype == torch.float32 and after.dtype == torch.float64
    torch.testing.assert_close(after.float(), before)


def test_a_network_built_under_inference_mode_answers_queries():
    """Its tables are inference tensors, which have no version counter; before, the table cache read it and every
    query failed ("Inference tensors do not track version counter")."""
    from hybridpgm.graphs import BayesNet, cpd

    with torch.inference_mode():
        bn = BayesNet()
        bn.add("a", cpd.Table([0.2, 0.8]))
        bn.add("b", cpd.Table([[0.9, 0.1], [0.3, 0.7]], ["a"]))
        inside = bn.posterior(["a"], {"b": torch.tensor([1])})["a"]
    outside = bn.posterior(["a"], {"b": torch.tensor([1])})["a"]
    exact = torch.tensor([0.2 * 0.1, 0.8 * 0.7])
    for got in (inside, outside):
        torch.testing.assert_close(got[0].double(), (exact / exact.sum()).double(), atol=1e-6, rtol=0)
