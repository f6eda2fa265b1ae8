"""BIF reading and writing, against pgmpy's own parser (the pgmpy conversions: tests/graphs/test_bif_pgmpy.py)."""

import re
import warnings

import numpy as np
import pytest
import torch

from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.graphs import BayesNet, cpd, load_network, read_bif, write_bif
from tests.graphs.bn_helpers import bundled_bif, pgmpy_model, random_bn, single_thread  # noqa: F401 (autouse fixture)

pytest.importorskip("pgmpy")


def _assert_same_as_pgmpy(bn, model):
    assert set(bn.nodes) == set(model.nodes())
    for c in model.get_cpds():
        v = c.variable
        assert list(bn.parents(v)) == list(c.variables[1:]), v
        assert bn.state_names[v] == list(c.state_names[v]), v
        # pgmpy stores [card, *parent_cards]; hybridpgm [*parent_cards, card]
        ours = bn.cpds[v].probs.detach().numpy()
        np.testing.assert_allclose(ours, np.moveaxis(c.values, 0, -1), atol=1e-6, err_msg=v)


@pytest.mark.parametrize("name", ["asia", "alarm", pytest.param("child", marks=pytest.mark.slow)])
def test_read_bundled_bif_equals_pgmpy(name):
    bn = read_bif(bundled_bif(name))
    assert bn.dtype == torch.float64 and not any(p.requires_grad for p in bn.parameters())
    _assert_same_as_pgmpy(bn, pgmpy_model(name))


def test_write_then_read_round_trip_and_pgmpy_reads_it(tmp_path):
    bn = random_bn(4, 5, max_card=3)
    bn.state_names["x0"] = ["low", "mid", "high"][: bn.cardinality("x0")]
    path = tmp_path / "net.bif"
    write_bif(bn, path)
    back = read_bif(path)
    assert back.nodes == bn.nodes and back.edges == bn.edges
    for v in bn.nodes:
        torch.testing.assert_close(back.cpds[v].probs, bn.cpds[v].probs.detach())
    from pgmpy.readwrite import BIFReader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _assert_same_as_pgmpy(back, BIFReader(str(path)).get_model())
    write_bif(bn, tmp_path / "net.bif.gz")
    torch.testing.assert_close(read_bif(tmp_path / "net.bif.gz").cpds["x4"].probs, back.cpds["x4"].probs)


