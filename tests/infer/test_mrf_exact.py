"""Exact MRF contraction: both spaces against brute force, the per-model log-space redo, plan caching, errors."""

import contextlib
import math
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from hybridpgm.errors import EvidenceError, ModelSpecError
from hybridpgm.graphs import MarkovNet, ising_grid
from hybridpgm.graphs.contraction import ContractionPlan
from hybridpgm.infer import bn_contract, mrf_exact
from tests.graphs.bn_helpers import in_space
from tests.infer.test_mrf_plan import plans_built  # noqa: F401 (a fixture)
from tests.graphs.mrf_brute_force import assignments, brute_force, random_mrf


@contextlib.contextmanager
def _contractions():
    """``[(semiring, models, dtype)]`` of every contraction the MRF plans run (a spy on :class:`ContractionPlan`)."""
    seen, real = [], ContractionPlan.__call__

    def spy(plan, operands, semiring="log", step_args=None):
        seen.append((semiring, operands[0].shape[0], operands[0].dtype))
        return real(plan, operands, semiring, step_args)

    with mock.patch.object(ContractionPlan, "__call__", spy):
        yield seen


@pytest.fixture
def semirings():
    with _contractions() as seen:
        yield seen


def _random_evidence(mrf, seed: int, batch: int):
    g = torch.Generator().manual_seed(seed)
    return {v: torch.randint(-1, c, (batch,), generator=g) for v, c in list(mrf.cards.items())[:2]}


@settings(deadline=None, max_examples=24)
@given(seed=st.integers(0, 10_000), num_vars=st.integers(1, 5), num_factors=st.integers(1, 6),
       dtype=st.sampled_from([torch.float64, torch.float32]), prob=st.booleans(), evidence=st.booleans())
def test_both_spaces_match_brute_force(seed, num_vars, num_factors, dtype, prob, evidence):
    """Probability space (float64, float32) and forced log space give brute force's log Z and marginals."""
    ref_mrf = random_mrf(seed, num_vars, num_factors=num_factors, batch=(3,))
    mrf = random_mrf(seed, num_vars, num_factors=num_factors, batch=(3,)).to(dtype)  # the same model, rounded
    ev = _random_evidence(mrf, seed, 3) if evidence else None
    log_z, marg = brute_force(ref_mrf, 1, ev)
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    with in_space(prob), _contractions() as seen:
        got_z = mrf.log_partition("exact", evidence=ev)
        got = mrf.marginals("exact", evidence=ev)
    assert got_z.dtype == dtype and torch.allclose(got_z.double(), log_z, rtol=tol, atol=tol)
    for v in mrf.variables:
        assert torch.allclose(got[v].double(), marg[v], atol=tol)
    assert {semiring for semiring, *_ in seen} == ({"prob"} if prob else {"log"})


def _frustrated(strength: float, dtype=torch.float64) -> torch.Tensor:
    """Couplings of a 2x2 Ising loop with one antiferromagnetic bond: every state breaks a bond, so the shifted
    potentials' sum is :math:`8 e^{-2K}` (8 ground states)."""
    return torch.tensor([strength, strength, strength, -strength], dtype=dtype)


@pytest.mark.parametrize("dtype,strength", [(torch.float64, 300.0), (torch.float32, 20.0)])
def test_models_under_the_floor_are_redone_alone_in_log_space(semirings, dtype, strength):
    """In a batch of three grids the frustrated one (shifted sum 8 exp(-2K), under the dtype's floor) is contracted
    again alone in log space; all three answers are brute force's."""
    J = torch.stack([0.3 * torch.ones(4, dtype=dtype), _frustrated(strength, dtype), -0.2 * torch.ones(4, dtype=dtype)])
    h = torch.linspace(-0.5, 0.5, 4, dtype=dtype).expand(3, 4)
    mrf = ising_grid(2, 2, J, h)
    ref_log_z, ref_marg = brute_force(ising_grid(2, 2, J.double(), h.double()), 1)
    assert math.log(8) - 2 * strength < math.log(mrf_exact.probability_floor(dtype, 4 * math.log(2)))
    log_z = mrf.log_partition("exact")
    assert semirings == [("prob", 3, dtype), ("log", 1, dtype)]
    marg = mrf.marginals("exact")
    # float32: log-potentials of size K rounded to 6e-8 of K, so log Z and the probabilities to about 1e-6
    rtol, atol = (1e-14, 1e-12) if dtype == torch.float64 else (1e-6, 1e-5)
    assert torch.allclose(log_z.double(), ref_log_z, rtol=rtol, atol=atol)
    for v in mrf.variables:
        assert torch.allclose(marg[v].double(), ref_marg[v], atol=atol)


