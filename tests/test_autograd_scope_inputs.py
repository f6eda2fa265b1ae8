"""Inputs created under :func:`torch.inference_mode` and queried outside it, with grad mode on
(:func:`hybridpgm.autograd_scope.usable_with_grad`).

Found by the serving audit: a request decoded under inference mode and answered outside it raised torch's
"Inference tensors cannot be saved for backward" from ``RBM.free_energy``/``log_likelihood``,
``DBM.log_likelihood`` and the CLI's ``CRFTagger``, and ``DeepKernelGP.posterior`` a DataError that blamed the
inputs' shape and dtype.  Each query now answers as for a normal tensor, and gradients reach the parameters."""

from __future__ import annotations

import pytest
import torch

from hybridpgm.autograd_scope import usable_with_grad
from hybridpgm.energy import DBM, RBM
from hybridpgm.errors import DataError
from hybridpgm.gp import DeepKernelGP
from hybridpgm.recipes.models import CRFTagger


def _inference(x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return x.clone()


def _models():
    torch.manual_seed(0)
    rbm, dbm = RBM(6, 3), DBM([6, 3, 2])
    x = torch.rand(8, 3)
    gp = DeepKernelGP(x, x.sum(-1), torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh()))
    tagger = CRFTagger(num_symbols=7, num_labels=3, hidden=8)
    v = torch.bernoulli(torch.full((4, 6), 0.5), generator=torch.Generator().manual_seed(1))
    h = torch.bernoulli(torch.full((4, 3), 0.5), generator=torch.Generator().manual_seed(2))
    ids, lengths = torch.tensor([[1, 2, 3, 4], [6, 5, 0, 0]]), torch.tensor([4, 2])
    return {
        "RBM.free_energy": (rbm, lambda a: rbm.free_energy(a[0]), (v,)),
        "RBM.log_likelihood": (rbm, lambda a: rbm.log_likelihood(a[0]), (v,)),
        "RBM.energy": (rbm, lambda a: rbm.energy(a[0], a[1]), (v, h)),
        "DBM.log_likelihood": (dbm, lambda a: dbm.log_likelihood(a[0]), (v,)),
        "DBM.energy": (dbm, lambda a: dbm.energy([a[0], a[1], torch.zeros(4, 2)]), (v, h)),
        "DeepKernelGP.posterior": (gp, lambda a: gp.posterior(a[0]).mean, (torch.rand(3, 3),)),
        "CRFTagger": (tagger, lambda a: tagger(a[0], a[1]).log_partition, (ids, lengths)),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_a_query_of_inputs_made_under_inference_mode_answers_as_for_normal_ones(name):
    model, query, inputs = _models()[name]
    expected = query(inputs)
    got = query(tuple(_inference(t) for t in inputs))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert got.requires_grad  # still differentiable in the parameters
    got.sum().backward()
    assert any(p.grad is not None for p in model.parameters())


def test_usable_with_grad_clones_only_where_autograd_needs_it():
    normal, inference = torch.ones(2), _inference(torch.ones(2))
    assert usable_with_grad(normal) is normal
    cloned = usable_with_grad(inference)
    assert not cloned.is_inference() and torch.equal(cloned, inference)
    with torch.no_grad():
        assert usable_with_grad(inference) is inference
    with torch.inference_mode():
        assert usable_with_grad(inference) is inference


def test_a_feature_extractor_built_under_inference_mode_is_named_not_the_inputs_shape():
    """The network's own parameters are inference tensors (built under inference mode): the message says so,
    where it said the inputs' shape and dtype were wrong."""
    torch.manual_seed(0)
    x = torch.rand(8, 3)
    with torch.inference_mode():
        net = torch.nn.Linear(3, 2)
    gp = DeepKernelGP(x, x.sum(-1), torch.nn.Sequential(torch.nn.Linear(3, 3), net))
    with pytest.raises(DataError, match=r"holds tensors created under torch\.inference_mode\(\) .* query it under "
                                        r"torch\.inference_mode\(\) or torch\.no_grad\(\)"):
        gp.posterior(torch.rand(2, 3))
