"""BayesNetModel: the Pyro model and the empty guide of a BayesNet (enumeration, num_data, context inputs, MAP, handler
isolation, dtypes); its sampling is tested in test_bn_sampling*.py, its log_prob in test_bn_log_prob*.py."""

import functools

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

import hybridpgm
from hybridpgm.errors import DataError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import SVIObjective
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


def _fit(bn, data, steps, lr=0.1, **model_kwargs):
    objective = SVIObjective(bn.model, bn.guide, TraceEnum_ELBO(max_plate_nesting=1), **model_kwargs)
    hybridpgm.fit(objective, bn.split_missing(data), epochs=steps, batch_size=len(data), device="cpu", seed=0,
                  progress=False, optim=functools.partial(torch.optim.Adam, lr=lr))


_NAN = float("nan")
_DATA = torch.tensor([[0.0, 1], [_NAN, 1], [1, 0], [_NAN, 0]])


def _ab(b=((0.5, 0.5), (0.5, 0.5)), **kw) -> BayesNet:
    return BayesNet().add("a", cpd.Table([0.5, 0.5], **kw)).add("b", cpd.Table(list(map(list, b)), ["a"], **kw))


def test_the_empty_guide_refuses_missing_entries_without_enumeration():
    """Before, SVIObjective's default ELBO (and Trace_ELBO) drew the missing entries from the model instead of
    summing them out and silently fitted a biased model (b's table 0.69/0.30 for the true 0.9/0.2)."""
    import pyro
    from pyro.infer import JitTraceEnum_ELBO, Predictive, Trace_ELBO

    from hybridpgm.errors import ConfigError

    fit_kw = dict(epochs=2, batch_size=4, device="cpu", seed=0, progress=False,
                  optim=functools.partial(torch.optim.Adam, lr=0.05))
    for elbo in (None, Trace_ELBO()):
        bn = _ab()
        with pytest.raises(ConfigError, match=r"missing entries in \['a'\].*TraceEnum_ELBO"):
            hybridpgm.fit(SVIObjective(bn.model, bn.guide, elbo), bn.split_missing(_DATA), **fit_kw)
    with pytest.raises(ConfigError, match="BayesNet.guide is empty"):  # it would impute from the prior
        Predictive(_ab().model, guide=_ab().guide, num_samples=2)(_DATA)
    # every enumerating route still gives the exact loss; complete data pass any ELBO
    exact = -_ab().log_evidence({"a": _DATA[:, 0], "b": _DATA[:, 1]}).sum().detach()
    for elbo in (TraceEnum_ELBO(max_plate_nesting=1), TraceEnum_ELBO(), JitTraceEnum_ELBO(max_plate_nesting=1),
                 TraceEnum_ELBO(max_plate_nesting=1, num_particles=3, vectorize_particles=True)):
        bn = _ab()
        with pyro.get_param_store().scope():  # a fresh store: no parameter of the networks above
            torch.testing.assert_close(elbo.differentiable_loss(bn.model, bn.guide, _DATA).detach(), exact)
    for elbo in (TraceEnum_ELBO(), TraceEnum_ELBO(max_plate_nesting=1)):
        bn = _ab()
        hybridpgm.fit(SVIObjective(bn.model, bn.guide, elbo), bn.split_missing(_DATA), **fit_kw)
    complete = torch.tensor([[0, 1], [1, 1]])
    torch.testing.assert_close(torch.tensor(Trace_ELBO().loss(bn.model, bn.guide, complete)),
                               -bn.log_prob(complete).sum().detach())
    assert set(Predictive(bn.model, num_samples=2)(_DATA)) >= {"a_unobserved"}  # no guide: prior samples
    assert pyro.infer.infer_discrete(bn.model, first_available_dim=-2)(_DATA)["a"].shape == (4,)