def test_gradients_through_a_redone_model_equal_log_space():
    """d(sum log Z)/d(couplings) through a batch with a redone model equals the all-log-space gradient."""
    J = torch.stack([0.3 * torch.ones(4, dtype=torch.float64), _frustrated(300.0)]).requires_grad_()

    def grad():
        (g,) = torch.autograd.grad(ising_grid(2, 2, J).log_partition("exact").sum(), J)
        return g

    with in_space(False):
        want = grad()
    assert torch.allclose(grad(), want, atol=1e-12)



def test_float32_models_of_many_states_are_contracted_in_float64(semirings):
    """A float32 chain of 2^240 joint states (past float32's floor, and its range) is contracted in float64
    probability space and answered in float32; without float64 in the floor table, in float32 log space."""
    mrf = MarkovNet({f"x{i}": 2 for i in range(240)})
    mrf.add_factors("chain", [[f"x{i}", f"x{i + 1}"] for i in range(239)], 0.1 * torch.ones(239, 2, 2))
    want = 240 * math.log(2) + 239 * 0.1  # every state scores 239 * 0.1
    log_z = mrf.log_partition("exact")
    assert semirings == [("prob", 1, torch.float64)] and log_z.dtype == torch.float32
    assert math.isclose(float(log_z), want, rel_tol=1e-7)  # float64's answer, rounded to float32
    with mock.patch.dict(bn_contract.PROBABILITY_FLOOR, {torch.float32: 1e-15}, clear=True):
        log_z = mrf.log_partition("exact")
    assert semirings[1:] == [("log", 1, torch.float32)]
    # 239 steps, each rounding a running log-sum of size up to log Z to float32
    assert math.isclose(float(log_z), want, abs_tol=239 * torch.finfo(torch.float32).eps * want)



@settings(deadline=None, max_examples=20)
@given(seed=st.integers(0, 10_000), num_vars=st.integers(1, 5), num_factors=st.integers(1, 6), evidence=st.booleans())
def test_exact_map_is_the_brute_force_argmax(seed, num_vars, num_factors, evidence):
    """The max-sum contraction's back-tracked state is the highest-scoring valid assignment of each model."""
    mrf = random_mrf(seed, num_vars, num_factors=num_factors, batch=(3,))
    ev = _random_evidence(mrf, seed, 3) if evidence else None
    fg = mrf.factor_graph(ev)
    x, best = mrf_exact.exact_map(fg)
    values, rows = assignments(mrf, 1)
    scores = mrf.score(values).expand(rows.shape[0], 3).clone()  # [M, 3]
    for v, val in (ev or {}).items():
        scores[(values[v] != val) & (val >= 0)] = float("-inf")
    want = scores.max(0)
    assert torch.allclose(best, want.values, atol=1e-12)
    assert torch.equal(x, rows[want.indices])  # random continuous potentials: no ties
    got = mrf.map_assignment(ev, method="exact")
    assert torch.equal(torch.stack([got[v] for v in mrf.variables], -1), x)


def test_exact_map_on_a_loopy_grid_where_max_product_bp_need_not_be_exact():
    """A frustrated 3x3 Ising grid: the exact MAP (and the default, ``"auto"``) scores the brute-force maximum,
    where max-product BP scores 6.3 against 16.3; an unknown method, or options for the exact one, are errors."""
    g = torch.Generator().manual_seed(5)
    mrf = ising_grid(3, 3, 2.0 * torch.randn(12, generator=g, dtype=torch.float64),
                     0.1 * torch.randn(9, generator=g, dtype=torch.float64))
    values, _ = assignments(mrf)
    best = mrf.score(values).max()
    for x in (mrf.map_assignment(method="exact"), mrf.map_assignment()):
        assert torch.allclose(mrf.score(x), best, atol=1e-12)
    assert mrf.score(mrf.map_assignment(method="bp")) < best - 10
    assert mrf.score(mrf.map_assignment(num_iters=30)) < best - 10  # BP options select BP
    with pytest.raises(ModelSpecError, match="unknown method 'icm'"):
        mrf.map_assignment(method="icm")
    with pytest.raises(ModelSpecError, match=r"method='exact' takes no options, got \['num_iters'\]"):
        mrf.map_assignment(method="exact", num_iters=30)


