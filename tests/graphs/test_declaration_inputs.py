"""How a user declares a network: malformed names, tables, CPDs, files and grid sizes fail early and clearly."""

import pytest
import torch
from torch import nn

from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.graphs.bif import from_pgmpy, load_network, read_bif
from hybridpgm.graphs.grids import grid_edges, ising_grid, potts_grid

SQUARE = [[0.5, 0.5], [0.5, 0.5]]


# ---------------------------------------------------------------- parents and names
@pytest.mark.parametrize("parents", [[1], [None], [""]])
def test_parent_names_must_be_non_empty_strings(parents):
    with pytest.raises(ModelSpecError, match="every parent must be a non-empty node name"):
        cpd.Table(SQUARE, parents=parents)


def test_a_mismatched_child_is_reported_when_its_last_parent_is_declared():
    bn = BayesNet().add("a", cpd.Table(SQUARE, parents=["b"]))
    with pytest.raises(ModelSpecError, match="adding node 'b'.*node 'a': table dim 0 has size 2.*cardinality 3"):
        bn.add("b", cpd.Table([0.2, 0.3, 0.5]))
    assert bn.nodes == ["a"]


def test_linear_gaussian_child_is_checked_against_a_later_discrete_parent():
    bn = BayesNet().add("x", cpd.LinearGaussian(bias=[0.0, 0.0], parents=["d"]))
    with pytest.raises(ModelSpecError, match="node 'x': bias dim 0 has size 2, parent 'd' has cardinality 3"):
        bn.add("d", cpd.Table([0.2, 0.3, 0.5]))


# ---------------------------------------------------------------- state names
@pytest.mark.parametrize("states, match", [
    (["x", "x"], r"node 'a': state names must be distinct, \['x'\]"),
    ("xy", "node 'a': states must be a list of 2 names, got 'xy'"),
    (2, "node 'a': states must be a list of 2 names, got 2"),
])
def test_states_must_be_distinct_names_in_a_list(states, match):
    with pytest.raises(ModelSpecError, match=match):
        BayesNet().add("a", cpd.Table([0.5, 0.5]), states=states)


def test_states_of_a_continuous_node_are_refused_by_name():
    with pytest.raises(ModelSpecError, match="node 'x' is continuous; state names are for discrete nodes"):
        BayesNet().add("x", cpd.LinearGaussian(), states=["lo"])


def test_constructor_state_names_for_an_unknown_node():
    with pytest.raises(ModelSpecError, match=r"state_names names node\(s\) \['zz'\] that are not in cpds"):
        BayesNet({"a": cpd.Table([0.5, 0.5])}, state_names={"zz": ["x", "y"]})


def test_constructor_needs_a_mapping():
    with pytest.raises(ModelSpecError, match="BayesNet cpds must be a mapping.*got list"):
        BayesNet([("a", cpd.Table([0.5, 0.5]))])


# ---------------------------------------------------------------- Table
@pytest.mark.parametrize("probs, match", [
    (torch.zeros(0), r"node 'a': table of shape \(0,\) has a dim of size 0"),
    ([float("inf"), 1.0], "node 'a': table has negative, NaN or infinite entries"),
])
def test_degenerate_tables_are_named(probs, match):
    with pytest.raises(ModelSpecError, match=match):
        BayesNet().add("a", cpd.Table(probs))


@pytest.mark.parametrize("probs", [torch.tensor([False, True]), torch.tensor([0.5 + 0j, 0.5 + 0j])])
def test_bool_and_complex_tables_are_refused(probs):
    with pytest.raises(ModelSpecError, match=f"Table probs must be real numbers, got dtype {probs.dtype}"):
        cpd.Table(probs)


def test_non_numeric_table():
    with pytest.raises(ModelSpecError, match="Table probs must be a numeric array, got str"):
        cpd.Table("abc")


def test_row_sum_tolerance_follows_the_dtype():
    probs = torch.full((11,), 1 / 11, dtype=torch.float16)  # uniform, correctly rounded to float16
    assert abs(float(probs.sum()) - 1) > 1e-4  # ... which cannot sum to 1 within the default atol
    bn = BayesNet().add("a", cpd.Table(probs))
    assert bn.cardinality("a") == 11
    with pytest.raises(ModelSpecError, match="node 'b': table rows must sum to 1"):
        BayesNet().add("b", cpd.Table(torch.tensor([0.5, 0.6], dtype=torch.bfloat16)))


