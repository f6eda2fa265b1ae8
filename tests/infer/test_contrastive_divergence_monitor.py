"""CD-1's reconstruction monitor (``ContrastiveDivergence.last_reconstruction_error``,
hybridpgm/infer/contrastive_divergence.py): the batch against its one-sweep reconstruction, on the draws of the step.

A mutation that stored the batch as its own reconstruction survived the suite (the monitor then always read 0, a
perfect model to whoever watches it): the only check was ``0 <= error < 8`` after training."""

import pytest
import torch

from hybridpgm.energy import RBM
from hybridpgm.infer import ContrastiveDivergence


def _untrained_rbm_and_data():
    gen = torch.Generator().manual_seed(3)
    rbm = RBM(12, 5)
    with torch.no_grad():
        rbm.weight.copy_(torch.randn(rbm.weight.shape, generator=gen))
    return rbm, torch.bernoulli(torch.full((40, 12), 0.3), generator=gen)


@pytest.mark.parametrize("written", [False, True])
def test_cd1_reconstruction_error_is_that_of_the_steps_own_sweep(written):
    """After one CD-1 loss (``loss`` or ``loss_and_gradients``, the path fit takes), the monitor is
    :math:`\\frac1B \\sum_b \\lVert \\tilde v_b - v_b \\rVert^2` for the sweep the step drew (the same seed replays
    it by the chain protocol), and it is not 0 for an untrained model."""
    rbm, v = _untrained_rbm_and_data()
    objective = ContrastiveDivergence(rbm, k=1)
    torch.manual_seed(7)
    if written:
        objective.loss_and_gradients("model", v)
    else:
        objective.loss("model", v)
    error = objective.last_reconstruction_error
    torch.manual_seed(7)
    start, _ = rbm.clamped_state(v)
    reconstruction = rbm.gibbs_chain(start, 1)[0]
    want = ((reconstruction - v) ** 2).sum(-1).mean()
    assert want > 1.0
    assert torch.equal(error, want)


def test_cd_k_has_no_one_sweep_reconstruction():
    rbm, v = _untrained_rbm_and_data()
    objective = ContrastiveDivergence(rbm, k=2)
    objective.loss("model", v)
    assert objective.last_reconstruction_error is None
