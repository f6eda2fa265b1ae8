"""The error for evidence of probability zero names every impossible row of the caller's batch, by its index
there, when the batch is answered in parts (:mod:`hybridpgm.infer.bn_impossible`): row groups
(:mod:`hybridpgm.infer.row_groups`) and chunks of rows (:func:`hybridpgm.infer.bn_contract.in_row_chunks`)."""

import re

import pytest
import torch

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import bn_contract
from hybridpgm.infer.bn_evidence import network_facts
from hybridpgm.infer.exact import _split, _targets, parse_evidence
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)

IMPOSSIBLE = [5, 10, 2001, 3998]


def _hub(card: int = 60) -> BayesNet:
    """a -> b -> c with ``card`` states each (as tests/infer/test_row_groups.py's, whose evidence on b splits the
    rows); state 0 of b and of c has probability zero given any parent."""
    g = torch.Generator().manual_seed(0)
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.full((card,), 1.0 / card, dtype=torch.float64)))
    for v, p in (("b", "a"), ("c", "b")):
        t = torch.rand(card, card, generator=g, dtype=torch.float64) + 0.1
        t[:, 0] = 0.0
        bn.add(v, cpd.Table(t / t.sum(-1, keepdim=True), [p]))
    return bn


def _evidence(n: int = 4000, bad=IMPOSSIBLE) -> dict:
    """b observed in the odd rows, c in two rows of three; c = 0 (impossible) in the rows ``bad``."""
    b = torch.randint(1, 60, (n,), generator=torch.Generator().manual_seed(1))
    b[::2] = -1
    c = torch.randint(1, 60, (n,), generator=torch.Generator().manual_seed(2))
    c[::3] = -1
    c[bad] = 0
    return {"b": b, "c": c}


def _named(message: str) -> list:
    return [int(r) for r in re.search(r"row\(s\) \[([\d, ]*)\]", message).group(1).split(",")]


@pytest.mark.parametrize("query", [None, "a", ["a", "b"]])
def test_posterior_of_a_batch_split_into_row_groups_names_every_impossible_row(query):
    """Before, the first group with an impossible row raised: rows [10, 3998] (b missing there), not 5 and 2001."""
    bn, ev = _hub(), _evidence()
    parsed = parse_evidence(bn, ev)
    groups = _split(bn, parsed, _targets(network_facts(bn), parsed))
    assert groups is not None and all(any(r in idx.tolist() for r in IMPOSSIBLE) for idx, _ in groups)
    assert torch.isinf(bn.log_evidence(ev)).nonzero().flatten().tolist() == IMPOSSIBLE  # enumeration's rows
    with pytest.raises(EvidenceError, match=r"probability zero .*; the posterior is undefined") as info:
        bn.posterior(query, ev)
    assert _named(str(info.value)) == IMPOSSIBLE


def test_posterior_in_chunks_of_rows_names_every_impossible_row(monkeypatch):
    """Before, the first chunk with an impossible row raised: [5, 10] of the first 1000-row chunk."""
    bn, ev = _hub(), {"c": _evidence()["c"]}
    monkeypatch.setattr(bn_contract, "rows_per_chunk", lambda *args, **kwargs: 1000)
    with pytest.raises(EvidenceError, match=r"probability zero .*; the posterior is undefined") as info:
        bn.posterior(None, ev)
    assert _named(str(info.value)) == IMPOSSIBLE


def test_many_impossible_rows_are_counted():
    """Beyond the first ten the error counts them: 25 impossible rows over both groups."""
    bad = list(range(3, 3000, 120))
    bn, ev = _hub(), _evidence(bad=bad)
    with pytest.raises(EvidenceError, match=re.escape(f"row(s) {bad[:10]} ... ({len(bad)} rows);")):
        bn.posterior(None, ev)


def test_possible_evidence_is_not_recomputed(monkeypatch):
    """Guard (passes on the old code too): the whole batch's log-evidence is computed on the error path only."""
    def fail(*args):
        raise AssertionError("log_evidence_rows called for the posterior of possible evidence")

    monkeypatch.setattr(bn_contract, "log_evidence_rows", fail)
    bn, ev = _hub(), _evidence(bad=[])
    assert bn.posterior("a", ev).shape == (4000, 60)


def test_posterior_sampling_of_a_batch_split_into_row_groups_names_every_impossible_row():
    """Before, sampling named one group's rows, [10, 3998]."""
    from hybridpgm.infer.exact import posterior_sample

    bn, ev = _hub(), _evidence()
    with pytest.raises(EvidenceError, match=r"probability zero .*; posterior sampling is undefined") as info:
        posterior_sample(bn, 1, ev, generator=torch.Generator().manual_seed(0))
    assert _named(str(info.value)) == IMPOSSIBLE


def test_map_in_chunks_of_rows_names_every_impossible_row(monkeypatch):
    """Before, the MAP assignment named the first chunk's rows, [5, 10]."""
    from hybridpgm.infer import exact

    bn, ev = _hub(), {"c": _evidence()["c"]}
    monkeypatch.setattr(exact, "rows_per_chunk", lambda *args, **kwargs: 1000)
    with pytest.raises(EvidenceError, match=r"probability zero .*; the MAP assignment is undefined") as info:
        bn.map(ev)
    assert _named(str(info.value)) == IMPOSSIBLE
