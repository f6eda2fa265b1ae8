"""Columns of state names: pandas DataFrames, NumPy string / object arrays, missing markers (bn_values, bn_data)."""

import warnings

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import SVI, TraceEnum_ELBO

from hybridpgm.errors import DataError, EvidenceError
from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)

STATES = {"rain": ["no", "yes"], "sprinkler": ["off", "on"], "wet": ["dry", "damp", "soaked"]}


def _named(seed: int = 0) -> BayesNet:
    g = torch.Generator().manual_seed(seed)
    bn = BayesNet()
    bn.add("rain", cpd.Table.random(2, generator=g), states=STATES["rain"])
    bn.add("sprinkler", cpd.Table.random(2, [2], ["rain"], generator=g), states=STATES["sprinkler"])
    bn.add("wet", cpd.Table.random(3, [2, 2], ["rain", "sprinkler"], generator=g), states=STATES["wet"])
    return bn


def _data(n: int = 120, missing: float = 0.25):
    """``[n, 3]`` integer states with ``-1`` where missing, and the same data as a pandas DataFrame of names
    (``None`` / ``NaN`` / ``pd.NA`` where missing; ``wet`` a Categorical)."""
    pd = pytest.importorskip("pandas")
    x = _named(seed=7).to_tensor(_named(seed=7).sample(n)).long()
    g = torch.Generator().manual_seed(3)
    x = torch.where(torch.rand(x.shape, generator=g) < missing, -1, x)
    markers = [None, float("nan"), pd.NA]
    cols = {}
    for j, v in enumerate(STATES):
        cols[v] = [markers[i % 3] if s < 0 else STATES[v][s] for i, s in enumerate(x[:, j].tolist())]
    df = pd.DataFrame({"rain": pd.Series(cols["rain"], dtype=object),
                       "sprinkler": pd.Series(cols["sprinkler"], dtype="string"),
                       "wet": pd.Categorical(cols["wet"], categories=["soaked", "dry", "damp"])})
    return x, df


def _svi_fit(data, steps: int = 40) -> dict:
    """The tables learned by plain Pyro SVI (TraceEnum_ELBO, the empty guide) from ``data``."""
    bn = _named(seed=1)
    pyro.clear_param_store()
    svi = SVI(bn.model, bn.guide, pyro.optim.Adam({"lr": 0.1}), TraceEnum_ELBO(max_plate_nesting=1))
    for _ in range(steps):
        svi.step(data)
    return {v: bn.cpds[v].probs.detach() for v in bn.nodes}


def test_a_dataframe_of_state_names_reads_like_integer_data():
    """Before, a DataFrame column of names (object, string or Categorical dtype) was refused: 'data column
    'rain' must hold states ... got Series'."""
    x, df = _data()
    cols = _named().columns(df)
    for j, v in enumerate(STATES):
        assert cols[v].dtype == torch.int64 and torch.equal(cols[v], x[:, j]), v


def test_tables_learned_from_a_dataframe_equal_those_from_integer_data_with_missing_entries():
    x, df = _data()
    assert (x == -1).any(0).all()  # every column has missing entries
    from_tensor, from_frame = _svi_fit(x), _svi_fit(df)
    assert not torch.equal(from_tensor["wet"], _named(seed=1).cpds["wet"].probs.detach())  # it learned
    for v in STATES:
        assert torch.equal(from_frame[v], from_tensor[v]), v
    # the (values, mask) pair that hybridpgm.fit batches is the same too
    bn = _named()
    for a, b in zip(bn.split_missing(df), bn.split_missing(x)):
        assert torch.equal(a, b.to(a.dtype))


def test_numpy_string_and_object_arrays_are_read_by_state_names():
    bn = _named()
    names = np.array([["no", "on", "soaked"], ["yes", "off", "dry"]])
    assert bn.columns(names)["wet"].tolist() == [2, 0]
    objects = np.array([["no", None, "damp"], [float("nan"), "off", 1]], dtype=object)  # names, indices, markers
    assert {v: c.tolist() for v, c in bn.columns(objects).items()} == \
        {"rain": [0, -1], "sprinkler": [-1, 0], "wet": [1, 1]}
    assert bn.to_tensor(objects)[1].isnan().tolist() == [True, False, False]
    values, mask = bn.split_missing(objects)
    assert mask.tolist() == [[True, False, True], [False, True, True]] and values[0].tolist() == [0.0, 0.0, 1.0]


