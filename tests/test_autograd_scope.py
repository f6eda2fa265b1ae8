"""Queries computed as gradients under inference mode (hybridpgm/autograd_scope.py)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from hybridpgm.autograd_scope import _normal, with_autograd
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer.soft_evidence import Likelihood


class _Tagged(list):
    def __init__(self, items, scale):
        super().__init__(items)
        self.scale = scale


class _Pair(NamedTuple):
    a: torch.Tensor
    b: int


def test_inference_tensors_inside_list_subclasses_and_named_tuples_are_cloned():
    """Found by an audit: only plain lists and tuples were walked, so a list subclass (the Bayes net's
    ``ScaledFactors``) passed its inference tensors on to ``requires_grad_()``, which torch refuses."""
    with torch.inference_mode():
        t, s = torch.ones(2), torch.zeros(1)
    tagged = _normal(_Tagged([t, 3], [s]))
    assert type(tagged) is _Tagged and not tagged[0].is_inference() and tagged[1] == 3
    assert not tagged.scale[0].is_inference() and torch.equal(tagged[0], t)
    pair = _normal(_Pair(t, 1))
    assert type(pair) is _Pair and not pair.a.is_inference() and pair.b == 1
    plain = _Tagged([torch.ones(1)], [torch.zeros(1)])
    assert _normal(plain) is plain  # nothing to clone: the object itself


def test_with_autograd_passes_a_list_subclass_through_as_normal_tensors():
    def grad_of_sum(items):
        x = items[0].detach().requires_grad_()
        (g,) = torch.autograd.grad((x * items.scale[0]).sum(), x)
        return g

    with torch.inference_mode():
        t, s = torch.ones(3), torch.full((1,), 2.0)
        g = with_autograd(grad_of_sum, _Tagged([t], [s]))
    assert torch.equal(g, torch.full((3,), 2.0))


def _log_space_network(tiny: float) -> BayesNet:
    """512 joint states (past the dense joint: the contraction); ``p(v1 = 1) = tiny``."""
    dt = torch.float64
    bn = BayesNet()
    bn.add("v0", cpd.Table(torch.full((16,), 1 / 16, dtype=dt)))
    bn.add("v1", cpd.Table(torch.tensor([1.0, tiny], dtype=dt) / (1 + tiny)))
    bn.add("v2", cpd.Table(torch.full((16, 2, 2), 0.5, dtype=dt), parents=["v0", "v1"]))
    bn.add("v3", cpd.Table(torch.full((16, 2, 2, 16), 1 / 16, dtype=dt), parents=["v0", "v1", "v2"]))
    return bn


def test_a_posterior_redone_in_log_space_with_soft_evidence_works_in_inference_mode():
    """Found by an audit: p(e) ~ 1e-260 (rows redone in log space) with soft evidence raised torch's "Setting
    requires_grad=True on inference tensor outside InferenceMode" under inference mode (no_grad answered)."""
    evidence = {"v1": Likelihood([0.0, 1.8]), "v2": torch.tensor([0, 0])}
    bn = _log_space_network(1e-260)
    with torch.no_grad():
        expected = bn.posterior(["v0", "v3"], evidence)
    with torch.inference_mode():
        got = bn.posterior(["v0", "v3"], evidence)
    for node in ("v0", "v3"):
        torch.testing.assert_close(got[node], expected[node], rtol=0, atol=0)
        torch.testing.assert_close(got[node], torch.full_like(got[node], 1 / 16), rtol=1e-12, atol=0)
