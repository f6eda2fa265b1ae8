"""ChromaticGibbs's own options and trace (its marginals are checked against exact ones in
``tests/graphs/test_markov_net.py``)."""

import numpy as np
import pytest
import torch

from hybridpgm.errors import ConfigError, DataError
from hybridpgm.graphs.grids import ising_grid
from hybridpgm.infer import ChromaticGibbs


def test_trace_keeps_every_thin_th_sweep_after_burn_in():
    fg = ising_grid(2, 3, 0.4).factor_graph()
    generator = torch.Generator().manual_seed(0)
    trace = ChromaticGibbs(num_sweeps=10, burn_in=3, thin=2)(fg, 5, return_trace=True, generator=generator)
    assert trace.shape == (4, 5, 1, 6)  # sweeps 3, 5, 7, 9
    final = ChromaticGibbs(num_sweeps=10)(fg, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(trace[-1], final)


def test_numpy_integers_are_counts():
    sampler = ChromaticGibbs(num_sweeps=np.int64(4), burn_in=np.int32(1), thin=np.int64(1))
    assert (sampler.num_sweeps, sampler.burn_in, sampler.thin) == (4, 1, 1)
    assert all(type(k) is int for k in (sampler.num_sweeps, sampler.burn_in, sampler.thin))
    samples = ising_grid(2, 2, 0.3).sample(np.int64(3), num_sweeps=np.int64(2))
    assert samples["x_0_0"].shape == (3,)


@pytest.mark.parametrize("kwargs", [{"num_sweeps": 0}, {"num_sweeps": True}, {"num_sweeps": 2.0},
                                    {"burn_in": -1}, {"burn_in": 100}, {"thin": 0}, {"thin": np.float64(1)}])
def test_bad_options_are_named(kwargs):
    with pytest.raises(ConfigError, match="ChromaticGibbs"):
        ChromaticGibbs(**kwargs)


@pytest.mark.parametrize("num_chains", [-1, True, 2.5, "2", None])
def test_a_number_of_chains_that_is_not_a_count_is_named(num_chains):
    """Before: raw torch errors (a negative size, a float size), or ``True`` ran one chain."""
    fg = ising_grid(2, 2, 0.3).factor_graph()
    with pytest.raises(ConfigError, match=f"ChromaticGibbs num_chains must be a non-negative integer, got "
                                          f"{num_chains!r}"):
        ChromaticGibbs(num_sweeps=2)(fg, num_chains)


def _potts_fg():
    """A batch of two 3-variable chains whose variables have 2, 3 and 2 states (padded to 3)."""
    from hybridpgm.graphs import MarkovNet

    g = torch.Generator().manual_seed(0)
    m = MarkovNet({"a": 2, "b": 3, "c": 2})
    m.add_factor("ab", ["a", "b"], torch.randn(2, 2, 3, generator=g)).add_factor("bc", ["b", "c"], torch.randn(3, 2))
    return m.factor_graph()


@pytest.mark.parametrize("init, match", [
    (torch.zeros(3, 2, 3, dtype=torch.long), r"shape \[N, B, V\] = \(2, 2, 3\).*got \(3, 2, 3\)"),
    (torch.zeros(2, 1, 3, dtype=torch.long), r"got \(2, 1, 3\)"),
    (torch.zeros(2, 2, 4, dtype=torch.long), r"got \(2, 2, 4\)"),
    (torch.zeros(2, 2, 3), r"integer states, got dtype torch.float32"),
    (torch.zeros(2, 2, 3, dtype=torch.bool), r"integer states, got dtype torch.bool"),
    ([[[0, 0, 0]]], r"integer tensor .*got list"),
    (torch.tensor([[[0, 0, 0], [0, 0, 2]]] * 2), r"state 2 of variable 'c' \(chain 0, batch row 1\), which has 2 "
                                                 r"states \(0 .. 1\)"),
    (torch.tensor([[[0, 0, 0], [0, -1, 0]]] * 2), r"state -1 of variable 'b'")])
def test_an_init_that_does_not_fit_the_chains_and_graph_is_named(init, match):
    """Before: a 3-chain init for 2 chains ran 3 chains silently, a state past a variable's cardinality was
    sampled from a padding state, and a float init failed with a raw torch error."""
    with pytest.raises(DataError, match=match):
        ChromaticGibbs(num_sweeps=2)(_potts_fg(), 2, init=init)


def test_a_valid_init_of_any_integer_dtype_is_used_and_not_changed():
    fg = _potts_fg()
    init = torch.tensor([[[1, 2, 1], [0, 1, 0]]] * 2, dtype=torch.int32)
    kept = init.clone()
    one = ChromaticGibbs(num_sweeps=3)(fg, 2, init=init, generator=torch.Generator().manual_seed(1))
    two = ChromaticGibbs(num_sweeps=3)(fg, 2, init=init.long(), generator=torch.Generator().manual_seed(1))
    assert one.dtype == torch.long and torch.equal(one, two) and torch.equal(init, kept)
    assert bool((one < fg.cardinalities).all())
