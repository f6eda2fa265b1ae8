"""BayesNetModel: the Pyro model and the empty guide of a BayesNet (enumeration, num_data, context inputs, MAP)."""

import functools

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

import hybridpgm
from hybridpgm.errors import ConfigError, DataError
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


def _dropout_bn():
    torch.manual_seed(0)
    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]))
    bn.add("b", cpd.Neural(torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2)),
                           ["a"], 2))
    bn.add("c", cpd.Table([[0.5, 0.5], [0.1, 0.9]], ["b"]))
    return bn


@pytest.mark.parametrize("evidence", [None, {"c": torch.tensor([1])}])
def test_sample_with_a_generator_repeats_under_dropout_and_keeps_the_global_streams(evidence):
    # found by an audit: a Neural CPD's dropout drew from torch's global stream, so sample(generator=g) was not a
    # function of g and moved the caller's stream
    bn = _dropout_bn().train()
    torch.manual_seed(5)
    state = torch.get_rng_state()
    s1 = bn.sample(500, evidence=evidence, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)
    s2 = bn.sample(500, evidence=evidence, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(s1[v], s2[v]) for v in bn.nodes)


def test_sample_with_a_generator_in_eval_mode_draws_as_the_exact_query():
    # no network in training mode: no draw for a seed, the samples are posterior_sample's for the same generator
    from hybridpgm.infer.exact import posterior_sample

    bn = _dropout_bn().eval()
    evidence = {"c": torch.tensor([1, 0])}
    g, reference = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    got = bn.sample(300, evidence=evidence, generator=g)
    expected = posterior_sample(bn, 300, evidence, generator=reference)
    assert all(torch.equal(got[v], expected[v]) for v in bn.nodes)
    assert torch.equal(g.get_state(), reference.get_state())


def test_sample_refuses_context_inputs_of_another_row_count():
    """Before, ``sample(1000, inputs)`` with one input row returned 1 draw (50 rows: 50 draws), silently."""
    bn = BayesNet()
    bn.add("z", cpd.Neural(torch.nn.Linear(1, 2), [], 2, context=["u"]))
    assert bn.sample(5, inputs=torch.randn(5, 1))["z"].shape == (5,)
    for rows in (1, 50):
        with pytest.raises(DataError, match=rf"1000 samples asked for, but the context inputs have 'u': {rows} "
                                            r"row\(s\)"):
            bn.sample(1000, inputs=torch.randn(rows, 1))
    assert bn.sample(0, inputs=torch.randn(5, 1))["z"].shape == (0,)  # zero samples: empty, whatever the inputs


def test_log_prob_of_a_single_zero_d_example_is_zero_d():
    """One example, one 0-d value per node, as MarkovNet.log_prob scores one: before, a DataError ("data
    columns must be [N] and of one length N: {'a': (), ...}").  A 0-d result equal to the one-row answer, for
    0-d tensors, Python numbers, NumPy scalars and state names alike, a continuous node included; a neural CPD's
    context input for the one row may come without its row dim."""
    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]), states=["off", "on"])
    bn.add("b", cpd.Table([[0.8, 0.2], [0.1, 0.9]], ["a"]))
    bn.add("x", cpd.LinearGaussian([0.5, -1.0], parents=["a"], scale=2.0))
    row = bn.log_prob({"a": torch.tensor([1]), "b": torch.tensor([0]), "x": torch.tensor([0.25])})
    for one in ({"a": torch.tensor(1), "b": torch.tensor(0), "x": torch.tensor(0.25)},
                {"a": 1, "b": 0, "x": 0.25}, {"a": "on", "b": np.int64(0), "x": np.float32(0.25)}):
        got = bn.log_prob(one)
        assert got.shape == ()
        torch.testing.assert_close(got, row[0])
    with pytest.raises(DataError, match="complete rows"):
        bn.log_prob({"a": None, "b": 0, "x": 0.25})  # a missing entry: refused as in a row

    torch.manual_seed(0)
    net = BayesNet()
    net.add("z", cpd.Neural(torch.nn.Linear(3, 2), [], 2, context=["u"]))
    u = torch.randn(3)
    want = net.log_prob({"z": torch.tensor([1])}, {"u": u[None]})[0]
    for inputs in (u, {"u": u}, {"u": u[None]}):
        got = net.log_prob({"z": torch.tensor(1)}, inputs)
        assert got.shape == ()
        torch.testing.assert_close(got, want)


