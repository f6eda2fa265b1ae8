"""A neural CPD's dry run at declaration leaves the caller's random streams where they were."""

import torch
from torch import nn

from hybridpgm.graphs import BayesNet, cpd


class EvalNoise(nn.Module):
    """A network that draws in eval mode too (MC-dropout style: ``F.dropout(..., training=True)``)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 3)

    def forward(self, x):
        return nn.functional.dropout(self.linear(x), 0.5, training=True)


def test_declaring_a_network_that_draws_in_eval_mode_does_not_move_the_callers_stream():
    torch.manual_seed(0)
    bn = BayesNet().add("a", cpd.Table([0.5, 0.5]))
    net = EvalNoise()
    before = torch.get_rng_state()
    bn.add("b", cpd.Neural(net, ["a"], 3))
    bn.check()
    assert torch.equal(torch.get_rng_state(), before)
