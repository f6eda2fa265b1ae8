"""Chromatic Gibbs refuses evidence of probability zero by name and never returns a state of probability zero
(:mod:`hybridpgm.infer.mrf_gibbs`, :func:`hybridpgm.graphs.MarkovNet.sample`).

Found by an audit (NUMERIC finding 3): evidence a = 1 paying ``finfo.min`` twice (exact sampling raises
EvidenceError) gave ten draws of a = 0: the argmax over a row of ``-inf`` logits is state 0, whatever the
evidence.  Now a variable that one factor already rules out raises before the sweeps; one ruled out only through a
chain of factors raises after them, from one on-device flag per colour of the kept sweeps, read once."""

import pytest
import torch
from torch.func import vmap

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs import MarkovNet
from hybridpgm.graphs.grids import ising_grid
from hybridpgm.graphs.mrf_score import factor_graph_score
from hybridpgm.infer import ChromaticGibbs
from hybridpgm.train.deferred_checks import deferring_checks

NEG = torch.finfo(torch.float32).min
EQ = torch.tensor([[0.0, NEG], [NEG, 0.0]])  # twice on an edge: x_i = x_j, -inf summed off the diagonal


def _audit_net():
    m = MarkovNet({"a": 2, "b": 2})
    m.add_factor("u", ["a"], torch.tensor([0.0, NEG]))
    m.add_factor("ab", ["a", "b"], torch.tensor([[0.0, 1.0], [NEG, NEG]]))
    return m


def _equal(names, edges):
    m = MarkovNet({v: 2 for v in names})
    for i, (x, y) in enumerate(edges):
        m.add_factor(f"e{i}", [x, y], EQ.clone()).add_factor(f"e{i}'", [x, y], EQ.clone())
    return m


def test_the_audits_evidence_raises_before_the_sweeps():
    with pytest.raises(EvidenceError, match=r"ChromaticGibbs: the evidence of model\(s\) \[0\] has probability "
                                            r"zero \(model 0: evidence a=1\)"):
        _audit_net().sample(10, method="gibbs", evidence={"a": torch.tensor([1, 0])})
    draws = _audit_net().sample(10, method="gibbs", evidence={"a": torch.tensor([0])})
    assert draws["a"].eq(0).all()


def test_evidence_impossible_only_through_a_chain_raises_after_the_sweeps_naming_the_model():
    """x0 = x1 = x2 = x3 with x0 = 0 and x3 = 1: every variable keeps a state of finite bound, so the sweeps run;
    each ends with some variable of no finite state, which was drawn as state 0 before."""
    m = _equal(["x0", "x1", "x2", "x3"], [("x0", "x1"), ("x1", "x2"), ("x2", "x3")])
    ev = {"x0": torch.tensor([0, 1]), "x3": torch.tensor([0, 1])}
    # possible rows: chains started from the unaries alone leave the states of probability zero (0 of 300 seeds
    # kept one to the last sweep), drawing a variable with no finite state from its unary
    draws = m.sample(20, method="gibbs", evidence=ev, generator=torch.Generator().manual_seed(0))
    assert draws["x2"].eq(torch.tensor([0, 1])).all()
    ev = {"x0": torch.tensor([0, 0]), "x3": torch.tensor([0, 1])}
    with pytest.raises(EvidenceError, match=r"ChromaticGibbs: the chains of model 1 end in a state of probability "
                                            r"zero.*variable 'x\d'"):
        m.sample(20, method="gibbs", evidence=ev)


def test_a_start_of_probability_zero_that_the_chains_leave_is_not_an_error():
    """v = a and v = b, chains started at a != b: v has no finite state at the first sweep, the chains then agree."""
    m = _equal(["v", "a", "b"], [("v", "a"), ("v", "b")])
    fg = m.factor_graph()
    init = torch.tensor([[[0, 0, 1]], [[1, 1, 0]]])  # [N=2, B=1, V=3] in the order v, a, b
    x = ChromaticGibbs(num_sweeps=3)(fg, 2, init=init)
    assert torch.isfinite(factor_graph_score(fg, x)).all()
    # its one sweep is kept, and v, drawn from its unary, is then followed by a and b: a state of score 0, no error
    # (review B: the flag of v's step alone raised EvidenceError for this possible model)
    x = ChromaticGibbs(num_sweeps=1)(fg, 2, init=init)
    assert torch.isfinite(factor_graph_score(fg, x)).all()


def test_a_kept_sweep_of_the_trace_is_checked_and_a_burn_in_sweep_is_not():
    m = _equal(["v", "a", "b"], [("v", "a"), ("v", "b")])
    fg, init = m.factor_graph(), torch.tensor([[[0, 0, 1]]])
    for burn_in in (0, 1):  # the first sweep, kept or not, leaves the start's state of probability zero
        trace = ChromaticGibbs(num_sweeps=3, burn_in=burn_in)(fg, 1, init=init, return_trace=True)
        assert trace.shape[0] == 3 - burn_in and torch.isfinite(factor_graph_score(fg, trace[:, 0])).all()
    chain = _equal(["x0", "x1", "x2", "x3"], [("x0", "x1"), ("x1", "x2"), ("x2", "x3")])
    ev = {"x0": torch.tensor([0]), "x3": torch.tensor([1])}
    with pytest.raises(EvidenceError, match="the chains of model 0 end in a state of probability zero"):
        ChromaticGibbs(num_sweeps=3, burn_in=2)(chain.factor_graph(ev), 1, return_trace=True)


def test_two_host_reads_whatever_the_sweeps_and_none_inside_a_training_step(host_reads):
    """One read for the bound before the sweeps and one for the kept sweeps' flags: none per colour step."""
    fg = ising_grid(5, 5, 0.4).factor_graph()
    counts = []
    for sweeps in (1, 30):
        gibbs = ChromaticGibbs(num_sweeps=sweeps)
        gibbs(fg, 4)  # the colour plan built and cached
        host_reads.clear()
        gibbs(fg, 4)
        counts.append(len(host_reads))
    assert counts == [2, 2]
    host_reads.clear()
    with deferring_checks() as pending:
        ChromaticGibbs(num_sweeps=5)(fg, 4)
    assert host_reads == [] and len(pending.flags) == 2 and bool(pending.all_passed(torch.device("cpu")))


def test_under_vmap_the_bad_model_is_named():
    """``sample`` runs under ``vmap(randomness="different")`` (Gibbs, one chain per row of the vmap)."""
    m = _audit_net()
    with pytest.raises(EvidenceError, match=r"ChromaticGibbs: the evidence of model 0 has probability zero"):
        vmap(lambda x: m.sample(3, num_sweeps=2, evidence={"a": torch.tensor([1, 0])})["b"] + 0 * x,
             randomness="different")(torch.arange(2))
    out = vmap(lambda x: m.sample(3, num_sweeps=2, evidence={"a": torch.tensor([0, 0])})["a"] + 0 * x,
               randomness="different")(torch.arange(2))
    assert out.shape == (2, 3, 2) and out.eq(0).all()
    chain = _equal(["x0", "x1", "x2", "x3"], [("x0", "x1"), ("x1", "x2"), ("x2", "x3")])
    with pytest.raises(EvidenceError, match=r"the chains of model 1 in row \d of the vmap end in a state"):
        vmap(lambda x: chain.sample(3, num_sweeps=5, evidence={"x0": torch.tensor([0, 0]),
                                                                 "x3": torch.tensor([0, 1])})["x1"] + 0 * x,
             randomness="different")(torch.arange(2))
