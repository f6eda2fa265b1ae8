"""hybridpgm/compile_scope.py: a function run outside ``torch.compile`` without importing ``torch._dynamo`` where
nothing compiles (hybridpgm's import loads no more of torch than it uses)."""

import subprocess
import sys

import torch
from torch.distributions import Distribution

from hybridpgm.compile_scope import eagerly


def _double(x):
    return 2 * x


def test_without_dynamo_imported_the_function_itself_and_no_import():
    code = ("import sys, hybridpgm, hybridpgm.infer.mrf_exact, hybridpgm.infer.mrf_entropy\n"
            "from hybridpgm.compile_scope import eagerly\n"
            "f = lambda x: x\n"
            "assert eagerly(f) is f\n"
            "assert 'torch._dynamo' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_with_dynamo_imported_a_graph_break_made_once():
    import torch._dynamo as dynamo  # what torch.compile imports

    wrapped = eagerly(_double)
    assert wrapped is not _double and eagerly(_double) is wrapped
    assert torch.equal(wrapped(torch.ones(2)), torch.full((2,), 2.0))
    counts = dynamo.utils.counters
    counts.clear()
    previous = Distribution._validate_args  # the first torch.compile of a process switches validation off
    try:
        got = torch.compile(lambda x: eagerly(_double)(x) + 1, backend="eager")(torch.ones(2))
    finally:
        dynamo.reset()
        Distribution.set_default_validate_args(previous)
    assert torch.equal(got, torch.full((2,), 3.0)) and sum(counts["graph_break"].values()) >= 1
