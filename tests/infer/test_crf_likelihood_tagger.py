"""CRFLikelihood (hybridpgm/infer/crf_likelihood.py) checks what the tagger returns, and hands it inputs of lower
precision widened to its dtype (as MarkovNet hands its neural potentials their context)."""

import pytest
import torch
from torch import nn

from hybridpgm import fit
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.graphs import CRFHead
from hybridpgm.infer.crf_likelihood import CRFLikelihood

B, T, L = 6, 5, 3


def _batch(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, 4, generator=g).to(dtype)
    return x, torch.randint(0, L, (B, T), generator=g), torch.tensor([5, 3, 4, 5, 1, 2])


class _Tagger(nn.Module):
    """``x [B, T, 4] -> LinearChainCRF`` of batch shape ``B``; ``out`` picks something else to return."""

    def __init__(self, out="crf"):
        super().__init__()
        self.lin = nn.Linear(4, L)
        self.head = CRFHead(L)
        self.out = out

    def forward(self, x, lengths):
        unary = self.lin(x)
        if self.out == "one chain":  # the first sequence only: batch shape ()
            return self.head(unary[0])
        crf = self.head(unary, lengths)
        return {"crf": crf, "tuple": (crf, unary), "tensor": unary,
                "categorical": torch.distributions.Categorical(logits=unary)}[self.out]


@pytest.mark.parametrize("out, got", [("tuple", r"a tuple of LinearChainCRF, Tensor"), ("tensor", r"a torch.Tensor"),
                                      ("categorical", r"a torch.distributions.categorical.Categorical")])
def test_a_tagger_returning_anything_but_a_linear_chain_crf_is_named(out, got):
    """A tuple or tensor: torch's raw AttributeError ('... has no attribute log_prob'); a Categorical over the
    labels trained silently on another loss (its log_prob of y, [B, T], averaged)."""
    objective = CRFLikelihood(_Tagger(out))
    with pytest.raises(ModelSpecError, match=rf"CRFLikelihood: the tagger returned {got}, expected a LinearChainCRF "
                                             rf"of batch shape \(6,\), one chain per sequence of the batch \(labels "
                                             rf"\(6, 5\)\)"):
        objective.loss("crf", _batch())


def test_a_chain_of_another_batch_shape_is_named():
    """A CRF of batch shape () scored every sequence under the first one's potentials: a finite, wrong loss."""
    with pytest.raises(ModelSpecError, match=r"the tagger returned a LinearChainCRF of batch shape \(\), expected a "
                                             r"LinearChainCRF of batch shape \(6,\)"):
        CRFLikelihood(_Tagger("one chain")).loss("crf", _batch())


def test_a_float64_tagger_takes_float32_inputs_widened_exactly():
    """torch's 'mat1 and mat2 must have the same dtype' before; the loss is the one of the inputs in float64."""
    torch.manual_seed(0)
    tagger = _Tagger().double()
    objective = CRFLikelihood(tagger)
    x, y, lengths = _batch()
    loss = objective.loss("crf", (x, y, lengths))
    assert loss.dtype == torch.float64
    assert torch.equal(loss, objective.loss("crf", (x.double(), y, lengths)))
    fit(objective, (x, y, lengths), batch_size=B, max_steps=1, progress=False)


def test_inputs_of_higher_precision_than_the_tagger_are_a_named_data_error():
    """Not rounded silently: the tagger runs on them as they are, and its failure names both dtypes."""
    objective = CRFLikelihood(_Tagger())
    with pytest.raises(DataError, match=r"CRFLikelihood: the tagger fails on inputs x of dtype torch.float64 \(its "
                                        r"parameters are torch.float32\)"):
        objective.loss("crf", _batch(torch.float64))


class _MixedTagger(nn.Module):
    """A float64 head registered before the float32 layer that takes ``x`` (its first floating parameter is not
    the dtype its input layer takes); ``forward`` casts between them."""

    def __init__(self):
        super().__init__()
        self.head = CRFHead(L).double()
        self.lin = nn.Linear(4, L)

    def forward(self, x, lengths):
        return self.head(self.lin(x).double(), lengths)


def test_a_tagger_of_several_dtypes_gets_its_inputs_as_given_when_the_widened_ones_fail():
    """HEAD widened x to the head's float64 and the float32 layer raised torch's RuntimeError (mat1 and mat2 must
    have the same dtype); before cf5a563 the tagger got x as it is (loss 4.61865 in the reviewer's case)."""
    torch.manual_seed(0)
    tagger = _MixedTagger()
    x, y, lengths = _batch()
    loss = CRFLikelihood(tagger).loss("crf", (x, y, lengths))
    assert torch.equal(loss, -tagger.head(tagger.lin(x).double(), lengths).log_prob(y).mean())


def test_a_tagger_failing_on_widened_inputs_and_on_them_as_given_names_both_tries():
    """float16 inputs: the float32 layer refuses them widened to float64 and as they are."""
    with pytest.raises(DataError, match=r"CRFLikelihood: the tagger fails on inputs x of dtype torch.float16 widened "
                                        r"to torch.float64 \(its first floating parameter's dtype\): .*; and on "
                                        r"inputs x as given \(torch.float16\): ") as caught:
        CRFLikelihood(_MixedTagger()).loss("crf", _batch(torch.float16))
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert "Double" in str(caught.value.__cause__)  # the widened try's error is the cause