def test_every_missing_marker_of_an_object_column_is_missing():
    pd = pytest.importorskip("pandas")
    column = pd.Series(["yes", None, float("nan"), pd.NA, pd.NaT, np.float32("nan"), "no"], dtype=object)
    assert _named().columns({"rain": column})["rain"].tolist() == [1, -1, -1, -1, -1, -1, 0]


def test_an_unknown_state_name_is_refused_naming_the_node_value_and_states():
    pd = pytest.importorskip("pandas")
    bn = _named()
    for frame in (pd.DataFrame({"wet": ["dry", "flooded"]}), pd.DataFrame({"wet": pd.Categorical(["flooded"])}),
                  {"wet": np.array(["dry", "flooded"])}):
        with pytest.raises(DataError, match=r"column 'wet' holds 'flooded', which is not a state of 'wet' "
                                            r"\(states: \['dry', 'damp', 'soaked'\]\)"):
            bn.columns(frame)


def test_names_in_the_column_of_a_node_without_state_names_are_refused_by_name():
    pd = pytest.importorskip("pandas")
    bn = BayesNet().add("a", cpd.Table([0.5, 0.5]))
    with pytest.raises(DataError, match=r"column 'a' holds the name 'x', but node 'a' has no state names"):
        bn.columns(pd.DataFrame({"a": ["x", None]}))


def test_a_dataframe_mask_and_continuous_columns_are_read():
    pd = pytest.importorskip("pandas")
    bn = BayesNet()
    bn.add("A", cpd.Table([0.5, 0.5]), states=["x", "y"])
    bn.add("X", cpd.LinearGaussian(bias=[0.0, 1.0], parents=["A"]))
    df = pd.DataFrame({"A": ["x", "y", "y"], "X": np.array([0.5, 1.0, 2.0], dtype=np.float32)})
    cols = bn.columns(df, pd.DataFrame({"A": [True, False, True], "X": [True, True, True]}))
    assert cols["A"].isnan().tolist() == [False, True, False] and cols["X"].dtype == torch.float32
    nullable = bn.columns(pd.DataFrame({"X": pd.array([0.5, None], dtype="Float32")}))["X"]
    assert nullable.dtype == torch.float32 and nullable.isnan().tolist() == [False, True]
    with pytest.raises(DataError, match=r"data column 'X' \(a continuous node\) must hold numbers"):
        bn.columns(pd.DataFrame({"X": ["u", "v"]}))


def test_a_pandas_column_of_numbers_for_states_named_by_numbers_is_refused_as_ambiguous():
    """pd.read_csv reads a column 1, 2, 1 as int64: for states named "1", "2", "3" it was silently read as the
    indices 1, 2, 1 (the states "2", "3", "2")."""
    pd = pytest.importorskip("pandas")
    import io

    bn = BayesNet()
    bn.add("grade", cpd.Table([0.2, 0.5, 0.3]), states=["1", "2", "3"])
    df = pd.read_csv(io.StringIO("grade\n1\n2\n1\n"))
    with pytest.raises(DataError, match=r"'grade' holds numbers and the states of 'grade' are named by numbers"):
        bn.columns(df)
    with pytest.raises(EvidenceError, match=r"evidence 'grade' holds numbers"):
        bn.log_evidence(df)
    names = bn.columns(df.astype(str))["grade"]
    assert names.tolist() == [0, 1, 0]
    assert bn.columns({"grade": torch.tensor([1, 2, 1])})["grade"].tolist() == [1, 2, 1]  # a tensor: indices
    other = BayesNet()
    other.add("g", cpd.Table([0.5, 0.5]), states=["low", "high"])
    assert other.columns(pd.DataFrame({"g": [1, 0]}))["g"].tolist() == [1, 0]  # names are not numbers: indices
    # a category column of numbers: its values are numbers (int64 categories on every pandas; read_csv's
    # dtype="category" gave string categories, names, in pandas 2.1)
    with pytest.raises(DataError, match="holds numbers"):
        bn.columns(pd.DataFrame({"grade": pd.Series([1, 2, 1]).astype("category")}))
    coded = BayesNet()  # pgmpy names the states of integer-coded data "0", "1": both readings agree
    coded.add("g", cpd.Table([0.25, 0.75]), states=["0", "1"])
    frame = pd.DataFrame({"g": [1, 0, 1]})
    assert coded.columns(frame)["g"].tolist() == [1, 0, 1]
    assert torch.equal(coded.log_evidence(frame), coded.log_evidence({"g": torch.tensor([1, 0, 1])}))


