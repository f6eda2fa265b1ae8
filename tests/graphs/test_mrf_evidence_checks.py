"""MarkovNet refuses values that are not states (evidence, ``score``, ``model``) and queries of an empty network,
with a :mod:`hybridpgm.errors` exception naming the variable and the value."""

import math

import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from hybridpgm.errors import EvidenceError, ModelSpecError
from hybridpgm.graphs import MarkovNet
from hybridpgm.train.deferred_checks import deferring_checks
from tests.graphs.mrf_brute_force import brute_force


def _net(learnable=False):
    table = torch.randn(2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], torch.nn.Parameter(table) if learnable else table)


QUERIES = {
    "marginals": lambda m, e: m.marginals("exact", evidence=e),
    "log_partition bp": lambda m, e: m.log_partition("bp", evidence=e),
    "map_assignment": lambda m, e: m.map_assignment(evidence=e),
    "sample": lambda m, e: m.sample(2, evidence=e),
}


@pytest.mark.parametrize("query", sorted(QUERIES))
@pytest.mark.parametrize("value, shown", [(math.inf, r"\[inf\]"), (1e20, r"\[1e\+20\]"), (2.0, r"\[2.0\]"),
                                          (2**62, r"\[4611686018427387904\]")])
def test_evidence_too_large_for_a_state_is_out_of_range(query, value, shown):
    """Before: +inf and 1e20 overflowed the cast to int64 into a negative number, read as 'unobserved', so the
    answer was the one without evidence."""
    with pytest.raises(EvidenceError, match=r"evidence for 'a' has value\(s\) " + shown + r" outside 0..1"):
        QUERIES[query](_net(), {"a": torch.tensor([1, value]) if isinstance(value, int)
                                   else torch.tensor([1.0, value], dtype=torch.float64)})


def test_minus_inf_is_not_a_state_and_only_minus_one_or_nan_is_unobserved():
    """-1 (integer or float) and NaN are unobserved, as in BayesNet's evidence.  Before: any negative whole number
    (-1e20, -2) was unobserved too.  -inf is outside the states, as BayesNet says (before: a "non-integer")."""
    m = _net()
    with pytest.raises(EvidenceError, match=r"evidence for 'a' has value\(s\) \[-inf\] outside 0..1 \(a scalar\)"):
        m.marginals(evidence={"a": torch.tensor(-math.inf)})
    log_z, _ = brute_force(m, 0)
    for unobserved in (torch.tensor(-1.0), torch.tensor(float("nan")), torch.tensor(-1)):
        assert torch.allclose(m.log_partition(evidence={"a": unobserved}), log_z, atol=1e-12)
    with pytest.raises(EvidenceError, match=r"evidence for 'a' has value\(s\) \[-1e\+20\] outside 0..1 \(a scalar\)"):
        m.log_partition(evidence={"a": torch.tensor(-1e20, dtype=torch.float64)})
    log_z1, _ = brute_force(m, 0, {"a": torch.tensor(1)})
    assert torch.allclose(m.log_partition(evidence={"a": torch.tensor(1.0)}), log_z1, atol=1e-12)


ELBO = TraceEnum_ELBO(max_plate_nesting=1)


def _guide(*args, **kwargs):
    pass


def test_model_refuses_an_unknown_variable():
    """Before: a misspelt name was ignored, and the loss was that of observing nothing (about 0)."""
    with pytest.raises(EvidenceError, match=r"MarkovNet.model: values name unknown variable\(s\) \['A'\]; "
                                            r"the variables are \['a', 'b'\]"):
        ELBO.loss(_net().model, _guide, {"A": torch.tensor([1])})
    with pytest.raises(EvidenceError, match=r"MarkovNet.model: values must be a mapping name -> states, got list"):
        ELBO.loss(_net().model, _guide, [1])


@pytest.mark.parametrize("value, shown", [(torch.tensor([2]), r"\(torch.int64\) hold \[2\]"),
                                          (torch.tensor([-1]), r"\(torch.int64\) hold \[-1\]"),
                                          (torch.tensor([0, 1.5]), r"\(torch.float32\) hold \[1.5\]"),
                                          (torch.tensor([math.nan]), r"\(torch.float32\) hold \[nan\]"),
                                          (torch.tensor([math.inf]), r"\(torch.float32\) hold \[inf\]")])
