import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridpgm.errors import ConfigError
from hybridpgm.graphs import ising_grid
from hybridpgm.infer import BeliefPropagation
from tests.graphs.mrf_brute_force import assignments, brute_force, random_mrf


@settings(deadline=None, max_examples=12)
@given(seed=st.integers(0, 10_000), num_vars=st.integers(1, 6), batch=st.sampled_from([(), (3,)]),
       damping=st.sampled_from([0.0, 0.3]))
def test_bp_exact_on_random_trees(seed, num_vars, batch, damping):
    mrf = random_mrf(seed, num_vars, tree=True, batch=batch, scale=1.5)
    log_z, marg = brute_force(mrf, len(batch))
    fg = mrf.factor_graph()
    res = BeliefPropagation(num_iters=200, damping=damping, tol=1e-12)(fg)
    assert res.converged
    assert torch.allclose(fg.unflatten(res.log_z), log_z, atol=1e-8)
    got = mrf.marginals("bp", num_iters=200, damping=damping, tol=1e-12)
    for v in mrf.variables:
        assert torch.allclose(got[v], marg[v], atol=1e-8)


@settings(deadline=None, max_examples=10)
@given(seed=st.integers(0, 10_000), num_vars=st.integers(2, 6))
def test_bp_exact_on_trees_with_batched_evidence(seed, num_vars):
    mrf = random_mrf(seed, num_vars, tree=True)
    v = mrf.variables[-1]
    evidence = {v: torch.tensor([-1, 0, mrf.cards[v] - 1])}
    log_z, marg = brute_force(mrf, 1, evidence)
    assert torch.allclose(mrf.log_partition("bp", evidence=evidence, num_iters=100), log_z, atol=1e-8)
    got = mrf.marginals("bp", evidence=evidence, num_iters=100)
    for u in mrf.variables:
        assert torch.allclose(got[u], marg[u], atol=1e-8)


@settings(deadline=None, max_examples=15)
@given(seed=st.integers(0, 10_000), num_vars=st.integers(1, 6))
def test_max_product_map_on_trees(seed, num_vars):
    mrf = random_mrf(seed, num_vars, tree=True, scale=2.0)
    values, rows = assignments(mrf)
    best = rows[mrf.score(values).argmax()]
    got = mrf.map_assignment(num_iters=100)
    assert [int(got[v]) for v in mrf.variables] == best.tolist()


@pytest.mark.parametrize("coupling", [0.2, 0.6])
def test_loopy_bp_close_to_exact_on_small_grid(coupling):
    """Loopy BP on a 3x3 grid with random couplings: max marginal error ~4e-4 (J=0.2), ~8e-3 (J=0.6)."""
    g = torch.Generator().manual_seed(0)
    mrf = ising_grid(3, 3, coupling * torch.randn(12, generator=g, dtype=torch.double),
                     0.5 * torch.randn(9, generator=g, dtype=torch.double))
    exact = mrf.marginals("exact")
    bp = mrf.marginals("bp", num_iters=200)
    err = max(float((exact[v] - bp[v]).abs().max()) for v in exact)
    assert 0 < err < 0.02 * (coupling / 0.2)
    assert abs(float(mrf.log_partition("bp", num_iters=200) - mrf.log_partition("exact"))) < 0.05


def test_unrolled_bp_is_differentiable():
    g = torch.Generator().manual_seed(2)
    J = (0.5 * torch.randn(12, generator=g, dtype=torch.double)).requires_grad_()
    h = (0.5 * torch.randn(9, generator=g, dtype=torch.double)).requires_grad_()

    def f(J, h):
        mrf = ising_grid(3, 3, J, h)
        fg = mrf.factor_graph()
        res = BeliefPropagation(num_iters=7, damping=0.2, tol=0.0)(fg)
        return res.log_z, res.marginals

    assert torch.autograd.gradcheck(f, (J, h))


