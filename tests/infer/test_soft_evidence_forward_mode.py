"""Forward-mode derivatives at a zero soft-evidence likelihood (:mod:`hybridpgm.infer.soft_evidence`).

A log-space query takes :math:`\\log \\lambda` of a likelihood given as probabilities; at an exact zero its
derivative must be 0 (the module docstring), as :class:`~hybridpgm.infer.soft_evidence.ZeroSafeLog` gives it in
reverse mode.  A likelihood that carries a forward-mode tangent (:func:`torch.func.jacfwd`, a
:mod:`torch.autograd.forward_ad` dual) need not require grad; before, it was taken for one needing no
derivative and went through ``torch.log``, whose tangent at 0 is infinite: ``jacfwd`` of the posterior and of
``log_evidence`` was NaN in every entry where reverse mode is finite.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import forward_ad
from torch.func import jacfwd, jacrev

from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer.exact import Likelihood
from tests.graphs.bn_helpers import in_space, single_thread  # noqa: F401 (autouse fixture)

D = torch.float64
#: a zero in each row
LIKELIHOOD = torch.tensor([[0.0, 0.5, 2.0], [1.0, 0.0, 0.3]], dtype=D)


def _chain() -> BayesNet:
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor([0.3, 0.7], dtype=D)))
    bn.add("b", cpd.Table(torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]], dtype=D), ["a"]))
    bn.add("c", cpd.Table(torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5]], dtype=D), ["b"]))
    return bn.requires_grad_(False)


QUERIES = {"posterior": lambda bn, lik: bn.posterior("a", {"b": Likelihood(lik), "c": torch.tensor([0, 1])}),
           "log_evidence": lambda bn, lik: bn.log_evidence({"b": Likelihood(lik)})}


@pytest.mark.parametrize("prob", [True, False], ids=["prob", "log"])
@pytest.mark.parametrize("name", list(QUERIES))
def test_jacfwd_at_a_zero_likelihood_equals_jacrev(name, prob):
    bn = _chain()

    def f(lik):
        return QUERIES[name](bn, lik)

    with in_space(prob):
        rev = jacrev(f)(LIKELIHOOD)
        fwd = jacfwd(f)(LIKELIHOOD)
        v = torch.tensor([[1.0, -0.5, 0.25], [0.5, 2.0, -1.0]], dtype=D)
        with forward_ad.dual_level():
            tangent = forward_ad.unpack_dual(f(forward_ad.make_dual(LIKELIHOOD, v))).tangent
    assert rev.abs().max() > 0.05 and torch.isfinite(rev).all()
    torch.testing.assert_close(fwd, rev, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(tangent, (rev * v).sum((-2, -1)), rtol=1e-10, atol=1e-14)
