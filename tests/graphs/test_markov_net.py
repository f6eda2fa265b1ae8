import functools
import inspect
import math

import pyro
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from hybridpgm.errors import ConfigError, EvidenceError, ModelSpecError
from hybridpgm.graphs import MarkovNet, grid_edges, ising_grid, potts_grid
from tests.graphs.mrf_brute_force import assignments, brute_force, random_mrf
from tests.graphs.test_mrf_declare import _pair


@settings(deadline=None, max_examples=15)
@given(seed=st.integers(0, 10_000), num_vars=st.integers(1, 4), num_factors=st.integers(1, 5),
       batch=st.sampled_from([(), (2,)]))
def test_exact_matches_brute_force(seed, num_vars, num_factors, batch):
    mrf = random_mrf(seed, num_vars, num_factors=num_factors, batch=batch)
    log_z, marg = brute_force(mrf, len(batch))
    assert torch.allclose(mrf.log_partition("exact"), log_z, atol=1e-10)
    got = mrf.marginals("exact")
    for v in mrf.variables:
        assert got[v].shape == marg[v].shape
        assert torch.allclose(got[v], marg[v], atol=1e-10)


@settings(deadline=None, max_examples=10)
@given(seed=st.integers(0, 10_000), num_vars=st.integers(2, 4))
def test_exact_with_batched_partial_evidence(seed, num_vars):
    mrf = random_mrf(seed, num_vars, num_factors=4)
    v0, v1 = mrf.variables[0], mrf.variables[1]
    evidence = {v0: torch.tensor([-1, 0, mrf.cards[v0] - 1]), v1: torch.tensor([0, -1, 0])}
    log_z, marg = brute_force(mrf, 1, evidence)
    assert torch.allclose(mrf.log_partition("exact", evidence=evidence), log_z, atol=1e-10)
    got = mrf.marginals("exact", evidence=evidence)
    for v in mrf.variables:
        assert torch.allclose(got[v], marg[v], atol=1e-10)
    assert torch.allclose(got[v1][0], torch.nn.functional.one_hot(torch.tensor(0), mrf.cards[v1]).double())


def test_independent_models_batched_like_separate():
    g = torch.Generator().manual_seed(1)
    E = len(grid_edges(2, 3))
    J = torch.randn(3, E, generator=g, dtype=torch.double)
    h = torch.randn(3, 6, generator=g, dtype=torch.double)
    batched = ising_grid(2, 3, J, h).log_partition("exact")
    single = torch.stack([ising_grid(2, 3, J[i], h[i]).log_partition("exact") for i in range(3)])
    assert batched.shape == (3,)
    assert torch.allclose(batched, single)
    log_z, _ = brute_force(ising_grid(2, 3, J, h), 1)
    assert torch.allclose(batched, log_z)


def test_ising_and_potts_grids():
    mrf = ising_grid(3, 4, coupling=0.7, field=0.2)
    assert len(mrf.variables) == 12 and len(mrf.families["coupling"]["scopes"]) == 17
    colors = torch.tensor(mrf.colors()).reshape(3, 4)
    assert torch.equal(colors, (torch.arange(3)[:, None] + torch.arange(4)) % 2)
    # Ising J s_i s_j equals a Potts coupling 2J [x_i = x_j] up to a constant per edge
    potts = potts_grid(3, 4, 2, coupling=1.4, unary=torch.tensor([[-0.2, 0.2]]))
    assert torch.allclose(potts.log_partition() - 17 * 0.7, mrf.log_partition(), atol=1e-5)
    log_z, _ = brute_force(mrf)
    assert torch.allclose(mrf.log_partition(), log_z, atol=1e-4)