@pytest.mark.parametrize("side,cheap", [(6, True), (20, False), (40, False)])
def test_auto_map_takes_the_exact_contraction_only_where_it_is_cheap(plans_built, side, cheap):  # noqa: F811
    """6x6: exact (the structure cached for it); 20x20: greedy costs 4.6e9 flops per model, so BP, without the
    order search (seconds) and without caching; 40x40: a treewidth beyond the contraction, so BP, no error."""
    mrf = ising_grid(side, side, 0.3)
    assert mrf_exact.exact_is_cheap(mrf.factor_graph()) is cheap
    assert [optimize for optimize, _ in plans_built] == ["greedy"] * (side < 40)
    assert len(mrf_exact._STRUCTURES) == int(cheap)
    with _contractions() as seen:
        x = mrf.map_assignment()
    assert [semiring for semiring, *_ in seen] == (["max"] if cheap else [])
    assert x["x_0_0"].shape == ()


def test_a_model_beyond_the_memory_limit_raises_before_any_work(monkeypatch):
    """A 4x4 grid's largest intermediate is 16 elements per model: one model of float32 (counted as float64, which
    it may run in) needs 128 bytes; under a limit one byte lower every exact query raises naming the size, and
    ``"auto"`` MAP takes BP.  (A batch over the limit whose models fit runs in chunks of rows:
    tests/infer/test_mrf_auto_batch.py.)"""
    mrf = ising_grid(4, 4, 0.3 * torch.randn(16, 24), torch.randn(16, 16))
    fg = mrf.factor_graph()
    assert mrf_exact._structure(fg).plan.largest_intermediate == 16
    monkeypatch.setattr(mrf_exact, "EXACT_MAX_BYTES", 128)
    mrf.log_partition("exact")  # one model per contraction: exactly at the limit
    monkeypatch.setattr(mrf_exact, "EXACT_MAX_BYTES", 127)
    message = r"needs an intermediate of 16 elements \(1.19e-07 GiB for 1 model\(s\)\), more than .*EXACT_MAX_BYTES"
    with _contractions() as seen:
        for query in (lambda: mrf.log_partition("exact"), lambda: mrf.marginals("exact"),
                      lambda: mrf.map_assignment(method="exact"), lambda: mrf.sample(2, method="exact")):
            with pytest.raises(ModelSpecError, match=message):
                query()
        assert not mrf_exact.exact_is_cheap(fg)
        mrf.map_assignment()
    assert seen == []


def test_exact_map_beyond_the_work_limit_raises_before_any_work(monkeypatch):
    """A 4x4 grid's max-sum contraction takes 680 element operations per model (each step: its operands times the
    states of the dims they join); under a limit one lower, ``map_assignment(method="exact")`` raises naming the
    estimate, the limit and the remedies before contracting, ``"auto"`` takes BP, and the sum-product queries
    (no max-sum) still run."""
    mrf = ising_grid(4, 4, 0.3 * torch.randn(16, 24), torch.randn(16, 16))
    fg = mrf.factor_graph()
    steps = mrf_exact._structure(fg).plan.steps
    assert mrf_exact.exact_map_work(fg) == sum(len(ins) * 2 ** len({d for dims in ins for d in dims} - {"\x00rows"})
                                               for _, ins, *_ in steps) == 680
    monkeypatch.setattr(mrf_exact, "EXACT_MAP_MAX_WORK", 680)
    mrf.map_assignment(method="exact")  # exactly at the limit
    monkeypatch.setattr(mrf_exact, "EXACT_MAP_MAX_WORK", 679)
    message = (r"exact MAP over 16 variables needs about 680 element operations per model .*"
               r"EXACT_MAP_MAX_WORK \(679: .*method='bp'\) or method='auto'.*raise EXACT_MAP_MAX_WORK")
    with _contractions() as seen:
        with pytest.raises(ModelSpecError, match=message):
            mrf.map_assignment(method="exact")
        with pytest.raises(ModelSpecError, match=message):
            mrf_exact.exact_map(fg)
        assert seen == []
        assert not mrf_exact.exact_is_cheap(fg)
        bp = mrf.map_assignment()
        mrf.log_partition("exact")
    assert [semiring for semiring, *_ in seen] == ["prob"]
    assert bp["x_0_0"].shape == (16,)