@pytest.mark.parametrize("prior, match", [
    (float("nan"), "Dirichlet prior concentration must be positive and finite"),
    (float("inf"), "Dirichlet prior concentration must be positive and finite"),
    ([1.0, 1.0, 1.0], r"Dirichlet prior \[1.0, 1.0, 1.0\] must be a number or broadcast to the table's \(2,\)"),
])
def test_bad_dirichlet_priors_are_named(prior, match):
    with pytest.raises(ModelSpecError, match="node 'a': " + match):
        BayesNet().add("a", cpd.Table([0.5, 0.5], prior=prior))


@pytest.mark.parametrize("atol", [-1.0, float("nan")])
def test_table_atol_is_checked(atol):
    with pytest.raises(ConfigError, match="Table atol must be a finite number >= 0"):
        cpd.Table([0.5, 0.5], atol=atol)


# ---------------------------------------------------------------- Neural
@pytest.mark.parametrize("card", [2.5, True, "2"])
def test_neural_cardinality_is_not_coerced(card):
    with pytest.raises(ModelSpecError, match="Neural cardinality must be a positive integer"):
        cpd.Neural(nn.Linear(1, 2), [], card)


def test_neural_net_must_be_a_module():
    with pytest.raises(ModelSpecError, match="Neural net must be a torch.nn.Module, got function"):
        cpd.Neural(lambda x: x, [], 2)


def test_neural_context_names_are_distinct():
    with pytest.raises(ModelSpecError, match=r"Neural context must be distinct non-empty names, got \['u', 'u'\]"):
        cpd.Neural(nn.Linear(2, 2), [], 2, context=["u", "u"])


def test_neural_output_with_extra_dims_is_refused_at_add():
    net = nn.Sequential(nn.Linear(0, 2), nn.Unflatten(1, (1, 2)))
    with pytest.raises(ModelSpecError, match=r"node 'a': the network outputs 2 logits \(shape \(1, 1, 2\)"):
        BayesNet().add("a", cpd.Neural(net, [], 2))


def test_neural_with_context_names_the_node_when_the_output_is_wrong():
    bn = BayesNet().add("a", cpd.Neural(nn.Linear(3, 3), [], 2, context=["u"]))
    with pytest.raises(ModelSpecError, match=r"node 'a': the network outputs 3 logits.*cardinality 2"):
        bn.log_prob({"a": torch.tensor([0, 1])}, context={"u": torch.zeros(2, 3)})


def test_a_context_input_of_the_wrong_width_names_the_node_and_the_features():
    """Before, a raw matmul RuntimeError ('mat1 and mat2 shapes cannot be multiplied')."""
    bn = BayesNet().add("p", cpd.Table([0.5, 0.5]))
    bn.add("a", cpd.Neural(nn.Linear(2 + 1, 2), ["p"], 2, context=["u"]))
    with pytest.raises(DataError, match=r"node 'a': the network fails on inputs of 5 features \(2 one-hot for the "
                                        r"parents \['p'\], 3 for the continuous parents and context \[\] \+ \['u'\]\)"):
        bn.posterior("a", {"u": torch.randn(4, 3)})


# ---------------------------------------------------------------- LinearGaussian
@pytest.mark.parametrize("kwargs, what", [
    ({"scale": float("nan")}, "scale"), ({"scale": float("inf")}, "scale"),
    ({"bias": float("nan")}, "bias"), ({"weight": [float("nan")], "parents": ["z"]}, "weight"),
])
def test_linear_gaussian_non_finite_values(kwargs, what):
    with pytest.raises(ModelSpecError, match=f"LinearGaussian {what} has NaN or infinite entries"):
        cpd.LinearGaussian(**kwargs)


def test_linear_gaussian_scale_shape():
    with pytest.raises(ModelSpecError, match=r"scale of shape \(3,\) does not broadcast to the bias shape \(2,\)"):
        cpd.LinearGaussian(bias=[0.0, 0.0], scale=[1.0, 1.0, 1.0], parents=["d"])


def test_linear_gaussian_non_numeric():
    with pytest.raises(ModelSpecError, match="LinearGaussian bias, weight and scale must be numeric arrays"):
        cpd.LinearGaussian(scale="a")


# ---------------------------------------------------------------- BIF
def _write(path, text):
    path.write_text(text)
    return path