def test_bp_gradients_on_tree_match_exact():
    g = torch.Generator().manual_seed(4)
    J = (torch.randn(2, generator=g, dtype=torch.double)).requires_grad_()
    h = (torch.randn(3, generator=g, dtype=torch.double)).requires_grad_()
    grads = []
    for method, options in (("exact", {}), ("bp", {"num_iters": 10})):
        mrf = ising_grid(1, 3, J, h)
        grads.append(torch.autograd.grad(mrf.marginals(method, **options)["x_0_1"][1], (J, h)))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-8)


def test_batch_of_grids_matches_one_by_one():
    g = torch.Generator().manual_seed(5)
    J = 0.3 * torch.randn(4, 24, generator=g)
    h = torch.randn(4, 16, generator=g)
    batched = ising_grid(4, 4, J, h).log_partition("bp", num_iters=30, tol=0.0)
    single = torch.stack([ising_grid(4, 4, J[i], h[i]).log_partition("bp", num_iters=30, tol=0.0)
                          for i in range(4)])
    assert torch.allclose(batched, single, atol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(num_iters=0), dict(damping=1.0), dict(damping=-0.1)])
def test_bad_config(kwargs):
    with pytest.raises(ConfigError):
        BeliefPropagation(**kwargs)


@pytest.mark.parametrize("option, value", [("num_iters", 2.5), ("num_iters", True), ("check_every", 1.5)])
def test_a_non_integer_count_is_named(option, value):
    """Before: ``num_iters=2.5`` failed inside ``range`` with a raw TypeError, and ``True`` ran one step."""
    with pytest.raises(ConfigError, match=f"BeliefPropagation {option} must be a positive integer, got {value}"):
        BeliefPropagation(**{option: value})
    with pytest.raises(ConfigError, match=f"BeliefPropagation {option} must be a positive integer, got {value}"):
        ising_grid(2, 2, 0.5).marginals("bp", **{option: value})


# -- the flat engine reproduces the pre-engine implementation on loopy graphs --------------------
def _compare_with_reference(fg, **kw):
    from tests.infer.bp_reference import ReferenceBP

    res = BeliefPropagation(tol=0.0, **kw)(fg)
    log_z, marg, assignment, _, _ = ReferenceBP(tol=0.0, **kw)(fg)
    assert res.num_iters == kw["num_iters"]
    assert torch.allclose(res.marginals, marg, atol=1e-10, rtol=0)
    assert torch.equal(res.assignment, assignment)
    if log_z is None:
        assert res.log_z is None
    else:
        assert torch.allclose(res.log_z, log_z, atol=1e-9, rtol=0)


@pytest.mark.parametrize("damping", [0.0, 0.4])
@pytest.mark.parametrize("max_product", [False, True])
def test_binary_grid_fast_path_matches_reference(damping, max_product):
    g = torch.Generator().manual_seed(7)
    J = 0.8 * torch.randn(3, 40, generator=g, dtype=torch.double)
    h = torch.randn(3, 25, generator=g, dtype=torch.double)
    fg = ising_grid(5, 5, J, h).factor_graph()
    from hybridpgm.infer.bp_engine import BinaryPairwise
    assert BinaryPairwise.applies(fg)
    _compare_with_reference(fg, num_iters=23, damping=damping, max_product=max_product)


@pytest.mark.parametrize("damping", [0.0, 0.3])
@pytest.mark.parametrize("max_product", [False, True])
def test_general_path_matches_reference_on_loopy_graphs(damping, max_product):
    from hybridpgm.graphs import potts_grid
    g = torch.Generator().manual_seed(8)
    potts = potts_grid(4, 4, 3, 0.7 * torch.randn(2, 24, generator=g, dtype=torch.double),
                       torch.randn(2, 16, 3, generator=g, dtype=torch.double))
    _compare_with_reference(potts.factor_graph(), num_iters=17, damping=damping, max_product=max_product)
    # mixed cardinalities, arities 1-3, padding states, batched partial evidence
    mrf = random_mrf(11, 6, max_card=3, num_factors=8, max_arity=3, batch=(2,))
    v = mrf.variables[0]
    fg = mrf.factor_graph({v: torch.tensor([[-1], [mrf.cards[v] - 1]])})
    _compare_with_reference(fg, num_iters=17, damping=damping, max_product=max_product)


