"""The ``lengths`` of the sequence models are one number per sequence (:mod:`hybridpgm.sequence_lengths`).

Found by the INPUTS audit (session 39, finding 1): lengths given as a column ``[B, 1]`` (a DataFrame's
``df[["len"]]``, ``lengths.unsqueeze(-1)``) broadcast against the ``[B]`` sequences to a ``[B, B]`` batch that scored
every sequence at every length; ``-crf.log_prob(y).mean()`` was a wrong number and nothing was raised.  Now a
lengths shape that would enlarge the sequences' batch is refused, naming both shapes; one that broadcasts into it
is read as before."""

import pytest
import torch

from hybridpgm.data.hmm_tagging import hmm_posterior, random_hmm
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.graphs import CRFHead, LinearChainCRF

B, T, L = 3, 4, 3
LENGTHS = torch.tensor([4, 2, 3])
MESSAGE = r"lengths of shape \(3, 1\) would enlarge the sequences' batch shape \(3,\) to \(3, 3\).*reshape\(-1\)"


def _potentials():
    g = torch.Generator().manual_seed(0)
    return torch.randn(B, T, L, generator=g), torch.randn(L, L, generator=g)


@pytest.mark.parametrize("validate", [True, False])
def test_crf_refuses_a_column_of_lengths(validate):
    unary, transition = _potentials()
    with pytest.raises(ModelSpecError, match=MESSAGE):
        LinearChainCRF(unary, transition, lengths=LENGTHS[:, None], validate_args=validate)
    with pytest.raises(ModelSpecError, match=MESSAGE):
        CRFHead(L)(unary, LENGTHS[:, None])


def test_crf_refuses_lengths_of_a_batch_the_unary_lacks():
    """A batch of lengths for one sequence ``[T, L]`` would score the one sequence at several lengths."""
    unary, transition = _potentials()
    with pytest.raises(ModelSpecError, match=r"lengths of shape \(3,\) would enlarge the sequences' batch shape "
                                             r"\(\) to \(3,\)"):
        LinearChainCRF(unary[0], transition, lengths=LENGTHS)


def test_hmm_posterior_refuses_a_column_of_lengths():
    hmm = random_hmm(L, 5, generator=torch.Generator().manual_seed(0))
    x = torch.randint(0, 5, (B, T), generator=torch.Generator().manual_seed(1))
    with pytest.raises(DataError, match="hmm_posterior: " + MESSAGE):
        hmm_posterior(hmm, x, LENGTHS[:, None])
    assert hmm_posterior(hmm, x, LENGTHS).batch_shape == (B,)


def test_lengths_that_broadcast_into_the_batch_are_read_as_before():
    """Guard (passes on the old code too): a scalar or a ``[B]`` lengths against ``[K, B]`` sequences, and a
    transition batch beside the unary's, keep their meaning: the same answer as the lengths expanded by hand."""
    unary, transition = _potentials()
    y = torch.randint(0, L, (B, T), generator=torch.Generator().manual_seed(2))
    batched = torch.stack([unary, 2 * unary])  # [2, B, T, L]
    crf = LinearChainCRF(batched, transition, lengths=LENGTHS)
    assert crf.batch_shape == (2, B)
    assert torch.equal(crf.log_prob(y), LinearChainCRF(batched, transition, lengths=LENGTHS.expand(2, B)).log_prob(y))
    assert torch.equal(LinearChainCRF(unary, transition, lengths=3).log_prob(y),
                       LinearChainCRF(unary, transition, lengths=torch.full((B,), 3)).log_prob(y))
    transitions = torch.stack([transition, transition.T])[:, None]  # [2, 1, L, L]: two models of the B sequences
    assert LinearChainCRF(unary, transitions, lengths=LENGTHS).batch_shape == (2, B)
