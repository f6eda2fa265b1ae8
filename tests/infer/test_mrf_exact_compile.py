"""Exact MarkovNet marginals under ``torch.compile`` with learnable tables (hybridpgm/infer/mrf_exact.py).

Found by the DEPLOY audit: with ``nn.Parameter`` tables in grad mode, ``torch.compile(lambda:
mrf.marginals("exact"), backend="aot_eager")`` raised torch's "a leaf Variable that requires grad is being used in
an in-place operation".  The marginals are :math:`\\partial \\log Z / \\partial \\delta`, taken (with
``create_graph``) through the compiled log-partition; the gradient of ``log_z.sum()`` reached it as an expanded,
stride-0 tangent, which AOT autograd's backward copies into a dense one, an in-place copy that fails under
``create_graph``.  That gradient step now runs eagerly (a graph break: :func:`hybridpgm.compile_scope.eagerly`);
a dense ``ones_like(log_z)`` tangent would avoid the error but return marginals with no path back to the tables.
The first ``torch.compile`` in a process switches torch.distributions' validation off: put back here."""

from __future__ import annotations


import pytest
import torch

from hybridpgm.graphs import MarkovNet
from tests.compile_isolation import keep_validation_default  # noqa: F401  (an autouse fixture)


def _chain() -> MarkovNet:
    torch.manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 3, "c": 2})
    mrf.add_factor("ab", ["a", "b"], torch.nn.Parameter(torch.randn(2, 3)))
    mrf.add_factor("bc", ["b", "c"], torch.nn.Parameter(torch.randn(3, 2)))
    return mrf


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
@pytest.mark.parametrize("evidence", [None, {"a": torch.tensor([0, 1, -1])}], ids=["none", "rows"])
def test_compiled_exact_marginals_of_parameter_tables_equal_eager(backend, evidence):
    mrf = _chain()

    def query():
        return mrf.marginals("exact", evidence=evidence)["b"]

    eager = query()
    compiled = torch.compile(query, backend=backend)()
    torch.testing.assert_close(compiled, eager, atol=1e-6, rtol=1e-6)
    # and differentiable as the eager marginals are: the tables' gradients agree
    weights = torch.arange(1.0, 1.0 + eager.numel()).reshape(eager.shape)
    tables = list(mrf.parameters())
    want = torch.autograd.grad((eager * weights).sum(), tables)
    got = torch.autograd.grad((compiled * weights).sum(), tables)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-6, rtol=1e-6)