def test_binary_grid_with_evidence_takes_general_path_and_matches_brute_force_on_tree():
    g = torch.Generator().manual_seed(3)
    mrf = ising_grid(1, 5, torch.randn(4, generator=g, dtype=torch.double),
                     torch.randn(5, generator=g, dtype=torch.double))
    evidence = {"x_0_2": torch.tensor([-1, 1, 0])}
    log_z, marg = brute_force(mrf, 1, evidence)
    assert torch.allclose(mrf.log_partition("bp", evidence=evidence, num_iters=20), log_z, atol=1e-10)
    got = mrf.marginals("bp", evidence=evidence, num_iters=20)
    for v in mrf.variables:
        assert torch.allclose(got[v], marg[v], atol=1e-10)


def test_general_path_gradients_match_finite_differences():
    from hybridpgm.graphs import potts_grid
    g = torch.Generator().manual_seed(9)
    beta = (0.5 * torch.randn(12, generator=g, dtype=torch.double)).requires_grad_()
    un = torch.randn(9, 3, generator=g, dtype=torch.double).requires_grad_()

    def f(beta, un):
        res = BeliefPropagation(num_iters=6, damping=0.3, tol=0.0)(potts_grid(3, 3, 3, beta, un).factor_graph())
        return res.log_z, res.marginals

    assert torch.autograd.gradcheck(f, (beta, un))


def test_convergence_checked_every_k_steps():
    g = torch.Generator().manual_seed(1)
    fg = ising_grid(4, 4, 0.2 * torch.randn(24, generator=g, dtype=torch.double),
                    torch.randn(16, generator=g, dtype=torch.double)).factor_graph()
    res = BeliefPropagation(num_iters=500, tol=1e-8, check_every=7)(fg)
    assert res.converged and res.num_iters % 7 == 0 and res.num_iters < 500
    long = BeliefPropagation(num_iters=500, tol=0.0)(fg)
    assert torch.allclose(res.marginals, long.marginals, atol=1e-7)
    with pytest.raises(ConfigError):
        BeliefPropagation(check_every=0)


def test_repeated_calls_follow_in_place_changes_of_the_graph():
    from tests.infer.bp_reference import ReferenceBP
    g = torch.Generator().manual_seed(12)
    fg = ising_grid(3, 3, 0.5 * torch.randn(12, generator=g, dtype=torch.double),
                    torch.randn(9, generator=g, dtype=torch.double)).factor_graph()
    bp = BeliefPropagation(num_iters=20, tol=0.0)
    first = bp(fg).marginals
    assert torch.equal(bp(fg).marginals, first)  # remembered plan, same answer
    fg.valid[0, 4, 0] = False  # evidence x_1_1 = 1, in place: the general path now
    clamped = bp(fg).marginals
    _, ref, _, _, _ = ReferenceBP(num_iters=20, tol=0.0)(fg)
    assert torch.allclose(clamped, ref, atol=1e-12, rtol=0) and float(clamped[0, 4, 1]) == 1.0
    fg.valid[0, 4, 0] = True
    assert torch.allclose(bp(fg).marginals, first, atol=1e-15, rtol=0)
    variables = fg.groups[0].variables
    variables[0, 1] = 8  # the first factor now couples x_0_0 with x_2_2: a different graph
    swapped = bp(fg).marginals
    _, ref, _, _, _ = ReferenceBP(num_iters=20, tol=0.0)(fg)
    assert torch.allclose(swapped, ref, atol=1e-12, rtol=0) and not torch.allclose(swapped, first)