def test_the_default_work_limit_refuses_a_22x22_grid_map(monkeypatch, plans_built):  # noqa: F811
    """A 22x22 binary grid fits in memory but its max-sum contraction would run for minutes: refused at once from
    the plan (the greedy order's 1.5e11 operations here; the searched order's is 5.5e10), with no contraction
    run.  Every model ``"auto"`` gives the exact contraction (at most SEARCH_ABOVE flops, the max-sum work of the
    same path) is under the limit."""
    from hybridpgm.infer import mrf_plan

    assert mrf_exact.EXACT_MAP_MAX_WORK >= 2 * mrf_exact.SEARCH_ABOVE
    monkeypatch.setattr(mrf_plan, "SEARCH_ABOVE", math.inf)  # the greedy order only: no search of seconds
    fg = ising_grid(22, 22, 0.3).factor_graph()
    try:
        with _contractions() as seen:
            with pytest.raises(ModelSpecError, match=r"about 1\.53e\+11 element operations per model .*"
                                                     r"EXACT_MAP_MAX_WORK \(1e\+10"):
                mrf_exact.exact_map(fg)
        assert seen == []
    finally:
        mrf_plan._STRUCTURES.clear()


@settings(deadline=None, max_examples=20)
@given(seed=st.integers(0, 10_000), num_vars=st.integers(1, 5), num_factors=st.integers(1, 6),
       dtype=st.sampled_from([torch.float64, torch.float32]), prob=st.booleans(), evidence=st.booleans())
def test_exact_samples_have_their_brute_force_probability_and_take_one_contraction(seed, num_vars, num_factors,
                                                                                  dtype, prob, evidence):
    """Every drawn sample's probability (the product of the conditionals it was drawn from) is the brute-force
    :math:`p(x \\mid e)` of its model, the evidence holds, and the batch costs one contraction, in probability
    space or (forced) log space."""
    mrf = random_mrf(seed, num_vars, num_factors=num_factors, batch=(3,))
    ev = _random_evidence(mrf, seed, 3) if evidence else None
    fg = random_mrf(seed, num_vars, num_factors=num_factors, batch=(3,)).to(dtype).factor_graph(ev)
    with in_space(prob), _contractions() as seen:
        x, log_p = mrf_exact._sample(fg, 200, torch.Generator().manual_seed(seed), with_log_prob=True)
    space = "prob" if prob else "log"
    assert seen == [(space, 3, dtype)] and x.shape == (200, 3, num_vars) and log_p.dtype == dtype
    log_z, _ = brute_force(mrf, 1, ev)
    want = mrf.score({v: x[..., i] for i, v in enumerate(mrf.variables)}) - log_z
    tol = 1e-10 if dtype == torch.float64 else 1e-4  # float32: tables rounded to 6e-8 relative, 5 steps
    assert torch.allclose(log_p.double(), want, atol=tol)
    for i, v in enumerate(mrf.variables[:2] if ev else []):
        seen_ev = ev[v] >= 0
        assert torch.equal(x[:, seen_ev, i], ev[v][seen_ev].expand(200, -1))


