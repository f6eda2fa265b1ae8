"""A BayesNet query traced with torch.jit.trace keeps the evidence pattern it was traced on as a guard
(hybridpgm/infer/bn_evidence_states.py): called on another pattern it raises, never answers by the frozen one."""

import warnings

import pytest
import torch

from hybridpgm.graphs import BayesNet, cpd

NAN = float("nan")


def _sprinkler() -> BayesNet:
    bn = BayesNet()
    bn.add("cloudy", cpd.Table([0.5, 0.5]))
    bn.add("rain", cpd.Table([[0.8, 0.2], [0.2, 0.8]], ["cloudy"]))
    bn.add("wet", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["rain"]))
    return bn


class _Query(torch.nn.Module):
    def __init__(self, bn, query):
        super().__init__()
        self.bn, self.query = bn, query  # the network's tables as the module's parameters, not constants

    def forward(self, wet):
        return self.query(wet)


def _traced(bn, query, example):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings, the deprecation of torch.jit.trace, the TrainingWarning
        return torch.jit.trace(_Query(bn, query), (example,), check_trace=False)


def _queries(bn):
    table = bn.compile_evidence(["wet"])
    return {"posterior": lambda w: bn.posterior("rain", {"wet": w}),
            "log_evidence": lambda w: bn.log_evidence({"wet": w}),
            "map": lambda w: bn.map({"wet": w})["rain"],
            "table.posterior": lambda w: table.posterior("rain", {"wet": w})}


# (traced on, called on): every row observes 'wet' / none does, then a mixed batch and the other pure pattern
PATTERNS = {"int": ([0, 1, 1, 0], [-1, -1, -1, -1], [-1, 0, 1, -1]),
            "float": ([0.0, 1.0, 1.0, 0.0], [NAN, NAN, -1.0, NAN], [NAN, 0.0, 1.0, -1.0])}
QUERIES = ["posterior", "log_evidence", "map", "table.posterior"]


@pytest.mark.parametrize("dtype", sorted(PATTERNS))
@pytest.mark.parametrize("name", QUERIES)
def test_pure_pattern_trace_refuses_other_patterns(name, dtype):
    bn = _sprinkler()
    query = _queries(bn)[name]
    full, empty, mixed = (torch.tensor(p, dtype=torch.long if dtype == "int" else torch.float32)
                          for p in PATTERNS[dtype])
    for traced_on, others in ((full, (mixed, empty)), (empty, (mixed, full))):
        traced = _traced(bn, query, traced_on)
        assert torch.equal(traced(traced_on), query(traced_on))  # the traced pattern is served
        for other in others:
            with pytest.raises(torch.jit.Error, match="ConfigError: evidence for 'wet'.*traced on rows where"):
                traced(other)


@pytest.mark.parametrize("name", QUERIES)
def test_pure_pattern_trace_serves_other_rows_of_its_pattern(name):
    bn = _sprinkler()
    query = _queries(bn)[name]
    traced = _traced(bn, query, torch.tensor([0, 1, 1, 0]))
    for n in (4, 1, 7):
        rows = torch.tensor([1, 1, 0, 0, 1, 0, 1][:n])
        if name == "map" and n != 4:  # its back-tracking gradient is traced at 4 rows
            with pytest.raises(torch.jit.Error, match="ConfigError: the MAP assignment was traced on 4"):
                traced(rows)
            continue
        assert torch.allclose(traced(rows), query(rows), atol=1e-6)


@pytest.mark.parametrize("name", QUERIES)
def test_mixed_pattern_trace_serves_every_pattern(name):
    bn = _sprinkler()
    query = _queries(bn)[name]
    traced = _traced(bn, query, torch.tensor([-1, 0, 1, -1]))
    for rows in ([0, 1, 1, 0], [-1, -1, -1, -1], [1, -1, -1, 0]):
        assert torch.allclose(traced(torch.tensor(rows)), query(torch.tensor(rows)), atol=1e-6)


@pytest.mark.parametrize("bad", [[0.0, 0.5, 1.0, 0.0], [0.0, 2.0, 1.0, 0.0]])
def test_traced_query_refuses_values_that_are_no_state(bad):
    bn = _sprinkler()
    query = _queries(bn)["posterior"]
    traced = _traced(bn, query, torch.tensor([0.0, 1.0, 1.0, 0.0]))
    with pytest.raises(torch.jit.Error, match="EvidenceError: evidence for 'wet' holds a value"):
        traced(torch.tensor(bad))