class _Neural(nn.Module):
    """Context [N, 4] -> log-potentials [N, 1, 2, 2] for one edge family."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4).double()

    def forward(self, ctx):
        return self.lin(ctx).reshape(-1, 1, 2, 2)


def test_neural_potentials_batch_over_context_and_gradients():
    torch.manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 2, "c": 2})
    mrf.add_factors("pair", [["a", "b"], ["b", "c"]], _Neural())
    mrf.add_factor("u", ["a"], nn.Parameter(torch.zeros(2, dtype=torch.double)))
    ctx = torch.randn(5, 4, dtype=torch.double)
    log_z = mrf.log_partition("exact", context=ctx)
    assert log_z.shape == (5,)
    ref, _ = brute_force(mrf, 1, context=ctx)
    assert torch.allclose(log_z, ref)
    marg = mrf.marginals("exact", context=ctx)["c"]
    marg[:, 1].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mrf.parameters())


def test_exact_log_partition_gradcheck():
    g = torch.Generator().manual_seed(3)
    table = torch.randn(2, 3, 2, generator=g, dtype=torch.double, requires_grad=True)

    def f(t):
        mrf = MarkovNet({"a": 2, "b": 3, "c": 2, "d": 2})
        mrf.add_factor("abc", ["a", "b", "c"], t)
        mrf.add_factor("cd", ["c", "d"], t[:, 0])
        return mrf.log_partition("exact"), mrf.marginals("exact")["d"]

    assert torch.autograd.gradcheck(f, (table,))


def test_gibbs_marginals_match_exact_within_mc_error():
    g = torch.Generator().manual_seed(0)
    mrf = ising_grid(3, 3, coupling=0.4, field=0.5 * torch.randn(9, generator=g))
    exact = mrf.marginals("exact")
    n = 2000
    samples = mrf.sample(n, num_sweeps=20, generator=torch.Generator().manual_seed(1))
    for v in mrf.variables:
        p = exact[v][1]
        se = math.sqrt(float(p * (1 - p)) / n)
        assert abs(samples[v].float().mean() - p) < 4 * se, v


def test_exact_sampling_joint_frequencies():
    mrf = random_mrf(11, 3, max_card=3, num_factors=3)
    n = 6000
    s = mrf.sample(n, method="exact", evidence={mrf.variables[0]: torch.tensor([-1, 0])},
                   generator=torch.Generator().manual_seed(0))
    values = {v: torch.tensor([0, 0]) for v in mrf.variables}
    p = (mrf.score(values) - mrf.log_partition(evidence={mrf.variables[0]: torch.tensor([-1, 0])})).exp()
    freq = torch.stack([v == 0 for v in s.values()]).all(0).double().mean(0)  # P(all zero), per batch entry
    se = (p * (1 - p) / n).sqrt()
    assert s[mrf.variables[0]].shape == (n, 2) and bool((s[mrf.variables[0]][:, 1] == 0).all())
    assert bool(((freq - p).abs() < 4 * se + 1e-12).all())


def test_gibbs_respects_evidence():
    mrf = ising_grid(2, 2, coupling=1.0)
    s = mrf.sample(50, evidence={"x_0_0": torch.tensor([0, 1])}, num_sweeps=5)
    assert s["x_0_0"].shape == (50, 2)
    assert torch.equal(s["x_0_0"], torch.tensor([0, 1]).expand(50, 2))


def test_variables_as_pairs_keep_their_order():
    assert MarkovNet([("b", 3), ("a", 2)]).variables == ["b", "a"]
    assert MarkovNet([("b", 3), ("a", 2)]).cards == {"b": 3, "a": 2}


def test_neural_output_checked():
    m = MarkovNet({"a": 2, "b": 2})
    m.add_factor("nn", ["a", "b"], nn.Linear(3, 3))
    with pytest.raises(ModelSpecError, match="'nn'.*shape"):
        m.log_partition(context=torch.zeros(1, 3))


def test_bad_evidence_raises_evidence_error():
    m = _pair(torch.zeros(2, 2))
    with pytest.raises(EvidenceError, match="'a'.*outside"):
        m.marginals(evidence={"a": torch.tensor(2)})
    with pytest.raises(EvidenceError, match="unknown variable 'z'"):
        m.marginals(evidence={"z": torch.tensor(0)})
    with pytest.raises(EvidenceError, match="'b'"):
        m.score({"a": torch.tensor(0), "b": torch.tensor(5)})
    with pytest.raises(ConfigError):
        m.marginals("bp", num_iters=0)


@pytest.mark.slow
@pytest.mark.parametrize("inference", ["mean_field", "bp"])
def test_denoising_example_beats_noisy_and_untrained(inference):
    import runpy
    from pathlib import Path

    example = runpy.run_path(str(Path(__file__).parents[2] / "examples" / "mrf_denoising.py"))
    out = example["main"](example["parse_args"](["--device", "cpu", "--inference", inference]))
    assert out["trained"] < out["noisy"] - 0.03 and out["trained"] < out["untrained"]


@pytest.mark.parametrize("side,kwargs,want", [(3, {}, "exact"), (3, {"num_sweeps": 5}, "gibbs"),
                                              (3, {"method": "gibbs"}, "gibbs"), (20, {}, "gibbs")])
def test_auto_sampling_is_exact_where_the_contraction_is_cheap(side, kwargs, want, monkeypatch):
    """The default draws exact samples on a 3x3 grid; an explicit ``num_sweeps``, ``method="gibbs"``, or a 20x20
    grid (4.6e9 flops per model) take chromatic Gibbs."""
    from hybridpgm.infer import mrf_exact, mrf_gibbs

    used = []
    real_exact, real_gibbs = mrf_exact.exact_sample, mrf_gibbs.ChromaticGibbs.__call__
    monkeypatch.setattr(mrf_exact, "exact_sample", lambda *a, **k: used.append("exact") or real_exact(*a, **k))
    monkeypatch.setattr(mrf_gibbs.ChromaticGibbs, "__call__",
                        lambda self, *a, **k: used.append("gibbs") or real_gibbs(self, *a, **k))
    s = ising_grid(side, side, 0.3).sample(4, **kwargs)
    assert used == [want] and s["x_0_0"].shape == (4,)


def test_sampling_options_are_checked():
    mrf = ising_grid(2, 2, 0.3)
    with pytest.raises(ModelSpecError, match="unknown method 'hmc'"):
        mrf.sample(2, method="hmc")
    with pytest.raises(ModelSpecError, match="method='exact' takes no num_sweeps"):
        mrf.sample(2, method="exact", num_sweeps=3)


def test_an_empty_batch_answers_empty():
    """Before, evidence of 0 rows was refused ("holds no model"); it answers an empty batch now, as BayesNet's
    queries do (tests/graphs/test_mrf_empty_rows.py)."""
    mrf = ising_grid(2, 2, 0.5)
    assert mrf.log_partition(evidence={"x_0_0": torch.tensor([], dtype=torch.long)}).shape == (0,)


def test_float_evidence_holds_whole_states_and_nan_for_unobserved():
    mrf = ising_grid(2, 2, 0.5, torch.tensor([0.1, -0.2, 0.3, 0.0]))
    as_float = mrf.log_partition(evidence={"x_0_0": torch.tensor([float("nan"), 1.0, 0.0])})
    as_long = mrf.log_partition(evidence={"x_0_0": torch.tensor([-1, 1, 0])})
    assert torch.equal(as_float, as_long) and as_long[0] != as_long[1]
    with pytest.raises(EvidenceError, match=r"evidence for 'x_0_0' holds non-integer values \[0.5\]"):
        mrf.sample(2, evidence={"x_0_0": torch.tensor([0.5, 1.0])})


def test_options_a_method_does_not_take_and_evidence_that_is_not_a_mapping_are_named():
    """Before: exact log Z ignored options silently, BP's unknown option was a TypeError, a string passed where
    map_assignment takes evidence failed inside dict(), and 2.5 Gibbs sweeps inside range()."""
    mrf = ising_grid(2, 2, 0.5)
    for call in (lambda: mrf.log_partition("exact", num_iters=3), lambda: mrf.marginals("exact", num_iters=3),
                 lambda: mrf.map_assignment(method="exact", num_iters=3)):
        with pytest.raises(ModelSpecError, match=r"method='exact' takes no options, got \['num_iters'\]"):
            call()
    with pytest.raises(ModelSpecError, match=r"method 'bp' has no option\(s\) \['foo'\]; its options: \['num_iters'"):
        mrf.marginals("bp", foo=1)
    with pytest.raises(ModelSpecError, match=r"method 'mean_field' has no option\(s\) \['bar'\]"):
        mrf.log_partition("mean_field", damping=0.5, bar=2)
    assert torch.isfinite(mrf.log_partition("bp", num_iters=5))
    with pytest.raises(EvidenceError, match=r"evidence must be a mapping name -> values, got str 'bp'"):
        mrf.map_assignment("bp")
    with pytest.raises(ConfigError, match=r"need integers num_sweeps >= 1, .* got num_sweeps=2.5"):
        mrf.sample(2, num_sweeps=2.5)


def test_a_stored_table_that_turned_nan_is_named_on_every_query():
    """Before, a Parameter table checked only at add: after it turned NaN (a diverged step) log Z and BP were NaN
    and MAP and sampling returned plausible-looking states."""
    table = torch.nn.Parameter(torch.zeros(2, 2))
    mrf = MarkovNet({"a": 2, "b": 2}).add_factor("f", ["a", "b"], table)
    with torch.no_grad():
        table[0, 0] = float("nan")
    for query in (mrf.log_partition, mrf.map_assignment, lambda: mrf.marginals("bp"), lambda: mrf.sample(3)):
        with pytest.raises(ModelSpecError, match="factor 'f' has non-finite log-potentials"):
            query()


@pytest.mark.parametrize("options, match", [({"nm_iters": 5}, r"no option\(s\) \['nm_iters'\]; its options: "),
                                            ({"max_product": False}, "max_product is not an option here")])
def test_map_assignment_names_an_option_bp_does_not_take(options, match):
    """Before, BeliefPropagation's own TypeError (unexpected or repeated keyword argument)."""
    mrf = MarkovNet({"a": 2, "b": 2}).add_factor("f", ["a", "b"], torch.zeros(2, 2))
    with pytest.raises(ModelSpecError, match=match):
        mrf.map_assignment(method="bp", **options)


