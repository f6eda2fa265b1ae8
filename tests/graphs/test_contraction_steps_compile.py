"""The log-space step under ``torch.compile`` with dynamic shapes (hybridpgm/graphs/contraction_steps.py).

Found by the DEPLOY audit: ``torch.compile(sbn.exact_log_likelihood)`` failed on its first call with dynamo's
``TorchRuntimeError`` on every backend.  Dynamo recompiled the step for each step's shapes within the call, turned
on automatic dynamic shapes, and then could not run the reshape of an operand's maximum to the operand's kept
sizes (``[s25, 1]`` to ``[s25, 8]``).  The maximum now drops the summed dims by ``squeeze``, which is valid for
any sizes.  The first ``torch.compile`` in a process switches torch.distributions' validation off: put back here.
"""

from __future__ import annotations


import pytest
import torch

import hybridpgm
from hybridpgm.graphs.contraction_steps import log_einsum, shift_plan
from tests.compile_isolation import keep_validation_default  # noqa: F401  (an autouse fixture)


@pytest.mark.parametrize("backend, grad, batches", [("eager", True, (8, 5)), ("aot_eager", False, (8,))])
def test_compiled_sbn_exact_log_likelihood_equals_eager(backend, grad, batches):
    """The failure was on the first call; another batch size recompiles with dynamic shapes."""
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((8, 6), 0.5))
    sbn = hybridpgm.SigmoidBeliefNet([6, 4, 3])
    eager = sbn.exact_log_likelihood(x)
    with torch.set_grad_enabled(grad):
        compiled = torch.compile(sbn.exact_log_likelihood, backend=backend)
        for rows in batches:
            torch.testing.assert_close(compiled(x[:rows]), eager[:rows], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("equation, ins, out, shapes", [
    ("abc,cd->dba", ["abc", "cd"], "dba", [(4, 3, 2), (2, 6)]),
    ("ab,b->a", ["ab", "b"], "a", [(7, 3), (3,)]),
])
def test_log_einsum_compiled_with_dynamic_shapes_equals_eager(equation, ins, out, shapes):
    torch.manual_seed(0)
    operands = [torch.randn(s, dtype=torch.float64) for s in shapes]
    shifts = shift_plan(ins, out)
    compiled = torch.compile(lambda *ops: log_einsum(equation, list(ops), shifts), backend="eager", dynamic=True)
    torch.testing.assert_close(compiled(*operands), log_einsum(equation, operands, shifts), atol=1e-12, rtol=0)
