"""MeanField reads nothing from the device inside its sweeps with ``tol=0``, and with ``tol > 0`` only every
``check_every`` sweeps (and at the last), as :class:`~hybridpgm.infer.BeliefPropagation` does.

Found by an audit: every sweep read its largest change back (``float(...)``), ``tol=0`` included: about 0.24 ms of a
5.3 ms sweep on CPU, a device synchronisation per sweep on a GPU."""

import base64
import pickle

import pytest
import torch

from hybridpgm.errors import ConfigError, ModelSpecError
from hybridpgm.graphs import MarkovNet
from hybridpgm.graphs.grids import ising_grid
from hybridpgm.infer import MeanField
from hybridpgm.train.deferred_checks import deferring_checks
from tests.infer.mean_field_cases import reference_mean_field
from tests.infer.mrf_gibbs_cases import graphs


def _grid(dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    return ising_grid(6, 6, 0.4, field=torch.randn(36, generator=g, dtype=dtype) * 0.5).factor_graph()


def _reads(host_reads, mf, fg) -> int:
    mf(fg)  # the colour plan is built (and cached) by the first call
    host_reads.clear()
    mf(fg)
    return len(host_reads)


def test_tol_zero_reads_nothing_in_the_sweeps(host_reads):
    """Fails before: one read per sweep (1 at one sweep, 40 at 40). Now one in all: the final ``q``'s NaN test."""
    fg = _grid()
    assert [_reads(host_reads, MeanField(num_iters=k, tol=0.0), fg) for k in (1, 40)] == [1, 1]


def test_tol_zero_inside_a_training_step_reads_nothing(host_reads):
    """Inside :func:`~hybridpgm.train.deferred_checks.deferring_checks` (fit's step) the final test rides along
    with the step's own read."""
    fg = _grid()
    mf = MeanField(num_iters=20, tol=0.0)
    mf(fg)
    host_reads.clear()
    with deferring_checks() as pending:
        mf(fg)
    assert host_reads == [] and len(pending.flags) == 1 and bool(pending.all_passed(torch.device("cpu")))


@pytest.mark.parametrize("num_iters, check_every, reads", [(25, 10, 3), (25, 1, 25), (7, 10, 1), (30, 5, 6)])
def test_a_positive_tol_reads_every_check_every_sweeps_and_the_last(host_reads, num_iters, check_every, reads):
    """A tol under the rounding floor never passes, so every check is made: sweeps 10, 20, 25 of 25 (one read
    each)."""
    fg = _grid()
    mf = MeanField(num_iters=num_iters, tol=1e-300, check_every=check_every)
    assert _reads(host_reads, mf, fg) == reads
    res = mf(fg)
    assert (res.converged, res.num_iters) == (False, num_iters)


def test_a_positive_tol_stops_at_the_first_checked_sweep_that_passes():
    """The sweeps stop at a multiple of check_every: with check_every=1 at the sweep the per-sweep test stops at
    (the reference), with 10 at the next multiple of 10, bit for bit the answer of a tol=0 run of that many sweeps."""
    for name, fg in [("grid", _grid(torch.float32)), *graphs().items()]:
        every_sweep = MeanField(num_iters=200, tol=1e-5, check_every=1)
        first = every_sweep(fg)
        want = reference_mean_field(every_sweep, fg)
        assert (first.converged, first.num_iters) == (want.converged, want.num_iters), name
        assert torch.equal(first.marginals, want.marginals) and torch.equal(first.log_z, want.log_z), name
        tenth = MeanField(num_iters=200, tol=1e-5)(fg)
        stop = -(-first.num_iters // 10) * 10
        assert (tenth.converged, tenth.num_iters) == (True, stop), name
        plain = MeanField(num_iters=stop, tol=0.0)(fg)
        assert torch.equal(tenth.marginals, plain.marginals) and torch.equal(tenth.log_z, plain.log_z), name


def _chain_with_an_impossible_end():
    """x0 - x1 - x2 - x3 - z = w (greedy colours 0 1 0 1 0 1): the doubled 'differ' and 'equal' constraints of
    finfo.min between z and w sum to -inf on both states of z, so z's update is NaN in the first colour of the
    first sweep; x3 and w (colour 1) take the NaN in the same sweep, x2, x1, x0 in the next ones."""
    neg = torch.finfo(torch.float32).min
    mrf = MarkovNet({n: 2 for n in ("x0", "x1", "x2", "x3", "z", "w")})
    for i, (a, b) in enumerate([("x0", "x1"), ("x1", "x2"), ("x2", "x3"), ("x3", "z")]):
        mrf.add_factor(f"f{i}", [a, b], torch.tensor([[0.5, 0.0], [0.0, 0.5]]))
    for name, table in (("differ", [[neg, 0.0], [0.0, neg]]), ("equal", [[0.0, neg], [neg, 0.0]])):
        for copy in range(2):
            mrf.add_factor(f"{name}{copy}", ["z", "w"], torch.tensor(table))
    return mrf.factor_graph()


@pytest.mark.parametrize("kwargs", [dict(tol=0.0), dict(tol=1e-6), dict(tol=1e-6, check_every=1)])
def test_the_variable_whose_update_first_gave_a_nan_is_named(kwargs):
    """Fails before with ``tol=0``: 'x3' was named (the first variable NaN after the first sweep, which a NaN of
    z had reached); after 10 sweeps every variable is NaN, and a read of that ``q`` would name 'x0'."""
    fg = _chain_with_an_impossible_end()
    with pytest.raises(ModelSpecError, match=r"update of variable 'z' \(model 0\)"):
        MeanField(num_iters=12, **kwargs)(fg)


def test_a_nan_found_inside_a_training_step_raises_at_the_step():
    fg = _chain_with_an_impossible_end()
    with deferring_checks() as pending:
        MeanField(num_iters=12, tol=0.0)(fg)
    with pytest.raises(ModelSpecError, match=r"update of variable 'z' \(model 0\)"):
        pending.raise_first_failure()


@pytest.mark.parametrize("value", [0, 2.5, True, -1, None])
def test_check_every_is_a_positive_integer(value):
    with pytest.raises(ConfigError, match=rf"MeanField check_every must be a positive integer, got {value}"):
        MeanField(check_every=value)
    mf = MeanField()
    with pytest.raises(ConfigError, match="MeanField check_every"):
        mf.check_every = value
    assert mf.check_every == 10


def test_an_engine_pickled_before_check_every_loads_with_the_default():
    """``pickle.dumps(MeanField(20, 0.1, 1e-5), protocol=4)`` by an earlier release (no ``check_every``)."""
    old = ("gASVZAAAAAAAAACMGmh5YnJpZHBnbS5pbmZlci5tZWFuX2ZpZWxklIwJTWVhbkZpZWxklJOUKYGUfZQojAludW1faXRlcnOU"
           "SxSMB2RhbXBpbmeURz+5mZmZmZmajAN0b2yURz7k+LWI42jxdWIu")
    mf = pickle.loads(base64.b64decode(old))
    assert (mf.num_iters, mf.damping, mf.tol, mf.check_every) == (20, 0.1, 1e-5, 10)
