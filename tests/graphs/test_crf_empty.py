"""An empty sequence (length 0) in a batch of :class:`~hybridpgm.graphs.LinearChainCRF`.

Its one labelling is the empty one, of score 0 (no start or end label): log Z, log_prob, score and entropy 0, its
rows of the marginals 0, zeros from sample and argmax.  Before, with validation off every query but argmax raised
torch's ``index -1 is out of bounds`` from the recursions' gather at ``lengths - 1``; with it on the constructor
refused a length 0 (a ModelSpecError): the two now agree, and the other rows are those of the CRF without it."""

import pytest
import torch

from hybridpgm.graphs import LinearChainCRF


def _potentials(seed=0, B=3, T=4, L=3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, L, generator=g), torch.randn(L, L, generator=g), torch.randn(L, generator=g),
            torch.randn(L, generator=g))


@pytest.mark.parametrize("validate", [False, True])
def test_an_empty_sequence_has_log_z_log_prob_and_entropy_0(validate):
    unary, transition, start, end = _potentials()
    lengths = torch.tensor([4, 0, 2])
    crf = LinearChainCRF(unary, transition, start, end, lengths, validate_args=validate)
    labels = torch.randint(0, 3, (3, 4), generator=torch.Generator().manual_seed(1))
    for got in (crf.log_partition, crf.log_prob(labels), crf.score(labels), crf.entropy()):
        assert got[1].item() == 0.0
    assert not crf.marginals[1].any() and not crf.pairwise_marginals[1].any()
    assert not crf.sample().any(-1)[1] and not crf.argmax()[1].any()
    # the other rows are those of the CRF of the other rows alone
    keep = torch.tensor([0, 2])
    rest = LinearChainCRF(unary[keep], transition, start, end, lengths[keep], validate_args=validate)
    for a, b in ((crf.log_partition, rest.log_partition), (crf.log_prob(labels), rest.log_prob(labels[keep])),
                 (crf.score(labels), rest.score(labels[keep])), (crf.entropy(), rest.entropy()),
                 (crf.marginals, rest.marginals), (crf.pairwise_marginals, rest.pairwise_marginals)):
        torch.testing.assert_close(a[keep], b)


def test_an_empty_sequence_is_possible_whatever_its_start_and_end_scores():
    """Every start score -inf forbids every labelling of a sequence of length >= 1, not the empty one."""
    unary, transition, _, _ = _potentials(B=2)
    start = torch.full((3,), float("-inf"))
    crf = LinearChainCRF(unary, transition, start, torch.zeros(3), torch.tensor([0, 0]), validate_args=True)
    assert crf.log_prob(torch.zeros(2, 4, dtype=torch.long)).tolist() == [0.0, 0.0]
    assert crf.entropy().tolist() == [0.0, 0.0] and not crf.argmax().any()


def test_gradients_through_a_batch_with_an_empty_sequence_are_finite_and_zero_for_it():
    unary, transition, start, end = (p.requires_grad_() for p in _potentials())
    crf = LinearChainCRF(unary, transition, start, end, torch.tensor([4, 0, 2]), validate_args=False)
    labels = torch.randint(0, 3, (3, 4), generator=torch.Generator().manual_seed(2))
    loss = -crf.log_prob(labels).sum() + crf.entropy().sum() + crf.marginals.square().sum()
    grads = torch.autograd.grad(loss, (unary, transition, start, end))
    assert all(torch.isfinite(g).all() for g in grads)
    assert not grads[0][1].any()