@pytest.mark.parametrize("dtype,strength", [(torch.float64, 300.0), (torch.float32, 20.0)])
def test_exact_samples_of_a_model_under_the_floor_are_redrawn_in_log_space(semirings, dtype, strength):
    """The frustrated grid of a batch of three is sampled again alone in log space; every sample's probability
    is brute force's, and the frustrated loop's samples each break exactly one bond."""
    J = torch.stack([0.3 * torch.ones(4, dtype=dtype), _frustrated(strength, dtype), -0.2 * torch.ones(4, dtype=dtype)])
    h = torch.linspace(-0.5, 0.5, 4, dtype=dtype).expand(3, 4)
    mrf, ref = ising_grid(2, 2, J, h), ising_grid(2, 2, J.double(), h.double())
    x, log_p = mrf_exact._sample(mrf.factor_graph(), 300, torch.Generator().manual_seed(0), with_log_prob=True)
    assert semirings == [("prob", 3, dtype), ("log", 1, dtype)]
    want = ref.score({v: x[..., i] for i, v in enumerate(ref.variables)}) - brute_force(ref, 1)[0]
    # float32: log-potentials of size K rounded to 6e-8 of K
    assert torch.allclose(log_p.double(), want, atol=1e-10 if dtype == torch.float64 else 1e-4)
    spins = x[:, 1]  # [300, 4]: x_0_0, x_0_1, x_1_0, x_1_1; bonds in grid_edges order (the last antiferromagnetic)
    broken = torch.stack([spins[:, 0] != spins[:, 1], spins[:, 2] != spins[:, 3], spins[:, 0] != spins[:, 2],
                          spins[:, 1] == spins[:, 3]], -1).sum(-1)
    assert bool((broken == 1).all())


def test_exact_sample_frequencies_follow_the_joint():
    """Chi-square goodness of fit of 40,000 draws per model (fixed seeds: deterministic; a wrong conditional
    gives a statistic in the hundreds) on a loopy model with three-way factors, one model with evidence."""
    mrf = random_mrf(11, 5, max_card=3, num_factors=5, max_arity=3, batch=(2,))
    ev = {mrf.variables[1]: torch.tensor([-1, 0])}
    n = 40_000
    s = mrf.sample(n, method="exact", evidence=ev, generator=torch.Generator().manual_seed(0))
    values, rows = assignments(mrf, 1)
    log_z, _ = brute_force(mrf, 1, ev)
    logp = mrf.score(values) - log_z  # [M, 2]
    logp[:, 1] = logp[:, 1].masked_fill(rows[:, 1] != 0, -math.inf)
    cards = list(mrf.cards.values())
    strides = torch.tensor([math.prod(cards[i + 1:]) for i in range(len(cards))])
    flat = (torch.stack([s[v] for v in mrf.variables], -1) * strides).sum(-1)  # [n, 2]
    for b in range(2):
        counts = torch.bincount(flat[:, b], minlength=rows.shape[0]).double()
        p = logp[:, b].exp()
        assert float(counts[p == 0].sum()) == 0
        assert stats.chisquare(counts[p > 0].numpy(), (n * p[p > 0]).numpy()).pvalue > 1e-4


def test_exact_sampling_of_a_model_with_impossible_evidence_names_it():
    fg = random_mrf(2, 3, batch=(3,)).factor_graph()
    fg.valid = fg.valid.clone()  # shared across the batch as built
    fg.valid[1, 0] = False
    with pytest.raises(EvidenceError, match=r"model\(s\) \[1\] has probability zero"):
        mrf_exact.exact_sample(fg, 5)


# -- queries computed by autograd, under no_grad and inference_mode ----------------------------------------
def _loop_mrf(seed: int) -> MarkovNet:
    g = torch.Generator().manual_seed(seed)
    mrf = MarkovNet({"a": 2, "b": 3, "c": 2})
    mrf.add_factor("ab", ["a", "b"], torch.nn.Parameter(torch.randn(2, 3, generator=g, dtype=torch.float64)))
    mrf.add_factor("bc", ["b", "c"], torch.randn(2, 3, 2, generator=g, dtype=torch.float64))  # a batch of 2
    mrf.add_factor("ca", ["c", "a"], torch.randn(2, 2, generator=g, dtype=torch.float64))
    return mrf


