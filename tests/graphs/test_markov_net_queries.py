"""The queries of a MarkovNet (hybridpgm/graphs/markov_net.py): method choice and options checked and named,
empty batches, float evidence, NaN tables, 1x1 grids, -inf scores, keyword-only arguments, no factors."""

import functools
import inspect
import math

import pyro
import pytest
import torch

from hybridpgm.errors import ConfigError, EvidenceError, ModelSpecError
from hybridpgm.graphs import MarkovNet, ising_grid, potts_grid
from tests.graphs.mrf_brute_force import assignments


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