def test_model_refuses_values_that_are_not_states(value, shown):
    """Before: a raw IndexError (2, 1.5), or a negative index read silently from the end of the table (-1)."""
    with pytest.raises(EvidenceError, match=r"MarkovNet.model: the values of 'a' " + shown + r", which are not "
                                            r"states 0..1"):
        ELBO.loss(_net().model, _guide, {"a": value})


def test_model_with_whole_float_values_is_minus_log_marginal():
    m = _net()
    _, marg = brute_force(m, 0)
    for value in (torch.tensor([1]), torch.tensor([1.0])):
        loss = ELBO.loss(m.model, _guide, {"a": value})
        assert loss == pytest.approx(-math.log(marg["a"][1].item()), abs=1e-12)


def test_model_value_check_is_deferred_inside_a_training_step():
    """Inside fit's step the range check waits for the step's one host read; the step still runs (bad entries
    read as state 0 until then) and the check raises when read."""
    with deferring_checks() as pending:
        loss = ELBO.differentiable_loss(_net(learnable=True).model, _guide, {"a": torch.tensor([0, 5])})
    assert torch.isfinite(loss) and [bool(flag) for flag in pending.flags].count(False) == 1  # (tables: finite)
    with pytest.raises(EvidenceError, match=r"MarkovNet.model: the values of 'a' \(torch.int64\) hold \[5\]"):
        pending.raise_first_failure()
    with pytest.raises(EvidenceError, match="unknown variable"):  # a name is checked at once, even there
        with deferring_checks():
            ELBO.differentiable_loss(_net(learnable=True).model, _guide, {"c": torch.tensor([0])})


def test_score_takes_whole_float_states_and_names_other_values():
    """Before: float values failed inside gather with a raw RuntimeError."""
    m = _net()
    a, b = torch.tensor([0, 1, 1]), torch.tensor([2, 0, 1])
    table = m.tables()["ab"][0]
    assert torch.equal(m.score({"a": a.double(), "b": b.float()}), table[a, b])
    assert torch.equal(m.score({"a": a, "b": b}), table[a, b])
    with pytest.raises(EvidenceError, match=r"MarkovNet.score: the values of 'b' \(torch.float32\) hold \[1.5\], "
                                            r"which are not states 0..2"):
        m.score({"a": torch.tensor(1.0), "b": torch.tensor(1.5)})
    with pytest.raises(EvidenceError, match=r"MarkovNet.score: values name unknown variable\(s\) \['c'\]"):
        m.score({"a": 0, "b": 0, "c": 1})


EMPTY_QUERIES = {
    "factor_graph": lambda m: m.factor_graph(),
    "log_partition": lambda m: m.log_partition(),
    "log_partition bp": lambda m: m.log_partition("bp"),
    "marginals mean_field": lambda m: m.marginals("mean_field"),
    "map_assignment": lambda m: m.map_assignment(),
    "sample": lambda m: m.sample(3),
    "score": lambda m: m.score({}),
    "distribution": lambda m: m.distribution(),
    "model": lambda m: m.model(),
}


@pytest.mark.parametrize("query", sorted(EMPTY_QUERIES))
def test_an_empty_network_is_refused_by_every_query(query):
    """Before: max() of an empty sequence (ValueError) or an empty torch.stack (RuntimeError)."""
    with pytest.raises(ModelSpecError, match="has no variables"):
        EMPTY_QUERIES[query](MarkovNet({}))


def test_a_bare_string_scope_is_one_variable():
    """As a CPD's parents take it; before, ``"ab"`` was split into the variables ``a`` and ``b``."""
    mrf = MarkovNet({"ab": 2, "a": 2, "b": 2}).add_factor("f", "ab", torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(mrf.marginals("exact")["ab"], torch.tensor([1.0, math.e]) / (1 + math.e))
    with pytest.raises(ModelSpecError, match="factor 'g' uses unknown variable 'a b'"):
        MarkovNet({"a": 2, "b": 2}).add_factor("g", "a b", torch.zeros(2))
