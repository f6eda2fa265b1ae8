"""The exact entropy of a MarkovNet with learnable tables under ``torch.compile`` (hybridpgm/infer/mrf_entropy.py).

Found while fixing the DEPLOY audit's finding on exact marginals: the entropy takes
:math:`\\mathbb E_p[s] = \\partial \\log Z / \\partial \\beta` with ``create_graph`` the same way, and with
``nn.Parameter`` tables in grad mode ``torch.compile(..., backend="aot_eager")`` raised torch's "a leaf Variable
that requires grad is being used in an in-place operation".  That part now runs eagerly (a graph break)."""

from __future__ import annotations


import torch

from hybridpgm.graphs import MarkovNet
from tests.compile_isolation import keep_validation_default  # noqa: F401  (an autouse fixture)


def test_compiled_entropy_of_parameter_tables_equals_eager_with_its_gradients():
    torch.manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 3, "c": 2})
    mrf.add_factor("ab", ["a", "b"], torch.nn.Parameter(torch.randn(2, 3)))
    mrf.add_factor("bc", ["b", "c"], torch.nn.Parameter(torch.randn(3, 2)))
    tables = list(mrf.parameters())
    eager = mrf.distribution().entropy()
    compiled = torch.compile(lambda: mrf.distribution().entropy(), backend="aot_eager")()
    torch.testing.assert_close(compiled, eager, atol=1e-6, rtol=1e-6)
    for g, w in zip(torch.autograd.grad(compiled.sum(), tables), torch.autograd.grad(eager.sum(), tables)):
        torch.testing.assert_close(g, w, atol=1e-6, rtol=1e-6)
