import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridpgm.errors import ConfigError, DataError
from hybridpgm.graphs import MarkovNet, ising_grid
from hybridpgm.infer import MeanField
from tests.graphs.mrf_brute_force import brute_force, random_mrf


@settings(deadline=None, max_examples=15)
@given(seed=st.integers(0, 10_000), num_vars=st.integers(1, 5), num_factors=st.integers(1, 6),
       batch=st.sampled_from([(), (3,)]), num_iters=st.sampled_from([1, 3, 50]))
def test_mean_field_is_a_lower_bound(seed, num_vars, num_factors, batch, num_iters):
    mrf = random_mrf(seed, num_vars, num_factors=num_factors, batch=batch, scale=2.0)
    log_z, _ = brute_force(mrf, len(batch))
    bound = mrf.log_partition("mean_field", num_iters=num_iters)
    assert bound.shape == log_z.shape
    assert bool((bound <= log_z + 1e-10).all())


@settings(deadline=None, max_examples=10)
@given(seed=st.integers(0, 10_000))
def test_chromatic_sweeps_never_decrease_the_bound(seed):
    g = torch.Generator().manual_seed(seed)
    mrf = ising_grid(4, 4, torch.randn(24, generator=g, dtype=torch.double),
                     torch.randn(16, generator=g, dtype=torch.double))
    fg = mrf.factor_graph()
    bounds, q = [], None
    for _ in range(12):  # one sweep at a time, continuing from the last q
        res = MeanField(num_iters=1, tol=0.0)(fg, init=q)
        bounds.append(float(res.log_z))
        q = res.marginals
    assert all(b2 >= b1 - 1e-10 for b1, b2 in zip(bounds, bounds[1:]))


def test_exact_on_fully_factorised_model():
    g = torch.Generator().manual_seed(0)
    mrf = MarkovNet({"a": 3, "b": 2})
    mrf.add_factor("a", ["a"], torch.randn(4, 3, generator=g, dtype=torch.double))
    mrf.add_factor("b", ["b"], torch.randn(4, 2, generator=g, dtype=torch.double))
    log_z, marg = brute_force(mrf, 1)
    assert torch.allclose(mrf.log_partition("mean_field"), log_z)
    assert torch.allclose(mrf.marginals("mean_field")["a"], marg["a"])


def test_fixed_point_and_evidence():
    g = torch.Generator().manual_seed(1)
    mrf = ising_grid(3, 3, 0.3, torch.randn(9, generator=g, dtype=torch.double))
    evidence = {"x_1_1": torch.tensor([0, 1, -1])}
    fg = mrf.factor_graph(evidence)
    res = MeanField(num_iters=200, tol=1e-12)(fg)
    assert res.converged
    field = MeanField._field(fg, fg.masked_unary(), res.marginals)
    assert torch.allclose(torch.softmax(field, -1), res.marginals, atol=1e-9)
    assert torch.equal(res.marginals[:2, 4], torch.eye(2, dtype=torch.double))
    log_z, _ = brute_force(mrf, 1, evidence)
    assert bool((fg.unflatten(res.log_z) <= log_z).all())


def test_unrolled_mean_field_gradcheck():
    g = torch.Generator().manual_seed(2)
    J = (0.5 * torch.randn(7, generator=g, dtype=torch.double)).requires_grad_()
    h = (0.5 * torch.randn(6, generator=g, dtype=torch.double)).requires_grad_()

    def f(J, h):
        res = MeanField(num_iters=5, damping=0.1, tol=0.0)(ising_grid(2, 3, J, h).factor_graph())
        return res.log_z, res.marginals

    assert torch.autograd.gradcheck(f, (J, h))


@pytest.mark.parametrize("kwargs", [dict(num_iters=0), dict(damping=1.0)])
def test_bad_config(kwargs):
    with pytest.raises(ConfigError):
        MeanField(**kwargs)


@pytest.mark.parametrize("value", [2.5, True, 0])
def test_a_count_that_is_not_a_positive_integer_is_named(value):
    """Before: ``num_iters=2.5`` failed inside ``range`` with a raw TypeError, and ``True`` ran one sweep."""
    with pytest.raises(ConfigError, match=f"MeanField num_iters must be a positive integer, got {value}"):
        ising_grid(2, 2, 0.5).marginals("mean_field", num_iters=value)


@pytest.mark.parametrize("option, value", [
    ("tol", "x"), ("tol", None), ("tol", -1.0), ("tol", float("nan")), ("tol", True),
    ("damping", "0.5"), ("damping", False), ("damping", -0.1)])
def test_option_values_that_are_not_what_they_say_are_named(option, value):
    """Before: ``tol=-1``, NaN, ``True`` and ``damping=False`` were accepted silently, ``tol="x"``/``None`` and
    ``damping="0.5"`` failed with raw TypeErrors."""
    with pytest.raises(ConfigError, match=f"MeanField {option} .*got {value!r}"):
        MeanField(**{option: value})


@pytest.mark.parametrize("init, match", [
    (torch.full((4, 2), 0.5, dtype=torch.double), r"shape \[B, V, C\] = \(3, 4, 2\).*got \(4, 2\)"),
    (torch.full((2, 4, 2), 0.5, dtype=torch.double), r"got \(2, 4, 2\)"),
    (torch.full((3, 4, 3), 0.5, dtype=torch.double), r"got \(3, 4, 3\)"),
    (torch.full((3, 4, 2), 0.5), r"dtype torch.float64, got torch.float32"),
    ([[0.5, 0.5]], r"must be a tensor .*got list")])