@pytest.mark.parametrize("option, value", [
    ("tol", "x"), ("tol", None), ("tol", -1.0), ("tol", float("nan")), ("tol", True), ("tol", float("inf")),
    ("damping", "0.5"), ("damping", False), ("damping", None), ("damping", float("nan")),
    ("max_product", "yes"), ("max_product", None), ("max_product", 1)])
def test_option_values_that_are_not_what_they_say_are_named(option, value):
    """Before: ``tol=-1``, NaN, ``True``, ``damping=False`` and ``max_product="yes"`` were accepted silently,
    ``tol="x"``/``None`` failed at call time inside the fused loop and ``damping="0.5"`` with a raw TypeError."""
    with pytest.raises(ConfigError, match=f"BeliefPropagation {option} .*got {value!r}"):
        BeliefPropagation(**{option: value})


def test_integer_and_numpy_option_values_are_still_numbers():
    fg = ising_grid(2, 2, 0.3, torch.linspace(-1, 1, 4, dtype=torch.double)).factor_graph()
    want = BeliefPropagation(num_iters=20, damping=0.0, tol=0.0)(fg).marginals
    got = BeliefPropagation(num_iters=20, damping=0, tol=np.float64(0.0))(fg).marginals
    assert torch.equal(got, want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="runs BP on CUDA")
def test_a_grid_built_from_cuda_tensors_runs_on_cuda():
    """Found on an H200 (benchmarks/bp_vs_pgmax.py): a MarkovNet built from CUDA tables kept its scope
    indices on the CPU, and compiling its factor graph failed in index_add."""
    g = torch.Generator().manual_seed(0)
    J, h = 0.3 * torch.randn(2, 12, generator=g), 0.5 * torch.randn(2, 9, generator=g)
    bp = BeliefPropagation(num_iters=30, damping=0.0, tol=0.0)
    on_cpu = bp(ising_grid(3, 3, J, h).factor_graph()).marginals
    on_cuda = bp(ising_grid(3, 3, J.cuda(), h.cuda()).factor_graph()).marginals
    assert on_cuda.device.type == "cuda" and torch.allclose(on_cuda.cpu(), on_cpu, atol=1e-6)


@pytest.mark.parametrize("damping, num_iters", [(0.5, 3), (0.8, 10)])
def test_damped_bp_after_k_steps_ignores_padding_states(damping, num_iters):
    """Before, messages were normalised over padding states too, so damped BP after K steps changed when an
    unrelated 3-state variable joined a binary grid (marginals by 3e-2, log Z by 0.16)."""
    from hybridpgm.graphs import MarkovNet, grid_edges

    g = torch.Generator().manual_seed(0)
    J = torch.randn(12, 2, 2, generator=g, dtype=torch.double)
    h = torch.randn(9, 2, generator=g, dtype=torch.double)

    def grid(extra):
        mrf = MarkovNet({**{f"x{i}": 2 for i in range(9)}, **({"z": 3} if extra else {})})
        mrf.add_factors("pair", [[f"x{a}", f"x{b}"] for a, b in grid_edges(3, 3)], J)
        return mrf.add_factors("u", [[f"x{i}"] for i in range(9)], h)

    options = dict(num_iters=num_iters, damping=damping, tol=0.0)
    alone, padded = grid(False), grid(True)
    for v, p in alone.marginals("bp", **options).items():
        assert torch.allclose(padded.marginals("bp", **options)[v], p, atol=1e-12)
    assert torch.allclose(padded.log_partition("bp", **options) - math.log(3), alone.log_partition("bp", **options),
                          atol=1e-12)


