"""The annealed estimators under :func:`torch.autocast`: they run with it off, so they equal the float32 run.

Found by an audit: under ``torch.autocast("cpu", torch.bfloat16)`` an RBM's annealing path computed its energies
in bfloat16 and the rounding added up over the steps: 64 visible and 16 hidden units, 50 chains of 2000 steps,
estimated :math:`\\log Z = 65.83 \\pm 0.06` for an exact :math:`65.67` (float32: :math:`65.66 \\pm 0.03`); AIS is a
stochastic lower bound.  The small models here differ by 0.01 nats under autocast on the old code.
"""

import torch

from hybridpgm.energy import DBM, RBM
from hybridpgm.infer import AIS
from hybridpgm.infer.log_z import estimate_log_z, model_samples
from hybridpgm.infer.raise_ais import RAISE, log_likelihood_bounds


def _bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _models():
    g = torch.Generator().manual_seed(1)
    rbm, dbm = RBM(8, 5), DBM([8, 4, 3])
    with torch.no_grad():
        for p in [*rbm.parameters(), *dbm.parameters()]:
            p.normal_(0, 0.5, generator=g)
    return rbm, dbm, (torch.rand(6, 8, generator=g) < 0.5).float()


def _same(a, b):
    return a.dtype == b.dtype and torch.equal(a, b)


def _twice(fn):
    want = fn()
    with _bf16():
        got = fn()
        assert torch.is_autocast_enabled("cpu")  # switched back on after the call
    return want, got


def test_ais_under_autocast_equals_float32():
    rbm, dbm, _ = _models()
    for model in (rbm, dbm):
        want, got = _twice(lambda: AIS(num_chains=20, num_steps=200)(model, generator=torch.Generator().manual_seed(0)))
        assert _same(got.log_z, want.log_z) and _same(got.log_weights, want.log_weights), type(model).__name__
        want, got = _twice(lambda: model.log_partition("ais", num_chains=20, num_steps=200,
                                                       generator=torch.Generator().manual_seed(0)))
        assert _same(got, want), type(model).__name__


def test_raise_and_multi_start_estimates_under_autocast_equal_float32():
    rbm, dbm, v = _models()
    want, got = _twice(lambda: RAISE(num_chains=3, num_steps=100)(rbm, v, generator=torch.Generator().manual_seed(0)))
    assert _same(got.log_likelihood, want.log_likelihood)
    for model, data in ((rbm, v), (dbm, None)):
        want, got = _twice(lambda: estimate_log_z(model, data, num_chains=10, num_steps=100, sample_sweeps=10,
                                                  warn=False, generator=torch.Generator().manual_seed(0)))
        assert _same(got.log_z, want.log_z) and _same(got.stderr, want.stderr), type(model).__name__
    want, got = _twice(lambda: model_samples(rbm, 10, 20, v, generator=torch.Generator().manual_seed(0)))
    assert _same(got, want)
    want, got = _twice(lambda: log_likelihood_bounds(rbm, v, v, raise_=RAISE(num_chains=2, num_steps=50),
                                                     num_chains=10, num_steps=100, sample_sweeps=10,
                                                     generator=torch.Generator().manual_seed(0)))
    assert (got.lower, got.upper, got.estimate) == (want.lower, want.upper, want.estimate)


class _Path:
    """A one-variable annealing path that records whether autocast was on at each step."""

    log_z0 = torch.tensor(0.0)

    def __init__(self):
        self.seen = []

    def sample0(self, n):
        return torch.zeros(n)

    def step(self, x, beta_prev, beta, transition=True):
        self.seen.append(torch.is_autocast_enabled("cpu"))
        return torch.zeros_like(x), x


def test_a_user_path_is_stepped_with_autocast_off():
    path = _Path()
    with _bf16():
        result = AIS(num_chains=2, num_steps=4)(path)
    assert path.seen == [False] * 4 and float(result.log_z) == 0.0
