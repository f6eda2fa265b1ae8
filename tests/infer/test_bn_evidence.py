"""Evidence parsing for exact BN queries, and the network facts cached with the plans."""

import pytest
import torch

from hybridpgm.errors import DataError, EvidenceError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer.bn_evidence import dtype_device, network_facts, parse_evidence
from hybridpgm.infer.soft_evidence import Likelihood
from tests.graphs.bn_helpers import random_bn, sprinkler


def test_rows_split_into_observed_partial_and_soft():
    bn = sprinkler()
    ev = parse_evidence(bn, {"rain": torch.tensor([0, 1, 1]), "sprinkler": torch.tensor([1, -1, 0]),
                             "wet": Likelihood([0.2, 0.9])})
    assert ev.n == 3 and ev.batched
    assert ev.observed["rain"].tolist() == [0, 1, 1]
    lik = ev.partial["sprinkler"].exp()
    assert lik.tolist() == [[0.0, 1.0], [1.0, 1.0], [1.0, 0.0]]  # one-hot where observed, ones where not
    assert ev.soft == {"wet"} and ev.partial["wet"].shape == (3, 2)
    nan = parse_evidence(bn, {"sprinkler": torch.tensor([float("nan"), 1.0])})
    assert nan.partial["sprinkler"].exp().tolist() == [[1.0, 1.0], [0.0, 1.0]]
    assert parse_evidence(bn, {"wet": torch.tensor([-1, -1])}).partial == {}  # missing everywhere: no evidence
    scalar = parse_evidence(bn, {"rain": "yes"})
    assert not scalar.batched and scalar.observed["rain"].tolist() == [1]


@pytest.mark.parametrize("value,match", [(torch.tensor([0, 2]), "out of range for 'wet'"),
                                         (torch.tensor([0, -2]), "out of range for 'wet'"),
                                         # -1.0 is "not observed" (the convention of MarkovNet too); -2.0 not
                                         (torch.tensor([-2.0, 1.0]), "value -2.0 out of range for 'wet'"),
                                         (torch.tensor([0.5, 1.0]), "non-integer"),
                                         (torch.zeros(2, 2, dtype=torch.long), "scalar or \\[N\\]"),
                                         # before, these were cast to a wrapped (negative) index: unobserved
                                         (torch.tensor([0.0, float("inf")]), "value inf out of range for 'wet'"),
                                         (torch.tensor([1e20, 0.0], dtype=torch.float64),
                                          "value 1e\\+20 out of range for 'wet'"),
                                         # before, raw torch errors
                                         (None, "'wet' must be a number, a state or a tensor of them, got "
                                                "NoneType"),
                                         (torch.tensor([1j]), "'wet' must be real")])
def test_bad_values_are_named(value, match):
    with pytest.raises(EvidenceError, match=match):
        parse_evidence(sprinkler(), {"wet": value})


def test_facts_are_cached_until_a_node_is_added():
    bn = sprinkler()
    facts = network_facts(bn)
    assert network_facts(bn) is facts
    assert facts.children["rain"] == ["sprinkler", "wet"] and facts.cards["wet"] == 2 and facts.tables_only
    bn.add("puddle", cpd.Table([[0.9, 0.1], [0.3, 0.7]], ["wet"]))
    fresh = network_facts(bn)
    assert fresh is not facts and "puddle" in fresh.children["wet"]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dtype_device_agrees_with_the_module(dtype):
    bn = random_bn(2, 4, dtype=dtype)
    assert dtype_device(bn, network_facts(bn)) == (bn.dtype, bn.device)
    bn = bn.to(torch.float32 if dtype == torch.float64 else torch.float64)
    assert dtype_device(bn, network_facts(bn)) == (bn.dtype, bn.device)


def test_continuous_evidence_must_be_a_scalar_or_a_column():
    """Before, ``[N, 2]`` evidence on a continuous node failed in a reshape deep in the contraction."""
    bn = sprinkler()
    bn.add("level", cpd.LinearGaussian([0.0, 1.0], None, 1.0, ["wet"]))
    with pytest.raises(EvidenceError, match=r"continuous node 'level' must be a scalar or \[N\], got shape \(1, 2\)"):
        parse_evidence(bn, {"level": torch.tensor([[0.4, 0.3]])})


def test_a_query_naming_a_node_twice_is_refused():
    """Before, ``joint=True`` passed the repeated name to einsum, which raised its own ValueError."""
    with pytest.raises(EvidenceError, match=r"query names \['rain'\] more than once"):
        sprinkler().posterior(["rain", "wet", "rain"], {"sprinkler": 1}, joint=True)