@pytest.mark.parametrize("num_data, error, match", [
    (0, "ConfigError", "must be a positive integer, got 0"),
    (-4, "ConfigError", "must be a positive integer, got -4"),
    (True, "ConfigError", "got True"),
    (2.5, "ConfigError", "got 2.5"),
    (float("nan"), "ConfigError", "got nan"),
    ("40", "ConfigError", "got '40'"),
    (3, "DataError", r"num_data=3 \(the size of the full data set\) is smaller than the 4 rows of this batch"),
])
def test_num_data_is_checked(num_data, error, match):
    """Before: 0 acted as not given, -4 flipped the prior's sign, True was N = 1, 2.5 and N < B were taken, NaN
    and '40' gave raw Pyro / Python errors."""
    import hybridpgm.errors

    bn = BayesNet().add("a", cpd.Table([0.3, 0.7], prior=3.0))
    x = torch.tensor([[0], [1], [1], [1]])
    with pytest.raises(getattr(hybridpgm.errors, error), match=match):
        TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(bn.model, bn.guide, x, num_data=num_data)
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(bn.model, bn.guide, x, num_data=np.int64(40))
    torch.testing.assert_close(loss, -bn.log_prob(x).sum() - 0.1 * bn.cpds["a"].log_prior())


def test_context_inputs_with_another_number_of_rows_are_refused_by_count():
    """Before, Pyro's raw 'Shape mismatch inside plate' ValueError (whichever size ``sizes.pop()`` gave)."""
    torch.manual_seed(0)
    bn = BayesNet()
    bn.add("z", cpd.Neural(torch.nn.Linear(1, 2), [], 2, context=["u"]))
    bn.add("y", cpd.Table([[0.7, 0.3], [0.2, 0.8]], ["z"]))
    data = torch.tensor([[0, 1], [1, 1], [-1, 0]])
    for m in (5, 1, 2):
        with pytest.raises(DataError, match=rf"different row counts \(data \(2 columns\): 3, context input 'u': {m}\)"):
            TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(bn.model, bn.guide, data, None, torch.randn(m))
    assert bn.log_prob(data[:2], torch.randn(2)).shape == (2,)


def test_dirichlet_map_matches_pgmpy_bayesian_estimator_with_alpha_minus_one_pseudo_counts():
    """The convention of Table(prior=alpha): alpha - 1 pseudo-counts (the mode of the Dirichlet posterior)."""
    pytest.importorskip("pgmpy")
    import pandas as pd
    from pgmpy.estimators import BayesianEstimator
    from pgmpy.models import DiscreteBayesianNetwork

    data = torch.tensor([[0, 0], [0, 0], [0, 1], [1, 1], [1, 1], [1, 0], [1, 1]])
    alpha = 3.0
    bn = _ab(prior=alpha).double()
    _fit(bn, data.double(), steps=300, lr=0.1, num_data=len(data))
    df = pd.DataFrame(data.numpy(), columns=["a", "b"])
    est = BayesianEstimator(DiscreteBayesianNetwork([("a", "b")]), df, state_names={"a": [0, 1], "b": [0, 1]})
    for v, shape in (("a", (2,)), ("b", (2, 2))):
        ref = est.estimate_cpd(v, prior_type="dirichlet", pseudo_counts=np.full((2, 1 if v == "a" else 2), alpha - 1))
        ref = torch.tensor(ref.get_values()).T.reshape(shape)  # pgmpy: [card, parent configs]
        torch.testing.assert_close(bn.cpds[v].probs.detach(), ref, atol=2e-3, rtol=0)


def test_log_prob_and_sample_are_programs_of_their_own_under_the_callers_handlers():
    """They traced bn.model under the caller's handlers: as a factor in a user's model the rows were counted
    twice (the leaked sites), poutine.scale scaled the returned values, and poutine.condition fixed the draws."""
    import pyro.poutine as poutine
    from pyro.infer import Trace_ELBO

    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]))
    bn.add("b", cpd.Table([[0.8, 0.2], [0.1, 0.9]], ["a"]))
    rows = torch.tensor([[0, 1], [1, 1]])
    lp = bn.log_prob(rows)

    def model():
        pyro.factor("bn", bn.log_prob(rows).sum())

    assert Trace_ELBO().loss(model, lambda: None) == pytest.approx(-float(lp.sum()), rel=1e-6)
    trace = poutine.trace(model).get_trace()
    assert [n for n, site in trace.nodes.items() if site["type"] == "sample"] == ["bn"]
    with poutine.scale(scale=5.0):
        assert torch.equal(bn.log_prob(rows), lp)
    with pyro.plate("particles", 3, dim=-2):
        assert bn.log_prob(rows).shape == (2,)
    torch.manual_seed(0)
    with poutine.condition(data={"a": torch.ones(400, dtype=torch.long)}):
        draws = bn.sample(400)["a"].double()
    assert abs(float(draws.mean()) - 0.7) < 4 * (0.21 / 400) ** 0.5  # prior draws of a, not the conditioned 1s


