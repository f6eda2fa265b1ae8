"""ChromaticGibbs's own options and trace (its marginals are checked against exact ones in
``tests/graphs/test_markov_net.py``)."""

import numpy as np
import pytest
import torch

from hybridpgm.errors import ConfigError
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