def _truth_net(states=("TRUE", "FALSE")) -> BayesNet:
    """A node ``h`` with states named like pgmpy's BIF networks (alarm's HISTORY: ``["TRUE", "FALSE"]``) and a
    child ``c``."""
    bn = BayesNet()
    bn.add("h", cpd.Table([0.2, 0.8]), states=list(states))
    bn.add("c", cpd.Table([[0.9, 0.1], [0.3, 0.7]], ["h"]), states=["lo", "hi"])
    return bn


def test_a_read_csv_bool_column_reads_by_state_name_not_as_indices():
    # pd.read_csv turns TRUE/FALSE into a bool column; before, True read as index 1, the state named "FALSE"
    pd = pytest.importorskip("pandas")
    import io

    bn = _truth_net()
    df = pd.read_csv(io.StringIO("h,c\nTRUE,lo\nFALSE,hi\n"))
    assert df["h"].dtype == bool
    assert bn.columns(df)["h"].tolist() == [0, 1]
    values, mask = bn.split_missing(df)
    assert values[:, 0].tolist() == [0.0, 1.0] and mask.all()
    gap = pd.read_csv(io.StringIO("h,c\nTRUE,lo\n,lo\nFALSE,hi\n"))  # an object column: True, NaN, False
    values, mask = bn.split_missing(gap)
    assert values[:, 0].tolist() == [0.0, 0.0, 1.0] and mask[:, 0].tolist() == [True, False, True]
    assert bn.columns({"h": gap["h"].astype("boolean")})["h"].tolist() == [0, -1, 1]
    assert bn.columns({"h": np.array([False, True])})["h"].tolist() == [1, 0]
    assert bn.columns({"h": [False, True, None]})["h"].tolist() == [1, 0, -1]


def test_bools_for_states_not_named_true_false_are_refused_or_read_as_indices():
    bn = _truth_net(["yes", "no"])
    with pytest.raises(DataError, match=r"data column 'h' holds True/False.*\['yes', 'no'\]"):
        bn.columns({"h": np.array([True, False])})
    with pytest.raises(EvidenceError, match=r"evidence 'h' holds True/False.*\['yes', 'no'\]"):
        bn.posterior("c", {"h": np.array([True, False])})
    assert bn.columns({"h": torch.tensor([True, False])})["h"].tolist() == [True, False]  # a tensor: indices
    for states in (["False", "True"], ["0", "1"]):  # names that read as the indices: the same either way
        assert _truth_net(states).columns({"h": [True, False]})["h"].tolist() == [1, 0]


def test_bool_evidence_for_true_false_states_reads_by_state_name_not_as_indices():
    # before, True read as index 1, the state named "FALSE" (alarm's HISTORY is ["TRUE", "FALSE"])
    bn = _truth_net()
    by_name = bn.posterior("c", {"h": ["TRUE", "FALSE"]})
    for evidence in (np.array([True, False]), [True, False], [np.bool_(True), False]):
        torch.testing.assert_close(bn.posterior("c", {"h": evidence}), by_name)
    torch.testing.assert_close(bn.posterior("c", {"h": True}), bn.posterior("c", {"h": "TRUE"}))
    torch.testing.assert_close(bn.log_evidence({"h": [False, None]}), bn.log_evidence({"h": ["FALSE", None]}))
    with pytest.raises(EvidenceError, match="holds True/False"):  # states not named true/false: refused
        _truth_net(("yes", "no")).posterior("c", {"h": True})