def _a_b_x():
    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]), states=["off", "on"])
    bn.add("b", cpd.Table([[0.8, 0.2], [0.1, 0.9]], ["a"]))
    return bn.add("x", cpd.LinearGaussian([0.5, -1.0], parents=["a"], scale=2.0))


def test_log_prob_shares_a_zero_d_value_among_rows_as_the_queries_do():
    """Found by an audit: a 0-d value beside ``[N]`` columns was refused by log_prob ("data columns must be [N] and
    of one length N: {'a': (), 'b': (3,), ...}") where log_evidence of the same complete rows, and every query's
    evidence, reads it as the node's value in every row.  Now it is that, as a state name or a NumPy scalar too;
    columns of several lengths are still refused."""
    bn = _a_b_x()
    b, x = torch.tensor([0, 1, 0]), torch.tensor([0.25, 1.0, 2.0])
    rows = bn.log_prob({"a": torch.tensor([1, 1, 1]), "b": b, "x": x})
    for a in (torch.tensor(1), 1, "on", np.int64(1), np.array(1)):
        got = bn.log_prob({"a": a, "b": b, "x": x})
        assert got.shape == (3,) and torch.equal(got, rows)
    torch.testing.assert_close(bn.log_evidence({"a": 1, "b": b, "x": x}), rows)
    shared_x = bn.log_prob({"a": [1, 0], "b": [0, 0], "x": np.float32(0.25)})
    assert torch.equal(shared_x, bn.log_prob({"a": [1, 0], "b": [0, 0], "x": torch.tensor([0.25, 0.25])}))
    assert torch.equal(bn.log_prob({"a": 1, "b": b[:1], "x": x[:1]}), rows[:1])  # beside a batch of one: [1]
    with pytest.raises(DataError, match=r"one length N: \{'a': \(\), 'b': \(2,\), 'x': \(1,\)\}"):
        bn.log_prob({"a": 1, "b": [0, 1], "x": [0.25]})


def test_log_prob_of_one_row_of_a_data_frame_is_zero_d():
    """Found by an audit: a pandas ``Series`` (``df.iloc[0]``, a mapping of 0-d values) raised a raw
    ``TypeError: 'numpy.ndarray' object is not callable`` (its ``values`` is an array, not a method)."""
    pd = pytest.importorskip("pandas")
    bn = _a_b_x()
    row = pd.DataFrame({"a": ["on"], "b": [0], "x": [np.float32(0.25)]}).iloc[0]  # an object Series
    got = bn.log_prob(row)
    assert got.shape == () and torch.equal(got, bn.log_prob({"a": [1], "b": [0], "x": [0.25]})[0])


def test_log_prob_shares_a_zero_d_value_only_beside_n_columns():
    """Found by a review: beside a 0-d value, an ``[N, 1]`` column was measured by ``len`` as ``[N]``, so
    ``{"a": 1, "b": tensor([[0], [1], [0]]), "x": x}`` scored ``[3, 3]``; a ragged list of lists raised NumPy's
    raw ``ValueError`` (inhomogeneous shape).  Both are DataErrors naming the column."""
    bn = _a_b_x()
    x = torch.tensor([0.25, 1.0, 2.0])
    with pytest.raises(DataError, match=r"data column 'b' has shape \(3, 1\): a column is \[N\]"):
        bn.log_prob({"a": 1, "b": torch.tensor([[0], [1], [0]]), "x": x})
    with pytest.raises(DataError, match=r"data column 'b' must hold states"):
        bn.log_prob({"a": 1, "b": [[0], [1, 0], [0]], "x": x})


