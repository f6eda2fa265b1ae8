"""``inception_score`` with samples of another floating dtype than the classifier's weights: a tensor was passed
"as it is", so float64 samples into a float32 classifier, and float32 samples into a float64 one, stopped with
torch's raw "mat1 and mat2 must have the same dtype" (``examples/gan_family.py`` under a float64 default).  Now the
data rule (``as_model_dtype``): widened where exact, else a ``DataError`` naming both dtypes."""

from __future__ import annotations

import pytest
import torch

from hybridpgm.diagnostics.gan_metrics import inception_score
from hybridpgm.errors import DataError


def _classifier(dtype):
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3).to(dtype)


@pytest.mark.parametrize("samples_dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_narrower_samples_are_widened_exactly(samples_dtype):
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(1)).to(samples_dtype)
    clf = _classifier(torch.float64)
    assert inception_score(clf, x) == inception_score(clf, x.double())


@pytest.mark.parametrize("net_dtype,samples_dtype", [(torch.float32, torch.float64), (torch.float16, torch.float32),
                                                     (torch.float16, torch.bfloat16)])
def test_finer_samples_are_refused_naming_both_dtypes(net_dtype, samples_dtype):
    x = torch.randn(50, 4, dtype=samples_dtype)
    with pytest.raises(DataError, match=rf"inception_score samples has dtype {samples_dtype}, the model computes "
                                        rf"in {net_dtype}.*x\.to\({net_dtype}\)"):
        inception_score(_classifier(net_dtype), x)


def test_an_embedding_classifier_still_takes_integer_samples():
    """Guard: only floating samples follow the rule; integer ones (token ids) reach the classifier as they are."""
    torch.manual_seed(0)
    clf = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Flatten())
    assert inception_score(clf, torch.randint(0, 5, (20, 1))) >= 1.0