def test_marginals_and_map_under_inference_mode_equal_those_outside():
    """exact_marginals and exact_map are gradients of a contraction: under torch.inference_mode() they raised
    'element 0 of tensors does not require grad' (enable_grad does not lift inference mode)."""
    mrf = _loop_mrf(0)
    evidence = {"c": torch.tensor([1, -1])}
    want_marg, want_map = mrf.marginals("exact", evidence=evidence), mrf.map_assignment(evidence, method="exact")
    log_z, marg = brute_force(mrf, 1, evidence)
    for v in mrf.variables:
        torch.testing.assert_close(want_marg[v].detach(), marg[v])
    with torch.inference_mode():
        inner_ev = {"c": torch.tensor([1, -1])}  # inference tensors
        got_marg, got_map = mrf.marginals("exact", evidence=inner_ev), mrf.map_assignment(inner_ev, method="exact")
        got_z = mrf.log_partition("exact", evidence=inner_ev)
    with torch.no_grad():
        ng_marg = mrf.marginals("exact", evidence=evidence)
    for v in mrf.variables:
        torch.testing.assert_close(got_marg[v], want_marg[v].detach())
        torch.testing.assert_close(ng_marg[v], want_marg[v].detach())
        assert torch.equal(got_map[v], want_map[v])
    torch.testing.assert_close(got_z, log_z)


def test_a_structure_first_built_in_inference_mode_still_serves_gradients():
    """The contraction structure is cached: built under inference_mode (by a log Z query), its index tensors
    were inference tensors, and the next differentiable query raised 'Inference tensors cannot be saved for
    backward'."""
    mrf = _loop_mrf(1)
    with mock.patch.dict(mrf_exact._STRUCTURES, clear=True):
        with torch.inference_mode():
            mrf.log_partition("exact")
        assert len(mrf_exact._STRUCTURES) == 1
        marg = mrf.marginals("exact")
        marg["a"][..., 0].sum().backward()
    assert mrf._pot_0.grad is not None and bool(mrf._pot_0.grad.abs().sum() > 0)


def _impossible_triangle(dtype=torch.float32):
    """The audit's model: a frustrated triangle of ``finfo.min`` 'differ' constraints (ab and bc twice); given
    a = 0, c = 1 both states of b break a doubled constraint, whose two penalties sum to -inf."""
    neg = torch.finfo(dtype).min
    differ = torch.tensor([[neg, 0.0], [0.0, neg]], dtype=dtype)
    mrf = MarkovNet({"a": 2, "b": 2, "c": 2})
    for name, scope in (("ab", "ab"), ("bc", "bc"), ("ac", "ac"), ("ab2", "ab"), ("bc2", "bc")):
        mrf.add_factor(name, list(scope), differ)
    return mrf, {"a": torch.tensor(0), "c": torch.tensor(1)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_marginals_and_map_of_evidence_every_assignment_of_which_scores_minus_inf_raise(dtype):
    """Found by an audit: exact marginals were all zeros and the exact MAP returned b = 0 with a = c = 0,
    contradicting the evidence c = 1; both now raise as exact sampling does, naming the model and its evidence.
    A batch whose rows are all possible is unaffected."""
    mrf, ev = _impossible_triangle(dtype)
    assert mrf.log_partition("exact", evidence=ev).item() == -math.inf  # log p(e) = -inf is an answer
    with pytest.raises(EvidenceError, match=r"exact marginals.*model\(s\) \[0\].*a=0, c=1"):
        mrf.marginals("exact", evidence=ev)
    with pytest.raises(EvidenceError, match=r"exact MAP.*model\(s\) \[0\].*a=0, c=1"):
        mrf.map_assignment(method="exact", evidence=ev)
    with pytest.raises(EvidenceError, match=r"model\(s\) \[1\]"):  # the second row of a batch
        mrf.marginals("exact", evidence={"a": torch.tensor([0, 0]), "c": torch.tensor([0, 1])})
    fine = {"a": torch.tensor([0, 1]), "c": torch.tensor([0, 1])}  # a = c: b differs from both, ac is broken once
    x = mrf.map_assignment(method="exact", evidence=fine)
    assert x["b"].tolist() == [1, 0]
    assert torch.isfinite(mrf.marginals("exact", evidence=fine)["b"]).all()


@pytest.mark.slow  # plans a 20x20 grid's MAP (about 30 s)
def test_the_default_work_limit_lets_the_documented_20x20_grid_map_through():
    """docs/markov_nets.md reports a 20x20 exact MAP (39 s): its searched plan's 4.6e9 operations are under the
    limit (a first limit of 4e9 refused it)."""
    work = mrf_exact.exact_map_work(ising_grid(20, 20, 0.3).factor_graph())
    assert 4e9 < work <= mrf_exact.EXACT_MAP_MAX_WORK
