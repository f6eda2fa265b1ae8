"""A linear Gaussian's parameters and values checked once per query (hybridpgm/graphs/cpd_gaussian.py
``check_gaussian_parameters``, ``LinearGaussian.normal``), not by torch's :class:`~torch.distributions.Normal` at
each construction and ``log_prob``.

Found by an audit: under Pyro's default validation torch checked each continuous node's ``loc`` and ``scale`` when
the Normal was built and the value at ``log_prob``, a host read each (three per continuous node per exact query or
``BayesNet.log_prob``; on CUDA a synchronisation each), although the evidence and data checks had read the values
already.  The parameters are checked now in one flag for all the nodes (deferred inside fit's step), the values by
the network's own checks; a user still gets a clear error for a scale that is not positive (naming the node) and,
from torch, for an out-of-support value the network did not check itself (one a ``poutine.condition`` gives)."""

import pyro
import pyro.poutine.trace_struct
import pytest
import torch
from pyro import poutine

from hybridpgm.errors import EvidenceError, ModelSpecError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.train.deferred_checks import deferring_checks
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


def _gaussians(k: int) -> BayesNet:
    """``a`` and its continuous children ``y0..y{k-1}`` (no continuous parent: no input to read)."""
    bn = BayesNet().add("a", cpd.Table([0.3, 0.7]))
    for i in range(k):
        bn.add(f"y{i}", cpd.LinearGaussian([0.0, 1.0 + i], None, [1.0, 0.5], ["a"]))
    return bn


def _evidence(k: int) -> dict:
    return {f"y{i}": torch.tensor([0.5, -1.0, 2.0]) for i in range(k)}


def _reads(host_reads, call) -> int:
    call()  # warm: the network's caches
    host_reads.clear()
    call()
    return len(host_reads)


def test_an_exact_query_reads_its_gaussians_once(host_reads):
    """Fails on the old code (three more reads per continuous node: 6, 12 and 21 reads for 1, 3 and 6 nodes): the
    reads of a hybrid network's queries do not grow with its continuous nodes."""
    for name, query in (("log_evidence", lambda bn, ev: bn.log_evidence(ev)),
                        ("posterior", lambda bn, ev: bn.posterior(["a"], ev))):
        counts = []
        for k in (1, 3, 6):
            bn, ev = _gaussians(k), _evidence(k)
            counts.append(_reads(host_reads, lambda: query(bn, ev)))
        assert counts[0] == counts[1] == counts[2], (name, counts)


def test_log_prob_reads_its_gaussians_once(host_reads, monkeypatch):
    """Fails on the old code (three more reads per continuous node): ``BayesNet.log_prob`` of complete rows reads
    no more for more continuous nodes, but for Pyro's own per-site NaN/inf warnings of the trace's ``log_prob_sum``
    (switched off here: they are Pyro's, one read each per site)."""
    monkeypatch.setattr(pyro.poutine.trace_struct, "warn_if_nan", lambda *args, **kwargs: None)
    monkeypatch.setattr(pyro.poutine.trace_struct, "warn_if_inf", lambda *args, **kwargs: None)
    counts = []
    for k in (1, 3, 6):
        bn, rows = _gaussians(k), {"a": torch.tensor([0, 1, 1]), **_evidence(k)}
        counts.append(_reads(host_reads, lambda: bn.log_prob(rows)))
    assert counts[0] == counts[1] == counts[2], counts


def test_the_parameters_check_joins_fits_read(host_reads):
    """Inside fit's step (``deferring_checks``) the parameters' check reads nothing: its flag waits for the step's
    read (the reads there do not grow with the continuous nodes), and names the node there."""
    counts = []
    for k in (1, 3, 6):
        bn = _gaussians(k)
        rows = {"a": torch.tensor([0, 1, 1]), **_evidence(k)}
        with torch.no_grad():
            bn.cpds["y0"].log_scale[0] = -float("inf")
        with deferring_checks() as pending:
            host_reads.clear()
            tr = poutine.trace(bn.model).get_trace(rows)
            counts.append(len(host_reads))
        assert tr.nodes["y0"]["fn"]._validate_args is False  # an observed value: checked with the data
        with pytest.raises(ModelSpecError, match=r"node 'y0': LinearGaussian scale must be positive and finite, "
                                                 r"got \[0.0, 0.5\]"):
            pending.raise_first_failure()
    assert counts[0] == counts[1] == counts[2], counts


@pytest.mark.parametrize("log_scale", [float("nan"), -float("inf"), -200.0])
def test_a_scale_that_is_not_positive_is_named_under_validation(log_scale):
    """Under Pyro's validation a zero or NaN scale (a diverged ``log_scale``) raises a clear error naming the node,
    in the exact queries, ``log_prob`` and ``log_density`` (before: torch's ValueError, which named no node)."""
    pyro.enable_validation(True)
    bn = _gaussians(2)
    with torch.no_grad():
        bn.cpds["y1"].log_scale[0] = log_scale
    rows = {"a": torch.tensor([0, 1, 1]), **_evidence(2)}
    for call in (lambda: bn.log_evidence(_evidence(2)), lambda: bn.posterior(["a"], _evidence(2)),
                 lambda: bn.log_prob(rows), lambda: bn.cpds["y1"].log_density(torch.zeros(3))):
        with pytest.raises(ModelSpecError, match="node 'y1': LinearGaussian scale must be positive and finite"):
            call()
    bn = _gaussians(2)
    with torch.no_grad():
        bn.cpds["y0"].weight.data = torch.full((2, 0), float("nan"))  # empty: finite
        bn.cpds["y0"].bias[1] = float("nan")
    with pytest.raises(ModelSpecError, match="node 'y0': LinearGaussian bias has NaN or infinite entries"):
        bn.log_evidence(_evidence(2))


def test_without_validation_nothing_is_checked_or_read(host_reads):
    """A guard (passed before too): with ``pyro.enable_validation(False)`` the parameters are not checked (torch
    checked nothing either), so no read for them, and a zero scale raises nothing."""
    pyro.enable_validation(False)
    nets = [(_gaussians(k), _evidence(k)) for k in (1, 3)]
    for net, _ in nets:
        with torch.no_grad():
            net.cpds["y0"].log_scale[0] = -float("inf")
    counts = [_reads(host_reads, lambda: net.log_evidence(ev)) for net, ev in nets]
    assert counts[0] == counts[1], counts


def test_values_the_network_did_not_check_are_still_checked_by_torch():
    """A guard (passed before too): NaN evidence is the query's error; an out-of-support value that
    ``poutine.condition`` puts on a continuous site, and a NaN given to ``log_density``, are torch's support
    check's, under validation as before."""
    pyro.enable_validation(True)
    bn = _gaussians(2)
    with pytest.raises(EvidenceError, match="continuous node 'y0' has missing"):
        bn.log_evidence({"y0": torch.tensor([float("nan")]), "y1": torch.tensor([0.0])})
    conditioned = poutine.condition(bn.model, data={"y0": torch.tensor([float("nan")])})
    tr = poutine.trace(conditioned).get_trace(num_samples=1)
    with pytest.raises(ValueError, match="support"):
        tr.compute_log_prob()
    with pytest.raises(ValueError, match="support"):
        bn.cpds["y0"].log_density(torch.tensor([float("nan")]))
    torch.testing.assert_close(bn.cpds["y0"].log_density(torch.tensor([0.5])),
                               torch.distributions.Normal(torch.tensor([0.0, 1.0]),
                                                          torch.tensor([1.0, 0.5])).log_prob(torch.tensor(0.5))[None])