def test_numbers_for_states_named_by_other_numbers_are_refused_in_any_container():
    # before, only a pandas column was refused; df.to_numpy() (an object array) or .tolist() read as indices
    pd = pytest.importorskip("pandas")
    bn = BayesNet()
    bn.add("weather", cpd.Table([0.5, 0.5]), states=["dry", "wet"])
    bn.add("grade", cpd.Table([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]], ["weather"]), states=["1", "2", "3"])
    df = pd.DataFrame({"weather": ["dry", "wet", "dry"], "grade": [1, 2, 1]})
    arr = df.to_numpy()
    assert arr.dtype == object
    for data in (arr, {"weather": ["dry", "wet", "dry"], "grade": [1, 2, 1]},
                 {"grade": np.array([1, 2, 1])}, {"grade": [1.0, float("nan")]}):
        with pytest.raises(DataError, match=r"'grade' holds numbers .* named by numbers \['1', '2', '3'\]"):
            bn.columns(data)
    with pytest.raises(DataError, match="named by numbers"):
        bn.split_missing(arr)
    with pytest.raises(EvidenceError, match="named by numbers"):
        bn.posterior("weather", {"grade": [1, 2]})
    # names, tensors (indices by definition) and missing markers alone pass
    assert bn.columns({"grade": ["1", None, "3"]})["grade"].tolist() == [0, -1, 2]
    assert bn.columns({"grade": torch.tensor([1, 2])})["grade"].tolist() == [1, 2]
    assert bn.columns({"grade": [None, float("nan")], "weather": ["dry", "wet"]})["grade"].tolist() == [-1, -1]


def test_a_2d_bool_array_reads_by_state_name_as_its_frame_does():
    # df.to_numpy() of read_csv's bool columns: before, the array read True as index 1 ("FALSE") while the frame
    # it came from read it by name, so log_prob differed silently
    bn = BayesNet()
    bn.add("h", cpd.Table([0.2, 0.8]), states=["TRUE", "FALSE"])
    bn.add("g", cpd.Table([[0.6, 0.4], [0.1, 0.9]], ["h"]), states=["TRUE", "FALSE"])
    rows = np.array([[True, True], [False, False], [True, False]])
    names = np.where(rows, "TRUE", "FALSE").astype(object)
    torch.testing.assert_close(bn.log_prob(rows), bn.log_prob(names))
    torch.testing.assert_close(bn.to_tensor(rows), torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]],
                                                                dtype=bn.to_tensor(rows).dtype))
    values, mask = bn.split_missing(rows)
    assert values.tolist() == [[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]] and bool(mask.all())
    assert bn.to_tensor(torch.tensor(rows)).tolist() == [[1.0, 1.0], [0.0, 0.0], [1.0, 0.0]]  # a tensor: indices


def test_bool_masked_xarray_and_number_named_2d_arrays_are_read_as_their_columns(tmp_path):
    # review B: a masked bool column passed the masked-array refusal (its hidden values read as data); an [N, V]
    # bool array that is not NumPy (an xarray DataArray) read True as index 1; an [N, V] numeric array for states
    # named by numbers was read as indices though its columns are refused
    bn = BayesNet()
    bn.add("a", cpd.Table([0.2, 0.8]), states=["TRUE", "FALSE"])
    bn.add("b", cpd.Table([[0.6, 0.4], [0.1, 0.9]], ["a"]), states=["TRUE", "FALSE"])
    masked = np.ma.masked_array([True, True], mask=[False, True])
    with pytest.raises(EvidenceError, match="masked array"):
        bn.log_evidence({"a": masked})
    with pytest.raises(DataError, match="masked array"):
        bn.split_missing(np.ma.column_stack([masked, np.array([True, False])]))
    xr = pytest.importorskip("xarray")
    rows = np.array([[True, True], [False, False], [True, False]])
    torch.testing.assert_close(bn.log_prob(xr.DataArray(rows)), bn.log_prob(rows))
    assert bn.split_missing(xr.DataArray(rows))[0].tolist() == bn.split_missing(rows)[0].tolist()
    numbered = BayesNet()
    numbered.add("g", cpd.Table([0.2, 0.3, 0.5]), states=["1", "2", "3"])
    for data in (np.array([[1], [2]]), np.array([[1.0], [np.nan]])):
        with pytest.raises(DataError, match="named by numbers"):
            numbered.log_prob(data)
        with pytest.raises(DataError, match="named by numbers"):
            numbered.split_missing(data)
    assert numbered.split_missing(torch.tensor([[1], [2]]))[0].tolist() == [[1], [2]]  # a tensor: indices


