"""BIF reading/writing and pgmpy conversion, against pgmpy's own parser."""

import warnings

import numpy as np
import pytest
import torch

from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.graphs import BayesNet, load_network, read_bif, write_bif
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


def test_from_pgmpy_and_to_pgmpy():
    model = pgmpy_model("asia")
    bn = BayesNet.from_pgmpy(model)
    _assert_same_as_pgmpy(bn, model)
    _assert_same_as_pgmpy(bn, bn.to_pgmpy())
    assert bn.to_pgmpy().check_model()


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