VAR_A = "variable a { type discrete [2] {x, y}; }\n"
VAR_B = "variable b { type discrete [2] {x, y}; }\n"


def test_bif_directory_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="is not a regular file"):
        read_bif(tmp_path)
    with pytest.raises(DataError, match="is not a regular file"):
        load_network(str(tmp_path))


def test_bif_missing_path_says_file_not_found(tmp_path):
    with pytest.raises(DataError, match="BIF file not found: .*nope.bif'$"):
        load_network(str(tmp_path / "nope.bif"))


@pytest.mark.parametrize("name, content", [("bin.bif", b"\xff\xfe\x00"), ("plain.bif.gz", b"network x {}")])
def test_bif_unreadable_bytes(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=f"cannot read the BIF file .*{name}"):
        read_bif(tmp_path / name)


@pytest.mark.parametrize("text", ["", "garbage {{{"])
def test_bif_without_variables(tmp_path, text):
    with pytest.raises(DataError, match="declares no variable"):
        read_bif(_write(tmp_path / "x.bif", text))


@pytest.mark.parametrize("text, match", [
    (VAR_A + VAR_A + "probability ( a ) { table 0.5, 0.5; }\n", "variable 'a' is declared twice"),
    (VAR_A + "probability ( a ) { table 0.5, 0.5; }\nprobability ( a ) { table 0.1, 0.9; }\n",
     "variable 'a' has two probability blocks"),
    (VAR_A + VAR_B + "probability ( a ) { table 0.5, 0.5; }\n"
     "probability ( b | a ) { (x) 0.5, 0.5; (x) 0.1, 0.9; (y) 0.2, 0.8; }\n", r"entry \(x\) of 'b' is given twice"),
    ("variable a { type discrete [2] {x, x}; }\nprobability ( a ) { table 0.5, 0.5; }\n",
     r"dup.bif': variable 'a': state names must be distinct, \['x'\] repeat in \{ x, x \}"),
])
def test_bif_duplicates(tmp_path, text, match):
    with pytest.raises(ModelSpecError, match=match):
        read_bif(_write(tmp_path / "dup.bif", text))


def test_unknown_network_lists_the_bundled_ones():
    pytest.importorskip("pgmpy")
    with pytest.raises(DataError, match=r"no BIF network 'no_such_net'.*bundled networks are \[.*'asia'"):
        load_network("no_such_net")


@pytest.mark.parametrize("call, message", [
    (lambda: read_bif(None), "the BIF file path must be a str or os.PathLike, got NoneType"),
    (lambda: load_network(3), "needs a file path")])
def test_bif_path_of_the_wrong_type(call, message):
    with pytest.raises(DataError, match=message):
        call()


def test_from_pgmpy_of_something_else():
    with pytest.raises(ModelSpecError, match="from_pgmpy needs a pgmpy Bayesian network.*got object"):
        from_pgmpy(object())


# ---------------------------------------------------------------- grids
@pytest.mark.parametrize("height", [2.5, True, "3"])
def test_grid_sizes_are_not_coerced(height):
    with pytest.raises(ModelSpecError, match=f"ising_grid height must be a positive integer, got {height!r}"):
        ising_grid(height, 2, 1.0)
    with pytest.raises(ModelSpecError, match=f"potts_grid height must be a positive integer, got {height!r}"):
        potts_grid(height, 2, 3, 1.0)


@pytest.mark.parametrize("num_states", [2.5, True])
def test_potts_num_states_is_not_coerced(num_states):
    with pytest.raises(ModelSpecError, match="potts_grid num_states must be an integer >= 2"):
        potts_grid(2, 2, num_states, 1.0)


def test_grid_edges_refuses_negative_sizes():
    with pytest.raises(ModelSpecError, match="grid_edges height must be a positive integer, got -1"):
        grid_edges(-1, 2)


def test_ising_coupling_of_the_wrong_kind():
    with pytest.raises(ModelSpecError, match="ising_grid coupling must be a number or a float tensor, got 'a'"):
        ising_grid(2, 2, "a")
    E = len(grid_edges(2, 2))
    couplings = [0.1, 0.2, 0.3, 0.4][:E]
    mrf = ising_grid(2, 2, couplings)  # a list of per-edge couplings, read as the tensor would be
    ref = ising_grid(2, 2, torch.tensor(couplings))
    assert torch.equal(mrf.log_partition(), ref.log_partition())