BAD = {
    "count": ("variable a { type discrete [ 2 ] { y, n }; }\nprobability ( a ) { table 0.5, 0.3, 0.2; }",
              "'a'.*3 numbers"),
    "undeclared": ("variable a { type discrete [ 2 ] { y, n }; }\nprobability ( a | b ) { (y) 0.5, 0.5; }",
                   "undeclared variable 'b'"),
    "sum": ("variable a { type discrete [ 2 ] { y, n }; }\nprobability ( a ) { table 0.5, 0.3; }",
            "'a'.*sum to 1"),
    "states": ("variable a { type discrete [ 3 ] { y, n }; }", "'a' declares 3 states"),
    "missing": ("variable a { type discrete [ 2 ] { y, n }; }", "'a' has no probability"),
    "incomplete": ("variable a { type discrete [ 2 ] { y, n }; }\nvariable b { type discrete [ 2 ] { y, n }; }\n"
                   "probability ( a ) { table 0.5, 0.5; }\nprobability ( b | a ) { (y) 0.5, 0.5; }",
                   "table of 'b' is incomplete"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_files_raise_model_spec_error(tmp_path, case):
    text, match = BAD[case]
    path = tmp_path / f"{case}.bif"
    path.write_text("network x { }\n" + text + "\n")
    with pytest.raises(ModelSpecError, match=match):
        read_bif(path)


def test_missing_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="nothere.bif"):
        read_bif(tmp_path / "nothere.bif")


def test_load_network_by_name_or_path(tmp_path):
    assert load_network("asia").nodes == read_bif(bundled_bif("asia")).nodes
    path = tmp_path / "tiny.bif"
    write_bif(random_bn(0, 2), path)
    assert load_network(str(path)).nodes == ["x0", "x1"]
    with pytest.raises(DataError, match="no BIF network 'no_such_net'.*install pgmpy"):
        load_network("no_such_net")


def test_a_folder_named_like_a_bundled_network_does_not_hide_it(tmp_path, monkeypatch):
    """Before, any entry of the working directory named like a bundled network (a folder ``alarm``, the output
    folder of ``--network asia --out asia``) was read as a path: "BIF path asia is not a regular file"."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "asia").mkdir()
    assert load_network("asia").nodes == read_bif(bundled_bif("asia")).nodes
    # a regular file is a path, with or without the suffix; a name with a separator or suffix is never bundled
    write_bif(random_bn(0, 2), tmp_path / "mynet")
    assert load_network("mynet").nodes == ["x0", "x1"]
    with pytest.raises(DataError, match="not a regular file"):
        load_network("./asia")
    with pytest.raises(DataError, match="BIF file not found: 'asia.bif'"):
        load_network("asia.bif")


def _keyword_states_model():
    """A pgmpy network whose states are named like BIF keywords (``table``, ``default``, ``property``)."""
    from pgmpy.factors.discrete import TabularCPD

    try:
        from pgmpy.models import DiscreteBayesianNetwork as Net
    except ImportError:  # older pgmpy
        from pgmpy.models import BayesianNetwork as Net
    names = {"A": ["table", "default", "property"], "B": ["default", "table"], "C": ["x", "y"]}
    net = Net([("A", "B"), ("A", "C"), ("B", "C")])
    net.add_cpds(
        TabularCPD("A", 3, [[0.2], [0.3], [0.5]], state_names={"A": names["A"]}),
        TabularCPD("B", 2, [[0.1, 0.8, 0.4], [0.9, 0.2, 0.6]], evidence=["A"], evidence_card=[3],
                   state_names={"B": names["B"], "A": names["A"]}),
        TabularCPD("C", 2, [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]], evidence=["A", "B"],
                   evidence_card=[3, 2], state_names={"C": names["C"], "A": names["A"], "B": names["B"]}),
    )
    assert net.check_model()
    return net


def test_states_named_like_keywords_round_trip_with_pgmpy(tmp_path):
    from pgmpy.readwrite import BIFReader, BIFWriter

    model = _keyword_states_model()
    path = tmp_path / "keywords.bif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        BIFWriter(model).write_bif(str(path))
    text = path.read_text()
    assert "( table )" in text and "( default )" in text  # the case that used to fail
    bn = read_bif(path)  # pgmpy -> hybridpgm
    _assert_same_as_pgmpy(bn, model)
    ours = tmp_path / "ours.bif"
    write_bif(bn, ours)  # hybridpgm -> pgmpy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _assert_same_as_pgmpy(bn, BIFReader(str(ours)).get_model())
    _assert_same_as_pgmpy(read_bif(ours), model)


GRAMMAR = {
    "default then entries": ("probability ( b | a ) { default 0.5, 0.5; ( table ) 0.1, 0.9; }",
                             {"b": [[0.1, 0.9], [0.5, 0.5]]}),
    "property and spaces": ("probability ( b | a ) { property note ; (table)0.1 0.9 ; (default) 0.3, 0.7; }",
                            {"b": [[0.1, 0.9], [0.3, 0.7]]}),
    # before, a default after an entry overwrote it: [[0.5, 0.5], [0.5, 0.5]]
    "entries then default": ("probability ( b | a ) { ( table ) 0.1, 0.9; default 0.5, 0.5; }",
                             {"b": [[0.1, 0.9], [0.5, 0.5]]}),
}


@pytest.mark.parametrize("case", sorted(GRAMMAR))
def test_probability_bodies_are_parsed_by_grammar(tmp_path, case):
    body, expected = GRAMMAR[case]
    path = tmp_path / "g.bif"
    path.write_text("network x { }\nvariable a { type discrete [ 2 ] { table, default }; }\n"
                    "variable b { type discrete [ 2 ] { y, n }; }\nprobability ( a ) { table 0.5, 0.5; }\n"
                    + body + "\n")
    bn = read_bif(path)
    for v, probs in expected.items():
        np.testing.assert_allclose(bn.cpds[v].probs.detach().numpy(), probs)


@pytest.mark.parametrize("body,match", [
    ("( table ) 0.1, 0.9", "'b'.*closing ';'"),
    ("( table 0.1, 0.9;", "'b'.*unexpected ';'"),
    ("tabel 0.1, 0.9;", "'b'.*expected 'table'.*found 'tabel'"),
    ("( table ) 0.1, abc;", "'b'.*cannot parse numbers"),
    ("default 0.2, 0.3, 0.5;", "default of 'b' has 3 numbers, needs 2"),  # before, numpy's broadcast error
    ("default 0.2, 0.8; default 0.5, 0.5;", "'b' has two default entries"),
])
def test_grammar_errors_name_file_and_variable(tmp_path, body, match):
    path = tmp_path / "bad.bif"
    path.write_text("variable a { type discrete [ 2 ] { table, default }; }\n"
                    "variable b { type discrete [ 2 ] { y, n }; }\nprobability ( a ) { table 0.5, 0.5; }\n"
                    f"probability ( b | a ) {{ {body} }}\n")
    with pytest.raises(ModelSpecError, match="bad.bif': " + match):
        read_bif(path)


@pytest.mark.parametrize("name, shown", [("very hot", "' '"), ("good, mostly", "','"), ("a(b", "'\\('"),
                                         ("a)b", "'\\)'"), ("a;b", "';'"), ("a|b", "'\\|'"), ("a{b", "'{'"),
                                         ("a}b", "'}'"), ("a//b", "'//'"), ("a/*b", "'/\\*'"), ("tab\tb", "'\\\\t'"),
                                         ("", "is empty")])
def test_write_bif_refuses_state_names_read_bif_cannot_read(tmp_path, name, shown):
    """Before: the names were written verbatim and the file could not be read back (or was misread)."""
    bn = BayesNet()
    bn.add("weather", cpd.Table([0.6, 0.4]), states=[name, "cold"])
    path = tmp_path / "x.bif"
    with pytest.raises(ModelSpecError, match=r"write_bif: node 'weather': state .*" + shown):
        write_bif(bn, path)
    assert not path.exists()


def test_state_names_that_are_not_strings_are_refused_at_declaration():
    """Before, states=[1, 0] was accepted while evidence {"a": 1} is read as an index: it selected the state
    named 0, silently (and [1, "1"] only failed at write_bif)."""
    bn = BayesNet()
    with pytest.raises(ModelSpecError, match=r"node 'a': state names must be strings, got \[1, 0\] in \[1, 0\]; .*"
                                             r"name the states \['1', '0'\]"):
        bn.add("a", cpd.Table([0.5, 0.5]), states=[1, 0])
    with pytest.raises(ModelSpecError, match=r"state names must be strings, got \[1\]"):
        bn.add("a", cpd.Table([0.5, 0.5]), states=[1, "1"])


def test_write_bif_round_trips_every_allowed_name(tmp_path):
    roots = ["very_hot", "x.1", "50%", "<=3", "a-b", "ümlaut", "table", "default", "property", "variable"]
    kids = ["[1]", "a*b", "a/b", "'q'", '"q"', "#1", "=", "*/", "probability", "network", "-2.5e3"]
    g = torch.Generator().manual_seed(0)
    bn = BayesNet()
    bn.add("r", cpd.Table(torch.rand(len(roots), generator=g, dtype=torch.float64).softmax(0)), states=roots)
    bn.add("k", cpd.Table(torch.rand(len(roots), len(kids), generator=g, dtype=torch.float64).softmax(-1), ["r"]),
           states=kids)
    bn.add("leaf", cpd.Table(torch.rand(len(kids), 2, generator=g, dtype=torch.float64).softmax(-1), ["k"]),
           states=["True", "7"])
    path = tmp_path / "names.bif"
    write_bif(bn, path)
    back = read_bif(path)
    assert back.state_names == {"r": roots, "k": kids, "leaf": ["True", "7"]}
    for v in bn.nodes:
        assert list(back.parents(v)) == list(bn.parents(v))
        torch.testing.assert_close(back.cpds[v].probs, bn.cpds[v].probs.detach(), rtol=0, atol=1e-15)


_HEAD_B = "network n { }\nvariable b { type discrete [ 2 ] { t, f }; }\n"


@pytest.mark.parametrize("text, match", [
    # Table(...) refused the duplicate parent outside the try that names the file: no file, no variable
    ("variable a { type discrete [ 2 ] { yes, no }; }\nprobability ( a ) { table 0.3, 0.7; }\n"
     "probability ( b | a, a ) { default 0.5, 0.5; }\n", r"probability of 'b' lists the parent\(s\) \['a'\] more"),
    # _blocks did not know the file
    ("variable a { type discrete [ 2 ] { yes, no }; }\nprobability ( a ) { table 0.3, 0.7; \n",
     r"unbalanced braces: the block 'probability \( a \)' lacks its closing '}'"),
    # a repeated state was accepted, and the error blamed the child 'b' ("names an unknown state")
    ("variable a { type discrete [ 2 ] { yes, yes }; }\nprobability ( a ) { table 0.3, 0.7; }\n"
     "probability ( b | a ) { (yes) 0.1, 0.9; (no) 0.5, 0.5; }\n",
     r"variable 'a': state names must be distinct, \['yes'\] repeat in \{ yes, yes \}"),
])
def test_declaration_errors_name_the_file_and_the_variable_at_fault(tmp_path, text, match):
    """Found by an audit: these three errors lacked the file (and the first the variable), or blamed the child."""
    path = tmp_path / "names.bif"
    path.write_text(_HEAD_B + text)
    with pytest.raises(ModelSpecError, match=f"^{re.escape(repr(str(path)))}: {match}"):
        read_bif(path)


_QUOTED_URL_IN_A_VARIABLE = """network x { }
variable A { type discrete [ 2 ] { yes, no }; property "source = http://www.bnlearn.com"; }
variable B { type discrete [ 2 ] { yes, no }; }
probability ( A ) { table 0.3, 0.7; }
probability ( B | A ) { (yes) 0.9, 0.1; (no) 0.2, 0.8; } // a comment "with a quote
/* a block comment with "http://x" in it */
"""

_QUOTED_URL_BEFORE_AN_ENTRY = """network x { }
variable A { type discrete [ 2 ] { yes, no }; }
variable B { type discrete [ 2 ] { yes, no }; }
probability ( A ) { table 0.3, 0.7; }
probability ( B | A ) {
  property "elicited from http://example.org/expert";
  (yes) 0.9, 0.1;
  default 0.5, 0.5;
}
"""


@pytest.mark.parametrize("text", [_QUOTED_URL_IN_A_VARIABLE, _QUOTED_URL_BEFORE_AN_ENTRY],
                         ids=["one_line_variable", "entry_after_property"])
def test_a_double_slash_inside_a_quoted_string_is_not_a_comment(tmp_path, text):
    """``//`` was stripped to the end of the line inside quoted property strings: the one-line variable failed with
    "unbalanced braces", and the entry after the property line was swallowed, its row silently replaced by the
    ``default`` one (p(B | A=yes) = [0.5, 0.5] for [0.9, 0.1])."""
    path = tmp_path / "x.bif"
    path.write_text(text)
    bn = read_bif(path)
    table = bn.cpds["B"].log_table().exp()
    assert torch.allclose(table, torch.tensor([[0.9, 0.1], [0.2, 0.8] if "(no)" in text else [0.5, 0.5]],
                                              dtype=table.dtype))


@pytest.mark.parametrize("name", ["type", "train", "eval", "float", "keys", "values", "items", "update", "training"])
def test_a_variable_named_as_a_module_dict_attribute_is_refused_naming_the_file_and_the_node(tmp_path, name):
    """Before, a raw ``KeyError: "attribute 'type' already exists"`` from torch's nn.ModuleDict, without the file
    (found by a fuzzing audit; pgmpy reads such a file)."""
    path = tmp_path / "reserved.bif"
    path.write_text(f"network x {{ }}\nvariable {name} {{ type discrete [ 2 ] {{ yes, no }}; }}\n"
                    f"probability ( {name} ) {{ table 0.3, 0.7; }}\n")
    with pytest.raises(ModelSpecError, match=rf"^{re.escape(repr(str(path)))}: node name '{name}' is reserved: "
                                             r"BayesNet holds its CPDs in a torch.nn.ModuleDict"):
        read_bif(path)
