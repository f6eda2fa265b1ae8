"""Evidence of probability zero gets the exact queries' ``EvidenceError`` on every ``MarkovNet`` path: marginals by
BP and mean field, max-product MAP, and the distribution's ``log_prob`` and ``entropy``
(:mod:`hybridpgm.graphs.mrf_inference`, :mod:`hybridpgm.graphs.mrf_map`, :mod:`hybridpgm.graphs.mrf_distribution`).

Found by an audit (NUMERIC findings 4 and 5): evidence a = 1 that pays ``finfo.min`` twice (log Z_e = -inf, which
the exact queries refuse by name) got BP marginals 0.31/0.69, a BP MAP holding a = 1, mean field's ModelSpecError for
the whole batch, and finite ``log_prob`` (-0.49) and ``entropy()`` (1.05) of the centred tables."""

import math
import warnings

import pytest
import torch

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs import MarkovNet
from hybridpgm.train.deferred_checks import deferring_checks

NEG = torch.finfo(torch.float32).min
EV = {"a": torch.tensor([1, 0])}  # row 0 impossible, row 1 fine


def _net():
    m = MarkovNet({"a": 2, "b": 2, "c": 2})
    m.add_factor("u", ["a"], torch.tensor([0.0, NEG]))
    m.add_factor("ab", ["a", "b"], torch.tensor([[0.0, 0.0], [NEG, NEG]]))
    m.add_factor("bc", ["b", "c"], torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    return m


@pytest.mark.parametrize("method", ["exact", "bp", "mean_field"])
def test_marginals_refuse_the_impossible_row_by_every_method(method):
    m = _net()
    with pytest.raises(EvidenceError, match=r"marginals: the evidence of model\(s\) \[0\] has probability zero "
                                            r"\(model 0: evidence a=1\)"):
        m.marginals(method, evidence=EV)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fine = m.marginals(method, evidence={"a": torch.tensor([0])})["b"]
    exact = m.marginals("exact", evidence={"a": torch.tensor([0])})["b"]
    if method == "mean_field":  # an approximation: a distribution, not the exact one
        torch.testing.assert_close(fine.sum(-1), torch.ones(1))
    else:  # BP is exact on this chain
        torch.testing.assert_close(fine, exact, atol=1e-5, rtol=0)


def test_bp_marginals_refuse_what_its_own_log_z_calls_impossible():
    """BP's Bethe log Z of the row is -inf; log_partition still answers it (as exact's does)."""
    m = _net()
    assert m.log_partition("bp", evidence=EV)[0].item() == -math.inf
    assert m.log_partition("exact", evidence=EV)[0].item() == -math.inf


@pytest.mark.parametrize("method", ["exact", "bp"])
def test_map_refuses_the_impossible_row_by_both_methods(method):
    with pytest.raises(EvidenceError, match=r"the evidence of model\(s\) \[0\] has probability zero"):
        _net().map_assignment(EV, method=method)
    assert _net().map_assignment({"a": torch.tensor([0])}, method=method)["a"].tolist() == [0]


def test_bp_marginals_check_joins_a_training_steps_one_read(host_reads):
    """Inside fit's step (deferring_checks) the new check is a pending flag, not a read."""
    m = _net()
    with deferring_checks() as pending:
        host_reads.clear()
        before = len(pending.flags)
        m.marginals("bp", evidence=EV)
        assert len(pending.flags) > before
    assert not bool(pending.all_passed(torch.device("cpu")))


def test_distribution_log_prob_and_entropy_refuse_it():
    """log Z_e = log Z̃_e + M: M is the -inf, which the centred log Z̃_e did not show."""
    d = _net().distribution(evidence={"a": torch.tensor(1)})
    assert d.log_partition.item() == -math.inf
    with pytest.raises(EvidenceError, match=r"MarkovNetDistribution.log_prob: .*probability zero.*a=1"):
        d.log_prob(torch.tensor([1, 1, 1]))
    with pytest.raises(EvidenceError, match=r"exact entropy: .*probability zero.*a=1"):
        d.entropy()
    fine = _net().distribution(evidence={"a": torch.tensor(0)})
    assert torch.isfinite(fine.entropy()) and fine.log_prob(torch.tensor([0, 1, 1])).item() < 0


def test_distribution_in_a_pyro_model_scores_no_impossible_row():
    """``pyro.sample(..., obs=x)`` under such evidence: the deferred check fails the step, no finite score slips
    through."""
    d = _net().distribution(evidence=EV)
    with deferring_checks() as pending:
        lp = d.log_prob(torch.tensor([[1, 0, 0], [0, 0, 0]]))
    assert lp.shape == (2,) and not bool(pending.all_passed(torch.device("cpu")))


def test_mean_field_under_vmap_over_the_evidence_names_the_row():
    """Mean field answers a vmap's rows as a batch (graphs/mrf_vmap.py): the impossible one is named by its row."""
    from torch.func import vmap

    m = _net()
    with pytest.raises(EvidenceError, match=r"MarkovNet.marginals: the evidence of model 0 in row 1 of the vmap "
                                            r"has probability zero"):
        vmap(lambda a: m.marginals("mean_field", evidence={"a": a})["b"])(torch.tensor([0, 1, 0]))
    out = vmap(lambda a: m.marginals("mean_field", evidence={"a": a})["b"])(torch.tensor([0, 0]))
    assert out.shape == (2, 2) and torch.isfinite(out).all()