def test_a_1x1_grid_keeps_the_couplings_batch_shape():
    """Found by an audit: with no edge the coupling was dropped, so a batch of 3 models became one."""
    J = torch.randn(3, 1, dtype=torch.float64)
    h = torch.tensor([0.5], dtype=torch.float64)
    log_z = ising_grid(1, 1, J, h).log_partition()
    assert log_z.shape == (3,)
    assert torch.allclose(log_z, torch.log(2 * torch.cosh(h)).expand(3))  # the coupling adds no energy
    assert ising_grid(1, 1, J).log_partition().shape == (3,) and ising_grid(1, 1, 0.5).log_partition().shape == ()
    assert potts_grid(1, 1, 3, torch.randn(4, 1)).log_partition().shape == (4,)
    torch.testing.assert_close(potts_grid(1, 1, 3, torch.randn(4, 1)).log_partition(), torch.full((4,), math.log(3)))


@pytest.mark.parametrize("grid", [functools.partial(ising_grid, 1, 1), functools.partial(potts_grid, 1, 1, 3)])
@pytest.mark.parametrize("coupling, match", [
    ("abc", "coupling must be a number or a float tensor, got 'abc'"),
    (True, "coupling must be a number or a float tensor, got True"),
    (torch.randn(5, 9), r"coupling of shape \(5, 9\): a 1x1 grid has no edge"),
    (torch.tensor([1]), r"factor 'coupling' has non-float log-potentials \(torch.int64\)"),
    (torch.tensor([float("nan")]), "factor 'coupling' has non-finite log-potentials"),
])
def test_a_1x1_grid_checks_its_coupling(grid, coupling, match):
    """Found by an audit: with no edge the coupling was never converted or checked (``'abc'`` was accepted)."""
    with pytest.raises(ModelSpecError, match=match):
        grid(coupling)