def test_a_single_number_for_states_named_by_numbers_is_refused_like_a_column():
    # before, {"grade": 1} read 1 as the index of state "2" (pgmpy reads it as the state named 1) while [1], a 0-d
    # array, a Series and log_prob's {"grade": 1} were refused as ambiguous
    bn = BayesNet()
    bn.add("grade", cpd.Table([0.2, 0.5, 0.3]), states=["1", "2", "3"])
    bn.add("pass", cpd.Table([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]], ["grade"]), states=["no", "yes"])
    for number in (1, np.int64(1), 1.0, np.float32(1.0)):
        for query in (lambda e: bn.posterior("pass", e), bn.log_evidence, bn.map, lambda e: bn.sample(2, evidence=e)):
            with pytest.raises(EvidenceError, match=r"'grade' is the number 1(\.0)? and the states of 'grade' are "
                                                    r"named by numbers.*pass the name \('1'\).*torch\.tensor"):
                query({"grade": number})
    # a tensor, 0-d too, holds the index; a name is read by name; NaN is "not observed"
    torch.testing.assert_close(bn.posterior("pass", {"grade": torch.tensor(1)}), torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(bn.posterior("pass", {"grade": "1"}), torch.tensor([0.9, 0.1]))
    torch.testing.assert_close(bn.posterior("pass", {"grade": float("nan")}), bn.posterior("pass"))
    coded = BayesNet()  # names "0", "1" read the same as indices: a number is taken
    coded.add("g", cpd.Table([0.25, 0.75]), states=["0", "1"])
    coded.add("h", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["g"]))
    torch.testing.assert_close(coded.posterior("h", {"g": 1}), torch.tensor([0.2, 0.8]))
    # review: a number no state is named after got "pass the name (a name)"; -1, "not observed" in a tensor, was
    # called a name or an index
    with pytest.raises(EvidenceError, match=r"the number 0 and .*: no state is named 0; for the state index pass a "
                                            r"tensor \(torch\.tensor\(0\)\)$"):
        bn.posterior("pass", {"grade": 0})
    with pytest.raises(EvidenceError, match=r"the number -1 and .*: no state is named -1; for a node not observed "
                                            r"leave it out \(or pass None\)$"):
        bn.posterior("pass", {"grade": -1})
    other = BayesNet()  # names that are not numbers: a number is an index
    other.add("g", cpd.Table([0.25, 0.75]), states=["low", "high"])
    other.add("h", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["g"]))
    torch.testing.assert_close(other.posterior("h", {"g": np.int64(1)}), torch.tensor([0.2, 0.8]))


def test_pgmpy_states_named_by_numbers_take_evidence_by_name_not_by_number():
    # pgmpy's states [1, 0] become ["1", "0"]: before, {"A": 1} read 1 as the index of state "0" and answered
    # [0.1, 0.9] where pgmpy's {"A": 1} answers [0.9, 0.1]
    pytest.importorskip("pgmpy")
    with warnings.catch_warnings():  # pgmpy's own deprecation notices on import
        warnings.simplefilter("ignore")
        from pgmpy.factors.discrete import TabularCPD
        from pgmpy.inference import VariableElimination

        try:
            from pgmpy.models import DiscreteBayesianNetwork as Net
        except ImportError:  # older pgmpy
            from pgmpy.models import BayesianNetwork as Net
    model = Net([("A", "B")])
    model.add_cpds(TabularCPD("A", 2, [[0.2], [0.8]], state_names={"A": [1, 0]}),
                   TabularCPD("B", 2, [[0.9, 0.1], [0.1, 0.9]], evidence=["A"], evidence_card=[2],
                              state_names={"A": [1, 0], "B": ["x", "y"]}))
    bn = BayesNet.from_pgmpy(model)
    assert bn.state_names["A"] == ["1", "0"]
    with pytest.raises(EvidenceError, match=r"'A' is the number 1 .*pass the name \('1'\)"):
        bn.posterior("B", {"A": 1})
    exact = VariableElimination(model).query(["B"], evidence={"A": 1}, show_progress=False).values
    torch.testing.assert_close(bn.posterior("B", {"A": "1"}), torch.as_tensor(exact))
    torch.testing.assert_close(bn.posterior("B", {"A": torch.tensor(1)}), torch.tensor([0.1, 0.9], dtype=torch.float64))