def _overflowing_triangle(fraction, dtype=torch.float32):
    """The audit's frustrated triangle (a, b, c told to differ, ab and bc twice) with hard constraints written as
    ``fraction * finfo.min``: the messages' sums and differences overflow and became NaN."""
    from hybridpgm.graphs import MarkovNet

    neg = torch.finfo(dtype).min * fraction
    mrf = MarkovNet({"a": 2, "b": 2, "c": 2})
    differ = torch.tensor([[neg, 0.0], [0.0, neg]], dtype=dtype)
    for name, scope in (("ab", "ab"), ("bc", "bc"), ("ac", "ac"), ("ab2", "ab"), ("bc2", "bc")):
        mrf.add_factor(name, list(scope), differ)
    return mrf


def test_nan_messages_are_named_at_a_convergence_check():
    """Found by an audit: BP marginals came back NaN at finfo.min penalties; the convergence check (the last
    step is always checked) now raises naming the variable, at no extra host read.  (The fused path's own
    NaN check: tests/infer/test_bp_fused.py; binary graphs of such penalties run on the general path.)"""
    from hybridpgm.errors import ModelSpecError

    fg = _overflowing_triangle(1.0).factor_graph({"a": torch.tensor(0)})  # a clamped state: the general path
    with pytest.raises(ModelSpecError, match=r"message to variable '[abc]' became NaN"):
        BeliefPropagation(num_iters=20)(fg)
    assert torch.isnan(BeliefPropagation(num_iters=20, tol=0.0)(fg).marginals).any()  # tol=0 reads nothing


@pytest.mark.parametrize("grad", [False, True])
def test_binary_penalties_near_finfo_min_give_the_exact_marginals(grad):
    """The triangle at finfo.min / 2 is binary pairwise, but its spread is beyond the log-odds path's
    (:func:`~hybridpgm.infer.bp_engine.odds_max_spread`): it ran there and raised NaN messages, and now runs on the
    general path, which gives the exact marginals (every one [0.5, 0.5])."""
    fg = _overflowing_triangle(0.5).factor_graph()
    if grad:
        fg.groups[0].log_potentials.requires_grad_()
    got = BeliefPropagation(num_iters=20)(fg).marginals
    assert torch.equal(got.detach(), torch.full((1, 3, 2), 0.5))


@pytest.mark.parametrize("grid", ["binary", "potts"])
@pytest.mark.parametrize("max_product", [False, True])
def test_a_result_pickles_with_its_lazy_parts_and_has_a_short_repr(grid, max_product):
    """``BPResult`` kept closures (its log Z, assignment and decoding are computed on first access), which
    ``pickle`` refused; its repr was ``<... object at 0x...>``."""
    import pickle

    from hybridpgm.graphs import potts_grid
    g = torch.Generator().manual_seed(3)
    fg = ising_grid(3, 3, 0.5 * torch.randn(12, generator=g), torch.randn(9, generator=g)).factor_graph() \
        if grid == "binary" else potts_grid(3, 3, 3, 0.5 * torch.randn(12, generator=g),
                                             torch.randn(9, 3, generator=g)).factor_graph()
    result = BeliefPropagation(num_iters=10, max_product=max_product)(fg)
    copy = pickle.loads(pickle.dumps(result))
    torch.testing.assert_close(copy.marginals, result.marginals, rtol=0, atol=0)
    torch.testing.assert_close(copy.assignment, result.assignment, rtol=0, atol=0)
    assert (copy.converged, copy.num_iters) == (result.converged, result.num_iters)
    if max_product:
        assert copy.log_z is None and result.log_z is None
        torch.testing.assert_close(copy.decoded_assignment, result.decoded_assignment, rtol=0, atol=0)
    else:
        torch.testing.assert_close(copy.log_z, result.log_z, rtol=0, atol=0)
        assert copy.decoded_assignment is None
    kind = "max-product" if max_product else "sum-product"
    assert repr(copy) == f"BPResult({kind}, marginals=[1, 9, {2 if grid == 'binary' else 3}] torch.float32, " \
                         f"converged={result.converged}, num_iters={result.num_iters})"