def test_a_log_partition_by_max_product_bp_is_refused():
    """Found by an audit: max-product BP has no log Z (``BPResult.log_z`` is None), and asking for one raised a
    raw AttributeError from ``log_partition``, ``log_prob`` and ``model``; now a ModelSpecError, as
    ``map_assignment`` refuses the converse.  Sum-product BP (``max_product=False``) still answers."""
    mrf = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], torch.randn(2, 3))
    with pytest.raises(ModelSpecError, match="max_product"):
        mrf.log_partition("bp", max_product=True)
    with pytest.raises(ModelSpecError, match="max_product"):
        mrf.log_prob({"a": torch.tensor(0), "b": torch.tensor(1)}, method="bp", max_product=True)
    with pytest.raises(ModelSpecError, match="max_product"):
        pyro.poutine.trace(mrf.model).get_trace({"a": torch.tensor(0), "b": torch.tensor(1)}, log_z_method="bp",
                                                max_product=True)
    torch.testing.assert_close(mrf.log_partition("bp", max_product=False), mrf.log_partition("exact"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_prob_of_a_value_scoring_minus_inf_is_minus_inf_never_nan(dtype):
    """Penalties of finfo.min summing past the range score -inf: log_prob is -inf there (brute force), and where
    every value scores -inf (log Z = -inf too) -inf, not -inf - (-inf) = NaN.  Each table is taken less its maximum
    (tests/graphs/test_mrf_log_prob_shift.py), so "every value" needs every assignment to break two penalties of
    tables that each allow one; two tables of finfo.min on all their states are constants, and the model is
    uniform, as in exact arithmetic (its score was -inf before, from the overflowed sum of the constants)."""
    neg = torch.finfo(dtype).min
    hard = torch.tensor([[0.0, neg], [0.0, 0.0]], dtype=dtype)
    mrf = MarkovNet({"a": 2, "b": 2}).add_factor("f1", ["a", "b"], hard).add_factor("f2", ["a", "b"], hard.clone())
    values, rows = assignments(mrf)
    scores = mrf.score(values)
    assert torch.equal(mrf.log_prob(values), scores - scores.logsumexp(0))
    never = MarkovNet({"a": 2, "b": 2})
    for i, allowed in enumerate([(0, 0), (0, 1), (1, 0)]):
        table = torch.full((2, 2), neg, dtype=dtype)
        table[allowed] = 0.0
        never.add_factor(f"f{i}", ["a", "b"], table)
    assert bool((never.score(values) == -math.inf).all())
    assert torch.equal(never.log_prob(values), torch.full((4,), -math.inf, dtype=dtype))
    dead = torch.full((2, 2), neg, dtype=dtype)
    constant = MarkovNet({"a": 2, "b": 2}).add_factor("f1", ["a", "b"], dead).add_factor("f2", ["a", "b"], dead.clone())
    assert torch.equal(constant.log_prob(values), torch.full((4,), -math.log(4), dtype=dtype))


def test_a_tensor_table_is_copied_so_loading_leaves_the_callers_tensor_alone():
    """A fixed table is the net's own buffer: load_state_dict writes into it, not into the tensor the caller
    declared (which other code may hold), and a table expanded over the factors (one memory location for all)
    loads and reloads."""
    t = torch.zeros(2, 3)
    mrf = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], t)
    other = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], torch.randn(2, 3))
    mrf.load_state_dict(other.state_dict())
    assert torch.equal(t, torch.zeros(2, 3))
    assert torch.equal(mrf.tables()["ab"], other.tables()["ab"])

    shared = torch.randn(2, 2).expand(3, 2, 2)
    grid = MarkovNet({f"x{i}": 2 for i in range(4)})
    grid.add_factors("pair", [["x0", "x1"], ["x1", "x2"], ["x2", "x3"]], shared)
    grid.load_state_dict(grid.state_dict())
    assert torch.equal(grid.tables()["pair"].reshape(3, 2, 2), shared)