def test_plain_svi_on_fixed_tables_trains_nothing_and_the_model_says_so():
    """Plain ``SVI`` over a network of fixed tables (buffers, as read_bif gives without learnable=True) returns
    a loss and changes nothing, silently: Pyro steps the parameters its trace saw, none, and warns of nothing;
    ``bn.model`` does not warn either (a fixed prior under a trained guide, and evaluation, are legitimate).
    Part guard (the behaviour: passes before and after); the docstring part failed before (the model's
    docstring did not say it)."""
    import warnings

    from pyro.infer import SVI

    from hybridpgm.graphs import BayesNet as BN

    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7], learnable=False))
    bn.add("b", cpd.Table([[0.8, 0.2], [0.1, 0.9]], ["a"], learnable=False))
    assert list(bn.parameters()) == []
    before = {v: bn.cpds[v].log_table().clone() for v in bn.nodes}
    data = torch.tensor([[-1, 1], [0, 0], [1, -1]])
    pyro.clear_param_store()
    svi = SVI(bn.model, bn.guide, pyro.optim.Adam({"lr": 0.5}), TraceEnum_ELBO(max_plate_nesting=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        losses = [svi.step(data) for _ in range(3)]
    assert losses[0] == losses[1] == losses[2]
    assert all(torch.equal(bn.cpds[v].log_table(), before[v]) for v in bn.nodes)
    doc = " ".join(BN.model.__doc__.split())
    assert "learnable=True" in doc and "pyro.infer.SVI" in doc and "ConfigError" in doc


def test_the_model_refuses_cpds_of_two_dtypes_as_the_queries_do():
    """A float64 Neural CPD beside float32 tables: bn.model raises the queries' ModelSpecError naming a node of
    each dtype, under fit, plain Pyro SVI and log_prob.  Before, the queries refused it but the model failed with
    torch's raw "both inputs should have same dtype" from inside Pyro's enumeration."""
    from pyro.infer import SVI

    from hybridpgm.errors import ModelSpecError

    bn = BayesNet().add("c", cpd.Table([0.5, 0.5])).add("s", cpd.Table([[0.5, 0.5], [0.9, 0.1]], ["c"]))
    bn.add("w", cpd.Neural(torch.nn.Linear(2, 2).double(), ["s"], 2))
    data = torch.tensor([[0, 1, 1], [1, -1, 0]])
    refused = (r"CPDs of this network are of two dtypes: torch.float32 \(node 'c'\) and torch.float64 \(node 'w', a "
               r"Neural CPD \(its tensor 'net.weight'\)\)")
    with pytest.raises(ModelSpecError, match=refused):
        bn.posterior("c", {"w": 1})  # the queries' refusal, for comparison
    with pytest.raises(ModelSpecError, match=refused):
        _fit(bn, data, 1)
    pyro.clear_param_store()
    svi = SVI(bn.model, bn.guide, pyro.optim.Adam({"lr": 0.01}), TraceEnum_ELBO(max_plate_nesting=1))
    with pytest.raises(ModelSpecError, match=refused):
        svi.step(data)
    with pytest.raises(ModelSpecError, match=refused):
        bn.log_prob(torch.tensor([[0, 1, 1]]))
    bn.double()  # the way out the message names: one dtype, and the model runs
    _fit(bn, data, 1)
    assert bn.log_prob(torch.tensor([[0, 1, 1]])).dtype == torch.float64


def test_the_dtype_check_of_the_model_finds_the_maps_once():
    """The model's one-dtype check costs a run one dtype read per CPD: the maps holding each CPD's tensor are found
    once (a walk over the CPDs' modules) and kept with the network's facts, as for the queries; a new node finds
    them again."""
    from unittest import mock

    from hybridpgm.infer import bn_dtypes

    bn = _ab()
    data = torch.tensor([[0, 1], [1, 0]])
    with mock.patch.object(bn_dtypes, "_holders", wraps=bn_dtypes._holders) as walk:
        for _ in range(3):
            TraceEnum_ELBO(max_plate_nesting=1).loss(bn.model, bn.guide, data)
        assert walk.call_count == 1
        bn.add("c", cpd.Table([[0.5, 0.5], [0.5, 0.5]], ["b"]))
        TraceEnum_ELBO(max_plate_nesting=1).loss(bn.model, bn.guide, torch.tensor([[0, 1, 1]]))
        assert walk.call_count == 2
