"""Chromatic Gibbs never draws a state of probability 0 when a uniform is exactly 0.

Found by an audit (carried from the CRF sampler's fix): :meth:`ChromaticGibbs._pick` turned uniforms into Gumbel
noise as ``-log(-log(u.clamp(1e-20, 1 - 1e-7)))``.  In float16 the bound ``1e-20`` is 0, and :func:`torch.rand`
draws an exact 0 there about once in 4000 elements: the noise is ``-inf``, and a variable whose one possible state
(the observed one, or the only one a smaller cardinality leaves) drew it had an all ``-inf`` row, whose argmax is
state 0 -- an impossible state.  The upper bound ``1 - 1e-7`` cut the float64 noise at 16.1 (its range is 36.7):
a state more than about 20 below the others in log-potential was never drawn.  Now the noise is
:func:`~hybridpgm.graphs.gumbel_noise.log_exponential_`'s (the CRF sampler's): the uniforms raised to ``tiny``,
nothing else; every other uniform gives the bits it gave.
"""

import pytest
import torch

from hybridpgm.graphs import MarkovNet
from hybridpgm.infer import ChromaticGibbs


def _clamped_net(dtype):
    """``a`` observed at 2 by evidence (states 0 and 1 impossible); ``c`` of 2 states (state 2 is padding)."""
    net = MarkovNet({"a": 3, "b": 3, "c": 2})
    net.add_factor("ab", ["a", "b"], torch.zeros(3, 3, dtype=dtype))
    net.add_factor("bc", ["b", "c"], torch.zeros(3, 2, dtype=dtype))
    return net


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_no_chain_ever_holds_an_impossible_state(dtype):
    """Fails before in float16: chains held ``a = 0`` against the evidence ``a = 2`` (no mocking: seeded draws of
    exact zeros)."""
    fg = _clamped_net(dtype).factor_graph({"a": torch.tensor(2)})
    trace = ChromaticGibbs(num_sweeps=10)(fg, 2000, return_trace=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(trace[..., 0], torch.full_like(trace[..., 0], 2))
    assert bool((trace[..., 2] < 2).all())


def test_markov_net_sample_by_gibbs_keeps_the_evidence_in_float16():
    """Fails before: the public path, ``MarkovNet.sample(method="gibbs")``, gave samples against the evidence."""
    net = _clamped_net(torch.float16)
    s = net.sample(4000, method="gibbs", num_sweeps=3, evidence={"a": torch.tensor(2)},
                   generator=torch.Generator().manual_seed(0))
    assert bool((s["a"] == 2).all()) and bool((s["c"] < 2).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_a_zero_uniform_on_the_one_possible_state_still_picks_it(dtype):
    """Fails before in float16 (state 0 picked).  Every uniform 0: the noise is equal and finite, so the possible
    state wins."""
    logits = torch.tensor([[float("-inf"), float("-inf"), 0.0], [float("-inf"), -3.0, float("-inf")]], dtype=dtype)
    assert ChromaticGibbs._pick(logits, torch.zeros_like(logits)).tolist() == [2, 1]


def test_the_largest_float64_uniform_gives_the_gumbel_tail_it_stands_for():
    """Fails before: the noise was cut at ``1 - 1e-7`` (16.1), so a state 30 below the others never won, whatever
    the uniforms; the largest float64 uniform, ``1 - 2**-53``, stands for noise 36.7 (probability about
    ``exp(-30)`` to beat 30 is what the uniforms above ``1 - exp(-30)`` give)."""
    logits = torch.tensor([-30.0, 0.0, 0.0], dtype=torch.float64)
    u = torch.tensor([1 - 2.0 ** -53, 0.5, 0.5], dtype=torch.float64)
    assert ChromaticGibbs._pick(logits, u.clone()).item() == 0
    g = -torch.log(-torch.log(u))  # the plain Gumbel transform, inside (0, 1)
    assert torch.equal((logits + g).argmax(), ChromaticGibbs._pick(logits, u.clone()))