# -- evidence that is not a mapping --------------------------------------------------------------------------
def _ab():
    torch.manual_seed(0)
    bn = BayesNet()
    bn.add("A", cpd.Table.random(2))
    bn.add("B", cpd.Table.random(3, [2], ["A"]))
    return bn


NAN = float("nan")


@pytest.mark.parametrize("query", ["log_evidence", "posterior", "map", "sample"])
def test_a_data_tensor_as_evidence_is_refused_saying_what_to_pass(query):
    """Before, an [N, V] tensor crashed in dict(evidence or {}) with torch's raw 'Boolean value of Tensor with
    more than one value is ambiguous'."""
    bn = _ab()
    data = torch.tensor([[0.0, NAN], [1.0, 2.0], [NAN, 0.0]])
    call = {"log_evidence": lambda e: bn.log_evidence(e), "posterior": lambda e: bn.posterior("A", e),
            "map": lambda e: bn.map(e), "sample": lambda e: bn.sample(2, evidence=e)}[query]
    with pytest.raises(EvidenceError, match=r"evidence must be a mapping node name -> value.*\['A', 'B'\].*"
                                            r"got Tensor of shape \(3, 2\) and dtype torch.float32.*"
                                            r"bn\.columns\(data\)"):
        call(data)
    with pytest.raises(EvidenceError, match="evidence must be a mapping.*got list"):
        call([0, 1])
    call(None)  # None stays "no evidence"
    call(bn.columns(data))  # the advice works


def test_the_columns_of_a_data_tensor_give_the_dict_answer():
    bn = _ab()
    data = torch.tensor([[0.0, NAN], [1.0, 2.0], [NAN, 0.0]])
    torch.testing.assert_close(bn.log_evidence(bn.columns(data)), bn.log_evidence({"A": data[:, 0], "B": data[:, 1]}))
    with pytest.raises(EvidenceError, match="got Tensor of shape"):
        parse_evidence(bn, data)


# -- dtypes of continuous evidence ---------------------------------------------------------------------------
def _hybrid():
    bn = BayesNet()
    bn.add("A", cpd.Table([0.5, 0.5]))
    bn.add("X", cpd.LinearGaussian(bias=[0.0, 1.0], parents=["A"]))
    torch.manual_seed(0)
    bn.add("E", cpd.Neural(torch.nn.Linear(3, 2), ["A"], cardinality=2, context=["u"]))
    return bn


def test_float64_continuous_evidence_for_a_float32_network_is_refused_not_rounded():
    """Before, float64 evidence was rounded to float32 in the CPDs without a word."""
    bn = _hybrid()
    x64 = torch.tensor([0.1], dtype=torch.float64)
    for query in (lambda e: bn.log_evidence(e), lambda e: bn.posterior("A", e), lambda e: bn.map(e),
                  lambda e: bn.sample(2, evidence=e)):
        with pytest.raises(DataError, match=r"continuous node 'X' has dtype torch.float64, the model computes in "
                                            r"torch.float32.*x.to\(torch.float32\).*model.to\(torch.float64\)"):
            query({"X": x64, "u": torch.zeros(1, 1)})
        with pytest.raises(DataError, match=r"context input 'u' has dtype torch.float64"):
            query({"X": x64.float(), "u": torch.zeros(1, 1, dtype=torch.float64)})
    # exact conversions are taken: integers, and float32 evidence for a float64 network
    assert bn.log_evidence({"X": torch.tensor([1]), "u": torch.zeros(1, 1)}).dtype == torch.float32
    bn64 = _hybrid().double()
    a = bn64.log_evidence({"X": x64.float(), "u": torch.zeros(1, 1)})
    b = bn64.log_evidence({"X": x64.float().double(), "u": torch.zeros(1, 1, dtype=torch.float64)})
    assert a.dtype == torch.float64 and torch.equal(a, b)


def test_a_number_as_continuous_evidence_is_built_in_the_networks_dtype():
    """A Python float is not first rounded to float32 for a float64 network."""
    bn = _hybrid().double()
    ev = parse_evidence(bn, {"X": 0.1, "u": [[0.3]]})
    assert ev.values["X"].dtype == torch.float64 and ev.values["X"].item() == 0.1
    assert ev.values["u"].dtype == torch.float64 and ev.values["u"].item() == 0.3


