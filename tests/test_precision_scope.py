"""Exact quantities under ``torch.autocast`` (what ``fit(precision="bf16"/"fp16")`` wraps every loss in):
:mod:`hybridpgm.precision_scope` and the exact entry points that run under it.

Before, CPU autocast ran the exact contractions in half precision: a MarkovNet with neural potentials got bfloat16
tables and contracted them in bfloat16 log space (log Z 1.7 nats off on a 60-variable chain, NaN for a float16
log Z above 65504), and float32 models lost accuracy to autocast's ``torch.bmm``/``torch.einsum`` casts (a Bayesian
network's log-evidence, a sigmoid belief net's exact likelihood, an RBM's log Z; ``RBM.log_likelihood`` even came
back in bfloat16).  The networks below output values that are exact in the half precision (multiples of 1/4 or
1/2 of size at most 8, or 100 plus such values in float16), so the float64 model on the same context is the exact
reference of the contraction alone.
"""

import copy

import pytest
import torch

import hybridpgm
from hybridpgm.graphs import BayesNet, MarkovNet, cpd

BF16 = torch.bfloat16


def _autocast(dtype=BF16):
    return torch.autocast("cpu", dtype=dtype)


class _Pairs(torch.nn.Module):
    """Neural pair potentials ``[N, T - 1, L, L]``: ``offset + scale * (ctx @ W)``, ``ctx`` in {-1, 0, 1} and
    ``W`` multiples of 1/4, so each entry is exact in bfloat16 and float16 (also under autocast)."""

    def __init__(self, context: int, pairs: int, states: int, offset: float = 0.0, scale: float = 1.0):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.lin = torch.nn.Linear(context, states * states, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randint(-4, 5, self.lin.weight.shape, generator=g) / 4)
        self.pairs, self.states, self.offset, self.scale = pairs, states, offset, scale

    def forward(self, ctx):
        t = self.offset + self.scale * self.lin(ctx).reshape(ctx.shape[0], 1, self.states, self.states)
        return t.expand(ctx.shape[0], self.pairs, self.states, self.states)


def _chain(length: int, states: int, context: int, **kwargs) -> MarkovNet:
    mrf = MarkovNet({f"x{i}": states for i in range(length)})
    mrf.add_factors("pair", [[f"x{i}", f"x{i + 1}"] for i in range(length - 1)],
                    _Pairs(context, length - 1, states, **kwargs))
    return mrf


def _context(rows: int, context: int) -> torch.Tensor:
    return torch.randint(-1, 2, (rows, context), generator=torch.Generator().manual_seed(0)).float()


def test_exact_precision_is_a_no_op_outside_autocast():
    from hybridpgm.precision_scope import exact_precision

    a, b = torch.ones(2, dtype=BF16), torch.ones(2)
    scope = exact_precision(a, b)
    with scope as (x, y):
        assert x is a and y is b and not scope.active


def test_exact_precision_promotes_and_turns_autocast_off():
    from hybridpgm.precision_scope import exact_dtype, exact_precision

    half, i = torch.ones(2, 3, dtype=BF16), torch.arange(3)
    with _autocast():
        with exact_precision(half, i, None) as (x, j, none):
            assert not torch.is_autocast_enabled("cpu")
            assert x.dtype == torch.float32 and j is i and none is None
            assert (x @ x.T).dtype == torch.float32
        assert torch.is_autocast_enabled("cpu")  # restored
        with exact_precision(half, torch.ones(1, dtype=torch.float64)) as (x, y):
            assert x.dtype == y.dtype == torch.float64  # a float64 operand keeps float64
    assert exact_dtype(half) == torch.float32 and exact_dtype(torch.arange(2)) == torch.float32


def test_any_autocast_follows_the_autocast_state():
    from hybridpgm.precision_scope import _any_autocast_fallback, any_autocast

    for check in (any_autocast, _any_autocast_fallback):
        assert not check()
        with _autocast():
            assert check()
            with torch.autocast("cpu", enabled=False):
                assert not check()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mrf_neural_long_chain_log_partition_under_autocast(dtype):
    """A 60-variable chain of neural pair potentials (the audit's p11): log Z in float32, within 1e-3 of float64
    (before: bfloat16, 1.7 nats off; float16, 0.17)."""
    torch.manual_seed(0)
    mrf, ctx = _chain(60, 6, 8, scale=2.0), _context(16, 8)
    ref = copy.deepcopy(mrf).double().log_partition("exact", context=ctx.double())
    with _autocast(dtype):
        log_z = mrf.log_partition("exact", context=ctx)
    assert log_z.dtype == torch.float32
    assert (log_z.double() - ref).abs().max().item() < 1e-3


def test_mrf_neural_marginals_and_map_under_autocast():
    torch.manual_seed(0)
    mrf, ctx = _chain(12, 3, 4), _context(5, 4)
    ref = copy.deepcopy(mrf).double()
    want = ref.marginals("exact", context=ctx.double())
    want_map = ref.map_assignment(context=ctx.double(), method="exact")
    with _autocast():
        got = mrf.marginals("exact", context=ctx)
        got_map = mrf.map_assignment(context=ctx, method="exact")
    for v in want:
        assert got[v].dtype == torch.float32
        assert (got[v].double() - want[v]).abs().max().item() < 1e-4
        assert torch.equal(got_map[v], want_map[v])