def test_a_table_given_to_two_factors_stays_one_buffer_apart_from_the_callers_tensor():
    field = torch.randn(2)
    mrf = MarkovNet({"a": 2, "c": 2}).add_factor("a", ["a"], field).add_factor("c", ["c"], field)
    tables = [b for n, b in mrf.named_buffers(remove_duplicate=False) if n.startswith("table_potentials.")]
    assert len(tables) == 2 and tables[0] is tables[1] and tables[0] is not field
    changed = field.clone()
    changed[0] += 1.0  # another tensor, or the same one changed in between, gets its own copy
    mrf.add_factor("a2", ["a"], changed)
    assert mrf.table_potentials._buffers["a2"] is not tables[0]


def test_equal_temporary_tables_stay_apart_and_a_requires_grad_table_is_the_callers():
    """Two tables declared from temporaries (whose ids CPython reuses) are two buffers, so loading different
    tables into them gives the right model; a table that requires grad is registered as it is, so the caller's
    optimiser changes the model (and the net deep-copies)."""
    import copy

    mrf = MarkovNet({"a": 2, "b": 2, "c": 2})
    mrf.add_factor("ab", ["a", "b"], torch.zeros(2, 2)).add_factor("bc", ["b", "c"], torch.zeros(2, 2))
    assert mrf.table_potentials.ab is not mrf.table_potentials.bc
    ab, bc = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, -3.0], [-3.0, 0.0]])
    mrf.load_state_dict({"table_potentials.ab": ab, "table_potentials.bc": bc})
    brute = torch.logsumexp((ab[:, :, None] + bc[None, :, :]).reshape(-1), 0)
    assert torch.allclose(mrf.log_partition(), brute, atol=1e-5)

    w = torch.zeros(2, 2, requires_grad=True)
    net = MarkovNet({"a": 2, "b": 2}).add_factor("f", ["a", "b"], w)
    x = {"a": torch.tensor([0, 1, 1]), "b": torch.tensor([0, 1, 1])}
    optimizer = torch.optim.SGD([w], lr=0.5)
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = -net.log_prob(x).mean()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[2] < losses[1] < losses[0]
    assert torch.equal(copy.deepcopy(net).tables()["f"].detach(), net.tables()["f"].detach())