def test_none_in_a_list_of_state_names_is_not_observed_as_in_the_model():
    """Audit 11: bn.model reads None in a state-name column as missing, log_evidence raised "'None' is not a
    state"; now both read it as -1 (not observed in that row)."""
    from pyro.infer import TraceEnum_ELBO

    bn = BayesNet().add("a", cpd.Table([0.5, 0.5]), states=["F", "T"])
    bn.add("b", cpd.Table([[0.5, 0.5], [0.1, 0.9]], ["a"]), states=["no", "yes"])
    names = {"a": ["F", None, "T"], "b": ["yes", "yes", None]}
    indices = {"a": torch.tensor([0, -1, 1]), "b": torch.tensor([1, 1, -1])}
    torch.testing.assert_close(bn.log_evidence(names), bn.log_evidence(indices))
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(bn.model, bn.guide, names)
    torch.testing.assert_close(loss, -bn.log_evidence(names).sum())
    assert parse_evidence(bn, {"a": [None, "T"]}).partial["a"].exp().tolist() == [[1.0, 1.0], [0.0, 1.0]]
    with pytest.raises(EvidenceError, match="'maybe' is not a state of 'a'"):
        bn.log_evidence({"a": [None, "maybe"]})


# -- pandas evidence -------------------------------------------------------------------------------------------
def test_a_dataframe_or_series_of_state_names_as_evidence_gives_the_tensor_answer():
    """A DataFrame was refused as "not a mapping", and a Series of names (or a NumPy object array) as "not a
    number, a state or a tensor"; their missing markers (None, NaN, pd.NA) are rows without that evidence."""
    pd = pytest.importorskip("pandas")
    bn = _ab()
    bn.state_names = {**bn.state_names, "A": ["no", "yes"], "B": ["lo", "mid", "hi"]}
    want = bn.posterior("A", {"B": torch.tensor([2, -1, 0, -1])})
    names = ["hi", None, "lo", pd.NA]
    for evidence in (pd.DataFrame({"B": pd.Series(names, dtype=object)}),
                     {"B": pd.Series(["hi", None, "lo", None], dtype="string")},
                     {"B": pd.Categorical(["hi", None, "lo", None], categories=["lo", "hi", "mid"])},
                     {"B": __import__("numpy").array(["hi", None, "lo", float("nan")], dtype=object)}):
        assert torch.equal(bn.posterior("A", evidence), want)
    assert torch.equal(bn.log_evidence(pd.DataFrame({"A": [1, 0], "B": [0, 2]})),
                       bn.log_evidence({"A": torch.tensor([1, 0]), "B": torch.tensor([0, 2])}))
    with pytest.raises(EvidenceError, match="'huge' is not a state of 'B'"):
        bn.posterior("A", pd.DataFrame({"B": ["huge", "lo"]}))


def test_a_pandas_series_row_is_evidence_as_log_prob_reads_it():
    # before: bn.posterior("wet", df.iloc[1]) raised "evidence must be a mapping ... got Series of shape (2,)" while
    # bn.log_prob(df.iloc[1]) scored the row
    pd = pytest.importorskip("pandas")
    bn = sprinkler()
    df = pd.DataFrame({"rain": ["no", "yes"], "sprinkler": [0, 1], "wet": [1, 0]})
    row = df[["rain", "sprinkler"]].iloc[1]
    by_dict = {"rain": "yes", "sprinkler": 1}
    torch.testing.assert_close(bn.posterior("wet", row), bn.posterior("wet", by_dict))
    assert bn.posterior("wet", row).shape == (2,)  # one row: no row dim, as for a dict of scalars
    torch.testing.assert_close(bn.log_evidence(df.iloc[1]), bn.log_prob(df.iloc[1]))
    assert {k: int(v) for k, v in bn.map(df.iloc[0][["wet"]]).items()} == \
        {k: int(v) for k, v in bn.map({"wet": 1}).items()}
    with pytest.raises(EvidenceError, match=r"evidence given as a Series repeats the label\(s\) \['rain'\]"):
        bn.posterior("wet", pd.Series(["no", "yes"], index=["rain", "rain"]))
    # review: a column (row labels, no node's name) was read as a row: "evidence names unknown variable 0"
    with pytest.raises(EvidenceError, match=r"must be a mapping .* got Series of shape \(2,\); for one node's "
                                            r"values \(a column such as df\['<node>'\]\) pass"):
        bn.posterior("wet", df["rain"])


def test_a_values_mask_pair_is_pointed_to_columns():
    """INPUTS audit (session 39, finding 9): the ``(values, mask)`` pair ``split_missing`` returns, given as evidence,
    was refused with "must be a mapping" and no hint; the message now names ``bn.columns(pair)``, which works."""
    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]))
    bn.add("b", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["a"]))
    data = torch.tensor([[0.0, 1.0], [float("nan"), 0.0]])
    pair = bn.split_missing(data)
    with pytest.raises(EvidenceError, match=r"got tuple; for a \(values, mask\) pair .* pass bn\.columns\(pair\)"):
        bn.log_evidence(pair)
    assert torch.equal(bn.log_evidence(bn.columns(pair)), bn.log_evidence(bn.columns(data)))
