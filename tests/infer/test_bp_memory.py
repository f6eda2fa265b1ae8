"""The memory of loopy BP's general path (:mod:`hybridpgm.infer.bp_engine`, :mod:`hybridpgm.infer.bethe`) where
nothing requires grad, on a Potts grid with ``K = 10`` states: the pairwise tables ``[B, F, K, K]`` are the
largest tensors, and the peak is counted in them.

Before, each message step formed a table-sized sum per direction and ``torch.logsumexp`` a second one (its
``x - max``), and the Bethe :math:`\\log Z` held six table-sized tensors at once: on a 64 x 64 grid (``B = 4``,
tables of 12.9 MB) a call peaked at 3.9 tables above the memory before it and :math:`\\log Z` at 6.6 more.  The
sums are now reduced in their own memory (the same operations in the same order: the same numbers, bit for bit)
and the Bethe terms overwrite their own temporaries: 2.9 and 3.6 tables (measured).

The peak is read in a fresh process from the kernel (``VmHWM`` after resetting it through
``/proc/self/clear_refs``, Linux), with glibc's ``malloc`` returning every block above 64 KiB to the system when
it is freed (``MALLOC_MMAP_THRESHOLD_``), so that the resident size follows the tensors alive; a tensor of one
table's size is first checked to read as one table (0.98 to 1.00 measured: the kernel's resident-size counters
lag by a few hundred KiB).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from hybridpgm.graphs import MarkovNet
from hybridpgm.infer import BeliefPropagation
from hybridpgm.infer.bp_engine import _logsumexp_consuming

_PEAKS = r"""
import gc, json, re, torch
from hybridpgm.graphs import potts_grid
from hybridpgm.infer import BeliefPropagation
torch.set_num_threads(1)

def status(key):
    with open("/proc/self/status") as f:
        return int(re.search(key + r":\s+(\d+) kB", f.read()).group(1)) * 1024

def start():
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status("VmRSS")

def peak_since(before):
    return status("VmHWM") - before