def test_an_init_of_the_wrong_shape_or_dtype_is_named(init, match):
    """Before: a raw einsum/index error (``IndexError: index 2 is out of bounds``) from inside a sweep."""
    fg = ising_grid(2, 2, 0.3, torch.randn(3, 4, dtype=torch.double)).factor_graph()
    with pytest.raises(DataError, match=match):
        MeanField(num_iters=2)(fg, init=init)


def test_an_init_shared_by_the_batch_is_still_accepted():
    fg = ising_grid(2, 2, 0.3, torch.randn(3, 4, dtype=torch.double)).factor_graph()
    shared = torch.full((1, 4, 2), 0.5, dtype=torch.double)
    got = MeanField(num_iters=3, tol=0.0)(fg, init=shared).marginals
    want = MeanField(num_iters=3, tol=0.0)(fg, init=shared.expand(3, 4, 2)).marginals
    assert got.shape == (3, 4, 2) and torch.allclose(got, want, atol=1e-12)


def _two_variables():
    """The audit's model: given a = 0, b is uniform and log Z = log 2; a = 1 would be worth e^20."""
    mrf = MarkovNet({"a": 2, "b": 2})
    mrf.add_factor("ab", ["a", "b"], torch.tensor([[0.0, 0.0], [20.0, 20.0]], dtype=torch.float64))
    return mrf, mrf.factor_graph({"a": torch.tensor(0)})


@pytest.mark.parametrize("value, damping", [(0.5, 0.9), (3.0, 0.9), (0.5, 0.0)])
def test_an_init_is_restricted_to_the_valid_states_and_normalised(value, damping):
    """Found by an audit: an init with mass on a state the evidence rules out (a uniform start given a = 0) kept
    it under damping and gave a 'lower bound' of 6.84 > log Z = log 2; an unnormalised one (3.0 everywhere)
    gave 135.6 and q(b) = [1.98, 1.98]."""
    mrf, fg = _two_variables()
    init = torch.full((1, 2, 2), value, dtype=torch.float64)
    res = MeanField(num_iters=5, damping=damping, tol=0.0)(fg, init=init)
    log_z = mrf.log_partition("exact", evidence={"a": torch.tensor(0)})
    assert res.log_z.item() <= log_z.item() + 1e-12
    assert res.marginals[0, 0].tolist() == [1.0, 0.0]
    torch.testing.assert_close(res.marginals.sum(-1), torch.ones(1, 2, dtype=torch.float64))


@pytest.mark.parametrize("row, what", [([-0.5, 1.5], "negative"), ([float("nan"), 1.0], "NaN"),
                                       ([float("inf"), 1.0], "inf"), ([0.0, 0.0], "no mass")])
def test_an_init_that_is_not_a_distribution_is_refused_naming_the_variable(row, what):
    _, fg = _two_variables()
    init = torch.full((1, 2, 2), 0.5, dtype=torch.float64)
    init[0, 1] = torch.tensor(row)
    with pytest.raises(DataError, match=r"variable 'b' \(model 0\)"):
        MeanField(num_iters=3)(fg, init=init)


def test_a_variable_the_evidence_fixes_takes_its_state_whatever_the_init():
    """Found by a review: a warm start shared by batches with other evidence (all of a's mass on a = 1 while a = 0
    is observed) was refused, though the one state a may take decides its q; before the init checks it gave the
    default init's answer, and does again."""
    _, fg = _two_variables()
    init = torch.tensor([[[0.0, 1.0], [0.5, 0.5]]], dtype=torch.float64)
    got = MeanField(num_iters=5, tol=0.0)(fg, init=init)
    want = MeanField(num_iters=5, tol=0.0)(fg)
    torch.testing.assert_close(got.marginals, want.marginals)
    torch.testing.assert_close(got.log_z, want.log_z)


def test_an_init_with_mass_only_on_states_a_variable_cannot_take_is_refused():
    """a has two states in a model padded to three: an init all on the padding state says nothing about q(a)."""
    mrf = MarkovNet({"a": 2, "b": 3})
    mrf.add_factor("ab", ["a", "b"], torch.randn(2, 3, dtype=torch.float64))
    fg = mrf.factor_graph()
    init = torch.full((1, 2, 3), 1 / 3, dtype=torch.float64)
    init[0, 0] = torch.tensor([0.0, 0.0, 1.0])
    with pytest.raises(DataError, match=r"variable 'a' \(model 0\)"):
        MeanField(num_iters=3)(fg, init=init)


def test_mean_field_names_impossible_evidence_that_leaves_a_variable_with_no_finite_field():
    """The audit's impossible evidence (finfo.min penalties summing to -inf on both states of b): q was NaN and
    the bound NaN; then the engine's ModelSpecError naming b; now (session 38) the exact queries' EvidenceError
    naming the evidence, as ``MarkovNet.marginals`` raises before the sweeps
    (tests/graphs/test_mrf_impossible_evidence.py; a model impossible without evidence still gets the
    ModelSpecError: tests/infer/test_mean_field_host_reads.py)."""
    from hybridpgm.errors import EvidenceError
    from tests.infer.test_mrf_exact import _impossible_triangle

    mrf, ev = _impossible_triangle()
    with pytest.raises(EvidenceError, match=r"MeanField: the evidence of model\(s\) \[0\] has probability zero "
                                            r"\(model 0: evidence a=0, c=1\)"):
        MeanField()(mrf.factor_graph(ev))