def _dropout_mrf():
    torch.manual_seed(0)
    m = MarkovNet({"x": 2, "y": 2})
    m.add_factor("xy", ["x", "y"], nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 4),
                                                 nn.Unflatten(-1, (2, 2))))
    return m, torch.randn(3)


@pytest.mark.parametrize("method", ["exact", "gibbs"])
def test_sample_with_a_generator_repeats_under_dropout_and_keeps_the_global_stream(method):
    # found by an audit: a neural potential's dropout drew from torch's global stream, so sample(generator=g) was
    # not a function of g and moved the caller's stream
    m, ctx = _dropout_mrf()
    m.train()
    torch.manual_seed(5)
    state = torch.get_rng_state()
    s1 = m.sample(300, method=method, context=ctx, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)
    s2 = m.sample(300, method=method, context=ctx, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(s1[v], s2[v]) for v in m.variables)


def test_sample_with_a_generator_in_eval_mode_draws_as_exact_sample():
    # one draw of the generator seeds the potentials' streams (in eval mode too: the same draws as in training
    # mode for potentials that do not depend on it), then the samples are exact_sample's from the generator
    from hybridpgm.infer.mrf_exact import exact_sample

    m, ctx = _dropout_mrf()
    m.eval()
    g, reference = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    torch.randint(2**62, (), generator=reference)
    got = m.sample(300, method="exact", context=ctx, generator=g)
    expected = exact_sample(m.factor_graph(None, ctx), 300, generator=reference)
    assert torch.equal(torch.stack([got[v] for v in m.variables], -1), expected.reshape(300, 2))
    assert torch.equal(g.get_state(), reference.get_state())


def test_evidence_context_and_sampler_options_are_keyword_only_with_a_deprecation_period():
    """Before, ``marginals(method, evidence, context)`` and ``map_assignment(evidence, context, method)`` took their
    arguments in different orders (``mrf.marginals(evidence)`` read the evidence as a method name), and
    ``sample``'s ``generator`` was its sixth positional argument; everything after the first argument is keyword-only
    now, the old positional calls answer as before with a FutureWarning, and evidence passed as the method is named."""
    mrf = MarkovNet({"a": 2, "b": 2}).add_factor("f", ["a", "b"], torch.tensor([[0.5, -0.2], [0.1, 0.9]]))
    evidence = {"a": torch.tensor([1, -1])}
    for query, name in (("marginals", "evidence"), ("log_partition", "evidence"), ("map_assignment", "method"),
                        ("sample", "generator")):
        assert inspect.signature(getattr(mrf, query)).parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
    with pytest.warns(FutureWarning, match=r"marginals: pass evidence= by keyword"):
        old = mrf.marginals("exact", evidence)
    assert torch.equal(old["b"], mrf.marginals("exact", evidence=evidence)["b"])
    with pytest.warns(FutureWarning, match=r"log_partition: pass evidence= by keyword"):
        assert torch.equal(mrf.log_partition("exact", evidence), mrf.log_partition("exact", evidence=evidence))
    with pytest.warns(FutureWarning, match=r"map_assignment: pass context=, method= by keyword"):
        old = mrf.map_assignment(evidence, None, "exact")
    assert torch.equal(old["b"], mrf.map_assignment(evidence, method="exact")["b"])
    with pytest.warns(FutureWarning, match=r"sample: pass method=, evidence=, context=, num_sweeps=, generator= by"):
        old = mrf.sample(4, "exact", None, None, None, torch.Generator().manual_seed(3))
    new = mrf.sample(4, method="exact", generator=torch.Generator().manual_seed(3))
    assert torch.equal(old["a"], new["a"]) and torch.equal(old["b"], new["b"])
    with pytest.raises(ModelSpecError, match=r"unknown inference method \{'a': .*\(evidence is passed as evidence=\)"):
        mrf.marginals(evidence)


def test_a_network_of_variables_without_factors_scores_and_gives_log_probs():
    """Found by an audit: ``score`` returned the Python float 0.0 (no factor to sum) and ``log_prob`` failed with
    torch's raw TypeError, while ``log_partition`` answered log 4."""
    net = MarkovNet({"a": 2, "b": 2})
    values = {"a": torch.tensor([0, 1, 1]), "b": torch.tensor([1, 0, 1])}
    assert torch.equal(net.score(values), torch.zeros(3))
    torch.testing.assert_close(net.log_prob(values), torch.full((3,), -math.log(4)))
