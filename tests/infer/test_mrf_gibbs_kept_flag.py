"""The kept-sweep check of :class:`~hybridpgm.infer.ChromaticGibbs` (:mod:`hybridpgm.infer.mrf_gibbs`) raises only
where a kept sweep ends in a state of probability zero, not wherever one of its steps met a variable with no finite
state: a later colour's step leaves such states (review B of 99c56cb).

A star of hard equality constraints (c = l0 = l1 = l2, no evidence, log Z = log 2), ``c`` coloured first: the
unary-drawn start breaks a constraint, so the one sweep of ``num_sweeps=1`` draws ``c`` from its unary, and the
leaves, drawn after it, agree with it: every returned state has score 0.  The flag alone raised EvidenceError on 49
of 50 seeds."""

import torch

from hybridpgm.graphs import MarkovNet
from hybridpgm.graphs.mrf_score import factor_graph_score
from hybridpgm.infer import ChromaticGibbs
from hybridpgm.infer.mrf_colour_blocks import colour_blocks

NEG = torch.finfo(torch.float32).min
EQ = torch.tensor([[0.0, NEG], [NEG, 0.0]])  # twice on an edge: x_i = x_j, -inf summed off the diagonal


def _star():
    m = MarkovNet({"c": 2, "l0": 2, "l1": 2, "l2": 2})
    for i, leaf in enumerate(["l0", "l1", "l2"]):
        m.add_factor(f"e{i}", ["c", leaf], EQ.clone()).add_factor(f"e{i}'", ["c", leaf], EQ.clone())
    return m.factor_graph()


def test_a_possible_model_whose_kept_sweep_leaves_a_state_of_probability_zero_is_sampled():
    fg = _star()
    assert [b.variables.tolist() for b in colour_blocks(fg)][0] == [0]  # the centre is drawn first
    for seed in range(20):
        x = ChromaticGibbs(num_sweeps=1)(fg, 4, generator=torch.Generator().manual_seed(seed))
        assert torch.isfinite(factor_graph_score(fg, x)).all()


def test_the_first_kept_sweep_of_a_trace_too():
    fg = _star()
    for seed in range(20):
        trace = ChromaticGibbs(num_sweeps=3)(fg, 4, return_trace=True, generator=torch.Generator().manual_seed(seed))
        assert trace.shape[0] == 3 and torch.isfinite(factor_graph_score(fg, trace.flatten(0, 1))).all()
