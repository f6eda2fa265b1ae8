"""A Neural CPD's continuous input (a context input, a continuous parent) holding +-inf: a DataError naming the
input and the node (hybridpgm/graphs/cpd_base.py ``CPD._input_features``, ``Neural.finite_inputs``).

Found by an audit (session 37): the network's logits were NaN and torch's Categorical raised its raw ValueError
("Expected parameter logits ... to satisfy the constraint ...") from inside Pyro, naming neither; a NaN input was
already an EvidenceError naming both.  The flag joins the NaN check's read: none inside fit's step."""

import pytest
import torch

from hybridpgm.errors import DataError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.train.deferred_checks import deferring_checks
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)

INF = float("inf")


def _context_net() -> BayesNet:
    torch.manual_seed(0)
    return BayesNet().add("c", cpd.Table([0.3, 0.7])).add("w", cpd.Neural(torch.nn.Linear(3, 2), ["c"], 2,
                                                                          context=["u"]))


def _parent_net() -> BayesNet:
    torch.manual_seed(0)
    bn = BayesNet().add("c", cpd.Table([0.3, 0.7])).add("x", cpd.LinearGaussian([0.0, 1.0], None, 1.0, ["c"]))
    return bn.add("w", cpd.Neural(torch.nn.Linear(3, 2), ["c", "x"], 2))


ROWS = {"c": torch.tensor([0, 1, 0]), "w": torch.tensor([1, 0, 1])}


@pytest.mark.parametrize("value", [INF, -INF])
def test_an_infinite_context_input_is_a_data_error_naming_it(value):
    bn = _context_net()
    u = torch.tensor([0.5, 1.0, value])
    with pytest.raises(DataError, match=rf"continuous input 'u' of node 'w' holds {value} at index \[2\] \(1 of 3 "
                                        r"entries infinite\)"):
        bn.log_prob(ROWS, {"u": u})
    finite = bn.log_prob(ROWS, {"u": u.clamp(-1e3, 1e3)})
    assert torch.isfinite(finite).all()


@pytest.mark.parametrize("call", ["log_prob", "model"])
def test_an_infinite_continuous_parent_of_a_network_is_a_data_error_naming_it(call):
    bn = _parent_net()
    rows = {**ROWS, "x": torch.tensor([0.5, INF, 1.0])}
    with pytest.raises(DataError, match=r"continuous input 'x' of node 'w' holds inf at index \[1\]"):
        getattr(bn, call)(rows)


def test_the_flag_costs_no_read_of_its_own_and_waits_for_the_steps_read(host_reads, monkeypatch):
    """As the NaN check's flag: the reads of log_prob (alone, and inside fit's step, ``deferring_checks``) are
    those without the check, and an infinite input's DataError comes from the step's one read, before the error
    the NaN logits meet in torch."""
    bn = _context_net()
    u = {"u": torch.tensor([0.5, 2.0, 1.0])}
    bn.log_prob(ROWS, u)  # the first call's own reads (caches) out of the count
    counts = []
    for refuse in (True, False):
        monkeypatch.setattr(cpd.Neural, "finite_inputs", refuse)
        host_reads.clear()
        bn.log_prob(ROWS, u)
        with deferring_checks():
            bn.log_prob(ROWS, u)
        counts.append(list(host_reads))
    assert counts[0] == counts[1], counts
    monkeypatch.setattr(cpd.Neural, "finite_inputs", True)
    with pytest.raises(DataError, match="continuous input 'u' of node 'w' holds inf"):
        with deferring_checks():
            bn.log_prob(ROWS, {"u": torch.tensor([0.5, INF, 1.0])})
