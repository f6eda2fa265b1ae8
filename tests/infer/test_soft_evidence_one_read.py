"""Soft evidence validated in the query's one host read (hybridpgm/infer/soft_evidence.py ``soft_checks`` /
``judged_soft``, read by hybridpgm/infer/bn_evidence.py ``parse_evidence`` with the other nodes' flags): a query's
reads do not grow with its soft-evidence nodes, and of several bad nodes the first is named, with the message it
had when each node was read on its own."""

import math

import pytest
import torch

from hybridpgm.errors import EvidenceError
from hybridpgm.infer.exact import posterior_sample
from hybridpgm.infer.soft_evidence import Likelihood, soft_likelihood
from tests.graphs.bn_helpers import single_thread, star  # noqa: F401 (single_thread: autouse fixture)


def _soft(count: int) -> dict:
    """Soft evidence on ``x1..x{count}``, two rows each, as likelihoods and log-likelihoods by turns."""
    lik = torch.tensor([[0.2, 0.9], [0.5, 0.0]], dtype=torch.float64)
    return {f"x{i}": Likelihood(lik.log(), log=True) if i % 2 else Likelihood(lik * i) for i in range(1, count + 1)}


@pytest.mark.parametrize("query", [
    lambda bn, ev: bn.posterior("x0", ev), lambda bn, ev: bn.log_evidence(ev),
    lambda bn, ev: posterior_sample(bn, 3, ev, generator=torch.Generator().manual_seed(0))],
    ids=["posterior", "log_evidence", "posterior_sample"])
def test_the_host_reads_of_a_query_do_not_grow_with_its_soft_evidence_nodes(host_reads, query):
    """Fails on the old code: each node's likelihoods were validated with three reads of their own (5, 11 and 20
    reads for the posterior of 1, 3 and 6 nodes), on CUDA one synchronisation each; now they join the evidence's
    one read, beside a hard node's flags too."""
    bn = star()
    counts = []
    for count in (1, 3, 6):
        evidence = {**_soft(count), "x7": torch.tensor([1, -1])}
        query(bn, evidence)  # plans and caches made once
        host_reads.clear()
        query(bn, evidence)
        counts.append(len(host_reads))
    assert counts[0] == counts[1] == counts[2], counts


def test_the_answers_are_those_of_each_node_validated_on_its_own():
    """A guard: the posterior under six soft nodes is the product of their likelihoods with the prior, as a
    network-free computation gives it (the scaled evidence is the one each node's own check returned)."""
    bn = star()
    evidence = _soft(6)
    got = bn.posterior("x0", evidence)
    for row in range(2):
        weights = torch.tensor([0.4, 0.6], dtype=torch.float64)
        for i in range(1, 7):
            lik = torch.tensor([[0.2, 0.9], [0.5, 0.0]], dtype=torch.float64)[row]
            cpt = torch.tensor([[0.3 + 0.05 * i, 0.7 - 0.05 * i], [0.8, 0.2]], dtype=torch.float64)
            weights = weights * (cpt @ lik)
        torch.testing.assert_close(got[row].double(), weights / weights.sum(), rtol=1e-5, atol=1e-6)
    single = soft_likelihood(bn, "x2", evidence["x2"], torch.float32, torch.device("cpu"))
    assert single.log_lik.dtype == torch.float32 and single.lik is not None


BAD = {"nan log": (Likelihood(torch.tensor([math.nan, 0.0]), log=True),
                   r"Likelihood for '{}' holds NaN or \+inf log-likelihoods"),
       "+inf log": (Likelihood(torch.tensor([math.inf, 0.0]), log=True),
                    r"Likelihood for '{}' holds NaN or \+inf log-likelihoods"),
       "negative": (Likelihood([0.5, -0.1]), r"Likelihood for '{}' must be finite and non-negative"),
       "infinite": (Likelihood(torch.tensor([math.inf, 1.0])), r"Likelihood for '{}' must be finite and non-negative"),
       "zero row": (Likelihood(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])),
                    r"Likelihood for '{}' is zero for every state in row\(s\) \[0, 2\]"),
       "-inf row": (Likelihood(torch.full((2,), -math.inf), log=True), r"Likelihood for '{}' is zero for every state$")}


@pytest.mark.parametrize("first", list(BAD))
@pytest.mark.parametrize("second", ["zero row", "nan log"])
def test_of_two_bad_soft_nodes_the_first_is_named_with_its_message(first, second):
    """A guard: the flags are read together, yet the error is the first bad node's, in the evidence's order,
    with the message it had before (a zero row names its rows)."""
    value, message = BAD[first]
    evidence = {"x1": Likelihood([0.2, 0.7]), "x2": value, "x3": BAD[second][0]}
    with pytest.raises(EvidenceError, match=message.format("x2")):
        star().posterior("x0", evidence)


def test_a_soft_nodes_error_keeps_its_place_among_the_hard_nodes_errors():
    """A guard: a bad soft node is named before a hard node's later error of any kind (a value out of range, an
    unknown name, rows of another length) and after an earlier one's conversion error, as when it was read at
    once; a soft node whose rows differ from the others' is named for its values first."""
    bad = Likelihood([0.5, -1.0])
    message = r"Likelihood for 'x2' must be finite and non-negative"
    for later in ({"x3": torch.tensor([0, 5])}, {"nope": 1}, {"x3": torch.tensor([0, 1, 0])}):
        with pytest.raises(EvidenceError, match=message):
            star().posterior("x0", {"x1": torch.tensor([1, 0]), "x2": bad, **later})
    with pytest.raises(EvidenceError, match="evidence names unknown variable 'nope'"):
        star().posterior("x0", {"nope": 1, "x2": bad})
    rows = Likelihood(torch.tensor([[0.5, -1.0], [1.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(EvidenceError, match=message):
        star().posterior("x0", {"x1": torch.tensor([1, 0]), "x2": rows})
    with pytest.raises(EvidenceError, match=r"evidence rows differ in length"):
        star().posterior("x0", {"x1": torch.tensor([1, 0]), "x2": Likelihood(torch.ones(3, 2))})
