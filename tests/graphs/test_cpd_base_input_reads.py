"""The NaN checks of a CPD's continuous inputs (hybridpgm/graphs/cpd_base.py ``CPD._input_features``) join the
one host read of their caller, not one read each.

Found after b7588d8: every node with a continuous parent read ``torch.isnan(value).any()`` on its own, one host
read (a CUDA synchronisation) per such node and per exact query, ``BayesNet.log_prob`` or run of
``BayesNet.model`` (7 of the 10 reads of ``log_evidence`` on a chain of 8 continuous nodes).  The flag now goes to
``check_or_defer``: the exact queries' factors and the model's nodes read all of them (with the Gaussians'
parameter check) once, fit's step none; a NaN input is still an ``EvidenceError`` naming the input and the node."""

import pytest
import torch
from pyro import poutine

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.train.deferred_checks import deferring_checks
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


def _chain(k: int) -> BayesNet:
    """``a -> y0 -> y1 -> ... -> y{k-1}``, each ``y_i`` (i > 0) with the continuous parent ``y_{i-1}``."""
    bn = BayesNet().add("a", cpd.Table([0.3, 0.7])).add("y0", cpd.LinearGaussian([0.0, 1.0], None, 1.0, ["a"]))
    for i in range(1, k):
        bn.add(f"y{i}", cpd.LinearGaussian([0.0, 0.5], [[0.5], [0.8]], [1.0, 0.5], ["a", f"y{i - 1}"]))
    return bn


def _evidence(k: int) -> dict:
    return {f"y{i}": torch.linspace(-1.0, 1.0, 5) + i for i in range(k)}


def _reads(host_reads, call) -> int:
    call()  # warm: the network's caches
    host_reads.clear()
    call()
    return len(host_reads)


@pytest.mark.parametrize("query", ["log_evidence", "posterior", "log_prob"])
def test_the_reads_do_not_grow_with_the_nodes_of_continuous_parents(host_reads, query):
    """Fails on 35487d2 and b7588d8 (one more read per node with a continuous parent): the reads of an exact
    query and of ``log_prob`` are the same for chains of 2, 4 and 8 continuous nodes."""
    counts = []
    for k in (2, 4, 8):
        bn, ev = _chain(k), _evidence(k)
        rows = {"a": torch.tensor([0, 1, 1, 0, 1]), **ev}
        call = {"log_evidence": lambda: bn.log_evidence(ev), "posterior": lambda: bn.posterior(["a"], ev),
                "log_prob": lambda: bn.log_prob(rows)}[query]
        counts.append(_reads(host_reads, call))
    assert counts[0] == counts[1] == counts[2], counts


def test_inside_fits_step_the_input_checks_read_nothing(host_reads):
    """Fails on 35487d2 and b7588d8 (a read per node with a continuous parent): inside ``deferring_checks`` the
    inputs' NaN checks wait for the step's read, and a NaN one (a conditioned latent parent) is named there."""
    counts = []
    for k in (2, 4, 8):
        bn = _chain(k)
        nan_parent = poutine.condition(bn.model, data={"y0": torch.tensor([0.0, float("nan"), 1.0])})
        with deferring_checks() as pending:
            host_reads.clear()
            poutine.trace(nan_parent).get_trace(num_samples=3)
            counts.append(len(host_reads))
        with pytest.raises(EvidenceError, match="continuous input 'y0' of node 'y1' has missing"):
            pending.raise_first_failure()
    assert counts[0] == counts[1] == counts[2], counts


def test_a_nan_input_is_still_named():
    """A guard (passed before too): a NaN continuous input is an ``EvidenceError`` naming the input and the node,
    outside fit's step, from the model and from a CPD alone; the first node is named."""
    bn = _chain(3)
    nan_parent = poutine.condition(bn.model, data={"y0": torch.tensor([0.0, float("nan")]),
                                                   "y1": torch.tensor([float("nan"), 1.0])})
    with pytest.raises(EvidenceError, match="continuous input 'y0' of node 'y1' has missing"):
        poutine.trace(nan_parent).get_trace(num_samples=2)
    with pytest.raises(EvidenceError, match="continuous input 'y1' of node 'y2' has missing"):
        bn.cpds["y2"].mean_table({"y1": torch.tensor([float("nan")])})


def test_a_nan_context_input_is_named_by_the_queries():
    """A guard (passed before too): a Neural CPD's NaN context input is named by the exact queries and
    ``log_prob`` (the evidence's own checks do not look at context inputs for NaN)."""
    torch.manual_seed(0)
    bn = BayesNet().add("c", cpd.Table([0.4, 0.6]))
    bn.add("w", cpd.Neural(torch.nn.Linear(3, 2), ["c"], 2, context=["u"]))
    u = torch.randn(4, 1)
    u[2, 0] = float("nan")
    for call in (lambda: bn.log_evidence({"w": torch.tensor([0, 1, 1, 0]), "u": u}),
                 lambda: bn.posterior(["c"], {"w": torch.tensor([0, 1, 1, 0]), "u": u}),
                 lambda: bn.log_prob({"c": torch.tensor([0, 1, 1, 0]), "w": torch.tensor([0, 1, 1, 0])},
                                     context={"u": u})):
        with pytest.raises(EvidenceError, match="continuous input 'u' of node 'w' has missing"):
            call()