def test_mrf_fp16_log_partition_beyond_float16_range():
    """log Z about 7e4, beyond float16's 65504 (the audit's p15): finite, float32, the float32 model's value
    without autocast, float64's to float32's rounding (the shifts of 700 factors summed: 2.5e-6) (before: NaN)."""
    mrf, ctx = _chain(700, 2, 4, offset=100.0), _context(4, 4)
    ref = copy.deepcopy(mrf).double().log_partition("exact", context=ctx.double())
    fp32 = mrf.log_partition("exact", context=ctx)
    with _autocast(torch.float16):
        log_z = mrf.log_partition("exact", context=ctx)
    assert log_z.dtype == torch.float32 and bool(torch.isfinite(log_z).all())
    torch.testing.assert_close(log_z, fp32, rtol=1e-6, atol=0)
    assert ((log_z.double() - ref).abs() / ref.abs()).max().item() < 1e-5


def test_bf16_mrf_without_autocast_keeps_its_dtype():
    """A bfloat16 model outside autocast computes in bfloat16 as before (docs/bayes_nets.md, log space)."""
    mrf, ctx = _chain(5, 2, 4), _context(3, 4)
    mrf = copy.deepcopy(mrf).to(BF16)
    assert mrf.log_partition("exact", context=ctx.to(BF16)).dtype == BF16


def test_bayes_net_log_evidence_under_autocast():
    """A float32 chain of 30-state tables (the audit's p2): before, autocast's bf16 bmm cost 4e-3 nats a row."""
    torch.manual_seed(0)
    K, n = 30, 12
    bn = BayesNet()
    bn.add("x0", cpd.Table(torch.softmax(torch.randn(K), -1)))
    for i in range(1, n):
        bn.add(f"x{i}", cpd.Table(torch.softmax(torch.randn(K, K) * 2, -1), [f"x{i - 1}"]))
    ev = {f"x{n - 1}": torch.arange(10), "x5": torch.arange(10)}
    ref = copy.deepcopy(bn).double()
    with _autocast():
        got = bn.log_evidence(ev)
        marg = bn.posterior(["x3", "x8"], ev)
        joint = bn.posterior(["x3", "x8"], ev, joint=True)
    assert got.dtype == torch.float32
    assert (got.double() - ref.log_evidence(ev)).abs().max().item() < 1e-4
    want = ref.posterior(["x3", "x8"], ev)
    for v in want:
        assert marg[v].dtype == torch.float32
        assert (marg[v].double() - want[v]).abs().max().item() < 1e-4
    assert joint.dtype == torch.float32
    assert (joint.double() - ref.posterior(["x3", "x8"], ev, joint=True)).abs().max().item() < 1e-4


def test_sbn_exact_log_likelihood_under_autocast():
    torch.manual_seed(0)
    sbn = hybridpgm.SigmoidBeliefNet([16, 8, 4])
    x = torch.bernoulli(torch.full((5, 16), 0.5))
    ref = copy.deepcopy(sbn).double().exact_log_likelihood(x.double())
    with _autocast():
        got = sbn.exact_log_likelihood(x)
    assert got.dtype == torch.float32
    assert (got.double() - ref).abs().max().item() < 1e-4


def test_rbm_log_partition_and_log_likelihood_under_autocast():
    """Before: log Z 0.02 off, and ``log_likelihood`` in bfloat16, 0.1 off."""
    torch.manual_seed(0)
    rbm = hybridpgm.RBM(20, 10)
    with torch.no_grad():
        for p in rbm.parameters():
            p.normal_(0, 1.0)
    x = torch.bernoulli(torch.full((5, 20), 0.5))
    ref = copy.deepcopy(rbm).double()
    with _autocast():
        log_z = rbm.log_partition()
        ll = rbm.log_likelihood(x)
    assert log_z.dtype == ll.dtype == torch.float32
    assert abs(log_z.double() - ref.log_partition()).item() < 1e-4
    assert (ll.double() - ref.log_likelihood(x.double())).abs().max().item() < 1e-4


def _random_dbm():
    """A float32 DBM [8, 6, 4] with N(0, 1) weights and biases (seed 0)."""
    torch.manual_seed(0)
    dbm = hybridpgm.DBM([8, 6, 4])
    with torch.no_grad():
        for p in dbm.parameters():
            p.normal_(0, 1.0)
    return dbm


def test_dbm_log_partition_under_autocast():
    dbm = _random_dbm()
    ref = copy.deepcopy(dbm).double().log_partition()
    with _autocast():
        log_z = dbm.log_partition()
    assert log_z.dtype == torch.float32
    assert abs(log_z.double() - ref).item() < 1e-4


def test_mrf_log_prob_beyond_float16_range_under_autocast():
    """The score of a state sums 699 fp16 table entries of about 100: 7e4 overflows float16 (log_prob was -inf
    under fp16 autocast); the tables are promoted to float32 before the sum."""
    mrf, ctx = _chain(700, 2, 4, offset=100.0), _context(4, 4)
    values = {v: torch.zeros(4, dtype=torch.long) for v in mrf.variables}
    fp32 = mrf.log_prob(values, context=ctx)
    with _autocast(torch.float16):
        lp = mrf.log_prob(values, context=ctx)
    assert lp.dtype == torch.float32 and bool(torch.isfinite(lp).all())
    torch.testing.assert_close(lp, fp32, rtol=1e-5, atol=1e-2)


def test_dbm_log_likelihood_and_its_bound_under_autocast():
    dbm = _random_dbm()
    v = torch.bernoulli(torch.full((5, 8), 0.5), generator=torch.Generator().manual_seed(1))
    ref = copy.deepcopy(dbm).double()
    with _autocast():
        ll, bound = dbm.log_likelihood(v), dbm.log_likelihood_bound(v)
    assert ll.dtype == bound.dtype == torch.float32
    assert (ll.double() - ref.log_likelihood(v.double())).abs().max().item() < 1e-4
    assert (bound.double() - ref.log_likelihood_bound(v.double())).abs().max().item() < 1e-3