def test_log_prob_reads_a_numpy_scalar_as_data_of_its_dtype():
    """Found by a review: a NumPy float64 scalar became a list of Python numbers, built in the network's float32,
    so ``np.float64(0.1)`` (alone, beside ``[N]`` columns, or in ``df.iloc[0]``) scored 0.1 rounded where the
    same value as a float64 column, ``df`` or ``df.iloc[[0]]`` is refused.  Now the same data gets the same error;
    a float64 network scores it as the one-row column."""
    pd = pytest.importorskip("pandas")
    bn = _a_b_x()
    column = np.array([0.1])
    with pytest.raises(DataError, match=r"data column 'x' \(a continuous node\) has dtype torch.float64") as refused:
        bn.log_prob({"a": [1], "b": [0], "x": column})
    expected = str(refused.value)
    for values in ({"a": 1, "b": 0, "x": np.float64(0.1)}, {"a": [1, 0], "b": [0, 1], "x": np.float64(0.1)},
                   pd.DataFrame({"a": ["on"], "b": [0], "x": [0.1]}).iloc[0],  # an object Series
                   pd.DataFrame({"a": [1.0], "b": [0.0], "x": [0.1]}).iloc[0]):  # a float64 Series
        with pytest.raises(DataError) as refused:
            bn.log_prob(values)
        assert str(refused.value) == expected
    bn64 = _a_b_x().double()
    want = bn64.log_prob({"a": [1], "b": [0], "x": column})[0]
    for values in ({"a": 1, "b": 0, "x": np.float64(0.1)}, pd.DataFrame({"a": [1.0], "b": [0.0], "x": [0.1]}).iloc[0]):
        assert torch.equal(bn64.log_prob(values), want)


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


def test_log_prob_under_vmap_names_the_batch_to_pass_instead():
    """``log_prob`` reads its rows and tables on the host: under ``vmap`` over the rows it raises
    ``ConfigError`` naming ``BayesNet.log_prob`` and the batch to pass (torch's raw "data-dependent control flow"
    ``RuntimeError`` before), and the batch it asks for scores each row as a loop does."""
    bn = _ab(b=((0.9, 0.1), (0.2, 0.8)))
    a, b = torch.tensor([[0, 1], [1, 1]]), torch.tensor([[1, 0], [0, 0]])
    with pytest.raises(ConfigError, match=r"BayesNet\.log_prob does not support torch\.func\.vmap"):
        torch.func.vmap(lambda x, y: bn.log_prob({"a": x, "b": y}))(a, b)
    batched = bn.log_prob({"a": a.reshape(-1), "b": b.reshape(-1)}).reshape(2, 2)
    loop = torch.stack([bn.log_prob({"a": x, "b": y}) for x, y in zip(a, b)])
    assert torch.equal(batched, loop)


def test_log_prob_reads_a_numpy_context_input_as_a_tensor_and_refuses_a_list_by_name():
    """A NumPy array is the one context input as a tensor is, in a batch and for one 0-d example (a raw
    ``TypeError: unhashable type`` before); a list names the accepted forms (it was read as a dict of names)."""
    torch.manual_seed(0)
    net = BayesNet().add("z", cpd.Neural(torch.nn.Linear(3, 2), [], 2, context=["u"]))
    u = torch.randn(3)
    batch = net.log_prob({"z": torch.tensor([1])}, u[None])
    assert torch.equal(net.log_prob({"z": torch.tensor([1])}, u[None].numpy()), batch)
    single = net.log_prob({"z": torch.tensor(1)}, u.numpy())
    assert single.shape == () and torch.equal(single, batch[0])
    with pytest.raises(DataError, match=r"context inputs must be a tensor or array .* got list.*\['u'\]"):
        net.log_prob({"z": 1}, u.tolist())


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


def test_log_prob_of_a_row_of_a_float32_frame_equals_that_row_of_the_frame():
    """Review D: pandas makes a row of int64 and float32 columns float64, so ``df.iloc[0]`` of a float32 frame that
    ``log_prob(df)`` scores was refused as float64 data; entries float32 holds exactly are read as numbers."""
    pd = pytest.importorskip("pandas")
    bn = _a_b_x()
    frame = pd.DataFrame({"a": [1, 0, 1], "b": [0, 1, 0], "x": np.float32([0.25, 1.0, 2.0])})
    assert torch.equal(bn.log_prob(frame.iloc[0]), bn.log_prob(frame)[0])