g = torch.Generator().manual_seed(0)
B, K, H = 4, 10, 64
E = 2 * H * (H - 1)
fg = potts_grid(H, H, K, torch.rand(B, E, generator=g) + 0.2, torch.randn(B, H * H, K, generator=g)).factor_graph()
table = fg.groups[0].log_potentials.numel() * 4
bp = BeliefPropagation(num_iters=5, tol=0.0)
bp(potts_grid(3, 3, K, 0.5).factor_graph()).log_z  # imports and first calls
before = start()
torch.ones(table // 4).add_(1.0)
known = peak_since(before)
with torch.no_grad():
    before = start()
    res = bp(fg)
    call = peak_since(before)
    before = start()
    res.log_z
    log_z = peak_since(before)
print(json.dumps({"known": known / table, "call": call / table, "log_z": log_z / table}))
"""


@pytest.fixture(scope="module")
def peaks() -> dict:
    """``{"known", "call", "log_z"}``: peaks above the memory before each, in pairwise tables."""
    if not sys.platform.startswith("linux") or not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("the peak resident size is read from Linux's /proc")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run([sys.executable, "-c", _PEAKS], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_measurement_reads_a_known_tensor_as_its_size(peaks):
    assert 0.9 < peaks["known"] < 1.1


def test_a_bp_call_peaks_below_three_and_a_half_pairwise_tables(peaks):
    """2.9 tables: the centred copy of the tables, one sum being reduced, the messages, and the centring's own
    temporaries at the start.  Fails before at 3.9: each step's ``logsumexp`` formed a second sum (``x - max``)
    beside the first and the centred copy."""
    assert peaks["call"] < 3.4


def test_the_bethe_log_z_peaks_below_four_and_a_half_pairwise_tables(peaks):
    """3.6 tables: the factor beliefs, the centred tables (and their centring's temporary), the masks.  Fails
    before at 6.6: log beliefs, beliefs, the centred tables, their masked copy and the product, all at once."""
    assert peaks["log_z"] < 4.5


def test_logsumexp_in_its_own_memory_gives_torch_logsumexps_bits():
    """Over each dim and both, with ``-inf`` rows, ``+inf``, ``-1e30`` and large entries, in four dtypes."""
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        x = torch.randn(3, 7, 10, 10, generator=g) * 30
        x[torch.rand(x.shape, generator=g) < 0.3] = -math.inf
        x[0, 0] = -math.inf
        x[1, 2, 3, 4] = math.inf
        x[2, 1, 1] = -6e4 if dtype == torch.float16 else -1e30
        x = x.to(dtype)
        bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[x.element_size()]
        for dims in (-1, -2, (-2, -1)):
            want = torch.logsumexp(x, dim=dims)
            got = _logsumexp_consuming(x.clone(), dims)
            assert torch.equal(got.view(bits), want.view(bits)), (dtype, dims)


def _mixed_net(dtype: torch.dtype) -> MarkovNet:
    """Cards 3, 2, 4 (padding), pairwise and 3-ary factors (one with a ``-1e30`` penalty), batch 2."""
    g = torch.Generator().manual_seed(3)
    cards = [3, 2, 4, 3]
    net = MarkovNet({f"x{i}": c for i, c in enumerate(cards)})
    for j, (a, b) in enumerate([(0, 1), (1, 2), (2, 3), (3, 0)]):
        net.add_factor(f"p{j}", [f"x{a}", f"x{b}"], torch.randn(2, cards[a], cards[b], generator=g).to(dtype))
    t = torch.randn(2, 3, 4, 3, generator=g)
    t[:, 0, 0, 0] = -1e30
    net.add_factor("t", ["x0", "x2", "x3"], t.to(dtype))
    return net


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("evidence", [None, {"x2": torch.tensor([1, -1])}])
def test_bp_without_a_graph_gives_the_numbers_of_bp_with_one_bit_for_bit(dtype, evidence):
    """The in-place path (no grad) against the autograd path (tables that require grad), marginals and log Z, on
    mixed arities with padding, evidence and a penalty; the caller's tables are left as they were (a bfloat16
    table is not centred, so the Bethe energy must copy it, not fill it)."""
    fg = _mixed_net(dtype).factor_graph(evidence)
    tables = [g.log_potentials.clone() for g in fg.groups]
    bp = BeliefPropagation(num_iters=12, damping=0.3, tol=0.0)
    with torch.no_grad():
        plain = bp(fg)
        plain_log_z = plain.log_z
    learnt = dataclasses.replace(fg, unary=fg.unary.clone().requires_grad_())
    graph = bp(learnt)
    assert graph.log_z.requires_grad
    bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[plain.marginals.element_size()]
    assert torch.equal(plain.marginals.view(bits), graph.marginals.detach().view(bits))
    assert torch.equal(plain_log_z.view(bits), graph.log_z.detach().view(bits))
    for g, t in zip(fg.groups, tables):
        assert torch.equal(g.log_potentials, t)


@pytest.mark.parametrize("unary, tables", [(torch.float64, torch.float32), (torch.float32, torch.bfloat16)])
def test_a_graph_with_tables_narrower_than_its_unary_gives_the_numbers_of_bp_with_a_graph(unary, tables):
    """A factor graph built by hand may hold tables of a narrower dtype than its unary: the Bethe energy's products
    are then formed in the scores' (wider) dtype, as with a graph, not in the table's memory (review: log Z moved
    by 1.7e-7 at float64/float32 and by 3e-3 at float32/bfloat16)."""
    fg = _mixed_net(tables).factor_graph()
    fg = dataclasses.replace(fg, unary=fg.unary.to(unary))
    bp = BeliefPropagation(num_iters=12, damping=0.3, tol=0.0)
    with torch.no_grad():
        plain_log_z = bp(fg).log_z
    graph = bp(dataclasses.replace(fg, unary=fg.unary.clone().requires_grad_()))
    bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[plain_log_z.element_size()]
    assert plain_log_z.dtype == unary
    assert torch.equal(plain_log_z.view(bits), graph.log_z.detach().view(bits))
