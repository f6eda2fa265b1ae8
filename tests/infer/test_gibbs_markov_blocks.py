"""A Gibbs block of sites that :func:`pyro.markov` gives one enumeration dim (sites further apart than its
history): a ModelSpecError naming them (hybridpgm/infer/gibbs.py ``Gibbs.log_conditional``).

Found by a review (session 38, REVIEWA): ``blocks=[["z0", "z1", "z2"]]`` of an HMM under ``pyro.markov(range(4))``
(history 1: z2 reuses z0's dim) raised torch's raw RuntimeError "permute(sparse_coo): number of dimensions ... does
not match" from inside the sweep, naming no site."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.infer import Gibbs

_A = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
_X = torch.tensor([1.0, 0.0, 1.0, 1.0])


def _hmm(history: int = 1):
    z = torch.tensor(0)
    for t in pyro.markov(range(4), history=history):
        z = pyro.sample(f"z{t}", dist.Categorical(_A[z]))
        pyro.sample(f"x{t}", dist.Normal(z.float(), 1.0), obs=_X[t])


def _params():
    return {f"z{t}": torch.tensor(0) for t in range(4)}


def test_a_block_over_recycled_enumeration_dims_is_refused_naming_the_sites():
    kernel = Gibbs(_hmm, blocks=[["z0", "z1", "z2"]])
    kernel.setup(0)
    with pytest.raises(ModelSpecError, match=r"the sites \['z0', 'z2'\] of block \['z0', 'z1', 'z2'\] share an "
                                             r"enumeration dim"):
        kernel.log_conditional(["z0", "z1", "z2"], _params())


def test_with_history_spanning_the_block_it_is_the_exact_joint_conditional():
    """The remedy the message names: history 2 gives the three sites three dims, and the block's table is the
    joint conditional, checked against the model's log density at every one of the 8 states."""
    kernel = Gibbs(lambda: _hmm(2), blocks=[["z0", "z1", "z2"]])
    kernel.setup(0)
    logits, _ = kernel.log_conditional(["z0", "z1", "z2"], _params())
    exact = []
    for k in range(8):
        states = {"z0": torch.tensor(k // 4), "z1": torch.tensor(k // 2 % 2), "z2": torch.tensor(k % 2),
                  "z3": torch.tensor(0)}
        exact.append(pyro.poutine.trace(pyro.poutine.condition(_hmm, data=states)).get_trace().log_prob_sum())
    exact = torch.stack(exact)
    torch.testing.assert_close(logits.log_softmax(-1), exact.log_softmax(-1))
